//! `/ui/flows`: every destination flow, the segments it exports, and how each of its targets
//! is delivering (as the sinks stage reports on `sinks.status`).

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use cdp_catalog::principal::Principal;
use cdp_contract::flow_run::RunStatus;

use crate::html::{count, esc, table, time, Layout, Section};
use crate::UiState;

pub async fn show(State(ui): State<UiState>, Extension(who): Extension<Principal>) -> Html<String> {
    let catalog = ui.catalog.read();
    let runs = ui.runs.runs.read();
    let mut flows: Vec<_> = catalog
        .flows
        .values()
        .filter(|f| who.sees(&f.org_id, &f.sandbox))
        .collect();
    flows.sort_by(|a, b| (&a.org_id, &a.name).cmp(&(&b.org_id, &b.name)));
    let cards: Vec<String> = flows
        .iter()
        .map(|f| {
            let segments: Vec<String> = f
                .segment_ids()
                .iter()
                .map(|s| {
                    catalog
                        .segments
                        .get(s)
                        .map_or_else(|| esc(s), |d| esc(&d.name))
                })
                .collect();
            let rows: Vec<String> = f
                .target_connection_ids
                .iter()
                .map(|t| {
                    let name = catalog
                        .target_connections
                        .get(t)
                        .map_or(t.as_str(), |c| c.name.as_str());
                    match runs.get(&f.id, t) {
                        None => format!(
                            r#"<tr class="target"><td>{}</td><td>—</td><td><span class="badge">pending</span></td><td class="num">0</td><td class="num">0</td><td class="num">0</td><td>—</td><td></td></tr>"#,
                            esc(name)
                        ),
                        Some(run) => {
                            let badge = match run.status {
                                RunStatus::Pending => r#"<span class="badge">pending</span>"#,
                                RunStatus::Success => r#"<span class="badge ok">success</span>"#,
                                RunStatus::Failed => r#"<span class="badge bad">failed</span>"#,
                            };
                            format!(
                                r#"<tr class="target"><td>{name}</td><td>{destination}</td><td>{badge}</td><td class="num">{delivered}</td><td class="num">{failed}</td><td class="num">{retried}</td><td>{last}</td><td class="error-text">{error}</td></tr>"#,
                                name = esc(name),
                                destination = esc(&run.destination),
                                delivered = count(run.records_delivered),
                                failed = count(run.records_failed),
                                retried = count(run.records_retried),
                                last = time(run.last_delivery_time),
                                error = esc(run.last_error.as_deref().unwrap_or("")),
                            )
                        }
                    }
                })
                .collect();
            format!(
                r#"<article class="flow" data-id="{id}"><h2>{name}</h2><p class="facts"><code class="id">{id}</code> · {org} / {sandbox} · {state} · segments: {segments}</p>{targets}</article>"#,
                id = esc(&f.id),
                name = esc(&f.name),
                org = esc(&f.org_id),
                sandbox = esc(&f.sandbox),
                state = esc(&f.state),
                segments = if segments.is_empty() {
                    "none yet".to_string()
                } else {
                    segments.join(", ")
                },
                targets = table(
                    "targets",
                    &["Target", "Destination", "Status", "Delivered", "Failed", "Retried", "Last delivery", "Last error"],
                    &rows,
                    "This flow has no target."
                ),
            )
        })
        .collect();
    let body = if cards.is_empty() {
        r#"<h1>Flows</h1><p class="empty">No destination flows yet: create one with POST /flows (see the README's destinations walkthrough).</p>"#.to_string()
    } else {
        format!(
            r#"<h1>Flows</h1><p class="hint">Delivery to each destination as the sinks stage reports it.</p>{}"#,
            cards.concat()
        )
    };
    Layout::page("Flows", Section::Flows).render(&body)
}
