//! The validate stage's configuration (`[validate]` in the configuration file).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidateSettings {
    /// Consumer group of the stage; every instance of one pipeline uses the same.
    pub group_id: String,
    /// This instance's stable name. It makes the transactional id, so a restarted instance
    /// fences its predecessor and aborts its open transaction at once. Must differ between
    /// instances running at the same time; default: the host name.
    pub instance_id: Option<String>,
    /// Most raw events handled in one transaction.
    pub max_batch: usize,
    /// How long a transaction waits for more events once it has one.
    pub max_wait_ms: u64,
    /// Identity namespaces, in order, used for the key of valid events when no identity is
    /// marked primary.
    pub identity_namespaces: Vec<String>,
    /// Partitions of events.valid / events.error when the stage creates them.
    pub partitions: i32,
}

impl Default for ValidateSettings {
    fn default() -> Self {
        Self {
            group_id: "cdp-validate".to_string(),
            instance_id: None,
            max_batch: 1000,
            max_wait_ms: 20,
            identity_namespaces: ["ECID", "CRMID", "Email", "Phone"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            partitions: 6,
        }
    }
}

impl ValidateSettings {
    pub fn instance(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "0".to_string())
        })
    }
}
