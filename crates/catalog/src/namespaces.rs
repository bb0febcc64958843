//! Identity namespaces: the standard ones every sandbox has, and the lookup that lets a tenant's
//! stored namespace of the same code replace a standard one.

use crate::model::{IdentityNamespace, IdentityType};
use crate::state::CatalogState;

/// `(code, name, type, unique)` of the namespaces every sandbox has without creating them.
const STANDARD: &[(&str, &str, IdentityType, bool)] = &[
    ("ECID", "Experience Cloud ID", IdentityType::Cookie, false),
    (
        "AAID",
        "Adobe Analytics (legacy ID)",
        IdentityType::Cookie,
        false,
    ),
    (
        "AdCloud",
        "Adobe Advertising Cloud",
        IdentityType::Cookie,
        false,
    ),
    (
        "GAID",
        "Google Ad ID (Android)",
        IdentityType::Device,
        false,
    ),
    (
        "IDFA",
        "Apple ID for Advertisers",
        IdentityType::Device,
        false,
    ),
    ("CRMID", "CRM ID", IdentityType::CrossDevice, true),
    ("Email", "Email", IdentityType::Email, false),
    (
        "Email_LC_SHA256",
        "Emails (SHA256, lowercased)",
        IdentityType::Email,
        false,
    ),
    ("Phone", "Phone", IdentityType::Phone, false),
];

/// The standard namespaces, as the API shows them.
pub fn standard_namespaces() -> Vec<IdentityNamespace> {
    STANDARD.iter().map(standard).collect()
}

fn standard(
    &(code, name, id_type, unique): &(&str, &str, IdentityType, bool),
) -> IdentityNamespace {
    IdentityNamespace {
        code: code.to_string(),
        name: name.to_string(),
        description: None,
        id_type,
        unique,
        priority: unique.then_some(1),
        org_id: None,
        sandbox: None,
        created_at: 0,
    }
}

impl CatalogState {
    /// The namespace `code` means in a sandbox: the tenant's own, else the standard one. Called
    /// for every identity of every profile event: no allocation unless tenants have their own.
    pub fn namespace(&self, org: &str, sandbox: &str, code: &str) -> Option<IdentityNamespace> {
        if !self.namespaces.is_empty() {
            let own =
                self.namespaces
                    .get(&(org.to_string(), sandbox.to_string(), code.to_string()));
            if let Some(n) = own {
                return Some(n.clone());
            }
        }
        STANDARD.iter().find(|s| s.0 == code).map(standard)
    }

    /// What the identity graph needs of a namespace: its type, and its priority if it is
    /// unique (a lower number wins). Allocates nothing when tenants have no namespaces.
    pub fn namespace_kind(
        &self,
        org: &str,
        sandbox: &str,
        code: &str,
    ) -> Option<(IdentityType, Option<u32>)> {
        if !self.namespaces.is_empty() {
            let own =
                self.namespaces
                    .get(&(org.to_string(), sandbox.to_string(), code.to_string()));
            if let Some(n) = own {
                return Some((
                    n.id_type,
                    n.unique.then_some(n.priority.unwrap_or(u32::MAX)),
                ));
            }
        }
        STANDARD
            .iter()
            .find(|s| s.0 == code)
            .map(|s| (s.2, s.3.then_some(1)))
    }

    /// Every namespace of a sandbox: the standard ones (unless replaced) and the tenant's.
    pub fn namespaces_of(&self, org: &str, sandbox: &str) -> Vec<IdentityNamespace> {
        let mut all: Vec<IdentityNamespace> = standard_namespaces();
        for ((o, s, _), ns) in &self.namespaces {
            if o == org && s == sandbox {
                all.retain(|n| n.code != ns.code);
                all.push(ns.clone());
            }
        }
        all.sort_by(|a, b| a.code.cmp(&b.code));
        all
    }

    /// The default merge policy of a sandbox, if one was created.
    pub fn default_merge_policy(&self, org: &str, sandbox: &str) -> Option<&crate::MergePolicy> {
        self.merge_policies
            .values()
            .filter(|m| m.org_id == org && m.sandbox == sandbox && m.is_default)
            .max_by_key(|m| (m.updated_at, m.id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_namespace_replaces_the_standard_one_of_its_sandbox_only() {
        let mut state = CatalogState::default();
        assert!(state
            .namespace("o", "prod", "CRMID")
            .is_some_and(|n| n.unique));
        let mut own = standard_namespaces().remove(5);
        own.unique = false;
        own.org_id = Some("o".into());
        own.sandbox = Some("prod".into());
        state
            .namespaces
            .insert(("o".into(), "prod".into(), "CRMID".into()), own);
        assert!(state
            .namespace("o", "prod", "CRMID")
            .is_some_and(|n| !n.unique));
        assert!(state
            .namespace("o", "dev", "CRMID")
            .is_some_and(|n| n.unique));
        assert!(state.namespace("o", "prod", "Nope").is_none());
        assert_eq!(state.namespaces_of("o", "prod").len(), STANDARD.len());
    }
}
