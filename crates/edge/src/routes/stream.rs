//! `POST /stream/v0/data/{id}`: one JSON object on a json stream, or a
//! `<records><record>…</record></records>` document on an xml stream (one raw event per
//! record). Answered 202 once the broker has every record.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use cdp_catalog::{PayloadType, Stream};
use cdp_contract::envelope::Source;
use cdp_contract::RawHeaders;
use serde::Serialize;
use serde_json::Value;

use super::{admit, is_json, is_xml, json_error, media_type, now_ms, TokenRefusal};
use crate::body::read_limited;
use crate::ids::xaction_id;
use crate::produce::{Destination, RawEvent};
use crate::state::{EdgeError, EdgeState};
use cdp_xdm::partition_key;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamResponse {
    pub stream_id: String,
    pub batch_id: String,
    pub records: usize,
    pub received_time_ms: i64,
}

pub async fn ingest(
    State(state): State<EdgeState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, EdgeError> {
    let received_ms = now_ms();
    let stream = admit(&state, &id, &headers, TokenRefusal::Unauthorized)?;
    check_media_type(&stream, media_type(&headers))?;
    let bytes = read_limited(&headers, body, state.inner.settings.stream_max_bytes).await?;
    crate::metrics::bytes_received(bytes.len());
    let (records, content_type): (Vec<Bytes>, _) = match stream.payload_type {
        PayloadType::Json => {
            json_record(&bytes)?;
            (vec![bytes], "application/json")
        }
        PayloadType::Xml => {
            let records = crate::xml::records(&bytes)
                .map_err(|e| EdgeError::BadRequest(e.to_string()))?
                .iter()
                .map(|v| {
                    serde_json::to_vec(v).map(Bytes::from).map_err(|e| {
                        EdgeError::Internal(format!("cannot encode an XML record as JSON: {e}"))
                    })
                })
                .collect::<Result<_, _>>()?;
            (records, "application/xml")
        }
    };
    let batch_id = state.inner.ids.batch_id(received_ms);
    let events: Vec<RawEvent> = records
        .into_iter()
        .enumerate()
        .map(|(index, encoded)| {
            let xaction = xaction_id(&batch_id, index);
            RawEvent {
                destination: Destination::Raw,
                key: partition_key(
                    std::str::from_utf8(&encoded).ok(),
                    &state.inner.namespace_order,
                    &xaction,
                ),
                value: encoded,
                headers: RawHeaders {
                    stream_id: stream.id.clone(),
                    org_id: stream.org_id.clone(),
                    sandbox: stream.sandbox.clone(),
                    batch_id: batch_id.clone(),
                    xaction_id: xaction,
                    received_ms,
                    content_type: content_type.to_string(),
                    source: Source::Stream,
                }
                .to_kafka(),
            }
        })
        .collect();
    state.inner.producer.send_all(&events).await?;
    crate::metrics::messages(events.len(), 0);
    Ok((
        StatusCode::ACCEPTED,
        Json(StreamResponse {
            stream_id: stream.id,
            batch_id,
            records: events.len(),
            received_time_ms: received_ms,
        }),
    )
        .into_response())
}

fn check_media_type(stream: &Stream, media: Option<String>) -> Result<(), EdgeError> {
    let Some(media) = media else {
        return Ok(());
    };
    let fits = match stream.payload_type {
        PayloadType::Json => is_json(&media),
        PayloadType::Xml => is_xml(&media),
    };
    if fits {
        return Ok(());
    }
    let wanted = match stream.payload_type {
        PayloadType::Json => "application/json",
        PayloadType::Xml => "application/xml",
    };
    Err(EdgeError::UnsupportedMediaType(format!(
        "stream {} takes {wanted} payloads, not {media}",
        stream.id
    )))
}

/// Exactly one JSON object: arrays and NDJSON are refused, as the streaming-ingest API does.
fn json_record(bytes: &[u8]) -> Result<(), EdgeError> {
    let mut values = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    let first = match values.next() {
        None => {
            return Err(EdgeError::BadRequest(
                "empty body: expected one JSON object".into(),
            ))
        }
        Some(Err(e)) => {
            let hint = if bytes.trim_ascii_start().starts_with(b"<") {
                " (this stream takes JSON; XML goes to an xml stream)"
            } else {
                ""
            };
            return Err(EdgeError::BadRequest(format!("{}{hint}", json_error(&e))));
        }
        Some(Ok(v)) => v,
    };
    if values.next().is_some() {
        return Err(EdgeError::BadRequest(
            "NDJSON is not accepted: send exactly one JSON object per request".into(),
        ));
    }
    match first {
        Value::Object(_) => Ok(()),
        Value::Array(_) => Err(EdgeError::BadRequest(
            "expected one JSON object, got an array: send one object per request".into(),
        )),
        _ => Err(EdgeError::BadRequest("expected one JSON object".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_object_only() {
        assert!(json_record(br#" {"a": 1} "#).is_ok());
        let ndjson = json_record(b"{\"a\":1}\n{\"a\":2}\n")
            .unwrap_err()
            .to_string();
        assert!(ndjson.contains("NDJSON"), "{ndjson}");
        assert!(json_record(b"[{\"a\":1}]")
            .unwrap_err()
            .to_string()
            .contains("array"));
        let bad = json_record(b"{\"a\": }").unwrap_err().to_string();
        assert!(bad.contains("line 1 column"), "{bad}");
        assert!(json_record(b"<records/>")
            .unwrap_err()
            .to_string()
            .contains("xml stream"));
    }
}
