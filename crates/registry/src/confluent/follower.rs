//! Follows the schemas topic (the pattern of control's catalog view: an assign-only reader from
//! the beginning, a watch of the next offset) and writes requests to it.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use cdp_contract::admin::{ensure_topics, AdminError, TopicSpec};
use cdp_contract::{KafkaSettings, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use super::compat::Level;
use super::state::{LogRecord, Outcome, SrState};

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum SchemaLogError {
    #[error("cannot create the schemas topic: {0}")]
    Topic(#[from] AdminError),
    #[error("cannot create a Kafka client for the schemas topic: {0}")]
    Client(rdkafka::error::KafkaError),
    #[error("the broker did not acknowledge the schemas write: {0}")]
    Send(rdkafka::error::KafkaError),
    #[error("cannot read the schemas topic's end offset: {0}")]
    Watermarks(rdkafka::error::KafkaError),
    #[error("the schemas topic was not read up to offset {0} within {1:?}")]
    Timeout(i64, Duration),
}

/// The schemas topic must be totally ordered (ids are offsets), so it has one partition.
pub fn topic_spec(topics: &Topics) -> TopicSpec {
    TopicSpec {
        name: topics.schemas(),
        partitions: 1,
        compacted: true,
    }
}

#[derive(Clone)]
pub struct SchemaLog {
    state: Arc<RwLock<SrState>>,
    next_offset: watch::Receiver<i64>,
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    topic: String,
}

impl SchemaLog {
    /// Ensures the topic exists and starts following it in a background task.
    pub async fn start(kafka: &KafkaSettings, topics: &Topics) -> Result<Self, SchemaLogError> {
        ensure_topics(kafka, &[topic_spec(topics)]).await?;
        let topic = topics.schemas();
        let client_id = format!("cdp-registry-{}", uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = kafka
            .reader(&client_id)
            .create()
            .map_err(SchemaLogError::Client)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(SchemaLogError::Client)?;
        consumer.assign(&tpl).map_err(SchemaLogError::Client)?;
        let producer = kafka
            .producer(&client_id, WRITE_TIMEOUT.as_millis() as u32)
            .create()
            .map_err(SchemaLogError::Client)?;
        let consumer = Arc::new(consumer);
        let state = Arc::new(RwLock::new(SrState::default()));
        let (tx, rx) = watch::channel(0i64);
        tokio::spawn(follow(consumer.clone(), state.clone(), tx));
        Ok(Self {
            state,
            next_offset: rx,
            consumer,
            producer,
            topic,
        })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, SrState> {
        // A poisoned lock means a panic while applying; the maps are still consistent.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a registration and answers what every instance's fold made of it.
    pub async fn register(&self, subject: &str, schema: &str) -> Result<Outcome, SchemaLogError> {
        let record = LogRecord::Register {
            subject: subject.to_string(),
            schema: schema.to_string(),
            schema_type: Some("AVRO".into()),
        };
        let key = format!("register/{}", uuid::Uuid::new_v4().simple());
        let offset = self.send(&key, &record).await?;
        let outcome = self.read().outcomes.get(&offset).cloned();
        // Applied records always have an outcome; a missing one means the view is not there yet.
        outcome.ok_or(SchemaLogError::Timeout(offset, WRITE_TIMEOUT))
    }

    pub async fn set_level(
        &self,
        subject: Option<&str>,
        level: Level,
    ) -> Result<(), SchemaLogError> {
        let key = match subject {
            Some(s) => format!("config/{s}"),
            None => "config".to_string(),
        };
        let record = LogRecord::Config {
            subject: subject.map(str::to_string),
            compatibility: level,
        };
        self.send(&key, &record).await.map(|_| ())
    }

    async fn send(&self, key: &str, record: &LogRecord) -> Result<i64, SchemaLogError> {
        let value = serde_json::to_vec(record).unwrap_or_default();
        let delivery = self
            .producer
            .send(
                FutureRecord::to(&self.topic).key(key).payload(&value),
                WRITE_TIMEOUT,
            )
            .await
            .map_err(|(e, _)| SchemaLogError::Send(e))?;
        self.wait_for(delivery.offset, WRITE_TIMEOUT).await?;
        Ok(delivery.offset)
    }

    pub async fn wait_for(&self, offset: i64, timeout: Duration) -> Result<(), SchemaLogError> {
        let mut rx = self.next_offset.clone();
        tokio::time::timeout(timeout, rx.wait_for(|next| *next > offset))
            .await
            .map_err(|_| SchemaLogError::Timeout(offset, timeout))?
            .map_err(|_| SchemaLogError::Timeout(offset, timeout))?;
        Ok(())
    }

    /// Waits until everything written before the call has been applied.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), SchemaLogError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let high = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_watermarks(&topic, 0, Duration::from_secs(5))
                .map(|(_, high)| high)
        })
        .await
        .map_err(|_| SchemaLogError::Timeout(-1, timeout))?
        .map_err(SchemaLogError::Watermarks)?;
        if high > 0 {
            self.wait_for(high - 1, timeout).await?;
        }
        Ok(())
    }
}

async fn follow(
    consumer: Arc<StreamConsumer>,
    state: Arc<RwLock<SrState>>,
    next_offset: watch::Sender<i64>,
) {
    loop {
        match consumer.recv().await {
            Ok(msg) => {
                let key = msg
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or_default()
                    .to_string();
                state.write().unwrap_or_else(|p| p.into_inner()).apply(
                    msg.offset(),
                    &key,
                    msg.payload(),
                );
                next_offset.send_replace(msg.offset() + 1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "schemas topic read failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if next_offset.is_closed() && Arc::strong_count(&state) == 1 {
            return;
        }
    }
}
