//! Liveness, readiness (the broker answers) and Prometheus metrics.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::state::EdgeState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(state): State<EdgeState>) -> Response {
    if state
        .inner
        .producer
        .broker_reachable(Duration::from_secs(2))
        .await
    {
        Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "unavailable", "reason": "broker not reachable"})),
        )
            .into_response()
    }
}

pub async fn metrics() -> Response {
    match crate::metrics::handle() {
        Some(h) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4",
            )],
            h.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed").into_response(),
    }
}
