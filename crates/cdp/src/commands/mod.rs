pub mod manage;
pub mod run;
pub mod secrets;
pub mod send;

use std::path::PathBuf;

use anyhow::Context;
use cdp::CdpConfig;

pub fn load_config(path: Option<PathBuf>) -> anyhow::Result<CdpConfig> {
    cdp_contract::config::load(path.as_deref()).context("loading configuration")
}
