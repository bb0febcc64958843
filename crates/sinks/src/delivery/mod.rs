//! The delivery layer: clients that hand export records to a destination — Amazon Kinesis
//! (`PutRecords`), Azure Event Hubs (through its Kafka endpoint) or a Kafka topic — and return
//! once each record is acknowledged, rejected for good, or the [`RetryPolicy`] runs out.
//!
//! What it promises, for every destination:
//! - **Order per partition key.** Records of one key are acknowledged in the order given, also
//!   across retries: a later record of a key never overtakes an earlier one that failed.
//! - **No duplicates from retrying successes.** Only entries the destination did not accept are
//!   sent again. (A request that times out may still have been applied, so delivery is at least
//!   once, never at most once.)
//! - **Rejections are reported, not retried.** A record the destination refuses for good (too
//!   large, a per-record permanent error) comes back in [`DeliveryReport::rejected`] with its
//!   index and the reason, for the caller's dead-letter topic; the others are still delivered.
//! - **Failures are classified.** [`DeliveryError::is_transient`] separates throttling, 5xx,
//!   timeouts and connection errors from bad credentials, unknown streams and access denied;
//!   the error carries the destination's own message.
//!
//! ```no_run
//! # async fn demo() -> Result<(), cdp_sinks::delivery::DeliveryError> {
//! use cdp_sinks::delivery::{Destination, KinesisTarget, OutRecord, RetryPolicy, Secret};
//! let kinesis = Destination::kinesis(
//!     KinesisTarget {
//!         stream: "profiles".into(),
//!         region: "eu-west-1".into(),
//!         endpoint: None,
//!         access_key_id: "AKIA…".into(),
//!         secret_key: Secret::new("…"),
//!     },
//!     RetryPolicy::default(),
//! )?;
//! let report = kinesis
//!     .deliver(vec![OutRecord::new("profile-1", b"{}".to_vec())])
//!     .await?;
//! assert_eq!(report.delivered, 1);
//! # Ok(()) }
//! ```

mod error;
mod eventhubs;
mod kafka;
mod kinesis;
mod retry;

use std::fmt;
use std::future::Future;

pub use error::{DeliveryError, ErrorKind};
pub use eventhubs::{EventHubsTarget, EVENT_HUBS_MAX_MESSAGE_BYTES};
pub use kafka::{KafkaClient, KafkaSecurity, KafkaTarget, SaslCredentials, SaslMechanism};
pub use kinesis::{
    KinesisClient, KinesisTarget, KINESIS_MAX_RECORDS_PER_REQUEST, KINESIS_MAX_RECORD_BYTES,
    KINESIS_MAX_REQUEST_BYTES,
};
pub use retry::RetryPolicy;

/// One record to export. The partition key is the profile id: records with the same key keep
/// their order at the destination.
#[derive(Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl OutRecord {
    pub fn new(partition_key: impl Into<String>, data: impl Into<Vec<u8>>) -> OutRecord {
        OutRecord {
            partition_key: partition_key.into(),
            data: data.into(),
        }
    }
}

impl fmt::Debug for OutRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutRecord")
            .field("partition_key", &self.partition_key)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// What a delivery did: every record given is either delivered or rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// Records the destination acknowledged.
    pub delivered: usize,
    /// Sends that were repeats of an earlier, failed send of the same record (a record retried
    /// three times counts three). Always 0 for Kafka, whose client retries internally.
    pub retried: usize,
    /// Records the destination refuses for good, in input order: for the dead-letter topic.
    pub rejected: Vec<Rejected>,
}

/// A record refused for good: its index in the delivered `Vec` and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// A secret (key, password): shown as `***` by `Debug`, so it never reaches a log by accident.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Secret {
        Secret(secret.into())
    }

    /// The secret itself, for the client library that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret::new(s)
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

/// Something that delivers records: each destination client, and [`Destination`]. A stage can
/// be generic over it, and a test can hand it a fake.
pub trait Deliver: Send + Sync {
    /// Returns once every record is acknowledged or rejected ([`DeliveryReport`]), or with an
    /// error: at once for a permanent one, after the retry budget for a transient one.
    fn deliver(
        &self,
        records: Vec<OutRecord>,
    ) -> impl Future<Output = Result<DeliveryReport, DeliveryError>> + Send;
}

/// A configured destination.
#[derive(Debug)]
pub enum Destination {
    Kinesis(KinesisClient),
    /// A Kafka topic, or an event hub through the Event Hubs Kafka endpoint.
    Kafka(KafkaClient),
}

impl Destination {
    /// An Amazon Kinesis data stream.
    pub fn kinesis(target: KinesisTarget, policy: RetryPolicy) -> Result<Self, DeliveryError> {
        KinesisClient::new(target, policy).map(Destination::Kinesis)
    }

    /// A Kafka topic.
    pub fn kafka(target: KafkaTarget, policy: RetryPolicy) -> Result<Self, DeliveryError> {
        KafkaClient::new(target, policy).map(Destination::Kafka)
    }

    /// An Azure event hub, through the namespace's Kafka endpoint.
    pub fn event_hubs(
        target: &EventHubsTarget,
        policy: RetryPolicy,
    ) -> Result<Self, DeliveryError> {
        Destination::kafka(target.kafka_target(), policy)
    }

    /// Delivers `records`: see [`Deliver::deliver`].
    pub async fn deliver(&self, records: Vec<OutRecord>) -> Result<DeliveryReport, DeliveryError> {
        match self {
            Destination::Kinesis(c) => c.deliver(records).await,
            Destination::Kafka(c) => c.deliver(records).await,
        }
    }

    /// Asks the destination whether the stream or topic exists and the credentials are good,
    /// without writing anything (a flow's "test connection").
    pub async fn check(&self) -> Result<(), DeliveryError> {
        match self {
            Destination::Kinesis(c) => c.check().await,
            Destination::Kafka(c) => c.check().await,
        }
    }

    /// Where records go, without secrets: `kinesis:STREAM@REGION`, `kafka:TOPIC@BOOTSTRAP`.
    pub fn describe(&self) -> String {
        match self {
            Destination::Kinesis(c) => c.describe(),
            Destination::Kafka(c) => c.describe(),
        }
    }
}

impl Deliver for Destination {
    fn deliver(
        &self,
        records: Vec<OutRecord>,
    ) -> impl Future<Output = Result<DeliveryReport, DeliveryError>> + Send {
        Destination::deliver(self, records)
    }
}

/// What became of one record during a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Pending,
    Delivered,
    Rejected,
}

/// The indices to deliver again, in input order: the pending records, made key-closed — once a
/// record of a key is pending, so is every later record of that key that was delivered (out of
/// order, so it is sent again after the pending one). Rejected records are settled.
pub(crate) fn pending_tail(records: &[OutRecord], fates: &[Fate]) -> Vec<usize> {
    let mut blocked: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let key = r.partition_key.as_str();
        match fates[i] {
            Fate::Pending => {
                blocked.insert(key);
                out.push(i);
            }
            Fate::Delivered if blocked.contains(key) => out.push(i),
            Fate::Delivered | Fate::Rejected => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_payloads_stay_out_of_debug_output() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
        let r = OutRecord::new("p1", b"private".to_vec());
        assert_eq!(
            format!("{r:?}"),
            "OutRecord { partition_key: \"p1\", data_len: 7 }"
        );
    }

    #[test]
    fn pending_tail_keeps_later_records_of_a_pending_key() {
        let records: Vec<_> = ["a", "b", "a", "c", "b", "a"]
            .iter()
            .map(|k| OutRecord::new(*k, Vec::new()))
            .collect();
        use Fate::*;
        // Record 2 (key a) failed, record 4 (key b) failed; record 5 (key a) went through
        // before record 2 did, so it goes again; record 3 was rejected.
        let fates = [Delivered, Delivered, Pending, Rejected, Pending, Delivered];
        assert_eq!(pending_tail(&records, &fates), [2, 4, 5]);
    }
}
