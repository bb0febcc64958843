//! `/ui/datasets/{id}`: the seed's Dataset Activity view — record and failed counts, records
//! per minute over the last hour (or `?minutes=`), and the recent batches, each linking to its
//! failed records.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cdp_catalog::principal::Principal;
use cdp_lake::activity::activity;
use cdp_lake::BatchStatus;
use serde::Deserialize;

use super::{not_found, stat};
use crate::chart::{stacked_bars, Point, Series};
use crate::html::{count, esc, path_segment, table, time, Layout, Section};
use crate::UiState;

#[derive(Deserialize, Default)]
pub struct ActivityQuery {
    minutes: Option<u32>,
}

pub fn status_badge(status: BatchStatus) -> &'static str {
    match status {
        BatchStatus::Success => r#"<span class="badge ok">success</span>"#,
        BatchStatus::Partial => r#"<span class="badge warn">partial</span>"#,
        BatchStatus::Failed => r#"<span class="badge bad">failed</span>"#,
    }
}

pub async fn show(
    State(ui): State<UiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<ActivityQuery>, QueryRejection>,
) -> Response {
    let minutes = query
        .ok()
        .and_then(|Query(q)| q.minutes)
        .unwrap_or(60)
        .clamp(5, 24 * 60);
    let dataset = ui
        .catalog
        .read()
        .datasets
        .get(&id)
        .filter(|d| who.sees_org(&d.org_id))
        .cloned();
    let Some(dataset) = dataset else {
        return not_found(&format!("There is no dataset {id}."));
    };
    let a = activity(
        &ui.lake.batches.read(),
        &id,
        minutes,
        cdp_catalog::clock::now_ms(),
    );
    let points: Vec<Point> = a
        .buckets
        .iter()
        .map(|b| Point {
            start_ms: b.start_ms,
            values: vec![b.records, b.failed],
        })
        .collect();
    let chart = stacked_bars(
        &format!("Records per minute, last {minutes} minutes"),
        &[
            Series {
                name: "records",
                class: "ok",
            },
            Series {
                name: "failed",
                class: "bad",
            },
        ],
        &points,
    );
    let rows: Vec<String> = a
        .batches
        .iter()
        .map(|b| {
            let link = format!("/ui/batches/{}", path_segment(&b.id));
            let failed = if b.failed > 0 {
                format!(r#"<a class="bad" href="{link}">{}</a>"#, count(b.failed))
            } else {
                "0".to_string()
            };
            format!(
                r#"<tr class="batch" data-id="{id}"><td><a href="{link}"><code>{id}</code></a></td><td>{status}</td><td class="num">{records}</td><td class="num">{failed}</td><td>{created}</td><td>{updated}</td></tr>"#,
                id = esc(&b.id),
                status = status_badge(b.status),
                records = count(b.records),
                created = time(Some(b.created_ms)),
                updated = time(Some(b.updated_ms)),
            )
        })
        .collect();
    let minute_links: String = [60, 360, 1440]
        .iter()
        .map(|m| {
            let label = if *m < 120 {
                format!("{m} min")
            } else {
                format!("{} h", m / 60)
            };
            if *m == minutes {
                format!(r#"<strong>{label}</strong>"#)
            } else {
                format!(
                    r#"<a href="/ui/datasets/{}?minutes={m}">{label}</a>"#,
                    path_segment(&id)
                )
            }
        })
        .collect::<Vec<_>>()
        .join(" · ");
    let body = format!(
        r#"<p class="crumbs"><a href="/ui">Datasets</a> ›</p>
<h1>{name}</h1>
<p class="facts"><code class="id">{id}</code> · org {org} · schema <code>{schema}</code> v{version} · profile {profile}</p>
<div class="stats">{records}{failed}{batches}</div>
<section><h2>Activity</h2><p class="hint">By time of receipt at the edge. {minute_links}</p>{chart}</section>
<section><h2>Recent batches</h2><p class="hint">A batch is one request to the edge; its ID retrieves the records that failed, with the reasons.</p>{table}</section>"#,
        name = esc(&dataset.name),
        id = esc(&dataset.id),
        org = esc(&dataset.org_id),
        schema = esc(&dataset.schema_id),
        version = dataset.schema_version,
        profile = if dataset.profile_enabled { "enabled" } else { "off" },
        records = stat("record-count", "Records", &count(a.record_count), "ok"),
        failed = stat(
            "failed-count",
            "Failed",
            &count(a.failed_count),
            if a.failed_count > 0 { "bad" } else { "" }
        ),
        batches = stat(
            "batch-count",
            "Batches",
            &count(a.batch_count as u64),
            ""
        ),
        table = table(
            "batches",
            &["Batch ID", "Status", "Records", "Failed", "Received", "Last written"],
            &rows,
            "No batches yet: events sent to a stream of this dataset show here once the lake has written them."
        ),
    );
    Layout::page(&dataset.name, Section::Overview)
        .render(&body)
        .into_response()
}
