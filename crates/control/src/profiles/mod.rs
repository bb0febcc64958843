//! The read side of profiles: a [`ProfileView`] folded from `profile.updates` and
//! `identity.graph` ([`view`]), and the AEP-shaped Profile and Identity APIs over it
//! ([`router`]):
//!
//! - `GET /access/entities?schema.name=_xdm.context.profile&entityId=&entityIdNS=[&mergePolicyId=]`:
//!   the profile holding an identity, its attributes merged at query time under the merge
//!   policy asked for (else the sandbox's default, else timestamp-ordered over the graph);
//! - `GET /access/entities?schema.name=_xdm.context.experienceevent&relatedSchema.name=_xdm.context.profile&relatedEntityId=&relatedEntityIdNS=[&limit=][&start=]`:
//!   its events, newest first, paged;
//! - `GET /identity/cluster/members?xid=<ns>:<id>`: the identities of its profile;
//! - `GET /identity/cluster/history?xid=<ns>:<id>`: the graph changes of its profile and those
//!   naming it.
//!
//! The view keeps the newest 1,000 events of each profile; the profile stage holds the full
//! history.

mod http;
pub mod memberships;
pub mod params;
pub mod view;

pub use http::router;
pub use view::{ProfileView, ProfileViewError};
