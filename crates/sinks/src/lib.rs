//! The sinks stage: what destination flows export leaves the platform for Amazon Kinesis,
//! Azure Event Hubs (its Kafka endpoint) and Kafka topics.
//!
//! The segment stage decides what a flow exports (`<ns>.segment.exports`, exactly once with
//! the membership change that caused it); this crate delivers it, at least once:
//! - [`flows`]: one delivery worker per enabled flow and target connection, each its own
//!   consumer group, started and stopped as the catalog changes; status and dead letters;
//! - [`delivery`]: the clients that talk to the destinations, with batching, retries, and
//!   permanent/transient failure classification.

pub mod delivery;
pub mod flows;
pub mod settings;

pub use settings::SinksSettings;

pub use delivery::{
    Deliver, DeliveryError, DeliveryReport, Destination, ErrorKind, EventHubsTarget, KafkaSecurity,
    KafkaTarget, KinesisTarget, OutRecord, Rejected, RetryPolicy, SaslCredentials, SaslMechanism,
    Secret,
};
