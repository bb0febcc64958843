//! The shared contract every stage of the pipeline agrees on.
//!
//! It owns the names of the topics (one place, one namespace prefix), the headers that travel
//! with every raw event, how Kafka clients are configured (idempotent producers, read_committed
//! consumers), how configuration is loaded (file + environment), tracing setup, and the
//! [`follower::Follower`] that folds a topic into memory (the catalog, the schemas log, batch
//! metadata all follow their topics the same way), and the records of every internal and output
//! topic ([`records`]: identities, profile items and updates, graph records, membership changes),
//! so their readers need none of the stages that write them.

pub mod admin;
pub mod clock;
pub mod config;
pub mod endpoints;
pub mod envelope;
pub mod flow_run;
pub mod follower;
pub mod identity;
pub mod kafka;
pub mod partition;
pub mod prometheus;
pub mod quarantine;
pub mod records;
pub mod telemetry;
pub mod topics;

pub use config::{ConfigError, Settings};
pub use envelope::RawHeaders;
pub use identity::IdentitySettings;
pub use kafka::KafkaSettings;
pub use topics::Topics;
