//! [`DeliveryError`]: why a delivery did not finish, in the destination's own words, and whether
//! trying again later can help.

use std::fmt;

use super::DeliveryReport;

/// What kind of failure ended a delivery. [`ErrorKind::is_transient`] tells the two families apart:
/// trying again later can help with throttling, an unavailable or slow destination; it cannot
/// with bad credentials, a missing stream or topic, or a request the destination refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The destination asked us to slow down (Kinesis `ProvisionedThroughputExceededException`,
    /// HTTP 429, Kafka quota). Transient.
    Throttled,
    /// The destination could not be reached or failed on its side (connection refused or reset,
    /// DNS, HTTP 5xx, `InternalFailure`, broker down). Transient.
    Unavailable,
    /// No answer within the time allowed. Transient; the request may have been applied, so a
    /// retry can deliver a record twice (delivery is at least once).
    Timeout,
    /// Credentials refused, access denied, SASL authentication failed. Permanent.
    Unauthorized,
    /// The stream, event hub or topic does not exist. Permanent.
    NotFound,
    /// The destination refused the request as invalid (validation error, unsupported setting).
    /// Permanent.
    Invalid,
    /// The target's own settings are unusable (malformed endpoint, empty stream name, a client
    /// library that refuses the configuration). Permanent.
    Config,
}

impl ErrorKind {
    /// Whether trying again later can succeed without anyone changing the destination's setup.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }

    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Unauthorized => "access denied",
            ErrorKind::NotFound => "not found",
            ErrorKind::Invalid => "request refused",
            ErrorKind::Config => "invalid configuration",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A delivery that did not finish: a permanent error, or a transient one that outlasted the
/// [`RetryPolicy`](super::RetryPolicy).
///
/// `message` is the destination's own error (code and text, e.g.
/// `ResourceNotFoundException: Stream orders under account 000000000000 not found.`), to show in
/// a flow's status. What was settled before the failure is in `partial` (records delivered and
/// records rejected — the latter still belong in the dead-letter topic), and `pending` lists the
/// indices of the records that are neither, in input order: delivering just those later keeps
/// each partition key's order, because for every key they are the tail of its records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct DeliveryError {
    pub kind: ErrorKind,
    pub message: String,
    pub partial: DeliveryReport,
    pub pending: Vec<usize>,
}

impl DeliveryError {
    /// An error with no progress attached (`partial` empty, `pending` empty): what constructors
    /// and [`check`](super::Destination::check) return; `deliver` always fills both in.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> DeliveryError {
        DeliveryError {
            kind,
            message: message.into(),
            partial: DeliveryReport::default(),
            pending: Vec::new(),
        }
    }

    /// A [`ErrorKind::Config`] error.
    pub fn config(message: impl Into<String>) -> DeliveryError {
        DeliveryError::new(ErrorKind::Config, message)
    }

    /// Whether trying again later can succeed (throttling, 5xx, timeouts, connection errors).
    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The destination's own error message.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn with_progress(mut self, partial: DeliveryReport, pending: Vec<usize>) -> Self {
        self.partial = partial;
        self.pending = pending;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_and_permanent_kinds() {
        for kind in [
            ErrorKind::Throttled,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
        ] {
            assert!(DeliveryError::new(kind, "x").is_transient(), "{kind}");
        }
        for kind in [
            ErrorKind::Unauthorized,
            ErrorKind::NotFound,
            ErrorKind::Invalid,
            ErrorKind::Config,
        ] {
            assert!(!DeliveryError::new(kind, "x").is_transient(), "{kind}");
        }
    }

    #[test]
    fn display_shows_the_destination_message() {
        let e = DeliveryError::new(
            ErrorKind::NotFound,
            "ResourceNotFoundException: Stream s not found.",
        );
        assert_eq!(
            e.to_string(),
            "not found: ResourceNotFoundException: Stream s not found."
        );
        assert_eq!(
            e.message(),
            "ResourceNotFoundException: Stream s not found."
        );
    }
}
