//! Why a segment-definition call failed, and the problem document (RFC 9457) it answers with.
//! A PQL error adds an `errors` extension: `[{line, column, message}]`, one per diagnostic.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cdp_catalog::WriteError;
use cdp_http::Problem;
use cdp_pql::{Diagnostic, SchemaError};
use serde::Serialize;

use super::limits::MAX_STREAMING_PER_SANDBOX;

/// One diagnostic of a PQL expression, as the `errors` extension shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PqlErrorItem {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl From<&Diagnostic> for PqlErrorItem {
    fn from(d: &Diagnostic) -> Self {
        Self {
            line: d.span.line,
            column: d.span.col,
            message: d.message.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The body or a query parameter is not acceptable (the message says which field).
    #[error("{0}")]
    BadRequest(String),
    /// The expression does not parse or check: every diagnostic rendered with its line,
    /// column and caret.
    #[error("{rendered}")]
    Pql {
        rendered: String,
        errors: Vec<PqlErrorItem>,
    },
    #[error(
        "sandbox {sandbox} has {MAX_STREAMING_PER_SANDBOX} streaming segment definitions already \
         (the limit is {MAX_STREAMING_PER_SANDBOX}): make one batch or delete one first"
    )]
    TooManyStreaming { sandbox: String },
    #[error("no segment definition {id} in sandbox {sandbox} of org {org}")]
    NotFound {
        id: String,
        org: String,
        sandbox: String,
    },
    #[error("segment definition {id} is used by inSegment of {} (delete or change those first)", .by.join(", "))]
    Referenced { id: String, by: Vec<String> },
    #[error("segment definition {id} is activated by flow {} (remove it from their transformations first)", .flows.join(", "))]
    Activated { id: String, flows: Vec<String> },
    #[error("segment definition {id} would depend on itself through {}", .path.join(" -> "))]
    Cycle { id: String, path: Vec<String> },
    #[error("no profile has the identity {identity} in sandbox {sandbox}")]
    UnknownIdentity { identity: String, sandbox: String },
    #[error("the XDM schema {schema} cannot be read for checking paths: {source}")]
    Schema { schema: String, source: SchemaError },
    /// A stored expression no longer compiles (it did when it was written).
    #[error("the stored expression of segment definition {id} does not compile: {message}")]
    Stored { id: String, message: String },
    #[error("the catalog is not available: {0}")]
    Write(#[from] WriteError),
    /// The profile could not be read where it lives.
    #[error(transparent)]
    Lookup(#[from] crate::profiles::LookupError),
}

impl SegmentError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        SegmentError::BadRequest(detail.into())
    }

    /// `source`'s diagnostics, rendered against it.
    pub fn pql(source: &str, diagnostics: &[&Diagnostic]) -> Self {
        SegmentError::Pql {
            rendered: diagnostics
                .iter()
                .map(|d| d.render(source))
                .collect::<Vec<_>>()
                .join("\n"),
            errors: diagnostics.iter().map(|d| PqlErrorItem::from(*d)).collect(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            SegmentError::BadRequest(_) | SegmentError::Pql { .. } => StatusCode::BAD_REQUEST,
            SegmentError::Cycle { .. } => StatusCode::BAD_REQUEST,
            SegmentError::TooManyStreaming { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            SegmentError::NotFound { .. } | SegmentError::UnknownIdentity { .. } => {
                StatusCode::NOT_FOUND
            }
            SegmentError::Referenced { .. } | SegmentError::Activated { .. } => {
                StatusCode::CONFLICT
            }
            SegmentError::Schema { .. } | SegmentError::Stored { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            SegmentError::Write(_) => StatusCode::SERVICE_UNAVAILABLE,
            SegmentError::Lookup(crate::profiles::LookupError::Unavailable { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            SegmentError::Lookup(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The problem document, without extensions.
    pub fn problem(&self) -> Problem {
        Problem::new(self.status(), self.to_string())
    }
}

/// A problem document with the `errors` extension.
#[derive(Serialize)]
struct WithErrors<'a> {
    #[serde(flatten)]
    problem: Problem,
    errors: &'a [PqlErrorItem],
}

impl IntoResponse for SegmentError {
    fn into_response(self) -> Response {
        if let SegmentError::Lookup(e) = self {
            // The same answer as the Profile API's: 503 with Retry-After while no instance
            // answers for the profile's partition.
            return crate::profiles::lookup_failed(e);
        }
        let problem = self.problem();
        let SegmentError::Pql { errors, .. } = &self else {
            return problem.into_response();
        };
        let mut resp = (
            problem.status_code(),
            axum::Json(WithErrors { problem, errors }),
        )
            .into_response();
        resp.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_pql::ast::Span;

    #[test]
    fn a_pql_error_renders_every_diagnostic_with_its_place() {
        let source = "person.age > 3 and\n  persn.name = \"x\"";
        let a = Diagnostic::new(
            "unknown field `persn.name` in the profile schema",
            Span {
                start: 21,
                end: 31,
                line: 2,
                col: 3,
            },
        );
        let b = Diagnostic::new(
            "`x` is not a number",
            Span {
                start: 13,
                end: 14,
                line: 1,
                col: 14,
            },
        );
        let e = SegmentError::pql(source, &[&a, &b]);
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let detail = e.problem().detail;
        assert!(
            detail.contains("error at line 2, column 3: unknown field `persn.name`"),
            "{detail}"
        );
        assert!(
            detail.contains("  persn.name = \"x\"\n  ^^^^^^^^^^"),
            "{detail}"
        );
        assert!(detail.contains("line 1, column 14"), "{detail}");
        let SegmentError::Pql { errors, .. } = &e else {
            panic!("a PQL error");
        };
        assert_eq!(
            errors[0],
            PqlErrorItem {
                line: 2,
                column: 3,
                message: "unknown field `persn.name` in the profile schema".into()
            }
        );
        let json = serde_json::to_value(WithErrors {
            problem: e.problem(),
            errors,
        })
        .unwrap();
        assert_eq!(json["status"], 400);
        assert_eq!(json["errors"][1]["column"], 14);
        assert!(json["detail"].as_str().is_some_and(|d| d.contains("^")));
    }

    #[test]
    fn statuses_follow_the_kind() {
        let limit = SegmentError::TooManyStreaming {
            sandbox: "prod".into(),
        };
        assert_eq!(limit.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(limit.to_string().contains("500"), "{limit}");
        let used = SegmentError::Referenced {
            id: "a".into(),
            by: vec!["b".into(), "c".into()],
        };
        assert_eq!(used.status(), StatusCode::CONFLICT);
        assert!(used.to_string().contains("b, c"), "{used}");
        let activated = SegmentError::Activated {
            id: "a".into(),
            flows: vec!["f1".into()],
        };
        assert_eq!(activated.status(), StatusCode::CONFLICT);
        assert!(activated.to_string().contains("flow f1"), "{activated}");
    }
}
