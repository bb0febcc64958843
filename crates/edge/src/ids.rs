//! Batch and transaction ids in the collection API's shape: `<receivedMs>:<instance>:<seq>` for
//! a batch, and `<batchId>:<index>` for each message in it.

use std::sync::atomic::{AtomicU64, Ordering};

pub struct IdGenerator {
    /// Distinguishes edge instances that receive in the same millisecond.
    instance: u16,
    seq: AtomicU64,
}

impl IdGenerator {
    pub fn new() -> Self {
        Self {
            instance: rand::random::<u16>(),
            seq: AtomicU64::new(0),
        }
    }

    pub fn batch_id(&self, received_ms: i64) -> String {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{received_ms}:{}:{seq}", self.instance)
    }
}

pub fn xaction_id(batch_id: &str, index: usize) -> String {
    format!("{batch_id}:{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_shaped() {
        let g = IdGenerator::new();
        let a = g.batch_id(5);
        let b = g.batch_id(5);
        assert_ne!(a, b);
        assert_eq!(a.split(':').count(), 3);
        assert!(a.starts_with("5:"));
        assert_eq!(xaction_id(&a, 2), format!("{a}:2"));
    }
}
