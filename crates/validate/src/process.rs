//! What happens to one raw event: it becomes a valid event (its XDM entity, keyed by the
//! profile's primary identity, with where it was validated in its headers) or an error record
//! (every reason, the original payload). There is no third outcome: nothing is dropped.

use cdp_catalog::CatalogState;
use cdp_catalog::ValueFormat;
use cdp_contract::envelope::{self, Source};
use cdp_contract::quarantine::{ErrorRecord, Stage, Violation};
use cdp_contract::RawHeaders;
use rdkafka::message::{Header, OwnedHeaders};
use serde_json::Value;

use cdp_stage::Output;
use cdp_xdm::{filed_under, partition_key, target, MessageRefs, SchemaValidators};

use crate::follow::{Follower, Valid};

/// A raw event as read from the topic.
pub struct RawInput<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: Option<RawHeaders>,
    /// Its partition and offset on ingest.raw.
    pub position: (i32, i64),
}

pub enum Verdict {
    Valid {
        key: String,
        /// The entity as JSON; for [`Encoding::Avro`] the stage still has to encode it.
        value: Vec<u8>,
        headers: OwnedHeaders,
        encoding: Encoding,
        /// What the [`Follower`] made of it (the profile intake's item or refusal).
        follow: Result<Option<Output>, String>,
    },
    Invalid {
        key: String,
        record: Box<ErrorRecord>,
        headers: OwnedHeaders,
        reason: Reason,
    },
}

/// Why an event was quarantined, as a short bounded label for metrics (the record itself
/// carries every violation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Not written by the edge: no provenance headers.
    NoHeaders,
    /// Its stream was deleted in the meantime.
    UnknownStream,
    NotJson,
    /// No dataset, an unknown dataset, or a schema that is not the dataset's.
    Target,
    /// The body does not match the XDM schema.
    Schema,
    /// Valid, but not writable in the dataset's format (e.g. Avro refused it).
    Encoding,
    /// Its `timestamp` lies further after its arrival than `validate.max_future_ms`.
    Timestamp,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::NoHeaders => "no_headers",
            Reason::UnknownStream => "unknown_stream",
            Reason::NotJson => "not_json",
            Reason::Target => "target",
            Reason::Schema => "schema",
            Reason::Encoding => "encoding",
            Reason::Timestamp => "timestamp",
        }
    }
}

/// The value format a valid event's dataset asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// Avro of this XDM schema version, in the Confluent wire format. Encoding needs the schema
    /// registry (asynchronous), so it happens in the stage, not here.
    Avro {
        schema_id: String,
        version: u32,
    },
}

fn violation(message: impl Into<String>) -> Vec<Violation> {
    vec![Violation {
        pointer: String::new(),
        message: message.into(),
    }]
}

/// An event's timestamp more than `max_future_ms` after `received_ms` (the edge's clock, so
/// reading the same record again decides the same): why, for the error record.
fn too_far_ahead(entity: &Value, received_ms: i64, max_future_ms: i64) -> Option<String> {
    let text = entity.get("timestamp")?.as_str()?;
    let at = chrono::DateTime::parse_from_rfc3339(text)
        .ok()?
        .timestamp_millis();
    let ahead = at - received_ms;
    (ahead > max_future_ms).then(|| {
        format!(
            "timestamp {text} is {} s after the event arrived; at most {} s ahead is accepted (validate.max_future_ms)",
            ahead / 1000,
            max_future_ms / 1000
        )
    })
}

pub fn process(
    input: &RawInput<'_>,
    catalog: &CatalogState,
    validators: &SchemaValidators,
    namespace_order: &[String],
    max_future_ms: i64,
    follower: Option<&dyn Follower>,
) -> Verdict {
    let raw_key = input
        .key
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let payload: Result<Value, _> = serde_json::from_slice(input.payload);
    let original = || match &payload {
        Ok(v) => v.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(input.payload).into_owned()),
    };
    let Some(raw) = &input.headers else {
        return invalid_without_headers(raw_key, original());
    };
    let reject = |reason: Reason, dataset_id: Option<String>, violations: Vec<Violation>| {
        quarantined(
            reason,
            raw_key.clone(),
            raw,
            dataset_id,
            violations,
            original(),
        )
    };
    let Some(stream) = catalog.streams.get(&raw.stream_id) else {
        return reject(
            Reason::UnknownStream,
            None,
            violation(format!("stream {} no longer exists", raw.stream_id)),
        );
    };
    let payload = match &payload {
        Ok(v) => v,
        Err(e) => {
            return reject(
                Reason::NotJson,
                stream.dataset_id.clone(),
                violation(format!("payload is not JSON: {e}")),
            )
        }
    };
    let (entity, refs) = match raw.source {
        Source::Collection => {
            let header = &payload["header"];
            let refs = MessageRefs {
                dataset_id: header["datasetId"].as_str(),
                schema_id: header["schemaRef"]["id"].as_str(),
                content_type: header["schemaRef"]["contentType"].as_str(),
            };
            (&payload["body"]["xdmEntity"], refs)
        }
        Source::Stream => (payload, MessageRefs::default()),
    };
    let dataset_hint = filed_under(catalog, stream, refs.dataset_id);
    let target = match target(catalog, stream, refs) {
        Ok(t) => t,
        Err(e) => return reject(Reason::Target, dataset_hint, violation(e.detail())),
    };
    if let Err(violations) = validators.validate(target.schema, entity) {
        return reject(Reason::Schema, Some(target.dataset.id.clone()), violations);
    }
    if let Some(why) = too_far_ahead(entity, raw.received_ms, max_future_ms) {
        return reject(
            Reason::Timestamp,
            Some(target.dataset.id.clone()),
            vec![Violation {
                pointer: "/timestamp".into(),
                message: why,
            }],
        );
    }
    let value = match serde_json::to_vec(entity) {
        Ok(v) => v,
        Err(e) => {
            return reject(
                Reason::Encoding,
                Some(target.dataset.id.clone()),
                violation(format!("the entity cannot be written as JSON: {e}")),
            )
        }
    };
    let entity_text = std::str::from_utf8(&value).ok();
    let version = target.schema.version.to_string();
    let (encoding, format) = match target.dataset.format {
        ValueFormat::Json => (Encoding::Json, "json"),
        ValueFormat::Avro => (
            Encoding::Avro {
                schema_id: target.schema.id.clone(),
                version: target.schema.version,
            },
            "avro",
        ),
    };
    let key = partition_key(entity_text, namespace_order, &raw_key);
    let follow = match (follower, entity_text) {
        (Some(follower), Some(text)) => follower.follow(
            &Valid {
                raw,
                dataset_id: &target.dataset.id,
                entity,
                text,
                key: &key,
                position: input.position,
            },
            catalog,
        ),
        _ => Ok(None),
    };
    Verdict::Valid {
        key,
        follow,
        headers: raw
            .to_kafka()
            .insert(header(envelope::DATASET_ID, &target.dataset.id))
            .insert(header(envelope::SCHEMA_ID, &target.schema.id))
            .insert(header(envelope::SCHEMA_VERSION, &version))
            .insert(header(envelope::VALUE_FORMAT, format)),
        value,
        encoding,
    }
}

/// The error outcome for an event that passed validation but cannot be written in its
/// dataset's format (e.g. its Avro schema was refused by the registry).
pub fn refuse(input: &RawInput<'_>, dataset_id: &str, reason: String) -> Verdict {
    let key = input
        .key
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .unwrap_or_default();
    let original = serde_json::from_slice(input.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(input.payload).into_owned()));
    match &input.headers {
        Some(raw) => quarantined(
            Reason::Encoding,
            key,
            raw,
            Some(dataset_id.to_string()),
            violation(reason),
            original,
        ),
        None => invalid_without_headers(key, original),
    }
}

fn quarantined(
    reason: Reason,
    key: String,
    raw: &RawHeaders,
    dataset_id: Option<String>,
    violations: Vec<Violation>,
    payload: Value,
) -> Verdict {
    Verdict::Invalid {
        key,
        reason,
        headers: with_dataset(raw.to_kafka(), dataset_id.as_deref()),
        record: Box::new(ErrorRecord {
            batch_id: raw.batch_id.clone(),
            xaction_id: raw.xaction_id.clone(),
            stream_id: raw.stream_id.clone(),
            org_id: raw.org_id.clone(),
            sandbox: raw.sandbox.clone(),
            dataset_id,
            received_ms: raw.received_ms,
            stage: Stage::Validate,
            violations,
            payload,
        }),
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

fn with_dataset(headers: OwnedHeaders, dataset_id: Option<&str>) -> OwnedHeaders {
    match dataset_id {
        Some(d) => headers.insert(header(envelope::DATASET_ID, d)),
        None => headers,
    }
}

/// A message on the raw topic that did not come from the edge: kept, with what is known.
fn invalid_without_headers(key: String, payload: Value) -> Verdict {
    Verdict::Invalid {
        key,
        reason: Reason::NoHeaders,
        headers: OwnedHeaders::new(),
        record: Box::new(ErrorRecord {
            batch_id: String::new(),
            xaction_id: String::new(),
            stream_id: String::new(),
            org_id: String::new(),
            sandbox: String::new(),
            dataset_id: None,
            received_ms: 0,
            stage: Stage::Validate,
            violations: violation("raw event lacks the edge's provenance headers"),
            payload,
        }),
    }
}
