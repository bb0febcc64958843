//! `/healthz`, `/readyz` and `/metrics` for stage processes. Every stage running in the process
//! reports its state here, so `cdp up` answers for all of them on one port and `cdp validate`
//! for itself.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Reading its partitions' state back from their changelog (at start, after a
    /// rebalance): not ready, since what it answers from state would be incomplete.
    Restoring,
    /// Consuming.
    Ready,
    /// Stopped on a fatal error; the process should be restarted.
    Failed,
    /// Shut down on request.
    Stopped,
}

type Entries = BTreeMap<u64, (String, Status)>;

fn registry() -> &'static Mutex<Entries> {
    static R: OnceLock<Mutex<Entries>> = OnceLock::new();
    R.get_or_init(Default::default)
}

fn entries() -> std::sync::MutexGuard<'static, Entries> {
    registry().lock().unwrap_or_else(|p| p.into_inner())
}

/// One running stage's entry on `/readyz`. Dropped when the stage ends: a stage that stopped
/// on request leaves the page, one that failed stays on it (and turns `/healthz` to 503) until
/// the process is restarted. Several instances of a stage in one process (tests, benchmarks)
/// each have their own.
pub struct Registration {
    id: u64,
}

impl Registration {
    pub fn new(stage: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        entries().insert(id, (stage.to_string(), Status::Starting));
        Self { id }
    }

    pub fn set(&self, status: Status) {
        if let Some(e) = entries().get_mut(&self.id) {
            e.1 = status;
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut e = entries();
        if e.get(&self.id).is_some_and(|(_, s)| *s != Status::Failed) {
            e.remove(&self.id);
        }
    }
}

fn snapshot() -> Vec<serde_json::Value> {
    entries()
        .values()
        .map(|(stage, status)| serde_json::json!({"stage": stage, "status": status}))
        .collect()
}

fn all(pred: impl Fn(Status) -> bool) -> bool {
    entries().values().all(|(_, s)| pred(*s))
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
    if all(|s| s != Status::Failed) {
        "ok".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "failed", "stages": snapshot()})),
        )
            .into_response()
    }
}

/// Ready when every stage of the process consumes.
async fn readyz() -> Response {
    let stages = snapshot();
    let ready = !stages.is_empty() && all(|s| s == Status::Ready);
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
