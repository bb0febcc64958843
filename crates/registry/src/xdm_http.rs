//! `/xdm/schemas` and `/datasets`: tenant schemas (composed, versioned, immutable once a
//! dataset uses them) and the datasets that pin a schema version.
//!
//! A handler decides from its instance's view of the catalog, which can lag the topic: another
//! control instance may have bound a dataset to, or replaced, the version it is looking at a
//! moment ago. So schema changes and dataset creations are written as conditional records
//! (`cdp_catalog::Conditional`) that the catalog's fold accepts or refuses in topic
//! order, identically in every instance. A refused write is recomputed from the view, which by
//! then includes whatever got there first.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use cdp_catalog::clock::now_ms;
use cdp_catalog::model::{CatalogRecord, Dataset, SchemaRef, ValueFormat, XdmSchema};
use cdp_catalog::principal::{Authenticator, Principal};
use cdp_catalog::{Conditional, DatasetCreation, Decision, SchemaChange, WriteError};
use cdp_http::{ApiJson, Paging, Problem};
use cdp_xdm::compose::{compose, valid_tenant, Composition};
use cdp_xdm::resolve::{requested_version, resolve, ResolveError};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::state::RegistryState;

/// How many times a schema change or dataset creation is recomputed after the catalog refused
/// it because a concurrent write got there first. Each refusal brings the view past that write,
/// so only a schema changed this often during one request exhausts them.
const ATTEMPTS: u32 = 5;

/// The XDM schema and dataset management API, behind credentials. A schema created with an
/// org's credential is that org's; one the operator creates without `orgId` is shared by every
/// org (readable by all, the operator's to change). A dataset belongs to an org. An org's
/// credential reads (`read`) and creates or changes (`manage`) its own, and sees another org's
/// as not found.
pub fn xdm_router(state: RegistryState, auth: Authenticator) -> Router {
    Router::new()
        .route("/xdm/schemas", post(create_schema).get(list_schemas))
        .route("/xdm/schemas/{id}", get(get_schema).put(update_schema))
        .route("/datasets", post(create_dataset).get(list_datasets))
        .route("/datasets/{id}", axum::routing::patch(patch_dataset))
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            cdp_http::org_scoped,
        ))
        .with_state(state)
}

/// Whether `who` may use `schema` (read it, bind a dataset to it).
fn usable(who: &Principal, schema: &XdmSchema) -> bool {
    who.org().is_none_or(|org| schema.usable_by(org))
}

fn no_schema(id: &str) -> Problem {
    Problem::not_found(format!("no XDM schema {id}"))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSchema {
    /// The owning org: an org's credential's own (another is 403); the operator may leave it
    /// out for a schema every org shares.
    #[serde(default)]
    pub org_id: Option<String>,
    pub title: String,
    pub tenant: String,
    pub class: String,
    #[serde(default)]
    pub field_groups: Vec<String>,
    #[serde(default)]
    pub tenant_fields: Option<Value>,
    #[serde(default)]
    pub profile_enabled: bool,
}

/// A PUT replaces the composition; the tenant is the id's and cannot change.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSchema {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub class: Option<String>,
    #[serde(default)]
    pub field_groups: Option<Vec<String>>,
    #[serde(default)]
    pub tenant_fields: Option<Value>,
    #[serde(default)]
    pub profile_enabled: Option<bool>,
}

fn build(version: u32, c: &Composition<'_>) -> Result<XdmSchema, Problem> {
    if c.title.trim().is_empty() {
        return Err(Problem::bad_request("title must not be empty"));
    }
    let composed = compose(c).map_err(|e| Problem::bad_request(e.to_string()))?;
    Ok(XdmSchema {
        org_id: None,
        id: c.id.to_string(),
        version,
        title: c.title.to_string(),
        tenant: c.tenant.to_string(),
        class: composed.class,
        field_groups: composed.field_groups,
        profile_enabled: c.profile_enabled,
        definition: composed.definition,
        created_at: now_ms(),
    })
}

async fn put(state: &RegistryState, record: CatalogRecord) -> Result<(), Problem> {
    state.writer.put(&record).await.map_err(write_problem)
}

async fn put_conditional(state: &RegistryState, record: Conditional) -> Result<Decision, Problem> {
    state
        .writer
        .put_conditional(&record)
        .await
        .map_err(write_problem)
}

/// A record that cannot be encoded is our bug (500); anything else is the broker or the
/// catalog view not keeping up, worth a retry (503).
fn write_problem(e: WriteError) -> Problem {
    match e {
        WriteError::Encode { .. } => {
            tracing::error!(error = %e, "catalog write failed");
            Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
        e => Problem::unavailable(e.to_string()),
    }
}

fn created(schema: &XdmSchema) -> Response {
    let mut resp = (StatusCode::CREATED, Json(schema)).into_response();
    if let Ok(loc) =
        HeaderValue::from_str(&format!("/xdm/schemas/{}", encode_component(&schema.id)))
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

/// Percent-encodes a path segment (the schema id is a URL).
fn encode_component(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn create_schema(
    State(state): State<RegistryState>,
    Extension(who): Extension<Principal>,
    ApiJson(req): ApiJson<CreateSchema>,
) -> Result<Response, Problem> {
    let org_id = match (who.org(), req.org_id) {
        (None, given) => given,
        (Some(own), None) => Some(own.to_string()),
        (Some(own), Some(given)) if given == own => Some(given),
        (Some(own), Some(given)) => {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("the credential is for org {own}, not {given}"),
            ))
        }
    };
    if !valid_tenant(&req.tenant) {
        return Err(Problem::bad_request(
            "tenant must be 1-64 letters, digits or underscores (its fields live under _{tenant})",
        ));
    }
    let id = format!(
        "https://ns.adobe.com/{}/schemas/{}",
        req.tenant,
        uuid::Uuid::new_v4().simple()
    );
    let mut schema = build(
        1,
        &Composition {
            id: &id,
            title: &req.title,
            tenant: &req.tenant,
            class: &req.class,
            field_groups: &req.field_groups,
            tenant_fields: req.tenant_fields.as_ref(),
            profile_enabled: req.profile_enabled,
        },
    )?;
    schema.org_id = org_id;
    put(&state, CatalogRecord::Schema(schema.clone())).await?;
    tracing::info!(schema = %schema.id, "XDM schema created");
    Ok(created(&schema))
}

/// A new version when a dataset uses the latest one (a used version is immutable), else the
/// latest version is replaced in place.
async fn update_schema(
    State(state): State<RegistryState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateSchema>,
) -> Result<Response, Problem> {
    for _ in 0..ATTEMPTS {
        let (latest, base, used) = {
            let catalog = state.view.read();
            let latest = catalog
                .latest_schema(&id)
                .filter(|s| usable(&who, s))
                .cloned()
                .ok_or_else(|| no_schema(&id))?;
            if let (Some(org), None) = (who.org(), &latest.org_id) {
                return Err(Problem::new(
                    StatusCode::FORBIDDEN,
                    format!("schema {id} is shared by every org: only the operator changes it (org {org}'s credential may not)"),
                ));
            }
            let base = catalog
                .revision(&id, latest.version)
                .ok_or_else(|| missing_revision(&id, latest.version))?;
            let used = catalog.in_use(&id, latest.version);
            (latest, base, used)
        };
        let version = if used {
            latest.version + 1
        } else {
            latest.version
        };
        let mut schema = build(
            version,
            &Composition {
                id: &id,
                title: req.title.as_deref().unwrap_or(&latest.title),
                tenant: &latest.tenant,
                class: req.class.as_deref().unwrap_or(&latest.class),
                field_groups: req.field_groups.as_deref().unwrap_or(&latest.field_groups),
                tenant_fields: match &req.tenant_fields {
                    Some(f) => Some(f),
                    None => tenant_fields_of(&latest),
                },
                profile_enabled: req.profile_enabled.unwrap_or(latest.profile_enabled),
            },
        )?;
        schema.org_id = latest.org_id.clone();
        if used && schema.class != latest.class {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "the class of a schema used by a dataset cannot change",
            ));
        }
        let change = Conditional::SchemaChange(SchemaChange {
            change: uuid::Uuid::new_v4().simple().to_string(),
            base,
            schema: schema.clone(),
        });
        match put_conditional(&state, change).await? {
            Decision::Applied => {
                tracing::info!(schema = %schema.id, version, "XDM schema updated");
                return Ok(if used {
                    created(&schema)
                } else {
                    Json(schema).into_response()
                });
            }
            Decision::Refused(why) => {
                tracing::info!(schema = %id, %why, "concurrent catalog write; recomputing the change")
            }
        }
    }
    Err(Problem::new(
        StatusCode::CONFLICT,
        format!(
            "schema {id} changed concurrently {ATTEMPTS} times while this change was applied; \
             read it again and retry"
        ),
    ))
}

/// Every version in a view that was folded from the topic has a revision; a version without one
/// was put into the state by other means, and conditional writes cannot be decided against it.
fn missing_revision(id: &str, version: u32) -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("schema {id} version {version} has no catalog revision"),
    )
}

/// The tenant fields a version was built with, read back from its definition.
fn tenant_fields_of(schema: &XdmSchema) -> Option<&Value> {
    schema.definition["properties"]
        .get(format!("_{}", schema.tenant))
        .map(|t| &t["properties"])
}

async fn list_schemas(
    State(state): State<RegistryState>,
    Extension(who): Extension<Principal>,
    paging: Paging,
) -> Json<Value> {
    let catalog = state.view.read();
    let mut schemas: Vec<&XdmSchema> = catalog
        .schemas
        .values()
        .filter_map(|v| v.values().next_back())
        .filter(|s| usable(&who, s))
        .collect();
    schemas.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let (schemas, page, link) = paging.page(schemas, ("createdAt", "asc"), "/xdm/schemas", "");
    let results: Vec<Value> = schemas
        .iter()
        .map(|s| {
            json!({
                "id": s.id, "orgId": s.org_id, "title": s.title, "tenant": s.tenant, "class": s.class,
                "version": s.version, "profileEnabled": s.profile_enabled,
                "fieldGroups": s.field_groups, "createdAt": s.created_at,
            })
        })
        .collect();
    Json(json!({ "results": results, "page": page, "link": link }))
}

#[derive(Debug, Deserialize)]
struct VersionQuery {
    version: Option<u32>,
}

async fn get_schema(
    State(state): State<RegistryState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<VersionQuery>,
    headers: HeaderMap,
) -> Result<Json<XdmSchema>, Problem> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|a| a.contains("xed"));
    let from_accept = requested_version(accept).map_err(|e| Problem::bad_request(e.to_string()))?;
    let version = q.version.or(from_accept);
    let catalog = state.view.read();
    if catalog.latest_schema(&id).is_some_and(|s| !usable(&who, s)) {
        return Err(no_schema(&id));
    }
    let ct = version.map(|v| format!("application/vnd.adobe.xed-full+json;version={v}"));
    resolve(&catalog, &id, ct.as_deref())
        .cloned()
        .map(Json)
        .map_err(|e| Problem::not_found(e.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDataset {
    pub name: String,
    pub org_id: String,
    pub schema_ref: SchemaRef,
    #[serde(default)]
    pub profile_enabled: bool,
    #[serde(default)]
    pub format: ValueFormat,
}

fn profile_rule(schema: &XdmSchema) -> Result<(), Problem> {
    if schema.profile_enabled {
        Ok(())
    } else {
        Err(Problem::bad_request(format!(
            "schema {} version {} is not enabled for Profile: enable it on the schema first",
            schema.id, schema.version
        )))
    }
}

async fn create_dataset(
    State(state): State<RegistryState>,
    Extension(who): Extension<Principal>,
    ApiJson(req): ApiJson<CreateDataset>,
) -> Result<(StatusCode, Json<Dataset>), Problem> {
    if req.name.trim().is_empty() {
        return Err(Problem::bad_request("name must not be empty"));
    }
    if req.org_id.trim().is_empty() {
        return Err(Problem::bad_request("orgId must not be empty"));
    }
    if !who.sees_org(&req.org_id) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!(
                "the credential is for org {}, not {}",
                who.org().unwrap_or_default(),
                req.org_id
            ),
        ));
    }
    for _ in 0..ATTEMPTS {
        let (schema_id, schema_version, schema_revision) = {
            let catalog = state.view.read();
            let schema = resolve(
                &catalog,
                &req.schema_ref.id,
                req.schema_ref.content_type.as_deref(),
            )
            .map_err(|e| match e {
                ResolveError::BadContentType(_) => Problem::bad_request(e.to_string()),
                _ => Problem::bad_request(format!("schemaRef: {e}")),
            })?;
            // The dataset's org must be able to use the schema: its own, or a shared one.
            if !schema.usable_by(&req.org_id) {
                return Err(Problem::bad_request(format!(
                    "schemaRef: no XDM schema {} for org {}",
                    schema.id, req.org_id
                )));
            }
            if req.profile_enabled {
                profile_rule(schema)?;
            }
            // Avro datasets need a schema the Avro mapping accepts; find out now, not at the
            // first event.
            if req.format == ValueFormat::Avro {
                cdp_xdm::avro_schema_for(schema)
                    .map_err(|e| Problem::bad_request(format!("format avro: {e}")))?;
            }
            let revision = catalog
                .revision(&schema.id, schema.version)
                .ok_or_else(|| missing_revision(&schema.id, schema.version))?;
            (schema.id.clone(), schema.version, revision)
        };
        let dataset = Dataset {
            // Same shape as AEP dataset ids: 24 hex characters. A new one per attempt, so a
            // refused creation's key is never reused.
            id: hex::encode(&uuid::Uuid::new_v4().as_bytes()[..12]),
            name: req.name.clone(),
            org_id: req.org_id.clone(),
            schema_id,
            schema_version,
            profile_enabled: req.profile_enabled,
            profile_event_ttl_days: None,
            format: req.format,
            created_at: now_ms(),
        };
        let creation = Conditional::DatasetCreation(DatasetCreation {
            schema_revision,
            dataset: dataset.clone(),
        });
        match put_conditional(&state, creation).await? {
            Decision::Applied => {
                tracing::info!(dataset = %dataset.id, schema = %dataset.schema_id, "dataset created");
                return Ok((StatusCode::CREATED, Json(dataset)));
            }
            // Checked again against the version as it is now.
            Decision::Refused(why) => {
                tracing::info!(%why, "concurrent catalog write; checking the dataset again")
            }
        }
    }
    Err(Problem::new(
        StatusCode::CONFLICT,
        format!(
            "schema {} changed concurrently {ATTEMPTS} times while the dataset was created; retry",
            req.schema_ref.id
        ),
    ))
}

async fn list_datasets(
    State(state): State<RegistryState>,
    Extension(who): Extension<Principal>,
    paging: Paging,
) -> Json<Value> {
    let mut datasets: Vec<Dataset> = state
        .view
        .read()
        .datasets
        .values()
        .filter(|d| who.sees_org(&d.org_id))
        .cloned()
        .collect();
    datasets.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let (datasets, page, link) = paging.page(datasets, ("createdAt", "asc"), "/datasets", "");
    Json(json!({ "datasets": datasets, "page": page, "link": link }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchDataset {
    /// The dataset's Profile toggle.
    #[serde(default)]
    pub profile_enabled: Option<bool>,
    /// How long profiles keep the dataset's events, in days (at least 1).
    #[serde(default)]
    pub profile_event_ttl_days: Option<u32>,
}

async fn patch_dataset(
    State(state): State<RegistryState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<PatchDataset>,
) -> Result<Json<Dataset>, Problem> {
    if req.profile_enabled.is_none() && req.profile_event_ttl_days.is_none() {
        return Err(Problem::bad_request(
            "nothing to change: give profileEnabled and/or profileEventTtlDays",
        ));
    }
    if req.profile_event_ttl_days == Some(0) {
        return Err(Problem::bad_request(
            "profileEventTtlDays must be at least 1: profiles keep events for a day or longer",
        ));
    }
    let dataset = {
        let catalog = state.view.read();
        let mut dataset = catalog
            .datasets
            .get(&id)
            .filter(|d| who.sees_org(&d.org_id))
            .cloned()
            .ok_or_else(|| Problem::not_found(format!("no dataset {id}")))?;
        if req.profile_enabled == Some(true) {
            let schema = catalog
                .schema(&dataset.schema_id, dataset.schema_version)
                .ok_or_else(|| Problem::bad_request("the dataset's schema version is missing"))?;
            profile_rule(schema)?;
        }
        if let Some(enabled) = req.profile_enabled {
            dataset.profile_enabled = enabled;
        }
        if let Some(days) = req.profile_event_ttl_days {
            dataset.profile_event_ttl_days = Some(days);
        }
        dataset
    };
    put(&state, CatalogRecord::Dataset(dataset.clone())).await?;
    tracing::info!(
        dataset = %id,
        profile = dataset.profile_enabled,
        ttl_days = ?dataset.profile_event_ttl_days,
        "dataset profile settings"
    );
    Ok(Json(dataset))
}
