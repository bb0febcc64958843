//! Control's configuration (`[control]` and `[auth]` in the configuration file).

use serde::{Deserialize, Serialize};

/// Used when no admin token is configured: fine on a laptop, refused by nothing — so the
/// start-up log warns about it.
pub const DEV_ADMIN_TOKEN: &str = "dev-admin-token";
pub const DEV_TOKEN_SECRET: &str = "dev-insecure-token-secret-change-me";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// Address the management API listens on.
    pub listen: String,
    /// Bearer token for the management API (streams, keys).
    pub admin_token: String,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".to_string(),
            admin_token: DEV_ADMIN_TOKEN.to_string(),
        }
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
