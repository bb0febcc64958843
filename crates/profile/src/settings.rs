//! The profile stages' configuration (`[profile]`): the identity stage, the profile engine
//! and the intake (which runs inside validate) share one section; each stage runs as its own
//! consumer group.

use cdp_stage::RuntimeSettings;
use serde::{Deserialize, Serialize};

/// A day: the shortest event time-to-live a profile may have (AEP's guardrail).
pub const ONE_DAY_MS: i64 = 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProfileSettings {
    /// Consumer groups: `<group_prefix>-identity`, `-engine`.
    pub group_prefix: String,
    /// This instance's stable name (transactional ids); default: the host name.
    pub instance_id: Option<String>,
    /// Partitions of profile.resolved and the engine's topics (and so of the engine's state)
    /// when the stages create them; more partitions, more engine instances.
    pub partitions: i32,
    /// Partitions of profile.sequence, the identity stage's input, when the stages create it:
    /// sandboxes are spread over them (a sandbox's graph lives on one), and each is owned by
    /// one identity instance at a time, so this is how many instances can resolve identities
    /// at once. Fixed once the topic exists: a sandbox's graph stays on the partition it was
    /// created on.
    pub identity_partitions: i32,
    /// The identity fast path: events with exactly one identity go from the intake straight to
    /// the profile that identity created, not through the identity owner (the engine forwards
    /// them to the owner when that guess is wrong). Off: every item goes through the owner.
    pub identity_fast_path: bool,
    /// How long a profile keeps an event for segmentation (at least a day).
    pub event_ttl_ms: i64,
    /// The most events a profile stores: at it, a new event is not stored (counted on the
    /// profile) and the profile is flagged, and segmentation skips it.
    pub max_events_per_profile: u32,
    /// Event fields every profile keeps besides those its sandbox's segment definitions read
    /// (dotted paths; `["*"]` keeps whole events, at the cost of state). The Profile API's
    /// event lookup shows what is kept; whole events are in the lake and on events.valid.
    pub keep_event_fields: Vec<String>,
    /// Where the engine and the identity stage answer queries on the state they hold
    /// (control's Profile and Identity APIs ask them there). Port 0 picks a free one.
    pub query_listen: String,
    /// The address other processes reach that listener at, advertised on `<ns>.endpoints`;
    /// default `http://<the address it listens on>` (set it when listening on 0.0.0.0).
    pub query_url: Option<String>,
    /// Larger events are refused into profiles (still in the lake), with the reason on
    /// events.error.
    pub max_event_bytes: usize,
    /// Larger profile records are refused likewise.
    pub max_record_bytes: usize,
    /// The Confluent-compatible registry, to read Avro values of events.valid.
    pub registry_url: String,
    /// The bearer credential presented to the registry; default (unset): `control.admin_token`,
    /// the stages' credential.
    pub registry_token: Option<String>,
    pub max_batch: usize,
    pub max_wait_ms: u64,
    pub commit_interval_ms: u64,
    pub max_transaction_records: usize,
    /// Where the identity stage and the engine keep their state on disk (see
    /// `RuntimeSettings`).
    pub state_dir: Option<String>,
    pub state_cache_mb: u64,
}

impl Default for ProfileSettings {
    fn default() -> Self {
        let runtime = RuntimeSettings::default();
        Self {
            group_prefix: "cdp-profile".to_string(),
            instance_id: None,
            partitions: 6,
            identity_partitions: 4,
            identity_fast_path: true,
            event_ttl_ms: ONE_DAY_MS,
            max_events_per_profile: 5_000,
            keep_event_fields: Vec::new(),
            query_listen: "127.0.0.1:9470".to_string(),
            query_url: None,
            max_event_bytes: 10 * 1024,
            max_record_bytes: 100 * 1024,
            registry_token: None,
            registry_url: "http://127.0.0.1:8081".to_string(),
            max_batch: runtime.max_batch,
            max_wait_ms: runtime.max_wait_ms,
            commit_interval_ms: runtime.commit_interval_ms,
            max_transaction_records: runtime.max_transaction_records,
            state_dir: runtime.state_dir,
            state_cache_mb: runtime.state_cache_mb,
        }
    }
}

impl ProfileSettings {
    pub fn runtime(&self) -> RuntimeSettings {
        RuntimeSettings {
            max_batch: self.max_batch,
            max_wait_ms: self.max_wait_ms,
            commit_interval_ms: self.commit_interval_ms,
            max_transaction_records: self.max_transaction_records,
            state_dir: self.state_dir.clone(),
            state_cache_mb: self.state_cache_mb,
        }
    }

    /// The time-to-live in force: never below a day.
    pub fn ttl_ms(&self) -> i64 {
        self.event_ttl_ms.max(ONE_DAY_MS)
    }

    pub fn group(&self, stage: &str) -> String {
        format!("{}-{stage}", self.group_prefix)
    }
}
