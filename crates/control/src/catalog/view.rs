//! Follows the catalog topic from its beginning and keeps the latest value of every key in
//! memory. Nothing here is authoritative: a restart rebuilds it from the topic.

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLockReadGuard;
use std::time::Duration;

use cdp_contract::follower::{Fold, FollowError, Follower};
use cdp_contract::{KafkaSettings, Topics};

use super::conditional::{Conditional, Refusal};
use crate::model::{ApiKey, CatalogRecord, Dataset, Stream, XdmSchema};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog: {0}")]
    Follow(#[from] FollowError),
}

/// The catalog as of the last record applied.
#[derive(Debug, Default, Clone)]
pub struct CatalogState {
    pub streams: HashMap<String, Stream>,
    pub api_keys: HashMap<String, ApiKey>,
    /// Schema id → version → schema.
    pub schemas: HashMap<String, BTreeMap<u32, XdmSchema>>,
    pub datasets: HashMap<String, Dataset>,
    /// Schema id → version → its revision: the offset of the record that set its current
    /// definition, which conditional records compare against.
    pub(super) revisions: HashMap<String, BTreeMap<u32, i64>>,
    /// Conditional records the fold refused, by offset: how their writer learns the outcome.
    pub(super) refusals: HashMap<i64, Refusal>,
}

impl CatalogState {
    pub fn schema(&self, id: &str, version: u32) -> Option<&XdmSchema> {
        self.schemas.get(id).and_then(|v| v.get(&version))
    }

    pub fn latest_schema(&self, id: &str) -> Option<&XdmSchema> {
        self.schemas.get(id).and_then(|v| v.values().next_back())
    }

    /// See [`super::conditional`].
    pub fn revision(&self, id: &str, version: u32) -> Option<i64> {
        self.revisions.get(id)?.get(&version).copied()
    }

    /// Why the conditional record at `offset` was refused; `None` if it was applied (or is not
    /// a conditional record, or was not applied yet).
    pub fn refusal(&self, offset: i64) -> Option<&Refusal> {
        self.refusals.get(&offset)
    }

    pub(super) fn set_schema(&mut self, offset: i64, schema: XdmSchema) {
        self.revisions
            .entry(schema.id.clone())
            .or_default()
            .insert(schema.version, offset);
        self.schemas
            .entry(schema.id.clone())
            .or_default()
            .insert(schema.version, schema);
    }

    pub(super) fn apply_record(&mut self, offset: i64, key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            // Tombstone: the key says what to forget.
            match key.split_once('/') {
                Some(("stream", id)) => {
                    self.streams.remove(id);
                }
                Some(("apiKey", id)) => {
                    self.api_keys.remove(id);
                }
                Some(("dataset" | "datasetCreation", id)) => {
                    self.datasets.remove(id);
                }
                Some(("schema", rest)) => {
                    if let Some((id, version)) = rest.rsplit_once('@') {
                        if let (Some(versions), Ok(v)) = (self.schemas.get_mut(id), version.parse())
                        {
                            versions.remove(&v);
                            if let Some(revisions) = self.revisions.get_mut(id) {
                                revisions.remove(&v);
                            }
                        }
                    }
                }
                _ => tracing::warn!(key, "catalog tombstone with an unknown key"),
            }
            return;
        };
        match serde_json::from_slice::<CatalogRecord>(value) {
            Ok(CatalogRecord::Stream(s)) => {
                self.streams.insert(s.id.clone(), s);
            }
            Ok(CatalogRecord::ApiKey(k)) => {
                self.api_keys.insert(k.id.clone(), k);
            }
            Ok(CatalogRecord::Schema(s)) => self.set_schema(offset, s),
            Ok(CatalogRecord::Dataset(d)) => {
                self.datasets.insert(d.id.clone(), d);
            }
            Err(e) => match serde_json::from_slice::<Conditional>(value) {
                Ok(c) => self.decide(offset, c),
                // Records of kinds this version does not know (written by a newer control) are
                // skipped, not fatal, so stages can be upgraded one at a time.
                Err(_) => tracing::debug!(key, error = %e, "skipping catalog record"),
            },
        }
    }
}

impl Fold for CatalogState {
    fn apply(&mut self, _: i32, offset: i64, key: &str, value: Option<&[u8]>) {
        self.apply_record(offset, key, value);
    }
}

/// A live, in-memory view of the catalog, shared by all handlers of a process.
#[derive(Clone)]
pub struct CatalogView(Follower<CatalogState>);

impl CatalogView {
    /// Starts following the catalog topic (which must exist; one partition) in a background task.
    pub fn start(kafka: &KafkaSettings, topics: &Topics) -> Result<Self, CatalogError> {
        Ok(Self(Follower::start(
            kafka,
            &topics.catalog(),
            &[0],
            "cdp-catalog",
        )?))
    }

    pub fn read(&self) -> RwLockReadGuard<'_, CatalogState> {
        self.0.read()
    }

    pub fn stream(&self, id: &str) -> Option<Stream> {
        self.read().streams.get(id).cloned()
    }

    /// Waits until the record at `offset` has been applied (read-your-writes for control).
    pub async fn wait_for(&self, offset: i64, timeout: Duration) -> Result<(), CatalogError> {
        Ok(self.0.wait_for(0, offset, timeout).await?)
    }

    /// Waits until everything in the catalog at call time has been applied, so a stage starts
    /// serving with the complete catalog.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), CatalogError> {
        Ok(self.0.caught_up(timeout).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PayloadType;

    fn stream(id: &str) -> Stream {
        Stream {
            id: id.into(),
            name: "web".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            payload_type: PayloadType::Json,
            authentication_required: false,
            rate_limit: None,
            dataset_id: None,
            schema_ref: None,
            created_at: 0,
        }
    }

    #[test]
    fn apply_then_tombstone() {
        let mut s = CatalogState::default();
        let rec = serde_json::to_vec(&CatalogRecord::Stream(stream("a"))).unwrap();
        s.apply_record(0, "stream/a", Some(&rec));
        assert!(s.streams.contains_key("a"));
        s.apply_record(1, "stream/a", None);
        assert!(s.streams.is_empty());
    }

    #[test]
    fn unknown_kind_is_skipped() {
        let mut s = CatalogState::default();
        s.apply_record(0, "segment/x", Some(br#"{"kind":"segment","id":"x"}"#));
        assert!(s.streams.is_empty() && s.api_keys.is_empty());
    }
}
