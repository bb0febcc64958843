//! A dataset's activity (the seed's Dataset Activity view): record and failed counts in total
//! and per minute over a recent window, and its most recent batches. The dataset API and the
//! dashboard both show it.

use serde::Serialize;

use crate::batches::{BatchState, BatchSummary};

/// Batches listed with the activity.
pub const RECENT_BATCHES: usize = 20;
const MINUTE: i64 = 60_000;

#[derive(Debug, Serialize, Default, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    pub start_ms: i64,
    pub records: u64,
    pub failed: u64,
    pub batches: u64,
}

#[derive(Debug, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    pub dataset_id: String,
    pub minutes: u32,
    pub from_ms: i64,
    pub to_ms: i64,
    pub record_count: u64,
    pub failed_count: u64,
    /// One bucket per minute, oldest first, by time of receipt.
    pub buckets: Vec<Bucket>,
    /// The most recent batches, newest first.
    pub batches: Vec<BatchSummary>,
    /// Every batch of the dataset, not only the recent ones listed (the API's dataset view
    /// says it; the activity answer does not).
    #[serde(skip)]
    pub batch_count: usize,
}

/// The activity of `dataset` over the `minutes` whole minutes up to the one holding `now_ms`.
pub fn activity(state: &BatchState, dataset: &str, minutes: u32, now_ms: i64) -> Activity {
    let minutes = minutes.max(1);
    let to = (now_ms.div_euclid(MINUTE) + 1) * MINUTE;
    let from = to - i64::from(minutes) * MINUTE;
    let mut buckets: Vec<Bucket> = (0..minutes)
        .map(|i| Bucket {
            start_ms: from + i64::from(i) * MINUTE,
            ..Bucket::default()
        })
        .collect();
    let bucket_of = |ms: i64| {
        (from..to)
            .contains(&ms)
            .then(|| ((ms - from) / MINUTE) as usize)
    };
    let (mut records, mut failed) = (0, 0);
    for c in state.dataset_contributions(dataset) {
        records += c.records;
        failed += c.failed;
        // A contribution is counted in the minute its first record was received.
        if let Some(b) = bucket_of(c.first_received_ms).and_then(|i| buckets.get_mut(i)) {
            b.records += c.records;
            b.failed += c.failed;
        }
    }
    let mut batches = state.dataset_batches(dataset);
    for b in &batches {
        if let Some(bk) = bucket_of(b.created_ms).and_then(|i| buckets.get_mut(i)) {
            bk.batches += 1;
        }
    }
    let batch_count = batches.len();
    batches.sort_by_key(|b| std::cmp::Reverse((b.created_ms, b.updated_ms)));
    batches.truncate(RECENT_BATCHES);
    Activity {
        dataset_id: dataset.to_string(),
        minutes,
        from_ms: from,
        to_ms: to,
        record_count: records,
        failed_count: failed,
        buckets,
        batches,
        batch_count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batches::{contribution_key, Contribution};

    fn put(
        state: &mut BatchState,
        batch: &str,
        file: &str,
        received: i64,
        records: u64,
        failed: u64,
    ) {
        let c = Contribution {
            batch_id: batch.into(),
            dataset_id: Some("ds".into()),
            file: file.into(),
            records,
            failed,
            first_received_ms: received,
            last_received_ms: received,
            written_ms: received,
            topic: "t".into(),
            partition: 0,
            first_offset: 0,
        };
        let value = serde_json::to_vec(&c).expect("contribution JSON");
        state.apply(&contribution_key(batch, file), Some(&value));
    }

    #[test]
    fn counts_land_in_the_minute_of_receipt_and_old_ones_only_in_the_totals() {
        let now = 10 * MINUTE + 30_000;
        let mut state = BatchState::default();
        put(&mut state, "b1", "f1", now - 5_000, 7, 1);
        put(&mut state, "b2", "f2", now - 2 * MINUTE, 3, 2);
        put(&mut state, "b3", "f3", now - 100 * MINUTE, 50, 0);
        let a = activity(&state, "ds", 5, now);
        assert_eq!(a.buckets.len(), 5);
        assert_eq!((a.record_count, a.failed_count), (60, 3));
        let last = a.buckets.last().expect("a bucket");
        assert_eq!((last.records, last.failed, last.batches), (7, 1, 1));
        assert_eq!(a.buckets[2].records, 3);
        assert_eq!(a.buckets.iter().map(|b| b.records).sum::<u64>(), 10);
        assert_eq!(a.batches.first().map(|b| b.id.as_str()), Some("b1"));
        assert_eq!(a.to_ms, 11 * MINUTE);
    }
}
