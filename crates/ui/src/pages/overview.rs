//! `/ui`: every stream with its endpoints and a link to its live events, and every dataset
//! with its record and failed counts.

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use cdp_catalog::principal::Principal;

use crate::html::{count, esc, path_segment, table, time, Layout, Section};
use crate::UiState;

pub async fn show(State(ui): State<UiState>, Extension(who): Extension<Principal>) -> Html<String> {
    let catalog = ui.catalog.read();
    let batches = ui.lake.batches.read();
    let edge = ui.edge_url.trim_end_matches('/');

    let mut streams: Vec<_> = catalog
        .streams
        .values()
        .filter(|s| who.sees(&s.org_id, &s.sandbox))
        .collect();
    streams.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let stream_rows: Vec<String> = streams
        .iter()
        .map(|s| {
            let dataset = s.dataset_id.as_deref().map_or("—".to_string(), |d| {
                let name = catalog.datasets.get(d).map_or(d, |ds| ds.name.as_str());
                format!(
                    r#"<a href="/ui/datasets/{}">{}</a>"#,
                    path_segment(d),
                    esc(name)
                )
            });
            let auth = if s.authentication_required {
                "token required"
            } else {
                "open"
            };
            let limit = s
                .rate_limit
                .map_or("unlimited".to_string(), |r| format!("{r} req/s"));
            let id = esc(&s.id);
            format!(
                r#"<tr class="stream" data-id="{id}"><td><strong>{name}</strong><br><code class="id">{id}</code></td><td>{org}<br><span class="muted">{sandbox}</span></td><td>{dataset}</td><td>{auth}<br><span class="muted">{limit}</span></td><td class="endpoints"><code>POST {edge}/collection/batch/{id}</code><br><code>POST {edge}/collection/{id}</code></td><td><a href="/ui/streams/{link}/events">Live events</a></td></tr>"#,
                name = esc(&s.name),
                org = esc(&s.org_id),
                sandbox = esc(&s.sandbox),
                edge = esc(edge),
                link = path_segment(&s.id),
            )
        })
        .collect();

    let mut datasets: Vec<_> = catalog
        .datasets
        .values()
        .filter(|d| who.sees_org(&d.org_id))
        .collect();
    datasets.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let dataset_rows: Vec<String> = datasets
        .iter()
        .map(|d| {
            let (records, failed) = batches.dataset_totals(&d.id);
            let recent = batches.dataset_batches(&d.id);
            let last = recent.iter().map(|b| b.created_ms).max();
            let failed_class = if failed > 0 { "bad" } else { "" };
            format!(
                r#"<tr class="dataset" data-id="{id}"><td><a href="/ui/datasets/{link}"><strong>{name}</strong></a><br><code class="id">{id}</code></td><td>{org}</td><td><code>{schema}</code> v{version}</td><td class="num records">{records}</td><td class="num failed {failed_class}">{failed}</td><td class="num">{batches}</td><td>{last}</td></tr>"#,
                id = esc(&d.id),
                link = path_segment(&d.id),
                name = esc(&d.name),
                org = esc(&d.org_id),
                schema = esc(&d.schema_id),
                version = d.schema_version,
                records = count(records),
                failed = count(failed),
                batches = count(recent.len() as u64),
                last = time(last),
            )
        })
        .collect();

    let body = format!(
        r#"<h1>Streams &amp; datasets</h1>
<section><h2>Streams</h2>
<p class="hint">Send events to a stream's endpoint (see the README: <em>send events from a web page</em>); its live view shows the last ones as the edge received them.</p>
{streams}</section>
<section><h2>Datasets</h2>
<p class="hint">Records landed and records that failed, counted by the lake from its batches.</p>
{datasets}</section>"#,
        streams = table(
            "streams",
            &[
                "Stream",
                "Org / sandbox",
                "Dataset",
                "Access",
                "Endpoints",
                ""
            ],
            &stream_rows,
            "No streams yet: create one with POST /streams or `cdp streams create`."
        ),
        datasets = table(
            "datasets",
            &[
                "Dataset",
                "Org",
                "Schema",
                "Records",
                "Failed",
                "Batches",
                "Last batch"
            ],
            &dataset_rows,
            "No datasets yet: create one with POST /datasets."
        ),
    );
    Layout::page("Streams & datasets", Section::Overview).render(&body)
}
