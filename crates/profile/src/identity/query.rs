//! The identity owner's query API: which profile holds an identity, its identities, and the
//! graph's history, read from the identity stage's own state (the partition of
//! `profile.sequence` the sandbox is placed on, where its graph lives) for control's Identity
//! and Profile APIs. An instance that does not hold that partition answers 421 (control asks
//! the owner again, see `cdp_contract::endpoints`). Behind the operator's token: these are internal routes.
//!
//! - `GET /internal/identity/members?org=&sandbox=&ns=&id=` → [`IdentityLookup`];
//! - `GET /internal/identity/history?org=&sandbox=&ns=&id=` → [`HistoryLookup`].

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cdp_contract::records::lookup::{HistoryLookup, IdentityLookup};
use cdp_contract::records::Identity;
use cdp_http::Problem;
use cdp_stage::StateReader;
use serde::Deserialize;

use super::graph::Cluster;
use super::history;
use super::stage::{cluster_key, node_key};

/// What the routes read: the stage's state, and how many partitions profile.sequence has (to
/// find a sandbox's).
#[derive(Clone)]
pub struct QueryState {
    pub reader: StateReader,
    pub partitions: i32,
}

/// The routes over the identity stage's state, behind `token` (bearer).
pub fn router(state: QueryState, token: Arc<str>) -> Router {
    Router::new()
        .route("/internal/identity/members", get(members))
        .route("/internal/identity/history", get(history_of))
        .route_layer(axum::middleware::from_fn_with_state(
            token,
            cdp_http::require_admin,
        ))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct IdentityKey {
    org: String,
    sandbox: String,
    ns: String,
    id: String,
}

/// Reads `key` from the sandbox's partition.
fn read(state: &QueryState, q: &IdentityKey, key: &[u8]) -> Result<Option<Vec<u8>>, Problem> {
    let partition = cdp_contract::partition::for_sandbox(&q.org, &q.sandbox, state.partitions);
    if !state.reader.holds(partition) {
        return Err(Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!("this instance does not hold the identity graphs of partition {partition} now"),
        ));
    }
    state
        .reader
        .get(partition, key)
        .map_err(|e| Problem::unavailable(format!("the identity graph cannot be read now: {e}")))
}

/// The profile holding the identity, and its cluster.
fn cluster(state: &QueryState, q: &IdentityKey) -> Result<(Identity, Cluster), Problem> {
    let identity = Identity::new(q.ns.clone(), q.id.clone());
    let unknown = || {
        Problem::not_found(format!(
            "no profile has the identity {identity} in sandbox {}",
            q.sandbox
        ))
    };
    let profile = read(state, q, &node_key(&q.org, &q.sandbox, &identity))?
        .and_then(|v| String::from_utf8(v).ok())
        .ok_or_else(unknown)?;
    let stored = read(state, q, &cluster_key(&profile))?.ok_or_else(unknown)?;
    let cluster: Cluster = serde_json::from_slice(&stored).map_err(|e| {
        tracing::error!(profile, error = %e, "a stored cluster cannot be read");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })?;
    Ok((identity, cluster))
}

async fn members(State(state): State<QueryState>, Query(q): Query<IdentityKey>) -> Response {
    match cluster(&state, &q) {
        Ok((_, c)) => Json(IdentityLookup {
            last_modified_ms: c.nodes.iter().map(|n| n.last_ms).max().unwrap_or_default(),
            identities: c.identities(),
            profile_id: c.id,
        })
        .into_response(),
        Err(p) => p.into_response(),
    }
}

async fn history_of(State(state): State<QueryState>, Query(q): Query<IdentityKey>) -> Response {
    let (identity, c) = match cluster(&state, &q) {
        Ok(found) => found,
        Err(p) => return p.into_response(),
    };
    let lists = read(&state, &q, &history::profile_key(&c.id)).and_then(|own| {
        let named = read(
            &state,
            &q,
            &history::identity_key(&q.org, &q.sandbox, &identity),
        )?;
        let parse = |v| {
            history::read(v)
                .map_err(|e| Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
        };
        Ok((parse(own)?, parse(named)?))
    });
    let (own, named) = match lists {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    let mut all = own;
    all.extend(named);
    all.sort_by_key(|s| std::cmp::Reverse(s.order));
    all.dedup_by_key(|s| s.order);
    Json(HistoryLookup {
        profile_id: c.id,
        history: all.into_iter().map(|s| s.event).collect(),
    })
    .into_response()
}
