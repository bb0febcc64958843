//! The Confluent REST subset: subjects, versions, ids, lookup, config and compatibility, with
//! Confluent's error bodies (`{"error_code": 40401, "message": …}`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRef, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Extension;
use axum::Router;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::compat::{self, Level};
use super::follower::SchemaLog;
use super::state::{parse_avro, Outcome};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
/// How long a miss may wait for this instance to catch up with the schemas topic.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(5);

/// Bounds on what callers may register over HTTP (the stages register through the schemas
/// topic, and their subjects are bounded by the catalog).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Versions a subject may have.
    pub max_versions_per_subject: usize,
    /// Subjects in all.
    pub max_subjects: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_versions_per_subject: 100,
            max_subjects: 10_000,
        }
    }
}

/// The handlers' state: the schemas log, and the bounds on registrations.
#[derive(Clone)]
pub struct Api {
    pub log: SchemaLog,
    pub limits: Limits,
}

impl FromRef<Api> for SchemaLog {
    fn from_ref(api: &Api) -> SchemaLog {
        api.log.clone()
    }
}

impl FromRef<Api> for Limits {
    fn from_ref(api: &Api) -> Limits {
        api.limits
    }
}

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup))
        .route("/subjects/{subject}/versions", get(versions).post(register))
        .route("/subjects/{subject}/versions/{version}", get(version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(version_schema),
        )
        .route("/schemas/ids/{id}", get(by_id))
        .route("/config", get(global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(subject_config).put(put_subject_config),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(compatibility),
        )
}

/// A Confluent error: HTTP status plus the finer `error_code`.
#[derive(Debug)]
pub struct SrError {
    status: StatusCode,
    code: u32,
    message: String,
}

impl SrError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    pub(crate) fn unauthorized(why: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, 40101, why)
    }
    pub(crate) fn forbidden(why: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, 40301, why)
    }
    fn subject_not_found(s: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40401,
            format!("Subject '{s}' not found."),
        )
    }
    fn version_not_found(v: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            40402,
            format!("Version {v} not found."),
        )
    }
    fn schema_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 40403, "Schema not found")
    }
    fn invalid_schema(why: &str) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            format!("Invalid schema: {why}"),
        )
    }
    fn backend(e: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            50001,
            format!("Error in the backend data store: {e}"),
        )
    }
}

impl IntoResponse for SrError {
    fn into_response(self) -> Response {
        reply(
            self.status,
            json!({ "error_code": self.code, "message": self.message }),
        )
    }
}

fn reply(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

fn ok(body: Value) -> Response {
    reply(StatusCode::OK, body)
}

/// Bodies are JSON under any of the content types Confluent clients send.
fn body<T: DeserializeOwned>(headers: &HeaderMap, bytes: &Bytes) -> Result<T, SrError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let mime = ct.split(';').next().unwrap_or_default().trim();
    let accepted = mime == "application/json"
        || mime == "application/octet-stream"
        || (mime.starts_with("application/vnd.schemaregistry") && mime.ends_with("+json"));
    if !accepted {
        return Err(SrError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415,
            format!("unsupported content type {ct}"),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        SrError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            422,
            format!("Unrecognized request body: {e}"),
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Value>,
}

impl SchemaBody {
    /// Only Avro without references is supported: the pipeline's topics need nothing else.
    fn avro(&self) -> Result<&str, SrError> {
        match self
            .schema_type
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("AVRO") => {}
            Some(other) => {
                return Err(SrError::invalid_schema(&format!(
                    "schemaType {other} is not supported (AVRO only)"
                )))
            }
        }
        if !self.references.is_empty() {
            return Err(SrError::invalid_schema(
                "schema references are not supported",
            ));
        }
        Ok(&self.schema)
    }
}

/// `latest`, `-1` or a version number.
fn version_index(ids: &[u32], version: &str) -> Result<usize, SrError> {
    if version == "latest" || version == "-1" {
        return ids
            .len()
            .checked_sub(1)
            .ok_or_else(|| SrError::version_not_found(version));
    }
    let n: usize = version.parse().map_err(|_| {
        SrError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42202,
            format!("The specified version '{version}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""),
        )
    })?;
    if n == 0 || n > ids.len() {
        return Err(SrError::version_not_found(version));
    }
    Ok(n - 1)
}

async fn subjects(State(log): State<SchemaLog>) -> Response {
    let names: Vec<String> = log.read().subjects.keys().cloned().collect();
    ok(json!(names))
}

async fn versions(
    State(log): State<SchemaLog>,
    Path(subject): Path<String>,
) -> Result<Response, SrError> {
    let state = log.read();
    let ids = state
        .subjects
        .get(&subject)
        .ok_or_else(|| SrError::subject_not_found(&subject))?;
    Ok(ok(json!((1..=ids.len()).collect::<Vec<_>>())))
}

fn subject_version(log: &SchemaLog, subject: &str, version: &str) -> Result<Value, SrError> {
    let state = log.read();
    let ids = state
        .subjects
        .get(subject)
        .ok_or_else(|| SrError::subject_not_found(subject))?;
    let i = version_index(ids, version)?;
    let id = ids[i];
    let schema = state
        .schemas
        .get(&id)
        .ok_or_else(SrError::schema_not_found)?;
    Ok(json!({ "subject": subject, "version": i + 1, "id": id, "schema": schema.text }))
}

async fn version(
    State(log): State<SchemaLog>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, SrError> {
    match subject_version(&log, &subject, &version) {
        Ok(v) => Ok(ok(v)),
        // Another instance may have just registered it: catch up once before a 404.
        Err(e) if e.status == StatusCode::NOT_FOUND => {
            let _ = log.caught_up(CATCH_UP).await;
            subject_version(&log, &subject, &version).map(ok)
        }
        Err(e) => Err(e),
    }
}

async fn version_schema(
    State(log): State<SchemaLog>,
    Path((subject, version)): Path<(String, String)>,
) -> Result<Response, SrError> {
    let v = subject_version(&log, &subject, &version)?;
    let schema: Value = v["schema"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or(Value::Null);
    Ok(ok(schema))
}

async fn by_id(State(log): State<SchemaLog>, Path(id): Path<String>) -> Result<Response, SrError> {
    let id: u32 = id.parse().map_err(|_| SrError::schema_not_found())?;
    if !log.read().schemas.contains_key(&id) {
        // An id is an offset: a consumer may hold an id that another instance assigned a
        // moment ago, so read the topic up to it before answering "not found".
        let _ = log.wait_for(i64::from(id) - 1, CATCH_UP).await;
    }
    let state = log.read();
    let schema = state
        .schemas
        .get(&id)
        .ok_or_else(SrError::schema_not_found)?;
    Ok(ok(json!({ "schema": schema.text })))
}

async fn register(
    State(log): State<SchemaLog>,
    State(limits): State<Limits>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, SrError> {
    caller.may_write(Some(&subject))?;
    let req: SchemaBody = body(&headers, &bytes)?;
    let text = req.avro()?;
    // Fast path, and a clean 409/422 without writing anything: the fold applies the same rules.
    {
        let state = log.read();
        match state.evaluate(&subject, text) {
            Ok(Some((id, _))) => return Ok(ok(json!({ "id": id }))),
            Ok(None) => {}
            Err(o) => return Err(refusal(o)),
        }
        within_limits(&state, &subject, limits)?;
    }
    match log
        .register(&subject, text)
        .await
        .map_err(SrError::backend)?
    {
        Outcome::Registered { id, version } => {
            tracing::info!(subject, id, version, "schema registered");
            Ok(ok(json!({ "id": id })))
        }
        other => Err(refusal(other)),
    }
}

/// A new version of `subject` stays within the registry's bounds: every registration stays in
/// the memory of every process that follows the schemas topic.
fn within_limits(state: &super::SrState, subject: &str, limits: Limits) -> Result<(), SrError> {
    let refuse = |message: String| {
        Err(SrError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42210,
            message,
        ))
    };
    match state.subjects.get(subject) {
        Some(versions) if versions.len() >= limits.max_versions_per_subject => refuse(format!(
            "subject '{subject}' has {} versions, the most a subject may have (control.registry_max_versions_per_subject); nothing was registered",
            versions.len()
        )),
        None if state.subjects.len() >= limits.max_subjects => refuse(format!(
            "the registry holds {} subjects, the most it may (control.registry_max_subjects); '{subject}' was not registered",
            state.subjects.len()
        )),
        _ => Ok(()),
    }
}

fn refusal(o: Outcome) -> SrError {
    match o {
        Outcome::Invalid(why) => SrError::invalid_schema(&why),
        Outcome::Incompatible(reasons) => SrError::new(
            StatusCode::CONFLICT,
            409,
            format!(
                "Schema being registered is incompatible with an earlier schema: {}",
                reasons.join("; ")
            ),
        ),
        Outcome::Registered { .. } => SrError::backend("unexpected outcome"),
    }
}

async fn lookup(
    State(log): State<SchemaLog>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, SrError> {
    let req: SchemaBody = body(&headers, &bytes)?;
    let (_, normal) = parse_avro(req.avro()?).map_err(|e| SrError::invalid_schema(&e))?;
    let state = log.read();
    if !state.subjects.contains_key(&subject) {
        return Err(SrError::subject_not_found(&subject));
    }
    let id = state.id_of(&normal).ok_or_else(SrError::schema_not_found)?;
    let version = state
        .version_in(&subject, id)
        .ok_or_else(SrError::schema_not_found)?;
    let text = state
        .schemas
        .get(&id)
        .map(|s| s.text.clone())
        .unwrap_or_default();
    Ok(ok(
        json!({ "subject": subject, "id": id, "version": version, "schema": text }),
    ))
}

#[derive(Debug, Deserialize)]
struct ConfigBody {
    compatibility: String,
}

fn parse_level(headers: &HeaderMap, bytes: &Bytes) -> Result<Level, SrError> {
    let req: ConfigBody = body(headers, bytes)?;
    Level::parse(&req.compatibility).ok_or_else(|| {
        SrError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            42203,
            format!("Invalid compatibility level {}", req.compatibility),
        )
    })
}

async fn global_config(State(log): State<SchemaLog>) -> Response {
    ok(json!({ "compatibilityLevel": log.read().global.name() }))
}

async fn put_global_config(
    State(log): State<SchemaLog>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, SrError> {
    caller.may_write(None)?;
    let level = parse_level(&headers, &bytes)?;
    log.set_level(None, level).await.map_err(SrError::backend)?;
    Ok(ok(json!({ "compatibility": level.name() })))
}

/// Confluent answers 40408 for a subject without its own level unless `defaultToGlobal=true`.
async fn subject_config(
    State(log): State<SchemaLog>,
    Path(subject): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, SrError> {
    let state = log.read();
    let level = match state.subject_levels.get(&subject) {
        Some(l) => *l,
        None if q.get("defaultToGlobal").is_some_and(|v| v == "true") => state.global,
        None => {
            return Err(SrError::new(
                StatusCode::NOT_FOUND,
                40408,
                format!("Subject '{subject}' does not have subject-level compatibility configured"),
            ))
        }
    };
    Ok(ok(json!({ "compatibilityLevel": level.name() })))
}

async fn put_subject_config(
    State(log): State<SchemaLog>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, SrError> {
    caller.may_write(Some(&subject))?;
    let level = parse_level(&headers, &bytes)?;
    log.set_level(Some(&subject), level)
        .await
        .map_err(SrError::backend)?;
    Ok(ok(json!({ "compatibility": level.name() })))
}

/// Checks a schema against one version of a subject (all versions for transitive levels when
/// `latest` is asked), under the subject's level.
async fn compatibility(
    State(log): State<SchemaLog>,
    Path((subject, version)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, SrError> {
    let req: SchemaBody = body(&headers, &bytes)?;
    let (new, _) = parse_avro(req.avro()?).map_err(|e| SrError::invalid_schema(&e))?;
    let state = log.read();
    let ids = state
        .subjects
        .get(&subject)
        .ok_or_else(|| SrError::subject_not_found(&subject))?;
    let i = version_index(ids, &version)?;
    let latest = version == "latest" || version == "-1";
    let against: Vec<&apache_avro::Schema> = ids[..=i]
        .iter()
        .enumerate()
        .filter(|(j, _)| latest || *j == i)
        .filter_map(|(_, id)| state.schemas.get(id))
        .map(|s| &s.parsed)
        .collect();
    let result = compat::check(state.level(&subject), &new, &against);
    let mut answer = json!({ "is_compatible": result.is_ok() });
    if q.get("verbose").is_some_and(|v| v == "true") {
        answer["messages"] = json!(result.err().unwrap_or_default());
    }
    Ok(ok(answer))
}
