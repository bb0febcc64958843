//! Seed 002: the collection endpoints, their 207 shapes, and exactly the accepted messages on
//! the raw topic with their headers.

use std::time::Duration;

use cdp_e2e::{event_schema, seed_request, Pipeline};
use cdp_test_support::eventually;
use serde_json::{json, Value};

/// The seed's requests use `{ORG_ID}` literally; a stream of that org lets them be sent verbatim.
const SEED_ORG: &str = "{ORG_ID}";

#[tokio::test]
async fn seed_002_two_valid_messages() {
    let p = Pipeline::start().await;
    let dataset = p.create_dataset(SEED_ORG, event_schema()).await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": SEED_ORG, "datasetId": dataset["id"]}))
        .await;
    let id = stream["id"].as_str().unwrap();
    let body = seed_request("seed002_batch_two_valid.json", &dataset);
    let request: Value = serde_json::from_str(&body).unwrap();

    let (status, resp, _) = p
        .post(&format!("/collection/batch/{id}"), "application/json", body)
        .await;

    assert_eq!(status, 207, "{resp}");
    assert_eq!(resp["inletId"], id);
    let batch_id = resp["batchId"].as_str().unwrap();
    assert_eq!(batch_id.split(':').count(), 3, "batchId shape: {batch_id}");
    assert!(resp["receivedTimeMs"].as_i64().unwrap() > 1_500_000_000_000);
    let responses = resp["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 2);
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r, &json!({"xactionId": format!("{batch_id}:{i}")}));
    }

    let records = p.raw_records(2).await;
    assert_eq!(records.len(), 2, "exactly the accepted messages");
    let mut by_xaction: Vec<_> = records
        .iter()
        .map(|r| (r.header("cdp-xaction-id").unwrap().to_string(), r))
        .collect();
    by_xaction.sort_by(|a, b| a.0.cmp(&b.0));
    for (i, (xaction, record)) in by_xaction.iter().enumerate() {
        assert_eq!(xaction, &format!("{batch_id}:{i}"));
        assert_eq!(record.header("cdp-stream-id"), Some(id));
        assert_eq!(record.header("cdp-org-id"), Some(SEED_ORG));
        assert_eq!(record.header("cdp-sandbox"), Some("prod"));
        assert_eq!(record.header("cdp-batch-id"), Some(batch_id));
        assert_eq!(record.header("content-type"), Some("application/json"));
        assert_eq!(record.header("cdp-source"), Some("collection"));
        assert_eq!(
            record
                .header("cdp-received-ms")
                .unwrap()
                .parse::<i64>()
                .unwrap(),
            resp["receivedTimeMs"].as_i64().unwrap()
        );
        assert_eq!(record.json(), request["messages"][i], "the message as sent");
    }
}

#[tokio::test]
async fn seed_002_mixed_valid_and_invalid() {
    let p = Pipeline::start().await;
    let dataset = p.create_dataset(SEED_ORG, event_schema()).await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": SEED_ORG, "datasetId": dataset["id"]}))
        .await;
    let id = stream["id"].as_str().unwrap();
    let body = seed_request("seed002_batch_mixed.json", &dataset);

    let (status, resp, _) = p
        .post(&format!("/collection/batch/{id}"), "application/json", body)
        .await;

    assert_eq!(status, 207, "{resp}");
    let batch_id = resp["batchId"].as_str().unwrap();
    let prefix = format!("inletId: [{id}] imsOrgId: [{SEED_ORG}] ");
    let expected = json!([
        {"xactionId": format!("{batch_id}:0")},
        {"statusCode": 400, "message": format!("{prefix}Message has unknown xdm format")},
        {"statusCode": 400, "message": format!("{prefix}Message has an absent or wrong ims org in the header")},
        {"xactionId": format!("{batch_id}:3")},
        {"statusCode": 400, "message": format!("{prefix}Message has unknown xdm format")},
    ]);
    assert_eq!(resp["responses"], expected);

    let records = p.raw_records(2).await;
    let mut xactions: Vec<_> = records
        .iter()
        .map(|r| r.header("cdp-xaction-id").unwrap().to_string())
        .collect();
    xactions.sort();
    assert_eq!(
        xactions,
        vec![format!("{batch_id}:0"), format!("{batch_id}:3")]
    );
}

fn xdm_message(org: Option<&str>, ecid: &str) -> Value {
    let mut header = json!({"schemaRef": {"id": "https://ns.adobe.com/acme/schemas/web", "contentType": "application/vnd.adobe.xed-full+json;version=1"}});
    if let Some(o) = org {
        header["imsOrgId"] = json!(o);
    }
    json!({"header": header, "body": {
        "xdmMeta": {"schemaRef": {"id": "https://ns.adobe.com/acme/schemas/web"}},
        "xdmEntity": {"_id": "e-1", "timestamp": "2026-11-26T10:00:00Z",
                      "identityMap": {"ECID": [{"id": ecid, "primary": true}]}}
    }})
}

#[tokio::test]
async fn single_message_fills_in_org_and_keys_by_primary_identity() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "ACME@AdobeOrg", "sandbox": "dev"}))
        .await;
    let id = stream["id"].as_str().unwrap();

    let (status, resp, _) = p
        .post(
            &format!("/collection/{id}"),
            "application/json",
            xdm_message(None, "ecid-42").to_string(),
        )
        .await;

    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["inletId"], id);
    let xaction = resp["xactionId"].as_str().unwrap();
    assert!(resp["receivedTimeMs"].is_i64());
    let records = p.raw_records(1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].key.as_deref(), Some("ECID:ecid-42"));
    assert_eq!(records[0].header("cdp-xaction-id"), Some(xaction));
    assert_eq!(records[0].header("cdp-sandbox"), Some("dev"));
    assert_eq!(records[0].json()["header"]["imsOrgId"], "ACME@AdobeOrg");

    // A refused single message is a 400 with the same wording as in a batch.
    let (status, resp, _) = p
        .post(
            &format!("/collection/{id}"),
            "application/json",
            xdm_message(Some("EVIL@AdobeOrg"), "x").to_string(),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        resp["detail"]
            .as_str()
            .unwrap()
            .ends_with("Message has an absent or wrong ims org in the header"),
        "{resp}"
    );
}

#[tokio::test]
async fn one_profile_shares_a_partition() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "ACME@AdobeOrg"}))
        .await;
    let id = stream["id"].as_str().unwrap();
    let messages: Vec<Value> = (0..30)
        .map(|i| xdm_message(None, &format!("ecid-{}", i % 3)))
        .collect();
    let (status, _, _) = p
        .post(
            &format!("/collection/batch/{id}"),
            "application/json",
            json!({"messages": messages}).to_string(),
        )
        .await;
    assert_eq!(status, 207);
    let records = p.raw_records(30).await;
    assert_eq!(records.len(), 30);
    for ecid in ["ECID:ecid-0", "ECID:ecid-1", "ECID:ecid-2"] {
        let partitions: std::collections::BTreeSet<i32> = records
            .iter()
            .filter(|r| r.key.as_deref() == Some(ecid))
            .map(|r| r.partition)
            .collect();
        assert_eq!(partitions.len(), 1, "{ecid} spread over {partitions:?}");
    }
}

#[tokio::test]
async fn malformed_json_oversized_and_unknown_stream() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "ACME@AdobeOrg"}))
        .await;
    let id = stream["id"].as_str().unwrap();
    let path = format!("/collection/batch/{id}");

    let (status, resp, _) = p
        .post(
            &path,
            "application/json",
            "{\"messages\": [\n{\"header\": }]}",
        )
        .await;
    assert_eq!(status, 400);
    let detail = resp["detail"].as_str().unwrap();
    assert!(detail.contains("line 2 column"), "says where: {detail}");

    let (status, _, _) = p
        .post(&path, "application/json", "{\"messages\": {}}")
        .await;
    assert_eq!(status, 400);

    // Just over 1 MB of otherwise valid JSON.
    let big = json!({"messages": [xdm_message(None, &"x".repeat(1_000_001))]}).to_string();
    let (status, resp, _) = p.post(&path, "application/json", big).await;
    assert_eq!(status, 413, "{resp}");

    let (status, _, _) = p
        .post("/collection/batch/nope", "application/json", "{}")
        .await;
    assert_eq!(status, 404);

    assert!(
        p.raw_records(0).await.is_empty(),
        "nothing written for refused requests"
    );
}

/// One refused message costs an error record and an answer however small it is: a batch over
/// `edge.collection_max_messages` is refused whole, with a small answer and nothing written
/// (1 MB of `{}` used to be answered with 55 MB and write ~330,000 error records).
#[tokio::test]
async fn a_batch_over_the_message_cap_is_refused_whole() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "ACME@AdobeOrg"}))
        .await;
    let id = stream["id"].as_str().unwrap();
    let path = format!("/collection/batch/{id}");
    let batch = |n: usize| format!("{{\"messages\":[{}]}}", vec!["{}"; n].join(","));
    let limit = p.config.edge.collection_max_messages;
    assert_eq!(limit, 5_000, "the documented default");

    let flood = batch(330_000);
    assert!(flood.len() <= 1_000_000, "within the body limit");
    for body in [flood, batch(limit + 1)] {
        let started = std::time::Instant::now();
        let (status, resp, _) = p.post(&path, "application/json", body).await;
        let shown: String = resp.to_string().chars().take(500).collect();
        assert_eq!(status, 413, "{shown}");
        let detail = resp["detail"].as_str().unwrap();
        assert!(
            detail.contains("at most 5000 messages") && detail.contains("nothing"),
            "{detail}"
        );
        assert!(resp.to_string().len() < 1_000, "a small answer: {resp}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    // At the cap, every message is answered.
    let (status, resp, _) = p.post(&path, "application/json", batch(limit)).await;
    assert_eq!(status, 207, "{resp}");
    assert_eq!(resp["responses"].as_array().unwrap().len(), limit);

    // Of all three requests, only the last one's refusals reach the error topic.
    let errors = p
        .broker
        .read_committed(
            &p.config.topics.events_error(),
            limit + 1,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(errors.len(), limit, "the refused batches wrote nothing");
    assert!(p.raw_records(0).await.is_empty());
}

#[tokio::test]
async fn a_100_mb_streamed_body_is_refused_without_being_buffered() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "ACME@AdobeOrg"}))
        .await;
    let id = stream["id"].as_str().unwrap();
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 100 * 1024 * 1024;
    // Chunked transfer (no Content-Length): the limit must hold while the body streams in.
    let body = futures::stream::iter((0..TOTAL / CHUNK).map(move |_| {
        counter.fetch_add(CHUNK, Ordering::Relaxed);
        Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; CHUNK]))
    }));
    let result = p
        .http
        .post(format!("{}/collection/batch/{id}", p.edge))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await;
    // The server may close the connection while the client is still sending; either way it
    // must not have consumed the body.
    if let Ok(resp) = result {
        assert_eq!(resp.status(), 413);
    }
    let sent = produced.load(Ordering::Relaxed);
    assert!(
        sent < 32 * 1024 * 1024,
        "client pushed {sent} bytes before the refusal"
    );
}

/// When the edge's producer queue fills in the middle of a batch, the messages enqueued before
/// are written and answered as accepted, and only the rest are answered 503: sending those
/// again duplicates nothing. (Before, the whole request was answered 503 although part of it
/// was on the raw topic.)
#[tokio::test]
async fn a_batch_cut_short_by_a_full_queue_says_which_messages_were_written() {
    let p = Pipeline::start().await;
    // A second edge whose producer holds at most 5 messages not yet acknowledged.
    let small = p
        .start_with_stages(cdp::Stages::EDGE, |c| {
            c.edge.listen = "127.0.0.1:0".into();
            c.kafka
                .properties
                .insert("queue.buffering.max.messages".into(), "5".into());
        })
        .await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "ACME@AdobeOrg"}))
        .await;
    let id = stream["id"].as_str().unwrap();
    // `create_stream` waits for the pipeline's own edge; this one follows the catalog apart.
    eventually(
        Duration::from_secs(5),
        "the second edge to know the stream",
        async || small.catalog.read().streams.contains_key(id),
    )
    .await;
    let messages: Vec<Value> = (0..20)
        .map(|i| xdm_message(None, &format!("ecid-{i}")))
        .collect();
    let resp = p
        .http
        .post(format!(
            "http://{}/collection/batch/{id}",
            small.edge_addr.expect("edge address")
        ))
        .header("content-type", "application/json")
        .body(json!({ "messages": messages }).to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 207);
    let body: Value = resp.json().await.expect("JSON");
    let responses = body["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 20);
    let written: Vec<&str> = responses
        .iter()
        .filter_map(|r| r["xactionId"].as_str())
        .collect();
    let unwritten: Vec<&Value> = responses
        .iter()
        .filter(|r| r["statusCode"] == 503)
        .collect();
    assert!(
        !written.is_empty() && written.len() < 20,
        "a batch cut short: {body}"
    );
    assert_eq!(written.len() + unwritten.len(), 20, "{body}");
    let why = unwritten[0]["message"].as_str().unwrap();
    assert!(why.contains("send this message again"), "{why}");
    // The accepted ones come first: the queue filled, and the request stopped there.
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r["xactionId"].is_string(), i < written.len(), "{body}");
    }

    // Exactly the accepted messages are on the raw topic.
    let records = p
        .broker
        .read_committed(&p.raw_topic(), 20, Duration::from_secs(3))
        .await;
    let mut on_topic: Vec<&str> = records
        .iter()
        .filter_map(|r| r.header("cdp-xaction-id"))
        .collect();
    on_topic.sort_unstable();
    let mut accepted = written.clone();
    accepted.sort_unstable();
    assert_eq!(on_topic, accepted);
}
