//! Segment definitions (seed 003), shaped after AEP's Segmentation Service API, behind the
//! admin token and AEP's org and sandbox headers:
//!
//! - `POST /segment/definitions`: a PQL definition, compiled against the org's profile-enabled
//!   XDM schemas ([`schemas`]) and classified streaming or batch by the streaming-segmentation
//!   rules (`cdp-pql`), whatever the request's `evaluationInfo` says;
//! - `GET /segment/definitions[?evaluationInfo.continuous.enabled=][&limit=][&start=]`: the
//!   sandbox's definitions, newest first, paged;
//! - `GET`, `PATCH` (name, description, expression: compiled and classified again; a change
//!   that makes it batch switches it to batch), `DELETE` (409 while another definition's
//!   `inSegment` names it) `/segment/definitions/{id}`;
//! - `GET /segment/definitions/{id}/explain?entityId=&entityIdNS=`: the definition evaluated
//!   now on one profile of control's profile view (attributes, newest events, current
//!   memberships), with the reason.
//!
//! Definitions are catalog records (`segment/<id>`): every stage following the catalog sees a
//! change within a second. At most [`limits::MAX_STREAMING_PER_SANDBOX`] streaming definitions
//! per sandbox.

mod definition;
mod error;
mod http;
pub mod limits;
mod list;
pub mod schemas;

pub use definition::{
    classification_text, DefinitionBody, DefinitionView, EvaluationInfo, PQL_FORMAT, PQL_TYPE,
};
pub use error::{PqlErrorItem, SegmentError};
pub use http::{explain_for, ExplainView};
pub use list::{ListPage, ListQuery, PageInfo};

use cdp_catalog::principal::Authenticator;

use axum::routing::get;
use axum::Router;
use cdp_catalog::{CatalogView, CatalogWriter};

use crate::profiles::Lookups;

/// What the segment handlers share.
#[derive(Clone)]
pub struct SegmentApi {
    /// The catalog: definitions, XDM schemas, datasets, merge policies.
    pub view: CatalogView,
    /// Where definitions are written (read-your-writes through `view`).
    pub writer: CatalogWriter,
    /// Where `explain` reads the profile it evaluates on.
    pub profiles: Lookups,
    pub auth: Authenticator,
}

/// The `/segment/definitions` routes, every one behind the admin token.
pub fn router(state: SegmentApi) -> Router {
    Router::new()
        .route("/segment/definitions", get(http::list).post(http::create))
        .route(
            "/segment/definitions/{id}",
            get(http::get).patch(http::patch).delete(http::delete),
        )
        .route("/segment/definitions/{id}/explain", get(http::explain))
        .route_layer(axum::middleware::from_fn_with_state(
            state.auth.clone(),
            cdp_http::org_scoped,
        ))
        .with_state(state)
}
