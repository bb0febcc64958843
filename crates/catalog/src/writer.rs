//! Writes catalog records and waits until this process's own view has applied them, so a
//! management call answers only once its change is visible to readers.

use std::time::Duration;

use cdp_contract::{KafkaSettings, Topics};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::conditional::{Conditional, Decision};
use crate::model::CatalogRecord;
use crate::view::{CatalogError, CatalogView};

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create catalog producer: {0}")]
    Producer(rdkafka::error::KafkaError),
    #[error("the broker did not acknowledge the catalog write: {0}")]
    Send(rdkafka::error::KafkaError),
    /// The record could not be encoded as JSON: a bug, not a condition to retry. Nothing was
    /// written.
    #[error("cannot encode the catalog record {key}: {source}")]
    Encode {
        key: String,
        source: serde_json::Error,
    },
    #[error(transparent)]
    View(#[from] CatalogError),
}

/// The record as JSON; an encoding failure is an error, never an empty value (an empty value
/// would be written as a record the fold cannot read).
fn encode(key: &str, record: &impl serde::Serialize) -> Result<Vec<u8>, WriteError> {
    serde_json::to_vec(record).map_err(|source| WriteError::Encode {
        key: key.to_string(),
        source,
    })
}

#[derive(Clone)]
pub struct CatalogWriter {
    producer: FutureProducer,
    topic: String,
    view: CatalogView,
}

impl CatalogWriter {
    pub fn new(
        kafka: &KafkaSettings,
        topics: &Topics,
        view: CatalogView,
    ) -> Result<Self, WriteError> {
        let producer = kafka
            .producer("cdp-control", WRITE_TIMEOUT.as_millis() as u32)
            .create()
            .map_err(WriteError::Producer)?;
        Ok(Self {
            producer,
            topic: topics.catalog(),
            view,
        })
    }

    pub async fn put(&self, record: &CatalogRecord) -> Result<(), WriteError> {
        let key = record.key();
        let value = encode(&key, record)?;
        self.send(&key, Some(&value)).await.map(|_| ())
    }

    /// Writes a conditional record and answers what the fold made of it, which is what every
    /// other reader of the catalog makes of it too.
    pub async fn put_conditional(&self, record: &Conditional) -> Result<Decision, WriteError> {
        let key = record.key();
        let value = encode(&key, record)?;
        let offset = self.send(&key, Some(&value)).await?;
        Ok(match self.view.read().refusal(offset) {
            Some(refusal) => Decision::Refused(refusal.clone()),
            None => Decision::Applied,
        })
    }

    pub async fn delete(&self, key: &str) -> Result<(), WriteError> {
        self.send(key, None).await.map(|_| ())
    }

    /// Answers the record's offset once this process's view has applied it.
    async fn send(&self, key: &str, value: Option<&Vec<u8>>) -> Result<i64, WriteError> {
        let mut rec: FutureRecord<'_, str, Vec<u8>> = FutureRecord::to(&self.topic).key(key);
        if let Some(v) = value {
            rec = rec.payload(v);
        }
        let delivery = self
            .producer
            .send(rec, WRITE_TIMEOUT)
            .await
            .map_err(|(e, _)| WriteError::Send(e))?;
        self.view.wait_for(delivery.offset, WRITE_TIMEOUT).await?;
        Ok(delivery.offset)
    }
}
