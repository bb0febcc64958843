//! Identity stitching: everything between validation and the profile engine (`cdp profile`
//! runs the identity stage, with the engine):
//!
//! - [`intake`]: events and records of profile-enabled datasets, their identities checked
//!   ([`identity::extract`]), onto the one-partition `profile.sequence`; refusals to
//!   `events.error`. It runs inside the validate stage, in its transaction.
//! - [`identity::stage`]: the one owner of the identity graph ([`identity::graph`], a pure step:
//!   links, unique-namespace cuts, the 50-identity cap, stable profile ids), routing each item
//!   to its profile on `profile.resolved`, where the engine (`cdp-engine`) keeps the profile.
//!
//! The records of those topics are the contract's (`cdp_contract::records`), so their readers
//! need not depend on this crate; [`run`] starts the identity stage. Why the graph has one owner:
//! docs/ARCHITECTURE.md ("The identity graph has one owner").

pub mod identity;
pub mod intake;
mod json;
pub mod run;
pub mod settings;

pub use run::{run, ProfileError};
pub use settings::ProfileSettings;
