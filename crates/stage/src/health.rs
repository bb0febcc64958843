//! `/healthz`, `/readyz` and `/metrics` for stage processes. Every stage running in the process
//! reports its state here, so `cdp up` answers for all of them on one port and `cdp validate`
//! for itself.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// Where a stage is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Setting up: topics, transactions, the first assignment.
    Starting,
    /// Consuming.
    Ready,
    /// Stopped on a fatal error; the process should be restarted.
    Failed,
    /// Shut down on request.
    Stopped,
}

fn registry() -> &'static Mutex<BTreeMap<String, Status>> {
    static R: OnceLock<Mutex<BTreeMap<String, Status>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Records a stage's status (the name is what `/readyz` shows, e.g. `validate`).
pub fn report(stage: &str, status: Status) {
    let mut r = registry().lock().unwrap_or_else(|p| p.into_inner());
    r.insert(stage.to_string(), status);
}

fn snapshot() -> BTreeMap<String, Status> {
    registry().lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// The three endpoints, to serve alone or merge into another router.
pub fn router() -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// `/metrics` alone, for servers that answer `/healthz` themselves (control, the edge).
pub fn metrics_router() -> Router {
    Router::new().route("/metrics", get(metrics))
}

/// Alive unless a stage failed fatally (then a supervisor should restart the process).
async fn healthz() -> Response {
    let stages = snapshot();
    let failed: Vec<&String> = stages
        .iter()
        .filter(|(_, s)| **s == Status::Failed)
        .map(|(n, _)| n)
        .collect();
    if failed.is_empty() {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "failed", "stages": stages})),
        )
            .into_response()
    }
}

/// Ready when every stage of the process consumes.
async fn readyz() -> Response {
    let stages = snapshot();
    let ready = !stages.is_empty() && stages.values().all(|s| *s == Status::Ready);
    let body = Json(serde_json::json!({
        "status": if ready { "ready" } else { "unavailable" },
        "stages": stages,
    }));
    if ready {
        body.into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn metrics() -> Response {
    match cdp_contract::prometheus::render() {
        Some(page) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}

/// Where a process serves the three endpoints (`[health]`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// `host:port`; port 0 picks a free one (the log says which).
    pub listen: String,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".to_string(),
        }
    }
}
