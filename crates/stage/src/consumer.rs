//! The group consumer every stage reads through: it counts rebalances (an *epoch*), remembers
//! which partitions were revoked, reports per-partition lag from librdkafka's statistics, and
//! keeps librdkafka's blocking calls (seek, commit, metadata) off the async threads.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdp_contract::KafkaSettings;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::metrics::StageMetrics;

/// A topic partition.
pub type Tp = (String, i32);

/// Rebalance bookkeeping, written by librdkafka's callbacks and read by the stage's loop.
pub struct StageContext {
    epoch: AtomicU64,
    revoked: Mutex<Vec<Tp>>,
    metrics: StageMetrics,
}

impl ClientContext for StageContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // librdkafka lists an internal partition -1 and reports -1 for unknown lag.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics.lag(topic, *partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for StageContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut r = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            r.extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition())),
            );
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.epoch.fetch_add(1, Ordering::SeqCst);
            self.metrics.rebalance();
        }
    }
}

/// A stage's group consumer.
#[derive(Clone)]
pub struct StageConsumer {
    inner: Arc<StreamConsumer<StageContext>>,
}

impl StageConsumer {
    pub fn new(
        kafka: &KafkaSettings,
        client_id: &str,
        group_id: &str,
        metrics: StageMetrics,
    ) -> Result<Self, KafkaError> {
        let mut config = kafka.consumer(client_id, group_id);
        // Lag per partition comes from librdkafka's statistics.
        config.set("statistics.interval.ms", "5000");
        let inner = config.create_with_context(StageContext {
            epoch: AtomicU64::new(0),
            revoked: Mutex::new(Vec::new()),
            metrics,
        })?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    pub fn raw(&self) -> &StreamConsumer<StageContext> {
        &self.inner
    }

    pub fn subscribe(&self, topics: &[&str]) -> Result<(), KafkaError> {
        self.inner.subscribe(topics)
    }

    /// How many rebalances completed so far.
    pub fn epoch(&self) -> u64 {
        self.inner.context().epoch.load(Ordering::SeqCst)
    }

    /// The partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<Tp> {
        let mut r = self
            .inner
            .context()
            .revoked
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *r)
    }

    /// The partitions assigned now.
    pub fn assignment(&self) -> Result<BTreeSet<Tp>, KafkaError> {
        Ok(self
            .inner
            .assignment()?
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect())
    }

    pub async fn recv(&self) -> Result<OwnedMessage, KafkaError> {
        self.inner.recv().await.map(|m| m.detach())
    }

    /// Puts the consumer back at the given offsets, so those records are read again. Partitions
    /// no longer assigned are skipped: their new owner starts from the committed offsets.
    pub async fn rewind(&self, topic: &str, firsts: Vec<(i32, i64)>) {
        let (c, topic) = (self.inner.clone(), topic.to_string());
        let _ = tokio::task::spawn_blocking(move || {
            for (partition, first) in firsts {
                if let Err(e) = c.seek(
                    &topic,
                    partition,
                    Offset::Offset(first),
                    Duration::from_secs(5),
                ) {
                    tracing::debug!(partition, error = %e, "cannot rewind (partition moved away?)");
                }
            }
        })
        .await;
    }

    /// The group's committed offsets of `partitions` of `topic` (0 for a partition without one:
    /// its first record is at 0 or later).
    pub async fn committed(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<std::collections::HashMap<i32, i64>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition(topic, *p);
        }
        let c = self.inner.clone();
        let got =
            tokio::task::spawn_blocking(move || c.committed_offsets(tpl, Duration::from_secs(10)))
                .await
                .map_err(|_| KafkaError::Canceled)??;
        Ok(got
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => (e.partition(), o),
                _ => (e.partition(), 0),
            })
            .collect())
    }

    /// Commits offsets (for stages that commit without a transaction).
    pub async fn commit(&self, offsets: TopicPartitionList) -> Result<(), KafkaError> {
        let c = self.inner.clone();
        tokio::task::spawn_blocking(move || c.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|_| KafkaError::Canceled)?
    }

    pub fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.inner.group_metadata()
    }

    /// Waits until every topic exists (subscribing to a topic that does not exist yet leaves
    /// the consumer on stale metadata for minutes); false when shut down first.
    pub async fn wait_for_topics(
        &self,
        names: &[&str],
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut warned = false;
        loop {
            let c = self.inner.clone();
            let wanted: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let present = tokio::task::spawn_blocking(move || {
                wanted.iter().all(|t| {
                    c.fetch_metadata(Some(t), Duration::from_secs(5))
                        .map(|m| {
                            m.topics()
                                .iter()
                                .any(|mt| mt.error().is_none() && !mt.partitions().is_empty())
                        })
                        .unwrap_or(false)
                })
            })
            .await
            .unwrap_or(false);
            if present {
                return true;
            }
            if !warned {
                tracing::info!(topics = ?names, "waiting for the input topics to exist");
                warned = true;
            }
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return false,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

/// The first and next offsets per partition of a set of records.
#[derive(Debug, Default, Clone)]
pub struct Span {
    pub parts: std::collections::BTreeMap<i32, (i64, i64)>,
}

impl Span {
    pub fn add(&mut self, partition: i32, offset: i64) {
        let e = self.parts.entry(partition).or_insert((offset, offset + 1));
        e.0 = e.0.min(offset);
        e.1 = e.1.max(offset + 1);
    }

    pub fn of(messages: &[OwnedMessage]) -> Self {
        let mut s = Span::default();
        for m in messages {
            s.add(m.partition(), m.offset());
        }
        s
    }

    pub fn merge(&mut self, other: &Span) {
        for (p, (first, next)) in &other.parts {
            self.add(*p, *first);
            self.add(*p, *next - 1);
        }
    }

    pub fn firsts(&self) -> Vec<(i32, i64)> {
        self.parts.iter().map(|(p, (f, _))| (*p, *f)).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The offsets to commit: the next offset of every partition.
    pub fn commit_list(&self, topic: &str) -> Result<TopicPartitionList, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (p, (_, next)) in &self.parts {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*next))?;
        }
        Ok(tpl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_keep_the_first_and_next_offsets() {
        let mut a = Span::default();
        a.add(0, 5);
        a.add(0, 3);
        a.add(1, 9);
        let mut b = Span::default();
        b.add(0, 10);
        a.merge(&b);
        assert_eq!(a.parts[&0], (3, 11));
        assert_eq!(a.parts[&1], (9, 10));
        assert_eq!(a.firsts(), vec![(0, 3), (1, 9)]);
    }
}
