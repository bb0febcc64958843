//! A Confluent Schema Registry–compatible subset for the Avro topics. The compacted, one-
//! partition `<ns>.schemas` topic is a log of registration and config requests; every instance
//! folds it in the same order with the same rules, so all instances agree on ids, versions and
//! which registrations were refused, without a leader.

pub mod compat;
mod follower;
mod http;
mod state;
pub mod wire;

pub use compat::Level;
pub use follower::{RegisterError, SchemaLog, SchemaLogError};
pub use http::routes;
pub use state::{Outcome, SrState, StoredSchema};
