//! The loop every transactional stage runs: read a batch (by count and time) → recovery check
//! → process → produce into the open transaction → commit by interval (or at once when the
//! input runs dry) with the input offsets and the changelog. Aborts rewind the input, forget
//! what recovery learnt and restore the touched state from its changelog. Rebalances abort
//! whatever is uncommitted: the partitions' next owner (possibly this instance again) starts
//! from the committed offsets.
//!
//! Every record a transaction writes carries its id ([`TXN_HEADER`]). Committing first waits
//! for every record to be acknowledged, then *seals* the transaction: a checkpoint on the
//! checkpoint partition of each input partition it read or whose state (or timers) it changed,
//! acknowledged in turn, and only then sends the offsets and commits (see [`crate::recovery`]
//! for what a seal tells a restarted instance). A seal's positions are where the next recovery
//! scan starts: the positions when the transaction began, or earlier while the partition still
//! has *loose* records, visible ones of transactions that never committed and whose inputs or
//! timers have not been committed again since (an abort or a restart leaves them), so that a
//! second crash still finds them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdp_contract::admin::{ensure_topics, AdminError, TopicSpec};
use cdp_contract::clock::now_ms;
use cdp_contract::KafkaSettings;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Message;
use tokio::sync::watch;

use crate::consumer::{Span, StageConsumer};
use crate::health::{self, Status};
use crate::metrics::{Phase, StageMetrics};
use crate::processor::{Cause, Context, Output, ProcessError, Processor};
use crate::recovery::{
    raw_position, Candidate, Emitted, Landed, Lineage, Positions, Recovery, RecoveryError, Seals,
    AT_HEADER, CHECKPOINT_HEADER, OPEN, SEAL, TIMER_HEADER, TXN_HEADER,
};
use crate::settings::RuntimeSettings;
use crate::state::{PartitionState, RestoreError, StateError, StateStore};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// When a transactional call that has not returned is taken for stuck: well past the timeout it
/// was given. librdkafka can wait forever for a group coordinator that went away, whatever the
/// timeout (`rd_kafka_send_offsets_to_transaction`, confluentinc/librdkafka#5456); the stage then
/// stops with [`StageError::Stuck`] instead of waiting with it, so that it is restarted.
const STUCK_AFTER: Duration = Duration::from_secs(90);
/// How long the loop sleeps at most, so rebalances and timers are noticed on an idle input.
const TICK: Duration = Duration::from_millis(250);
/// The pause before a batch that could not be handled is read again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// What a stage tells the runtime about itself.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// Short name: metrics (`cdp_<stage>_…`), health, logs.
    pub stage: &'static str,
    pub group_id: String,
    /// Makes the client ids and, with the transactional id, fences a crashed predecessor.
    pub instance: String,
    pub transactional_id: String,
    /// The one input topic.
    pub input: String,
    /// Every topic the processor writes to; recovery reads them.
    pub outputs: Vec<String>,
    /// Compacted; one partition per input partition; created if missing.
    pub checkpoints: String,
    /// For stateful stages: the compacted changelog (one partition per input partition).
    pub changelog: Option<String>,
    pub lineage: Lineage,
    pub settings: RuntimeSettings,
    /// For stateful stages that answer queries where their state lives: the reader to keep
    /// showing the partitions held.
    pub queries: Option<crate::reader::StateReader>,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("cannot create the {0} consumer: {1}")]
    Consumer(&'static str, KafkaError),
    #[error("cannot create the transactional producer: {0}")]
    Producer(KafkaError),
    #[error("transactions cannot start (does the broker support them?): {0}")]
    InitTransactions(KafkaError),
    #[error("the producer was fenced or failed fatally; another instance with the same instance_id may be running: {0}")]
    Fatal(KafkaError),
    #[error("the processor cannot go on: {0}")]
    Processor(String),
    #[error("a blocking Kafka call did not complete (the runtime is shutting down?)")]
    Join,
    #[error("a transactional Kafka call did not return within {0:?}, well past its own timeout (is the broker gone?): the stage stops so that it can be restarted; the broker aborts or fences the transaction it left open")]
    Stuck(Duration),
    #[error("cannot create the stage's topics: {0}")]
    Topics(#[from] AdminError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the changelog {changelog} has {have} partitions but the input has {want}: state would be restored from the wrong partitions")]
    ChangelogPartitions {
        changelog: String,
        have: usize,
        want: usize,
    },
}

impl From<RestoreError> for StageError {
    fn from(e: RestoreError) -> Self {
        match e {
            RestoreError::Changelog(e) => StageError::Recovery(e),
            RestoreError::Store(e) => StageError::State(e),
        }
    }
}

impl StageError {
    /// A state store that retrying cannot help.
    fn is_fatal_state(&self) -> bool {
        matches!(self, StageError::State(e) if e.is_fatal())
    }
}

/// Why a transaction cannot go on.
enum TxnError {
    Abortable(KafkaError),
    Fatal(KafkaError),
    /// The processor said it cannot go on.
    Processor(String),
    /// The state store could not write the transaction's changes: abortable unless
    /// [`StateError::is_fatal`].
    State(StateError),
    /// A transactional call did not return (see [`STUCK_AFTER`]): aborting would wait the same.
    Stuck(Duration),
}

impl From<KafkaError> for TxnError {
    fn from(e: KafkaError) -> Self {
        match &e {
            KafkaError::Transaction(t) if t.is_fatal() => TxnError::Fatal(e),
            _ => TxnError::Abortable(e),
        }
    }
}

struct OpenTxn {
    /// Named on every record it writes ([`TXN_HEADER`]).
    id: Arc<str>,
    started: Instant,
    /// The positions when it began: a lower bound for the offsets of its records.
    at: Positions,
    span: Span,
    /// Input partitions whose state changed in this transaction (timers included): restored
    /// from the changelog if it aborts.
    touched: HashSet<i32>,
    /// Input partitions whose timers fired in it.
    fired: HashSet<i32>,
    records: usize,
    deliveries: Vec<(String, DeliveryFuture)>,
}

impl OpenTxn {
    /// The input partitions it wrote anything for: the ones it seals.
    fn partitions(&self) -> BTreeSet<i32> {
        self.span
            .parts
            .keys()
            .chain(&self.touched)
            .chain(&self.fired)
            .copied()
            .collect()
    }
}

/// What recovery learnt about an input partition's uncommitted input offsets.
#[derive(Debug, Default)]
struct Recovered {
    /// Complete on the topics: skipped.
    done: HashSet<i64>,
    /// Partly visible: processed again, without the outputs already there.
    partial: HashMap<i64, Landed>,
}

/// An input partition's loose records: visible records of transactions that did not commit,
/// whose inputs (up to `until`) or timers were not committed again since.
#[derive(Debug)]
struct Loose {
    /// A lower bound for their offsets; the partition's seals carry it.
    floor: Positions,
    /// The input offset the partition's committed offset must reach.
    until: Option<i64>,
}

/// Runs `processor` as a stage until `shutdown` turns true (the open transaction is committed
/// first). Reports the stage's status to [`crate::health`].
pub async fn run<P: Processor>(
    kafka: &KafkaSettings,
    spec: StageSpec,
    processor: P,
    shutdown: watch::Receiver<bool>,
) -> Result<(), StageError> {
    let stage = spec.stage;
    let health = Arc::new(health::Registration::new(stage));
    let result = match Runtime::start(kafka, spec, processor).await {
        Ok(mut rt) => {
            // A stateful stage is ready once it has restored the state of its first
            // assignment (see `restore_state`); before, lookups of its state would miss.
            if rt.state.is_some() {
                health.set(Status::Restoring);
            } else {
                health.set(Status::Ready);
            }
            rt.health = Some(health.clone());
            rt.run(shutdown).await
        }
        Err(e) => Err(e),
    };
    match &result {
        Ok(()) => health.set(Status::Stopped),
        Err(e) => {
            tracing::error!(stage, error = %e, "stage failed");
            health.set(Status::Failed);
        }
    }
    result
}

struct Runtime<P> {
    spec: StageSpec,
    processor: P,
    consumer: StageConsumer,
    producer: FutureProducer,
    recovery: Arc<Recovery>,
    metrics: StageMetrics,
    checkpoint_partitions: usize,
    /// Lower bounds of where this instance's next outputs land, written as checkpoints.
    positions: Positions,
    /// Input partitions checked since the last rebalance or abort, with what recovery found
    /// of their uncommitted input offsets.
    recovered: HashMap<i32, Recovered>,
    /// Per input partition, visible outputs of its timers from unsealed transactions: left out
    /// when its due timers fire again.
    timers_landed: HashMap<i32, Landed>,
    loose: HashMap<i32, Loose>,
    /// Input partitions without a checkpoint: the next transaction writing for one opens it.
    unopened: HashSet<i32>,
    /// Restored partitions' seals, for the recovery that follows the restore to judge by the same.
    restored: HashMap<i32, Seals>,
    /// Makes transaction ids unique to this process (`<session>.<n>`).
    session: String,
    next_txn: u64,
    epoch: u64,
    state: Option<StateStore>,
    /// State must be (re)loaded for the assigned partitions that lack it.
    restore: bool,
    txn: Option<OpenTxn>,
    /// The previous transaction, committing off-thread while the next batch is read and
    /// processed; finished before the next transaction begins.
    committing: Option<Committing>,
    /// This stage's entry on `/readyz`: not ready while state is restored.
    health: Option<Arc<health::Registration>>,
}

struct Committing {
    txn: OpenTxn,
    /// `None` once the loop has collected the outcome into `done`.
    task: Option<tokio::task::JoinHandle<Committed>>,
    done: Option<Committed>,
}

/// Resolves when the transaction being committed has its outcome (never without one), so
/// an idle loop learns of it at once.
async fn commit_outcome(committing: &mut Option<Committing>) -> Committed {
    match committing.as_mut().and_then(|c| c.task.as_mut()) {
        Some(task) => task.await.unwrap_or_else(|_| Committed::canceled()),
        None => std::future::pending().await,
    }
}

/// What a commit task learnt: its outcome, how long it took and where the transaction's
/// records landed.
struct Committed {
    outcome: Result<(), TxnError>,
    took: Duration,
    /// How long each part of the commit took (see [`CommitParts`]).
    parts: CommitParts,
    /// `(topic, partition, offset)` of every record.
    landed: Vec<(String, i32, i64)>,
}

impl Committed {
    /// The outcome of a commit task that never reported (it panicked or was dropped).
    fn canceled() -> Self {
        Committed {
            outcome: Err(KafkaError::Canceled.into()),
            took: Duration::ZERO,
            parts: CommitParts::default(),
            landed: Vec::new(),
        }
    }
}

impl<P: Processor> Runtime<P> {
    async fn start(
        kafka: &KafkaSettings,
        spec: StageSpec,
        processor: P,
    ) -> Result<Self, StageError> {
        let metrics = StageMetrics::new(spec.stage);
        let client = format!("cdp-{}-{}", spec.stage, spec.instance);
        let consumer = StageConsumer::new(kafka, &client, &spec.group_id, metrics.clone())
            .map_err(|e| StageError::Consumer(spec.stage, e))?;
        let mut config = kafka.transactional_producer(&client, &spec.transactional_id);
        // A crashed instance's open transaction blocks read_committed readers until it times
        // out (or the restarted instance fences it), so keep the timeout short.
        config
            .set("transaction.timeout.ms", "20000")
            .set("message.timeout.ms", "20000");
        let producer: FutureProducer = config.create().map_err(StageError::Producer)?;
        blocking(&producer, |p| p.init_transactions(TXN_TIMEOUT))
            .await?
            .map_err(StageError::InitTransactions)?;
        let mut outputs = spec.outputs.clone();
        outputs.extend(spec.changelog.clone());
        let recovery = Arc::new(
            Recovery::new(
                kafka,
                &format!("{client}-recovery"),
                &spec.group_id,
                spec.lineage,
                spec.checkpoints.clone(),
                outputs,
                TXN_TIMEOUT,
            )?
            .with_changelog(spec.changelog.clone()),
        );
        let checkpoint_partitions = prepare_topics(kafka, &spec, &recovery).await?;
        let positions = {
            let r = recovery.clone();
            run_blocking(move || r.output_ends()).await??
        };
        consumer
            .subscribe(&[spec.input.as_str()])
            .map_err(|e| StageError::Consumer(spec.stage, e))?;
        let epoch = consumer.epoch();
        let state = match &spec.changelog {
            Some(changelog) => {
                // The group names the pipeline: two pipelines' stages in one process (tests,
                // `cdp up` on two namespaces) must not share a directory.
                let owner = format!("{}-{}", spec.group_id, spec.instance);
                let dir = spec.settings.state_path(spec.stage, &owner);
                let mut store =
                    StateStore::open(changelog.clone(), &dir, spec.settings.state_cache_mb)?;
                if let Some(reader) = &spec.queries {
                    store.share(reader.clone());
                }
                tracing::info!(stage = spec.stage, dir = %dir.display(), cache_mb = spec.settings.state_cache_mb, "state store opened");
                Some(store)
            }
            None => None,
        };
        Ok(Self {
            session: session_id(&spec.instance),
            state,
            spec,
            processor,
            consumer,
            producer,
            recovery,
            metrics,
            checkpoint_partitions,
            positions,
            recovered: HashMap::new(),
            timers_landed: HashMap::new(),
            loose: HashMap::new(),
            unopened: HashSet::new(),
            restored: HashMap::new(),
            next_txn: 0,
            epoch,
            restore: true,
            txn: None,
            committing: None,
            health: None,
        })
    }

    async fn run(&mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), StageError> {
        tracing::info!(
            stage = self.spec.stage,
            instance = %self.spec.instance,
            group = %self.spec.group_id,
            topic = %self.spec.input,
            "stage consuming"
        );
        loop {
            let wake = self.next_wake();
            let waiting = Instant::now();
            let first = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => break,
                m = self.consumer.recv() => Some(m),
                _ = tokio::time::sleep_until(wake.into()) => None,
                c = commit_outcome(&mut self.committing) => {
                    if let Some(committing) = self.committing.as_mut() {
                        committing.task = None;
                        committing.done = Some(c);
                    }
                    None
                }
            };
            self.metrics.phase(Phase::Input, waiting.elapsed());
            if self.committing.as_ref().is_some_and(|c| c.done.is_some()) {
                if let Err(e) = self.finish_commit().await {
                    self.fail(e).await?;
                    continue;
                }
            }
            let mut batch = Vec::new();
            let mut full = false;
            match first {
                Some(Ok(m)) => {
                    batch.push(m);
                    let t = Instant::now();
                    full = self.fill(&mut batch).await;
                    self.metrics.phase(Phase::Fill, t.elapsed());
                }
                Some(Err(e)) => {
                    tracing::warn!(stage = self.spec.stage, error = %e, "input read failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => {}
            }
            if self.consumer.epoch() != self.epoch {
                self.on_rebalance(&batch).await?;
                continue;
            }
            if let Err(e) = self.restore_state().await {
                if e.is_fatal_state() {
                    return Err(e);
                }
                tracing::warn!(stage = self.spec.stage, error = %e, "cannot restore state; reading again");
                self.retry_later(&Span::of(&batch)).await;
                continue;
            }
            if !batch.is_empty() {
                if let Err(e) = self.handle(batch).await {
                    self.fail(e).await?;
                    continue;
                }
            }
            let t = Instant::now();
            let r = self.fire_timers().await;
            self.metrics.phase(Phase::Timers, t.elapsed());
            if let Err(e) = r {
                self.fail(e).await?;
                continue;
            }
            let t = Instant::now();
            let r = self.sweep().await;
            self.metrics.phase(Phase::Sweep, t.elapsed());
            if let Err(e) = r {
                self.fail(e).await?;
                continue;
            }
            if self.commit_due(!full) {
                if let Err(e) = self.start_commit() {
                    self.fail(e).await?;
                }
            }
        }
        if let Err(e) = self.finish_commit().await {
            self.fail(e).await?;
        }
        if self.txn.is_some() {
            if let Err(e) = self.commit().await {
                self.fail(e).await?;
            }
        }
        tracing::info!(stage = self.spec.stage, "stage stopped");
        Ok(())
    }

    /// Reads until the batch is full or `max_wait_ms` passed; true when it is full (the input
    /// has more).
    async fn fill(&self, batch: &mut Vec<OwnedMessage>) -> bool {
        let settings = &self.spec.settings;
        let deadline = Instant::now() + Duration::from_millis(settings.max_wait_ms);
        while batch.len() < settings.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m),
                Ok(Err(e)) => {
                    tracing::warn!(stage = self.spec.stage, error = %e, "input read failed");
                    return false;
                }
                Err(_) => return false,
            }
        }
        true
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        let mut wake = now + TICK;
        if let Some(txn) = &self.txn {
            wake = wake.min(txn.started + self.commit_interval());
        }
        if let Some(due) = self.state.as_ref().and_then(StateStore::next_due) {
            let wait = u64::try_from(due - now_ms()).unwrap_or(0);
            wake = wake.min(now + Duration::from_millis(wait));
        }
        wake
    }

    fn commit_interval(&self) -> Duration {
        Duration::from_millis(self.spec.settings.commit_interval_ms)
    }

    fn commit_due(&self, input_idle: bool) -> bool {
        self.txn.as_ref().is_some_and(|t| {
            input_idle
                || t.records >= self.spec.settings.max_transaction_records
                || t.started.elapsed() >= self.commit_interval()
        })
    }

    /// A rebalance: everything uncommitted is given up and read again by whoever owns the
    /// partitions now, from the committed offsets.
    async fn on_rebalance(&mut self, batch: &[OwnedMessage]) -> Result<(), StageError> {
        self.epoch = self.consumer.epoch();
        match self.finish_commit().await {
            Ok(()) => {}
            Err(TxnError::Fatal(e)) => return Err(StageError::Fatal(e)),
            Err(TxnError::Stuck(after)) => return Err(StageError::Stuck(after)),
            // The transaction is open again and aborted below.
            Err(_) => {}
        }
        let mut span = Span::of(batch);
        let revoked: HashSet<i32> = self
            .consumer
            .take_revoked()
            .into_iter()
            .filter(|(t, _)| *t == self.spec.input)
            .map(|(_, p)| p)
            .collect();
        let mut stale = revoked.clone();
        if let Some(txn) = self.txn.take() {
            span.merge(&txn.span);
            stale.extend(txn.touched.iter().copied());
            self.abort_open(txn.records).await?;
            self.loosen(&txn);
        }
        if !span.is_empty() {
            tracing::info!(
                stage = self.spec.stage,
                partitions = ?span.parts.keys().collect::<Vec<_>>(),
                "rebalance: uncommitted records are read again from the committed offsets"
            );
            self.consumer.rewind(&self.spec.input, span.firsts()).await;
        }
        self.recovered.clear();
        // A revoked partition's next owner finds its loose records itself; if it comes back
        // here, recovery finds them again from its checkpoints.
        for p in &revoked {
            self.loose.remove(p);
            self.timers_landed.remove(p);
            self.unopened.remove(p);
        }
        // A partition revoked and given back may have been another instance's in between: its
        // state is read again rather than trusted.
        if let Some(state) = &mut self.state {
            for p in span.parts.keys().chain(stale.iter()) {
                state.drop_partition(*p);
            }
        }
        self.restore = true;
        Ok(())
    }

    /// Loads the state of assigned input partitions that lack it, and forgets the others; then
    /// runs recovery for the held partitions not checked yet, judged by the same seals as their
    /// restore (their timers may fire before any of their input arrives).
    async fn restore_state(&mut self) -> Result<(), StageError> {
        if !self.restore {
            return Ok(());
        }
        let Some(state) = &mut self.state else {
            self.restore = false;
            return Ok(());
        };
        let assigned: BTreeSet<i32> = match self.consumer.assignment() {
            Ok(a) => a
                .into_iter()
                .filter(|(t, _)| *t == self.spec.input)
                .map(|(_, p)| p)
                .collect(),
            Err(e) => return Err(StageError::Consumer(self.spec.stage, e)),
        };
        for p in state.partitions() {
            if !assigned.contains(&p) {
                state.drop_partition(p);
            }
        }
        let missing: Vec<i32> = assigned
            .iter()
            .copied()
            .filter(|p| !state.has(*p))
            .collect();
        if let Some(h) = self.health.as_ref().filter(|_| !missing.is_empty()) {
            h.set(Status::Restoring);
        }
        let changelog = state.changelog().to_string();
        for p in missing {
            let r = self.recovery.clone();
            let seals = run_blocking(move || r.seals(p)).await??;
            let Some(state) = &mut self.state else {
                break;
            };
            let mut loader = state.loader(p)?;
            loader.keep(seals.restore_rule(&changelog, p));
            let (r, c) = (self.recovery.clone(), changelog.clone());
            let started = Instant::now();
            let loaded = run_blocking(move || PartitionState::load(&r, &c, loader)).await??;
            tracing::info!(
                stage = self.spec.stage,
                partition = p,
                keys = loaded.approximate_len(),
                records = loaded.records(),
                unsealed = loaded.skipped(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "state restored from the changelog"
            );
            self.positions.advance(&changelog, p, loaded.end());
            if loaded.skipped() > 0 {
                // Left out, so its timers fire again and its inputs are processed again: keep
                // it within the scans until they are committed.
                if let Some(from) = &seals.from {
                    self.mark_loose(p, from, None);
                }
            }
            if let Some(state) = &mut self.state {
                state.install(p, loaded);
            }
            self.restored.insert(p, seals);
        }
        let unchecked: Vec<i32> = assigned
            .iter()
            .copied()
            .filter(|p| !self.recovered.contains_key(p))
            .collect();
        if !unchecked.is_empty() {
            let from = self
                .consumer
                .committed(&self.spec.input, &unchecked)
                .await
                .map_err(|e| StageError::Consumer(self.spec.stage, e))?;
            self.recover(from, self.restored.clone()).await?;
        }
        self.restored.clear();
        self.restore = false;
        // Ready once the group has assigned this instance its partitions (even none) and their
        // state is in place.
        if self.consumer.epoch() > 0 {
            self.set_health(Status::Ready);
        }
        Ok(())
    }

    fn set_health(&self, status: Status) {
        if let Some(h) = &self.health {
            h.set(status);
        }
    }

    /// Recovery for the input partitions of `from` (from their first uncommitted offset):
    /// what of them is already on the topics, judged by `known` seals (the ones their state
    /// was just restored by; the others' are read). For the `known` partitions it also learns
    /// which outputs of their timers are visible.
    async fn recover(
        &mut self,
        from: HashMap<i32, i64>,
        known: HashMap<i32, Seals>,
    ) -> Result<(), StageError> {
        let r = self.recovery.clone();
        let restored: HashSet<i32> = known.keys().copied().collect();
        let started = Instant::now();
        let (from, seals, mut emitted) = run_blocking(move || -> Result<_, RecoveryError> {
            let mut seals = known;
            for p in from.keys() {
                if !seals.contains_key(p) {
                    seals.insert(*p, r.seals(*p)?);
                }
            }
            let emitted: Emitted = r.emitted(&from, &seals)?;
            Ok((from, seals, emitted))
        })
        .await??;
        tracing::info!(
            stage = self.spec.stage,
            partitions = ?from.keys().collect::<Vec<_>>(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "recovery: read the outputs since the partitions' checkpoints"
        );
        self.positions.advance_all(&emitted.ends);
        for partition in from.keys().copied() {
            let checkpoint = seals.get(&partition).and_then(|s| s.from.as_ref());
            if checkpoint.is_none() && (partition as usize) < self.checkpoint_partitions {
                self.unopened.insert(partition);
            } else {
                self.unopened.remove(&partition);
            }
            let found = emitted.found.remove(&partition).unwrap_or_default();
            let timers = restored.contains(&partition) && !found.timers.is_empty();
            if let Some(checkpoint) = checkpoint {
                if found.last.is_some() || timers {
                    let floor = checkpoint.clone();
                    self.mark_loose(partition, &floor, found.last.map(|l| l + 1));
                }
            }
            if !found.done.is_empty() || !found.partial.is_empty() || timers {
                tracing::info!(
                    stage = self.spec.stage,
                    partition,
                    done = found.done.len(),
                    partial = found.partial.len(),
                    timer_outputs = found.timers.len(),
                    "recovery: input records with complete output are skipped; those with part of it are processed again without the outputs already there"
                );
            }
            if restored.contains(&partition) {
                if timers {
                    self.timers_landed.insert(partition, found.timers);
                } else {
                    self.timers_landed.remove(&partition);
                }
            }
            self.recovered.insert(
                partition,
                Recovered {
                    done: found.done,
                    partial: found.partial,
                },
            );
        }
        Ok(())
    }

    /// Keeps `partition`'s records from `floor` on within the scans, until its committed
    /// offset reaches `until` (or, without one, until a transaction writing for it commits).
    fn mark_loose(&mut self, partition: i32, floor: &Positions, until: Option<i64>) {
        let loose = self.loose.entry(partition).or_insert_with(|| Loose {
            floor: floor.clone(),
            until: None,
        });
        loose.floor.lower(floor);
        if let Some(u) = until {
            loose.until = Some(loose.until.map_or(u, |old| old.max(u)));
        }
    }

    /// An aborted transaction's records may stay visible: its partitions keep them in reach.
    fn loosen(&mut self, txn: &OpenTxn) {
        for p in txn.partitions() {
            let until = txn.span.parts.get(&p).map(|(_, next)| *next);
            self.mark_loose(p, &txn.at, until);
        }
    }

    /// Recovery check, processing and producing of one batch, in the open transaction.
    async fn handle(&mut self, batch: Vec<OwnedMessage>) -> Result<(), TxnError> {
        let span = Span::of(&batch);
        let unchecked: HashMap<i32, i64> = span
            .firsts()
            .into_iter()
            .filter(|(p, _)| !self.recovered.contains_key(p))
            .collect();
        if !unchecked.is_empty() {
            match self.recover(unchecked, HashMap::new()).await {
                Ok(()) => {}
                Err(StageError::Join) => {
                    self.consumer.rewind(&self.spec.input, span.firsts()).await;
                    return Err(TxnError::Abortable(KafkaError::Canceled));
                }
                Err(e) => {
                    tracing::warn!(stage = self.spec.stage, error = %e, "recovery failed; reading the batch again");
                    self.retry_later(&span).await;
                    return Ok(());
                }
            }
        }
        let total = batch.len();
        let todo: Vec<OwnedMessage> = batch
            .into_iter()
            .filter(|m| {
                !self
                    .recovered
                    .get(&m.partition())
                    .is_some_and(|r| r.done.contains(&m.offset()))
            })
            .collect();
        if todo.len() < total {
            self.metrics.recovery_skipped(total - todo.len());
        }
        let mut ctx = Context::new(&todo, self.state.as_ref());
        let t = Instant::now();
        let r = self.processor.process(&todo, &mut ctx).await;
        self.metrics.phase(Phase::Process, t.elapsed());
        match r {
            Ok(()) => {}
            Err(ProcessError::Retry(why)) => {
                tracing::warn!(stage = self.spec.stage, reason = %why, "batch failed; reading it again");
                drop(ctx);
                // What recovery found stays true, but the batch is read again from its first
                // offsets: look again rather than trust a set made for the first reading.
                for p in span.parts.keys() {
                    self.recovered.remove(p);
                }
                self.retry_later(&span).await;
                return Ok(());
            }
            Err(ProcessError::Fatal(why)) => return Err(TxnError::Processor(why)),
        }
        let Context {
            outputs, overlay, ..
        } = ctx;
        let t = Instant::now();
        let r = self.finish_commit().await;
        self.metrics.phase(Phase::CommitWait, t.elapsed());
        if let Err(e) = r {
            // The batch was read after the failed transaction's records: both are read again.
            self.consumer.rewind(&self.spec.input, span.firsts()).await;
            return Err(e);
        }
        if let Err(e) = self.begin() {
            // Nothing of the batch is applied yet: read it again.
            self.consumer.rewind(&self.spec.input, span.firsts()).await;
            return Err(e);
        }
        let t = Instant::now();
        let changes = match &mut self.state {
            Some(state) => match state.apply(overlay) {
                Ok(changes) => changes,
                Err(e) => {
                    // Nothing of the batch is applied: read it again, after the open
                    // transaction is aborted and its partitions restored.
                    self.consumer.rewind(&self.spec.input, span.firsts()).await;
                    return Err(TxnError::State(e));
                }
            },
            None => Vec::new(),
        };
        self.metrics.phase(Phase::State, t.elapsed());
        let producing = Instant::now();
        self.metrics.batch(total);
        let changed: BTreeSet<i32> = changes.iter().filter_map(|(_, o)| o.partition).collect();
        if let Some(txn) = &mut self.txn {
            txn.span.merge(&span);
            txn.records += total;
            txn.touched.extend(changed.iter().copied());
        }
        self.open_checkpoints(span.parts.keys().chain(&changed).copied().collect())
            .await?;
        let position = |cause: Cause| match cause {
            Cause::Input(i) => todo.get(i).map(|m| (m.partition(), m.offset())),
            Cause::Timer(_) => None,
        };
        // Outputs already visible from a transaction that did not seal are not sent twice.
        let mut visible = vec![false; outputs.len()];
        if self.recovered.values().any(|r| !r.partial.is_empty()) {
            let mut by_position: HashMap<(i32, i64), Vec<usize>> = HashMap::new();
            for (i, (cause, _)) in outputs.iter().enumerate() {
                if let Some(at) = position(*cause) {
                    by_position.entry(at).or_default().push(i);
                }
            }
            for ((p, o), indices) in by_position {
                let landed = self
                    .recovered
                    .get_mut(&p)
                    .and_then(|r| r.partial.remove(&o));
                if let Some(landed) = landed {
                    mark_visible(&landed, &outputs, &indices, &mut visible);
                }
            }
        }
        let mut suppressed = 0;
        for ((cause, output), visible) in outputs.into_iter().zip(visible) {
            if visible {
                suppressed += 1;
                continue;
            }
            let at = position(cause).map(|(p, o)| raw_position(p, o));
            self.send(output, at.as_deref(), None).await?;
        }
        for (cause, change) in changes {
            let at = position(cause).map(|(p, o)| raw_position(p, o));
            self.send(change, at.as_deref(), None).await?;
        }
        self.metrics.phase(Phase::Produce, producing.elapsed());
        if suppressed > 0 {
            self.metrics.recovery_suppressed(suppressed);
            tracing::info!(
                stage = self.spec.stage,
                outputs = suppressed,
                "recovery: outputs already visible from an unsealed transaction are not sent again"
            );
        }
        Ok(())
    }

    /// Fires the timers that came due, in the open transaction.
    async fn fire_timers(&mut self) -> Result<(), TxnError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let due = state.due(now_ms());
        if due.is_empty() {
            return Ok(());
        }
        let mut ctx = Context::new(&[], Some(state));
        // Removed before the processor runs, so it may set the same key again.
        for t in &due {
            ctx.cancel_timer(Cause::Timer(t.partition), &t.key);
        }
        if let Err(e) = self.processor.on_timers(&due, &mut ctx).await {
            drop(ctx);
            if let ProcessError::Fatal(why) = e {
                return Err(TxnError::Processor(why));
            }
            tracing::warn!(stage = self.spec.stage, error = %e, "timers failed; trying again");
            tokio::time::sleep(RETRY_PAUSE).await;
            return Ok(());
        }
        let Context {
            outputs, overlay, ..
        } = ctx;
        let fired: BTreeSet<i32> = due.iter().map(|t| t.partition).collect();
        // Begun before the timers are taken out of the state, so a transaction that cannot
        // start leaves them due.
        self.write_own_work(outputs, overlay, Some(fired)).await?;
        self.metrics.timers_fired(due.len());
        Ok(())
    }

    /// Lets the processor sweep the state it holds ([`Processor::sweep`]), in the open
    /// transaction.
    async fn sweep(&mut self) -> Result<(), TxnError> {
        let Some(state) = &self.state else {
            return Ok(());
        };
        let partitions = state.partitions();
        if partitions.is_empty() {
            return Ok(());
        }
        let mut ctx = Context::new(&[], Some(state));
        match self.processor.sweep(&partitions, &mut ctx).await {
            Ok(false) => return Ok(()),
            Ok(true) => {}
            Err(ProcessError::Fatal(why)) => return Err(TxnError::Processor(why)),
            Err(e) => {
                drop(ctx);
                tracing::warn!(stage = self.spec.stage, error = %e, "sweep failed; trying again");
                tokio::time::sleep(RETRY_PAUSE).await;
                return Ok(());
            }
        }
        let Context {
            outputs, overlay, ..
        } = ctx;
        self.write_own_work(outputs, overlay, None).await
    }

    /// Writes what timers (of the `fired` partitions) or a sweep produced (no input record
    /// caused it) in the open transaction: the state changes are applied only once it began.
    async fn write_own_work(
        &mut self,
        outputs: Vec<(Cause, Output)>,
        overlay: crate::state::Overlay,
        fired: Option<BTreeSet<i32>>,
    ) -> Result<(), TxnError> {
        self.finish_commit().await?;
        self.begin()?;
        let changes = match &mut self.state {
            // Not applied: timers stay due, a sweep is tried again.
            Some(state) => state.apply(overlay).map_err(TxnError::State)?,
            None => Vec::new(),
        };
        let mut written: BTreeSet<i32> = changes.iter().filter_map(|(_, o)| o.partition).collect();
        if let Some(txn) = &mut self.txn {
            txn.touched.extend(written.iter().copied());
            if let Some(fired) = &fired {
                txn.fired.extend(fired.iter().copied());
            }
        }
        written.extend(fired.iter().flatten().copied());
        self.open_checkpoints(written.into_iter().collect()).await?;
        // Outputs of timers name their partition: the next instance leaves the visible ones
        // out if this transaction does not seal and the timers fire again.
        let timer = |cause: Cause| match (&fired, cause) {
            (Some(_), Cause::Timer(p)) => Some(p),
            _ => None,
        };
        let mut visible = vec![false; outputs.len()];
        if !self.timers_landed.is_empty() {
            let mut by_partition: HashMap<i32, Vec<usize>> = HashMap::new();
            for (i, (cause, _)) in outputs.iter().enumerate() {
                if let Some(p) = timer(*cause) {
                    by_partition.entry(p).or_default().push(i);
                }
            }
            for (p, indices) in by_partition {
                if let Some(landed) = self.timers_landed.remove(&p) {
                    mark_visible(&landed, &outputs, &indices, &mut visible);
                }
            }
        }
        let mut suppressed = 0;
        for ((cause, output), visible) in outputs.into_iter().zip(visible) {
            if visible {
                suppressed += 1;
                continue;
            }
            self.send(output, None, timer(cause)).await?;
        }
        for (_, change) in changes {
            self.send(change, None, None).await?;
        }
        // The timers left out of the restore fired again, all at once (they were due): what is
        // left would only match later timers' outputs.
        for p in fired.iter().flatten() {
            self.timers_landed.remove(p);
        }
        if suppressed > 0 {
            self.metrics.recovery_suppressed(suppressed);
            tracing::info!(
                stage = self.spec.stage,
                outputs = suppressed,
                "recovery: timer outputs already visible from an unsealed transaction are not sent again"
            );
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<(), TxnError> {
        if self.txn.is_none() {
            let began = Instant::now();
            self.producer.begin_transaction()?;
            self.metrics.duration("begin", began.elapsed());
            self.next_txn += 1;
            self.txn = Some(OpenTxn {
                id: format!("{}.{:x}", self.session, self.next_txn).into(),
                started: Instant::now(),
                at: self.positions.clone(),
                span: Span::default(),
                touched: HashSet::new(),
                fired: HashSet::new(),
                records: 0,
                deliveries: Vec::new(),
            });
        }
        Ok(())
    }

    /// Produces one output in the open transaction, with its lineage, its transaction and, for
    /// a timer's output, the timer's partition.
    async fn produce(
        &self,
        output: Output,
        position: Option<&str>,
        timer: Option<i32>,
    ) -> Result<DeliveryFuture, TxnError> {
        let mut headers = output.headers.insert(Header {
            key: self.spec.lineage.group,
            value: Some(self.spec.group_id.as_str()),
        });
        if let Some(txn) = &self.txn {
            headers = headers.insert(Header {
                key: TXN_HEADER,
                value: Some(&*txn.id),
            });
        }
        if let Some(position) = position {
            headers = headers.insert(Header {
                key: self.spec.lineage.position,
                value: Some(position),
            });
        }
        let timer = timer.map(|p| p.to_string());
        if let Some(timer) = &timer {
            headers = headers.insert(Header {
                key: TIMER_HEADER,
                value: Some(timer.as_str()),
            });
        }
        let mut record = FutureRecord::to(&output.topic).headers(headers);
        if let Some(key) = &output.key {
            record = record.key(key.as_slice());
        }
        if let Some(value) = &output.value {
            record = record.payload(value.as_slice());
        }
        if let Some(p) = output.partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(d) => return Ok(d),
                // The producer's queue is full: let it drain.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Produces one output in the open transaction; its delivery is awaited before the commit.
    async fn send(
        &mut self,
        output: Output,
        position: Option<&str>,
        timer: Option<i32>,
    ) -> Result<(), TxnError> {
        let topic = output.topic.clone();
        let delivery = self.produce(output, position, timer).await?;
        if let Some(txn) = &mut self.txn {
            txn.deliveries.push((topic, delivery));
        }
        Ok(())
    }

    /// A checkpoint's value for `partition` of a transaction that began at `at`: `at`, or the
    /// partition's loose floor if lower, so the next scan still reaches its loose records.
    fn checkpoint_value(&self, partition: i32, at: &Positions) -> Vec<u8> {
        match self.loose.get(&partition) {
            Some(loose) => {
                let mut from = at.clone();
                from.lower(&loose.floor);
                from.to_json()
            }
            None => at.to_json(),
        }
    }

    /// Opens the `partitions` that have no checkpoint yet: an opening checkpoint each, in the
    /// open transaction, acknowledged before the transaction writes anything else for them, so
    /// that after a crash a scan knows where their records start even if it never sealed.
    /// (Writing one in every transaction, to register the checkpoint partitions with it before
    /// the seal, made commits slower on tansu, not faster.)
    async fn open_checkpoints(&mut self, partitions: BTreeSet<i32>) -> Result<(), TxnError> {
        let due: Vec<i32> = partitions
            .into_iter()
            .filter(|p| self.unopened.contains(p))
            .collect();
        let Some(txn) = &self.txn else {
            return Ok(());
        };
        if due.is_empty() {
            return Ok(());
        }
        let at = txn.at.clone();
        let at_json = at.to_json();
        let mut deliveries = Vec::with_capacity(due.len());
        for p in &due {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: CHECKPOINT_HEADER,
                    value: Some(OPEN),
                })
                .insert(Header {
                    key: AT_HEADER,
                    value: Some(at_json.as_slice()),
                });
            let output = Output {
                topic: self.spec.checkpoints.clone(),
                partition: Some(*p),
                key: Some(self.spec.group_id.clone().into_bytes()),
                value: Some(self.checkpoint_value(*p, &at)),
                headers,
            };
            deliveries.push(self.produce(output, None, None).await?);
        }
        for d in deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(e.into()),
                Err(_) => return Err(KafkaError::Canceled.into()),
            }
        }
        for p in due {
            self.unopened.remove(&p);
        }
        Ok(())
    }

    /// Sends the input offsets and commits the open transaction, waiting for the outcome.
    async fn commit(&mut self) -> Result<(), TxnError> {
        self.start_commit()?;
        self.finish_commit().await
    }

    /// Starts committing the open transaction (its seals, the input offsets, then the commit
    /// itself) off the async threads; [`Self::finish_commit`] learns the outcome. The loop reads
    /// and processes the next batch meanwhile, so the commit's round trips overlap the next
    /// batch's work.
    fn start_commit(&mut self) -> Result<(), TxnError> {
        let Some(mut txn) = self.txn.take() else {
            return Ok(());
        };
        let offsets = if txn.span.is_empty() {
            None
        } else {
            let prepared = txn.span.commit_list(&self.spec.input).and_then(|o| {
                let metadata = self
                    .consumer
                    .group_metadata()
                    .ok_or(KafkaError::ConsumerCommit(RDKafkaErrorCode::State))?;
                Ok((o, metadata))
            });
            match prepared {
                Ok(p) => Some(p),
                Err(e) => {
                    self.txn = Some(txn);
                    return Err(e.into());
                }
            }
        };
        let at = txn.at.to_json();
        let seals = Seal {
            topic: self.spec.checkpoints.clone(),
            key: self.spec.group_id.clone().into_bytes(),
            headers: OwnedHeaders::new()
                .insert(Header {
                    key: self.spec.lineage.group,
                    value: Some(self.spec.group_id.as_str()),
                })
                .insert(Header {
                    key: TXN_HEADER,
                    value: Some(&*txn.id),
                })
                .insert(Header {
                    key: CHECKPOINT_HEADER,
                    value: Some(SEAL),
                })
                .insert(Header {
                    key: AT_HEADER,
                    value: Some(at.as_slice()),
                }),
            values: txn
                .partitions()
                .into_iter()
                .filter(|p| (*p as usize) < self.checkpoint_partitions)
                .map(|p| (p, self.checkpoint_value(p, &txn.at)))
                .collect(),
        };
        let producer = self.producer.clone();
        let deliveries = std::mem::take(&mut txn.deliveries);
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut landed = Vec::with_capacity(deliveries.len() + seals.values.len());
            let mut parts = CommitParts::default();
            let outcome = commit_task(
                producer,
                deliveries,
                seals,
                offsets,
                &mut landed,
                &mut parts,
            )
            .await;
            Committed {
                outcome,
                took: started.elapsed(),
                parts,
                landed,
            }
        });
        self.committing = Some(Committing {
            txn,
            task: Some(task),
            done: None,
        });
        Ok(())
    }

    /// Waits for the transaction being committed. If it failed, it is the open transaction
    /// again, for [`Self::fail`] to abort.
    async fn finish_commit(&mut self) -> Result<(), TxnError> {
        let Some(Committing { txn, task, done }) = self.committing.take() else {
            return Ok(());
        };
        let Committed {
            outcome,
            took,
            parts,
            landed,
        } = match (done, task) {
            (Some(c), _) => c,
            (None, Some(task)) => task.await.unwrap_or_else(|_| Committed::canceled()),
            (None, None) => Committed::canceled(),
        };
        self.metrics.duration("commit", took);
        if outcome.is_ok() {
            self.metrics.duration("commit_deliveries", parts.deliveries);
            self.metrics.duration("commit_seals", parts.seals);
            self.metrics.duration("commit_offsets", parts.offsets);
            self.metrics.duration("commit_end", parts.end);
        }
        // Where records landed bounds where later ones land, whether this one commits or not.
        let mut written: HashMap<String, u64> = HashMap::new();
        for (topic, partition, offset) in landed {
            if topic != self.spec.checkpoints {
                self.positions.advance(&topic, partition, offset + 1);
            }
            *written.entry(topic).or_default() += 1;
        }
        if let Err(e) = outcome {
            self.txn = Some(txn);
            return Err(e);
        }
        for (topic, n) in written {
            self.metrics.records_out(&topic, n);
        }
        // Loose records are superseded once their inputs are committed again (their timers:
        // once a transaction writing for the partition committed, since due timers fire in the
        // first transaction after a restore).
        for p in txn.partitions() {
            let passed = self.loose.get(&p).is_some_and(|l| {
                l.until.is_none_or(|until| {
                    txn.span
                        .parts
                        .get(&p)
                        .is_some_and(|(_, next)| *next >= until)
                })
            });
            if passed {
                self.loose.remove(&p);
            }
        }
        self.metrics.committed(txn.records, txn.started.elapsed());
        tracing::debug!(
            stage = self.spec.stage,
            records = txn.records,
            "transaction committed"
        );
        Ok(())
    }

    /// A transaction failed: a fatal error stops the stage; otherwise it is aborted, its input
    /// read again, what recovery learnt about it forgotten and its state restored.
    async fn fail(&mut self, e: TxnError) -> Result<(), StageError> {
        if self.committing.is_some() && self.txn.is_none() {
            // A failure before the next transaction began: learn the previous one's outcome
            // first (if it failed too, it is the one aborted below).
            match self.finish_commit().await {
                Err(TxnError::Fatal(f)) => return Err(StageError::Fatal(f)),
                Err(TxnError::Stuck(after)) => return Err(StageError::Stuck(after)),
                _ => {}
            }
        }
        let error = match e {
            TxnError::Fatal(e) => {
                if let Some(txn) = self.txn.take() {
                    let _ = self.abort_open(txn.records).await;
                }
                return Err(StageError::Fatal(e));
            }
            TxnError::Processor(why) => {
                if let Some(txn) = self.txn.take() {
                    let _ = self.abort_open(txn.records).await;
                }
                return Err(StageError::Processor(why));
            }
            TxnError::State(e) if e.is_fatal() => {
                if let Some(txn) = self.txn.take() {
                    let _ = self.abort_open(txn.records).await;
                }
                return Err(StageError::State(e));
            }
            TxnError::Stuck(after) => return Err(StageError::Stuck(after)),
            TxnError::State(e) => e.to_string(),
            TxnError::Abortable(e) => e.to_string(),
        };
        let Some(txn) = self.txn.take() else {
            tracing::warn!(stage = self.spec.stage, error = %error, "transaction could not start");
            tokio::time::sleep(RETRY_PAUSE).await;
            return Ok(());
        };
        tracing::warn!(stage = self.spec.stage, error = %error, records = txn.records, "transaction aborted; reading its records again");
        self.abort_open(txn.records).await?;
        self.consumer
            .rewind(&self.spec.input, txn.span.firsts())
            .await;
        // What the aborted transaction wrote may still be visible: keep it within the scans
        // and check again.
        self.loosen(&txn);
        for p in txn.partitions() {
            self.recovered.remove(&p);
        }
        if let Some(state) = &mut self.state {
            for p in txn.span.parts.keys().chain(txn.touched.iter()) {
                state.drop_partition(*p);
            }
        }
        self.restore = true;
        Ok(())
    }

    async fn abort_open(&mut self, records: usize) -> Result<(), StageError> {
        let aborted = blocking(&self.producer, |p| p.abort_transaction(TXN_TIMEOUT)).await?;
        self.metrics.aborted();
        match aborted {
            Err(KafkaError::Transaction(t)) if t.is_fatal() => {
                Err(StageError::Fatal(KafkaError::Transaction(t)))
            }
            Err(e) => {
                tracing::warn!(stage = self.spec.stage, error = %e, records, "abort failed");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// The batch is read again after a pause; the open transaction goes on.
    async fn retry_later(&self, span: &Span) {
        self.consumer.rewind(&self.spec.input, span.firsts()).await;
        tokio::time::sleep(RETRY_PAUSE).await;
    }
}

/// Marks the outputs (those at `indices`: one input position's, or one partition's timers')
/// that `landed` says are already visible.
fn mark_visible(
    landed: &Landed,
    outputs: &[(Cause, Output)],
    indices: &[usize],
    visible: &mut [bool],
) {
    let candidates: Vec<Candidate> = indices
        .iter()
        .map(|i| {
            let o = &outputs[*i].1;
            (o.topic.as_str(), o.key.as_deref(), o.value.as_deref())
        })
        .collect();
    for (i, hit) in indices.iter().zip(landed.matches(&candidates)) {
        if hit {
            visible[*i] = true;
        }
    }
}

/// A transaction's seals: one checkpoint per partition it wrote for.
struct Seal {
    topic: String,
    key: Vec<u8>,
    headers: OwnedHeaders,
    /// Per checkpoint partition, the value.
    values: Vec<(i32, Vec<u8>)>,
}

/// The input offsets of a transaction, with the group they are committed for.
type Offsets = (
    rdkafka::TopicPartitionList,
    rdkafka::consumer::ConsumerGroupMetadata,
);

/// Commits a transaction: waits for every record to be acknowledged, then writes its seals and
/// waits for them (a visible seal means every other record of the transaction is on the
/// broker), then sends the input offsets and commits. `landed` gets where each record landed.
/// (Sending the offsets while the seals are written, which only the commit makes visible, made
/// commits slower on tansu, not faster.)
/// Where a commit's time goes: waiting for the transaction's records to be acknowledged, writing
/// its seals, adding the input offsets to it, and ending it (the broker writes the markers that
/// make it visible to read_committed consumers).
#[derive(Debug, Default, Clone, Copy)]
struct CommitParts {
    deliveries: Duration,
    seals: Duration,
    offsets: Duration,
    end: Duration,
}

async fn commit_task(
    producer: FutureProducer,
    deliveries: Vec<(String, DeliveryFuture)>,
    seal: Seal,
    offsets: Option<Offsets>,
    landed: &mut Vec<(String, i32, i64)>,
    parts: &mut CommitParts,
) -> Result<(), TxnError> {
    write_seals(&producer, deliveries, seal, landed, parts).await?;
    let committed = bounded(STUCK_AFTER, move || {
        let t = Instant::now();
        if let Some((offsets, metadata)) = offsets {
            producer.send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)?;
        }
        let offsets_took = t.elapsed();
        producer.commit_transaction(TXN_TIMEOUT)?;
        Ok::<_, KafkaError>((offsets_took, t.elapsed() - offsets_took))
    })
    .await;
    match committed {
        Ok(result) => {
            (parts.offsets, parts.end) = result?;
            Ok(())
        }
        Err(StageError::Stuck(after)) => Err(TxnError::Stuck(after)),
        Err(_) => Err(KafkaError::Canceled.into()),
    }
}

/// Waits for every record of a transaction to be acknowledged, then writes its seals and waits
/// for them too.
async fn write_seals(
    producer: &FutureProducer,
    deliveries: Vec<(String, DeliveryFuture)>,
    seal: Seal,
    landed: &mut Vec<(String, i32, i64)>,
    parts: &mut CommitParts,
) -> Result<(), KafkaError> {
    let t = Instant::now();
    // Every record acknowledged first: rdkafka's commit_transaction flushes, and its flush
    // waits on the producer queue (up to 100 ms a round) that the FutureProducer's own polling
    // thread serves, which cost ~100 ms per transaction when anything was still in flight.
    // The seals need it anyway.
    let acknowledged =
        |d: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>| match d {
            Ok(Ok(delivery)) => Ok(delivery),
            Ok(Err((e, _))) => Err(e),
            Err(_) => Err(KafkaError::Canceled),
        };
    for (topic, d) in deliveries {
        let delivery = acknowledged(d.await)?;
        landed.push((topic, delivery.partition, delivery.offset));
    }
    parts.deliveries = t.elapsed();
    let t = Instant::now();
    let mut sealing = Vec::with_capacity(seal.values.len());
    for (partition, value) in &seal.values {
        let mut record = FutureRecord::to(&seal.topic)
            .partition(*partition)
            .key(seal.key.as_slice())
            .payload(value.as_slice())
            .headers(seal.headers.clone());
        let delivery = loop {
            match producer.send_result(record) {
                Ok(d) => break d,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(e),
            }
        };
        sealing.push(delivery);
    }
    for d in sealing {
        let delivery = acknowledged(d.await)?;
        landed.push((seal.topic.clone(), delivery.partition, delivery.offset));
    }
    parts.seals = t.elapsed();
    Ok(())
}

/// A random prefix for this process's transaction ids: unique across instances and restarts
/// without a coordinator (a 64-bit hash of the instance, the process, the time and the OS's
/// random hash keys).
fn session_id(instance: &str) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(instance.as_bytes());
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// Creates the checkpoint topic (and changelog) with one partition per input partition; says
/// how many partitions the checkpoint topic has.
async fn prepare_topics(
    kafka: &KafkaSettings,
    spec: &StageSpec,
    recovery: &Arc<Recovery>,
) -> Result<usize, StageError> {
    let input_partitions = {
        let (r, input) = (recovery.clone(), spec.input.clone());
        run_blocking(move || r.partitions(&input)).await??.len()
    };
    let mut specs = vec![TopicSpec {
        name: spec.checkpoints.clone(),
        partitions: input_partitions.max(1) as i32,
        // The newest checkpoint per input partition is all recovery reads; compaction keeps it
        // however long a partition is idle.
        compacted: true,
    }];
    if let Some(changelog) = &spec.changelog {
        specs.push(TopicSpec {
            name: changelog.clone(),
            partitions: input_partitions.max(1) as i32,
            compacted: true,
        });
    }
    ensure_topics(kafka, &specs).await?;
    if let Some(changelog) = &spec.changelog {
        // A topic just created may not be in the broker's metadata yet (seen on tansu: 0
        // partitions right after creation); only a count that is there and wrong is an error.
        let deadline = Instant::now() + Duration::from_secs(10);
        let have = loop {
            let (r, c) = (recovery.clone(), changelog.clone());
            let have = run_blocking(move || r.partitions(&c)).await??.len();
            if have > 0 || Instant::now() >= deadline {
                break have;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if have != input_partitions {
            return Err(StageError::ChangelogPartitions {
                changelog: changelog.clone(),
                have,
                want: input_partitions,
            });
        }
    }
    let r = recovery.clone();
    let have = run_blocking(move || r.checkpoint_partitions()).await??;
    if have < input_partitions {
        tracing::warn!(
            stage = spec.stage,
            input_partitions,
            checkpoint_partitions = have,
            "the checkpoint topic has fewer partitions than the input: the others rely on Kafka transactions alone (on a broker that shows aborted records, a batch in flight at a crash may then appear twice); add partitions to it"
        );
    }
    Ok(have)
}

/// Runs a blocking librdkafka call off the async threads.
async fn run_blocking<T: Send + 'static>(
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StageError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|_| StageError::Join)
}

/// Runs a blocking transactional call of the producer off the async threads, taken for stuck
/// after [`STUCK_AFTER`].
async fn blocking<T: Send + 'static>(
    producer: &FutureProducer,
    call: impl FnOnce(&FutureProducer) -> T + Send + 'static,
) -> Result<T, StageError> {
    let producer = producer.clone();
    bounded(STUCK_AFTER, move || call(&producer)).await
}

/// [`run_blocking`], given up after `after` ([`StageError::Stuck`]). The call's thread is left
/// to finish or not: nothing waits for it any more.
async fn bounded<T: Send + 'static>(
    after: Duration,
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StageError> {
    tokio::time::timeout(after, run_blocking(call))
        .await
        .unwrap_or(Err(StageError::Stuck(after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_blocking_call_past_its_bound_is_stuck_and_one_within_it_answers() {
        let started = Instant::now();
        let stuck = bounded(Duration::from_millis(100), || {
            std::thread::sleep(Duration::from_secs(2));
        })
        .await;
        assert!(
            matches!(stuck, Err(StageError::Stuck(after)) if after == Duration::from_millis(100)),
            "{stuck:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "gave up after {:?}, not at its bound",
            started.elapsed()
        );
        let answered = bounded(Duration::from_secs(5), || 7).await;
        assert!(matches!(answered, Ok(7)), "{answered:?}");
    }
}
