//! `cdp bench edge`: the edge's batch endpoint against a raw rdkafka producer writing the same
//! messages (same size, keys, headers and producer settings) into the same broker, in rounds
//! that alternate the two so both see the same machine load. Prints events/s for both, their
//! ratio, and the edge's request latency percentiles.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cdp_contract::admin::{ensure_topics, TopicSpec};
use cdp_contract::envelope::Source;
use cdp_contract::RawHeaders;
use clap::Args;
use futures::StreamExt;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};

use crate::commands::load_config;

#[derive(Args, Debug, Clone)]
pub struct EdgeBenchArgs {
    /// Messages per round for each side.
    #[arg(long, default_value_t = 40_000)]
    messages: usize,
    /// Messages per batch request (seed 002: 200 messages of about 1 KB).
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Approximate size of one message in bytes.
    #[arg(long, default_value_t = 1024)]
    message_bytes: usize,
    /// Concurrent HTTP connections driving the edge.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Rounds; each runs the raw producer and then the edge.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Partitions of the raw topics.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

fn message(i: usize, size: usize) -> Value {
    let mut m = json!({
        "header": {
            "schemaRef": {"id": "https://ns.adobe.com/bench/schemas/web", "contentType": "application/vnd.adobe.xed-full+json;version=1"},
            "imsOrgId": "BENCH@AdobeOrg",
            "datasetId": "bench-dataset",
            "createdAt": 1526283801869u64
        },
        "body": {
            "xdmMeta": {"schemaRef": {"id": "https://ns.adobe.com/bench/schemas/web"}},
            "xdmEntity": {
                "_id": format!("evt-{i}"),
                "timestamp": "2026-11-26T12:00:00Z",
                "eventType": "web.webpagedetails.pageViews",
                "identityMap": {"ECID": [{"id": format!("ecid-{}", i % 5000), "primary": true}]},
                "web": {"webPageDetails": {"name": "home", "URL": "https://example.com/"}},
                "padding": ""
            }
        }
    });
    let current = serde_json::to_vec(&m).map(|v| v.len()).unwrap_or(0);
    m["body"]["xdmEntity"]["padding"] = json!("x".repeat(size.saturating_sub(current)));
    m
}

pub async fn run(config: Option<PathBuf>, args: EdgeBenchArgs) -> anyhow::Result<()> {
    if args.batch == 0 || args.messages < args.batch || args.concurrency == 0 {
        bail!("need --batch > 0, --messages >= --batch and --concurrency > 0");
    }
    let mut config = load_config(config)?;
    let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    config.topics.namespace = namespace.clone();
    config.edge.listen = "127.0.0.1:0".into();
    config.control.listen = "127.0.0.1:0".into();
    config.edge.raw_partitions = args.partitions;
    // The edge alone (and control, which it needs): validate would compete for the two cores.
    let stages = cdp::Stages {
        edge: true,
        control: true,
        ..cdp::Stages::NONE
    };
    let running = cdp::start(&config, stages)
        .await
        .context("starting edge and control")?;
    let Some(edge) = running.edge_addr else {
        bail!("the edge did not start");
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    super::seed_catalog(
        &config.kafka,
        &config.topics,
        &running.catalog,
        serde_json::json!({"type": "object", "required": ["_id", "timestamp"]}),
    )
    .await?;
    let stream_id = "bench".to_string();
    let raw_topic = format!("{namespace}.bench.rawproducer");
    ensure_topics(
        &config.kafka,
        &[TopicSpec {
            name: raw_topic.clone(),
            partitions: args.partitions,
            compacted: false,
        }],
    )
    .await?;

    // Requests are built once; each request cycles through them.
    let messages: Vec<Value> = (0..args.batch * 8)
        .map(|i| message(i, args.message_bytes))
        .collect();
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        messages
            .chunks(args.batch)
            .map(|c| serde_json::to_vec(&json!({"messages": c})).unwrap_or_default())
            .collect(),
    );
    let encoded: Arc<Vec<(String, Vec<u8>)>> = Arc::new(
        messages
            .iter()
            .map(|m| {
                let key = format!(
                    "ECID:{}",
                    m["body"]["xdmEntity"]["identityMap"]["ECID"][0]["id"]
                        .as_str()
                        .unwrap_or("")
                );
                (key, serde_json::to_vec(m).unwrap_or_default())
            })
            .collect(),
    );
    let producer: FutureProducer = config.kafka.producer("cdp-bench-raw", 30_000).create()?;
    let url = format!("http://{edge}/collection/batch/{stream_id}");

    println!(
        "cdp bench edge: {} messages/round of ~{} B, batches of {}, {} connections, {} rounds, {} partitions, broker {}",
        args.messages, args.message_bytes, args.batch, args.concurrency, args.rounds, args.partitions, config.kafka.bootstrap_servers
    );
    // Warm-up, not counted: connections, metadata, partition leaders, allocator.
    let warm = EdgeBenchArgs {
        messages: (args.messages / 4).max(args.batch) / args.batch * args.batch,
        ..args.clone()
    };
    raw_round(&producer, &raw_topic, &encoded, warm.messages).await?;
    edge_round(&http, &url, &bodies, &warm).await?;
    let mut raw_rates = Vec::new();
    let mut edge_rates = Vec::new();
    let mut latencies = Vec::new();
    for round in 1..=args.rounds {
        let raw = raw_round(&producer, &raw_topic, &encoded, args.messages).await?;
        let (edge_elapsed, mut lat) = edge_round(&http, &url, &bodies, &args).await?;
        let raw_rate = args.messages as f64 / raw.as_secs_f64();
        let edge_rate =
            (args.messages / args.batch * args.batch) as f64 / edge_elapsed.as_secs_f64();
        println!(
            "round {round}: raw producer {raw_rate:>10.0} ev/s | edge {edge_rate:>10.0} ev/s | ratio {:.2}",
            edge_rate / raw_rate
        );
        raw_rates.push(raw_rate);
        edge_rates.push(edge_rate);
        latencies.append(&mut lat);
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    let raw_mean = raw_rates.iter().sum::<f64>() / raw_rates.len() as f64;
    let edge_mean = edge_rates.iter().sum::<f64>() / edge_rates.len() as f64;
    println!(
        "raw producer: {raw_mean:.0} events/s (mean of {} rounds)",
        args.rounds
    );
    println!(
        "edge:         {edge_mean:.0} events/s (mean of {} rounds)",
        args.rounds
    );
    println!("ratio edge/raw: {:.2}", edge_mean / raw_mean);
    println!(
        "edge request latency ({} requests of {} messages): p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        args.batch,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0
    );
    running.shutdown().await;
    Ok(())
}

async fn raw_round(
    producer: &FutureProducer,
    topic: &str,
    encoded: &Arc<Vec<(String, Vec<u8>)>>,
    total: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let now = cdp_catalog::clock::now_ms();
    let results: Vec<_> = futures::stream::iter(0..total)
        .map(|i| {
            let (key, value) = &encoded[i % encoded.len()];
            // The same headers the edge writes, so both sides put the same bytes on the wire.
            let headers = RawHeaders {
                stream_id: "bench".into(),
                org_id: "BENCH@AdobeOrg".into(),
                sandbox: "prod".into(),
                batch_id: format!("{now}:0:{}", i / 200),
                xaction_id: format!("{now}:0:{}:{}", i / 200, i % 200),
                received_ms: now,
                content_type: "application/json".into(),
                source: Source::Collection,
            };
            async move {
                producer
                    .send(
                        FutureRecord::to(topic)
                            .key(key)
                            .payload(value)
                            .headers(headers.to_kafka()),
                        Duration::from_secs(30),
                    )
                    .await
            }
        })
        .buffer_unordered(20_000)
        .collect()
        .await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        bail!("raw producer: {failed} of {total} sends failed");
    }
    Ok(started.elapsed())
}

async fn edge_round(
    http: &reqwest::Client,
    url: &str,
    bodies: &Arc<Vec<Vec<u8>>>,
    args: &EdgeBenchArgs,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let requests = args.messages / args.batch;
    let started = Instant::now();
    let results: Vec<anyhow::Result<Duration>> = futures::stream::iter(0..requests)
        .map(|i| {
            let body = bodies[i % bodies.len()].clone();
            async move {
                let t = Instant::now();
                let resp = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                let status = resp.status();
                let _ = resp.bytes().await?;
                if status.as_u16() != 207 {
                    bail!("edge answered {status}");
                }
                Ok(t.elapsed())
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut lat = Vec::with_capacity(results.len());
    for r in results {
        lat.push(r?);
    }
    Ok((elapsed, lat))
}
