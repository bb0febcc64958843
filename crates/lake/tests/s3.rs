//! The lake on S3 (moto's S3-compatible server): files land under the bucket's prefix and
//! failed records are read back from there.

mod common;

use std::time::Duration;

use cdp_lake::{LakeApi, S3Settings};
use common::*;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lake_writes_parquet_to_s3() {
    let moto = Moto::start();
    moto.create_bucket("lake");
    let env = Env::start().await;
    let mut settings = settings(&temp_root("s3-unused"));
    settings.root = "s3://lake/prod/cdp".to_string();
    settings.s3 = S3Settings {
        endpoint: Some(moto.endpoint.clone()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
        ..S3Settings::default()
    };
    for i in 0..4 {
        env.produce_valid("s1", i).await;
    }
    env.produce_error("s1", 9, Some(DATASET)).await;
    let lake = env.run_lake(settings.clone());
    let api = LakeApi::start(&env.kafka, &env.topics, &settings, env.catalog.clone())
        .await
        .expect("api");
    let batches = api.batches.clone();
    eventually(
        Duration::from_secs(30),
        "batch s1 on S3 (4 records, 1 failed)",
        async || {
            let s1 = batches.batch("s1");
            if s1.as_ref().is_some_and(|b| b.records == 4 && b.failed == 1) {
                Ok(())
            } else {
                Err(s1)
            }
        },
    )
    .await;
    lake.stop().await;

    // Through the store the lake uses (paths relative to the prefix) …
    let listed: Vec<_> = api
        .store
        .list(Some(&Path::from(format!(
            "datasets/{DATASET}/date=2026-01-01"
        ))))
        .try_collect()
        .await
        .expect("list");
    assert!(!listed.is_empty());
    let mut rows = Vec::new();
    for meta in &listed {
        let bytes = api
            .store
            .get(&meta.location)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        rows.extend(rows_of(bytes));
    }
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .any(|r| r["web"]["webPageDetails"]["name"] == "page 3"));

    // … and the objects really are under the bucket's prefix.
    let raw = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name("lake")
        .with_endpoint(&moto.endpoint)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .with_allow_http(true)
        .build()
        .expect("s3 client");
    let all: Vec<_> = raw
        .list(Some(&Path::from("prod/cdp/datasets")))
        .try_collect()
        .await
        .expect("list");
    assert!(all
        .iter()
        .any(|m| m.location.as_ref().contains("/_errors/date=2026-01-01/")));

    let contributions = api.batches.read().contributions("s1");
    let page = cdp_lake::failed::page(&api.store, "s1", &contributions, 0, 10)
        .await
        .expect("failed records");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].violations[0].pointer, "/timestamp");
}
