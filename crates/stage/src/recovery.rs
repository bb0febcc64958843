//! Recovery: which input records already have their output, so that a restarted or rewound
//! instance does not write them twice. Part of the runtime, so every transactional stage has it.
//!
//! Kafka transactions already make aborted output invisible to read_committed readers; this
//! module is the second half of exactly-once for brokers that do not (the tansu build the tests
//! run on shows aborted records: see crates/test-support/tests/broker_transactions.rs). After a
//! SIGKILL such a broker shows only the part of the open transaction that reached it, so "an
//! output of this input is visible" does not mean "all of its outputs and state changes are".
//!
//! **Seals.** Every record the runtime writes names its transaction ([`TXN_HEADER`]). A
//! transaction is *sealed* by a checkpoint record written after every other record of it was
//! acknowledged by the broker, just before the commit, on the checkpoint partition of every
//! input partition it read or whose state it changed. A visible seal therefore means that all of
//! the transaction's records are on the broker. A checkpoint (compacted topic, key = consumer
//! group, partition = input partition) holds the positions of the output and changelog
//! partitions that bound what was written since ([`Positions`], its value, the same JSON as
//! before seals existed), the positions when its transaction began ([`AT_HEADER`]) and whether it
//! is a seal or an *opening* ([`CHECKPOINT_HEADER`]): the first transaction of a partition that
//! has no checkpoint yet writes one, acknowledged before anything else of it, so that a scan
//! always has a place to start.
//!
//! **Reading them back** ([`Recovery::seals`]): a partition's checkpoints are read from the
//! newest back until one whose transaction began at or before the newest one's positions; the
//! seals met on the way are every transaction that can have records after those positions.
//!
//! **Recovery** ([`Recovery::emitted`]): before an instance processes an input partition it has
//! just been given (or has rewound after an abort), it reads the outputs written since the
//! partition's newest checkpoint and sorts the input positions (the stage's [`Lineage`]
//! position header, e.g. `cdp-raw-position`) at or after the committed offset: a position with a
//! record of a sealed transaction is *done* (skipped, its offset committed with the next
//! transaction); one with records of unsealed transactions only is processed again, and the
//! runtime does not send again the outputs already visible (by topic and key, and value when
//! several match: [`Landed`]). Outputs of timers carry the input partition instead ([`TIMER_HEADER`]); the
//! visible ones of unsealed transactions are left out when that partition's timers fire again.
//! State is restored without the changelog records of unsealed transactions written after the
//! newest checkpoint ([`RestoreRule`]), so an input processed again meets the state it met the
//! first time. On a broker that hides aborted records the scan finds nothing unsealed and
//! everything uncommitted is processed again.
//!
//! Records without a transaction header were written before seals existed: they count as
//! before (any visible output means done; every changelog record is applied).
//! Offset-commit metadata would be the natural place for checkpoints, but tansu drops it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use cdp_contract::admin::partitions_of;
use cdp_contract::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// The transaction a record was written in: on every record the runtime writes.
pub const TXN_HEADER: &str = "cdp-txn";
/// On checkpoint records: [`SEAL`] or [`OPEN`]; absent on checkpoints written before seals.
pub const CHECKPOINT_HEADER: &str = "cdp-checkpoint";
/// On checkpoint records: the positions when the transaction began (the value's JSON format).
pub const AT_HEADER: &str = "cdp-checkpoint-at";
/// On outputs of timers: the input partition whose timers fired.
pub const TIMER_HEADER: &str = "cdp-timer";
/// A checkpoint written after every other record of its transaction was acknowledged.
pub const SEAL: &str = "seal";
/// A partition's first checkpoint, acknowledged before anything else of its transaction.
pub const OPEN: &str = "open";

/// Checkpoint records read per step back from the end of a checkpoint partition (transaction
/// markers and other groups' checkpoints take offsets too).
const CHECKPOINT_CHUNK: i64 = 200;
/// How far back the checkpoints are read at most. A walk back that goes this far has not met
/// the transaction its newest checkpoint starts from (compacted away?): recovery and restore then
/// fall back to trusting every visible record, as before seals.
const CHECKPOINT_WALK: i64 = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("cannot create the recovery reader: {0}")]
    Client(KafkaError),
    #[error("cannot read {topic}[{partition}] for recovery: {source}")]
    Read {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
    #[error(
        "recovery read nothing for {0:?} before the end of the outputs (an open transaction?)"
    )]
    Timeout(Duration),
}

/// Per output topic and partition: the next offset, i.e. a lower bound for the offset of any
/// record written from now on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positions(pub BTreeMap<String, BTreeMap<i32, i64>>);

impl Positions {
    /// Raises the position to `next` (called for every output written).
    pub fn advance(&mut self, topic: &str, partition: i32, next: i64) {
        self.merge(topic, partition, next, i64::max);
    }

    /// Raises every position to `other`'s.
    pub fn advance_all(&mut self, other: &Positions) {
        for (topic, parts) in &other.0 {
            for (partition, next) in parts {
                self.merge(topic, *partition, *next, i64::max);
            }
        }
    }

    /// Lowers every position to `other`'s (a partition only `other` has is taken from it).
    pub fn lower(&mut self, other: &Positions) {
        for (topic, parts) in &other.0 {
            for (partition, next) in parts {
                self.merge(topic, *partition, *next, i64::min);
            }
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.0.get(topic).and_then(|p| p.get(&partition)).copied()
    }

    /// Every position of `bound` is known here and not above it.
    pub fn within(&self, bound: &Positions) -> bool {
        bound.0.iter().all(|(topic, parts)| {
            parts
                .iter()
                .all(|(partition, b)| self.get(topic, *partition).is_some_and(|a| a <= *b))
        })
    }

    fn merge(&mut self, topic: &str, partition: i32, value: i64, pick: fn(i64, i64) -> i64) {
        // Outputs go to a couple of topics: allocate a key only the first time one is seen.
        let parts = match self.0.get_mut(topic) {
            Some(parts) => parts,
            None => self.0.entry(topic.to_string()).or_default(),
        };
        let at = parts.entry(partition).or_insert(value);
        *at = pick(*at, value);
    }

    pub fn to_json(&self) -> Vec<u8> {
        // A map of strings to maps of integers always serializes; an empty checkpoint would
        // only make a later scan start from the beginning of the outputs.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// One checkpoint record, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The value: where a scan for what was written since starts.
    pub from: Positions,
    /// The positions when its transaction began (`from` for checkpoints without the header).
    pub at: Positions,
    /// The transaction it seals, if it is a seal.
    pub seal: Option<String>,
}

impl Checkpoint {
    /// From a record's value and its [`CHECKPOINT_HEADER`], [`TXN_HEADER`] and [`AT_HEADER`];
    /// `None` when the value is not a checkpoint.
    pub(crate) fn parse(
        value: Option<&[u8]>,
        kind: Option<&[u8]>,
        txn: Option<&[u8]>,
        at: Option<&[u8]>,
    ) -> Option<Self> {
        let from: Positions = serde_json::from_slice(value?).ok()?;
        // Checkpoints from before seals were written inside their transaction, with the
        // positions it began with: their value is both.
        let at = at
            .and_then(|a| serde_json::from_slice(a).ok())
            .unwrap_or_else(|| from.clone());
        let seal = match kind {
            Some(k) if k == SEAL.as_bytes() => txn
                .and_then(|t| std::str::from_utf8(t).ok())
                .map(str::to_string),
            _ => None,
        };
        Some(Self { from, at, seal })
    }
}

/// What a partition's checkpoints tell: where to look for what was written since, and which
/// transactions were sealed.
#[derive(Debug, Clone, Default)]
pub struct Seals {
    /// The newest checkpoint's positions; `None`: the partition has no checkpoint.
    pub from: Option<Positions>,
    sealed: HashSet<String>,
    /// The walk back reached a checkpoint whose transaction began within `from`: every
    /// transaction with records after `from` that was sealed is in `sealed`. When not, the
    /// transaction headers cannot be judged and every visible record counts, as before seals.
    complete: bool,
}

impl Seals {
    /// One step of the walk back: the checkpoints of a chunk in offset order, each chunk older
    /// than the one before. True when the walk is done.
    pub(crate) fn walk(&mut self, chunk: &[Checkpoint]) -> bool {
        for c in chunk.iter().rev() {
            let from = self.from.get_or_insert_with(|| c.from.clone());
            if let Some(txn) = &c.seal {
                self.sealed.insert(txn.clone());
            }
            // Every transaction sealed before this one was acknowledged before it began: its
            // records lie before `at`, so before `from`.
            if c.at.within(from) {
                self.complete = true;
                return true;
            }
        }
        false
    }

    /// Whether a record of transaction `txn` belongs to a transaction known to be complete on
    /// the broker (or cannot be judged: no header, or an incomplete walk).
    pub fn is_sealed(&self, txn: Option<&[u8]>) -> bool {
        match txn {
            None => true,
            Some(t) => {
                !self.complete || std::str::from_utf8(t).is_ok_and(|t| self.sealed.contains(t))
            }
        }
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Which records of `changelog[partition]` a restore applies.
    pub fn restore_rule(&self, changelog: &str, partition: i32) -> RestoreRule {
        let bound = if self.complete {
            self.from.as_ref().and_then(|f| f.get(changelog, partition))
        } else {
            None
        };
        RestoreRule {
            bound,
            sealed: self.sealed.clone(),
        }
    }
}

/// Which changelog records a restore applies: all of them before the bound (the newest
/// checkpoint's changelog position); after it, those of sealed transactions and those without a
/// transaction header. An unsealed transaction before the bound was superseded: its inputs
/// were processed again, from the state it had met, and wrote the same keys after it.
#[derive(Debug, Clone, Default)]
pub struct RestoreRule {
    /// `None`: everything is applied.
    bound: Option<i64>,
    sealed: HashSet<String>,
}

impl RestoreRule {
    /// Applies every record (no checkpoint to judge by).
    pub fn all() -> Self {
        Self::default()
    }

    pub fn applies(&self, txn: Option<&[u8]>, offset: i64) -> bool {
        let (Some(bound), Some(txn)) = (self.bound, txn) else {
            return true;
        };
        offset < bound || std::str::from_utf8(txn).is_ok_and(|t| self.sealed.contains(t))
    }
}

/// The outputs of unsealed transactions already visible for one input position (or one
/// partition's timers): `(topic, key, value)` in the order they were read. Records of one key go
/// to one partition, and what landed of a partition is a prefix of what was produced to it, so
/// when the position is processed again, the outputs of the same topic and key that were
/// produced first are the visible ones; [`Landed::matches`] finds them by value as well, for a
/// processor whose outputs depend on the time it runs at (a change that comes due by then can
/// add an output of the same key ahead of the visible one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Landed(Vec<Visible>);

/// One visible output: topic, key, value.
type Visible = (String, Option<Vec<u8>>, Option<Vec<u8>>);

/// An output produced again, to match against the visible ones: topic, key, value.
pub type Candidate<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>);

impl Landed {
    pub fn add(&mut self, topic: &str, key: Option<&[u8]>, value: Option<&[u8]>) {
        self.0.push((
            topic.to_string(),
            key.map(<[u8]>::to_vec),
            value.map(<[u8]>::to_vec),
        ));
    }

    /// Which of `outputs` (`(topic, key, value)`, one input position's or one partition's
    /// timers', in the order produced) are already visible: for each visible record, the first
    /// output of its topic and key not matched yet with the same value or, failing that, with
    /// the most alike one (the longest common prefix and suffix).
    pub fn matches(&self, outputs: &[Candidate<'_>]) -> Vec<bool> {
        let mut hit = vec![false; outputs.len()];
        for (topic, key, value) in &self.0 {
            let mut best: Option<(usize, usize)> = None;
            for (i, (t, k, v)) in outputs.iter().enumerate() {
                if hit[i] || t != topic || *k != key.as_deref() {
                    continue;
                }
                let score = match (value.as_deref(), v) {
                    (Some(a), Some(b)) if a == *b => usize::MAX,
                    (None, None) => usize::MAX,
                    (Some(a), Some(b)) => alike(a, b),
                    _ => 0,
                };
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((i, score));
                }
            }
            if let Some((i, _)) = best {
                hit[i] = true;
            }
        }
        hit
    }

    /// How many visible outputs it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How alike two values are: their common prefix and suffix, in bytes.
fn alike(a: &[u8], b: &[u8]) -> usize {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let rest = a.len().min(b.len()) - prefix;
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(rest)
        .take_while(|(x, y)| x == y)
        .count();
    prefix + suffix
}

/// What a scan found for one input partition.
#[derive(Debug, Default)]
pub struct Found {
    /// Input offsets with a record of a sealed transaction: their output is complete.
    pub done: HashSet<i64>,
    /// Input offsets with records of unsealed transactions only: their visible outputs.
    pub partial: HashMap<i64, Landed>,
    /// Visible outputs of this partition's timers in unsealed transactions.
    pub timers: Landed,
    /// The highest input offset met, done or not.
    pub last: Option<i64>,
}

/// What [`Recovery::emitted`] found.
#[derive(Debug, Default)]
pub struct Emitted {
    pub found: HashMap<i32, Found>,
    /// The end of every output partition it read: a lower bound for anything written later.
    pub ends: Positions,
}

/// Which headers carry an output's lineage: the input position it came from
/// (`partition:offset`) and the consumer group (pipeline) that wrote it. Recovery reads both.
#[derive(Debug, Clone, Copy)]
pub struct Lineage {
    pub position: &'static str,
    pub group: &'static str,
}

impl Lineage {
    /// The headers of stages that do not have names of their own for them.
    pub const INPUT: Lineage = Lineage {
        position: "cdp-input-position",
        group: "cdp-stage-group",
    };
}

/// `partition:offset`, the value of a lineage position header.
pub fn raw_position(partition: i32, offset: i64) -> String {
    format!("{partition}:{offset}")
}

fn parse_raw_position(value: &[u8]) -> Option<(i32, i64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (p, o) = text.split_once(':')?;
    Some((p.parse().ok()?, o.parse().ok()?))
}

fn parse_partition(value: &[u8]) -> Option<i32> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// A header's value.
pub(crate) fn header<'a>(m: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a [u8]> {
    m.headers()
        .and_then(|h| h.iter().find(|h| h.key == name))
        .and_then(|h| h.value)
}

/// The recovery reader's context: ends of partitions are how a read finishes, and librdkafka
/// reports the ones that arrive after it finished as global errors; they are not.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
            tracing::warn!(error = %error, reason, "recovery reader");
        }
    }
}

impl ConsumerContext for QuietEof {}

pub struct Recovery {
    reader: BaseConsumer<QuietEof>,
    lineage: Lineage,
    /// Only this group's checkpoints and outputs count: another pipeline writing the same
    /// topics (a re-run, a benchmark) is not this one's progress.
    group: String,
    checkpoints: String,
    outputs: Vec<String>,
    /// The changelog among the outputs: its records count for done, never as outputs to leave
    /// out.
    changelog: Option<String>,
    timeout: Duration,
}

impl Recovery {
    /// A reader for one stage: its `group`, checkpoint topic and output topics.
    pub fn new(
        kafka: &KafkaSettings,
        client_id: &str,
        group: &str,
        lineage: Lineage,
        checkpoints: String,
        outputs: Vec<String>,
        timeout: Duration,
    ) -> Result<Self, RecoveryError> {
        let mut config = kafka.reader(client_id);
        // The end of a partition for a read_committed reader is its last stable offset. Reads
        // end there, so the broker should answer an empty fetch at once, not after 500 ms.
        config
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10");
        Ok(Self {
            reader: config
                .create_with_context(QuietEof)
                .map_err(RecoveryError::Client)?,
            lineage,
            group: group.to_string(),
            checkpoints,
            outputs,
            changelog: None,
            timeout,
        })
    }

    /// Names the changelog (one of the outputs).
    pub fn with_changelog(mut self, changelog: Option<String>) -> Self {
        self.changelog = changelog;
        self
    }

    fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), RecoveryError> {
        self.reader
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .map_err(|source| RecoveryError::Read {
                topic: topic.to_string(),
                partition,
                source,
            })
    }

    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, RecoveryError> {
        partitions_of(&self.reader, topic).map_err(|source| RecoveryError::Read {
            topic: topic.to_string(),
            partition: -1,
            source,
        })
    }

    /// The current end of every output partition.
    pub fn output_ends(&self) -> Result<Positions, RecoveryError> {
        let mut positions = Positions::default();
        for topic in &self.outputs {
            for partition in self.partitions(topic)? {
                let (_, high) = self.watermarks(topic, partition)?;
                positions.advance(topic, partition, high);
            }
        }
        Ok(positions)
    }

    /// How many partitions the checkpoint topic has (checkpoints are only written for those).
    pub fn checkpoint_partitions(&self) -> Result<usize, RecoveryError> {
        Ok(self.partitions(&self.checkpoints)?.len())
    }

    /// The input partition's checkpoints, read back from the newest ([`Seals`]).
    pub fn seals(&self, partition: i32) -> Result<Seals, RecoveryError> {
        let mut seals = Seals::default();
        if partition as usize >= self.checkpoint_partitions()? {
            return Ok(seals);
        }
        let (low, high) = self.watermarks(&self.checkpoints, partition)?;
        let mut end = high;
        while end > low && high - end < CHECKPOINT_WALK {
            let begin = (end - CHECKPOINT_CHUNK).max(low);
            let mut chunk = Vec::new();
            self.read(&[(self.checkpoints.clone(), partition, begin, end)], |m| {
                if m.key() != Some(self.group.as_bytes()) {
                    return;
                }
                let c = Checkpoint::parse(
                    m.payload(),
                    header(m, CHECKPOINT_HEADER),
                    header(m, TXN_HEADER),
                    header(m, AT_HEADER),
                );
                chunk.extend(c);
            })?;
            if seals.walk(&chunk) {
                return Ok(seals);
            }
            end = begin;
        }
        if seals.from.is_some() {
            tracing::warn!(
                topic = %self.checkpoints,
                partition,
                "recovery: the checkpoints do not go back to where the newest one starts; every visible record counts as complete"
            );
        }
        Ok(seals)
    }

    /// For each input partition of `from`, what is already on the output topics for its input
    /// offsets at or after `from[partition]`, judged by that partition's `seals` (the
    /// partitions of `seals` not in `from` are only looked at for their timers' outputs).
    pub fn emitted(
        &self,
        from: &HashMap<i32, i64>,
        seals: &HashMap<i32, Seals>,
    ) -> Result<Emitted, RecoveryError> {
        // A transaction's first output for a partition comes after that partition's checkpoint
        // (an opening one at least), and positions only grow: a partition without a
        // checkpoint has no output to find.
        let mut start: Option<Positions> = None;
        for s in seals.values() {
            let Some(bound) = &s.from else {
                continue;
            };
            match &mut start {
                Some(s) => s.lower(bound),
                None => start = Some(bound.clone()),
            }
        }
        let mut out = Emitted::default();
        let Some(start) = start else {
            return Ok(out);
        };
        let mut ranges = Vec::new();
        for topic in &self.outputs {
            for partition in self.partitions(topic)? {
                let (low, high) = self.watermarks(topic, partition)?;
                out.ends.advance(topic, partition, high);
                let begin = start.get(topic, partition).unwrap_or(low).max(low);
                if begin < high {
                    ranges.push((topic.clone(), partition, begin, high));
                }
            }
        }
        let found = &mut out.found;
        self.read(&ranges, |m| {
            if header(m, self.lineage.group) != Some(self.group.as_bytes()) {
                return;
            }
            let topic = m.topic();
            let txn = header(m, TXN_HEADER);
            let changelog = self.changelog.as_deref() == Some(topic);
            if let Some((partition, offset)) =
                header(m, self.lineage.position).and_then(parse_raw_position)
            {
                if from.get(&partition).is_none_or(|first| offset < *first) {
                    return;
                }
                let f = found.entry(partition).or_default();
                f.last = Some(f.last.map_or(offset, |l| l.max(offset)));
                if seals.get(&partition).is_none_or(|s| s.is_sealed(txn)) {
                    f.done.insert(offset);
                } else if !changelog {
                    f.partial
                        .entry(offset)
                        .or_default()
                        .add(topic, m.key(), m.payload());
                }
                return;
            }
            if changelog {
                return;
            }
            let Some(partition) = header(m, TIMER_HEADER).and_then(parse_partition) else {
                return;
            };
            let Some(s) = seals.get(&partition) else {
                return;
            };
            // Outputs before the partition's own newest checkpoint belong to timers that fired
            // again since (the scan may start earlier, for another partition).
            let before = s
                .from
                .as_ref()
                .and_then(|f| f.get(topic, m.partition()))
                .is_some_and(|b| m.offset() < b);
            if !before && !s.is_sealed(txn) {
                found
                    .entry(partition)
                    .or_default()
                    .timers
                    .add(topic, m.key(), m.payload());
            }
        })?;
        for f in out.found.values_mut() {
            let done = &f.done;
            f.partial.retain(|offset, _| !done.contains(offset));
        }
        Ok(out)
    }

    /// Reads a whole partition as a read_committed reader sees it (a changelog, to restore
    /// state from); returns the end it read to.
    pub(crate) fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        each: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<i64, RecoveryError> {
        let (low, high) = self.watermarks(topic, partition)?;
        if high > low {
            self.read(&[(topic.to_string(), partition, low, high)], each)?;
        }
        Ok(high)
    }

    /// Reads every `(topic, partition, from, to)` range until its end is reached, one topic at a
    /// time: librdkafka's end-of-partition event names the partition but not the topic.
    fn read(
        &self,
        ranges: &[(String, i32, i64, i64)],
        mut each: impl FnMut(&BorrowedMessage<'_>),
    ) -> Result<(), RecoveryError> {
        // The timeout is for reading *nothing* (an open transaction holding the read_committed
        // end back), not for the whole read: a large changelog takes as long as it takes.
        let mut deadline = Instant::now() + self.timeout;
        let mut topics: Vec<&str> = ranges.iter().map(|r| r.0.as_str()).collect();
        topics.dedup();
        for topic in topics {
            let mut tpl = TopicPartitionList::new();
            let mut open: HashMap<i32, i64> = HashMap::new();
            for (_, partition, from, to) in ranges.iter().filter(|r| r.0 == topic) {
                tpl.add_partition_offset(topic, *partition, Offset::Offset(*from))
                    .map_err(|source| RecoveryError::Read {
                        topic: topic.to_string(),
                        partition: *partition,
                        source,
                    })?;
                open.insert(*partition, *to);
            }
            self.reader.assign(&tpl).map_err(RecoveryError::Client)?;
            let result = loop {
                if open.is_empty() {
                    break Ok(());
                }
                if Instant::now() >= deadline {
                    break Err(RecoveryError::Timeout(self.timeout));
                }
                match self.reader.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        deadline = Instant::now() + self.timeout;
                        if let Some(to) = open.get(&m.partition()).copied() {
                            if m.offset() < to {
                                each(&m);
                            }
                            if m.offset() + 1 >= to {
                                open.remove(&m.partition());
                            }
                        }
                    }
                    // The end a read_committed reader can reach: transaction markers and
                    // aborted records at the tail never arrive as messages.
                    Some(Err(KafkaError::PartitionEOF(partition))) => {
                        open.remove(&partition);
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "recovery read"),
                    None => {}
                }
            };
            let _ = self.reader.unassign();
            result?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_positions_round_trip() {
        assert_eq!(
            parse_raw_position(raw_position(3, 42).as_bytes()),
            Some((3, 42))
        );
        assert_eq!(parse_raw_position(b"x:1"), None);
        assert_eq!(parse_raw_position(b"7"), None);
    }

    #[test]
    fn checkpoints_lower_to_the_smallest_position() {
        let mut a = Positions::default();
        a.advance("v", 0, 10);
        a.advance("v", 1, 5);
        let mut b = Positions::default();
        b.advance("v", 0, 7);
        b.advance("e", 0, 3);
        a.lower(&b);
        assert_eq!(a.0["v"][&0], 7);
        assert_eq!(a.0["v"][&1], 5);
        assert_eq!(a.0["e"][&0], 3);
        let back: Positions = serde_json::from_slice(&a.to_json()).expect("json");
        assert_eq!(back, a);
    }

    fn at(entries: &[(&str, i32, i64)]) -> Positions {
        let mut p = Positions::default();
        for (t, partition, next) in entries {
            p.advance(t, *partition, *next);
        }
        p
    }

    #[test]
    fn positions_are_within_a_bound_only_when_all_of_its_are_known_and_not_above() {
        let bound = at(&[("o", 0, 10), ("cl", 0, 4)]);
        assert!(at(&[("o", 0, 10), ("cl", 0, 3), ("x", 1, 99)]).within(&bound));
        assert!(!at(&[("o", 0, 11), ("cl", 0, 3)]).within(&bound));
        assert!(!at(&[("o", 0, 1)]).within(&bound), "cl unknown");
        assert!(Positions::default().within(&Positions::default()));
    }

    fn seal(from: &Positions, at: &Positions, txn: &str) -> Checkpoint {
        Checkpoint::parse(
            Some(&from.to_json()),
            Some(SEAL.as_bytes()),
            Some(txn.as_bytes()),
            Some(&at.to_json()),
        )
        .expect("a seal")
    }

    #[test]
    fn seals_and_old_checkpoints_parse() {
        let from = at(&[("o", 0, 5)]);
        let later = at(&[("o", 0, 9)]);
        let s = seal(&from, &later, "t1");
        assert_eq!(s.from, from);
        assert_eq!(s.at, later);
        assert_eq!(s.seal.as_deref(), Some("t1"));
        // Written before seals: the value only; it is both positions and seals nothing.
        let old = Checkpoint::parse(Some(br#"{"o":{"0":5}}"#), None, None, None).expect("old");
        assert_eq!(
            (old.from.clone(), old.at, old.seal),
            (from.clone(), from, None)
        );
        // An opening names its transaction but does not seal it.
        let open = Checkpoint::parse(
            Some(br#"{"o":{"0":5}}"#),
            Some(OPEN.as_bytes()),
            Some(b"t2"),
            None,
        )
        .expect("opening");
        assert_eq!(open.seal, None);
        assert_eq!(Checkpoint::parse(Some(b"not json"), None, None, None), None);
        assert_eq!(Checkpoint::parse(None, None, None, None), None);
    }

    #[test]
    fn the_walk_back_collects_seals_until_a_transaction_began_within_the_newest_positions() {
        // t1 committed; t2 aborted after its seal; t3 was its reprocessing, killed after its
        // seal too. t3's seal carries the floor its recovery started from (t2's start).
        let p1 = at(&[("o", 0, 0), ("cl", 0, 0)]);
        let p2 = at(&[("o", 0, 10), ("cl", 0, 4)]);
        let p3 = at(&[("o", 0, 20), ("cl", 0, 8)]);
        let chunk = vec![seal(&p1, &p1, "t1"), seal(&p2, &p2, "t2")];
        let newer = vec![seal(&p2, &p3, "t3")];
        let mut s = Seals::default();
        assert!(!s.walk(&newer), "t3 began after its checkpoint's positions");
        assert!(s.walk(&chunk), "t2 began at them");
        assert!(s.is_complete());
        assert_eq!(s.from, Some(p2.clone()));
        assert!(s.is_sealed(Some(b"t2")) && s.is_sealed(Some(b"t3")));
        assert!(
            !s.is_sealed(Some(b"t1")),
            "before the walk's end: not needed"
        );
        assert!(!s.is_sealed(Some(b"t4")));
        assert!(s.is_sealed(None), "no header: written before seals");

        // A walk that never reaches such a checkpoint trusts everything.
        let mut s = Seals::default();
        assert!(!s.walk(&newer));
        assert!(!s.is_complete());
        assert!(s.is_sealed(Some(b"t4")));
        // No checkpoint at all.
        let s = Seals::default();
        assert_eq!(s.from, None);
        assert!(s.restore_rule("cl", 0).applies(Some(b"t4"), 100));
    }

    #[test]
    fn a_restore_skips_unsealed_transactions_after_the_newest_checkpoint_only() {
        let p = at(&[("o", 0, 10), ("cl", 0, 4)]);
        let mut s = Seals::default();
        assert!(s.walk(&[seal(&p, &p, "t1")]));
        let rule = s.restore_rule("cl", 0);
        assert!(
            rule.applies(Some(b"t0"), 3),
            "before the bound: superseded or sealed"
        );
        assert!(rule.applies(Some(b"t1"), 4), "sealed");
        assert!(!rule.applies(Some(b"t2"), 4), "unsealed, after the bound");
        assert!(rule.applies(None, 9), "written before seals");
        // Another partition's changelog position is unknown: everything applies.
        assert!(s.restore_rule("cl", 1).applies(Some(b"t2"), 9));
        assert!(RestoreRule::all().applies(Some(b"t2"), 9));
    }

    #[test]
    fn visible_outputs_match_the_same_topic_and_key_by_value_or_else_the_first() {
        let mut l = Landed::default();
        l.add("m", Some(b"p1"), Some(b"a=1"));
        l.add("m", Some(b"p1"), Some(b"b=1"));
        l.add("n", None, Some(b"x"));
        assert_eq!(l.len(), 3);
        // Produced again the same: exactly the visible ones, whatever the order.
        let again: [Candidate; 5] = [
            ("m", Some(b"p1"), Some(b"b=1")),
            ("m", Some(b"p1"), Some(b"a=1")),
            ("m", Some(b"p1"), Some(b"c=1")),
            ("m", Some(b"p2"), Some(b"a=1")),
            ("n", None, Some(b"x")),
        ];
        assert_eq!(l.matches(&again), [true, true, false, false, true]);
        // Values that changed (a time in them): the most alike, then the first.
        let mut l = Landed::default();
        l.add(
            "m",
            Some(b"p1"),
            Some(br#"{"segment":"three-b","status":"realized","time":1}"#),
        );
        let later: [Candidate; 2] = [
            (
                "m",
                Some(b"p1"),
                Some(br#"{"segment":"recent-c","status":"exited","time":9}"#),
            ),
            (
                "m",
                Some(b"p1"),
                Some(br#"{"segment":"three-b","status":"realized","time":9}"#),
            ),
        ];
        assert_eq!(l.matches(&later), [false, true]);
        let mut l = Landed::default();
        l.add("m", Some(b"k"), Some(b"zz"));
        l.add("m", Some(b"k"), Some(b"zz"));
        let same: [Candidate; 3] = [
            ("m", Some(b"k"), Some(b"aa")),
            ("m", Some(b"k"), Some(b"bb")),
            ("m", Some(b"k"), Some(b"cc")),
        ];
        assert_eq!(l.matches(&same), [true, true, false], "the first ones");
        assert_eq!(alike(b"abcXdef", b"abcYdef"), 6);
        assert_eq!(alike(b"aa", b"aaa"), 2);
        assert_eq!(Landed::default().matches(&same), [false; 3]);
    }
}
