//! `cdp secrets reseal`: seals every destination connection's credentials again with the
//! current `control.secret_key`, so the keys it replaced (`control.previous_secret_keys`) can be
//! dropped. Idempotent: a connection already sealed by the current key is left alone, so it can
//! be run again after a failure, or while control runs (a connection is one catalog record,
//! written whole).

use std::time::Duration;

use cdp_catalog::{CatalogRecord, CatalogView, CatalogWriter, SecretError, SecretKey, WriteError};
use cdp_contract::{KafkaSettings, Topics};

/// What a reseal did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    /// The current key's id: what every connection is sealed with after a clean run.
    pub key_id: String,
    /// Connections sealed again.
    pub resealed: Vec<String>,
    /// Connections already sealed by the current key, or without credentials.
    pub unchanged: usize,
    /// Connections none of the keys opens, with why: they are left as they are.
    pub failed: Vec<(String, SecretError)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error("the catalog: {0}")]
    Catalog(#[from] cdp_catalog::CatalogError),
    #[error("the catalog writer: {0}")]
    Writer(#[from] WriteError),
    #[error("writing connection {id} to the catalog: {source}")]
    Write { id: String, source: WriteError },
}

/// Reads the whole catalog, then writes back each connection that another key (or no named
/// key) sealed, sealed with `key`'s current key.
pub async fn reseal(
    kafka: &KafkaSettings,
    topics: &Topics,
    key: &SecretKey,
) -> Result<Resealed, ResealError> {
    let view = CatalogView::start(kafka, topics)?;
    view.caught_up(Duration::from_secs(30)).await?;
    let writer = CatalogWriter::new(kafka, topics, view.clone())?;
    let connections: Vec<_> = view.read().connections.values().cloned().collect();
    let mut done = Resealed {
        key_id: key.id(),
        ..Resealed::default()
    };
    for connection in connections {
        match connection.resealed(key) {
            Ok(None) => done.unchanged += 1,
            Ok(Some(again)) => {
                writer
                    .put(&CatalogRecord::Connection(again))
                    .await
                    .map_err(|source| ResealError::Write {
                        id: connection.id.clone(),
                        source,
                    })?;
                tracing::info!(connection = %connection.id, key = %done.key_id, "credentials sealed again");
                done.resealed.push(connection.id);
            }
            Err(e) => {
                tracing::error!(connection = %connection.id, error = %e, "cannot open the connection's credentials; left as they are");
                done.failed.push((connection.id, e));
            }
        }
    }
    done.resealed.sort();
    Ok(done)
}
