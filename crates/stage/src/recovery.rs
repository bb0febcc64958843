//! Recovery: which input records already have their output, so that a restarted or rewound
//! instance does not write them twice. Part of the runtime, so every transactional stage has it.
//!
//! Kafka transactions already make aborted output invisible to read_committed readers; this
//! module is the second half of exactly-once for brokers that do not (the tansu build the tests
//! run on shows aborted records: see crates/test-support/tests/broker_transactions.rs). Before an
//! instance processes an input partition it has just been given (or has rewound after an
//! abort), it reads the outputs written since that partition's last checkpoint and collects the
//! input positions (the stage's [`Lineage`] position header, e.g. `cdp-raw-position`) at or
//! after the committed offset. Those input records are then skipped, their offsets committed
//! with the next transaction. On a broker that hides aborted records the scan simply finds
//! nothing and everything uncommitted is processed again.
//!
//! A checkpoint is a record on the stage's checkpoint topic (e.g. `<ns>.validate.checkpoints`;
//! compacted; partition = input partition, key = consumer group), written inside a transaction
//! with outputs of that input partition: the first after an assignment, then at most once a
//! second. Its positions are a
//! lower bound for the offsets of that transaction's outputs and of anything produced after it
//! (positions only grow, so an older checkpoint stays a valid bound), so a scan reads about a
//! second's worth of output, not the topic.
//! Offset-commit metadata would be the natural place, but tansu drops it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use cdp_contract::admin::partitions_of;
use cdp_contract::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// How many records back from the end of a checkpoint partition the newest checkpoint is looked
/// for (transaction markers and aborted checkpoints take offsets too).
const CHECKPOINT_TAIL: i64 = 100;

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

    fn lower(&mut self, other: &Positions) {
        for (topic, parts) in &other.0 {
            for (partition, next) in parts {
                self.merge(topic, *partition, *next, i64::min);
            }
        }
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
            timeout,
        })
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

    /// For each input partition, the input offsets at or after `from[partition]` whose output is
    /// already on an output topic.
    pub fn emitted(
        &self,
        from: &HashMap<i32, i64>,
    ) -> Result<HashMap<i32, HashSet<i64>>, RecoveryError> {
        // Every transaction that wrote an output for a raw partition wrote that partition's
        // checkpoint with it, visible exactly when its outputs are. So a partition without a
        // checkpoint has no output to find.
        let mut start: Option<Positions> = None;
        for partition in from.keys() {
            let Some(bound) = self.last_checkpoint(*partition)? else {
                continue;
            };
            match &mut start {
                Some(s) => s.lower(&bound),
                None => start = Some(bound),
            }
        }
        let mut found: HashMap<i32, HashSet<i64>> = HashMap::new();
        let Some(start) = start else {
            return Ok(found);
        };
        let mut ranges = Vec::new();
        for topic in &self.outputs {
            for partition in self.partitions(topic)? {
                let (low, high) = self.watermarks(topic, partition)?;
                let begin = start
                    .0
                    .get(topic)
                    .and_then(|parts| parts.get(&partition))
                    .copied()
                    .unwrap_or(low)
                    .max(low);
                if begin < high {
                    ranges.push((topic.clone(), partition, begin, high));
                }
            }
        }
        self.read(&ranges, |m| {
            let header = |name: &str| {
                m.headers()
                    .and_then(|h| h.iter().find(|h| h.key == name))
                    .and_then(|h| h.value)
            };
            if header(self.lineage.group) != Some(self.group.as_bytes()) {
                return;
            }
            let Some((partition, offset)) =
                header(self.lineage.position).and_then(parse_raw_position)
            else {
                return;
            };
            if from.get(&partition).is_some_and(|first| offset >= *first) {
                found.entry(partition).or_default().insert(offset);
            }
        })?;
        Ok(found)
    }

    /// Reads a whole partition as a read_committed reader sees it (a changelog, to restore
    /// state from).
    pub(crate) fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
    ) -> Result<(), RecoveryError> {
        let (low, high) = self.watermarks(topic, partition)?;
        if high <= low {
            return Ok(());
        }
        self.read(&[(topic.to_string(), partition, low, high)], each)
    }

    fn last_checkpoint(&self, partition: i32) -> Result<Option<Positions>, RecoveryError> {
        if partition as usize >= self.checkpoint_partitions()? {
            return Ok(None);
        }
        let (low, high) = self.watermarks(&self.checkpoints, partition)?;
        if high <= low {
            return Ok(None);
        }
        let begin = (high - CHECKPOINT_TAIL).max(low);
        let mut last = None;
        self.read(&[(self.checkpoints.clone(), partition, begin, high)], |m| {
            if m.key() != Some(self.group.as_bytes()) {
                return;
            }
            if let Some(p) = m.payload().and_then(|v| serde_json::from_slice(v).ok()) {
                last = Some(p);
            }
        })?;
        Ok(last)
    }

    /// Reads every `(topic, partition, from, to)` range until its end is reached, one topic at a
    /// time: librdkafka's end-of-partition event names the partition but not the topic.
    fn read(
        &self,
        ranges: &[(String, i32, i64, i64)],
        mut each: impl FnMut(&rdkafka::message::BorrowedMessage<'_>),
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
}
