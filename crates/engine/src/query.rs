//! The engine's query API: what an instance holds of a profile, read from its own state (no
//! copy elsewhere), for control's Profile API and explanations. A profile lives in the
//! partition of `profile.resolved` its id hashes to ([`cdp_contract::partition::for_key`]);
//! an instance answers only for the partitions it holds, restored, and says so with 421
//! otherwise (control then asks the partition's owner again, see
//! [`cdp_contract::endpoints`]). Behind the operator's token: these are internal routes.
//!
//! - `GET /internal/engine/profile?org=&sandbox=&id=` → [`ProfileLookup`];
//! - `GET /internal/engine/events?org=&sandbox=&id=[&start=<ms>:<id>][&limit=]` →
//!   [`EventsPage`], newest first;
//! - `GET /internal/engine/tallies?partitions=0,2` → [`Tallies`] of those partitions, summed
//!   (each segment's members and entries and exits per minute, [`crate::tally`]).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cdp_contract::records::lookup::{
    EventEntry, EventsPage, MembershipEntry, ProfileLookup, RefusedAt, Tallies,
};
use cdp_contract::records::Status;
use cdp_http::Problem;
use cdp_stage::StateReader;
use serde::Deserialize;

use crate::keys;
use crate::record::ProfileRecord;

/// The most events one page holds.
pub const MAX_PAGE: usize = 1_000;

#[derive(Clone)]
pub struct QueryState {
    pub reader: StateReader,
    /// Partitions of `profile.resolved`.
    pub partitions: i32,
}

/// The routes, behind `token` (bearer).
pub fn router(state: QueryState, token: Arc<str>) -> Router {
    Router::new()
        .route("/internal/engine/profile", get(profile))
        .route("/internal/engine/events", get(events))
        .route("/internal/engine/tallies", get(tallies))
        .route_layer(axum::middleware::from_fn_with_state(
            token,
            cdp_http::require_admin,
        ))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct ProfileKey {
    org: String,
    sandbox: String,
    id: String,
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    org: String,
    sandbox: String,
    id: String,
    start: Option<String>,
    limit: Option<usize>,
}

/// The profile's record, if this instance holds its partition.
fn load(state: &QueryState, org: &str, sandbox: &str, id: &str) -> Result<ProfileRecord, Problem> {
    let partition = cdp_contract::partition::for_key(id.as_bytes(), state.partitions);
    if !state.reader.holds(partition) {
        return Err(Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!("this instance does not hold partition {partition} (of {id}) now"),
        ));
    }
    let stored = state
        .reader
        .get(partition, &keys::profile(org, sandbox, id))
        .map_err(|e| Problem::unavailable(format!("the profile cannot be read now: {e}")))?
        .ok_or_else(|| Problem::not_found(format!("no profile {id} in sandbox {sandbox}")))?;
    ProfileRecord::decode(&stored).map_err(|e| {
        tracing::error!(profile = id, error = %e, "a stored profile cannot be read");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    })
}

async fn profile(State(state): State<QueryState>, Query(q): Query<ProfileKey>) -> Response {
    let record = match load(&state, &q.org, &q.sandbox, &q.id) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let mut memberships: Vec<MembershipEntry> = record
        .members
        .iter()
        .map(|(segment, since)| MembershipEntry {
            segment_id: segment.clone(),
            status: Status::Realized,
            last_qualification_time: *since,
        })
        .collect();
    memberships.extend(
        record
            .exited
            .iter()
            .map(|(segment, since, _)| MembershipEntry {
                segment_id: segment.clone(),
                status: Status::Exited,
                last_qualification_time: *since,
            }),
    );
    let lookup = ProfileLookup {
        profile_id: q.id,
        event_count: record.event_count(),
        org_id: record.org,
        sandbox: record.sandbox,
        identities: record.identities,
        fragments: record.fragments,
        flagged: record.flagged,
        events_not_stored: record.events_not_stored,
        refused: record
            .refused
            .into_iter()
            .map(|(refused, time_ms)| RefusedAt { refused, time_ms })
            .collect(),
        memberships,
        last_modified_ms: record.modified_ms,
    };
    Json(lookup).into_response()
}

/// `<timestamp ms>:<id>`.
fn parse_start(start: &str) -> Option<(i64, String)> {
    let (ts, id) = start.split_once(':')?;
    Some((ts.parse().ok()?, id.to_string()))
}

async fn events(State(state): State<QueryState>, Query(q): Query<EventsQuery>) -> Response {
    let record = match load(&state, &q.org, &q.sandbox, &q.id) {
        Ok(r) => r,
        Err(p) => return p.into_response(),
    };
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let before = match q.start.as_deref().map(parse_start) {
        None => None,
        Some(Some(b)) => Some(b),
        Some(None) => {
            return Problem::bad_request("start must be <timestamp ms>:<event id>").into_response()
        }
    };
    let newest_first = record.events.iter().rev().filter(|e| {
        before
            .as_ref()
            .is_none_or(|(ts, id)| (e.ts, e.id.as_str()) < (*ts, id.as_str()))
    });
    let mut page: Vec<EventEntry> = Vec::with_capacity(limit.min(record.events.len()));
    let mut more = false;
    for e in newest_first {
        if page.len() == limit {
            more = true;
            break;
        }
        page.push(EventEntry {
            id: e.id.clone(),
            timestamp_ms: e.ts,
            entity: record.entity(e),
        });
    }
    let next = if more {
        page.last().map(|e| (e.timestamp_ms, e.id.clone()))
    } else {
        None
    };
    Json(EventsPage { events: page, next }).into_response()
}

#[derive(Debug, Deserialize)]
struct TalliesQuery {
    partitions: String,
}

async fn tallies(State(state): State<QueryState>, Query(q): Query<TalliesQuery>) -> Response {
    let mut out = Tallies::new();
    for p in q.partitions.split(',').filter(|p| !p.trim().is_empty()) {
        let Ok(partition) = p.trim().parse::<i32>() else {
            return Problem::bad_request(
                "partitions is a comma-separated list of partition numbers",
            )
            .into_response();
        };
        if !state.reader.holds(partition) {
            return Problem::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!("this instance does not hold partition {partition} now"),
            )
            .into_response();
        }
        let entries = match state.reader.scan(partition, crate::tally::TALLIES) {
            Ok(e) => e,
            Err(e) => {
                return Problem::unavailable(format!("the tallies cannot be read now: {e}"))
                    .into_response()
            }
        };
        for (key, value) in entries {
            let Ok(segment) = String::from_utf8(key[1..].to_vec()) else {
                continue;
            };
            match crate::tally::decode(&value) {
                Ok(t) => out.entry(segment).or_default().add(&t),
                Err(e) => {
                    tracing::warn!(partition, segment, error = %e, "a segment tally cannot be read")
                }
            }
        }
    }
    Json(out).into_response()
}
