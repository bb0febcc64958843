//! What a stage plugs into the runtime: a [`Processor`] turns a batch of input records into
//! outputs (and, for stateful stages, state changes and timers) through a [`Context`]. The
//! runtime does everything else: reading, transactions, recovery, restoring state, firing timers.

use std::future::Future;

use rdkafka::message::{OwnedHeaders, OwnedMessage};

use crate::state::{Entries, Overlay, StateError, StateStore};

/// One record to produce.
#[derive(Debug, Clone)]
pub struct Output {
    pub topic: String,
    /// `None`: the producer's partitioner picks by key.
    pub partition: Option<i32>,
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: OwnedHeaders,
}

impl Output {
    pub fn new(
        topic: impl Into<String>,
        key: impl Into<Vec<u8>>,
        value: impl Into<Vec<u8>>,
    ) -> Self {
        Self {
            topic: topic.into(),
            partition: None,
            key: Some(key.into()),
            value: Some(value.into()),
            headers: OwnedHeaders::new(),
        }
    }

    pub fn with_headers(mut self, headers: OwnedHeaders) -> Self {
        self.headers = headers;
        self
    }
}

/// What caused an output or a state change: an input record of the batch (by index; its
/// position becomes the output's lineage header, which recovery reads) or a timer of an input
/// partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Input(usize),
    Timer(i32),
}

/// A timer that came due: the input partition whose state it belongs to, its key, and when it
/// was due (epoch milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub partition: i32,
    pub key: Vec<u8>,
    pub due_ms: i64,
}

/// Why a processor could not handle a batch.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// Something outside the stage failed (a registry, a lookup); the batch is read again
    /// after a pause, and recovery looks again at what is already written.
    #[error("{0}")]
    Retry(String),
    /// The stage cannot go on.
    #[error("{0}")]
    Fatal(String),
}

/// A state read that failed (`ctx.get(..)?` in a processor): the batch is read again after a
/// pause, or, when retrying cannot help ([`StateError::is_fatal`]), the stage stops.
impl From<StateError> for ProcessError {
    fn from(e: StateError) -> Self {
        if e.is_fatal() {
            ProcessError::Fatal(e.to_string())
        } else {
            ProcessError::Retry(e.to_string())
        }
    }
}

/// The processor's view of one batch: where outputs go, and the state of the batch's input
/// partitions. State changes are kept aside until the batch succeeds, so a batch that fails
/// leaves the state as it was.
pub struct Context<'a> {
    pub(crate) batch: &'a [OwnedMessage],
    pub(crate) outputs: Vec<(Cause, Output)>,
    pub(crate) state: Option<&'a StateStore>,
    pub(crate) overlay: Overlay,
}

impl<'a> Context<'a> {
    pub(crate) fn new(batch: &'a [OwnedMessage], state: Option<&'a StateStore>) -> Self {
        Self {
            batch,
            outputs: Vec::new(),
            state,
            overlay: Overlay::default(),
        }
    }

    /// Produces `output` in the transaction of the batch.
    pub fn emit(&mut self, cause: Cause, output: Output) {
        self.outputs.push((cause, output));
    }

    fn partition_of(&self, cause: Cause) -> Option<i32> {
        match cause {
            Cause::Input(i) => self.batch.get(i).map(rdkafka::Message::partition),
            Cause::Timer(p) => Some(p),
        }
    }

    /// The value of `key` in an input partition's state, with this batch's own puts and
    /// deletes applied. The state is on disk, so a read can fail: the error converts into
    /// [`ProcessError`] (`ctx.get(partition, key)?`), which reads the batch again after a pause
    /// (or stops the stage when retrying cannot help). `Ok(None)` for a partition this instance
    /// does not hold.
    pub fn get(&self, partition: i32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.overlay.values.get(&(partition, key.to_vec())) {
            Some((_, v)) => Ok(v.clone()),
            None => match self.state {
                Some(s) => s.get(partition, key),
                None => Ok(None),
            },
        }
    }

    /// Every key of an input partition's state that starts with `prefix` (all of them for an
    /// empty prefix), with its value, in key order, with this batch's own puts (inserting or
    /// replacing) and deletes (removing) applied. Reads the whole range into memory: keep
    /// prefixes narrow. Errors as for [`Self::get`].
    pub fn scan(&self, partition: i32, prefix: &[u8]) -> Result<Entries, StateError> {
        let stored = match self.state {
            Some(s) => s.scan(partition, prefix)?,
            None => Vec::new(),
        };
        Ok(self.overlay.over_scan(partition, prefix, stored))
    }

    /// Up to `limit` keys of an input partition's state that start with `prefix` and come
    /// after `after` (from the first when `None`), in key order, without their values: for
    /// work that walks many keys a chunk at a time (read each with [`Self::get`]). It reads the
    /// stored state only: keys this batch put are not seen, keys it deleted may be.
    pub fn keys_after(
        &self,
        partition: i32,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StateError> {
        match self.state {
            Some(s) => s.keys_after(partition, prefix, after, limit),
            None => Ok(Vec::new()),
        }
    }

    /// Stores `value` under `key` in the state of the cause's input partition; it is written to
    /// the changelog in the same transaction as the outputs.
    pub fn put(&mut self, cause: Cause, key: &[u8], value: Vec<u8>) {
        if let Some(p) = self.partition_of(cause) {
            self.overlay
                .values
                .insert((p, key.to_vec()), (cause, Some(value)));
        }
    }

    pub fn delete(&mut self, cause: Cause, key: &[u8]) {
        if let Some(p) = self.partition_of(cause) {
            self.overlay.values.insert((p, key.to_vec()), (cause, None));
        }
    }

    /// Fires [`Processor::on_timers`] for `key` at `due_ms` (epoch milliseconds, wall clock),
    /// replacing an earlier timer of the same key. Timers are kept with the state and survive
    /// restarts; one that came due while no instance ran fires right after the restore.
    pub fn set_timer(&mut self, cause: Cause, key: &[u8], due_ms: i64) {
        if let Some(p) = self.partition_of(cause) {
            self.overlay
                .timers
                .insert((p, key.to_vec()), (cause, Some(due_ms)));
        }
    }

    pub fn cancel_timer(&mut self, cause: Cause, key: &[u8]) {
        if let Some(p) = self.partition_of(cause) {
            self.overlay.timers.insert((p, key.to_vec()), (cause, None));
        }
    }

    /// The due time of `key`'s timer, if one is set.
    pub fn timer(&self, partition: i32, key: &[u8]) -> Option<i64> {
        match self.overlay.timers.get(&(partition, key.to_vec())) {
            Some((_, due)) => *due,
            None => self.state.and_then(|s| s.timer(partition, key)),
        }
    }
}

/// A stage's logic. `process` should be a function of the batch and the state (the runtime may
/// call it again for the same records after an abort).
pub trait Processor: Send + Sync + 'static {
    fn process(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &mut Context<'_>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send;

    /// Work the stage starts on its own over the state of the input partitions it holds, e.g.
    /// re-evaluating every profile when a definition changed. Called on each turn of the loop;
    /// returns `false` at once when there is nothing to do. Changes (with `Cause::Timer(p)` for
    /// partition `p`) commit in the open transaction, as timers' do.
    fn sweep(
        &mut self,
        partitions: &[i32],
        ctx: &mut Context<'_>,
    ) -> impl Future<Output = Result<bool, ProcessError>> + Send {
        let _ = (partitions, ctx);
        async { Ok(false) }
    }

    /// Timers that came due, in due order. The runtime removes them before calling.
    fn on_timers(
        &mut self,
        timers: &[Timer],
        ctx: &mut Context<'_>,
    ) -> impl Future<Output = Result<(), ProcessError>> + Send {
        let _ = (timers, ctx);
        async { Ok(()) }
    }
}
