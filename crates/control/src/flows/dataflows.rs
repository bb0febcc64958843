//! `/flows` (seed 004): dataflows from the profile source to destinations, and what they export.
//!
//! A flow is created with one `GeneralTransform` selecting nothing; `PATCH /flows/{id}` (a JSON
//! Patch under `If-Match`, see [`super::patch`]) adds the segments and profile attributes.
//! Every change gets a fresh etag, answered in the `ETag` header (quoted) and as `etag` in the
//! body (bare, as the seed shows it).

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use cdp_catalog::clock::now_ms;
use cdp_catalog::flows::{FLOW_DISABLED, FLOW_ENABLED, PROFILE_FLOW_SPEC};
use cdp_catalog::model::flow_key;
use cdp_catalog::{CatalogRecord, CatalogState, Flow};
use cdp_http::{ApiJson, Paging};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::connections::created;
use super::error::FLOW;
use super::patch::{self, IfMatch};
use super::{
    check_name, description, find, new_etag, require, show_all, FlowApi, FlowError, SpecRef, WRITES,
};
use crate::http::Tenant;
use crate::segments::schemas::{profile_can_have, PROFILE_CLASS};

/// A flow as the API shows it (and as a JSON Patch sees it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub flow_spec: SpecRef,
    pub source_connection_ids: Vec<String>,
    pub target_connection_ids: Vec<String>,
    pub transformations: Value,
    pub etag: String,
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl FlowView {
    pub fn of(f: &Flow) -> Self {
        Self {
            id: f.id.clone(),
            name: f.name.clone(),
            description: f.description.clone(),
            flow_spec: SpecRef::of(&f.flow_spec_id),
            source_connection_ids: f.source_connection_ids.clone(),
            target_connection_ids: f.target_connection_ids.clone(),
            transformations: f.transformations.clone(),
            etag: f.etag.clone(),
            state: f.state.clone(),
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}

/// `ETag: "<etag>"`.
pub(super) fn etag_header(etag: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        headers.insert(header::ETAG, v);
    }
    headers
}

/// The tenant's flow `id`, else a 404.
pub(super) fn find_flow<'a>(
    catalog: &'a CatalogState,
    id: &str,
    tenant: &Tenant,
) -> Result<&'a Flow, FlowError> {
    require(&catalog.flows, "flow", id, tenant)
}

/// Whether `id` is a segment definition of the tenant's sandbox.
fn segment_of(catalog: &CatalogState, tenant: &Tenant, id: &str) -> bool {
    catalog
        .segments
        .get(id)
        .is_some_and(|d| d.org_id == tenant.org && d.sandbox == tenant.sandbox)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    flow_spec: Option<SpecRef>,
    #[serde(default)]
    source_connection_ids: Option<Vec<String>>,
    #[serde(default)]
    target_connection_ids: Option<Vec<String>>,
    /// Optional: checked like a PATCH's result; absent, the flow selects nothing yet.
    #[serde(default)]
    transformations: Option<Value>,
}

/// `ids` (the body's `field`): at least one, distinct, each passing `known`.
fn check_ids(
    field: &str,
    ids: Option<Vec<String>>,
    kind: &str,
    post: &str,
    tenant: &Tenant,
    known: impl Fn(&str) -> bool,
) -> Result<Vec<String>, FlowError> {
    let ids = ids.unwrap_or_default();
    if ids.is_empty() {
        return Err(FlowError::bad_request(format!(
            "{field} is required: the ids of {kind}s ({post})"
        )));
    }
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            return Err(FlowError::bad_request(format!("{field} names {id} twice")));
        }
        if !known(id) {
            return Err(FlowError::bad_request(format!(
                "{field} names {id}, which is not a {kind} of sandbox {} of org {} ({post})",
                tenant.sandbox, tenant.org
            )));
        }
    }
    Ok(ids)
}

/// `POST /flows`: 201 `{"id", "etag"}`.
pub async fn create(
    State(api): State<FlowApi>,
    tenant: Tenant,
    ApiJson(body): ApiJson<FlowBody>,
) -> Result<(StatusCode, HeaderMap, Json<Value>), FlowError> {
    let _serialized = WRITES.lock().await;
    let name = check_name(body.name, "flow")?;
    match body.flow_spec.and_then(|s| s.id) {
        Some(id) if id == PROFILE_FLOW_SPEC => {}
        Some(id) => {
            return Err(FlowError::bad_request(format!(
                "flowSpec.id {id} is not a flow spec: profile-based destinations use {PROFILE_FLOW_SPEC}"
            )))
        }
        None => {
            return Err(FlowError::bad_request(format!(
                "flowSpec.id is required: {PROFILE_FLOW_SPEC} (profile-based destinations)"
            )))
        }
    }
    let flow = {
        let catalog = api.view.read();
        let sources = check_ids(
            "sourceConnectionIds",
            body.source_connection_ids,
            "source connection",
            "POST /sourceConnections",
            &tenant,
            |id| find(&catalog.source_connections, id, &tenant).is_some(),
        )?;
        let targets = check_ids(
            "targetConnectionIds",
            body.target_connection_ids,
            "target connection",
            "POST /targetConnections",
            &tenant,
            |id| find(&catalog.target_connections, id, &tenant).is_some(),
        )?;
        let transformations = body
            .transformations
            .unwrap_or_else(Flow::initial_transformations);
        patch::check_transformations(
            &transformations,
            |id| segment_of(&catalog, &tenant, id),
            &tenant.sandbox,
        )?;
        let now = now_ms();
        Flow {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            description: description(body.description),
            org_id: tenant.org.clone(),
            sandbox: tenant.sandbox.clone(),
            flow_spec_id: PROFILE_FLOW_SPEC.to_string(),
            source_connection_ids: sources,
            target_connection_ids: targets,
            transformations,
            etag: new_etag(),
            state: FLOW_ENABLED.to_string(),
            created_at: now,
            updated_at: now,
        }
    };
    api.writer.put(&CatalogRecord::Flow(flow.clone())).await?;
    tracing::info!(flow = %flow.id, org = %tenant.org, sandbox = %tenant.sandbox, "flow created");
    Ok(created("/flows", &flow.id, &flow.etag))
}

/// `GET /flows`: a page of them, oldest first.
pub async fn list(State(api): State<FlowApi>, tenant: Tenant, paging: Paging) -> Json<Value> {
    let catalog = api.view.read();
    show_all(&catalog.flows, &tenant, FlowView::of, (paging, "/flows"))
}

/// `GET /flows/{id}`, with `ETag`.
pub async fn get(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<(HeaderMap, Json<FlowView>), FlowError> {
    let catalog = api.view.read();
    let flow = find_flow(&catalog, &id, &tenant)?;
    Ok((etag_header(&flow.etag), Json(FlowView::of(flow))))
}

/// The flow `doc` (a patched [`FlowView`]) describes, over `base`; `None` if nothing changed.
fn patched(
    base: &Flow,
    mut doc: Value,
    catalog: &CatalogState,
    tenant: &Tenant,
) -> Result<Option<Flow>, FlowError> {
    let name = match doc.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        _ => return Err(FlowError::bad_request("name must be a non-empty string")),
    };
    let description = match doc.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => description(Some(d.clone())),
        Some(_) => return Err(FlowError::bad_request("description must be a string")),
    };
    let state = match doc.get("state") {
        Some(Value::String(s)) if s == FLOW_ENABLED || s == FLOW_DISABLED => s.clone(),
        _ => {
            return Err(FlowError::bad_request(format!(
                "state must be \"{FLOW_ENABLED}\" or \"{FLOW_DISABLED}\""
            )))
        }
    };
    let transformations = doc.get_mut("transformations").map(Value::take);
    let transformations = transformations
        .ok_or_else(|| FlowError::bad_request("transformations is required (an array)"))?;
    patch::check_transformations(
        &transformations,
        |id| segment_of(catalog, tenant, id),
        &tenant.sandbox,
    )?;
    check_profile_paths(&transformations, catalog, &tenant.org)?;
    if name == base.name
        && description == base.description
        && state == base.state
        && transformations == base.transformations
    {
        return Ok(None);
    }
    Ok(Some(Flow {
        name,
        description,
        state,
        transformations,
        etag: new_etag(),
        updated_at: now_ms().max(base.updated_at + 1),
        ..base.clone()
    }))
}

/// Every profile attribute a flow selects must be one a profile of the org can have, by its
/// profile-enabled schemas of class `_xdm.context.profile`: an export of a path no profile can
/// have would always be empty. An org without such a schema leaves the paths unchecked, as
/// segment definitions do.
fn check_profile_paths(
    transformations: &Value,
    catalog: &CatalogState,
    org: &str,
) -> Result<(), FlowError> {
    let paths = cdp_catalog::flows::profile_paths(transformations);
    let unknown: Vec<&str> = paths
        .iter()
        .filter(|p| profile_can_have(catalog, org, p) == Some(false))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(FlowError::bad_request(format!(
            "profileSelectors: no profile of org {org} can have {} (by its profile-enabled schemas of class {PROFILE_CLASS})",
            unknown.join(", ")
        )))
    }
}

/// `PATCH /flows/{id}`: a JSON Patch under `If-Match`; 202 without a body, the new `ETag`.
pub async fn patch(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, HeaderMap), FlowError> {
    let if_match = IfMatch::required(&headers, FLOW, &id)?;
    let ops = patch::parse(&body)?;
    let _serialized = WRITES.lock().await;
    let (etag, next) = {
        let catalog = api.view.read();
        let flow = find_flow(&catalog, &id, &tenant)?;
        if_match.check(&flow.etag, FLOW, &id)?;
        let mut doc = serde_json::to_value(FlowView::of(flow)).expect("a flow view encodes");
        patch::apply(&mut doc, &ops, &patch::FLOW_RULES)?;
        match patched(flow, doc, &catalog, &tenant)? {
            // Nothing changed (e.g. only tests): nothing to write, the etag stays.
            None => (flow.etag.clone(), None),
            Some(next) => (next.etag.clone(), Some(next)),
        }
    };
    if let Some(next) = next {
        api.writer.put(&CatalogRecord::Flow(next.clone())).await?;
        tracing::info!(
            flow = %next.id,
            state = %next.state,
            segments = next.segment_ids().len(),
            profile_paths = next.profile_paths().len(),
            "flow changed"
        );
    }
    Ok((StatusCode::ACCEPTED, etag_header(&etag)))
}

/// `DELETE /flows/{id}`: 204. An `If-Match`, when given, must name the current etag.
pub async fn delete(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, FlowError> {
    let _serialized = WRITES.lock().await;
    {
        let catalog = api.view.read();
        let flow = find_flow(&catalog, &id, &tenant)?;
        if let Some(if_match) = IfMatch::from_headers(&headers) {
            if_match.check(&flow.etag, FLOW, &id)?;
        }
    }
    api.writer.delete(&flow_key(&id)).await?;
    tracing::info!(flow = %id, org = %tenant.org, sandbox = %tenant.sandbox, "flow deleted");
    Ok(StatusCode::NO_CONTENT)
}
