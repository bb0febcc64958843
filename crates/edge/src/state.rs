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
    #[error("{0}; nothing from this request was accepted, retry it")]
    Unavailable(#[from] ProduceError),
    /// A single message refused by its checks (it is kept on the error topic).
    #[error("{message}")]
    Invalid {
        message: String,
        violations: Vec<Violation>,
    },
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
            EdgeError::Body(BodyError::TooLarge { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
                let mut body = serde_json::to_value(Problem::new(status, self.to_string()))
                    .unwrap_or_default();
                body["violations"] = serde_json::to_value(violations).unwrap_or_default();
                (status, axum::Json(body)).into_response()
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
