//! `/ui/segments`: every segment definition with its member count and its entries and exits
//! per minute over the last hour, as the profile engine counts them (asked of its instances).

use axum::extract::State;
use axum::response::Html;
use axum::Extension;
use cdp_catalog::principal::Principal;

use super::stat;
use crate::chart::{stacked_bars, Point, Series};
use crate::html::{count, esc, Layout, Section};
use crate::UiState;

const MINUTE: i64 = 60_000;
const MINUTES: i64 = 60;

pub async fn show(State(ui): State<UiState>, Extension(who): Extension<Principal>) -> Html<String> {
    let tallies = ui.profiles.tallies().await;
    let mut definitions: Vec<_> = ui
        .catalog
        .read()
        .segments
        .values()
        .filter(|d| who.sees(&d.org_id, &d.sandbox))
        .cloned()
        .collect();
    definitions
        .sort_by(|a, b| (&a.org_id, &a.sandbox, &a.name).cmp(&(&b.org_id, &b.sandbox, &b.name)));
    let now = cdp_catalog::clock::now_ms();
    let to = (now.div_euclid(MINUTE) + 1) * MINUTE;
    let from = to - MINUTES * MINUTE;
    let cards: Vec<String> = definitions
        .iter()
        .map(|d| {
            let tally = tallies.get(&d.id);
            let points: Vec<Point> = (0..MINUTES)
                .map(|i| {
                    let start = from + i * MINUTE;
                    let (entries, exits) = tally
                        .and_then(|t| t.per_minute.get(&start))
                        .copied()
                        .unwrap_or_default();
                    Point {
                        start_ms: start,
                        values: vec![entries, exits],
                    }
                })
                .collect();
            let (entries, exits) = points
                .iter()
                .fold((0, 0), |(e, x), p| (e + p.values[0], x + p.values[1]));
            let kind = if d.streaming {
                format!("streaming · {}", esc(&d.classification))
            } else {
                format!("batch · {}", esc(&d.classification))
            };
            format!(
                r#"<article class="segment" data-id="{id}"><h2>{name}</h2>
<p class="facts"><code class="id">{id}</code> · {org} / {sandbox} · {kind}</p>
<pre class="pql">{expression}</pre>
<div class="stats">{members}{entries}{exits}</div>
{chart}</article>"#,
                id = esc(&d.id),
                name = esc(&d.name),
                org = esc(&d.org_id),
                sandbox = esc(&d.sandbox),
                expression = esc(&d.expression),
                members = stat(
                    &format!("members-{}", esc(&d.id)),
                    "Members",
                    &count(tally.map_or(0, |t| t.members)),
                    "ok"
                ),
                entries = stat("", "Entries, last hour", &count(entries), ""),
                exits = stat("", "Exits, last hour", &count(exits), ""),
                chart = stacked_bars(
                    &format!("Entries and exits of {} per minute", d.name),
                    &[
                        Series {
                            name: "entries",
                            class: "ok",
                        },
                        Series {
                            name: "exits",
                            class: "bad",
                        },
                    ],
                    &points,
                ),
            )
        })
        .collect();
    let body = if cards.is_empty() {
        r#"<h1>Segments</h1><p class="empty">No segment definitions yet: create one with POST /segment/definitions.</p>"#.to_string()
    } else {
        format!(
            r#"<h1>Segments</h1><p class="hint">Members now, and who entered or exited in each minute of the last hour.</p>{}"#,
            cards.concat()
        )
    };
    Layout::page("Segments", Section::Segments).render(&body)
}
