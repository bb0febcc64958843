//! The stage runtime: the consume → process → produce/commit loop, written once, that every
//! consumer stage runs on. A stage supplies a [`Processor`] (`process(batch) → outputs`, plus
//! state changes and timers through its [`Context`]); the runtime owns the rest:
//!
//! - batching by count and time, with rebalance epochs ([`consumer`]);
//! - Kafka transactions by commit interval (begin → produce → seal → send offsets → commit;
//!   abort → rewind → forget recovery; fatal errors told apart) ([`runtime`]);
//! - recovery for brokers that show aborted records, in part after a crash: every transaction is
//!   sealed once all of its records are on the broker, and a restarted instance skips the inputs
//!   of sealed transactions, processes the others again without the outputs already visible, and
//!   restores state without their changelog records ([`recovery`]);
//! - keyed state per input partition in an embedded on-disk store (bounded memory; point reads
//!   and prefix scans), rebuilt from a compacted changelog that is written in the same
//!   transaction as the outputs, and wall-clock timers that fire on idle partitions ([`state`]),
//!   readable from outside the loop for queries ([`reader`]);
//! - metrics (`cdp_<stage>_…`) and `/healthz`, `/readyz`, `/metrics` ([`metrics`], [`health`]).
//!
//! The lake, which commits files rather than transactions, uses the consumer, batching and
//! metrics without the transactional loop.

pub mod consumer;
pub mod health;
pub mod metrics;
pub mod processor;
pub mod reader;
pub mod recovery;
pub mod runtime;
pub mod settings;
pub mod state;

pub use consumer::{Span, StageConsumer};
pub use metrics::StageMetrics;
pub use processor::{Cause, Context, Output, ProcessError, Processor, Timer};
pub use reader::StateReader;
pub use recovery::{Lineage, Positions, Recovery, RecoveryError};
pub use runtime::{run, StageError, StageSpec};
pub use settings::{instance_id, InstanceError, RuntimeSettings};
pub use state::{Entries, RestoreError, StateError};
