//! The delivery status of one destination flow's target, as the sinks stage writes it to
//! `<ns>.sinks.status` (compacted, key `<flow id>/<target connection id>`) and control serves
//! it (`GET /flows/{id}/runs`).

use serde::{Deserialize, Serialize};

/// The header naming the flow an export record on `<ns>.segment.exports` is for.
pub const FLOW_HEADER: &str = "cdp-flow";

/// Where a flow target's delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RunStatus {
    /// Started, nothing delivered or failed yet.
    Pending,
    /// The last delivery was acknowledged.
    Success,
    /// The destination refuses or cannot be reached: deliveries are retried with back-off and
    /// the input position does not advance.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRun {
    pub flow_id: String,
    pub target_connection_id: String,
    /// `Amazon Kinesis`, `Azure Event Hubs`, `Kafka`.
    pub destination: String,
    pub status: RunStatus,
    /// Records the destination acknowledged.
    pub records_delivered: u64,
    /// Records the destination refused for good, sent to the dead-letter topic.
    pub records_failed: u64,
    /// Records sent again after a throttle or a transient error.
    pub records_retried: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Epoch ms of the last acknowledged delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_time: Option<i64>,
    /// Epoch ms of this status.
    pub updated_at: i64,
}

impl FlowRun {
    pub fn key(&self) -> String {
        format!("{}/{}", self.flow_id, self.target_connection_id)
    }
}
