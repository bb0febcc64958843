//! How the runtime batches and commits, and who this instance is. Every stage embeds
//! [`RuntimeSettings`] in its own configuration section, so `validate.commit_interval_ms` and
//! `profile.commit_interval_ms` are set the same way.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Batching and transaction settings shared by every stage.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Most input records handed to the processor at once.
    pub max_batch: usize,
    /// How long a batch waits for more records once it has one.
    pub max_wait_ms: u64,
    /// Under load, a transaction stays open this long and carries every batch read meanwhile
    /// (Kafka Streams' exactly-once default is 100 ms). When the input runs dry it commits at
    /// once, so an idle stage adds no latency.
    pub commit_interval_ms: u64,
    /// A transaction commits early once it carries this many input records.
    pub max_transaction_records: usize,
    /// Stateful stages: the directory under which an instance keeps its keyed state on disk, in
    /// `<stage>-<instance>-<pid>` (wiped when the stage starts, removed when it stops; the
    /// changelog topic is the source of truth). Default: `<temp dir>/cdp-state`.
    pub state_dir: Option<String>,
    /// Stateful stages: the state store's block cache, in MiB. Resident memory for state is about
    /// this plus an 8 MiB write buffer per input partition held, however many keys there are.
    pub state_cache_mb: u64,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            max_batch: 1000,
            max_wait_ms: 20,
            commit_interval_ms: 100,
            max_transaction_records: 50_000,
            state_dir: None,
            state_cache_mb: 64,
        }
    }
}

impl RuntimeSettings {
    /// Where the instance `instance` of `stage` keeps its state: `<state_dir>/<stage>-<instance>-<pid>`
    /// (characters other than ASCII letters, digits, `.`, `_` and `-` in the instance become
    /// `_`).
    pub fn state_path(&self, stage: &str, instance: &str) -> PathBuf {
        let base = match self.state_dir.as_deref().map(str::trim) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => std::env::temp_dir().join("cdp-state"),
        };
        base.join(format!(
            "{}-{}",
            state_dir_prefix(stage, instance),
            std::process::id()
        ))
    }
}

/// `<stage>-<instance>`, safe as a file name: the state directories of one instance, whatever
/// process made them, start with it and a `-`.
pub(crate) fn state_dir_prefix(stage: &str, instance: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}-{}", safe(stage), safe(instance))
}

#[derive(Debug, thiserror::Error)]
#[error("cannot tell this instance's name (gethostname failed: {0}); set instance_id in the stage's configuration")]
pub struct InstanceError(std::io::Error);

/// This instance's stable name: the configured one, else the host name. It makes the
/// transactional id, so it must survive a restart (a restarted instance then fences its
/// predecessor) and differ between instances running at the same time; there is no fallback
/// that could collide.
pub fn instance_id(configured: Option<&str>) -> Result<String, InstanceError> {
    if let Some(id) = configured.map(str::trim).filter(|id| !id.is_empty()) {
        return Ok(id.to_string());
    }
    hostname().map_err(InstanceError)
}

fn hostname() -> std::io::Result<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    if name.is_empty() {
        return Err(std::io::Error::other("the host name is empty"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_instance_wins_and_the_host_name_is_the_default() {
        assert_eq!(instance_id(Some("a-1")).expect("configured"), "a-1");
        let host = instance_id(None).expect("host name");
        assert!(!host.is_empty());
        assert_ne!(host, "0");
        assert_eq!(instance_id(Some("  ")).expect("blank means default"), host);
    }

    #[test]
    fn the_state_directory_is_per_stage_instance_and_process() {
        let pid = std::process::id();
        let default = RuntimeSettings::default();
        assert_eq!(
            default.state_path("profile", "host/1"),
            std::env::temp_dir()
                .join("cdp-state")
                .join(format!("profile-host_1-{pid}"))
        );
        let configured = RuntimeSettings {
            state_dir: Some("/var/lib/cdp".into()),
            ..RuntimeSettings::default()
        };
        assert_eq!(
            configured.state_path("profile", "a"),
            PathBuf::from(format!("/var/lib/cdp/profile-a-{pid}"))
        );
    }
}
