//! `cdp-bench validate`: in one run, on the same events and partitions, (a) a plain rdkafka
//! consume → produce copy loop, at least once, no validation — the broker's ceiling for a stage
//! on this machine — and (b) the validate stage, exactly once, with one instance and with two;
//! then the end-to-end latency of both at an offered load (10 k events/s by default).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cdp_catalog::CatalogView;
use cdp_contract::admin::{ensure_topics, TopicSpec};
use cdp_contract::envelope::Source;
use cdp_contract::{KafkaSettings, RawHeaders, Topics};
use cdp_validate::ValidateSettings;
use cdp_xdm::SchemaValidators;
use clap::Args;
use futures::StreamExt;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{copy_loop, latency};
use crate::load_config;

#[derive(Args, Debug, Clone)]
pub struct ValidateBenchArgs {
    /// Raw events per run.
    #[arg(long, default_value_t = 60_000)]
    events: usize,
    /// Share of events that violate the schema, in percent.
    #[arg(long, default_value_t = 10)]
    invalid_percent: usize,
    /// Partitions of the raw topic (the most instances that can share the work).
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// Most raw events per batch (validate.max_batch).
    #[arg(long, default_value_t = ValidateSettings::default().max_batch)]
    max_batch: usize,
    /// How long a transaction stays open under load (validate.commit_interval_ms).
    #[arg(long, default_value_t = ValidateSettings::default().commit_interval_ms)]
    commit_interval_ms: u64,
    /// Offered load of the latency runs, events per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Length of each latency run; 0 skips them.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
}

fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["_id", "timestamp"],
        "properties": {
            "_id": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "eventType": {"type": "string"},
            "identityMap": {"type": "object", "additionalProperties": {"type": "array", "items": {
                "type": "object", "properties": {"id": {"type": "string"}, "primary": {"type": "boolean"}}}}},
            "web": {"type": "object", "properties": {"webPageDetails": {"type": "object", "properties": {
                "name": {"type": "string"}, "URL": {"type": "string"}, "isHomePage": {"type": "boolean"}}}}},
            "commerce": {"type": "object", "properties": {"productViews": {"type": "object", "properties": {"value": {"type": "number"}}}}},
            "productListItems": {"type": "array", "items": {"type": "object", "properties": {
                "SKU": {"type": "string"}, "name": {"type": "string"}, "quantity": {"type": "integer"}, "priceTotal": {"type": "number"}}}},
            "environment": {"type": "object", "properties": {"browserDetails": {"type": "object", "properties": {
                "userAgent": {"type": "string"}, "acceptLanguage": {"type": "string"}}}}}
        }
    })
}

fn event(i: usize, invalid: bool) -> Value {
    json!({
        "_id": format!("evt-{i}"),
        "timestamp": if invalid { json!(12345) } else { json!("2026-11-26T12:00:00Z") },
        "eventType": "web.webpagedetails.pageViews",
        "identityMap": {"ECID": [{"id": format!("ecid-{}", i % 5000), "primary": true}]},
        "web": {"webPageDetails": {"name": "home", "URL": "https://example.com/", "isHomePage": true}},
        "commerce": {"productViews": {"value": 1}},
        "productListItems": [{"SKU": "CC", "name": "Fernie Snow", "quantity": 30, "priceTotal": 7.8}],
        "environment": {"browserDetails": {
            "userAgent": "Mozilla/5.0 (Windows NT 5.1) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/29.0.1547.57 Safari/537.36 OPR/16.0.1196.62",
            "acceptLanguage": "en-US"}}
    })
}

/// A fresh namespace with the bench catalog and the raw / valid / error topics.
async fn setup(kafka: &KafkaSettings, partitions: i32) -> anyhow::Result<(Topics, CatalogView)> {
    let topics = Topics::new(format!(
        "bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let mut specs = vec![TopicSpec {
        name: topics.catalog(),
        partitions: 1,
        compacted: true,
    }];
    for name in [
        topics.ingest_raw(),
        topics.events_valid(),
        topics.events_error(),
        copy_topic(&topics),
    ] {
        specs.push(TopicSpec {
            name,
            partitions,
            compacted: false,
        });
    }
    ensure_topics(kafka, &specs).await?;
    let view = CatalogView::start(kafka, &topics)?;
    view.caught_up(Duration::from_secs(30)).await?;
    super::seed_catalog(kafka, &topics, &view, schema()).await?;
    Ok((topics, view))
}

/// Where the copy loop writes.
fn copy_topic(topics: &Topics) -> String {
    format!("{}.bench.copy", topics.namespace)
}

fn raw_headers(i: usize) -> RawHeaders {
    RawHeaders {
        stream_id: "bench".into(),
        org_id: super::ORG.into(),
        sandbox: "prod".into(),
        batch_id: "bench".into(),
        xaction_id: format!("bench:{i}"),
        // When the edge took it: validate quarantines events dated too far after it.
        received_ms: cdp_contract::clock::now_ms(),
        content_type: "application/json".into(),
        source: Source::Stream,
    }
}

pub async fn run(config: Option<PathBuf>, args: ValidateBenchArgs) -> anyhow::Result<()> {
    let config = load_config(config)?;
    if config.kafka.bootstrap_servers.is_empty() {
        bail!("no broker configured (CDP_KAFKA__BOOTSTRAP_SERVERS); `make bench` starts one");
    }
    let kafka = config.kafka.clone();
    let (topics, view) = setup(&kafka, args.partitions).await?;
    let xdm = view
        .read()
        .schema("https://ns.adobe.com/bench/schemas/web", 1)
        .cloned()
        .context("bench schema")?;

    let every = 100usize
        .checked_div(args.invalid_percent)
        .unwrap_or(usize::MAX);
    let payloads: Vec<Vec<u8>> = (0..args.events)
        .map(|i| serde_json::to_vec(&event(i, i % every == every - 1)))
        .collect::<Result<_, _>>()?;
    println!(
        "cdp-bench validate: {} events of ~{} B ({}% invalid), {} partitions, batches of up to {} events, transactions every {} ms, broker {}",
        args.events,
        payloads.first().map(Vec::len).unwrap_or(0),
        args.invalid_percent,
        args.partitions,
        args.max_batch,
        args.commit_interval_ms,
        kafka.bootstrap_servers
    );
    produce_raw(&kafka, &topics, &payloads).await?;

    // For reference: parsing and validation alone, in a plain loop on one thread.
    let validators = SchemaValidators::default();
    let started = Instant::now();
    let mut valid = 0usize;
    for p in &payloads {
        let v: Value = serde_json::from_slice(p)?;
        valid += usize::from(validators.validate(&xdm, &v).is_ok());
    }
    let validation = args.events as f64 / started.elapsed().as_secs_f64();
    println!("plain validation loop (no Kafka):     {validation:>9.0} events/s ({valid} valid)");

    // (a) The broker's ceiling for a stage: consume -> produce, at least once.
    let (_stop, stopped) = watch::channel(false);
    let group = format!("bench-copy-{}", uuid::Uuid::new_v4().simple());
    let copied = copy_loop::run(
        &kafka,
        &topics.ingest_raw(),
        &copy_topic(&topics),
        &group,
        Some(args.events as u64),
        stopped,
    )
    .await?;
    let first = copied.first.unwrap_or(copied.done);
    let copy = copied.records as f64 / (copied.done - first).as_secs_f64().max(1e-3);
    println!("(a) copy loop, at least once:         {copy:>9.0} events/s (1.00)");

    // (b) The validate stage, exactly once, one instance and two.
    let t0 = transactions();
    let one = stage_run(&kafka, &topics, &view, 1, &args).await?;
    let t1 = transactions();
    println!(
        "(b) validate stage, 1 instance:       {:>9.0} events/s steady ({:.2} of the copy loop); {:.0} events/s including {:.1} s to join the group",
        one.steady, one.steady / copy, one.overall, one.join.as_secs_f64()
    );
    println!("    {}", describe(t0, t1));
    let two = stage_run(&kafka, &topics, &view, 2, &args).await?;
    let t2 = transactions();
    println!(
        "(b) validate stage, 2 instances:      {:>9.0} events/s steady ({:.2} of the copy loop, {:.2}x one instance); {:.0} events/s including {:.1} s to join the group",
        two.steady, two.steady / copy, two.steady / one.steady, two.overall, two.join.as_secs_f64()
    );
    println!("    {}", describe(t1, t2));

    if args.latency_seconds == 0 {
        return Ok(());
    }
    let count = (args.rate * args.latency_seconds) as usize;
    println!(
        "latency (raw record timestamp -> output visible to a read_committed reader) at {} events/s for {} s:",
        args.rate, args.latency_seconds
    );
    // The same events as above, serialized once: the paced loop only sends.
    let record = |i: usize| {
        (
            format!("ECID:ecid-{}", i % 5000),
            payloads[i % payloads.len()].as_slice(),
            raw_headers(i).to_kafka(),
        )
    };
    {
        let (topics, _view) = setup(&kafka, args.partitions).await?;
        let (stop, stopped) = watch::channel(false);
        let (k, t) = (kafka.clone(), topics.clone());
        let group = format!("bench-copy-{}", uuid::Uuid::new_v4().simple());
        let copying = tokio::spawn(async move {
            copy_loop::run(&k, &t.ingest_raw(), &copy_topic(&t), &group, None, stopped).await
        });
        let (l, _) = warm_then_measure(
            &kafka,
            &topics,
            &[copy_topic(&topics)],
            args.rate,
            count,
            record,
        )
        .await?;
        print_latency("(a) copy loop:", &l);
        let _ = stop.send(true);
        copying.await??;
    }
    {
        let (topics, view) = setup(&kafka, args.partitions).await?;
        let (stop, stopped) = watch::channel(false);
        let settings = bench_settings(&args, "latency", 0);
        let (k, t, v) = (kafka.clone(), topics.clone(), view.clone());
        let stage = tokio::spawn(async move {
            let identity = cdp_contract::IdentitySettings::default().namespaces;
            cdp_validate::stage::run(&k, &t, &settings, &identity, v, None, stopped).await
        });
        let outputs = [topics.events_valid(), topics.events_error()];
        let (l, transactions) =
            warm_then_measure(&kafka, &topics, &outputs, args.rate, count, record).await?;
        print_latency("(b) validate stage, 1 instance:", &l);
        println!("    {transactions}");
        let _ = stop.send(true);
        stage.await??;
    }
    Ok(())
}

/// Sends a few hundred events first (the first ones wait for a group join and are not
/// measured), then measures at the offered load; also says what the validate stage's
/// transactions did during the measured part (nothing for the copy loop).
async fn warm_then_measure<'p>(
    kafka: &KafkaSettings,
    topics: &Topics,
    outputs: &[String],
    rate: u64,
    count: usize,
    record: impl Fn(usize) -> (String, &'p [u8], OwnedHeaders) + Copy,
) -> anyhow::Result<(latency::Latency, String)> {
    latency::measure(kafka, &topics.ingest_raw(), outputs, rate, 200, record).await?;
    let before = transactions();
    let l = latency::measure(kafka, &topics.ingest_raw(), outputs, rate, count, record).await?;
    Ok((l, describe(before, transactions())))
}

fn print_latency(label: &str, l: &latency::Latency) {
    println!(
        "{label:<38}p50 {:>5.0} ms, p90 {:>5.0} ms, p99 {:>5.0} ms, max {:>5.0} ms ({} events)",
        l.p50, l.p90, l.p99, l.max, l.samples
    );
}

/// Transactions so far, their total records and seconds, and the seconds spent committing,
/// from the stage's own metrics.
fn transactions() -> (f64, f64, f64, f64) {
    let page = cdp_contract::prometheus::render().unwrap_or_default();
    let value = |name: &str| {
        page.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    (
        value("cdp_validate_transaction_duration_seconds_count"),
        value("cdp_validate_transaction_records_sum"),
        value("cdp_validate_transaction_duration_seconds_sum"),
        value("cdp_validate_commit_duration_seconds_sum"),
    )
}

/// What the transactions between two readings of [`transactions`] carried and took.
fn describe(before: (f64, f64, f64, f64), after: (f64, f64, f64, f64)) -> String {
    let n = (after.0 - before.0).max(1.0);
    format!(
        "{:.0} transactions, on average {:.0} events, {:.0} ms open to committed, of which {:.0} ms committing (send offsets + commit)",
        after.0 - before.0,
        (after.1 - before.1) / n,
        (after.2 - before.2) * 1000.0 / n,
        (after.3 - before.3) * 1000.0 / n
    )
}

fn bench_settings(args: &ValidateBenchArgs, group: &str, instance: usize) -> ValidateSettings {
    ValidateSettings {
        group_id: group.to_string(),
        instance_id: Some(format!("{group}-{instance}")),
        max_batch: args.max_batch,
        commit_interval_ms: args.commit_interval_ms,
        ..ValidateSettings::default()
    }
}

async fn produce_raw(
    kafka: &KafkaSettings,
    topics: &Topics,
    payloads: &[Vec<u8>],
) -> anyhow::Result<()> {
    let producer: FutureProducer = kafka.producer("bench-raw", 60_000).create()?;
    let topic = topics.ingest_raw();
    let results: Vec<_> = futures::stream::iter(payloads.iter().enumerate())
        .map(|(i, p)| {
            let headers = raw_headers(i);
            let (producer, topic) = (&producer, &topic);
            async move {
                producer
                    .send(
                        FutureRecord::to(topic)
                            .key(&format!("ECID:ecid-{}", i % 5000))
                            .payload(p)
                            .headers(headers.to_kafka()),
                        Duration::from_secs(60),
                    )
                    .await
            }
        })
        .buffer_unordered(20_000)
        .collect()
        .await;
    if results.iter().any(|r| r.is_err()) {
        bail!("writing the raw events failed");
    }
    Ok(())
}

/// Throughput of one run.
struct Rates {
    /// From the first committed transaction to the last.
    steady: f64,
    /// From start, group join included.
    overall: f64,
    /// Until the first transaction was committed.
    join: Duration,
}

/// Runs `instances` validate stages in one fresh consumer group until the group has committed
/// the end of every raw partition.
async fn stage_run(
    kafka: &KafkaSettings,
    topics: &Topics,
    view: &CatalogView,
    instances: usize,
    args: &ValidateBenchArgs,
) -> anyhow::Result<Rates> {
    let partitions = args.partitions;
    let group = format!("bench-validate-{}", uuid::Uuid::new_v4().simple());
    let (stop_tx, stop_rx) = watch::channel(false);
    let raw = topics.ingest_raw();
    let probe: BaseConsumer = kafka.consumer("bench-probe", &group).create()?;
    let (ends, total) = super::group::end_offsets(&probe, &raw, partitions)?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..instances {
        let settings = bench_settings(args, &group, i);
        let (kafka, topics, view, stop) =
            (kafka.clone(), topics.clone(), view.clone(), stop_rx.clone());
        tasks.push(tokio::spawn(async move {
            let identity = cdp_contract::IdentitySettings::default().namespaces;
            cdp_validate::stage::run(&kafka, &topics, &settings, &identity, view, None, stop).await
        }));
    }
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let done = super::group::committed(&probe, &ends)?;
        if done > 0 && first.is_none() {
            first = Some((Instant::now(), done));
        }
        if done >= total {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("validate did not finish within 10 minutes ({done} of {total})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let finished = Instant::now();
    let (first_at, first_done) = first.unwrap_or((started, 0));
    let rates = Rates {
        steady: (total - first_done) as f64 / (finished - first_at).as_secs_f64().max(1e-3),
        overall: total as f64 / (finished - started).as_secs_f64(),
        join: first_at - started,
    };
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await.context("validate task")??;
    }
    Ok(rates)
}
