//! HTTP helpers shared by every API of the project (control's management API, the edge, the
//! registry and the lake APIs), so they answer and authenticate alike:
//!
//! - [`Problem`]: the one error body (RFC 9457 `application/problem+json`);
//! - [`ApiJson`]: a JSON body extractor whose rejections are problem documents;
//! - [`org_scoped`] / [`operator_only`]: the management APIs' guard (an org's credential within
//!   its org, sandboxes and roles; or the operator's admin token);
//! - [`paging`]: paged lists in seed 003's shape (`limit`, `start`, the `page` object);
//! - [`require_admin`]: the admin token alone, for the stages' internal query APIs, which
//!   follow no catalog.
//!
//! Modules: `problem` ← `json`, `problem` ← `admin_auth`, `problem` ← `guard` (which asks the
//! catalog's [`cdp_catalog::principal`] who is calling).

mod admin_auth;
mod guard;
mod json;
pub mod paging;
mod problem;

pub use admin_auth::require_admin;
pub use guard::{
    forbidden, operator_only, org_scoped, refused, role_of, unauthorized, DEFAULT_SANDBOX,
    ORG_HEADER, SANDBOX_HEADER,
};
pub use json::ApiJson;
pub use paging::Paging;
pub use problem::Problem;
