//! The segment stage's configuration (`[segment]`).

use cdp_stage::RuntimeSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentSettings {
    pub group_id: String,
    /// This instance's stable name (its transactional id); default: the host name.
    pub instance_id: Option<String>,
    /// Streaming evaluation looks back this far in a profile's events (seed 003: one day);
    /// events older than this on arrival wait for batch evaluation.
    pub lookback_ms: i64,
    /// More events than this for one profile within one second are bot traffic: discarded for
    /// segmentation (still in the profile and the lake).
    pub bot_events_per_second: u32,
    pub max_batch: usize,
    pub max_wait_ms: u64,
    pub commit_interval_ms: u64,
    pub max_transaction_records: usize,
    pub state_dir: Option<String>,
    pub state_cache_mb: u64,
}

impl Default for SegmentSettings {
    fn default() -> Self {
        let runtime = RuntimeSettings::default();
        Self {
            group_id: "cdp-segment".to_string(),
            instance_id: None,
            lookback_ms: 24 * 60 * 60 * 1000,
            bot_events_per_second: 50,
            max_batch: runtime.max_batch,
            max_wait_ms: runtime.max_wait_ms,
            commit_interval_ms: runtime.commit_interval_ms,
            max_transaction_records: runtime.max_transaction_records,
            state_dir: runtime.state_dir,
            state_cache_mb: runtime.state_cache_mb,
        }
    }
}

impl SegmentSettings {
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
}
