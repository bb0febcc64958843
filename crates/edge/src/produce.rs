//! The write to the raw topic. Every accepted message of a request is enqueued in order and the
//! request waits for all broker acknowledgements (idempotent producer, acks=all) within the
//! configured time. If the producer hits a fatal error (e.g. its idempotence state is lost
//! after a broker outage), it is replaced so the next request starts clean.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cdp_contract::{KafkaSettings, RawHeaders};
use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

/// One message ready for the raw topic.
pub struct RawEvent {
    pub key: String,
    pub value: Bytes,
    pub headers: RawHeaders,
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create Kafka producer: {0}")]
    Create(KafkaError),
    #[error("the broker did not acknowledge {failed} of {total} messages within {timeout_ms} ms: {first}")]
    NotAcknowledged {
        failed: usize,
        total: usize,
        timeout_ms: u32,
        first: String,
    },
}

pub struct RawProducer {
    current: RwLock<Arc<FutureProducer>>,
    kafka: KafkaSettings,
    topic: String,
    timeout_ms: u32,
}

impl RawProducer {
    pub fn new(
        kafka: &KafkaSettings,
        topic: String,
        timeout_ms: u32,
    ) -> Result<Self, ProduceError> {
        let producer = Self::create(kafka, timeout_ms)?;
        Ok(Self {
            current: RwLock::new(Arc::new(producer)),
            kafka: kafka.clone(),
            topic,
            timeout_ms,
        })
    }

    fn create(kafka: &KafkaSettings, timeout_ms: u32) -> Result<FutureProducer, ProduceError> {
        kafka
            .producer("cdp-edge", timeout_ms)
            .create()
            .map_err(ProduceError::Create)
    }

    pub fn producer(&self) -> Arc<FutureProducer> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Writes all events; `Ok` only when every one was acknowledged.
    pub async fn send_all(&self, events: &[RawEvent]) -> Result<(), ProduceError> {
        let producer = self.producer();
        let started = Instant::now();
        let timeout = Timeout::After(Duration::from_millis(u64::from(self.timeout_ms)));
        let sends = events.iter().map(|e| {
            let record = FutureRecord::to(&self.topic)
                .key(e.key.as_bytes())
                .payload(e.value.as_ref())
                .headers(e.headers.to_kafka());
            producer.send(record, timeout)
        });
        // join_all polls the futures in order on its first poll, so records are enqueued in
        // request order; librdkafka's own message timeout bounds each wait, and this outer
        // bound covers a queue that never drains.
        let outer = Duration::from_millis(u64::from(self.timeout_ms) + 1_000);
        let results = match tokio::time::timeout(outer, join_all(sends)).await {
            Ok(results) => results,
            Err(_) => {
                return Err(ProduceError::NotAcknowledged {
                    failed: events.len(),
                    total: events.len(),
                    timeout_ms: self.timeout_ms,
                    first: "timed out".into(),
                })
            }
        };
        crate::metrics::produce_latency(started.elapsed());
        let failures: Vec<KafkaError> = results
            .into_iter()
            .filter_map(|r| r.err().map(|(e, _)| e))
            .collect();
        if let Some(first) = failures.first() {
            if failures.iter().any(needs_new_producer) || producer.client().fatal_error().is_some()
            {
                self.replace(&producer);
            }
            return Err(ProduceError::NotAcknowledged {
                failed: failures.len(),
                total: events.len(),
                timeout_ms: self.timeout_ms,
                first: first.to_string(),
            });
        }
        Ok(())
    }

    fn replace(&self, failed: &Arc<FutureProducer>) {
        tracing::warn!(
            fatal = ?failed.client().fatal_error(),
            "raw producer lost its idempotence state; replacing it"
        );
        match Self::create(&self.kafka, self.timeout_ms) {
            Ok(fresh) => {
                let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                if Arc::ptr_eq(&current, failed) {
                    *current = Arc::new(fresh);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot replace the raw producer"),
        }
    }

    /// Whether the broker answers a metadata request within `timeout`.
    pub async fn broker_reachable(&self, timeout: Duration) -> bool {
        let producer = self.producer();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// Errors after which an idempotent producer cannot go on: after a broker outage librdkafka
/// tries to bump its epoch, and brokers without that support (tansu) fence it for good.
fn needs_new_producer(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::ProducerFenced
                | C::InvalidProducerEpoch
                | C::UnknownProducerId
                | C::OutOfOrderSequenceNumber
                | C::Fatal
        )
    )
}
