//! Exactly once from raw offsets to both outputs, with the validate stage as real `cdp validate`
//! processes: one is killed with SIGKILL mid-stream and restarted; or a second instance joins
//! the group mid-stream (partitions move while batches are in flight). Afterwards every raw
//! event is on exactly one output topic, exactly once.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use cdp_contract::envelope::Source;
use cdp_contract::RawHeaders;
use cdp_control::{CatalogView, CatalogWriter};
use cdp_test_support::{eventually_every, unique_name, Broker, ChildGuard, XdmFixture};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

const EVENTS: usize = 6000;

/// Starts `cdp validate` on the test's own topics and group; its log (validate at info) goes
/// to the returned file. The guard kills it if the test fails before it does.
fn validate_process(
    broker: &Broker,
    topics: &cdp_contract::Topics,
    instance: &str,
) -> (ChildGuard, PathBuf) {
    let log =
        std::env::temp_dir().join(format!("cdp-validate-{}-{instance}.log", topics.namespace));
    let file = std::fs::File::create(&log).expect("log file");
    let child = ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_cdp"))
            .arg("validate")
            .env("CDP_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap())
            .env("CDP_TOPICS__NAMESPACE", &topics.namespace)
            .env("CDP_VALIDATE__GROUP_ID", group(topics))
            .env("CDP_VALIDATE__INSTANCE_ID", instance)
            .env("CDP_VALIDATE__MAX_BATCH", "25")
            // One transaction per batch, so a kill lands mid-stream with many transactions behind it.
            .env("CDP_VALIDATE__MAX_TRANSACTION_RECORDS", "25")
            // Two instances run at once: each takes a free port for its health endpoints.
            .env("CDP_HEALTH__LISTEN", "127.0.0.1:0")
            .env("CDP_VALIDATE__PARTITIONS", "3")
            .env("CDP_EDGE__RAW_PARTITIONS", "3")
            .env("RUST_LOG", "warn,cdp_validate=info,cdp_stage=info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file),
        "cdp validate",
    );
    (child, log)
}

/// The validate group of the test's pipeline: on a shared broker another pipeline's
/// instances must not join it.
fn group(topics: &cdp_contract::Topics) -> String {
    format!("{}-validate", topics.namespace)
}

fn output_offsets(broker: &Broker, topic: &str) -> i64 {
    let consumer: BaseConsumer = broker.kafka().admin("wm").create().expect("client");
    (0..3)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map(|(_, high)| high)
                .unwrap_or(0)
        })
        .sum()
}

/// A broker with the catalog (schema, dataset, stream) and EVENTS raw events as the edge writes
/// them; every third one lacks its timestamp. The first thousand are there at once, the rest
/// arrive at about 400 a second (the returned task), so the stream is still going when
/// a test kills an instance or adds one (a group join takes seconds on tansu): the stage alone
/// would finish the lot in a second or two.
async fn seeded_broker() -> (Broker, cdp_contract::Topics, tokio::task::JoinHandle<()>) {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let kafka = broker.kafka();
    let topics = cdp_contract::Topics::new(unique_name("crash"));
    broker.create_pipeline_topics(&topics, 3).await;

    // The catalog: a schema, a dataset and a stream.
    let view = CatalogView::start(&kafka, &topics).expect("view");
    let writer = CatalogWriter::new(&kafka, &topics, view.clone()).expect("writer");
    XdmFixture::new(
        "https://ns.adobe.com/acme/schemas/crash",
        "ds-crash",
        "acme",
        json!({"type": "object", "required": ["_id", "timestamp"],
            "properties": {"_id": {"type": "string"}, "timestamp": {"type": "string"}}}),
    )
    .with_stream("s-crash")
    .write(&writer)
    .await;

    // Raw events as the edge writes them; every third one lacks its timestamp.
    let producer: FutureProducer = kafka.producer("raw", 30_000).create().expect("producer");
    let topic = topics.ingest_raw();
    let send = move |i: usize| {
        // An identity, so the profile intake inside validate makes an item of each valid one.
        let identity = json!({"ECID": [{"id": format!("{i:038}"), "primary": true}]});
        let value = if i % 3 == 2 {
            json!({"_id": format!("e{i}"), "identityMap": identity})
        } else {
            json!({"_id": format!("e{i}"), "timestamp": "2026-11-26T10:00:00Z", "identityMap": identity})
        }
        .to_string();
        let headers = RawHeaders {
            stream_id: "s-crash".into(),
            org_id: "acme".into(),
            sandbox: "prod".into(),
            batch_id: "b".into(),
            xaction_id: format!("b:{i}"),
            // The events' own time (2026-11-26T10:00:00Z): validate quarantines events dated
            // more than a day after the edge took them.
            received_ms: 1_795_687_200_000,
            content_type: "application/json".into(),
            source: Source::Stream,
        };
        let producer = producer.clone();
        let topic = topic.clone();
        async move {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(&format!("_id:e{i}"))
                        .payload(&value)
                        .headers(headers.to_kafka()),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
        }
    };
    const AT_ONCE: usize = 1000;
    for r in futures::future::join_all((0..AT_ONCE).map(&send)).await {
        r.expect("raw event written");
    }
    let rest = tokio::spawn(async move {
        for chunk in (AT_ONCE..EVENTS).collect::<Vec<_>>().chunks(100) {
            for r in futures::future::join_all(chunk.iter().map(|i| send(*i))).await {
                r.expect("raw event written");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    (broker, topics, rest)
}

// tansu shows aborted records to read_committed readers (crates/test-support/tests/
// broker_transactions.rs), so the batch in flight at the kill stays visible: this test passes
// only because the restarted instance's recovery finds those outputs and skips their raw events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_stream_neither_loses_nor_duplicates() {
    let (broker, topics, rest) = seeded_broker().await;

    // First run: killed as soon as it has committed some output.
    let (mut first, _) = validate_process(&broker, &topics, "crash-test");
    wait_for_valid_outputs(&broker, &topics, 100).await;
    let killed = first.kill();
    assert_eq!(
        killed.signal(),
        Some(9),
        "the first instance was running until SIGKILL ({killed})"
    );
    let at_kill = output_offsets(&broker, &topics.events_valid());
    assert!(
        at_kill < (EVENTS as i64) * 2 / 3,
        "killed too late to be mid-stream ({at_kill} outputs)"
    );

    // Second run finishes the job; its guard stops it.
    let (_second, _) = validate_process(&broker, &topics, "crash-test");
    rest.await.expect("raw events written");
    assert_exactly_once(&broker, &topics).await;
}

/// Waits until events.valid holds `n` records (committed or not: high watermarks). Polls every
/// 20 ms: the crash test's kill has to land in the middle of the stream.
async fn wait_for_valid_outputs(broker: &Broker, topics: &cdp_contract::Topics, n: i64) {
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(20),
        &format!("validate to write {n} valid outputs (events.valid high watermarks)"),
        async || {
            let outputs = output_offsets(broker, &topics.events_valid());
            if outputs >= n {
                Ok(())
            } else {
                Err(outputs)
            }
        },
    )
    .await;
}

/// Reads both outputs until the counts are reached (and a little longer) and checks that every
/// raw event has exactly one output, and every valid one exactly one profile intake item.
async fn assert_exactly_once(broker: &Broker, topics: &cdp_contract::Topics) {
    let valid = broker
        .read_committed_settle(
            &topics.events_valid(),
            EVENTS * 2 / 3,
            Duration::from_secs(120),
            Duration::from_secs(3),
        )
        .await;
    let errors = broker
        .read_committed_settle(
            &topics.events_error(),
            EVENTS / 3,
            Duration::from_secs(60),
            Duration::from_secs(1),
        )
        .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in valid.iter().chain(&errors) {
        *seen
            .entry(r.header("cdp-xaction-id").expect("xaction").to_string())
            .or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(duplicated.is_empty(), "duplicates: {duplicated:?}");
    assert_eq!(valid.len(), EVENTS * 2 / 3, "valid output");
    assert_eq!(errors.len(), EVENTS / 3, "error output");
    assert_eq!(seen.len(), EVENTS, "every raw event on exactly one output");

    // The profile intake writes in validate's transactions: one item per valid event, to the
    // identity owner (profile.sequence) or, on the identity fast path, straight to its profile
    // (profile.resolved). Each identity here is sent once, so the owner's topic holds most; a
    // batch retried after an abort goes straight (the intake remembers the aborted attempt's
    // identities). Both are read.
    let mut items = broker
        .read_committed_settle(
            &topics.profile_sequence(),
            EVENTS * 2 / 3,
            Duration::from_secs(15),
            Duration::from_secs(1),
        )
        .await;
    let owner_items = items.len();
    items.extend(
        broker
            .read_committed_settle(
                &topics.profile_resolved(),
                (EVENTS * 2 / 3).saturating_sub(owner_items),
                Duration::from_secs(60),
                Duration::from_secs(1),
            )
            .await,
    );
    let mut item_ids: HashMap<String, usize> = HashMap::new();
    for r in &items {
        let record = r.json();
        let item = record.get("direct").map_or(&record, |d| &d["item"]);
        let id = item["itemId"].as_str().expect("an item").to_string();
        *item_ids.entry(id).or_default() += 1;
    }
    let duplicated: Vec<_> = item_ids.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(duplicated.is_empty(), "duplicated items: {duplicated:?}");
    let valid_ids: std::collections::HashSet<String> = valid
        .iter()
        .map(|r| r.json()["_id"].as_str().expect("an _id").to_string())
        .collect();
    let item_set: std::collections::HashSet<String> = item_ids.into_keys().collect();
    assert_eq!(
        item_set, valid_ids,
        "an item for every valid event, and only for those"
    );
}

// Partitions move to the new instance while the first has batches of them in flight; tansu
// does not fence the old owner's offset commits (Kafka does, KIP-447), so the stage leaves
// revoked partitions' events to their new owner and recovery catches what was committed late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_joining_mid_stream_neither_loses_nor_duplicates() {
    let (broker, topics, rest) = seeded_broker().await;
    let (_first, _) = validate_process(&broker, &topics, "scale-a");
    wait_for_valid_outputs(&broker, &topics, 100).await;
    let (_second, second_log) = validate_process(&broker, &topics, "scale-b");
    rest.await.expect("raw events written");
    assert_exactly_once(&broker, &topics).await;
    let log = std::fs::read_to_string(&second_log).unwrap_or_default();
    assert!(
        log.contains("recovery: read the outputs"),
        "the second instance was given partitions and checked them: {log}"
    );
}
