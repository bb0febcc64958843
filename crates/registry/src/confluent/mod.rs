//! A Confluent Schema Registry–compatible subset for the Avro topics. The compacted, one-
//! partition `<ns>.schemas` topic is a log of registration and config requests; every instance
//! folds it in the same order with the same rules, so all instances agree on ids, versions and
//! which registrations were refused, without a leader. Every call needs a credential
//! ([`auth`]), and registrations over HTTP are bounded ([`Limits`]).

mod auth;
pub mod compat;
mod follower;
mod http;
mod state;
pub mod wire;

pub use auth::{require_credential, Caller, RegistryAuth};
pub use compat::Level;
pub use follower::{RegisterError, SchemaLog, SchemaLogError};
pub use http::{routes, Api, Limits};
pub use state::{Outcome, SrState, StoredSchema};
