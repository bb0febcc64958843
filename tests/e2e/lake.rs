//! Issue 3's whole path through the public APIs: create a schema (class + field groups), a
//! dataset and a stream; post seed 002's mixed request and an event that violates the schema;
//! watch the valid events land in Parquet and the dataset's record count, and the refused and
//! invalid ones in their batch's failed records — never in the lake.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{Array, StringArray};
use cdp_e2e::{fixture, Pipeline, ADMIN};
use cdp_test_support::eventually;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Value};

const ORG: &str = "{ORG_ID}";

async fn call(
    p: &Pipeline,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = p
        .http
        .request(method, format!("{}{path}", p.control))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("control request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            parquet_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "parquet") {
            out.push(path);
        }
    }
}

/// `_xaction_id` of every row in the dataset's data files (not its `_errors`).
fn lake_rows(p: &Pipeline, dataset: &str) -> Vec<String> {
    let root = PathBuf::from(p.config.lake.root.trim_start_matches("file://"));
    let mut files = Vec::new();
    parquet_files(&root.join("datasets").join(dataset), &mut files);
    let mut ids = Vec::new();
    for file in files
        .iter()
        .filter(|f| !f.to_string_lossy().contains("/_errors/"))
    {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let col = batch
                .column_by_name("_xaction_id")
                .expect("_xaction_id column");
            let col = col.as_any().downcast_ref::<StringArray>().unwrap();
            ids.extend((0..col.len()).map(|i| col.value(i).to_string()));
        }
    }
    ids.sort();
    ids
}

/// How long the lake may take to show what the edge accepted.
const LAKE: Duration = Duration::from_secs(60);

async fn wait_for_record_count(p: &Pipeline, dataset_id: &str, n: u64) {
    eventually(
        LAKE,
        &format!("the dataset's record count to be {n}"),
        async || {
            let (_, dataset) = call(
                p,
                reqwest::Method::GET,
                &format!("/datasets/{dataset_id}"),
                None,
            )
            .await;
            if dataset["recordCount"] == n {
                Ok(())
            } else {
                Err(dataset)
            }
        },
    )
    .await;
}

/// A web-events schema (class + field groups), a dataset of it in `format`, and a stream into
/// the dataset, created through the public APIs.
struct Web {
    schema_id: String,
    dataset_id: String,
    dataset: Value,
    stream: Value,
    inlet: String,
}

async fn web_dataset(p: &Pipeline, format: &str) -> Web {
    web_dataset_with(p, format, true).await
}

/// Like [`web_dataset`]; `profile` says whether the dataset is profile-enabled.
async fn web_dataset_with(p: &Pipeline, format: &str, profile: bool) -> Web {
    let (status, schema) = call(
        p,
        reqwest::Method::POST,
        "/xdm/schemas",
        Some(json!({"title": "Web events", "tenant": "acme", "class": "_xdm.context.experienceevent",
                    "fieldGroups": ["environment-details", "web-details", "commerce-details", "experience-campaign"],
                    "profileEnabled": true})),
    )
    .await;
    assert_eq!(status, 201, "{schema}");
    let schema_id = schema["id"].as_str().unwrap().to_string();
    let (status, dataset) = call(
        p,
        reqwest::Method::POST,
        "/datasets",
        Some(
            json!({"name": "web", "orgId": ORG, "schemaRef": {"id": schema_id},
                    "profileEnabled": profile, "format": format}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{dataset}");
    let dataset_id = dataset["id"].as_str().unwrap().to_string();
    p.wait_for_edge(|c| c.datasets.contains_key(&dataset_id))
        .await;
    let stream = p
        .create_stream(json!({"name": "web", "orgId": ORG, "datasetId": dataset_id}))
        .await;
    let inlet = stream["id"].as_str().unwrap().to_string();
    Web {
        schema_id,
        dataset_id,
        dataset,
        stream,
        inlet,
    }
}

/// Seed 002's mixed request, its placeholders filled with what `web` created.
async fn post_seed_mixed(p: &Pipeline, web: &Web) -> (u16, Value) {
    let body = fixture("seed002_batch_mixed.json")
        .replace(
            "https://ns.adobe.com/{TENANT_ID}/schemas/{SCHEMA_ID}",
            &web.schema_id,
        )
        .replace("{SCHEMA_VERSION}", "version=1")
        .replace("{DATASET_ID}", &web.dataset_id);
    let (status, resp, _) = p
        .post(
            &format!("/collection/batch/{}", web.inlet),
            "application/json",
            body,
        )
        .await;
    (status, resp)
}

#[tokio::test]
async fn schema_dataset_stream_events_parquet_and_failed_records() {
    let p = Pipeline::start().await;
    // Not profile-enabled: the seed's events carry no identity, so the profile intake inside
    // validate would also refuse the two valid ones into events.error (stage `profile`), under
    // this batch, beside the edge's three (see validate::the_profile_intake_runs_in_validates_transaction).
    let web = web_dataset_with(&p, "json", false).await;
    assert_eq!(web.stream["schemaRef"]["id"], web.schema_id.as_str());
    let (schema_id, dataset_id, inlet) = (&web.schema_id, &web.dataset_id, &web.inlet);
    let (status, resp) = post_seed_mixed(&p, &web).await;
    assert_eq!(status, 207, "{resp}");
    let batch = resp["batchId"].as_str().unwrap().to_string();
    let accepted: Vec<String> = resp["responses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["xactionId"].as_str().map(str::to_string))
        .collect();
    assert_eq!(accepted.len(), 2, "{resp}");

    // The valid events reach the lake and the dataset's record count.
    wait_for_record_count(&p, dataset_id, 2).await;
    assert_eq!(
        lake_rows(&p, dataset_id),
        accepted,
        "exactly the accepted messages, as Parquet rows"
    );

    // The refused ones are listed under their batch, with reasons and original payloads.
    eventually(LAKE, "the batch's 3 failed records", async || {
        let (_, summary) = call(&p, reqwest::Method::GET, &format!("/batches/{batch}"), None).await;
        if summary["failed"] == 3 {
            Ok(())
        } else {
            Err(summary)
        }
    })
    .await;
    let (_, summary) = call(&p, reqwest::Method::GET, &format!("/batches/{batch}"), None).await;
    assert_eq!(summary["records"], 2, "{summary}");
    assert_eq!(summary["status"], "partial", "{summary}");
    let (status, failed) = call(
        &p,
        reqwest::Method::GET,
        &format!("/batches/{batch}/failed"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{failed}");
    let records = failed["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{failed}");
    let reasons: Vec<&str> = records
        .iter()
        .map(|r| r["violations"][0]["message"].as_str().unwrap())
        .collect();
    assert!(reasons.iter().any(|m| m.contains("ims org")), "{reasons:?}");
    assert!(
        reasons
            .iter()
            .filter(|m| m.contains("unknown xdm format"))
            .count()
            == 2,
        "{reasons:?}"
    );
    assert!(
        records.iter().all(|r| r["payload"].is_object()),
        "original payloads kept"
    );

    // An event that violates the schema (timestamp of the wrong type) is accepted by the edge,
    // quarantined by validate, listed under its batch, and never written to the lake.
    let bad = json!({"messages": [{
        "header": {"schemaRef": {"id": schema_id, "contentType": "application/vnd.adobe.xed-full+json;version=1"},
                   "imsOrgId": ORG, "datasetId": dataset_id},
        "body": {"xdmMeta": {"schemaRef": {"id": schema_id}},
                 "xdmEntity": {"_id": "bad-1", "timestamp": 1764151200}}}]});
    let (status, resp, _) = p
        .post(
            &format!("/collection/batch/{inlet}"),
            "application/json",
            bad.to_string(),
        )
        .await;
    assert_eq!(status, 207, "{resp}");
    let bad_batch = resp["batchId"].as_str().unwrap().to_string();
    eventually(LAKE, "the invalid event's failed record", async || {
        let (_, failed) = call(
            &p,
            reqwest::Method::GET,
            &format!("/batches/{bad_batch}/failed"),
            None,
        )
        .await;
        if failed["records"].as_array().is_some_and(|r| r.len() == 1) {
            Ok(())
        } else {
            Err(failed)
        }
    })
    .await;
    let (_, failed) = call(
        &p,
        reqwest::Method::GET,
        &format!("/batches/{bad_batch}/failed"),
        None,
    )
    .await;
    assert_eq!(
        failed["records"][0]["violations"][0]["pointer"], "/timestamp",
        "{failed}"
    );
    assert_eq!(failed["records"][0]["stage"], "validate");
    let (_, summary) = call(
        &p,
        reqwest::Method::GET,
        &format!("/batches/{bad_batch}"),
        None,
    )
    .await;
    assert_eq!(summary["status"], "failed", "{summary}");
    let (_, ds) = call(
        &p,
        reqwest::Method::GET,
        &format!("/datasets/{dataset_id}"),
        None,
    )
    .await;
    assert_eq!(ds["recordCount"], 2, "{ds}");
    assert_eq!(
        lake_rows(&p, dataset_id).len(),
        2,
        "the invalid event is not in the lake"
    );
}

/// A dataset of format avro: its valid events go to events.valid in the Confluent wire format,
/// under a subject the registry serves, and the lake decodes them into the same Parquet rows.
#[tokio::test]
async fn avro_dataset_values_are_registered_encoded_and_land_in_the_lake() {
    let p = Pipeline::start().await;
    let web = web_dataset(&p, "avro").await;
    assert_eq!(web.dataset["format"], "avro", "{}", web.dataset);
    let dataset_id = web.dataset_id.clone();
    let (status, resp) = post_seed_mixed(&p, &web).await;
    assert_eq!(status, 207, "{resp}");
    let mut accepted: Vec<String> = resp["responses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["xactionId"].as_str().map(str::to_string))
        .collect();
    accepted.sort();
    assert_eq!(accepted.len(), 2, "{resp}");

    // On events.valid: Avro in the Confluent wire format, its schema id served by the registry.
    let valid = p
        .broker
        .read_committed(&p.config.topics.events_valid(), 2, Duration::from_secs(60))
        .await;
    assert_eq!(valid.len(), 2);
    for record in &valid {
        assert_eq!(record.header("cdp-value-format"), Some("avro"));
        assert_eq!(record.value[0], 0, "magic byte");
        assert!(
            record.value.get(1..).is_some_and(|v| !v.starts_with(b"{")),
            "not JSON"
        );
        let id = u32::from_be_bytes(record.value[1..5].try_into().unwrap());
        let (status, registered) = call(
            &p,
            reqwest::Method::GET,
            &format!("/schemas/ids/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{registered}");
        assert!(
            registered["schema"]
                .as_str()
                .is_some_and(|s| s.contains("\"record\"")),
            "{registered}"
        );
    }

    // The lake decodes them through the registry into Parquet rows.
    wait_for_record_count(&p, &dataset_id, 2).await;
    assert_eq!(lake_rows(&p, &dataset_id), accepted);
}
