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
}

impl Default for SegmentSettings {
    fn default() -> Self {
        Self {
            lookback_ms: ONE_DAY_MS,
            bot_events_per_second: 50,
            sweep_chunk: 500,
        }
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
    /// How long a profile keeps an event (at least a day); a dataset may set its own.
    pub event_ttl_ms: i64,
    /// Above this many events a profile is flagged, and segmentation skips it.
    pub max_events_per_profile: u32,
    /// Event fields every profile keeps besides those its definitions read (`*`: all).
    pub keep_event_fields: Vec<String>,
    pub segment: SegmentSettings,
    pub runtime: RuntimeSettings,
}
