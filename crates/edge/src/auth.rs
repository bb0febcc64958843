//! Bearer-token checks for streams that require authentication. The collection endpoints
//! answer 401 for a missing header and 403 for a bad token (seed 002); the streaming-ingest
//! endpoint answers 401 for both (seed 001). The caller picks the status.

use axum::http::{header, HeaderMap};
use cdp_catalog::principal::{token_credential, Denied, Principal};
use cdp_catalog::tokens::{TokenError, Tokens};
use cdp_catalog::CatalogState;
use cdp_catalog::{Role, Stream};

#[derive(Debug, thiserror::Error)]
pub enum AuthFailure {
    #[error("this stream requires 'Authorization: Bearer <access token>'")]
    Missing,
    #[error("access token refused: {0}")]
    Refused(#[from] TokenError),
    /// A valid token of another org, or without role `send`, or not for the stream's sandbox.
    #[error("access token refused: {0}")]
    NotAllowed(#[from] Denied),
}

pub fn authorize(
    headers: &HeaderMap,
    stream: &Stream,
    tokens: &Tokens,
    catalog: &CatalogState,
) -> Result<(), AuthFailure> {
    if !stream.authentication_required {
        return Ok(());
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthFailure::Missing)?;
    // Another org's token, one without role send, or one not for the stream's sandbox.
    let credential = token_credential(tokens, token, catalog)?;
    Principal::Org(credential).authorize(&stream.org_id, &stream.sandbox, Role::Send)?;
    Ok(())
}
