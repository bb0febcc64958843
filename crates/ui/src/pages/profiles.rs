//! `/ui/profiles`: one profile, looked up by one of its identities (namespace and value, in an
//! org's sandbox): its identities and the history of its identity graph, its attributes (the
//! profile records it holds, by dataset), its recent events, and its segments, each with the
//! explain of why it is (or is not) a member now. Everything is asked of the stages that hold
//! it, through control's lookups, as the Profile and Identity APIs do.

use axum::extract::{Query, State};
use axum::response::Html;
use axum::Extension;
use cdp_catalog::principal::Principal;
use cdp_contract::records::{GraphEvent, Identity, Status};
use cdp_control::http::Tenant;
use cdp_control::profiles::LookupError;
use serde::Deserialize;
use serde_json::Value;

use crate::html::{esc, path_segment, table, time, Layout, Section};
use crate::UiState;

/// How many of the newest events the page lists.
const EVENTS: usize = 20;

/// The form's fields; all optional, so the bare page is the form.
#[derive(Debug, Default, Deserialize)]
pub struct Lookup {
    org: Option<String>,
    sandbox: Option<String>,
    ns: Option<String>,
    id: Option<String>,
}

fn filled(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub async fn show(
    State(ui): State<UiState>,
    Extension(who): Extension<Principal>,
    Query(q): Query<Lookup>,
) -> Html<String> {
    // An org's key sees its own org only: the field is fixed to it.
    let org = who
        .org()
        .map(str::to_string)
        .or_else(|| filled(&q.org).map(str::to_string));
    let sandbox = filled(&q.sandbox).unwrap_or("prod").to_string();
    let form = form(&who, org.as_deref(), &sandbox, &q);
    let result = match (org, filled(&q.ns), filled(&q.id)) {
        (_, None, _) | (_, _, None) => String::new(),
        (None, _, _) => notice("Give the org whose profile to look up."),
        (Some(org), Some(_), Some(_)) if !who.sees(&org, &sandbox) => notice(&format!(
            "Your credential does not reach sandbox {sandbox} of org {org}."
        )),
        (Some(org), Some(ns), Some(id)) => {
            profile(&ui, Tenant { org, sandbox }, Identity::new(ns, id)).await
        }
    };
    Layout::page("Profiles", Section::Profiles).render(&format!(
        r#"<h1>Profiles</h1><p class="hint">Look a profile up by one of its identities.</p>{form}{result}"#
    ))
}

fn notice(text: &str) -> String {
    format!(
        r#"<p class="empty" role="status" id="lookup-result">{}</p>"#,
        esc(text)
    )
}

fn form(who: &Principal, org: Option<&str>, sandbox: &str, q: &Lookup) -> String {
    let fixed = if who.org().is_some() { " readonly" } else { "" };
    let value = |v: Option<&str>| esc(v.unwrap_or_default());
    format!(
        r#"<form class="lookup" method="get" action="/ui/profiles">
<label>Org <input name="org" value="{org}" placeholder="ACME@AdobeOrg" required{fixed}></label>
<label>Sandbox <input name="sandbox" value="{sandbox}" required></label>
<label>Namespace <input name="ns" value="{ns}" placeholder="ECID, CRMID, Email…" required></label>
<label>Identity <input name="id" value="{id}" required></label>
<button type="submit">Look up</button>
</form>"#,
        org = value(org),
        sandbox = esc(sandbox),
        ns = value(filled(&q.ns)),
        id = value(filled(&q.id)),
    )
}

fn failed(what: &str, e: &LookupError) -> String {
    notice(&format!("Cannot read {what}: {e}"))
}

async fn profile(ui: &UiState, tenant: Tenant, identity: Identity) -> String {
    let (org, sandbox) = (tenant.org.as_str(), tenant.sandbox.as_str());
    let found = match ui.profiles.identity(org, sandbox, &identity).await {
        Ok(Some(found)) => found,
        Ok(None) => {
            return notice(&format!(
                "No profile has the identity {identity} in sandbox {sandbox} of org {org}."
            ))
        }
        Err(e) => return failed("the identity graph", &e),
    };
    let id = found.profile_id.as_str();
    let (history, held, events) = tokio::join!(
        ui.profiles.history(org, sandbox, &identity),
        ui.profiles.profile(org, sandbox, id),
        ui.profiles.events(org, sandbox, id, None, EVENTS),
    );
    let identities: String = found
        .identities
        .iter()
        .map(|i| {
            format!(
                r#"<li class="identity"><a href="/ui/profiles?org={o}&amp;sandbox={s}&amp;ns={n}&amp;id={v}"><span class="ns">{ns}</span> {value}</a></li>"#,
                o = path_segment(org),
                s = path_segment(sandbox),
                n = path_segment(&i.ns),
                v = path_segment(&i.id),
                ns = esc(&i.ns),
                value = esc(&i.id),
            )
        })
        .collect();
    let history = match history {
        Ok(h) => graph_history(h.map(|h| h.history).unwrap_or_default()),
        Err(e) => failed("the graph's history", &e),
    };
    // Known to the graph but its content not arrived yet: nothing held.
    let held = match held {
        Ok(p) => p.filter(|p| p.org_id == org && p.sandbox == sandbox),
        Err(e) => {
            return format!(
                "{}{}",
                header(id, org, sandbox, None),
                failed("the profile", &e)
            )
        }
    };
    let attributes = held.as_ref().map_or_else(
        || notice("Nothing held for this profile yet."),
        |p| fragments(ui, &p.fragments),
    );
    let events = match events {
        Ok(page) => recent_events(page.map(|p| p.events).unwrap_or_default()),
        Err(e) => failed("the events", &e),
    };
    let segments = match &held {
        Some(p) => memberships(ui, &tenant, &identity, &p.memberships).await,
        None => notice("No segments yet."),
    };
    format!(
        r#"{header}<section><h2>Identities</h2><ul class="identities">{identities}</ul></section>
<section><h2>Identity graph history</h2>{history}</section>
<section><h2>Attributes</h2>{attributes}</section>
<section><h2>Recent events</h2>{events}</section>
<section><h2>Segments</h2>{segments}</section>"#,
        header = header(id, org, sandbox, held.as_ref()),
    )
}

fn header(
    id: &str,
    org: &str,
    sandbox: &str,
    held: Option<&cdp_contract::records::lookup::ProfileLookup>,
) -> String {
    let facts = held.map_or(String::new(), |p| {
        format!(
            " · {} events · last changed {}",
            p.event_count,
            time(Some(p.last_modified_ms))
        )
    });
    format!(
        r#"<h2 id="lookup-result">Profile <code id="profile-id">{}</code></h2><p class="facts">{} / {}{facts}</p>"#,
        esc(id),
        esc(org),
        esc(sandbox)
    )
}

fn graph_history(history: Vec<GraphEvent>) -> String {
    let rows: Vec<String> = history
        .iter()
        .map(|e| {
            let mut change = serde_json::to_value(&e.change).unwrap_or(Value::Null);
            let op = change
                .as_object_mut()
                .and_then(|m| m.remove("op"))
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            format!(
                r#"<tr class="change"><td>{}</td><td class="op">{}</td><td><code>{}</code></td></tr>"#,
                time(Some(e.time_ms)),
                esc(&op),
                esc(&change.to_string())
            )
        })
        .collect();
    table(
        "history",
        &["When", "Change", "Details"],
        &rows,
        "No graph changes recorded.",
    )
}

fn fragments(ui: &UiState, fragments: &[cdp_contract::records::Fragment]) -> String {
    let catalog = ui.catalog.read();
    let rows: Vec<String> = fragments
        .iter()
        .map(|f| {
            let dataset = catalog
                .datasets
                .get(&f.dataset_id)
                .map_or(f.dataset_id.clone(), |d| d.name.clone());
            let attributes =
                serde_json::to_string_pretty(&f.attributes).unwrap_or_else(|_| "{}".into());
            format!(
                r#"<tr class="fragment"><td>{}</td><td>{}</td><td>{}</td><td><pre>{}</pre></td></tr>"#,
                esc(&dataset),
                esc(&f.owner.to_string()),
                time(Some(f.timestamp_ms)),
                esc(&attributes)
            )
        })
        .collect();
    table(
        "fragments",
        &["Dataset", "Identity", "Updated", "Attributes"],
        &rows,
        "No profile records: this profile has events only.",
    )
}

fn recent_events(events: Vec<cdp_contract::records::lookup::EventEntry>) -> String {
    let rows: Vec<String> = events
        .iter()
        .map(|e| {
            let kind = e.entity["eventType"].as_str().unwrap_or("—");
            format!(
                r#"<tr class="event"><td>{}</td><td class="type">{}</td><td><code>{}</code></td></tr>"#,
                time(Some(e.timestamp_ms)),
                esc(kind),
                esc(&e.id)
            )
        })
        .collect();
    table(
        "events",
        &["When", "Type", "Event id"],
        &rows,
        "No events held.",
    )
}

async fn memberships(
    ui: &UiState,
    tenant: &Tenant,
    identity: &Identity,
    memberships: &[cdp_contract::records::lookup::MembershipEntry],
) -> String {
    let mut rows = Vec::with_capacity(memberships.len());
    for m in memberships {
        let name = ui
            .catalog
            .read()
            .segments
            .get(&m.segment_id)
            .map_or(m.segment_id.clone(), |d| d.name.clone());
        let status = match m.status {
            Status::Exited => "exited",
            _ => "realized",
        };
        let explain = match cdp_control::segments::explain_for(
            &ui.catalog,
            &ui.profiles,
            tenant,
            &m.segment_id,
            identity,
        )
        .await
        {
            Ok(view) => view.explanation,
            Err(e) => format!("cannot explain: {e}"),
        };
        rows.push(format!(
            r#"<tr class="membership" data-id="{id}"><td class="segment">{name}</td><td class="status">{status}</td><td>{since}</td><td class="explain">{explain}</td></tr>"#,
            id = esc(&m.segment_id),
            name = esc(&name),
            since = time(Some(m.last_qualification_time)),
            explain = esc(&explain),
        ));
    }
    table(
        "memberships",
        &["Segment", "Status", "Since", "Why, evaluated now"],
        &rows,
        "In no segment.",
    )
}
