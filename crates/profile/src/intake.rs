//! The profile intake: events and records of datasets whose schema and dataset are both
//! profile-enabled, with their identities checked, become items on `profile.sequence` (the
//! identity stage's order), on the partition of their sandbox
//! ([`cdp_contract::partition::for_sandbox`]). What cannot enter a profile — too large,
//! no usable identity — goes to `events.error` with the reason (the event itself is valid and
//! stays in its dataset).
//!
//! It runs inside the validate stage ([`ProfileIntake`], a `cdp_validate::Follower`), on the
//! entity validate has just parsed, in validate's transaction; a backfill reads events.valid
//! and judges its records the same way ([`Intake::item_of`]).
//!
//! **The identity fast path** ([`FastPath`]): an event with exactly one identity (none refused)
//! links nothing, so the identity owner would only look up which profile holds that identity.
//! Once the intake has seen the identity alone before and not linked since ([`crate::seen`]:
//! its first event goes to the owner, which creates its profile; an identity linked to others
//! goes there too, since it is likely in a profile another identity named), it sends such an
//! event straight to `profile.resolved`,
//! to the profile the identity names when it creates its own cluster (its digest,
//! [`crate::identity::graph::profile_id`]), as a `Resolved::Direct`.
//! The engine applies it there if that profile holds the identity, and otherwise forwards it to
//! the identity owner: a stale or wrong guess costs a hop, never an event. Events with two or
//! more identities and profile records always go through the owner: they may link identities,
//! and a link's recency decides unique-namespace cuts.

use cdp_catalog::{CatalogState, CatalogView};
use cdp_contract::envelope::{self, RawHeaders};
use cdp_contract::quarantine::{ErrorRecord, Stage, Violation};
use cdp_contract::records::{Item, ItemKind, NamespaceTraits, Resolved};
use cdp_stage::Output;
use cdp_validate::{Follower, Valid};
use cdp_xdm::decode::ValueDecoder;
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::identity::extract::extract;
use crate::identity::graph::profile_digest;
use crate::seen::Seen;

/// The XDM class of profile records.
pub const PROFILE_CLASS: &str = "_xdm.context.profile";

/// Size limits on what enters a profile.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_record_bytes: usize,
}

/// The intake as the validate stage runs it.
pub struct ProfileIntake {
    pub limits: Limits,
    pub sequence_topic: String,
    /// profile.sequence's partition count: an item goes to its sandbox's partition.
    pub sequence_partitions: i32,
    pub error_topic: String,
    /// Where events with one identity go straight to their profile; `None`: every item goes
    /// to the identity owner.
    pub fast_path: Option<FastPath>,
}

/// `profile.resolved`, for the identity fast path.
pub struct FastPath {
    pub resolved_topic: String,
    /// Its partition count: a profile is on `partition::for_key(profile id)`.
    pub resolved_partitions: i32,
    /// Identities seen before: only those take the fast path (a first sighting would find no
    /// profile and be forwarded to the owner, a hop later than sending it there).
    pub seen: Seen,
}

impl ProfileIntake {
    /// The item's output: straight to its profile if the fast path takes it, else to the
    /// identity owner of its sandbox.
    fn place(&self, key: Vec<u8>, mut item: Box<Item>) -> Result<Output, String> {
        if let Some(fast) = &self.fast_path {
            let single = item.kind == ItemKind::Event
                && item.identities.len() == 1
                && item.refused.is_empty()
                && !item.refresh;
            // The unsalted digest of the org, sandbox and identity: the id of the profile the
            // identity creates, and (its first 64 bits) the identity's fingerprint.
            let digest = |identity| profile_digest(&item.org_id, &item.sandbox, identity, 0);
            let fingerprint = |digest: &[u8; 16]| {
                let mut first = [0; 8];
                first.copy_from_slice(&digest[..8]);
                u64::from_be_bytes(first)
            };
            if item.identities.len() > 1 {
                let prints: Vec<u64> = item
                    .identities
                    .iter()
                    .map(|(identity, _)| fingerprint(&digest(identity)))
                    .collect();
                fast.seen.together(&prints);
            }
            let guess = single
                .then(|| digest(&item.identities[0].0))
                .filter(|d| fast.seen.alone(fingerprint(d)))
                .map(hex::encode);
            if let Some(profile) = guess {
                item.owner = Some(item.identities[0].0.clone());
                let partition =
                    cdp_contract::partition::for_key(profile.as_bytes(), fast.resolved_partitions);
                let value = serde_json::to_vec(&Resolved::Direct {
                    profile_id: profile.clone(),
                    item,
                })
                .map_err(|e| format!("an item cannot be written: {e}"))?;
                metrics::counter!("cdp_intake_items_total", "path" => "direct").increment(1);
                let mut output = Output::new(&fast.resolved_topic, profile.into_bytes(), value);
                output.partition = Some(partition);
                return Ok(output);
            }
        }
        metrics::counter!("cdp_intake_items_total", "path" => "owner").increment(1);
        let value =
            serde_json::to_vec(&item).map_err(|e| format!("an item cannot be written: {e}"))?;
        let mut output = Output::new(&self.sequence_topic, key, value);
        output.partition = Some(cdp_contract::partition::for_sandbox(
            &item.org_id,
            &item.sandbox,
            self.sequence_partitions,
        ));
        Ok(output)
    }
}

impl Follower for ProfileIntake {
    fn topics(&self) -> Vec<String> {
        let mut topics = vec![self.sequence_topic.clone(), self.error_topic.clone()];
        topics.extend(self.fast_path.as_ref().map(|f| f.resolved_topic.clone()));
        topics
    }

    fn follow(&self, valid: &Valid<'_>, catalog: &CatalogState) -> Result<Option<Output>, String> {
        let verdict = match kind_of(catalog, valid.dataset_id) {
            Ok(kind) => judge(
                catalog,
                self.limits,
                kind,
                valid.raw,
                valid.dataset_id,
                Entity {
                    value: valid.entity,
                    text: valid.text,
                },
                valid.position,
            ),
            Err(reason) => Verdict::Skip(reason),
        };
        let key = valid.key.as_bytes().to_vec();
        match verdict {
            Verdict::Skip(reason) => {
                metrics::counter!("cdp_intake_skipped_total", "reason" => reason).increment(1);
                Ok(None)
            }
            Verdict::Item(item) => {
                for r in &item.refused {
                    metrics::counter!("cdp_intake_identities_refused_total", "reason" => r.reason.label())
                        .increment(1);
                }
                self.place(key, item).map(Some)
            }
            Verdict::Refuse(record, reason) => {
                metrics::counter!("cdp_intake_refused_total", "reason" => reason).increment(1);
                let value = serde_json::to_vec(&record)
                    .map_err(|e| format!("an error record cannot be written: {e}"))?;
                Ok(Some(Output::new(&self.error_topic, key, value)))
            }
        }
    }
}

/// The intake as a backfill runs it on events.valid records.
pub struct Intake {
    pub catalog: CatalogView,
    pub decoder: ValueDecoder,
    pub limits: Limits,
}

/// What becomes of one valid event.
enum Verdict {
    /// Not for profiles (its dataset or schema is not profile-enabled).
    Skip(&'static str),
    Item(Box<Item>),
    Refuse(Box<ErrorRecord>, &'static str),
}

fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// A valid event's entity, parsed and as text.
struct Entity<'a> {
    value: &'a Value,
    text: &'a str,
}

impl Intake {
    /// The item an events.valid record makes, if it makes one (no refusal written): what a
    /// backfill sends again. Named by the raw event's position (its `cdp-raw-position`
    /// header) when it has no `_id`, as validate named it.
    pub async fn item_of(&self, m: &OwnedMessage) -> Option<Item> {
        let raw = m.headers().and_then(RawHeaders::from_kafka)?;
        let dataset_id = header(m, envelope::DATASET_ID)?;
        let kind = kind_of(&self.catalog.read(), dataset_id).ok()?;
        let bytes = m.payload().unwrap_or_default();
        let value = self
            .decoder
            .decode(header(m, envelope::VALUE_FORMAT), bytes)
            .await
            .ok()?;
        // A JSON value is the entity's text already: kept as it came rather than written again.
        let json_value = header(m, envelope::VALUE_FORMAT).is_none_or(|f| f == "json");
        let text = match std::str::from_utf8(bytes) {
            Ok(t) if json_value => t.to_string(),
            _ => value.to_string(),
        };
        let position = header(m, envelope::RAW_POSITION)
            .and_then(|p| p.split_once(':'))
            .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
            .unwrap_or((m.partition(), m.offset()));
        let entity = Entity {
            value: &value,
            text: &text,
        };
        let catalog = self.catalog.read();
        match judge(
            &catalog,
            self.limits,
            kind,
            &raw,
            dataset_id,
            entity,
            position,
        ) {
            Verdict::Item(item) => Some(*item),
            Verdict::Skip(_) | Verdict::Refuse(..) => None,
        }
    }
}

/// Whether a dataset's events enter profiles, and as what; else why not.
fn kind_of(catalog: &CatalogState, dataset_id: &str) -> Result<ItemKind, &'static str> {
    let dataset = catalog.datasets.get(dataset_id).ok_or("unknown_dataset")?;
    let schema = catalog
        .latest_schema(&dataset.schema_id)
        .ok_or("unknown_schema")?;
    if !(dataset.profile_enabled && schema.profile_enabled) {
        return Err("not_profile_enabled");
    }
    Ok(if schema.class == PROFILE_CLASS {
        ItemKind::Record
    } else {
        ItemKind::Event
    })
}

fn refusal(raw: &RawHeaders, dataset_id: &str, message: String, payload: Value) -> ErrorRecord {
    ErrorRecord {
        batch_id: raw.batch_id.clone(),
        xaction_id: raw.xaction_id.clone(),
        stream_id: raw.stream_id.clone(),
        org_id: raw.org_id.clone(),
        sandbox: raw.sandbox.clone(),
        dataset_id: Some(dataset_id.to_string()),
        received_ms: raw.received_ms,
        stage: Stage::Profile,
        violations: vec![Violation {
            pointer: String::new(),
            message,
        }],
        payload,
    }
}

/// What a valid event of a profile-enabled dataset makes. `position` names an event without
/// `_id`: `<dataset>:<partition>:<offset>` of the raw event.
fn judge(
    catalog: &CatalogState,
    limits: Limits,
    kind: ItemKind,
    raw: &RawHeaders,
    dataset_id: &str,
    entity: Entity<'_>,
    position: (i32, i64),
) -> Verdict {
    let refuse = |message: String, reason: &'static str| {
        Verdict::Refuse(
            Box::new(refusal(raw, dataset_id, message, entity.value.clone())),
            reason,
        )
    };
    let (limit, what) = match kind {
        ItemKind::Event => (limits.max_event_bytes, "event"),
        ItemKind::Record => (limits.max_record_bytes, "profile record"),
    };
    if entity.text.len() > limit {
        return refuse(
            format!(
                "the {what} is {} bytes; profiles take {what}s of at most {limit} bytes (it is in its dataset, not in the profile)",
                entity.text.len()
            ),
            "too_large",
        );
    }
    let extracted = extract(entity.value, |ns| {
        catalog
            .namespace_kind(&raw.org_id, &raw.sandbox, ns)
            .map(|(id_type, unique)| NamespaceTraits { id_type, unique })
    });
    if extracted.identities.is_empty() {
        let why: Vec<String> = extracted
            .refused
            .iter()
            .map(|r| format!("{}:{} ({})", r.ns, r.id, r.reason.label()))
            .collect();
        let message = if why.is_empty() {
            "no identity in identityMap: a profile needs at least one".to_string()
        } else {
            format!("no usable identity: {}", why.join(", "))
        };
        return refuse(message, "no_identity");
    }
    let item_id = entity
        .value
        .get("_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{dataset_id}:{}:{}", position.0, position.1));
    let timestamp_ms = entity
        .value
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .unwrap_or(raw.received_ms);
    let kept = match kind {
        ItemKind::Event => entity.text.to_string(),
        ItemKind::Record => {
            // The graph is the authority on identities; attributes are the rest.
            let mut attributes = entity.value.clone();
            if let Some(o) = attributes.as_object_mut() {
                o.remove("identityMap");
            }
            attributes.to_string()
        }
    };
    let kept = match RawValue::from_string(kept) {
        Ok(e) => e,
        Err(e) => return refuse(format!("the value cannot be kept: {e}"), "unreadable"),
    };
    Verdict::Item(Box::new(Item {
        kind,
        org_id: raw.org_id.clone(),
        sandbox: raw.sandbox.clone(),
        dataset_id: dataset_id.to_string(),
        item_id,
        timestamp_ms,
        ingest_ms: raw.received_ms,
        identities: extracted.identities,
        refused: extracted.refused,
        owner: None,
        transfer: None,
        refresh: false,
        entity: kept,
    }))
}
