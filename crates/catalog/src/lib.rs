//! The catalog: what the platform knows about its streams, API keys, XDM schemas and datasets,
//! kept in one compacted Kafka topic that every stage follows.
//!
//! This crate owns
//! - the model ([`model`]): the records of the catalog topic, as stored and as the APIs show them;
//! - the fold of the topic into a [`CatalogState`] (plain records, and the [`Conditional`]
//!   records it decides in topic order, the same way in every reader), the live
//!   [`CatalogView`] that follows the topic, and the [`CatalogWriter`] (read-your-writes);
//! - access tokens ([`tokens`]): API-key authentication, and HS256 JWTs issued from a key and
//!   verified against the catalog (a deleted or rotated key invalidates its tokens at once);
//! - who calls a management API ([`principal`]): the operator's admin token, or an org's key or
//!   token with its roles and sandboxes;
//! - destinations ([`flows`], seed 004): base, source and target connections and dataflows of
//!   the Flow Service API, the connection specs; credentials sealed with a [`SecretKey`]
//!   ([`secrets`]) so the catalog topic never holds a secret in clear;
//! - what the catalog's merge policies and schedules mean, for every stage and API that applies
//!   them: a profile's fragments merged into its attributes ([`merge`]), the daily schedule
//!   expressions of batch segmentation ([`schedule`]);
//! - clock helpers ([`clock`], the contract's, re-exported for the catalog's users).
//!
//! It serves no HTTP: the management API is `cdp-control`, the HTTP helpers every API shares are
//! `cdp-http`.
//!
//! The catalog topic has one partition, is compacted, and is keyed `<kind>/<id>`.
//!
//! Modules depend on each other in one direction only: `secrets` ← `flows` ← `model` ←
//! `conditional` ← `state` ← `fold`; `state` ← `view` ← `writer` (which also names
//! `conditional` and `model`); `model`, `state` ← `tokens` ← `principal` (with `view`); `model` ← `merge`; `clock` and
//! `schedule` depend on nothing.

pub use cdp_contract::clock;
mod conditional;
pub mod flows;
mod fold;
pub mod merge;
pub mod model;
mod namespaces;
pub mod principal;
pub mod schedule;
pub mod secrets;
mod state;
pub mod tokens;
mod view;
mod writer;

pub use conditional::{Conditional, DatasetCreation, Decision, Refusal, SchemaChange};
pub use flows::{
    Connection, ConnectionAuth, ConnectionSpec, DestinationKind, Flow, SourceConnection,
    TargetConnection, EVENT_HUBS_SPEC, KAFKA_SPEC, KINESIS_SPEC, PROFILE_FLOW_SPEC,
    PROFILE_SOURCE_SPEC,
};
pub use model::{
    ApiKey, AttributeMerge, AttributeMergeKind, CatalogRecord, Dataset, IdentityGraphChoice,
    IdentityGraphKind, IdentityNamespace, IdentityType, MergePolicy, PayloadType, Role, Schedule,
    SchemaRef, SegmentDefinition, Stream, ValueFormat, XdmSchema,
};
pub use namespaces::standard_namespaces;
pub use secrets::{Sealed, SecretError, SecretKey};
pub use state::CatalogState;
pub use view::{CatalogError, CatalogView};
pub use writer::{CatalogWriter, WriteError};

use cdp_contract::admin::TopicSpec;
use cdp_contract::Topics;

/// The catalog must be totally ordered, so it has exactly one partition.
pub fn topic_spec(topics: &Topics) -> TopicSpec {
    TopicSpec {
        name: topics.catalog(),
        partitions: 1,
        compacted: true,
    }
}
