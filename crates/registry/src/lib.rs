//! The registry serves the pipeline's data contracts:
//!
//! - the `/xdm/schemas` and `/datasets` management endpoints (both stored in the catalog topic
//!   through the catalog writer), over the XDM logic of `cdp-xdm` (composition from the
//!   embedded `schemas/` sources, schemaRef resolution);
//! - a Confluent Schema Registry–compatible subset for the Avro topics, stored in the compacted
//!   `<ns>.schemas` topic so every registry instance assigns the same ids.
//!
//! The XDM modules (`avro`, `compose`, `library`, `resolve`) live in `cdp-xdm`; they are
//! re-exported here under their old paths for existing callers.

pub mod confluent;
mod state;
mod xdm_http;

// `compose` and `resolve` name both a module and its function: one `use` brings both.
pub use cdp_xdm::{
    avro, avro_schema_for, avro_to_json, compose, json_to_avro, library, resolve, try_avro_to_json,
    AvroMapError, ComposeError, Composition, ResolveError,
};
pub use state::{confluent_router, RegistryError, RegistryState};
pub use xdm_http::xdm_router;
