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

    /// One partition: events and profile records of profile-enabled datasets with their checked
    /// identities (the intake stage), and items the profile stage hands back after a merge or
    /// split. One partition because the identity graph has one owner: this is its order.
    pub fn profile_sequence(&self) -> String {
        self.name("profile.sequence")
    }

    /// Keyed by profile id: the identity stage's decisions (each item with its profile, and
    /// merges, splits and memberships), the profile engine's input.
    pub fn profile_resolved(&self) -> String {
        self.name("profile.resolved")
    }

    /// Keyed by profile id: what changed in a profile, written by the profile engine for
    /// subscribers (nothing inside the pipeline reads it).
    pub fn profile_updates(&self) -> String {
        self.name("profile.updates")
    }

    /// Compacted: the profile engine's state, one record per profile (identities, fragments,
    /// the events segments need, memberships) and its timers.
    pub fn engine_changelog(&self) -> String {
        self.name("engine.changelog")
    }

    /// One partition: the identity graph's history (links, cuts, evictions, merges, splits,
    /// memberships), read by the identity API.
    pub fn identity_graph(&self) -> String {
        self.name("identity.graph")
    }

    /// Compacted: the identity stage's state (the graph).
    pub fn identity_changelog(&self) -> String {
        self.name("identity.changelog")
    }

    /// Keyed by profile id: segment membership changes (realized / exited), Avro in the
    /// Confluent wire format (subject `<topic>-value` in the project's registry).
    pub fn segment_membership(&self) -> String {
        self.name("segment.membership")
    }

    /// The same membership changes as JSON, for consumers without a registry.
    pub fn segment_membership_json(&self) -> String {
        self.name("segment.membership.json")
    }

    /// Keyed by profile id, header `cdp-flow`: the documents destination flows export (seed
    /// 004's format), written by the profile engine, delivered by the sinks stage.
    pub fn segment_exports(&self) -> String {
        self.name("segment.exports")
    }

    /// Compacted, keyed by `<flow id>/<target connection id>`: each flow target's delivery
    /// status and counts, written by the sinks stage, served by control.
    pub fn sinks_status(&self) -> String {
        self.name("sinks.status")
    }

    /// Exports a destination refused permanently, with the reason in headers.
    pub fn sinks_deadletter(&self) -> String {
        self.name("sinks.deadletter")
    }

    /// Compacted, one partition, keyed by `<stage>/<instance>`: which input partitions each
    /// instance of a queryable stage (engine, identity) holds and where its query API is.
    pub fn endpoints(&self) -> String {
        self.name("endpoints")
    }

    /// Recovery checkpoints of the intake, identity and engine stages.
    pub fn checkpoints(&self, stage: &str) -> String {
        self.name(&format!("{stage}.checkpoints"))
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
