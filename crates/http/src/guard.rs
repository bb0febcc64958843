//! The management APIs' guard: every route needs a credential ([`cdp_catalog::principal`]),
//! and says who may use it.
//!
//! - [`operator_only`]: the admin token only (an org's credential gets 403).
//! - [`org_scoped`]: the admin token, or an org's credential within its org: the request's
//!   `x-gw-ims-org-id` must be the credential's org (absent, it is set to it), its
//!   `x-sandbox-name` (default `prod`) one the credential reaches, and the credential must hold
//!   `read` for `GET`/`HEAD`, `manage` for anything else. The handlers behind it address every
//!   record by those headers, so another org's resource is a 404 there.
//!
//! Both put the caller's [`Principal`] in the request's extensions for the handlers.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cdp_catalog::principal::{AuthError, Authenticator, Denied, Principal};
use cdp_catalog::Role;

use crate::problem::Problem;

/// AEP's org header: which org a request is about.
pub const ORG_HEADER: &str = "x-gw-ims-org-id";
/// AEP's sandbox header; `prod` when absent.
pub const SANDBOX_HEADER: &str = "x-sandbox-name";
pub const DEFAULT_SANDBOX: &str = "prod";

/// The answer to a credential that is not let in: 401 (with the schemes the APIs take) when
/// there is none to check, 403 when the one presented is refused (a wrong admin token, a
/// forged, expired or revoked token, a wrong key secret), as the edge's collection endpoints
/// answer (seed 002).
pub fn refused(e: &AuthError) -> Response {
    match e {
        AuthError::Missing | AuthError::Malformed => unauthorized(e),
        AuthError::Token(_) | AuthError::Key(_) => {
            Problem::new(StatusCode::FORBIDDEN, e.to_string()).into_response()
        }
    }
}

/// 401 with the schemes the APIs take.
pub fn unauthorized(e: &AuthError) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, e.to_string()).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"cdp\", Basic realm=\"cdp\""),
    );
    response
}

pub fn forbidden(e: &Denied) -> Response {
    Problem::new(StatusCode::FORBIDDEN, e.to_string()).into_response()
}

fn principal(auth: &Authenticator, req: &Request) -> Result<Principal, AuthError> {
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    auth.principal(authorization)
}

/// The role a request needs in its org: reading is `GET` and `HEAD`.
pub fn role_of(method: &Method) -> Role {
    if method == Method::GET || method == Method::HEAD {
        Role::Read
    } else {
        Role::Manage
    }
}

pub async fn operator_only(
    State(auth): State<Authenticator>,
    mut req: Request,
    next: Next,
) -> Response {
    let who = match principal(&auth, &req) {
        Ok(p) => p,
        Err(e) => return refused(&e),
    };
    if let Err(denied) = who.operator_only() {
        return forbidden(&denied);
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}

pub async fn org_scoped(
    State(auth): State<Authenticator>,
    mut req: Request,
    next: Next,
) -> Response {
    let who = match principal(&auth, &req) {
        Ok(p) => p,
        Err(e) => return refused(&e),
    };
    if let Principal::Org(credential) = &who {
        let headers = req.headers_mut();
        let org = match headers.get(ORG_HEADER) {
            Some(v) => v.to_str().unwrap_or("").to_string(),
            None => {
                // The credential names the org; the handlers read it from the header.
                match HeaderValue::from_str(&credential.org) {
                    Ok(v) => {
                        headers.insert(ORG_HEADER, v);
                    }
                    Err(_) => {
                        return Problem::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "the credential's org is not a valid header value",
                        )
                        .into_response()
                    }
                }
                credential.org.clone()
            }
        };
        let sandbox = headers
            .get(SANDBOX_HEADER)
            .map(|v| v.to_str().unwrap_or("").to_string())
            .unwrap_or_else(|| DEFAULT_SANDBOX.to_string());
        if let Err(denied) = who.authorize(&org, &sandbox, role_of(req.method())) {
            return forbidden(&denied);
        }
    }
    req.extensions_mut().insert(who);
    next.run(req).await
}
