//! The edge's HTTP handlers. Every ingestion request goes through [`admit`] first: known
//! stream, authentication, org and sandbox headers, throttling — before its body is read.

pub mod collection;
pub mod health;
pub mod stream;

use axum::http::{header, HeaderMap};
use cdp_catalog::Stream;

use crate::auth::{authorize, AuthFailure};
use crate::state::{EdgeError, EdgeState};

/// How a refused token is answered: the collection API says 403, streaming ingest 401.
#[derive(Clone, Copy)]
pub enum TokenRefusal {
    Forbidden,
    Unauthorized,
}

pub fn admit(
    state: &EdgeState,
    stream_id: &str,
    headers: &HeaderMap,
    refusal: TokenRefusal,
) -> Result<Stream, EdgeError> {
    let inner = &state.inner;
    let stream = {
        let catalog = inner.catalog.read();
        let stream = catalog
            .streams
            .get(stream_id)
            .cloned()
            .ok_or_else(|| EdgeError::UnknownStream(stream_id.to_string()))?;
        authorize(headers, &stream, &inner.tokens, &catalog).map_err(|f| match (f, refusal) {
            (f @ AuthFailure::Missing, _) => EdgeError::Unauthorized(f.to_string()),
            (f, TokenRefusal::Forbidden) => EdgeError::Forbidden(f.to_string()),
            (f, TokenRefusal::Unauthorized) => EdgeError::Unauthorized(f.to_string()),
        })?;
        stream
    };
    if let Some(org) = header_str(headers, "x-gw-ims-org-id") {
        if org != stream.org_id {
            return Err(EdgeError::BadRequest(format!(
                "x-gw-ims-org-id {org} is not the org of this stream"
            )));
        }
    }
    if let Some(sandbox) = header_str(headers, "x-sandbox-name") {
        if sandbox != stream.sandbox {
            return Err(EdgeError::BadRequest(format!(
                "x-sandbox-name {sandbox} is not the sandbox of this stream ({})",
                stream.sandbox
            )));
        }
    }
    inner
        .throttle
        .check(&stream.id, stream.rate_limit)
        .map_err(|retry_after| EdgeError::Throttled {
            stream: stream.id.clone(),
            limit: stream.rate_limit.unwrap_or_default(),
            retry_after,
        })?;
    Ok(stream)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// The media type without parameters, lower-cased; `None` when the header is absent.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    header_str(headers, header::CONTENT_TYPE.as_str()).map(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    })
}

pub fn is_json(media: &str) -> bool {
    media == "application/json"
        || media.ends_with("+json")
        || media == "application/x-ndjson"
        || media == "text/plain"
}

pub fn is_xml(media: &str) -> bool {
    media == "application/xml" || media == "text/xml" || media.ends_with("+xml")
}

pub fn now_ms() -> i64 {
    cdp_catalog::clock::now_ms()
}

/// Says where JSON parsing failed; serde_json's message ends with "at line L column C".
pub fn json_error(e: &serde_json::Error) -> String {
    format!("malformed JSON: {e}")
}
