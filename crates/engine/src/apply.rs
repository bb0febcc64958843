//! How each decision of the identity stage changes a profile: an event or profile record
//! joins it, its identities change, it merges into another profile (everything it holds goes
//! back to the identity stage to be placed again) or identities split off with what they own.
//!
//! A profile's content only ever arrives through the identity stage's one ordered output, and
//! an event is held once (by timestamp and id), however often it travels. An event keeps the
//! fields its sandbox's definitions read ([`crate::projection`]); `profile.updates` carries it
//! whole, as it arrived.

use cdp_catalog::merge::{default_policy, merge};
use cdp_contract::clock::now_ms;
use cdp_contract::records::{
    Change, Fragment, Identity, Item, ItemKind, Refused, StoredEvent, Transfer, Trigger,
};
use cdp_stage::{Context, Output, ProcessError};
use rdkafka::message::OwnedHeaders;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::record::Event;
use crate::segments::Touch;
use crate::stage::{fatal, At, Details, Engine, Work};

/// The refused identities a profile remembers for its audit.
const AUDIT: usize = 20;

/// An item's entity (an event, or a record's attributes) as JSON; one that cannot be read is
/// logged, counted and skipped (it is still in its dataset).
fn entity_of(item: &Item) -> Option<Value> {
    match serde_json::from_str(item.entity.get()) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(item = %item.item_id, dataset = %item.dataset_id, error = %e, "an item's entity cannot be read; skipped");
            metrics::counter!("cdp_engine_unreadable_total").increment(1);
            None
        }
    }
}

/// The identity that owns an item, which the identity stage (or the intake's fast path) sets;
/// an item without one is a defect upstream.
fn owner_of(item: &Item, profile: &str) -> Result<Identity, ProcessError> {
    item.owner.clone().ok_or_else(|| {
        ProcessError::Fatal(format!(
            "item {} reached profile {profile} without an owner",
            item.item_id
        ))
    })
}

/// An event that left a profile.
#[derive(Debug, Clone)]
pub(crate) struct Removed {
    pub id: String,
    pub ty: Option<String>,
    pub segmented: bool,
}

impl Engine {
    pub(crate) fn item(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        seq: u64,
        identities: Option<Vec<Identity>>,
        item: Item,
    ) -> Result<(), ProcessError> {
        let owner = owner_of(&item, profile)?;
        let work = self.load(ctx, at, &item.org_id, &item.sandbox, profile)?;
        self.item_in(ctx, at, work, seq, identities, owner, item)
    }

    /// The identity fast path: an event the intake sent straight to the profile its one
    /// identity would have created. Applied if the profile holds that identity now; otherwise
    /// (no such profile yet, merged away, the identity moved to another) forwarded to the
    /// identity owner, which places it as if the intake had sent it there. A guess that races a
    /// merge or split is applied here and moves with the profile's content when the merge or
    /// split arrives, as any event would.
    pub(crate) fn direct(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        item: Item,
    ) -> Result<(), ProcessError> {
        let owner = owner_of(&item, profile)?;
        let work = self.load(ctx, at, &item.org_id, &item.sandbox, profile)?;
        if work.record.identities.contains(&owner) {
            metrics::counter!("cdp_engine_direct_total", "outcome" => "applied").increment(1);
            return self.item_in(ctx, at, work, 0, None, owner, item);
        }
        metrics::counter!("cdp_engine_direct_total", "outcome" => "forwarded").increment(1);
        self.to_identity_owner(ctx, at, &item)
    }

    #[allow(clippy::too_many_arguments)]
    fn item_in(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        mut work: Work,
        seq: u64,
        identities: Option<Vec<Identity>>,
        owner: Identity,
        item: Item,
    ) -> Result<(), ProcessError> {
        if item.refresh {
            return self.refresh(ctx, at, work, item);
        }
        let mut changed = false;
        if let Some(ids) = identities {
            changed = work.record.identities != ids;
            work.record.identities = ids;
        }
        if work.record.identities.is_empty() {
            work.record.identities.push(owner.clone());
            changed = true;
        }
        let now = now_ms();
        work.record
            .refused
            .extend(item.refused.iter().map(|r| (r.clone(), now)));
        let excess = work.record.refused.len().saturating_sub(AUDIT);
        work.record.refused.drain(..excess);
        match item.kind {
            ItemKind::Event => self.event(ctx, at, work, changed, owner, item),
            ItemKind::Record => self.record(ctx, at, work, seq, owner, item),
        }
    }

    fn event(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        mut work: Work,
        changed: bool,
        owner: Identity,
        item: Item,
    ) -> Result<(), ProcessError> {
        let now = now_ms();
        let ttl = self.ttl_of(&item.dataset_id);
        let late = item.timestamp_ms < now - ttl;
        let duplicate = !late
            && work
                .record
                .position(item.timestamp_ms, &item.item_id)
                .is_ok();
        if late || duplicate {
            if late {
                metrics::counter!("cdp_engine_events_past_ttl_total").increment(1);
            } else {
                metrics::counter!("cdp_engine_events_duplicate_total").increment(1);
            }
            if changed || !item.refused.is_empty() {
                self.identities_only(ctx, at, &work, item.refused)?;
                self.finish(ctx, at, &mut work, Touch::new(Trigger::Profile))?;
            }
            return Ok(());
        }
        if work.record.event_count() >= self.settings.max_events_per_profile {
            return self.over_cap(ctx, at, work, changed, item);
        }
        let Some(entity) = entity_of(&item) else {
            return Ok(());
        };
        let sandbox =
            self.definitions
                .sandbox(&self.catalog, &work.record.org, &work.record.sandbox);
        let ty = entity.get("eventType").and_then(Value::as_str);
        let rules = &self.settings.segment;
        let second = item.timestamp_ms.div_euclid(1000);
        let same_second = work
            .record
            .events
            .iter()
            .filter(|e| e.segmented && e.ts.div_euclid(1000) == second)
            .count();
        let (segmented, bot) = if item.timestamp_ms < now - rules.lookback_ms {
            // Seed 003: older than the lookback at arrival, it waits for batch evaluation.
            metrics::counter!("cdp_engine_events_too_old_total").increment(1);
            (false, false)
        } else if same_second >= rules.bot_events_per_second as usize {
            metrics::counter!("cdp_engine_bot_events_total").increment(1);
            tracing::debug!(profile = %work.id, "bot traffic: event discarded for segmentation");
            (false, true)
        } else {
            (true, false)
        };
        let record = &mut work.record;
        let event = Event {
            id: item.item_id.clone(),
            ts: item.timestamp_ms,
            ingest_after: item.ingest_ms - item.timestamp_ms,
            dataset: record.dataset_index(&item.dataset_id),
            owner: record.owner_index(&owner),
            ty: ty.map(|t| record.type_index(t)),
            segmented,
            bot,
            fields: sandbox.projection.project(&entity),
        };
        record.insert_event(event);
        let removed = self.expire(&mut work, now);
        let flagged = work.record.event_count() > self.settings.max_events_per_profile;
        if flagged && !work.record.flagged {
            tracing::warn!(
                profile = %work.id,
                events = work.record.event_count(),
                limit = self.settings.max_events_per_profile,
                "profile over its event limit: flagged, segmentation skips it"
            );
            metrics::counter!("cdp_engine_flagged_total").increment(1);
        }
        work.record.flagged = flagged;
        metrics::counter!("cdp_engine_events_total").increment(1);
        let stored = StoredEvent {
            item_id: item.item_id.clone(),
            dataset_id: item.dataset_id,
            timestamp_ms: item.timestamp_ms,
            ingest_ms: item.ingest_ms,
            owner,
            identities: item.identities.into_iter().map(|(i, _)| i).collect(),
            entity: item.entity,
        };
        let mut touch = if segmented {
            let mut t = Touch::new(Trigger::Event);
            t.event_types.push(ty.map(String::from));
            t.event_id = Some(item.item_id);
            t
        } else {
            Touch::new(Trigger::Profile)
        };
        touch.removed(&removed);
        let removed_ids = removed.into_iter().map(|r| r.id).collect();
        self.update(
            ctx,
            at,
            &work,
            Change::Event { event: stored },
            Details {
                removed_events: removed_ids,
                refused: item.refused,
                ..Details::default()
            },
        )?;
        self.finish(ctx, at, &mut work, touch)
    }

    /// An event of a profile at its event cap is not stored, so that what a sender does cannot
    /// grow a profile's state without bound: it is counted on the profile (its audit shows how
    /// many), the profile is flagged (segmentation skips it, as AEP does past the limit), and
    /// the event stays in its dataset and on `events.valid`. Room comes back as events leave
    /// at their time-to-live.
    fn over_cap(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        mut work: Work,
        changed: bool,
        item: Item,
    ) -> Result<(), ProcessError> {
        metrics::counter!("cdp_engine_events_over_cap_total").increment(1);
        if !work.record.flagged {
            tracing::warn!(
                profile = %work.id,
                limit = self.settings.max_events_per_profile,
                "profile at its event limit: new events are not stored, segmentation skips it"
            );
            metrics::counter!("cdp_engine_flagged_total").increment(1);
        }
        work.record.flagged = true;
        work.record.events_not_stored += 1;
        if changed || !item.refused.is_empty() {
            self.identities_only(ctx, at, &work, item.refused)?;
        }
        self.finish(ctx, at, &mut work, Touch::new(Trigger::Profile))
    }

    /// An event that is not added still brought identities, or identities that were refused:
    /// subscribers learn that much.
    fn identities_only(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        work: &Work,
        refused: Vec<Refused>,
    ) -> Result<(), ProcessError> {
        self.update(
            ctx,
            at,
            work,
            Change::Identities,
            Details {
                refused,
                ..Details::default()
            },
        )
    }

    /// An event read again from events.valid (a definition now reads fields the profile did
    /// not keep): the held event takes the fields the sandbox keeps now, and the definitions
    /// reading its type are evaluated again. Nothing else changes, nothing is written to
    /// `profile.updates`; an event the profile does not hold (any more) is left alone.
    fn refresh(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        mut work: Work,
        item: Item,
    ) -> Result<(), ProcessError> {
        if work.fresh || item.kind != ItemKind::Event {
            return Ok(());
        }
        let Ok(i) = work.record.position(item.timestamp_ms, &item.item_id) else {
            return Ok(());
        };
        let Some(entity) = entity_of(&item) else {
            return Ok(());
        };
        let sandbox =
            self.definitions
                .sandbox(&self.catalog, &work.record.org, &work.record.sandbox);
        let fields = sandbox.projection.project(&entity);
        let event = &mut work.record.events[i];
        if event.fields == fields {
            return Ok(());
        }
        event.fields = fields;
        metrics::counter!("cdp_engine_events_refreshed_total").increment(1);
        let segmented = event.segmented;
        let ty = work
            .record
            .type_of(&work.record.events[i])
            .map(String::from);
        let mut touch = Touch::new(Trigger::Definition);
        if segmented {
            touch.event_types.push(ty);
        }
        self.finish(ctx, at, &mut work, touch)
    }

    /// Drops the events past their dataset's time-to-live at `now`; says which.
    pub(crate) fn expire(&self, work: &mut Work, now: i64) -> Vec<Removed> {
        let record = &mut work.record;
        // No time-to-live is shorter than a day: the newer events cannot have expired.
        let floor = now - crate::settings::ONE_DAY_MS;
        if record.events.first().is_none_or(|e| e.ts >= floor) {
            return Vec::new();
        }
        let ttls: Vec<i64> = record.datasets.iter().map(|d| self.ttl_of(d)).collect();
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(record.events.len());
        for e in std::mem::take(&mut record.events) {
            let ttl = ttls
                .get(e.dataset as usize)
                .copied()
                .unwrap_or(self.settings.event_ttl_ms);
            if e.ts + ttl <= now {
                removed.push(Removed {
                    id: e.id.clone(),
                    ty: record.type_of(&e).map(String::from),
                    segmented: e.segmented,
                });
            } else {
                kept.push(e);
            }
        }
        record.events = kept;
        if !removed.is_empty() {
            record.compact_tables();
            metrics::counter!("cdp_engine_events_expired_total").increment(removed.len() as u64);
        }
        removed
    }

    /// When the profile's oldest event expires.
    pub(crate) fn next_expiry(&self, work: &Work) -> Option<i64> {
        let record = &work.record;
        let ttls: Vec<i64> = record.datasets.iter().map(|d| self.ttl_of(d)).collect();
        record
            .events
            .iter()
            .map(|e| {
                e.ts + ttls
                    .get(e.dataset as usize)
                    .copied()
                    .unwrap_or(self.settings.event_ttl_ms)
            })
            .min()
    }

    fn record(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        mut work: Work,
        seq: u64,
        owner: Identity,
        item: Item,
    ) -> Result<(), ProcessError> {
        let Some(attributes) = entity_of(&item) else {
            return Ok(());
        };
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
        let fragments = &mut work.record.fragments;
        match fragments
            .iter()
            .position(|f| f.dataset_id == fragment.dataset_id && f.owner == fragment.owner)
        {
            Some(i) => {
                let old = &fragments[i];
                if (fragment.ingest_ms, fragment.seq) >= (old.ingest_ms, old.seq) {
                    fragments[i] = fragment.clone();
                }
            }
            None => fragments.push(fragment.clone()),
        }
        let merged = self.merged_attributes(&work);
        work.record.attributes = merged.clone();
        metrics::counter!("cdp_engine_records_total").increment(1);
        self.update(
            ctx,
            at,
            &work,
            Change::Record { fragment },
            Details {
                attributes: Some(merged),
                refused: item.refused,
                ..Details::default()
            },
        )?;
        let mut touch = Touch::new(Trigger::Profile);
        touch.attributes_changed = work.record.attributes != work.before_attributes;
        self.finish(ctx, at, &mut work, touch)
    }

    /// The profile's fragments merged under its sandbox's default merge policy.
    fn merged_attributes(&self, work: &Work) -> Value {
        let policy = self
            .catalog
            .read()
            .default_merge_policy(&work.record.org, &work.record.sandbox)
            .map(|p| p.attribute_merge.clone())
            .unwrap_or_else(default_policy);
        merge(&work.record.fragments, &policy)
    }

    pub(crate) fn graph(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        org: &str,
        sandbox: &str,
        identities: Vec<Identity>,
    ) -> Result<(), ProcessError> {
        let mut work = self.load(ctx, at, org, sandbox, profile)?;
        work.record.identities = identities;
        self.update(ctx, at, &work, Change::Identities, Details::default())?;
        self.finish(ctx, at, &mut work, Touch::new(Trigger::Profile))
    }

    /// Hands an event or fragment back to the identity stage, to be placed again.
    fn hand_back(&self, ctx: &mut Context<'_>, at: At, item: &Item) -> Result<(), ProcessError> {
        self.to_identity_owner(ctx, at, item)?;
        metrics::counter!("cdp_engine_items_handed_back_total").increment(1);
        Ok(())
    }

    /// Sends an item to its sandbox's identity owner (profile.sequence).
    fn to_identity_owner(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        item: &Item,
    ) -> Result<(), ProcessError> {
        let value = serde_json::to_vec(item)
            .map_err(|e| fatal("an item for the identity owner cannot be written", e))?;
        ctx.emit(
            at.cause,
            Output {
                topic: self.topics.sequence.clone(),
                partition: Some(cdp_contract::partition::for_sandbox(
                    &item.org_id,
                    &item.sandbox,
                    self.topics.sequence_partitions,
                )),
                key: item.owner.as_ref().map(|o| o.to_string().into_bytes()),
                value: Some(value),
                headers: OwnedHeaders::new(),
            },
        );
        Ok(())
    }

    /// Hands back the events and fragments whose owner `leaves`; says which events left and
    /// whether a fragment did.
    fn carve(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        work: &mut Work,
        hint: &str,
        leaves: impl Fn(&Identity) -> bool,
    ) -> Result<(Vec<Removed>, bool), ProcessError> {
        let transfer = |origin_seq| {
            Some(Transfer {
                from: work.id.clone(),
                hint: hint.to_string(),
                origin_seq,
            })
        };
        let record = &work.record;
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(record.events.len());
        for e in &record.events {
            let Some(owner) = record.owner_of(e).filter(|o| leaves(o)) else {
                kept.push(e.clone());
                continue;
            };
            let entity = serde_json::value::to_raw_value(&record.entity(e))
                .map_err(|err| fatal("an event cannot be handed back", err))?;
            let item = Item {
                kind: ItemKind::Event,
                org_id: record.org.clone(),
                sandbox: record.sandbox.clone(),
                dataset_id: record.dataset_of(e).unwrap_or_default().to_string(),
                item_id: e.id.clone(),
                timestamp_ms: e.ts,
                ingest_ms: e.ts + e.ingest_after,
                identities: Vec::new(),
                refused: Vec::new(),
                owner: Some(owner.clone()),
                transfer: transfer(None),
                refresh: false,
                entity,
            };
            self.hand_back(ctx, at, &item)?;
            removed.push(Removed {
                id: e.id.clone(),
                ty: record.type_of(e).map(String::from),
                segmented: e.segmented,
            });
        }
        let mut fragments_left = false;
        let mut kept_fragments = Vec::with_capacity(record.fragments.len());
        for f in &record.fragments {
            if !leaves(&f.owner) {
                kept_fragments.push(f.clone());
                continue;
            }
            let entity: Box<RawValue> = serde_json::value::to_raw_value(&f.attributes)
                .map_err(|err| fatal("a fragment cannot be handed back", err))?;
            let item = Item {
                kind: ItemKind::Record,
                org_id: record.org.clone(),
                sandbox: record.sandbox.clone(),
                dataset_id: f.dataset_id.clone(),
                item_id: String::new(),
                timestamp_ms: f.timestamp_ms,
                ingest_ms: f.ingest_ms,
                identities: Vec::new(),
                refused: Vec::new(),
                owner: Some(f.owner.clone()),
                transfer: transfer(Some(f.seq)),
                refresh: false,
                entity,
            };
            self.hand_back(ctx, at, &item)?;
            fragments_left = true;
        }
        work.record.events = kept;
        work.record.fragments = kept_fragments;
        work.record.compact_tables();
        Ok((removed, fragments_left))
    }

    pub(crate) fn merged(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        org: &str,
        sandbox: &str,
        into: String,
    ) -> Result<(), ProcessError> {
        let mut work = self.load(ctx, at, org, sandbox, profile)?;
        let (removed, _) = self.carve(ctx, at, &mut work, &into, |_| true)?;
        metrics::counter!("cdp_engine_merged_total").increment(1);
        tracing::debug!(profile, into = %into, events = removed.len(), "profile merged into another");
        // Its memberships end here; the surviving profile earns its own.
        self.gone(ctx, at, &mut work)?;
        work.record.identities.clear();
        work.record.flagged = false;
        self.update(
            ctx,
            at,
            &work,
            Change::Merged { into },
            Details {
                removed_events: removed.into_iter().map(|r| r.id).collect(),
                ..Details::default()
            },
        )?;
        ctx.delete(at.cause, &work.key);
        ctx.cancel_timer(at.cause, &work.key);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn split(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        profile: &str,
        org: &str,
        sandbox: &str,
        moved: Vec<Identity>,
        identities: Vec<Identity>,
    ) -> Result<(), ProcessError> {
        let mut work = self.load(ctx, at, org, sandbox, profile)?;
        work.record.identities = identities;
        let (removed, fragments_left) =
            self.carve(ctx, at, &mut work, profile, |o| moved.contains(o))?;
        work.record.flagged = work.record.event_count() > self.settings.max_events_per_profile;
        let attributes = if fragments_left {
            let merged = self.merged_attributes(&work);
            work.record.attributes = merged.clone();
            Some(merged)
        } else {
            None
        };
        metrics::counter!("cdp_engine_split_total").increment(1);
        let mut touch = Touch::new(Trigger::Profile);
        touch.removed(&removed);
        touch.attributes_changed = work.record.attributes != work.before_attributes;
        self.update(
            ctx,
            at,
            &work,
            Change::Split { moved },
            Details {
                attributes,
                removed_events: removed.into_iter().map(|r| r.id).collect(),
                ..Details::default()
            },
        )?;
        self.finish(ctx, at, &mut work, touch)
    }
}
