//! `POST /tokens`: exchanges an API key for an access token valid for a number of days.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use cdp_catalog::clock::now_ms;
use cdp_catalog::tokens::authenticate_key;
use cdp_http::{ApiJson, Problem};

use super::ControlState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRequest {
    pub api_key: String,
    #[serde(default = "default_days")]
    pub days: u32,
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
    let (token, claims) = state
        .tokens
        .issue(&key, req.days, now_ms() / 1000)
        .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    tracing::info!(key = %key.id, days = req.days, "access token issued");
    Ok(Json(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        org_id: claims.org,
        expires_at: claims.exp,
    }))
}
