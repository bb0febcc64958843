//! The segment stage: for each profile, what its segments need — attributes, identities, the
//! events of the lookback window, current memberships — in the runtime's state (partition of
//! `profile.updates` = partition of the profile). Every update re-evaluates the sandbox's
//! streaming definitions; a membership that changes is written to both membership topics in
//! the same transaction as the state. A timer per profile, at the earliest instant an answer
//! can change with no new data, makes exits happen on time on an idle partition.
//!
//! State per profile id: `a<id>` the profile, `e<id>/<timestamp, 16 hex>/<event id>` its
//! events, `m<id>` its memberships; the timer's key is the profile id. Per partition: `s`, the
//! fingerprint of the definitions its profiles were last all evaluated with.

use std::collections::{BTreeMap, HashSet};

use cdp_catalog::schedule::Daily;
use cdp_catalog::CatalogView;
use cdp_contract::clock::now_ms;
use cdp_contract::records::{Change, Identity, MembershipChange, ProfileUpdate, Status, Trigger};
use cdp_pql::Context as Query;
use cdp_stage::{Cause, Context, Output, ProcessError, Processor, Timer};
use chrono::{TimeZone, Utc};
use rdkafka::message::{Message, OwnedMessage};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::activation;
use crate::avro::MembershipAvro;
use crate::definitions::Definitions;

/// The state key of the definitions' fingerprint a partition was last swept with.
const SWEPT: &[u8] = b"s";
/// The state key of what the flows selected when a partition's members were last exported for
/// newly selected segments ([`activation::selections`]).
const ACTIVATED: &[u8] = b"f";

/// What the stage keeps of a profile besides its events.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    org_id: String,
    sandbox: String,
    identities: Vec<Identity>,
    attributes: Value,
    flagged: bool,
}

impl Doc {
    fn snapshot(&self) -> activation::Snapshot<'_> {
        activation::Snapshot {
            identities: &self.identities,
            attributes: &self.attributes,
        }
    }
}

/// A current membership: since when the profile qualifies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Member {
    last_qualification_time: i64,
}

pub struct SegmentStage {
    pub catalog: CatalogView,
    pub definitions: Definitions,
    pub avro: MembershipAvro,
    pub avro_topic: String,
    pub json_topic: String,
    /// Where activation writes the documents destination flows deliver.
    pub exports_topic: String,
    pub lookback_ms: i64,
    pub bot_events_per_second: u32,
}

fn fatal(what: &str, e: impl std::fmt::Display) -> ProcessError {
    ProcessError::Fatal(format!("{what}: {e}"))
}

fn key(kind: u8, profile: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + profile.len());
    k.push(kind);
    k.extend_from_slice(profile.as_bytes());
    k
}

fn events_prefix(profile: &str) -> Vec<u8> {
    let mut k = key(b'e', profile);
    k.push(b'/');
    k
}

fn event_key(profile: &str, ts: i64, id: &str) -> Vec<u8> {
    let mut k = events_prefix(profile);
    k.extend_from_slice(format!("{:016x}/", ts.max(0)).as_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// `(timestamp, event id)` of an event key.
fn event_of_key(profile: &str, k: &[u8]) -> Option<(i64, String)> {
    let start = 2 + profile.len();
    let ts = i64::from_str_radix(std::str::from_utf8(k.get(start..start + 16)?).ok()?, 16).ok()?;
    let id = String::from_utf8_lossy(k.get(start + 17..)?).into_owned();
    Some((ts, id))
}

/// The ids of every profile a partition holds.
fn held_profiles(ctx: &Context<'_>, partition: i32) -> Result<Vec<String>, ProcessError> {
    Ok(ctx
        .scan(partition, b"a")?
        .into_iter()
        .filter_map(|(k, _)| String::from_utf8(k[1..].to_vec()).ok())
        .collect())
}

/// One unit of work: the profile's partition and what caused it.
#[derive(Clone, Copy)]
struct At {
    partition: i32,
    cause: Cause,
}

impl Processor for SegmentStage {
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
            let update: ProfileUpdate = match serde_json::from_slice(
                m.payload().unwrap_or_default(),
            ) {
                Ok(u) => u,
                Err(e) => {
                    tracing::error!(partition = m.partition(), offset = m.offset(), error = %e, "profile update cannot be read; skipped");
                    metrics::counter!("cdp_segment_unreadable_total").increment(1);
                    continue;
                }
            };
            self.update(ctx, at, update)?;
        }
        Ok(())
    }

    /// A new or changed streaming definition is evaluated for every profile already held, not
    /// only for profiles that receive new events (seed 003's baseline). Each partition keeps
    /// the fingerprint of the definitions it was last swept with (`s`), so a restart sweeps
    /// only when the definitions changed meanwhile.
    async fn sweep(
        &mut self,
        partitions: &[i32],
        ctx: &mut Context<'_>,
    ) -> Result<bool, ProcessError> {
        let fingerprint = self
            .definitions
            .fingerprint(&self.catalog)
            .to_be_bytes()
            .to_vec();
        let mut swept = false;
        for &p in partitions {
            if ctx.get(p, SWEPT)?.as_deref() == Some(fingerprint.as_slice()) {
                continue;
            }
            let at = At {
                partition: p,
                cause: Cause::Timer(p),
            };
            let profiles = held_profiles(ctx, p)?;
            for profile in &profiles {
                if let Some(doc) = self.doc(ctx, at, profile)? {
                    self.evaluate(ctx, at, profile, &doc, None, Trigger::Definition, None)?;
                }
            }
            tracing::info!(
                partition = p,
                profiles = profiles.len(),
                "segment definitions changed: profiles evaluated"
            );
            metrics::counter!("cdp_segment_sweeps_total").increment(1);
            ctx.put(at.cause, SWEPT, fingerprint.clone());
            swept = true;
        }
        swept |= self.activated(partitions, ctx)?;
        swept |= self.scheduled(partitions, ctx)?;
        Ok(swept)
    }

    async fn on_timers(
        &mut self,
        timers: &[Timer],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        for t in timers {
            let Ok(profile) = String::from_utf8(t.key.clone()) else {
                continue;
            };
            let at = At {
                partition: t.partition,
                cause: Cause::Timer(t.partition),
            };
            let lateness = now_ms() - t.due_ms;
            metrics::histogram!("cdp_segment_timer_lateness_seconds")
                .record(lateness.max(0) as f64 / 1000.0);
            if let Some(doc) = self.doc(ctx, at, &profile)? {
                self.evaluate(ctx, at, &profile, &doc, None, Trigger::Timer, None)?;
            }
        }
        Ok(())
    }
}

impl SegmentStage {
    /// Batch segmentation: an active `batch_segmentation` schedule whose daily time passed since
    /// a partition last ran it evaluates the sandbox's batch definitions over every profile of
    /// the partition. Each partition keeps when it last ran each schedule (`b<schedule id>`), so
    /// a restart neither misses nor repeats a run.
    fn scheduled(
        &mut self,
        partitions: &[i32],
        ctx: &mut Context<'_>,
    ) -> Result<bool, ProcessError> {
        let schedules: Vec<cdp_catalog::Schedule> = self
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
        let mut ran = false;
        for schedule in schedules {
            let Ok(daily) = Daily::parse(&schedule.schedule) else {
                continue;
            };
            let fired = daily.last_before(now_dt).timestamp_millis();
            // A firing before the schedule was set up (or last changed) is not owed.
            if fired < schedule.update_epoch * 1000 {
                continue;
            }
            let mut marker = b"b".to_vec();
            marker.extend_from_slice(schedule.id.as_bytes());
            let definitions = self.definitions.batch(
                &self.catalog,
                &schedule.org_id,
                &schedule.sandbox,
                &schedule.segments,
            );
            for &p in partitions {
                let last = ctx
                    .get(p, &marker)?
                    .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                    .map(i64::from_be_bytes);
                if last.is_some_and(|l| l >= fired) {
                    continue;
                }
                let at = At {
                    partition: p,
                    cause: Cause::Timer(p),
                };
                let profiles = held_profiles(ctx, p)?;
                let mut evaluated = 0usize;
                for profile in &profiles {
                    let Some(doc) = self.doc(ctx, at, profile)? else {
                        continue;
                    };
                    if doc.org_id != schedule.org_id || doc.sandbox != schedule.sandbox {
                        continue;
                    }
                    let changed = self.evaluate_with(
                        ctx,
                        at,
                        profile,
                        &doc,
                        None,
                        &definitions,
                        Trigger::Schedule,
                        None,
                    )?;
                    if changed {
                        // Streaming definitions that read a batch segment (`inSegment`) follow
                        // its memberships now, not at the profile's next update.
                        self.evaluate(ctx, at, profile, &doc, None, Trigger::Schedule, None)?;
                    }
                    evaluated += 1;
                }
                tracing::info!(schedule = %schedule.id, partition = p, profiles = evaluated, definitions = definitions.len(), "batch segmentation ran");
                metrics::counter!("cdp_segment_batch_runs_total").increment(1);
                ctx.put(at.cause, &marker, fired.to_be_bytes().to_vec());
                ran = true;
            }
        }
        Ok(ran)
    }

    /// A flow that selects a segment it did not before exports the segment's members already
    /// held (AEP's first export after activation); later changes export as they happen.
    fn activated(
        &mut self,
        partitions: &[i32],
        ctx: &mut Context<'_>,
    ) -> Result<bool, ProcessError> {
        let now = activation::selections(&self.catalog);
        let value =
            serde_json::to_vec(&now).map_err(|e| fatal("flow selections cannot be written", e))?;
        let mut ran = false;
        for &p in partitions {
            let stored = ctx.get(p, ACTIVATED)?;
            if stored.as_deref() == Some(value.as_slice()) {
                continue;
            }
            let before = stored
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default();
            let added = activation::added(&before, &now);
            let at = At {
                partition: p,
                cause: Cause::Timer(p),
            };
            let mut exported = 0usize;
            if !added.is_empty() {
                for profile in held_profiles(ctx, p)? {
                    let members = self.members(ctx, at, &profile)?;
                    if !members
                        .keys()
                        .any(|s| added.values().any(|a| a.contains(s)))
                    {
                        continue;
                    }
                    let Some(doc) = self.doc(ctx, at, &profile)? else {
                        continue;
                    };
                    let since: BTreeMap<String, i64> = members
                        .iter()
                        .map(|(s, m)| (s.clone(), m.last_qualification_time))
                        .collect();
                    for flow in activation::activations(&self.catalog, &doc.org_id, &doc.sandbox) {
                        // Members that qualified after the flow changed were exported as they
                        // entered (the change and the sweep may be seen in either order).
                        let fresh = added.get(&flow.flow_id);
                        if !since.iter().any(|(s, at)| {
                            fresh.is_some_and(|f| f.contains(s)) && *at < flow.updated_at
                        }) {
                            continue;
                        }
                        let export = activation::initial(&flow, doc.snapshot(), &since);
                        self.write_export(ctx, at, &profile, export)?;
                        exported += 1;
                    }
                }
            }
            if exported > 0 {
                tracing::info!(
                    partition = p,
                    exports = exported,
                    "flows selected new segments: their members exported"
                );
            }
            ctx.put(at.cause, ACTIVATED, value.clone());
            ran = true;
        }
        Ok(ran)
    }

    fn doc(&self, ctx: &Context<'_>, at: At, profile: &str) -> Result<Option<Doc>, ProcessError> {
        match ctx.get(at.partition, &key(b'a', profile))? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| fatal("a stored profile cannot be read", e)),
            None => Ok(None),
        }
    }

    fn members(
        &self,
        ctx: &Context<'_>,
        at: At,
        profile: &str,
    ) -> Result<BTreeMap<String, Member>, ProcessError> {
        match ctx.get(at.partition, &key(b'm', profile))? {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| fatal("stored memberships cannot be read", e)),
            None => Ok(BTreeMap::new()),
        }
    }

    fn update(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        u: ProfileUpdate,
    ) -> Result<(), ProcessError> {
        let profile = u.profile_id.clone();
        if let Change::Merged { .. } = u.change {
            return self.gone(ctx, at, &profile, &u);
        }
        let before = self.doc(ctx, at, &profile)?;
        let mut doc = before.clone().unwrap_or_else(|| Doc {
            org_id: u.org_id.clone(),
            sandbox: u.sandbox.clone(),
            attributes: Value::Object(Default::default()),
            ..Doc::default()
        });
        doc.identities = u.identities.clone();
        doc.flagged = u.flagged;
        if let Some(attributes) = &u.attributes {
            doc.attributes = attributes.clone();
        }
        let now = now_ms();
        // Events that left the profile, and events past the lookback window.
        let removed: HashSet<&str> = u.removed_events.iter().map(String::as_str).collect();
        let prefix = events_prefix(&profile);
        let mut same_second = 0u32;
        let incoming = match &u.change {
            Change::Event { event } => Some(event),
            _ => None,
        };
        for (k, _) in ctx.scan(at.partition, &prefix)? {
            let Some((ts, id)) = event_of_key(&profile, &k) else {
                continue;
            };
            if removed.contains(id.as_str()) || ts < now - self.lookback_ms {
                ctx.delete(at.cause, &k);
            } else if incoming
                .is_some_and(|e| e.timestamp_ms.div_euclid(1000) == ts.div_euclid(1000))
            {
                same_second += 1;
            }
        }
        let mut trigger = Trigger::Profile;
        let mut event_id = None;
        if let Some(event) = incoming {
            if event.timestamp_ms < now - self.lookback_ms {
                // Seed 003: older than a day at arrival, it waits for batch evaluation.
                metrics::counter!("cdp_segment_events_too_old_total").increment(1);
            } else if same_second >= self.bot_events_per_second {
                metrics::counter!("cdp_segment_bot_events_total").increment(1);
                tracing::debug!(profile, "bot traffic: event discarded for segmentation");
            } else {
                ctx.put(
                    at.cause,
                    &event_key(&profile, event.timestamp_ms, &event.item_id),
                    event.entity.get().as_bytes().to_vec(),
                );
                trigger = Trigger::Event;
                event_id = Some(event.item_id.clone());
            }
        }
        let value =
            serde_json::to_vec(&doc).map_err(|e| fatal("a profile cannot be written", e))?;
        ctx.put(at.cause, &key(b'a', &profile), value);
        self.evaluate(ctx, at, &profile, &doc, before.as_ref(), trigger, event_id)?;
        Ok(())
    }

    /// The profile joined another: its memberships end, its state goes.
    fn gone(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        u: &ProfileUpdate,
    ) -> Result<(), ProcessError> {
        let now = now_ms();
        let doc = self.doc(ctx, at, profile)?;
        let mut exits = Vec::new();
        for (segment, member) in self.members(ctx, at, profile)? {
            let change = MembershipChange {
                profile_id: profile.to_string(),
                org_id: u.org_id.clone(),
                sandbox: u.sandbox.clone(),
                identities: doc
                    .as_ref()
                    .map(|d| d.identities.clone())
                    .unwrap_or_default(),
                segment_id: segment,
                status: Status::Exited,
                last_qualification_time: member.last_qualification_time,
                time: now,
                trigger: Trigger::Merged,
                event_id: None,
            };
            self.emit(ctx, at, &change)?;
            exits.push(change);
        }
        if let Some(doc) = &doc {
            self.activate(ctx, at, profile, doc, None, &BTreeMap::new(), &exits)?;
        }
        for (k, _) in ctx.scan(at.partition, &events_prefix(profile))? {
            ctx.delete(at.cause, &k);
        }
        ctx.delete(at.cause, &key(b'a', profile));
        ctx.delete(at.cause, &key(b'm', profile));
        ctx.cancel_timer(at.cause, profile.as_bytes());
        Ok(())
    }

    /// Evaluates the sandbox's streaming definitions for a profile, and sets its timer.
    /// `before`: the profile before this update, when the update may have changed it.
    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        doc: &Doc,
        before: Option<&Doc>,
        trigger: Trigger,
        event_id: Option<String>,
    ) -> Result<bool, ProcessError> {
        let definitions = self
            .definitions
            .streaming(&self.catalog, &doc.org_id, &doc.sandbox);
        self.evaluate_with(
            ctx,
            at,
            profile,
            doc,
            before,
            &definitions,
            trigger,
            event_id,
        )
    }

    /// Evaluates `definitions` for a profile and writes the memberships that changed. With
    /// streaming definitions (any trigger but a schedule) it also sets the profile's timer.
    #[allow(clippy::too_many_arguments)]
    fn evaluate_with(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        doc: &Doc,
        before: Option<&Doc>,
        definitions: &[std::sync::Arc<crate::definitions::Compiled>],
        trigger: Trigger,
        event_id: Option<String>,
    ) -> Result<bool, ProcessError> {
        let now = now_ms();
        let Some(now_dt) = Utc.timestamp_millis_opt(now).single() else {
            return Err(ProcessError::Fatal(format!("the clock reads {now} ms")));
        };
        let mut members = self.members(ctx, at, profile)?;
        if definitions.is_empty() && members.is_empty() {
            return Ok(false);
        }
        if doc.flagged {
            // Over its event limit: AEP leaves such profiles out of segmentation.
            metrics::counter!("cdp_segment_flagged_skipped_total").increment(1);
            return Ok(false);
        }
        let mut events = Vec::new();
        for (_, v) in ctx.scan(at.partition, &events_prefix(profile))? {
            match serde_json::from_slice::<Value>(&v) {
                Ok(e) => events.push(e),
                Err(e) => return Err(fatal("a stored event cannot be read", e)),
            }
        }
        let mut qualified: HashSet<String> = members.keys().cloned().collect();
        let mut next: Option<i64> = None;
        let mut changes = Vec::new();
        for def in definitions {
            let answer = {
                let cx = Query::new(&doc.attributes, &events, &qualified, now_dt);
                def.plan.evaluate(&cx)
            };
            if let Some(at_change) = answer.next_change {
                let ms = at_change.timestamp_millis();
                next = Some(next.map_or(ms, |n| n.min(ms)));
            }
            let was = qualified.contains(&def.id);
            if answer.qualified == was {
                continue;
            }
            let (status, since) = if answer.qualified {
                qualified.insert(def.id.clone());
                members.insert(
                    def.id.clone(),
                    Member {
                        last_qualification_time: now,
                    },
                );
                (Status::Realized, now)
            } else {
                qualified.remove(&def.id);
                let since = members
                    .remove(&def.id)
                    .map_or(now, |m| m.last_qualification_time);
                (Status::Exited, since)
            };
            changes.push(MembershipChange {
                profile_id: profile.to_string(),
                org_id: doc.org_id.clone(),
                sandbox: doc.sandbox.clone(),
                identities: doc.identities.clone(),
                segment_id: def.id.clone(),
                status,
                last_qualification_time: since,
                time: now,
                trigger,
                event_id: event_id.clone(),
            });
        }
        // Memberships of definitions that were deleted or stopped streaming: left alone (batch
        // evaluation owns them now).
        for change in &changes {
            metrics::counter!("cdp_segment_membership_changes_total", "status" => change.status.as_str()).increment(1);
            self.emit(ctx, at, change)?;
        }
        if !changes.is_empty() || !members.is_empty() {
            self.activate(ctx, at, profile, doc, before, &members, &changes)?;
        }
        if !changes.is_empty() {
            let value = serde_json::to_vec(&members)
                .map_err(|e| fatal("memberships cannot be written", e))?;
            ctx.put(at.cause, &key(b'm', profile), value);
        }
        let changed = !changes.is_empty();
        if !definitions.is_empty() && definitions.iter().all(|d| !d.streaming) {
            // Batch definitions have no timer: only their schedule evaluates them.
            return Ok(changed);
        }
        match next {
            Some(due) => {
                if ctx.timer(at.partition, profile.as_bytes()) != Some(due) {
                    ctx.set_timer(at.cause, profile.as_bytes(), due);
                }
            }
            None => {
                if ctx.timer(at.partition, profile.as_bytes()).is_some() {
                    ctx.cancel_timer(at.cause, profile.as_bytes());
                }
            }
        }
        Ok(changed)
    }

    /// Writes the exports this change causes for the sandbox's destination flows
    /// ([`crate::activation`]).
    #[allow(clippy::too_many_arguments)]
    fn activate(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        doc: &Doc,
        before: Option<&Doc>,
        members: &BTreeMap<String, Member>,
        changes: &[MembershipChange],
    ) -> Result<(), ProcessError> {
        let flows = activation::activations(&self.catalog, &doc.org_id, &doc.sandbox);
        if flows.is_empty() {
            return Ok(());
        }
        let since: BTreeMap<String, i64> = members
            .iter()
            .map(|(s, m)| (s.clone(), m.last_qualification_time))
            .collect();
        for export in activation::exports(
            &flows,
            before.map(Doc::snapshot),
            doc.snapshot(),
            &since,
            changes,
        ) {
            self.write_export(ctx, at, profile, export)?;
        }
        Ok(())
    }

    fn write_export(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        export: activation::Export,
    ) -> Result<(), ProcessError> {
        let value = serde_json::to_vec(&export.document)
            .map_err(|e| fatal("an export cannot be written", e))?;
        let mut output = Output::new(&self.exports_topic, profile.as_bytes().to_vec(), value);
        output.headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: activation::FLOW_HEADER,
            value: Some(export.flow_id.as_str()),
        });
        ctx.emit(at.cause, output);
        metrics::counter!("cdp_segment_exports_total").increment(1);
        Ok(())
    }

    fn emit(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        change: &MembershipChange,
    ) -> Result<(), ProcessError> {
        let json =
            serde_json::to_vec(change).map_err(|e| fatal("a membership cannot be written", e))?;
        let avro = self
            .avro
            .encode(change)
            .map_err(|e| fatal("a membership cannot be encoded", e))?;
        let key = change.profile_id.as_bytes().to_vec();
        ctx.emit(at.cause, Output::new(&self.json_topic, key.clone(), json));
        ctx.emit(at.cause, Output::new(&self.avro_topic, key, avro));
        Ok(())
    }
}
