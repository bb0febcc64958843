//! Every stage's metrics, named `cdp_<stage>_…` so one Prometheus page shows all stages side by
//! side: records in and out (per output topic), quarantined records by reason, transactions
//! committed and aborted, recovery skips and left-out outputs, batch sizes, transaction
//! durations, rebalances, timers fired, consumer lag per partition, and where the loop's time
//! goes ([`Phase`]).

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Histogram};

struct Handles {
    stage: &'static str,
    records_in: Counter,
    committed: Counter,
    aborted: Counter,
    recovery_skips: Counter,
    recovery_suppressed: Counter,
    rebalances: Counter,
    timers_fired: Counter,
    batch_records: Histogram,
    transaction_records: Histogram,
    transaction_seconds: Histogram,
    phases: [Histogram; Phase::ALL.len()],
}

/// What a turn of a stage's loop spends its time on, in `cdp_<stage>_loop_seconds{phase}`
/// (`_sum` is the total): a loop that keeps up spends it in `input`; one that falls behind
/// shows whether it is short of CPU (`process`, `state`, `produce`) or waits on the broker
/// (`commit_wait`).
#[derive(Debug, Clone, Copy)]
pub enum Phase {
    /// Waiting for the first record of a batch, a timer or a commit's outcome.
    Input,
    /// Reading the rest of a batch (up to `max_batch`, at most `max_wait_ms`).
    Fill,
    /// The stage's processor on a batch.
    Process,
    /// Waiting for the previous transaction's commit before applying a batch.
    CommitWait,
    /// Writing a batch's state changes to the store.
    State,
    /// Handing a batch's outputs and changelog records to the producer.
    Produce,
    /// Firing due timers, in full.
    Timers,
    /// The processor's sweep, in full.
    Sweep,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Input,
        Phase::Fill,
        Phase::Process,
        Phase::CommitWait,
        Phase::State,
        Phase::Produce,
        Phase::Timers,
        Phase::Sweep,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Phase::Input => "input",
            Phase::Fill => "fill",
            Phase::Process => "process",
            Phase::CommitWait => "commit_wait",
            Phase::State => "state",
            Phase::Produce => "produce",
            Phase::Timers => "timers",
            Phase::Sweep => "sweep",
        }
    }
}

/// Cheap to clone; the handles are registered once.
#[derive(Clone)]
pub struct StageMetrics(Arc<Handles>);

impl StageMetrics {
    pub fn new(stage: &'static str) -> Self {
        // Installing the recorder first makes the handles below real, not no-ops.
        cdp_contract::prometheus::handle();
        let name = |what: &str| format!("cdp_{stage}_{what}");
        Self(Arc::new(Handles {
            stage,
            records_in: metrics::counter!(name("records_in_total")),
            committed: metrics::counter!(name("transactions_total"), "result" => "committed"),
            aborted: metrics::counter!(name("transactions_total"), "result" => "aborted"),
            recovery_skips: metrics::counter!(name("recovery_skipped_total")),
            recovery_suppressed: metrics::counter!(name("recovery_suppressed_total")),
            rebalances: metrics::counter!(name("rebalances_total")),
            timers_fired: metrics::counter!(name("timers_fired_total")),
            batch_records: metrics::histogram!(name("batch_records")),
            transaction_records: metrics::histogram!(name("transaction_records")),
            transaction_seconds: metrics::histogram!(name("transaction_duration_seconds")),
            phases: Phase::ALL
                .map(|p| metrics::histogram!(name("loop_seconds"), "phase" => p.label())),
        }))
    }

    /// For stages that commit without transactions (the lake): the transaction, recovery and
    /// timer series are not exported, so the page shows no counters that can never move.
    pub fn without_transactions(stage: &'static str) -> Self {
        cdp_contract::prometheus::handle();
        let name = |what: &str| format!("cdp_{stage}_{what}");
        Self(Arc::new(Handles {
            stage,
            records_in: metrics::counter!(name("records_in_total")),
            committed: Counter::noop(),
            aborted: Counter::noop(),
            recovery_skips: Counter::noop(),
            recovery_suppressed: Counter::noop(),
            rebalances: metrics::counter!(name("rebalances_total")),
            timers_fired: Counter::noop(),
            batch_records: metrics::histogram!(name("batch_records")),
            transaction_records: Histogram::noop(),
            transaction_seconds: Histogram::noop(),
            phases: Phase::ALL.map(|_| Histogram::noop()),
        }))
    }

    pub fn stage(&self) -> &'static str {
        self.0.stage
    }

    fn name(&self, what: &str) -> String {
        format!("cdp_{}_{what}", self.0.stage)
    }

    /// Time the loop spent in `phase` on one turn.
    pub fn phase(&self, phase: Phase, took: Duration) {
        self.0.phases[phase as usize].record(took.as_secs_f64());
    }

    pub fn batch(&self, records: usize) {
        self.0.records_in.increment(records as u64);
        self.0.batch_records.record(records as f64);
    }

    pub fn records_out(&self, topic: &str, n: u64) {
        metrics::counter!(self.name("records_out_total"), "topic" => topic.to_string())
            .increment(n);
    }

    /// A record the stage refused, by the reason's kind (a short, bounded label).
    pub fn quarantined(&self, reason: &'static str) {
        metrics::counter!(self.name("quarantined_total"), "reason" => reason).increment(1);
    }

    pub fn committed(&self, records: usize, took: Duration) {
        self.0.committed.increment(1);
        self.0.transaction_records.record(records as f64);
        self.0.transaction_seconds.record(took.as_secs_f64());
    }

    pub fn aborted(&self) {
        self.0.aborted.increment(1);
    }

    pub fn recovery_skipped(&self, n: usize) {
        self.0.recovery_skips.increment(n as u64);
    }

    /// Outputs not sent again because a partially visible transaction already wrote them.
    pub fn recovery_suppressed(&self, n: usize) {
        self.0.recovery_suppressed.increment(n as u64);
    }

    pub fn rebalance(&self) {
        self.0.rebalances.increment(1);
    }

    pub fn timers_fired(&self, n: usize) {
        self.0.timers_fired.increment(n as u64);
    }

    pub fn lag(&self, topic: &str, partition: i32, lag: i64) {
        metrics::gauge!(self.name("consumer_lag"), "topic" => topic.to_string(), "partition" => partition.to_string())
            .set(lag as f64);
    }

    /// A duration by what it measures (`cdp_<stage>_<what>_duration_seconds`): the runtime's
    /// `commit` (send offsets + commit, waited for) and `begin`, the lake's `flush`.
    pub fn duration(&self, what: &str, took: Duration) {
        metrics::histogram!(self.name(&format!("{what}_duration_seconds")))
            .record(took.as_secs_f64());
    }
}
