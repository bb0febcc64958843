//! Identity stitching: everything between validation and the profile engine (`cdp profile`
//! runs the identity stage, with the engine):
//!
//! - [`intake`]: events and records of profile-enabled datasets, their identities checked
//!   ([`identity::extract`]), onto `profile.sequence` (partitioned by sandbox), or, for an
//!   event with one identity seen before ([`seen`]), straight to its profile on
//!   `profile.resolved` (the fast path); refusals to `events.error`. It runs inside the
//!   validate stage, in its transaction.
//! - [`identity::stage`]: the owner of each partition's identity graphs ([`identity::graph`], a
//!   pure step: links, unique-namespace cuts, the 50-identity cap, stable profile ids), routing
//!   each item to its profile on `profile.resolved`, where the engine (`cdp-engine`) keeps the
//!   profile.
//!
//! The records of those topics are the contract's (`cdp_contract::records`), so their readers
//! need not depend on this crate; [`run`] starts the identity stage. Why each sandbox's graph
//! has one owner: docs/ARCHITECTURE.md.

pub mod identity;
pub mod intake;
mod json;
pub mod run;
pub mod seen;
pub mod settings;

pub use run::{run, ProfileError};
pub use settings::ProfileSettings;
