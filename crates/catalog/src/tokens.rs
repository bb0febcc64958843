//! Access tokens: HS256 JWTs issued from an API key for a number of days, scoped to the key's
//! org. Verification checks the signature and expiry, then the catalog: the key must still exist
//! and be at the generation the token was issued under, so deleting or rotating a key revokes
//! its tokens immediately. A token may be narrowed to some of its key's roles and sandboxes;
//! what it may do is always within what its key may do now.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{ApiKey, Role};
use crate::state::CatalogState;

const ISSUER: &str = "cdp-control";
const KEY_PREFIX: &str = "cdpk";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    /// The API key id.
    pub sub: String,
    pub org: String,
    /// The key's generation when the token was issued.
    pub gen: u32,
    pub iat: i64,
    pub exp: i64,
    /// Narrowed to these of its key's roles; absent: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<Role>>,
    /// Narrowed to these sandboxes; absent: all its key reaches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandboxes: Option<Vec<String>>,
}

/// What a token is asked to be narrowed to (`POST /tokens`' `roles` and `sandboxes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    pub roles: Option<Vec<Role>>,
    pub sandboxes: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed or its signature is invalid")]
    Invalid,
    #[error("token has expired")]
    Expired,
    #[error("token's API key no longer exists")]
    UnknownKey,
    #[error("token's API key was rotated; request a new token")]
    Rotated,
    #[error("token is for org {token_org}, not {wanted}")]
    WrongOrg { token_org: String, wanted: String },
    #[error("token names org {token_org}, but its API key belongs to org {key_org}")]
    NotTheKeysOrg { token_org: String, key_org: String },
    #[error("a token cannot have role '{0}': its API key does not")]
    BeyondKeyRole(Role),
    #[error("a token cannot reach sandbox '{0}': its API key does not")]
    BeyondKeySandbox(String),
    #[error("none of the token's sandboxes is its API key's any more; request a new token")]
    NoSandboxLeft,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("API key must look like cdpk.<id>.<secret>")]
    Malformed,
    #[error("unknown API key or wrong secret")]
    Unknown,
}

/// Signs and verifies tokens with one shared secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn issue(
        &self,
        key: &ApiKey,
        days: u32,
        now_s: i64,
    ) -> Result<(String, Claims), TokenError> {
        self.issue_narrowed(key, days, now_s, Narrowing::default())
    }

    /// A token for some of `key`'s roles and sandboxes: asking for more than the key has is an
    /// error, not a silent cut.
    pub fn issue_narrowed(
        &self,
        key: &ApiKey,
        days: u32,
        now_s: i64,
        narrowing: Narrowing,
    ) -> Result<(String, Claims), TokenError> {
        if let Some(roles) = &narrowing.roles {
            if let Some(r) = roles.iter().find(|r| !key.may(**r)) {
                return Err(TokenError::BeyondKeyRole(*r));
            }
        }
        if let Some(sandboxes) = &narrowing.sandboxes {
            if let Some(s) = sandboxes.iter().find(|s| !key.reaches_sandbox(s)) {
                return Err(TokenError::BeyondKeySandbox(s.clone()));
            }
        }
        let claims = Claims {
            iss: ISSUER.to_string(),
            sub: key.id.clone(),
            org: key.org_id.clone(),
            gen: key.generation,
            iat: now_s,
            exp: now_s + i64::from(days) * 86_400,
            roles: narrowing.roles,
            sandboxes: narrowing.sandboxes,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|_| TokenError::Invalid)?;
        Ok((token, claims))
    }

    /// Checks a token for a request to a stream of `org`.
    pub fn verify(
        &self,
        token: &str,
        catalog: &CatalogState,
        org: &str,
    ) -> Result<Claims, TokenError> {
        let claims = self.verify_any(token, catalog)?;
        if claims.org != org {
            return Err(TokenError::WrongOrg {
                token_org: claims.org,
                wanted: org.to_string(),
            });
        }
        Ok(claims)
    }

    /// Checks a token whatever org it is for (signature, expiry, its key still there at the
    /// token's generation, the key's org): the caller decides what that org may do.
    pub fn verify_any(&self, token: &str, catalog: &CatalogState) -> Result<Claims, TokenError> {
        let claims = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            })?
            .claims;
        let key = catalog
            .api_keys
            .get(&claims.sub)
            .ok_or(TokenError::UnknownKey)?;
        if key.generation != claims.gen {
            return Err(TokenError::Rotated);
        }
        // Only a signer could have put another org in the claims (the development secret is
        // public): the key decides the org, not the token.
        if claims.org != key.org_id {
            return Err(TokenError::NotTheKeysOrg {
                token_org: claims.org,
                key_org: key.org_id.clone(),
            });
        }
        Ok(claims)
    }
}

/// A new random secret and the full API key string shown to the user once.
pub fn new_secret(id: &str) -> (String, String) {
    let secret = hex::encode(rand::random::<[u8; 24]>());
    let full = format!("{KEY_PREFIX}.{id}.{secret}");
    (secret, full)
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// An API key string from its id and secret (`cdpk.<id>.<secret>`), as HTTP Basic
/// credentials (`<id>:<secret>`) carry them.
pub fn key_string(id: &str, secret: &str) -> String {
    format!("{KEY_PREFIX}.{id}.{secret}")
}

/// Finds the key an API key string names and checks its secret.
pub fn authenticate_key<'a>(
    catalog: &'a CatalogState,
    presented: &str,
) -> Result<&'a ApiKey, KeyError> {
    let mut parts = presented.splitn(3, '.');
    let (Some(KEY_PREFIX), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(KeyError::Malformed);
    };
    let key = catalog.api_keys.get(id).ok_or(KeyError::Unknown)?;
    // Comparing digests keeps the comparison independent of where the secrets first differ.
    if key.secret_sha256 != hash_secret(secret) {
        return Err(KeyError::Unknown);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog_with(key: &ApiKey) -> CatalogState {
        let mut c = CatalogState::default();
        c.api_keys.insert(key.id.clone(), key.clone());
        c
    }

    fn key(secret: &str) -> ApiKey {
        ApiKey {
            id: "k1".into(),
            name: "web".into(),
            org_id: "ORG".into(),
            secret_sha256: hash_secret(secret),
            generation: 1,
            created_at: 0,
            rotated_at: None,
            roles: vec![Role::Send],
            sandboxes: vec![],
        }
    }

    fn now() -> i64 {
        crate::clock::now_ms() / 1000
    }

    #[test]
    fn issued_token_verifies_for_its_org_only() {
        let t = Tokens::new("s3cret");
        let k = key("x");
        let cat = catalog_with(&k);
        let (tok, _) = t.issue(&k, 3, now()).unwrap();
        assert!(t.verify(&tok, &cat, "ORG").is_ok());
        assert!(matches!(
            t.verify(&tok, &cat, "OTHER"),
            Err(TokenError::WrongOrg { .. })
        ));
    }

    #[test]
    fn a_token_naming_another_org_than_its_keys_is_refused() {
        let t = Tokens::new("s3cret");
        let k = key("x");
        let cat = catalog_with(&k);
        let other = ApiKey {
            org_id: "OTHER".into(),
            ..k.clone()
        };
        // Signed with the right secret, for key k1, but claiming OTHER.
        let (tok, claims) = t.issue(&other, 1, now()).unwrap();
        assert_eq!((claims.sub.as_str(), claims.org.as_str()), ("k1", "OTHER"));
        assert_eq!(
            t.verify(&tok, &cat, "OTHER"),
            Err(TokenError::NotTheKeysOrg {
                token_org: "OTHER".into(),
                key_org: "ORG".into()
            })
        );
    }

    #[test]
    fn expired_forged_rotated_deleted() {
        let t = Tokens::new("s3cret");
        let k = key("x");
        let mut cat = catalog_with(&k);
        let (old, _) = t.issue(&k, 1, now() - 2 * 86_400).unwrap();
        assert_eq!(t.verify(&old, &cat, "ORG"), Err(TokenError::Expired));
        let (forged, _) = Tokens::new("other").issue(&k, 1, now()).unwrap();
        assert_eq!(t.verify(&forged, &cat, "ORG"), Err(TokenError::Invalid));
        let (tok, _) = t.issue(&k, 1, now()).unwrap();
        cat.api_keys.get_mut("k1").unwrap().generation = 2;
        assert_eq!(t.verify(&tok, &cat, "ORG"), Err(TokenError::Rotated));
        cat.api_keys.clear();
        assert_eq!(t.verify(&tok, &cat, "ORG"), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_token_is_narrowed_within_its_key_never_beyond() {
        let t = Tokens::new("s3cret");
        let k = ApiKey {
            roles: vec![Role::Send, Role::Read],
            sandboxes: vec!["prod".into(), "dev".into()],
            ..key("x")
        };
        let narrow = Narrowing {
            roles: Some(vec![Role::Read]),
            sandboxes: Some(vec!["dev".into()]),
        };
        let (_, claims) = t.issue_narrowed(&k, 1, now(), narrow).unwrap();
        assert_eq!(claims.roles, Some(vec![Role::Read]));
        let more_roles = Narrowing {
            roles: Some(vec![Role::Manage]),
            sandboxes: None,
        };
        assert_eq!(
            t.issue_narrowed(&k, 1, now(), more_roles).unwrap_err(),
            TokenError::BeyondKeyRole(Role::Manage)
        );
        let more_sandboxes = Narrowing {
            roles: None,
            sandboxes: Some(vec!["qa".into()]),
        };
        assert_eq!(
            t.issue_narrowed(&k, 1, now(), more_sandboxes).unwrap_err(),
            TokenError::BeyondKeySandbox("qa".into())
        );
    }

    #[test]
    fn api_key_string_authenticates() {
        let (secret, full) = new_secret("k1");
        let cat = catalog_with(&key(&secret));
        assert_eq!(authenticate_key(&cat, &full).unwrap().id, "k1");
        assert_eq!(
            authenticate_key(&cat, "cdpk.k1.wrong").unwrap_err(),
            KeyError::Unknown
        );
        assert_eq!(
            authenticate_key(&cat, "nonsense").unwrap_err(),
            KeyError::Malformed
        );
    }
}
