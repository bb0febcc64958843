//! Keyed state per input partition, kept on disk in an embedded store ([fjall], an LSM tree)
//! with a bounded cache, and backed by a compacted changelog topic (partition = input
//! partition). The store is only a cache of the changelog: it is wiped when the stage starts,
//! each input partition gets its own keyspace, filled from its changelog (in write batches)
//! when the partition is assigned, and deleted when the partition is revoked or must be
//! restored again. Timers are on disk too, in a keyspace of their own per partition indexed by
//! key and by due time, so a million profiles with a timer each cost no memory. Resident memory
//! is the store's block cache (`state_cache_mb`) plus the write buffers of the partitions held,
//! however many keys and timers there are. Every level of the store is LZ4-compressed.
//!
//! Changes are written to the changelog in the same transaction as the outputs they go with,
//! and to the store in one write batch when the batch they come from succeeded (nothing is
//! ever fsynced: after a crash the store is rebuilt from the changelog). After an assignment,
//! or an abort, a partition's state is read back from its changelog before the partition is
//! processed again.
//!
//! Why restoring after an abort is right on both kinds of broker: on Kafka the aborted changes
//! are invisible and their inputs are processed again. On a broker that shows aborted records
//! (tansu), and after a kill only the part of the open transaction that reached it, a restore
//! applies the changelog records of sealed transactions (all of whose records are on the broker,
//! see [`crate::recovery`]), whose inputs recovery skips, and leaves out those of unsealed ones
//! written after the partition's newest checkpoint, whose inputs recovery has processed again
//! ([`RestoreRule`]). Either way state and outputs agree. Records without a transaction header
//! (written before seals) are applied.
//!
//! Changelog records: key `v` + key → the value; key `t` + key → a timer's due time (8 bytes,
//! big-endian epoch milliseconds); a tombstone deletes either.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use fjall::config::CompressionPolicy;
use fjall::{CompressionType, Database, Keyspace, KeyspaceCreateOptions};
use rdkafka::message::{Message, OwnedHeaders};

use crate::processor::{Cause, Output, Timer};
use crate::recovery::{header, Recovery, RecoveryError, RestoreRule, TXN_HEADER};

const VALUE: u8 = b'v';
const TIMER: u8 = b't';

/// The longest key the store takes (its on-disk format stores key lengths in 16 bits).
pub const MAX_KEY: usize = u16::MAX as usize;
/// Each partition's write buffer (memtable): written to disk once full.
const WRITE_BUFFER: u64 = 8 << 20;
/// The write buffer of a partition's timers (small: a due time per key).
const TIMER_WRITE_BUFFER: u64 = 2 << 20;

/// In a partition's timer keyspace: `k` + key → its due time (8 bytes, big-endian), and
/// `d` + due time + key → nothing, so the due timers are the first keys of `d`.
fn timer_by_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(b'k');
    k.extend_from_slice(key);
    k
}

fn timer_by_due(due: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + key.len());
    k.push(b'd');
    // Due times before 1970 sort first, as if due at 0.
    k.extend_from_slice(&(due.max(0) as u64).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn read_due(value: &[u8]) -> Option<i64> {
    <[u8; 8]>::try_from(value).ok().map(i64::from_be_bytes)
}

/// Keyspace options: LZ4 on every level (fjall's default leaves the first two uncompressed,
/// which is where most of a stage's state sits).
fn keyspace_options(write_buffer: u64) -> KeyspaceCreateOptions {
    KeyspaceCreateOptions::default()
        .max_memtable_size(write_buffer)
        .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
        .index_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
}

/// Writes a timer change into `batch`: the old due time (if any) leaves the index.
fn put_timer(
    batch: &mut fjall::OwnedWriteBatch,
    timers: &Keyspace,
    key: &[u8],
    due: Option<i64>,
) -> Result<(), StateError> {
    let by_key = timer_by_key(key);
    if let Some(old) = timers
        .get(&by_key)
        .map_err(StateError::store("read a timer"))?
        .and_then(|v| read_due(&v))
    {
        batch.remove(timers, timer_by_due(old, key));
    }
    match due {
        Some(at) => {
            batch.insert(timers, by_key, at.to_be_bytes());
            batch.insert(timers, timer_by_due(at, key), []);
        }
        None => batch.remove(timers, by_key),
    }
    Ok(())
}

/// The earliest due time of a partition's timers.
fn earliest(timers: &Keyspace) -> Result<Option<i64>, StateError> {
    match timers.prefix(b"d").next() {
        None => Ok(None),
        Some(kv) => {
            let key = kv.key().map_err(StateError::store("read the timers"))?;
            Ok(key
                .get(1..9)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(|b| u64::from_be_bytes(b) as i64))
        }
    }
}
/// A restore writes the changelog into the store in batches of this many keys, or bytes.
const LOAD_BATCH: usize = 5_000;
const LOAD_BATCH_BYTES: usize = 4 << 20;

/// A key in an input partition's state.
pub(crate) type Slot = (i32, Vec<u8>);

/// Keys with their values, in key order (what a prefix scan returns).
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Why the state store failed. Reads and writes go to disk, so they can fail; none panics.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot prepare the state directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state store failed ({what}): {source}")]
    Store {
        what: &'static str,
        source: fjall::Error,
    },
    #[error("a state key of {len} bytes is longer than the state store allows ({MAX_KEY} bytes)")]
    KeyTooLong { len: usize },
}

impl StateError {
    fn store(what: &'static str) -> impl FnOnce(fjall::Error) -> Self {
        move |source| StateError::Store { what, source }
    }

    /// Retrying cannot help: the directory cannot be used, a key can never be stored, or an
    /// earlier write failed and the store refuses every write since (fjall "poisons" itself).
    pub fn is_fatal(&self) -> bool {
        match self {
            StateError::Dir { .. } | StateError::KeyTooLong { .. } => true,
            StateError::Store { source, .. } => matches!(source, fjall::Error::Poisoned),
        }
    }
}

/// Why a partition's state could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Changelog(#[from] RecoveryError),
    #[error(transparent)]
    Store(#[from] StateError),
}

/// State changes a batch made, applied only when the batch succeeded.
#[derive(Default)]
pub struct Overlay {
    /// `None` deletes.
    pub(crate) values: HashMap<Slot, (Cause, Option<Vec<u8>>)>,
    /// `None` cancels.
    pub(crate) timers: HashMap<Slot, (Cause, Option<i64>)>,
}

impl Overlay {
    /// `stored` (a partition's keys that start with `prefix`, in key order) with this batch's
    /// changes on top: a put inserts or replaces, a delete removes. In key order.
    pub(crate) fn over_scan(&self, partition: i32, prefix: &[u8], stored: Entries) -> Entries {
        let mut changes: Vec<(&[u8], Option<&Vec<u8>>)> = self
            .values
            .iter()
            .filter(|((p, key), _)| *p == partition && key.starts_with(prefix))
            .map(|((_, key), (_, value))| (key.as_slice(), value.as_ref()))
            .collect();
        if changes.is_empty() {
            return stored;
        }
        changes.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut changes = changes.into_iter().peekable();
        let mut merged = Vec::with_capacity(stored.len() + changes.len());
        for (key, value) in stored {
            while let Some((k, v)) = changes.next_if(|(k, _)| *k < key.as_slice()) {
                if let Some(v) = v {
                    merged.push((k.to_vec(), v.clone()));
                }
            }
            match changes.next_if(|(k, _)| *k == key.as_slice()) {
                Some((_, Some(v))) => merged.push((key, v.clone())),
                Some((_, None)) => {}
                None => merged.push((key, value)),
            }
        }
        for (k, v) in changes {
            if let Some(v) = v {
                merged.push((k.to_vec(), v.clone()));
            }
        }
        merged
    }
}

/// One input partition's state: its keyspaces in the store (values, timers).
pub struct PartitionState {
    values: Keyspace,
    timers: Keyspace,
    /// The earliest due time of its timers.
    earliest: Option<i64>,
    records: usize,
    skipped: usize,
    /// The changelog partition's end when it was read.
    end: i64,
}

impl PartitionState {
    /// Reads a partition's changelog into the store through `loader` (blocking), the records
    /// its [`Loader::keep`] rule allows.
    pub fn load(
        recovery: &Recovery,
        changelog: &str,
        mut loader: Loader,
    ) -> Result<Self, RestoreError> {
        let read = recovery.read_partition(changelog, loader.partition, |m| {
            loader.record(m.key(), m.payload(), header(m, TXN_HEADER), m.offset());
        });
        match read {
            Ok(end) => {
                let mut state = loader.finish()?;
                state.end = end;
                Ok(state)
            }
            Err(e) => {
                loader.discard();
                Err(e.into())
            }
        }
    }

    /// About how many keys the partition holds (exact after a restore of a compacted changelog
    /// without deletes; keys written twice or deleted count until the store compacts them).
    pub fn approximate_len(&self) -> usize {
        self.values.approximate_len()
    }

    /// How many changelog records the restore applied.
    pub fn records(&self) -> usize {
        self.records
    }

    /// How many changelog records the restore left out (of unsealed transactions).
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Where the changelog partition ended when the restore read it.
    pub fn end(&self) -> i64 {
        self.end
    }
}

/// Writes one partition's changelog into a fresh keyspace, in write batches (made by
/// [`StateStore::loader`], handed to [`PartitionState::load`] off the async threads).
pub struct Loader {
    partition: i32,
    db: Database,
    values: Keyspace,
    /// The next write batch; later records of a key replace earlier ones (`None` deletes).
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    pending_bytes: usize,
    timers: Keyspace,
    /// Timer changes of the next write batch (`None` cancels).
    pending_timers: BTreeMap<Vec<u8>, Option<i64>>,
    records: usize,
    skipped: usize,
    /// Which records are applied (all unless [`Self::keep`] says otherwise).
    rule: RestoreRule,
    /// The first failure; the records after it are ignored.
    failed: Option<StateError>,
}

impl Loader {
    /// Applies only the records `rule` allows.
    pub fn keep(&mut self, rule: RestoreRule) {
        self.rule = rule;
    }

    /// One changelog record, in offset order, with its transaction header.
    pub(crate) fn record(
        &mut self,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        txn: Option<&[u8]>,
        offset: i64,
    ) {
        if self.failed.is_some() {
            return;
        }
        let Some((kind, key)) = key.and_then(|k| k.split_first()) else {
            return;
        };
        if !self.rule.applies(txn, offset) {
            self.skipped += 1;
            return;
        }
        self.records += 1;
        match (*kind, payload) {
            (VALUE, value) => {
                if key.len() > MAX_KEY {
                    self.failed = Some(StateError::KeyTooLong { len: key.len() });
                    return;
                }
                self.pending_bytes += key.len() + value.map_or(0, <[u8]>::len);
                self.pending.insert(key.to_vec(), value.map(<[u8]>::to_vec));
                if self.pending.len() >= LOAD_BATCH || self.pending_bytes >= LOAD_BATCH_BYTES {
                    if let Err(e) = self.flush() {
                        self.failed = Some(e);
                    }
                }
            }
            (TIMER, value) => {
                let due = value.and_then(read_due);
                if value.is_some() && due.is_none() {
                    return;
                }
                self.pending_bytes += key.len() + 8;
                self.pending_timers.insert(key.to_vec(), due);
                if self.pending_timers.len() >= LOAD_BATCH || self.pending_bytes >= LOAD_BATCH_BYTES
                {
                    if let Err(e) = self.flush() {
                        self.failed = Some(e);
                    }
                }
            }
            _ => {}
        }
    }

    fn flush(&mut self) -> Result<(), StateError> {
        if self.pending.is_empty() && self.pending_timers.is_empty() {
            return Ok(());
        }
        let mut batch = self.db.batch().durability(None);
        for (key, value) in std::mem::take(&mut self.pending) {
            match value {
                Some(v) => batch.insert(&self.values, key, v),
                None => batch.remove(&self.values, key),
            }
        }
        for (key, due) in std::mem::take(&mut self.pending_timers) {
            put_timer(&mut batch, &self.timers, &key, due)?;
        }
        self.pending_bytes = 0;
        batch.commit().map_err(StateError::store("restore"))
    }

    /// The restored state, to [`StateStore::install`].
    pub fn finish(mut self) -> Result<PartitionState, StateError> {
        let flushed = match self.failed.take() {
            Some(e) => Err(e),
            None => self.flush(),
        };
        if let Err(e) = flushed {
            self.discard();
            return Err(e);
        }
        let earliest = match earliest(&self.timers) {
            Ok(e) => e,
            Err(e) => {
                self.discard();
                return Err(e);
            }
        };
        Ok(PartitionState {
            values: self.values,
            timers: self.timers,
            earliest,
            records: self.records,
            skipped: self.skipped,
            end: 0,
        })
    }

    /// Gives up: the keyspaces are deleted.
    pub fn discard(self) {
        for keyspace in [self.values, self.timers] {
            if let Err(e) = self.db.delete_keyspace(keyspace) {
                tracing::warn!(partition = self.partition, error = %e, "cannot delete a state keyspace; its disk space is freed when the stage stops");
            }
        }
    }
}

/// The state of every input partition this instance holds, and the timer index.
pub struct StateStore {
    changelog: String,
    dir: PathBuf,
    db: Database,
    parts: HashMap<i32, PartitionState>,
    /// Reads from outside the loop (interactive queries), when the stage offers them.
    reader: Option<crate::reader::StateReader>,
    /// Keyspaces get new names, so a partition dropped and restored never meets its old files.
    next_keyspace: u64,
}

impl StateStore {
    /// Opens the store in `dir`, wiping whatever is there, with a block cache of `cache_mb`
    /// MiB (at least 1). The directory is removed when the store is dropped. Directories of
    /// the same stage instance left behind by processes no longer running (`<…>-<pid>`, see
    /// [`crate::RuntimeSettings::state_path`]) are removed too.
    pub fn open(changelog: String, dir: &Path, cache_mb: u64) -> Result<Self, StateError> {
        let io = |source| StateError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        remove_stale_siblings(dir);
        let db = Database::builder(dir)
            .cache_size(cache_mb.max(1) << 20)
            // Nothing is fsynced, nor even flushed to the OS per batch: the changelog is the
            // source of truth and the store is wiped at every start.
            .manual_journal_persist(true)
            // The journal is only a buffer here (nothing is recovered from it): the least fjall
            // allows, so it does not weigh on the disk (its default, 512 MiB, was 90 % of a
            // 20,000-profile store).
            .max_journaling_size(64 << 20)
            .temporary(true)
            .open()
            .map_err(StateError::store("open"))?;
        Ok(Self {
            changelog,
            dir: dir.to_path_buf(),
            db,
            parts: HashMap::new(),
            reader: None,
            next_keyspace: 0,
        })
    }

    pub fn changelog(&self) -> &str {
        &self.changelog
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn has(&self, partition: i32) -> bool {
        self.parts.contains_key(&partition)
    }

    pub fn partitions(&self) -> Vec<i32> {
        self.parts.keys().copied().collect()
    }

    /// Fresh keyspaces for restoring `partition` from its changelog.
    pub fn loader(&mut self, partition: i32) -> Result<Loader, StateError> {
        self.next_keyspace += 1;
        let name = format!("p{partition}.{}", self.next_keyspace);
        let values = self
            .db
            .keyspace(&name, || keyspace_options(WRITE_BUFFER))
            .map_err(StateError::store("create a keyspace"))?;
        let timers = self
            .db
            .keyspace(&format!("{name}.t"), || {
                keyspace_options(TIMER_WRITE_BUFFER)
            })
            .map_err(StateError::store("create a keyspace"))?;
        Ok(Loader {
            partition,
            db: self.db.clone(),
            values,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            timers,
            pending_timers: BTreeMap::new(),
            records: 0,
            skipped: 0,
            rule: RestoreRule::all(),
            failed: None,
        })
    }

    /// Lets `reader` read the partitions this store holds, from now on.
    pub fn share(&mut self, reader: crate::reader::StateReader) {
        for (&p, part) in &self.parts {
            reader.insert(p, part.values.clone());
        }
        self.reader = Some(reader);
    }

    pub fn install(&mut self, partition: i32, state: PartitionState) {
        self.drop_partition(partition);
        if let Some(r) = &self.reader {
            r.insert(partition, state.values.clone());
        }
        self.parts.insert(partition, state);
    }

    /// Forgets a partition (revoked, or to be restored again): its keyspaces are deleted.
    pub fn drop_partition(&mut self, partition: i32) {
        if let Some(old) = self.parts.remove(&partition) {
            if let Some(r) = &self.reader {
                r.remove(partition);
            }
            for keyspace in [old.values, old.timers] {
                if let Err(e) = self.db.delete_keyspace(keyspace) {
                    tracing::warn!(partition, error = %e, "cannot delete a state keyspace; its disk space is freed when the stage stops");
                }
            }
        }
    }

    /// About how many keys a partition holds (see [`PartitionState::approximate_len`]).
    pub fn approximate_len(&self, partition: i32) -> usize {
        self.parts
            .get(&partition)
            .map_or(0, PartitionState::approximate_len)
    }

    /// The stored value of `key`; `None` for a partition this instance does not hold.
    pub fn get(&self, partition: i32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let Some(part) = self.parts.get(&partition) else {
            return Ok(None);
        };
        let value = part.values.get(key).map_err(StateError::store("get"))?;
        Ok(value.map(|v| v.to_vec()))
    }

    /// Every stored key of the partition that starts with `prefix`, in key order, with its
    /// value; empty for a partition this instance does not hold.
    pub fn scan(&self, partition: i32, prefix: &[u8]) -> Result<Entries, StateError> {
        let Some(part) = self.parts.get(&partition) else {
            return Ok(Vec::new());
        };
        part.values
            .prefix(prefix)
            .map(|kv| {
                let (k, v) = kv.into_inner().map_err(StateError::store("scan"))?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// Up to `limit` stored keys of the partition that start with `prefix` and come after
    /// `after`, in key order (see [`crate::Context::keys_after`]).
    pub fn keys_after(
        &self,
        partition: i32,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StateError> {
        use std::ops::Bound;
        let Some(part) = self.parts.get(&partition) else {
            return Ok(Vec::new());
        };
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_vec()),
            _ => Bound::Included(prefix.to_vec()),
        };
        let mut out = Vec::with_capacity(limit.min(4096));
        for kv in part.values.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            let key = kv.key().map_err(StateError::store("scan"))?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push(key.to_vec());
        }
        Ok(out)
    }

    /// The due time of `key`'s timer (a read that fails counts as no timer: the processor
    /// then sets it again).
    pub fn timer(&self, partition: i32, key: &[u8]) -> Option<i64> {
        let part = self.parts.get(&partition)?;
        match part.timers.get(timer_by_key(key)) {
            Ok(v) => v.and_then(|v| read_due(&v)),
            Err(e) => {
                tracing::warn!(partition, error = %e, "cannot read a timer");
                None
            }
        }
    }

    /// The earliest timer.
    pub fn next_due(&self) -> Option<i64> {
        self.parts.values().filter_map(|p| p.earliest).min()
    }

    /// The timers due at `now_ms`, in order.
    pub fn due(&self, now_ms: i64) -> Vec<Timer> {
        let mut out = Vec::new();
        for (&partition, part) in &self.parts {
            if part.earliest.is_none_or(|e| e > now_ms) {
                continue;
            }
            for kv in part.timers.prefix(b"d") {
                let key = match kv.key() {
                    Ok(k) => k,
                    Err(e) => {
                        tracing::warn!(partition, error = %e, "cannot read the timers");
                        break;
                    }
                };
                let Some(at) = key
                    .get(1..9)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(|b| u64::from_be_bytes(b) as i64)
                else {
                    continue;
                };
                if at > now_ms {
                    break;
                }
                out.push(Timer {
                    partition,
                    key: key[9..].to_vec(),
                    due_ms: at,
                });
            }
        }
        out.sort_by(|a, b| (a.due_ms, a.partition, &a.key).cmp(&(b.due_ms, b.partition, &b.key)));
        out
    }

    /// Applies a successful batch's changes, the values in one write batch; returns the
    /// changelog records to write with its outputs. Changes to partitions this instance does
    /// not hold are ignored (the processor can only name partitions of its batch, which are
    /// held). On an error nothing is applied: the transaction must abort, and its partitions be
    /// restored from the changelog.
    pub fn apply(&mut self, overlay: Overlay) -> Result<Vec<(Cause, Output)>, StateError> {
        if let Some(((_, key), _)) = overlay.values.iter().find(|((_, k), _)| k.len() > MAX_KEY) {
            return Err(StateError::KeyTooLong { len: key.len() });
        }
        let mut records = Vec::with_capacity(overlay.values.len() + overlay.timers.len());
        let mut batch = self.db.batch().durability(None);
        for ((partition, key), (cause, value)) in overlay.values {
            let Some(part) = self.parts.get(&partition) else {
                continue;
            };
            match &value {
                Some(v) => batch.insert(&part.values, key.as_slice(), v.as_slice()),
                None => batch.remove(&part.values, key.as_slice()),
            }
            records.push((cause, self.record(partition, VALUE, &key, value)));
        }
        let mut touched = BTreeSet::new();
        for ((partition, key), (cause, due)) in overlay.timers {
            let Some(part) = self.parts.get(&partition) else {
                continue;
            };
            put_timer(&mut batch, &part.timers, &key, due)?;
            touched.insert(partition);
            let value = due.map(|at| at.to_be_bytes().to_vec());
            records.push((cause, self.record(partition, TIMER, &key, value)));
        }
        batch.commit().map_err(StateError::store("write"))?;
        for partition in touched {
            if let Some(part) = self.parts.get_mut(&partition) {
                part.earliest = earliest(&part.timers)?;
            }
        }
        Ok(records)
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

impl Drop for StateStore {
    fn drop(&mut self) {
        if let Some(r) = &self.reader {
            r.clear();
        }
    }
}

/// Removes the directories next to `dir` that belong to the same stage instance
/// (`<stage>-<instance>-<pid>`) and were left by a process that no longer runs (a crash).
fn remove_stale_siblings(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name().and_then(|n| n.to_str()))
    else {
        return;
    };
    let Some((prefix, _)) = name.rsplit_once('-') else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let other = entry.file_name();
        let Some(pid) = other
            .to_str()
            .and_then(|o| o.strip_prefix(prefix)?.strip_prefix('-'))
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if other.as_os_str() == name || pid <= 0 || process_runs(pid) {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed the state directory of a stopped process")
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot remove a stale state directory")
            }
        }
    }
}

fn process_runs(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::Context;

    /// A directory for one test, removed with the store.
    fn dir(test: &str) -> PathBuf {
        std::env::temp_dir()
            .join("cdp-stage-tests")
            .join(format!("{test}-{}", std::process::id()))
    }

    fn store(test: &str) -> StateStore {
        StateStore::open("cl".into(), &dir(test), 1).expect("open")
    }

    fn empty(store: &mut StateStore, partition: i32) {
        let state = store
            .loader(partition)
            .expect("loader")
            .finish()
            .expect("load");
        store.install(partition, state);
    }

    fn put(key: &str, value: &str) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        (
            Some([b"v", key.as_bytes()].concat()),
            Some(value.as_bytes().to_vec()),
        )
    }

    #[test]
    fn applied_changes_become_changelog_records_and_timers() {
        let mut store = store("apply");
        empty(&mut store, 0);
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
        let records = store.apply(overlay).expect("apply");
        assert_eq!(records.len(), 2);
        assert!(records.iter().all(|(_, o)| o.partition == Some(0)));
        assert_eq!(store.get(0, b"a").expect("get"), Some(b"1".to_vec()));
        assert_eq!(store.get(9, b"x").expect("get"), None);
        assert_eq!(store.next_due(), Some(50));
        assert!(store.due(49).is_empty());
        assert_eq!(store.due(50)[0].key, b"a".to_vec());

        let mut cancel = Overlay::default();
        cancel
            .timers
            .insert((0, b"a".to_vec()), (Cause::Timer(0), None));
        let records = store.apply(cancel).expect("apply");
        assert_eq!(records[0].1.value, None);
        assert_eq!(store.next_due(), None);
        store.drop_partition(0);
        assert_eq!(store.get(0, b"a").expect("get"), None);
    }

    #[test]
    fn a_key_too_long_for_the_store_is_refused_before_anything_is_written() {
        let mut store = store("too-long");
        empty(&mut store, 0);
        let mut overlay = Overlay::default();
        overlay
            .values
            .insert((0, b"a".to_vec()), (Cause::Input(0), Some(b"1".to_vec())));
        overlay.values.insert(
            (0, vec![b'k'; MAX_KEY + 1]),
            (Cause::Input(1), Some(b"1".to_vec())),
        );
        let e = store.apply(overlay).expect_err("too long");
        assert!(e.is_fatal(), "{e}");
        assert_eq!(store.get(0, b"a").expect("get"), None);
    }

    #[test]
    fn scans_see_the_batch_s_own_puts_and_deletes_in_key_order() {
        let mut store = store("scan");
        empty(&mut store, 0);
        empty(&mut store, 1);
        let mut stored = Overlay::default();
        for (p, k, v) in [
            (0, "user/b", "b0"),
            (0, "user/d", "d0"),
            (0, "user/f", "f0"),
            (0, "user", "bare"),
            (0, "users/x", "other prefix"),
            (0, "usea", "before"),
            (0, "user0", "after"),
            (1, "user/c", "other partition"),
        ] {
            stored.values.insert(
                (p, k.as_bytes().to_vec()),
                (Cause::Timer(p), Some(v.as_bytes().to_vec())),
            );
        }
        store.apply(stored).expect("apply");
        let text = |rows: Entries| -> Vec<(String, String)> {
            rows.into_iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8(k).expect("utf-8"),
                        String::from_utf8(v).expect("utf-8"),
                    )
                })
                .collect()
        };
        let pairs = |rows: &[(&str, &str)]| -> Vec<(String, String)> {
            rows.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // The store alone: prefix boundaries are exact.
        assert_eq!(
            text(store.scan(0, b"user/").expect("scan")),
            pairs(&[("user/b", "b0"), ("user/d", "d0"), ("user/f", "f0")])
        );
        assert_eq!(store.scan(0, b"nobody").expect("scan"), Vec::new());
        assert_eq!(store.scan(7, b"").expect("not held"), Vec::new());
        assert_eq!(store.scan(0, b"").expect("everything").len(), 7);

        let mut ctx = Context::new(&[], Some(&store));
        ctx.put(Cause::Timer(0), b"user/a", b"a1".to_vec()); // before the first stored
        ctx.put(Cause::Timer(0), b"user/d", b"d1".to_vec()); // replaces
        ctx.delete(Cause::Timer(0), b"user/f"); // hides the last stored
        ctx.put(Cause::Timer(0), b"user/e", b"e1".to_vec()); // between stored keys
        ctx.put(Cause::Timer(0), b"user/z", b"z1".to_vec()); // after the last
        ctx.delete(Cause::Timer(0), b"user/q"); // deletes what is not there
        ctx.put(Cause::Timer(0), b"userz", b"outside".to_vec()); // not under the prefix
        ctx.put(Cause::Timer(1), b"user/a", b"p1".to_vec()); // another partition
        assert_eq!(
            text(ctx.scan(0, b"user/").expect("scan")),
            pairs(&[
                ("user/a", "a1"),
                ("user/b", "b0"),
                ("user/d", "d1"),
                ("user/e", "e1"),
                ("user/z", "z1"),
            ])
        );
        assert_eq!(
            text(ctx.scan(1, b"user/").expect("scan")),
            pairs(&[("user/a", "p1"), ("user/c", "other partition")])
        );
        // A put then a delete of the same key in one batch: the delete wins.
        ctx.delete(Cause::Timer(0), b"user/a");
        assert_eq!(ctx.get(0, b"user/a").expect("get"), None);
        assert_eq!(ctx.get(0, b"user/b").expect("get"), Some(b"b0".to_vec()));
        assert_eq!(ctx.get(0, b"user/d").expect("get"), Some(b"d1".to_vec()));
        assert_eq!(
            ctx.scan(0, b"user/").expect("scan")[0].0,
            b"user/b".to_vec()
        );
    }

    #[test]
    fn timers_are_indexed_on_disk_by_due_time_and_replaced_without_leftovers() {
        let mut store = store("timers");
        empty(&mut store, 0);
        empty(&mut store, 1);
        let set = |store: &mut StateStore, changes: &[(i32, &str, Option<i64>)]| {
            let mut overlay = Overlay::default();
            for (p, k, due) in changes {
                overlay
                    .timers
                    .insert((*p, k.as_bytes().to_vec()), (Cause::Timer(*p), *due));
            }
            store.apply(overlay).expect("apply");
        };
        set(
            &mut store,
            &[(0, "a", Some(30)), (0, "b", Some(10)), (1, "c", Some(20))],
        );
        assert_eq!(store.next_due(), Some(10));
        // Moved later, moved earlier, cancelled: the old due times leave the index.
        set(
            &mut store,
            &[(0, "b", Some(40)), (1, "c", Some(5)), (0, "a", None)],
        );
        assert_eq!(store.timer(0, b"a"), None);
        assert_eq!(store.timer(0, b"b"), Some(40));
        let due: Vec<(i32, Vec<u8>, i64)> = store
            .due(100)
            .into_iter()
            .map(|t| (t.partition, t.key, t.due_ms))
            .collect();
        assert_eq!(due, vec![(1, b"c".to_vec(), 5), (0, b"b".to_vec(), 40)]);
        assert!(store.due(4).is_empty());
        // A restore of the same changelog records gives the same timers.
        let mut loader = store.loader(2).expect("loader");
        for (k, due) in [
            ("x", Some(7i64)),
            ("y", Some(3)),
            ("x", Some(9)),
            ("y", None),
        ] {
            let key = [b"t", k.as_bytes()].concat();
            let value = due.map(|d| d.to_be_bytes().to_vec());
            loader.record(Some(&key), value.as_deref(), None, 0);
        }
        store.install(2, loader.finish().expect("load"));
        assert_eq!(store.timer(2, b"x"), Some(9));
        assert_eq!(store.timer(2, b"y"), None);
        assert_eq!(store.next_due(), Some(5));
        store.drop_partition(1);
        assert_eq!(store.next_due(), Some(9));
        assert_eq!(store.due(9).len(), 1);
    }

    #[test]
    fn keys_after_walks_a_prefix_a_chunk_at_a_time() {
        let mut store = store("keys-after");
        empty(&mut store, 0);
        let mut overlay = Overlay::default();
        for k in ["pa/1", "pa/2", "pa/3", "pa/4", "pb/1", "p", "q"] {
            overlay.values.insert(
                (0, k.as_bytes().to_vec()),
                (Cause::Timer(0), Some(b"v".to_vec())),
            );
        }
        store.apply(overlay).expect("apply");
        let text = |keys: Vec<Vec<u8>>| -> Vec<String> {
            keys.into_iter()
                .map(|k| String::from_utf8(k).expect("utf-8"))
                .collect()
        };
        let first = store.keys_after(0, b"pa/", None, 2).expect("keys");
        assert_eq!(text(first.clone()), ["pa/1", "pa/2"]);
        let next = store
            .keys_after(0, b"pa/", first.last().map(Vec::as_slice), 2)
            .expect("keys");
        assert_eq!(text(next.clone()), ["pa/3", "pa/4"]);
        let last = store
            .keys_after(0, b"pa/", next.last().map(Vec::as_slice), 2)
            .expect("keys");
        assert!(last.is_empty(), "the prefix ends: {:?}", text(last));
        // A cursor before the prefix starts at the prefix.
        assert_eq!(
            text(store.keys_after(0, b"pb/", Some(b"a"), 10).expect("keys")),
            ["pb/1"]
        );
        assert!(store
            .keys_after(5, b"p", None, 10)
            .expect("not held")
            .is_empty());
    }

    #[test]
    fn a_changelog_loads_into_its_own_keyspace_and_drops_with_it() {
        let mut store = store("load");
        let mut loader = store.loader(3).expect("loader");
        let records = [
            put("a", "1"),
            put("b", "1"),
            put("a", "2"),                // a later record of a key wins
            (Some(b"vb".to_vec()), None), // a tombstone deletes
            (Some(b"tc".to_vec()), Some(77i64.to_be_bytes().to_vec())),
            (Some(b"td".to_vec()), Some(88i64.to_be_bytes().to_vec())),
            (Some(b"td".to_vec()), None),
            (Some(b"x?".to_vec()), Some(b"unknown kind".to_vec())),
            (None, Some(b"no key".to_vec())),
        ];
        for (i, (k, v)) in records.iter().enumerate() {
            loader.record(k.as_deref(), v.as_deref(), None, i as i64);
        }
        // Enough keys for several write batches.
        for i in 0..(LOAD_BATCH * 2 + 10) {
            let (k, v) = put(&format!("n/{i:06}"), &i.to_string());
            loader.record(k.as_deref(), v.as_deref(), None, 100 + i as i64);
        }
        let state = loader.finish().expect("load");
        assert_eq!(state.records(), records.len() - 1 + LOAD_BATCH * 2 + 10);
        store.install(3, state);
        assert!(store.has(3));
        assert_eq!(store.get(3, b"a").expect("get"), Some(b"2".to_vec()));
        assert_eq!(store.get(3, b"b").expect("get"), None);
        assert_eq!(store.timer(3, b"c"), Some(77));
        assert_eq!(store.timer(3, b"d"), None);
        assert_eq!(store.next_due(), Some(77));
        let scanned = store.scan(3, b"n/").expect("scan");
        assert_eq!(scanned.len(), LOAD_BATCH * 2 + 10);
        assert!(scanned.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(scanned[7], (b"n/000007".to_vec(), b"7".to_vec()));
        assert!(store.approximate_len(3) >= LOAD_BATCH * 2 + 11);

        let files = store.parts[&3].values.path().to_path_buf();
        assert!(files.is_dir());
        store.drop_partition(3);
        assert!(!files.exists(), "the keyspace's files are deleted");
        assert!(!store.has(3));
        assert_eq!(store.get(3, b"a").expect("get"), None);
        assert_eq!(store.next_due(), None);
        // Restored again: what the old keyspace held is gone.
        let mut loader = store.loader(3).expect("loader");
        let (k, v) = put("z", "1");
        loader.record(k.as_deref(), v.as_deref(), None, 0);
        store.install(3, loader.finish().expect("load"));
        assert_eq!(store.get(3, b"a").expect("get"), None);
        assert_eq!(store.scan(3, b"").expect("scan").len(), 1);
    }

    #[test]
    fn a_restore_leaves_out_unsealed_transactions_after_the_newest_checkpoint() {
        use crate::recovery::{Checkpoint, Positions, Seals, SEAL};
        let mut store = store("sealed");
        let mut positions = Positions::default();
        positions.advance("cl", 0, 2);
        let checkpoint = Checkpoint::parse(
            Some(&positions.to_json()),
            Some(SEAL.as_bytes()),
            Some(b"t1"),
            None,
        )
        .expect("a seal");
        let mut seals = Seals::default();
        assert!(seals.walk(&[checkpoint]));
        let mut loader = store.loader(0).expect("loader");
        loader.keep(seals.restore_rule("cl", 0));
        let due = 5i64.to_be_bytes().to_vec();
        // (key, value, transaction, offset)
        type Record<'a> = (&'a str, Option<&'a [u8]>, Option<&'a [u8]>, i64);
        let records: [Record; 6] = [
            ("va", Some(b"1"), Some(b"t0"), 0), // before the bound: applied
            ("vb", Some(b"1"), None, 1),
            ("va", Some(b"2"), Some(b"t1"), 2), // sealed
            ("va", Some(b"3"), Some(b"t9"), 3), // unsealed, after the bound
            ("td", Some(&due), Some(b"t9"), 4),
            ("vc", Some(b"1"), None, 5), // written before seals
        ];
        for (k, v, txn, offset) in records {
            loader.record(Some(k.as_bytes()), v, txn, offset);
        }
        let state = loader.finish().expect("load");
        assert_eq!((state.records(), state.skipped()), (4, 2));
        store.install(0, state);
        assert_eq!(store.get(0, b"a").expect("get"), Some(b"2".to_vec()));
        assert_eq!(store.get(0, b"b").expect("get"), Some(b"1".to_vec()));
        assert_eq!(store.get(0, b"c").expect("get"), Some(b"1".to_vec()));
        assert_eq!(
            store.timer(0, b"d"),
            None,
            "the unsealed timer is not restored"
        );
    }

    #[test]
    fn values_live_on_disk_not_in_memory_and_the_directory_goes_with_the_store() {
        let path = dir("disk");
        let mut store = StateStore::open("cl".into(), &path, 1).expect("open");
        empty(&mut store, 0);
        // 32 MiB of values that do not compress, against a 1 MiB cache and an 8 MiB write
        // buffer, in write batches of 1,000 like a busy stage's.
        let value = |i: u64| -> Vec<u8> {
            let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            (0..1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        const KEYS: u64 = 32 * 1024;
        for chunk in 0..KEYS / 1000 + 1 {
            let mut overlay = Overlay::default();
            for i in chunk * 1000..((chunk + 1) * 1000).min(KEYS) {
                overlay.values.insert(
                    (0, format!("k{i:08}").into_bytes()),
                    (Cause::Timer(0), Some(value(i))),
                );
            }
            store.apply(overlay).expect("apply");
        }
        let part = &store.parts[&0];
        part.values.rotate_memtable_and_wait().expect("flush");
        // On disk in the keyspace's own tables (the journal not counted): more than the cache
        // and the write buffer together could hold.
        let on_disk = part.values.disk_space();
        assert!(
            on_disk > 24 << 20,
            "{on_disk} bytes in the keyspace's tables"
        );
        assert!(part.values.table_count() > 0);
        assert_eq!(store.db.cache_capacity(), 1 << 20);
        for i in [0, 1, KEYS / 2, KEYS - 1] {
            let got = store.get(0, format!("k{i:08}").as_bytes()).expect("get");
            assert_eq!(got, Some(value(i)), "key {i}");
        }
        assert!(path.join("keyspaces").is_dir());
        drop(store);
        assert!(!path.exists(), "the store's directory is removed with it");
    }

    #[test]
    fn opening_wipes_the_directory_and_removes_dead_processes_leftovers() {
        let base = dir("wipe");
        let ours = base.join(format!("st-i-{}", std::process::id()));
        // A pid that cannot run (above the kernel's pid limit) and one that does (ours' parent).
        let dead = base.join("st-i-2147483646");
        let live = base.join(format!("st-i-{}", std::os::unix::process::parent_id()));
        let other = base.join("st-j-2147483646");
        for d in [&ours, &dead, &live, &other] {
            std::fs::create_dir_all(d.join("old")).expect("mkdir");
        }
        let store = StateStore::open("cl".into(), &ours, 1).expect("open");
        assert!(!ours.join("old").exists(), "wiped");
        assert!(!dead.exists(), "a dead process's directory is removed");
        assert!(live.join("old").exists(), "a running process's is kept");
        assert!(other.join("old").exists(), "another instance's is kept");
        drop(store);
        std::fs::remove_dir_all(&base).expect("clean up");
    }
}
