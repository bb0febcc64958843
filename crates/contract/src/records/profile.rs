//! The records of the profile topics, as JSON (camelCase):
//!
//! - `<ns>.profile.sequence` (one partition): [`Item`]s — events and profile records of
//!   profile-enabled datasets with their checked identities, written by the intake stage, and
//!   items handed back by the profile stage to be placed again after a merge or split.
//! - `<ns>.profile.resolved` (keyed by profile id): [`Resolved`] — the identity stage's
//!   decisions: each item with its profile, and the graph's merges, splits and memberships.
//! - `<ns>.profile.updates` (keyed by profile id): [`ProfileUpdate`] — what changed in a
//!   profile, bounded in size: the segment stage and the Profile API read it.
//!
//! The records of `<ns>.identity.graph` are in [`super::graph`].

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::identity::{Identity, NamespaceTraits, Refused};

/// Whether an item is a behavioural event or a profile record (attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ItemKind {
    Event,
    Record,
}

/// An item handed back by the profile stage after a merge or split: it links nothing, it is
/// only placed again by its owner identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transfer {
    /// The profile it came from.
    pub from: String,
    /// Where it goes if its owner identity is in no graph any more (it was evicted).
    pub hint: String,
    /// A fragment's original position in the identity stage's input, which orders fragments
    /// ingested in the same millisecond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_seq: Option<u64>,
}

/// One event or profile record on its way to a profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub kind: ItemKind,
    pub org_id: String,
    pub sandbox: String,
    pub dataset_id: String,
    /// The event's `_id`, else `<dataset>:<partition>:<offset>` of events.valid: a profile
    /// holds an event once, however often it arrives.
    pub item_id: String,
    /// The event's `timestamp` (epoch ms), else its ingestion time.
    pub timestamp_ms: i64,
    /// When the edge received it.
    pub ingest_ms: i64,
    /// Linkable identities with their namespace traits, the primary one first.
    pub identities: Vec<(Identity, NamespaceTraits)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
    /// Set by the identity stage: the identity that owns the item (events of a person stay
    /// with the identity that names them most strongly when a graph splits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
    /// An event read again from `events.valid` to fill in fields its profile did not keep (a
    /// definition now reads them): placed by its owner identity without linking anything, it
    /// only refreshes an event the profile holds.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh: bool,
    /// The XDM entity (for a record: its attributes), passed through unparsed.
    pub entity: Box<RawValue>,
}

/// The identity stage's decisions, in the order it made them. Externally tagged
/// (`{"item": {…}}`): an internally tagged enum is buffered before it is read, and the item's
/// entity, passed through unparsed, cannot be read from a buffer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Resolved {
    /// An item for this profile; `identities` is set when the profile's identities changed.
    #[serde(rename_all = "camelCase")]
    Item {
        profile_id: String,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identities: Option<Vec<Identity>>,
        item: Box<Item>,
    },
    /// The profile's identities changed.
    #[serde(rename_all = "camelCase")]
    Graph {
        profile_id: String,
        seq: u64,
        org_id: String,
        sandbox: String,
        identities: Vec<Identity>,
    },
    /// The profile joined `into`: everything it holds goes back to be placed again.
    #[serde(rename_all = "camelCase")]
    Merged {
        profile_id: String,
        seq: u64,
        org_id: String,
        sandbox: String,
        into: String,
    },
    /// These identities left the profile: what they own goes back to be placed again.
    #[serde(rename_all = "camelCase")]
    Split {
        profile_id: String,
        seq: u64,
        org_id: String,
        sandbox: String,
        moved: Vec<Identity>,
        identities: Vec<Identity>,
    },
    /// The identity fast path: an event with one identity, sent by the profile intake straight
    /// to the profile that identity would have created (`profile_id`, its owner identity's
    /// digest), without asking the identity owner. The engine applies it only if that profile
    /// holds the identity; otherwise it forwards the item to the identity owner, which places
    /// (and links) it as if it had come from the intake.
    #[serde(rename_all = "camelCase")]
    Direct { profile_id: String, item: Box<Item> },
}

impl Resolved {
    pub fn profile_id(&self) -> &str {
        match self {
            Resolved::Item { profile_id, .. }
            | Resolved::Graph { profile_id, .. }
            | Resolved::Merged { profile_id, .. }
            | Resolved::Split { profile_id, .. }
            | Resolved::Direct { profile_id, .. } => profile_id,
        }
    }
}

/// An event as a profile holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    pub item_id: String,
    pub dataset_id: String,
    pub timestamp_ms: i64,
    pub ingest_ms: i64,
    pub owner: Identity,
    /// Every identity of the event.
    pub identities: Vec<Identity>,
    /// Read through a JSON value: a profile update's change is a tagged enum, which serde
    /// buffers before reading, and a raw value cannot be read from that buffer.
    #[serde(deserialize_with = "raw_through_value")]
    pub entity: Box<RawValue>,
}

fn raw_through_value<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<RawValue>, D::Error> {
    let value = Value::deserialize(d)?;
    serde_json::value::to_raw_value(&value).map_err(serde::de::Error::custom)
}

/// A profile record's attributes, one per dataset and owner identity (the latest replaces
/// the earlier one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fragment {
    pub dataset_id: String,
    pub owner: Identity,
    pub timestamp_ms: i64,
    pub ingest_ms: i64,
    /// Position in the identity stage's input: orders fragments ingested in the same ms.
    pub seq: u64,
    /// The record without its `identityMap` (the graph is the authority on identities).
    pub attributes: Value,
}

/// What changed in a profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Change {
    /// A new event in the profile's history.
    Event { event: StoredEvent },
    /// A profile record (fragment) arrived; `attributes` holds the new merged attributes.
    Record { fragment: Fragment },
    /// The profile's identities changed.
    Identities,
    /// The profile joined `into`; it no longer exists (its events and fragments arrive there
    /// as ordinary updates).
    Merged { into: String },
    /// Identities left the profile, with the events and fragments they own
    /// (`removedEvents`).
    Split { moved: Vec<Identity> },
    /// Events left the profile's history because they are older than its time-to-live.
    Expired,
}

/// The value on `profile.updates`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProfileUpdate {
    pub profile_id: String,
    pub org_id: String,
    pub sandbox: String,
    /// When the profile stage made the change (epoch ms).
    pub time_ms: i64,
    #[serde(flatten)]
    pub change: Change,
    /// The profile's identities now.
    pub identities: Vec<Identity>,
    /// The merged attributes under the sandbox's default merge policy, when they changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Value>,
    /// Item ids of events that left the profile (split, expiry).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed_events: Vec<String>,
    /// Events in the profile's history now.
    pub event_count: u32,
    /// Over the event soft cap: segmentation skips the profile.
    pub flagged: bool,
    /// Identities of the change's item that were not linked, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolved_items_and_profile_updates_read_back_with_their_entities() {
        let entity = RawValue::from_string(r#"{"_id":"e1","n":[1,2]}"#.to_string()).unwrap();
        let item = Item {
            kind: ItemKind::Event,
            org_id: "o".into(),
            sandbox: "prod".into(),
            dataset_id: "d".into(),
            item_id: "e1".into(),
            timestamp_ms: 1,
            ingest_ms: 2,
            identities: Vec::new(),
            refused: Vec::new(),
            owner: Some(Identity::new("CRMID", "c")),
            transfer: None,
            refresh: false,
            entity: entity.clone(),
        };
        let r = Resolved::Item {
            profile_id: "p".into(),
            seq: 3,
            identities: None,
            item: Box::new(item),
        };
        let back: Resolved = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        let Resolved::Item { item, .. } = back else {
            panic!("an item")
        };
        assert_eq!(item.entity.get(), entity.get());

        let update = ProfileUpdate {
            profile_id: "p".into(),
            org_id: "o".into(),
            sandbox: "prod".into(),
            time_ms: 4,
            change: Change::Event {
                event: StoredEvent {
                    item_id: "e1".into(),
                    dataset_id: "d".into(),
                    timestamp_ms: 1,
                    ingest_ms: 2,
                    owner: Identity::new("CRMID", "c"),
                    identities: vec![Identity::new("CRMID", "c")],
                    entity,
                },
            },
            identities: vec![Identity::new("CRMID", "c")],
            attributes: None,
            removed_events: Vec::new(),
            event_count: 1,
            flagged: false,
            refused: Vec::new(),
        };
        let json = serde_json::to_value(&update).unwrap();
        assert_eq!(json["type"], "event");
        assert_eq!(json["event"]["entity"]["n"][1], 2);
        let back: ProfileUpdate =
            serde_json::from_slice(&serde_json::to_vec(&json).unwrap()).unwrap();
        let Change::Event { event } = back.change else {
            panic!("an event")
        };
        assert_eq!(event.entity.get(), r#"{"_id":"e1","n":[1,2]}"#);
    }
}
