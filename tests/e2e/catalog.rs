//! The management API and the catalog: the edge, a separate runtime, follows the catalog
//! topic, so a new stream works within a second and a deleted one stops, without a restart.

use std::time::Duration;

use cdp_e2e::{event_schema, Pipeline, ADMIN, WEB_SCHEMA};
use cdp_test_support::eventually;
use serde_json::{json, Value};

#[tokio::test]
async fn streams_lifecycle_reaches_the_edge_within_a_second() {
    let p = Pipeline::start().await;
    let dataset = p
        .create_dataset_with("acme", WEB_SCHEMA, event_schema())
        .await;
    let resp = p
        .http
        .post(format!("{}/streams", p.control))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "web", "orgId": "acme", "payloadType": "xml", "rateLimit": 50,
                      "datasetId": dataset["id"], "schemaRef": {"id": "https://ns.adobe.com/acme/schemas/web"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["payloadType"], "xml");
    assert_eq!(created["sandbox"], "prod");
    assert_eq!(created["authenticationRequired"], false);

    let url = format!("{}/stream/v0/data/{id}", p.edge);
    let post_xml = async || {
        p.http
            .post(&url)
            .header("content-type", "application/xml")
            .body("<records><record><a>1</a></record></records>")
            .send()
            .await
            .unwrap()
            .status()
    };
    eventually(
        Duration::from_secs(1),
        "the edge to pick up the stream (202)",
        async || {
            let status = post_xml().await;
            if status == 202 {
                return Ok(());
            }
            assert_eq!(status, 404);
            Err(status)
        },
    )
    .await;

    let got: Value = p
        .http
        .get(format!("{}/streams/{id}", p.control))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, created);
    let list: Value = p
        .http
        .get(format!("{}/streams", p.control))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["streams"].as_array().unwrap().len(), 1);

    let status = p
        .http
        .delete(format!("{}/streams/{id}", p.control))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 204);
    eventually(
        Duration::from_secs(1),
        "the edge to stop serving the deleted stream (404)",
        async || {
            let status = post_xml().await;
            if status == 404 {
                Ok(())
            } else {
                Err(status)
            }
        },
    )
    .await;
    let status = p
        .http
        .get(format!("{}/streams/{id}", p.control))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
}

#[tokio::test]
async fn management_api_is_authenticated_and_validates() {
    let p = Pipeline::start().await;
    // Streams, datasets, XDM schemas and batches are management APIs; the Confluent-compatible
    // subset stays open, as Kafka tooling expects of a schema registry.
    for path in [
        "/streams",
        "/datasets",
        "/xdm/schemas",
        "/batches/b1",
        "/datasets/d1/activity",
    ] {
        let url = format!("{}{path}", p.control);
        assert_eq!(
            p.http.get(&url).send().await.unwrap().status(),
            401,
            "{path}"
        );
        assert_eq!(
            p.http
                .get(&url)
                .bearer_auth("wrong")
                .send()
                .await
                .unwrap()
                .status(),
            403,
            "{path}"
        );
    }
    // The Confluent-compatible registry takes credentials too (issue 19): none is 401 with
    // Confluent's error shape, the admin token reads.
    let subjects = p
        .http
        .get(format!("{}/subjects", p.control))
        .send()
        .await
        .unwrap();
    assert_eq!(subjects.status(), 401);
    let body: Value = subjects.json().await.unwrap();
    assert_eq!(body["error_code"], 40101, "{body}");
    let subjects = p
        .http
        .get(format!("{}/subjects", p.control))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(subjects.status(), 200);

    let url = format!("{}/streams", p.control);
    let bad = p
        .http
        .post(&url)
        .bearer_auth(ADMIN)
        .json(&json!({"name": "x", "orgId": "acme", "payloadType": "csv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let body: Value = bad.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("payloadType"),
        "{body}"
    );
    let empty = p
        .http
        .post(&url)
        .bearer_auth(ADMIN)
        .json(&json!({"name": "", "orgId": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 400);
}

#[tokio::test]
async fn catalog_survives_a_restart_of_the_edge() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "acme"}))
        .await;
    let id = stream["id"].as_str().unwrap();
    // A fresh edge runtime rebuilds its view from the topic before serving.
    let edge2 = cdp::start(&p.config, cdp::Stages::EDGE).await.unwrap();
    assert!(edge2.catalog.read().streams.contains_key(id));
    let url = format!("http://{}/stream/v0/data/{id}", edge2.edge_addr.unwrap());
    let status = p
        .http
        .post(url)
        .header("content-type", "application/json")
        .body("{\"a\":1}")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let p = Pipeline::start().await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": "acme"}))
        .await;
    let ingest = format!("/stream/v0/data/{}", stream["id"].as_str().unwrap());
    assert_eq!(
        p.post(&ingest, "application/json", "{\"a\":1}").await.0,
        202
    );
    assert_eq!(p.post(&ingest, "application/json", "[1]").await.0, 400);
    assert_eq!(
        p.http
            .get(format!("{}/healthz", p.edge))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        p.http
            .get(format!("{}/readyz", p.edge))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = p
        .http
        .get(format!("{}/metrics", p.edge))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"cdp_edge_requests_total{route="/stream/v0/data/{stream_id}",status="202"}"#,
        r#"cdp_edge_requests_total{route="/stream/v0/data/{stream_id}",status="400"}"#,
        r#"cdp_edge_messages_total{outcome="accepted"}"#,
        "cdp_edge_produce_latency_seconds_bucket",
        "cdp_edge_received_bytes_total",
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack {needle}:\n{metrics}"
        );
    }
}

/// Lists come in pages (seed 003's shape): `limit` and `start` ask, `page` and `link.next`
/// answer; a bad `limit` is a 400 naming it.
#[tokio::test]
async fn lists_are_paged() {
    let p = Pipeline::start().await;
    let org = "PAGES@AdobeOrg";
    for n in 0..3 {
        p.create_stream(json!({"name": format!("s{n}"), "orgId": org}))
            .await;
    }
    let p = &p;
    let get = |path: &str| {
        let url = format!("{}{path}", p.control);
        async move {
            let resp = p
                .http
                .get(url)
                .bearer_auth(cdp_e2e::ADMIN)
                .header("x-gw-ims-org-id", org)
                .send()
                .await
                .expect("GET");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (path, key, total) in [
        ("/streams", "streams", 3),
        ("/datasets", "datasets", 3),
        ("/xdm/schemas", "results", 1),
    ] {
        let (status, first) = get(&format!("{path}?limit=2")).await;
        assert_eq!(status, 200, "{path}: {first}");
        let shown = first[key].as_array().map_or(0, Vec::len);
        assert_eq!(shown, total.min(2), "{path}: {first}");
        assert_eq!(first["page"]["totalCount"], total, "{path}: {first}");
        assert_eq!(first["page"]["limit"], 2, "{path}: {first}");
        if total > 2 {
            let next = first["link"]["next"].as_str().expect("link.next");
            assert_eq!(next, format!("{path}?limit=2&start=1"));
            let (_, second) = get(next).await;
            assert_eq!(second[key].as_array().map_or(0, Vec::len), total - 2);
            assert!(second["link"]["next"].is_null(), "{second}");
        }
        let (status, problem) = get(&format!("{path}?limit=0")).await;
        assert_eq!(status, 400, "{path}: {problem}");
        assert!(problem["detail"].as_str().unwrap_or("").contains("limit"));
    }
    let (status, connections) = get("/connections?limit=5").await;
    assert_eq!(status, 200, "{connections}");
    assert_eq!(connections["page"]["totalCount"], 0, "{connections}");
}
