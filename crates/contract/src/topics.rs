//! Topic names, kept in one place and prefixed by a configurable namespace so several
//! pipelines can share one cluster.

use serde::{Deserialize, Serialize};

/// Resolves the pipeline's topic names under one namespace (`cdp` by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topics {
    pub namespace: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            namespace: "cdp".to_string(),
        }
    }
}

impl Topics {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}.{}", self.namespace, suffix)
    }

    /// Every message the edge accepted, as received (plus the filled-in org).
    pub fn ingest_raw(&self) -> String {
        self.name("ingest.raw")
    }

    /// Compacted: streams, API keys and (later) schemas, datasets, segments, flows.
    pub fn catalog(&self) -> String {
        self.name("catalog")
    }

    /// Events that passed validation, keyed by the profile's primary identity.
    pub fn events_valid(&self) -> String {
        self.name("events.valid")
    }

    /// Quarantine: events that failed validation, with their reasons and original payload.
    pub fn events_error(&self) -> String {
        self.name("events.error")
    }

    /// Compacted: the Confluent-compatible schema registry's subjects and schemas.
    pub fn schemas(&self) -> String {
        self.name("schemas")
    }

    /// The validate stage's recovery checkpoints: per raw partition, where on the output topics
    /// the outputs of not-yet-committed raw events can start (see crates/validate/src/recovery.rs).
    pub fn validate_checkpoints(&self) -> String {
        self.name("validate.checkpoints")
    }

    /// Compacted, keyed by batch id: batch status, counts and files, written by the lake.
    /// Kept apart from the catalog because it grows with traffic, not with configuration.
    pub fn batches(&self) -> String {
        self.name("batches")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_namespace() {
        let t = Topics::new("acme");
        assert_eq!(t.ingest_raw(), "acme.ingest.raw");
        assert_eq!(t.catalog(), "acme.catalog");
        assert_eq!(Topics::default().events_error(), "cdp.events.error");
    }
}
