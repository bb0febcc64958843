//! The sinks stage's configuration (`[sinks]`). The key that opens the connections'
//! credentials is control's `control.secret_key`, shared by both.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinksSettings {
    /// Each flow target is its own consumer group, `<group_prefix>.<flow id>.<target id>`, so a
    /// slow or failing destination holds back only its own position.
    pub group_prefix: String,
    /// Records per delivery (Kinesis takes at most 500 per request: larger batches are split;
    /// a Kafka destination gets them all in flight at once).
    pub max_batch: usize,
    /// How long a delivery waits for more records before it goes.
    pub max_wait_ms: u64,
    /// Back-off between attempts of a delivery that failed, from `retry_initial_ms` doubling
    /// up to `retry_max_ms`; the position does not advance meanwhile.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How often the catalog is checked for new, changed or removed flows.
    pub refresh_ms: u64,
    /// How often a flow target's status is written to `sinks.status` while it changes.
    pub status_interval_ms: u64,
}

impl Default for SinksSettings {
    fn default() -> Self {
        Self {
            group_prefix: "cdp-sinks".to_string(),
            max_batch: 2_000,
            max_wait_ms: 50,
            retry_initial_ms: 500,
            retry_max_ms: 30_000,
            refresh_ms: 1_000,
            status_interval_ms: 1_000,
        }
    }
}
