//! The lake's HTTP API, mounted by the control server: datasets with their record counts and
//! activity, batches with their status, and a batch's failed records with reasons and payloads.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use cdp_catalog::principal::{Authenticator, Principal};
use cdp_catalog::CatalogView;
use cdp_contract::admin::ensure_topics;
use cdp_contract::{KafkaSettings, Topics};
use cdp_http::Problem;
use serde::{Deserialize, Serialize};

use crate::activity;
use crate::batches::{self, BatchSummary, BatchView};
use crate::failed::{self, FailedRecord};
use crate::settings::LakeSettings;
use crate::store::{self, Store};
use crate::LakeError;

/// Most failed records one page may ask for.
const MAX_PAGE: usize = 1000;

/// What the handlers share.
#[derive(Clone)]
pub struct LakeApi {
    pub catalog: CatalogView,
    pub batches: BatchView,
    pub store: Store,
}

impl LakeApi {
    /// Creates the batches topic if needed, opens the lake store and follows the batches topic.
    pub async fn start(
        kafka: &KafkaSettings,
        topics: &Topics,
        settings: &LakeSettings,
        catalog: CatalogView,
    ) -> Result<Self, LakeError> {
        ensure_topics(
            kafka,
            &[batches::topic_spec(topics, settings.batch_partitions)],
        )
        .await?;
        let store = store::open(settings)?;
        let batches = BatchView::start(kafka, topics).await?;
        Ok(Self {
            catalog,
            batches,
            store,
        })
    }
}

/// `GET /datasets/{id}`, `GET /datasets/{id}/activity`, `GET /batches/{id}`,
/// `GET /batches/{id}/failed`, behind credentials: the operator's, or an org's with `read` for
/// its own datasets and their batches (another org's are 404).
pub fn router(state: LakeApi, auth: Authenticator) -> Router {
    Router::new()
        .route("/datasets/{id}", get(dataset))
        .route("/datasets/{id}/activity", get(activity))
        .route("/batches/{id}", get(batch))
        .route("/batches/{id}/failed", get(failed_records))
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            cdp_http::org_scoped,
        ))
        .with_state(state)
}

impl LakeApi {
    /// Dataset `id`, if `who` may see it.
    fn dataset(&self, who: &Principal, id: &str) -> Option<cdp_catalog::Dataset> {
        self.catalog
            .read()
            .datasets
            .get(id)
            .filter(|d| who.sees_org(&d.org_id))
            .cloned()
    }

    /// Whether `who` may see batch `id`: the operator always; an org when every dataset the
    /// batch touched is its own (a batch of failures no dataset took is the operator's).
    pub fn sees_batch(&self, who: &Principal, batch: &BatchSummary) -> bool {
        if who.org().is_none() {
            return true;
        }
        let catalog = self.catalog.read();
        !batch.dataset_ids.is_empty()
            && batch.dataset_ids.iter().all(|id| {
                catalog
                    .datasets
                    .get(id)
                    .is_some_and(|d| who.sees_org(&d.org_id))
            })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DatasetView {
    #[serde(flatten)]
    dataset: cdp_catalog::Dataset,
    record_count: u64,
    failed_count: u64,
    batch_count: usize,
    last_batch: Option<BatchSummary>,
}

fn unknown_dataset(id: &str) -> Response {
    Problem::not_found(format!("dataset {id} does not exist")).into_response()
}

async fn dataset(
    State(api): State<LakeApi>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    let Some(ds) = api.dataset(&who, &id) else {
        return unknown_dataset(&id);
    };
    let state = api.batches.read();
    let (records, failed) = state.dataset_totals(&id);
    let batches = state.dataset_batches(&id);
    let last_batch = batches
        .iter()
        .max_by_key(|b| (b.created_ms, b.updated_ms))
        .cloned();
    Json(DatasetView {
        dataset: ds,
        record_count: records,
        failed_count: failed,
        batch_count: batches.len(),
        last_batch,
    })
    .into_response()
}

#[derive(Deserialize)]
struct ActivityQuery {
    minutes: Option<u32>,
}

async fn activity(
    State(api): State<LakeApi>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<ActivityQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return Problem::bad_request("minutes must be a positive integer").into_response();
    };
    let minutes = q.minutes.unwrap_or(60).clamp(1, 7 * 24 * 60);
    if api.dataset(&who, &id).is_none() {
        return unknown_dataset(&id);
    }
    let now = cdp_catalog::clock::now_ms();
    Json(activity::activity(&api.batches.read(), &id, minutes, now)).into_response()
}

fn unknown_batch(id: &str) -> Response {
    Problem::not_found(format!("batch {id} does not exist")).into_response()
}

async fn batch(
    State(api): State<LakeApi>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    match api.batches.batch(&id) {
        Some(b) if api.sees_batch(&who, &b) => Json(b).into_response(),
        _ => unknown_batch(&id),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    start: Option<usize>,
    limit: Option<usize>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FailedPage {
    batch_id: String,
    start: usize,
    limit: usize,
    total: u64,
    /// The `start` of the next page, `null` on the last one.
    next: Option<usize>,
    records: Vec<FailedRecord>,
}

async fn failed_records(
    State(api): State<LakeApi>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return Problem::bad_request("start and limit must be non-negative integers")
            .into_response();
    };
    let start = q.start.unwrap_or(0);
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    if !api
        .batches
        .batch(&id)
        .is_some_and(|b| api.sees_batch(&who, &b))
    {
        return unknown_batch(&id);
    }
    let contributions = api.batches.read().contributions(&id);
    if contributions.is_empty() {
        return unknown_batch(&id);
    }
    let total: u64 = contributions.iter().map(|c| c.failed).sum();
    match failed::page(&api.store, &id, &contributions, start, limit).await {
        Ok(records) => {
            let end = start + records.len();
            Json(FailedPage {
                batch_id: id,
                start,
                limit,
                total,
                next: (!records.is_empty() && (end as u64) < total).then_some(end),
                records,
            })
            .into_response()
        }
        Err(e) => {
            tracing::warn!(batch = id, error = %e, "cannot read failed records");
            Problem::unavailable(format!("failed records of batch {id} cannot be read: {e}"))
                .into_response()
        }
    }
}
