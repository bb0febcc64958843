//! Identity stitching and real-time profiles: everything between `events.valid` and
//! `profile.updates`.
//!
//! - [`identity`]: identities, the guardrails on them, and the identity graph (links, cuts on
//!   unique namespaces, the 50-identity cap, stable profile ids) as a pure function.
//! - [`merge`]: merge policies (timestamp-ordered, dataset precedence) over profile fragments.
//! - [`wire`]: the records the stages exchange and publish.
//!
//! See docs/ARCHITECTURE.md ("Profiles and identity") for why the graph has one owner.

pub mod identity;
pub mod intake;
pub mod merge;
pub mod profiles;
pub mod run;
pub mod settings;
pub mod wire;

pub use run::{run, ProfileError};
pub use settings::ProfileSettings;
