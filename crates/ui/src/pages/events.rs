//! `/ui/streams/{id}/events`: the seed's debugger — the last events of a stream as the edge
//! received them, accepted or refused (by the edge, or later by validation) with the reasons.
//! The page reloads itself every two seconds until paused.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cdp_catalog::principal::Principal;
use serde::Deserialize;

use super::not_found;
use crate::html::{esc, path_segment, table, time, Layout, Section};
use crate::tail::{tail, Kind, Tailed};
use crate::UiState;

/// Events shown.
const SHOWN: usize = 50;
/// Records read from the end of each partition of each topic.
const PER_PARTITION: i64 = 200;

#[derive(Deserialize, Default)]
pub struct LiveQuery {
    /// `0` pauses the reload.
    refresh: Option<u32>,
}

pub async fn show(
    State(ui): State<UiState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    query: Result<Query<LiveQuery>, QueryRejection>,
) -> Response {
    let refresh = query
        .ok()
        .and_then(|Query(q)| q.refresh)
        .unwrap_or(2)
        .min(60);
    let stream = ui
        .catalog
        .read()
        .streams
        .get(&id)
        .filter(|s| who.sees(&s.org_id, &s.sandbox))
        .cloned();
    let Some(stream) = stream else {
        return not_found(&format!("There is no stream {id}."));
    };
    let (raw_topic, error_topic) = (ui.topics.ingest_raw(), ui.topics.events_error());
    let raw = tail(&ui.kafka, &raw_topic, Kind::Raw, &id, PER_PARTITION);
    let error = tail(&ui.kafka, &error_topic, Kind::Error, &id, PER_PARTITION);
    let (raw, error) = tokio::join!(raw, error);
    let mut problems = Vec::new();
    let mut events: Vec<Tailed> = Vec::new();
    for (topic, result) in [("raw", raw), ("error", error)] {
        match result {
            Ok(found) => events.extend(found),
            Err(e) => {
                tracing::warn!(stream = %id, topic, error = %e, "dashboard cannot read the topic's tail");
                problems.push(format!(
                    r#"<p class="error" role="alert">The {topic} topic cannot be read now: {}</p>"#,
                    esc(&e.to_string())
                ));
            }
        }
    }
    // Accepted and later failed records share an xaction id; newest first, refusals before
    // their acceptance when they tie.
    events.sort_by_key(|t| {
        std::cmp::Reverse((t.received_ms, t.refusal.is_some(), t.xaction_id.clone()))
    });
    events.truncate(SHOWN);
    let rows: Vec<String> = events
        .iter()
        .map(|t| {
            let (status, reasons) = match &t.refusal {
                None => (r#"<span class="badge ok">accepted</span>"#.to_string(), String::new()),
                Some(r) => (
                    format!(r#"<span class="badge bad">refused · {}</span>"#, esc(&r.stage)),
                    format!(
                        r#"<ul class="reasons">{}</ul>"#,
                        r.reasons
                            .iter()
                            .map(|m| format!("<li>{}</li>", esc(m)))
                            .collect::<String>()
                    ),
                ),
            };
            format!(
                r#"<tr class="event"><td>{received}</td><td>{status}</td><td><span class="summary">{summary}</span><br><code>{xaction}</code><br><a class="muted" href="/ui/batches/{batch_link}">batch {batch}</a></td><td>{reasons}<details><summary>payload</summary><pre>{payload}</pre></details></td></tr>"#,
                received = time(Some(t.received_ms)),
                summary = esc(&t.summary),
                xaction = esc(&t.xaction_id),
                batch_link = path_segment(&t.batch_id),
                batch = esc(&t.batch_id),
                payload = esc(&t.payload),
            )
        })
        .collect();
    let link = path_segment(&id);
    let control = if refresh == 0 {
        format!(r#"Paused. <a href="/ui/streams/{link}/events">Resume</a>"#)
    } else {
        format!(
            r#"Reloads every {refresh} s. <a href="/ui/streams/{link}/events?refresh=0">Pause</a>"#
        )
    };
    let body = format!(
        r#"<p class="crumbs"><a href="/ui">Streams</a> ›</p>
<h1>Live events · {name}</h1>
<p class="facts"><code class="id">{id}</code> · {org} / {sandbox} · {control}</p>
{problems}
<section>{table}</section>"#,
        name = esc(&stream.name),
        id = esc(&id),
        org = esc(&stream.org_id),
        sandbox = esc(&stream.sandbox),
        problems = problems.concat(),
        table = table(
            "events",
            &["Received", "Status", "Message", "Reasons and payload"],
            &rows,
            "No events from this stream among the topics' latest records."
        ),
    );
    let title = format!("Live events · {}", stream.name);
    let layout = Layout::page(&title, Section::Overview);
    let layout = if refresh > 0 {
        layout.refresh(refresh)
    } else {
        layout
    };
    layout.render(&body).into_response()
}
