//! One flush of one partition: group the buffered records into files (one per dataset, date
//! and schema version; failed records per dataset and date), record the manifest, write the
//! files, then publish the batch contributions. The caller commits the offsets afterwards.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cdp_catalog::CatalogView;
use futures::{stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::basic::Compression;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Map, Value};

use crate::batches::Contribution;
use crate::columns::EntityLayout;
use crate::encode::{self, EncodeError, ErrorRow};
use crate::layout;
use crate::manifest::{self, Manifest, ManifestError};
use crate::record::Pending;
use crate::store::Store;

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("lake store: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("batch metadata not acknowledged: {0}")]
    Batches(rdkafka::error::KafkaError),
    #[error("an encoding task failed")]
    Join,
    /// A bug, not a condition to retry: the flush stops before writing anything.
    #[error("cannot encode the batch contribution {key}: {source}")]
    Contribution {
        key: String,
        source: serde_json::Error,
    },
}

/// The records of one partition read since its last flush.
#[derive(Debug)]
pub struct PartitionBuffer {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    pub next_offset: i64,
    pub records: Vec<Pending>,
}

/// What one file will hold.
enum FileRows {
    Data {
        layout: Arc<EntityLayout>,
        rows: Vec<Map<String, Value>>,
    },
    Errors(Vec<ErrorRow>),
}

struct PlannedFile {
    path: Path,
    rows: FileRows,
    dataset_id: Option<String>,
    /// batch id → (records, failed, first received, last received)
    batches: BTreeMap<String, (u64, u64, i64, i64)>,
}

/// Shared by every flush of a lake instance.
pub struct Flusher {
    pub store: Store,
    pub producer: FutureProducer,
    pub batches_topic: String,
    pub catalog: CatalogView,
    pub compression: Compression,
    pub concurrency: usize,
    /// Column layouts by (schema id, version); schema versions are immutable.
    pub layouts: HashMap<(String, u32), Arc<EntityLayout>>,
}

impl Flusher {
    fn layout(&mut self, schema: Option<&(String, u32)>, dataset: &str) -> Arc<EntityLayout> {
        let catalog = self.catalog.read();
        // The event's own schema version first; the dataset's as a fallback for events that
        // did not say.
        let key = schema.cloned().or_else(|| {
            catalog
                .datasets
                .get(dataset)
                .map(|d| (d.schema_id.clone(), d.schema_version))
        });
        let Some(key) = key else {
            return Arc::new(EntityLayout::untyped());
        };
        if let Some(l) = self.layouts.get(&key) {
            return l.clone();
        }
        match catalog.schema(&key.0, key.1) {
            Some(s) => {
                let l = Arc::new(EntityLayout::from_schema(&s.definition));
                self.layouts.insert(key, l.clone());
                l
            }
            // Unknown schema (deleted, or not followed yet): keep the entity as JSON text
            // rather than guess; not cached, so a later flush can use the schema.
            None => Arc::new(EntityLayout::untyped()),
        }
    }

    fn plan(&mut self, buf: &PartitionBuffer) -> Vec<PlannedFile> {
        let mut files: BTreeMap<String, PlannedFile> = BTreeMap::new();
        for rec in &buf.records {
            let date = layout::date_of(rec.received_ms());
            let batch = rec.batch_id().to_string();
            let received = rec.received_ms();
            let (path, failed) = match rec {
                Pending::Valid(v) => {
                    let l = self.layout(v.schema.as_ref(), &v.dataset_id);
                    let version = v.schema.as_ref().map(|s| s.1);
                    let path = layout::data_file(
                        &v.dataset_id,
                        &date,
                        &buf.topic,
                        buf.partition,
                        buf.first_offset,
                        version,
                    );
                    let row = encode::data_row(&l, &v.entity, &v.provenance);
                    let f = files
                        .entry(path.to_string())
                        .or_insert_with(|| PlannedFile {
                            path: path.clone(),
                            rows: FileRows::Data {
                                layout: l,
                                rows: Vec::new(),
                            },
                            dataset_id: Some(v.dataset_id.clone()),
                            batches: BTreeMap::new(),
                        });
                    if let FileRows::Data { rows, .. } = &mut f.rows {
                        rows.push(row);
                    }
                    (path, Some(false))
                }
                Pending::Failed(e) => {
                    let path = layout::error_file(
                        e.dataset_id.as_deref(),
                        &date,
                        &buf.topic,
                        buf.partition,
                        buf.first_offset,
                    );
                    let f = files
                        .entry(path.to_string())
                        .or_insert_with(|| PlannedFile {
                            path: path.clone(),
                            rows: FileRows::Errors(Vec::new()),
                            dataset_id: e.dataset_id.clone(),
                            batches: BTreeMap::new(),
                        });
                    if let FileRows::Errors(rows) = &mut f.rows {
                        rows.push(e.clone());
                    }
                    // A refusal into the profile store is kept with its reason, but the event
                    // itself is valid and already counted as a record of its batch.
                    let counted = e.stage != "profile";
                    (path, counted.then_some(true))
                }
            };
            if let Some(f) = files.get_mut(path.as_ref()) {
                let entry = f.batches.entry(batch).or_insert((0, 0, received, received));
                match failed {
                    Some(true) => entry.1 += 1,
                    Some(false) => entry.0 += 1,
                    None => {}
                }
                entry.2 = entry.2.min(received);
                entry.3 = entry.3.max(received);
            }
        }
        files.into_values().collect()
    }

    /// Writes one partition's buffer; returns the number of records written.
    pub async fn flush(&mut self, buf: &PartitionBuffer) -> Result<usize, FlushError> {
        let (topic, partition, first, next) = (
            buf.topic.clone(),
            buf.partition,
            buf.first_offset,
            buf.next_offset,
        );
        let count = buf.records.len();
        let files = self.plan(buf);
        let written_ms = cdp_catalog::clock::now_ms();
        let mut contributions = Vec::new();
        for f in &files {
            for (batch, (records, failed, lo, hi)) in &f.batches {
                contributions.push(Contribution {
                    batch_id: batch.clone(),
                    dataset_id: f.dataset_id.clone(),
                    file: f.path.to_string(),
                    records: *records,
                    failed: *failed,
                    first_received_ms: *lo,
                    last_received_ms: *hi,
                    written_ms,
                    topic: topic.clone(),
                    partition,
                    first_offset: first,
                });
            }
        }
        // Encoded before anything is written, so a contribution that cannot be encoded stops
        // the flush with nothing to undo (never an empty value on the batches topic).
        let payloads: Vec<(String, Vec<u8>)> = contributions
            .iter()
            .map(|c| {
                let key = c.key();
                serde_json::to_vec(c)
                    .map(|v| (key.clone(), v))
                    .map_err(|source| FlushError::Contribution { key, source })
            })
            .collect::<Result<_, _>>()?;

        // The manifest comes first: if we crash after it, recovery knows what to remove.
        manifest::write(
            &self.store,
            &Manifest {
                topic: topic.clone(),
                partition,
                first_offset: first,
                next_offset: next,
                files: files.iter().map(|f| f.path.to_string()).collect(),
                keys: payloads.iter().map(|(k, _)| k.clone()).collect(),
            },
        )
        .await?;

        let compression = self.compression;
        let store = self.store.clone();
        stream::iter(files)
            .map(|f| {
                let store = store.clone();
                async move {
                    let path = f.path;
                    // Encoding is CPU work; keep it off the async workers.
                    let bytes = tokio::task::spawn_blocking(move || match f.rows {
                        FileRows::Data { layout, rows } => {
                            encode::data_file(&layout, &rows, compression)
                        }
                        FileRows::Errors(rows) => encode::error_file(&rows, compression),
                    })
                    .await
                    .map_err(|_| FlushError::Join)??;
                    store.put(&path, PutPayload::from(bytes)).await?;
                    Ok::<_, FlushError>(())
                }
            })
            .buffer_unordered(self.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;

        let sends = payloads.iter().map(|(k, v)| {
            self.producer.send(
                FutureRecord::to(&self.batches_topic).key(k).payload(v),
                SEND_TIMEOUT,
            )
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| FlushError::Batches(e))?;
        }
        tracing::debug!(topic, partition, first, next, count, "flushed");
        Ok(count)
    }

    /// Removes what uncommitted flushes of a partition wrote, before it is consumed again from
    /// `resume` (see [`crate::manifest`]).
    pub async fn recover(
        &self,
        topic: &str,
        partition: i32,
        resume: i64,
    ) -> Result<(), FlushError> {
        for (path, m) in manifest::list(&self.store, topic, partition).await? {
            if m.first_offset < resume {
                if m.next_offset > resume {
                    tracing::error!(
                        topic,
                        partition,
                        resume,
                        first = m.first_offset,
                        "consumption resumes inside a flush (offsets rewound by hand?); rows \
                         between the flush start and the resume offset may appear twice"
                    );
                }
                continue;
            }
            tracing::info!(
                topic,
                partition,
                first = m.first_offset,
                files = m.files.len(),
                "removing the files of an uncommitted flush before replaying it"
            );
            for f in &m.files {
                manifest::delete_if_exists(&self.store, &Path::from(f.as_str())).await?;
            }
            let sends = m.keys.iter().map(|k| {
                self.producer.send(
                    FutureRecord::<str, [u8]>::to(&self.batches_topic).key(k.as_str()),
                    SEND_TIMEOUT,
                )
            });
            for r in futures::future::join_all(sends).await {
                r.map_err(|(e, _)| FlushError::Batches(e))?;
            }
            manifest::delete_if_exists(&self.store, &path).await?;
        }
        Ok(())
    }
}
