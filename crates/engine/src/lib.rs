//! The profile engine: each profile's state and its segments in one stage, on one store and
//! one changelog, partitioned by profile id (what Kafka Streams would fuse into one
//! sub-topology: profile and segment share the key). It reads the identity stage's decisions on
//! `profile.resolved` and, in the transaction of each, changes the profile, evaluates the
//! sandbox's streaming definitions on it — only those the change concerns — and writes
//! `profile.updates` (for subscribers), membership changes (`segment.membership` in Avro,
//! `segment.membership.json`) and what destination flows export (`segment.exports`).
//!
//! - [`record`]: the one compact record kept per profile; [`projection`]: which event fields
//!   it keeps;
//! - [`apply`]: how events, profile records, merges and splits change a profile;
//! - [`segments`]: the evaluation at the end of every change, memberships, exports, the timer;
//! - [`sweep`]: definition changes, schedules and first exports, in bounded chunks;
//! - [`definitions`]: each sandbox's compiled definitions; [`activation`]: what flows export;
//!   [`avro`]: the membership record's Avro form;
//! - [`query`]: what an instance holds of a profile, for control's Profile API (interactive
//!   queries: the profile is read where it lives), and its segments' tallies ([`tally`]);
//! - [`stage`]: the processor on the stage runtime; [`run`]: its topics and start.

pub mod activation;
mod apply;
pub mod avro;
pub mod definitions;
pub mod keys;
pub mod projection;
pub mod query;
pub mod record;
pub mod run;
mod segments;
pub mod settings;
pub mod stage;
mod sweep;
pub mod tally;

pub use run::{run, EngineError};
pub use settings::{EngineSettings, SegmentSettings};
