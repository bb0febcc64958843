//! The intake stage: from `events.valid`, the events and records of datasets whose schema and
//! dataset are both profile-enabled, with their identities checked, onto the one-partition
//! `profile.sequence` (the identity stage's order). What cannot enter a profile — too large,
//! no usable identity — goes to `events.error` with the reason (the event itself is valid and
//! stays in its dataset). Stateless, so it scales with events.valid's partitions.

use cdp_catalog::CatalogView;
use cdp_contract::envelope::{self, RawHeaders};
use cdp_contract::quarantine::{ErrorRecord, Stage, Violation};
use cdp_contract::records::{Item, ItemKind, NamespaceTraits};
use cdp_stage::{Cause, Context, Output, ProcessError, Processor};
use cdp_xdm::decode::ValueDecoder;
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::identity::extract::extract;
use crate::json;

/// The XDM class of profile records.
pub const PROFILE_CLASS: &str = "_xdm.context.profile";

/// Size limits on what enters a profile.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_record_bytes: usize,
}

pub struct Intake {
    pub catalog: CatalogView,
    pub decoder: ValueDecoder,
    pub limits: Limits,
    pub sequence_topic: String,
    pub error_topic: String,
}

/// What becomes of one valid event.
enum Verdict {
    /// Not for profiles (its dataset or schema is not profile-enabled).
    Skip(&'static str),
    Item(Box<Item>),
    Refuse(Box<ErrorRecord>, &'static str),
}

impl Processor for Intake {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        for (i, m) in batch.iter().enumerate() {
            let key = m.key().map(<[u8]>::to_vec).unwrap_or_default();
            match self.judge(m).await {
                Verdict::Skip(reason) => {
                    metrics::counter!("cdp_intake_skipped_total", "reason" => reason).increment(1);
                }
                Verdict::Item(item) => {
                    for r in &item.refused {
                        metrics::counter!("cdp_intake_identities_refused_total", "reason" => r.reason.label())
                            .increment(1);
                    }
                    let value = json::to_vec(&item, "an item")?;
                    ctx.emit(
                        Cause::Input(i),
                        json::to_partition_zero(&self.sequence_topic, Some(key), value),
                    );
                }
                Verdict::Refuse(record, reason) => {
                    metrics::counter!("cdp_intake_refused_total", "reason" => reason).increment(1);
                    let value = json::to_vec(&record, "an error record")?;
                    ctx.emit(Cause::Input(i), Output::new(&self.error_topic, key, value));
                }
            }
        }
        Ok(())
    }
}

fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl Intake {
    /// The item an events.valid record makes, if it makes one (no refusal written): what a
    /// backfill sends again.
    pub async fn item_of(&self, m: &OwnedMessage) -> Option<Item> {
        match self.judge(m).await {
            Verdict::Item(item) => Some(*item),
            Verdict::Skip(_) | Verdict::Refuse(..) => None,
        }
    }

    async fn judge(&self, m: &OwnedMessage) -> Verdict {
        let Some(raw) = m.headers().and_then(RawHeaders::from_kafka) else {
            return Verdict::Skip("no_provenance_headers");
        };
        let Some(dataset_id) = header(m, envelope::DATASET_ID) else {
            return Verdict::Skip("no_dataset");
        };
        let (class, enabled) = {
            let catalog = self.catalog.read();
            let Some(dataset) = catalog.datasets.get(dataset_id) else {
                return Verdict::Skip("unknown_dataset");
            };
            let Some(schema) = catalog.latest_schema(&dataset.schema_id) else {
                return Verdict::Skip("unknown_schema");
            };
            (
                schema.class.clone(),
                dataset.profile_enabled && schema.profile_enabled,
            )
        };
        if !enabled {
            return Verdict::Skip("not_profile_enabled");
        }
        let kind = if class == PROFILE_CLASS {
            ItemKind::Record
        } else {
            ItemKind::Event
        };
        let refuse = |message: String, reason: &'static str, payload: Value| {
            Verdict::Refuse(
                Box::new(ErrorRecord {
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
                }),
                reason,
            )
        };
        let bytes = m.payload().unwrap_or_default();
        let mut entity = match self
            .decoder
            .decode(header(m, envelope::VALUE_FORMAT), bytes)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                let shown = Value::String(String::from_utf8_lossy(bytes).into_owned());
                return refuse(
                    format!("the value cannot be read: {e}"),
                    "unreadable",
                    shown,
                );
            }
        };
        // A JSON value is the entity's text already: kept as it came rather than written again.
        let json_value = header(m, envelope::VALUE_FORMAT).is_none_or(|f| f == "json");
        let text = match std::str::from_utf8(bytes) {
            Ok(t) if json_value => t.to_string(),
            _ => entity.to_string(),
        };
        let (limit, what) = match kind {
            ItemKind::Event => (self.limits.max_event_bytes, "event"),
            ItemKind::Record => (self.limits.max_record_bytes, "profile record"),
        };
        if text.len() > limit {
            return refuse(
                format!(
                    "the {what} is {} bytes; profiles take {what}s of at most {limit} bytes (it is in its dataset, not in the profile)",
                    text.len()
                ),
                "too_large",
                entity,
            );
        }
        let extracted = {
            let catalog = self.catalog.read();
            extract(&entity, |ns| {
                catalog
                    .namespace_kind(&raw.org_id, &raw.sandbox, ns)
                    .map(|(id_type, unique)| NamespaceTraits { id_type, unique })
            })
        };
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
            return refuse(message, "no_identity", entity);
        }
        let item_id = entity
            .get("_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{dataset_id}:{}:{}", m.partition(), m.offset()));
        let timestamp_ms = entity
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
            .unwrap_or(raw.received_ms);
        if kind == ItemKind::Record {
            // The graph is the authority on identities; attributes are the rest.
            if let Some(o) = entity.as_object_mut() {
                o.remove("identityMap");
            }
        }
        let entity = match RawValue::from_string(if kind == ItemKind::Record {
            entity.to_string()
        } else {
            text
        }) {
            Ok(e) => e,
            Err(e) => {
                return refuse(
                    format!("the value cannot be kept: {e}"),
                    "unreadable",
                    entity,
                )
            }
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
            entity,
        }))
    }
}
