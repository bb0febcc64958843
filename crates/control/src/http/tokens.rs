//! `POST /tokens`: exchanges an API key for an access token valid for a number of days, with
//! the key's roles and sandboxes or, when asked, fewer of them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use cdp_catalog::clock::now_ms;
use cdp_catalog::tokens::{authenticate_key, Narrowing, TokenError};
use cdp_catalog::Role;
use cdp_http::{ApiJson, Problem};

use super::ControlState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    pub api_key: String,
    #[serde(default = "default_days")]
    pub days: u32,
    /// Some of the key's roles; absent: all of them.
    #[serde(default)]
    pub roles: Option<Vec<Role>>,
    /// Some of the key's sandboxes; absent: all it reaches.
    #[serde(default)]
    pub sandboxes: Option<Vec<String>>,
}

fn default_days() -> u32 {
    1
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub org_id: String,
    pub expires_at: i64,
    pub roles: Vec<Role>,
    /// Empty: every sandbox of the org.
    pub sandboxes: Vec<String>,
}

pub async fn issue(
    State(state): State<ControlState>,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, Problem> {
    if req.days == 0 || req.days > state.max_token_days {
        return Err(Problem::bad_request(format!(
            "days must be between 1 and {}",
            state.max_token_days
        )));
    }
    let key = {
        let catalog = state.view.read();
        authenticate_key(&catalog, &req.api_key)
            .map_err(|e| Problem::new(StatusCode::UNAUTHORIZED, e.to_string()))?
            .clone()
    };
    if req.roles.as_ref().is_some_and(Vec::is_empty)
        || req.sandboxes.as_ref().is_some_and(Vec::is_empty)
    {
        return Err(Problem::bad_request(
            "roles and sandboxes, when given, must not be empty (omit them for all of the key's)",
        ));
    }
    let narrowing = Narrowing {
        roles: req.roles,
        sandboxes: req.sandboxes,
    };
    let (token, claims) = state
        .tokens
        .issue_narrowed(&key, req.days, now_ms() / 1000, narrowing)
        .map_err(|e| match e {
            TokenError::BeyondKeyRole(_) | TokenError::BeyondKeySandbox(_) => {
                Problem::new(StatusCode::FORBIDDEN, e.to_string())
            }
            e => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        })?;
    tracing::info!(key = %key.id, days = req.days, "access token issued");
    let roles = claims.roles.unwrap_or_else(|| key.roles.clone());
    let sandboxes = claims.sandboxes.unwrap_or_else(|| key.sandboxes.clone());
    Ok(Json(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        org_id: claims.org,
        expires_at: claims.exp,
        roles,
        sandboxes,
    }))
}
