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
    pub segment: cdp_segment::SegmentSettings,
    pub sinks: cdp_sinks::SinksSettings,
}
