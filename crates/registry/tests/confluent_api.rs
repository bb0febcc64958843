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
    let http = common::http();
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
    let http = common::http();

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
    // Confluent clients authenticate: the encoder with HTTP Basic (any user, the admin token as
    // the password), the decoder with a bearer token.
    let encoder = AvroEncoder::new(
        SrSettings::new_builder(a.clone())
            .set_basic_authorization("stages", Some(common::ADMIN))
            .build()
            .unwrap(),
    );
    let decoder = AvroDecoder::new(
        SrSettings::new_builder(b.clone())
            .set_token_authorization(common::ADMIN)
            .build()
            .unwrap(),
    );
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

/// Every call needs a credential. An org's API key (HTTP Basic `<id>:<secret>`, as Confluent
/// clients send it) or access token may read and register ordinary subjects, but not the
/// subjects of the pipeline's own topics nor the global config: those take the admin token
/// (the stages' credential). Registrations are bounded per subject and in total.
#[tokio::test]
async fn the_registry_needs_credentials_and_keeps_the_pipelines_subjects_to_the_stages() {
    use base64::Engine as _;
    use cdp_registry::confluent::Limits;

    let broker = Broker::start();
    let topics = common::namespace();
    let limits = Limits {
        max_versions_per_subject: 2,
        max_subjects: 3,
    };
    let (base, view) = common::serve_with(&broker.kafka(), &topics, limits).await;
    // An API key of org ACME, written to the catalog as control writes it.
    let writer = cdp_control::CatalogWriter::new(&broker.kafka(), &topics, view.clone())
        .expect("catalog writer");
    let secret = "s3cr3t-of-acme";
    writer
        .put(&cdp_catalog::CatalogRecord::ApiKey(cdp_catalog::ApiKey {
            id: "k-acme".into(),
            name: "acme tooling".into(),
            org_id: "ACME@AdobeOrg".into(),
            secret_sha256: cdp_catalog::tokens::hash_secret(secret),
            generation: 1,
            created_at: 0,
            rotated_at: None,
            roles: vec![cdp_catalog::Role::Manage],
            sandboxes: vec![],
        }))
        .await
        .expect("key written");
    // A key made to send events only.
    writer
        .put(&cdp_catalog::CatalogRecord::ApiKey(cdp_catalog::ApiKey {
            id: "k-send".into(),
            name: "acme web".into(),
            org_id: "ACME@AdobeOrg".into(),
            secret_sha256: cdp_catalog::tokens::hash_secret(secret),
            generation: 1,
            created_at: 0,
            rotated_at: None,
            roles: vec![cdp_catalog::Role::Send],
            sandboxes: vec![],
        }))
        .await
        .expect("key written");
    cdp_test_support::eventually(
        std::time::Duration::from_secs(10),
        "the registry to see the keys",
        async || {
            let c = view.read();
            c.api_keys.contains_key("k-acme") && c.api_keys.contains_key("k-send")
        },
    )
    .await;
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let (token, _) = cdp_catalog::tokens::Tokens::new(common::TOKEN_SECRET)
        .issue(
            &view.read().api_keys["k-acme"],
            1,
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        )
        .expect("token");
    let bearer = format!("Bearer {token}");
    let acme = basic("k-acme", secret);
    let plain = reqwest::Client::new();
    let call =
        |method: reqwest::Method, path: String, auth: Option<String>, body: Option<Value>| {
            let mut r = plain
                .request(method, format!("{base}{path}"))
                .header("content-type", "application/vnd.schemaregistry.v1+json");
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            if let Some(b) = body {
                r = r.body(b.to_string());
            }
            async move {
                let resp = r.send().await.unwrap();
                let status = resp.status();
                let www = resp.headers().get("www-authenticate").is_some();
                (
                    status,
                    www,
                    resp.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        };
    let schema = |field: &str| json!({"schema": format!(r#"{{"type":"record","name":"R","fields":[{{"name":"{field}","type":"string","default":""}}]}}"#)});
    let register = |subject: &str, field: &str, auth: &str| {
        call(
            reqwest::Method::POST,
            format!("/subjects/{subject}/versions"),
            Some(auth.to_string()),
            Some(schema(field)),
        )
    };

    // No credential, or a wrong one: 401, in Confluent's error shape.
    for auth in [
        None,
        Some("Bearer nope".to_string()),
        Some(basic("k-acme", "wrong")),
        Some("Digest x".into()),
    ] {
        let (s, www, b) = call(reqwest::Method::GET, "/subjects".into(), auth.clone(), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{auth:?}: {b}");
        assert_eq!(b["error_code"], 40101, "{b}");
        assert!(www, "WWW-Authenticate on 401");
        let (s, _, _) = call(
            reqwest::Method::POST,
            "/subjects/tool-value/versions".into(),
            auth,
            Some(schema("a")),
        )
        .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }

    // A key without the roles: 403 for reading and for writing.
    let sender = basic("k-send", secret);
    let (s, _, b) = call(
        reqwest::Method::GET,
        "/subjects".into(),
        Some(sender.clone()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(b["error_code"], 40301, "{b}");
    assert!(b["message"].as_str().unwrap().contains("'read'"), "{b}");
    let (s, _, b) = register("tool-value", "a", &sender).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");

    // The org's key (Basic) and token (Bearer) read and write ordinary subjects.
    let (s, _, b) = register("tool-value", "a", &acme).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _, b) = call(
        reqwest::Method::GET,
        "/subjects".into(),
        Some(bearer.clone()),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b, json!(["tool-value"]));
    let (s, _, b) = call(
        reqwest::Method::PUT,
        "/config/tool-value".into(),
        Some(bearer.clone()),
        Some(json!({"compatibility": "NONE"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // …but not the pipeline's own subjects, nor the global config.
    let own = format!("{}-value", topics.segment_membership());
    for auth in [acme.clone(), bearer.clone()] {
        let (s, _, b) = register(&own, "a", &auth).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert_eq!(b["error_code"], 40301);
        assert!(
            b["message"].as_str().unwrap().contains("only the stages"),
            "{b}"
        );
        let (s, _, _) = call(
            reqwest::Method::PUT,
            "/config".into(),
            Some(auth),
            Some(json!({"compatibility": "NONE"})),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (s, _, b) = register(&own, "a", &format!("Bearer {}", common::ADMIN)).await;
    assert_eq!(
        s,
        StatusCode::OK,
        "the admin token (the stages' credential) may: {b}"
    );

    // Bounded: two versions per subject, three subjects in all (two are used).
    let (s, _, b) = register("tool-value", "b", &acme).await;
    assert_eq!(s, StatusCode::OK, "the second version: {b}");
    let (s, _, b) = register("tool-value", "c", &acme).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error_code"], 42210);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("the most a subject may have"),
        "{b}"
    );
    // A schema already registered is still answered with its id.
    let (s, _, _) = register("tool-value", "b", &acme).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, b) = register("third-value", "a", &acme).await;
    assert_eq!(s, StatusCode::OK, "the third subject: {b}");
    let (s, _, b) = register("fourth-value", "a", &acme).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("registry_max_subjects"),
        "{b}"
    );
}
