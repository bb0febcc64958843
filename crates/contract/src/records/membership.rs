//! The membership record on `<ns>.segment.membership` (Avro, Confluent wire format) and
//! `<ns>.segment.membership.json` (JSON): one per change of a profile's membership in a
//! segment, keyed by profile id.

use serde::{Deserialize, Serialize};

use super::identity::Identity;

/// AEP's membership statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Status {
    /// Entered now.
    Realized,
    /// Stays in (shown by the Profile API for memberships older than the last evaluation).
    Existing,
    /// Left now.
    Exited,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Realized => "realized",
            Status::Existing => "existing",
            Status::Exited => "exited",
        }
    }
}

/// What made the membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Trigger {
    /// A new event of the profile.
    Event,
    /// Profile attributes or identities changed.
    Profile,
    /// The real-time exit timer: time passed, no new data.
    Timer,
    /// The profile joined another one (its memberships end).
    Merged,
    /// A definition was created or changed: every held profile was evaluated.
    Definition,
    /// A batch segmentation schedule ran.
    Schedule,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Event => "event",
            Trigger::Profile => "profile",
            Trigger::Timer => "timer",
            Trigger::Merged => "merged",
            Trigger::Definition => "definition",
            Trigger::Schedule => "schedule",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MembershipChange {
    pub profile_id: String,
    pub org_id: String,
    pub sandbox: String,
    pub identities: Vec<Identity>,
    pub segment_id: String,
    pub status: Status,
    /// When the profile (last) qualified, epoch ms.
    pub last_qualification_time: i64,
    /// When the change was decided, epoch ms.
    pub time: i64,
    pub trigger: Trigger,
    /// The event that caused it, for `trigger: event`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
}

/// The Avro schema of [`MembershipChange`], registered as `<topic>-value`.
pub const AVRO_SCHEMA: &str = r#"{
  "type": "record", "name": "SegmentMembership", "namespace": "cdp.segment",
  "fields": [
    {"name": "profileId", "type": "string"},
    {"name": "orgId", "type": "string"},
    {"name": "sandbox", "type": "string"},
    {"name": "identities", "type": {"type": "array", "items": {
      "type": "record", "name": "Identity",
      "fields": [{"name": "ns", "type": "string"}, {"name": "id", "type": "string"}]}}},
    {"name": "segmentId", "type": "string"},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["realized", "existing", "exited"]}},
    {"name": "lastQualificationTime", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "trigger", "type": "string"},
    {"name": "eventId", "type": ["null", "string"], "default": null}
  ]
}"#;
