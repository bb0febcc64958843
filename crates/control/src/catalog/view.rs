//! Follows the catalog topic from its beginning and keeps the latest value of every key in
//! memory. Nothing here is authoritative: a restart rebuilds it from the topic.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use cdp_contract::{KafkaSettings, Topics};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::model::{ApiKey, CatalogRecord, Dataset, Stream, XdmSchema};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot create catalog consumer: {0}")]
    Consumer(rdkafka::error::KafkaError),
    #[error("cannot read the catalog's end offset: {0}")]
    Watermarks(rdkafka::error::KafkaError),
    #[error("the catalog was not read up to offset {0} within {1:?}")]
    Timeout(i64, Duration),
}

/// The catalog as of the last record applied.
#[derive(Debug, Default, Clone)]
pub struct CatalogState {
    pub streams: HashMap<String, Stream>,
    pub api_keys: HashMap<String, ApiKey>,
    /// Schema id → version → schema.
    pub schemas: HashMap<String, BTreeMap<u32, XdmSchema>>,
    pub datasets: HashMap<String, Dataset>,
}

impl CatalogState {
    pub fn schema(&self, id: &str, version: u32) -> Option<&XdmSchema> {
        self.schemas.get(id).and_then(|v| v.get(&version))
    }

    pub fn latest_schema(&self, id: &str) -> Option<&XdmSchema> {
        self.schemas.get(id).and_then(|v| v.values().next_back())
    }

    fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            // Tombstone: the key says what to forget.
            match key.split_once('/') {
                Some(("stream", id)) => {
                    self.streams.remove(id);
                }
                Some(("apiKey", id)) => {
                    self.api_keys.remove(id);
                }
                Some(("dataset", id)) => {
                    self.datasets.remove(id);
                }
                Some(("schema", rest)) => {
                    if let Some((id, version)) = rest.rsplit_once('@') {
                        if let (Some(versions), Ok(v)) = (self.schemas.get_mut(id), version.parse())
                        {
                            versions.remove(&v);
                        }
                    }
                }
                _ => tracing::warn!(key, "catalog tombstone with an unknown key"),
            }
            return;
        };
        match serde_json::from_slice::<CatalogRecord>(value) {
            Ok(CatalogRecord::Stream(s)) => {
                self.streams.insert(s.id.clone(), s);
            }
            Ok(CatalogRecord::ApiKey(k)) => {
                self.api_keys.insert(k.id.clone(), k);
            }
            Ok(CatalogRecord::Schema(s)) => {
                self.schemas
                    .entry(s.id.clone())
                    .or_default()
                    .insert(s.version, s);
            }
            Ok(CatalogRecord::Dataset(d)) => {
                self.datasets.insert(d.id.clone(), d);
            }
            // Records of kinds this version does not know (written by a newer control) are
            // skipped, not fatal, so stages can be upgraded one at a time.
            Err(e) => tracing::debug!(key, error = %e, "skipping catalog record"),
        }
    }
}

/// A live, in-memory view of the catalog, shared by all handlers of a process.
#[derive(Clone)]
pub struct CatalogView {
    state: Arc<RwLock<CatalogState>>,
    /// The next offset to read, i.e. everything below it has been applied.
    next_offset: watch::Receiver<i64>,
    consumer: Arc<StreamConsumer>,
    topic: String,
}

impl CatalogView {
    /// Starts following the catalog topic (which must exist) in a background task.
    pub fn start(kafka: &KafkaSettings, topics: &Topics) -> Result<Self, CatalogError> {
        let topic = topics.catalog();
        let client_id = format!("cdp-catalog-{}", uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = kafka
            .reader(&client_id)
            .create()
            .map_err(CatalogError::Consumer)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .map_err(CatalogError::Consumer)?;
        consumer.assign(&tpl).map_err(CatalogError::Consumer)?;
        let consumer = Arc::new(consumer);
        let state = Arc::new(RwLock::new(CatalogState::default()));
        let (tx, rx) = watch::channel(0i64);
        tokio::spawn(follow(consumer.clone(), state.clone(), tx));
        Ok(Self {
            state,
            next_offset: rx,
            consumer,
            topic,
        })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, CatalogState> {
        // A poisoned lock means a panic while applying a record; the state itself is still a
        // consistent map, so keep serving it.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stream(&self, id: &str) -> Option<Stream> {
        self.read().streams.get(id).cloned()
    }

    /// Waits until the record at `offset` has been applied (read-your-writes for control).
    pub async fn wait_for(&self, offset: i64, timeout: Duration) -> Result<(), CatalogError> {
        let mut rx = self.next_offset.clone();
        tokio::time::timeout(timeout, rx.wait_for(|next| *next > offset))
            .await
            .map_err(|_| CatalogError::Timeout(offset, timeout))?
            .map_err(|_| CatalogError::Timeout(offset, timeout))?;
        Ok(())
    }

    /// Waits until everything in the catalog at call time has been applied, so a stage starts
    /// serving with the complete catalog.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), CatalogError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let high = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_watermarks(&topic, 0, Duration::from_secs(5))
                .map(|(_, high)| high)
        })
        .await
        .map_err(|_| CatalogError::Timeout(-1, timeout))?
        .map_err(CatalogError::Watermarks)?;
        if high > 0 {
            self.wait_for(high - 1, timeout).await?;
        }
        Ok(())
    }
}

async fn follow(
    consumer: Arc<StreamConsumer>,
    state: Arc<RwLock<CatalogState>>,
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
                {
                    let mut s = state.write().unwrap_or_else(|p| p.into_inner());
                    s.apply(&key, msg.payload());
                }
                tracing::debug!(key, offset = msg.offset(), "catalog record applied");
                next_offset.send_replace(msg.offset() + 1);
            }
            Err(e) => {
                tracing::warn!(error = %e, "catalog read failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if next_offset.is_closed() && Arc::strong_count(&state) == 1 {
            // Every view is gone: stop following.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PayloadType;

    fn stream(id: &str) -> Stream {
        Stream {
            id: id.into(),
            name: "web".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            payload_type: PayloadType::Json,
            authentication_required: false,
            rate_limit: None,
            dataset_id: None,
            schema_ref: None,
            created_at: 0,
        }
    }

    #[test]
    fn apply_then_tombstone() {
        let mut s = CatalogState::default();
        let rec = serde_json::to_vec(&CatalogRecord::Stream(stream("a"))).unwrap();
        s.apply("stream/a", Some(&rec));
        assert!(s.streams.contains_key("a"));
        s.apply("stream/a", None);
        assert!(s.streams.is_empty());
    }

    #[test]
    fn unknown_kind_is_skipped() {
        let mut s = CatalogState::default();
        s.apply("segment/x", Some(br#"{"kind":"segment","id":"x"}"#));
        assert!(s.streams.is_empty() && s.api_keys.is_empty());
    }
}
