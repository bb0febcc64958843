//! The data lake: validated events and quarantined failures, written as Parquet files per
//! dataset and day (local files by default, S3 by URL), with batch metadata and the dataset and
//! batch APIs built on them.
//!
//! The crate owns the **lake stage** ([`run`]: a consumer group on events.valid and
//! events.error; replay-safe file names; see [`stage`] and [`manifest`]), the **batch
//! metadata** on the compacted batches topic ([`batches`]: one record per batch and file,
//! aggregated by [`batches::BatchView`]), and the **APIs** ([`api::router`]: datasets with
//! record counts and activity, batches with status, failed records with their reasons).

pub mod activity;
pub mod api;
pub mod batches;
pub mod columns;
pub mod encode;
pub mod failed;
pub mod flush;
pub mod layout;
pub mod manifest;
pub mod record;
pub mod settings;
pub mod stage;
pub mod store;

pub use api::{router, LakeApi};
pub use batches::{BatchStatus, BatchSummary, BatchView, Contribution};
pub use settings::{LakeSettings, S3Settings};
pub use stage::run;

/// Why the lake stage (or its API state) could not run.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("Kafka: {0}")]
    Kafka(rdkafka::error::KafkaError),
    #[error(transparent)]
    Topics(#[from] cdp_contract::admin::AdminError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("flush failed: {0}")]
    Flush(#[from] flush::FlushError),
    #[error(transparent)]
    BatchView(#[from] batches::BatchViewError),
    #[error("a blocking Kafka call did not complete (the runtime is shutting down?)")]
    Join,
    #[error(transparent)]
    Registry(cdp_xdm::decode::DecodeError),
}
