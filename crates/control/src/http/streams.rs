//! `/streams`: create, list, get and delete streaming connections.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use serde::Deserialize;

use cdp_catalog::clock::now_ms;
use cdp_catalog::model::{
    normalize_origin, stream_key, CatalogRecord, PayloadType, SchemaRef, Stream,
};
use cdp_catalog::principal::Principal;
use cdp_catalog::Role;
use cdp_http::{ApiJson, Paging, Problem};

use super::ControlState;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateStream {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub org_id: String,
    #[serde(default)]
    pub sandbox: Option<String>,
    #[serde(default)]
    pub payload_type: PayloadType,
    #[serde(default)]
    pub authentication_required: bool,
    #[serde(default)]
    pub rate_limit: Option<u32>,
    #[serde(default)]
    pub dataset_id: Option<String>,
    #[serde(default)]
    pub schema_ref: Option<SchemaRef>,
    /// Origins whose web pages may post to the stream (CORS); none by default.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

pub async fn create(
    State(state): State<ControlState>,
    Extension(who): Extension<Principal>,
    ApiJson(req): ApiJson<CreateStream>,
) -> Result<(StatusCode, Json<Stream>), Problem> {
    if req.name.trim().is_empty() {
        return Err(Problem::bad_request("name must not be empty"));
    }
    if req.org_id.trim().is_empty() {
        return Err(Problem::bad_request("orgId must not be empty"));
    }
    let sandbox = req.sandbox.clone().unwrap_or_else(|| "prod".to_string());
    who.authorize(&req.org_id, &sandbox, Role::Manage)
        .map_err(|denied| Problem::new(StatusCode::FORBIDDEN, denied.to_string()))?;
    let (dataset_id, schema_ref) = dataset_of(&state, &req)?;
    if req.rate_limit == Some(0) {
        return Err(Problem::bad_request(
            "rateLimit must be at least 1 request per second (omit it for no limit)",
        ));
    }
    let allowed_origins = allowed_origins(&req.allowed_origins)?;
    let stream = Stream {
        // Long random hex, like the inlet ids of the collection API.
        id: hex::encode(rand::random::<[u8; 32]>()),
        name: req.name,
        description: req.description,
        org_id: req.org_id,
        sandbox,
        payload_type: req.payload_type,
        authentication_required: req.authentication_required,
        rate_limit: req.rate_limit,
        dataset_id: Some(dataset_id),
        schema_ref: Some(schema_ref),
        allowed_origins,
        created_at: now_ms(),
    };
    state
        .writer
        .put(&CatalogRecord::Stream(stream.clone()))
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    tracing::info!(stream = %stream.id, name = %stream.name, org = %stream.org_id, "stream created");
    Ok((StatusCode::CREATED, Json(stream)))
}

/// Each entry in the form browsers send (see [`normalize_origin`]), without duplicates: a
/// malformed one is refused here rather than never matching at the edge.
fn allowed_origins(given: &[String]) -> Result<Vec<String>, Problem> {
    let mut origins = Vec::with_capacity(given.len());
    for (i, entry) in given.iter().enumerate() {
        let origin = normalize_origin(entry)
            .map_err(|e| Problem::bad_request(format!("allowedOrigins[{i}]: {e}")))?;
        if !origins.contains(&origin) {
            origins.push(origin);
        }
    }
    Ok(origins)
}

/// A stream lands its events in a dataset, so the dataset must exist in the stream's org, and
/// a schemaRef, when given, must be the dataset's schema. Without one, the dataset's pinned
/// schema version is recorded.
fn dataset_of(state: &ControlState, req: &CreateStream) -> Result<(String, SchemaRef), Problem> {
    let Some(dataset_id) = &req.dataset_id else {
        return Err(Problem::bad_request(
            "datasetId is required: a stream lands its events in a dataset (create one with POST /datasets)",
        ));
    };
    let catalog = state.view.read();
    let dataset = catalog
        .datasets
        .get(dataset_id)
        .filter(|d| d.org_id == req.org_id)
        .ok_or_else(|| {
            Problem::bad_request(format!(
                "dataset {dataset_id} does not exist in org {}",
                req.org_id
            ))
        })?;
    if catalog
        .schema(&dataset.schema_id, dataset.schema_version)
        .is_none()
    {
        return Err(Problem::bad_request(format!(
            "the schema {} version {} of dataset {dataset_id} does not exist",
            dataset.schema_id, dataset.schema_version
        )));
    }
    let schema_ref = match &req.schema_ref {
        Some(r) if r.id != dataset.schema_id => {
            return Err(Problem::bad_request(format!(
                "schemaRef {} is not the schema of dataset {dataset_id} ({})",
                r.id, dataset.schema_id
            )))
        }
        Some(r) => r.clone(),
        None => SchemaRef {
            id: dataset.schema_id.clone(),
            content_type: Some(format!(
                "application/vnd.adobe.xed-full+json;version={}",
                dataset.schema_version
            )),
        },
    };
    Ok((dataset_id.clone(), schema_ref))
}

/// A page of the streams the caller sees (all of them for the operator, its org's for an org's
/// credential), oldest first.
pub async fn list(
    State(state): State<ControlState>,
    Extension(who): Extension<Principal>,
    paging: Paging,
) -> Json<serde_json::Value> {
    let mut streams: Vec<Stream> = state
        .view
        .read()
        .streams
        .values()
        .filter(|s| who.sees(&s.org_id, &s.sandbox))
        .cloned()
        .collect();
    streams.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let (streams, page, link) = paging.page(streams, ("createdAt", "asc"), "/streams", "");
    Json(serde_json::json!({ "streams": streams, "page": page, "link": link }))
}

/// Another org's stream is not found, not forbidden: its id says nothing to the caller.
fn visible(state: &ControlState, who: &Principal, id: &str) -> Result<Stream, Problem> {
    state
        .view
        .stream(id)
        .filter(|s| who.sees(&s.org_id, &s.sandbox))
        .ok_or_else(|| Problem::not_found(format!("no stream {id}")))
}

pub async fn get(
    State(state): State<ControlState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Stream>, Problem> {
    visible(&state, &who, &id).map(Json)
}

pub async fn delete(
    State(state): State<ControlState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    visible(&state, &who, &id)?;
    state
        .writer
        .delete(&stream_key(&id))
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    tracing::info!(stream = %id, "stream deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origins(given: &[&str]) -> Result<Vec<String>, String> {
        let given: Vec<String> = given.iter().map(|s| s.to_string()).collect();
        allowed_origins(&given).map_err(|p| {
            assert_eq!(p.status, 400);
            p.detail
        })
    }

    #[test]
    fn allowed_origins_are_normalized_and_deduplicated() {
        assert_eq!(
            origins(&["https://Shop.Example:443", "https://shop.example", "*"]).unwrap(),
            vec!["https://shop.example".to_string(), "*".to_string()]
        );
        assert_eq!(origins(&[]).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_malformed_origin_is_refused_with_its_index() {
        let detail = origins(&["https://shop.example", "https://shop.example/cart"]).unwrap_err();
        assert!(detail.contains("allowedOrigins[1]"), "{detail}");
        assert!(detail.contains("no path"), "{detail}");
        let detail = origins(&["shop.example"]).unwrap_err();
        assert!(
            detail.contains("allowedOrigins[0]") && detail.contains("scheme://host[:port]"),
            "{detail}"
        );
    }
}
