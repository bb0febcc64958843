//! The profile stage: each profile's state — its identities, its events of the last
//! time-to-live, its fragments and their merged attributes — kept in the partition of
//! `profile.resolved` its id hashes to, and what changed written to `profile.updates`, in the
//! same transaction as the state's changelog.
//!
//! A merge or split moves content: the profile that lost it hands its events and fragments
//! back to the identity stage (on `profile.sequence`), which places each by its owner identity
//! in the graph as it is then. A profile's content therefore only ever arrives through the
//! identity stage's one ordered output, and an event is held once (its key is its timestamp and
//! id), however often it travels.

mod keys;

use cdp_catalog::merge::{default_policy, merge};
use cdp_catalog::CatalogView;
use cdp_contract::clock::now_ms;
use cdp_contract::records::{
    Change, Fragment, Identity, Item, ItemKind, ProfileUpdate, Refused, Resolved, StoredEvent,
    Transfer,
};
use cdp_stage::{Cause, Context, Output, ProcessError, Processor};
use rdkafka::message::{Message, OwnedMessage};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::json::{self, fatal};
use crate::settings::ONE_DAY_MS;

/// The refused identities a profile remembers for its audit.
const AUDIT: usize = 20;

/// What a profile holds besides its events and fragments.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub org_id: String,
    pub sandbox: String,
    pub identities: Vec<Identity>,
    pub event_count: u32,
    pub flagged: bool,
    /// No event expires before this (epoch ms): expiry scans only when it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
}

pub struct ProfileStage {
    pub catalog: CatalogView,
    pub updates_topic: String,
    pub sequence_topic: String,
    pub ttl_ms: i64,
    pub max_events: u32,
}

/// One input record's work: the partition its profile lives in and what caused it.
#[derive(Clone, Copy)]
struct At {
    partition: i32,
    cause: Cause,
}

impl Processor for ProfileStage {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        for (i, m) in batch.iter().enumerate() {
            let at = At {
                partition: m.partition(),
                cause: Cause::Input(i),
            };
            let resolved: Resolved = match serde_json::from_slice(m.payload().unwrap_or_default()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(partition = m.partition(), offset = m.offset(), error = %e, "profile.resolved record cannot be read; skipped");
                    metrics::counter!("cdp_profile_unreadable_total").increment(1);
                    continue;
                }
            };
            match resolved {
                Resolved::Item {
                    profile_id,
                    seq,
                    identities,
                    item,
                } => self.item(ctx, at, &profile_id, seq, identities, *item)?,
                Resolved::Graph {
                    profile_id,
                    org_id,
                    sandbox,
                    identities,
                    ..
                } => {
                    let mut meta = self
                        .meta(ctx, at, &profile_id)?
                        .unwrap_or_else(|| Meta::new(org_id, sandbox));
                    meta.identities = identities;
                    self.save(ctx, at, &profile_id, &meta)?;
                    self.update(
                        ctx,
                        at,
                        &profile_id,
                        &meta,
                        Change::Identities,
                        None,
                        Vec::new(),
                        Vec::new(),
                    )?;
                }
                Resolved::Merged {
                    profile_id,
                    org_id,
                    sandbox,
                    into,
                    ..
                } => self.merged(ctx, at, &profile_id, org_id, sandbox, into)?,
                Resolved::Split {
                    profile_id,
                    org_id,
                    sandbox,
                    moved,
                    identities,
                    ..
                } => self.split(ctx, at, &profile_id, org_id, sandbox, moved, identities)?,
            }
        }
        Ok(())
    }
}

impl Meta {
    fn new(org_id: String, sandbox: String) -> Self {
        Self {
            org_id,
            sandbox,
            identities: Vec::new(),
            event_count: 0,
            flagged: false,
            expires_ms: None,
            refused: Vec::new(),
        }
    }
}

impl ProfileStage {
    fn meta(&self, ctx: &Context<'_>, at: At, profile: &str) -> Result<Option<Meta>, ProcessError> {
        match ctx.get(at.partition, &keys::meta(profile))? {
            Some(v) => json::from_slice(&v, "a stored profile").map(Some),
            None => Ok(None),
        }
    }

    fn save(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        meta: &Meta,
    ) -> Result<(), ProcessError> {
        let value = json::to_vec(meta, "a profile")?;
        ctx.put(at.cause, &keys::meta(profile), value);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn update(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        meta: &Meta,
        change: Change,
        attributes: Option<Value>,
        removed_events: Vec<String>,
        refused: Vec<Refused>,
    ) -> Result<(), ProcessError> {
        let update = ProfileUpdate {
            profile_id: profile.to_string(),
            org_id: meta.org_id.clone(),
            sandbox: meta.sandbox.clone(),
            time_ms: now_ms(),
            change,
            identities: meta.identities.clone(),
            attributes,
            removed_events,
            event_count: meta.event_count,
            flagged: meta.flagged,
            refused,
        };
        let value = json::to_vec(&update, "a profile update")?;
        ctx.emit(
            at.cause,
            Output::new(&self.updates_topic, profile.as_bytes().to_vec(), value),
        );
        Ok(())
    }

    /// The merged attributes of a profile under its sandbox's default merge policy.
    fn attributes(
        &self,
        ctx: &Context<'_>,
        at: At,
        profile: &str,
        meta: &Meta,
    ) -> Result<Value, ProcessError> {
        let mut fragments = Vec::new();
        for (_, v) in ctx.scan(at.partition, &keys::fragments(profile))? {
            fragments.push(json::from_slice::<Fragment>(&v, "a stored fragment")?);
        }
        let policy = self
            .catalog
            .read()
            .default_merge_policy(&meta.org_id, &meta.sandbox)
            .map(|p| p.attribute_merge.clone())
            .unwrap_or_else(default_policy);
        Ok(merge(&fragments, &policy))
    }

    fn item(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        seq: u64,
        identities: Option<Vec<Identity>>,
        item: Item,
    ) -> Result<(), ProcessError> {
        let Some(owner) = item.owner.clone() else {
            return Err(ProcessError::Fatal(format!(
                "item {} reached profile {profile} without an owner",
                item.item_id
            )));
        };
        let mut meta = self
            .meta(ctx, at, profile)?
            .unwrap_or_else(|| Meta::new(item.org_id.clone(), item.sandbox.clone()));
        let mut changed = false;
        if let Some(ids) = identities {
            changed = meta.identities != ids;
            meta.identities = ids;
        }
        if meta.identities.is_empty() {
            meta.identities.push(owner.clone());
            changed = true;
        }
        meta.refused.extend(item.refused.iter().cloned());
        let excess = meta.refused.len().saturating_sub(AUDIT);
        meta.refused.drain(..excess);
        match item.kind {
            ItemKind::Event => self.event(ctx, at, profile, meta, changed, owner, item),
            ItemKind::Record => self.record(ctx, at, profile, meta, seq, owner, item),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        mut meta: Meta,
        changed: bool,
        owner: Identity,
        item: Item,
    ) -> Result<(), ProcessError> {
        let now = now_ms();
        let ttl = self.ttl_of(&item.dataset_id);
        let key = keys::event(profile, item.timestamp_ms, &item.item_id);
        let late = item.timestamp_ms < now - ttl;
        let duplicate = !late && ctx.get(at.partition, &key)?.is_some();
        if late || duplicate {
            if late {
                metrics::counter!("cdp_profile_events_past_ttl_total").increment(1);
            } else {
                metrics::counter!("cdp_profile_events_duplicate_total").increment(1);
            }
            self.save(ctx, at, profile, &meta)?;
            if changed || !item.refused.is_empty() {
                self.update(
                    ctx,
                    at,
                    profile,
                    &meta,
                    Change::Identities,
                    None,
                    Vec::new(),
                    item.refused,
                )?;
            }
            return Ok(());
        }
        let stored = StoredEvent {
            item_id: item.item_id,
            dataset_id: item.dataset_id,
            timestamp_ms: item.timestamp_ms,
            ingest_ms: item.ingest_ms,
            owner,
            identities: item.identities.into_iter().map(|(i, _)| i).collect(),
            entity: item.entity,
        };
        let value = json::to_vec(&stored, "an event")?;
        ctx.put(at.cause, &key, value);
        meta.event_count += 1;
        let expires = stored.timestamp_ms + ttl;
        meta.expires_ms = Some(meta.expires_ms.map_or(expires, |e| e.min(expires)));
        let removed = self.expire(ctx, at, profile, &mut meta, now)?;
        if meta.event_count > self.max_events && !meta.flagged {
            tracing::warn!(
                profile,
                events = meta.event_count,
                limit = self.max_events,
                "profile over its event limit: flagged, segmentation skips it"
            );
            metrics::counter!("cdp_profile_flagged_total").increment(1);
        }
        meta.flagged = meta.event_count > self.max_events;
        self.save(ctx, at, profile, &meta)?;
        metrics::counter!("cdp_profile_events_total").increment(1);
        self.update(
            ctx,
            at,
            profile,
            &meta,
            Change::Event { event: stored },
            None,
            removed,
            item.refused,
        )
    }

    /// How long profiles keep events of `dataset`: its own setting, else the stage's; never
    /// less than a day.
    fn ttl_of(&self, dataset: &str) -> i64 {
        self.catalog
            .read()
            .datasets
            .get(dataset)
            .and_then(|d| d.profile_event_ttl_days)
            .map_or(self.ttl_ms, |days| i64::from(days) * ONE_DAY_MS)
            .max(ONE_DAY_MS)
    }

    /// Drops the events past their dataset's time-to-live at `now`; says which.
    fn expire(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        meta: &mut Meta,
        now: i64,
    ) -> Result<Vec<String>, ProcessError> {
        if meta.expires_ms.is_none_or(|e| e > now) {
            return Ok(Vec::new());
        }
        // No time-to-live is shorter than a day, so events newer than this cannot have expired:
        // the scan (oldest first) stops at the first of them.
        let floor = now - ONE_DAY_MS;
        let mut removed = Vec::new();
        let mut next: Option<i64> = None;
        let prefix = keys::events(profile);
        for (k, v) in ctx.scan(at.partition, &prefix)? {
            let Some(t) = keys::event_time(profile, &k) else {
                continue;
            };
            if t >= floor {
                next = Some(next.map_or(t + ONE_DAY_MS, |n| n.min(t + ONE_DAY_MS)));
                break;
            }
            let event: StoredEvent = json::from_slice(&v, "a stored event")?;
            let expires = t + self.ttl_of(&event.dataset_id);
            if expires <= now {
                ctx.delete(at.cause, &k);
                removed.push(event.item_id);
            } else {
                next = Some(next.map_or(expires, |n| n.min(expires)));
            }
        }
        meta.expires_ms = next;
        meta.event_count = meta.event_count.saturating_sub(removed.len() as u32);
        if !removed.is_empty() {
            metrics::counter!("cdp_profile_events_expired_total").increment(removed.len() as u64);
        }
        Ok(removed)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        meta: Meta,
        seq: u64,
        owner: Identity,
        item: Item,
    ) -> Result<(), ProcessError> {
        let attributes: Value = serde_json::from_str(item.entity.get())
            .map_err(|e| fatal("a profile record cannot be read", e))?;
        let fragment = Fragment {
            dataset_id: item.dataset_id,
            owner,
            timestamp_ms: item.timestamp_ms,
            ingest_ms: item.ingest_ms,
            seq: item
                .transfer
                .as_ref()
                .and_then(|t| t.origin_seq)
                .unwrap_or(seq),
            attributes,
        };
        let key = keys::fragment(profile, &fragment.dataset_id, &fragment.owner);
        let newer = match ctx.get(at.partition, &key)? {
            Some(v) => {
                let old: Fragment = json::from_slice(&v, "a stored fragment")?;
                (fragment.ingest_ms, fragment.seq) >= (old.ingest_ms, old.seq)
            }
            None => true,
        };
        if newer {
            let value = json::to_vec(&fragment, "a fragment")?;
            ctx.put(at.cause, &key, value);
        }
        let merged = self.attributes(ctx, at, profile, &meta)?;
        self.save(ctx, at, profile, &meta)?;
        metrics::counter!("cdp_profile_records_total").increment(1);
        self.update(
            ctx,
            at,
            profile,
            &meta,
            Change::Record { fragment },
            Some(merged),
            Vec::new(),
            item.refused,
        )
    }

    /// Hands an event or fragment back to the identity stage, to be placed again.
    fn hand_back(&self, ctx: &mut Context<'_>, at: At, item: &Item) -> Result<(), ProcessError> {
        let value = json::to_vec(item, "an item handed back")?;
        let key = item.owner.as_ref().map(|o| o.to_string().into_bytes());
        ctx.emit(
            at.cause,
            json::to_partition_zero(&self.sequence_topic, key, value),
        );
        metrics::counter!("cdp_profile_items_handed_back_total").increment(1);
        Ok(())
    }

    /// Hands back the events and fragments whose owner `leaves`; says which events left and
    /// whether a fragment did.
    fn carve(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        meta: &Meta,
        hint: &str,
        leaves: impl Fn(&Identity) -> bool,
    ) -> Result<(Vec<String>, bool), ProcessError> {
        let transfer = |origin_seq| {
            Some(Transfer {
                from: profile.to_string(),
                hint: hint.to_string(),
                origin_seq,
            })
        };
        let mut removed = Vec::new();
        for (k, v) in ctx.scan(at.partition, &keys::events(profile))? {
            let e: StoredEvent = json::from_slice(&v, "a stored event")?;
            if !leaves(&e.owner) {
                continue;
            }
            let item = Item {
                kind: ItemKind::Event,
                org_id: meta.org_id.clone(),
                sandbox: meta.sandbox.clone(),
                dataset_id: e.dataset_id,
                item_id: e.item_id.clone(),
                timestamp_ms: e.timestamp_ms,
                ingest_ms: e.ingest_ms,
                identities: Vec::new(),
                refused: Vec::new(),
                owner: Some(e.owner),
                transfer: transfer(None),
                entity: e.entity,
            };
            self.hand_back(ctx, at, &item)?;
            ctx.delete(at.cause, &k);
            removed.push(e.item_id);
        }
        let mut fragments_left = false;
        for (k, v) in ctx.scan(at.partition, &keys::fragments(profile))? {
            let f: Fragment = json::from_slice(&v, "a stored fragment")?;
            if !leaves(&f.owner) {
                continue;
            }
            let entity = RawValue::from_string(f.attributes.to_string())
                .map_err(|e| fatal("a fragment cannot be handed back", e))?;
            let item = Item {
                kind: ItemKind::Record,
                org_id: meta.org_id.clone(),
                sandbox: meta.sandbox.clone(),
                dataset_id: f.dataset_id,
                item_id: String::new(),
                timestamp_ms: f.timestamp_ms,
                ingest_ms: f.ingest_ms,
                identities: Vec::new(),
                refused: Vec::new(),
                owner: Some(f.owner),
                transfer: transfer(Some(f.seq)),
                entity,
            };
            self.hand_back(ctx, at, &item)?;
            ctx.delete(at.cause, &k);
            fragments_left = true;
        }
        Ok((removed, fragments_left))
    }

    fn merged(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        org_id: String,
        sandbox: String,
        into: String,
    ) -> Result<(), ProcessError> {
        let mut meta = self
            .meta(ctx, at, profile)?
            .unwrap_or_else(|| Meta::new(org_id, sandbox));
        let (removed, _) = self.carve(ctx, at, profile, &meta, &into, |_| true)?;
        ctx.delete(at.cause, &keys::meta(profile));
        meta.identities.clear();
        meta.event_count = 0;
        meta.flagged = false;
        metrics::counter!("cdp_profile_merged_total").increment(1);
        tracing::debug!(profile, into = %into, events = removed.len(), "profile merged into another");
        self.update(
            ctx,
            at,
            profile,
            &meta,
            Change::Merged { into },
            None,
            removed,
            Vec::new(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn split(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        org_id: String,
        sandbox: String,
        moved: Vec<Identity>,
        identities: Vec<Identity>,
    ) -> Result<(), ProcessError> {
        let mut meta = self
            .meta(ctx, at, profile)?
            .unwrap_or_else(|| Meta::new(org_id, sandbox));
        meta.identities = identities;
        let (removed, fragments_left) =
            self.carve(ctx, at, profile, &meta, profile, |o| moved.contains(o))?;
        meta.event_count = meta.event_count.saturating_sub(removed.len() as u32);
        meta.flagged = meta.event_count > self.max_events;
        let attributes = if fragments_left {
            Some(self.attributes(ctx, at, profile, &meta)?)
        } else {
            None
        };
        self.save(ctx, at, profile, &meta)?;
        metrics::counter!("cdp_profile_split_total").increment(1);
        self.update(
            ctx,
            at,
            profile,
            &meta,
            Change::Split { moved },
            attributes,
            removed,
            Vec::new(),
        )
    }
}
