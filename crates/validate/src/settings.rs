//! The validate stage's configuration (`[validate]` in the configuration file). Identity
//! namespaces for keying are the shared `[identity]` section, read by the edge too.

use cdp_stage::RuntimeSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateSettings {
    /// Consumer group of the stage; every instance of one pipeline uses the same.
    pub group_id: String,
    /// This instance's stable name. It makes the transactional id, so a restarted instance
    /// fences its predecessor and aborts its open transaction at once. Must differ between
    /// instances running at the same time; default: the host name.
    pub instance_id: Option<String>,
    /// Most raw events handed to validation at once.
    pub max_batch: usize,
    /// How long a batch waits for more events once it has one.
    pub max_wait_ms: u64,
    /// Under load, a transaction carries everything read during this interval; when the raw
    /// topic runs dry it commits at once.
    pub commit_interval_ms: u64,
    /// A transaction commits early once it carries this many raw events.
    pub max_transaction_records: usize,
    /// Partitions of events.valid / events.error when the stage creates them.
    pub partitions: i32,
    /// How far after its arrival at the edge an event's `timestamp` may lie, in ms; later ones
    /// are quarantined (reason `timestamp`). A profile keeps an event until its time-to-live
    /// after its timestamp, so one dated years ahead would never leave.
    pub max_future_ms: i64,
    /// Whether the profile intake runs inside this stage: valid events of profile-enabled
    /// datasets go on to `profile.sequence` (or, refused by the profile, to events.error) in the
    /// same transaction. Off for a deployment without profiles; validation is the same either way.
    pub profile_intake: bool,
}

impl Default for ValidateSettings {
    fn default() -> Self {
        let runtime = RuntimeSettings::default();
        Self {
            group_id: "cdp-validate".to_string(),
            instance_id: None,
            max_batch: runtime.max_batch,
            max_wait_ms: runtime.max_wait_ms,
            commit_interval_ms: runtime.commit_interval_ms,
            max_transaction_records: runtime.max_transaction_records,
            partitions: 6,
            max_future_ms: 24 * 60 * 60 * 1000,
            profile_intake: true,
        }
    }
}

impl ValidateSettings {
    pub fn runtime(&self) -> RuntimeSettings {
        RuntimeSettings {
            max_batch: self.max_batch,
            max_wait_ms: self.max_wait_ms,
            commit_interval_ms: self.commit_interval_ms,
            max_transaction_records: self.max_transaction_records,
            ..RuntimeSettings::default()
        }
    }
}
