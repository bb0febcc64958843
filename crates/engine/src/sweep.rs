//! Work the engine starts on its own over the profiles it holds, a bounded number of profiles
//! per turn of its loop (`segment.sweep_chunk`), so each transaction stays small whatever the
//! number of profiles; where a sweep stands is kept in the partition's state, so a restart
//! goes on from there.
//!
//! - **Definition changes.** A sandbox's streaming definitions changed: its profiles (one key
//!   prefix, no other sandbox's) are evaluated with every definition; memberships of
//!   definitions that are gone or no longer streaming end (`exited`, trigger `definition`), so
//!   destinations learn it. A profile that changes before the sweep reaches it is evaluated
//!   the same way then (it carries the fingerprint of the definitions it was evaluated with).
//! - **Schedules.** An active `batch_segmentation` schedule whose daily time passed since the
//!   partition last ran it evaluates the sandbox's batch definitions on every profile, and the
//!   streaming definitions reading the segments that changed.
//! - **Activations.** A flow that selects a segment it did not before exports the segment's
//!   members already held (AEP's first export, statuses `existing`).

use std::collections::{BTreeMap, BTreeSet};

use cdp_contract::clock::now_ms;
use cdp_contract::records::{Status, Trigger};
use cdp_pql::incremental::Changes;
use cdp_stage::{Cause, Context, ProcessError};
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::activation::{self, Snapshot};
use crate::definitions::Definitions;
use crate::keys;
use crate::segments::Touch;
use crate::stage::{fatal, At, Engine};

/// Where a sandbox's definition sweep stands in a partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Mark {
    /// The definitions (fingerprint) every profile was evaluated with.
    done: Option<u64>,
    /// The definitions a sweep in progress evaluates, and the last profile it reached.
    target: Option<u64>,
    cursor: Option<Vec<u8>>,
    /// Profiles the sweep in progress evaluated so far.
    evaluated: u64,
}

/// Where a schedule's run stands in a partition.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ScheduleMark {
    /// The firing last completed (epoch ms).
    ran: Option<i64>,
    /// The firing in progress, and the last profile it reached.
    firing: Option<i64>,
    cursor: Option<Vec<u8>>,
    evaluated: u64,
}

/// What the flows selected when the partition's members were last exported for newly
/// selected segments, and a first export in progress.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct ActivationMark {
    selections: BTreeMap<String, BTreeSet<String>>,
    target: Option<BTreeMap<String, BTreeSet<String>>>,
    cursor: Option<Vec<u8>>,
    exported: u64,
}

fn read<T: for<'de> Deserialize<'de> + Default>(
    ctx: &Context<'_>,
    partition: i32,
    key: &[u8],
) -> Result<T, ProcessError> {
    match ctx.get(partition, key)? {
        Some(v) => serde_json::from_slice(&v).map_err(|e| fatal("a sweep mark cannot be read", e)),
        None => Ok(T::default()),
    }
}

fn write<T: Serialize>(
    ctx: &mut Context<'_>,
    partition: i32,
    key: &[u8],
    value: &T,
) -> Result<(), ProcessError> {
    let bytes =
        serde_json::to_vec(value).map_err(|e| fatal("a sweep mark cannot be written", e))?;
    ctx.put(Cause::Timer(partition), key, bytes);
    Ok(())
}

/// One turn's sweeping; true when it did some (more may remain).
pub(crate) fn sweep(
    engine: &mut Engine,
    partitions: &[i32],
    ctx: &mut Context<'_>,
) -> Result<bool, ProcessError> {
    let mut budget = engine.settings.segment.sweep_chunk.max(1);
    let mut did = definitions(engine, partitions, ctx, &mut budget)?;
    if budget > 0 {
        did |= schedules(engine, partitions, ctx, &mut budget)?;
    }
    if budget > 0 {
        did |= activations(engine, partitions, ctx, &mut budget)?;
    }
    Ok(did)
}

fn definitions(
    engine: &mut Engine,
    partitions: &[i32],
    ctx: &mut Context<'_>,
    budget: &mut usize,
) -> Result<bool, ProcessError> {
    let with_definitions = Definitions::sandboxes_with_definitions(&engine.catalog);
    let mut did = false;
    for &p in partitions {
        let mut sandboxes = with_definitions.clone();
        for (k, _) in ctx.scan(p, keys::SANDBOX_MARKS)? {
            if let Some(s) = keys::parse_sandbox_mark(&k) {
                sandboxes.insert(s);
            }
        }
        for (org, sandbox) in sandboxes {
            if *budget == 0 {
                return Ok(true);
            }
            let target = engine
                .definitions
                .sandbox(&engine.catalog, &org, &sandbox)
                .fingerprint();
            let mark_key = keys::sandbox_mark(&org, &sandbox);
            let mut mark: Mark = read(ctx, p, &mark_key)?;
            if mark.done == Some(target) && mark.target.is_none() {
                continue;
            }
            if mark.target != Some(target) {
                mark.target = Some(target);
                mark.cursor = None;
                mark.evaluated = 0;
            }
            let at = At {
                partition: p,
                cause: Cause::Timer(p),
            };
            let prefix = keys::sandbox_profiles(&org, &sandbox);
            let found = ctx.keys_after(p, &prefix, mark.cursor.as_deref(), *budget)?;
            let done = found.len() < *budget;
            *budget -= found.len();
            for key in &found {
                let Some((_, _, id)) = keys::parse_profile(key) else {
                    continue;
                };
                let id = id.to_string();
                let mut work = engine.load_key(ctx, at, key.clone(), &org, &sandbox, &id)?;
                if work.fresh || work.record.definitions == target {
                    continue;
                }
                engine.finish(ctx, at, &mut work, Touch::new(Trigger::Definition))?;
                mark.evaluated += 1;
            }
            mark.cursor = found.last().cloned();
            if done {
                tracing::info!(partition = p, org = %org, sandbox = %sandbox, profiles = mark.evaluated, "segment definitions changed: the sandbox's profiles evaluated");
                metrics::counter!("cdp_engine_sweeps_total").increment(1);
                mark = Mark {
                    done: Some(target),
                    ..Mark::default()
                };
            }
            write(ctx, p, &mark_key, &mark)?;
            did = true;
        }
    }
    Ok(did)
}

/// Batch segmentation on the schedules' daily times.
fn schedules(
    engine: &mut Engine,
    partitions: &[i32],
    ctx: &mut Context<'_>,
    budget: &mut usize,
) -> Result<bool, ProcessError> {
    let schedules: Vec<cdp_catalog::Schedule> = engine
        .catalog
        .read()
        .schedules
        .values()
        .filter(|s| s.state == "active" && s.kind == "batch_segmentation")
        .cloned()
        .collect();
    let now = now_ms();
    let Some(now_dt) = Utc.timestamp_millis_opt(now).single() else {
        return Ok(false);
    };
    let mut did = false;
    for schedule in schedules {
        let Ok(daily) = cdp_catalog::schedule::Daily::parse(&schedule.schedule) else {
            continue;
        };
        let fired = daily.last_before(now_dt).timestamp_millis();
        // A firing before the schedule was set up (or last changed) is not owed.
        if fired < schedule.update_epoch * 1000 {
            continue;
        }
        let batch = engine.definitions.batch(
            &engine.catalog,
            &schedule.org_id,
            &schedule.sandbox,
            &schedule.segments,
        );
        let marker = keys::schedule_run(&schedule.id);
        for &p in partitions {
            if *budget == 0 {
                return Ok(true);
            }
            let mut mark: ScheduleMark = read(ctx, p, &marker)?;
            if mark.ran.is_some_and(|r| r >= fired) {
                continue;
            }
            if mark.firing != Some(fired) {
                mark.firing = Some(fired);
                mark.cursor = None;
                mark.evaluated = 0;
            }
            let at = At {
                partition: p,
                cause: Cause::Timer(p),
            };
            let prefix = keys::sandbox_profiles(&schedule.org_id, &schedule.sandbox);
            let found = ctx.keys_after(p, &prefix, mark.cursor.as_deref(), *budget)?;
            let done = found.len() < *budget;
            *budget -= found.len();
            for key in &found {
                let Some((_, _, id)) = keys::parse_profile(key) else {
                    continue;
                };
                let id = id.to_string();
                let mut work = engine.load_key(
                    ctx,
                    at,
                    key.clone(),
                    &schedule.org_id,
                    &schedule.sandbox,
                    &id,
                )?;
                if work.fresh {
                    continue;
                }
                mark.evaluated += 1;
                let record = &mut work.record;
                let mut state = record.segments();
                let values: Vec<Value> = record
                    .events
                    .iter()
                    .filter(|e| !e.bot)
                    .map(|e| record.event_value(e))
                    .collect();
                let times = record
                    .events
                    .iter()
                    .filter(|e| !e.bot)
                    .map(|e| Utc.timestamp_millis_opt(e.ts).single())
                    .collect();
                let mut cx = cdp_pql::Context::with_times(
                    &record.attributes,
                    &values,
                    times,
                    Default::default(),
                    now_dt,
                );
                let outcome = batch.evaluate(&mut cx, &mut state, &Changes::everything());
                record.set_segments(state);
                let mut touch = Touch::new(Trigger::Schedule);
                for t in outcome.transitions {
                    if t.entered {
                        record.scheduled.push(t.segment.clone());
                    } else {
                        record.scheduled.retain(|s| *s != t.segment);
                    }
                    let status = if t.entered {
                        Status::Realized
                    } else {
                        Status::Exited
                    };
                    let change = engine.change(
                        &work.id,
                        record,
                        &t.segment,
                        status,
                        t.since_ms,
                        now,
                        Trigger::Schedule,
                        None,
                    );
                    touch.segments.push(t.segment);
                    touch.prior.push(change);
                }
                if touch.prior.is_empty() {
                    continue;
                }
                // Streaming definitions reading a batch segment follow it now, not at the
                // profile's next change.
                engine.finish(ctx, at, &mut work, touch)?;
            }
            mark.cursor = found.last().cloned();
            if done {
                tracing::info!(schedule = %schedule.id, partition = p, profiles = mark.evaluated, definitions = batch.len(), "batch segmentation ran");
                metrics::counter!("cdp_engine_batch_runs_total").increment(1);
                mark = ScheduleMark {
                    ran: Some(fired),
                    ..ScheduleMark::default()
                };
            }
            write(ctx, p, &marker, &mark)?;
            did = true;
        }
    }
    Ok(did)
}

/// First exports of the members of segments a flow newly selects.
fn activations(
    engine: &mut Engine,
    partitions: &[i32],
    ctx: &mut Context<'_>,
    budget: &mut usize,
) -> Result<bool, ProcessError> {
    let now = activation::selections(&engine.catalog);
    let mut did = false;
    for &p in partitions {
        if *budget == 0 {
            return Ok(true);
        }
        let stored = ctx.get(p, keys::ACTIVATED)?;
        let mut mark: ActivationMark = match &stored {
            Some(v) => serde_json::from_slice(v).unwrap_or_default(),
            None => ActivationMark::default(),
        };
        if stored.is_some() && mark.selections == now && mark.target.is_none() {
            continue;
        }
        if mark.target.as_ref() != Some(&now) {
            mark.target = Some(now.clone());
            mark.cursor = None;
            mark.exported = 0;
        }
        let added = activation::added(&mark.selections, &now);
        let at = At {
            partition: p,
            cause: Cause::Timer(p),
        };
        let mut done = true;
        if !added.is_empty() {
            let found = ctx.keys_after(p, b"p", mark.cursor.as_deref(), *budget)?;
            done = found.len() < *budget;
            *budget -= found.len();
            for key in &found {
                let Some((org, sandbox, id)) = keys::parse_profile(key) else {
                    continue;
                };
                let (org, sandbox, id) = (org.to_string(), sandbox.to_string(), id.to_string());
                let work = engine.load_key(ctx, at, key.clone(), &org, &sandbox, &id)?;
                let since = work.record.members_map();
                if !since.keys().any(|s| added.values().any(|a| a.contains(s))) {
                    continue;
                }
                let flows = engine
                    .definitions
                    .sandbox(&engine.catalog, &org, &sandbox)
                    .flows
                    .clone();
                for flow in &flows {
                    // Members that qualified after the flow changed were exported as they
                    // entered (the change and the sweep may be seen in either order).
                    let fresh = added.get(&flow.flow_id);
                    if !since.iter().any(|(s, at)| {
                        fresh.is_some_and(|f| f.contains(s)) && *at < flow.updated_at
                    }) {
                        continue;
                    }
                    let snapshot = Snapshot {
                        identities: &work.record.identities,
                        attributes: &work.record.attributes,
                    };
                    let export = activation::initial(flow, snapshot, &since);
                    engine.write_export(ctx, at, &work.id, export)?;
                    mark.exported += 1;
                }
            }
            mark.cursor = found.last().cloned();
        }
        if done {
            if mark.exported > 0 {
                tracing::info!(
                    partition = p,
                    exports = mark.exported,
                    "flows selected new segments: their members exported"
                );
            }
            mark = ActivationMark {
                selections: now.clone(),
                ..ActivationMark::default()
            };
        }
        write(ctx, p, keys::ACTIVATED, &mark)?;
        did = true;
    }
    Ok(did)
}
