//! The Confluent-compatible subset against a real broker, including two instances agreeing on
//! ids and a schema_registry_converter round trip.

mod common;

use apache_avro::types::Value as Avro;
use cdp_test_support::Broker;
use reqwest::StatusCode;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};
use serde_json::{json, Value};

const V1: &str = r#"{"type":"record","name":"Membership","namespace":"cdp","fields":[{"name":"profile","type":"string"}]}"#;
const V2_DEFAULT: &str = r#"{"type":"record","name":"Membership","namespace":"cdp","fields":[{"name":"profile","type":"string"},{"name":"status","type":"string","default":"realized"}]}"#;
const V2_NO_DEFAULT: &str = r#"{"type":"record","name":"Membership","namespace":"cdp","fields":[{"name":"profile","type":"string"},{"name":"segment","type":"string"}]}"#;

async fn post(http: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let r = http
        .post(url)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn subjects_versions_config_and_compatibility() {
    let broker = Broker::start();
    let base = common::serve(&broker.kafka(), &common::namespace()).await;
    let http = reqwest::Client::new();
    let subject = "cdp.segment.membership-value";

    let (s, b) = post(
        &http,
        format!("{base}/subjects/{subject}/versions"),
        json!({ "schema": V1 }),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id1 = b["id"].as_u64().unwrap();
    // Same schema again (other key order) → same id, no new version.
    let reordered = r#"{"namespace":"cdp","name":"Membership","type":"record","fields":[{"type":"string","name":"profile"}]}"#;
    let (_, b) = post(
        &http,
        format!("{base}/subjects/{subject}/versions"),
        json!({ "schema": reordered, "schemaType": "AVRO" }),
    )
    .await;
    assert_eq!(b["id"].as_u64(), Some(id1));

    // BACKWARD (default): a new field needs a default.
    let (s, b) = post(
        &http,
        format!("{base}/compatibility/subjects/{subject}/versions/latest"),
        json!({ "schema": V2_NO_DEFAULT }),
    )
    .await;
    assert_eq!(
        (s, b["is_compatible"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (_, b) = post(
        &http,
        format!("{base}/compatibility/subjects/{subject}/versions/1"),
        json!({ "schema": V2_DEFAULT }),
    )
    .await;
    assert_eq!(b["is_compatible"], json!(true));
    let (s, b) = post(
        &http,
        format!("{base}/subjects/{subject}/versions"),
        json!({ "schema": V2_NO_DEFAULT }),
    )
    .await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::CONFLICT, json!(409))
    );
    let (s, b) = post(
        &http,
        format!("{base}/subjects/{subject}/versions"),
        json!({ "schema": V2_DEFAULT }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let id2 = b["id"].as_u64().unwrap();
    assert_ne!(id1, id2);

    let versions: Value = http
        .get(format!("{base}/subjects/{subject}/versions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(versions, json!([1, 2]));
    let latest: Value = http
        .get(format!("{base}/subjects/{subject}/versions/latest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (latest["version"].clone(), latest["id"].as_u64()),
        (json!(2), Some(id2))
    );
    assert_eq!(latest["subject"], subject);
    let by_id: Value = http
        .get(format!("{base}/schemas/ids/{id1}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(by_id["schema"], V1);
    let subjects: Value = http
        .get(format!("{base}/subjects"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(subjects, json!([subject]));

    // Lookup.
    let (s, b) = post(
        &http,
        format!("{base}/subjects/{subject}"),
        json!({ "schema": V1 }),
    )
    .await;
    assert_eq!(
        (s, b["version"].clone(), b["id"].as_u64()),
        (StatusCode::OK, json!(1), Some(id1))
    );
    let (s, b) = post(
        &http,
        format!("{base}/subjects/{subject}"),
        json!({ "schema": V2_NO_DEFAULT }),
    )
    .await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::NOT_FOUND, json!(40403))
    );

    // Errors.
    let r = http
        .get(format!("{base}/subjects/nope/versions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], 40401);
    let r: Value = http
        .get(format!("{base}/subjects/{subject}/versions/9"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error_code"], 40402);
    let r: Value = http
        .get(format!("{base}/schemas/ids/999"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error_code"], 40403);
    let (s, b) = post(
        &http,
        format!("{base}/subjects/{subject}/versions"),
        json!({ "schema": "{\"type\":\"recrd\"}" }),
    )
    .await;
    assert_eq!(
        (s, b["error_code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!(42201))
    );

    // Config: global default, subject override; FORWARD accepts a new field without default,
    // NONE accepts anything.
    let g: Value = http
        .get(format!("{base}/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["compatibilityLevel"], "BACKWARD");
    let r = http
        .put(format!("{base}/config/{subject}"))
        .json(&json!({ "compatibility": "FORWARD" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c: Value = http
        .get(format!("{base}/config/{subject}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["compatibilityLevel"], "FORWARD");
    let (_, b) = post(
        &http,
        format!("{base}/compatibility/subjects/{subject}/versions/latest"),
        json!({ "schema": V2_NO_DEFAULT }),
    )
    .await;
    // The old schema reads new data: the new field is ignored, the missing one has a default.
    assert_eq!(b["is_compatible"], json!(true), "{b}");
    let r = http
        .put(format!("{base}/config"))
        .json(&json!({ "compatibility": "NONE" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .put(format!("{base}/config/{subject}"))
        .json(&json!({ "compatibility": "FULL" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, b) = post(
        &http,
        format!("{base}/compatibility/subjects/{subject}/versions/latest"),
        json!({ "schema": V2_NO_DEFAULT }),
    )
    .await;
    assert_eq!(b["is_compatible"], json!(false));
    let r = http
        .put(format!("{base}/config/other-value"))
        .json(&json!({ "compatibility": "SIDEWAYS" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["error_code"], 42203);
    let (s, _) = post(
        &http,
        format!("{base}/subjects/other-value/versions"),
        json!({ "schema": V2_NO_DEFAULT }),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn two_instances_agree_and_the_converter_round_trips() {
    let broker = Broker::start();
    let topics = common::namespace();
    let a = common::serve(&broker.kafka(), &topics).await;
    let b = common::serve(&broker.kafka(), &topics).await;
    let http = reqwest::Client::new();

    // Registrations through both instances, interleaved.
    let (_, r1) = post(
        &http,
        format!("{a}/subjects/t1-value/versions"),
        json!({ "schema": V1 }),
    )
    .await;
    let (_, r2) = post(
        &http,
        format!("{b}/subjects/t2-value/versions"),
        json!({ "schema": V2_NO_DEFAULT }),
    )
    .await;
    let (_, r3) = post(
        &http,
        format!("{b}/subjects/t3-value/versions"),
        json!({ "schema": V1 }),
    )
    .await;
    assert_eq!(
        r1["id"], r3["id"],
        "identical schemas share an id across subjects and instances"
    );
    assert_ne!(r1["id"], r2["id"]);
    for base in [&a, &b] {
        let got: Value = http
            .get(format!("{base}/subjects/t2-value/versions/1"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(got["id"], r2["id"]);
    }

    // The converter registers the schema through instance a and decodes through instance b.
    let encoder = AvroEncoder::new(SrSettings::new(a.clone()));
    let decoder = AvroDecoder::new(SrSettings::new(b.clone()));
    let supplied = SuppliedSchema::new(
        Some("cdp.Membership".into()),
        SchemaType::Avro,
        V2_DEFAULT.to_string(),
    );
    let value = vec![
        ("profile", Avro::String("ecid:123".into())),
        ("status", Avro::String("exited".into())),
    ];
    let bytes = encoder
        .encode(
            value.clone(),
            SubjectNameStrategy::TopicNameStrategyWithSchema(
                "cdp.segment.membership".into(),
                false,
                supplied,
            ),
        )
        .await
        .expect("encodes with auto-registration");
    assert_eq!(bytes[0], 0, "Confluent magic byte");
    let wire_id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    for base in [&a, &b] {
        let r = http
            .get(format!("{base}/schemas/ids/{wire_id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "id {wire_id} at {base} (a = {a}): {}",
            r.text().await.unwrap()
        );
    }
    let decoded = decoder.decode(Some(&bytes)).await.expect("decodes");
    let expected = Avro::Record(value.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
    assert_eq!(decoded.value, expected);
    let versions: Value = http
        .get(format!(
            "{b}/subjects/cdp.segment.membership-value/versions"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(versions, json!([1]));
}
