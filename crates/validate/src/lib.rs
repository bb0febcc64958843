//! Validation: every event is checked against its dataset's XDM schema; failures are kept with
//! their reasons, never dropped.
//!
//! The crate owns two things. The **checks** ([`checks`], [`schema_validator`], [`keying`]) — a
//! library the edge uses for its synchronous header checks and `?syncValidation=true`, and the
//! stage uses for bodies, so nothing is validated in two different ways. And the **validate
//! stage** ([`stage`]) — a consumer group on the raw topic that writes valid events to
//! `events.valid` (keyed by the profile's primary identity) and invalid ones to `events.error`,
//! exactly once per raw offset through Kafka transactions.

pub mod avro_values;
pub mod checks;
pub mod keying;
pub mod process;
pub mod recovery;
pub mod schema_validator;
pub mod settings;
pub mod stage;

pub use avro_values::{AvroValueError, AvroValues};
pub use checks::{Target, TargetError};
pub use schema_validator::SchemaValidators;
pub use settings::ValidateSettings;
