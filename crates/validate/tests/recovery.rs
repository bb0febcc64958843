//! The recovery path, made deterministic: a "crashed" instance left an open transaction whose
//! outputs tansu shows to read_committed readers (raw offsets 0..10, offsets never committed),
//! written as the stage writes them: with their raw position and group headers and the raw
//! partition's checkpoint. The restarted stage must write only the outputs of raw offsets
//! 10..30, each once.

use std::collections::HashMap;
use std::time::Duration;

use cdp_contract::admin::{ensure_topics, TopicSpec};
use cdp_contract::envelope::{Source, RAW_POSITION, VALIDATE_GROUP};
use cdp_contract::{RawHeaders, Topics};
use cdp_control::model::{CatalogRecord, PayloadType, Stream};
use cdp_control::{CatalogView, CatalogWriter, Dataset, ValueFormat, XdmSchema};
use cdp_test_support::Broker;
use cdp_validate::ValidateSettings;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use serde_json::json;

const EVENTS: i64 = 30;
const ZOMBIE_OUTPUTS: i64 = 10;

fn catalog() -> Vec<CatalogRecord> {
    let schema_id = "https://ns.adobe.com/acme/schemas/recovery";
    vec![
        CatalogRecord::Schema(XdmSchema {
            org_id: None,
            id: schema_id.into(),
            version: 1,
            title: "recovery".into(),
            tenant: "acme".into(),
            class: "_xdm.context.experienceevent".into(),
            field_groups: vec![],
            profile_enabled: false,
            definition: json!({"type": "object", "required": ["_id"]}),
            created_at: 0,
        }),
        CatalogRecord::Dataset(Dataset {
            id: "ds".into(),
            name: "ds".into(),
            org_id: "acme".into(),
            schema_id: schema_id.into(),
            schema_version: 1,
            profile_enabled: false,
            profile_event_ttl_days: None,
            format: ValueFormat::Json,
            created_at: 0,
        }),
        CatalogRecord::Stream(Stream {
            id: "s".into(),
            name: "s".into(),
            description: None,
            org_id: "acme".into(),
            sandbox: "prod".into(),
            payload_type: PayloadType::Json,
            authentication_required: false,
            rate_limit: None,
            dataset_id: Some("ds".into()),
            schema_ref: None,
            allowed_origins: Vec::new(),
            created_at: 0,
        }),
    ]
}

fn raw_headers(i: i64) -> OwnedHeaders {
    RawHeaders {
        stream_id: "s".into(),
        org_id: "acme".into(),
        sandbox: "prod".into(),
        batch_id: "b".into(),
        xaction_id: format!("b:{i}"),
        received_ms: 1,
        content_type: "application/json".into(),
        source: Source::Stream,
    }
    .to_kafka()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_left_by_a_crashed_transaction_are_not_written_again() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let kafka = broker.kafka();
    let topics = Topics::new(cdp_test_support::unique_name("recovery"));
    let spec = |name: String, compacted| TopicSpec {
        name,
        partitions: 1,
        compacted,
    };
    ensure_topics(
        &kafka,
        &[
            spec(topics.catalog(), true),
            spec(topics.ingest_raw(), false),
            spec(topics.events_valid(), false),
            spec(topics.events_error(), false),
            spec(topics.validate_checkpoints(), true),
        ],
    )
    .await
    .expect("topics");
    let view = CatalogView::start(&kafka, &topics).expect("view");
    let writer = CatalogWriter::new(&kafka, &topics, view.clone()).expect("writer");
    for r in &catalog() {
        writer.put(r).await.expect("catalog record");
    }
    for i in 0..EVENTS {
        let value = json!({"_id": format!("e{i}")}).to_string();
        let producer: ThreadedProducer<DefaultProducerContext> =
            kafka.producer("raw", 10_000).create().expect("producer");
        producer
            .send(
                BaseRecord::to(&topics.ingest_raw())
                    .key("k")
                    .payload(&value)
                    .headers(raw_headers(i)),
            )
            .map_err(|(e, _)| e)
            .expect("raw event");
        producer.flush(Duration::from_secs(10)).expect("flush");
    }

    // The crashed instance: same transactional id as the stage below, outputs for raw offsets
    // 0..10 written, never committed.
    let zombie: ThreadedProducer<DefaultProducerContext> = kafka
        .transactional_producer("zombie", &format!("{}-validate-r", topics.namespace))
        .create()
        .expect("zombie");
    zombie
        .init_transactions(Duration::from_secs(20))
        .expect("init");
    zombie.begin_transaction().expect("begin");
    let group = format!("{}-validate", topics.namespace);
    zombie
        .send(
            BaseRecord::to(&topics.validate_checkpoints())
                .partition(0)
                .key(&group)
                .payload(&format!(r#"{{"{}":{{"0":0}}}}"#, topics.events_valid())),
        )
        .map_err(|(e, _)| e)
        .expect("zombie checkpoint");
    for i in 0..ZOMBIE_OUTPUTS {
        let position = format!("0:{i}");
        let value = json!({"_id": format!("e{i}")}).to_string();
        zombie
            .send(
                BaseRecord::to(&topics.events_valid())
                    .key("k")
                    .payload(&value)
                    .headers(
                        raw_headers(i)
                            .insert(Header {
                                key: RAW_POSITION,
                                value: Some(position.as_str()),
                            })
                            .insert(Header {
                                key: VALIDATE_GROUP,
                                value: Some(group.as_str()),
                            }),
                    ),
            )
            .map_err(|(e, _)| e)
            .expect("zombie output");
    }
    zombie.flush(Duration::from_secs(10)).expect("flush");
    std::mem::forget(zombie); // dies without ending its transaction

    let settings = ValidateSettings {
        group_id: group.clone(),
        instance_id: Some("r".into()),
        max_batch: 7,
        ..ValidateSettings::default()
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stage = {
        let (kafka, topics, view) = (kafka.clone(), topics.clone(), view.clone());
        tokio::spawn(async move {
            let identity = cdp_contract::IdentitySettings::default().namespaces;
            cdp_validate::stage::run(&kafka, &topics, &settings, &identity, view, None, stopped)
                .await
        })
    };
    let valid = broker
        .read_committed_settle(
            &topics.events_valid(),
            EVENTS as usize,
            Duration::from_secs(60),
            Duration::from_secs(3),
        )
        .await;
    stop.send(true).expect("stop");
    stage.await.expect("join").expect("stage ran");

    let mut per_position: HashMap<String, usize> = HashMap::new();
    for r in &valid {
        *per_position
            .entry(r.header(RAW_POSITION).expect("raw position").to_string())
            .or_default() += 1;
    }
    for i in 0..EVENTS {
        assert_eq!(
            per_position.get(&format!("0:{i}")),
            Some(&1),
            "raw offset {i}: {per_position:?}"
        );
    }
    assert_eq!(valid.len(), EVENTS as usize);
}
