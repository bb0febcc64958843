//! The handlers of `/segment/definitions` (seed 003) and the explain route.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use axum::extract::rejection::QueryRejection;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use cdp_catalog::clock::now_ms;
use cdp_catalog::flows::Owned;
use cdp_catalog::merge::{default_policy, merge};
use cdp_catalog::model::segment_key;
use cdp_catalog::{CatalogRecord, CatalogState, CatalogView, IdentityGraphKind, SegmentDefinition};
use cdp_contract::records::{Identity, Status};
use cdp_http::ApiJson;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};

use super::definition::{
    check_no_cycle, check_streaming_limit, compile, references_of, resolve, segment_infos,
    DefinitionBody, DefinitionView,
};
use super::error::SegmentError;
use super::list::{page, ListPage, ListQuery};
use super::schemas::{OrgSchemas, PROFILE_CLASS};
use super::SegmentApi;
use crate::http::Tenant;
use crate::profiles::params;
use crate::profiles::Lookups;

/// Serializes segment-definition writes in this process, so the streaming limit, the
/// `inSegment` references and the reclassification of dependents are decided against the state
/// every earlier write left. (Two control instances can still race.)
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

type Pairs = Vec<(String, String)>;

fn pairs(query: Result<Query<Pairs>, QueryRejection>) -> Result<Pairs, SegmentError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| SegmentError::bad_request(format!("the query string cannot be read: {e}")))
}

/// The tenant's definitions.
fn sandbox_definitions<'a>(
    catalog: &'a CatalogState,
    tenant: &Tenant,
) -> Vec<&'a SegmentDefinition> {
    catalog
        .segments
        .values()
        .filter(|d| d.org_id == tenant.org && d.sandbox == tenant.sandbox)
        .collect()
}

fn not_found(id: &str, tenant: &Tenant) -> SegmentError {
    SegmentError::NotFound {
        id: id.to_string(),
        org: tenant.org.clone(),
        sandbox: tenant.sandbox.clone(),
    }
}

fn find<'a>(
    siblings: &[&'a SegmentDefinition],
    id: &str,
    tenant: &Tenant,
) -> Result<&'a SegmentDefinition, SegmentError> {
    siblings
        .iter()
        .find(|d| d.id == id)
        .copied()
        .ok_or_else(|| not_found(id, tenant))
}

fn log_written(d: &SegmentDefinition, what: &'static str) {
    tracing::info!(
        segment = %d.id,
        org = %d.org_id,
        sandbox = %d.sandbox,
        streaming = d.streaming,
        classification = %d.classification,
        profile_only = d.profile_only,
        "segment definition {what}"
    );
}

/// `GET /segment/definitions`.
pub async fn list(
    State(api): State<SegmentApi>,
    tenant: Tenant,
    OriginalUri(uri): OriginalUri,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Result<Json<ListPage>, SegmentError> {
    let query = ListQuery::parse(&pairs(query)?)?;
    let catalog = api.view.read();
    Ok(Json(page(
        sandbox_definitions(&catalog, &tenant),
        &query,
        uri.path(),
    )))
}

/// `GET /segment/definitions/{id}`.
pub async fn get(
    State(api): State<SegmentApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<DefinitionView>, SegmentError> {
    let catalog = api.view.read();
    let siblings = sandbox_definitions(&catalog, &tenant);
    find(&siblings, &id, &tenant).map(|d| Json(DefinitionView::of(d)))
}

/// `POST /segment/definitions`: 200 with the stored definition, as the seed answers.
pub async fn create(
    State(api): State<SegmentApi>,
    tenant: Tenant,
    ApiJson(body): ApiJson<DefinitionBody>,
) -> Result<Json<DefinitionView>, SegmentError> {
    let _serialized = WRITES.lock().await;
    let definition = {
        let catalog = api.view.read();
        let siblings = sandbox_definitions(&catalog, &tenant);
        let draft = resolve(body, None, &tenant)?;
        let schemas = OrgSchemas::of(&catalog, &tenant.org)?;
        let infos = segment_infos(siblings.iter().copied());
        let compiled = compile(&draft.expression, &schemas, &infos, None)?;
        check_streaming_limit(&siblings, None, compiled.streaming, &tenant.sandbox)?;
        // Strictly after every other definition of the sandbox, so newest first is creation
        // order even for definitions created within one millisecond.
        let now = siblings
            .iter()
            .map(|d| d.creation_time.saturating_add(1))
            .fold(now_ms(), i64::max);
        SegmentDefinition {
            id: uuid::Uuid::new_v4().to_string(),
            name: draft.name,
            description: draft.description,
            org_id: tenant.org.clone(),
            sandbox: tenant.sandbox.clone(),
            schema_name: PROFILE_CLASS.to_string(),
            expression: draft.expression,
            streaming: compiled.streaming,
            classification: compiled.classification,
            profile_only: compiled.profile_only,
            creation_time: now,
            update_time: now,
        }
    };
    api.writer
        .put(&CatalogRecord::Segment(definition.clone()))
        .await?;
    log_written(&definition, "created");
    Ok(Json(DefinitionView::of(&definition)))
}

/// `PATCH /segment/definitions/{id}`: name, description and expression; a new expression is
/// compiled and classified again, and the definitions naming this one with `inSegment` are
/// reclassified when whether it is profile-only changed.
pub async fn patch(
    State(api): State<SegmentApi>,
    tenant: Tenant,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DefinitionBody>,
) -> Result<Json<DefinitionView>, SegmentError> {
    let _serialized = WRITES.lock().await;
    let (definition, dependents) = {
        let catalog = api.view.read();
        let siblings = sandbox_definitions(&catalog, &tenant);
        let base = find(&siblings, &id, &tenant)?;
        let draft = resolve(body, Some(base), &tenant)?;
        let others: Vec<&SegmentDefinition> =
            siblings.iter().copied().filter(|d| d.id != id).collect();
        let mut definition = base.clone();
        definition.name = draft.name;
        definition.description = draft.description;
        definition.update_time = now_ms().max(base.update_time + 1);
        let mut dependents = Vec::new();
        if draft.expression_changed {
            let schemas = OrgSchemas::of(&catalog, &tenant.org)?;
            let compiled = compile(
                &draft.expression,
                &schemas,
                &segment_infos(others.iter().copied()),
                Some(&id),
            )?;
            let refs: HashMap<String, Vec<String>> = others
                .iter()
                .map(|d| (d.id.clone(), references_of(&d.expression)))
                .collect();
            check_no_cycle(&id, &compiled.references, &refs)?;
            check_streaming_limit(&siblings, Some(base), compiled.streaming, &tenant.sandbox)?;
            definition.expression = draft.expression;
            definition.streaming = compiled.streaming;
            definition.classification = compiled.classification;
            definition.profile_only = compiled.profile_only;
            if definition.profile_only != base.profile_only {
                dependents = reclassify_dependents(
                    &others,
                    &definition,
                    &refs,
                    &schemas,
                    definition.update_time,
                );
            }
        }
        (definition, dependents)
    };
    api.writer
        .put(&CatalogRecord::Segment(definition.clone()))
        .await?;
    log_written(&definition, "changed");
    for d in dependents {
        api.writer.put(&CatalogRecord::Segment(d.clone())).await?;
        log_written(&d, "reclassified (a definition it names changed)");
    }
    Ok(Json(DefinitionView::of(&definition)))
}

/// The definitions whose classification changes because `changed` (now as given) is or is no
/// longer profile-only, through any chain of `inSegment`s, with their new classification.
/// One that no longer compiles (its schema changed since) is left as it is.
fn reclassify_dependents(
    others: &[&SegmentDefinition],
    changed: &SegmentDefinition,
    refs: &HashMap<String, Vec<String>>,
    schemas: &OrgSchemas,
    now: i64,
) -> Vec<SegmentDefinition> {
    let mut current: HashMap<String, SegmentDefinition> = others
        .iter()
        .map(|d| (d.id.clone(), (*d).clone()))
        .collect();
    current.insert(changed.id.clone(), changed.clone());
    let mut rewritten: BTreeMap<String, SegmentDefinition> = BTreeMap::new();
    let mut queue = VecDeque::from([changed.id.clone()]);
    // Without cycles every definition changes its profile-only flag at most once per path;
    // the bound only guards against a cycle written by another instance.
    let mut budget = current.len().saturating_mul(4).saturating_add(16);
    while let Some(id) = queue.pop_front() {
        let users: Vec<&String> = refs
            .iter()
            .filter(|(_, names)| names.contains(&id))
            .map(|(user, _)| user)
            .collect();
        for user in users {
            if budget == 0 {
                tracing::warn!(segment = %changed.id, "reclassification stopped: inSegment references too deep");
                return rewritten.into_values().collect();
            }
            budget -= 1;
            let Some(old) = current.get(user) else {
                continue;
            };
            let infos = segment_infos(current.values().filter(|d| d.id != *user));
            let compiled = match compile(&old.expression, schemas, &infos, Some(user)) {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(segment = %user, %error, "cannot reclassify a definition naming a changed one");
                    continue;
                }
            };
            if (
                compiled.streaming,
                &compiled.classification,
                compiled.profile_only,
            ) == (old.streaming, &old.classification, old.profile_only)
            {
                continue;
            }
            let flag_changed = compiled.profile_only != old.profile_only;
            let mut new = old.clone();
            new.streaming = compiled.streaming;
            new.classification = compiled.classification;
            new.profile_only = compiled.profile_only;
            new.update_time = now.max(old.update_time + 1);
            current.insert(user.clone(), new.clone());
            rewritten.insert(user.clone(), new);
            if flag_changed {
                queue.push_back(user.clone());
            }
        }
    }
    rewritten.into_values().collect()
}

/// `DELETE /segment/definitions/{id}`: 204; 409 while another definition names it.
pub async fn delete(
    State(api): State<SegmentApi>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, SegmentError> {
    let _serialized = WRITES.lock().await;
    {
        let catalog = api.view.read();
        let siblings = sandbox_definitions(&catalog, &tenant);
        find(&siblings, &id, &tenant)?;
        let mut users: Vec<String> = siblings
            .iter()
            .filter(|d| d.id != id && references_of(&d.expression).contains(&id))
            .map(|d| d.id.clone())
            .collect();
        if !users.is_empty() {
            users.sort();
            return Err(SegmentError::Referenced { id, by: users });
        }
        // A destination flow exporting the segment would go on exporting an id that no longer
        // means anything.
        let mut flows: Vec<String> = catalog
            .flows
            .values()
            .filter(|f| f.belongs_to(&tenant.org, &tenant.sandbox))
            .filter(|f| f.segment_ids().contains(&id))
            .map(|f| f.id.clone())
            .collect();
        if !flows.is_empty() {
            flows.sort();
            return Err(SegmentError::Activated { id, flows });
        }
    }
    api.writer.delete(&segment_key(&id)).await?;
    tracing::info!(segment = %id, org = %tenant.org, sandbox = %tenant.sandbox, "segment definition deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `GET /segment/definitions/{id}/explain` answers this.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainView {
    pub segment_id: String,
    pub profile_id: String,
    pub qualified: bool,
    /// When the answer changes by itself (a window passing), if it does.
    pub next_change: Option<String>,
    /// The library's explanation: which predicate or event decided.
    pub explanation: String,
    pub evaluated_at: String,
}

/// The merge a profile's attributes get: the sandbox's default policy, else timestamp order
/// over the identity graph (as the Profile API does without `mergePolicyId`).
fn default_merge(
    catalog: &CatalogState,
    tenant: &Tenant,
) -> (cdp_catalog::AttributeMerge, IdentityGraphKind) {
    catalog
        .default_merge_policy(&tenant.org, &tenant.sandbox)
        .map(|m| (m.attribute_merge.clone(), m.identity_graph.kind))
        .unwrap_or_else(|| (default_policy(), IdentityGraphKind::Pdg))
}

/// `GET /segment/definitions/{id}/explain?entityId=&entityIdNS=`: the definition evaluated
/// now on the profile holding the identity (its attributes merged under the sandbox's default
/// policy, its newest events, the segments it is in as `segment.membership.json` tells).
pub async fn explain(
    State(api): State<SegmentApi>,
    tenant: Tenant,
    Path(id): Path<String>,
    query: Result<Query<Pairs>, QueryRejection>,
) -> Result<Json<ExplainView>, SegmentError> {
    let query = pairs(query)?;
    let required = |name: &str, what: &str| {
        params::get(&query, name).ok_or_else(|| {
            SegmentError::bad_request(format!("the query parameter {name} is required ({what})"))
        })
    };
    let identity = Identity::new(
        required("entityIdNS", "the identity's namespace code")?,
        required("entityId", "the identity's value")?,
    );
    explain_for(&api.view, &api.profiles, &tenant, &id, &identity)
        .await
        .map(Json)
}

/// The definition `id` of the tenant's sandbox evaluated now on the profile holding
/// `identity`: what `GET /segment/definitions/{id}/explain` answers, and what the dashboard's
/// profile page shows for each of a profile's segments.
pub async fn explain_for(
    view: &CatalogView,
    profiles: &Lookups,
    tenant: &Tenant,
    id: &str,
    identity: &Identity,
) -> Result<ExplainView, SegmentError> {
    let id = id.to_string();
    let (definition, infos, (attribute_merge, graph)) = {
        let catalog = view.read();
        let siblings = sandbox_definitions(&catalog, tenant);
        let definition = find(&siblings, &id, tenant)?.clone();
        let infos = segment_infos(siblings.iter().copied().filter(|d| d.id != id));
        (definition, infos, default_merge(&catalog, tenant))
    };
    // Paths were checked when the definition was written; only the plan is needed here.
    let compiled =
        cdp_pql::compile(&definition.expression, &Default::default(), &infos).map_err(|e| {
            SegmentError::Stored {
                id: id.clone(),
                message: e.render(&definition.expression),
            }
        })?;
    let profile_id = profiles
        .identity(&tenant.org, &tenant.sandbox, identity)
        .await?
        .map(|found| found.profile_id)
        .ok_or_else(|| SegmentError::UnknownIdentity {
            identity: identity.to_string(),
            sandbox: tenant.sandbox.clone(),
        })?;
    let profile = profiles
        .profile(&tenant.org, &tenant.sandbox, &profile_id)
        .await?
        .filter(|p| p.org_id == tenant.org && p.sandbox == tenant.sandbox);
    let (attributes, events, memberships) = match profile {
        // Known to the graph, its content not arrived yet: nothing to qualify on.
        None => (Value::Object(Map::new()), Vec::new(), HashSet::new()),
        Some(p) => {
            let owner = (graph == IdentityGraphKind::None).then_some(identity);
            let attributes = merge(
                p.fragments
                    .iter()
                    .filter(|f| owner.is_none_or(|o| f.owner == *o)),
                &attribute_merge,
            );
            // The events the engine keeps (the fields definitions read), newest first.
            let page = profiles
                .events(
                    &tenant.org,
                    &tenant.sandbox,
                    &profile_id,
                    None,
                    params::MAX_LIMIT,
                )
                .await?;
            let events: Vec<Value> = page
                .into_iter()
                .flat_map(|page| page.events)
                .rev()
                .map(|e| event_value(e.entity, e.timestamp_ms))
                .collect();
            // The segments the profile is in now, for `inSegment`.
            let memberships: HashSet<String> = p
                .memberships
                .iter()
                .filter(|m| !matches!(m.status, Status::Exited))
                .map(|m| m.segment_id.clone())
                .collect();
            (attributes, events, memberships)
        }
    };
    let now = Utc::now();
    let cx = cdp_pql::Context::new(&attributes, &events, &memberships, now);
    let explained = compiled.plan.explain(&cx);
    tracing::info!(segment = %id, profile = %profile_id, qualified = explained.qualified, "segment definition explained");
    Ok(ExplainView {
        segment_id: id,
        profile_id,
        qualified: explained.qualified,
        next_change: explained.next_change.map(rfc3339),
        explanation: explained.to_string(),
        evaluated_at: rfc3339(now),
    })
}

/// An event as PQL reads it: the XDM entity, with the stored timestamp when it has none.
fn event_value(entity: Value, timestamp_ms: i64) -> Value {
    let mut value = entity;
    if let Value::Object(m) = &mut value {
        if !m.contains_key("timestamp") {
            if let Some(t) = DateTime::<Utc>::from_timestamp_millis(timestamp_ms) {
                m.insert("timestamp".into(), Value::String(rfc3339(t)));
            }
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_pql::{FieldType, Schema};

    fn def(id: &str, expression: &str, profile_only: bool, streaming: bool) -> SegmentDefinition {
        SegmentDefinition {
            id: id.into(),
            name: id.into(),
            description: None,
            org_id: "acme".into(),
            sandbox: "prod".into(),
            schema_name: PROFILE_CLASS.into(),
            expression: expression.into(),
            streaming,
            classification: String::new(),
            profile_only,
            creation_time: 1,
            update_time: 1,
        }
    }

    #[test]
    fn dependents_follow_a_change_of_profile_only() {
        let schemas = OrgSchemas {
            profile: Some(Schema::from_paths([("age", FieldType::Number)])),
            event: None,
        };
        let window = r#"xEvent.any(eventType = "a" and timestamp occurs < 1 hours before now)"#;
        // b streams on a (profile only); c is of segments (b), d names nothing.
        let b = def("b", &format!(r#"inSegment("a") and {window}"#), false, true);
        let mut b_class = b.clone();
        b_class.classification = "single event".into();
        let c = def("c", r#"inSegment("b")"#, false, true);
        let d = def("d", "age > 3", true, true);
        let others = [&b_class, &c, &d];
        let refs: HashMap<String, Vec<String>> = others
            .iter()
            .map(|x| (x.id.clone(), references_of(&x.expression)))
            .collect();
        // a now names an event: b can no longer stream.
        let a = def("a", window, false, true);
        let out = reclassify_dependents(&others, &a, &refs, &schemas, 9);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].id, "b");
        assert!(!out[0].streaming);
        assert!(out[0].classification.contains("inSegment"), "{out:?}");
        assert_eq!(out[0].update_time, 9);
    }

    #[test]
    fn events_get_their_stored_timestamp() {
        let v = event_value(serde_json::json!({"eventType": "a"}), 1_700_000_000_000);
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.000Z");
        let v = event_value(serde_json::json!({"timestamp": "2020-01-01T00:00:00Z"}), 0);
        assert_eq!(v["timestamp"], "2020-01-01T00:00:00Z");
        // Not an object (the engine keeps entities as objects): passed on as it is.
        assert_eq!(
            event_value(serde_json::json!("x"), 0),
            serde_json::json!("x")
        );
    }
}
