//! Streaming segmentation (seed 003): segment definitions evaluated on every profile update,
//! membership changes on the Avro and JSON membership topics, exits by timer with no new data.

use std::time::Duration;

use cdp_catalog::{CatalogRecord, SegmentDefinition};
use cdp_contract::records::{MembershipChange, Status, Trigger};
use cdp_e2e::Pipeline;
use cdp_test_support::eventually;
use serde_json::json;

use crate::profile::{event, event_stream, record_stream, send, ORG};

fn catalog_writer(p: &Pipeline) -> cdp_control::CatalogWriter {
    cdp_control::CatalogWriter::new(
        &p.config.kafka,
        &p.config.topics,
        p.control_running.catalog.clone(),
    )
    .expect("catalog writer")
}

/// Writes a streaming definition to the catalog as the definitions API does.
async fn define(p: &Pipeline, id: &str, expression: &str) {
    let writer = catalog_writer(p);
    let now = cdp_contract::clock::now_ms();
    writer
        .put(&CatalogRecord::Segment(SegmentDefinition {
            id: id.into(),
            name: id.into(),
            description: None,
            org_id: ORG.into(),
            sandbox: "prod".into(),
            schema_name: "_xdm.context.profile".into(),
            expression: expression.into(),
            streaming: true,
            classification: "single event".into(),
            profile_only: false,
            creation_time: now,
            update_time: now,
        }))
        .await
        .expect("definition written");
}

async fn memberships(p: &Pipeline, at_least: usize) -> Vec<MembershipChange> {
    p.broker
        .read_committed_settle(
            &p.config.topics.segment_membership_json(),
            at_least,
            Duration::from_secs(20),
            Duration::from_millis(200),
        )
        .await
        .iter()
        .map(|r| serde_json::from_value(r.json()).expect("a membership record"))
        .collect()
}

#[tokio::test]
async fn a_purchase_qualifies_at_once_and_exits_by_timer_when_its_window_passes() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    define(
        &p,
        "recent-buyers",
        r#"xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 6 seconds before now)"#,
    )
    .await;
    let (dataset, stream) = event_stream(&p).await;
    let mut purchase = event("buy-1", json!({"CRMID": [{"id": "hank", "primary": true}]}));
    purchase["eventType"] = json!("commerce.purchases");
    let purchased_ms = purchase["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .expect("the event's timestamp");
    send(&p, &stream, &dataset, &[purchase]).await;

    let mut changes = Vec::new();
    eventually(
        Duration::from_secs(30),
        "hank realized in recent-buyers",
        async || {
            changes = memberships(&p, 1).await;
            !changes.is_empty()
        },
    )
    .await;
    let entered = changes[0].clone();
    assert_eq!(entered.segment_id, "recent-buyers");
    assert_eq!(entered.status, Status::Realized);
    assert_eq!(entered.trigger, Trigger::Event);
    assert_eq!(entered.event_id.as_deref(), Some("buy-1"));
    assert!(entered
        .identities
        .iter()
        .any(|i| i.ns == "CRMID" && i.id == "hank"));
    assert!(
        entered.time < purchased_ms + 6_000,
        "entered while the purchase is in the window"
    );

    // No new event: the timer makes hank exit when the purchase leaves the 6-second window.
    eventually(
        Duration::from_secs(30),
        "hank exited by timer",
        async || {
            changes = memberships(&p, 2).await;
            changes.len() >= 2
        },
    )
    .await;
    assert_eq!(changes.len(), 2, "one entry, one exit: {changes:?}");
    let exited = &changes[1];
    assert_eq!(exited.status, Status::Exited);
    assert_eq!(exited.trigger, Trigger::Timer);
    let late = exited.time - (purchased_ms + 6_000);
    assert!(
        (0..3_000).contains(&late),
        "exited when the purchase left the window, not before and not much after ({late} ms)"
    );

    // The same two changes on the Avro topic, decoded through the project's registry.
    let avro = p
        .broker
        .read_committed(
            &p.config.topics.segment_membership(),
            2,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(avro.len(), 2);
    let decoder = schema_registry_converter::async_impl::avro::AvroDecoder::new(
        // A subscriber's decoder authenticates to the registry (here with the admin token).
        schema_registry_converter::async_impl::schema_registry::SrSettings::new_builder(
            p.control.clone(),
        )
        .set_token_authorization(cdp_e2e::ADMIN)
        .build()
        .expect("registry client"),
    );
    let mut statuses = Vec::new();
    for r in &avro {
        let decoded = decoder
            .decode(Some(&r.value))
            .await
            .expect("decoded through the registry");
        let apache_avro::types::Value::Record(fields) = decoded.value else {
            panic!("a record")
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            field("profileId"),
            Some(apache_avro::types::Value::String(
                entered.profile_id.clone()
            ))
        );
        if let Some(apache_avro::types::Value::Enum(_, s)) = field("status") {
            statuses.push(s);
        }
    }
    assert_eq!(statuses, vec!["realized".to_string(), "exited".to_string()]);

    // And on the profile, through the Profile API.
    eventually(
        Duration::from_secs(10),
        "the exit on hank's profile",
        async || {
            let (_, body) = crate::profile::api(
                &p,
                "/access/entities?schema.name=_xdm.context.profile&entityId=hank&entityIdNS=CRMID",
            )
            .await;
            body[&entered.profile_id]["entity"]["segmentMembership"]["ups"]["recent-buyers"]
                ["status"]
                == "exited"
        },
    )
    .await;
}

/// Realized segments per CRM id, folded from the JSON membership topic.
fn members_by_person(
    changes: &[MembershipChange],
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for c in changes {
        let Some(person) = c
            .identities
            .iter()
            .find(|i| i.ns == "CRMID")
            .map(|i| i.id.clone())
        else {
            continue;
        };
        let set = out.entry(person).or_default();
        match c.status {
            Status::Exited => {
                set.remove(&c.segment_id);
            }
            _ => {
                set.insert(c.segment_id.clone());
            }
        }
    }
    out
}

fn at(id: &str, person: &str, event_type: &str, ago: chrono::Duration) -> serde_json::Value {
    json!({"_id": id, "timestamp": (chrono::Utc::now() - ago).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
           "eventType": event_type, "identityMap": {"CRMID": [{"id": person, "primary": true}]}})
}

#[tokio::test]
async fn seed_003_rules_chains_counts_profile_attributes_the_day_and_bots() {
    let p = Pipeline::start().await;
    // Two events of one profile in one second are the most that count: the rest is bot traffic.
    let _profile = p
        .start_profile_with(|c| c.segment.bot_events_per_second = 2)
        .await;
    define(&p, "checkout-kept", r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "productView"), C1: NOT WHAT(eventType = "removeFromCart"), C2: WHAT(eventType = "checkout") WITHIN 2 hours AFTER C0])"#).await;
    define(
        &p,
        "busy",
        r#"xEvent[eventType = "web.webpagedetails.pageViews"].count() >= 4"#,
    )
    .await;
    define(&p, "gold", r#"loyalty.tier = "gold""#).await;
    // A marker event after a person's others (same key, same partition, in order): once the
    // person is in "marker", every earlier event of theirs has been evaluated.
    define(&p, "marker", r#"xEvent.any(eventType = "marker")"#).await;
    let (dataset, stream) = event_stream(&p).await;
    let s = chrono::Duration::seconds;
    let view = "web.webpagedetails.pageViews";
    // A chain: view then checkout, kept; with a removal between, not.
    send(
        &p,
        &stream,
        &dataset,
        &[
            at("a1", "ann", "productView", s(60)),
            at("a2", "ann", "checkout", s(30)),
        ],
    )
    .await;
    send(
        &p,
        &stream,
        &dataset,
        &[
            at("b1", "bob", "productView", s(60)),
            at("b2", "bob", "removeFromCart", s(45)),
            at("b3", "bob", "checkout", s(30)),
        ],
    )
    .await;
    // A count within the day: four views in four seconds.
    send(
        &p,
        &stream,
        &dataset,
        &[
            at("c1", "cat", view, s(4)),
            at("c2", "cat", view, s(3)),
            at("c3", "cat", view, s(2)),
            at("c4", "cat", view, s(1)),
        ],
    )
    .await;
    // Three of dan's views are over a day old at arrival: not evaluated in streaming (the
    // count has no window of its own, so only that rule keeps dan out).
    send(
        &p,
        &stream,
        &dataset,
        &[
            at("d1", "dan", view, chrono::Duration::hours(25)),
            at("d2", "dan", view, chrono::Duration::hours(26)),
            at("d3", "dan", view, chrono::Duration::hours(27)),
            at("d4", "dan", view, s(1)),
        ],
    )
    .await;
    // Four of eve's views in one second: two count, two are bot traffic. The engine counts by
    // whole seconds, so the burst starts at one (30 ms from a second's end, it split in two).
    let same_second = chrono::DurationRound::duration_trunc(chrono::Utc::now() - s(5), s(1))
        .expect("a whole second");
    let burst: Vec<serde_json::Value> = (0..4)
        .map(|i| json!({"_id": format!("e{i}"), "timestamp": (same_second + chrono::Duration::milliseconds(i * 10)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        "eventType": view, "identityMap": {"CRMID": [{"id": "eve", "primary": true}]}}))
        .collect();
    send(&p, &stream, &dataset, &burst).await;
    // A profile attribute, from a profile record.
    let (crm, crm_stream) = record_stream(&p, "crm").await;
    send(&p, &crm_stream, &crm, &[json!({"identityMap": {"CRMID": [{"id": "gus", "primary": true}]}, "loyalty": {"tier": "gold"}})]).await;
    // A marker: when it is in, every earlier event of these people has been evaluated.
    define(&p, "marker", r#"xEvent.any(eventType = "marker")"#).await;
    send(&p, &stream, &dataset, &[at("z", "zed", "marker", s(0))]).await;

    let mut people = Default::default();
    eventually(
        Duration::from_secs(40),
        "the memberships of ann, cat and gus",
        async || {
            people = members_by_person(&memberships(&p, 4).await);
            ["ann", "cat", "gus", "zed"]
                .iter()
                .all(|who| people.contains_key(*who))
        },
    )
    .await;
    let segments = |who: &str| -> Vec<String> {
        people
            .get(who)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(segments("ann"), vec!["checkout-kept"]);
    assert_eq!(segments("cat"), vec!["busy"]);
    assert_eq!(segments("gus"), vec!["gold"]);
    assert!(
        segments("bob").is_empty(),
        "a removal between view and checkout breaks the chain"
    );
    assert!(
        segments("dan").is_empty(),
        "events over a day old at arrival are not evaluated"
    );
    assert!(
        segments("eve").is_empty(),
        "a burst in one second is bot traffic"
    );
}

#[tokio::test]
async fn an_exit_due_while_the_stage_is_down_happens_once_at_its_restart() {
    let p = Pipeline::start().await;
    let profile = p.start_profile().await;
    define(
        &p,
        "just-bought",
        r#"xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 8 seconds before now)"#,
    )
    .await;
    let (dataset, stream) = event_stream(&p).await;
    let purchase = at("buy", "ida", "commerce.purchases", chrono::Duration::zero());
    send(&p, &stream, &dataset, &[purchase]).await;
    eventually(Duration::from_secs(30), "ida realized", async || {
        !memberships(&p, 1).await.is_empty()
    })
    .await;
    // Down across the moment ida's purchase leaves the window.
    profile.engine.shutdown().await;
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert_eq!(
        memberships(&p, 1).await.len(),
        1,
        "no exit while the stage is down"
    );
    let _again = p.start_engine().await;
    let mut changes = Vec::new();
    eventually(
        Duration::from_secs(30),
        "ida's exit after the restart",
        async || {
            changes = memberships(&p, 2).await;
            changes.len() >= 2
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changes = memberships(&p, 2).await;
    assert_eq!(changes.len(), 2, "the due timer fired once: {changes:?}");
    assert_eq!(changes[1].status, Status::Exited);
    assert_eq!(changes[1].trigger, Trigger::Timer);
}

#[tokio::test]
async fn a_definition_created_through_the_api_is_evaluated_for_the_profiles_that_exist() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (dataset, stream) = event_stream(&p).await;
    send(
        &p,
        &stream,
        &dataset,
        &[at(
            "k1",
            "kim",
            "web.webpagedetails.pageViews",
            chrono::Duration::seconds(1),
        )],
    )
    .await;
    eventually(Duration::from_secs(30), "kim's profile", async || {
        crate::profile::api(&p, "/identity/cluster/members?xid=CRMID:kim")
            .await
            .0
            == 200
    })
    .await;
    // Let the segment stage see kim's update before the definition exists.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let resp = p
        .http
        .post(format!("{}/segment/definitions", p.control))
        .bearer_auth(cdp_e2e::ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .json(&json!({"name": "viewers", "schema": {"name": "_xdm.context.profile"},
                      "expression": {"type": "PQL", "format": "pql/text",
                                     "value": "xEvent.any(eventType = \"web.webpagedetails.pageViews\")"}}))
        .send()
        .await
        .expect("POST /segment/definitions");
    assert_eq!(resp.status(), 200);
    let definition: serde_json::Value = resp.json().await.expect("definition JSON");
    assert_eq!(
        definition["evaluationInfo"]["continuous"]["enabled"], true,
        "{definition}"
    );
    let id = definition["id"].as_str().unwrap_or_default().to_string();

    // No new event: the stage evaluates the new definition for the profiles it holds.
    let mut changes = Vec::new();
    eventually(
        Duration::from_secs(30),
        "kim realized by the new definition",
        async || {
            changes = memberships(&p, 1).await;
            !changes.is_empty()
        },
    )
    .await;
    assert_eq!(changes[0].segment_id, id);
    assert_eq!(changes[0].status, Status::Realized);
    assert_eq!(changes[0].trigger, Trigger::Definition);

    // A definition that does not parse: 400 with where.
    let bad = p
        .http
        .post(format!("{}/segment/definitions", p.control))
        .bearer_auth(cdp_e2e::ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .json(&json!({"name": "bad", "schema": {"name": "_xdm.context.profile"},
                      "expression": {"type": "PQL", "format": "pql/text", "value": "xEvent.any(eventType = )"}}))
        .send()
        .await
        .expect("POST /segment/definitions");
    assert_eq!(bad.status(), 400);
    let problem: serde_json::Value = bad.json().await.expect("problem JSON");
    assert!(
        problem["errors"][0]["column"].as_u64().is_some(),
        "{problem}"
    );
}

#[tokio::test]
async fn an_active_schedule_evaluates_the_batch_definitions_at_its_time() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (dataset, stream) = event_stream(&p).await;
    send(
        &p,
        &stream,
        &dataset,
        &[at(
            "l1",
            "lou",
            "web.webpagedetails.pageViews",
            chrono::Duration::seconds(1),
        )],
    )
    .await;
    eventually(Duration::from_secs(30), "lou's profile", async || {
        crate::profile::api(&p, "/identity/cluster/members?xid=CRMID:lou")
            .await
            .0
            == 200
    })
    .await;
    let writer = catalog_writer(&p);
    let now = cdp_contract::clock::now_ms();
    // A batch definition: no streaming evaluation touches it.
    writer
        .put(&CatalogRecord::Segment(SegmentDefinition {
            id: "nightly-viewers".into(),
            name: "nightly viewers".into(),
            description: None,
            org_id: ORG.into(),
            sandbox: "prod".into(),
            schema_name: "_xdm.context.profile".into(),
            expression: r#"xEvent[eventType = "web.webpagedetails.pageViews"].count() >= 1"#.into(),
            streaming: false,
            classification: "batch".into(),
            profile_only: false,
            creation_time: now,
            update_time: now,
        }))
        .await
        .expect("definition");
    // A streaming definition on the batch one: it follows the batch membership when the
    // schedule changes it, not at lou's next event.
    define(&p, "of-nightly", r#"inSegment("nightly-viewers")"#).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        memberships(&p, 0).await.is_empty(),
        "a batch definition waits for its schedule"
    );
    // Daily at a time four seconds from now.
    let fire = chrono::Utc::now() + chrono::Duration::seconds(4);
    writer
        .put(&CatalogRecord::Schedule(cdp_catalog::Schedule {
            id: "daily".into(),
            name: "daily".into(),
            org_id: ORG.into(),
            sandbox: "prod".into(),
            kind: "batch_segmentation".into(),
            segments: vec!["*".into()],
            schedule: fire.format("%S %M %H * * ?").to_string(),
            state: "active".into(),
            create_epoch: now / 1000,
            update_epoch: now / 1000,
        }))
        .await
        .expect("schedule");
    let mut changes = Vec::new();
    eventually(
        Duration::from_secs(30),
        "lou realized by the schedule, in both",
        async || {
            changes = memberships(&p, 2).await;
            changes.len() >= 2
        },
    )
    .await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes[0].time >= fire.timestamp() * 1000,
        "not before the schedule's time ({} < {})",
        changes[0].time,
        fire.timestamp() * 1000
    );
    assert_eq!(changes[0].segment_id, "nightly-viewers");
    assert_eq!(changes[0].trigger, Trigger::Schedule);
    assert_eq!(changes[1].segment_id, "of-nightly");
    assert_eq!(changes[1].status, Status::Realized);
    assert_eq!(changes[1].trigger, Trigger::Schedule);
}

#[tokio::test]
async fn segments_of_segments_follow_their_inner_segment_and_merged_profiles_move_their_memberships(
) {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    define(&p, "signed-up", r#"xEvent.any(eventType = "signup")"#).await;
    define(&p, "of-signed-up", r#"inSegment("signed-up")"#).await;
    let (dataset, stream) = event_stream(&p).await;
    let device = crate::profile::ecid(99);
    // The person's CRM profile first (older), then an anonymous signup on a device (newer).
    send(
        &p,
        &stream,
        &dataset,
        &[at("m1", "max", "other", chrono::Duration::seconds(3))],
    )
    .await;
    eventually(Duration::from_secs(30), "max's profile", async || {
        crate::profile::api(&p, "/identity/cluster/members?xid=CRMID:max")
            .await
            .0
            == 200
    })
    .await;
    let signup = json!({"_id": "s1", "timestamp": chrono::Utc::now().to_rfc3339(), "eventType": "signup",
                        "identityMap": {"ECID": [{"id": device, "primary": true}]}});
    send(&p, &stream, &dataset, &[signup]).await;
    let mut changes = Vec::new();
    eventually(
        Duration::from_secs(30),
        "the device's profile in both segments",
        async || {
            changes = memberships(&p, 2).await;
            changes.len() >= 2
        },
    )
    .await;
    let anonymous = changes[0].profile_id.clone();
    let mut entered: Vec<&str> = changes.iter().map(|c| c.segment_id.as_str()).collect();
    entered.sort();
    assert_eq!(
        entered,
        vec!["of-signed-up", "signed-up"],
        "the outer segment follows the inner one at once"
    );

    // The login joins them: the older CRM profile survives and takes the signup with it.
    let login = json!({"_id": "l1", "timestamp": chrono::Utc::now().to_rfc3339(), "eventType": "login",
                       "identityMap": {"CRMID": [{"id": "max", "primary": true}], "ECID": [{"id": device}]}});
    send(&p, &stream, &dataset, &[login]).await;
    eventually(
        Duration::from_secs(30),
        "memberships moved to the surviving profile",
        async || {
            changes = memberships(&p, 6).await;
            changes.len() >= 6
        },
    )
    .await;
    let of = |profile: &str, status: Status| -> Vec<String> {
        let mut v: Vec<String> = changes
            .iter()
            .filter(|c| c.profile_id == profile && c.status == status)
            .map(|c| c.segment_id.clone())
            .collect();
        v.sort();
        v
    };
    let survivor = changes
        .iter()
        .map(|c| c.profile_id.clone())
        .find(|id| *id != anonymous)
        .expect("the surviving profile's changes");
    assert_eq!(
        of(&anonymous, Status::Exited),
        vec!["of-signed-up", "signed-up"]
    );
    assert!(changes
        .iter()
        .filter(|c| c.profile_id == anonymous && c.status == Status::Exited)
        .all(|c| c.trigger == Trigger::Merged));
    assert_eq!(
        of(&survivor, Status::Realized),
        vec!["of-signed-up", "signed-up"]
    );
    assert_eq!(changes.len(), 6, "{changes:?}");
}

#[tokio::test]
async fn profile_attributes_qualify_with_events_and_a_changed_attribute_exits() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    // Single event with a profile attribute; profile only.
    define(
        &p,
        "gold-buyers",
        r#"loyalty.tier = "gold" and xEvent.any(eventType = "commerce.purchases")"#,
    )
    .await;
    define(&p, "gold", r#"loyalty.tier = "gold""#).await;
    let (crm, crm_stream) = record_stream(&p, "crm").await;
    let (dataset, stream) = event_stream(&p).await;
    let tier = |t: &str| json!({"identityMap": {"CRMID": [{"id": "nia", "primary": true}]}, "loyalty": {"tier": t}});
    send(&p, &crm_stream, &crm, &[tier("gold")]).await;
    send(
        &p,
        &stream,
        &dataset,
        &[at(
            "n1",
            "nia",
            "commerce.purchases",
            chrono::Duration::seconds(1),
        )],
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "nia in both segments",
        async || {
            members_by_person(&memberships(&p, 2).await)
                .get("nia")
                .is_some_and(|s| s.len() == 2)
        },
    )
    .await;
    // The tier changes: both exit, with no event needed.
    send(&p, &crm_stream, &crm, &[tier("silver")]).await;
    eventually(Duration::from_secs(30), "nia out of both", async || {
        members_by_person(&memberships(&p, 4).await)
            .get("nia")
            .is_some_and(|s| s.is_empty())
    })
    .await;
    let changes = memberships(&p, 4).await;
    assert_eq!(changes.len(), 4, "{changes:?}");
    assert!(changes[2..]
        .iter()
        .all(|c| c.status == Status::Exited && c.trigger == Trigger::Profile));
}

#[tokio::test]
async fn a_qualification_resting_on_events_ends_when_they_leave_the_lookback() {
    let p = Pipeline::start().await;
    // Seed 003's lookback is a day; six seconds here, so its end comes within the test.
    let _profile = p
        .start_profile_with(|c| c.segment.lookback_ms = 6_000)
        .await;
    // No window of its own: only the lookback ends the qualification.
    define(&p, "viewed", r#"xEvent.any(eventType = "view")"#).await;
    let (dataset, stream) = event_stream(&p).await;
    let view = at("v1", "una", "view", chrono::Duration::zero());
    let viewed_ms = view["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis())
        .expect("the event's timestamp");
    send(&p, &stream, &dataset, &[view]).await;
    let mut changes = Vec::new();
    eventually(
        Duration::from_secs(30),
        "una entered, then left with no new event",
        async || {
            changes = memberships(&p, 2).await;
            changes.len() >= 2
        },
    )
    .await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        (changes[0].status, changes[0].trigger),
        (Status::Realized, Trigger::Event)
    );
    assert_eq!(
        (changes[1].status, changes[1].trigger),
        (Status::Exited, Trigger::Timer)
    );
    let late = changes[1].time - (viewed_ms + 6_000);
    assert!(
        (0..3_000).contains(&late),
        "exited when the event left the lookback, not before and not much after ({late} ms)"
    );
}

#[tokio::test]
async fn a_deleted_definition_exits_its_members_so_destinations_learn_it() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (dataset, stream) = event_stream(&p).await;
    let resp = p
        .http
        .post(format!("{}/segment/definitions", p.control))
        .bearer_auth(cdp_e2e::ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .json(
            &json!({"name": "viewers", "schema": {"name": "_xdm.context.profile"},
                      "expression": {"type": "PQL", "format": "pql/text",
                                     "value": "xEvent.any(eventType = \"view\")"}}),
        )
        .send()
        .await
        .expect("POST /segment/definitions");
    assert_eq!(resp.status(), 200);
    let definition: serde_json::Value = resp.json().await.expect("definition JSON");
    let id = definition["id"].as_str().unwrap_or_default().to_string();
    send(
        &p,
        &stream,
        &dataset,
        &[at("w1", "vic", "view", chrono::Duration::zero())],
    )
    .await;
    eventually(Duration::from_secs(30), "vic realized", async || {
        !memberships(&p, 1).await.is_empty()
    })
    .await;
    let deleted = p
        .http
        .delete(format!("{}/segment/definitions/{id}", p.control))
        .bearer_auth(cdp_e2e::ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .send()
        .await
        .expect("DELETE /segment/definitions");
    assert_eq!(deleted.status(), 204);
    let mut changes = Vec::new();
    eventually(Duration::from_secs(30), "vic's exit", async || {
        changes = memberships(&p, 2).await;
        changes.len() >= 2
    })
    .await;
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[1].segment_id, id);
    assert_eq!(changes[1].status, Status::Exited);
    assert_eq!(changes[1].trigger, Trigger::Definition);
    // And the profile no longer shows it as a member.
    eventually(
        Duration::from_secs(10),
        "the exit on vic's profile",
        async || {
            let (_, body) = crate::profile::api(
                &p,
                "/access/entities?schema.name=_xdm.context.profile&entityId=vic&entityIdNS=CRMID",
            )
            .await;
            body[&changes[1].profile_id]["entity"]["segmentMembership"]["ups"][&id]["status"]
                == "exited"
        },
    )
    .await;
}

#[tokio::test]
async fn a_definition_change_is_evaluated_in_transactions_of_bounded_size() {
    let p = Pipeline::start().await;
    // Two profiles per turn of the engine's loop.
    let _profile = p.start_profile_with(|c| c.segment.sweep_chunk = 2).await;
    let (dataset, stream) = event_stream(&p).await;
    let people = ["b1", "b2", "b3", "b4", "b5", "b6"];
    let views: Vec<serde_json::Value> = people
        .iter()
        .map(|who| at(&format!("{who}-v"), who, "view", chrono::Duration::zero()))
        .collect();
    send(&p, &stream, &dataset, &views).await;
    // Each profile's event is in the engine before the definition exists (the identity owner
    // knowing the profile is not enough: on a loaded machine the engine lags behind it, and a
    // view applied after the definition realizes by trigger event, not definition).
    for who in people {
        eventually(Duration::from_secs(30), "the profile's event in the engine", async || {
            let (status, body) = crate::profile::api(
                &p,
                &format!("/access/entities?schema.name=_xdm.context.experienceevent&relatedSchema.name=_xdm.context.profile&relatedEntityId={who}&relatedEntityIdNS=CRMID"),
            )
            .await;
            status == 200 && body["children"].as_array().is_some_and(|c| !c.is_empty())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    define(&p, "late-viewers", r#"xEvent.any(eventType = "view")"#).await;
    let records = eventually(
        Duration::from_secs(30),
        "every profile realized",
        async || {
            let r = p
                .broker
                .read_committed_settle(
                    &p.config.topics.segment_membership_json(),
                    people.len(),
                    Duration::from_secs(5),
                    Duration::from_millis(300),
                )
                .await;
            if r.len() >= people.len() {
                Ok(r)
            } else {
                Err(r.len())
            }
        },
    )
    .await;
    assert_eq!(records.len(), people.len());
    let changes: Vec<MembershipChange> = records
        .iter()
        .map(|r| serde_json::from_value(r.json()).expect("a membership record"))
        .collect();
    assert!(changes
        .iter()
        .all(|c| c.status == Status::Realized && c.trigger == Trigger::Definition));
    // Three partitions of at most two profiles each per turn: never all in one transaction.
    let transactions: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r.header("cdp-txn")).collect();
    assert!(
        transactions.len() >= 2,
        "{} transactions for {} profiles",
        transactions.len(),
        people.len()
    );
}

#[tokio::test]
async fn a_definition_reading_a_field_nobody_kept_sees_the_history_after_a_backfill() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    define(&p, "viewed", r#"xEvent.any(eventType = "view")"#).await;
    let (dataset, stream) = event_stream(&p).await;
    let mut view = at("k1", "kai", "view", chrono::Duration::zero());
    view["web"] = json!({"page": "home", "referrer": "search"});
    send(&p, &stream, &dataset, &[view]).await;
    eventually(Duration::from_secs(30), "kai in viewed", async || {
        !memberships(&p, 1).await.is_empty()
    })
    .await;
    let events_of_kai = "/access/entities?schema.name=_xdm.context.experienceevent&relatedSchema.name=_xdm.context.profile&relatedEntityId=kai&relatedEntityIdNS=CRMID";
    let (_, body) = crate::profile::api(&p, events_of_kai).await;
    assert_eq!(body["children"][0]["entityId"], "k1", "{body}");
    assert!(
        body["children"][0]["entity"].get("web").is_none(),
        "no definition reads web.*: the profile keeps only what they read: {body}"
    );

    // A definition that reads a field nobody kept: the held event is read again from
    // events.valid, and the definition sees it.
    define(&p, "home-viewers", r#"xEvent.any(web.page = "home")"#).await;
    let mut changes = Vec::new();
    eventually(Duration::from_secs(40), "kai in home-viewers", async || {
        changes = memberships(&p, 2).await;
        changes.iter().any(|c| c.segment_id == "home-viewers")
    })
    .await;
    let entered = changes
        .iter()
        .find(|c| c.segment_id == "home-viewers")
        .expect("the entry");
    assert_eq!(entered.status, Status::Realized);
    assert_eq!(entered.trigger, Trigger::Definition);
    let (_, body) = crate::profile::api(&p, events_of_kai).await;
    assert_eq!(
        body["children"][0]["entity"]["web"],
        json!({"page": "home"}),
        "the field read is filled in, the others are not kept: {body}"
    );
}
