//! Control's configuration (`[control]` and `[auth]` in the configuration file).

use cdp_catalog::secrets::{SecretError, SecretKey, DEV_SECRET_KEY_HEX};
use serde::{Deserialize, Serialize};

/// Used when no admin token is configured: fine on a laptop, refused by nothing — so the
/// start-up log warns about it.
pub const DEV_ADMIN_TOKEN: &str = "dev-admin-token";
pub const DEV_TOKEN_SECRET: &str = "dev-insecure-token-secret-change-me";

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// Address the management API listens on.
    pub listen: String,
    /// Bearer token for the management API (streams, keys).
    pub admin_token: String,
    /// The key sealing destination credentials in the catalog (`POST /connections`): 64 hex
    /// characters or the base64 of 32 bytes (`openssl rand -hex 32`); `CDP_CONTROL__SECRET_KEY`.
    /// The sink stage needs the same key to open them. Default: the public, insecure
    /// development key.
    pub secret_key: String,
    /// Keys `secret_key` replaced, same format: what they sealed still opens, until
    /// `cdp secrets reseal` has sealed it again with `secret_key` (then drop them). TOML list;
    /// `CDP_CONTROL__PREVIOUS_SECRET_KEYS='["<hex>"]'`.
    pub previous_secret_keys: Vec<String>,
    /// The edge's address as clients reach it (`https://collect.example.com`), shown by the
    /// dashboard with each stream's endpoints. Default: `http://` and `edge.listen`.
    pub public_edge_url: Option<String>,
    /// The Confluent-compatible registry: the most versions a subject may have, and the most
    /// subjects, registered over HTTP (every registration stays in the memory of every process
    /// that follows the schemas topic).
    pub registry_max_versions_per_subject: usize,
    pub registry_max_subjects: usize,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".to_string(),
            admin_token: DEV_ADMIN_TOKEN.to_string(),
            secret_key: DEV_SECRET_KEY_HEX.to_string(),
            previous_secret_keys: Vec::new(),
            public_edge_url: None,
            registry_max_versions_per_subject: 100,
            registry_max_subjects: 10_000,
        }
    }
}

/// Shows no token or key.
impl std::fmt::Debug for ControlSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlSettings")
            .field("listen", &self.listen)
            .field("admin_token", &"<redacted>")
            .field("secret_key", &"<redacted>")
            .field(
                "previous_secret_keys",
                &format!("<{} redacted>", self.previous_secret_keys.len()),
            )
            .field("public_edge_url", &self.public_edge_url)
            .field(
                "registry_max_versions_per_subject",
                &self.registry_max_versions_per_subject,
            )
            .field("registry_max_subjects", &self.registry_max_subjects)
            .finish()
    }
}

impl ControlSettings {
    /// `secret_key` parsed, still opening what `previous_secret_keys` sealed; an error says
    /// what is expected without repeating the setting.
    pub fn secret_key(&self) -> Result<SecretKey, SecretError> {
        let previous = self
            .previous_secret_keys
            .iter()
            .map(|k| SecretKey::from_config(k))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SecretKey::from_config(&self.secret_key)?.with_previous(previous))
    }

    /// Whether the secret key is the development one (start-up should warn).
    pub fn is_dev_secret_key(&self) -> bool {
        self.secret_key().is_ok_and(|k| k.is_development())
    }
}

/// Shared by control (signs tokens) and the edge (verifies them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HMAC secret for the access tokens (HS256).
    pub token_secret: String,
    /// Longest lifetime a token may be issued for, in days.
    pub max_token_days: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_secret: DEV_TOKEN_SECRET.to_string(),
            max_token_days: 365,
        }
    }
}

impl AuthSettings {
    pub fn is_dev_secret(&self) -> bool {
        self.token_secret == DEV_TOKEN_SECRET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_key_defaults_to_the_development_key_and_is_never_shown() {
        let mut s = ControlSettings::default();
        assert!(s.is_dev_secret_key());
        assert!(s.secret_key().unwrap().is_development());
        s.secret_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into();
        assert!(!s.is_dev_secret_key());
        s.secret_key = "too-short".into();
        assert!(s.secret_key().is_err());
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("too-short") && !shown.contains(DEV_ADMIN_TOKEN),
            "{shown}"
        );
    }
}
