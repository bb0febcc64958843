//! Follows the catalog topic from its beginning and keeps the latest value of every key in
//! memory. Nothing here is authoritative: a restart rebuilds it from the topic.

use std::sync::RwLockReadGuard;
use std::time::Duration;

use cdp_contract::follower::{FollowError, Follower};
use cdp_contract::{KafkaSettings, Topics};

use crate::model::Stream;
use crate::state::CatalogState;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog: {0}")]
    Follow(#[from] FollowError),
}

/// A live, in-memory view of the catalog, shared by all handlers of a process.
#[derive(Clone)]
pub struct CatalogView(Follower<CatalogState>);

impl CatalogView {
    /// Starts following the catalog topic (which must exist; one partition) in a background task.
    pub fn start(kafka: &KafkaSettings, topics: &Topics) -> Result<Self, CatalogError> {
        Ok(Self(Follower::start(
            kafka,
            &topics.catalog(),
            &[0],
            "cdp-catalog",
        )?))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, CatalogState> {
        self.0.read()
    }

    pub fn stream(&self, id: &str) -> Option<Stream> {
        self.read().streams.get(id).cloned()
    }

    /// Waits until the record at `offset` has been applied (read-your-writes for control).
    pub async fn wait_for(&self, offset: i64, timeout: Duration) -> Result<(), CatalogError> {
        Ok(self.0.wait_for(0, offset, timeout).await?)
    }

    /// Waits until everything in the catalog at call time has been applied, so a stage starts
    /// serving with the complete catalog.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), CatalogError> {
        Ok(self.0.caught_up(timeout).await?)
    }
}
