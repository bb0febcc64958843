//! The identity graph, one sandbox's clusters of linked identities, and the one step that
//! changes it: an observation of identities seen together in a record.
//!
//! The step is a pure function of the clusters it touches and the observation, so every run
//! over the same sequence of observations builds the same graph (the identity stage applies
//! them in the order of its single-partition input). Its rules, after AEP's Identity Service:
//!
//! - identities seen together are linked (a star from the record's first identity);
//! - links are kept newest first; a link that would put two different values of a unique
//!   namespace (`CRMID`) into one cluster is cut — so on a shared device the cookie follows the
//!   person who logged in last, and the older person keeps their own cluster;
//! - a cluster holds at most 50 identities: beyond that the oldest are evicted, partner first,
//!   then cookie, then device, then the people-level ones;
//! - a cluster's id (its profile id) is derived from its strongest identity when it is created
//!   (`CRMID` before `Email` before `ECID`, see [`NamespaceTraits::ownership`]); when clusters
//!   join, the oldest cluster's id survives; when one splits, the part holding the cluster's
//!   strongest identity keeps the id (on a shared device the person who keeps their CRM id
//!   keeps their profile) and the other parts get ids of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cdp_contract::records::{GraphChange, GraphEvent, Identity, NamespaceTraits};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// At most this many identities in one graph.
pub const MAX_GRAPH: usize = 50;

/// An identity in a cluster, with when it was first and last seen (`seq` is the position in
/// the identity stage's input; `*_ms` is wall-clock time, for people).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub identity: Identity,
    pub traits: NamespaceTraits,
    pub first_seq: u64,
    pub last_seq: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// A link between two identities (`a < b`), refreshed each time they are seen together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    pub a: Identity,
    pub b: Identity,
    pub seq: u64,
    pub time_ms: i64,
}

/// One connected set of identities: one person, one profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    pub id: String,
    pub org_id: String,
    pub sandbox: String,
    pub created_seq: u64,
    /// Sorted by identity.
    pub nodes: Vec<Node>,
    /// Sorted by `(a, b)`.
    pub edges: Vec<Edge>,
}

impl Cluster {
    pub fn identities(&self) -> Vec<Identity> {
        self.nodes.iter().map(|n| n.identity.clone()).collect()
    }

    /// The identity whose part keeps this cluster's id when it splits.
    pub fn claim(&self) -> Option<&Identity> {
        strongest(self.nodes.iter())
    }
}

/// The strongest identity of these nodes; among equals the oldest, then the smallest.
fn strongest<'a>(nodes: impl Iterator<Item = &'a Node>) -> Option<&'a Identity> {
    nodes
        .max_by(|x, y| {
            x.traits
                .ownership()
                .cmp(&y.traits.ownership())
                .then_with(|| y.first_seq.cmp(&x.first_seq))
                .then_with(|| y.identity.cmp(&x.identity))
        })
        .map(|n| &n.identity)
}

/// Identities seen together in one record.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub org_id: &'a str,
    pub sandbox: &'a str,
    pub seq: u64,
    pub time_ms: i64,
    /// Linkable identities, the record's first (primary) one first.
    pub identities: &'a [(Identity, NamespaceTraits)],
}

/// The outcome of one observation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Every cluster the observation touched, as it is now.
    pub clusters: Vec<Cluster>,
    /// Ids of clusters whose identities changed (or that are new).
    pub changed: Vec<String>,
    /// `(old id, id of the cluster that now holds its strongest identity)`: profiles that joined another.
    pub retired: Vec<(String, String)>,
    /// `(id, identities that left it)`: profiles that lost identities to other clusters.
    pub moved: Vec<(String, Vec<Identity>)>,
    /// Identities no longer in any graph.
    pub evicted: Vec<Identity>,
    pub history: Vec<GraphEvent>,
}

/// A profile id every instance computes the same way: a digest of an identity (and a salt, 0
/// unless that id is taken), in hex.
pub fn profile_id(org_id: &str, sandbox: &str, identity: &Identity, salt: u32) -> String {
    hex::encode(profile_digest(org_id, sandbox, identity, salt))
}

/// The digest [`profile_id`] is the hex of.
pub fn profile_digest(org_id: &str, sandbox: &str, identity: &Identity, salt: u32) -> [u8; 16] {
    let mut h = Sha256::new();
    for part in [org_id, sandbox, &identity.ns, &identity.id] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    if salt > 0 {
        h.update(salt.to_be_bytes());
    }
    let mut digest = [0; 16];
    digest.copy_from_slice(&h.finalize()[..16]);
    digest
}

/// The identity that owns a record with these identities: the one that names a person most
/// strongly (see [`NamespaceTraits::ownership`]); among equals, the earlier one.
pub fn owner(identities: &[(Identity, NamespaceTraits)]) -> Option<&Identity> {
    let mut best: Option<&(Identity, NamespaceTraits)> = None;
    for candidate in identities {
        if best.is_none_or(|b| candidate.1.ownership() > b.1.ownership()) {
            best = Some(candidate);
        }
    }
    best.map(|(i, _)| i)
}

/// Applies one observation to the clusters its identities belong to (`old`, each at most
/// once); identities of the observation that are in none are new. `in_use` says whether a
/// profile id belongs to a cluster already (new clusters never take one).
pub fn observe(old: Vec<Cluster>, obs: &Observation<'_>, in_use: impl Fn(&str) -> bool) -> Step {
    let mut nodes: BTreeMap<Identity, Node> = BTreeMap::new();
    let mut edges: BTreeMap<(Identity, Identity), Edge> = BTreeMap::new();
    for c in &old {
        for n in &c.nodes {
            nodes.insert(n.identity.clone(), n.clone());
        }
        for e in &c.edges {
            edges.insert((e.a.clone(), e.b.clone()), e.clone());
        }
    }
    for (identity, traits) in obs.identities {
        let node = nodes.entry(identity.clone()).or_insert_with(|| Node {
            identity: identity.clone(),
            traits: *traits,
            first_seq: obs.seq,
            last_seq: obs.seq,
            first_ms: obs.time_ms,
            last_ms: obs.time_ms,
        });
        node.last_seq = obs.seq;
        node.last_ms = obs.time_ms;
        node.traits = *traits;
    }
    let mut added: BTreeSet<(Identity, Identity)> = BTreeSet::new();
    if let Some((center, _)) = obs.identities.first() {
        for (other, _) in &obs.identities[1..] {
            let key = ordered(center, other);
            match edges.get_mut(&key) {
                Some(e) => {
                    e.seq = obs.seq;
                    e.time_ms = obs.time_ms;
                }
                None => {
                    added.insert(key.clone());
                    edges.insert(
                        key.clone(),
                        Edge {
                            a: key.0,
                            b: key.1,
                            seq: obs.seq,
                            time_ms: obs.time_ms,
                        },
                    );
                }
            }
        }
    }

    let mut step = Step::default();
    let event = |profile_id: &str, change: GraphChange| GraphEvent {
        profile_id: profile_id.to_string(),
        seq: obs.seq,
        time_ms: obs.time_ms,
        change,
    };

    // Newest links first; a link that would join two values of a unique namespace is cut.
    let mut order: Vec<Edge> = edges.into_values().collect();
    order.sort_by(|x, y| {
        y.seq
            .cmp(&x.seq)
            .then_with(|| (&x.a, &x.b).cmp(&(&y.a, &y.b)))
    });
    let (mut groups, mut kept, cut) = connect(&nodes, order, true);

    // Over the size limit: evict, then the rest may fall apart into several clusters.
    let claims_of_old: Vec<Option<Identity>> = old.iter().map(|c| c.claim().cloned()).collect();
    let anchors: BTreeSet<&Identity> = claims_of_old.iter().flatten().collect();
    let protected: BTreeSet<&Identity> = anchors
        .iter()
        .copied()
        .chain(obs.identities.iter().map(|(i, _)| i))
        .collect();
    let mut evicted: Vec<Identity> = Vec::new();
    for group in &groups {
        if group.len() <= MAX_GRAPH {
            continue;
        }
        let excess = group.len() - MAX_GRAPH;
        let rank = |i: &Identity| {
            let n = &nodes[i];
            (n.traits.eviction_rank(), n.last_seq, i.clone())
        };
        let mut first: Vec<&Identity> = group.iter().filter(|i| !protected.contains(i)).collect();
        first.sort_by_key(|i| rank(i));
        let mut second: Vec<&Identity> = group
            .iter()
            .filter(|i| protected.contains(i) && !anchors.contains(i))
            .collect();
        second.sort_by_key(|i| rank(i));
        evicted.extend(first.into_iter().chain(second).take(excess).cloned());
    }
    if !evicted.is_empty() {
        for i in &evicted {
            nodes.remove(i);
        }
        let remaining: Vec<Edge> = kept
            .into_iter()
            .filter(|e| nodes.contains_key(&e.a) && nodes.contains_key(&e.b))
            .collect();
        let (g, k, _) = connect(&nodes, remaining, false);
        groups = g;
        kept = k;
    }

    // Ids: a cluster keeps the id of the oldest old cluster whose strongest identity it holds.
    let group_of: HashMap<&Identity, usize> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, members)| members.iter().map(move |i| (i, g)))
        .collect();
    let mut claims: BTreeMap<usize, &Cluster> = BTreeMap::new();
    for (c, claim) in old.iter().zip(&claims_of_old) {
        if let Some(&g) = claim.as_ref().and_then(|i| group_of.get(i)) {
            let better = claims
                .get(&g)
                .is_none_or(|best| (c.created_seq, &c.id) < (best.created_seq, &best.id));
            if better {
                claims.insert(g, c);
            }
        }
    }
    let mut edges_of: Vec<Vec<Edge>> = vec![Vec::new(); groups.len()];
    for e in kept {
        if let Some(&g) = group_of.get(&e.a) {
            edges_of[g].push(e);
        }
    }
    let mut assigned: BTreeSet<String> = claims.values().map(|c| c.id.clone()).collect();
    for (g, members) in groups.iter().enumerate() {
        let mut cluster_edges = std::mem::take(&mut edges_of[g]);
        cluster_edges.sort_by(|x, y| (&x.a, &x.b).cmp(&(&y.a, &y.b)));
        let cluster_nodes: Vec<Node> = members.iter().map(|i| nodes[i].clone()).collect();
        let (id, created_seq) = match claims.get(&g) {
            Some(c) => (c.id.clone(), c.created_seq),
            None => {
                let named = strongest(cluster_nodes.iter())
                    .cloned()
                    .unwrap_or_else(|| members[0].clone());
                let mut salt = 0;
                let id = loop {
                    let id = profile_id(obs.org_id, obs.sandbox, &named, salt);
                    if !assigned.contains(&id) && !in_use(&id) {
                        break id;
                    }
                    salt += 1;
                };
                assigned.insert(id.clone());
                (id, obs.seq)
            }
        };
        step.clusters.push(Cluster {
            id,
            org_id: obs.org_id.to_string(),
            sandbox: obs.sandbox.to_string(),
            created_seq,
            nodes: cluster_nodes,
            edges: cluster_edges,
        });
    }

    // What changed, per old and new cluster.
    let id_of_group: Vec<String> = step.clusters.iter().map(|c| c.id.clone()).collect();
    for (c, claim) in old.iter().zip(&claims_of_old) {
        match step.clusters.iter().position(|n| n.id == c.id) {
            Some(g) => {
                let moved: Vec<Identity> = c
                    .nodes
                    .iter()
                    .map(|n| &n.identity)
                    .filter(|i| group_of.get(i).is_some_and(|&other| other != g))
                    .cloned()
                    .collect();
                if !moved.is_empty() {
                    step.history.push(event(
                        &c.id,
                        GraphChange::Split {
                            moved: moved.clone(),
                        },
                    ));
                    step.moved.push((c.id.clone(), moved));
                }
            }
            None => {
                let into = claim
                    .as_ref()
                    .and_then(|i| group_of.get(i))
                    .map(|&g| id_of_group[g].clone())
                    .unwrap_or_default();
                step.history
                    .push(event(&c.id, GraphChange::Merged { into: into.clone() }));
                step.retired.push((c.id.clone(), into));
            }
        }
    }
    for cluster in &step.clusters {
        let before = old.iter().find(|c| c.id == cluster.id);
        let now = cluster.identities();
        match before {
            None => {
                step.history.push(event(
                    &cluster.id,
                    GraphChange::Created {
                        identities: now.clone(),
                    },
                ));
                step.changed.push(cluster.id.clone());
            }
            Some(b) if b.identities() != now => step.changed.push(cluster.id.clone()),
            Some(_) => {}
        }
    }
    for (a, b, namespace) in cut {
        let owner = group_of
            .get(&a)
            .map(|&g| id_of_group[g].clone())
            .unwrap_or_default();
        step.history
            .push(event(&owner, GraphChange::Cut { a, b, namespace }));
    }
    for cluster in &step.clusters {
        for e in &cluster.edges {
            if added.contains(&(e.a.clone(), e.b.clone())) {
                step.history.push(event(
                    &cluster.id,
                    GraphChange::Linked {
                        a: e.a.clone(),
                        b: e.b.clone(),
                    },
                ));
            }
        }
    }
    for identity in &evicted {
        let owner = old
            .iter()
            .find(|c| c.nodes.iter().any(|n| n.identity == *identity))
            .map(|c| c.id.clone())
            .unwrap_or_default();
        step.history.push(event(
            &owner,
            GraphChange::Evicted {
                identity: identity.clone(),
            },
        ));
    }
    step.evicted = evicted;
    step
}

fn ordered(x: &Identity, y: &Identity) -> (Identity, Identity) {
    if x <= y {
        (x.clone(), y.clone())
    } else {
        (y.clone(), x.clone())
    }
}

/// Groups the nodes by the edges, in the edges' order; with `unique`, an edge that would join
/// two values of a unique namespace is cut. Returns the groups (members sorted, groups ordered
/// by their first member), the edges kept and the edges cut (with the namespace).
#[allow(clippy::type_complexity)]
fn connect(
    nodes: &BTreeMap<Identity, Node>,
    edges: Vec<Edge>,
    unique: bool,
) -> (
    Vec<Vec<Identity>>,
    Vec<Edge>,
    Vec<(Identity, Identity, String)>,
) {
    let index: HashMap<&Identity, usize> = nodes.keys().enumerate().map(|(i, k)| (k, i)).collect();
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    let mut values: Vec<BTreeMap<String, String>> = nodes
        .values()
        .map(|n| {
            let mut m = BTreeMap::new();
            if n.traits.unique.is_some() {
                m.insert(n.identity.ns.clone(), n.identity.id.clone());
            }
            m
        })
        .collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let (mut kept, mut cut) = (Vec::new(), Vec::new());
    for e in edges {
        let (Some(&ia), Some(&ib)) = (index.get(&e.a), index.get(&e.b)) else {
            continue;
        };
        let (ra, rb) = (find(&mut parent, ia), find(&mut parent, ib));
        if ra == rb {
            kept.push(e);
            continue;
        }
        if unique {
            let conflict = values[ra]
                .iter()
                .find(|(ns, v)| values[rb].get(*ns).is_some_and(|w| w != *v))
                .map(|(ns, _)| ns.clone());
            if let Some(ns) = conflict {
                cut.push((e.a, e.b, ns));
                continue;
            }
        }
        let moved = std::mem::take(&mut values[rb]);
        values[ra].extend(moved);
        parent[rb] = ra;
        kept.push(e);
    }
    let mut groups: BTreeMap<usize, Vec<Identity>> = BTreeMap::new();
    for (i, identity) in nodes.keys().enumerate() {
        let root = find(&mut parent, i);
        groups.entry(root).or_default().push(identity.clone());
    }
    let mut groups: Vec<Vec<Identity>> = groups.into_values().collect();
    groups.sort();
    (groups, kept, cut)
}

#[cfg(test)]
#[path = "graph_tests.rs"]
mod tests;
