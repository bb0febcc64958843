//! Reads of a stage's state from outside its loop, for the APIs that answer where the state
//! lives (Kafka Streams' interactive queries): a [`StateReader`] shows the input partitions
//! this instance holds, once their state is restored, and what is stored in them. It reads
//! what the loop applied, which can run ahead of the last commit by one commit interval (a
//! transaction that then aborts has its partitions restored again).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

use fjall::Keyspace;
use tokio::sync::watch;

use crate::state::StateError;

/// A handle on a stage's state, cheap to clone; give it to the stage in its
/// [`crate::StageSpec::queries`].
#[derive(Clone)]
pub struct StateReader {
    parts: Arc<RwLock<BTreeMap<i32, Keyspace>>>,
    held: watch::Sender<BTreeSet<i32>>,
}

impl std::fmt::Debug for StateReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateReader")
            .field("held", &*self.held.borrow())
            .finish()
    }
}

impl Default for StateReader {
    fn default() -> Self {
        Self::new()
    }
}

impl StateReader {
    pub fn new() -> Self {
        Self {
            parts: Arc::default(),
            held: watch::channel(BTreeSet::new()).0,
        }
    }

    /// The value of `key` in a partition's state; `None` when this instance does not hold the
    /// partition (see [`Self::holds`]) or the key is not there.
    pub fn get(&self, partition: i32, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let keyspace = match self.parts.read() {
            Ok(parts) => parts.get(&partition).cloned(),
            Err(poisoned) => poisoned.into_inner().get(&partition).cloned(),
        };
        match keyspace {
            Some(k) => Ok(k
                .get(key)
                .map_err(|source| StateError::Store {
                    what: "read",
                    source,
                })?
                .map(|v| v.to_vec())),
            None => Ok(None),
        }
    }

    /// Every key of a partition's state that starts with `prefix`, with its value, in key order
    /// (keep prefixes narrow); empty when this instance does not hold the partition.
    pub fn scan(&self, partition: i32, prefix: &[u8]) -> Result<crate::Entries, StateError> {
        let keyspace = match self.parts.read() {
            Ok(parts) => parts.get(&partition).cloned(),
            Err(poisoned) => poisoned.into_inner().get(&partition).cloned(),
        };
        let Some(keyspace) = keyspace else {
            return Ok(Vec::new());
        };
        keyspace
            .prefix(prefix)
            .map(|kv| {
                let (k, v) = kv.into_inner().map_err(|source| StateError::Store {
                    what: "scan",
                    source,
                })?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect()
    }

    /// Whether this instance holds the partition's state, restored.
    pub fn holds(&self, partition: i32) -> bool {
        self.held.borrow().contains(&partition)
    }

    /// The partitions held now, and every change of them.
    pub fn watch(&self) -> watch::Receiver<BTreeSet<i32>> {
        self.held.subscribe()
    }

    pub(crate) fn insert(&self, partition: i32, keyspace: Keyspace) {
        match self.parts.write() {
            Ok(mut parts) => parts.insert(partition, keyspace),
            Err(poisoned) => poisoned.into_inner().insert(partition, keyspace),
        };
        self.held.send_modify(|h| {
            h.insert(partition);
        });
    }

    pub(crate) fn remove(&self, partition: i32) {
        match self.parts.write() {
            Ok(mut parts) => parts.remove(&partition),
            Err(poisoned) => poisoned.into_inner().remove(&partition),
        };
        self.held.send_modify(|h| {
            h.remove(&partition);
        });
    }

    /// Forgets every partition (the stage stopped).
    pub(crate) fn clear(&self) {
        match self.parts.write() {
            Ok(mut parts) => parts.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        };
        self.held.send_modify(BTreeSet::clear);
    }
}
