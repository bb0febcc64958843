//! The edge's configuration (`[edge]` in the configuration file).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    /// Address the ingestion API listens on.
    pub listen: String,
    /// How long a request waits for the broker to acknowledge its messages before it is
    /// answered 503 (nothing reported accepted that was not written).
    pub produce_timeout_ms: u32,
    /// Largest request body on the collection endpoints (seed 002: 1 MB).
    pub collection_max_bytes: usize,
    /// Most messages in one `/collection/batch` request; a batch with more is refused whole
    /// (413, nothing written). One refused message costs an error record and an answer of
    /// ~150 B however small it is, so without a cap 1 MB of `{}` made a 55 MB answer and
    /// ~330,000 error records.
    pub collection_max_messages: usize,
    /// Largest request body on the streaming-ingest endpoint (seed 001: 254 KB).
    pub stream_max_bytes: usize,
    /// Partitions of the raw topic when the edge has to create it.
    pub raw_partitions: i32,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_string(),
            produce_timeout_ms: 5_000,
            collection_max_bytes: 1_000_000,
            collection_max_messages: 5_000,
            stream_max_bytes: 254 * 1024,
            raw_partitions: 6,
        }
    }
}
