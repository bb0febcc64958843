//! Avro values for datasets whose format is Avro: a validated XDM entity becomes a Confluent
//! wire-format message (magic byte 0, the registry id as a big-endian u32, the Avro datum), with
//! the schema registered in the project's schemas log so any Confluent-compatible reader can
//! decode it.
//!
//! Subjects follow TopicRecordNameStrategy (`{events.valid}-{record full name}`): datasets of
//! different XDM schemas share the events.valid topic, and under TopicNameStrategy their
//! unrelated schemas would be one subject and refused as incompatible with each other. The
//! record name comes from the XDM schema id, so the versions of one XDM schema are versions of
//! one subject and are held to its compatibility rules.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use apache_avro::Schema;
use cdp_catalog::XdmSchema;
use cdp_registry::confluent::{Outcome, SchemaLog, SchemaLogError};
use cdp_xdm::{avro_schema_for, json_to_avro};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum AvroValueError {
    #[error("schema {0} cannot be mapped to Avro: {1}")]
    Mapping(String, String),
    #[error("the schema registry refused {subject}: {reason}")]
    Refused { subject: String, reason: String },
    #[error("cannot register {subject} in the schemas log: {source}")]
    Registry {
        subject: String,
        #[source]
        source: SchemaLogError,
    },
    /// Shown to users as the quarantine reason, so it names what did not fit.
    #[error("the value does not fit the dataset's Avro schema: {0}")]
    Value(String),
}

struct Registered {
    schema: Schema,
    id: u32,
}

/// By (XDM schema id, version): a version is immutable once a dataset uses it.
type Cache = HashMap<(String, u32), Arc<Registered>>;

/// Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct AvroValues {
    log: SchemaLog,
    valid_topic: String,
    cache: Arc<Mutex<Cache>>,
}

impl AvroValues {
    pub fn new(log: SchemaLog, valid_topic: String) -> Self {
        Self {
            log,
            valid_topic,
            cache: Arc::default(),
        }
    }

    /// Registers the schema's Avro form (once per XDM schema version) and encodes `entity`.
    pub async fn encode(
        &self,
        schema: &XdmSchema,
        entity: &Value,
    ) -> Result<Vec<u8>, AvroValueError> {
        let registered = self.registered(schema).await?;
        let value = json_to_avro(&registered.schema, entity)
            .map_err(|e| AvroValueError::Value(e.to_string()))?;
        cdp_registry::confluent::wire::encode(&registered.schema, registered.id, value)
            .map_err(|e| AvroValueError::Value(e.to_string()))
    }

    fn subject(&self, avro: &Schema) -> String {
        let name = avro.name().map(|n| n.fullname(None)).unwrap_or_default();
        format!("{}-{name}", self.valid_topic)
    }

    async fn registered(&self, schema: &XdmSchema) -> Result<Arc<Registered>, AvroValueError> {
        let key = (schema.id.clone(), schema.version);
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        let mapping = |e: String| AvroValueError::Mapping(schema.id.clone(), e);
        let avro = avro_schema_for(schema).map_err(|e| mapping(e.to_string()))?;
        let text = serde_json::to_string(&avro).map_err(|e| mapping(e.to_string()))?;
        let subject = self.subject(&avro);
        // Two concurrent misses both register: harmless, the log answers an identical schema
        // with the id and version it already has.
        let id = match self.log.register(&subject, &text).await {
            Ok(Outcome::Registered { id, .. }) => id,
            Ok(Outcome::Invalid(reason)) => {
                return Err(AvroValueError::Refused { subject, reason })
            }
            Ok(Outcome::Incompatible(reasons)) => {
                return Err(AvroValueError::Refused {
                    subject,
                    reason: format!("incompatible: {}", reasons.join("; ")),
                })
            }
            Err(source) => return Err(AvroValueError::Registry { subject, source }),
        };
        let entry = Arc::new(Registered { schema: avro, id });
        self.lock().insert(key, entry.clone());
        Ok(entry)
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        // Only whole entries are ever inserted, so a poisoned map is still consistent.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}
