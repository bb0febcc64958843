//! What the edge and the validate stage both need to judge an XDM event, so nothing is checked
//! in two different ways: which dataset and schema version a message targets and whether its
//! header agrees ([`checks`]), compiled JSON Schema validators per schema version
//! ([`schema_validator`]), and the partition key taken from the identity map ([`keying`]).
//! No Kafka client here: the edge answers synchronously with these, the validate stage runs
//! them again on what it consumes.

pub mod checks;
pub mod keying;
pub mod schema_validator;

pub use checks::{target, MessageRefs, Target, TargetError};
pub use keying::partition_key;
pub use schema_validator::SchemaValidators;
