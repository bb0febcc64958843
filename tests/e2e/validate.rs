//! The validate stage (seed 002's second half): bodies are checked against the dataset's
//! schema; valid events reach events.valid keyed by primary identity, invalid ones reach
//! events.error with every violation and the original payload — never dropped.

use std::time::Duration;

use cdp_e2e::{event_schema, seed_request, Pipeline};
use cdp_test_support::Record;
use serde_json::{json, Value};

const SEED_ORG: &str = "{ORG_ID}";

async fn read(p: &Pipeline, topic: &str, n: usize) -> Vec<Record> {
    p.broker
        .read_committed(topic, n, Duration::from_secs(30))
        .await
}

/// The records of events.error that the edge and validation wrote: these tests' events carry
/// no identity, so the profile intake inside validate also refuses each valid one of a
/// profile-enabled dataset into events.error (stage `profile`; see
/// `the_profile_intake_runs_in_validates_transaction`), which is not what they are about.
async fn quarantined(p: &Pipeline, n: usize) -> Vec<Record> {
    read(p, &p.config.topics.events_error(), n)
        .await
        .into_iter()
        .filter(|r| r.json()["stage"] != "profile")
        .collect()
}

fn message(schema_id: &str, entity: Value) -> Value {
    json!({"header": {"schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"}},
           "body": {"xdmMeta": {"schemaRef": {"id": schema_id}}, "xdmEntity": entity}})
}

#[tokio::test]
async fn seed_002_mixed_request_splits_into_valid_and_error() {
    let p = Pipeline::start().await;
    let dataset = p.create_dataset(SEED_ORG, event_schema()).await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": SEED_ORG, "datasetId": dataset["id"]}))
        .await;
    let id = stream["id"].as_str().unwrap();
    let body = seed_request("seed002_batch_mixed.json", &dataset);
    let request: Value = serde_json::from_str(&body).unwrap();
    let (status, resp, _) = p
        .post(&format!("/collection/batch/{id}"), "application/json", body)
        .await;
    assert_eq!(status, 207, "{resp}");
    let batch_id = resp["batchId"].as_str().unwrap();

    let valid = read(&p, &p.config.topics.events_valid(), 2).await;
    assert_eq!(
        valid.len(),
        2,
        "exactly the two accepted messages are valid"
    );
    let mut entities: Vec<Value> = valid.iter().map(|r| r.json()).collect();
    entities.sort_by_key(|e| {
        e["productListItems"][0]["name"]
            .as_str()
            .map(str::to_string)
    });
    let mut expected = vec![
        request["messages"][0]["body"]["xdmEntity"].clone(),
        request["messages"][3]["body"]["xdmEntity"].clone(),
    ];
    expected.sort_by_key(|e| {
        e["productListItems"][0]["name"]
            .as_str()
            .map(str::to_string)
    });
    assert_eq!(entities, expected);
    for r in &valid {
        assert_eq!(r.header("cdp-dataset-id"), dataset["id"].as_str());
        assert_eq!(r.header("cdp-schema-id"), dataset["schemaId"].as_str());
        assert_eq!(r.header("cdp-schema-version"), Some("1"));
        assert_eq!(r.header("cdp-value-format"), Some("json"));
        assert_eq!(r.header("cdp-batch-id"), Some(batch_id));
        // No identity map in the seed's events: keyed by the event id.
        assert_eq!(
            r.key.as_deref(),
            Some("_id:9af5adcc-db9c-4692-b826-65d3abe68c22")
        );
    }

    let errors = quarantined(&p, 3).await;
    assert_eq!(
        errors.len(),
        3,
        "the three refused messages are quarantined"
    );
    let mut by_xaction: Vec<Value> = errors.iter().map(|r| r.json()).collect();
    by_xaction.sort_by_key(|e| e["xactionId"].as_str().map(str::to_string));
    for (e, index) in by_xaction.iter().zip([1, 2, 4]) {
        assert_eq!(e["xactionId"], format!("{batch_id}:{index}"));
        assert_eq!(e["batchId"], batch_id);
        assert_eq!(e["stage"], "edge");
        assert_eq!(
            e["payload"], request["messages"][index],
            "the original message is kept"
        );
    }
    assert!(by_xaction[1]["violations"][0]["message"]
        .as_str()
        .unwrap()
        .contains("ims org"));
}

#[tokio::test]
async fn schema_violations_are_quarantined_with_their_pointers() {
    let p = Pipeline::start().await;
    let dataset = p.create_dataset("acme", event_schema()).await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "acme", "datasetId": dataset["id"]}))
        .await;
    let schema_id = dataset["schemaId"].as_str().unwrap();
    let good = json!({"_id": "ok-1", "timestamp": "2026-11-26T10:00:00Z",
                      "identityMap": {"Email": [{"id": "a@example.com", "primary": true}]}});
    let wrong_type = json!({"_id": "bad-1", "timestamp": 1764151200});
    let missing = json!({"timestamp": "2026-11-26T10:00:00Z"});
    let body = json!({"messages": [message(schema_id, good.clone()), message(schema_id, wrong_type), message(schema_id, missing)]});
    let (status, resp, _) = p
        .post(
            &format!("/collection/batch/{}", stream["id"].as_str().unwrap()),
            "application/json",
            body.to_string(),
        )
        .await;
    assert_eq!(status, 207);
    assert!(
        resp["responses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("xactionId").is_some()),
        "bodies are not validated synchronously: {resp}"
    );

    let valid = read(&p, &p.config.topics.events_valid(), 1).await;
    assert_eq!(valid.len(), 1);
    assert_eq!(valid[0].json(), good);
    assert_eq!(valid[0].key.as_deref(), Some("Email:a@example.com"));

    let errors = read(&p, &p.config.topics.events_error(), 2).await;
    assert_eq!(errors.len(), 2);
    let records: Vec<Value> = errors.iter().map(|r| r.json()).collect();
    let wrong = records
        .iter()
        .find(|r| r["payload"]["body"]["xdmEntity"]["_id"] == "bad-1")
        .expect("wrong-type event");
    assert_eq!(wrong["stage"], "validate");
    assert_eq!(wrong["datasetId"], dataset["id"]);
    assert_eq!(wrong["violations"][0]["pointer"], "/timestamp");
    let missing = records
        .iter()
        .find(|r| r["payload"]["body"]["xdmEntity"]["_id"].is_null())
        .expect("missing-_id event");
    assert!(
        missing["violations"][0]["message"]
            .as_str()
            .unwrap()
            .contains("_id"),
        "{missing}"
    );
    assert_eq!(missing["violations"][0]["pointer"], "");
}

/// An event dated further ahead than `validate.max_future_ms` of its arrival would never leave
/// a profile (events leave at their time-to-live after their timestamp): it is quarantined
/// with the reason; one a minute ahead (a client's clock) is valid.
#[tokio::test]
async fn events_dated_too_far_ahead_are_quarantined() {
    let p = Pipeline::start().await;
    assert_eq!(
        p.config.validate.max_future_ms, 86_400_000,
        "documented default"
    );
    let dataset = p.create_dataset("acme", event_schema()).await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "acme", "datasetId": dataset["id"]}))
        .await;
    let schema_id = dataset["schemaId"].as_str().unwrap();
    let at = |ahead: chrono::Duration| {
        (chrono::Utc::now() + ahead).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let soon = json!({"_id": "soon", "timestamp": at(chrono::Duration::minutes(1))});
    let later = json!({"_id": "later", "timestamp": at(chrono::Duration::days(2))});
    p.post_batch(
        &stream,
        vec![message(schema_id, soon.clone()), message(schema_id, later)],
    )
    .await;

    let valid = read(&p, &p.config.topics.events_valid(), 2).await;
    assert_eq!(valid.len(), 1, "only the event a minute ahead is valid");
    assert_eq!(valid[0].json(), soon);
    let errors = quarantined(&p, 1).await;
    assert_eq!(errors.len(), 1);
    let error = errors[0].json();
    assert_eq!(error["payload"]["body"]["xdmEntity"]["_id"], "later");
    assert_eq!(error["stage"], "validate");
    assert_eq!(error["datasetId"], dataset["id"]);
    assert_eq!(error["violations"][0]["pointer"], "/timestamp");
    let why = error["violations"][0]["message"].as_str().unwrap();
    assert!(why.contains("validate.max_future_ms"), "{why}");
}

/// A message sent through org A's stream that names org B's dataset is refused and filed under
/// A's own dataset: B's failed records never see A's payload. The named id stays in the
/// payload and in the reason.
#[tokio::test]
async fn a_message_naming_another_orgs_dataset_is_filed_under_its_own() {
    let p = Pipeline::start().await;
    let ours = p.create_dataset("acme", event_schema()).await;
    let theirs = p.create_dataset("other", event_schema()).await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "acme", "datasetId": ours["id"]}))
        .await;
    let theirs_id = theirs["id"].as_str().unwrap();
    let mut foreign = message(
        theirs["schemaId"].as_str().unwrap(),
        json!({"_id": "x-1", "timestamp": "2026-11-26T10:00:00Z"}),
    );
    foreign["header"]["datasetId"] = json!(theirs_id);
    let resp = p.post_batch(&stream, vec![foreign.clone()]).await;
    assert_eq!(resp["responses"][0]["statusCode"], 400, "{resp}");

    let errors = read(&p, &p.config.topics.events_error(), 1).await;
    assert_eq!(errors.len(), 1);
    let error = errors[0].json();
    assert_eq!(error["orgId"], "acme");
    assert_eq!(
        error["datasetId"], ours["id"],
        "filed under the stream's dataset"
    );
    assert_eq!(errors[0].header("cdp-dataset-id"), ours["id"].as_str());
    assert_eq!(error["payload"], foreign, "the named dataset stays as data");
    let why = error["violations"][0]["message"].as_str().unwrap();
    assert!(why.contains(theirs_id), "{why}");
}

#[tokio::test]
async fn sync_validation_answers_with_the_violations() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "acme"}))
        .await;
    let id = stream["id"].as_str().unwrap();
    let schema_id = stream["schemaRef"]["id"].as_str().unwrap();
    let bad = message(schema_id, json!({"_id": "x", "timestamp": "not a time"}));
    let (status, resp, _) = p
        .post(
            &format!("/collection/{id}?syncValidation=true"),
            "application/json",
            bad.to_string(),
        )
        .await;
    assert_eq!(status, 400, "{resp}");
    assert_eq!(resp["violations"][0]["pointer"], "/timestamp", "{resp}");

    let good = message(
        schema_id,
        json!({"_id": "y", "timestamp": "2026-11-26T10:00:00Z"}),
    );
    let (status, resp, _) = p
        .post(
            &format!("/collection/batch/{id}?syncValidation=true"),
            "application/json",
            json!({"messages": [good, bad]}).to_string(),
        )
        .await;
    assert_eq!(status, 207);
    assert!(resp["responses"][0]["xactionId"].is_string(), "{resp}");
    assert_eq!(resp["responses"][1]["statusCode"], 400);
    assert!(
        resp["responses"][1]["message"]
            .as_str()
            .unwrap()
            .contains("/timestamp"),
        "{resp}"
    );

    // Without the flag the same message is accepted and quarantined later, by the stage.
    let (status, _, _) = p
        .post(
            &format!("/collection/{id}"),
            "application/json",
            message(schema_id, json!({"_id": "z", "timestamp": 5})).to_string(),
        )
        .await;
    assert_eq!(status, 200);
    let errors = read(&p, &p.config.topics.events_error(), 3).await;
    let stages: Vec<String> = errors
        .iter()
        .map(|r| r.json()["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        stages.iter().filter(|s| *s == "edge").count(),
        2,
        "{stages:?}"
    );
    assert_eq!(
        stages.iter().filter(|s| *s == "validate").count(),
        1,
        "{stages:?}"
    );
}

#[tokio::test]
async fn streaming_ingest_records_are_validated_against_the_streams_dataset() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "orders", "orgId": "acme"}))
        .await;
    let path = format!("/stream/v0/data/{}", stream["id"].as_str().unwrap());
    let (s1, _, _) = p
        .post(
            &path,
            "application/json",
            r#"{"_id": "r1", "timestamp": "2026-11-26T10:00:00Z", "eventType": "order"}"#,
        )
        .await;
    let (s2, _, _) = p
        .post(&path, "application/json", r#"{"field1": "value1"}"#)
        .await;
    assert_eq!((s1, s2), (202, 202));
    let valid = read(&p, &p.config.topics.events_valid(), 1).await;
    assert_eq!(valid.len(), 1);
    assert_eq!(valid[0].json()["_id"], "r1");
    let errors = quarantined(&p, 1).await;
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].json()["payload"], json!({"field1": "value1"}));
}

/// Valid events of a profile-enabled dataset go on to profile.sequence in validate's own
/// transaction: an item for an event with an identity, a refusal (stage `profile`) for one
/// without. With the identity fast path on, the event with one identity goes instead straight
/// to its profile's partition of profile.resolved, in the same transaction. With
/// `validate.profile_intake` off, validation is the same and nothing goes on.
#[tokio::test]
async fn the_profile_intake_runs_in_validates_transaction() {
    for (intake, fast_path) in [(true, false), (true, true), (false, true)] {
        let p = Pipeline::start_with(|c| {
            c.validate.profile_intake = intake;
            c.profile.identity_fast_path = fast_path;
        })
        .await;
        p.broker.create_pipeline_topics(&p.config.topics, 3).await;
        let dataset = p.create_dataset("acme", event_schema()).await;
        let stream = p
            .create_stream(json!({"name": "web", "orgId": "acme", "datasetId": dataset["id"]}))
            .await;
        let schema_id = dataset["schemaId"].as_str().unwrap();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let ecid = "12345678901234567890123456789012345678";
        let known = json!({"_id": "known", "timestamp": now,
            "identityMap": {"ECID": [{"id": ecid, "primary": true}]}});
        let anonymous = json!({"_id": "anonymous", "timestamp": now});
        p.post_batch(
            &stream,
            vec![message(schema_id, known), message(schema_id, anonymous)],
        )
        .await;

        let valid = read(&p, &p.config.topics.events_valid(), 2).await;
        assert_eq!(valid.len(), 2, "validation is the same (intake {intake})");
        // What the intake writes is in the same transactions as these, so it is readable now.
        let committed = |topic: String| {
            let broker = &p.broker;
            async move {
                broker
                    .read_committed(&topic, 1, Duration::from_secs(2))
                    .await
            }
        };
        let items = committed(p.config.topics.profile_sequence()).await;
        let direct = committed(p.config.topics.profile_resolved()).await;
        let refusals: Vec<Value> = committed(p.config.topics.events_error())
            .await
            .iter()
            .map(Record::json)
            .collect();
        if !intake {
            assert!(items.is_empty(), "no items with the intake off");
            assert!(direct.is_empty(), "no fast-path items with the intake off");
            assert!(
                refusals.is_empty(),
                "no refusals with the intake off: {refusals:?}"
            );
            continue;
        }
        let written = if fast_path {
            let first: Vec<Value> = items.iter().map(Record::json).collect();
            assert_eq!(
                first.len(),
                1,
                "the identity's first event went to its owner"
            );
            assert_eq!(first[0]["itemId"], "known");
            assert!(direct.is_empty(), "a first sighting does not go straight");
            // The identity's second event: seen alone before, it goes straight to its profile.
            let again = json!({"_id": "known-again", "timestamp": now,
                "identityMap": {"ECID": [{"id": ecid, "primary": true}]}});
            p.post_batch(&stream, vec![message(schema_id, again)]).await;
            read(&p, &p.config.topics.events_valid(), 3).await;
            let direct = committed(p.config.topics.profile_resolved()).await;
            assert_eq!(
                direct.len(),
                1,
                "an item for the event with an identity seen before"
            );
            let record = direct[0].json();
            let profile = record["direct"]["profileId"]
                .as_str()
                .expect("a direct record");
            let resolved = cdp_contract::admin::partition_count(
                &p.config.kafka,
                &p.config.topics.profile_resolved(),
            )
            .await
            .expect("profile.resolved's partitions");
            assert_eq!(
                direct[0].partition,
                cdp_contract::partition::for_key(profile.as_bytes(), resolved),
                "the partition of the profile it is sent to"
            );
            assert_eq!(
                record["direct"]["item"]["owner"],
                json!({"ns": "ECID", "id": ecid}),
                "its one identity owns it"
            );
            (record["direct"]["item"].clone(), direct[0].clone())
        } else {
            assert!(direct.is_empty(), "the fast path is off");
            assert_eq!(items.len(), 1, "an item for the event with an identity");
            let partitions = cdp_contract::admin::partition_count(
                &p.config.kafka,
                &p.config.topics.profile_sequence(),
            )
            .await
            .expect("profile.sequence's partitions");
            assert_eq!(
                items[0].partition,
                cdp_contract::partition::for_sandbox("acme", "prod", partitions),
                "the partition of the sandbox's identity owner"
            );
            (items[0].json(), items[0].clone())
        };
        let (item, record) = written;
        assert_eq!(
            item["itemId"],
            if fast_path { "known-again" } else { "known" }
        );
        assert_eq!(item["datasetId"], dataset["id"]);
        assert_eq!(item["orgId"], "acme");
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert_eq!(refusals[0]["stage"], "profile");
        assert_eq!(refusals[0]["payload"]["_id"], "anonymous");
        let why = refusals[0]["violations"][0]["message"].as_str().unwrap();
        assert!(why.contains("no identity"), "{why}");
        // Written by validate, with its lineage: the raw event the item came from.
        assert!(
            record.header("cdp-raw-position").is_some(),
            "lineage header"
        );
    }
}
