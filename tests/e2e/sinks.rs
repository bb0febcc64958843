//! Destinations (seed 004): a flow created and activated through the Flow Service API delivers
//! the profiles that enter its segment to Amazon Kinesis (kinesalite) and to Azure Event Hubs
//! through its Kafka endpoint (a second tansu broker, plain transport), in the seed's format.

use std::time::Duration;

use cdp::Stages;
use cdp_catalog::flows::{
    EVENT_HUBS_SPEC, KAFKA_SPEC, KINESIS_SPEC, PROFILE_FLOW_SPEC, PROFILE_SOURCE_SPEC,
};
use cdp_e2e::{Pipeline, ADMIN};
use cdp_test_support::{eventually, Broker, Kinesalite};
use serde_json::{json, Value};

use crate::profile::{event, event_stream, record_stream, send, ORG};

const SANDBOX: &str = "prod";

/// A Flow Service call as the seed makes it: admin token, org and sandbox headers.
async fn call(
    p: &Pipeline,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    if_match: Option<&str>,
) -> (u16, Value, Option<String>) {
    let mut request = p
        .http
        .request(method, format!("{}{path}", p.control))
        .bearer_auth(ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .header("x-sandbox-name", SANDBOX);
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(etag) = if_match {
        request = request.header("If-Match", format!("\"{etag}\""));
    }
    let resp = request.send().await.expect("control request");
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_string());
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        etag,
    )
}

async fn create(p: &Pipeline, path: &str, body: Value) -> String {
    let (status, answer, _) = call(p, reqwest::Method::POST, path, Some(body), None).await;
    assert_eq!(status, 201, "POST {path}: {answer}");
    answer["id"].as_str().expect("an id").to_string()
}

/// Seed 004's steps: the profile source, a destination connection and its target, a flow
/// between them. Returns the flow id and etag.
async fn flow_to(p: &Pipeline, targets: &[String]) -> (String, String) {
    let base = create(
        p,
        "/connections",
        json!({"name": "Base connection to Experience Platform",
               "connectionSpec": {"id": PROFILE_SOURCE_SPEC, "version": "1.0"}}),
    )
    .await;
    let source = create(
        p,
        "/sourceConnections",
        json!({"name": "Connecting to Unified Profile Service",
               "connectionSpec": {"id": PROFILE_SOURCE_SPEC, "version": "1.0"},
               "baseConnectionId": base, "data": {"format": "json"}, "params": {}}),
    )
    .await;
    let (status, answer, _) = call(
        p,
        reqwest::Method::POST,
        "/flows",
        Some(
            json!({"name": "Create dataflow to Amazon Kinesis/ Azure Event Hubs",
                    "flowSpec": {"id": PROFILE_FLOW_SPEC, "version": "1.0"},
                    "sourceConnectionIds": [source], "targetConnectionIds": targets}),
        ),
        None,
    )
    .await;
    assert_eq!(status, 201, "POST /flows: {answer}");
    (
        answer["id"].as_str().expect("flow id").to_string(),
        answer["etag"].as_str().expect("flow etag").to_string(),
    )
}

async fn kinesis_target(p: &Pipeline, kinesis: &Kinesalite, stream: &str) -> String {
    let connection = create(
        p,
        "/connections",
        json!({"name": "Connection for Amazon Kinesis",
               "connectionSpec": {"id": KINESIS_SPEC, "version": "1.0"},
               "auth": {"specName": "Amazon Kinesis authentication credentials",
                        "params": {"accessKeyId": Kinesalite::ACCESS_KEY_ID,
                                   "secretKey": Kinesalite::SECRET_KEY,
                                   "region": Kinesalite::REGION,
                                   "connectionUrl": kinesis.endpoint()}}}),
    )
    .await;
    create(
        p,
        "/targetConnections",
        json!({"name": "Amazon Kinesis target connection", "baseConnection": connection,
               "connectionSpec": {"id": KINESIS_SPEC, "version": "1.0"},
               "data": {"format": "json"},
               "params": {"stream": stream, "region": Kinesalite::REGION}}),
    )
    .await
}

async fn event_hubs_target(p: &Pipeline, hubs: &Broker, hub: &str) -> String {
    let connection = create(
        p,
        "/connections",
        json!({"name": "Connection for Azure Event Hubs",
               "connectionSpec": {"id": EVENT_HUBS_SPEC, "version": "1.0"},
               "auth": {"specName": "Azure Event Hubs authentication credentials",
                        "params": {"sasKeyName": "RootManageSharedAccessKey",
                                   "sasKey": "c2FzLWtleQ==",
                                   "namespace": "acme-hubs",
                                   "endpoint": hubs.bootstrap()}}}),
    )
    .await;
    create(
        p,
        "/targetConnections",
        json!({"name": "Azure Event Hubs target connection", "baseConnection": connection,
               "connectionSpec": {"id": EVENT_HUBS_SPEC, "version": "1.0"},
               "data": {"format": "json"}, "params": {"eventHubName": hub}}),
    )
    .await
}

async fn start_sinks(p: &Pipeline) -> cdp::Running {
    let mut config = p.config.clone();
    config.sinks.group_prefix = format!("{}-sinks", config.topics.namespace);
    cdp::start(&config, Stages::SINKS)
        .await
        .expect("start the sinks stage")
}

#[tokio::test]
async fn an_activated_flow_delivers_a_qualifying_profile_to_kinesis_and_event_hubs() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let _sinks = start_sinks(&p).await;
    let kinesis = Kinesalite::start().await;
    kinesis.create_stream("cdp-exports", 1).await;
    // The Event Hubs namespace's Kafka endpoint: a broker of its own (plain transport).
    let hubs = Broker::start();
    let hub = cdp_test_support::unique_name("profile-exports");
    hubs.create_topic(&hub, 2).await;

    let (status, segment, _) = call(
        &p,
        reqwest::Method::POST,
        "/segment/definitions",
        Some(
            json!({"name": "Buyers", "schema": {"name": "_xdm.context.profile"},
                    "expression": {"type": "PQL", "format": "pql/text",
                                   "value": "xEvent.any(eventType = \"commerce.purchases\")"}}),
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "POST /segment/definitions: {segment}");
    let segment_id = segment["id"].as_str().expect("segment id").to_string();

    let targets = vec![
        kinesis_target(&p, &kinesis, "cdp-exports").await,
        event_hubs_target(&p, &hubs, &hub).await,
    ];
    let (flow, etag) = flow_to(&p, &targets).await;
    let activate = json!([
        {"op": "add", "path": "/transformations/0/params/segmentSelectors/selectors/-",
         "value": {"type": "PLATFORM_SEGMENT",
                   "value": {"name": "Buyers", "description": "", "id": segment_id}}},
        {"op": "add", "path": "/transformations/0/params/profileSelectors/selectors/-",
         "value": {"type": "JSON_PATH", "value": {"operator": "EXISTS", "path": "person.email"}}}
    ]);
    let (status, answer, _) = call(
        &p,
        reqwest::Method::PATCH,
        &format!("/flows/{flow}"),
        Some(activate),
        Some(&etag),
    )
    .await;
    assert_eq!(status, 202, "PATCH /flows/{flow}: {answer}");

    // A CRM record gives hank an email and a last name; his purchase qualifies him.
    let (crm, crm_stream) = record_stream(&p, "crm").await;
    send(
        &p,
        &crm_stream,
        &crm,
        &[
            json!({"identityMap": {"CRMID": [{"id": "hank", "primary": true}]},
                 "person": {"email": "hank@example.com", "lastName": "Hill"}}),
        ],
    )
    .await;
    let (dataset, stream) = event_stream(&p).await;
    let mut purchase = event("buy-1", json!({"CRMID": [{"id": "hank", "primary": true}]}));
    purchase["eventType"] = json!("commerce.purchases");
    send(&p, &stream, &dataset, &[purchase]).await;

    let mut delivered = Vec::new();
    eventually(
        Duration::from_secs(40),
        "the export in kinesalite",
        async || {
            delivered = kinesis.read_all("cdp-exports").await;
            !delivered.is_empty()
        },
    )
    .await;
    assert_eq!(delivered.len(), 1, "one export: {delivered:?}");
    let document: Value = serde_json::from_slice(&delivered[0].data).expect("export JSON");
    assert_eq!(
        document["person"],
        json!({"email": "hank@example.com"}),
        "only the selected attribute: {document}"
    );
    let membership = &document["segmentMembership"]["ups"][&segment_id];
    assert_eq!(membership["status"], "realized", "{document}");
    assert!(
        membership["lastQualificationTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{document}"
    );
    assert_eq!(
        document["identityMap"]["crmid"],
        json!([{"id": "hank"}]),
        "{document}"
    );

    let hub_records = hubs
        .read_committed_settle(&hub, 1, Duration::from_secs(30), Duration::from_millis(300))
        .await;
    assert_eq!(hub_records.len(), 1, "one export on the event hub");
    assert_eq!(hub_records[0].json(), document, "the same document on both");
    assert_eq!(
        hub_records[0].key.as_deref(),
        Some(delivered[0].partition_key.as_str()),
        "keyed by profile id on both"
    );

    // The flow's runs: both targets delivered one record.
    let mut runs = Value::Null;
    eventually(
        Duration::from_secs(15),
        "both targets to report a delivery",
        async || {
            let (status, answer, _) = call(
                &p,
                reqwest::Method::GET,
                &format!("/flows/{flow}/runs"),
                None,
                None,
            )
            .await;
            runs = answer;
            status == 200
                && runs["items"].as_array().is_some_and(|items| {
                    items.len() == 2
                        && items.iter().all(|r| {
                            r["status"] == "success" && r["metrics"]["recordsDelivered"] == 1
                        })
                })
        },
    )
    .await;

    // The dashboard's flows page shows the same: two targets, both delivering.
    let page = p
        .http
        .get(format!("{}/ui/flows", p.control))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("GET /ui/flows");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("the flows page");
    let card = html
        .split(&format!(r#"<article class="flow" data-id="{flow}">"#))
        .nth(1)
        .and_then(|rest| rest.split("</article>").next())
        .unwrap_or_else(|| panic!("the flow {flow} is on the page: {html}"));
    assert_eq!(card.matches(r#"<tr class="target">"#).count(), 2, "{card}");
    assert_eq!(
        card.matches(r#"<span class="badge ok">success</span>"#)
            .count(),
        2,
        "{card}"
    );
    for destination in ["Amazon Kinesis", "Azure Event Hubs"] {
        assert!(card.contains(destination), "{destination} in {card}");
    }
}

async fn kafka_target(p: &Pipeline, topic: &str, format: &str) -> String {
    let connection = create(
        p,
        "/connections",
        json!({"name": "Data team's Kafka",
               "connectionSpec": {"id": KAFKA_SPEC, "version": "1.0"},
               "auth": {"specName": "Kafka authentication credentials",
                        "params": {"bootstrapServers": p.broker.bootstrap()}}}),
    )
    .await;
    create(
        p,
        "/targetConnections",
        json!({"name": "Kafka topic", "baseConnection": connection,
               "connectionSpec": {"id": KAFKA_SPEC, "version": "1.0"},
               "data": {"format": format}, "params": {"topic": topic}}),
    )
    .await
}

/// A flow activated after its segment has members exports them at once (AEP's first export),
/// here to the plain Kafka destination in JSON and in Avro (read through the project's
/// registry); a member's change of a selected attribute is exported again, a change of an
/// attribute the flow does not select is not.
#[tokio::test]
async fn a_flow_activated_later_exports_the_members_already_there_to_kafka() {
    let p = Pipeline::start().await;
    let _profile = p.start_profile().await;
    let _sinks = start_sinks(&p).await;
    let topic = cdp_test_support::unique_name("data-team-exports");
    p.broker.create_topic(&topic, 3).await;
    let avro_topic = format!("{topic}-avro");
    p.broker.create_topic(&avro_topic, 3).await;

    let (status, segment, _) = call(
        &p,
        reqwest::Method::POST,
        "/segment/definitions",
        Some(
            json!({"name": "Gold", "schema": {"name": "_xdm.context.profile"},
                    "expression": {"type": "PQL", "format": "pql/text",
                                   "value": "loyalty.tier = \"gold\""}}),
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "POST /segment/definitions: {segment}");
    let segment_id = segment["id"].as_str().expect("segment id").to_string();
    let (crm, crm_stream) = record_stream(&p, "crm").await;
    let record = |who: &str, tier: &str, email: &str, city: &str| {
        json!({"identityMap": {"CRMID": [{"id": who, "primary": true}]},
               "loyalty": {"tier": tier},
               "person": {"email": email},
               "homeAddress": {"city": city}})
    };
    send(
        &p,
        &crm_stream,
        &crm,
        &[
            record("gil", "gold", "gil@example.com", "Oslo"),
            record("sam", "silver", "sam@example.com", "Rome"),
        ],
    )
    .await;
    // gil is a member before any flow exists.
    eventually(
        Duration::from_secs(30),
        "gil to enter the segment",
        async || {
            p.broker
                .read_committed_settle(
                    &p.config.topics.segment_membership_json(),
                    1,
                    Duration::from_secs(2),
                    Duration::from_millis(100),
                )
                .await
                .iter()
                .any(|r| r.json()["segmentId"] == segment_id.as_str())
        },
    )
    .await;

    let targets = vec![
        kafka_target(&p, &topic, "json").await,
        kafka_target(&p, &avro_topic, "avro").await,
    ];
    let (flow, etag) = flow_to(&p, &targets).await;
    let (status, answer, _) = call(
        &p,
        reqwest::Method::PATCH,
        &format!("/flows/{flow}"),
        Some(json!([
            {"op": "add", "path": "/transformations/0/params/segmentSelectors/selectors/-",
             "value": {"type": "PLATFORM_SEGMENT", "value": {"name": "Gold", "id": segment_id}}},
            {"op": "add", "path": "/transformations/0/params/profileSelectors/selectors/-",
             "value": {"type": "JSON_PATH", "value": {"operator": "EXISTS", "path": "person.email"}}}
        ])),
        Some(&etag),
    )
    .await;
    assert_eq!(status, 202, "PATCH /flows/{flow}: {answer}");

    let exports = |n: usize| {
        let (broker, topic) = (&p.broker, topic.clone());
        async move {
            broker
                .read_committed_settle(
                    &topic,
                    n,
                    Duration::from_secs(30),
                    Duration::from_millis(500),
                )
                .await
        }
    };
    let first = exports(1).await;
    assert_eq!(first.len(), 1, "gil only (sam is not a member)");
    let document = first[0].json();
    assert_eq!(
        document["person"],
        json!({"email": "gil@example.com"}),
        "{document}"
    );
    assert_eq!(
        document["segmentMembership"]["ups"][&segment_id]["status"], "existing",
        "{document}"
    );
    assert_eq!(document["identityMap"]["crmid"], json!([{"id": "gil"}]));

    // The same export in Avro, subject `<topic>-value` in the project's registry.
    let avro = p
        .broker
        .read_committed(&avro_topic, 1, Duration::from_secs(30))
        .await;
    assert_eq!(avro.len(), 1);
    let decoder = schema_registry_converter::async_impl::avro::AvroDecoder::new(
        // A subscriber's decoder authenticates to the registry (here with the admin token).
        schema_registry_converter::async_impl::schema_registry::SrSettings::new_builder(
            p.control.clone(),
        )
        .set_token_authorization(cdp_e2e::ADMIN)
        .build()
        .expect("registry client"),
    );
    let decoded = decoder
        .decode(Some(&avro[0].value))
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
        field("attributes"),
        Some(apache_avro::types::Value::String(
            r#"{"person":{"email":"gil@example.com"}}"#.into()
        ))
    );
    let Some(apache_avro::types::Value::Map(segments)) = field("segmentMembership") else {
        panic!("memberships: {fields:?}")
    };
    let Some(apache_avro::types::Value::Record(membership)) = segments.get(&segment_id) else {
        panic!("gil's membership: {segments:?}")
    };
    assert_eq!(
        membership[0].1,
        apache_avro::types::Value::Enum(1, "existing".into())
    );

    // A selected attribute changes: exported; an unselected one: not. A marker profile entering
    // the segment afterwards shows the stage is past both changes.
    send(
        &p,
        &crm_stream,
        &crm,
        &[record("gil", "gold", "gil@new.example.com", "Oslo")],
    )
    .await;
    send(
        &p,
        &crm_stream,
        &crm,
        &[record("gil", "gold", "gil@new.example.com", "Bergen")],
    )
    .await;
    send(
        &p,
        &crm_stream,
        &crm,
        &[record("zoe", "gold", "zoe@example.com", "Lima")],
    )
    .await;
    let mut all = Vec::new();
    eventually(
        Duration::from_secs(30),
        "zoe's export after gil's changes",
        async || {
            all = exports(3).await;
            all.iter()
                .any(|r| r.json()["identityMap"]["crmid"][0]["id"] == "zoe")
        },
    )
    .await;
    let gil: Vec<Value> = all
        .iter()
        .map(|r| r.json())
        .filter(|d| d["identityMap"]["crmid"][0]["id"] == "gil")
        .collect();
    assert_eq!(
        gil.len(),
        2,
        "the first export and the email change, not the city: {gil:?}"
    );
    assert_eq!(gil[1]["person"]["email"], "gil@new.example.com");
    assert!(
        gil[1].get("homeAddress").is_none(),
        "only selected attributes"
    );
    assert_eq!(
        gil[1]["segmentMembership"]["ups"][&segment_id]["status"],
        "existing"
    );
}
