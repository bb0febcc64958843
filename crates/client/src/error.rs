//! The client's errors: what `build`, `send` and `flush` return, and what a message that could
//! not be delivered settles with (`Outcome::Failed`).

use std::time::Duration;

/// Everything that can go wrong between an event and the edge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The builder was given something unusable (a URL that cannot be a base, no schema id, a
    /// batch size of 0, no Tokio runtime to run on, …).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The event cannot be sent as an XDM entity (it is not a JSON object).
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// `try_send` found the buffer full: `capacity` events are waiting to be settled.
    #[error("the client's buffer is full ({capacity} events waiting to be settled)")]
    Full { capacity: usize },
    /// The client was closed (or its background task is gone).
    #[error("the client is closed")]
    Closed,
    /// The request did not get an answer: connection refused or reset, timeout, DNS, TLS.
    #[error("cannot reach {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with a status the client does not retry or settle per message
    /// (404 unknown stream, 415, …), or a retryable one (429, 5xx) on the last attempt.
    #[error("{url} answered {status}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    /// The edge refused the credentials (401/403) and no new token could fix it.
    #[error("the edge refused the credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Control did not exchange the API key for an access token.
    #[error("cannot get an access token from {url}: {message}")]
    Token { url: String, message: String },
    /// An answer that does not have the documented shape (a 207 whose entries do not match the
    /// messages sent, a token answer without `accessToken`, …).
    #[error("unexpected answer from {url}: {message}")]
    Protocol { url: String, message: String },
    /// Every attempt failed with a retryable error; `last` is the last one.
    #[error("gave up after {attempts} attempts; the last one: {last}")]
    RetriesExhausted {
        attempts: u32,
        last: Box<ClientError>,
    },
    /// `close_blocking` was called where blocking would deadlock (a current-thread runtime).
    #[error("cannot block here: {0}")]
    WouldBlock(String),
    /// `close_blocking` did not see the client drained in time.
    #[error("the client did not drain within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// Whether another attempt may succeed: no answer at all, or 408 / 429 / 5xx.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { source, .. } => {
                // A body that was received but could not be decoded is not a network problem:
                // sending again would not change it.
                !source.is_decode() && !source.is_builder()
            }
            ClientError::Status { status, .. } => retryable_status(*status),
            _ => false,
        }
    }
}

/// The statuses worth another attempt: the request was not taken (throttled, edge or broker
/// unavailable, timed out) and nothing of it was written.
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_statuses_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [200, 207, 400, 401, 403, 404, 413, 415] {
            assert!(!retryable_status(s), "{s}");
        }
        let e = ClientError::Status {
            url: "u".into(),
            status: 503,
            message: "m".into(),
        };
        assert!(e.is_retryable());
        assert!(!ClientError::Closed.is_retryable());
    }
}
