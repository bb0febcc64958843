//! `/xdm/schemas` and `/datasets` against a real broker.

mod common;

use cdp_test_support::Broker;
use reqwest::StatusCode;
use serde_json::{json, Value};

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn schemas_versions_datasets_and_profile_rules() {
    let broker = Broker::start();
    let base = common::serve(&broker.kafka(), &common::namespace()).await;
    let http = common::http();

    let create = |body: Value| http.post(format!("{base}/xdm/schemas")).json(&body).send();
    let r = create(json!({
        "title": "Web events", "tenant": "acme", "class": "_xdm.context.experienceevent",
        "fieldGroups": ["environment-details", "commerce-details", "experience-campaign"],
        "profileEnabled": false
    }))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let s: Value = r.json().await.unwrap();
    let id = s["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("https://ns.adobe.com/acme/schemas/"), "{id}");
    assert_eq!(s["version"], 1);
    assert_eq!(s["definition"]["required"], json!(["_id", "timestamp"]));

    // Bad requests are problem documents.
    let r = create(json!({ "title": "x", "tenant": "acme", "class": "_xdm.context.profile", "fieldGroups": ["web-details"] }))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = http
        .get(format!(
            "{base}/xdm/schemas/{}",
            enc("https://ns.adobe.com/acme/schemas/nope")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Not used by a dataset yet: PUT replaces version 1.
    let r = http
        .put(format!("{base}/xdm/schemas/{}", enc(&id)))
        .json(&json!({ "fieldGroups": ["environment-details", "commerce-details", "experience-campaign", "web-details"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 1);

    // Profile can only be enabled on a dataset whose schema is profile-enabled.
    let ds = |body: Value| http.post(format!("{base}/datasets")).json(&body).send();
    let r = ds(json!({ "name": "web", "orgId": "org@AdobeOrg", "schemaRef": { "id": id }, "profileEnabled": true })).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = ds(json!({ "name": "web", "orgId": "org@AdobeOrg",
        "schemaRef": { "id": id, "contentType": "application/vnd.adobe.xed-full+json;version=1" } }))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let dataset: Value = r.json().await.unwrap();
    assert_eq!(dataset["schemaVersion"], 1);
    assert_eq!(dataset["profileEnabled"], false);
    let r = ds(json!({ "name": "x", "orgId": "o", "schemaRef": { "id": id, "contentType": "application/vnd.adobe.xed-full+json;7" } })).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Version 1 is now in use: a PUT makes version 2, version 1 stays as it was.
    let r = http
        .put(format!("{base}/xdm/schemas/{}", enc(&id)))
        .json(&json!({ "profileEnabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 2);
    let v1: Value = http
        .get(format!("{base}/xdm/schemas/{}?version=1", enc(&id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v1["profileEnabled"], false);
    let v2: Value = http
        .get(format!("{base}/xdm/schemas/{}", enc(&id)))
        .header("accept", "application/vnd.adobe.xed-full+json;version=2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2["version"], 2);
    let latest: Value = http
        .get(format!("{base}/xdm/schemas/{}", enc(&id)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(latest["version"], 2);

    // The dataset pins version 1, which is not profile-enabled: PATCH refuses.
    let did = dataset["id"].as_str().unwrap();
    let r = http
        .patch(format!("{base}/datasets/{did}"))
        .json(&json!({ "profileEnabled": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A dataset on version 2 can enable and disable Profile.
    let r = ds(json!({ "name": "web2", "orgId": "org@AdobeOrg", "schemaRef": { "id": id }, "profileEnabled": true })).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let d2: Value = r.json().await.unwrap();
    assert_eq!(d2["schemaVersion"], 2);
    let r = http
        .patch(format!("{base}/datasets/{}", d2["id"].as_str().unwrap()))
        .json(&json!({ "profileEnabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["profileEnabled"], false);
    let r = http
        .patch(format!("{base}/datasets/nope"))
        .json(&json!({ "profileEnabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    let r = ds(json!({ "name": "avro", "orgId": "org@AdobeOrg", "schemaRef": { "id": id }, "format": "avro" }))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.json::<Value>().await.unwrap()["format"], "avro");

    let list: Value = http
        .get(format!("{base}/datasets"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["datasets"].as_array().unwrap().len(), 3);
    let list: Value = http
        .get(format!("{base}/xdm/schemas"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["results"][0]["version"], 2);
}
