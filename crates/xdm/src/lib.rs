//! XDM logic, without the registry's HTTP API or its schemas log:
//!
//! - the embedded class and field-group sources of `schemas/` ([`library`]) and their
//!   composition into one resolved JSON Schema per tenant schema version ([`compose`]);
//! - schemaRef resolution: `{id, contentType}` → one schema version of the catalog
//!   ([`resolve`]);
//! - the XDM → Avro mapping and the JSON ⇄ Avro value conversions ([`avro`]), and reading a
//!   value of events.valid back into the XDM entity, JSON or Avro through the registry
//!   ([`decode`], used by the lake and the profile intake);
//! - what the edge and the validate stage both need to judge an XDM event, so nothing is
//!   checked in two different ways: which dataset and schema version a message targets and
//!   whether its header agrees ([`checks`]), compiled JSON Schema validators per schema version
//!   ([`schema_validator`]), and the partition key taken from the identity map ([`keying`]).
//!
//! No Kafka client here: the edge answers synchronously with these, the validate stage runs
//! them again on what it consumes, the registry serves them over HTTP.

pub mod avro;
pub mod checks;
pub mod compose;
pub mod decode;
pub mod keying;
pub mod library;
pub mod resolve;
pub mod schema_validator;

pub use avro::{avro_schema_for, avro_to_json, json_to_avro, try_avro_to_json, AvroMapError};

pub use checks::{filed_under, target, MessageRefs, Target, TargetError};
pub use compose::{compose, ComposeError, Composition};
pub use keying::partition_key;
pub use resolve::{resolve, ResolveError};
pub use schema_validator::SchemaValidators;
