//! The guardrails of segment definitions: how many may stream per sandbox, how large an
//! expression may be, and how many definitions a list page holds.

/// Streaming definitions per org and sandbox (AEP's guardrail): a create or change that would
/// make one more streaming definition beyond this is refused with a 422.
pub const MAX_STREAMING_PER_SANDBOX: usize = 500;

/// The longest PQL text accepted, in bytes (the parser has its own limits on nesting).
pub const MAX_EXPRESSION_BYTES: usize = 64 * 1024;

/// The longest name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 256;

/// Definitions per page when `limit` is absent (the seed's `page.limit`), and the largest
/// `limit` accepted: every paged list's.
pub use cdp_http::paging::{DEFAULT_LIMIT, MAX_LIMIT};
