//! Replays never duplicate rows: neither after a crash between writing files and committing
//! offsets, nor when the group's offsets are rewound and the replay cuts flushes differently.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use cdp_lake::BatchView;
use common::*;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

fn partitions(env: &Env) -> Vec<(String, i32)> {
    [env.topics.events_valid(), env.topics.events_error()]
        .into_iter()
        .flat_map(|t| [(t.clone(), 0), (t, 1)])
        .collect()
}

/// True when the group committed every partition up to its end.
fn all_committed(env: &Env, group: &str) -> bool {
    let c: BaseConsumer = env
        .kafka
        .consumer("lake-test-offsets", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions(env) {
        tpl.add_partition(&t, p);
    }
    let Ok(committed) = c.committed_offsets(tpl, Duration::from_secs(5)) else {
        return false;
    };
    committed.elements().iter().all(|e| {
        let (_, high) = c
            .fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
            .expect("watermarks");
        match e.offset() {
            Offset::Offset(o) => o >= high,
            _ => high == 0,
        }
    })
}

async fn wait_all_committed(env: &Env, group: &str) {
    eventually(
        Duration::from_secs(60),
        "the lake to commit every partition up to its end",
        async || all_committed(env, group),
    )
    .await;
}

/// The group starts over from offset 0 on every partition (as an operator's reset would).
fn rewind(env: &Env, group: &str) {
    let c: BaseConsumer = env
        .kafka
        .consumer("lake-test-rewind", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions(env) {
        tpl.add_partition_offset(&t, p, Offset::Offset(0))
            .expect("offset");
    }
    c.commit(&tpl, CommitMode::Sync).expect("rewind");
}

/// Every data row's (partition, offset) is unique and the count is as expected.
fn assert_once(root: &std::path::Path, expected: usize) {
    let rows = rows_in(&parquet_files(
        &root.join(format!("datasets/{DATASET}/date=2026-01-01")),
    ));
    let keys: HashSet<(i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["_partition"].as_i64().unwrap_or(-1),
                r["_offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(keys.len(), rows.len(), "a row appears twice");
    assert_eq!(rows.len(), expected);
    let ids: HashSet<&str> = rows.iter().filter_map(|r| r["_id"].as_str()).collect();
    assert_eq!(ids.len(), expected);
}

async fn batch_totals(view: &BatchView, batch: &str, records: u64, failed: u64) {
    eventually(
        Duration::from_secs(20),
        &format!("batch {batch} to total {records} records and {failed} failed"),
        async || {
            let b = view.batch(batch);
            if b.as_ref()
                .is_some_and(|b| b.records == records && b.failed == failed)
            {
                Ok(())
            } else {
                Err(b)
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewound_offsets_replay_with_other_flush_boundaries_without_duplicates() {
    let env = Env::start().await;
    let root = temp_root("rewind");
    let mut s = settings(&root);
    s.flush_records = 7;
    for i in 0..40 {
        env.produce_valid("r1", i).await;
    }
    for i in 0..5 {
        env.produce_error("r1", 1000 + i, Some(DATASET)).await;
    }
    let lake = env.run_lake(s.clone());
    wait_all_committed(&env, &s.group_id).await;
    lake.stop().await;
    assert_once(&root, 40);
    let first_files = parquet_files(&root).len();

    rewind(&env, &s.group_id);
    s.flush_records = 5;
    let lake = env.run_lake(s.clone());
    wait_all_committed(&env, &s.group_id).await;
    lake.stop().await;
    assert_once(&root, 40);
    assert!(
        parquet_files(&root).len() >= first_files,
        "smaller flushes, more files"
    );
    let errors = rows_in(&parquet_files(
        &root.join(format!("datasets/{DATASET}/_errors")),
    ));
    assert_eq!(errors.len(), 5);

    // The batch metadata of the removed files was retracted.
    let view = BatchView::start(&env.kafka, &env.topics)
        .await
        .expect("view");
    batch_totals(&view, "r1", 40, 5).await;
    let files: Vec<String> = view.batch("r1").map(|b| b.files).unwrap_or_default();
    for f in files {
        assert!(
            root.join(&f).exists(),
            "batch names a file that is gone: {f}"
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_killed_mid_stream_and_restarted_writes_every_event_once() {
    let env = Env::start().await;
    let root = temp_root("kill");
    let mut s = settings(&root);
    s.flush_records = 25;
    s.flush_interval_ms = 100;
    let total = 300;
    let lake = env.run_lake(s.clone());
    for i in 0..total {
        env.produce_valid("k1", i).await;
        if i == total / 2 {
            // Let some flushes happen, then crash while more is arriving.
            let dir = root.join("datasets");
            eventually(Duration::from_secs(30), "first files", async || {
                !parquet_files(&dir).is_empty()
            })
            .await;
        }
    }
    lake.kill().await;
    // The restarted lake cuts its flushes elsewhere, as a time-based flush might.
    s.flush_records = 9;
    let lake = env.run_lake(s.clone());
    wait_all_committed(&env, &s.group_id).await;
    lake.stop().await;
    assert_once(&root, total);
    let view = BatchView::start(&env.kafka, &env.topics)
        .await
        .expect("view");
    batch_totals(&view, "k1", total as u64, 0).await;
    let _ = std::fs::remove_dir_all(&root);
}
