//! One flow target's delivery loop: reads `segment.exports` as its own consumer group, keeps
//! the flow's records, delivers them and only then commits the position (at least once). A
//! delivery that fails is tried again with back-off, holding this target's position and no
//! other; records the destination refuses for good go to the dead-letter topic with the reason.

use std::collections::HashMap;
use std::time::Duration;

use cdp_contract::KafkaSettings;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::delivery::{DeliveryReport, Destination, OutRecord};
use crate::flows::avro::ExportAvro;
use crate::flows::status::StatusReporter;
use crate::settings::SinksSettings;
use cdp_contract::flow_run::FLOW_HEADER;

/// The header naming the target connection on a dead-lettered record.
pub const TARGET_HEADER: &str = "cdp-target";
/// The header carrying why the destination refused a dead-lettered record.
pub const REASON_HEADER: &str = "cdp-reason";

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot create the reader of {topic} for flow {flow}: {source}")]
    Consumer {
        topic: String,
        flow: String,
        source: rdkafka::error::KafkaError,
    },
}

pub struct Worker {
    pub flow_id: String,
    pub target_id: String,
    pub destination: Destination,
    pub exports_topic: String,
    pub deadletter_topic: String,
    pub producer: FutureProducer,
    pub status: StatusReporter,
    pub settings: SinksSettings,
    /// Set when the target takes Avro: each export is encoded before delivery.
    pub avro: Option<ExportAvro>,
}

/// A batch read from the exports topic: the flow's records and where to commit after them.
struct Batch {
    records: Vec<OutRecord>,
    /// Records that cannot be delivered in the target's format, with why: dead-lettered.
    refused: Vec<(OutRecord, String)>,
    /// Per partition, the offset after the last record read (this flow's or not).
    next: HashMap<i32, i64>,
}

impl Worker {
    /// Runs until `stop` turns true.
    pub async fn run(
        mut self,
        kafka: &KafkaSettings,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), WorkerError> {
        let group = format!(
            "{}.{}.{}",
            self.settings.group_prefix, self.flow_id, self.target_id
        );
        let consumer: StreamConsumer = kafka
            .consumer(&format!("cdp-sinks-{}", self.flow_id), &group)
            // A failing destination holds a batch for as long as it fails: that is not a dead
            // consumer.
            .set("max.poll.interval.ms", "3600000")
            .create()
            .map_err(|source| self.consumer_error(source))?;
        consumer
            .subscribe(&[&self.exports_topic])
            .map_err(|source| self.consumer_error(source))?;
        tracing::info!(
            flow = %self.flow_id,
            target = %self.target_id,
            destination = %self.destination.describe(),
            group,
            "flow delivery started"
        );
        loop {
            let batch = tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                b = self.read(&consumer) => b,
            };
            self.status.flush(false).await;
            let Some(batch) = batch else {
                continue;
            };
            if !self.deliver(&batch, &mut stop).await {
                break;
            }
            self.commit(&consumer, &batch.next);
        }
        self.status.flush(true).await;
        tracing::info!(flow = %self.flow_id, target = %self.target_id, "flow delivery stopped");
        Ok(())
    }

    fn consumer_error(&self, source: rdkafka::error::KafkaError) -> WorkerError {
        WorkerError::Consumer {
            topic: self.exports_topic.clone(),
            flow: self.flow_id.clone(),
            source,
        }
    }

    /// Up to `max_batch` of the flow's records, waiting `max_wait_ms` for more after the
    /// first; `None` when nothing came within a second.
    async fn read(&self, consumer: &StreamConsumer) -> Option<Batch> {
        let first = match tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) => {
                tracing::warn!(flow = %self.flow_id, error = %e, "exports read failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                return None;
            }
            Err(_) => return None,
        };
        let mut batch = Batch {
            records: Vec::new(),
            refused: Vec::new(),
            next: HashMap::new(),
        };
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.settings.max_wait_ms);
        let mut message = Some(first);
        let mut read = 0usize;
        while let Some(m) = message.take() {
            read += 1;
            batch.next.insert(m.partition(), m.offset() + 1);
            let ours = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == FLOW_HEADER))
                .and_then(|h| h.value)
                .is_some_and(|v| v == self.flow_id.as_bytes());
            if ours {
                let key = m
                    .key()
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .unwrap_or_default();
                let payload = m.payload().unwrap_or_default();
                match &self.avro {
                    None => batch.records.push(OutRecord::new(key, payload.to_vec())),
                    Some(avro) => match avro.encode(&key, payload) {
                        Ok(encoded) => batch.records.push(OutRecord::new(key, encoded)),
                        Err(e) => batch
                            .refused
                            .push((OutRecord::new(key, payload.to_vec()), e.to_string())),
                    },
                }
            }
            // Other flows' records are only skipped, but bound them too so that a commit is
            // never far behind.
            if batch.records.len() >= self.settings.max_batch || read >= 4 * self.settings.max_batch
            {
                break;
            }
            if let Ok(Ok(m)) = tokio::time::timeout_at(deadline, consumer.recv()).await {
                message = Some(m);
            }
        }
        Some(batch)
    }

    /// Delivers the batch, trying again with back-off until it is acknowledged; false when
    /// told to stop first (the position stays: the batch is delivered again after a restart).
    /// After a failure only what the destination did not settle is sent again, when the error
    /// accounts for every record (a partial success is not repeated).
    async fn deliver(&mut self, batch: &Batch, stop: &mut watch::Receiver<bool>) -> bool {
        for (record, reason) in &batch.refused {
            self.dead_letter(record, reason).await;
        }
        if !batch.refused.is_empty() {
            self.status.delivered(0, 0, batch.refused.len());
        }
        let mut remaining = batch.records.clone();
        let mut pause = Duration::from_millis(self.settings.retry_initial_ms);
        while !remaining.is_empty() {
            // A delivery can take minutes (a destination that does not answer, retries within
            // the delivery): a stop does not wait for it, as the stage's loop waits for the
            // stop. Dropped half-way, the batch is simply delivered again (at least once).
            let attempt = tokio::select! {
                _ = stop.wait_for(|s| *s) => return false,
                r = self.destination.deliver(remaining.clone()) => r,
            };
            let e = match attempt {
                Ok(report) => {
                    self.settle(&remaining, &report).await;
                    self.status.flush(false).await;
                    return true;
                }
                Err(e) => e,
            };
            tracing::warn!(
                flow = %self.flow_id,
                target = %self.target_id,
                records = remaining.len(),
                pending = e.pending.len(),
                transient = e.is_transient(),
                error = %e,
                retry_in_ms = pause.as_millis() as u64,
                "delivery failed; trying again"
            );
            let accounted = e.partial.delivered + e.partial.rejected.len() + e.pending.len();
            if accounted == remaining.len() && !e.pending.is_empty() {
                self.settle(&remaining, &e.partial).await;
                remaining = e
                    .pending
                    .iter()
                    .filter_map(|i| remaining.get(*i).cloned())
                    .collect();
            }
            self.status.failed(&e.to_string(), remaining.len());
            self.status.flush(true).await;
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return false,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_millis(self.settings.retry_max_ms));
        }
        true
    }

    /// Counts what a (partial) delivery settled and dead-letters what it refused.
    async fn settle(&mut self, sent: &[OutRecord], report: &DeliveryReport) {
        if report.delivered == 0 && report.rejected.is_empty() {
            return;
        }
        for rejected in &report.rejected {
            if let Some(record) = sent.get(rejected.index) {
                self.dead_letter(record, &rejected.reason).await;
            }
        }
        self.status
            .delivered(report.delivered, report.retried, report.rejected.len());
    }

    /// Writes a refused record to the dead-letter topic, waiting for the broker: it is the
    /// record's only copy once the position moves on.
    async fn dead_letter(&self, record: &OutRecord, reason: &str) {
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: FLOW_HEADER,
                value: Some(self.flow_id.as_str()),
            })
            .insert(Header {
                key: TARGET_HEADER,
                value: Some(self.target_id.as_str()),
            })
            .insert(Header {
                key: REASON_HEADER,
                value: Some(reason),
            });
        loop {
            let r = FutureRecord::to(&self.deadletter_topic)
                .key(&record.partition_key)
                .payload(&record.data)
                .headers(headers.clone());
            match self.producer.send(r, Duration::from_secs(30)).await {
                Ok(_) => {
                    tracing::warn!(flow = %self.flow_id, target = %self.target_id, key = %record.partition_key, reason, "record refused by the destination; dead-lettered");
                    return;
                }
                Err((e, _)) => {
                    tracing::warn!(flow = %self.flow_id, error = %e, "cannot write the dead-letter record; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn commit(&self, consumer: &StreamConsumer, next: &HashMap<i32, i64>) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next {
            if tpl
                .add_partition_offset(&self.exports_topic, *p, Offset::Offset(*o))
                .is_err()
            {
                return;
            }
        }
        // A lost commit only means these records are delivered again (at least once).
        if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(flow = %self.flow_id, error = %e, "cannot commit the delivered position");
        }
    }
}
