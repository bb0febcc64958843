//! `/identity/namespaces`: the identity namespaces of a sandbox, shaped after AEP's Identity
//! Service API. The standard namespaces exist in every sandbox without being stored; a tenant's
//! own namespace with a standard code replaces the standard one for that sandbox (e.g. a CRMID
//! that is not unique). Namespaces are not deleted, as in AEP.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use cdp_catalog::clock::now_ms;
use cdp_catalog::model::{CatalogRecord, IdentityNamespace, IdentityType};
use cdp_catalog::standard_namespaces;
use cdp_http::{ApiJson, Problem};

use super::{ControlState, Tenant};

/// The longest code accepted.
pub const MAX_CODE_LEN: usize = 64;

/// `idType` values, as the API writes them (input is case-insensitive: AEP's own examples
/// send `Cross_device`).
const ID_TYPES: &[(&str, IdentityType)] = &[
    ("COOKIE", IdentityType::Cookie),
    ("DEVICE", IdentityType::Device),
    ("CROSS_DEVICE", IdentityType::CrossDevice),
    ("EMAIL", IdentityType::Email),
    ("PHONE", IdentityType::Phone),
    ("PARTNER", IdentityType::Partner),
];

/// The ids AEP documents for its standard namespaces; other namespaces get a stable number
/// derived from org, sandbox and code ([`namespace_id`]).
const AEP_IDS: &[(&str, u64)] = &[
    ("ECID", 4),
    ("Email", 6),
    ("Phone", 7),
    ("AdCloud", 411),
    ("GAID", 20914),
    ("IDFA", 20915),
];

/// Serializes namespace creation in this process, so two requests for one code cannot both
/// pass the existence check. (Two control instances can still race; the later record wins.)
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A namespace as the API shows it (AEP's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceView {
    pub id: u64,
    pub code: String,
    pub name: String,
    pub description: Option<String>,
    pub id_type: IdentityType,
    pub status: &'static str,
    pub custom: bool,
    pub namespace_type: &'static str,
    pub unique: bool,
    pub priority: Option<u32>,
    pub create_time: i64,
    pub update_time: i64,
}

impl From<&IdentityNamespace> for NamespaceView {
    fn from(n: &IdentityNamespace) -> Self {
        let custom = n.org_id.is_some();
        Self {
            id: namespace_id(n),
            code: n.code.clone(),
            name: n.name.clone(),
            description: n.description.clone(),
            id_type: n.id_type,
            status: "ACTIVE",
            custom,
            namespace_type: if custom { "Custom" } else { "Standard" },
            unique: n.unique,
            priority: n.priority,
            create_time: n.created_at,
            // Namespaces are never changed once created.
            update_time: n.created_at,
        }
    }
}

/// AEP's number for a standard namespace; otherwise a stable 8-digit number (FNV-1a of
/// `org/sandbox/code`), the same on every instance and after every restart.
pub fn namespace_id(n: &IdentityNamespace) -> u64 {
    if n.org_id.is_none() {
        if let Some((_, id)) = AEP_IDS.iter().find(|(code, _)| *code == n.code) {
            return *id;
        }
    }
    let key = format!(
        "{}/{}/{}",
        n.org_id.as_deref().unwrap_or_default(),
        n.sandbox.as_deref().unwrap_or_default(),
        n.code
    );
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    10_000_000 + hash % 90_000_000
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateNamespace {
    pub name: String,
    pub code: String,
    #[serde(default)]
    pub description: Option<String>,
    pub id_type: String,
    #[serde(default)]
    pub unique: bool,
    #[serde(default)]
    pub priority: Option<u32>,
}

/// `idType`, case-insensitively; a 400 listing the allowed values otherwise.
pub fn parse_id_type(s: &str) -> Result<IdentityType, Problem> {
    ID_TYPES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let allowed: Vec<&str> = ID_TYPES.iter().map(|(n, _)| *n).collect();
            Problem::bad_request(format!("idType {s:?} is not one of {}", allowed.join(", ")))
        })
}

/// A code: 1 to 64 of `[A-Za-z0-9_.-]`.
pub fn check_code(code: &str) -> Result<(), Problem> {
    if code.is_empty() {
        return Err(Problem::bad_request("code must not be empty"));
    }
    if code.len() > MAX_CODE_LEN {
        return Err(Problem::bad_request(format!(
            "code must be at most {MAX_CODE_LEN} characters (got {})",
            code.len()
        )));
    }
    if let Some(c) = code
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(Problem::bad_request(format!(
            "code {code:?} may hold only letters, digits, '_', '.' and '-' (not {c:?})"
        )));
    }
    Ok(())
}

/// The namespace a create request asks for, checked (everything but whether the code is taken).
pub fn new_namespace(
    req: CreateNamespace,
    tenant: &Tenant,
    now: i64,
) -> Result<IdentityNamespace, Problem> {
    check_code(&req.code)?;
    if req.name.trim().is_empty() {
        return Err(Problem::bad_request("name must not be empty"));
    }
    let id_type = parse_id_type(&req.id_type)?;
    if req.priority.is_some() && !req.unique {
        return Err(Problem::bad_request(
            "priority applies to unique namespaces only: set \"unique\": true or leave priority out",
        ));
    }
    Ok(IdentityNamespace {
        code: req.code,
        name: req.name,
        description: req.description.filter(|d| !d.is_empty()),
        id_type,
        unique: req.unique,
        priority: req.priority,
        org_id: Some(tenant.org.clone()),
        sandbox: Some(tenant.sandbox.clone()),
        created_at: now,
    })
}

pub async fn list(State(state): State<ControlState>, tenant: Tenant) -> Json<Vec<NamespaceView>> {
    let catalog = state.view.read();
    Json(
        catalog
            .namespaces_of(&tenant.org, &tenant.sandbox)
            .iter()
            .map(Into::into)
            .collect(),
    )
}

pub async fn get(
    State(state): State<ControlState>,
    tenant: Tenant,
    Path(code): Path<String>,
) -> Result<Json<NamespaceView>, Problem> {
    let found = state
        .view
        .read()
        .namespace(&tenant.org, &tenant.sandbox, &code);
    found.as_ref().map(|n| Json(n.into())).ok_or_else(|| {
        Problem::not_found(format!(
            "no identity namespace {code} in sandbox {} of org {}",
            tenant.sandbox, tenant.org
        ))
    })
}

pub async fn create(
    State(state): State<ControlState>,
    tenant: Tenant,
    ApiJson(req): ApiJson<CreateNamespace>,
) -> Result<(StatusCode, Json<NamespaceView>), Problem> {
    let ns = new_namespace(req, &tenant, now_ms())?;
    let _serialized = WRITES.lock().await;
    let taken = state.view.read().namespaces.contains_key(&(
        tenant.org.clone(),
        tenant.sandbox.clone(),
        ns.code.clone(),
    ));
    if taken {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "identity namespace {} already exists in sandbox {} of org {} (namespaces cannot be changed or deleted)",
                ns.code, tenant.sandbox, tenant.org
            ),
        ));
    }
    let replaces_standard = standard_namespaces().iter().any(|s| s.code == ns.code);
    state
        .writer
        .put(&CatalogRecord::Namespace(ns.clone()))
        .await
        .map_err(|e| Problem::unavailable(e.to_string()))?;
    tracing::info!(
        org = %tenant.org,
        sandbox = %tenant.sandbox,
        code = %ns.code,
        id_type = ?ns.id_type,
        unique = ns.unique,
        replaces_standard,
        "identity namespace created"
    );
    Ok((StatusCode::CREATED, Json((&ns).into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> Tenant {
        Tenant {
            org: "acme".into(),
            sandbox: "prod".into(),
        }
    }

    fn req(code: &str, id_type: &str) -> CreateNamespace {
        CreateNamespace {
            name: "Loyalty Member".into(),
            code: code.into(),
            description: None,
            id_type: id_type.into(),
            unique: false,
            priority: None,
        }
    }

    #[test]
    fn codes_are_checked() {
        for ok in ["Loyalty", "a", "x_y.z-1", &"a".repeat(64)] {
            assert!(check_code(ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("", "empty"),
            (&"a".repeat(65) as &str, "64"),
            ("a b", "letters"),
            ("a/b", "letters"),
            ("é", "letters"),
        ] {
            let e = check_code(bad).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.detail.contains(says), "{bad:?}: {}", e.detail);
        }
    }

    #[test]
    fn id_types_are_case_insensitive_and_unknown_ones_listed() {
        assert_eq!(
            parse_id_type("Cross_device").unwrap(),
            IdentityType::CrossDevice
        );
        assert_eq!(parse_id_type("EMAIL").unwrap(), IdentityType::Email);
        let e = parse_id_type("NON_PEOPLE").unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.detail
                .contains("COOKIE, DEVICE, CROSS_DEVICE, EMAIL, PHONE, PARTNER"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn priority_needs_unique() {
        let mut r = req("Loyalty", "CROSS_DEVICE");
        r.priority = Some(2);
        assert_eq!(new_namespace(r, &tenant(), 5).unwrap_err().status, 400);
        let mut r = req("Loyalty", "CROSS_DEVICE");
        r.priority = Some(2);
        r.unique = true;
        let ns = new_namespace(r, &tenant(), 5).unwrap();
        assert_eq!(ns.priority, Some(2));
        assert_eq!(ns.org_id.as_deref(), Some("acme"));
        assert_eq!(ns.sandbox.as_deref(), Some("prod"));
        let mut r = req("Loyalty", "CROSS_DEVICE");
        r.name = " ".into();
        assert!(new_namespace(r, &tenant(), 5)
            .unwrap_err()
            .detail
            .contains("name"));
    }

    #[test]
    fn the_view_has_aeps_shape_and_stable_ids() {
        let ecid = standard_namespaces()
            .into_iter()
            .find(|n| n.code == "ECID")
            .unwrap();
        let v = serde_json::to_value(NamespaceView::from(&ecid)).unwrap();
        assert_eq!(v["id"], 4);
        assert_eq!(v["idType"], "COOKIE");
        assert_eq!(v["status"], "ACTIVE");
        assert_eq!(v["custom"], false);
        assert_eq!(v["namespaceType"], "Standard");
        assert_eq!(v["priority"], serde_json::Value::Null);
        assert!(v.get("createTime").is_some() && v.get("updateTime").is_some());

        let own = new_namespace(req("CRMID", "cross_device"), &tenant(), 7).unwrap();
        let v = serde_json::to_value(NamespaceView::from(&own)).unwrap();
        assert_eq!(v["custom"], true);
        assert_eq!(v["namespaceType"], "Custom");
        assert_eq!(v["idType"], "CROSS_DEVICE");
        assert_eq!(v["createTime"], 7);
        let id = v["id"].as_u64().unwrap();
        assert!((10_000_000..100_000_000).contains(&id));
        assert_eq!(namespace_id(&own), id, "stable");
        let mut dev = own.clone();
        dev.sandbox = Some("dev".into());
        assert_ne!(namespace_id(&dev), id);
    }
}
