//! The control plane: management APIs for streaming connections (streams), API keys and access
//! tokens, and the compacted catalog topic where all of that metadata lives.
//!
//! Control writes catalog records; every stage (the edge first) follows the catalog topic with a
//! [`catalog::CatalogView`], so a change takes effect within a second without a restart. Tokens
//! are JWTs signed here and verified by the edge against the catalog (a deleted or rotated key
//! invalidates its tokens at once).

pub mod catalog;
pub mod http;
pub mod model;
pub mod settings;
pub mod tokens;

pub use catalog::{CatalogView, CatalogWriter};
pub use model::{ApiKey, Dataset, PayloadType, Stream, ValueFormat, XdmSchema};
pub use settings::{AuthSettings, ControlSettings};
