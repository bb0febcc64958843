//! The end of every change of a profile: its sandbox's streaming definitions evaluated on it
//! — only those the change concerns, and those whose time came ([`cdp_pql::incremental`]) —
//! membership changes written to both membership topics, what destination flows export
//! ([`crate::activation`]), its one timer, and its record stored: all in the transaction of
//! the change.
//!
//! The timer is the earliest of the instants a due definition's answer can change with no
//! new data (including an event leaving the lookback, so a qualification resting on it ends
//! then) and the profile's oldest event's expiry.

use std::collections::BTreeMap;

use cdp_contract::clock::now_ms;
use cdp_contract::records::{MembershipChange, Status, Trigger};
use cdp_pql::incremental::Changes;
use cdp_stage::{Context, Output, ProcessError};
use chrono::{TimeZone, Utc};
use rdkafka::message::{Header, OwnedHeaders};

use crate::activation::{self, Snapshot};
use crate::apply::Removed;
use crate::definitions::Sandbox;
use crate::stage::{fatal, At, Engine, Work};

/// What changed in a profile, for the evaluation that follows.
#[derive(Debug, Clone)]
pub(crate) struct Touch {
    pub trigger: Trigger,
    /// The event that caused it (trigger `event`).
    pub event_id: Option<String>,
    /// Types of the events segmentation sees that arrived or left.
    pub event_types: Vec<Option<String>>,
    pub attributes_changed: bool,
    /// Segments whose membership changed outside the streaming evaluation (a schedule).
    pub segments: Vec<String>,
    /// Membership changes already decided (a schedule's), written and exported with the
    /// streaming evaluation's.
    pub prior: Vec<MembershipChange>,
}

impl Touch {
    pub fn new(trigger: Trigger) -> Self {
        Self {
            trigger,
            event_id: None,
            event_types: Vec::new(),
            attributes_changed: false,
            segments: Vec::new(),
            prior: Vec::new(),
        }
    }

    /// Events that left the profile.
    pub fn removed(&mut self, removed: &[Removed]) {
        for r in removed.iter().filter(|r| r.segmented) {
            if !self.event_types.contains(&r.ty) {
                self.event_types.push(r.ty.clone());
            }
        }
    }
}

impl Engine {
    /// Evaluates, writes the membership changes and exports, sets the timer and stores the
    /// profile.
    pub(crate) fn finish(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        work: &mut Work,
        mut touch: Touch,
    ) -> Result<(), ProcessError> {
        let sandbox =
            self.definitions
                .sandbox(&self.catalog, &work.record.org, &work.record.sandbox);
        let mut changes = std::mem::take(&mut touch.prior);
        if work.record.flagged {
            // Over its event limit: AEP leaves such profiles out of segmentation.
            metrics::counter!("cdp_engine_flagged_skipped_total").increment(1);
        } else {
            changes.extend(self.evaluate(work, &sandbox, &touch)?);
        }
        for change in &changes {
            metrics::counter!("cdp_engine_membership_changes_total", "status" => change.status.as_str()).increment(1);
            self.emit_membership(ctx, at, change)?;
            crate::tally::record(ctx, at, change)?;
            let ended = (change.status == Status::Exited).then_some(change.time);
            work.record
                .note_membership(&change.segment_id, change.last_qualification_time, ended);
        }
        self.activate(ctx, at, work, &sandbox, &changes)?;
        self.set_timer(ctx, at, work, &sandbox);
        self.save(ctx, at, work)
    }

    /// The streaming evaluation of one change; the memberships it changed.
    fn evaluate(
        &self,
        work: &mut Work,
        sandbox: &Sandbox,
        touch: &Touch,
    ) -> Result<Vec<MembershipChange>, ProcessError> {
        let now = now_ms();
        let Some(now_dt) = Utc.timestamp_millis_opt(now).single() else {
            return Err(ProcessError::Fatal(format!("the clock reads {now} ms")));
        };
        let record = &mut work.record;
        let mut state = record.segments();
        let mut exits = Vec::new();
        // Definitions changed since the profile was last evaluated: all are evaluated, and the
        // memberships of those gone (or no longer streaming) end.
        let current = sandbox.fingerprint();
        let everything = work.fresh || record.definitions != current;
        if everything && !work.fresh {
            for (segment, since) in state.members.clone() {
                let streaming = sandbox.streaming.contains(&segment);
                let scheduled =
                    record.scheduled.contains(&segment) && sandbox.all.contains(&segment);
                if streaming || scheduled {
                    continue;
                }
                state.members.remove(&segment);
                exits.push(self.change(
                    &work.id,
                    record,
                    &segment,
                    Status::Exited,
                    since,
                    now,
                    Trigger::Definition,
                    None,
                ));
            }
            record.scheduled.retain(|s| state.members.contains_key(s));
        }
        record.definitions = current;
        let lookback = self.settings.segment.lookback_ms;
        let floor = now - lookback;
        // Events that left the lookback since the profile was last evaluated are changes of
        // the definitions reading them, as events that arrived are.
        let since = record.evaluated_ms - lookback;
        let mut types: Vec<Option<&str>> = touch.event_types.iter().map(Option::as_deref).collect();
        if !everything {
            for e in &record.events {
                if e.segmented && e.ts <= floor && e.ts > since {
                    let ty = record.type_of(e);
                    if !types.contains(&ty) {
                        types.push(ty);
                    }
                }
            }
        }
        let segments: Vec<&str> = touch.segments.iter().map(String::as_str).collect();
        let changes = Changes {
            everything,
            event_types: types,
            attributes_before: touch.attributes_changed.then_some(&work.before_attributes),
            segments,
            definitions: Vec::new(),
        };
        let pending = sandbox
            .streaming
            .pending(&changes, &record.attributes, &state, now);
        let mut out = exits;
        if !pending.is_empty() {
            let (values, times) = record.segment_events(floor);
            let mut cx = cdp_pql::Context::with_times(
                &record.attributes,
                &values,
                times,
                Default::default(),
                now_dt,
            );
            let outcome = sandbox.streaming.run(pending, &mut cx, &mut state);
            metrics::histogram!("cdp_engine_definitions_evaluated")
                .record(outcome.evaluated as f64);
            for t in outcome.transitions {
                // A streaming evaluation owns the membership from now on.
                record.scheduled.retain(|s| *s != t.segment);
                let status = if t.entered {
                    Status::Realized
                } else {
                    Status::Exited
                };
                out.push(self.change(
                    &work.id,
                    record,
                    &t.segment,
                    status,
                    t.since_ms,
                    now,
                    touch.trigger,
                    touch.event_id.clone(),
                ));
            }
        }
        record.set_segments(state);
        record.evaluated_ms = now;
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn change(
        &self,
        profile: &str,
        record: &crate::record::ProfileRecord,
        segment: &str,
        status: Status,
        since: i64,
        now: i64,
        trigger: Trigger,
        event_id: Option<String>,
    ) -> MembershipChange {
        MembershipChange {
            profile_id: profile.to_string(),
            org_id: record.org.clone(),
            sandbox: record.sandbox.clone(),
            identities: record.identities.clone(),
            segment_id: segment.to_string(),
            status,
            last_qualification_time: since,
            time: now,
            trigger,
            event_id,
        }
    }

    /// Writes a membership change to both membership topics.
    pub(crate) fn emit_membership(
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
        ctx.emit(
            at.cause,
            Output::new(&self.topics.membership_json, key.clone(), json),
        );
        ctx.emit(at.cause, Output::new(&self.topics.membership, key, avro));
        Ok(())
    }

    /// Writes the exports this change causes for the sandbox's destination flows.
    fn activate(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        work: &Work,
        sandbox: &Sandbox,
        changes: &[MembershipChange],
    ) -> Result<(), ProcessError> {
        if sandbox.flows.is_empty() || (changes.is_empty() && work.record.members.is_empty()) {
            return Ok(());
        }
        let members = work.record.members_map();
        let before = (!work.fresh).then(|| Snapshot {
            identities: &work.before_identities,
            attributes: &work.before_attributes,
        });
        let after = Snapshot {
            identities: &work.record.identities,
            attributes: &work.record.attributes,
        };
        for export in activation::exports(&sandbox.flows, before, after, &members, changes) {
            self.write_export(ctx, at, &work.id, export)?;
        }
        Ok(())
    }

    pub(crate) fn write_export(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        export: activation::Export,
    ) -> Result<(), ProcessError> {
        let value = serde_json::to_vec(&export.document)
            .map_err(|e| fatal("an export cannot be written", e))?;
        let mut output = Output::new(&self.topics.exports, profile.as_bytes().to_vec(), value);
        output.headers = OwnedHeaders::new().insert(Header {
            key: activation::FLOW_HEADER,
            value: Some(export.flow_id.as_str()),
        });
        ctx.emit(at.cause, output);
        metrics::counter!("cdp_engine_exports_total").increment(1);
        Ok(())
    }

    /// The profile's timer: its earliest due definition, the next event a definition reads to
    /// leave the lookback, or its oldest event's expiry.
    fn set_timer(&self, ctx: &mut Context<'_>, at: At, work: &Work, sandbox: &Sandbox) {
        let record = &work.record;
        let segments = if record.flagged {
            None
        } else {
            let lookback = self.settings.segment.lookback_ms;
            let leaves = record
                .events
                .iter()
                .filter(|e| e.segmented && e.ts + lookback > record.evaluated_ms)
                .filter(|e| sandbox.streaming.reads_event_type(record.type_of(e)))
                .map(|e| e.ts + lookback)
                .min();
            let due = record.due.iter().map(|(_, at)| *at).min();
            earliest(due, leaves)
        };
        let due = earliest(segments, self.next_expiry(work));
        let current = ctx.timer(at.partition, &work.key);
        match due {
            Some(due) if current != Some(due) => ctx.set_timer(at.cause, &work.key, due),
            None if current.is_some() => ctx.cancel_timer(at.cause, &work.key),
            _ => {}
        }
    }

    /// The profile joined another: its memberships end (trigger `merged`), with their exports.
    pub(crate) fn gone(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        work: &mut Work,
    ) -> Result<(), ProcessError> {
        if work.fresh {
            return Ok(());
        }
        let now = now_ms();
        let members: BTreeMap<String, i64> = work.record.members_map();
        let mut exits = Vec::new();
        for (segment, since) in &members {
            let change = self.change(
                &work.id,
                &work.record,
                segment,
                Status::Exited,
                *since,
                now,
                Trigger::Merged,
                None,
            );
            self.emit_membership(ctx, at, &change)?;
            crate::tally::record(ctx, at, &change)?;
            exits.push(change);
        }
        let sandbox =
            self.definitions
                .sandbox(&self.catalog, &work.record.org, &work.record.sandbox);
        if !sandbox.flows.is_empty() && !exits.is_empty() {
            let after = Snapshot {
                identities: &work.record.identities,
                attributes: &work.record.attributes,
            };
            for export in activation::exports(&sandbox.flows, None, after, &BTreeMap::new(), &exits)
            {
                self.write_export(ctx, at, &work.id, export)?;
            }
        }
        work.record.members.clear();
        work.record.due.clear();
        Ok(())
    }
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}
