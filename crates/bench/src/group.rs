//! Waiting for a stage's consumer group to get through a topic: the topic's end offsets when the
//! load was written, and how far the group has committed towards them; and readers of the
//! benchmarks' own that follow every partition of some topics.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// The end offsets of `topic`'s partitions `0..partitions`, and their sum.
pub fn end_offsets(
    probe: &BaseConsumer,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<(TopicPartitionList, i64)> {
    let mut ends = TopicPartitionList::new();
    let mut total = 0;
    for p in 0..partitions {
        let (_, high) = probe.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        ends.add_partition_offset(topic, p, Offset::Offset(high))?;
        total += high;
    }
    Ok((ends, total))
}

/// The probe's group's committed offsets on `ends`' partitions, summed.
pub fn committed(probe: &BaseConsumer, ends: &TopicPartitionList) -> anyhow::Result<i64> {
    let committed = probe.committed_offsets(ends.clone(), Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum())
}

/// Assigns `reader` every partition of `topics`, each read from `at`.
pub fn assign_every_partition(
    reader: &impl Consumer,
    topics: &[&str],
    at: Offset,
) -> anyhow::Result<()> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = reader.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), at)?;
            }
        }
    }
    reader.assign(&tpl)?;
    Ok(())
}
