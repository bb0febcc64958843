//! `POST /collection/{id}` (one XDM message) and `POST /collection/batch/{id}` (many, answered
//! 207 with one entry per message, in order).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use cdp_contract::envelope::Source;
use cdp_contract::RawHeaders;
use cdp_control::Stream;
use serde::{Deserialize, Serialize};
use serde_json::error::Category;
use serde_json::value::RawValue;

use super::{admit, is_json, json_error, media_type, now_ms, TokenRefusal};
use crate::body::read_limited;
use crate::ids::xaction_id;
use crate::keying::partition_key;
use crate::message::{check, AcceptedMessage};
use crate::produce::RawEvent;
use crate::state::{EdgeError, EdgeState};

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

/// The batch envelope; messages stay unparsed JSON text until each is checked.
#[derive(Deserialize)]
struct BatchRequest<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
}

fn parse_error(e: serde_json::Error, expected: &str) -> EdgeError {
    match e.classify() {
        Category::Data => EdgeError::BadRequest(format!("expected {expected}: {e}")),
        _ => EdgeError::BadRequest(json_error(&e)),
    }
}

fn raw_event(
    accepted: &AcceptedMessage<'_>,
    stream: &Stream,
    batch_id: &str,
    xaction: String,
    received_ms: i64,
) -> RawEvent {
    RawEvent {
        key: partition_key(Some(accepted.entity), &xaction),
        value: accepted.payload.clone(),
        headers: RawHeaders {
            stream_id: stream.id.clone(),
            org_id: stream.org_id.clone(),
            sandbox: stream.sandbox.clone(),
            batch_id: batch_id.to_string(),
            xaction_id: xaction,
            received_ms,
            content_type: "application/json".to_string(),
            source: Source::Collection,
        },
    }
}

pub async fn single(
    State(state): State<EdgeState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, EdgeError> {
    let (stream, bytes, received_ms) = receive(&state, &id, &headers, body).await?;
    let message: &RawValue =
        serde_json::from_slice(&bytes).map_err(|e| parse_error(e, "one XDM message"))?;
    let accepted = match check(&bytes, message, &stream) {
        Ok(a) => a,
        Err(rejection) => {
            crate::metrics::messages(0, 1);
            return Err(EdgeError::BadRequest(rejection.render(&stream)));
        }
    };
    let batch_id = state.inner.ids.batch_id(received_ms);
    let xaction = xaction_id(&batch_id, 0);
    let event = raw_event(&accepted, &stream, &batch_id, xaction.clone(), received_ms);
    state
        .inner
        .producer
        .send_all(std::slice::from_ref(&event))
        .await?;
    crate::metrics::messages(1, 0);
    Ok(Json(SingleResponse {
        inlet_id: stream.id,
        xaction_id: xaction,
        received_time_ms: received_ms,
    })
    .into_response())
}

pub async fn batch(
    State(state): State<EdgeState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, EdgeError> {
    let (stream, bytes, received_ms) = receive(&state, &id, &headers, body).await?;
    let request: BatchRequest<'_> = serde_json::from_slice(&bytes)
        .map_err(|e| parse_error(e, "a JSON object {\"messages\": [...]}"))?;
    if request.messages.is_empty() {
        return Err(EdgeError::BadRequest("\"messages\" is empty".into()));
    }
    let batch_id = state.inner.ids.batch_id(received_ms);
    let mut responses = Vec::with_capacity(request.messages.len());
    let mut events = Vec::with_capacity(request.messages.len());
    for (index, message) in request.messages.iter().enumerate() {
        match check(&bytes, message, &stream) {
            Ok(accepted) => {
                let xaction = xaction_id(&batch_id, index);
                events.push(raw_event(
                    &accepted,
                    &stream,
                    &batch_id,
                    xaction.clone(),
                    received_ms,
                ));
                responses.push(MessageResponse::Accepted {
                    xaction_id: xaction,
                });
            }
            Err(rejection) => responses.push(MessageResponse::Rejected {
                status_code: 400,
                message: rejection.render(&stream),
            }),
        }
    }
    if !events.is_empty() {
        state.inner.producer.send_all(&events).await?;
    }
    crate::metrics::messages(events.len(), responses.len() - events.len());
    tracing::debug!(stream = %stream.id, batch = %batch_id, accepted = events.len(), total = responses.len(), "batch received");
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
