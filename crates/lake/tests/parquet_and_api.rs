//! Valid events and failures land in Parquet per dataset and date, with nested columns and
//! provenance; the batch and dataset APIs count them; failed records come back with their
//! reasons and original payloads.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cdp_lake::{BatchStatus, BatchView, LakeApi};
use common::*;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The operator's token of the routers these tests build.
const ADMIN: &str = "lake-test-admin";

/// The lake's API over `api`, behind credentials as control serves it.
fn router(api: LakeApi) -> axum::Router {
    let auth = cdp_catalog::principal::Authenticator::new(
        ADMIN.into(),
        api.catalog.clone(),
        cdp_catalog::tokens::Tokens::new("lake-test-token-secret"),
    );
    cdp_lake::router(api, auth)
}

/// `GET uri` with the admin token.
async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Value) {
    let resp = app
        .clone()
        .oneshot(
            Request::get(uri)
                .header("authorization", format!("Bearer {ADMIN}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_failures_land_in_parquet_and_the_apis_report_them() {
    let env = Env::start().await;
    let root = temp_root("api");
    let settings = settings(&root);
    for i in 0..6 {
        env.produce_valid("b1", i).await;
    }
    env.produce_error("b1", 100, Some(DATASET)).await;
    env.produce_error("b1", 101, Some(DATASET)).await;
    env.produce_error("b1", 102, Some(DATASET)).await;
    env.produce_error("b2", 103, None).await;

    let lake = env.run_lake(settings.clone());
    let api = LakeApi::start(&env.kafka, &env.topics, &settings, env.catalog.clone())
        .await
        .expect("api");
    let batches: BatchView = api.batches.clone();
    eventually(
        Duration::from_secs(30),
        "batch b1 fully written (6 records, 3 failed) and batch b2",
        async || {
            let (b1, b2) = (batches.batch("b1"), batches.batch("b2"));
            if b1.as_ref().is_some_and(|b| b.records == 6 && b.failed == 3) && b2.is_some() {
                Ok(())
            } else {
                Err((b1, b2))
            }
        },
    )
    .await;
    lake.stop().await;

    // Data files: one directory per dataset and date of receipt.
    let data_dir = root.join(format!("datasets/{DATASET}/date=2026-01-01"));
    let files = parquet_files(&data_dir);
    assert!(!files.is_empty(), "no data files in {}", data_dir.display());
    let mut rows = rows_in(&files);
    rows.sort_by_key(|r| r["_id"].as_str().unwrap_or_default().to_string());
    assert_eq!(rows.len(), 6);
    let r = &rows[2];
    assert_eq!(r["_id"], "e2");
    assert_eq!(
        r["web"],
        json!({"webPageDetails": {"name": "page 2", "URL": "https://example.com/"}})
    );
    assert_eq!(r["commerce"]["order"]["priceTotal"], json!(2.5));
    assert_eq!(
        r["productListItems"],
        json!([{"SKU": "sku-1", "quantity": 2}, {"SKU": "sku-2", "quantity": 1}])
    );
    // A map without fixed properties is kept as JSON text.
    let identity: Value =
        serde_json::from_str(r["identityMap"].as_str().expect("json text")).expect("json");
    assert_eq!(
        identity,
        json!({"ECID": [{"id": "ecid-2", "primary": true}]})
    );
    assert_eq!(r["_batch_id"], "b1");
    assert_eq!(r["_xaction_id"], "b1:2");
    assert_eq!(r["_stream_id"], "stream-1");
    assert_eq!(r["_received_ms"], json!(RECEIVED_MS));
    assert!(
        r.get("_extra").is_none_or(Value::is_null),
        "nothing left over: {r}"
    );
    for f in &files {
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert!(
            name.starts_with(&format!("part-{}-", env.topics.events_valid())),
            "{name}"
        );
    }

    // Error files: under the dataset, and under _unassigned without one.
    let errors = rows_in(&parquet_files(
        &root.join(format!("datasets/{DATASET}/_errors")),
    ));
    assert_eq!(errors.len(), 3);
    assert!(errors
        .iter()
        .all(|e| e["stage"] == "validate" && e["_dataset_id"] == DATASET));
    assert_eq!(
        errors[0]["violations"],
        json!([{"pointer": "/timestamp", "message": "\"timestamp\" is a required property"}])
    );
    let unassigned = rows_in(&parquet_files(&root.join("datasets/_unassigned/_errors")));
    assert_eq!(unassigned.len(), 1);
    assert_eq!(unassigned[0]["_batch_id"], "b2");

    let app = router(api);
    let (status, b1) = get(&app, "/batches/b1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b1["status"], "partial");
    assert_eq!(
        (b1["records"].as_u64(), b1["failed"].as_u64()),
        (Some(6), Some(3))
    );
    assert_eq!(b1["datasetId"], DATASET);
    assert_eq!(b1["createdMs"], json!(RECEIVED_MS));
    assert!(b1["files"].as_array().is_some_and(|f| !f.is_empty()));
    let (_, b2) = get(&app, "/batches/b2").await;
    assert_eq!(
        b2["status"],
        serde_json::to_value(BatchStatus::Failed).expect("status")
    );

    // Failed records, two pages.
    let (status, page1) = get(&app, "/batches/b1/failed?start=0&limit=2").await;
    assert_eq!(status, StatusCode::OK, "{page1}");
    assert_eq!(page1["total"], 3);
    assert_eq!(page1["next"], 2);
    assert_eq!(page1["records"].as_array().map(Vec::len), Some(2));
    let first = &page1["records"][0];
    assert_eq!(first["stage"], "validate");
    assert_eq!(first["violations"][0]["pointer"], "/timestamp");
    assert!(first["payload"]["body"]["xdmEntity"]["_id"]
        .as_str()
        .is_some_and(|s| s.starts_with("bad")));
    let (_, page2) = get(&app, "/batches/b1/failed?start=2&limit=2").await;
    assert_eq!(page2["next"], Value::Null);
    assert_eq!(page2["records"].as_array().map(Vec::len), Some(1));
    let mut seen: Vec<String> = page1["records"]
        .as_array()
        .into_iter()
        .chain(page2["records"].as_array())
        .flatten()
        .map(|r| r["xactionId"].as_str().unwrap_or_default().to_string())
        .collect();
    seen.sort();
    assert_eq!(seen, ["b1:100", "b1:101", "b1:102"]);

    let (status, ds) = get(&app, &format!("/datasets/{DATASET}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ds["id"], DATASET);
    assert_eq!(ds["schemaId"], SCHEMA_ID);
    assert_eq!(
        (ds["recordCount"].as_u64(), ds["failedCount"].as_u64()),
        (Some(6), Some(3))
    );
    assert_eq!(ds["lastBatch"]["id"], "b1");

    let (status, act) = get(&app, &format!("/datasets/{DATASET}/activity?minutes=5")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(act["buckets"].as_array().map(Vec::len), Some(5));
    assert_eq!(act["recordCount"], 6);
    assert_eq!(act["batches"][0]["id"], "b1");

    for uri in [
        "/batches/nope",
        "/batches/nope/failed",
        "/datasets/nope",
        "/datasets/nope/activity",
    ] {
        let (status, problem) = get(&app, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(problem["status"], 404);
    }
    let (status, _) = get(&app, "/batches/b1/failed?start=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let _ = std::fs::remove_dir_all(&root);
}

/// Messages the lake cannot read are kept as failed records (stage `lake`), never dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_values_become_failed_records() {
    let env = Env::start().await;
    let root = temp_root("unreadable");
    let mut settings = settings(&root);
    // Nothing listens there: the Avro value cannot be decoded.
    settings.registry_url = format!("http://127.0.0.1:{}", free_port());
    env.produce_valid("u1", 0).await;
    env.produce_valid_value("u1", 1, "json", b"{not json").await;
    env.produce_valid_value("u1", 2, "avro", &[0, 0, 0, 0, 7, 2, 0x61])
        .await;
    let lake = env.run_lake(settings.clone());
    let api = LakeApi::start(&env.kafka, &env.topics, &settings, env.catalog.clone())
        .await
        .expect("api");
    let batches = api.batches.clone();
    eventually(
        Duration::from_secs(30),
        "batch u1 (1 record, 2 failed)",
        async || {
            let u1 = batches.batch("u1");
            if u1.as_ref().is_some_and(|b| b.records == 1 && b.failed == 2) {
                Ok(())
            } else {
                Err(u1)
            }
        },
    )
    .await;
    lake.stop().await;
    let app = router(api);
    let (_, page) = get(&app, "/batches/u1/failed").await;
    let records = page["records"].as_array().cloned().unwrap_or_default();
    assert_eq!(records.len(), 2, "{page}");
    assert!(records.iter().all(|r| r["stage"] == "lake"));
    assert_eq!(records[0]["payload"], "{not json");
    assert!(records[0]["violations"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("not JSON")));
    assert!(records[1]["violations"][0]["message"]
        .as_str()
        .is_some_and(|m| m.contains("Avro")));
    let _ = std::fs::remove_dir_all(&root);
}
