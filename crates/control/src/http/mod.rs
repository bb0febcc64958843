//! The management API: streams, API keys and tokens. Everything except token issuance needs
//! the admin bearer token.

mod api_keys;
mod streams;
mod tokens;

pub use api_keys::ApiKeyView;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use cdp_catalog::tokens::Tokens;
use cdp_catalog::{CatalogView, CatalogWriter};

/// What every management handler needs.
#[derive(Clone)]
pub struct ControlState {
    pub view: CatalogView,
    pub writer: CatalogWriter,
    pub tokens: Tokens,
    pub admin_token: Arc<str>,
    pub max_token_days: u32,
}

pub fn router(state: ControlState) -> Router {
    let admin = Router::new()
        .route("/streams", post(streams::create).get(streams::list))
        .route("/streams/{id}", get(streams::get).delete(streams::delete))
        .route("/api-keys", post(api_keys::create).get(api_keys::list))
        .route("/api-keys/{id}", axum::routing::delete(api_keys::delete))
        .route("/api-keys/{id}/rotate", post(api_keys::rotate))
        .route_layer(axum::middleware::from_fn_with_state(
            state.admin_token.clone(),
            cdp_http::require_admin,
        ));
    Router::new()
        .merge(admin)
        .route("/tokens", post(tokens::issue))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}
