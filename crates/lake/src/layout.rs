//! Where things live under the lake root. File names carry the Kafka topic, partition and the
//! first offset of the flush that wrote them, so replaying the same offsets writes the same
//! names (an overwrite, not a duplicate).

use chrono::DateTime;
use object_store::path::Path;

/// The directory of records that carry no dataset id (refused before a dataset was known).
pub const UNASSIGNED: &str = "_unassigned";

/// `YYYY-MM-DD` (UTC) of a receipt time in milliseconds.
pub fn date_of(received_ms: i64) -> String {
    DateTime::from_timestamp_millis(received_ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "1970-01-01".to_string())
}

/// `part-{topic}-{partition}-{first offset}[-v{schema version}].parquet`; zero-padded so names
/// sort by offset.
fn file_name(topic: &str, partition: i32, first_offset: i64, version: Option<u32>) -> String {
    match version {
        Some(v) => format!("part-{topic}-{partition:05}-{first_offset:020}-v{v}.parquet"),
        None => format!("part-{topic}-{partition:05}-{first_offset:020}.parquet"),
    }
}

/// `datasets/{dataset}/date=YYYY-MM-DD/part-….parquet`
pub fn data_file(
    dataset: &str,
    date: &str,
    topic: &str,
    partition: i32,
    first_offset: i64,
    version: Option<u32>,
) -> Path {
    Path::from(format!(
        "datasets/{dataset}/date={date}/{}",
        file_name(topic, partition, first_offset, version)
    ))
}

/// `datasets/{dataset | _unassigned}/_errors/date=YYYY-MM-DD/part-….parquet`
pub fn error_file(
    dataset: Option<&str>,
    date: &str,
    topic: &str,
    partition: i32,
    first_offset: i64,
) -> Path {
    Path::from(format!(
        "datasets/{}/_errors/date={date}/{}",
        dataset.unwrap_or(UNASSIGNED),
        file_name(topic, partition, first_offset, None)
    ))
}

/// The directory of one partition's flush manifests.
pub fn manifest_dir(topic: &str, partition: i32) -> Path {
    Path::from(format!("_lake/flushes/{topic}/{partition:05}"))
}

/// `_lake/flushes/{topic}/{partition}/{first offset}.json`
pub fn manifest_file(topic: &str, partition: i32, first_offset: i64) -> Path {
    Path::from(format!(
        "_lake/flushes/{topic}/{partition:05}/{first_offset:020}.json"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_sortable() {
        assert_eq!(date_of(1_700_000_000_000), "2023-11-14");
        let p = data_file("ds1", "2023-11-14", "cdp.events.valid", 3, 42, Some(2));
        assert_eq!(
            p.as_ref(),
            "datasets/ds1/date=2023-11-14/part-cdp.events.valid-00003-00000000000000000042-v2.parquet"
        );
        let e = error_file(None, "2023-11-14", "cdp.events.error", 0, 7);
        assert!(e
            .as_ref()
            .starts_with("datasets/_unassigned/_errors/date=2023-11-14/"));
    }
}
