//! The catalog as a reader holds it: the latest value of every key, plus what the fold needs
//! to decide conditional records. How records change it is the fold's business (`fold.rs`).

use std::collections::{BTreeMap, HashMap};

use crate::conditional::Refusal;
use crate::flows::{Connection, Flow, SourceConnection, TargetConnection};
use crate::model::{
    ApiKey, Dataset, IdentityNamespace, MergePolicy, Schedule, SegmentDefinition, Stream, XdmSchema,
};

/// The catalog as of the last record applied.
#[derive(Debug, Default, Clone)]
pub struct CatalogState {
    pub streams: HashMap<String, Stream>,
    pub api_keys: HashMap<String, ApiKey>,
    /// Schema id → version → schema.
    pub schemas: HashMap<String, BTreeMap<u32, XdmSchema>>,
    pub datasets: HashMap<String, Dataset>,
    /// Tenant namespaces by `(org, sandbox, code)`; the standard ones are not stored.
    pub namespaces: HashMap<(String, String, String), IdentityNamespace>,
    pub merge_policies: HashMap<String, MergePolicy>,
    pub segments: HashMap<String, SegmentDefinition>,
    pub schedules: HashMap<String, Schedule>,
    /// Flow Service (seed 004): base connections (credentials sealed), source and target
    /// connections, and dataflows, by id.
    pub connections: HashMap<String, Connection>,
    pub source_connections: HashMap<String, SourceConnection>,
    pub target_connections: HashMap<String, TargetConnection>,
    pub flows: HashMap<String, Flow>,
    /// Schema id → version → its revision: the offset of the record that set its current
    /// definition, which conditional records compare against.
    pub(crate) revisions: HashMap<String, BTreeMap<u32, i64>>,
    /// Conditional records the fold refused, by offset: how their writer learns the outcome.
    pub(crate) refusals: HashMap<i64, Refusal>,
    /// Changes with every record applied (the offset of the last one): what a reader caching
    /// something derived from the catalog compares to know it is still current.
    pub(crate) version: i64,
}

impl CatalogState {
    /// Changes whenever a record is applied; equal versions mean an equal state.
    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn schema(&self, id: &str, version: u32) -> Option<&XdmSchema> {
        self.schemas.get(id).and_then(|v| v.get(&version))
    }

    pub fn latest_schema(&self, id: &str) -> Option<&XdmSchema> {
        self.schemas.get(id).and_then(|v| v.values().next_back())
    }

    /// See [`crate::Conditional`].
    pub fn revision(&self, id: &str, version: u32) -> Option<i64> {
        self.revisions.get(id)?.get(&version).copied()
    }

    /// Why the conditional record at `offset` was refused; `None` if it was applied (or is not
    /// a conditional record, or was not applied yet).
    pub fn refusal(&self, offset: i64) -> Option<&Refusal> {
        self.refusals.get(&offset)
    }

    /// Whether a dataset is bound to this version, which makes it immutable.
    pub fn in_use(&self, id: &str, version: u32) -> bool {
        self.datasets
            .values()
            .any(|d| d.schema_id == id && d.schema_version == version)
    }
}
