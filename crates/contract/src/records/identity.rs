//! Identities as every topic carries them: an identity (`ns:id`), what the graph knows of its
//! namespace ([`NamespaceTraits`], [`IdentityType`]), and the identities of a record that were
//! not linked, with the reason ([`Refused`]).

use std::fmt;

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

/// What kind of identifier an identity namespace holds; it decides which identities of a full
/// graph are evicted first (partner, then cookie, then device, then the rest) and which identity
/// owns an event (the reverse).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IdentityType {
    Partner,
    Cookie,
    Device,
    Email,
    Phone,
    CrossDevice,
}

/// Why an identity of a record was not linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RefusedReason {
    /// `""`, `null`, `anonymous`, `invalid` (any case).
    BlockedValue,
    TooLong,
    /// An `ECID` that is not 38 digits.
    MalformedEcid,
    /// The namespace does not exist in the sandbox.
    UnknownNamespace,
    /// `id` missing or not a string.
    NotAString,
    /// Beyond the first 20 identities of the record.
    OverRecordLimit,
}

impl RefusedReason {
    pub fn label(self) -> &'static str {
        match self {
            RefusedReason::BlockedValue => "blocked_value",
            RefusedReason::TooLong => "too_long",
            RefusedReason::MalformedEcid => "malformed_ecid",
            RefusedReason::UnknownNamespace => "unknown_namespace",
            RefusedReason::NotAString => "not_a_string",
            RefusedReason::OverRecordLimit => "over_record_limit",
        }
    }
}

/// An identity that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Refused {
    pub ns: String,
    /// The value, cut to 64 characters.
    pub id: String,
    pub reason: RefusedReason,
}
