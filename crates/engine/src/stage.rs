//! The engine's processor on the stage runtime: it reads `profile.resolved` (the identity
//! stage's decisions, keyed by profile id) and, for each record, changes the profile
//! ([`crate::apply`]), evaluates the sandbox's streaming definitions on it and writes what
//! changed ([`crate::segments`]) — all in the transaction of the input, on one state key per
//! profile. Timers fire a profile's due definitions and expire its events; sweeps
//! ([`crate::sweep`]) follow definition changes, schedules and newly activated flows.

use cdp_catalog::CatalogView;
use cdp_contract::clock::now_ms;
use cdp_contract::records::{Change, Identity, ProfileUpdate, Refused, Resolved};
use cdp_stage::{Cause, Context, Output, ProcessError, Processor, Timer};
use rdkafka::message::{Message, OwnedMessage};
use serde_json::Value;

use crate::avro::MembershipAvro;
use crate::definitions::Definitions;
use crate::keys;
use crate::record::ProfileRecord;
use crate::settings::{EngineSettings, ONE_DAY_MS};

/// Where the engine writes.
#[derive(Debug, Clone)]
pub struct OutputTopics {
    /// What changed in a profile (`ProfileUpdate`, JSON), for subscribers.
    pub updates: String,
    /// Events and fragments a merge or split moves, back to the identity stage.
    pub sequence: String,
    /// Its partition count: a hand-back goes to its sandbox's partition.
    pub sequence_partitions: i32,
    /// Membership changes, Avro (Confluent wire format).
    pub membership: String,
    /// The same, JSON.
    pub membership_json: String,
    /// What destination flows export.
    pub exports: String,
}

pub struct Engine {
    pub catalog: CatalogView,
    pub definitions: Definitions,
    pub avro: MembershipAvro,
    pub topics: OutputTopics,
    pub settings: EngineSettings,
}

/// One unit of work: the partition its profile lives in and what caused it.
#[derive(Clone, Copy)]
pub(crate) struct At {
    pub partition: i32,
    pub cause: Cause,
}

/// A profile loaded for a change, with what it was before.
pub(crate) struct Work {
    pub key: Vec<u8>,
    pub id: String,
    pub record: ProfileRecord,
    /// Not held before this change.
    pub fresh: bool,
    pub before_identities: Vec<Identity>,
    pub before_attributes: Value,
}

/// What a profile update says besides its change.
#[derive(Debug, Default)]
pub(crate) struct Details {
    /// The merged attributes, when they changed.
    pub attributes: Option<Value>,
    /// Events that left the profile.
    pub removed_events: Vec<String>,
    /// Identities of the change's item that were not linked.
    pub refused: Vec<Refused>,
}

pub(crate) fn fatal(what: &str, e: impl std::fmt::Display) -> ProcessError {
    ProcessError::Fatal(format!("{what}: {e}"))
}

impl Processor for Engine {
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
                    metrics::counter!("cdp_engine_unreadable_total").increment(1);
                    continue;
                }
            };
            self.resolved(ctx, at, resolved)?;
        }
        Ok(())
    }

    async fn on_timers(
        &mut self,
        timers: &[Timer],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        for t in timers {
            let at = At {
                partition: t.partition,
                cause: Cause::Timer(t.partition),
            };
            let lateness = now_ms() - t.due_ms;
            metrics::histogram!("cdp_engine_timer_lateness_seconds")
                .record(lateness.max(0) as f64 / 1000.0);
            self.timer(ctx, at, &t.key)?;
        }
        Ok(())
    }

    async fn sweep(
        &mut self,
        partitions: &[i32],
        ctx: &mut Context<'_>,
    ) -> Result<bool, ProcessError> {
        crate::sweep::sweep(self, partitions, ctx)
    }
}

impl Engine {
    fn resolved(
        &mut self,
        ctx: &mut Context<'_>,
        at: At,
        resolved: Resolved,
    ) -> Result<(), ProcessError> {
        match resolved {
            Resolved::Item {
                profile_id,
                seq,
                identities,
                item,
            } => self.item(ctx, at, &profile_id, seq, identities, *item),
            Resolved::Graph {
                profile_id,
                org_id,
                sandbox,
                identities,
                ..
            } => self.graph(ctx, at, &profile_id, &org_id, &sandbox, identities),
            Resolved::Merged {
                profile_id,
                org_id,
                sandbox,
                into,
                ..
            } => self.merged(ctx, at, &profile_id, &org_id, &sandbox, into),
            Resolved::Split {
                profile_id,
                org_id,
                sandbox,
                moved,
                identities,
                ..
            } => self.split(ctx, at, &profile_id, &org_id, &sandbox, moved, identities),
            Resolved::Direct { profile_id, item } => self.direct(ctx, at, &profile_id, *item),
        }
    }

    /// The profile's record, or a new one.
    pub(crate) fn load(
        &self,
        ctx: &Context<'_>,
        at: At,
        org: &str,
        sandbox: &str,
        id: &str,
    ) -> Result<Work, ProcessError> {
        let key = keys::profile(org, sandbox, id);
        self.load_key(ctx, at, key, org, sandbox, id)
    }

    pub(crate) fn load_key(
        &self,
        ctx: &Context<'_>,
        at: At,
        key: Vec<u8>,
        org: &str,
        sandbox: &str,
        id: &str,
    ) -> Result<Work, ProcessError> {
        let (record, fresh) = match ctx.get(at.partition, &key)? {
            Some(v) => (
                ProfileRecord::decode(&v).map_err(|e| fatal("a stored profile", e))?,
                false,
            ),
            None => (ProfileRecord::new(org, sandbox), true),
        };
        Ok(Work {
            key,
            id: id.to_string(),
            before_identities: record.identities.clone(),
            before_attributes: record.attributes.clone(),
            record,
            fresh,
        })
    }

    /// Writes the profile's record (one changelog record).
    pub(crate) fn save(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        work: &mut Work,
    ) -> Result<(), ProcessError> {
        work.record.modified_ms = now_ms();
        work.record.prune_exited(work.record.modified_ms);
        let value = work
            .record
            .encode()
            .map_err(|e| fatal("a profile cannot be stored", e))?;
        metrics::histogram!("cdp_engine_profile_bytes").record(value.len() as f64);
        ctx.put(at.cause, &work.key, value);
        Ok(())
    }

    /// Writes what changed to `profile.updates`.
    pub(crate) fn update(
        &self,
        ctx: &mut Context<'_>,
        at: At,
        work: &Work,
        change: Change,
        details: Details,
    ) -> Result<(), ProcessError> {
        let Details {
            attributes,
            removed_events,
            refused,
        } = details;
        let update = ProfileUpdate {
            profile_id: work.id.clone(),
            org_id: work.record.org.clone(),
            sandbox: work.record.sandbox.clone(),
            time_ms: now_ms(),
            change,
            identities: work.record.identities.clone(),
            attributes,
            removed_events,
            event_count: work.record.event_count(),
            flagged: work.record.flagged,
            refused,
        };
        let value = serde_json::to_vec(&update)
            .map_err(|e| fatal("a profile update cannot be written", e))?;
        ctx.emit(
            at.cause,
            Output::new(&self.topics.updates, work.id.as_bytes().to_vec(), value),
        );
        Ok(())
    }

    /// How long profiles keep events of `dataset`: its own setting, else the engine's; never
    /// less than a day.
    pub(crate) fn ttl_of(&self, dataset: &str) -> i64 {
        self.catalog
            .read()
            .datasets
            .get(dataset)
            .and_then(|d| d.profile_event_ttl_days)
            .map_or(self.settings.event_ttl_ms, |days| {
                i64::from(days) * ONE_DAY_MS
            })
            .max(ONE_DAY_MS)
    }

    fn timer(&mut self, ctx: &mut Context<'_>, at: At, key: &[u8]) -> Result<(), ProcessError> {
        let Some((org, sandbox, id)) = keys::parse_profile(key) else {
            return Ok(());
        };
        let (org, sandbox, id) = (org.to_string(), sandbox.to_string(), id.to_string());
        let mut work = self.load_key(ctx, at, key.to_vec(), &org, &sandbox, &id)?;
        if work.fresh {
            return Ok(());
        }
        let removed = self.expire(&mut work, now_ms());
        let mut touch = crate::segments::Touch::new(cdp_contract::records::Trigger::Timer);
        if !removed.is_empty() {
            touch.removed(&removed);
            let ids = removed.iter().map(|r| r.id.clone()).collect();
            let details = Details {
                removed_events: ids,
                ..Details::default()
            };
            self.update(ctx, at, &work, Change::Expired, details)?;
        }
        self.finish(ctx, at, &mut work, touch)
    }
}
