use std::collections::HashMap;

use cdp_catalog::IdentityType;

use super::*;

const ECID_A: &str = "11111111111111111111111111111111111111";

fn traits(ns: &str) -> NamespaceTraits {
    let (id_type, unique) = match ns {
        "ECID" => (IdentityType::Cookie, None),
        "CRMID" => (IdentityType::CrossDevice, Some(1)),
        "Email" => (IdentityType::Email, None),
        "Partner" => (IdentityType::Partner, None),
        "GAID" => (IdentityType::Device, None),
        other => panic!("unknown namespace {other}"),
    };
    NamespaceTraits { id_type, unique }
}

fn id(xid: &str) -> Identity {
    Identity::parse_xid(xid).unwrap()
}

/// A graph kept the way the identity stage keeps it: clusters by id, identity → cluster id.
#[derive(Default)]
struct Graph {
    seq: u64,
    clusters: HashMap<String, Cluster>,
    index: HashMap<Identity, String>,
}

impl Graph {
    fn see(&mut self, xids: &[&str]) -> Step {
        self.seq += 1;
        let identities: Vec<(Identity, NamespaceTraits)> =
            xids.iter().map(|x| (id(x), traits(&id(x).ns))).collect();
        let mut old_ids: Vec<String> = identities
            .iter()
            .filter_map(|(i, _)| self.index.get(i).cloned())
            .collect();
        old_ids.sort();
        old_ids.dedup();
        let old: Vec<Cluster> = old_ids.iter().map(|i| self.clusters[i].clone()).collect();
        let obs = Observation {
            org_id: "o",
            sandbox: "prod",
            seq: self.seq,
            time_ms: self.seq as i64,
            identities: &identities,
        };
        let step = observe(old, &obs, |i| self.clusters.contains_key(i));
        for (retired, _) in &step.retired {
            self.clusters.remove(retired);
        }
        for e in &step.evicted {
            self.index.remove(e);
        }
        for c in &step.clusters {
            for n in &c.nodes {
                self.index.insert(n.identity.clone(), c.id.clone());
            }
            self.clusters.insert(c.id.clone(), c.clone());
        }
        step
    }

    fn profile_of(&self, xid: &str) -> Option<&Cluster> {
        self.index.get(&id(xid)).map(|c| &self.clusters[c])
    }

    fn members(&self, xid: &str) -> Vec<String> {
        self.profile_of(xid)
            .map(|c| c.nodes.iter().map(|n| n.identity.to_string()).collect())
            .unwrap_or_default()
    }
}

fn ecid(n: u32) -> String {
    format!("ECID:{n:038}")
}

#[test]
fn anonymous_browsing_then_login_is_one_profile_that_keeps_its_id() {
    let mut g = Graph::default();
    let first = g.see(&[&format!("ECID:{ECID_A}")]);
    assert_eq!(first.changed.len(), 1);
    let anonymous = first.clusters[0].id.clone();
    assert_eq!(
        g.see(&[&format!("ECID:{ECID_A}")]).changed,
        Vec::<String>::new()
    );
    let login = g.see(&["CRMID:c1", &format!("ECID:{ECID_A}")]);
    assert!(login.retired.is_empty() && login.moved.is_empty());
    assert_eq!(login.clusters.len(), 1);
    assert_eq!(login.clusters[0].id, anonymous, "the profile keeps its id");
    assert_eq!(g.members("CRMID:c1").len(), 2);
    assert!(login
        .history
        .iter()
        .any(|h| matches!(h.change, GraphChange::Linked { .. })));
}

#[test]
fn two_profiles_joined_keep_the_older_id_and_retire_the_other() {
    let mut g = Graph::default();
    let older = g.see(&[&ecid(1)]).clusters[0].id.clone();
    let newer = g.see(&["Email:a@x.io"]).clusters[0].id.clone();
    let join = g.see(&["Email:a@x.io", &ecid(1)]);
    assert_eq!(join.clusters.len(), 1);
    assert_eq!(join.clusters[0].id, older);
    assert_eq!(join.retired, vec![(newer.clone(), older.clone())]);
    assert!(!g.clusters.contains_key(&newer));
}

#[test]
fn shared_device_the_cookie_follows_the_last_login_and_ids_stay_with_their_people() {
    let mut g = Graph::default();
    let device = ecid(7);
    let p1 = g.see(&["CRMID:alice", &device]).clusters[0].id.clone();
    let second = g.see(&["CRMID:bob", &device]);
    assert_eq!(
        g.members(&device),
        vec!["CRMID:bob".to_string(), device.clone()]
    );
    assert_eq!(g.members("CRMID:alice"), vec!["CRMID:alice".to_string()]);
    assert_eq!(
        g.profile_of("CRMID:alice").unwrap().id,
        p1,
        "alice keeps her profile"
    );
    let p2 = g.profile_of("CRMID:bob").unwrap().id.clone();
    assert_ne!(p1, p2);
    assert_eq!(second.moved, vec![(p1.clone(), vec![id(&device)])]);
    assert!(second.history.iter().any(|h| matches!(
        &h.change,
        GraphChange::Cut { namespace, .. } if namespace == "CRMID"
    )));
    // Alice logs in again: the cookie comes back to her; both keep their ids.
    let third = g.see(&[&device, "CRMID:alice"]);
    assert_eq!(g.profile_of(&device).unwrap().id, p1);
    assert_eq!(g.profile_of("CRMID:bob").unwrap().id, p2);
    assert_eq!(third.moved, vec![(p2, vec![id(&device)])]);
    assert!(third.retired.is_empty());
}

#[test]
fn two_unique_values_in_one_record_are_not_joined() {
    let mut g = Graph::default();
    let step = g.see(&["CRMID:a", "CRMID:b"]);
    assert_eq!(step.clusters.len(), 2);
    assert_ne!(
        g.profile_of("CRMID:a").unwrap().id,
        g.profile_of("CRMID:b").unwrap().id
    );
}

#[test]
fn a_full_graph_evicts_partner_then_cookie_then_device_oldest_first() {
    let mut g = Graph::default();
    // One person: a CRM id, 2 partner ids, 45 cookies, 3 device ids = 51 identities.
    g.see(&["CRMID:p", "Partner:x1"]);
    g.see(&["CRMID:p", "Partner:x2"]);
    for n in 0..45 {
        g.see(&["CRMID:p", &ecid(n)]);
    }
    for n in 0..2 {
        g.see(&["CRMID:p", &format!("GAID:g{n}")]);
    }
    assert_eq!(g.members("CRMID:p").len(), 50);
    let step = g.see(&["CRMID:p", "GAID:g2"]);
    assert_eq!(
        step.evicted,
        vec![id("Partner:x1")],
        "the partner id goes first"
    );
    let step = g.see(&["CRMID:p", "GAID:g3"]);
    assert_eq!(step.evicted, vec![id("Partner:x2")]);
    let step = g.see(&["CRMID:p", "GAID:g4"]);
    assert_eq!(step.evicted, vec![id(&ecid(0))], "then the oldest cookie");
    assert_eq!(g.members("CRMID:p").len(), 50);
    assert!(g.profile_of(&ecid(0)).is_none());
    assert!(step.history.iter().any(|h| h.change
        == GraphChange::Evicted {
            identity: id(&ecid(0))
        }));
}

#[test]
fn the_same_observations_build_the_same_graph_with_the_same_ids() {
    let run = || {
        let mut g = Graph::default();
        g.see(&[&ecid(1)]);
        g.see(&["Email:e@x.io", &ecid(2)]);
        g.see(&["CRMID:c", &ecid(1), "Email:e@x.io"]);
        g.see(&["CRMID:d", &ecid(2)]);
        let mut all: Vec<(String, Vec<Identity>)> = g
            .clusters
            .values()
            .map(|c| (c.id.clone(), c.identities()))
            .collect();
        all.sort();
        all
    };
    assert_eq!(run(), run());
}

#[test]
fn a_new_cluster_never_takes_an_id_in_use() {
    let mut g = Graph::default();
    // The cookie's profile id is pid(ECID); after it joins a CRM id and is split away alone,
    // its new cluster must not reuse the id that the CRM person kept.
    let device = ecid(3);
    let first = g.see(&[&device]).clusters[0].id.clone();
    g.see(&["CRMID:a", &device]);
    assert_eq!(g.profile_of("CRMID:a").unwrap().id, first);
    g.see(&["CRMID:b", &device]);
    let a = g.profile_of("CRMID:a").unwrap().id.clone();
    let b = g.profile_of("CRMID:b").unwrap().id.clone();
    assert_eq!(a, first);
    assert_ne!(a, b);
    assert_eq!(g.clusters.len(), 2);
}

#[test]
fn owner_prefers_the_strongest_identity() {
    let ids = vec![
        (id(&ecid(1)), traits("ECID")),
        (id("Email:e@x.io"), traits("Email")),
        (id("CRMID:c"), traits("CRMID")),
    ];
    assert_eq!(owner(&ids), Some(&id("CRMID:c")));
    assert_eq!(owner(&ids[..2]), Some(&id("Email:e@x.io")));
    assert_eq!(owner(&[]), None);
}
