//! The Profile and Identity read APIs, shaped after AEP's Real-Time Customer Profile access API
//! (`/access/entities`) and Identity Service (`/identity/cluster/members`,
//! `/identity/cluster/history`). Every route needs the admin bearer token and AEP's org header
//! (`x-gw-ims-org-id`; the sandbox is `x-sandbox-name`, `prod` when absent). Each answer is
//! put together from the identity owner's and the engine's (see [`super::lookup`]).

use cdp_catalog::principal::Authenticator;
use std::collections::{BTreeMap, BTreeSet};

use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cdp_catalog::merge::{default_policy, merge};
use cdp_catalog::{AttributeMerge, CatalogView, IdentityGraphKind, MergePolicy};
use cdp_contract::records::lookup::{IdentityLookup, RefusedAt};
use cdp_contract::records::{Fragment, GraphEvent, Identity};
use cdp_http::Problem;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::lookup::{LookupError, Lookups};
use super::params::{
    encode_cursor, parse_identity, with_start, EntitiesRequest, EventsRequest, ParamError,
    ProfileRequest,
};
use crate::http::Tenant;

/// What the handlers share.
#[derive(Clone)]
struct ProfileApi {
    lookups: Lookups,
    catalog: CatalogView,
}

/// The Profile and Identity read routes, behind the admin token.
pub fn router(lookups: Lookups, catalog: CatalogView, auth: Authenticator) -> Router {
    Router::new()
        .route("/access/entities", get(entities))
        .route("/identity/cluster/members", get(cluster_members))
        .route("/identity/cluster/history", get(cluster_history))
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            cdp_http::org_scoped,
        ))
        .with_state(ProfileApi { lookups, catalog })
}

/// A lookup that could not be answered: 503 with `Retry-After` while no instance answers for
/// the profile's partition, 502 when one failed.
pub fn lookup_failed(e: LookupError) -> Response {
    tracing::warn!(error = %e, "a profile lookup failed");
    let retry = matches!(e, LookupError::Unavailable { .. });
    let status = if retry {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_GATEWAY
    };
    let mut resp = Problem::new(status, e.to_string()).into_response();
    if retry {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
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

fn unknown_identity(identity: &Identity, tenant: &Tenant) -> Response {
    Problem::not_found(format!(
        "no profile has the identity {identity} in sandbox {}",
        tenant.sandbox
    ))
    .into_response()
}

/// The profile holding `identity` in the tenant's sandbox, else the response to give.
async fn profile_of(
    api: &ProfileApi,
    tenant: &Tenant,
    identity: &Identity,
) -> Result<IdentityLookup, Response> {
    match api
        .lookups
        .identity(&tenant.org, &tenant.sandbox, identity)
        .await
    {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(unknown_identity(identity, tenant)),
        Err(e) => Err(lookup_failed(e)),
    }
}

/// `GET /access/entities`: a profile (`schema.name=_xdm.context.profile`) or a profile's events
/// (`schema.name=_xdm.context.experienceevent`).
async fn entities(
    State(api): State<ProfileApi>,
    tenant: Tenant,
    OriginalUri(uri): OriginalUri,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Response {
    let query = match pairs(query) {
        Ok(q) => q,
        Err(p) => return p.into_response(),
    };
    let request = match EntitiesRequest::parse(&query) {
        Ok(r) => r,
        Err(e) => return Problem::from(e).into_response(),
    };
    let answer = match request {
        EntitiesRequest::Profile(req) => profile_entity(&api, &tenant, req).await,
        EntitiesRequest::Events(req) => events(&api, &tenant, req, uri.path(), &query).await,
    };
    answer.unwrap_or_else(|r| r)
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

async fn profile_entity(
    api: &ProfileApi,
    tenant: &Tenant,
    req: ProfileRequest,
) -> Result<Response, Response> {
    let policy = resolve_policy(&api.catalog, tenant, req.merge_policy_id.as_deref())
        .map_err(IntoResponse::into_response)?;
    let members = profile_of(api, tenant, &req.identity).await?;
    let profile_id = members.profile_id.clone();
    // Known to the graph, its content not arrived yet: it shows no attributes and no events.
    let profile = api
        .lookups
        .profile(&tenant.org, &tenant.sandbox, &profile_id)
        .await
        .map_err(lookup_failed)?
        .filter(|p| p.org_id == tenant.org && p.sandbox == tenant.sandbox);
    let stitched = policy.graph == IdentityGraphKind::Pdg;
    // Without the graph, a profile is the fragments of the identity asked for.
    let owner = (!stitched).then_some(&req.identity);
    let fragments: Vec<&Fragment> = profile
        .iter()
        .flat_map(|p| p.fragments.iter())
        .filter(|f| owner.is_none_or(|o| f.owner == *o))
        .collect();
    let sources: BTreeSet<&str> = fragments.iter().map(|f| f.dataset_id.as_str()).collect();
    let identities: Vec<Identity> = if stitched {
        members.identities.clone()
    } else {
        vec![req.identity.clone()]
    };
    let mut entity = match merge(fragments.iter().copied(), &policy.attribute_merge) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    entity.insert("identityMap".into(), identity_map(&identities));
    let ups: Map<String, Value> = profile
        .iter()
        .flat_map(|p| p.memberships.iter())
        .map(|m| {
            (
                m.segment_id.clone(),
                json!({"status": m.status.as_str(),
                       "lastQualificationTime": rfc3339(m.last_qualification_time)}),
            )
        })
        .collect();
    entity.insert("segmentMembership".into(), json!({"ups": ups}));
    let last_modified = profile
        .as_ref()
        .map(|p| p.last_modified_ms)
        .into_iter()
        .chain([members.last_modified_ms])
        .max()
        .unwrap_or_default();
    let refused: Vec<&RefusedAt> = profile
        .iter()
        .flat_map(|p| p.refused.iter().rev())
        .collect();
    let body = json!({
        profile_id.clone(): {
            "entityId": profile_id,
            "mergePolicy": {"id": policy.id},
            "sources": sources,
            "entity": entity,
            "lastModifiedAt": rfc3339(last_modified),
            "eventCount": profile.as_ref().map(|p| p.event_count).unwrap_or_default(),
            "flagged": profile.as_ref().is_some_and(|p| p.flagged),
            "audit": {
                "refusedIdentities": refused,
                "eventsNotStored": profile.as_ref().map(|p| p.events_not_stored).unwrap_or_default(),
            },
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
    entity: &'a Value,
}

#[derive(Serialize)]
struct Links {
    next: Href,
}

#[derive(Serialize)]
struct Href {
    href: String,
}

async fn events(
    api: &ProfileApi,
    tenant: &Tenant,
    req: EventsRequest,
    path: &str,
    query: &[(String, String)],
) -> Result<Response, Response> {
    let profile_id = profile_of(api, tenant, &req.identity).await?.profile_id;
    let page = api
        .lookups
        .events(
            &tenant.org,
            &tenant.sandbox,
            &profile_id,
            req.start.as_ref(),
            req.limit,
        )
        .await
        .map_err(lookup_failed)?
        .unwrap_or_else(|| cdp_contract::records::lookup::EventsPage {
            events: Vec::new(),
            next: None,
        });
    let next = page.next.as_ref().map(encode_cursor).unwrap_or_default();
    let href = if next.is_empty() {
        String::new()
    } else {
        format!("{path}?{}", with_start(query, &next))
    };
    let body = EventsPage {
        page: PageInfo {
            orderby: "-timestamp",
            count: page.events.len(),
            next,
        },
        children: page
            .events
            .iter()
            .map(|e| EventChild {
                related_entity_id: &profile_id,
                entity_id: &e.id,
                timestamp: e.timestamp_ms,
                entity: &e.entity,
            })
            .collect(),
        links: Links {
            next: Href { href },
        },
    };
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
) -> Response {
    let identity = match pairs(query).and_then(|q| parse_identity(&q).map_err(Problem::from)) {
        Ok(i) => i,
        Err(p) => return p.into_response(),
    };
    let members = match profile_of(&api, &tenant, &identity).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let list: Vec<Member> = members
        .identities
        .iter()
        .map(|i| Member {
            xid: i.to_string(),
            namespace: Code { code: i.ns.clone() },
            id: i.id.clone(),
        })
        .collect();
    Json(json!({
        "xid": identity.to_string(),
        "profileId": members.profile_id,
        "members": list,
        "lastModifiedAt": rfc3339(members.last_modified_ms),
    }))
    .into_response()
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
) -> Response {
    let identity = match pairs(query).and_then(|q| parse_identity(&q).map_err(Problem::from)) {
        Ok(i) => i,
        Err(p) => return p.into_response(),
    };
    let found = match api
        .lookups
        .history(&tenant.org, &tenant.sandbox, &identity)
        .await
    {
        Ok(Some(found)) => found,
        Ok(None) => return unknown_identity(&identity, &tenant),
        Err(e) => return lookup_failed(e),
    };
    let history: Vec<HistoryEntry> = found
        .history
        .iter()
        .map(|event| HistoryEntry {
            event,
            time: rfc3339(event.time_ms),
        })
        .collect();
    Json(json!({
        "xid": identity.to_string(),
        "profileId": found.profile_id,
        "history": history,
    }))
    .into_response()
}
