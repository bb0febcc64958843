//! The read side of profiles: the AEP-shaped Profile and Identity APIs ([`router`]), answered
//! from the instances that hold the profiles and the identity graph ([`lookup`]) — control keeps
//! no copy of either:
//!
//! - `GET /access/entities?schema.name=_xdm.context.profile&entityId=&entityIdNS=[&mergePolicyId=]`:
//!   the profile holding an identity, its attributes merged at query time under the merge
//!   policy asked for (else the sandbox's default, else timestamp-ordered over the graph);
//! - `GET /access/entities?schema.name=_xdm.context.experienceevent&relatedSchema.name=_xdm.context.profile&relatedEntityId=&relatedEntityIdNS=[&limit=][&start=]`:
//!   its events, newest first, paged (the fields the engine keeps of them);
//! - `GET /identity/cluster/members?xid=<ns>:<id>`: the identities of its profile;
//! - `GET /identity/cluster/history?xid=<ns>:<id>`: the graph changes of its profile and those
//!   naming it.

mod http;
pub mod lookup;
pub mod params;

pub use http::{lookup_failed, router};
pub use lookup::{LookupError, Lookups, LookupsError};
