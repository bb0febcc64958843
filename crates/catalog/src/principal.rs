//! Who is calling a management API, and what they may do there.
//!
//! Two kinds of principal:
//! - the **operator**, holding control's admin token: every org, every role (bootstrap, the
//!   stages' own calls);
//! - an **org credential**: an API key (HTTP Basic `<key id>:<secret>`, as Confluent clients
//!   send it) or an access token issued from one (`Authorization: Bearer`). It acts in its key's
//!   org only, in the key's sandboxes, with the key's roles (a token may be narrowed further).
//!   The catalog decides, at every call: a deleted key, or one rotated past the token's
//!   generation, stops working at once, and a change of its roles takes effect at once.
//!
//! The credential schemes are the registry's too, so one [`Authenticator`] serves every API.

use std::sync::Arc;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::model::{sandbox_reached, ApiKey, Role};
use crate::state::CatalogState;
use crate::tokens::{authenticate_key, key_string, KeyError, TokenError, Tokens};
use crate::view::CatalogView;

/// Who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator,
    Org(OrgCredential),
}

/// An org's API key or access token, with what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgCredential {
    pub key_id: String,
    pub org: String,
    pub roles: Vec<Role>,
    /// Empty: every sandbox of the org.
    pub sandboxes: Vec<String>,
}

impl OrgCredential {
    pub fn of_key(key: &ApiKey) -> Self {
        Self {
            key_id: key.id.clone(),
            org: key.org_id.clone(),
            roles: key.roles.clone(),
            sandboxes: key.sandboxes.clone(),
        }
    }

    pub fn may(&self, role: Role) -> bool {
        Role::granted(&self.roles, role)
    }

    pub fn reaches(&self, sandbox: &str) -> bool {
        sandbox_reached(&self.sandboxes, sandbox)
    }
}

/// Why a request is not let in: the credential is missing or not valid (401).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("this API needs credentials: 'Authorization: Bearer <admin token or access token>' or HTTP Basic '<API key id>:<secret>'")]
    Missing,
    #[error("the Authorization header must be 'Bearer <token>' or 'Basic <base64 of id:secret>'")]
    Malformed,
    #[error("the bearer token: {0}")]
    Token(#[from] TokenError),
    #[error("the API key: {0}")]
    Key(#[from] KeyError),
}

/// Why a valid credential may not do what it asks (403).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Denied {
    #[error("this API is the operator's (admin token); org {org}'s credential cannot use it")]
    OperatorOnly { org: String },
    #[error("the credential is for org {credential_org}, not {wanted}")]
    OtherOrg {
        credential_org: String,
        wanted: String,
    },
    #[error("the credential does not reach sandbox '{sandbox}' of org {org}")]
    Sandbox { org: String, sandbox: String },
    #[error("the credential lacks role '{wanted}' (it has: {had})")]
    Role { wanted: Role, had: String },
}

impl Principal {
    /// Whether this principal may act as `role` in `org`'s `sandbox`.
    pub fn authorize(&self, org: &str, sandbox: &str, role: Role) -> Result<(), Denied> {
        let Principal::Org(c) = self else {
            return Ok(());
        };
        if c.org != org {
            return Err(Denied::OtherOrg {
                credential_org: c.org.clone(),
                wanted: org.to_string(),
            });
        }
        if !c.reaches(sandbox) {
            return Err(Denied::Sandbox {
                org: org.to_string(),
                sandbox: sandbox.to_string(),
            });
        }
        if !c.may(role) {
            return Err(Denied::Role {
                wanted: role,
                had: c
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(())
    }

    /// Only the operator.
    pub fn operator_only(&self) -> Result<(), Denied> {
        match self {
            Principal::Operator => Ok(()),
            Principal::Org(c) => Err(Denied::OperatorOnly { org: c.org.clone() }),
        }
    }

    /// The org an org credential is bound to; `None` for the operator.
    pub fn org(&self) -> Option<&str> {
        match self {
            Principal::Operator => None,
            Principal::Org(c) => Some(&c.org),
        }
    }

    /// Whether a record of `org` that belongs to no sandbox (a dataset, a batch) is visible to
    /// this principal.
    pub fn sees_org(&self, org: &str) -> bool {
        self.org().is_none_or(|o| o == org)
    }

    /// Whether a record of `org`'s `sandbox` is visible to this principal (lists and lookups of
    /// resources addressed by id, not by the org and sandbox headers).
    pub fn sees(&self, org: &str, sandbox: &str) -> bool {
        match self {
            Principal::Operator => true,
            Principal::Org(c) => c.org == org && c.reaches(sandbox),
        }
    }
}

/// Checks credentials against the admin token and the catalog.
#[derive(Clone)]
pub struct Authenticator {
    admin_token: Arc<str>,
    catalog: CatalogView,
    tokens: Tokens,
}

impl Authenticator {
    pub fn new(admin_token: Arc<str>, catalog: CatalogView, tokens: Tokens) -> Self {
        Self {
            admin_token,
            catalog,
            tokens,
        }
    }

    fn is_admin(&self, presented: &str) -> bool {
        // Digests, so the comparison time does not reveal a matching prefix.
        Sha256::digest(presented.as_bytes()) == Sha256::digest(self.admin_token.as_bytes())
    }

    /// The credential of an API key string (`cdpk.<id>.<secret>`), as typed into a form.
    pub fn api_key(&self, presented: &str) -> Result<(OrgCredential, u32), KeyError> {
        let catalog = self.catalog.read();
        let key = authenticate_key(&catalog, presented.trim())?;
        Ok((OrgCredential::of_key(key), key.generation))
    }

    /// The credential of key `key_id` if it still exists at `generation` (a session opened
    /// with a key ends when the key is rotated or deleted, and follows its roles).
    pub fn key_at(&self, key_id: &str, generation: u32) -> Option<OrgCredential> {
        let catalog = self.catalog.read();
        catalog
            .api_keys
            .get(key_id)
            .filter(|k| k.generation == generation)
            .map(OrgCredential::of_key)
    }

    /// The principal an `Authorization` header's value names.
    pub fn principal(&self, authorization: Option<&str>) -> Result<Principal, AuthError> {
        let value = authorization.map(str::trim).ok_or(AuthError::Missing)?;
        if let Some(token) = strip_scheme(value, "Bearer") {
            if self.is_admin(token) {
                return Ok(Principal::Operator);
            }
            let credential = token_credential(&self.tokens, token, &self.catalog.read())?;
            return Ok(Principal::Org(credential));
        }
        if let Some(basic) = strip_scheme(value, "Basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(AuthError::Malformed)?;
            let (user, password) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
            if self.is_admin(password) {
                return Ok(Principal::Operator);
            }
            let catalog = self.catalog.read();
            let key = authenticate_key(&catalog, &key_string(user, password))?;
            return Ok(Principal::Org(OrgCredential::of_key(key)));
        }
        Err(AuthError::Malformed)
    }
}

/// What an access token may do now: its key's org, and its key's current roles and sandboxes
/// narrowed by the token's own.
pub fn token_credential(
    tokens: &Tokens,
    token: &str,
    catalog: &CatalogState,
) -> Result<OrgCredential, TokenError> {
    let claims = tokens.verify_any(token, catalog)?;
    let key = catalog
        .api_keys
        .get(&claims.sub)
        .ok_or(TokenError::UnknownKey)?;
    let mut credential = OrgCredential::of_key(key);
    if let Some(roles) = claims.roles {
        credential.roles.retain(|r| roles.contains(r));
    }
    if let Some(sandboxes) = claims.sandboxes {
        // Within the key's: a key narrowed after the token was issued narrows it too. A token
        // left with no sandbox reaches none (not all, as an empty list of a key means).
        let within: Vec<String> = sandboxes
            .into_iter()
            .filter(|s| key.reaches_sandbox(s))
            .collect();
        if within.is_empty() {
            return Err(TokenError::NoSandboxLeft);
        }
        credential.sandboxes = within;
    }
    Ok(credential)
}

/// `value` without its scheme (`Bearer`/`Basic`, in any case, as RFC 9110 allows), if it has
/// that scheme and a non-empty credential.
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    (given.eq_ignore_ascii_case(scheme) && !rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(roles: &[Role], sandboxes: &[&str]) -> Principal {
        Principal::Org(OrgCredential {
            key_id: "k".into(),
            org: "A".into(),
            roles: roles.to_vec(),
            sandboxes: sandboxes.iter().map(|s| s.to_string()).collect(),
        })
    }

    #[test]
    fn an_org_credential_acts_in_its_org_sandboxes_and_roles_only() {
        let reader = credential(&[Role::Read], &["prod"]);
        assert_eq!(reader.authorize("A", "prod", Role::Read), Ok(()));
        assert!(matches!(
            reader.authorize("B", "prod", Role::Read),
            Err(Denied::OtherOrg { .. })
        ));
        assert!(matches!(
            reader.authorize("A", "dev", Role::Read),
            Err(Denied::Sandbox { .. })
        ));
        assert!(matches!(
            reader.authorize("A", "prod", Role::Manage),
            Err(Denied::Role {
                wanted: Role::Manage,
                ..
            })
        ));
        let manager = credential(&[Role::Manage], &[]);
        assert_eq!(manager.authorize("A", "any", Role::Read), Ok(()));
        assert!(manager.authorize("A", "any", Role::Send).is_err());
        assert!(manager.operator_only().is_err());
        assert!(manager.sees("A", "dev") && !manager.sees("B", "dev"));
        assert!(reader.sees("A", "prod") && !reader.sees("A", "dev"));
        assert_eq!(
            Principal::Operator.authorize("B", "x", Role::Manage),
            Ok(())
        );
        assert!(Principal::Operator.sees("B", "x"));
        assert!(reader.sees_org("A") && !reader.sees_org("B"));
    }

    #[test]
    fn schemes_are_case_insensitive_and_need_a_credential() {
        assert_eq!(strip_scheme("Bearer abc", "Bearer"), Some("abc"));
        assert_eq!(strip_scheme("bearer  abc ", "Bearer"), Some("abc"));
        assert_eq!(strip_scheme("Bearer ", "Bearer"), None);
        assert_eq!(strip_scheme("Basic abc", "Bearer"), None);
    }
}
