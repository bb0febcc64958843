//! Configuration loading shared by every binary: defaults, then a TOML file, then environment
//! variables (`CDP_SECTION__KEY`, e.g. `CDP_KAFKA__BOOTSTRAP_SERVERS`). Each stage owns its own
//! settings struct; the `cdp` binary composes them into one document.

use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{KafkaSettings, Topics};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
}

/// Settings every stage needs: where the broker is and the topic namespace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub topics: Topics,
}

/// Loads `T` from its defaults, the optional TOML file, and `CDP_*` environment variables, in
/// that order of precedence (environment wins).
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Default,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment
        // Only `CDP_SECTION__KEY` names are configuration; other `CDP_*` variables (CDP_CONFIG,
        // CDP_LOG_FORMAT, CDP_CACHE_DIR, …) belong to scripts and the CLI.
        .merge(
            Env::prefixed("CDP_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        )
        .extract()
        .map_err(|e| ConfigError::Invalid(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every test that reads the environment runs inside a figment Jail: the Jail holds a global
    // lock, so a test that sets CDP_* variables cannot leak them into another running in parallel.
    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn file_then_defaults() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "cdp.toml",
                "[kafka]\nbootstrap_servers = \"k:9092\"\n[topics]\nnamespace = \"acme\"\n",
            )?;
            let path = jail.directory().join("cdp.toml");
            let s: Settings = load(Some(&path)).map_err(|e| e.to_string())?;
            assert_eq!(s.kafka.bootstrap_servers, "k:9092");
            assert_eq!(s.kafka.session_timeout_ms, 6000);
            assert_eq!(s.topics.ingest_raw(), "acme.ingest.raw");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
    fn other_cdp_variables_are_not_configuration() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CDP_LOG_FORMAT", "json");
            jail.set_env("CDP_KAFKA__BOOTSTRAP_SERVERS", "env:9092");
            let s: Settings = load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.kafka.bootstrap_servers, "env:9092");
            Ok(())
        });
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load::<Settings>(Some(Path::new("/nonexistent/cdp.toml"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn unknown_kafka_key_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("cdp.toml", "[kafka]\nbootstrap = \"k:9092\"\n")?;
            let path = jail.directory().join("cdp.toml");
            assert!(load::<Settings>(Some(&path)).is_err());
            Ok(())
        });
    }
}
