//! Streaming segmentation: the segment stage reads `profile.updates`, keeps per profile what
//! its segments need (attributes, identities, the events of the last day, memberships) and
//! evaluates the sandbox's streaming definitions (`cdp-pql` plans) on every update; each
//! membership change (`realized`, `exited`) goes to `<ns>.segment.membership` (Avro, registered
//! as `<topic>-value`) and `<ns>.segment.membership.json`. A timer per profile at the earliest
//! instant an answer can change with no new data makes exits happen on time ("bought in the
//! last three hours" exits three hours after the purchase), also on an idle partition and
//! after a restart. For the sandbox's destination flows it writes what they export to
//! `<ns>.segment.exports`, in the same transaction.
//!
//! - [`stage`]: the processor; [`definitions`]: compiled plans per definition version;
//!   [`avro`]: the membership record's Avro form (the record itself, and the profile updates it
//!   reads, are the contract's: `cdp_contract::records`; schedule expressions are the catalog's:
//!   `cdp_catalog::schedule`); [`activation`]: what destination flows export; [`run`]: the
//!   stage's topics and start.

pub mod activation;
pub mod avro;
pub mod definitions;
pub mod run;
pub mod settings;
pub mod stage;

pub use run::{run, SegmentError};
pub use settings::SegmentSettings;
