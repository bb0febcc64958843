//! `/config/schedules` (seed 003, "Enable scheduled evaluation"), shaped after AEP's
//! Real-Time Customer Profile API: when the segment stage evaluates a sandbox's batch segment
//! definitions each day.
//!
//! - `POST /config/schedules`: `name`, `type` (`batch_segmentation` or `export`),
//!   `properties.segments` (`["*"]` or definition ids of the sandbox; required for
//!   `batch_segmentation`), `schedule` (a daily Quartz cron, [`Daily`]), `state` (`active` or
//!   `inactive`, the default). One schedule per org, whatever the sandbox: a second is a 409
//!   naming the first.
//! - `GET /config/schedules`: the sandbox's schedules (`children`, `_page`);
//! - `GET`, `DELETE /config/schedules/{id}`;
//! - `POST` (as the seed sends it) or `PATCH /config/schedules/{id}`: a JSON Patch (RFC 6902)
//!   array of `add`/`replace` operations on `/name`, `/state`, `/schedule` and
//!   `/properties/segments`, applied all or nothing; 204.
//!
//! Schedules are catalog records (`schedule/<id>`); the segment stage follows them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use cdp_catalog::clock::now_ms;
use cdp_catalog::model::{schedule_key, CatalogRecord, Schedule};
use cdp_catalog::schedule::Daily;
use cdp_catalog::CatalogState;
use cdp_http::{ApiJson, Problem};

use super::{ControlState, Tenant, DEFAULT_SANDBOX};

pub const BATCH_SEGMENTATION: &str = "batch_segmentation";
pub const EXPORT: &str = "export";
const TYPES: &[&str] = &[BATCH_SEGMENTATION, EXPORT];
pub const ACTIVE: &str = "active";
pub const INACTIVE: &str = "inactive";
const STATES: &[&str] = &[ACTIVE, INACTIVE];
/// `properties.segments: ["*"]`: every definition of the sandbox.
pub const ALL_SEGMENTS: &str = "*";
/// What a JSON Patch may change.
const PATCH_PATHS: &[&str] = &["/name", "/state", "/schedule", "/properties/segments"];

/// Serializes schedule writes in this process, so the one-per-org rule is checked against the
/// state every earlier write left. (Two control instances can still race.)
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A schedule as the API shows it (AEP's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub id: String,
    pub ims_org_id: String,
    pub sandbox: ScheduleSandbox,
    pub name: String,
    pub state: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub schedule: String,
    pub properties: Properties,
    /// Unix seconds.
    pub create_epoch: i64,
    pub update_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleSandbox {
    /// Sandboxes have no ids here: always empty.
    pub sandbox_id: String,
    pub sandbox_name: String,
    /// `production` for `prod`, `development` for any other sandbox.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Whether this is the org's default sandbox (`prod`).
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Properties {
    pub segments: Vec<String>,
}

impl ScheduleView {
    pub fn of(s: &Schedule) -> Self {
        let prod = s.sandbox == DEFAULT_SANDBOX;
        Self {
            id: s.id.clone(),
            ims_org_id: s.org_id.clone(),
            sandbox: ScheduleSandbox {
                sandbox_id: String::new(),
                sandbox_name: s.sandbox.clone(),
                kind: if prod { "production" } else { "development" },
                default: prod,
            },
            name: s.name.clone(),
            state: s.state.clone(),
            kind: s.kind.clone(),
            schedule: s.schedule.clone(),
            properties: Properties {
                segments: s.segments.clone(),
            },
            create_epoch: s.create_epoch,
            update_epoch: s.update_epoch,
        }
    }
}

/// A creation body. Every field is optional here so a missing one is a 400 naming it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub properties: Option<PropertiesBody>,
    #[serde(default)]
    pub schedule: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertiesBody {
    #[serde(default)]
    pub segments: Option<Vec<String>>,
}

fn one_of(field: &str, value: &str, allowed: &[&'static str]) -> Result<&'static str, String> {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .ok_or_else(|| format!("{field} {value:?} is not one of {}", allowed.join(", ")))
}

fn check_name(name: &str) -> Result<String, String> {
    if name.trim().is_empty() {
        return Err("name must not be empty".into());
    }
    Ok(name.to_string())
}

/// A daily Quartz cron ([`Daily`]); kept as sent, surrounding whitespace aside.
fn check_cron(expr: &str) -> Result<String, String> {
    let expr = expr.trim();
    Daily::parse(expr).map_err(|e| format!("schedule {expr:?} is not accepted: {e}"))?;
    Ok(expr.to_string())
}

/// `properties.segments` for a schedule of `kind`: `["*"]` alone, or distinct ids of
/// definitions of the tenant's sandbox. Required (non-empty) for `batch_segmentation`.
fn check_segments(
    kind: &str,
    segments: Option<Vec<String>>,
    catalog: &CatalogState,
    tenant: &Tenant,
) -> Result<Vec<String>, String> {
    let batch = kind == BATCH_SEGMENTATION;
    let segments = match segments {
        Some(s) => s,
        None if batch => {
            return Err(format!(
                "properties.segments is required for {BATCH_SEGMENTATION}: [\"*\"] for every segment definition, or definition ids"
            ))
        }
        None => return Ok(Vec::new()),
    };
    if batch && segments.is_empty() {
        return Err(format!(
            "properties.segments must not be empty for {BATCH_SEGMENTATION}: [\"*\"] for every segment definition, or definition ids"
        ));
    }
    if segments.len() > 1 && segments.iter().any(|s| s == ALL_SEGMENTS) {
        return Err(
            "properties.segments: \"*\" stands for every segment definition and goes alone".into(),
        );
    }
    for (i, id) in segments.iter().enumerate() {
        if id.trim().is_empty() {
            return Err("properties.segments holds an empty id".into());
        }
        if segments[..i].contains(id) {
            return Err(format!("properties.segments names {id} twice"));
        }
        if id == ALL_SEGMENTS {
            continue;
        }
        let known = catalog
            .segments
            .get(id)
            .is_some_and(|d| d.org_id == tenant.org && d.sandbox == tenant.sandbox);
        if !known {
            return Err(format!(
                "properties.segments names {id}, which is not a segment definition of sandbox {} of org {}",
                tenant.sandbox, tenant.org
            ));
        }
    }
    Ok(segments)
}

/// The schedule a creation body asks for, checked field by field (`now` in Unix seconds).
/// Whether the org may have it is [`check_one_per_org`]'s business.
pub fn resolve(
    body: ScheduleBody,
    tenant: &Tenant,
    catalog: &CatalogState,
    now: i64,
) -> Result<Schedule, Problem> {
    let required = |field: &str| Problem::bad_request(format!("{field} is required"));
    let name =
        check_name(&body.name.ok_or_else(|| required("name"))?).map_err(Problem::bad_request)?;
    let kind = one_of("type", &body.kind.ok_or_else(|| required("type"))?, TYPES)
        .map_err(Problem::bad_request)?;
    let schedule = check_cron(&body.schedule.ok_or_else(|| required("schedule"))?)
        .map_err(Problem::bad_request)?;
    let state = match body.state {
        Some(s) => one_of("state", &s, STATES).map_err(Problem::bad_request)?,
        None => INACTIVE,
    };
    let properties = body.properties.ok_or_else(|| {
        Problem::bad_request(
            "properties is required: {\"segments\": [\"*\"]} for every segment definition, or definition ids",
        )
    })?;
    let segments =
        check_segments(kind, properties.segments, catalog, tenant).map_err(Problem::bad_request)?;
    Ok(Schedule {
        id: uuid::Uuid::new_v4().to_string(),
        name,
        org_id: tenant.org.clone(),
        sandbox: tenant.sandbox.clone(),
        kind: kind.to_string(),
        segments,
        schedule,
        state: state.to_string(),
        create_epoch: now,
        update_epoch: now,
    })
}

/// An org has one schedule, in whichever sandbox: a second is a 409 naming the first.
pub fn check_one_per_org(catalog: &CatalogState, org: &str) -> Result<(), Problem> {
    let existing = catalog
        .schedules
        .values()
        .filter(|s| s.org_id == org)
        .min_by(|a, b| a.create_epoch.cmp(&b.create_epoch).then(a.id.cmp(&b.id)));
    match existing {
        Some(s) => Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "org {org} already has schedule {} (sandbox {}): an org has one schedule; change it with POST or PATCH /config/schedules/{} (a JSON Patch), or delete it first",
                s.id, s.sandbox, s.id
            ),
        )),
        None => Ok(()),
    }
}

/// `stored` with a JSON Patch (RFC 6902) applied: `add` or `replace` on [`PATCH_PATHS`], all
/// or nothing. Every refusal is a 400 naming the operation (its index and path).
/// `update_epoch` becomes `now` (Unix seconds).
pub fn apply_patch(
    stored: &Schedule,
    patch: &Value,
    catalog: &CatalogState,
    tenant: &Tenant,
    now: i64,
) -> Result<Schedule, Problem> {
    let ops = patch.as_array().ok_or_else(|| {
        Problem::bad_request(
            "the body must be a JSON Patch array (RFC 6902), e.g. [{\"op\": \"add\", \"path\": \"/state\", \"value\": \"active\"}]",
        )
    })?;
    let mut next = stored.clone();
    for (i, op) in ops.iter().enumerate() {
        let field = |name: &str| op.get(name).and_then(Value::as_str);
        let (Some(kind), Some(path)) = (field("op"), field("path")) else {
            return Err(Problem::bad_request(format!(
                "operation {i}: an operation is an object with \"op\" and \"path\" strings (and \"value\" for add and replace)"
            )));
        };
        let refuse =
            |why: String| Problem::bad_request(format!("operation {i} ({kind} {path}): {why}"));
        if kind != "add" && kind != "replace" {
            return Err(refuse("only add and replace are supported".into()));
        }
        if !PATCH_PATHS.contains(&path) {
            return Err(refuse(format!(
                "{path} cannot be changed; the paths are {}",
                PATCH_PATHS.join(", ")
            )));
        }
        let value = op
            .get("value")
            .ok_or_else(|| refuse("a value is required".into()))?;
        if path == "/properties/segments" {
            let segments = value
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|s| s.as_str().map(str::to_string))
                        .collect::<Option<Vec<String>>>()
                })
                .ok_or_else(|| {
                    refuse(format!(
                        "the value must be an array of strings (got {value})"
                    ))
                })?;
            next.segments =
                check_segments(&next.kind, Some(segments), catalog, tenant).map_err(refuse)?;
            continue;
        }
        let text = value
            .as_str()
            .ok_or_else(|| refuse(format!("the value must be a string (got {value})")))?;
        match path {
            "/name" => next.name = check_name(text).map_err(refuse)?,
            "/state" => next.state = one_of("state", text, STATES).map_err(refuse)?.to_string(),
            _ => next.schedule = check_cron(text).map_err(refuse)?,
        }
    }
    next.update_epoch = now;
    Ok(next)
}

fn not_found(id: &str, tenant: &Tenant) -> Problem {
    Problem::not_found(format!(
        "no schedule {id} in sandbox {} of org {}",
        tenant.sandbox, tenant.org
    ))
}

fn unavailable(e: impl std::fmt::Display) -> Problem {
    Problem::unavailable(e.to_string())
}

/// The tenant's schedule `id`.
fn find(catalog: &CatalogState, tenant: &Tenant, id: &str) -> Result<Schedule, Problem> {
    catalog
        .schedules
        .get(id)
        .filter(|s| s.org_id == tenant.org && s.sandbox == tenant.sandbox)
        .cloned()
        .ok_or_else(|| not_found(id, tenant))
}

fn now_seconds() -> i64 {
    now_ms() / 1000
}

pub async fn list(
    State(state): State<ControlState>,
    tenant: Tenant,
) -> Result<Json<Value>, Problem> {
    let mut all: Vec<Schedule> = state
        .view
        .read()
        .schedules
        .values()
        .filter(|s| s.org_id == tenant.org && s.sandbox == tenant.sandbox)
        .cloned()
        .collect();
    all.sort_by(|a, b| a.create_epoch.cmp(&b.create_epoch).then(a.id.cmp(&b.id)));
    let children: Vec<ScheduleView> = all.iter().map(ScheduleView::of).collect();
    Ok(Json(serde_json::json!({
        "_page": {"totalCount": children.len(), "count": children.len()},
        "children": children,
    })))
}

pub async fn get(
    State(state): State<ControlState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, Problem> {
    let schedule = find(&state.view.read(), &tenant, &id)?;
    Ok(Json(ScheduleView::of(&schedule)))
}

pub async fn create(
    State(state): State<ControlState>,
    tenant: Tenant,
    ApiJson(body): ApiJson<ScheduleBody>,
) -> Result<(StatusCode, Json<ScheduleView>), Problem> {
    let _serialized = WRITES.lock().await;
    let schedule = {
        let catalog = state.view.read();
        let schedule = resolve(body, &tenant, &catalog, now_seconds())?;
        if let Err(conflict) = check_one_per_org(&catalog, &tenant.org) {
            tracing::info!(org = %tenant.org, sandbox = %tenant.sandbox, detail = %conflict.detail, "schedule refused: the org has one");
            return Err(conflict);
        }
        schedule
    };
    state
        .writer
        .put(&CatalogRecord::Schedule(schedule.clone()))
        .await
        .map_err(unavailable)?;
    log_written(&schedule, "created");
    Ok((StatusCode::CREATED, Json(ScheduleView::of(&schedule))))
}

/// `POST` or `PATCH /config/schedules/{id}` with a JSON Patch array: 204.
pub async fn update(
    State(state): State<ControlState>,
    tenant: Tenant,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<StatusCode, Problem> {
    let _serialized = WRITES.lock().await;
    let schedule = {
        let catalog = state.view.read();
        let stored = find(&catalog, &tenant, &id)?;
        apply_patch(&stored, &patch, &catalog, &tenant, now_seconds())?
    };
    state
        .writer
        .put(&CatalogRecord::Schedule(schedule.clone()))
        .await
        .map_err(unavailable)?;
    log_written(&schedule, "updated");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn delete(
    State(state): State<ControlState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let _serialized = WRITES.lock().await;
    find(&state.view.read(), &tenant, &id)?;
    state
        .writer
        .delete(&schedule_key(&id))
        .await
        .map_err(unavailable)?;
    tracing::info!(schedule = %id, org = %tenant.org, sandbox = %tenant.sandbox, "schedule deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn log_written(s: &Schedule, what: &'static str) {
    tracing::info!(
        schedule = %s.id,
        org = %s.org_id,
        sandbox = %s.sandbox,
        kind = %s.kind,
        state = %s.state,
        cron = %s.schedule,
        segments = ?s.segments,
        "schedule {what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_catalog::SegmentDefinition;
    use serde_json::json;

    fn tenant() -> Tenant {
        Tenant {
            org: "acme".into(),
            sandbox: "prod".into(),
        }
    }

    fn definition(id: &str, org: &str, sandbox: &str) -> SegmentDefinition {
        SegmentDefinition {
            id: id.into(),
            name: id.into(),
            description: None,
            org_id: org.into(),
            sandbox: sandbox.into(),
            schema_name: "_xdm.context.profile".into(),
            expression: "true".into(),
            streaming: false,
            classification: "batch".into(),
            profile_only: true,
            creation_time: 0,
            update_time: 0,
        }
    }

    fn catalog() -> CatalogState {
        let mut c = CatalogState::default();
        for d in [
            definition("s1", "acme", "prod"),
            definition("s2", "acme", "prod"),
            definition("dev-only", "acme", "dev"),
            definition("theirs", "other", "prod"),
        ] {
            c.segments.insert(d.id.clone(), d);
        }
        c
    }

    /// The seed's creation body.
    fn seed() -> Value {
        json!({"name": "nightly", "type": "batch_segmentation",
               "properties": {"segments": ["*"]}, "schedule": "0 0 1 * * ?", "state": "inactive"})
    }

    fn create(v: Value) -> Result<Schedule, Problem> {
        let body: ScheduleBody = serde_json::from_value(v).expect("a body");
        resolve(body, &tenant(), &catalog(), 100)
    }

    fn detail<T: std::fmt::Debug>(r: Result<T, Problem>) -> (u16, String) {
        let e = r.expect_err("a problem");
        (e.status, e.detail)
    }

    fn stored() -> Schedule {
        create(seed()).expect("the seed's body")
    }

    fn patch(v: Value) -> Result<Schedule, Problem> {
        apply_patch(&stored(), &v, &catalog(), &tenant(), 200)
    }

    #[test]
    fn the_seed_body_creates_an_inactive_schedule() {
        let s = stored();
        assert_eq!(s.kind, BATCH_SEGMENTATION);
        assert_eq!(s.segments, ["*"]);
        assert_eq!(s.schedule, "0 0 1 * * ?");
        assert_eq!(s.state, INACTIVE);
        assert_eq!((s.org_id.as_str(), s.sandbox.as_str()), ("acme", "prod"));
        assert_eq!((s.create_epoch, s.update_epoch), (100, 100));
        assert!(!s.id.is_empty());
        // `state` defaults to inactive.
        let mut v = seed();
        v.as_object_mut().map(|o| o.remove("state"));
        assert_eq!(create(v).expect("no state").state, INACTIVE);
        // Definition ids of the sandbox; export needs no segments.
        let mut v = seed();
        v["properties"]["segments"] = json!(["s1", "s2"]);
        v["state"] = json!("active");
        let s = create(v).expect("known ids");
        assert_eq!((s.segments.len(), s.state.as_str()), (2, ACTIVE));
        let s = create(json!({"name": "e", "type": "export", "properties": {},
                              "schedule": "0 30 2 * * ?"}))
        .expect("an export");
        assert!(s.segments.is_empty());
    }

    #[test]
    fn creation_bodies_are_checked() {
        let with = |field: &str, value: Value| {
            let mut v = seed();
            v[field] = value;
            create(v)
        };
        let without = |field: &str| {
            let mut v = seed();
            v.as_object_mut().map(|o| o.remove(field));
            create(v)
        };
        for field in ["name", "type", "schedule", "properties"] {
            let (status, d) = detail(without(field));
            assert_eq!(status, 400);
            assert!(d.contains(&format!("{field} is required")), "{d}");
        }
        let (_, d) = detail(with("name", json!("  ")));
        assert!(d.contains("name"), "{d}");
        let (_, d) = detail(with("type", json!("streaming")));
        assert!(d.contains("batch_segmentation, export"), "{d}");
        let (_, d) = detail(with("state", json!("on")));
        assert!(d.contains("active, inactive"), "{d}");
        // The cron's own message says what is wrong.
        let (status, d) = detail(with("schedule", json!("0 */5 * * * ?")));
        assert_eq!(status, 400);
        assert!(d.contains("0 */5 * * * ?") && d.contains("minutes"), "{d}");
        let (_, d) = detail(with("schedule", json!("0 0 1 * *")));
        assert!(d.contains("six fields"), "{d}");
        // Segments.
        for (segments, says) in [
            (json!(["nope"]), "nope"),
            (json!(["dev-only"]), "dev-only"),
            (json!(["theirs"]), "theirs"),
            (json!(["*", "s1"]), "alone"),
            (json!(["s1", "s1"]), "twice"),
            (json!([]), "must not be empty"),
            (json!([""]), "empty id"),
        ] {
            let (status, d) = detail(with("properties", json!({ "segments": segments })));
            assert_eq!(status, 400, "{segments}");
            assert!(d.contains(says), "{segments}: {d}");
        }
        let (_, d) = detail(with("properties", json!({})));
        assert!(d.contains("properties.segments is required"), "{d}");
        // Unknown fields and wrong types are the extractor's (422).
        assert!(serde_json::from_value::<ScheduleBody>(json!({"nme": "x"})).is_err());
        assert!(serde_json::from_value::<ScheduleBody>(json!({"name": 5})).is_err());
        assert!(serde_json::from_value::<ScheduleBody>(
            json!({"properties": {"segments": ["*"], "other": 1}})
        )
        .is_err());
    }

    #[test]
    fn one_schedule_per_org_whatever_the_sandbox() {
        let mut c = catalog();
        assert!(check_one_per_org(&c, "acme").is_ok());
        let mut s = stored();
        s.sandbox = "dev".into();
        c.schedules.insert(s.id.clone(), s.clone());
        let (status, d) = detail(check_one_per_org(&c, "acme"));
        assert_eq!(status, 409);
        assert!(d.contains(&s.id) && d.contains("dev"), "{d}");
        assert!(check_one_per_org(&c, "other").is_ok());
    }

    #[test]
    fn the_seeds_patch_enables_and_others_change_what_they_name() {
        let s = patch(json!([{"op": "add", "path": "/state", "value": "active"}]))
            .expect("the seed's patch");
        assert_eq!(s.state, ACTIVE);
        assert_eq!((s.create_epoch, s.update_epoch), (100, 200));
        assert_eq!(s.schedule, "0 0 1 * * ?");
        let base = stored();
        let ops = json!([
            {"op": "replace", "path": "/schedule", "value": "15 30 4 * * *"},
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "add", "path": "/properties/segments", "value": ["s1"]},
            {"op": "replace", "path": "/state", "value": "inactive"},
        ]);
        let s = apply_patch(&base, &ops, &catalog(), &tenant(), 200).expect("four operations");
        assert_eq!(
            (s.schedule.as_str(), s.name.as_str(), s.state.as_str()),
            ("15 30 4 * * *", "renamed", INACTIVE)
        );
        assert_eq!(s.segments, ["s1"]);
        assert_eq!(
            (s.id.as_str(), s.kind.as_str()),
            (base.id.as_str(), base.kind.as_str())
        );
        // An empty patch changes nothing but the epoch.
        let s = apply_patch(&base, &json!([]), &catalog(), &tenant(), 300).expect("no operation");
        assert_eq!(
            s,
            Schedule {
                update_epoch: 300,
                ..base
            }
        );
    }

    #[test]
    fn patches_are_refused_naming_the_operation() {
        for (ops, says) in [
            (
                json!([{"op": "add", "path": "/state", "value": "active"},
                       {"op": "replace", "path": "/type", "value": "export"}]),
                "operation 1 (replace /type)",
            ),
            (
                json!([{"op": "remove", "path": "/state"}]),
                "operation 0 (remove /state): only add and replace",
            ),
            (
                json!([{"op": "move", "from": "/name", "path": "/state"}]),
                "operation 0 (move /state)",
            ),
            (
                json!([{"op": "add", "path": "/state", "value": "on"}]),
                "operation 0 (add /state): state \"on\" is not one of active, inactive",
            ),
            (
                json!([{"op": "add", "path": "/state", "value": true}]),
                "must be a string",
            ),
            (
                json!([{"op": "add", "path": "/state"}]),
                "a value is required",
            ),
            (
                json!([{"op": "replace", "path": "/schedule", "value": "0 0 */2 * * ?"}]),
                "operation 0 (replace /schedule): schedule \"0 0 */2 * * ?\"",
            ),
            (
                json!([{"op": "replace", "path": "/properties/segments", "value": ["gone"]}]),
                "operation 0 (replace /properties/segments): properties.segments names gone",
            ),
            (
                json!([{"op": "replace", "path": "/properties/segments", "value": []}]),
                "must not be empty",
            ),
            (
                json!([{"op": "replace", "path": "/properties/segments", "value": "*"}]),
                "array of strings",
            ),
            (
                json!([{"path": "/state", "value": "active"}]),
                "operation 0:",
            ),
            (json!([7]), "operation 0:"),
            (
                json!({"op": "add", "path": "/state", "value": "active"}),
                "JSON Patch array",
            ),
        ] {
            let (status, d) = detail(patch(ops.clone()));
            assert_eq!(status, 400, "{ops}");
            assert!(d.contains(says), "{ops}: {d}");
        }
        // All or nothing: nothing of a refused patch is kept (the stored schedule is a copy).
        let (_, d) = detail(patch(json!([
            {"op": "add", "path": "/state", "value": "active"},
            {"op": "add", "path": "/state", "value": "nope"},
        ])));
        assert!(d.starts_with("operation 1"), "{d}");
    }

    #[test]
    fn the_view_has_aeps_shape() {
        let mut s = stored();
        s.id = "cd585edf".into();
        let v = serde_json::to_value(ScheduleView::of(&s)).expect("a view");
        assert_eq!(
            v,
            json!({
                "id": "cd585edf", "imsOrgId": "acme",
                "sandbox": {"sandboxId": "", "sandboxName": "prod", "type": "production", "default": true},
                "name": "nightly", "state": "inactive", "type": "batch_segmentation",
                "schedule": "0 0 1 * * ?", "properties": {"segments": ["*"]},
                "createEpoch": 100, "updateEpoch": 100
            })
        );
        s.sandbox = "dev".into();
        let v = serde_json::to_value(ScheduleView::of(&s)).expect("a view");
        assert_eq!(
            v["sandbox"],
            json!({"sandboxId": "", "sandboxName": "dev", "type": "development", "default": false})
        );
    }
}
