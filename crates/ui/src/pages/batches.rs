//! `/ui/batches/{id}`: a batch's counts and its failed records — which stage refused each,
//! why (JSON pointer and message), and the payload as received.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cdp_catalog::principal::Principal;
use serde::Deserialize;

use super::datasets::status_badge;
use super::{not_found, stat};
use crate::html::{count, esc, path_segment, table, time, Layout, Section};
use crate::UiState;

const PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    start: Option<usize>,
}

pub async fn show(
    State(ui): State<UiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let start = query.ok().and_then(|Query(q)| q.start).unwrap_or(0);
    let batch = ui
        .lake
        .batches
        .batch(&id)
        .filter(|b| ui.lake.sees_batch(&who, b));
    let Some(batch) = batch else {
        return not_found(&format!(
            "There is no batch {id} (yet): the lake lists a batch once it has written its records."
        ));
    };
    let contributions = ui.lake.batches.read().contributions(&id);
    let failed = if batch.failed == 0 {
        Ok(Vec::new())
    } else {
        cdp_lake::failed::page(&ui.lake.store, &id, &contributions, start, PAGE).await
    };
    let failed_section = match failed {
        Err(e) => {
            tracing::warn!(batch = %id, error = %e, "dashboard cannot read failed records");
            format!(
                r#"<p class="error" role="alert">The failed records cannot be read now: {}</p>"#,
                esc(&e.to_string())
            )
        }
        Ok(records) => {
            let rows: Vec<String> = records
                .iter()
                .map(|r| {
                    let reasons: String = r
                        .violations
                        .iter()
                        .map(|v| {
                            let at = if v.pointer.is_empty() {
                                String::new()
                            } else {
                                format!("<code>{}</code> ", esc(&v.pointer))
                            };
                            format!("<li>{at}{}</li>", esc(&v.message))
                        })
                        .collect();
                    let payload = serde_json::to_string_pretty(&r.payload).unwrap_or_default();
                    format!(
                        r#"<tr class="failed-record"><td><code>{xaction}</code></td><td><span class="badge bad">{stage}</span></td><td>{received}</td><td><ul class="reasons">{reasons}</ul></td><td><details><summary>payload</summary><pre>{payload}</pre></details></td></tr>"#,
                        xaction = esc(&r.xaction_id),
                        stage = esc(&r.stage),
                        received = time(Some(r.received_ms)),
                        payload = esc(&payload),
                    )
                })
                .collect();
            let end = start + records.len();
            let next = if (end as u64) < batch.failed && !records.is_empty() {
                format!(
                    r#"<p><a href="/ui/batches/{}?start={end}">Next {PAGE} failed records ›</a></p>"#,
                    path_segment(&id)
                )
            } else {
                String::new()
            };
            format!(
                "{}{next}",
                table(
                    "failed",
                    &["Message", "Refused by", "Received", "Reasons", ""],
                    &rows,
                    "Every record of this batch landed."
                )
            )
        }
    };
    let datasets: Vec<String> = batch
        .dataset_ids
        .iter()
        .map(|d| {
            format!(
                r#"<a href="/ui/datasets/{}"><code>{}</code></a>"#,
                path_segment(d),
                esc(d)
            )
        })
        .collect();
    let back =
        batch
            .dataset_id
            .as_deref()
            .map_or(r#"<a href="/ui">Datasets</a> ›"#.to_string(), |d| {
                format!(
                    r#"<a href="/ui">Datasets</a> › <a href="/ui/datasets/{}">{}</a> ›"#,
                    path_segment(d),
                    esc(d)
                )
            });
    let body = format!(
        r#"<p class="crumbs">{back}</p>
<h1>Batch <code>{id}</code> {status}</h1>
<p class="facts">received {created} · last written {updated} · datasets {datasets}</p>
<div class="stats">{records}{failed}</div>
<section><h2>Failed records</h2>{failed_section}</section>"#,
        id = esc(&id),
        status = status_badge(batch.status),
        created = time(Some(batch.created_ms)),
        updated = time(Some(batch.updated_ms)),
        datasets = if datasets.is_empty() {
            "—".to_string()
        } else {
            datasets.join(", ")
        },
        records = stat("record-count", "Records", &count(batch.records), "ok"),
        failed = stat(
            "failed-count",
            "Failed",
            &count(batch.failed),
            if batch.failed > 0 { "bad" } else { "" }
        ),
    );
    Layout::page(&format!("Batch {id}"), Section::Overview)
        .render(&body)
        .into_response()
}
