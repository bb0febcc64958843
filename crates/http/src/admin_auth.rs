//! The internal query APIs' authentication: a bearer admin token from configuration, the
//! credential control's lookups present to the stages.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// The admin token alone: for the stages' internal query APIs, which follow no catalog and so
/// cannot check an org's credential.
pub async fn require_admin(
    State(admin_token): State<Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => Problem::new(
            StatusCode::UNAUTHORIZED,
            "management API needs 'Authorization: Bearer <admin token>'",
        )
        .into_response(),
        // Digests, so the comparison time does not reveal a matching prefix.
        Some(t) if Sha256::digest(t.as_bytes()) == Sha256::digest(admin_token.as_bytes()) => {
            next.run(req).await
        }
        Some(_) => Problem::new(StatusCode::FORBIDDEN, "admin token is not valid").into_response(),
    }
}
