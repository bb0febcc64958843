//! Identities and the identity graph: which identities of a record may be linked
//! ([`extract`]), and how links form, are cut and evicted ([`graph`]). What an identity is, and
//! the records the graph writes, are the contract's (`cdp_contract::records`).

pub mod backfill;
pub mod extract;
pub mod graph;
pub mod history;
pub mod query;
pub mod stage;
