//! Validation: every event is checked against its dataset's XDM schema; failures are kept with
//! their reasons, never dropped.
//!
//! The crate owns two things. The **checks** ([`checks`], [`schema_validator`], [`keying`]) — a
//! library the edge uses for its synchronous header checks and `?syncValidation=true`, and the
//! stage uses for bodies, so nothing is validated in two different ways. And the **validate
//! stage** ([`stage`]) — a processor on the stage runtime (`cdp-stage`) that turns each raw
//! event into a valid event on `events.valid` (keyed by the profile's primary identity) or an
//! error record on `events.error`, exactly once per raw offset. A [`follow::Follower`] (the
//! profile intake) takes each valid event in the same transaction, so the profile path needs
//! no stage of its own between validation and identity.

pub mod avro_values;
pub mod follow;
pub mod process;
pub mod settings;
pub mod stage;

pub use avro_values::{AvroValueError, AvroValues};
pub use follow::{Follower, Valid};
pub use settings::ValidateSettings;
