//! The records of every internal and output topic after validation, as the stages that write
//! them and everything that reads them (control's Profile, Identity and segment APIs, the
//! dashboard, benchmarks, tests) agree on them. Their serialized forms are the contract: JSON
//! field names and the Avro schema must not change without every reader.
//!
//! - [`identity`]: an identity ([`Identity`]), what the graph knows of its namespace
//!   ([`NamespaceTraits`], [`IdentityType`]), and identities refused with their reason
//!   ([`Refused`]);
//! - [`profile`]: `<ns>.profile.sequence` ([`Item`]), `<ns>.profile.resolved` ([`Resolved`]) and
//!   `<ns>.profile.updates` ([`ProfileUpdate`]);
//! - [`graph`]: `<ns>.identity.graph` ([`GraphRecord`], [`GraphEvent`]);
//! - [`membership`]: `<ns>.segment.membership` (Avro, [`membership::AVRO_SCHEMA`]) and
//!   `<ns>.segment.membership.json` ([`MembershipChange`]);
//! - [`lookup`]: the answers of the engine's and the identity owner's query APIs.

pub mod graph;
pub mod identity;
pub mod lookup;
pub mod membership;
pub mod profile;

pub use graph::{GraphChange, GraphEvent, GraphRecord};
pub use identity::{Identity, IdentityType, NamespaceTraits, Refused, RefusedReason};
pub use membership::{MembershipChange, Status, Trigger, AVRO_SCHEMA};
pub use profile::{
    Change, Fragment, Item, ItemKind, ProfileUpdate, Resolved, StoredEvent, Transfer,
};
