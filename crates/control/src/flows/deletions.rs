//! `DELETE` of base, source and target connections: each refused (409, naming what) while
//! something still uses it: a source or target connection on a base connection, a flow on a
//! source or target connection. Delete from the flow down.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use cdp_catalog::flows::Owned;
use cdp_catalog::model::{connection_key, source_connection_key, target_connection_key};
use cdp_catalog::CatalogState;

use super::{require, FlowApi, FlowError, WRITES};
use crate::http::Tenant;

/// One kind of record a `DELETE` removes: where the catalog keeps it, its key, and what may
/// still use one (as "<kind> <id>").
struct Removable<T: 'static> {
    kind: &'static str,
    records: fn(&CatalogState) -> &HashMap<String, T>,
    key: fn(&str) -> String,
    users: fn(&CatalogState, &str) -> Vec<String>,
}

/// Deletes record `id` of `what` (204), unless it is not the tenant's (404) or something still
/// uses it (409 naming them, in id order).
async fn remove<T: Owned + 'static>(
    api: &FlowApi,
    tenant: &Tenant,
    id: String,
    what: Removable<T>,
) -> Result<StatusCode, FlowError> {
    let _serialized = WRITES.lock().await;
    {
        let catalog = api.view.read();
        require((what.records)(&catalog), what.kind, &id, tenant)?;
        let mut by = (what.users)(&catalog, &id);
        if !by.is_empty() {
            by.sort();
            return Err(FlowError::InUse {
                kind: what.kind,
                id,
                by,
            });
        }
    }
    api.writer.delete(&(what.key)(&id)).await?;
    tracing::info!(kind = what.kind, id = %id, org = %tenant.org, sandbox = %tenant.sandbox, "deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The flows that name `id` among the connections `of` gives.
fn flows_using(
    catalog: &CatalogState,
    id: &str,
    of: fn(&cdp_catalog::Flow) -> &Vec<String>,
) -> Vec<String> {
    catalog
        .flows
        .values()
        .filter(|f| of(f).iter().any(|c| c == id))
        .map(|f| format!("flow {}", f.id))
        .collect()
}

/// `DELETE /connections/{id}`: 204 (its sealed credentials leave the catalog); 409 while a
/// source or target connection is on it.
pub async fn connection(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, FlowError> {
    let what = Removable {
        kind: "connection",
        records: |c| &c.connections,
        key: connection_key,
        users: |c, id| {
            let sources = c
                .source_connections
                .values()
                .filter(|s| s.base_connection_id == id)
                .map(|s| format!("source connection {}", s.id));
            let targets = c
                .target_connections
                .values()
                .filter(|t| t.base_connection_id == id)
                .map(|t| format!("target connection {}", t.id));
            sources.chain(targets).collect()
        },
    };
    remove(&api, &tenant, id, what).await
}

/// `DELETE /sourceConnections/{id}`: 204; 409 while a flow reads from it.
pub async fn source(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, FlowError> {
    let what = Removable {
        kind: "source connection",
        records: |c| &c.source_connections,
        key: source_connection_key,
        users: |c, id| flows_using(c, id, |f| &f.source_connection_ids),
    };
    remove(&api, &tenant, id, what).await
}

/// `DELETE /targetConnections/{id}`: 204; 409 while a flow delivers to it.
pub async fn target(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, FlowError> {
    let what = Removable {
        kind: "target connection",
        records: |c| &c.target_connections,
        key: target_connection_key,
        users: |c, id| flows_using(c, id, |f| &f.target_connection_ids),
    };
    remove(&api, &tenant, id, what).await
}
