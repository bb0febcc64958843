//! Follows a topic from its beginning and folds every record into an in-memory state: how the
//! catalog, the schema registry's log and the lake's batch metadata are read. The topic is the
//! truth; a restart rebuilds the state from it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, Weak};
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::KafkaSettings;

/// A state built by applying a topic's records in order (per partition).
pub trait Fold: Default + Send + Sync + 'static {
    /// `value` is `None` for a tombstone.
    fn apply(&mut self, partition: i32, offset: i64, key: &str, value: Option<&[u8]>);
}

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("cannot create the reader of {topic}: {source}")]
    Consumer { topic: String, source: KafkaError },
    #[error("cannot read the end offsets of {topic}: {source}")]
    Watermarks { topic: String, source: KafkaError },
    #[error("{topic}[{partition}] was not read up to offset {offset} within {timeout:?}")]
    Timeout {
        topic: String,
        partition: i32,
        offset: i64,
        timeout: Duration,
    },
}

/// Per partition, the next offset to apply: everything below it is in the state.
type Progress = BTreeMap<i32, i64>;

/// A live view of one topic's fold, cheap to clone, shared by every handler of a process. The
/// background reader stops when the last clone is dropped.
pub struct Follower<S> {
    state: Arc<RwLock<S>>,
    progress: watch::Receiver<Progress>,
    consumer: Arc<StreamConsumer>,
    topic: String,
}

impl<S> Clone for Follower<S> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            progress: self.progress.clone(),
            consumer: self.consumer.clone(),
            topic: self.topic.clone(),
        }
    }
}

impl<S: Fold> Follower<S> {
    /// Starts reading `partitions` of `topic` (which must exist) from the beginning in a
    /// background task.
    pub fn start(
        kafka: &KafkaSettings,
        topic: &str,
        partitions: &[i32],
        client_prefix: &str,
    ) -> Result<Self, FollowError> {
        let consumer_error = |source| FollowError::Consumer {
            topic: topic.to_string(),
            source,
        };
        let client_id = format!("{client_prefix}-{}", uuid::Uuid::new_v4().simple());
        let consumer: StreamConsumer = kafka.reader(&client_id).create().map_err(consumer_error)?;
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(topic, *p, Offset::Beginning)
                .map_err(consumer_error)?;
        }
        consumer.assign(&tpl).map_err(consumer_error)?;
        let consumer = Arc::new(consumer);
        let state = Arc::new(RwLock::new(S::default()));
        let (tx, rx) = watch::channel(Progress::new());
        tokio::spawn(follow(
            consumer.clone(),
            Arc::downgrade(&state),
            tx,
            topic.to_string(),
        ));
        Ok(Self {
            state,
            progress: rx,
            consumer,
            topic: topic.to_string(),
        })
    }

    pub fn read(&self) -> RwLockReadGuard<'_, S> {
        // A poisoned lock means a panic while applying a record; the state is still a
        // consistent set of maps, so keep serving it.
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the record at `offset` of `partition` has been applied (read-your-writes).
    pub async fn wait_for(
        &self,
        partition: i32,
        offset: i64,
        timeout: Duration,
    ) -> Result<(), FollowError> {
        let timed_out = || FollowError::Timeout {
            topic: self.topic.clone(),
            partition,
            offset,
            timeout,
        };
        let mut rx = self.progress.clone();
        tokio::time::timeout(
            timeout,
            rx.wait_for(|p| p.get(&partition).is_some_and(|next| *next > offset)),
        )
        .await
        .map_err(|_| timed_out())?
        .map_err(|_| timed_out())?;
        Ok(())
    }

    /// Waits until everything in the assigned partitions at call time has been applied, so a
    /// stage starts serving with the complete state.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), FollowError> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let ends = tokio::task::spawn_blocking(move || {
            let assigned = consumer.assignment()?;
            assigned
                .elements()
                .iter()
                .map(|e| {
                    consumer
                        .fetch_watermarks(&topic, e.partition(), Duration::from_secs(5))
                        .map(|(_, high)| (e.partition(), high))
                })
                .collect::<Result<Vec<_>, KafkaError>>()
        })
        .await
        .map_err(|_| FollowError::Watermarks {
            topic: self.topic.clone(),
            source: KafkaError::Canceled,
        })?
        .map_err(|source| FollowError::Watermarks {
            topic: self.topic.clone(),
            source,
        })?;
        for (partition, high) in ends {
            if high > 0 {
                self.wait_for(partition, high - 1, timeout).await?;
            }
        }
        Ok(())
    }
}

async fn follow<S: Fold>(
    consumer: Arc<StreamConsumer>,
    state: Weak<RwLock<S>>,
    progress: watch::Sender<Progress>,
    topic: String,
) {
    loop {
        // Wakes up now and then even when idle, to notice that every view is gone.
        let msg = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await;
        let Some(state) = state.upgrade() else {
            return;
        };
        match msg {
            Ok(Ok(m)) => {
                let key = m
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .unwrap_or_default();
                state.write().unwrap_or_else(|p| p.into_inner()).apply(
                    m.partition(),
                    m.offset(),
                    key,
                    m.payload(),
                );
                tracing::trace!(topic, key, offset = m.offset(), "record applied");
                progress.send_modify(|p| {
                    p.insert(m.partition(), m.offset() + 1);
                });
            }
            Ok(Err(e)) => {
                tracing::warn!(topic, error = %e, "read failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => {}
        }
    }
}
