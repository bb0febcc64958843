//! `cdp-client`: the server-side Rust SDK of the cdp edge.
//!
//! It owns the way from an XDM event in your program to an answer from the edge: it fills in
//! `_id` and `timestamp`, wraps each event in the collection API's message envelope, batches
//! events (by count, bytes and linger time) into `POST /collection/batch/{streamId}`, retries
//! throttled and failed requests (honouring `Retry-After`, else exponential back-off with full
//! jitter), gets and renews access tokens from an API key, and settles every event with a typed
//! [`Outcome`] taken from the edge's 207 answer. Memory is bounded: when the buffer is full,
//! `send` waits (back-pressure) and `try_send` fails.
//!
//! It does not validate events against their schema (the pipeline does, or the edge with
//! [`ClientBuilder::sync_validation`]) and does not persist anything: events not yet settled
//! when the process dies are lost, and a request whose answer was lost is sent again, so
//! delivery is at least once (events keep their `_id` across retries).
//!
//! ```no_run
//! use cdp_client::{Auth, Client, Event, Outcome};
//! use serde_json::json;
//!
//! # async fn run() -> Result<(), cdp_client::ClientError> {
//! let client = Client::builder("http://127.0.0.1:8080", "<stream id>")
//!     .schema_id("https://ns.adobe.com/acme/schemas/web")
//!     .auth(Auth::ApiKey {
//!         control_url: "http://127.0.0.1:8081".into(),
//!         api_key: std::env::var("CDP_API_KEY").unwrap_or_default(),
//!     })
//!     .build()?;
//! let event = Event::new(json!({"eventType": "web.webpagedetails.pageViews"}))
//!     .with_identity("ECID", "12345678901234567890123456789012345678", true);
//! let receipt = client.send(event).await?;
//! match receipt.await {
//!     Outcome::Accepted { xaction_id, .. } => println!("accepted as {xaction_id}"),
//!     Outcome::Refused { message, .. } => eprintln!("refused: {message}"),
//!     Outcome::Failed(e) => eprintln!("failed: {e}"),
//! }
//! client.close().await?;
//! # Ok(())
//! # }
//! ```

mod auth;
mod client;
mod error;
mod event;
mod retry;
mod worker;

pub use auth::Auth;
pub use client::{
    Client, ClientBuilder, Outcome, Receipt, Stats, EDGE_MAX_BODY_BYTES, EDGE_MAX_MESSAGES,
};
pub use error::ClientError;
pub use event::Event;

// The README's example is compiled with the doc tests, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
