//! Identity settings every stage reads the same way (`[identity]`): which namespaces key an
//! event when none of its identities is marked primary. The edge keys `ingest.raw` and validate
//! keys `events.valid` with them, so one configuration keys both alike.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentitySettings {
    /// Identity namespaces, in order of preference, for the key of an event whose identityMap
    /// marks no identity primary.
    pub namespaces: Vec<String>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        Self {
            namespaces: ["ECID", "CRMID", "Email", "Phone"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}
