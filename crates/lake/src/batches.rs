//! Batch metadata on the compacted `<ns>.batches` topic.
//!
//! Several lake instances write files for the same batch (one per partition they own), so
//! nobody updates a batch record in place: each instance writes one record per (batch, file) it
//! wrote, keyed `{batchId}/{file}`. A replay writes the same key again (an overwrite), and
//! files removed by replay recovery get a tombstone. [`BatchView`] follows the topic and adds
//! contributions up per batch and per dataset.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLockReadGuard;

use cdp_contract::admin::{partitions_of, TopicSpec};
use cdp_contract::follower::{Fold, FollowError, Follower};
use cdp_contract::{KafkaSettings, Topics};
use rdkafka::consumer::BaseConsumer;
use serde::{Deserialize, Serialize};

/// What one file holds of one batch: the value on the batches topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contribution {
    pub batch_id: String,
    /// `None` for failed records that never got a dataset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    /// Path of the Parquet file, relative to `lake.root`.
    pub file: String,
    /// Valid records of the batch in the file.
    pub records: u64,
    /// Failed records of the batch in the file (error files).
    pub failed: u64,
    pub first_received_ms: i64,
    pub last_received_ms: i64,
    /// When the file was written (wall clock of the lake instance).
    pub written_ms: i64,
    pub topic: String,
    pub partition: i32,
    /// First offset of the flush that wrote the file.
    pub first_offset: i64,
}

impl Contribution {
    pub fn key(&self) -> String {
        contribution_key(&self.batch_id, &self.file)
    }
}

pub fn contribution_key(batch_id: &str, file: &str) -> String {
    format!("{batch_id}/{file}")
}

/// The batches topic: compacted, so the latest contribution per key is kept forever.
pub fn topic_spec(topics: &Topics, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: topics.batches(),
        partitions: partitions.max(1),
        compacted: true,
    }
}

/// `success` (no failed records), `failed` (only failed records) or `partial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchStatus {
    Success,
    Failed,
    Partial,
}

/// A batch as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSummary {
    pub id: String,
    /// The dataset most of the batch went to (`None` if only unassigned failures).
    pub dataset_id: Option<String>,
    /// Every dataset the batch touched (a collection request may target several).
    pub dataset_ids: Vec<String>,
    pub status: BatchStatus,
    pub records: u64,
    pub failed: u64,
    pub files: Vec<String>,
    /// Receipt time of the batch's first record.
    pub created_ms: i64,
    /// Last time a file of the batch was written.
    pub updated_ms: i64,
}

/// Everything the topic says, aggregated.
#[derive(Debug, Default)]
pub struct BatchState {
    /// batch id → file → contribution.
    batches: HashMap<String, BTreeMap<String, Contribution>>,
    /// dataset id → batch ids.
    datasets: HashMap<String, BTreeSet<String>>,
}

impl BatchState {
    /// Applies one record of the topic (`None` = tombstone).
    pub fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        match value {
            Some(v) => match serde_json::from_slice::<Contribution>(v) {
                Ok(c) => {
                    self.remove(&c.batch_id, &c.file);
                    if let Some(ds) = &c.dataset_id {
                        self.datasets
                            .entry(ds.clone())
                            .or_default()
                            .insert(c.batch_id.clone());
                    }
                    self.batches
                        .entry(c.batch_id.clone())
                        .or_default()
                        .insert(c.file.clone(), c);
                }
                Err(e) => tracing::debug!(key, error = %e, "skipping batches record"),
            },
            None => {
                // Batch ids may contain '/', file paths always start with "datasets/".
                if let Some(i) = key.find("/datasets/") {
                    self.remove(&key[..i], &key[i + 1..]);
                }
            }
        }
    }

    fn remove(&mut self, batch_id: &str, file: &str) {
        let Some(files) = self.batches.get_mut(batch_id) else {
            return;
        };
        let Some(old) = files.remove(file) else {
            return;
        };
        let empty = files.is_empty();
        if let Some(ds) = old.dataset_id {
            let still = !empty
                && files
                    .values()
                    .any(|c| c.dataset_id.as_deref() == Some(ds.as_str()));
            if !still {
                if let Some(set) = self.datasets.get_mut(&ds) {
                    set.remove(batch_id);
                }
            }
        }
        if empty {
            self.batches.remove(batch_id);
        }
    }

    pub fn batch(&self, id: &str) -> Option<BatchSummary> {
        let files = self.batches.get(id)?;
        let mut s = BatchSummary {
            id: id.to_string(),
            dataset_id: None,
            dataset_ids: Vec::new(),
            status: BatchStatus::Success,
            records: 0,
            failed: 0,
            files: Vec::new(),
            created_ms: i64::MAX,
            updated_ms: 0,
        };
        let mut per_dataset: BTreeMap<&str, u64> = BTreeMap::new();
        for c in files.values() {
            s.records += c.records;
            s.failed += c.failed;
            s.files.push(c.file.clone());
            s.created_ms = s.created_ms.min(c.first_received_ms);
            s.updated_ms = s.updated_ms.max(c.written_ms);
            if let Some(ds) = &c.dataset_id {
                *per_dataset.entry(ds).or_default() += c.records + c.failed;
            }
        }
        s.dataset_ids = per_dataset.keys().map(|d| d.to_string()).collect();
        s.dataset_id = per_dataset
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(d, _)| d.to_string());
        s.status = match (s.records, s.failed) {
            (_, 0) => BatchStatus::Success,
            (0, _) => BatchStatus::Failed,
            _ => BatchStatus::Partial,
        };
        Some(s)
    }

    /// The contributions of a batch, in file order.
    pub fn contributions(&self, batch_id: &str) -> Vec<Contribution> {
        self.batches
            .get(batch_id)
            .map(|f| f.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Contributions of `dataset` (of every batch that touched it), newest batches first.
    pub fn dataset_contributions(&self, dataset: &str) -> Vec<Contribution> {
        let Some(ids) = self.datasets.get(dataset) else {
            return Vec::new();
        };
        ids.iter()
            .filter_map(|b| self.batches.get(b))
            .flat_map(|f| f.values())
            .filter(|c| c.dataset_id.as_deref() == Some(dataset))
            .cloned()
            .collect()
    }

    /// Records and failed records of `dataset`, over every batch that touched it.
    pub fn dataset_totals(&self, dataset: &str) -> (u64, u64) {
        let Some(ids) = self.datasets.get(dataset) else {
            return (0, 0);
        };
        ids.iter()
            .filter_map(|b| self.batches.get(b))
            .flat_map(|f| f.values())
            .filter(|c| c.dataset_id.as_deref() == Some(dataset))
            .fold((0, 0), |(r, f), c| (r + c.records, f + c.failed))
    }

    /// Batches that touched `dataset`.
    pub fn dataset_batches(&self, dataset: &str) -> Vec<BatchSummary> {
        self.datasets
            .get(dataset)
            .map(|ids| ids.iter().filter_map(|b| self.batch(b)).collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchViewError {
    #[error("cannot read the batches topic's metadata: {0}")]
    Metadata(rdkafka::error::KafkaError),
    #[error("batches topic: {0}")]
    Follow(#[from] FollowError),
}

impl Fold for BatchState {
    fn apply(&mut self, _: i32, _: i64, key: &str, value: Option<&[u8]>) {
        BatchState::apply(self, key, value);
    }
}

/// A live, in-memory aggregation of the batches topic (all partitions, from the beginning).
#[derive(Clone)]
pub struct BatchView(Follower<BatchState>);

impl BatchView {
    /// Starts following the batches topic (which must exist) in a background task.
    pub async fn start(kafka: &KafkaSettings, topics: &Topics) -> Result<Self, BatchViewError> {
        let topic = topics.batches();
        let partitions = {
            let (kafka, topic) = (kafka.clone(), topic.clone());
            tokio::task::spawn_blocking(move || {
                let client: BaseConsumer = kafka.admin("cdp-lake-batches-metadata").create()?;
                partitions_of(&client, &topic)
            })
            .await
            .map_err(|_| BatchViewError::Metadata(rdkafka::error::KafkaError::Canceled))?
            .map_err(BatchViewError::Metadata)?
        };
        Ok(Self(Follower::start(
            kafka,
            &topic,
            &partitions,
            "cdp-lake-batches",
        )?))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, BatchState> {
        self.0.read()
    }

    pub fn batch(&self, id: &str) -> Option<BatchSummary> {
        self.read().batch(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(batch: &str, file: &str, records: u64, failed: u64) -> Contribution {
        Contribution {
            batch_id: batch.into(),
            dataset_id: Some("ds".into()),
            file: file.into(),
            records,
            failed,
            first_received_ms: 10,
            last_received_ms: 20,
            written_ms: 30,
            topic: "t".into(),
            partition: 0,
            first_offset: 0,
        }
    }

    fn put(s: &mut BatchState, c: &Contribution) {
        s.apply(&c.key(), Some(&serde_json::to_vec(c).unwrap()));
    }

    #[test]
    fn contributions_add_up_and_replays_overwrite() {
        let mut s = BatchState::default();
        put(&mut s, &c("b1", "datasets/ds/a.parquet", 3, 0));
        put(&mut s, &c("b1", "datasets/ds/_errors/e.parquet", 0, 2));
        put(&mut s, &c("b1", "datasets/ds/a.parquet", 3, 0));
        let b = s.batch("b1").unwrap();
        assert_eq!(
            (b.records, b.failed, b.status),
            (3, 2, BatchStatus::Partial)
        );
        s.apply("b1/datasets/ds/a.parquet", None);
        assert_eq!(s.batch("b1").unwrap().status, BatchStatus::Failed);
        s.apply("b1/datasets/ds/_errors/e.parquet", None);
        assert!(s.batch("b1").is_none());
        assert!(s.dataset_batches("ds").is_empty());
    }
}
