//! The Profile and Identity read APIs, shaped after AEP's Real-Time Customer Profile access API
//! (`/access/entities`) and Identity Service (`/identity/cluster/members`,
//! `/identity/cluster/history`). Every route needs the admin bearer token and AEP's org header
//! (`x-gw-ims-org-id`; the sandbox is `x-sandbox-name`, `prod` when absent).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cdp_catalog::merge::{default_policy, merge};
use cdp_catalog::{AttributeMerge, CatalogView, IdentityGraphKind, MergePolicy};
use cdp_contract::records::{Fragment, GraphEvent, Identity};
use cdp_http::Problem;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

use super::params::{
    encode_cursor, parse_identity, with_start, EntitiesRequest, EventsRequest, ParamError,
    ProfileRequest,
};
use super::view::{Profile, ProfileView, RefusedIdentity};
use crate::http::Tenant;

/// What the handlers share.
#[derive(Clone)]
struct ProfileApi {
    view: ProfileView,
    catalog: CatalogView,
}

/// The Profile and Identity read routes, behind the admin token.
pub fn router(view: ProfileView, catalog: CatalogView, admin_token: Arc<str>) -> Router {
    Router::new()
        .route("/access/entities", get(entities))
        .route("/identity/cluster/members", get(cluster_members))
        .route("/identity/cluster/history", get(cluster_history))
        .route_layer(axum::middleware::from_fn_with_state(
            admin_token,
            cdp_http::require_admin,
        ))
        .with_state(ProfileApi { view, catalog })
}

type Pairs = Vec<(String, String)>;

fn pairs(query: Result<Query<Pairs>, QueryRejection>) -> Result<Pairs, Problem> {
    query
        .map(|Query(q)| q)
        .map_err(|e| Problem::bad_request(format!("the query string cannot be read: {e}")))
}

fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn unknown_identity(identity: &Identity, tenant: &Tenant) -> Problem {
    Problem::not_found(format!(
        "no profile has the identity {identity} in sandbox {}",
        tenant.sandbox
    ))
}

/// The profile holding `identity` in the tenant's sandbox, else a 404.
fn profile_id_of(
    api: &ProfileApi,
    tenant: &Tenant,
    identity: &Identity,
) -> Result<String, Problem> {
    api.view
        .graph()
        .profile_of(&tenant.org, &tenant.sandbox, identity)
        .map(str::to_string)
        .ok_or_else(|| unknown_identity(identity, tenant))
}

/// The profile's content, when it has arrived (and is the tenant's).
fn content<'a>(
    profiles: &'a super::view::ProfileState,
    profile_id: &str,
    tenant: &Tenant,
) -> Option<&'a Profile> {
    profiles
        .get(profile_id)
        .filter(|p| p.org_id == tenant.org && p.sandbox == tenant.sandbox)
}

/// `GET /access/entities`: a profile (`schema.name=_xdm.context.profile`) or a profile's events
/// (`schema.name=_xdm.context.experienceevent`).
async fn entities(
    State(api): State<ProfileApi>,
    tenant: Tenant,
    OriginalUri(uri): OriginalUri,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Result<Response, Problem> {
    let query = pairs(query)?;
    match EntitiesRequest::parse(&query)? {
        EntitiesRequest::Profile(req) => profile_entity(&api, &tenant, req),
        EntitiesRequest::Events(req) => events(&api, &tenant, req, uri.path(), &query),
    }
}

/// The merge policy a lookup uses.
struct Policy {
    id: String,
    attribute_merge: AttributeMerge,
    graph: IdentityGraphKind,
}

impl From<&MergePolicy> for Policy {
    fn from(m: &MergePolicy) -> Self {
        Self {
            id: m.id.clone(),
            attribute_merge: m.attribute_merge.clone(),
            graph: m.identity_graph.kind,
        }
    }
}

/// The policy asked for, else the sandbox's default, else timestamp-ordered over the graph.
fn resolve_policy(
    catalog: &CatalogView,
    tenant: &Tenant,
    requested: Option<&str>,
) -> Result<Policy, Problem> {
    let state = catalog.read();
    if let Some(id) = requested {
        return state
            .merge_policies
            .get(id)
            .filter(|m| m.org_id == tenant.org && m.sandbox == tenant.sandbox)
            .map(Policy::from)
            .ok_or_else(|| {
                ParamError::Invalid {
                    param: "mergePolicyId",
                    detail: format!(
                        "names no merge policy of sandbox {} (got {id:?})",
                        tenant.sandbox
                    ),
                }
                .into()
            });
    }
    Ok(state
        .default_merge_policy(&tenant.org, &tenant.sandbox)
        .map(Policy::from)
        .unwrap_or_else(|| Policy {
            id: "default".to_string(),
            attribute_merge: default_policy(),
            graph: IdentityGraphKind::Pdg,
        }))
}

/// `{"<ns>": [{"id": "..."}]}`.
fn identity_map(identities: &[Identity]) -> Value {
    let mut map: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for i in identities {
        map.entry(i.ns.as_str())
            .or_default()
            .push(json!({ "id": i.id }));
    }
    json!(map)
}

fn profile_entity(
    api: &ProfileApi,
    tenant: &Tenant,
    req: ProfileRequest,
) -> Result<Response, Problem> {
    let policy = resolve_policy(&api.catalog, tenant, req.merge_policy_id.as_deref())?;
    let profile_id = profile_id_of(api, tenant, &req.identity)?;
    let members = api.view.graph().members(&profile_id).cloned();
    let profiles = api.view.profiles();
    let profile = content(&profiles, &profile_id, tenant);
    let stitched = policy.graph == IdentityGraphKind::Pdg;
    // Without the graph, a profile is the fragments of the identity asked for.
    let owner = (!stitched).then_some(&req.identity);
    let fragments: Vec<&Fragment> = profile
        .map(|p| p.fragments_of(owner).collect())
        .unwrap_or_default();
    let sources: BTreeSet<&str> = fragments.iter().map(|f| f.dataset_id.as_str()).collect();
    let identities: Vec<Identity> = if stitched {
        members
            .as_ref()
            .map(|m| m.identities.clone())
            .or_else(|| profile.map(|p| p.identities.clone()))
            .unwrap_or_else(|| vec![req.identity.clone()])
    } else {
        vec![req.identity.clone()]
    };
    let mut entity = match merge(fragments.iter().copied(), &policy.attribute_merge) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    entity.insert("identityMap".into(), identity_map(&identities));
    let ups: Map<String, Value> = api
        .view
        .memberships_of(&profile_id)
        .into_iter()
        .map(|(segment, m)| {
            (
                segment,
                json!({"status": m.status.as_str(),
                       "lastQualificationTime": rfc3339(m.last_qualification_time)}),
            )
        })
        .collect();
    entity.insert("segmentMembership".into(), json!({"ups": ups}));
    let last_modified = profile
        .map(|p| p.last_modified_ms)
        .into_iter()
        .chain(members.as_ref().map(|m| m.time_ms))
        .max()
        .unwrap_or_default();
    let refused: Vec<&RefusedIdentity> = profile
        .map(|p| p.refused.iter().rev().collect())
        .unwrap_or_default();
    let body = json!({
        profile_id.clone(): {
            "entityId": profile_id,
            "mergePolicy": {"id": policy.id},
            "sources": sources,
            "entity": entity,
            "lastModifiedAt": rfc3339(last_modified),
            "eventCount": profile.map(|p| p.event_count).unwrap_or_default(),
            "flagged": profile.is_some_and(|p| p.flagged),
            "audit": {"refusedIdentities": refused},
        }
    });
    Ok(Json(body).into_response())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventsPage<'a> {
    #[serde(rename = "_page")]
    page: PageInfo,
    children: Vec<EventChild<'a>>,
    #[serde(rename = "_links")]
    links: Links,
}

#[derive(Serialize)]
struct PageInfo {
    orderby: &'static str,
    count: usize,
    next: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EventChild<'a> {
    related_entity_id: &'a str,
    entity_id: &'a str,
    timestamp: i64,
    entity: &'a RawValue,
}

#[derive(Serialize)]
struct Links {
    next: Href,
}

#[derive(Serialize)]
struct Href {
    href: String,
}

fn events(
    api: &ProfileApi,
    tenant: &Tenant,
    req: EventsRequest,
    path: &str,
    query: &[(String, String)],
) -> Result<Response, Problem> {
    let profile_id = profile_id_of(api, tenant, &req.identity)?;
    let profiles = api.view.profiles();
    let (page, next) = content(&profiles, &profile_id, tenant)
        .map(|p| p.events_page(req.start.as_ref(), req.limit))
        .unwrap_or_default();
    let next = next.as_ref().map(encode_cursor).unwrap_or_default();
    let href = if next.is_empty() {
        String::new()
    } else {
        format!("{path}?{}", with_start(query, &next))
    };
    let body = EventsPage {
        page: PageInfo {
            orderby: "-timestamp",
            count: page.len(),
            next,
        },
        children: page
            .iter()
            .map(|e| EventChild {
                related_entity_id: &profile_id,
                entity_id: &e.item_id,
                timestamp: e.timestamp_ms,
                entity: &e.entity,
            })
            .collect(),
        links: Links {
            next: Href { href },
        },
    };
    // Serialized here, while the view is read-locked: the events are borrowed from it.
    Ok(Json(&body).into_response())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Member {
    xid: String,
    namespace: Code,
    id: String,
}

#[derive(Serialize)]
struct Code {
    code: String,
}

/// `GET /identity/cluster/members?xid=<ns>:<id>` (or `namespace=&id=`): the identities of the
/// profile holding the identity.
async fn cluster_members(
    State(api): State<ProfileApi>,
    tenant: Tenant,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let identity = parse_identity(&pairs(query)?)?;
    let graph = api.view.graph();
    let (profile_id, members) = graph
        .profile_of(&tenant.org, &tenant.sandbox, &identity)
        .and_then(|id| Some((id.to_string(), graph.members(id)?.clone())))
        .ok_or_else(|| unknown_identity(&identity, &tenant))?;
    drop(graph);
    let list: Vec<Member> = members
        .identities
        .iter()
        .map(|i| Member {
            xid: i.to_string(),
            namespace: Code { code: i.ns.clone() },
            id: i.id.clone(),
        })
        .collect();
    Ok(Json(json!({
        "xid": identity.to_string(),
        "profileId": profile_id,
        "members": list,
        "lastModifiedAt": rfc3339(members.time_ms),
    })))
}

#[derive(Serialize)]
struct HistoryEntry<'a> {
    #[serde(flatten)]
    event: &'a GraphEvent,
    time: String,
}

/// `GET /identity/cluster/history?xid=...`: the changes of the identity's profile and those
/// naming the identity, newest first.
async fn cluster_history(
    State(api): State<ProfileApi>,
    tenant: Tenant,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let identity = parse_identity(&pairs(query)?)?;
    let graph = api.view.graph();
    let profile_id = graph
        .profile_of(&tenant.org, &tenant.sandbox, &identity)
        .map(str::to_string)
        .ok_or_else(|| unknown_identity(&identity, &tenant))?;
    let history: Vec<HistoryEntry> = graph
        .history(&tenant.org, &tenant.sandbox, &profile_id, &identity)
        .into_iter()
        .map(|s| HistoryEntry {
            event: &s.event,
            time: rfc3339(s.event.time_ms),
        })
        .collect();
    Ok(Json(json!({
        "xid": identity.to_string(),
        "profileId": profile_id,
        "history": history,
    })))
}
