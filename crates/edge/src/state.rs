//! What every edge handler shares, and the request-level errors it answers with.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cdp_catalog::tokens::Tokens;
use cdp_catalog::CatalogView;
use cdp_contract::{IdentitySettings, KafkaSettings, Topics};
use cdp_http::Problem;

use crate::body::BodyError;
use crate::ids::IdGenerator;
use crate::produce::{ProduceError, RawProducer};
use crate::throttle::{retry_after_secs, Throttle};
use crate::EdgeSettings;
use cdp_contract::quarantine::Violation;
use cdp_xdm::SchemaValidators;

#[derive(Clone)]
pub struct EdgeState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub settings: EdgeSettings,
    pub catalog: CatalogView,
    pub tokens: Tokens,
    pub producer: RawProducer,
    pub throttle: Throttle,
    pub ids: IdGenerator,
    pub validators: SchemaValidators,
    /// Identity namespaces for the raw topic's key when no identity is primary.
    pub namespace_order: Vec<String>,
}

impl EdgeState {
    pub fn new(
        settings: EdgeSettings,
        kafka: &KafkaSettings,
        topics: &Topics,
        catalog: CatalogView,
        tokens: Tokens,
        identity: &IdentitySettings,
    ) -> Result<Self, ProduceError> {
        let producer = RawProducer::new(
            kafka,
            topics.ingest_raw(),
            topics.events_error(),
            settings.produce_timeout_ms,
        )?;
        crate::metrics::handle();
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                catalog,
                tokens,
                producer,
                throttle: Throttle::default(),
                ids: IdGenerator::new(),
                validators: SchemaValidators::default(),
                namespace_order: identity.namespaces.clone(),
            }),
        })
    }
}

/// A request refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    #[error("no streaming connection with id {0}")]
    UnknownStream(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("stream {stream} is over its limit of {limit} requests per second")]
    Throttled {
        stream: String,
        limit: u32,
        retry_after: Duration,
    },
    #[error(transparent)]
    Body(#[from] BodyError),
    #[error("a batch holds at most {limit} messages (edge.collection_max_messages), this one has {count}; nothing from it was accepted: send it in smaller batches")]
    TooManyMessages { count: usize, limit: usize },
    #[error("{0}; nothing from this request was accepted, retry it")]
    Unavailable(#[from] ProduceError),
    /// A single message refused by its checks (it is kept on the error topic).
    #[error("{message}")]
    Invalid {
        message: String,
        violations: Vec<Violation>,
    },
    /// Something the edge itself could not do (encode a record it built): a bug, answered 500
    /// with nothing from the request sent, never an empty record in its place.
    #[error("{0}; nothing from this request was accepted")]
    Internal(String),
}

/// A problem document with a `violations` member.
fn invalid_body(
    problem: Problem,
    violations: &[Violation],
) -> Result<serde_json::Value, serde_json::Error> {
    let mut body = serde_json::to_value(problem)?;
    body["violations"] = serde_json::to_value(violations)?;
    Ok(body)
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let status = match &self {
            EdgeError::UnknownStream(_) => StatusCode::NOT_FOUND,
            EdgeError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            EdgeError::Forbidden(_) => StatusCode::FORBIDDEN,
            EdgeError::BadRequest(_)
            | EdgeError::Body(BodyError::Read(_))
            | EdgeError::Invalid { .. } => StatusCode::BAD_REQUEST,
            EdgeError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            EdgeError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            EdgeError::Body(BodyError::TooLarge { .. }) | EdgeError::TooManyMessages { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            EdgeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EdgeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry_after = match &self {
            EdgeError::Throttled { retry_after, .. } => Some(retry_after_secs(*retry_after)),
            EdgeError::Unavailable(_) => Some(1),
            _ => None,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self, "request refused");
        } else {
            tracing::debug!(error = %self, %status, "request refused");
        }
        let mut resp = match &self {
            EdgeError::Invalid { violations, .. } => {
                // The problem document, extended with every violation (pointer and message).
                match invalid_body(Problem::new(status, self.to_string()), violations) {
                    Ok(body) => (status, axum::Json(body)).into_response(),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot encode the violations of a refused message");
                        Problem::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("cannot encode the violations of the refused message: {e}"),
                        )
                        .into_response()
                    }
                }
            }
            _ => Problem::new(status, self.to_string()).into_response(),
        };
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
