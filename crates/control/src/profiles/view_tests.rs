use cdp_contract::records::RefusedReason;
use serde_json::json;

use super::*;

const P: &str = "p1";

fn id(ns: &str, v: &str) -> Identity {
    Identity::new(ns, v)
}

fn update(profile: &str, time_ms: i64, change: Change) -> ProfileUpdate {
    ProfileUpdate {
        profile_id: profile.into(),
        org_id: "o".into(),
        sandbox: "prod".into(),
        time_ms,
        change,
        identities: vec![id("CRMID", "c1"), id("ECID", "e1")],
        attributes: None,
        removed_events: Vec::new(),
        event_count: 0,
        flagged: false,
        refused: Vec::new(),
    }
}

fn event(item: &str, ts: i64, owner: Identity) -> Change {
    Change::Event {
        event: StoredEvent {
            item_id: item.into(),
            dataset_id: "web".into(),
            timestamp_ms: ts,
            ingest_ms: ts,
            owner: owner.clone(),
            identities: vec![owner],
            entity: serde_json::value::to_raw_value(&json!({"_id": item, "eventType": "view"}))
                .expect("raw event"),
        },
    }
}

fn record(dataset: &str, owner: Identity, attributes: serde_json::Value) -> Change {
    Change::Record {
        fragment: Fragment {
            dataset_id: dataset.into(),
            owner,
            timestamp_ms: 1,
            ingest_ms: 1,
            seq: 1,
            attributes,
        },
    }
}

/// Through the wire: every update is applied as the fold reads it from the topic.
fn apply(state: &mut ProfileState, u: &ProfileUpdate) {
    let bytes = serde_json::to_vec(u).expect("encode");
    state.apply(0, 0, &u.profile_id, Some(&bytes));
}

fn items(p: &Profile) -> Vec<&str> {
    p.events.values().map(|e| e.item_id.as_str()).collect()
}

#[test]
fn events_are_inserted_once_and_bounded_to_the_newest() {
    let mut s = ProfileState::default();
    let crm = id("CRMID", "c1");
    for i in 0..(MAX_EVENTS as i64 + 5) {
        let mut u = update(P, i, event(&format!("e{i}"), 10_000 + i, crm.clone()));
        u.event_count = i as u32 + 1;
        apply(&mut s, &u);
    }
    // The same item again, later: held once, at its new time.
    apply(&mut s, &update(P, 9, event("e1004", 50_000, crm.clone())));
    // An event older than every kept one does not displace any.
    apply(&mut s, &update(P, 9, event("old", 1, crm)));
    let p = s.get(P).expect("profile");
    assert_eq!(p.events.len(), MAX_EVENTS);
    assert_eq!(p.event_times.len(), MAX_EVENTS);
    assert!(!items(p).contains(&"old"));
    assert!(!items(p).contains(&"e4"));
    assert_eq!(items(p).first(), Some(&"e5"));
    assert_eq!(items(p).last(), Some(&"e1004"));
    assert_eq!(p.events.keys().last(), Some(&(50_000, "e1004".to_string())));
    assert_eq!(p.event_count, 0, "every update sets the count");
    assert_eq!(s.malformed(), 0);
}

#[test]
fn events_page_newest_first_and_the_cursor_survives_new_events() {
    let mut s = ProfileState::default();
    for i in 0..5 {
        apply(
            &mut s,
            &update(P, i, event(&format!("e{i}"), 100 + i, id("ECID", "e1"))),
        );
    }
    let p = s.get(P).expect("profile");
    let (first, next) = p.events_page(None, 2);
    let first: Vec<&str> = first.iter().map(|e| e.item_id.as_str()).collect();
    assert_eq!(first, ["e4", "e3"]);
    let next = next.expect("more");
    apply(&mut s, &update(P, 9, event("e9", 999, id("ECID", "e1"))));
    let p = s.get(P).expect("profile");
    let (second, next) = p.events_page(Some(&next), 2);
    let second: Vec<&str> = second.iter().map(|e| e.item_id.as_str()).collect();
    assert_eq!(second, ["e2", "e1"]);
    let (third, last) = p.events_page(next.as_ref(), 2);
    assert_eq!(third.len(), 1);
    assert_eq!(last, None);
}

#[test]
fn a_record_upserts_its_fragment_by_dataset_and_owner() {
    let mut s = ProfileState::default();
    let crm = id("CRMID", "c1");
    apply(
        &mut s,
        &update(P, 1, record("crm", crm.clone(), json!({"tier": "silver"}))),
    );
    apply(
        &mut s,
        &update(P, 2, record("crm", crm.clone(), json!({"tier": "gold"}))),
    );
    apply(
        &mut s,
        &update(P, 3, record("web", crm.clone(), json!({"city": "Oslo"}))),
    );
    apply(
        &mut s,
        &update(P, 4, record("crm", id("ECID", "e1"), json!({"tier": "x"}))),
    );
    let p = s.get(P).expect("profile");
    assert_eq!(p.fragments.len(), 3);
    assert_eq!(
        p.fragments[&("crm".to_string(), crm.clone())].attributes,
        json!({"tier": "gold"})
    );
    assert_eq!(p.fragments_of(Some(&crm)).count(), 2);
    assert_eq!(p.last_modified_ms, 4);
}

#[test]
fn a_split_drops_what_the_moved_identities_own_and_expiry_drops_events() {
    let mut s = ProfileState::default();
    let crm = id("CRMID", "c1");
    let ecid = id("ECID", "e1");
    apply(&mut s, &update(P, 1, event("a", 1, crm.clone())));
    apply(&mut s, &update(P, 2, event("b", 2, ecid.clone())));
    apply(&mut s, &update(P, 3, event("c", 3, crm.clone())));
    apply(
        &mut s,
        &update(P, 4, record("crm", crm.clone(), json!({"x": 1}))),
    );
    apply(
        &mut s,
        &update(P, 5, record("web", ecid.clone(), json!({"y": 1}))),
    );

    let mut split = update(
        P,
        6,
        Change::Split {
            moved: vec![ecid.clone()],
        },
    );
    split.identities = vec![crm.clone()];
    split.removed_events = vec!["b".into()];
    split.event_count = 2;
    split.refused = vec![Refused {
        ns: "ECID".into(),
        id: "123".into(),
        reason: RefusedReason::MalformedEcid,
    }];
    apply(&mut s, &split);
    let p = s.get(P).expect("profile");
    assert_eq!(items(p), ["a", "c"]);
    assert_eq!(
        p.fragments.keys().cloned().collect::<Vec<_>>(),
        [("crm".to_string(), crm.clone())]
    );
    assert_eq!(p.identities, std::slice::from_ref(&crm));
    assert_eq!(p.event_count, 2);
    assert_eq!(p.refused.len(), 1);

    let mut expired = update(P, 7, Change::Expired);
    expired.removed_events = vec!["a".into(), "never-held".into()];
    expired.flagged = true;
    apply(&mut s, &expired);
    let p = s.get(P).expect("profile");
    assert_eq!(items(p), ["c"]);
    assert!(p.flagged);
    assert_eq!(p.fragments.len(), 1, "expiry keeps fragments");
}

#[test]
fn a_merged_profile_is_gone_and_refused_identities_are_bounded() {
    let mut s = ProfileState::default();
    for i in 0..(MAX_REFUSED + 3) {
        let mut u = update(P, i as i64, Change::Identities);
        u.refused = vec![Refused {
            ns: "Email".into(),
            id: format!("r{i}"),
            reason: RefusedReason::BlockedValue,
        }];
        apply(&mut s, &u);
    }
    let p = s.get(P).expect("profile");
    assert_eq!(p.refused.len(), MAX_REFUSED);
    assert_eq!(p.refused.front().map(|r| r.refused.id.as_str()), Some("r3"));

    apply(&mut s, &update("p2", 1, Change::Identities));
    apply(&mut s, &update(P, 99, Change::Merged { into: "p2".into() }));
    assert!(s.get(P).is_none());
    assert!(s.get("p2").is_some());
    assert_eq!(s.len(), 1);
}

#[test]
fn a_malformed_record_is_counted_and_skipped() {
    let mut s = ProfileState::default();
    s.apply(0, 7, P, Some(b"{not json"));
    s.apply(0, 8, P, Some(br#"{"profileId": "p1", "type": "nope"}"#));
    assert_eq!(s.malformed(), 2);
    assert!(s.is_empty());
    let mut g = GraphState::default();
    g.apply(0, 1, "", Some(b"[]"));
    assert_eq!(g.malformed(), 1);
}

fn members(profile: &str, seq: u64, identities: Vec<Identity>) -> GraphRecord {
    GraphRecord::Members {
        profile_id: profile.into(),
        org_id: "o".into(),
        sandbox: "prod".into(),
        seq,
        time_ms: seq as i64 * 1000,
        identities,
    }
}

fn change(profile: &str, seq: u64, change: GraphChange) -> GraphRecord {
    GraphRecord::Change(GraphEvent {
        profile_id: profile.into(),
        seq,
        time_ms: seq as i64 * 1000,
        change,
    })
}

fn apply_graph(g: &mut GraphState, offset: i64, r: &GraphRecord) {
    let bytes = serde_json::to_vec(r).expect("encode");
    g.apply(0, offset, "", Some(&bytes));
}

fn ops(history: &[&Stamped]) -> Vec<(i64, String)> {
    history
        .iter()
        .map(|s| (s.offset, s.event.profile_id.clone()))
        .collect()
}

#[test]
fn members_map_identities_to_profiles_and_a_merge_moves_them_and_the_history() {
    let (crm, ecid, email) = (id("CRMID", "c1"), id("ECID", "e1"), id("Email", "a@x.io"));
    let mut g = GraphState::default();
    let records = [
        change(
            "p1",
            1,
            GraphChange::Created {
                identities: vec![crm.clone()],
            },
        ),
        members("p1", 1, vec![crm.clone()]),
        change(
            "p2",
            2,
            GraphChange::Created {
                identities: vec![ecid.clone(), email.clone()],
            },
        ),
        members("p2", 2, vec![ecid.clone(), email.clone()]),
        // c1 and e1 seen together: p2 joins p1.
        change(
            "p1",
            3,
            GraphChange::Linked {
                a: crm.clone(),
                b: ecid.clone(),
            },
        ),
        change("p2", 3, GraphChange::Merged { into: "p1".into() }),
        members("p2", 3, vec![]),
        members("p1", 3, vec![crm.clone(), ecid.clone(), email.clone()]),
    ];
    for (offset, r) in records.iter().enumerate() {
        apply_graph(&mut g, offset as i64, r);
    }
    for i in [&crm, &ecid, &email] {
        assert_eq!(g.profile_of("o", "prod", i), Some("p1"), "{i}");
    }
    assert_eq!(g.profile_of("o", "dev", &crm), None);
    assert!(g.members("p2").is_none());
    assert_eq!(g.members("p1").map(|m| m.identities.len()), Some(3));
    // Newest first: p1's own changes and those of p2 that came with the merge.
    assert_eq!(
        ops(&g.history("o", "prod", "p1", &email)),
        [
            (5, "p2".into()),
            (4, "p1".into()),
            (2, "p2".into()),
            (0, "p1".into())
        ]
    );
}

#[test]
fn a_split_hands_identities_over_and_cuts_are_kept_per_identity() {
    let (crm1, crm2, ecid) = (id("CRMID", "c1"), id("CRMID", "c2"), id("ECID", "e1"));
    let mut g = GraphState::default();
    apply_graph(
        &mut g,
        0,
        &members("p1", 1, vec![crm1.clone(), ecid.clone()]),
    );
    apply_graph(&mut g, 1, &members("p2", 1, vec![crm2.clone()]));
    // The device's newest login is c2: the link to c1 is cut and the ECID moves to p2. p2's
    // members arrive before p1's: p1's must not take the ECID back from p2.
    apply_graph(
        &mut g,
        2,
        &change(
            "p1",
            2,
            GraphChange::Cut {
                a: crm1.clone(),
                b: ecid.clone(),
                namespace: "CRMID".into(),
            },
        ),
    );
    apply_graph(
        &mut g,
        3,
        &change(
            "p1",
            2,
            GraphChange::Split {
                moved: vec![ecid.clone()],
            },
        ),
    );
    apply_graph(
        &mut g,
        4,
        &members("p2", 2, vec![crm2.clone(), ecid.clone()]),
    );
    apply_graph(&mut g, 5, &members("p1", 2, vec![crm1.clone()]));
    assert_eq!(g.profile_of("o", "prod", &ecid), Some("p2"));
    assert_eq!(g.profile_of("o", "prod", &crm1), Some("p1"));
    // The ECID's history shows the cut and split it took part in, though they are p1's.
    assert_eq!(
        ops(&g.history("o", "prod", "p2", &ecid)),
        [(3, "p1".into()), (2, "p1".into())]
    );
    // Another sandbox sees nothing of them.
    assert!(g.history("o", "dev", "p2", &ecid).is_empty());
    // An identity's history is bounded.
    for i in 0..(MAX_IDENTITY_HISTORY as i64 + 4) {
        apply_graph(
            &mut g,
            10 + i,
            &change(
                "p2",
                3,
                GraphChange::Evicted {
                    identity: ecid.clone(),
                },
            ),
        );
    }
    assert_eq!(g.identity_history[&ecid].len(), MAX_IDENTITY_HISTORY);
}

#[test]
fn every_change_reads_back_as_the_profile_stage_writes_it() {
    let crm = id("CRMID", "c1");
    let changes = [
        event("e1", 5, crm.clone()),
        record("crm", crm.clone(), json!({"a": {"b": 1}})),
        Change::Identities,
        Change::Merged { into: "p2".into() },
        Change::Split {
            moved: vec![crm.clone()],
        },
        Change::Expired,
    ];
    for change in changes {
        let mut u = update(P, 3, change);
        u.attributes = Some(json!({"a": 1}));
        u.removed_events = vec!["x".into()];
        u.event_count = 7;
        u.flagged = true;
        u.refused = vec![Refused {
            ns: "Email".into(),
            id: "".into(),
            reason: RefusedReason::BlockedValue,
        }];
        let bytes = serde_json::to_vec(&u).expect("encode");
        let back = decode_update(&bytes).expect("decode");
        assert_eq!(
            serde_json::to_value(&back).expect("re-encode"),
            serde_json::to_value(&u).expect("re-encode"),
        );
    }
    let unknown = br#"{"profileId":"p","orgId":"o","sandbox":"prod","timeMs":1,"type":"teleported","identities":[],"eventCount":0,"flagged":false}"#;
    assert!(decode_update(unknown).is_err());
    let missing = br#"{"profileId":"p","orgId":"o","sandbox":"prod","timeMs":1,"type":"merged","identities":[],"eventCount":0,"flagged":false}"#;
    assert!(decode_update(missing).is_err());
}
