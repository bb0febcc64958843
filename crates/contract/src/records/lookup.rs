//! The answers of the stages' query APIs (served where the state lives, asked by control for
//! the Profile and Identity APIs): what the profile engine holds of a profile
//! ([`ProfileLookup`], [`EventsPage`]) and what the identity owner holds of an identity
//! ([`IdentityLookup`], [`HistoryLookup`]). JSON, camelCase.
//!
//! The query APIs answer 200 with these, 404 when the partition is held here and the key is not
//! in it, and 421 (Misdirected Request) when this instance does not hold the key's partition
//! (it moved: ask the endpoints again).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::graph::GraphEvent;
use super::identity::{Identity, Refused};
use super::profile::Fragment;

/// A profile as the engine holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileLookup {
    pub profile_id: String,
    pub org_id: String,
    pub sandbox: String,
    pub identities: Vec<Identity>,
    /// Its profile records, one per dataset and owner identity (merged by the asker, under
    /// the merge policy it was asked for).
    pub fragments: Vec<Fragment>,
    pub event_count: u32,
    pub flagged: bool,
    /// Events not stored because the profile was at its event cap.
    #[serde(default)]
    pub events_not_stored: u64,
    /// The latest identities that were not linked, oldest first, with when.
    pub refused: Vec<RefusedAt>,
    /// Its segment memberships: current ones and recent exits.
    pub memberships: Vec<MembershipEntry>,
    pub last_modified_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedAt {
    #[serde(flatten)]
    pub refused: Refused,
    pub time_ms: i64,
}

/// A profile's membership in one segment, as of its last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipEntry {
    pub segment_id: String,
    /// `realized` (a member) or `exited`.
    pub status: super::membership::Status,
    pub last_qualification_time: i64,
}

/// A page of a profile's events, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventsPage {
    pub events: Vec<EventEntry>,
    /// Where the next page starts (`(timestamp, id)` of the last event of this one), when more
    /// remain.
    pub next: Option<(i64, String)>,
}

/// One event as the engine holds it: the fields kept of it (see the engine's projection) with
/// `_id`, `eventType` and `timestamp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventEntry {
    pub id: String,
    pub timestamp_ms: i64,
    pub entity: Value,
}

/// The profile holding an identity, and its identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityLookup {
    pub profile_id: String,
    pub identities: Vec<Identity>,
    pub last_modified_ms: i64,
}

/// The graph changes of the profile holding an identity and those naming the identity, newest
/// first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryLookup {
    pub profile_id: String,
    pub history: Vec<GraphEvent>,
}

/// One segment's member count and its entries and exits per minute (minute start in epoch ms
/// → `(entries, exits)`), as the engine counts them, summed over the partitions asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentTally {
    pub members: u64,
    pub per_minute: std::collections::BTreeMap<i64, (u64, u64)>,
}

impl SegmentTally {
    /// Adds `other` (another partition's) into this one.
    pub fn add(&mut self, other: &SegmentTally) {
        self.members += other.members;
        for (minute, (entries, exits)) in &other.per_minute {
            let bucket = self.per_minute.entry(*minute).or_default();
            bucket.0 += entries;
            bucket.1 += exits;
        }
    }
}

/// Segment id → its tally.
pub type Tallies = std::collections::BTreeMap<String, SegmentTally>;
