//! Identities and the identity graph: what an identity is, which identities of a record may be
//! linked ([`extract`]), and how links form, are cut and evicted ([`graph`]).

pub mod extract;
pub mod graph;
pub mod stage;

use std::fmt;

use cdp_catalog::{IdentityNamespace, IdentityType};
use serde::{Deserialize, Serialize};

/// One identity: a namespace code and a value (`ECID:0123…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identity {
    pub ns: String,
    pub id: String,
}

impl Identity {
    pub fn new(ns: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            ns: ns.into(),
            id: id.into(),
        }
    }

    /// Parses `ns:id` (the `xid` of the identity API); the value may contain colons.
    pub fn parse_xid(xid: &str) -> Option<Self> {
        let (ns, id) = xid.split_once(':')?;
        (!ns.is_empty() && !id.is_empty()).then(|| Self::new(ns, id))
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.ns, self.id)
    }
}

/// What the graph needs to know of an identity's namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceTraits {
    pub id_type: IdentityType,
    /// `Some(priority)` for a unique namespace (at most one value per graph).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<u32>,
}

impl From<&IdentityNamespace> for NamespaceTraits {
    fn from(n: &IdentityNamespace) -> Self {
        Self {
            id_type: n.id_type,
            unique: n.unique.then_some(n.priority.unwrap_or(u32::MAX)),
        }
    }
}

impl NamespaceTraits {
    /// Which identities go first when a graph is over its size limit: partner, then cookie,
    /// then device, then the people-level ones (email, phone, cross-device) together.
    pub fn eviction_rank(&self) -> u8 {
        match self.id_type {
            IdentityType::Partner => 0,
            IdentityType::Cookie => 1,
            IdentityType::Device => 2,
            IdentityType::Email | IdentityType::Phone | IdentityType::CrossDevice => 3,
        }
    }

    /// How strongly an identity names a person, for deciding which identity owns an event:
    /// unique namespaces first (by priority), then cross-device, email, phone, device, cookie,
    /// partner. Larger is stronger.
    pub fn ownership(&self) -> (u8, u32, u8) {
        let unique = match self.unique {
            Some(priority) => (1, u32::MAX - priority),
            None => (0, 0),
        };
        let kind = match self.id_type {
            IdentityType::CrossDevice => 5,
            IdentityType::Email => 4,
            IdentityType::Phone => 3,
            IdentityType::Device => 2,
            IdentityType::Cookie => 1,
            IdentityType::Partner => 0,
        };
        (unique.0, unique.1, kind)
    }
}
