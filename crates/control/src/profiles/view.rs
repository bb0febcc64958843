//! The profiles as the read APIs see them: `profile.updates` and `identity.graph` followed from
//! the beginning (read_committed) and folded into memory.
//!
//! - [`ProfileState`] (from `profile.updates`): per profile, its identities, fragments by
//!   `(datasetId, owner)`, its newest [`MAX_EVENTS`] events, event count, flag, the last
//!   [`MAX_REFUSED`] refused identities and when it last changed. The profile stage holds the
//!   full event history (and its changelog is the authority); this view keeps only the newest
//!   events, which is what the Profile API pages through.
//! - [`GraphState`] (from `identity.graph`): which profile holds an identity, each profile's
//!   identities, each profile's graph history (newest [`MAX_PROFILE_HISTORY`]) and, per
//!   identity, the changes that name it (cuts, evictions, splits; newest
//!   [`MAX_IDENTITY_HISTORY`]).
//!
//! The graph is the authority on which profile holds an identity; the profile's content comes
//! from `profile.updates`, which the profile stage writes after the identity stage decided, so a
//! new profile can be known to the graph a moment before its content arrives (it then shows no
//! attributes and no events). Nothing here is authoritative: a restart rebuilds it.
//!
//! A record that cannot be read is logged, counted ([`ProfileView::malformed`]) and skipped.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::RwLockReadGuard;
use std::time::Duration;

use crate::profiles::memberships::{Membership, MembershipState, SegmentTally};
use cdp_contract::admin::partitions_of;
use cdp_contract::follower::{Fold, FollowError, Follower};
use cdp_contract::records::{
    Change, Fragment, GraphChange, GraphEvent, GraphRecord, Identity, ProfileUpdate, Refused,
    StoredEvent,
};
use cdp_contract::{KafkaSettings, Topics};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use serde::Serialize;

/// At most this many events per profile are kept (the newest by `(timestamp, itemId)`).
pub const MAX_EVENTS: usize = 1_000;
/// At most this many refused identities per profile are kept (the latest), for the audit.
pub const MAX_REFUSED: usize = 50;
/// At most this many graph changes per profile are kept (the newest).
pub const MAX_PROFILE_HISTORY: usize = 500;
/// At most this many changes naming one identity (cuts, evictions, splits) are kept.
pub const MAX_IDENTITY_HISTORY: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum ProfileViewError {
    #[error("cannot create the metadata client for {topic}: {source}")]
    Client { topic: String, source: KafkaError },
    #[error("cannot read the partitions of {topic}: {source}")]
    Metadata { topic: String, source: KafkaError },
    #[error("the topic {topic} does not exist (create the profile topics first)")]
    MissingTopic { topic: String },
    #[error("the partition lookup of {topic} did not finish")]
    Lookup { topic: String },
    #[error("profile view: {0}")]
    Follow(#[from] FollowError),
}

/// An event's place in a profile's history: `(timestampMs, itemId)`.
pub type EventKey = (i64, String);

/// A refused identity of an update, with when the update was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedIdentity {
    #[serde(flatten)]
    pub refused: Refused,
    pub time_ms: i64,
}

/// One profile as `profile.updates` tells it.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub profile_id: String,
    pub org_id: String,
    pub sandbox: String,
    /// The identities the last update named.
    pub identities: Vec<Identity>,
    pub fragments: BTreeMap<(String, Identity), Fragment>,
    /// The newest [`MAX_EVENTS`] events.
    pub events: BTreeMap<EventKey, StoredEvent>,
    /// Item id → timestamp of the kept events (an event is held once).
    event_times: HashMap<String, i64>,
    /// Events in the profile's history, as the profile stage counts them (all of them, not
    /// only the kept ones).
    pub event_count: u32,
    pub flagged: bool,
    /// The latest refused identities, oldest first.
    pub refused: VecDeque<RefusedIdentity>,
    pub last_modified_ms: i64,
}

impl Profile {
    fn insert_event(&mut self, event: StoredEvent) {
        if let Some(old) = self.event_times.remove(&event.item_id) {
            self.events.remove(&(old, event.item_id.clone()));
        }
        self.event_times
            .insert(event.item_id.clone(), event.timestamp_ms);
        self.events
            .insert((event.timestamp_ms, event.item_id.clone()), event);
        while self.events.len() > MAX_EVENTS {
            if let Some(((_, item), _)) = self.events.pop_first() {
                self.event_times.remove(&item);
            }
        }
    }

    fn remove_events(&mut self, items: &[String]) {
        for item in items {
            if let Some(ts) = self.event_times.remove(item) {
                self.events.remove(&(ts, item.clone()));
            }
        }
    }

    /// Up to `limit` events older than `before` (all when `None`), newest first, and the key
    /// to continue from when more remain.
    pub fn events_page(
        &self,
        before: Option<&EventKey>,
        limit: usize,
    ) -> (Vec<&StoredEvent>, Option<EventKey>) {
        let upper = match before {
            Some(k) => Bound::Excluded(k.clone()),
            None => Bound::Unbounded,
        };
        let mut iter = self.events.range((Bound::Unbounded, upper)).rev();
        let page: Vec<(&EventKey, &StoredEvent)> = iter.by_ref().take(limit).collect();
        let next = match (iter.next(), page.last()) {
            (Some(_), Some((k, _))) => Some((*k).clone()),
            _ => None,
        };
        (page.into_iter().map(|(_, e)| e).collect(), next)
    }

    /// Fragments owned by `owner` only (`None`: every fragment).
    pub fn fragments_of<'a>(
        &'a self,
        owner: Option<&'a Identity>,
    ) -> impl Iterator<Item = &'a Fragment> + 'a {
        self.fragments
            .values()
            .filter(move |f| owner.is_none_or(|o| f.owner == *o))
    }
}

/// The fold of `profile.updates`.
#[derive(Debug, Default)]
pub struct ProfileState {
    profiles: HashMap<String, Profile>,
    malformed: u64,
}

impl ProfileState {
    pub fn get(&self, profile_id: &str) -> Option<&Profile> {
        self.profiles.get(profile_id)
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Records that could not be read.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Applies one update.
    pub fn apply_update(&mut self, update: ProfileUpdate) {
        let ProfileUpdate {
            profile_id,
            org_id,
            sandbox,
            time_ms,
            change,
            identities,
            attributes: _,
            removed_events,
            event_count,
            flagged,
            refused,
        } = update;
        if let Change::Merged { .. } = change {
            // Its events and fragments arrive at `into` as ordinary updates.
            self.profiles.remove(&profile_id);
            return;
        }
        let p = self
            .profiles
            .entry(profile_id.clone())
            .or_insert_with(|| Profile {
                profile_id,
                ..Profile::default()
            });
        match change {
            Change::Event { event } => p.insert_event(event),
            Change::Record { fragment } => {
                p.fragments.insert(
                    (fragment.dataset_id.clone(), fragment.owner.clone()),
                    fragment,
                );
            }
            Change::Split { moved } => {
                p.fragments.retain(|(_, owner), _| !moved.contains(owner));
            }
            Change::Identities | Change::Expired | Change::Merged { .. } => {}
        }
        // Set by splits and expiries; honoured whatever the change.
        p.remove_events(&removed_events);
        p.org_id = org_id;
        p.sandbox = sandbox;
        p.identities = identities;
        p.event_count = event_count;
        p.flagged = flagged;
        for r in refused {
            p.refused.push_back(RefusedIdentity {
                refused: r,
                time_ms,
            });
        }
        while p.refused.len() > MAX_REFUSED {
            p.refused.pop_front();
        }
        p.last_modified_ms = p.last_modified_ms.max(time_ms);
    }
}

impl Fold for ProfileState {
    fn apply(&mut self, partition: i32, offset: i64, key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            // Not written by the profile stage; read as "this profile is gone".
            self.profiles.remove(key);
            return;
        };
        match decode_update(value) {
            Ok(update) => self.apply_update(update),
            Err(error) => {
                self.malformed += 1;
                tracing::warn!(
                    topic = "profile.updates",
                    partition,
                    offset,
                    key,
                    %error,
                    "skipping a profile update that cannot be read"
                );
            }
        }
    }
}

/// Reads a `profile.updates` value.
pub fn decode_update(value: &[u8]) -> Result<ProfileUpdate, serde_json::Error> {
    serde_json::from_slice(value)
}

/// One graph change with its offset on `identity.graph` (its place in the graph's order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamped {
    pub offset: i64,
    pub event: GraphEvent,
}

/// A profile's identities, from the last `Members` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub org_id: String,
    pub sandbox: String,
    pub identities: Vec<Identity>,
    pub time_ms: i64,
}

type IdentityKey = (String, String, Identity);

/// The fold of `identity.graph`.
#[derive(Debug, Default)]
pub struct GraphState {
    by_identity: HashMap<IdentityKey, String>,
    members: HashMap<String, Members>,
    /// Org and sandbox of every profile id seen (kept after it is gone: small, and it places
    /// the changes of a gone profile in their sandbox).
    tenants: HashMap<String, (String, String)>,
    /// Per profile, oldest first.
    history: HashMap<String, VecDeque<Stamped>>,
    /// Per identity (any sandbox: the profile id of each change tells which), oldest first.
    identity_history: HashMap<Identity, VecDeque<Stamped>>,
    malformed: u64,
}

impl GraphState {
    /// The profile holding `identity` in the sandbox.
    pub fn profile_of(&self, org: &str, sandbox: &str, identity: &Identity) -> Option<&str> {
        self.by_identity
            .get(&(org.to_string(), sandbox.to_string(), identity.clone()))
            .map(String::as_str)
    }

    pub fn members(&self, profile_id: &str) -> Option<&Members> {
        self.members.get(profile_id)
    }

    /// Records that could not be read.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// The changes of `profile_id` and those naming `identity` in the sandbox, newest first.
    pub fn history(
        &self,
        org: &str,
        sandbox: &str,
        profile_id: &str,
        identity: &Identity,
    ) -> Vec<&Stamped> {
        let own = self.history.get(profile_id);
        let mut all: Vec<&Stamped> = own.into_iter().flatten().collect();
        let seen: HashSet<i64> = all.iter().map(|s| s.offset).collect();
        let in_sandbox = |s: &&Stamped| {
            self.tenants
                .get(&s.event.profile_id)
                .is_some_and(|(o, sb)| o == org && sb == sandbox)
        };
        all.extend(
            self.identity_history
                .get(identity)
                .into_iter()
                .flatten()
                .filter(|s| !seen.contains(&s.offset))
                .filter(in_sandbox),
        );
        all.sort_by_key(|s| std::cmp::Reverse(s.offset));
        all
    }

    /// Applies one record; `offset` orders the history.
    pub fn apply_record(&mut self, offset: i64, record: GraphRecord) {
        match record {
            GraphRecord::Members {
                profile_id,
                org_id,
                sandbox,
                seq: _,
                time_ms,
                identities,
            } => self.set_members(profile_id, org_id, sandbox, time_ms, identities),
            GraphRecord::Change(event) => self.record_change(offset, event),
            // Identities of one record that were not linked: the profile's audit shows them
            // (from `profile.updates`).
            GraphRecord::Refused { .. } => {}
        }
    }

    fn set_members(
        &mut self,
        profile_id: String,
        org_id: String,
        sandbox: String,
        time_ms: i64,
        identities: Vec<Identity>,
    ) {
        self.tenants
            .insert(profile_id.clone(), (org_id.clone(), sandbox.clone()));
        if let Some(old) = self.members.remove(&profile_id) {
            for identity in old.identities {
                if identities.contains(&identity) {
                    continue;
                }
                let key = (old.org_id.clone(), old.sandbox.clone(), identity);
                // Another profile may have taken it already.
                if self.by_identity.get(&key) == Some(&profile_id) {
                    self.by_identity.remove(&key);
                }
            }
        }
        if identities.is_empty() {
            // The profile is gone. Its history went to the profile it merged into.
            return;
        }
        for identity in &identities {
            self.by_identity.insert(
                (org_id.clone(), sandbox.clone(), identity.clone()),
                profile_id.clone(),
            );
        }
        self.members.insert(
            profile_id,
            Members {
                org_id,
                sandbox,
                identities,
                time_ms,
            },
        );
    }

    fn record_change(&mut self, offset: i64, event: GraphEvent) {
        let stamped = Stamped { offset, event };
        let named: Vec<&Identity> = match &stamped.event.change {
            GraphChange::Cut { a, b, .. } => vec![a, b],
            GraphChange::Evicted { identity } => vec![identity],
            GraphChange::Split { moved } => moved.iter().collect(),
            GraphChange::Linked { .. }
            | GraphChange::Created { .. }
            | GraphChange::Merged { .. } => Vec::new(),
        };
        for identity in named {
            let list = self.identity_history.entry(identity.clone()).or_default();
            list.push_back(stamped.clone());
            while list.len() > MAX_IDENTITY_HISTORY {
                list.pop_front();
            }
        }
        let profile_id = stamped.event.profile_id.clone();
        if let GraphChange::Merged { into } = &stamped.event.change {
            // The history follows the identities into the surviving profile.
            let mut moved: Vec<Stamped> = self
                .history
                .remove(&profile_id)
                .map(Vec::from)
                .unwrap_or_default();
            moved.push(stamped.clone());
            if let Some((org, sandbox)) = self.tenants.get(&profile_id).cloned() {
                self.tenants.insert(into.clone(), (org, sandbox));
            }
            let target = self.history.entry(into.clone()).or_default();
            let mut all: Vec<Stamped> = target.drain(..).chain(moved).collect();
            all.sort_by_key(|s| s.offset);
            all.dedup_by_key(|s| s.offset);
            target.extend(all);
            while target.len() > MAX_PROFILE_HISTORY {
                target.pop_front();
            }
            return;
        }
        let list = self.history.entry(profile_id).or_default();
        list.push_back(stamped);
        while list.len() > MAX_PROFILE_HISTORY {
            list.pop_front();
        }
    }
}

impl Fold for GraphState {
    fn apply(&mut self, partition: i32, offset: i64, _key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            return;
        };
        match serde_json::from_slice::<GraphRecord>(value) {
            Ok(record) => self.apply_record(offset, record),
            Err(error) => {
                self.malformed += 1;
                tracing::warn!(
                    topic = "identity.graph",
                    partition,
                    offset,
                    %error,
                    "skipping a graph record that cannot be read"
                );
            }
        }
    }
}

/// A live view of the profiles and the identity graph, cheap to clone, shared by every handler
/// of a process. The background readers stop when the last clone is dropped.
#[derive(Clone)]
pub struct ProfileView {
    profiles: Follower<ProfileState>,
    graph: Follower<GraphState>,
    /// `None` when `segment.membership.json` did not exist at start (no segment stage yet).
    memberships: Option<Follower<MembershipState>>,
}

impl ProfileView {
    /// Starts following every partition of `profile.updates` and `identity.graph` (which must
    /// exist) from the beginning, in background tasks. Partitions added later are not read.
    pub async fn start(kafka: &KafkaSettings, topics: &Topics) -> Result<Self, ProfileViewError> {
        let updates = topics.profile_updates();
        let graph = topics.identity_graph();
        let update_partitions = partitions(kafka, &updates).await?;
        let graph_partitions = partitions(kafka, &graph).await?;
        let membership_topic = topics.segment_membership_json();
        let memberships = match partitions(kafka, &membership_topic).await {
            Ok(p) => Some(Follower::start(
                kafka,
                &membership_topic,
                &p,
                "cdp-membership-view",
            )?),
            Err(ProfileViewError::MissingTopic { topic }) => {
                tracing::warn!(%topic, "no membership topic: profiles show no segment memberships");
                None
            }
            Err(e) => return Err(e),
        };
        Ok(Self {
            profiles: Follower::start(kafka, &updates, &update_partitions, "cdp-profile-view")?,
            graph: Follower::start(kafka, &graph, &graph_partitions, "cdp-graph-view")?,
            memberships,
        })
    }

    /// Waits until everything on both topics at call time has been applied.
    pub async fn caught_up(&self, timeout: Duration) -> Result<(), ProfileViewError> {
        self.graph.caught_up(timeout).await?;
        self.profiles.caught_up(timeout).await?;
        if let Some(m) = &self.memberships {
            m.caught_up(timeout).await?;
        }
        Ok(())
    }

    pub fn profiles(&self) -> RwLockReadGuard<'_, ProfileState> {
        self.profiles.read()
    }

    pub fn graph(&self) -> RwLockReadGuard<'_, GraphState> {
        self.graph.read()
    }

    /// Segment id → membership of a profile (empty without a segment stage).
    pub fn memberships_of(&self, profile_id: &str) -> BTreeMap<String, Membership> {
        self.memberships
            .as_ref()
            .and_then(|m| m.read().of(profile_id).cloned())
            .unwrap_or_default()
    }

    /// Segment id → member count and recent entries and exits (empty without a segment stage).
    pub fn segment_tallies(&self) -> HashMap<String, SegmentTally> {
        self.memberships
            .as_ref()
            .map(|m| m.read().segments().clone())
            .unwrap_or_default()
    }

    /// Records of either topic that could not be read (skipped).
    pub fn malformed(&self) -> u64 {
        self.profiles().malformed()
            + self.graph().malformed()
            + self
                .memberships
                .as_ref()
                .map_or(0, |m| m.read().malformed())
    }
}

/// The partition ids of `topic` (a blocking metadata request, run off the async threads).
async fn partitions(kafka: &KafkaSettings, topic: &str) -> Result<Vec<i32>, ProfileViewError> {
    let client: BaseConsumer =
        kafka
            .admin("cdp-profile-view-metadata")
            .create()
            .map_err(|source| ProfileViewError::Client {
                topic: topic.to_string(),
                source,
            })?;
    let name = topic.to_string();
    let found = tokio::task::spawn_blocking(move || partitions_of(&client, &name))
        .await
        .map_err(|_| ProfileViewError::Lookup {
            topic: topic.to_string(),
        })?
        .map_err(|source| ProfileViewError::Metadata {
            topic: topic.to_string(),
            source,
        })?;
    if found.is_empty() {
        return Err(ProfileViewError::MissingTopic {
            topic: topic.to_string(),
        });
    }
    Ok(found)
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
