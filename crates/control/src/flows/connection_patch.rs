//! `PATCH /connections/{id}`: a JSON Patch (RFC 6902) under `If-Match` on a base connection's
//! `name`, `description` and `auth.params`. The patch applies to the params whole, secrets
//! included, but may only write inside `auth` ([`patch::CONNECTION_RULES`]: no `test`, `copy`
//! or `move` there, which would tell or show a secret). What it leaves is checked against the
//! connection's spec as a new connection's params are, and sealed again: a fresh nonce, the
//! current key, bound to the connection. The sinks restart the targets on it with the new
//! credentials.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use cdp_catalog::clock::now_ms;
use cdp_catalog::flows::connection_spec;
use cdp_catalog::{CatalogRecord, ConnectionAuth};
use cdp_http::ApiJson;
use serde_json::{json, Map, Value};

use super::connections::{check_auth_values, check_params};
use super::dataflows::etag_header;
use super::error::CONNECTION;
use super::patch::{self, IfMatch};
use super::{check_name, description, new_etag, require, FlowApi, FlowError, WRITES};
use crate::http::Tenant;

/// `PATCH /connections/{id}`: 202 without a body, the new `ETag`.
pub async fn patch(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, HeaderMap), FlowError> {
    let if_match = IfMatch::required(&headers, CONNECTION, &id)?;
    let ops = patch::parse(&body)?;
    let _serialized = WRITES.lock().await;
    let current = require(&api.view.read().connections, "connection", &id, &tenant)?.clone();
    if_match.check(&current.etag, CONNECTION, &id)?;
    let opened = current
        .open_auth(&api.secrets)
        .map_err(|source| FlowError::Sealed {
            id: id.clone(),
            source,
        })?;
    let mut doc = json!({
        "name": current.name,
        "description": current.description,
        "auth": current.auth.as_ref().map(|a| json!({"specName": a.spec_name, "params": opened})),
    });
    patch::apply(&mut doc, &ops, &patch::CONNECTION_RULES)?;

    let name = check_name(doc["name"].as_str().map(str::to_string), "connection")?;
    let description = match &doc["description"] {
        Value::Null => None,
        Value::String(d) => description(Some(d.clone())),
        _ => return Err(FlowError::bad_request("description must be a string")),
    };
    let spec = connection_spec(&current.connection_spec_id)
        .ok_or_else(|| FlowError::UnknownSpec(current.connection_spec_id.clone()))?;
    let auth = match (&current.auth, &doc["auth"]) {
        (None, Value::Null) => None,
        (None, _) => {
            return Err(FlowError::bad_request(format!(
                "{} connections take no auth",
                spec.name
            )))
        }
        (Some(sealed), auth) => {
            let params: Map<String, Value> = auth
                .get("params")
                .and_then(Value::as_object)
                .cloned()
                .ok_or_else(|| FlowError::bad_request("auth.params must stay an object"))?;
            check_params("auth.params", spec, spec.auth_params, &params)?;
            check_auth_values(spec, &params)?;
            if Some(&params) == opened.as_ref() && !api.secrets.needs_reseal(&sealed.sealed) {
                current.auth.clone()
            } else {
                Some(ConnectionAuth::seal(
                    &sealed.spec_name,
                    &params,
                    &api.secrets,
                    &current.id,
                    &current.org_id,
                ))
            }
        }
    };
    if name == current.name && description == current.description && auth == current.auth {
        return Ok((StatusCode::ACCEPTED, etag_header(&current.etag)));
    }
    let mut next = current.clone();
    next.name = name;
    next.description = description;
    let resealed = auth != current.auth;
    next.auth = auth;
    next.etag = new_etag();
    next.updated_at = now_ms().max(current.updated_at + 1);
    api.writer
        .put(&CatalogRecord::Connection(next.clone()))
        .await?;
    tracing::info!(connection = %id, org = %tenant.org, sandbox = %tenant.sandbox, resealed, "base connection changed");
    Ok((StatusCode::ACCEPTED, etag_header(&next.etag)))
}
