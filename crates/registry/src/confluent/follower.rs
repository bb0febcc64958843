//! Follows the schemas topic (a [`Follower`] folding it into [`SrState`]) and writes requests
//! to it; every instance answers from its own fold, so all agree.

use std::sync::RwLockReadGuard;
use std::time::Duration;

use cdp_contract::admin::{ensure_topics, AdminError, TopicSpec};
use cdp_contract::follower::{Fold, FollowError, Follower};
use cdp_contract::{KafkaSettings, Topics};
use rdkafka::producer::{FutureProducer, FutureRecord};

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
    /// A bug, not a condition to retry; nothing was written.
    #[error("cannot encode the schemas record {key}: {source}")]
    Encode {
        key: String,
        source: serde_json::Error,
    },
    #[error("schemas topic: {0}")]
    Follow(#[from] FollowError),
    #[error("the registration at offset {0} has no outcome in this instance's fold")]
    NoOutcome(i64),
}

/// The schemas topic must be totally ordered (ids are offsets), so it has one partition.
pub fn topic_spec(topics: &Topics) -> TopicSpec {
    TopicSpec {
        name: topics.schemas(),
        partitions: 1,
        compacted: true,
    }
}

impl Fold for SrState {
    fn apply(&mut self, _: i32, offset: i64, key: &str, value: Option<&[u8]>) {
        SrState::apply(self, offset, key, value);
    }
}

#[derive(Clone)]
pub struct SchemaLog {
    log: Follower<SrState>,
    producer: FutureProducer,
    topic: String,
}

impl SchemaLog {
    /// Ensures the topic exists and starts following it in a background task.
    pub async fn start(kafka: &KafkaSettings, topics: &Topics) -> Result<Self, SchemaLogError> {
        ensure_topics(kafka, &[topic_spec(topics)]).await?;
        let topic = topics.schemas();
        let producer = kafka
            .producer("cdp-registry", WRITE_TIMEOUT.as_millis() as u32)
            .create()
            .map_err(SchemaLogError::Client)?;
        Ok(Self {
            log: Follower::start(kafka, &topic, &[0], "cdp-registry")?,
            producer,
            topic,
        })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, SrState> {
        self.log.read()
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
        outcome.ok_or(SchemaLogError::NoOutcome(offset))
    }

    /// Registers an Avro `schema` under `subject` and answers its id (an identical schema gets
    /// its existing id); a schema the registry refuses is an error saying why.
    pub async fn register_id(&self, subject: &str, schema: &str) -> Result<u32, RegisterError> {
        match self.register(subject, schema).await {
            Ok(Outcome::Registered { id, .. }) => Ok(id),
            Ok(Outcome::Invalid(reason)) => Err(RegisterError::Refused {
                subject: subject.to_string(),
                reason,
            }),
            Ok(Outcome::Incompatible(reasons)) => Err(RegisterError::Refused {
                subject: subject.to_string(),
                reason: reasons.join("; "),
            }),
            Err(source) => Err(RegisterError::Registry {
                subject: subject.to_string(),
                source: Box::new(source),
            }),
        }
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
        let value = serde_json::to_vec(record).map_err(|source| SchemaLogError::Encode {
            key: key.to_string(),
            source,
        })?;
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
        Ok(self.log.wait_for(0, offset, timeout).await?)
    }

    /// Waits until everything written before the call has been applied.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), SchemaLogError> {
        Ok(self.log.caught_up(timeout).await?)
    }
}

/// Why a stage could not register the schema of what it writes.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the registry refused {subject}: {reason}")]
    Refused { subject: String, reason: String },
    #[error("cannot register {subject}: {source}")]
    Registry {
        subject: String,
        #[source]
        source: Box<SchemaLogError>,
    },
}
