//! The edge receiver: the only HTTP entry point for behavioural events.
//!
//! It owns the collection endpoints (`/collection/{id}`, `/collection/batch/{id}`), the
//! streaming-ingest endpoint (`/stream/v0/data/{id}`), their authentication (JWT), payload
//! limits enforced while the body streams in, per-stream throttling, header checks of XDM
//! messages, XML → record conversion, CORS for web pages of the origins each stream lists, and
//! the write to the raw topic. It answers 2xx only after the broker acknowledged every accepted
//! message; otherwise 503, and the client retries.

mod auth;
mod body;
mod cors;
mod ids;
mod message;
mod metrics;
pub mod produce;
mod routes;
mod settings;
mod state;
mod throttle;
mod xml;

pub use settings::EdgeSettings;
pub use state::{EdgeError, EdgeState};

use axum::routing::{get, post};
use axum::Router;

/// The edge's HTTP routes, ready to be served.
pub fn router(state: EdgeState) -> Router {
    let origins = cors::Origins::from_catalog(state.inner.catalog.clone());
    Router::new()
        .route(
            "/collection/{connection_id}",
            post(routes::collection::single),
        )
        .route(
            "/collection/batch/{connection_id}",
            post(routes::collection::batch),
        )
        .route("/stream/v0/data/{stream_id}", post(routes::stream::ingest))
        // Only the ingestion routes above: browsers have no business with health or metrics.
        .route_layer(axum::middleware::from_fn_with_state(
            origins,
            cors::middleware,
        ))
        .route("/healthz", get(routes::health::healthz))
        .route("/readyz", get(routes::health::readyz))
        .route("/metrics", get(routes::health::metrics))
        .layer(axum::middleware::from_fn(metrics::track_requests))
        .with_state(state)
}
