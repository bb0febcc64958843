//! Seed 001: `/stream/v0/data/{id}` with JSON and XML streams.

use cdp_e2e::Pipeline;
use serde_json::json;

#[tokio::test]
async fn seed_001_json_example() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "orders", "orgId": "acme", "payloadType": "json"}))
        .await;
    let id = stream["id"].as_str().unwrap();
    // The seed's curl example, byte for byte.
    let body = " {\"field1\": \"value1\",\n      \"field2\": \"value2\"}";

    let (status, resp, _) = p
        .post(&format!("/stream/v0/data/{id}"), "application/json", body)
        .await;

    assert_eq!(status, 202, "{resp}");
    assert_eq!(resp["records"], 1);
    let records = p.raw_records(1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].json(),
        json!({"field1": "value1", "field2": "value2"})
    );
    assert_eq!(records[0].header("cdp-source"), Some("stream"));
    assert_eq!(records[0].header("cdp-org-id"), Some("acme"));
    assert_eq!(records[0].header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn seed_001_xml_example() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "profiles", "orgId": "acme", "payloadType": "xml"}))
        .await;
    let id = stream["id"].as_str().unwrap();
    let body = "<records>\n <record>\n <field1>value1</field1>\n </record>\n <record>\n <field1>value2</field1>\n </record>\n </records>\n";

    let (status, resp, _) = p
        .post(&format!("/stream/v0/data/{id}"), "application/xml", body)
        .await;

    assert_eq!(status, 202, "{resp}");
    assert_eq!(resp["records"], 2);
    let mut values: Vec<_> = p.raw_records(2).await.iter().map(|r| r.json()).collect();
    values.sort_by_key(|v| v["field1"].as_str().map(str::to_string));
    assert_eq!(
        values,
        vec![json!({"field1": "value1"}), json!({"field1": "value2"})]
    );
}

#[tokio::test]
async fn refusals_on_streams() {
    let p = Pipeline::start().await;
    let js = p.create_stream(json!({"name": "j", "orgId": "acme"})).await;
    let xs = p
        .create_stream(json!({"name": "x", "orgId": "acme", "payloadType": "xml"}))
        .await;
    let j = format!("/stream/v0/data/{}", js["id"].as_str().unwrap());
    let x = format!("/stream/v0/data/{}", xs["id"].as_str().unwrap());

    let (status, resp, _) = p
        .post(&j, "application/json", "{\"a\":1}\n{\"a\":2}\n")
        .await;
    assert_eq!(status, 400);
    assert!(
        resp["detail"].as_str().unwrap().contains("NDJSON"),
        "{resp}"
    );
    let (status, resp, _) = p.post(&j, "application/json", "[{\"a\":1}]").await;
    assert_eq!(status, 400);
    assert!(resp["detail"].as_str().unwrap().contains("array"), "{resp}");
    let (status, resp, _) = p.post(&j, "application/json", "{\"a\": tru}").await;
    assert_eq!(status, 400);
    assert!(
        resp["detail"].as_str().unwrap().contains("line 1 column"),
        "{resp}"
    );
    let (status, _, _) = p
        .post(&j, "application/xml", "<records><record/></records>")
        .await;
    assert_eq!(status, 415);
    let (status, _, _) = p.post(&x, "application/json", "{\"a\":1}").await;
    assert_eq!(status, 415);
    let (status, resp, _) = p
        .post(
            &x,
            "application/xml",
            "<records><record><a>1</record></records>",
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        resp["detail"].as_str().unwrap().contains("malformed XML"),
        "{resp}"
    );
    let (status, _, _) = p.post(&x, "application/xml", "<rows><row/></rows>").await;
    assert_eq!(status, 400);

    // 254 KB is the limit on this endpoint.
    let big = format!("{{\"a\": \"{}\"}}", "x".repeat(254 * 1024));
    let (status, _, _) = p.post(&j, "application/json", big).await;
    assert_eq!(status, 413);
    let fits = format!("{{\"a\": \"{}\"}}", "x".repeat(200 * 1024));
    let (status, _, _) = p.post(&j, "application/json", fits).await;
    assert_eq!(status, 202);

    assert_eq!(
        p.raw_records(1).await.len(),
        1,
        "only the one accepted record"
    );
}
