//! One configuration document for every stage: `cdp.toml` (or `--config`), overridden by
//! `CDP_SECTION__KEY` environment variables.

use cdp_contract::{IdentitySettings, KafkaSettings, Topics};
use cdp_control::{AuthSettings, ControlSettings};
use cdp_edge::EdgeSettings;
use cdp_lake::LakeSettings;
use cdp_validate::ValidateSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdpConfig {
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub edge: EdgeSettings,
    pub control: ControlSettings,
    pub auth: AuthSettings,
    pub identity: IdentitySettings,
    pub health: cdp_stage::health::HealthSettings,
    pub validate: ValidateSettings,
    pub lake: LakeSettings,
    pub profile: cdp_profile::ProfileSettings,
    pub segment: cdp_engine::SegmentSettings,
    pub sinks: cdp_sinks::SinksSettings,
}

impl CdpConfig {
    /// The profile engine's settings: `[profile]` (group, instance, partitions, profile rules,
    /// batching, state) with `[segment]` (seed 003's rules).
    pub fn engine(&self) -> Result<cdp_engine::EngineSettings, cdp_stage::InstanceError> {
        engine_settings(&self.profile, &self.segment)
    }
}

/// The engine's settings from the `[profile]` and `[segment]` sections.
pub fn engine_settings(
    profile: &cdp_profile::ProfileSettings,
    segment: &cdp_engine::SegmentSettings,
) -> Result<cdp_engine::EngineSettings, cdp_stage::InstanceError> {
    Ok(cdp_engine::EngineSettings {
        group_id: profile.group("engine"),
        instance_id: cdp_stage::instance_id(profile.instance_id.as_deref())?,
        partitions: profile.partitions,
        sequence_partitions: profile.identity_partitions,
        event_ttl_ms: profile.ttl_ms(),
        max_events_per_profile: profile.max_events_per_profile,
        keep_event_fields: profile.keep_event_fields.clone(),
        segment: segment.clone(),
        runtime: profile.runtime(),
    })
}
