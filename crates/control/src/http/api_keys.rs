//! `/api-keys`: create, list, rotate and delete API keys (the operator's). A secret is returned
//! once, on create and rotate; the catalog keeps only its SHA-256. A key acts in its org only,
//! with its roles (`send`, the default; `read`; `manage`) in its sandboxes (all by default).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use cdp_catalog::clock::now_ms;
use cdp_catalog::model::{api_key_key, ApiKey, CatalogRecord, Role};
use cdp_catalog::tokens::{hash_secret, new_secret};
use cdp_http::{ApiJson, Problem};

use super::ControlState;

/// An API key as the management API shows it: never the secret or its hash.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub generation: u32,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<i64>,
    pub roles: Vec<Role>,
    /// Empty: every sandbox of the org.
    pub sandboxes: Vec<String>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.clone(),
            name: k.name.clone(),
            org_id: k.org_id.clone(),
            generation: k.generation,
            created_at: k.created_at,
            rotated_at: k.rotated_at,
            roles: k.roles.clone(),
            sandboxes: k.sandboxes.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    pub org_id: String,
    /// Default: `["send"]`, the least a key is made for.
    #[serde(default = "Role::send_only")]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub sandboxes: Vec<String>,
}

/// The key with its secret: shown only in this answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyWithSecret {
    #[serde(flatten)]
    pub key: ApiKeyView,
    pub api_key: String,
}

pub async fn create(
    State(state): State<ControlState>,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<KeyWithSecret>), Problem> {
    if req.name.trim().is_empty() || req.org_id.trim().is_empty() {
        return Err(Problem::bad_request("name and orgId must not be empty"));
    }
    if req.roles.is_empty() {
        return Err(Problem::bad_request(
            "roles must name at least one of send, read, manage",
        ));
    }
    if let Some(bad) = req.sandboxes.iter().find(|s| {
        s.is_empty()
            || s.chars()
                .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    }) {
        return Err(Problem::bad_request(format!(
            "sandboxes: {bad:?} is not a sandbox name (non-empty, without '/' or whitespace)"
        )));
    }
    let mut roles = req.roles;
    roles.sort();
    roles.dedup();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (secret, full) = new_secret(&id);
    let key = ApiKey {
        id,
        name: req.name,
        org_id: req.org_id,
        secret_sha256: hash_secret(&secret),
        generation: 1,
        created_at: now_ms(),
        rotated_at: None,
        roles,
        sandboxes: req.sandboxes,
    };
    save(&state, &key).await?;
    tracing::info!(key = %key.id, org = %key.org_id, roles = ?key.roles, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(KeyWithSecret {
            key: (&key).into(),
            api_key: full,
        }),
    ))
}

pub async fn list(State(state): State<ControlState>) -> Json<serde_json::Value> {
    let mut keys: Vec<ApiKeyView> = state
        .view
        .read()
        .api_keys
        .values()
        .map(Into::into)
        .collect();
    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    Json(serde_json::json!({ "apiKeys": keys }))
}

pub async fn rotate(
    State(state): State<ControlState>,
    Path(id): Path<String>,
) -> Result<Json<KeyWithSecret>, Problem> {
    let mut key = state
        .view
        .read()
        .api_keys
        .get(&id)
        .cloned()
        .ok_or_else(|| Problem::not_found(format!("no API key {id}")))?;
    let (secret, full) = new_secret(&id);
    key.secret_sha256 = hash_secret(&secret);
    key.generation += 1;
    key.rotated_at = Some(now_ms());
    save(&state, &key).await?;
    tracing::info!(key = %key.id, generation = key.generation, "API key rotated; older tokens revoked");
    Ok(Json(KeyWithSecret {
        key: (&key).into(),
        api_key: full,
    }))
}

pub async fn delete(
    State(state): State<ControlState>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    if !state.view.read().api_keys.contains_key(&id) {
        return Err(Problem::not_found(format!("no API key {id}")));
    }
    state
        .writer
        .delete(&api_key_key(&id))
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    tracing::info!(key = %id, "API key deleted; its tokens are revoked");
    Ok(StatusCode::NO_CONTENT)
}

async fn save(state: &ControlState, key: &ApiKey) -> Result<(), Problem> {
    state
        .writer
        .put(&CatalogRecord::ApiKey(key.clone()))
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))
}
