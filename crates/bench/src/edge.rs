//! `cdp-bench edge`: the edge's batch endpoint against a raw rdkafka producer writing the same
//! messages (same size, keys, headers and producer settings) into the same broker, in rounds
//! that alternate the two so both see the same machine load. Prints events/s for both, their
//! ratio, and the edge's request latency percentiles.
//!
//! With `--sdk` (the default) a third side sends the same XDM entities through the Rust SDK
//! (`cdp-client`, which builds the envelopes and batches itself) to the same edge, right after
//! the hand-built requests of each round, and awaits every event's receipt.

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

use crate::load_config;

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
    /// Also send the same events through the Rust SDK (`cdp-client`) each round; `--sdk false`
    /// leaves it out.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sdk: bool,
    /// Also send each round to a stream that requires authentication, with an org's access
    /// token (role send): what checking the token costs; `--auth false` leaves it out.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    auth: bool,
}

/// The schema of every message, and its version (`schemaRef.contentType` `…;version=1`): the
/// hand-built messages carry the version in `header.schemaRef` only, the SDK (given
/// `schema_version`) in `body.xdmMeta.schemaRef` too.
const SCHEMA_ID: &str = "https://ns.adobe.com/bench/schemas/web";
const SCHEMA_VERSION: u32 = 1;

fn message(i: usize, size: usize) -> Value {
    let mut m = json!({
        "header": {
            "schemaRef": {"id": SCHEMA_ID, "contentType": format!("application/vnd.adobe.xed-full+json;version={SCHEMA_VERSION}")},
            "imsOrgId": "BENCH@AdobeOrg",
            "datasetId": "bench-dataset",
            "createdAt": 1526283801869u64
        },
        "body": {
            "xdmMeta": {"schemaRef": {"id": SCHEMA_ID}},
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

/// The XDM entity the SDK gets for `message`: its `body.xdmEntity`, with the padding shortened
/// by what the SDK's envelope adds (`contentType` repeated in `body.xdmMeta.schemaRef`), so the
/// SDK's messages and requests have the same size as the hand-built ones.
fn sdk_entity(message: &Value) -> Value {
    let mut as_sdk = message.clone();
    as_sdk["body"]["xdmMeta"]["schemaRef"] = message["header"]["schemaRef"].clone();
    let len = |v: &Value| serde_json::to_vec(v).map(|v| v.len()).unwrap_or(0);
    let extra = len(&as_sdk).saturating_sub(len(message));
    let mut entity = message["body"]["xdmEntity"].clone();
    let padding = entity["padding"].as_str().unwrap_or("").len();
    entity["padding"] = json!("x".repeat(padding.saturating_sub(extra)));
    entity
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
    let token = if args.auth {
        Some(authenticated_stream(&config, &running.catalog).await?)
    } else {
        None
    };
    let auth_url = format!("http://{edge}/collection/batch/{AUTH_STREAM}");
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
    let entities: Vec<Value> = messages.iter().map(sdk_entity).collect();
    let sdk = if args.sdk {
        let whole = args.messages / args.batch * args.batch;
        Some(
            cdp_client::Client::builder(format!("http://{edge}"), &stream_id)
                .schema_id(SCHEMA_ID)
                .schema_version(SCHEMA_VERSION)
                .org_id("BENCH@AdobeOrg")
                .dataset_id("bench-dataset")
                .batch_size(args.batch)
                .max_in_flight(args.concurrency)
                .linger(Duration::from_millis(5))
                // A whole round fits: `send` never waits for buffer space.
                .buffer(whole.max(args.batch))
                .build()
                .context("building the cdp-client")?,
        )
    } else {
        None
    };

    println!(
        "cdp-bench edge: {} messages/round of ~{} B, batches of {}, {} connections, {} rounds, {} partitions, broker {}",
        args.messages, args.message_bytes, args.batch, args.concurrency, args.rounds, args.partitions, config.kafka.bootstrap_servers
    );
    // Warm-up, not counted: connections, metadata, partition leaders, allocator.
    let warm = EdgeBenchArgs {
        messages: (args.messages / 4).max(args.batch) / args.batch * args.batch,
        ..args.clone()
    };
    raw_round(&producer, &raw_topic, &encoded, warm.messages).await?;
    edge_round(&http, &url, None, &bodies, &warm).await?;
    if let Some(token) = &token {
        edge_round(&http, &auth_url, Some(token), &bodies, &warm).await?;
    }
    if let Some(client) = &sdk {
        sdk_round(client, &entities, &warm).await?;
    }
    let mut raw_rates = Vec::new();
    let mut edge_rates = Vec::new();
    let mut sdk_rates = Vec::new();
    let mut auth_rates = Vec::new();
    let mut latencies = Vec::new();
    let mut sdk_latencies = Vec::new();
    for round in 1..=args.rounds {
        let raw = raw_round(&producer, &raw_topic, &encoded, args.messages).await?;
        let (edge_elapsed, mut lat) = edge_round(&http, &url, None, &bodies, &args).await?;
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
        if let Some(token) = &token {
            let (elapsed, _) = edge_round(&http, &auth_url, Some(token), &bodies, &args).await?;
            let auth_rate =
                (args.messages / args.batch * args.batch) as f64 / elapsed.as_secs_f64();
            println!(
                "round {round}: edge with a token {auth_rate:>10.0} ev/s | with token / open {:.2}",
                auth_rate / edge_rate
            );
            auth_rates.push(auth_rate);
        }
        if let Some(client) = &sdk {
            let (sdk_elapsed, mut lat) = sdk_round(client, &entities, &args).await?;
            let sdk_rate =
                (args.messages / args.batch * args.batch) as f64 / sdk_elapsed.as_secs_f64();
            println!(
                "round {round}: edge via cdp-client {sdk_rate:>10.0} ev/s | sdk/edge {:.2} | sdk/raw {:.2}",
                sdk_rate / edge_rate,
                sdk_rate / raw_rate
            );
            sdk_rates.push(sdk_rate);
            sdk_latencies.append(&mut lat);
        }
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
    if !auth_rates.is_empty() {
        let auth_mean = auth_rates.iter().sum::<f64>() / auth_rates.len() as f64;
        println!(
            "edge, stream requiring a token: {auth_mean:.0} events/s (mean of {} rounds); with token / open {:.2}",
            args.rounds,
            auth_mean / edge_mean
        );
    }
    println!(
        "edge request latency ({} requests of {} messages): p50 {:.1} ms, p99 {:.1} ms",
        latencies.len(),
        args.batch,
        pct(0.50).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0
    );
    if let Some(client) = sdk {
        client.close().await?;
        let sdk_mean = sdk_rates.iter().sum::<f64>() / sdk_rates.len() as f64;
        sdk_latencies.sort();
        let pct = |p: f64| {
            sdk_latencies[((sdk_latencies.len() as f64 * p) as usize).min(sdk_latencies.len() - 1)]
        };
        println!(
            "edge via cdp-client: {sdk_mean:.0} events/s (mean of {} rounds; same entities, batches of {}, max_in_flight {}, linger 5 ms, every receipt awaited)",
            args.rounds, args.batch, args.concurrency
        );
        println!(
            "ratio sdk/edge: {:.2}, sdk/raw: {:.2}",
            sdk_mean / edge_mean,
            sdk_mean / raw_mean
        );
        println!(
            "cdp-client send-to-outcome latency ({} events): p50 {:.1} ms, p99 {:.1} ms",
            sdk_latencies.len(),
            pct(0.50).as_secs_f64() * 1000.0,
            pct(0.99).as_secs_f64() * 1000.0
        );
    }
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

/// The stream of the authenticated side: the open one's twin, requiring a token.
const AUTH_STREAM: &str = "bench-auth";

/// Adds stream [`AUTH_STREAM`] (authentication required) and an API key of its org with role
/// `send` to the catalog, waits until this process sees them, and answers an access token of
/// the key, as `POST /tokens` issues it.
async fn authenticated_stream(
    config: &cdp::CdpConfig,
    view: &cdp_catalog::CatalogView,
) -> anyhow::Result<String> {
    use cdp_catalog::{ApiKey, CatalogRecord, CatalogWriter, Role};
    let writer = CatalogWriter::new(&config.kafka, &config.topics, view.clone())?;
    let mut stream = view
        .stream("bench")
        .context("the bench stream is not in the catalog")?;
    stream.id = AUTH_STREAM.into();
    stream.authentication_required = true;
    let key = ApiKey {
        id: "bench-key".into(),
        name: "bench".into(),
        org_id: stream.org_id.clone(),
        secret_sha256: cdp_catalog::tokens::hash_secret(&uuid::Uuid::new_v4().to_string()),
        generation: 1,
        created_at: 0,
        rotated_at: None,
        roles: vec![Role::Send],
        sandboxes: vec![],
    };
    writer.put(&CatalogRecord::Stream(stream)).await?;
    writer.put(&CatalogRecord::ApiKey(key.clone())).await?;
    let (token, _) = cdp_catalog::tokens::Tokens::new(&config.auth.token_secret)
        .issue(&key, 1, cdp_catalog::clock::now_ms() / 1000)
        .map_err(|e| anyhow::anyhow!("issuing the bench token: {e}"))?;
    Ok(token)
}

async fn edge_round(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&String>,
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
                let mut request = http
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(token) = bearer {
                    request = request.bearer_auth(token);
                }
                let resp = request.send().await?;
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

/// Sends `args.messages` (rounded down to whole batches, like the hand-built side) of the
/// entities through the SDK and awaits every receipt; fails unless every event was accepted.
/// Returns the time from the first `send` to the last outcome, and each event's time from its
/// `send` to its outcome.
async fn sdk_round(
    client: &cdp_client::Client,
    entities: &[Value],
    args: &EdgeBenchArgs,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let total = args.messages / args.batch * args.batch;
    // Built before the clock starts: a caller hands the SDK owned events, and cloning the
    // bench's templates is not the SDK's cost.
    let events: Vec<cdp_client::Event> = (0..total)
        .map(|i| cdp_client::Event::new(entities[i % entities.len()].clone()))
        .collect();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let sending = async move {
        for event in events {
            let t = Instant::now();
            let receipt = client.send(event).await?;
            // The receiver lives until every receipt has come through.
            let _ = tx.send((t, receipt));
        }
        anyhow::Ok(())
    };
    let settling = async {
        let mut pending = futures::stream::FuturesUnordered::new();
        let mut latencies = Vec::with_capacity(total);
        let mut refused = 0usize;
        let mut failed = 0usize;
        let mut first_problem: Option<String> = None;
        let mut open = true;
        while open || !pending.is_empty() {
            tokio::select! {
                next = rx.recv(), if open => match next {
                    Some((t, receipt)) => pending.push(async move { (receipt.await, t.elapsed()) }),
                    None => open = false,
                },
                Some((outcome, latency)) = pending.next(), if !pending.is_empty() => {
                    latencies.push(latency);
                    match outcome {
                        cdp_client::Outcome::Accepted { .. } => {}
                        cdp_client::Outcome::Refused { status_code, message, .. } => {
                            refused += 1;
                            first_problem.get_or_insert(format!("refused ({status_code}): {message}"));
                        }
                        cdp_client::Outcome::Failed(e) => {
                            failed += 1;
                            first_problem.get_or_insert(format!("failed: {e}"));
                        }
                    }
                }
            }
        }
        (latencies, refused, failed, first_problem)
    };
    let (sent, (latencies, refused, failed, first_problem)) = tokio::join!(sending, settling);
    let elapsed = started.elapsed();
    sent.context("cdp-client send")?;
    if refused + failed > 0 || latencies.len() != total {
        bail!(
            "cdp-client: {refused} refused and {failed} failed of {total} events ({} outcomes); first: {}",
            latencies.len(),
            first_problem.unwrap_or_default()
        );
    }
    Ok((elapsed, latencies))
}
