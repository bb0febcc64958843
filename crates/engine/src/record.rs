//! The one value the engine keeps per profile: identities, fragments and their merged
//! attributes, the events segments need (each projected to the fields the sandbox's
//! definitions read, see [`crate::projection`]), memberships and when each streaming
//! definition is due again. One state key per profile, so an event costs one changelog
//! record.
//!
//! Encoding: MessagePack (structs as arrays, no field names) after a format byte, chosen by
//! measurement (docs/BENCHMARKS.md, "Profile record encoding"): as small as postcard, faster
//! to turn back into the JSON values the evaluator reads, and fields added at the end with
//! `#[serde(default)]` still read old records. Repeated strings (datasets, event owners, event
//! types) are stored once per profile and referred to by index.

use std::collections::BTreeMap;

use cdp_contract::records::{Fragment, Identity, Refused};
use cdp_pql::incremental::SegmentState;
use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The first byte of every stored record: its format.
const FORMAT: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("a stored profile is empty")]
    Empty,
    #[error("a stored profile has format {0}, this version reads {FORMAT}")]
    Format(u8),
    #[error("a stored profile cannot be read: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("a profile cannot be written: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
}

/// One profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileRecord {
    pub org: String,
    pub sandbox: String,
    /// The profile's identities, as the identity graph says.
    pub identities: Vec<Identity>,
    /// The identities that own events and fragments (by index from [`Event::owner`]).
    pub owners: Vec<Identity>,
    /// Datasets of events (by index from [`Event::dataset`]).
    pub datasets: Vec<String>,
    /// Event types (by index from [`Event::ty`]).
    pub types: Vec<String>,
    /// Events within their time-to-live, oldest first (by timestamp, then id).
    pub events: Vec<Event>,
    /// Profile records, one per dataset and owner identity.
    pub fragments: Vec<Fragment>,
    /// The fragments merged under the sandbox's default merge policy (`{}` without any).
    pub attributes: Value,
    /// The latest identities that were not linked, with why and when (epoch ms; the audit).
    pub refused: Vec<(Refused, i64)>,
    /// Over the event limit: segmentation skips the profile.
    pub flagged: bool,
    /// Segment id → when the profile (last) qualified (epoch ms).
    pub members: Vec<(String, i64)>,
    /// Streaming definition id → when its answer can change with no new data (epoch ms).
    pub due: Vec<(String, i64)>,
    /// When the profile last changed (epoch ms).
    pub modified_ms: i64,
    /// The streaming definitions (fingerprint) it was last evaluated with: when the sandbox's
    /// differ, every definition is evaluated and memberships of those gone end.
    #[serde(default)]
    pub definitions: u64,
    /// Segments whose membership a schedule decided (batch definitions).
    #[serde(default)]
    pub scheduled: Vec<String>,
    /// Memberships that ended, kept for [`EXITED_KEPT_MS`] as the Profile API shows them:
    /// `(segment, last qualification time, exit time)`.
    #[serde(default)]
    pub exited: Vec<(String, i64, i64)>,
    /// When its streaming definitions were last evaluated (epoch ms): the events that left the
    /// lookback since are changes of the definitions reading them.
    #[serde(default)]
    pub evaluated_ms: i64,
    /// Events not stored because the profile was at its event cap (its audit shows it).
    #[serde(default)]
    pub events_not_stored: u64,
}

/// How long an ended membership stays on the profile (AEP shows exits for 30 days).
pub const EXITED_KEPT_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// One event, as segments need it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The event's `_id` (else its place on events.valid).
    pub id: String,
    /// Its timestamp (epoch ms).
    pub ts: i64,
    /// When the edge received it, after `ts` (ms; usually small).
    pub ingest_after: i64,
    pub dataset: u32,
    pub owner: u32,
    /// Its `eventType`, if it has a string one.
    pub ty: Option<u32>,
    /// Streaming segmentation reads it: it arrived within the lookback and was not bot
    /// traffic (seed 003).
    pub segmented: bool,
    /// Bot traffic (seed 003): neither streaming nor batch segmentation reads it.
    pub bot: bool,
    /// The fields the sandbox's definitions read (and the keep-list), without `_id` and
    /// `eventType`.
    pub fields: Value,
}

impl ProfileRecord {
    pub fn new(org: &str, sandbox: &str) -> Self {
        Self {
            org: org.to_string(),
            sandbox: sandbox.to_string(),
            attributes: Value::Object(Map::new()),
            ..Self::default()
        }
    }

    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = vec![FORMAT];
        rmp_serde::encode::write(&mut out, self)?;
        Ok(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        match bytes.split_first() {
            None => Err(RecordError::Empty),
            Some((&FORMAT, rest)) => Ok(rmp_serde::from_slice(rest)?),
            Some((&other, _)) => Err(RecordError::Format(other)),
        }
    }

    /// The index of `value` in a table, added if new.
    fn intern<T: PartialEq + Clone>(table: &mut Vec<T>, value: &T) -> u32 {
        match table.iter().position(|v| v == value) {
            Some(i) => i as u32,
            None => {
                table.push(value.clone());
                (table.len() - 1) as u32
            }
        }
    }

    pub fn owner_index(&mut self, owner: &Identity) -> u32 {
        Self::intern(&mut self.owners, owner)
    }

    pub fn dataset_index(&mut self, dataset: &str) -> u32 {
        Self::intern(&mut self.datasets, &dataset.to_string())
    }

    pub fn type_index(&mut self, ty: &str) -> u32 {
        Self::intern(&mut self.types, &ty.to_string())
    }

    pub fn owner_of(&self, e: &Event) -> Option<&Identity> {
        self.owners.get(e.owner as usize)
    }

    pub fn dataset_of(&self, e: &Event) -> Option<&str> {
        self.datasets.get(e.dataset as usize).map(String::as_str)
    }

    pub fn type_of(&self, e: &Event) -> Option<&str> {
        e.ty.and_then(|t| self.types.get(t as usize))
            .map(String::as_str)
    }

    /// Where an event with this timestamp and id is, or would go.
    pub fn position(&self, ts: i64, id: &str) -> Result<usize, usize> {
        self.events
            .binary_search_by(|e| (e.ts, e.id.as_str()).cmp(&(ts, id)))
    }

    /// Inserts an event in order; false if it is already held.
    pub fn insert_event(&mut self, event: Event) -> bool {
        match self.position(event.ts, &event.id) {
            Ok(_) => false,
            Err(at) => {
                self.events.insert(at, event);
                true
            }
        }
    }

    /// Drops entries of the owner, dataset and type tables that nothing refers to any more.
    pub fn compact_tables(&mut self) {
        let used = |n: usize, refs: &mut dyn Iterator<Item = u32>| -> Vec<Option<u32>> {
            let mut keep = vec![false; n];
            for r in refs {
                if let Some(k) = keep.get_mut(r as usize) {
                    *k = true;
                }
            }
            let mut next = 0u32;
            keep.into_iter()
                .map(|k| {
                    k.then(|| {
                        next += 1;
                        next - 1
                    })
                })
                .collect()
        };
        let owners = used(self.owners.len(), &mut self.events.iter().map(|e| e.owner));
        let datasets = used(
            self.datasets.len(),
            &mut self.events.iter().map(|e| e.dataset),
        );
        let types = used(
            self.types.len(),
            &mut self.events.iter().filter_map(|e| e.ty),
        );
        if owners.iter().all(Option::is_some)
            && datasets.iter().all(Option::is_some)
            && types.iter().all(Option::is_some)
        {
            return;
        }
        let remap = |map: &[Option<u32>], i: u32| map.get(i as usize).copied().flatten();
        for e in &mut self.events {
            e.owner = remap(&owners, e.owner).unwrap_or(e.owner);
            e.dataset = remap(&datasets, e.dataset).unwrap_or(e.dataset);
            e.ty = e.ty.and_then(|t| remap(&types, t));
        }
        retain_mapped(&mut self.owners, &owners);
        retain_mapped(&mut self.datasets, &datasets);
        retain_mapped(&mut self.types, &types);
    }

    /// The event as the evaluator reads it: its kept fields and its `eventType`.
    pub fn event_value(&self, e: &Event) -> Value {
        let mut v = match &e.fields {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        };
        if let Some(t) = self.type_of(e) {
            v.insert("eventType".into(), Value::String(t.to_string()));
        }
        Value::Object(v)
    }

    /// The event as an entity (what the Profile API lists, what a merge hands on): its kept
    /// fields with `_id`, `eventType` and `timestamp`.
    pub fn entity(&self, e: &Event) -> Value {
        let mut v = self.event_value(e);
        if let Value::Object(m) = &mut v {
            m.insert("_id".into(), Value::String(e.id.clone()));
            if !m.contains_key("timestamp") {
                if let Some(t) = Utc.timestamp_millis_opt(e.ts).single() {
                    m.insert(
                        "timestamp".into(),
                        Value::String(t.to_rfc3339_opts(SecondsFormat::Millis, true)),
                    );
                }
            }
        }
        v
    }

    /// The events streaming segmentation sees at a lookback `floor` (epoch ms; events after it),
    /// as the evaluator reads them, with their times.
    pub fn segment_events(&self, floor: i64) -> (Vec<Value>, Vec<Option<DateTime<Utc>>>) {
        self.events
            .iter()
            .filter(|e| e.segmented && e.ts > floor)
            .map(|e| (self.event_value(e), Utc.timestamp_millis_opt(e.ts).single()))
            .unzip()
    }

    pub fn segments(&self) -> SegmentState {
        SegmentState {
            members: self.members.iter().cloned().collect(),
            due: self.due.iter().cloned().collect(),
        }
    }

    pub fn set_segments(&mut self, state: SegmentState) {
        self.members = state.members.into_iter().collect();
        self.due = state.due.into_iter().collect();
    }

    /// Notes a membership that began (`exited_at: None`) or ended.
    pub fn note_membership(&mut self, segment: &str, since: i64, exited_at: Option<i64>) {
        self.exited.retain(|(s, _, _)| s != segment);
        if let Some(at) = exited_at {
            self.exited.push((segment.to_string(), since, at));
        }
    }

    /// Forgets exits older than [`EXITED_KEPT_MS`].
    pub fn prune_exited(&mut self, now: i64) {
        self.exited.retain(|(_, _, at)| *at > now - EXITED_KEPT_MS);
    }

    pub fn members_map(&self) -> BTreeMap<String, i64> {
        self.members.iter().cloned().collect()
    }

    /// Events in the profile's history.
    pub fn event_count(&self) -> u32 {
        self.events.len() as u32
    }
}

/// Keeps the entries of a table that `map` gives a new index.
fn retain_mapped<T>(table: &mut Vec<T>, map: &[Option<u32>]) {
    let mut i = 0;
    table.retain(|_| {
        i += 1;
        map.get(i - 1).is_some_and(Option::is_some)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, ts: i64, owner: u32, ty: Option<u32>) -> Event {
        Event {
            id: id.into(),
            ts,
            ingest_after: 3,
            dataset: 0,
            owner,
            ty,
            segmented: true,
            bot: false,
            fields: json!({"commerce": {"order": {"priceTotal": 9.5}}}),
        }
    }

    #[test]
    fn a_record_reads_back_and_refuses_another_format() {
        let mut p = ProfileRecord::new("acme", "prod");
        p.identities.push(Identity::new("ECID", "1"));
        let owner = p.owner_index(&Identity::new("ECID", "1"));
        let ty = p.type_index("buy");
        p.dataset_index("ds");
        assert!(p.insert_event(event("b", 20, owner, Some(ty))));
        assert!(p.insert_event(event("a", 10, owner, None)));
        assert!(!p.insert_event(event("a", 10, owner, None)), "held once");
        p.members.push(("s".into(), 5));
        let bytes = p.encode().expect("encode");
        let back = ProfileRecord::decode(&bytes).expect("decode");
        assert_eq!(back, p);
        assert_eq!(back.events[0].id, "a");
        assert_eq!(
            back.entity(&back.events[1]),
            json!({"_id": "b", "eventType": "buy", "timestamp": "1970-01-01T00:00:00.020Z",
                   "commerce": {"order": {"priceTotal": 9.5}}})
        );
        let mut other = bytes.clone();
        other[0] = 9;
        assert!(matches!(
            ProfileRecord::decode(&other),
            Err(RecordError::Format(9))
        ));
        assert!(matches!(
            ProfileRecord::decode(&bytes[..bytes.len() / 2]),
            Err(RecordError::Decode(_))
        ));
    }

    #[test]
    fn tables_drop_what_no_event_refers_to() {
        let mut p = ProfileRecord::new("acme", "prod");
        let a = p.owner_index(&Identity::new("ECID", "a"));
        let b = p.owner_index(&Identity::new("ECID", "b"));
        let x = p.type_index("x");
        let y = p.type_index("y");
        p.insert_event(event("1", 1, a, Some(x)));
        p.insert_event(event("2", 2, b, Some(y)));
        p.events.remove(0);
        p.compact_tables();
        assert_eq!(p.owners, vec![Identity::new("ECID", "b")]);
        assert_eq!(p.types, vec!["y".to_string()]);
        assert_eq!(p.owner_of(&p.events[0]), Some(&Identity::new("ECID", "b")));
        assert_eq!(p.type_of(&p.events[0]), Some("y"));
    }
}
