//! The write to the raw topic. Every accepted message of a request is enqueued in order and the
//! request waits for all broker acknowledgements (idempotent producer, acks=all) within the
//! configured time. If the producer hits a fatal error (e.g. its idempotence state is lost
//! after a broker outage), it is replaced so the next request starts clean.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cdp_contract::KafkaSettings;
use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

/// Where an event goes: accepted messages to the raw topic, refused ones to the error topic
/// (quarantined with their reason, never dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Raw,
    Error,
}

/// One message ready for the broker.
pub struct RawEvent {
    pub destination: Destination,
    pub key: String,
    pub value: Bytes,
    pub headers: OwnedHeaders,
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

/// What became of each event of a request ([`RawProducer::send_each`]).
pub struct Sent {
    /// Per event, in request order: whether the broker acknowledged it.
    pub written: Vec<bool>,
    /// Why the first one that was not, if any was not.
    pub error: Option<ProduceError>,
}

pub struct RawProducer {
    current: RwLock<Arc<FutureProducer>>,
    kafka: KafkaSettings,
    topic: String,
    error_topic: String,
    timeout_ms: u32,
}

impl RawProducer {
    pub fn new(
        kafka: &KafkaSettings,
        topic: String,
        error_topic: String,
        timeout_ms: u32,
    ) -> Result<Self, ProduceError> {
        let producer = Self::create(kafka, timeout_ms)?;
        Ok(Self {
            current: RwLock::new(Arc::new(producer)),
            kafka: kafka.clone(),
            topic,
            error_topic,
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
        match self.send_each(events).await.error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Writes the events in request order and says which the broker acknowledged: a full
    /// local queue stops the request there (the broker is not keeping up; the client retries
    /// the rest after Retry-After), and what was enqueued before it is still written.
    pub async fn send_each(&self, events: &[RawEvent]) -> Sent {
        let producer = self.producer();
        let started = Instant::now();
        // Enqueue everything in request order first (per-partition order is what the
        // idempotent producer preserves), then wait for the acknowledgements together.
        let mut pending = Vec::with_capacity(events.len());
        let mut failures: Vec<KafkaError> = Vec::new();
        for e in events {
            let topic = match e.destination {
                Destination::Raw => &self.topic,
                Destination::Error => &self.error_topic,
            };
            let record = FutureRecord::to(topic)
                .key(e.key.as_bytes())
                .payload(e.value.as_ref())
                .headers(e.headers.clone());
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((error, _)) => {
                    failures.push(error);
                    break;
                }
            }
        }
        let outer = Duration::from_millis(u64::from(self.timeout_ms) + 1_000);
        let total = events.len();
        let mut written = vec![false; total];
        // librdkafka's message timeout bounds each acknowledgement; the outer bound covers a
        // queue that never drains.
        let Ok(results) = tokio::time::timeout(outer, join_all(pending)).await else {
            return Sent {
                written,
                error: Some(self.not_acknowledged(total, total, "timed out".into())),
            };
        };
        crate::metrics::produce_latency(started.elapsed());
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(Ok(_)) => written[i] = true,
                Ok(Err((error, _))) => failures.push(error),
                Err(_canceled) => failures.push(KafkaError::Canceled),
            }
        }
        let error = failures.first().map(|first| {
            if failures.iter().any(needs_new_producer) || producer.client().fatal_error().is_some()
            {
                self.replace(&producer);
            }
            let failed = written.iter().filter(|w| !**w).count();
            self.not_acknowledged(failed, total, first.to_string())
        });
        Sent { written, error }
    }

    fn not_acknowledged(&self, failed: usize, total: usize, first: String) -> ProduceError {
        ProduceError::NotAcknowledged {
            failed,
            total,
            timeout_ms: self.timeout_ms,
            first,
        }
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
