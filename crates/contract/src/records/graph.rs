//! The records of `<ns>.identity.graph` (one partition), as JSON (camelCase): [`GraphRecord`]s —
//! links, cuts, evictions, merges and splits ([`GraphEvent`]), a profile's identities after a
//! change, and the identities of a record that were not linked — for the identity API.

use serde::{Deserialize, Serialize};

use super::identity::{Identity, Refused};

/// What happened to the graph, for `/identity/cluster/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum GraphChange {
    Linked {
        a: Identity,
        b: Identity,
    },
    /// A link cut because it would join two values of a unique namespace; the newer links won.
    Cut {
        a: Identity,
        b: Identity,
        namespace: String,
    },
    /// Evicted from a graph over its size limit.
    Evicted {
        identity: Identity,
    },
    Created {
        identities: Vec<Identity>,
    },
    /// This profile joined `into`.
    Merged {
        into: String,
    },
    /// These identities left this profile (they form or joined other profiles).
    Split {
        moved: Vec<Identity>,
    },
}

/// One change, with the profile it happened to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraphEvent {
    pub profile_id: String,
    pub seq: u64,
    pub time_ms: i64,
    #[serde(flatten)]
    pub change: GraphChange,
}

/// The value on `identity.graph`: one change, or a profile's identities now.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "camelCase")]
pub enum GraphRecord {
    /// A link, cut, eviction, merge or split.
    Change(GraphEvent),
    /// The identities of a profile after a change (empty: the profile is gone).
    #[serde(rename_all = "camelCase")]
    Members {
        profile_id: String,
        org_id: String,
        sandbox: String,
        seq: u64,
        time_ms: i64,
        identities: Vec<Identity>,
    },
    /// Identities of a record that were not linked, with the reason.
    #[serde(rename_all = "camelCase")]
    Refused {
        org_id: String,
        sandbox: String,
        seq: u64,
        time_ms: i64,
        dataset_id: String,
        item_id: String,
        refused: Vec<Refused>,
    },
}
