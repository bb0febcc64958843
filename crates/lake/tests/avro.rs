//! Avro values on events.valid (Confluent wire format) are decoded against the project's own
//! schema registry and land in Parquet like JSON ones.

mod common;

use std::time::Duration;

use apache_avro::types::Value as Avro;
use cdp_control::CatalogWriter;
use cdp_lake::LakeApi;
use cdp_registry::confluent::{Limits, RegistryAuth};
use cdp_registry::{confluent_router, xdm_router, RegistryState};
use common::*;
use schema_registry_converter::async_impl::avro::AvroEncoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

const AVRO_SCHEMA: &str = r#"{"type": "record", "name": "WebEvent", "fields": [
  {"name": "_id", "type": "string"},
  {"name": "timestamp", "type": "string"},
  {"name": "web", "type": ["null", {"type": "record", "name": "Web", "fields": [
    {"name": "webPageDetails", "type": ["null", {"type": "record", "name": "Page", "fields": [
      {"name": "name", "type": ["null", "string"]}]}]}]}]}
]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_values_are_decoded_through_the_registry() {
    let env = Env::start().await;
    let writer = CatalogWriter::new(&env.kafka, &env.topics, env.catalog.clone()).expect("writer");
    // The registry takes calls with credentials only: the lake reads with the stages' one.
    const ADMIN: &str = "lake-test-admin";
    let authenticator = cdp_catalog::principal::Authenticator::new(
        ADMIN.into(),
        env.catalog.clone(),
        cdp_catalog::tokens::Tokens::new("lake-test-token-secret"),
    );
    let auth = RegistryAuth::new(authenticator.clone(), &env.topics.namespace);
    let state = RegistryState::start(&env.kafka, &env.topics, env.catalog.clone(), writer)
        .await
        .expect("registry");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        axum::serve(
            listener,
            confluent_router(&state, auth, Limits::default())
                .merge(xdm_router(state, authenticator)),
        )
        .await
    });

    let encoder = AvroEncoder::new(
        SrSettings::new_builder(url.clone())
            .set_token_authorization(ADMIN)
            .build()
            .expect("registry client"),
    );
    let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(
        env.topics.events_valid(),
        false,
        SuppliedSchema::new(
            Some("WebEvent".into()),
            SchemaType::Avro,
            AVRO_SCHEMA.into(),
        ),
    );
    for i in 0..3 {
        let page = Avro::Record(vec![(
            "name".into(),
            Avro::Union(1, Box::new(Avro::String(format!("page {i}")))),
        )]);
        let web = Avro::Record(vec![(
            "webPageDetails".into(),
            Avro::Union(1, Box::new(page)),
        )]);
        let bytes = encoder
            .encode(
                vec![
                    ("_id", Avro::String(format!("a{i}"))),
                    ("timestamp", Avro::String("2026-01-01T00:00:00Z".into())),
                    ("web", Avro::Union(1, Box::new(web))),
                ],
                strategy.clone(),
            )
            .await
            .expect("encode");
        env.produce_valid_value("a1", i, "avro", &bytes).await;
    }

    let root = temp_root("avro");
    let mut settings = settings(&root);
    settings.registry_url = url;
    settings.registry_token = Some(ADMIN.into());
    let lake = env.run_lake(settings.clone());
    let api = LakeApi::start(&env.kafka, &env.topics, &settings, env.catalog.clone())
        .await
        .expect("api");
    let batches = api.batches.clone();
    eventually(Duration::from_secs(30), "batch a1", async || {
        batches.batch("a1")
    })
    .await;
    lake.stop().await;
    let b = api.batches.batch("a1").expect("batch");
    assert_eq!((b.records, b.failed), (3, 0), "{b:?}");
    let mut rows = rows_in(&parquet_files(
        &root.join(format!("datasets/{DATASET}/date=2026-01-01")),
    ));
    rows.sort_by_key(|r| r["_id"].as_str().unwrap_or_default().to_string());
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["web"]["webPageDetails"]["name"], "page 1");
    let _ = std::fs::remove_dir_all(&root);
}
