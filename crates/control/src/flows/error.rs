//! Why a Flow Service call failed, and the problem document (RFC 9457) it answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cdp_catalog::{SecretError, WriteError};
use cdp_http::Problem;

use crate::http::Tenant;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The body is not acceptable: the message names the field (never a secret's value).
    #[error("{0}")]
    BadRequest(String),
    #[error("no {kind} {id} in sandbox {sandbox} of org {org}")]
    NotFound {
        kind: &'static str,
        id: String,
        org: String,
        sandbox: String,
    },
    #[error("no connection spec {0}: GET /connectionSpecs lists them")]
    UnknownSpec(String),
    #[error(
        "a {kind} is changed under 'If-Match: \"<etag>\"', with the etag of the {kind} as last \
         read (GET {collection}/{id} answers it)",
        kind = .of.kind,
        collection = .of.collection
    )]
    PreconditionRequired { of: Versioned, id: String },
    #[error(
        "{kind} {id} has changed since the etag named in If-Match was read (another change came \
         first): GET {collection}/{id} again and apply the change to what it answers",
        kind = .of.kind,
        collection = .of.collection
    )]
    PreconditionFailed { of: Versioned, id: String },
    /// Something still uses what a `DELETE` would remove.
    #[error("{kind} {id} is used by {} (delete or change those first)", .by.join(", "))]
    InUse {
        kind: &'static str,
        id: String,
        by: Vec<String>,
    },
    /// The connection's credentials were sealed with another key (or altered).
    #[error("the credentials of connection {id} cannot be opened: {source}")]
    Sealed { id: String, source: SecretError },
    #[error("the catalog is not available: {0}")]
    Write(#[from] WriteError),
}

/// A kind of record changed under `If-Match`: what messages call it, and the collection whose
/// `GET {collection}/{id}` answers its etag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versioned {
    pub kind: &'static str,
    pub collection: &'static str,
}

pub const FLOW: Versioned = Versioned {
    kind: "flow",
    collection: "/flows",
};

pub const CONNECTION: Versioned = Versioned {
    kind: "connection",
    collection: "/connections",
};

impl FlowError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        FlowError::BadRequest(detail.into())
    }

    pub fn not_found(kind: &'static str, id: &str, tenant: &Tenant) -> Self {
        FlowError::NotFound {
            kind,
            id: id.to_string(),
            org: tenant.org.clone(),
            sandbox: tenant.sandbox.clone(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            FlowError::BadRequest(_) => StatusCode::BAD_REQUEST,
            FlowError::NotFound { .. } | FlowError::UnknownSpec(_) => StatusCode::NOT_FOUND,
            FlowError::PreconditionRequired { .. } => StatusCode::PRECONDITION_REQUIRED,
            FlowError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            FlowError::InUse { .. } => StatusCode::CONFLICT,
            FlowError::Sealed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            FlowError::Write(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn problem(&self) -> Problem {
        Problem::new(self.status(), self.to_string())
    }
}

impl IntoResponse for FlowError {
    fn into_response(self) -> Response {
        if let FlowError::Sealed { id, source } = &self {
            tracing::error!(connection = %id, error = %source, "cannot open sealed credentials");
        }
        self.problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_kind() {
        let tenant = Tenant {
            org: "o".into(),
            sandbox: "dev".into(),
        };
        let missing = FlowError::not_found("flow", "f1", &tenant);
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            missing.to_string(),
            "no flow f1 in sandbox dev of org o",
            "{missing}"
        );
        let required = FlowError::PreconditionRequired {
            of: FLOW,
            id: "f".into(),
        };
        assert_eq!(required.status().as_u16(), 428);
        assert!(required.to_string().contains("GET /flows/f"), "{required}");
        let failed = FlowError::PreconditionFailed {
            of: CONNECTION,
            id: "c".into(),
        };
        assert_eq!(failed.status().as_u16(), 412);
        assert!(failed.to_string().starts_with("connection c"), "{failed}");
        let sealed = FlowError::Sealed {
            id: "c".into(),
            source: SecretError::WrongKey,
        };
        assert_eq!(sealed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(sealed.to_string().contains("another key"), "{sealed}");
        let used = FlowError::InUse {
            kind: "connection",
            id: "c".into(),
            by: vec!["target connection t".into()],
        };
        assert_eq!(used.status(), StatusCode::CONFLICT);
        assert!(used.to_string().contains("target connection t"), "{used}");
    }
}
