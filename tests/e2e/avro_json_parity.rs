//! A JSON dataset and an Avro dataset of the same XDM schema receive the same events, through
//! the edge, validate and the lake; their Parquet rows must be the same. The events carry what
//! the Avro mapping has to work hardest for: untyped values (JSON text in `__json`), undeclared
//! tenant members (`__extra`), explicit nulls next to absent fields, integers written as `2.0`.
//!
//! "The same" is decided column by column on the Parquet values, rows ordered by `_id`, the
//! provenance columns (batch, stream, offsets…) left out since they differ by construction.
//! Typed columns must be equal as Arrow values. JSON-text columns (untyped values, maps like
//! identityMap, `_extra`) are compared as JSON with numbers compared by value: Avro has two
//! number types where JSON has one, and a map of `number` values (a JSON-text column here)
//! cannot tell `2.0` from `2` once it is a double, while a typed `number` column loses the
//! difference anyway by being Float64.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::json::writer::{JsonArray, WriterBuilder};
use cdp_e2e::{Pipeline, ADMIN};
use cdp_lake::columns::{Column, EntityLayout, EXTRA, METADATA};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{json, Map, Number, Value};

const ORG: &str = "{ORG_ID}";

async fn call(p: &Pipeline, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut req = p
        .http
        .request(method, format!("{}{path}", p.control))
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("control request");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status < 300, "{path}: {status} {body}");
    body
}

/// The tenant's fields: typed ones, a nullable one, and ones the Avro mapping cannot type.
fn tenant_fields() -> Value {
    json!({
        "loyaltyTier": {"type": "string"},
        "visits": {"type": "integer"},
        "score": {"type": "number"},
        "nickname": {"type": ["string", "null"]},
        "prefs": {"type": "object"},
        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
        "history": {"type": "array", "items": {}}
    })
}

fn events() -> Vec<Value> {
    vec![
        json!({
            "_id": "parity-1",
            "timestamp": "2026-03-01T10:00:00Z",
            "eventType": "commerce.purchases",
            "identityMap": {
                "ECID": [{"id": "ecid-1", "primary": true}],
                "Email": [{"id": "a@example.com", "authenticatedState": "authenticated"}]
            },
            "environment": {
                "type": "browser",
                "browserDetails": {"userAgent": "UA/1", "cookiesEnabled": true, "viewportWidth": 414},
                "colorDepth": 32
            },
            "web": {"webPageDetails": {"name": "checkout", "isHomePage": false, "pageViews": {"value": 1}}},
            "commerce": {
                "order": {"purchaseID": "o-1", "priceTotal": 19.5, "currencyCode": "EUR"},
                "purchases": {"value": 1.0}
            },
            "productListItems": [
                {"SKU": "A", "quantity": 2.0, "priceTotal": 9.75},
                {"SKU": "B", "quantity": 1, "priceTotal": 10}
            ],
            // Free-form: the class leaves endUserIDs open.
            "endUserIDs": {
                "_experience": {"aaid": {"id": "A1", "authenticatedState": "ambiguous"}},
                "mixed": [1, 2.5, null, "x", {"k": false}]
            },
            "_acme": {
                "loyaltyTier": "gold",
                "visits": 3,
                "score": 4.5,
                "nickname": null,
                "prefs": {"theme": "dark", "sizes": [38, 39.5], "none": null},
                "scores": {"a": 2.0, "b": 1.5},
                "history": [1, "two", null, {"three": 3.0}],
                "campaignCode": "SPRING",
                "undeclared": {"a": null, "b": [true, 1.0]}
            }
        }),
        json!({"_id": "parity-2", "timestamp": "2026-03-01T10:00:01Z"}),
        json!({
            "_id": "parity-3",
            "timestamp": "2026-03-01T10:00:02Z",
            "web": {},
            "endUserIDs": {},
            "productListItems": [],
            "_acme": {"onlyUndeclared": 1, "nullMember": null}
        }),
        json!({
            "_id": "parity-4",
            "timestamp": "2026-03-01T10:00:03Z",
            "commerce": {"order": {"priceTotal": 20}},
            "_acme": {"nickname": "Ace", "score": 7, "visits": 0, "prefs": {}, "scores": {}, "history": []}
        }),
    ]
}

struct Target {
    dataset_id: String,
    inlet: String,
}

async fn dataset_and_stream(p: &Pipeline, schema_id: &str, format: &str) -> Target {
    let dataset = call(
        p,
        reqwest::Method::POST,
        "/datasets",
        Some(json!({"name": format!("parity {format}"), "orgId": ORG,
                    "schemaRef": {"id": schema_id}, "format": format})),
    )
    .await;
    assert_eq!(dataset["format"], format, "{dataset}");
    let dataset_id = dataset["id"].as_str().expect("dataset id").to_string();
    p.wait_for_edge(|c| c.datasets.contains_key(&dataset_id))
        .await;
    let stream = p
        .create_stream(
            json!({"name": format!("parity {format}"), "orgId": ORG, "datasetId": dataset_id}),
        )
        .await;
    Target {
        dataset_id,
        inlet: stream["id"].as_str().expect("stream id").to_string(),
    }
}

/// Posts every event to `target` in one batch; returns the batch id.
async fn post_events(p: &Pipeline, schema_id: &str, target: &Target) -> String {
    let messages: Vec<Value> = events()
        .into_iter()
        .map(|entity| {
            json!({
                "header": {"schemaRef": {"id": schema_id,
                                         "contentType": "application/vnd.adobe.xed-full+json;version=1"},
                           "imsOrgId": ORG, "datasetId": target.dataset_id},
                "body": {"xdmMeta": {"schemaRef": {"id": schema_id}}, "xdmEntity": entity}
            })
        })
        .collect();
    let (status, resp, _) = p
        .post(
            &format!("/collection/batch/{}", target.inlet),
            "application/json",
            json!({ "messages": messages }).to_string(),
        )
        .await;
    assert_eq!(status, 207, "{resp}");
    let accepted = resp["responses"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["xactionId"].is_string()).count());
    assert_eq!(accepted, Some(events().len()), "{resp}");
    resp["batchId"].as_str().expect("batchId").to_string()
}

/// Waits until both datasets hold every event; on a timeout, says what their batches refused.
async fn wait_for_both(p: &Pipeline, targets: &[(&Target, &str)]) {
    let started = Instant::now();
    loop {
        let mut counts = Vec::new();
        for (t, _) in targets {
            let ds = call(
                p,
                reqwest::Method::GET,
                &format!("/datasets/{}", t.dataset_id),
                None,
            )
            .await;
            counts.push(ds["recordCount"].as_u64().unwrap_or_default());
        }
        if counts.iter().all(|c| *c == events().len() as u64) {
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let mut failed = Vec::new();
            for (_, batch) in targets {
                let listed = call(
                    p,
                    reqwest::Method::GET,
                    &format!("/batches/{batch}/failed"),
                    None,
                )
                .await;
                failed.extend(
                    listed["records"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| r["violations"].clone()),
                );
            }
            panic!("record counts {counts:?} after 60 s; failed records' violations: {failed:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

/// The rows of a dataset's data files (not its `_errors`) as JSON objects with every column
/// present (null included), keyed by `_id`, and the Arrow schema they share.
fn lake_rows(
    p: &Pipeline,
    dataset: &str,
) -> (
    arrow::datatypes::SchemaRef,
    BTreeMap<String, Map<String, Value>>,
) {
    let root = PathBuf::from(p.config.lake.root.trim_start_matches("file://"));
    let mut files = Vec::new();
    parquet_files(&root.join("datasets").join(dataset), &mut files);
    let mut schema = None;
    let mut rows = BTreeMap::new();
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
            let mut writer = WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, JsonArray>(Vec::new());
            writer.write_batches(&[&batch]).unwrap();
            writer.finish().unwrap();
            let text = writer.into_inner();
            let batch_rows: Vec<Map<String, Value>> = serde_json::from_slice(&text).unwrap();
            for row in batch_rows {
                let id = row["_id"].as_str().expect("_id").to_string();
                assert!(rows.insert(id.clone(), row).is_none(), "{id} twice");
            }
            if let Some(s) = &schema {
                assert_eq!(s, &batch.schema(), "{dataset}: files of one schema");
            }
            schema = Some(batch.schema());
        }
    }
    (schema.expect("a data file"), rows)
}

/// JSON numbers as doubles, so `2` and `2.0` compare equal.
fn numbers_by_value(v: Value) -> Value {
    match v {
        Value::Number(n) => n
            .as_f64()
            .and_then(Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_by_value).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, numbers_by_value(v)))
                .collect(),
        ),
        other => other,
    }
}

/// A cell as compared: JSON-text cells parsed, numbers inside them by value; typed cells as
/// they are.
fn comparable(cell: &Value, col: &Column) -> Value {
    match (col, cell) {
        (Column::Json, Value::String(text)) => numbers_by_value(
            serde_json::from_str(text).unwrap_or_else(|e| panic!("JSON text {text:?}: {e}")),
        ),
        (Column::Struct(fields), Value::Object(obj)) => Value::Object(
            fields
                .iter()
                .map(|(name, c)| {
                    (
                        name.clone(),
                        comparable(obj.get(name).unwrap_or(&Value::Null), c),
                    )
                })
                .collect(),
        ),
        (Column::List(item), Value::Array(items)) => {
            Value::Array(items.iter().map(|v| comparable(v, item)).collect())
        }
        _ => cell.clone(),
    }
}

#[tokio::test]
async fn json_and_avro_datasets_of_one_schema_land_the_same_rows() {
    let p = Pipeline::start().await;
    let schema = call(
        &p,
        reqwest::Method::POST,
        "/xdm/schemas",
        Some(json!({"title": "Parity events", "tenant": "acme",
                    "class": "_xdm.context.experienceevent",
                    "fieldGroups": ["environment-details", "web-details", "commerce-details"],
                    "tenantFields": tenant_fields()})),
    )
    .await;
    let schema_id = schema["id"].as_str().expect("schema id").to_string();
    let json_ds = dataset_and_stream(&p, &schema_id, "json").await;
    let avro_ds = dataset_and_stream(&p, &schema_id, "avro").await;
    let json_batch = post_events(&p, &schema_id, &json_ds).await;
    let avro_batch = post_events(&p, &schema_id, &avro_ds).await;
    wait_for_both(&p, &[(&json_ds, &json_batch), (&avro_ds, &avro_batch)]).await;

    let (json_schema, json_rows) = lake_rows(&p, &json_ds.dataset_id);
    let (avro_schema, avro_rows) = lake_rows(&p, &avro_ds.dataset_id);
    assert_eq!(json_schema, avro_schema, "the same columns");
    let ids: Vec<&String> = json_rows.keys().collect();
    assert_eq!(ids, avro_rows.keys().collect::<Vec<_>>(), "the same events");
    assert_eq!(ids.len(), events().len());

    // The columns come from the XDM schema: the lake's own layout says which hold JSON text.
    let layout = EntityLayout::from_schema(&schema["definition"]);
    let mut columns = layout.fields.clone();
    columns.push((EXTRA.to_string(), Column::Json));
    assert!(
        layout.fields.iter().any(|(n, _)| n == "_acme"),
        "tenant fields are columns: {:?}",
        layout.fields
    );
    let mut differences = Vec::new();
    for (id, json_row) in &json_rows {
        let avro_row = &avro_rows[id];
        for (name, col) in &columns {
            let (j, a) = (
                json_row.get(name).unwrap_or(&Value::Null),
                avro_row.get(name).unwrap_or(&Value::Null),
            );
            if comparable(j, col) != comparable(a, col) {
                differences.push(format!("{id} {name}:\n  json: {j}\n  avro: {a}"));
            }
        }
        assert!(
            json_row.keys().all(
                |k| columns.iter().any(|(n, _)| n == k) || METADATA.iter().any(|(m, _)| m == k)
            ),
            "every column compared: {:?}",
            json_row.keys()
        );
    }
    assert!(
        differences.is_empty(),
        "rows differ:\n{}",
        differences.join("\n")
    );
    // Not vacuous: the untyped and tenant values did land.
    let first = &avro_rows["parity-1"];
    assert!(
        first["endUserIDs"]
            .as_str()
            .is_some_and(|t| t.contains("aaid")),
        "{first:?}"
    );
    assert_eq!(first["_acme"]["loyaltyTier"], "gold");
    assert!(
        first[EXTRA]
            .as_str()
            .is_some_and(|t| t.contains("/_acme/campaignCode")),
        "{first:?}"
    );
}
