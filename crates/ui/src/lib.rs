//! The dashboard: server-rendered HTML that control serves at `/ui`, behind the admin token or
//! an org's API key with role `read` (a login form opens a server-side session that expires;
//! `Authorization: Bearer` works too). Signed in with an org's key, every page shows that org's
//! streams, datasets, batches, segments and flows only.
//!
//! It owns no data: every page reads what control already follows — the catalog (streams,
//! datasets, segments, flows), the lake's batch view (the seed's Dataset Activity: record and
//! failed counts, a time series of recent batches, each batch's failed records with reasons),
//! the profile view's segment tallies, a profile looked up by identity (identities, graph
//! history, attributes, recent events, segments with their explain), the sinks' flow
//! statuses — and, for a stream's live
//! view (the seed's "debugger"), the tail of the raw and error topics. Charts are inline SVG
//! drawn here, so the pages need no script, CDN or internet.

mod auth;
mod chart;
mod html;
mod pages;
mod tail;

pub use auth::Sessions;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use cdp_catalog::principal::Authenticator;
use cdp_catalog::CatalogView;
use cdp_contract::{KafkaSettings, Topics};
use cdp_control::flows::runs::FlowRuns;
use cdp_control::profiles::Lookups;
use cdp_lake::LakeApi;

/// What the pages read.
#[derive(Clone)]
pub struct UiState {
    pub catalog: CatalogView,
    pub lake: LakeApi,
    /// The engine's segment tallies, read where they live.
    pub profiles: Lookups,
    pub runs: FlowRuns,
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub admin_token: Arc<str>,
    /// Checks bearer credentials and the API keys typed into the sign-in form.
    pub auth: Authenticator,
    /// The edge's address as clients reach it, shown with each stream's endpoints.
    pub edge_url: String,
    /// The dashboard's open sessions.
    pub sessions: Sessions,
}

/// `/ui` and its pages; `/ui/login` and the stylesheet are the only ones open without a
/// session.
pub fn router(state: UiState) -> Router {
    let guarded = Router::new()
        .route("/ui", get(pages::overview::show))
        .route("/ui/datasets/{id}", get(pages::datasets::show))
        .route("/ui/batches/{id}", get(pages::batches::show))
        .route("/ui/segments", get(pages::segments::show))
        .route("/ui/profiles", get(pages::profiles::show))
        .route("/ui/flows", get(pages::flows::show))
        .route("/ui/streams/{id}/events", get(pages::events::show))
        .route("/ui/logout", post(auth::logout))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_session,
        ));
    Router::new()
        .merge(guarded)
        .route("/ui/login", get(auth::login_form).post(auth::login))
        .route("/ui/style.css", get(pages::stylesheet))
        .with_state(state)
}
