//! The Profile and Identity read APIs (moved here from control's own tests when control
//! stopped keeping a copy of every profile): profiles built by the real intake, identity and
//! engine stages from records and events sent through the edge, read through control, which asks
//! the instances holding them.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use cdp_catalog::{
    AttributeMerge, AttributeMergeKind, CatalogRecord, IdentityGraphChoice, IdentityGraphKind,
    MergePolicy,
};
use cdp_contract::Topics;
use cdp_control::profiles::{Lookups, LookupsError};
use cdp_e2e::{Pipeline, ADMIN};
use cdp_test_support::{eventually, unique_name};
use serde_json::{json, Value};

use crate::profile::{api, ecid, event_stream, record_stream, send, ORG};

const WAIT: Duration = Duration::from_secs(30);
const PROFILE: &str = "_xdm.context.profile";
const EVENTS: &str = "_xdm.context.experienceevent";

fn problem_names(body: &Value, what: &str) -> bool {
    body["detail"].as_str().is_some_and(|d| d.contains(what))
}

fn profile_query(ns: &str, id: &str) -> String {
    format!("/access/entities?schema.name={PROFILE}&entityId={id}&entityIdNS={ns}")
}

/// The profile id holding `xid`, once the graph knows it.
async fn profile_id(p: &Pipeline, xid: &str) -> String {
    eventually(WAIT, "the identity in the graph", async || {
        let (status, body) = api(p, &format!("/identity/cluster/members?xid={xid}")).await;
        match body["profileId"].as_str() {
            Some(id) if status == 200 => Ok(id.to_string()),
            _ => Err(body),
        }
    })
    .await
}

fn catalog_writer(p: &Pipeline) -> cdp_control::CatalogWriter {
    cdp_control::CatalogWriter::new(
        &p.config.kafka,
        &p.config.topics,
        p.control_running.catalog.clone(),
    )
    .expect("catalog writer")
}

#[tokio::test]
async fn a_profile_answers_for_each_identity_and_a_merged_one_for_the_survivor() {
    let p = Pipeline::start().await;
    assert!(matches!(
        Lookups::start(
            &p.config.kafka,
            &Topics::new(unique_name("absent")),
            Arc::from(ADMIN)
        )
        .await,
        Err(LookupsError::MissingTopic(_))
    ));
    let started_ms = chrono::Utc::now().timestamp_millis();
    let profile = p.start_profile().await;
    let (crm, crm_stream) = record_stream(&p, "crm").await;
    let (web, web_stream) = record_stream(&p, "web").await;
    let (news, news_stream) = record_stream(&p, "newsletter").await;
    let (events, event_stream) = event_stream(&p).await;
    let device = ecid(12345);
    let email = "ann@example.com";
    let crm_id = || json!({"CRMID": [{"id": "c-1", "primary": true}]});
    // Ann's CRM record, then an event that links her cookie, then a record of the cookie
    // alone (a fragment the cookie owns).
    send(
        &p,
        &crm_stream,
        &crm,
        &[json!({"identityMap": crm_id(), "person": {"name": {"firstName": "Ann"}}})],
    )
    .await;
    let link = |id: &str, other: Value| {
        json!({"_id": id, "timestamp": chrono::Utc::now().to_rfc3339(), "eventType": "login",
               "identityMap": other})
    };
    send(
        &p,
        &event_stream,
        &events,
        &[link(
            "link-ecid",
            json!({"CRMID": [{"id": "c-1", "primary": true}], "ECID": [{"id": device}]}),
        )],
    )
    .await;
    eventually(WAIT, "ann's cookie linked", async || {
        let (_, body) = api(&p, "/identity/cluster/members?xid=CRMID:c-1").await;
        body["members"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    send(&p, &web_stream, &web, &[json!({"identityMap": {"ECID": [{"id": device, "primary": true}]}, "person": {"name": {"lastName": "Lee"}}})]).await;
    // The newsletter's record of her email: a profile of its own, for now.
    send(
        &p,
        &news_stream,
        &news,
        &[json!({"identityMap": {"Email": [{"id": email, "primary": true}]}, "optIn": true})],
    )
    .await;
    let ann = profile_id(&p, "CRMID:c-1").await;
    let mail = profile_id(&p, &format!("Email:{email}")).await;
    assert_ne!(ann, mail);

    // Either identity answers the same profile, merged over both fragments.
    let ids = |datasets: &[&Value]| -> Vec<String> {
        let set: BTreeSet<String> = datasets
            .iter()
            .map(|d| d["id"].as_str().unwrap_or_default().to_string())
            .collect();
        set.into_iter().collect()
    };
    for (ns, value) in [("CRMID", "c-1"), ("ECID", device.as_str())] {
        let body = eventually(WAIT, "ann's two fragments merged", async || {
            let (status, body) = api(&p, &profile_query(ns, value)).await;
            if status == 200 && body[&ann]["entity"]["person"]["name"]["lastName"] == "Lee" {
                Ok(body)
            } else {
                Err(body)
            }
        })
        .await;
        let pr = &body[&ann];
        assert_eq!(pr["entityId"], ann.as_str());
        assert_eq!(pr["mergePolicy"]["id"], "default");
        assert_eq!(pr["sources"], json!(ids(&[&crm, &web])));
        assert_eq!(
            pr["entity"]["person"],
            json!({"name": {"firstName": "Ann", "lastName": "Lee"}})
        );
        assert_eq!(
            pr["entity"]["identityMap"],
            json!({"CRMID": [{"id": "c-1"}], "ECID": [{"id": device}]})
        );
        assert_eq!(pr["entity"]["segmentMembership"], json!({"ups": {}}));
        let modified = pr["lastModifiedAt"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
            .expect("lastModifiedAt");
        assert!(
            (started_ms..=chrono::Utc::now().timestamp_millis()).contains(&modified),
            "{body}"
        );
    }

    // Ann's email is seen with her CRM id: the newsletter's profile joins hers (the older one
    // survives).
    send(
        &p,
        &event_stream,
        &events,
        &[link(
            "link-email",
            json!({"CRMID": [{"id": "c-1", "primary": true}], "Email": [{"id": email}]}),
        )],
    )
    .await;
    let merged = eventually(
        WAIT,
        "the email answers the surviving profile",
        async || {
            let (status, body) = api(&p, &profile_query("Email", email)).await;
            if status == 200 && body[&ann]["entity"]["optIn"] == json!(true) {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
    .await;
    assert!(merged.get(&mail).is_none());
    assert_eq!(merged[&ann]["sources"], json!(ids(&[&crm, &news, &web])));
    // The merged profile is gone from the engine that held it.
    let query = profile.engine.query_addr.expect("the engine's query API");
    let gone = p
        .http
        .get(format!("http://{query}/internal/engine/profile"))
        .query(&[("org", ORG), ("sandbox", "prod"), ("id", mail.as_str())])
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("the engine's query API");
    assert!(
        matches!(gone.status().as_u16(), 404 | 421),
        "{}",
        gone.status()
    );

    let (status, body) = api(&p, &format!("/identity/cluster/members?xid=Email:{email}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["profileId"], ann.as_str());
    let xids: Vec<&str> = body["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["xid"].as_str())
        .collect();
    assert_eq!(xids.len(), 3, "{body}");
    assert!(xids.contains(&"CRMID:c-1"));
    assert_eq!(body["members"][0]["namespace"]["code"], "CRMID");
    let (status, same) = api(&p, "/identity/cluster/members?namespace=CRMID&id=c-1").await;
    assert_eq!((status, &same["members"]), (200, &body["members"]));

    // Newest first: the merge, the link that caused it, the newsletter profile's creation
    // (its history followed it), the cookie's link, Ann's profile's creation.
    let (status, body) = api(&p, "/identity/cluster/history?xid=CRMID:c-1").await;
    assert_eq!(status, 200, "{body}");
    let ops: Vec<&str> = body["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["op"].as_str())
        .collect();
    assert_eq!(
        ops,
        ["merged", "linked", "created", "linked", "created"],
        "{body}"
    );
    assert_eq!(body["history"][0]["into"], ann.as_str());
    assert!(body["history"][0]["time"].as_str().is_some());

    // Errors: problem documents naming what is wrong.
    let (status, body) = api(&p, &profile_query("CRMID", "nobody")).await;
    assert_eq!(status, 404);
    assert!(
        problem_names(
            &body,
            "no profile has the identity CRMID:nobody in sandbox prod"
        ),
        "{body}"
    );
    let (status, body) = api(&p, "/identity/cluster/members?xid=CRMID").await;
    assert!(status == 400 && problem_names(&body, "xid"), "{body}");
    let (status, body) = api(&p, "/access/entities?entityId=c-1&entityIdNS=CRMID").await;
    assert!(
        status == 400 && problem_names(&body, "schema.name"),
        "{body}"
    );
    let (status, body) = api(
        &p,
        &format!("/access/entities?schema.name={PROFILE}&entityId=c-1"),
    )
    .await;
    assert!(
        status == 400 && problem_names(&body, "entityIdNS"),
        "{body}"
    );
    let send_raw = |req: reqwest::RequestBuilder| async move {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap_or(Value::Null))
    };
    let members_url = format!("{}/identity/cluster/members", p.control);
    let (status, body) = send_raw(
        p.http
            .get(&members_url)
            .query(&[("xid", "CRMID:c-1")])
            .bearer_auth(ADMIN),
    )
    .await;
    assert!(
        status == 400 && problem_names(&body, "x-gw-ims-org-id"),
        "{body}"
    );
    // Another sandbox knows none of it.
    let (status, _) = send_raw(
        p.http
            .get(&members_url)
            .query(&[("xid", "CRMID:c-1")])
            .bearer_auth(ADMIN)
            .header("x-gw-ims-org-id", ORG)
            .header("x-sandbox-name", "dev"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send_raw(
        p.http
            .get(&members_url)
            .query(&[("xid", "CRMID:c-1")])
            .header("x-gw-ims-org-id", ORG),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn events_come_newest_first_in_pages_that_hold_while_events_arrive() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (dataset, stream) = event_stream(&p).await;
    let device = ecid(777);
    let base = chrono::Utc::now() - chrono::Duration::minutes(10);
    let at = |i: i64| base + chrono::Duration::seconds(i);
    let event = |i: i64| {
        json!({"_id": format!("e{i}"), "eventType": "web.webpagedetails.pageViews",
               "timestamp": at(i).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
               "identityMap": {"CRMID": [{"id": "c-1", "primary": true}], "ECID": [{"id": device}]}})
    };
    let first: Vec<Value> = (0..7).map(event).collect();
    send(&p, &stream, &dataset, &first).await;
    // Not a decision of the identity stage: the engine skips it (and counts it), and goes on
    // serving.
    p.broker
        .produce(
            &p.config.topics.profile_resolved(),
            "c-1",
            br#"{"nonsense": 1}"#,
        )
        .await;
    let ann = profile_id(&p, "CRMID:c-1").await;

    let page = |items: &Value| -> Vec<String> {
        items["children"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|c| c["entityId"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let events_of = format!(
        "/access/entities?schema.name={EVENTS}&relatedSchema.name={PROFILE}&relatedEntityId=c-1&relatedEntityIdNS=CRMID"
    );
    let first_page = eventually(WAIT, "the seven events held", async || {
        let (status, body) = api(&p, &format!("{events_of}&limit=3")).await;
        let (_, all) = api(&p, &format!("{events_of}&limit=1000")).await;
        if status == 200 && page(&all).len() == 7 {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await;
    assert_eq!(page(&first_page), ["e6", "e5", "e4"]);
    assert_eq!(first_page["_page"]["orderby"], "-timestamp");
    assert_eq!(first_page["_page"]["count"], 3);
    let child = &first_page["children"][0];
    assert_eq!(child["relatedEntityId"], ann.as_str());
    assert_eq!(child["timestamp"], at(6).timestamp_millis());
    assert_eq!(child["entity"]["_id"], "e6");

    // A newer event arrives: the next page still starts below the first one.
    send(&p, &stream, &dataset, &[event(9)]).await;
    eventually(WAIT, "the new event is held", async || {
        let (_, all) = api(&p, &format!("{events_of}&limit=1000")).await;
        page(&all).len() == 8
    })
    .await;
    let href = first_page["_links"]["next"]["href"]
        .as_str()
        .expect("a next link")
        .to_string();
    assert!(href.starts_with("/access/entities?"), "{href}");
    let (status, second) = api(&p, &href).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(page(&second), ["e3", "e2", "e1"]);
    let cursor = second["_page"]["next"].as_str().expect("cursor");
    let (_, last) = api(&p, &format!("{events_of}&limit=3&start={cursor}")).await;
    assert_eq!(page(&last), ["e0"]);
    assert_eq!(last["_page"]["next"], "");
    assert_eq!(last["_links"]["next"]["href"], "");

    // The whole history, from the other identity.
    let (_, all) = api(
        &p,
        &format!(
            "/access/entities?schema.name={EVENTS}&relatedSchema.name={PROFILE}&relatedEntityId={device}&relatedEntityIdNS=ECID"
        ),
    )
    .await;
    assert_eq!(page(&all), ["e9", "e6", "e5", "e4", "e3", "e2", "e1", "e0"]);

    for (param, value) in [("limit", "0"), ("limit", "1001"), ("start", "not-a-cursor")] {
        let (status, body) = api(&p, &format!("{events_of}&{param}={value}")).await;
        assert!(
            status == 400 && problem_names(&body, param),
            "{param}={value}: {body}"
        );
    }
}

#[tokio::test]
async fn a_none_merge_policy_shows_only_the_identitys_own_fragment() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let (crm, crm_stream) = record_stream(&p, "crm").await;
    let (web, web_stream) = record_stream(&p, "web").await;
    let (events, event_stream) = event_stream(&p).await;
    let device = ecid(4242);
    send(
        &p,
        &crm_stream,
        &crm,
        &[
            json!({"identityMap": {"CRMID": [{"id": "c-1", "primary": true}]},
                                         "loyalty": {"tier": "gold"}, "city": "Oslo"}),
        ],
    )
    .await;
    send(
        &p,
        &event_stream,
        &events,
        &[json!({"_id": "link", "timestamp": chrono::Utc::now().to_rfc3339(),
                 "identityMap": {"CRMID": [{"id": "c-1", "primary": true}], "ECID": [{"id": device}]}})],
    )
    .await;
    eventually(WAIT, "the cookie linked", async || {
        let (_, body) = api(&p, "/identity/cluster/members?xid=CRMID:c-1").await;
        body["members"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    // Ingested later, owned by the cookie.
    send(
        &p,
        &web_stream,
        &web,
        &[
            json!({"identityMap": {"ECID": [{"id": device, "primary": true}]},
                                         "city": "Bergen", "device": "phone"}),
        ],
    )
    .await;
    let ann = profile_id(&p, "CRMID:c-1").await;
    eventually(WAIT, "both fragments held", async || {
        let (_, body) = api(&p, &profile_query("ECID", &device)).await;
        body[&ann]["sources"].as_array().map(Vec::len) == Some(2)
    })
    .await;

    let crm_id = crm["id"].as_str().unwrap_or_default().to_string();
    let web_id = web["id"].as_str().unwrap_or_default().to_string();
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
        data: vec![crm_id.clone()],
    };
    let writer = catalog_writer(&p);
    for m in [
        policy(
            "own-only",
            IdentityGraphKind::None,
            crm_first.clone(),
            false,
        ),
        policy("crm-first", IdentityGraphKind::Pdg, crm_first, true),
    ] {
        writer
            .put(&CatalogRecord::MergePolicy(m))
            .await
            .expect("merge policy");
    }

    let (status, body) = api(
        &p,
        &format!("{}&mergePolicyId=own-only", profile_query("ECID", &device)),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let pr = &body[&ann];
    assert_eq!(pr["mergePolicy"]["id"], "own-only");
    assert_eq!(pr["sources"], json!([web_id]));
    assert_eq!(pr["entity"]["city"], "Bergen");
    assert!(pr["entity"].get("loyalty").is_none(), "{body}");
    assert_eq!(
        pr["entity"]["identityMap"],
        json!({"ECID": [{"id": device}]})
    );

    // Without mergePolicyId: the sandbox's default (the CRM dataset wins over the newer web one).
    let (status, body) = api(&p, &profile_query("ECID", &device)).await;
    assert_eq!(status, 200, "{body}");
    let pr = &body[&ann];
    assert_eq!(pr["mergePolicy"]["id"], "crm-first");
    assert_eq!(pr["entity"]["city"], "Oslo");
    assert_eq!(pr["entity"]["device"], "phone");
    assert_eq!(
        pr["entity"]["identityMap"].as_object().map(|m| m.len()),
        Some(2)
    );

    let (status, body) = api(
        &p,
        &format!(
            "{}&mergePolicyId=no-such-policy",
            profile_query("ECID", &device)
        ),
    )
    .await;
    assert!(
        status == 400 && problem_names(&body, "mergePolicyId"),
        "{body}"
    );
}

/// Deletes `topics` and makes them again, empty, with the partitions they had: what retention
/// does to an idle profile's records, done at once (the development broker enforces no
/// retention).
async fn empty_topics(p: &Pipeline, topics: &[String]) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    let mut counts = Vec::new();
    for t in topics {
        let n = cdp_contract::admin::partition_count(&p.config.kafka, t)
            .await
            .expect("the topic's partitions");
        counts.push(n);
    }
    let admin: AdminClient<DefaultClientContext> = p
        .config
        .kafka
        .admin("retention-test")
        .create()
        .expect("admin client");
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let deleted = admin
        .delete_topics(&names, &AdminOptions::new())
        .await
        .expect("delete topics");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    for (t, n) in topics.iter().zip(counts) {
        p.broker.create_topic(t, n).await;
    }
}

#[tokio::test]
async fn a_profile_idle_longer_than_any_topics_retention_is_still_found() {
    let p = Pipeline::start().await;
    let profile = p.start_profile().await;
    let (crm, crm_stream) = record_stream(&p, "crm").await;
    let (events, event_stream) = event_stream(&p).await;
    let ida = || json!({"CRMID": [{"id": "ida", "primary": true}]});
    send(
        &p,
        &crm_stream,
        &crm,
        &[json!({"identityMap": ida(), "loyalty": {"tier": "gold"}})],
    )
    .await;
    send(
        &p,
        &event_stream,
        &events,
        &[
            json!({"_id": "ida-1", "timestamp": chrono::Utc::now().to_rfc3339(),
                 "eventType": "web.webpagedetails.pageViews", "identityMap": ida()}),
        ],
    )
    .await;
    let id = profile_id(&p, "CRMID:ida").await;
    let before = eventually(
        WAIT,
        "ida's profile with its record and event",
        async || {
            let (status, body) = api(&p, &profile_query("CRMID", "ida")).await;
            if status == 200
                && body[&id]["eventCount"] == 1
                && body[&id]["entity"]["loyalty"]["tier"] == "gold"
            {
                Ok(body)
            } else {
                Err(body)
            }
        },
    )
    .await;

    // Every record of every topic with time-based retention that the profile came through or
    // wrote is gone; only the compacted changelogs and checkpoints (the stages' state) remain.
    profile.engine.shutdown().await;
    profile.identity.shutdown().await;
    let t = &p.config.topics;
    empty_topics(
        &p,
        &[
            t.profile_sequence(),
            t.profile_resolved(),
            t.profile_updates(),
            t.identity_graph(),
            t.segment_membership(),
            t.segment_membership_json(),
            t.segment_exports(),
        ],
    )
    .await;
    let _again = p.start_profile().await;
    let after = eventually(WAIT, "ida's profile found again", async || {
        let (status, body) = api(&p, &profile_query("CRMID", "ida")).await;
        if status == 200 {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .await;
    assert_eq!(after[&id]["entity"], before[&id]["entity"], "{after}");
    assert_eq!(after[&id]["eventCount"], 1, "{after}");
    assert_eq!(after[&id]["sources"], before[&id]["sources"]);
    let (status, body) = api(
        &p,
        &format!("/access/entities?schema.name={EVENTS}&relatedSchema.name={PROFILE}&relatedEntityId=ida&relatedEntityIdNS=CRMID"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["children"][0]["entityId"], "ida-1", "{body}");
    let (status, body) = api(&p, "/identity/cluster/history?xid=CRMID:ida").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["history"][0]["op"], "created", "{body}");
}

#[tokio::test]
async fn with_two_engine_instances_every_profile_is_found_through_control() {
    let p = Pipeline::start().await;
    let _identity = p.start_with_stages(cdp::Stages::IDENTITY, |_| {}).await;
    let engines = [
        p.start_with_stages(cdp::Stages::ENGINE, |c| {
            c.profile.instance_id = Some("engine-a".into())
        })
        .await,
        p.start_with_stages(cdp::Stages::ENGINE, |c| {
            c.profile.instance_id = Some("engine-b".into())
        })
        .await,
    ];
    let (dataset, stream) = event_stream(&p).await;
    let people: Vec<String> = (0..24).map(|i| format!("person-{i}")).collect();
    let batch: Vec<Value> = people
        .iter()
        .map(|who| {
            json!({"_id": format!("{who}-1"), "timestamp": chrono::Utc::now().to_rfc3339(),
                   "eventType": "web.webpagedetails.pageViews",
                   "identityMap": {"CRMID": [{"id": who, "primary": true}]}})
        })
        .collect();
    send(&p, &stream, &dataset, &batch).await;

    let mut answered_by = [0usize; 2];
    for who in &people {
        let id = profile_id(&p, &format!("CRMID:{who}")).await;
        let body = eventually(WAIT, "the profile found through control", async || {
            let (status, body) = api(&p, &profile_query("CRMID", who)).await;
            if status == 200 && body[&id]["eventCount"] == 1 {
                Ok(body)
            } else {
                Err(body)
            }
        })
        .await;
        assert_eq!(
            body[&id]["entity"]["identityMap"]["CRMID"][0]["id"],
            who.as_str()
        );
        // Exactly one instance holds it; the other says it does not hold its partition.
        let mut owners = Vec::new();
        for (i, engine) in engines.iter().enumerate() {
            let query = engine.query_addr.expect("an engine's query API");
            let status = p
                .http
                .get(format!("http://{query}/internal/engine/profile"))
                .query(&[("org", ORG), ("sandbox", "prod"), ("id", id.as_str())])
                .bearer_auth(ADMIN)
                .send()
                .await
                .expect("an engine's query API")
                .status()
                .as_u16();
            match status {
                200 => owners.push(i),
                421 => {}
                other => panic!("engine {i} answered {other} for {who}"),
            }
        }
        assert_eq!(owners.len(), 1, "{who}: held by {owners:?}");
        answered_by[owners[0]] += 1;
    }
    assert!(
        answered_by.iter().all(|n| *n > 0),
        "both instances hold profiles: {answered_by:?}"
    );
}
