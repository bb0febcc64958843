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
//! key or token with role `read` may read; with `manage` it may also register or configure
//! subjects other than those of the pipeline's own topics (`<namespace>.…`): their records are the stages' to write, and a
//! schema registered there by someone else would change what every subscriber decodes. The
//! global compatibility level is the admin's too.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cdp_catalog::principal::{Authenticator, Principal};

use super::http::SrError;

/// What the registry checks credentials against.
#[derive(Clone)]
pub struct RegistryAuth {
    auth: Authenticator,
    /// `<namespace>.`: the subjects of the pipeline's own topics start with it.
    project_prefix: String,
}

impl RegistryAuth {
    pub fn new(auth: Authenticator, namespace: &str) -> Self {
        Self {
            auth,
            project_prefix: format!("{namespace}."),
        }
    }

    fn caller(&self, req: &Request) -> Result<Caller, SrError> {
        let authorization = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let org = match self
            .auth
            .principal(authorization)
            .map_err(|e| SrError::unauthorized(&e.to_string()))?
        {
            Principal::Operator => None,
            Principal::Org(credential) => {
                // Subjects are not per org or sandbox yet: the role is what is checked here,
                // and an org header, as everywhere, must be the credential's own.
                if let Some(org) = req.headers().get(cdp_http::ORG_HEADER) {
                    if org.as_bytes() != credential.org.as_bytes() {
                        return Err(SrError::forbidden(&format!(
                            "the credential is for org {}, not {}",
                            credential.org,
                            String::from_utf8_lossy(org.as_bytes())
                        )));
                    }
                }
                let role = cdp_http::role_of(req.method());
                if !credential.may(role) {
                    return Err(SrError::forbidden(&format!(
                        "org {}'s credential lacks role '{role}' for this call",
                        credential.org
                    )));
                }
                Some(credential.org)
            }
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
    match auth.caller(&req) {
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
