//! The record on the error topic (`events.error`): an event that failed a check, with every
//! reason and the original payload, so nothing is ever dropped silently. Written by the edge
//! (header checks), by validate (schema checks) and by the profile intake (refused into the
//! profile store only); read by the lake (failed-record retrieval).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One reason an event was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// JSON pointer into the XDM entity (`/timestamp`), empty for the whole message.
    pub pointer: String,
    pub message: String,
}

/// Which check refused the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Stage {
    /// The edge's synchronous header checks (answered 400 in the 207).
    Edge,
    /// Schema validation of the body by the validate stage.
    Validate,
    /// Refused into the profile store (too large, no usable identity) by the profile intake;
    /// the event itself is valid and in its dataset.
    Profile,
}

/// The value on `events.error`; its key is the raw event's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorRecord {
    pub batch_id: String,
    pub xaction_id: String,
    pub stream_id: String,
    pub org_id: String,
    pub sandbox: String,
    /// The dataset named by the message (or the stream), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    pub received_ms: i64,
    pub stage: Stage,
    pub violations: Vec<Violation>,
    /// The original message as received: JSON when it parsed, else a string.
    pub payload: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_case_round_trip() {
        let r = ErrorRecord {
            batch_id: "b".into(),
            xaction_id: "b:0".into(),
            stream_id: "s".into(),
            org_id: "o".into(),
            sandbox: "prod".into(),
            dataset_id: Some("d".into()),
            received_ms: 1,
            stage: Stage::Validate,
            violations: vec![Violation {
                pointer: "/timestamp".into(),
                message: "\"timestamp\" is a required property".into(),
            }],
            payload: serde_json::json!({"a": 1}),
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["xactionId"], "b:0");
        assert_eq!(v["stage"], "validate");
        assert_eq!(serde_json::from_value::<ErrorRecord>(v).unwrap(), r);
    }
}
