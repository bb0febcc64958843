//! The Profile and Identity read APIs against a real broker: hand-made `identity.graph` and
//! `profile.updates` records (built from cdp-profile's types), the view following them, and
//! real HTTP answers.

use std::sync::Arc;
use std::time::Duration;

use cdp_catalog::{
    AttributeMerge, AttributeMergeKind, CatalogRecord, IdentityGraphChoice, IdentityGraphKind,
    MergePolicy,
};
use cdp_contract::admin::{ensure_topics, TopicSpec};
use cdp_contract::records::{
    Change, Fragment, GraphChange, GraphEvent, GraphRecord, Identity, ProfileUpdate, StoredEvent,
};
use cdp_contract::{KafkaSettings, Topics};
use cdp_control::profiles::{router, ProfileView, ProfileViewError};
use cdp_control::{CatalogView, CatalogWriter};
use cdp_test_support::{eventually, unique_name, Broker};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token";
const ORG: &str = "ACME@AdobeOrg";
const WAIT: Duration = Duration::from_secs(20);
const PROFILE: &str = "_xdm.context.profile";
const EVENTS: &str = "_xdm.context.experienceevent";

fn crm() -> Identity {
    Identity::new("CRMID", "c-1")
}
fn ecid() -> Identity {
    Identity::new("ECID", "12345678901234567890123456789012345678")
}
fn email() -> Identity {
    Identity::new("Email", "ann@example.com")
}

/// A broker with the catalog and the two profile topics, and a producer onto them.
struct Harness {
    _broker: Broker,
    kafka: KafkaSettings,
    topics: Topics,
    producer: FutureProducer,
}

impl Harness {
    async fn new() -> Harness {
        let broker = Broker::start();
        let kafka = broker.kafka();
        let topics = Topics::new(unique_name("profile-api"));
        let spec = |name: String, partitions| TopicSpec {
            name,
            partitions,
            compacted: false,
        };
        ensure_topics(
            &kafka,
            &[
                cdp_catalog::topic_spec(&topics),
                spec(topics.profile_updates(), 3),
                spec(topics.identity_graph(), 1),
            ],
        )
        .await
        .expect("topics");
        let producer = kafka
            .producer("profile-api-test", 10_000)
            .create()
            .expect("producer");
        Harness {
            _broker: broker,
            kafka,
            topics,
            producer,
        }
    }

    async fn send(&self, topic: &str, key: &str, value: &impl serde::Serialize) {
        let value = serde_json::to_vec(value).expect("encode");
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }

    async fn graph(&self, records: &[GraphRecord]) {
        for r in records {
            self.send(&self.topics.identity_graph(), "graph", r).await;
        }
    }

    async fn updates(&self, updates: &[ProfileUpdate]) {
        for u in updates {
            self.send(&self.topics.profile_updates(), &u.profile_id, u)
                .await;
        }
    }

    /// The view caught up with what is on the topics, and the API on a loopback port.
    async fn serve(&self) -> Api {
        let catalog = CatalogView::start(&self.kafka, &self.topics).expect("catalog view");
        let writer =
            CatalogWriter::new(&self.kafka, &self.topics, catalog.clone()).expect("writer");
        let view = ProfileView::start(&self.kafka, &self.topics)
            .await
            .expect("profile view");
        view.caught_up(WAIT).await.expect("caught up");
        let app = router(view.clone(), catalog, Arc::from(ADMIN));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Api {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            view,
            writer,
        }
    }
}

struct Api {
    base: String,
    http: reqwest::Client,
    view: ProfileView,
    writer: CatalogWriter,
}

impl Api {
    /// `GET path?query` as the admin, in `ORG`'s prod sandbox.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .query(query)
                .bearer_auth(ADMIN)
                .header("x-gw-ims-org-id", ORG),
        )
        .await
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn profile(&self, identity: &Identity, policy: Option<&str>) -> (u16, Value) {
        let mut query = vec![
            ("schema.name", PROFILE),
            ("entityId", identity.id.as_str()),
            ("entityIdNS", identity.ns.as_str()),
        ];
        if let Some(p) = policy {
            query.push(("mergePolicyId", p));
        }
        self.get("/access/entities", &query).await
    }
}

fn members(profile: &str, seq: u64, identities: Vec<Identity>) -> GraphRecord {
    GraphRecord::Members {
        profile_id: profile.into(),
        org_id: ORG.into(),
        sandbox: "prod".into(),
        seq,
        time_ms: 1_700_000_000_000 + seq as i64,
        identities,
    }
}

fn graph_change(profile: &str, seq: u64, change: GraphChange) -> GraphRecord {
    GraphRecord::Change(GraphEvent {
        profile_id: profile.into(),
        seq,
        time_ms: 1_700_000_000_000 + seq as i64,
        change,
    })
}

fn update(profile: &str, seq: i64, identities: Vec<Identity>, change: Change) -> ProfileUpdate {
    ProfileUpdate {
        profile_id: profile.into(),
        org_id: ORG.into(),
        sandbox: "prod".into(),
        time_ms: 1_700_000_000_000 + seq,
        change,
        identities,
        attributes: None,
        removed_events: Vec::new(),
        event_count: 0,
        flagged: false,
        refused: Vec::new(),
    }
}

fn fragment(dataset: &str, owner: Identity, seq: u64, attributes: Value) -> Change {
    Change::Record {
        fragment: Fragment {
            dataset_id: dataset.into(),
            owner,
            timestamp_ms: 1_700_000_000_000 + seq as i64,
            ingest_ms: 1_700_000_000_000 + seq as i64,
            seq,
            attributes,
        },
    }
}

fn event(item: &str, timestamp_ms: i64, owner: Identity) -> Change {
    Change::Event {
        event: StoredEvent {
            item_id: item.into(),
            dataset_id: "web-events".into(),
            timestamp_ms,
            ingest_ms: timestamp_ms,
            owner: owner.clone(),
            identities: vec![owner],
            entity: serde_json::value::to_raw_value(
                &json!({"_id": item, "eventType": "web.webpagedetails.pageViews"}),
            )
            .expect("raw entity"),
        },
    }
}

fn problem_names(body: &Value, what: &str) -> bool {
    body["detail"].as_str().is_some_and(|d| d.contains(what))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_answers_for_each_identity_and_a_merged_one_for_the_survivor() {
    let h = Harness::new().await;
    assert!(matches!(
        ProfileView::start(&h.kafka, &Topics::new(unique_name("absent"))).await,
        Err(ProfileViewError::MissingTopic { .. })
    ));
    let ann = vec![crm(), ecid()];
    h.graph(&[
        graph_change(
            "p-ann",
            1,
            GraphChange::Created {
                identities: ann.clone(),
            },
        ),
        members("p-ann", 1, ann.clone()),
        members("p-mail", 2, vec![email()]),
    ])
    .await;
    h.updates(&[
        update(
            "p-ann",
            1,
            ann.clone(),
            fragment(
                "crm",
                crm(),
                1,
                json!({"person": {"name": {"firstName": "Ann"}}}),
            ),
        ),
        update(
            "p-ann",
            2,
            ann.clone(),
            fragment(
                "web",
                ecid(),
                2,
                json!({"person": {"name": {"lastName": "Lee"}}}),
            ),
        ),
        update(
            "p-mail",
            3,
            vec![email()],
            fragment("newsletter", email(), 3, json!({"optIn": true})),
        ),
    ])
    .await;
    let api = h.serve().await;

    // Either identity answers the same profile, merged over both fragments.
    for identity in [crm(), ecid()] {
        let (status, body) = api.profile(&identity, None).await;
        assert_eq!(status, 200, "{identity}: {body}");
        let p = &body["p-ann"];
        assert_eq!(p["entityId"], "p-ann");
        assert_eq!(p["mergePolicy"]["id"], "default");
        assert_eq!(p["sources"], json!(["crm", "web"]));
        assert_eq!(
            p["entity"]["person"],
            json!({"name": {"firstName": "Ann", "lastName": "Lee"}})
        );
        assert_eq!(
            p["entity"]["identityMap"],
            json!({"CRMID": [{"id": crm().id}], "ECID": [{"id": ecid().id}]})
        );
        assert_eq!(p["entity"]["segmentMembership"], json!({"ups": {}}));
        assert!(p["lastModifiedAt"]
            .as_str()
            .is_some_and(|t| t.starts_with("2023-11-14T")));
    }

    // Ann's email is seen with her CRM id: p-mail joins p-ann.
    h.graph(&[
        graph_change(
            "p-ann",
            4,
            GraphChange::Linked {
                a: crm(),
                b: email(),
            },
        ),
        graph_change(
            "p-mail",
            4,
            GraphChange::Merged {
                into: "p-ann".into(),
            },
        ),
        members("p-mail", 4, vec![]),
        members("p-ann", 4, vec![crm(), ecid(), email()]),
    ])
    .await;
    let all = vec![crm(), ecid(), email()];
    h.updates(&[
        update(
            "p-mail",
            4,
            vec![],
            Change::Merged {
                into: "p-ann".into(),
            },
        ),
        update(
            "p-ann",
            5,
            all.clone(),
            fragment("newsletter", email(), 3, json!({"optIn": true})),
        ),
    ])
    .await;
    let merged = eventually(
        WAIT,
        "the email answers the surviving profile",
        async || {
            let (status, body) = api.profile(&email(), None).await;
            if status == 200 && body["p-ann"]["entity"]["optIn"] == json!(true) {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
    .await;
    assert!(merged.get("p-mail").is_none());
    assert_eq!(
        merged["p-ann"]["sources"],
        json!(["crm", "newsletter", "web"])
    );
    assert!(api.view.profiles().get("p-mail").is_none());

    let (status, body) = api
        .get(
            "/identity/cluster/members",
            &[("xid", &email().to_string())],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["profileId"], "p-ann");
    let xids: Vec<&str> = body["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["xid"].as_str())
        .collect();
    assert_eq!(xids.len(), 3, "{body}");
    assert!(xids.contains(&"CRMID:c-1"));
    assert_eq!(body["members"][0]["namespace"]["code"], "CRMID");
    let (status, same) = api
        .get(
            "/identity/cluster/members",
            &[("namespace", "CRMID"), ("id", "c-1")],
        )
        .await;
    assert_eq!((status, &same["members"]), (200, &body["members"]));

    let (status, body) = api
        .get("/identity/cluster/history", &[("xid", "CRMID:c-1")])
        .await;
    assert_eq!(status, 200, "{body}");
    let ops: Vec<&str> = body["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["op"].as_str())
        .collect();
    assert_eq!(ops, ["merged", "linked", "created"], "{body}");
    assert_eq!(body["history"][0]["into"], "p-ann");
    assert!(body["history"][0]["time"].as_str().is_some());

    // Errors: problem documents naming what is wrong.
    let (status, body) = api.profile(&Identity::new("CRMID", "nobody"), None).await;
    assert_eq!(status, 404);
    assert!(
        problem_names(
            &body,
            "no profile has the identity CRMID:nobody in sandbox prod"
        ),
        "{body}"
    );
    let (status, body) = api
        .get("/identity/cluster/members", &[("xid", "CRMID")])
        .await;
    assert!(status == 400 && problem_names(&body, "xid"), "{body}");
    let (status, body) = api
        .get(
            "/access/entities",
            &[("entityId", "c-1"), ("entityIdNS", "CRMID")],
        )
        .await;
    assert!(
        status == 400 && problem_names(&body, "schema.name"),
        "{body}"
    );
    let (status, body) = api
        .get(
            "/access/entities",
            &[("schema.name", PROFILE), ("entityId", "c-1")],
        )
        .await;
    assert!(
        status == 400 && problem_names(&body, "entityIdNS"),
        "{body}"
    );
    let (status, body) = api
        .send(
            api.http
                .get(format!("{}/identity/cluster/members", api.base))
                .query(&[("xid", "CRMID:c-1")])
                .bearer_auth(ADMIN),
        )
        .await;
    assert!(
        status == 400 && problem_names(&body, "x-gw-ims-org-id"),
        "{body}"
    );
    // Another sandbox knows none of it.
    let (status, _) = api
        .send(
            api.http
                .get(format!("{}/identity/cluster/members", api.base))
                .query(&[("xid", "CRMID:c-1")])
                .bearer_auth(ADMIN)
                .header("x-gw-ims-org-id", ORG)
                .header("x-sandbox-name", "dev"),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = api
        .send(
            api.http
                .get(format!("{}/identity/cluster/members", api.base))
                .query(&[("xid", "CRMID:c-1")])
                .header("x-gw-ims-org-id", ORG),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(api.view.malformed(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_come_newest_first_in_pages_that_hold_while_events_arrive() {
    let h = Harness::new().await;
    let ann = vec![crm(), ecid()];
    h.graph(&[members("p-ann", 1, ann.clone())]).await;
    let mut updates = Vec::new();
    for i in 0..7 {
        let mut u = update(
            "p-ann",
            i,
            ann.clone(),
            event(&format!("e{i}"), 1_700_000_000_000 + i * 1000, ecid()),
        );
        u.event_count = i as u32 + 1;
        updates.push(u);
    }
    h.updates(&updates).await;
    // Not JSON of an update: skipped and counted, the rest still served.
    h.send(
        &h.topics.profile_updates(),
        "p-ann",
        &json!({"nonsense": 1}),
    )
    .await;
    let api = h.serve().await;
    assert_eq!(api.view.malformed(), 1);

    let page = |items: &Value| -> Vec<String> {
        items["children"]
            .as_array()
            .expect("children")
            .iter()
            .filter_map(|c| c["entityId"].as_str().map(str::to_string))
            .collect()
    };
    let events_of = [
        ("schema.name", EVENTS),
        ("relatedSchema.name", PROFILE),
        ("relatedEntityId", "c-1"),
        ("relatedEntityIdNS", "CRMID"),
        ("limit", "3"),
    ];
    let (status, first) = api.get("/access/entities", &events_of).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(page(&first), ["e6", "e5", "e4"]);
    assert_eq!(first["_page"]["orderby"], "-timestamp");
    assert_eq!(first["_page"]["count"], 3);
    let child = &first["children"][0];
    assert_eq!(child["relatedEntityId"], "p-ann");
    assert_eq!(child["timestamp"], 1_700_000_006_000_i64);
    assert_eq!(child["entity"]["_id"], "e6");

    // A newer event arrives: the next page still starts below the first one.
    h.updates(&[update(
        "p-ann",
        9,
        ann.clone(),
        event("e9", 1_700_000_009_000, crm()),
    )])
    .await;
    eventually(WAIT, "the new event is in the view", async || {
        api.view
            .profiles()
            .get("p-ann")
            .is_some_and(|p| p.events.len() == 8)
    })
    .await;
    let href = first["_links"]["next"]["href"]
        .as_str()
        .expect("a next link");
    assert!(href.starts_with("/access/entities?"), "{href}");
    let (status, second) = api
        .send(
            api.http
                .get(format!("{}{href}", api.base))
                .bearer_auth(ADMIN)
                .header("x-gw-ims-org-id", ORG),
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(page(&second), ["e3", "e2", "e1"]);
    let cursor = second["_page"]["next"].as_str().expect("cursor");
    let mut last_query = events_of.to_vec();
    last_query.push(("start", cursor));
    let (_, last) = api.get("/access/entities", &last_query).await;
    assert_eq!(page(&last), ["e0"]);
    assert_eq!(last["_page"]["next"], "");
    assert_eq!(last["_links"]["next"]["href"], "");

    // The whole history, from the other identity.
    let (_, all) = api
        .get(
            "/access/entities",
            &[
                ("schema.name", EVENTS),
                ("relatedSchema.name", PROFILE),
                ("relatedEntityId", ecid().id.as_str()),
                ("relatedEntityIdNS", "ECID"),
            ],
        )
        .await;
    assert_eq!(page(&all), ["e9", "e6", "e5", "e4", "e3", "e2", "e1", "e0"]);

    for (param, value) in [("limit", "0"), ("limit", "1001"), ("start", "not-a-cursor")] {
        let mut query: Vec<(&str, &str)> = events_of
            .iter()
            .filter(|(k, _)| *k != param)
            .copied()
            .collect();
        query.push((param, value));
        let (status, body) = api.get("/access/entities", &query).await;
        assert!(
            status == 400 && problem_names(&body, param),
            "{param}={value}: {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_none_merge_policy_shows_only_the_identitys_own_fragment() {
    let h = Harness::new().await;
    let ann = vec![crm(), ecid()];
    h.graph(&[members("p-ann", 1, ann.clone())]).await;
    h.updates(&[
        update(
            "p-ann",
            1,
            ann.clone(),
            fragment(
                "crm",
                crm(),
                1,
                json!({"loyalty": {"tier": "gold"}, "city": "Oslo"}),
            ),
        ),
        update(
            "p-ann",
            2,
            ann.clone(),
            fragment(
                "web",
                ecid(),
                2,
                json!({"city": "Bergen", "device": "phone"}),
            ),
        ),
    ])
    .await;
    let api = h.serve().await;
    let policy = |id: &str, graph, attribute_merge, is_default| MergePolicy {
        id: id.into(),
        name: id.into(),
        org_id: ORG.into(),
        sandbox: "prod".into(),
        schema_class: PROFILE.into(),
        identity_graph: IdentityGraphChoice { kind: graph },
        attribute_merge,
        is_default,
        created_at: 1,
        updated_at: 1,
    };
    let crm_first = AttributeMerge {
        kind: AttributeMergeKind::DataSetPrecedence,
        data: vec!["crm".into()],
    };
    for p in [
        policy(
            "own-only",
            IdentityGraphKind::None,
            crm_first.clone(),
            false,
        ),
        policy("crm-first", IdentityGraphKind::Pdg, crm_first, true),
    ] {
        api.writer
            .put(&CatalogRecord::MergePolicy(p))
            .await
            .expect("merge policy");
    }

    let (status, body) = api.profile(&ecid(), Some("own-only")).await;
    assert_eq!(status, 200, "{body}");
    let p = &body["p-ann"];
    assert_eq!(p["mergePolicy"]["id"], "own-only");
    assert_eq!(p["sources"], json!(["web"]));
    assert_eq!(p["entity"]["city"], "Bergen");
    assert!(p["entity"].get("loyalty").is_none(), "{body}");
    assert_eq!(
        p["entity"]["identityMap"],
        json!({"ECID": [{"id": ecid().id}]})
    );

    // Without mergePolicyId: the sandbox's default (the CRM dataset wins over the newer web one).
    let (status, body) = api.profile(&ecid(), None).await;
    assert_eq!(status, 200, "{body}");
    let p = &body["p-ann"];
    assert_eq!(p["mergePolicy"]["id"], "crm-first");
    assert_eq!(p["entity"]["city"], "Oslo");
    assert_eq!(p["entity"]["device"], "phone");
    assert_eq!(
        p["entity"]["identityMap"].as_object().map(|m| m.len()),
        Some(2)
    );

    let (status, body) = api.profile(&ecid(), Some("no-such-policy")).await;
    assert!(
        status == 400 && problem_names(&body, "mergePolicyId"),
        "{body}"
    );
}
