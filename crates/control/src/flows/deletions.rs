//! `DELETE` of base, source and target connections: each refused (409, naming what) while
//! something still uses it: a source or target connection on a base connection, a flow on a
//! source or target connection. Delete from the flow down.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use cdp_catalog::model::{connection_key, source_connection_key, target_connection_key};

use super::{require, FlowApi, FlowError, WRITES};
use crate::http::Tenant;

/// What uses a record a `DELETE` would remove, as "<kind> <id>" in id order.
fn users<'a>(found: impl Iterator<Item = (&'static str, &'a str)>) -> Vec<String> {
    let mut by: Vec<String> = found.map(|(kind, id)| format!("{kind} {id}")).collect();
    by.sort();
    by
}

/// `DELETE /connections/{id}`: 204; 409 while a source or target connection is on it.
pub async fn connection(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, FlowError> {
    let _serialized = WRITES.lock().await;
    {
        let catalog = api.view.read();
        require(&catalog.connections, "connection", &id, &tenant)?;
        let by = users(
            catalog
                .source_connections
                .values()
                .filter(|s| s.base_connection_id == id)
                .map(|s| ("source connection", s.id.as_str()))
                .chain(
                    catalog
                        .target_connections
                        .values()
                        .filter(|t| t.base_connection_id == id)
                        .map(|t| ("target connection", t.id.as_str())),
                ),
        );
        if !by.is_empty() {
            return Err(FlowError::InUse {
                kind: "connection",
                id,
                by,
            });
        }
    }
    api.writer.delete(&connection_key(&id)).await?;
    tracing::info!(connection = %id, org = %tenant.org, sandbox = %tenant.sandbox, "base connection deleted; its sealed credentials are gone from the catalog");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /sourceConnections/{id}`: 204; 409 while a flow reads from it.
pub async fn source(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, FlowError> {
    let _serialized = WRITES.lock().await;
    {
        let catalog = api.view.read();
        require(
            &catalog.source_connections,
            "source connection",
            &id,
            &tenant,
        )?;
        let by = users(
            catalog
                .flows
                .values()
                .filter(|f| f.source_connection_ids.contains(&id))
                .map(|f| ("flow", f.id.as_str())),
        );
        if !by.is_empty() {
            return Err(FlowError::InUse {
                kind: "source connection",
                id,
                by,
            });
        }
    }
    api.writer.delete(&source_connection_key(&id)).await?;
    tracing::info!(source_connection = %id, org = %tenant.org, sandbox = %tenant.sandbox, "source connection deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /targetConnections/{id}`: 204; 409 while a flow delivers to it.
pub async fn target(
    State(api): State<FlowApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, FlowError> {
    let _serialized = WRITES.lock().await;
    {
        let catalog = api.view.read();
        require(
            &catalog.target_connections,
            "target connection",
            &id,
            &tenant,
        )?;
        let by = users(
            catalog
                .flows
                .values()
                .filter(|f| f.target_connection_ids.contains(&id))
                .map(|f| ("flow", f.id.as_str())),
        );
        if !by.is_empty() {
            return Err(FlowError::InUse {
                kind: "target connection",
                id,
                by,
            });
        }
    }
    api.writer.delete(&target_connection_key(&id)).await?;
    tracing::info!(target_connection = %id, org = %tenant.org, sandbox = %tenant.sandbox, "target connection deleted");
    Ok(StatusCode::NO_CONTENT)
}
