//! `/connections`, `/sourceConnections` and `/targetConnections` (seed 004).
//!
//! A base connection's `auth.params` are checked against its spec (every required param, no
//! unknown one, all non-empty strings) and sealed with control's secret key; the catalog only
//! ever holds the sealed form, and `GET` shows the non-secret params only. Error messages name
//! params, never their values, and nothing here logs a param.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use cdp_catalog::clock::now_ms;
use cdp_catalog::flows::{
    connection_spec, param, ConnectionSpec, ParamSpec, SpecCategory, CONNECTION_SPECS,
    KAFKA_SASL_MECHANISMS, KAFKA_SPEC, KINESIS_SPEC, PROFILE_SOURCE_SPEC,
};
use cdp_catalog::{
    CatalogRecord, CatalogState, Connection, ConnectionAuth, SourceConnection, TargetConnection,
};
use cdp_http::{ApiJson, Paging};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{
    check_name, description, find, new_etag, of_tenant, require, show, show_all, FlowApi,
    FlowError, SpecRef, WRITES,
};
use crate::http::Tenant;

/// What a creation answers: 201 `{"id", "etag"}`, with `Location` and `ETag`.
pub(super) fn created(path: &str, id: &str, etag: &str) -> (StatusCode, HeaderMap, Json<Value>) {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("{path}/{id}")) {
        headers.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        headers.insert(header::ETAG, v);
    }
    (
        StatusCode::CREATED,
        headers,
        Json(json!({"id": id, "etag": etag})),
    )
}

// ---------------------------------------------------------------------------------------------
// Base connections

/// `POST /connections`. No `Debug`: `auth.params` hold secrets.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    connection_spec: Option<SpecRef>,
    #[serde(default)]
    auth: Option<AuthBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthBody {
    #[serde(default)]
    spec_name: Option<String>,
    #[serde(default)]
    params: Option<Map<String, Value>>,
}

/// A base connection as the API shows it: `auth.params` without the secret ones.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionView {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub connection_spec: SpecRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthView>,
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthView {
    pub spec_name: String,
    /// The non-secret params only (`region`, `namespace`, `sasKeyName`, `bootstrapServers`, …).
    pub params: Map<String, Value>,
}

impl ConnectionView {
    fn of(c: &Connection, api: &FlowApi) -> Result<ConnectionView, FlowError> {
        let auth = match &c.auth {
            None => None,
            Some(a) => {
                let opened = c
                    .open_auth(&api.secrets)
                    .map_err(|source| FlowError::Sealed {
                        id: c.id.clone(),
                        source,
                    })?
                    .unwrap_or_default();
                let spec = connection_spec(&c.connection_spec_id);
                let shown = opened
                    .into_iter()
                    .filter(|(name, _)| {
                        // Only what the spec says is not secret; anything unknown stays hidden.
                        spec.and_then(|s| s.auth_param(name))
                            .is_some_and(|p| !p.secret)
                    })
                    .collect();
                Some(AuthView {
                    spec_name: a.spec_name.clone(),
                    params: shown,
                })
            }
        };
        Ok(ConnectionView {
            id: c.id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            connection_spec: SpecRef::of(&c.connection_spec_id),
            auth,
            etag: c.etag.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        })
    }
}

/// The spec a body names (`connectionSpec.id`, required).
fn named_spec(spec: Option<SpecRef>) -> Result<&'static ConnectionSpec, FlowError> {
    let id = spec.and_then(|s| s.id).ok_or_else(|| {
        FlowError::bad_request(format!(
            "connectionSpec.id is required: one of {}",
            spec_list()
        ))
    })?;
    connection_spec(&id).ok_or_else(|| {
        FlowError::bad_request(format!(
            "connectionSpec.id {id} is not a connection spec: one of {}",
            spec_list()
        ))
    })
}

fn spec_list() -> String {
    CONNECTION_SPECS
        .iter()
        .map(|s| format!("{} ({})", s.id, s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn names(params: &[ParamSpec], pick: impl Fn(&ParamSpec) -> bool) -> String {
    params
        .iter()
        .filter(|p| pick(p))
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `params` checked against `allowed` (`what` names them in messages, e.g. `auth.params`):
/// every required one present, none unknown, every value a non-empty string. Messages name
/// params, never values.
pub(super) fn check_params(
    what: &str,
    spec: &ConnectionSpec,
    allowed: &[ParamSpec],
    params: &Map<String, Value>,
) -> Result<(), FlowError> {
    let missing: Vec<&str> = allowed
        .iter()
        .filter(|p| p.required && !params.contains_key(p.name))
        .map(|p| p.name)
        .collect();
    if !missing.is_empty() {
        return Err(FlowError::bad_request(format!(
            "{what} misses {} (required for {}: {}; optional: {})",
            missing.join(", "),
            spec.name,
            names(allowed, |p| p.required),
            or_none(names(allowed, |p| !p.required)),
        )));
    }
    let unknown: Vec<&str> = params
        .keys()
        .filter(|k| !allowed.iter().any(|p| p.name == k.as_str()))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(FlowError::bad_request(format!(
            "{what} has {} that {} does not know (its params: {})",
            unknown.join(", "),
            spec.name,
            names(allowed, |_| true),
        )));
    }
    for (name, value) in params {
        if value.as_str().is_none_or(|s| s.trim().is_empty()) {
            return Err(FlowError::bad_request(format!(
                "{what}.{name} must be a non-empty string"
            )));
        }
    }
    Ok(())
}

fn or_none(s: String) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s
    }
}

/// Checks a spec needs beyond presence.
pub(super) fn check_auth_values(
    spec: &ConnectionSpec,
    params: &Map<String, Value>,
) -> Result<(), FlowError> {
    let get = |name: &str| params.get(name).and_then(Value::as_str);
    if spec.id == KINESIS_SPEC {
        if let Some(url) = get(param::CONNECTION_URL) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(FlowError::bad_request(
                    "auth.params.connectionUrl must be an http:// or https:// URL",
                ));
            }
        }
    }
    if spec.id == KAFKA_SPEC {
        let mechanism = get(param::SASL_MECHANISM);
        let user = get(param::USERNAME).is_some();
        let password = get(param::PASSWORD).is_some();
        match mechanism {
            Some(m) if !KAFKA_SASL_MECHANISMS.contains(&m) => {
                return Err(FlowError::bad_request(format!(
                    "auth.params.saslMechanism {m:?} is not one of {}",
                    KAFKA_SASL_MECHANISMS.join(", ")
                )))
            }
            Some(_) if !(user && password) => {
                return Err(FlowError::bad_request(
                    "auth.params.saslMechanism needs username and password",
                ))
            }
            None if user || password => {
                return Err(FlowError::bad_request(format!(
                    "auth.params.username and password need a saslMechanism ({})",
                    KAFKA_SASL_MECHANISMS.join(", ")
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The `auth` of new base connection `id` of `org`, of `spec`, sealed for it; `None` for a spec
/// without auth.
fn sealed_auth(
    api: &FlowApi,
    spec: &ConnectionSpec,
    auth: Option<AuthBody>,
    (id, org): (&str, &str),
) -> Result<Option<ConnectionAuth>, FlowError> {
    let Some(spec_name) = spec.auth_spec_name else {
        // The profile source: nothing to authenticate.
        if auth
            .as_ref()
            .and_then(|a| a.params.as_ref())
            .is_some_and(|p| !p.is_empty())
        {
            return Err(FlowError::bad_request(format!(
                "{} ({}) needs no auth: leave auth.params out",
                spec.name, spec.id
            )));
        }
        return Ok(None);
    };
    let auth = auth.ok_or_else(|| {
        FlowError::bad_request(format!(
            "auth is required for {}: {{\"specName\": \"{spec_name}\", \"params\": {{{}}}}}",
            spec.name,
            names(spec.auth_params, |p| p.required)
        ))
    })?;
    if let Some(given) = &auth.spec_name {
        if !given.trim().eq_ignore_ascii_case(spec_name) {
            return Err(FlowError::bad_request(format!(
                "auth.specName {given:?} is not {}'s: expected {spec_name:?}",
                spec.name
            )));
        }
    }
    let params = auth.params.unwrap_or_default();
    check_params("auth.params", spec, spec.auth_params, &params)?;
    check_auth_values(spec, &params)?;
    Ok(Some(ConnectionAuth::seal(
        spec_name,
        &params,
        &api.secrets,
        id,
        org,
    )))
}

/// `POST /connections`: 201 `{"id", "etag"}`.
pub async fn create(
    State(api): State<FlowApi>,
    tenant: Tenant,
    ApiJson(body): ApiJson<ConnectionBody>,
) -> Result<(StatusCode, HeaderMap, Json<Value>), FlowError> {
    let name = check_name(body.name, "connection")?;
    let spec = named_spec(body.connection_spec)?;
    let id = uuid::Uuid::new_v4().to_string();
    let auth = sealed_auth(&api, spec, body.auth, (&id, &tenant.org))?;
    let now = now_ms();
    let connection = Connection {
        id,
        name,
        description: description(body.description),
        org_id: tenant.org.clone(),
        sandbox: tenant.sandbox.clone(),
        connection_spec_id: spec.id.to_string(),
        auth,
        etag: new_etag(),
        created_at: now,
        updated_at: now,
    };
    api.writer
        .put(&CatalogRecord::Connection(connection.clone()))
        .await?;
    tracing::info!(
        connection = %connection.id,
        spec = spec.name,
        org = %tenant.org,
        sandbox = %tenant.sandbox,
        "base connection created"
    );
    Ok(created("/connections", &connection.id, &connection.etag))
}

/// `GET /connections/{id}`.
pub async fn get(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, FlowError> {
    // Cloned out of the catalog: its credentials are opened without holding the view.
    let connection = require(&api.view.read().connections, "connection", &id, &tenant)?.clone();
    Ok(Json(ConnectionView::of(&connection, &api)?))
}

/// `GET /connections`: a page of them, oldest first. Only the page's credentials are opened.
pub async fn list(
    State(api): State<FlowApi>,
    tenant: Tenant,
    paging: Paging,
) -> Result<Json<Value>, FlowError> {
    let connections: Vec<Connection> = of_tenant(&api.view.read().connections, &tenant)
        .into_iter()
        .cloned()
        .collect();
    let (shown, page, link) = paging.page(connections, ("createdAt", "asc"), "/connections", "");
    let views = shown
        .iter()
        .map(|c| ConnectionView::of(c, &api))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "items": views, "page": page, "link": link })))
}

// ---------------------------------------------------------------------------------------------
// Source connections

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceConnectionBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    connection_spec: Option<SpecRef>,
    #[serde(default)]
    base_connection_id: Option<String>,
    #[serde(default)]
    data: Option<DataBody>,
    #[serde(default)]
    params: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DataBody {
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DataView {
    pub format: String,
}

/// A source or target connection (one on a base connection) as the API shows it; `P` is the
/// type of its `params`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView<P> {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub base_connection_id: String,
    pub connection_spec: SpecRef,
    pub data: DataView,
    pub params: P,
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A source connection's `params` are any object, as sent.
pub type SourceConnectionView = EndpointView<Value>;
/// A target connection's `params` are its spec's (strings).
pub type TargetConnectionView = EndpointView<Map<String, Value>>;

/// `of(record)` for the view of a record type: [`SourceConnection`] and [`TargetConnection`]
/// have the same fields but for the type of `params`.
macro_rules! endpoint_view_of {
    ($($record:ty => $view:ty),+) => {$(
        impl $view {
            pub fn of(c: &$record) -> Self {
                Self {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    description: c.description.clone(),
                    base_connection_id: c.base_connection_id.clone(),
                    connection_spec: SpecRef::of(&c.connection_spec_id),
                    data: DataView {
                        format: c.format.clone(),
                    },
                    params: c.params.clone(),
                    etag: c.etag.clone(),
                    created_at: c.created_at,
                    updated_at: c.updated_at,
                }
            }
        }
    )+};
}

endpoint_view_of!(
    SourceConnection => SourceConnectionView,
    TargetConnection => TargetConnectionView
);

/// The base connection a body names: one of the tenant's, else a 400 (it is the body that is
/// wrong, not the URL).
fn base_connection(
    catalog: &CatalogState,
    id: &str,
    field: &str,
    tenant: &Tenant,
) -> Result<Connection, FlowError> {
    find(&catalog.connections, id, tenant).cloned().ok_or_else(|| {
        FlowError::bad_request(format!(
            "{field} {id} is not a connection of sandbox {} of org {} (create one with POST /connections)",
            tenant.sandbox, tenant.org
        ))
    })
}

fn spec_name(id: &str) -> &str {
    connection_spec(id).map_or("an unknown spec", |s| s.name)
}

/// `data.format`, default the spec's first format.
fn format(spec: &ConnectionSpec, data: Option<DataBody>) -> Result<String, FlowError> {
    match data.and_then(|d| d.format) {
        None => Ok(spec.formats[0].to_string()),
        Some(f) if spec.formats.contains(&f.as_str()) => Ok(f),
        Some(f) => Err(FlowError::bad_request(format!(
            "data.format {f:?} is not one {} delivers: {}",
            spec.name,
            spec.formats.join(", ")
        ))),
    }
}

/// `POST /sourceConnections`: on a base connection of the profile source.
pub async fn create_source(
    State(api): State<FlowApi>,
    tenant: Tenant,
    ApiJson(body): ApiJson<SourceConnectionBody>,
) -> Result<(StatusCode, HeaderMap, Json<Value>), FlowError> {
    let _serialized = WRITES.lock().await;
    let name = check_name(body.name, "source connection")?;
    let source_spec = connection_spec(PROFILE_SOURCE_SPEC).expect("the profile source spec");
    if let Some(id) = body.connection_spec.and_then(|s| s.id) {
        if id != PROFILE_SOURCE_SPEC {
            return Err(FlowError::bad_request(format!(
                "connectionSpec.id {id} ({}) cannot be a source: a source connection reads the {} (connectionSpec.id {PROFILE_SOURCE_SPEC})",
                spec_name(&id),
                source_spec.name
            )));
        }
    }
    let base_id = body.base_connection_id.ok_or_else(|| {
        FlowError::bad_request(format!(
            "baseConnectionId is required: a base connection of the {} (connectionSpec.id {PROFILE_SOURCE_SPEC})",
            source_spec.name
        ))
    })?;
    let base = base_connection(&api.view.read(), &base_id, "baseConnectionId", &tenant)?;
    if base.connection_spec_id != PROFILE_SOURCE_SPEC {
        return Err(FlowError::bad_request(format!(
            "baseConnectionId {base_id} is a connection of {} ({}): a source connection needs a base connection of the {} (connectionSpec.id {PROFILE_SOURCE_SPEC})",
            spec_name(&base.connection_spec_id),
            base.connection_spec_id,
            source_spec.name
        )));
    }
    let format = format(source_spec, body.data)?;
    let params = match body.params {
        None | Some(Value::Null) => json!({}),
        Some(p @ Value::Object(_)) => p,
        Some(_) => return Err(FlowError::bad_request("params must be an object")),
    };
    let now = now_ms();
    let source = SourceConnection {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        description: description(body.description),
        org_id: tenant.org.clone(),
        sandbox: tenant.sandbox.clone(),
        connection_spec_id: PROFILE_SOURCE_SPEC.to_string(),
        base_connection_id: base.id,
        format,
        params,
        etag: new_etag(),
        created_at: now,
        updated_at: now,
    };
    api.writer
        .put(&CatalogRecord::SourceConnection(source.clone()))
        .await?;
    tracing::info!(source_connection = %source.id, org = %tenant.org, sandbox = %tenant.sandbox, "source connection created");
    Ok(created("/sourceConnections", &source.id, &source.etag))
}

/// `GET /sourceConnections/{id}`.
pub async fn get_source(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<SourceConnectionView>, FlowError> {
    let catalog = api.view.read();
    show(
        &catalog.source_connections,
        "source connection",
        &id,
        &tenant,
        SourceConnectionView::of,
    )
}

/// `GET /sourceConnections`: a page of them, oldest first.
pub async fn list_sources(
    State(api): State<FlowApi>,
    tenant: Tenant,
    paging: Paging,
) -> Json<Value> {
    let catalog = api.view.read();
    show_all(
        &catalog.source_connections,
        &tenant,
        SourceConnectionView::of,
        (paging, "/sourceConnections"),
    )
}

// ---------------------------------------------------------------------------------------------
// Target connections

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetConnectionBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    /// The seed's name for the base connection's id.
    #[serde(default)]
    base_connection: Option<String>,
    /// AEP's reference's name for it; either is accepted.
    #[serde(default)]
    base_connection_id: Option<String>,
    #[serde(default)]
    connection_spec: Option<SpecRef>,
    #[serde(default)]
    data: Option<DataBody>,
    #[serde(default)]
    params: Option<Map<String, Value>>,
}

/// `POST /targetConnections`: on a destination's base connection, of that connection's spec.
pub async fn create_target(
    State(api): State<FlowApi>,
    tenant: Tenant,
    ApiJson(body): ApiJson<TargetConnectionBody>,
) -> Result<(StatusCode, HeaderMap, Json<Value>), FlowError> {
    let _serialized = WRITES.lock().await;
    let name = check_name(body.name, "target connection")?;
    let base_id = match (body.base_connection, body.base_connection_id) {
        (Some(a), Some(b)) if a != b => {
            return Err(FlowError::bad_request(format!(
                "baseConnection {a} and baseConnectionId {b} differ: name the base connection once"
            )))
        }
        (Some(id), _) | (None, Some(id)) => id,
        (None, None) => {
            return Err(FlowError::bad_request(
                "baseConnection (or baseConnectionId) is required: the id of the destination's base connection (POST /connections)",
            ))
        }
    };
    let base = base_connection(&api.view.read(), &base_id, "baseConnection", &tenant)?;
    let spec = connection_spec(&base.connection_spec_id)
        .filter(|s| s.category == SpecCategory::Destination)
        .ok_or_else(|| {
            FlowError::bad_request(format!(
                "baseConnection {base_id} is a connection of {} ({}), not of a destination: a target connection needs the base connection of a destination",
                spec_name(&base.connection_spec_id),
                base.connection_spec_id
            ))
        })?;
    if let Some(id) = body.connection_spec.and_then(|s| s.id) {
        if id != spec.id {
            return Err(FlowError::bad_request(format!(
                "connectionSpec.id {id} ({}) is not the spec of baseConnection {base_id}: expected {} ({})",
                spec_name(&id),
                spec.id,
                spec.name
            )));
        }
    }
    let format = format(spec, body.data)?;
    let params = body.params.unwrap_or_default();
    check_params("params", spec, spec.target_params, &params)?;
    let now = now_ms();
    let target = TargetConnection {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        description: description(body.description),
        org_id: tenant.org.clone(),
        sandbox: tenant.sandbox.clone(),
        connection_spec_id: spec.id.to_string(),
        base_connection_id: base.id,
        format,
        params,
        etag: new_etag(),
        created_at: now,
        updated_at: now,
    };
    api.writer
        .put(&CatalogRecord::TargetConnection(target.clone()))
        .await?;
    tracing::info!(
        target_connection = %target.id,
        spec = spec.name,
        org = %tenant.org,
        sandbox = %tenant.sandbox,
        "target connection created"
    );
    Ok(created("/targetConnections", &target.id, &target.etag))
}

/// `GET /targetConnections/{id}`.
pub async fn get_target(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<TargetConnectionView>, FlowError> {
    let catalog = api.view.read();
    show(
        &catalog.target_connections,
        "target connection",
        &id,
        &tenant,
        TargetConnectionView::of,
    )
}

/// `GET /targetConnections`: a page of them, oldest first.
pub async fn list_targets(
    State(api): State<FlowApi>,
    tenant: Tenant,
    paging: Paging,
) -> Json<Value> {
    let catalog = api.view.read();
    show_all(
        &catalog.target_connections,
        &tenant,
        TargetConnectionView::of,
        (paging, "/targetConnections"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_catalog::flows::{EVENT_HUBS_SPEC, FORMAT_JSON};

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn params_are_checked_by_name_without_echoing_values() {
        let spec = connection_spec(KINESIS_SPEC).unwrap();
        let e = check_params(
            "auth.params",
            spec,
            spec.auth_params,
            &map(json!({"region": "eu-west-1"})),
        )
        .unwrap_err();
        let detail = e.to_string();
        assert!(detail.contains("misses accessKeyId, secretKey"), "{detail}");
        let e = check_params(
            "auth.params",
            spec,
            spec.auth_params,
            &map(json!({"accessKeyId": "a", "secretKey": "s3cr3t", "region": "r", "colour": "x"})),
        )
        .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = check_params(
            "auth.params",
            spec,
            spec.auth_params,
            &map(json!({"accessKeyId": "a", "secretKey": 5, "region": "r"})),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "auth.params.secretKey must be a non-empty string"
        );
        check_params(
            "auth.params",
            spec,
            spec.auth_params,
            &map(json!({"accessKeyId": "a", "secretKey": "s", "region": "r"})),
        )
        .unwrap();
        let hubs = connection_spec(EVENT_HUBS_SPEC).unwrap();
        let e = check_params("params", hubs, hubs.target_params, &Map::new()).unwrap_err();
        assert!(e.to_string().contains("misses eventHubName"), "{e}");
    }

    #[test]
    fn kafka_sasl_needs_its_credentials() {
        let kafka = connection_spec(KAFKA_SPEC).unwrap();
        let ok = map(json!({"bootstrapServers": "b:9092"}));
        check_auth_values(kafka, &ok).unwrap();
        let no_password =
            map(json!({"bootstrapServers": "b", "saslMechanism": "PLAIN", "username": "u"}));
        assert!(check_auth_values(kafka, &no_password).is_err());
        let bad = map(
            json!({"bootstrapServers": "b", "saslMechanism": "GSSAPI", "username": "u", "password": "p"}),
        );
        assert!(check_auth_values(kafka, &bad)
            .unwrap_err()
            .to_string()
            .contains("SCRAM-SHA-256"));
        let stray = map(json!({"bootstrapServers": "b", "password": "p"}));
        assert!(check_auth_values(kafka, &stray).is_err());
        let kinesis = connection_spec(KINESIS_SPEC).unwrap();
        let url = map(json!({"connectionUrl": "localhost:4566"}));
        assert!(check_auth_values(kinesis, &url).is_err());
    }

    #[test]
    fn formats_default_to_json_and_avro_is_kafka_only() {
        let kafka = connection_spec(KAFKA_SPEC).unwrap();
        let kinesis = connection_spec(KINESIS_SPEC).unwrap();
        assert_eq!(format(kinesis, None).unwrap(), FORMAT_JSON);
        let avro = || {
            Some(DataBody {
                format: Some("avro".into()),
            })
        };
        assert_eq!(format(kafka, avro()).unwrap(), "avro");
        assert!(format(kinesis, avro())
            .unwrap_err()
            .to_string()
            .contains("json"));
    }
}
