//! The lake's configuration (`[lake]` in the configuration file).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LakeSettings {
    /// Where the lake lives: `file:///abs/dir` (the default: `<cwd>/.cdp/lake`) or
    /// `s3://bucket/prefix`.
    pub root: String,
    /// Consumer group of the lake; every instance of one pipeline uses the same.
    pub group_id: String,
    /// Flush when this many records are buffered (over all partitions of this instance).
    pub flush_records: usize,
    /// Flush when the oldest buffered record has waited this long.
    pub flush_interval_ms: u64,
    /// Parquet compression: `zstd`, `snappy` or `none`.
    pub compression: String,
    /// Confluent-compatible schema registry used to decode Avro values on events.valid.
    pub registry_url: String,
    /// The bearer credential presented to the registry; default (unset): `control.admin_token`,
    /// the stages' credential.
    pub registry_token: Option<String>,
    /// Partitions of the compacted batches topic when the lake creates it.
    pub batch_partitions: i32,
    /// How many Parquet files one flush writes at the same time.
    pub write_concurrency: usize,
    pub s3: S3Settings,
}

/// S3 options; anything left empty falls back to the standard `AWS_*` environment variables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    /// e.g. `http://127.0.0.1:9000` for an S3-compatible server.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow plain-HTTP endpoints (tests, local servers).
    pub allow_http: bool,
    /// Extra object_store S3 options (`aws_virtual_hosted_style_request`, …), verbatim.
    pub options: BTreeMap<String, String>,
}

impl Default for LakeSettings {
    fn default() -> Self {
        let root = std::env::current_dir()
            .unwrap_or_else(|_| std::env::temp_dir())
            .join(".cdp")
            .join("lake");
        Self {
            root: format!("file://{}", root.display()),
            group_id: "cdp-lake".to_string(),
            flush_records: 10_000,
            flush_interval_ms: 5_000,
            compression: "zstd".to_string(),
            registry_url: "http://127.0.0.1:8081".to_string(),
            registry_token: None,
            batch_partitions: 1,
            write_concurrency: 8,
            s3: S3Settings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_absolute_and_unknown_keys_refused() {
        let d = LakeSettings::default();
        assert!(d.root.starts_with("file:///"), "{}", d.root);
        let s: LakeSettings = serde_json::from_value(serde_json::json!({
            "root": "s3://b/p", "s3": {"endpoint": "http://127.0.0.1:9000", "allow_http": true}
        }))
        .expect("settings");
        assert_eq!(s.flush_records, 10_000);
        assert!(s.s3.allow_http);
        assert!(serde_json::from_value::<LakeSettings>(serde_json::json!({"rot": "x"})).is_err());
    }
}
