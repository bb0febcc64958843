//! Keyed state per input partition, kept in memory and backed by a compacted changelog topic
//! (partition = input partition). Changes are written to the changelog in the same transaction
//! as the outputs they go with; after an assignment, or an abort, a partition's state is read
//! back from its changelog before the partition is processed again.
//!
//! Why restoring after an abort is right on both kinds of broker: on Kafka the aborted changes
//! are invisible and their inputs are processed again; on a broker that shows aborted records
//! (tansu) the changes are visible, and so are the outputs, which recovery then finds and skips
//! the inputs for. Either way state and outputs agree.
//!
//! Changelog records: key `v` + key → the value; key `t` + key → a timer's due time (8 bytes,
//! big-endian epoch milliseconds); a tombstone deletes either.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rdkafka::message::{Message, OwnedHeaders};

use crate::processor::{Cause, Output, Timer};
use crate::recovery::{Recovery, RecoveryError};

const VALUE: u8 = b'v';
const TIMER: u8 = b't';

/// A key in an input partition's state.
pub(crate) type Slot = (i32, Vec<u8>);

/// State changes a batch made, applied only when the batch succeeded.
#[derive(Default)]
pub struct Overlay {
    /// `None` deletes.
    pub(crate) values: HashMap<Slot, (Cause, Option<Vec<u8>>)>,
    /// `None` cancels.
    pub(crate) timers: HashMap<Slot, (Cause, Option<i64>)>,
}

/// One input partition's state.
#[derive(Default, Debug)]
pub struct PartitionState {
    values: BTreeMap<Vec<u8>, Vec<u8>>,
    timers: HashMap<Vec<u8>, i64>,
}

impl PartitionState {
    /// Reads a partition's changelog (blocking).
    pub fn load(
        recovery: &Recovery,
        changelog: &str,
        partition: i32,
    ) -> Result<Self, RecoveryError> {
        let mut state = PartitionState::default();
        recovery.read_partition(changelog, partition, |m| {
            let Some((kind, key)) = m.key().and_then(|k| k.split_first()) else {
                return;
            };
            match (*kind, m.payload()) {
                (VALUE, Some(v)) => {
                    state.values.insert(key.to_vec(), v.to_vec());
                }
                (VALUE, None) => {
                    state.values.remove(key);
                }
                (TIMER, Some(v)) => {
                    if let Ok(bytes) = <[u8; 8]>::try_from(v) {
                        state.timers.insert(key.to_vec(), i64::from_be_bytes(bytes));
                    }
                }
                (TIMER, None) => {
                    state.timers.remove(key);
                }
                _ => {}
            }
        })?;
        Ok(state)
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The state of every input partition this instance holds, and the timer index.
pub struct StateStore {
    changelog: String,
    parts: HashMap<i32, PartitionState>,
    due: BTreeSet<(i64, i32, Vec<u8>)>,
}

impl StateStore {
    pub fn new(changelog: String) -> Self {
        Self {
            changelog,
            parts: HashMap::new(),
            due: BTreeSet::new(),
        }
    }

    pub fn changelog(&self) -> &str {
        &self.changelog
    }

    pub fn has(&self, partition: i32) -> bool {
        self.parts.contains_key(&partition)
    }

    pub fn partitions(&self) -> Vec<i32> {
        self.parts.keys().copied().collect()
    }

    pub fn install(&mut self, partition: i32, state: PartitionState) {
        self.drop_partition(partition);
        for (key, due) in &state.timers {
            self.due.insert((*due, partition, key.clone()));
        }
        self.parts.insert(partition, state);
    }

    /// Forgets a partition (revoked, or to be restored again).
    pub fn drop_partition(&mut self, partition: i32) {
        if let Some(old) = self.parts.remove(&partition) {
            for (key, due) in old.timers {
                self.due.remove(&(due, partition, key));
            }
        }
    }

    pub fn get(&self, partition: i32, key: &[u8]) -> Option<&[u8]> {
        self.parts
            .get(&partition)
            .and_then(|p| p.values.get(key))
            .map(Vec::as_slice)
    }

    pub fn timer(&self, partition: i32, key: &[u8]) -> Option<i64> {
        self.parts
            .get(&partition)
            .and_then(|p| p.timers.get(key))
            .copied()
    }

    /// The earliest timer.
    pub fn next_due(&self) -> Option<i64> {
        self.due.first().map(|(at, _, _)| *at)
    }

    /// The timers due at `now_ms`, in order.
    pub fn due(&self, now_ms: i64) -> Vec<Timer> {
        self.due
            .iter()
            .take_while(|(at, _, _)| *at <= now_ms)
            .map(|(at, partition, key)| Timer {
                partition: *partition,
                key: key.clone(),
                due_ms: *at,
            })
            .collect()
    }

    /// Applies a successful batch's changes; returns the changelog records to write with its
    /// outputs. Changes to partitions this instance does not hold are ignored (the processor
    /// can only name partitions of its batch, which are held).
    pub fn apply(&mut self, overlay: Overlay) -> Vec<(Cause, Output)> {
        let mut records = Vec::with_capacity(overlay.values.len() + overlay.timers.len());
        for ((partition, key), (cause, value)) in overlay.values {
            let Some(part) = self.parts.get_mut(&partition) else {
                continue;
            };
            match &value {
                Some(v) => part.values.insert(key.clone(), v.clone()),
                None => part.values.remove(&key),
            };
            records.push((cause, self.record(partition, VALUE, &key, value)));
        }
        for ((partition, key), (cause, due)) in overlay.timers {
            let Some(part) = self.parts.get_mut(&partition) else {
                continue;
            };
            if let Some(old) = part.timers.remove(&key) {
                self.due.remove(&(old, partition, key.clone()));
            }
            if let Some(at) = due {
                part.timers.insert(key.clone(), at);
                self.due.insert((at, partition, key.clone()));
            }
            let value = due.map(|at| at.to_be_bytes().to_vec());
            records.push((cause, self.record(partition, TIMER, &key, value)));
        }
        records
    }

    fn record(&self, partition: i32, kind: u8, key: &[u8], value: Option<Vec<u8>>) -> Output {
        let mut k = Vec::with_capacity(key.len() + 1);
        k.push(kind);
        k.extend_from_slice(key);
        Output {
            topic: self.changelog.clone(),
            partition: Some(partition),
            key: Some(k),
            value,
            headers: OwnedHeaders::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_changes_become_changelog_records_and_timers() {
        let mut store = StateStore::new("cl".into());
        store.install(0, PartitionState::default());
        let mut overlay = Overlay::default();
        overlay
            .values
            .insert((0, b"a".to_vec()), (Cause::Input(0), Some(b"1".to_vec())));
        overlay
            .timers
            .insert((0, b"a".to_vec()), (Cause::Input(0), Some(50)));
        // A partition this instance does not hold is not written.
        overlay
            .values
            .insert((9, b"x".to_vec()), (Cause::Input(1), Some(b"1".to_vec())));
        let records = store.apply(overlay);
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|(_, o)| o.partition == Some(0)));
        assert_eq!(store.get(0, b"a"), Some(&b"1"[..]));
        assert_eq!(store.next_due(), Some(50));
        assert!(store.due(49).is_empty());
        assert_eq!(store.due(50)[0].key, b"a".to_vec());

        let mut cancel = Overlay::default();
        cancel
            .timers
            .insert((0, b"a".to_vec()), (Cause::Timer(0), None));
        let records = store.apply(cancel);
        assert_eq!(records[0].1.value, None);
        assert_eq!(store.next_due(), None);
        store.drop_partition(0);
        assert_eq!(store.get(0, b"a"), None);
    }
}
