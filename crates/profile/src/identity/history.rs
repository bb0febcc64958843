//! The identity graph's history, kept by the identity stage in its own state so the identity
//! API reads it where the graph lives (and finds a profile whose changes are older than any
//! topic's retention): per profile its newest [`PER_PROFILE`] changes, and per identity the
//! newest [`PER_IDENTITY`] changes that name it (cuts, evictions, splits). When a profile
//! merges into another, its history follows it.
//!
//! State keys (in the sandbox's partition, beside its graph's): `h` + profile id → the profile's changes,
//! `x` + org, sandbox, namespace (each `\0`-terminated) + value → the identity's; JSON lists of
//! [`Stamped`], oldest first.

use cdp_contract::records::{GraphChange, GraphEvent, Identity};
use cdp_stage::{Cause, Context, ProcessError};
use serde::{Deserialize, Serialize};

use crate::json;

/// At most this many changes are kept per profile (the newest).
pub const PER_PROFILE: usize = 100;
/// At most this many changes naming one identity are kept (the newest).
pub const PER_IDENTITY: usize = 50;

/// A change with its place in the graph's order: the position of the input that caused it
/// (`seq`), then its place among that input's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamped {
    pub order: u64,
    pub event: GraphEvent,
}

pub fn profile_key(profile: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + profile.len());
    k.push(b'h');
    k.extend_from_slice(profile.as_bytes());
    k
}

pub fn identity_key(org: &str, sandbox: &str, identity: &Identity) -> Vec<u8> {
    let mut k =
        Vec::with_capacity(4 + org.len() + sandbox.len() + identity.ns.len() + identity.id.len());
    k.push(b'x');
    for part in [org, sandbox, &identity.ns] {
        k.extend_from_slice(part.as_bytes());
        k.push(0);
    }
    k.extend_from_slice(identity.id.as_bytes());
    k
}

pub fn read(stored: Option<Vec<u8>>) -> Result<Vec<Stamped>, ProcessError> {
    match stored {
        Some(v) => json::from_slice(&v, "a stored graph history"),
        None => Ok(Vec::new()),
    }
}

fn load(ctx: &Context<'_>, partition: i32, key: &[u8]) -> Result<Vec<Stamped>, ProcessError> {
    read(ctx.get(partition, key)?)
}

fn save(
    ctx: &mut Context<'_>,
    cause: Cause,
    key: &[u8],
    mut list: Vec<Stamped>,
    cap: usize,
) -> Result<(), ProcessError> {
    let excess = list.len().saturating_sub(cap);
    list.drain(..excess);
    let value = json::to_vec(&list, "a graph history")?;
    ctx.put(cause, key, value);
    Ok(())
}

/// Records the changes of one input (`seq`, read from the sandbox's `partition`) in the
/// sandbox's histories. Merges are ordered after the other changes of the input: a link causes
/// the merge, so the merge is the newer.
pub fn record(
    ctx: &mut Context<'_>,
    cause: Cause,
    partition: i32,
    org: &str,
    sandbox: &str,
    seq: u64,
    changes: &[GraphEvent],
) -> Result<(), ProcessError> {
    let is_merge = |c: &&GraphEvent| matches!(c.change, GraphChange::Merged { .. });
    let causal = changes
        .iter()
        .filter(|c| !is_merge(c))
        .chain(changes.iter().filter(is_merge));
    for (i, change) in causal.enumerate() {
        let stamped = Stamped {
            order: seq.saturating_mul(1024).saturating_add(i as u64),
            event: change.clone(),
        };
        let named: Vec<&Identity> = match &change.change {
            GraphChange::Cut { a, b, .. } => vec![a, b],
            GraphChange::Evicted { identity } => vec![identity],
            GraphChange::Split { moved } => moved.iter().collect(),
            GraphChange::Linked { .. }
            | GraphChange::Created { .. }
            | GraphChange::Merged { .. } => Vec::new(),
        };
        for identity in named {
            let key = identity_key(org, sandbox, identity);
            let mut list = load(ctx, partition, &key)?;
            list.push(stamped.clone());
            save(ctx, cause, &key, list, PER_IDENTITY)?;
        }
        let own = profile_key(&change.profile_id);
        if let GraphChange::Merged { into } = &change.change {
            // The history follows the identities into the surviving profile.
            let mut moved = load(ctx, partition, &own)?;
            moved.push(stamped);
            let target = profile_key(into);
            let mut all = load(ctx, partition, &target)?;
            all.extend(moved);
            all.sort_by_key(|s| s.order);
            all.dedup_by_key(|s| s.order);
            ctx.delete(cause, &own);
            save(ctx, cause, &target, all, PER_PROFILE)?;
            continue;
        }
        let mut list = load(ctx, partition, &own)?;
        list.push(stamped);
        save(ctx, cause, &own, list, PER_PROFILE)?;
    }
    Ok(())
}
