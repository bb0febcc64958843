//! Profiles (issue: identity graph and real-time profiles): events of profile-enabled datasets
//! sent through the real edge become stitched profiles, read back through the Profile and
//! Identity APIs and the profile.updates topic.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cdp_contract::records::{Change, Identity, ProfileUpdate};
use cdp_e2e::{event_schema, Pipeline, ADMIN};
use cdp_test_support::eventually;
use serde_json::{json, Value};

pub const ORG: &str = "acme@AdobeOrg";

/// A profile as `profile.updates` tells it: identities, event ids, attributes.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Folded {
    pub identities: Vec<Identity>,
    pub events: BTreeSet<String>,
    pub attributes: Option<Value>,
    pub event_count: u32,
}

/// Folds profile.updates (in partition order, which is per-profile order) into profiles.
pub fn fold(updates: impl IntoIterator<Item = ProfileUpdate>) -> BTreeMap<String, Folded> {
    let mut profiles: BTreeMap<String, Folded> = BTreeMap::new();
    for u in updates {
        if let Change::Merged { .. } = u.change {
            profiles.remove(&u.profile_id);
            continue;
        }
        let p = profiles.entry(u.profile_id.clone()).or_default();
        p.identities = u.identities.clone();
        p.event_count = u.event_count;
        for r in &u.removed_events {
            p.events.remove(r);
        }
        if let Change::Event { event } = &u.change {
            p.events.insert(event.item_id.clone());
        }
        if u.attributes.is_some() {
            p.attributes = u.attributes.clone();
        }
    }
    profiles
}

/// Reads every committed profile update of the pipeline so far.
pub async fn updates(p: &Pipeline, at_least: usize) -> Vec<ProfileUpdate> {
    p.broker
        .read_committed_settle(
            &p.config.topics.profile_updates(),
            at_least,
            Duration::from_secs(20),
            Duration::from_millis(300),
        )
        .await
        .iter()
        .map(|r| serde_json::from_value(r.json()).expect("a profile update"))
        .collect()
}

pub fn ecid(n: u64) -> String {
    format!("{n:038}")
}

pub fn event(id: &str, identities: Value) -> Value {
    json!({"_id": id, "timestamp": chrono_now(), "eventType": "web.webpagedetails.pageViews", "identityMap": identities})
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Posts entities to a stream as one `/collection/batch` request; asserts they were accepted.
pub async fn send(p: &Pipeline, stream: &Value, dataset: &Value, entities: &[Value]) {
    let schema = dataset["schemaId"].as_str().expect("schemaId");
    let messages: Vec<Value> = entities
        .iter()
        .map(|e| {
            json!({"header": {"schemaRef": {"id": schema, "contentType": "application/vnd.adobe.xed-full+json;version=1"},
                              "imsOrgId": ORG, "datasetId": dataset["id"]},
                   "body": {"xdmMeta": {"schemaRef": {"id": schema}}, "xdmEntity": e}})
        })
        .collect();
    let id = stream["id"].as_str().expect("stream id");
    let (status, resp, _) = p
        .post(
            &format!("/collection/batch/{id}"),
            "application/json",
            json!({"messages": messages}).to_string(),
        )
        .await;
    assert!(status == 200 || status == 207, "{status}: {resp}");
    if status == 207 {
        for r in resp["responses"].as_array().into_iter().flatten() {
            assert!(
                r.get("status").is_none_or(|s| s.as_u64() == Some(200)),
                "{resp}"
            );
        }
    }
}

/// An event stream (its own dataset) of the test org.
pub async fn event_stream(p: &Pipeline) -> (Value, Value) {
    let dataset = p.create_dataset(ORG, event_schema()).await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": ORG, "datasetId": dataset["id"]}))
        .await;
    (dataset, stream)
}

/// A stream into its own dataset of a profile-class (`_xdm.context.profile`) schema: profile
/// records, not events.
pub async fn record_stream(p: &Pipeline, name: &str) -> (Value, Value) {
    let n = cdp_test_support::unique_name(name);
    let dataset = p
        .create_dataset_adjusted(
            ORG,
            &format!("https://ns.adobe.com/acme/schemas/{n}"),
            json!({"type": "object", "properties": {"identityMap": {"type": "object"}}}),
            |f| {
                f.schema.class = "_xdm.context.profile".into();
            },
        )
        .await;
    let stream = p
        .create_stream(json!({"name": name, "orgId": ORG, "datasetId": dataset["id"]}))
        .await;
    (dataset, stream)
}

pub async fn api(p: &Pipeline, path_and_query: &str) -> (u16, Value) {
    let resp = p
        .http
        .get(format!("{}{path_and_query}", p.control))
        .bearer_auth(ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .header("x-sandbox-name", "prod")
        .send()
        .await
        .expect("control request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The profile of an identity as the Profile API answers it (`Null` when there is none).
async fn entity(p: &Pipeline, ns: &str, id: &str) -> Value {
    let (_, body) = api(
        p,
        &format!("/access/entities?schema.name=_xdm.context.profile&entityId={id}&entityIdNS={ns}"),
    )
    .await;
    body.as_object()
        .and_then(|o| o.values().next())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn anonymous_browsing_then_login_is_one_profile_with_every_event() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (dataset, stream) = event_stream(&p).await;
    let device = ecid(42);
    let anon = |n: u32| {
        event(
            &format!("anon-{n}"),
            json!({"ECID": [{"id": device, "primary": true}]}),
        )
    };
    send(&p, &stream, &dataset, &[anon(1), anon(2), anon(3)]).await;
    send(
        &p,
        &stream,
        &dataset,
        &[event(
            "login",
            json!({"ECID": [{"id": device}], "CRMID": [{"id": "alice", "primary": true}]}),
        )],
    )
    .await;
    send(
        &p,
        &stream,
        &dataset,
        &[event(
            "later",
            json!({"CRMID": [{"id": "alice", "primary": true}]}),
        )],
    )
    .await;

    let expected: BTreeSet<String> = ["anon-1", "anon-2", "anon-3", "login", "later"]
        .map(String::from)
        .into();
    let mut profiles = BTreeMap::new();
    eventually(
        Duration::from_secs(30),
        "one profile with all five events",
        async || {
            profiles = fold(updates(&p, 5).await);
            profiles.len() == 1 && profiles.values().all(|f| f.events == expected)
        },
    )
    .await;
    let (id, profile) = profiles.into_iter().next().expect("a profile");
    assert_eq!(profile.event_count, 5);
    assert_eq!(
        profile.identities,
        vec![
            Identity::new("CRMID", "alice"),
            Identity::new("ECID", device.clone())
        ]
    );

    // The Profile API finds it by either identity.
    for (ns, value) in [("ECID", device.as_str()), ("CRMID", "alice")] {
        let (status, body) = api(
            &p,
            &format!("/access/entities?schema.name=_xdm.context.profile&entityId={value}&entityIdNS={ns}"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let entity = &body[&id];
        assert_eq!(entity["entityId"], id.as_str(), "{body}");
        assert_eq!(
            entity["entity"]["identityMap"]["CRMID"][0]["id"], "alice",
            "{body}"
        );
        assert_eq!(
            entity["entity"]["identityMap"]["ECID"][0]["id"],
            device.as_str(),
            "{body}"
        );
    }
    let (status, body) = api(
        &p,
        "/access/entities?schema.name=_xdm.context.experienceevent&relatedSchema.name=_xdm.context.profile&relatedEntityId=alice&relatedEntityIdNS=CRMID&limit=2",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["children"].as_array().map(Vec::len), Some(2), "{body}");
    let (status, body) = api(&p, &format!("/identity/cluster/members?xid=ECID:{device}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["profileId"], id.as_str());
    assert_eq!(body["members"].as_array().map(Vec::len), Some(2), "{body}");
    let (status, _) = api(
        &p,
        "/access/entities?schema.name=_xdm.context.profile&entityId=nobody&entityIdNS=CRMID",
    )
    .await;
    assert_eq!(status, 404);
}

/// The identity fast path: an event with one identity, seen alone before, goes from validate's
/// intake straight to the profile that identity created (profile.resolved, `direct`); the engine
/// applies it there when the profile holds the identity, and forwards it to the identity owner
/// when it does not (here: its profile merged into another through a link the intake could not
/// see). Every event ends in the surviving profile, once.
#[tokio::test]
async fn fast_path_events_are_applied_or_forwarded_and_never_lost() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (dataset, stream) = event_stream(&p).await;
    let device = ecid(7);
    let cookie = || json!({"ECID": [{"id": device, "primary": true}]});
    let crm = || json!({"CRMID": [{"id": "bob", "primary": true}]});
    let one = async |id: &str, identities: Value| {
        send(&p, &stream, &dataset, &[event(id, identities)]).await;
    };
    let held = async |events: &[&str]| {
        let want: BTreeSet<String> = events.iter().map(|e| e.to_string()).collect();
        eventually(
            Duration::from_secs(30),
            &format!("one profile with {want:?}"),
            async || {
                fold(updates(&p, 1).await)
                    .values()
                    .any(|f| want.is_subset(&f.events))
            },
        )
        .await
    };
    // Each identity's first event goes to the owner, which creates its profile; the next one
    // goes straight there and is applied.
    one("anon-1", cookie()).await;
    held(&["anon-1"]).await;
    one("anon-2", cookie()).await;
    one("crm-1", crm()).await;
    held(&["crm-1"]).await;
    one("crm-2", crm()).await;
    held(&["anon-1", "anon-2"]).await;
    held(&["crm-1", "crm-2"]).await;
    // An email joins the cookie's profile, then the CRM id's: the two profiles merge (the
    // cookie's, the older, survives). The intake saw each identity alone and neither with the
    // other, so it still sends the CRM id's events to the profile that merged away.
    one(
        "link-1",
        json!({"ECID": [{"id": device, "primary": true}], "Email": [{"id": "bob@example.com"}]}),
    )
    .await;
    one(
        "link-2",
        json!({"CRMID": [{"id": "bob", "primary": true}], "Email": [{"id": "bob@example.com"}]}),
    )
    .await;
    held(&["anon-1", "anon-2", "crm-1", "crm-2", "link-1", "link-2"]).await;
    one("after", crm()).await;
    one("anon-3", cookie()).await;

    let expected: BTreeSet<String> = [
        "anon-1", "anon-2", "anon-3", "crm-1", "crm-2", "link-1", "link-2", "after",
    ]
    .map(String::from)
    .into();
    let mut profiles = BTreeMap::new();
    eventually(
        Duration::from_secs(60),
        "one profile with every event",
        async || {
            profiles = fold(updates(&p, expected.len()).await);
            profiles.len() == 1 && profiles.values().all(|f| f.events == expected)
        },
    )
    .await;
    let profile = profiles.into_values().next().expect("a profile");
    assert_eq!(
        profile.event_count as usize,
        expected.len(),
        "each event once"
    );

    // Which path each took, from the pipeline's own topics: the intake's direct records on
    // profile.resolved; what the engine forwarded is on profile.sequence with its owner set
    // (the intake's own items have none) and nothing handed back.
    let read = async |topic: String| {
        p.broker
            .read_committed_settle(&topic, usize::MAX, Duration::from_secs(3), Duration::ZERO)
            .await
            .iter()
            .map(|r| r.json())
            .collect::<Vec<Value>>()
    };
    let mut direct: Vec<String> = read(p.config.topics.profile_resolved())
        .await
        .iter()
        .filter_map(|r| r["direct"]["item"]["itemId"].as_str().map(String::from))
        .collect();
    direct.sort();
    assert_eq!(
        direct,
        ["after", "anon-2", "anon-3", "crm-2"],
        "identities seen alone before went straight"
    );
    let forwarded: Vec<String> = read(p.config.topics.profile_sequence())
        .await
        .iter()
        .filter(|item| item.get("owner").is_some() && item.get("transfer").is_none())
        .filter_map(|item| item["itemId"].as_str().map(String::from))
        .collect();
    assert_eq!(
        forwarded,
        ["after"],
        "only the event sent to the profile that merged away was forwarded"
    );
}

/// The identities of the profile that holds `ns:value`, via the Identity API.
async fn members(p: &Pipeline, xid: &str) -> (String, Vec<String>) {
    let (status, body) = api(p, &format!("/identity/cluster/members?xid={xid}")).await;
    assert_eq!(status, 200, "{xid}: {body}");
    let ids = body["members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["xid"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (
        body["profileId"].as_str().unwrap_or_default().to_string(),
        ids,
    )
}

/// The item ids of a profile's events, via the Profile API.
async fn events_of(p: &Pipeline, ns: &str, value: &str) -> BTreeSet<String> {
    let (status, body) = api(
        p,
        &format!("/access/entities?schema.name=_xdm.context.experienceevent&relatedSchema.name=_xdm.context.profile&relatedEntityId={value}&relatedEntityIdNS={ns}&limit=1000"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["children"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|e| e["entityId"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn shared_device_two_logins_make_two_profiles_and_the_cookie_follows_the_last() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (dataset, stream) = event_stream(&p).await;
    let device = ecid(7);
    let on_device = |id: &str, person: &str| {
        event(
            id,
            json!({"ECID": [{"id": device}], "CRMID": [{"id": person, "primary": true}]}),
        )
    };
    send(
        &p,
        &stream,
        &dataset,
        &[on_device("alice-1", "alice"), on_device("alice-2", "alice")],
    )
    .await;
    send(
        &p,
        &stream,
        &dataset,
        &[event(
            "anonymous-1",
            json!({"ECID": [{"id": device, "primary": true}]}),
        )],
    )
    .await;
    // Wait until Alice's events are in: the order of the two logins is what decides.
    eventually(
        Duration::from_secs(30),
        "alice's profile with three events",
        async || {
            fold(updates(&p, 3).await)
                .values()
                .any(|f| f.events.len() == 3)
        },
    )
    .await;
    send(&p, &stream, &dataset, &[on_device("bob-1", "bob")]).await;
    send(
        &p,
        &stream,
        &dataset,
        &[event(
            "bob-2",
            json!({"CRMID": [{"id": "bob", "primary": true}]}),
        )],
    )
    .await;

    let device_xid = format!("ECID:{device}");
    eventually(
        Duration::from_secs(30),
        "the cookie with bob, bob's events in",
        async || {
            let profiles = fold(updates(&p, 8).await);
            profiles.len() == 2
                && profiles
                    .values()
                    .any(|f| f.events.contains("bob-2") && f.events.contains("bob-1"))
        },
    )
    .await;
    let (bob, bob_members) = members(&p, "CRMID:bob").await;
    let (alice, alice_members) = members(&p, "CRMID:alice").await;
    assert_ne!(alice, bob, "two people, two profiles");
    assert_eq!(
        bob_members,
        vec!["CRMID:bob".to_string(), device_xid.clone()]
    );
    assert_eq!(alice_members, vec!["CRMID:alice".to_string()]);
    assert_eq!(
        members(&p, &device_xid).await.0,
        bob,
        "the cookie follows the last login"
    );
    eventually(
        Duration::from_secs(20),
        "alice keeps her own events; the device's anonymous one follows it",
        async || {
            let alice_events = events_of(&p, "CRMID", "alice").await;
            let bob_events = events_of(&p, "CRMID", "bob").await;
            alice_events == ["alice-1", "alice-2"].map(String::from).into()
                && bob_events == ["anonymous-1", "bob-1", "bob-2"].map(String::from).into()
        },
    )
    .await;
    let (status, history) = api(&p, &format!("/identity/cluster/history?xid={device_xid}")).await;
    assert_eq!(status, 200);
    assert!(
        history["history"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|h| h["op"] == "cut"),
        "the cut link is in the history: {history}"
    );

    // Alice logs in again on the device: it comes back to her, with its anonymous event.
    send(&p, &stream, &dataset, &[on_device("alice-3", "alice")]).await;
    eventually(
        Duration::from_secs(30),
        "the cookie back with alice",
        async || {
            members(&p, &device_xid).await.0 == alice
                && events_of(&p, "CRMID", "alice").await.len() == 4
                && events_of(&p, "CRMID", "bob").await.len() == 2
        },
    )
    .await;
}

#[tokio::test]
async fn guardrails_refuse_identities_with_reasons_and_cap_the_graph() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (dataset, stream) = event_stream(&p).await;
    // Blocked, malformed and unknown-namespace identities are not linked, and the profile's
    // audit says why.
    send(
        &p,
        &stream,
        &dataset,
        &[event(
            "odd",
            json!({"CRMID": [{"id": "carol", "primary": true}], "ECID": [{"id": "123"}],
                   "Email": [{"id": "anonymous"}, {"id": ""}], "Nope": [{"id": "x"}]}),
        )],
    )
    .await;
    // A phone and 25 emails in one record: 20 are linked.
    let emails: Vec<Value> = (0..25)
        .map(|i| json!({"id": format!("u{i:02}@x.io")}))
        .collect();
    send(
        &p,
        &stream,
        &dataset,
        &[event(
            "many",
            json!({"Phone": [{"id": "+4700000000", "primary": true}], "Email": emails}),
        )],
    )
    .await;
    // A person seen with 58 identities (a CRM id, 57 cookies) keeps 50: the 8 oldest cookies go.
    for round in 0..3u64 {
        let cookies: Vec<Value> = (0..19)
            .map(|i| json!({"id": ecid(1000 + round * 100 + i)}))
            .collect();
        send(
            &p,
            &stream,
            &dataset,
            &[event(
                &format!("cap-{round}"),
                json!({"CRMID": [{"id": "dave", "primary": true}], "ECID": cookies}),
            )],
        )
        .await;
    }
    // Nothing usable: refused into the profile store, with the reason on events.error.
    send(
        &p,
        &stream,
        &dataset,
        &[event("nobody", json!({"Email": [{"id": "null"}]}))],
    )
    .await;

    eventually(Duration::from_secs(30), "the capped graph", async || {
        let (status, body) = api(&p, "/identity/cluster/members?xid=CRMID:dave").await;
        status == 200 && body["members"].as_array().map(Vec::len) == Some(50)
    })
    .await;
    let (_, dave) = members(&p, "CRMID:dave").await;
    assert!(dave.contains(&"CRMID:dave".to_string()));
    assert!(
        !dave.contains(&format!("ECID:{}", ecid(1000))),
        "the oldest cookie was evicted"
    );
    assert!(
        dave.contains(&format!("ECID:{}", ecid(1218))),
        "the newest cookie stays"
    );
    let (_, history) = api(&p, "/identity/cluster/history?xid=CRMID:dave").await;
    let evicted = history["history"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["op"] == "evicted")
        .count();
    assert_eq!(evicted, 8, "{history:.300}");

    let (_, carol) = members(&p, "CRMID:carol").await;
    assert_eq!(carol, vec!["CRMID:carol".to_string()]);
    let mut profile = Value::Null;
    eventually(
        Duration::from_secs(20),
        "carol's profile with its event",
        async || {
            profile = entity(&p, "CRMID", "carol").await;
            profile["eventCount"] == 1
        },
    )
    .await;
    let reasons: BTreeSet<String> = profile["audit"]["refusedIdentities"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["reason"].as_str().map(String::from))
        .collect();
    assert_eq!(
        reasons,
        ["blockedValue", "malformedEcid", "unknownNamespace"]
            .map(String::from)
            .into(),
        "{profile}"
    );
    let (_, phone) = members(&p, "Phone:%2B4700000000").await;
    assert_eq!(
        phone.len(),
        20,
        "20 identities of one record: the phone (primary) and 19 emails"
    );

    let errors = p
        .broker
        .read_committed(&p.config.topics.events_error(), 1, Duration::from_secs(20))
        .await;
    let refused: Vec<Value> = errors
        .iter()
        .map(|r| r.json())
        .filter(|e| e["stage"] == "profile")
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0]["violations"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no usable identity")),
        "{refused:?}"
    );
    assert_eq!(refused[0]["payload"]["_id"], "nobody");
}

/// How far a consumer group has committed on a topic (sum over partitions).
fn committed(p: &Pipeline, group: &str, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = p
        .config
        .kafka
        .reader("committed-probe")
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for partition in 0..p.config.validate.partitions {
        tpl.add_partition(topic, partition);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(5))
        .map(|t| {
            t.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn the_profile_toggle_decides_which_events_hydrate_profiles() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let n = cdp_test_support::unique_name("toggle");
    let dataset = p
        .create_dataset_adjusted(
            ORG,
            &format!("https://ns.adobe.com/acme/schemas/{n}"),
            event_schema(),
            |f| {
                f.dataset.profile_enabled = false;
            },
        )
        .await;
    let stream = p
        .create_stream(json!({"name": "off", "orgId": ORG, "datasetId": dataset["id"]}))
        .await;
    let erin = || json!({"CRMID": [{"id": "erin", "primary": true}]});
    send(&p, &stream, &dataset, &[event("while-off", erin())]).await;
    // The intake (inside validate) has read it (and skipped it) once validate's group
    // committed past it.
    let validate_group = p.config.validate.group_id.clone();
    let raw = p.raw_topic();
    eventually(
        Duration::from_secs(30),
        "the intake past the event",
        async || committed(&p, &validate_group, &raw) >= 1,
    )
    .await;
    let (status, _) = api(
        &p,
        "/access/entities?schema.name=_xdm.context.profile&entityId=erin&entityIdNS=CRMID",
    )
    .await;
    assert_eq!(status, 404, "no profile while the dataset's toggle is off");

    let resp = p
        .http
        .patch(format!(
            "{}/datasets/{}",
            p.control,
            dataset["id"].as_str().unwrap_or_default()
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"profileEnabled": true}))
        .send()
        .await
        .expect("PATCH /datasets");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
    let id = dataset["id"].as_str().unwrap_or_default().to_string();
    p.wait_for_edge(|c| c.datasets.get(&id).is_some_and(|d| d.profile_enabled))
        .await;
    send(&p, &stream, &dataset, &[event("while-on", erin())]).await;
    eventually(
        Duration::from_secs(30),
        "erin's profile from the toggle on",
        async || {
            events_of_maybe(&p, "CRMID", "erin").await == Some(["while-on".to_string()].into())
        },
    )
    .await;
}

async fn events_of_maybe(p: &Pipeline, ns: &str, value: &str) -> Option<BTreeSet<String>> {
    let (status, _) = api(p, &format!("/identity/cluster/members?xid={ns}:{value}")).await;
    if status != 200 {
        return None;
    }
    Some(events_of(p, ns, value).await)
}

#[tokio::test]
async fn profile_records_merge_under_the_default_policy_and_on_request_by_precedence() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (crm, crm_stream) = record_stream(&p, "crm").await;
    let (web, web_stream) = record_stream(&p, "web").await;
    let frank = || json!({"CRMID": [{"id": "frank", "primary": true}]});
    send(&p, &crm_stream, &crm, &[json!({"identityMap": frank(), "person": {"name": {"firstName": "Frank", "lastName": "Moe"}}, "loyalty": {"tier": "gold"}})]).await;
    // Ingested later: wins under timestamp order.
    tokio::time::sleep(Duration::from_millis(20)).await;
    send(&p, &web_stream, &web, &[json!({"identityMap": frank(), "person": {"name": {"firstName": "Frankie"}}, "homeAddress": {"city": "Oslo"}})]).await;

    let query = "/access/entities?schema.name=_xdm.context.profile&entityId=frank&entityIdNS=CRMID";
    let mut entity = Value::Null;
    eventually(
        Duration::from_secs(30),
        "frank's two fragments merged",
        async || {
            let (_, body) = api(&p, query).await;
            entity = body
                .as_object()
                .and_then(|o| o.values().next())
                .map(|v| v["entity"].clone())
                .unwrap_or_default();
            entity["homeAddress"]["city"] == "Oslo" && entity["loyalty"]["tier"] == "gold"
        },
    )
    .await;
    assert_eq!(
        entity["person"]["name"],
        json!({"firstName": "Frankie", "lastName": "Moe"})
    );
    // The stage's own merge (default policy) on profile.updates agrees.
    let stitched = fold(updates(&p, 2).await);
    let attributes = stitched
        .values()
        .find_map(|f| f.attributes.clone())
        .unwrap_or_default();
    assert_eq!(attributes["person"]["name"]["firstName"], "Frankie");

    let policy = p
        .http
        .post(format!("{}/config/mergePolicies", p.control))
        .bearer_auth(ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .json(&json!({"name": "crm first", "schema": {"name": "_xdm.context.profile"},
                      "identityGraph": {"type": "pdg"},
                      "attributeMerge": {"type": "dataSetPrecedence", "order": [crm["id"], web["id"]]},
                      "default": false}))
        .send()
        .await
        .expect("POST /config/mergePolicies");
    assert_eq!(policy.status(), 201);
    let policy: Value = policy.json().await.expect("policy JSON");
    let id = policy["id"].as_str().unwrap_or_default().to_string();
    let mut by_crm = Value::Null;
    eventually(
        Duration::from_secs(10),
        "the precedence policy answering",
        async || {
            let (status, body) = api(&p, &format!("{query}&mergePolicyId={id}")).await;
            by_crm = body
                .as_object()
                .and_then(|o| o.values().next())
                .map(|v| v["entity"].clone())
                .unwrap_or_default();
            status == 200
        },
    )
    .await;
    assert_eq!(by_crm["person"]["name"]["firstName"], "Frank", "{by_crm}");
    assert_eq!(by_crm["homeAddress"]["city"], "Oslo");
}

/// A profile at its event cap stores no more events, whatever a sender does: the next ones are
/// counted in its audit and the profile is flagged; the events it holds are the first ones.
#[tokio::test]
async fn a_profile_at_its_event_cap_stores_no_more_events() {
    let p = Pipeline::start().await;
    let _profile = p
        .start_profile_with(|c| c.profile.max_events_per_profile = 3)
        .await;
    let (dataset, stream) = event_stream(&p).await;
    let ids = json!({"CRMID": [{"id": "hank", "primary": true}]});
    for i in 0..3 {
        send(
            &p,
            &stream,
            &dataset,
            &[event(&format!("e{i}"), ids.clone())],
        )
        .await;
    }
    eventually(Duration::from_secs(30), "hank's three events", async || {
        events_of_maybe(&p, "CRMID", "hank")
            .await
            .is_some_and(|e| e.len() == 3)
    })
    .await;
    let over: Vec<Value> = (3..5)
        .map(|i| event(&format!("e{i}"), ids.clone()))
        .collect();
    send(&p, &stream, &dataset, &over).await;
    let mut profile = Value::Null;
    eventually(
        Duration::from_secs(30),
        "two events not stored",
        async || {
            profile = entity(&p, "CRMID", "hank").await;
            profile["audit"]["eventsNotStored"] == 2
        },
    )
    .await;
    assert_eq!(profile["eventCount"], 3, "{profile}");
    assert_eq!(profile["flagged"], true, "{profile}");
    assert_eq!(
        events_of(&p, "CRMID", "hank").await,
        ["e0", "e1", "e2"].map(String::from).into()
    );
}

#[tokio::test]
async fn a_dataset_keeps_events_in_profiles_for_its_own_time_to_live() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (short, short_stream) = event_stream(&p).await;
    let (long, long_stream) = event_stream(&p).await;
    let resp = p
        .http
        .patch(format!(
            "{}/datasets/{}",
            p.control,
            long["id"].as_str().unwrap_or_default()
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"profileEventTtlDays": 3}))
        .send()
        .await
        .expect("PATCH /datasets");
    assert_eq!(resp.status(), 200);
    let zero = p
        .http
        .patch(format!(
            "{}/datasets/{}",
            p.control,
            long["id"].as_str().unwrap_or_default()
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"profileEventTtlDays": 0}))
        .send()
        .await
        .expect("PATCH /datasets");
    assert_eq!(zero.status(), 400, "a time-to-live under a day is refused");
    let id = long["id"].as_str().unwrap_or_default().to_string();
    p.wait_for_edge(|c| {
        c.datasets
            .get(&id)
            .is_some_and(|d| d.profile_event_ttl_days == Some(3))
    })
    .await;

    let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let old = |id: &str| json!({"_id": id, "timestamp": two_days_ago, "identityMap": {"CRMID": [{"id": "gina", "primary": true}]}});
    send(&p, &short_stream, &short, &[old("old-in-short")]).await;
    send(&p, &long_stream, &long, &[old("old-in-long")]).await;
    send(
        &p,
        &short_stream,
        &short,
        &[event(
            "fresh",
            json!({"CRMID": [{"id": "gina", "primary": true}]}),
        )],
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "gina's profile with the fresh event",
        async || {
            events_of_maybe(&p, "CRMID", "gina")
                .await
                .is_some_and(|e| e.contains("fresh"))
        },
    )
    .await;
    // Both old events were read before the fresh one on gina's partition (one key, one
    // partition, in order): the one-day dataset's is past its time-to-live, the three-day
    // dataset's is kept.
    assert_eq!(
        events_of(&p, "CRMID", "gina").await,
        ["fresh", "old-in-long"].map(String::from).into()
    );
}

#[tokio::test]
async fn events_of_an_avro_dataset_hydrate_profiles_too() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let n = cdp_test_support::unique_name("avro");
    let dataset = p
        .create_dataset_adjusted(
            ORG,
            &format!("https://ns.adobe.com/acme/schemas/{n}"),
            event_schema(),
            |f| {
                f.dataset.format = cdp_catalog::ValueFormat::Avro;
            },
        )
        .await;
    let stream = p
        .create_stream(json!({"name": "avro", "orgId": ORG, "datasetId": dataset["id"]}))
        .await;
    send(
        &p,
        &stream,
        &dataset,
        &[event(
            "avro-1",
            json!({"CRMID": [{"id": "olga", "primary": true}]}),
        )],
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "olga's profile with the Avro event",
        async || events_of_maybe(&p, "CRMID", "olga").await == Some(["avro-1".to_string()].into()),
    )
    .await;
    let valid = p
        .broker
        .read_committed(&p.config.topics.events_valid(), 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        valid[0].header("cdp-value-format"),
        Some("avro"),
        "the event really was Avro on events.valid"
    );
}
