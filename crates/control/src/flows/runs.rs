//! `GET /flows/{id}/runs`: how each target of a flow is delivering, as the sinks stage reports
//! it on `<ns>.sinks.status` (records delivered, failed, retried; the last error and delivery).
//! A target the stage has not reported on yet shows as `pending`.

use cdp_catalog::principal::Authenticator;
use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use cdp_catalog::CatalogView;
use cdp_contract::flow_run::{FlowRun, RunStatus};
use cdp_contract::follower::{Fold, FollowError, Follower};
use cdp_contract::{KafkaSettings, Topics};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

use super::dataflows::find_flow;
use super::{items, FlowError};
use crate::http::Tenant;

/// The latest status of every flow target.
#[derive(Default)]
pub struct RunsState {
    runs: HashMap<String, FlowRun>,
}

impl RunsState {
    /// The latest status of a flow's target, keyed `{flowId}/{targetConnectionId}`.
    pub fn get(&self, flow_id: &str, target_connection_id: &str) -> Option<&FlowRun> {
        self.runs.get(&format!("{flow_id}/{target_connection_id}"))
    }
}

impl Fold for RunsState {
    fn apply(&mut self, _partition: i32, _offset: i64, key: &str, value: Option<&[u8]>) {
        match value.map(serde_json::from_slice::<FlowRun>) {
            Some(Ok(run)) => {
                self.runs.insert(key.to_string(), run);
            }
            Some(Err(e)) => tracing::warn!(key, error = %e, "unreadable flow status; skipped"),
            None => {
                self.runs.remove(key);
            }
        }
    }
}

/// What the runs handler shares: the catalog (which flows exist where) and the statuses.
#[derive(Clone)]
pub struct FlowRuns {
    pub view: CatalogView,
    pub runs: Follower<RunsState>,
    pub auth: Authenticator,
}

impl FlowRuns {
    pub fn start(
        kafka: &KafkaSettings,
        topics: &Topics,
        view: CatalogView,
        auth: Authenticator,
    ) -> Result<Self, FollowError> {
        let runs = Follower::start(kafka, &topics.sinks_status(), &[0], "cdp-control-runs")?;
        Ok(Self { view, runs, auth })
    }
}

pub fn router(api: FlowRuns) -> Router {
    Router::new()
        .route("/flows/{id}/runs", get(list))
        .route_layer(axum::middleware::from_fn_with_state(
            api.auth.clone(),
            cdp_http::org_scoped,
        ))
        .with_state(api)
}

async fn list(
    State(api): State<FlowRuns>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<Value>, FlowError> {
    let targets = {
        let catalog = api.view.read();
        find_flow(&catalog, &id, &tenant)?
            .target_connection_ids
            .clone()
    };
    let runs = api.runs.read();
    let statuses: Vec<Value> = targets
        .iter()
        .map(|target| match runs.get(&id, target) {
            Some(run) => view(run),
            None => json!({
                "id": format!("{id}/{target}"),
                "flowId": id,
                "targetConnectionId": target,
                "status": "pending",
                "metrics": {"recordsDelivered": 0, "recordsFailed": 0, "recordsRetried": 0},
            }),
        })
        .collect();
    Ok(items(statuses))
}

fn iso(ms: i64) -> Value {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map_or(Value::Null, |t| Value::String(t.to_rfc3339()))
}

fn view(run: &FlowRun) -> Value {
    let status = match run.status {
        RunStatus::Pending => "pending",
        RunStatus::Success => "success",
        RunStatus::Failed => "failed",
    };
    json!({
        "id": run.key(),
        "flowId": run.flow_id,
        "targetConnectionId": run.target_connection_id,
        "destination": run.destination,
        "status": status,
        "metrics": {
            "recordsDelivered": run.records_delivered,
            "recordsFailed": run.records_failed,
            "recordsRetried": run.records_retried,
        },
        "lastError": run.last_error,
        "lastDeliveryTime": run.last_delivery_time.map_or(Value::Null, iso),
        "updatedAt": iso(run.updated_at),
    })
}
