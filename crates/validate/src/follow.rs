//! What else a valid event feeds, in the validate stage's own transaction: the profile intake
//! (`cdp_profile::intake`). Validate has parsed and checked the event already, so the intake
//! judges the parsed entity instead of reading events.valid again: one parse and one hop
//! fewer on the way to a profile, and the same exactly-once guarantee as events.valid (the
//! intake's record commits or aborts with the valid event it came from).

use cdp_catalog::CatalogState;
use cdp_contract::RawHeaders;
use cdp_stage::Output;
use serde_json::Value;

/// A raw event that passed validation, as the stage is about to write it to events.valid.
pub struct Valid<'a> {
    pub raw: &'a RawHeaders,
    pub dataset_id: &'a str,
    /// The XDM entity, parsed.
    pub entity: &'a Value,
    /// The entity as JSON text (events.valid's value for a JSON dataset).
    pub text: &'a str,
    /// events.valid's key: the profile's primary identity.
    pub key: &'a str,
    /// The raw event's partition and offset on ingest.raw: stable across re-reads, so it can
    /// name an event that has no `_id`.
    pub position: (i32, i64),
}

/// A consumer of valid events that runs inside the validate stage.
pub trait Follower: Send + Sync {
    /// The topics its records go to: the stage's recovery reads them like its own outputs.
    fn topics(&self) -> Vec<String>;
    /// The record a valid event makes, if any: what it cannot take in it writes as an error
    /// record, so nothing is dropped. An error (a record that cannot be written at all, a
    /// defect) stops the stage rather than lose the event.
    fn follow(&self, valid: &Valid<'_>, catalog: &CatalogState) -> Result<Option<Output>, String>;
}
