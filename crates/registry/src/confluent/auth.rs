//! Who may use the Confluent-compatible registry. Every call needs a credential, in the forms a
//! Confluent registry with authentication takes:
//!
//! - `Authorization: Bearer <token>`: control's admin token, or an access token from
//!   `POST /tokens`;
//! - `Authorization: Basic base64(<key id>:<secret>)`: an API key (`cdp keys create` prints
//!   `cdpk.<id>.<secret>`; Confluent clients set `basic.auth.user.info=<id>:<secret>`), or any
//!   user name with the admin token as the password.
//!
//! The admin token is the operator's and the stages' credential: it may do everything. An org's
//! key or token may read, and register or configure subjects other than those of the
//! pipeline's own topics (`<namespace>.…`): their records are the stages' to write, and a
//! schema registered there by someone else would change what every subscriber decodes. The
//! global compatibility level is the admin's too.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use cdp_catalog::tokens::{authenticate_key, key_string, Tokens};
use cdp_catalog::CatalogView;
use sha2::{Digest, Sha256};

use super::http::SrError;

/// What the registry checks credentials against.
#[derive(Clone)]
pub struct RegistryAuth {
    admin_token: Arc<str>,
    catalog: CatalogView,
    tokens: Tokens,
    /// `<namespace>.`: the subjects of the pipeline's own topics start with it.
    project_prefix: String,
}

impl RegistryAuth {
    pub fn new(
        admin_token: Arc<str>,
        catalog: CatalogView,
        tokens: Tokens,
        namespace: &str,
    ) -> Self {
        Self {
            admin_token,
            catalog,
            tokens,
            project_prefix: format!("{namespace}."),
        }
    }

    fn is_admin(&self, presented: &str) -> bool {
        // Digests, so the comparison time does not reveal a matching prefix.
        Sha256::digest(presented.as_bytes()) == Sha256::digest(self.admin_token.as_bytes())
    }

    fn caller(&self, headers: &HeaderMap) -> Result<Caller, SrError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                SrError::unauthorized(
                    "the registry needs credentials: 'Authorization: Bearer <token>' or HTTP Basic '<API key id>:<secret>'",
                )
            })?;
        let org = if let Some(token) = value.strip_prefix("Bearer ") {
            if self.is_admin(token) {
                None
            } else {
                let claims = self
                    .tokens
                    .verify_any(token, &self.catalog.read())
                    .map_err(|e| SrError::unauthorized(&format!("the bearer token: {e}")))?;
                Some(claims.org)
            }
        } else if let Some(basic) = value.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    SrError::unauthorized("Basic credentials are not base64 of '<user>:<password>'")
                })?;
            let (user, password) = decoded.split_once(':').ok_or_else(|| {
                SrError::unauthorized("Basic credentials are not '<user>:<password>'")
            })?;
            if self.is_admin(password) {
                None
            } else {
                let catalog = self.catalog.read();
                let key = authenticate_key(&catalog, &key_string(user, password))
                    .map_err(|e| SrError::unauthorized(&format!("the API key: {e}")))?;
                Some(key.org_id.clone())
            }
        } else {
            return Err(SrError::unauthorized(
                "the Authorization header must be 'Bearer <token>' or 'Basic <base64>'",
            ));
        };
        Ok(Caller {
            org,
            project_prefix: self.project_prefix.clone(),
        })
    }
}

/// The caller of one request: the admin (`org` is `None`) or an org's key or token.
#[derive(Debug, Clone)]
pub struct Caller {
    org: Option<String>,
    project_prefix: String,
}

impl Caller {
    /// Whether this caller may register under, or configure, `subject` (`None`: the global
    /// config).
    pub(crate) fn may_write(&self, subject: Option<&str>) -> Result<(), SrError> {
        let Some(org) = &self.org else {
            return Ok(());
        };
        match subject {
            None => Err(SrError::forbidden(&format!(
                "the global compatibility level is the operator's to set (admin token); org {org}'s credential may set a subject's"
            ))),
            Some(s) if s.starts_with(&self.project_prefix) => Err(SrError::forbidden(&format!(
                "subject '{s}' belongs to the pipeline's own topics ({}…): only the stages register its schemas",
                self.project_prefix
            ))),
            Some(_) => Ok(()),
        }
    }
}

/// Checks the credential of every request and hands the handlers who called.
pub async fn require_credential(
    State(auth): State<RegistryAuth>,
    mut req: Request,
    next: Next,
) -> Response {
    match auth.caller(req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            let mut response = e.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Basic realm=\"cdp-registry\""),
                );
            }
            response
        }
    }
}
