//! The registry owns the pipeline's data contracts:
//!
//! - XDM-like schemas: the class and field-group sources in `schemas/` (embedded), their
//!   composition into one resolved JSON Schema per tenant schema version, schemaRef resolution
//!   for messages, and the `/xdm/schemas` and `/datasets` management endpoints (both stored in
//!   the catalog topic through control's writer);
//! - a Confluent Schema Registry–compatible subset for the Avro topics, stored in the compacted
//!   `<ns>.schemas` topic so every registry instance assigns the same ids;
//! - the mapping of an XDM schema to Avro, for datasets whose events travel as Avro.

pub mod avro;
pub mod compose;
pub mod confluent;
pub mod library;
pub mod resolve;
mod state;
mod xdm_http;

pub use avro::{avro_schema_for, avro_to_json, json_to_avro, AvroMapError};
pub use compose::{compose, ComposeError, Composition};
pub use resolve::{resolve, ResolveError};
pub use state::{confluent_router, RegistryError, RegistryState};
pub use xdm_http::xdm_router;
