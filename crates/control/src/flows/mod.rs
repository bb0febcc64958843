//! The Flow Service API for streaming destinations (seed 004), shaped after AEP's, behind the
//! admin token and AEP's org and sandbox headers:
//!
//! - `GET /connectionSpecs[/{id}]`: the profile source ("Unified Profile Service") and the
//!   destinations Amazon Kinesis, Azure Event Hubs and Kafka (this platform's own), with the
//!   JSON Schema of their `auth.params` and target `params` ([`specs`]);
//! - `POST /connections`: a base connection; a destination's `auth.params` are checked against
//!   its spec and sealed with control's secret key before they reach the catalog, and
//!   `GET /connections[/{id}]` never shows a secret ([`connections`]); `PATCH /connections/{id}`
//!   changes its name, description or params and seals them again ([`connection_patch`]);
//!   `DELETE` of a connection,
//!   source or target connection is refused (409) while something still uses it;
//! - `POST /sourceConnections` (on a base connection of the profile source),
//!   `POST /targetConnections` (on a destination's base connection: where inside it, which
//!   format), and their `GET`s;
//! - `POST /flows` joins source and target connections; `GET /flows[/{id}]`;
//!   `PATCH /flows/{id}` (a JSON Patch, RFC 6902, under `If-Match`) selects the segments and
//!   profile attributes to export in `transformations`, and enables or disables the flow
//!   through `state` ([`patch`]); `DELETE /flows/{id}`;
//! - `GET /flows/{id}/runs`: each target's delivery status from the sinks stage ([`runs`]).
//!
//! Every object belongs to the org and sandbox it was created in: another sandbox's ids are
//! 404s. The records are catalog records (`cdp_catalog::flows`); the sink stage follows them.

mod connection_patch;
mod connections;
mod dataflows;
mod deletions;
mod error;
pub mod patch;
pub mod runs;
pub mod specs;

pub use connections::{ConnectionView, EndpointView, SourceConnectionView, TargetConnectionView};
pub use dataflows::FlowView;
pub use error::FlowError;

use cdp_catalog::principal::Authenticator;
use std::collections::HashMap;

use axum::routing::get;
use axum::{Json, Router};
use cdp_catalog::flows::Owned;
use cdp_catalog::{CatalogView, CatalogWriter, SecretKey};
use cdp_http::Paging;
use serde::Serialize;
use serde_json::{json, Value};

use crate::http::Tenant;

/// What the Flow Service handlers share.
#[derive(Clone)]
pub struct FlowApi {
    /// The catalog: connections, flows, and the segment definitions flows select.
    pub view: CatalogView,
    /// Where connections and flows are written (read-your-writes through `view`).
    pub writer: CatalogWriter,
    /// Seals destination credentials before they are written, opens them to show the
    /// non-secret ones (`control.secret_key`).
    pub secrets: SecretKey,
    pub auth: Authenticator,
}

/// The Flow Service routes, every one behind the admin token.
pub fn router(api: FlowApi) -> Router {
    Router::new()
        .route("/connectionSpecs", get(specs::list))
        .route("/connectionSpecs/{id}", get(specs::get))
        .route(
            "/connections",
            get(connections::list).post(connections::create),
        )
        .route(
            "/connections/{id}",
            get(connections::get)
                .patch(connection_patch::patch)
                .delete(deletions::connection),
        )
        .route(
            "/sourceConnections",
            get(connections::list_sources).post(connections::create_source),
        )
        .route(
            "/sourceConnections/{id}",
            get(connections::get_source).delete(deletions::source),
        )
        .route(
            "/targetConnections",
            get(connections::list_targets).post(connections::create_target),
        )
        .route(
            "/targetConnections/{id}",
            get(connections::get_target).delete(deletions::target),
        )
        .route("/flows", get(dataflows::list).post(dataflows::create))
        .route(
            "/flows/{id}",
            get(dataflows::get)
                .patch(dataflows::patch)
                .delete(dataflows::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            api.auth.clone(),
            cdp_http::org_scoped,
        ))
        .with_state(api)
}

/// Serializes this process's Flow Service writes that check what the catalog holds before they
/// write: a PATCH or DELETE of a flow against its current etag (of two PATCHes racing on one
/// etag, one wins and the other gets a 412), a flow or target on the connections it names, a
/// deletion against what still uses it. Across several control instances each checks its own
/// view of the catalog: there the last writer wins.
pub(crate) static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `connectionSpec` / `flowSpec` reference of bodies and views.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SpecRef {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// The only spec version there is.
pub const SPEC_VERSION: &str = "1.0";

impl SpecRef {
    pub fn of(id: &str) -> SpecRef {
        SpecRef {
            id: Some(id.to_string()),
            version: Some(SPEC_VERSION.to_string()),
        }
    }
}

/// A fresh etag: a random UUID.
fn new_etag() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `name`: required, not blank.
fn check_name(name: Option<String>, what: &str) -> Result<String, FlowError> {
    match name {
        Some(n) if !n.trim().is_empty() => Ok(n),
        Some(_) => Err(FlowError::bad_request(format!(
            "name must not be empty: the {what}'s name"
        ))),
        None => Err(FlowError::bad_request(format!(
            "name is required: the {what}'s name"
        ))),
    }
}

/// `description`: optional; an empty one is none.
fn description(d: Option<String>) -> Option<String> {
    d.filter(|d| !d.trim().is_empty())
}

/// The tenant's record `id` of `records`, if there is one.
fn find<'a, T: Owned>(records: &'a HashMap<String, T>, id: &str, tenant: &Tenant) -> Option<&'a T> {
    records
        .get(id)
        .filter(|r| r.belongs_to(&tenant.org, &tenant.sandbox))
}

/// The tenant's record `id` of `records`, else a 404 naming it a `kind`.
fn require<'a, T: Owned>(
    records: &'a HashMap<String, T>,
    kind: &'static str,
    id: &str,
    tenant: &Tenant,
) -> Result<&'a T, FlowError> {
    find(records, id, tenant).ok_or_else(|| FlowError::not_found(kind, id, tenant))
}

/// The tenant's records of `records`, oldest first, then by id.
fn of_tenant<'a, T: Owned>(records: &'a HashMap<String, T>, tenant: &Tenant) -> Vec<&'a T> {
    let mut items: Vec<&T> = records
        .values()
        .filter(|r| r.belongs_to(&tenant.org, &tenant.sandbox))
        .collect();
    items.sort_by(|a, b| (a.created_at(), a.id()).cmp(&(b.created_at(), b.id())));
    items
}

/// What a `GET` of a small, fixed collection answers (a flow's runs): `{"items": [...]}`.
fn items<T: Serialize>(items: Vec<T>) -> Json<Value> {
    Json(json!({ "items": items }))
}

/// What the `GET`s of a collection answer: one page of `all` (oldest first),
/// `{"items": [...], "page": {...}, "link": {...}}`; `path` is the collection's.
fn paged<T: Serialize>(all: Vec<T>, paging: Paging, path: &str) -> Json<Value> {
    let (shown, page, link) = paging.page(all, ("createdAt", "asc"), path, "");
    Json(json!({ "items": shown, "page": page, "link": link }))
}

/// `GET /<collection>/{id}`: the tenant's record `id` as `view` shows it, else a 404 naming it
/// a `kind`.
fn show<T: Owned, V>(
    records: &HashMap<String, T>,
    kind: &'static str,
    id: &str,
    tenant: &Tenant,
    view: impl FnOnce(&T) -> V,
) -> Result<Json<V>, FlowError> {
    require(records, kind, id, tenant).map(|r| Json(view(r)))
}

/// `GET /<collection>` at `path`: a page of the tenant's records as `view` shows them, oldest
/// first.
fn show_all<T: Owned, V: Serialize>(
    records: &HashMap<String, T>,
    tenant: &Tenant,
    view: impl FnMut(&T) -> V,
    (paging, path): (Paging, &str),
) -> Json<Value> {
    paged(
        of_tenant(records, tenant).into_iter().map(view).collect(),
        paging,
        path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_catalog::flows::PROFILE_SOURCE_SPEC;
    use cdp_catalog::SourceConnection;

    fn source(id: &str, sandbox: &str, created_at: i64) -> (String, SourceConnection) {
        let record = SourceConnection {
            id: id.into(),
            name: id.into(),
            description: None,
            org_id: "o".into(),
            sandbox: sandbox.into(),
            connection_spec_id: PROFILE_SOURCE_SPEC.into(),
            base_connection_id: "b".into(),
            format: "json".into(),
            params: json!({}),
            etag: "e".into(),
            created_at,
            updated_at: created_at,
        };
        (id.to_string(), record)
    }

    #[test]
    fn records_are_found_and_listed_within_the_tenant_oldest_first() {
        let records: HashMap<String, SourceConnection> = [
            source("c", "prod", 2),
            source("b", "prod", 1),
            source("a", "prod", 2),
            source("d", "dev", 0),
        ]
        .into_iter()
        .collect();
        let prod = Tenant {
            org: "o".into(),
            sandbox: "prod".into(),
        };
        let ids: Vec<&str> = of_tenant(&records, &prod)
            .into_iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(ids, ["b", "a", "c"]);
        assert_eq!(find(&records, "a", &prod).map(|r| r.created_at), Some(2));
        assert!(find(&records, "d", &prod).is_none());
        let missing = require(&records, "source connection", "d", &prod).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "no source connection d in sandbox prod of org o"
        );
    }
}
