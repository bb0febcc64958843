//! HTTP helpers shared by every API of the project (control's management API, the edge, the
//! registry and the lake APIs), so they answer and authenticate alike:
//!
//! - [`Problem`]: the one error body (RFC 9457 `application/problem+json`);
//! - [`ApiJson`]: a JSON body extractor whose rejections are problem documents;
//! - [`admin_only`] / [`require_admin`]: the admin bearer token guard of the management APIs.
//!
//! Modules: `problem` ← `json`, `problem` ← `admin_auth`. Nothing here knows the catalog.

mod admin_auth;
mod json;
mod problem;

pub use admin_auth::{admin_only, require_admin};
pub use json::ApiJson;
pub use problem::Problem;
