//! `/config/mergePolicies`: how the fragments of one person become one profile, shaped after
//! AEP's Real-Time Customer Profile API. At most [`MAX_PER_SANDBOX`] policies per org and
//! sandbox, exactly one of them the default (the one the profile stage merges with).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use cdp_catalog::clock::now_ms;
use cdp_catalog::model::{
    merge_policy_key, AttributeMerge, AttributeMergeKind, CatalogRecord, IdentityGraphChoice,
    IdentityGraphKind, MergePolicy,
};
use cdp_catalog::CatalogState;
use cdp_http::{ApiJson, Problem};

use super::{ControlState, Tenant, DEFAULT_SANDBOX};

/// Merge policies per org and sandbox (AEP's limit).
pub const MAX_PER_SANDBOX: usize = 5;
/// The only schema class a merge policy applies to.
pub const PROFILE_CLASS: &str = "_xdm.context.profile";

const GRAPH_TYPES: &[(&str, IdentityGraphKind)] = &[
    ("none", IdentityGraphKind::None),
    ("pdg", IdentityGraphKind::Pdg),
];
const MERGE_TYPES: &[(&str, AttributeMergeKind)] = &[
    ("timestampOrdered", AttributeMergeKind::TimestampOrdered),
    ("dataSetPrecedence", AttributeMergeKind::DataSetPrecedence),
];

/// Serializes merge-policy writes in this process, so the limit and the one-default rule are
/// checked against the state every earlier write left. (Two control instances can still race;
/// should two defaults result, the newer one is the default: see
/// `CatalogState::default_merge_policy`.)
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A merge policy as the API shows it (AEP's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MergePolicyView {
    pub id: String,
    pub name: String,
    pub ims_org_id: String,
    pub sandbox: SandboxView,
    pub schema: SchemaName,
    pub version: u32,
    pub identity_graph: IdentityGraphChoice,
    pub attribute_merge: AttributeMerge,
    pub default: bool,
    /// Unix seconds of the last change.
    pub update_epoch: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxView {
    pub sandbox_name: String,
    /// `production` for `prod`, `development` for any other sandbox.
    pub sandbox_type: &'static str,
    /// Whether this is the org's default sandbox (`prod`).
    pub default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaName {
    pub name: String,
}

impl MergePolicyView {
    /// `default` is whether the policy is its sandbox's default as every reader decides it.
    fn of(p: &MergePolicy, default: bool) -> Self {
        let prod = p.sandbox == DEFAULT_SANDBOX;
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            ims_org_id: p.org_id.clone(),
            sandbox: SandboxView {
                sandbox_name: p.sandbox.clone(),
                sandbox_type: if prod { "production" } else { "development" },
                default: prod,
            },
            schema: SchemaName {
                name: p.schema_class.clone(),
            },
            version: 1,
            identity_graph: p.identity_graph.clone(),
            attribute_merge: p.attribute_merge.clone(),
            default,
            update_epoch: p.updated_at / 1000,
        }
    }
}

/// A request body: the policy's shape, every field optional (PATCH takes any subset; POST and
/// PUT need `name`, `identityGraph` and `attributeMerge`). The read-only fields of a GET answer
/// are accepted so it can be sent back; `id` and `imsOrgId` must then match.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyBody {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub ims_org_id: Option<String>,
    #[serde(default)]
    pub schema: Option<SchemaName>,
    #[serde(default)]
    pub identity_graph: Option<TypeBody>,
    #[serde(default)]
    pub attribute_merge: Option<AttributeMergeBody>,
    #[serde(default)]
    pub default: Option<bool>,
    /// Read-only (`sandbox`, `version`, `updateEpoch`): accepted and ignored.
    #[serde(default, rename = "sandbox")]
    _sandbox: Option<IgnoredAny>,
    #[serde(default, rename = "version")]
    _version: Option<IgnoredAny>,
    #[serde(default, rename = "updateEpoch")]
    _update_epoch: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeBody {
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeMergeBody {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub order: Option<Vec<String>>,
}

/// POST, PUT or PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    Create,
    Replace,
    Patch,
}

fn parse_kind<T: Copy>(field: &str, value: &str, allowed: &[(&str, T)]) -> Result<T, Problem> {
    allowed
        .iter()
        .find(|(name, _)| *name == value)
        .map(|(_, k)| *k)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|(n, _)| *n).collect();
            Problem::bad_request(format!(
                "{field} {value:?} is not one of {}",
                names.join(", ")
            ))
        })
}

/// `attributeMerge` checked on its own: precedence needs a non-empty order without repeats,
/// timestamp order takes none. Whether the datasets exist is [`check_datasets`]'s business.
pub fn attribute_merge(body: AttributeMergeBody) -> Result<AttributeMerge, Problem> {
    let kind = parse_kind("attributeMerge.type", &body.kind, MERGE_TYPES)?;
    let order = body.order.unwrap_or_default();
    match kind {
        AttributeMergeKind::TimestampOrdered if !order.is_empty() => {
            return Err(Problem::bad_request(
                "attributeMerge.order applies to dataSetPrecedence only: leave it out for timestampOrdered",
            ))
        }
        AttributeMergeKind::DataSetPrecedence if order.is_empty() => {
            return Err(Problem::bad_request(
                "dataSetPrecedence needs attributeMerge.order: the dataset ids, highest precedence first",
            ))
        }
        _ => {}
    }
    for (i, id) in order.iter().enumerate() {
        if id.trim().is_empty() {
            return Err(Problem::bad_request(
                "attributeMerge.order holds an empty dataset id",
            ));
        }
        if order[..i].contains(id) {
            return Err(Problem::bad_request(format!(
                "dataset {id} appears twice in attributeMerge.order"
            )));
        }
    }
    Ok(AttributeMerge { kind, data: order })
}

/// Every dataset of a precedence order must exist in the policy's org.
pub fn check_datasets(
    merge: &AttributeMerge,
    org: &str,
    catalog: &CatalogState,
) -> Result<(), Problem> {
    match merge.data.iter().find(|id| {
        catalog
            .datasets
            .get(id.as_str())
            .is_none_or(|d| d.org_id != org)
    }) {
        Some(unknown) => Err(Problem::bad_request(format!(
            "attributeMerge.order names dataset {unknown}, which does not exist in org {org}"
        ))),
        None => Ok(()),
    }
}

/// The policy a write asks for: the body's fields over `base` (the stored policy for PUT and
/// PATCH; PUT takes only its identity from it). `default` is left as `base` has it: deciding it
/// is [`plan`]'s business.
pub fn resolve(
    body: PolicyBody,
    write: Write,
    base: Option<&MergePolicy>,
    tenant: &Tenant,
) -> Result<MergePolicy, Problem> {
    match (&body.id, base) {
        (Some(_), None) => {
            return Err(Problem::bad_request(
                "id is assigned by the server: leave it out when creating a merge policy",
            ))
        }
        (Some(id), Some(b)) if *id != b.id => {
            return Err(Problem::bad_request(format!(
                "the body's id {id} is not the policy's id {}",
                b.id
            )))
        }
        _ => {}
    }
    if let Some(org) = body.ims_org_id.as_ref().filter(|o| **o != tenant.org) {
        return Err(Problem::bad_request(format!(
            "imsOrgId {org} is not the org of the x-gw-ims-org-id header ({})",
            tenant.org
        )));
    }
    let full = write != Write::Patch;
    let required = |field: &str| {
        Problem::bad_request(match write {
            Write::Replace => format!(
                "{field} is required: PUT replaces the whole policy (PATCH changes some fields only)"
            ),
            _ => format!("{field} is required"),
        })
    };
    let name = match body.name {
        Some(n) if n.trim().is_empty() => {
            return Err(Problem::bad_request("name must not be empty"))
        }
        Some(n) => n,
        None if full => return Err(required("name")),
        None => base.map(|b| b.name.clone()).unwrap_or_default(),
    };
    let schema_class = match body.schema {
        Some(s) if s.name != PROFILE_CLASS => {
            return Err(Problem::bad_request(format!(
                "schema.name must be {PROFILE_CLASS} (got {:?}): merge policies apply to profiles",
                s.name
            )))
        }
        Some(s) => s.name,
        None => base
            .filter(|_| !full)
            .map(|b| b.schema_class.clone())
            .unwrap_or_else(|| PROFILE_CLASS.to_string()),
    };
    let identity_graph = match body.identity_graph {
        Some(g) => IdentityGraphChoice {
            kind: parse_kind("identityGraph.type", &g.kind, GRAPH_TYPES)?,
        },
        None if full => return Err(required("identityGraph")),
        None => base
            .map(|b| b.identity_graph.clone())
            .ok_or_else(|| required("identityGraph"))?,
    };
    let attribute_merge = match body.attribute_merge {
        Some(m) => attribute_merge(m)?,
        None if full => return Err(required("attributeMerge")),
        None => base
            .map(|b| b.attribute_merge.clone())
            .ok_or_else(|| required("attributeMerge"))?,
    };
    let (id, created_at, is_default) = match base {
        Some(b) => (b.id.clone(), b.created_at, b.is_default),
        None => (uuid::Uuid::new_v4().to_string(), 0, false),
    };
    Ok(MergePolicy {
        id,
        name,
        org_id: tenant.org.clone(),
        sandbox: tenant.sandbox.clone(),
        schema_class,
        identity_graph,
        attribute_merge,
        is_default,
        created_at,
        updated_at: created_at,
    })
}

/// What a write stores: the policy, then the previous default(s) it displaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub policy: MergePolicy,
    pub demoted: Vec<MergePolicy>,
}

/// Applies the sandbox rules to a write of `policy`: the limit (creation only), and exactly one
/// default — the first policy of a sandbox is the default whatever it asks, `default: true`
/// takes the default from the previous one, and the default cannot give it up by itself.
/// `siblings` are the sandbox's stored policies (with the stored version of `policy` when it
/// is an update); `current_default` is the id every reader takes for the default.
pub fn plan(
    mut policy: MergePolicy,
    wants_default: Option<bool>,
    write: Write,
    siblings: &[MergePolicy],
    current_default: Option<&str>,
    now: i64,
) -> Result<Plan, Problem> {
    if write == Write::Create && siblings.len() >= MAX_PER_SANDBOX {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "sandbox {} of org {} already has {} merge policies, the limit is {MAX_PER_SANDBOX}: delete one first",
                policy.sandbox, policy.org_id, siblings.len()
            ),
        ));
    }
    let is_default_now = current_default == Some(policy.id.as_str());
    let make_default = match wants_default {
        Some(true) => true,
        Some(false) if is_default_now => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                format!(
                    "merge policy {} is the default of sandbox {}: make another policy the default first (set \"default\": true on it)",
                    policy.id, policy.sandbox
                ),
            ))
        }
        // A sandbox without a default gets one: its first policy, whatever it asks.
        Some(false) | None => is_default_now || current_default.is_none(),
    };
    policy.is_default = make_default;
    if write == Write::Create {
        policy.created_at = now;
    }
    policy.updated_at = now;
    let demoted = if make_default {
        siblings
            .iter()
            .filter(|s| s.id != policy.id && s.is_default)
            .map(|s| MergePolicy {
                is_default: false,
                updated_at: now,
                ..s.clone()
            })
            .collect()
    } else {
        Vec::new()
    };
    Ok(Plan { policy, demoted })
}

/// The default may go only when it is the sandbox's last policy.
pub fn check_delete(
    policy: &MergePolicy,
    siblings: usize,
    current_default: Option<&str>,
) -> Result<(), Problem> {
    if current_default == Some(policy.id.as_str()) && siblings > 1 {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "merge policy {} is the default of sandbox {}: make another policy the default first (set \"default\": true on it), then delete this one",
                policy.id, policy.sandbox
            ),
        ));
    }
    Ok(())
}

/// The sandbox's policies, oldest first, and the id of its default.
fn sandbox_policies(catalog: &CatalogState, tenant: &Tenant) -> (Vec<MergePolicy>, Option<String>) {
    let mut all: Vec<MergePolicy> = catalog
        .merge_policies
        .values()
        .filter(|m| m.org_id == tenant.org && m.sandbox == tenant.sandbox)
        .cloned()
        .collect();
    all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let default = catalog
        .default_merge_policy(&tenant.org, &tenant.sandbox)
        .map(|m| m.id.clone());
    (all, default)
}

fn not_found(id: &str, tenant: &Tenant) -> Problem {
    Problem::not_found(format!(
        "no merge policy {id} in sandbox {} of org {}",
        tenant.sandbox, tenant.org
    ))
}

fn unavailable(e: impl std::fmt::Display) -> Problem {
    Problem::unavailable(e.to_string())
}

pub async fn list(
    State(state): State<ControlState>,
    tenant: Tenant,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<serde_json::Value>, Problem> {
    let only = match query.get("default").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(Problem::bad_request(format!(
                "default must be true or false (got {other:?})"
            )))
        }
    };
    let (all, default) = sandbox_policies(&state.view.read(), &tenant);
    let children: Vec<MergePolicyView> = all
        .iter()
        .map(|p| MergePolicyView::of(p, default.as_deref() == Some(p.id.as_str())))
        .filter(|v| only.is_none_or(|d| v.default == d))
        .collect();
    Ok(Json(serde_json::json!({
        "_page": {"totalCount": children.len(), "pageSize": children.len()},
        "children": children,
    })))
}

pub async fn get(
    State(state): State<ControlState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<MergePolicyView>, Problem> {
    let (all, default) = sandbox_policies(&state.view.read(), &tenant);
    all.iter()
        .find(|p| p.id == id)
        .map(|p| {
            Json(MergePolicyView::of(
                p,
                default.as_deref() == Some(id.as_str()),
            ))
        })
        .ok_or_else(|| not_found(&id, &tenant))
}

pub async fn create(
    State(state): State<ControlState>,
    tenant: Tenant,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<(StatusCode, Json<MergePolicyView>), Problem> {
    let view = write(&state, &tenant, None, Write::Create, body).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn replace(
    State(state): State<ControlState>,
    tenant: Tenant,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<Json<MergePolicyView>, Problem> {
    write(&state, &tenant, Some(id), Write::Replace, body)
        .await
        .map(Json)
}

pub async fn patch(
    State(state): State<ControlState>,
    tenant: Tenant,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<Json<MergePolicyView>, Problem> {
    write(&state, &tenant, Some(id), Write::Patch, body)
        .await
        .map(Json)
}

/// Checks and stores a create (`id` none) or an update, then the default it displaces.
async fn write(
    state: &ControlState,
    tenant: &Tenant,
    id: Option<String>,
    write: Write,
    body: PolicyBody,
) -> Result<MergePolicyView, Problem> {
    let wants_default = body.default;
    let checks_datasets = body.attribute_merge.is_some();
    let _serialized = WRITES.lock().await;
    let plan = {
        let catalog = state.view.read();
        let (siblings, default) = sandbox_policies(&catalog, tenant);
        let base = match &id {
            Some(id) => Some(
                siblings
                    .iter()
                    .find(|p| p.id == *id)
                    .ok_or_else(|| not_found(id, tenant))?,
            ),
            None => None,
        };
        let policy = resolve(body, write, base, tenant)?;
        if checks_datasets {
            check_datasets(&policy.attribute_merge, &tenant.org, &catalog)?;
        }
        plan(
            policy,
            wants_default,
            write,
            &siblings,
            default.as_deref(),
            now_ms(),
        )?
    };
    // The new default first: should the demotion not be written, the newer default still wins.
    state
        .writer
        .put(&CatalogRecord::MergePolicy(plan.policy.clone()))
        .await
        .map_err(unavailable)?;
    for old in &plan.demoted {
        state
            .writer
            .put(&CatalogRecord::MergePolicy(old.clone()))
            .await
            .map_err(unavailable)?;
        tracing::info!(policy = %old.id, org = %old.org_id, sandbox = %old.sandbox, "merge policy is no longer the default");
    }
    let p = &plan.policy;
    tracing::info!(
        policy = %p.id,
        org = %p.org_id,
        sandbox = %p.sandbox,
        operation = ?write,
        default = p.is_default,
        identity_graph = ?p.identity_graph.kind,
        attribute_merge = ?p.attribute_merge.kind,
        "merge policy written"
    );
    Ok(MergePolicyView::of(p, p.is_default))
}

pub async fn delete(
    State(state): State<ControlState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let _serialized = WRITES.lock().await;
    {
        let (siblings, default) = sandbox_policies(&state.view.read(), &tenant);
        let policy = siblings
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| not_found(&id, &tenant))?;
        check_delete(policy, siblings.len(), default.as_deref())?;
    }
    state
        .writer
        .delete(&merge_policy_key(&id))
        .await
        .map_err(unavailable)?;
    tracing::info!(policy = %id, org = %tenant.org, sandbox = %tenant.sandbox, "merge policy deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tenant() -> Tenant {
        Tenant {
            org: "acme".into(),
            sandbox: "prod".into(),
        }
    }

    fn body(v: serde_json::Value) -> PolicyBody {
        serde_json::from_value(v).unwrap()
    }

    fn full() -> serde_json::Value {
        json!({"name": "p", "schema": {"name": PROFILE_CLASS}, "identityGraph": {"type": "pdg"},
               "attributeMerge": {"type": "timestampOrdered"}})
    }

    fn policy(id: &str, is_default: bool) -> MergePolicy {
        MergePolicy {
            id: id.into(),
            name: id.into(),
            org_id: "acme".into(),
            sandbox: "prod".into(),
            schema_class: PROFILE_CLASS.into(),
            identity_graph: IdentityGraphChoice {
                kind: IdentityGraphKind::Pdg,
            },
            attribute_merge: AttributeMerge {
                kind: AttributeMergeKind::TimestampOrdered,
                data: vec![],
            },
            is_default,
            created_at: 1,
            updated_at: 1,
        }
    }

    fn detail(r: Result<impl std::fmt::Debug, Problem>) -> (u16, String) {
        let e = r.unwrap_err();
        (e.status, e.detail)
    }

    #[test]
    fn bodies_are_checked() {
        let p = resolve(body(full()), Write::Create, None, &tenant()).unwrap();
        assert_eq!(p.identity_graph.kind, IdentityGraphKind::Pdg);
        assert_eq!(p.org_id, "acme");
        assert!(!p.id.is_empty());

        let mut v = full();
        v["schema"]["name"] = json!("_xdm.context.experienceevent");
        let (status, d) = detail(resolve(body(v), Write::Create, None, &tenant()));
        assert_eq!(status, 400);
        assert!(d.contains(PROFILE_CLASS), "{d}");

        let mut v = full();
        v["identityGraph"]["type"] = json!("graph");
        let (_, d) = detail(resolve(body(v), Write::Create, None, &tenant()));
        assert!(d.contains("none, pdg"), "{d}");

        let mut v = full();
        v.as_object_mut().unwrap().remove("attributeMerge");
        let (_, d) = detail(resolve(body(v), Write::Replace, None, &tenant()));
        assert!(d.contains("attributeMerge is required"), "{d}");

        let mut v = full();
        v["id"] = json!("x");
        assert_eq!(
            detail(resolve(body(v), Write::Create, None, &tenant())).0,
            400
        );
        let mut v = full();
        v["imsOrgId"] = json!("other");
        assert!(detail(resolve(body(v), Write::Create, None, &tenant()))
            .1
            .contains("imsOrgId"));
        // Unknown fields are refused by the extractor (422).
        assert!(serde_json::from_value::<PolicyBody>(json!({"nme": "x"})).is_err());
    }

    #[test]
    fn attribute_merge_orders_are_checked() {
        let am = |v| attribute_merge(serde_json::from_value(v).unwrap());
        let (s, d) = detail(am(json!({"type": "timestampOrdered", "order": ["d1"]})));
        assert_eq!(s, 400);
        assert!(d.contains("timestampOrdered"), "{d}");
        assert!(am(json!({"type": "timestampOrdered", "order": []})).is_ok());
        let (_, d) = detail(am(json!({"type": "dataSetPrecedence"})));
        assert!(d.contains("attributeMerge.order"), "{d}");
        let (_, d) = detail(am(
            json!({"type": "dataSetPrecedence", "order": ["a", "a"]}),
        ));
        assert!(d.contains("twice"), "{d}");
        let (_, d) = detail(am(json!({"type": "timestamp"})));
        assert!(d.contains("timestampOrdered, dataSetPrecedence"), "{d}");
        let ok = am(json!({"type": "dataSetPrecedence", "order": ["a", "b"]})).unwrap();
        assert_eq!(ok.data, ["a", "b"]);
        // On the wire (and in the catalog) the list is `order`; older records said `data`.
        let v = serde_json::to_value(&ok).unwrap();
        assert_eq!(v, json!({"type": "dataSetPrecedence", "order": ["a", "b"]}));
        let old: AttributeMerge =
            serde_json::from_value(json!({"type": "dataSetPrecedence", "data": ["a", "b"]}))
                .unwrap();
        assert_eq!(old, ok);
    }

    #[test]
    fn datasets_must_exist_in_the_org() {
        let mut catalog = CatalogState::default();
        catalog.datasets.insert(
            "d1".into(),
            cdp_catalog::Dataset {
                id: "d1".into(),
                name: "d1".into(),
                org_id: "acme".into(),
                schema_id: "s".into(),
                schema_version: 1,
                profile_enabled: true,
                profile_event_ttl_days: None,
                format: Default::default(),
                created_at: 0,
            },
        );
        let merge = AttributeMerge {
            kind: AttributeMergeKind::DataSetPrecedence,
            data: vec!["d1".into(), "d2".into()],
        };
        let (s, d) = detail(check_datasets(&merge, "acme", &catalog));
        assert_eq!(s, 400);
        assert!(d.contains("d2") && !d.contains("d1"), "{d}");
        let merge = AttributeMerge {
            data: vec!["d1".into()],
            ..merge
        };
        assert!(check_datasets(&merge, "acme", &catalog).is_ok());
        assert!(check_datasets(&merge, "other", &catalog).is_err());
    }

    #[test]
    fn patch_keeps_what_it_does_not_name() {
        let stored = policy("p1", true);
        let p = resolve(
            body(json!({"name": "renamed"})),
            Write::Patch,
            Some(&stored),
            &tenant(),
        )
        .unwrap();
        assert_eq!(p.name, "renamed");
        assert_eq!(p.identity_graph, stored.identity_graph);
        assert!(p.is_default);
        assert_eq!(p.id, "p1");
        // PUT replaces everything: a missing field is an error, not the stored value.
        let (_, d) = detail(resolve(
            body(json!({"name": "renamed"})),
            Write::Replace,
            Some(&stored),
            &tenant(),
        ));
        assert!(d.contains("required"), "{d}");
        let (_, d) = detail(resolve(
            body(json!({"id": "p2"})),
            Write::Patch,
            Some(&stored),
            &tenant(),
        ));
        assert!(d.contains("p2"), "{d}");
    }

    #[test]
    fn the_first_policy_is_the_default_whatever_it_asks() {
        let p = plan(policy("a", false), Some(false), Write::Create, &[], None, 9).unwrap();
        assert!(p.policy.is_default);
        assert!(p.demoted.is_empty());
        assert_eq!((p.policy.created_at, p.policy.updated_at), (9, 9));
        let second = plan(
            policy("b", false),
            None,
            Write::Create,
            &[policy("a", true)],
            Some("a"),
            9,
        )
        .unwrap();
        assert!(!second.policy.is_default);
    }

    #[test]
    fn a_new_default_demotes_the_old_one() {
        let siblings = [policy("a", true), policy("b", false)];
        let p = plan(
            policy("b", false),
            Some(true),
            Write::Patch,
            &siblings,
            Some("a"),
            9,
        )
        .unwrap();
        assert!(p.policy.is_default);
        assert_eq!(p.demoted.len(), 1);
        assert_eq!(p.demoted[0].id, "a");
        assert!(!p.demoted[0].is_default);
        assert_eq!(p.demoted[0].updated_at, 9);
        // Setting the default again changes nothing else.
        let same = plan(
            policy("a", true),
            Some(true),
            Write::Patch,
            &siblings,
            Some("a"),
            9,
        )
        .unwrap();
        assert!(same.demoted.is_empty());
        // The default cannot give up being the default by itself.
        let (s, d) = detail(plan(
            policy("a", true),
            Some(false),
            Write::Patch,
            &siblings,
            Some("a"),
            9,
        ));
        assert_eq!(s, 409);
        assert!(d.contains("another policy the default"), "{d}");
    }

    #[test]
    fn at_most_five_per_sandbox() {
        let five: Vec<MergePolicy> = (0..5).map(|i| policy(&i.to_string(), i == 0)).collect();
        let (s, d) = detail(plan(
            policy("x", false),
            None,
            Write::Create,
            &five,
            Some("0"),
            9,
        ));
        assert_eq!(s, 422);
        assert!(d.contains("limit is 5"), "{d}");
        // Updates are not creations.
        assert!(plan(
            policy("3", false),
            None,
            Write::Replace,
            &five,
            Some("0"),
            9
        )
        .is_ok());
    }

    #[test]
    fn the_default_is_deleted_last() {
        let a = policy("a", true);
        let (s, _) = detail(check_delete(&a, 2, Some("a")));
        assert_eq!(s, 409);
        assert!(check_delete(&a, 1, Some("a")).is_ok());
        assert!(check_delete(&policy("b", false), 2, Some("a")).is_ok());
    }

    #[test]
    fn the_view_has_aeps_shape() {
        let mut p = policy("a", true);
        p.updated_at = 1_700_000_000_123;
        p.sandbox = "dev".into();
        let v = serde_json::to_value(MergePolicyView::of(&p, true)).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "a", "name": "a", "imsOrgId": "acme",
                "sandbox": {"sandboxName": "dev", "sandboxType": "development", "default": false},
                "schema": {"name": PROFILE_CLASS}, "version": 1,
                "identityGraph": {"type": "pdg"},
                "attributeMerge": {"type": "timestampOrdered"},
                "default": true, "updateEpoch": 1_700_000_000
            })
        );
    }
}
