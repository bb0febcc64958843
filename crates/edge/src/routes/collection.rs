//! `POST /collection/{id}` (one XDM message) and `POST /collection/batch/{id}` (many, answered
//! 207 with one entry per message, in order). Accepted messages go to the raw topic; refused
//! ones go to the error topic with their reason (the batch's failed records), and the answer
//! waits for the broker to acknowledge both.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use cdp_catalog::CatalogState;
use cdp_catalog::Stream;
use cdp_contract::envelope::Source;
use cdp_contract::quarantine::{ErrorRecord, Stage, Violation};
use cdp_contract::RawHeaders;
use cdp_xdm::{filed_under, partition_key, target, MessageRefs};
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use serde_json::value::RawValue;

use super::{admit, is_json, json_error, media_type, now_ms, TokenRefusal};
use crate::body::read_limited;
use crate::ids::xaction_id;
use crate::message::{check, Rejection};
use crate::produce::{Destination, RawEvent};
use crate::state::{EdgeError, EdgeState};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectionQuery {
    /// AEP's debugging mode: validate bodies now and answer 400 with the violations.
    #[serde(default)]
    pub sync_validation: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SingleResponse {
    pub inlet_id: String,
    pub xaction_id: String,
    pub received_time_ms: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchResponse {
    pub inlet_id: String,
    pub batch_id: String,
    pub received_time_ms: i64,
    pub responses: Vec<MessageResponse>,
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum MessageResponse {
    #[serde(rename_all = "camelCase")]
    Accepted { xaction_id: String },
    #[serde(rename_all = "camelCase")]
    Rejected { status_code: u16, message: String },
}

/// The batch envelope; messages stay unparsed JSON text until each is checked.
#[derive(Deserialize)]
struct BatchRequest<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
}

/// What one request shares while its messages are judged.
struct Judge<'a> {
    state: &'a EdgeState,
    stream: &'a Stream,
    catalog: &'a CatalogState,
    body: &'a Bytes,
    batch_id: &'a str,
    received_ms: i64,
    sync_validation: bool,
}

/// One judged message: its event (raw or error topic) and, when refused, what the client is
/// told.
struct Verdict {
    event: RawEvent,
    refused: Option<Answer>,
}

/// The per-message answer to a refused message.
struct Answer {
    message: String,
    violations: Vec<Violation>,
}

/// Why a message was refused, and the dataset it was meant for (for the error record).
struct Refused {
    rejection: Rejection,
    violations: Vec<Violation>,
    dataset_id: Option<String>,
}

impl Judge<'_> {
    fn headers(&self, xaction: &str) -> RawHeaders {
        RawHeaders {
            stream_id: self.stream.id.clone(),
            org_id: self.stream.org_id.clone(),
            sandbox: self.stream.sandbox.clone(),
            batch_id: self.batch_id.to_string(),
            xaction_id: xaction.to_string(),
            received_ms: self.received_ms,
            content_type: "application/json".to_string(),
            source: Source::Collection,
        }
    }

    /// Fails only when the error record of a refused message cannot be encoded, which fails
    /// the whole request (500) rather than sending an empty record.
    fn judge(&self, index: usize, message: &RawValue) -> Result<Verdict, EdgeError> {
        let xaction = xaction_id(self.batch_id, index);
        Ok(match self.accept(message, &xaction) {
            Ok(event) => Verdict {
                event,
                refused: None,
            },
            Err(Refused {
                rejection,
                violations,
                dataset_id,
            }) => {
                let text = rejection.render(self.stream);
                let violations = if violations.is_empty() {
                    vec![Violation {
                        pointer: String::new(),
                        message: rejection.reason.to_string(),
                    }]
                } else {
                    violations
                };
                let record = ErrorRecord {
                    batch_id: self.batch_id.to_string(),
                    xaction_id: xaction.clone(),
                    stream_id: self.stream.id.clone(),
                    org_id: self.stream.org_id.clone(),
                    sandbox: self.stream.sandbox.clone(),
                    dataset_id: dataset_id.clone(),
                    received_ms: self.received_ms,
                    stage: Stage::Edge,
                    violations: violations.clone(),
                    payload: serde_json::from_str(message.get())
                        .unwrap_or_else(|_| serde_json::Value::String(message.get().to_string())),
                };
                let value = serde_json::to_vec(&record).map_err(|e| {
                    EdgeError::Internal(format!("cannot encode the error record of {xaction}: {e}"))
                })?;
                let mut headers = self.headers(&xaction).to_kafka();
                if let Some(d) = &dataset_id {
                    headers = headers.insert(rdkafka::message::Header {
                        key: cdp_contract::envelope::DATASET_ID,
                        value: Some(d.as_str()),
                    });
                }
                Verdict {
                    event: RawEvent {
                        destination: Destination::Error,
                        key: xaction,
                        value: Bytes::from(value),
                        headers,
                    },
                    refused: Some(Answer {
                        message: text,
                        violations,
                    }),
                }
            }
        })
    }

    /// The checks, in the order a client fixes them: shape and org, then where the message
    /// belongs, then (on request) its body.
    fn accept(&self, message: &RawValue, xaction: &str) -> Result<RawEvent, Refused> {
        // A message refused for its shape still counts against the stream's dataset, so it
        // shows in that dataset's failed records.
        let accepted = check(self.body, message, self.stream).map_err(|rejection| Refused {
            rejection,
            violations: vec![],
            dataset_id: self.stream.dataset_id.clone(),
        })?;
        let dataset_hint = filed_under(self.catalog, self.stream, accepted.dataset_id.as_deref());
        let refs = MessageRefs {
            dataset_id: accepted.dataset_id.as_deref(),
            schema_id: Some(&accepted.schema_id),
            content_type: accepted.content_type.as_deref(),
        };
        let found = target(self.catalog, self.stream, refs).map_err(|e| {
            tracing::debug!(stream = %self.stream.id, reason = %e.detail(), "message refused");
            Refused {
                rejection: Rejection {
                    reason: e.to_string().into(),
                },
                violations: vec![Violation {
                    pointer: String::new(),
                    message: e.detail(),
                }],
                dataset_id: dataset_hint.clone(),
            }
        })?;
        if self.sync_validation {
            // `check` found the entity to be a JSON object; should it still not parse (nesting
            // deeper than the parser allows), the message is refused rather than validated as
            // null.
            let entity: serde_json::Value =
                serde_json::from_str(accepted.entity).map_err(|e| Refused {
                    rejection: Rejection {
                        reason: format!(
                            "Message failed validation: xdmEntity cannot be parsed: {e}"
                        )
                        .into(),
                    },
                    violations: vec![Violation {
                        pointer: String::new(),
                        message: format!("xdmEntity cannot be parsed: {e}"),
                    }],
                    dataset_id: Some(found.dataset.id.clone()),
                })?;
            if let Err(violations) = self.state.inner.validators.validate(found.schema, &entity) {
                let summary = violations
                    .iter()
                    .map(|v| {
                        format!(
                            "{}: {}",
                            if v.pointer.is_empty() {
                                "/"
                            } else {
                                &v.pointer
                            },
                            v.message
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(Refused {
                    rejection: Rejection {
                        reason: format!("Message failed validation: {summary}").into(),
                    },
                    violations,
                    dataset_id: Some(found.dataset.id.clone()),
                });
            }
        }
        Ok(RawEvent {
            destination: Destination::Raw,
            key: partition_key(
                Some(accepted.entity),
                &self.state.inner.namespace_order,
                xaction,
            ),
            value: accepted.payload,
            headers: self.headers(xaction).to_kafka(),
        })
    }
}

/// Admission and body reading shared by both collection endpoints.
async fn receive(
    state: &EdgeState,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Stream, Bytes, i64), EdgeError> {
    let received_ms = now_ms();
    let stream = admit(state, id, headers, TokenRefusal::Forbidden)?;
    if let Some(media) = media_type(headers) {
        if !is_json(&media) {
            return Err(EdgeError::UnsupportedMediaType(format!(
                "the collection API takes application/json, not {media}"
            )));
        }
    }
    let bytes = read_limited(headers, body, state.inner.settings.collection_max_bytes).await?;
    crate::metrics::bytes_received(bytes.len());
    Ok((stream, bytes, received_ms))
}

fn parse_error(e: serde_json::Error, expected: &str) -> EdgeError {
    match e.classify() {
        Category::Data => EdgeError::BadRequest(format!("expected {expected}: {e}")),
        _ => EdgeError::BadRequest(json_error(&e)),
    }
}

pub async fn single(
    State(state): State<EdgeState>,
    Path(id): Path<String>,
    Query(query): Query<CollectionQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, EdgeError> {
    let (stream, bytes, received_ms) = receive(&state, &id, &headers, body).await?;
    let message: &RawValue =
        serde_json::from_slice(&bytes).map_err(|e| parse_error(e, "one XDM message"))?;
    let batch_id = state.inner.ids.batch_id(received_ms);
    let verdict = {
        let catalog = state.inner.catalog.read();
        Judge {
            state: &state,
            stream: &stream,
            catalog: &catalog,
            body: &bytes,
            batch_id: &batch_id,
            received_ms,
            sync_validation: query.sync_validation,
        }
        .judge(0, message)?
    };
    state
        .inner
        .producer
        .send_all(std::slice::from_ref(&verdict.event))
        .await?;
    if let Some(Answer {
        message,
        violations,
    }) = verdict.refused
    {
        crate::metrics::messages(0, 1);
        return Err(EdgeError::Invalid {
            message,
            violations,
        });
    }
    crate::metrics::messages(1, 0);
    Ok(Json(SingleResponse {
        inlet_id: stream.id,
        xaction_id: xaction_id(&batch_id, 0),
        received_time_ms: received_ms,
    })
    .into_response())
}

pub async fn batch(
    State(state): State<EdgeState>,
    Path(id): Path<String>,
    Query(query): Query<CollectionQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, EdgeError> {
    let (stream, bytes, received_ms) = receive(&state, &id, &headers, body).await?;
    let request: BatchRequest<'_> = serde_json::from_slice(&bytes)
        .map_err(|e| parse_error(e, "a JSON object {\"messages\": [...]}"))?;
    if request.messages.is_empty() {
        return Err(EdgeError::BadRequest("\"messages\" is empty".into()));
    }
    let limit = state.inner.settings.collection_max_messages;
    if request.messages.len() > limit {
        return Err(EdgeError::TooManyMessages {
            count: request.messages.len(),
            limit,
        });
    }
    let batch_id = state.inner.ids.batch_id(received_ms);
    let verdicts: Vec<Verdict> = {
        let catalog = state.inner.catalog.read();
        let judge = Judge {
            state: &state,
            stream: &stream,
            catalog: &catalog,
            body: &bytes,
            batch_id: &batch_id,
            received_ms,
            sync_validation: query.sync_validation,
        };
        request
            .messages
            .iter()
            .enumerate()
            .map(|(index, m)| judge.judge(index, m))
            .collect::<Result<_, _>>()?
    };
    let (events, answers): (Vec<RawEvent>, Vec<Option<Answer>>) =
        verdicts.into_iter().map(|v| (v.event, v.refused)).unzip();
    let sent = state.inner.producer.send_each(&events).await;
    if let Some(error) = sent.error {
        // Nothing written: the whole request is retried, as with any 503.
        if !sent.written.contains(&true) {
            return Err(error.into());
        }
        tracing::warn!(stream = %stream.id, batch = %batch_id, error = %error, "part of a batch was not written; those messages are answered 503");
    }
    let mut accepted = 0;
    let responses: Vec<MessageResponse> = answers
        .into_iter()
        .zip(sent.written)
        .enumerate()
        .map(|(index, (refused, written))| match (refused, written) {
            // Its raw record (or, for a refused message, its error record) is not written:
            // only this message is to be sent again, so a retry duplicates nothing.
            (_, false) => MessageResponse::Rejected {
                status_code: 503,
                message: "not written: the broker is not keeping up; send this message again"
                    .into(),
            },
            (None, true) => {
                accepted += 1;
                MessageResponse::Accepted {
                    xaction_id: xaction_id(&batch_id, index),
                }
            }
            (Some(answer), true) => MessageResponse::Rejected {
                status_code: 400,
                message: answer.message,
            },
        })
        .collect();
    crate::metrics::messages(accepted, responses.len() - accepted);
    tracing::debug!(stream = %stream.id, batch = %batch_id, accepted, total = responses.len(), "batch received");
    Ok((
        StatusCode::MULTI_STATUS,
        Json(BatchResponse {
            inlet_id: stream.id,
            batch_id,
            received_time_ms: received_ms,
            responses,
        }),
    )
        .into_response())
}
