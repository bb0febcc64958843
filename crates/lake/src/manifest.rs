//! Flush manifests: before a flush writes its files, it records which files and batch keys it
//! is about to write, under `_lake/flushes/{topic}/{partition}/{first offset}.json`. When a
//! partition is (re)assigned and consumption resumes at offset R, every flush that started at
//! or after R was never committed (or was rewound by an operator): its files and batch records
//! are removed before the replay writes them again, so a replay with other flush boundaries
//! cannot leave rows behind twice.

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use crate::layout;
use crate::store::Store;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub topic: String,
    pub partition: i32,
    pub first_offset: i64,
    /// The offset the flush commits (last offset + 1).
    pub next_offset: i64,
    pub files: Vec<String>,
    /// Keys of the batch contributions the flush writes.
    pub keys: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("lake store: {0}")]
    Store(#[from] object_store::Error),
    #[error("manifest {0} is not readable: {1}")]
    Corrupt(String, serde_json::Error),
}

pub async fn write(store: &Store, m: &Manifest) -> Result<(), ManifestError> {
    let path = layout::manifest_file(&m.topic, m.partition, m.first_offset);
    let body = serde_json::to_vec(m).map_err(|e| ManifestError::Corrupt(path.to_string(), e))?;
    store.put(&path, PutPayload::from(body)).await?;
    Ok(())
}

/// Every manifest of one partition, by first offset.
pub async fn list(
    store: &Store,
    topic: &str,
    partition: i32,
) -> Result<Vec<(Path, Manifest)>, ManifestError> {
    let dir = layout::manifest_dir(topic, partition);
    let metas: Vec<_> = store.list(Some(&dir)).try_collect().await?;
    let mut out = Vec::with_capacity(metas.len());
    for meta in metas {
        let bytes = store.get(&meta.location).await?.bytes().await?;
        let m: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| ManifestError::Corrupt(meta.location.to_string(), e))?;
        out.push((meta.location, m));
    }
    out.sort_by_key(|(_, m)| m.first_offset);
    Ok(out)
}

/// Deletes an object; one that is already gone is fine (a crash may have come first).
pub async fn delete_if_exists(store: &Store, path: &Path) -> Result<(), ManifestError> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
