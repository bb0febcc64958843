//! The management API: streaming connections (streams), API keys and access tokens, served over
//! HTTP ([`http::router`]), the Flow Service API for streaming destinations ([`flows::router`]),
//! and its configuration ([`settings`]).
//!
//! What it manages lives in the catalog (`cdp-catalog`): control writes catalog records through a
//! `CatalogWriter`, and every stage (the edge first) follows the catalog topic with a
//! `CatalogView`, so a change takes effect within a second without a restart. The HTTP helpers
//! it shares with the other APIs (problem+json, JSON extractors, the admin-token guard) are in
//! `cdp-http`.

pub mod flows;
pub mod http;
pub mod profiles;
pub mod segments;
pub mod settings;

pub use settings::{AuthSettings, ControlSettings};

// Compatibility re-exports: the catalog used to live in this crate, and tests still name it
// through these paths. Source files import from `cdp_catalog` directly.
pub use cdp_catalog::tokens;
pub use cdp_catalog::{
    ApiKey, CatalogView, CatalogWriter, Dataset, PayloadType, Stream, ValueFormat, XdmSchema,
};

/// Compatibility: `cdp_catalog::model` plus the clock helper that used to live beside it.
pub mod model {
    pub use cdp_catalog::clock::now_ms;
    pub use cdp_catalog::model::*;
}

/// Compatibility: the catalog topic's fold, view and writer, now at `cdp_catalog`'s root.
pub mod catalog {
    pub use cdp_catalog::{
        topic_spec, CatalogError, CatalogState, CatalogView, CatalogWriter, Conditional,
        DatasetCreation, Decision, Refusal, SchemaChange, WriteError,
    };
}
