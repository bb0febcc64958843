//! JSON in and out of the stages' records and state: a value that cannot be written or read
//! back is a defect, and stops the stage rather than losing a person's data.

use cdp_stage::{Output, ProcessError};
use rdkafka::message::OwnedHeaders;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub fn fatal(what: &str, e: impl std::fmt::Display) -> ProcessError {
    ProcessError::Fatal(format!("{what}: {e}"))
}

/// `value` as JSON, or why it cannot be.
pub fn to_vec(value: &impl Serialize, what: &str) -> Result<Vec<u8>, ProcessError> {
    serde_json::to_vec(value).map_err(|e| fatal(&format!("{what} cannot be written"), e))
}

/// Stored JSON read back.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, ProcessError> {
    serde_json::from_slice(bytes).map_err(|e| fatal(&format!("{what} cannot be read"), e))
}

/// A record for a one-partition topic (the sequence, the graph's history).
pub fn to_partition_zero(topic: &str, key: Option<Vec<u8>>, value: Vec<u8>) -> Output {
    Output {
        topic: topic.to_string(),
        partition: Some(0),
        key,
        value: Some(value),
        headers: OwnedHeaders::new(),
    }
}
