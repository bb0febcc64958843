//! Opens the lake's object store from `lake.root`. Every path the lake uses is relative to the
//! root, so the same code writes local files and S3 objects.

use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::ObjectStore;
use url::Url;

use crate::settings::LakeSettings;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("lake.root {0:?} is not a URL (file:///dir or s3://bucket/prefix)")]
    Url(String),
    #[error("lake.root scheme {0:?} is not supported (file or s3)")]
    Scheme(String),
    #[error("cannot create the lake directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("unknown S3 option {0:?}")]
    S3Option(String),
    #[error("cannot open the lake store: {0}")]
    Open(#[from] object_store::Error),
}

/// The store, with paths relative to `lake.root`.
pub type Store = Arc<dyn ObjectStore>;

pub fn open(settings: &LakeSettings) -> Result<Store, StoreError> {
    let url = Url::parse(&settings.root).map_err(|_| StoreError::Url(settings.root.clone()))?;
    match url.scheme() {
        "file" => {
            let dir = url
                .to_file_path()
                .map_err(|_| StoreError::Url(settings.root.clone()))?;
            std::fs::create_dir_all(&dir).map_err(|source| StoreError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
            Ok(Arc::new(LocalFileSystem::new_with_prefix(&dir)?))
        }
        "s3" => {
            let s3 = &settings.s3;
            let bucket = url.host_str().unwrap_or_default();
            // Standard AWS_* variables first, explicit configuration wins.
            let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
            if let Some(e) = &s3.endpoint {
                b = b.with_endpoint(e);
            }
            if let Some(r) = &s3.region {
                b = b.with_region(r);
            }
            if let Some(k) = &s3.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(k) = &s3.secret_access_key {
                b = b.with_secret_access_key(k);
            }
            if s3.allow_http {
                b = b.with_allow_http(true);
            }
            for (k, v) in &s3.options {
                let key: AmazonS3ConfigKey =
                    k.parse().map_err(|_| StoreError::S3Option(k.clone()))?;
                b = b.with_config(key, v);
            }
            let store = b.build()?;
            let prefix = url.path().trim_matches('/');
            if prefix.is_empty() {
                Ok(Arc::new(store))
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix)))
            }
        }
        other => Err(StoreError::Scheme(other.to_string())),
    }
}
