//! The engine's configuration. The segmentation rules are the `[segment]` section
//! ([`SegmentSettings`]); everything else (consumer group, instance, partitions, profile rules,
//! batching, state) comes from `[profile]`, which the cdp crate turns into
//! [`EngineSettings`].

use cdp_stage::RuntimeSettings;
use serde::{Deserialize, Serialize};

/// A day: the shortest event time-to-live a profile may have (AEP's guardrail), and seed 003's
/// lookback.
pub const ONE_DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Seed 003's rules for streaming segmentation (`[segment]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SegmentSettings {
    /// Streaming evaluation looks back this far in a profile's events (seed 003: one day);
    /// events older than this on arrival wait for batch evaluation, and a qualification that
    /// rests on an event ends when the event leaves the lookback.
    pub lookback_ms: i64,
    /// More events than this for one profile within one second are bot traffic: discarded for
    /// segmentation (still in the profile and the lake).
    pub bot_events_per_second: u32,
    /// Profiles a definition change (or a schedule, or a flow's first export) evaluates per
    /// turn of the engine's loop, so its work commits in transactions of bounded size.
    pub sweep_chunk: usize,
    /// The separate segment stage's settings, before segmentation became part of the engine:
    /// accepted so an old configuration still starts, ignored, and named in a warning (the
    /// engine takes them from `[profile]`).
    #[serde(default, skip_serializing)]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing)]
    pub max_batch: Option<u64>,
    #[serde(default, skip_serializing)]
    pub max_wait_ms: Option<u64>,
    #[serde(default, skip_serializing)]
    pub commit_interval_ms: Option<u64>,
    #[serde(default, skip_serializing)]
    pub max_transaction_records: Option<u64>,
    #[serde(default, skip_serializing)]
    pub state_dir: Option<String>,
    #[serde(default, skip_serializing)]
    pub state_cache_mb: Option<u64>,
}

impl Default for SegmentSettings {
    fn default() -> Self {
        Self {
            lookback_ms: ONE_DAY_MS,
            bot_events_per_second: 50,
            sweep_chunk: 500,
            group_id: None,
            instance_id: None,
            max_batch: None,
            max_wait_ms: None,
            commit_interval_ms: None,
            max_transaction_records: None,
            state_dir: None,
            state_cache_mb: None,
        }
    }
}

impl SegmentSettings {
    /// The old segment stage's keys this configuration still sets (ignored now).
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        [
            ("segment.group_id", self.group_id.is_some()),
            ("segment.instance_id", self.instance_id.is_some()),
            ("segment.max_batch", self.max_batch.is_some()),
            ("segment.max_wait_ms", self.max_wait_ms.is_some()),
            (
                "segment.commit_interval_ms",
                self.commit_interval_ms.is_some(),
            ),
            (
                "segment.max_transaction_records",
                self.max_transaction_records.is_some(),
            ),
            ("segment.state_dir", self.state_dir.is_some()),
            ("segment.state_cache_mb", self.state_cache_mb.is_some()),
        ]
        .into_iter()
        .filter(|(_, set)| *set)
        .map(|(key, _)| key)
        .collect()
    }
}

/// Everything the engine runs with.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Its consumer group on `profile.resolved`.
    pub group_id: String,
    /// This instance's stable name (its transactional id).
    pub instance_id: String,
    /// Partitions of `profile.resolved` and the engine's output topics when it creates them.
    pub partitions: i32,
    /// Partitions of `profile.sequence` (where merges hand content back) if the engine is the
    /// first to create it (`profile.identity_partitions`).
    pub sequence_partitions: i32,
    /// How long a profile keeps an event (at least a day); a dataset may set its own.
    pub event_ttl_ms: i64,
    /// The most events a profile stores: at it, a new event is not stored (counted on the
    /// profile) and the profile is flagged, and segmentation skips it.
    pub max_events_per_profile: u32,
    /// Event fields every profile keeps besides those its definitions read (`*`: all).
    pub keep_event_fields: Vec<String>,
    pub segment: SegmentSettings,
    pub runtime: RuntimeSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_former_segment_stage_s_keys_are_accepted_and_named() {
        let old: SegmentSettings = serde_json::from_value(serde_json::json!({
            "group_id": "cdp-segment", "state_dir": "/var/lib/cdp", "lookback_ms": 1000
        }))
        .expect("an old [segment] section still reads");
        assert_eq!(old.lookback_ms, 1000);
        assert_eq!(
            old.ignored_keys(),
            ["segment.group_id", "segment.state_dir"]
        );
        assert!(SegmentSettings::default().ignored_keys().is_empty());
        let unknown = serde_json::from_value::<SegmentSettings>(serde_json::json!({"nope": 1}));
        assert!(unknown.is_err(), "other keys are still refused");
    }
}
