//! `cdp-bench sinks`: the sinks stage against its destinations' own ceilings, in one run.
//!
//! The same export documents (~420 B of JSON, as the segment stage writes them, keyed by profile
//! id over `--keys` profiles drawn at random, so that a batch of 500 holds some keys twice) go,
//! per destination (`--records` to Kinesis, `--kafka-records` to Kafka):
//!
//! - **raw**, the ceiling: straight to the destination as fast as its client takes them —
//!   `PutRecords` in requests of 500 with the AWS SDK (one request at a time), or an idempotent
//!   acks=all producer with the sinks client's own librdkafka settings and every record in
//!   flight. Measured before and after the other two; the ratio is against the mean;
//! - **client**: the sinks stage's delivery client (`Destination::deliver`) on batches of 500,
//!   one after the other, as one flow-target worker delivers them (for Kafka also with
//!   `linger.ms=0`, a diagnostic);
//! - **stage**: pre-produced to `<ns>.segment.exports` of a fresh namespace (`cdp-flow` header),
//!   the catalog written as control would (base connection with credentials sealed by the
//!   configured `control.secret_key`, target connection, an enabled flow selecting a segment),
//!   then the sinks stage started in-process (`cdp::start` with `Stages::SINKS`, as `cdp sinks`),
//!   timed until the flow target's delivered count — `cdp_sinks_records_delivered_total`, the
//!   counter behind its FlowRun's `recordsDelivered`, read from the process's recorder every
//!   5 ms instead of the once-a-second status topic — reaches the number of records. The rate
//!   is "steady" from the first delivery on (a new consumer group takes ~4 s to join on tansu;
//!   the rate from start is shown too). The destination is read back afterwards (untimed) and
//!   every record must be there.
//!
//! **Latency**: on a fresh namespace, one flow with both targets, the stage started and warmed
//! up, exports produced at `--rate` per second for `--seconds` (one new profile each), each
//! carrying its send time (`bench.sentMs`, epoch ms). Per record: Kinesis, its
//! `ApproximateArrivalTimestamp` (set by kinesalite when it stores the record, just before it
//! answers the PutRecords) − send time, read back with `GetRecords` after the run; Kafka, the
//! broker's `LogAppendTime` if the destination topic has it (tansu keeps `CreateTime`, which is
//! then the moment the stage handed the record to its producer), and the time a reader of the
//! destination topic read it (an upper bound of the acknowledgement).
//!
//! The Kinesis server is kinesalite (`--kinesis-endpoint`); the Kafka destination is
//! `--destination-bootstrap`, by default the pipeline's own broker. `make bench-sinks` starts
//! kinesalite and a second tansu for the destination, so that the destination's broker load is
//! not the pipeline broker's. CPU per process (this one by thread, the brokers, kinesalite) is
//! printed for every phase.

use super::group::assign_every_partition;
use super::procfs::{broker_pid, cpu_by_thread, cpu_seconds, pid_of, status_kb};
use cdp::synthetic::mix;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType, StreamStatus};
use cdp_catalog::flows::{
    param, ConnectionAuth, FLOW_ENABLED, FORMAT_JSON, GENERAL_TRANSFORM, PLATFORM_SEGMENT,
};
use cdp_catalog::{
    CatalogRecord, CatalogView, CatalogWriter, Connection, Flow, SecretKey, SourceConnection,
    TargetConnection, KAFKA_SPEC, KINESIS_SPEC, PROFILE_FLOW_SPEC, PROFILE_SOURCE_SPEC,
};
use cdp_contract::admin::ensure_topics;
use cdp_contract::clock::now_ms;
use cdp_contract::flow_run::FLOW_HEADER;
use cdp_contract::{KafkaSettings, Topics};
use cdp_sinks::delivery::{
    Destination, KafkaTarget, KinesisClient, KinesisTarget, OutRecord, RetryPolicy, Secret,
};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use serde_json::{json, Map, Value};

use crate::load_config;

#[derive(Args, Debug, Clone)]
pub struct SinksBenchArgs {
    /// The Kinesis server (kinesalite): `http://127.0.0.1:PORT`.
    #[arg(long, env = "CDP_BENCH_KINESIS_ENDPOINT")]
    kinesis_endpoint: Option<String>,
    /// The Kafka destination's bootstrap servers; default: the pipeline's broker.
    #[arg(long, env = "CDP_BENCH_DESTINATION_BOOTSTRAP")]
    destination_bootstrap: Option<String>,
    /// Export records of each Kinesis throughput phase.
    #[arg(long, default_value_t = 20_000)]
    records: usize,
    /// Export records of each Kafka throughput phase (the Kafka destination is much faster than
    /// kinesalite: more records for a phase of comparable length).
    #[arg(long, default_value_t = 100_000)]
    kafka_records: usize,
    /// Profiles (partition keys) the records are spread over, at random.
    #[arg(long, default_value_t = 5_000)]
    keys: u64,
    /// Shards of each Kinesis stream, partitions of each destination topic.
    #[arg(long, default_value_t = 4)]
    shards: i32,
    /// Offered load of the latency phase, exports per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Length of the latency phase; 0 skips it.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// No Kinesis phases.
    #[arg(long)]
    skip_kinesis: bool,
    /// No Kafka phases.
    #[arg(long)]
    skip_kafka: bool,
}

/// The segment every bench flow selects.
const SEGMENT_ID: &str = "5b1c7a4e-2f3d-4c8e-9a61-0d2e8f47b9c3";
const REGION: &str = "us-east-1";
/// kinesalite takes any credentials.
const ACCESS_KEY_ID: &str = "AKIDBENCH";
const SECRET_ACCESS_KEY: &str = "bench-secret";
/// PutRecords' limit.
const KINESIS_BATCH: usize = 500;

/// The profile id of profile `k`, as the segment stage keys exports: 32 hex digits.
fn profile_id(k: u64) -> String {
    format!("{:016x}{:016x}", mix(k), mix(k ^ 0x7072_6f66))
}

/// An export document as the segment stage writes it (selected attributes, the flow's
/// segment membership, the identity map), plus `bench.seq` / `bench.sentMs`.
fn document(seq: u64, k: u64, sent_ms: i64) -> Vec<u8> {
    let ecid = format!("{:019}{:019}", mix(k) % 10_000_000_000_000_000_000, k);
    let email = format!("customer.{k}@example.com");
    serde_json::to_vec(&json!({
        "person": {"name": {"firstName": format!("First{}", k % 997), "lastName": format!("Last{}", k % 991)}},
        "personalEmail": {"address": email},
        "segmentMembership": {"ups": {SEGMENT_ID: {"lastQualificationTime": "2026-11-28T12:00:00Z", "status": "realized"}}},
        "identityMap": {"ecid": [{"id": ecid}], "email": [{"id": email}]},
        "bench": {"seq": seq, "sentMs": sent_ms}
    }))
    .expect("a JSON value always encodes")
}

/// The records of a throughput phase: record `i` is for profile `mix(i) % keys`.
fn records(n: usize, keys: u64) -> Vec<OutRecord> {
    let sent = now_ms();
    (0..n as u64)
        .map(|i| {
            let k = mix(i ^ 0x5eed) % keys.max(1);
            OutRecord::new(profile_id(k), document(i, k, sent))
        })
        .collect()
}

/// `bench.seq` and `bench.sentMs` of a delivered document.
fn stamp(data: &[u8]) -> Option<(u64, i64)> {
    let v: Value = serde_json::from_slice(data).ok()?;
    Some((
        v.pointer("/bench/seq")?.as_u64()?,
        v.pointer("/bench/sentMs")?.as_i64()?,
    ))
}

/// PutRecords requests the delivery client makes for `batch` (it sends one record per key per
/// request, so a key that is in the batch n times needs n requests).
fn kinesis_requests(batch: &[OutRecord]) -> usize {
    let mut count: HashMap<&str, usize> = HashMap::new();
    for r in batch {
        *count.entry(r.partition_key.as_str()).or_default() += 1;
    }
    count.values().copied().max().unwrap_or(0)
}

// ---- processes -------------------------------------------------------------------------------

/// The processes whose CPU a phase reports: the pipeline broker, the destination broker (when
/// it is another one), kinesalite.
struct Pids {
    broker: Option<String>,
    destination: Option<String>,
    kinesalite: Option<String>,
}

/// CPU used from a mark on.
struct CpuMark {
    at: Instant,
    own: f64,
    others: Vec<Option<f64>>,
    threads: BTreeMap<String, f64>,
}

impl CpuMark {
    fn take(pids: &Pids) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            own: cpu_seconds("self").unwrap_or(0.0),
            others: pids.all().iter().map(|p| p.and_then(cpu_seconds)).collect(),
            threads: cpu_by_thread(),
        }
    }

    /// `CPU over W s: cdp X s (by thread …), broker Y s, …` since the mark.
    fn since(&self, pids: &Pids) -> String {
        let wall = self.at.elapsed().as_secs_f64().max(1e-3);
        let own = cpu_seconds("self").unwrap_or(0.0) - self.own;
        let mut parts = vec![format!("this process {own:.1} s")];
        let names = ["pipeline broker", "destination broker", "kinesalite"];
        let mut total = own;
        for ((name, pid), before) in names.iter().zip(pids.all()).zip(&self.others) {
            if let (Some(after), Some(before)) = (pid.and_then(cpu_seconds), before) {
                parts.push(format!("{name} {:.1} s", after - before));
                total += after - before;
            }
        }
        let after = cpu_by_thread();
        let mut threads: Vec<(String, f64)> = after
            .iter()
            .map(|(k, v)| (k.clone(), v - self.threads.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v >= 0.05)
            .collect();
        threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        let threads: Vec<String> = threads.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        format!(
            "CPU over {wall:.1} s: {} ({:.0} % of {cores} cores); this process by thread: {}",
            parts.join(", "),
            total * 100.0 / (wall * cores as f64),
            threads.join(", ")
        )
    }
}

impl Pids {
    fn all(&self) -> [Option<&str>; 3] {
        [
            self.broker.as_deref(),
            self.destination.as_deref(),
            self.kinesalite.as_deref(),
        ]
    }
}

// ---- destinations ----------------------------------------------------------------------------

struct Kinesis {
    endpoint: String,
    sdk: aws_sdk_kinesis::Client,
}

impl Kinesis {
    fn target(&self, stream: &str) -> KinesisTarget {
        KinesisTarget {
            stream: stream.to_string(),
            region: REGION.into(),
            endpoint: Some(self.endpoint.clone()),
            access_key_id: ACCESS_KEY_ID.into(),
            secret_key: Secret::new(SECRET_ACCESS_KEY),
        }
    }

    async fn create_stream(&self, stream: &str, shards: i32) -> anyhow::Result<()> {
        self.sdk
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .with_context(|| format!("CreateStream {stream}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let summary = self
                .sdk
                .describe_stream_summary()
                .stream_name(stream)
                .send()
                .await?;
            if summary
                .stream_description_summary()
                .is_some_and(|s| *s.stream_status() == StreamStatus::Active)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("stream {stream} not active within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Deletes a stream (kinesalite counts every stream's shards against its shard limit).
    async fn delete_stream(&self, stream: &str) {
        if let Err(e) = self.sdk.delete_stream().stream_name(stream).send().await {
            println!("  (cannot delete stream {stream}: {e})");
        }
    }

    /// Every record of `stream`: (data, arrival epoch ms).
    async fn read_all(&self, stream: &str) -> anyhow::Result<Vec<(Vec<u8>, i64)>> {
        let shards = self.sdk.list_shards().stream_name(stream).send().await?;
        let mut out = Vec::new();
        for shard in shards.shards() {
            let mut iterator = self
                .sdk
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await?
                .shard_iterator()
                .map(str::to_string);
            while let Some(it) = iterator {
                let page = self
                    .sdk
                    .get_records()
                    .shard_iterator(it)
                    .limit(10_000)
                    .send()
                    .await?;
                if page.records().is_empty() {
                    break;
                }
                for r in page.records() {
                    let arrival = r
                        .approximate_arrival_timestamp()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0);
                    out.push((r.data().as_ref().to_vec(), arrival));
                }
                iterator = page.next_shard_iterator().map(str::to_string);
            }
        }
        Ok(out)
    }
}

/// Creates a destination topic, asking for broker timestamps (`LogAppendTime`) and falling
/// back to a plain topic when the broker refuses the setting.
async fn create_destination_topic(
    dest: &KafkaSettings,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = dest.admin("bench-sinks-admin").create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let with_time = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))
        .set("message.timestamp.type", "LogAppendTime");
    let refused = match admin.create_topics(&[with_time], &opts).await?.pop() {
        Some(Ok(_)) | None => return Ok(()),
        Some(Err((_, code))) => code,
    };
    println!(
        "  (the destination broker refused LogAppendTime for {topic}: {refused}; plain topic)"
    );
    let plain = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
    match admin.create_topics(&[plain], &opts).await?.pop() {
        Some(Err((_, code))) if code != RDKafkaErrorCode::TopicAlreadyExists => {
            bail!("cannot create {topic}: {code}")
        }
        _ => Ok(()),
    }
}

/// Reads `topic` from the beginning until `want` distinct bench records were seen, or nothing
/// came for 5 s: (records read, distinct `bench.seq`s).
async fn read_topic(
    dest: &KafkaSettings,
    topic: &str,
    want: usize,
) -> anyhow::Result<(u64, usize)> {
    let reader: StreamConsumer = dest.reader("bench-sinks-check").create()?;
    assign_every_partition(&reader, &[topic], Offset::Beginning)?;
    let mut read = 0;
    let mut seqs = HashSet::new();
    while seqs.len() < want {
        match tokio::time::timeout(Duration::from_secs(5), reader.recv()).await {
            Ok(Ok(m)) => {
                read += 1;
                if let Some((seq, _)) = m.payload().and_then(stamp) {
                    seqs.insert(seq);
                }
            }
            Ok(Err(e)) => bail!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    Ok((read, seqs.len()))
}

// ---- the ceilings ----------------------------------------------------------------------------

/// One throughput measurement.
struct Rate {
    records: usize,
    took: Duration,
    note: String,
}

impl Rate {
    fn per_second(&self) -> f64 {
        self.records as f64 / self.took.as_secs_f64().max(1e-6)
    }
}

impl Phase {
    /// The ceiling: the mean of the raw loop before and after (the machine's load drifts).
    fn ceiling(&self) -> f64 {
        (self.raw.per_second() + self.raw_after.per_second()) / 2.0
    }
}

/// PutRecords with the SDK, 500 records a request, one request at a time; failed entries are
/// sent again.
async fn kinesis_raw(
    kinesis: &Kinesis,
    stream: &str,
    records: &[OutRecord],
) -> anyhow::Result<Rate> {
    let started = Instant::now();
    let mut requests = 0usize;
    let mut pending: Vec<&OutRecord> = records.iter().collect();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        if rounds > 20 {
            bail!("{} records still refused after 20 rounds", pending.len());
        }
        let mut failed = Vec::new();
        for chunk in pending.chunks(KINESIS_BATCH) {
            let entries = chunk
                .iter()
                .map(|r| {
                    PutRecordsRequestEntry::builder()
                        .data(Blob::new(r.data.clone()))
                        .partition_key(&r.partition_key)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?;
            requests += 1;
            let out = kinesis
                .sdk
                .put_records()
                .stream_name(stream)
                .set_records(Some(entries))
                .send()
                .await
                .context("PutRecords")?;
            if out.failed_record_count().unwrap_or(0) > 0 {
                for (r, result) in chunk.iter().zip(out.records()) {
                    if result.error_code().is_some() {
                        failed.push(*r);
                    }
                }
            }
        }
        pending = failed;
    }
    Ok(Rate {
        records: records.len(),
        took: started.elapsed(),
        note: format!("{requests} PutRecords requests"),
    })
}

/// The sinks delivery client on batches of 500, one after the other.
async fn client_loop(destination: &Destination, records: &[OutRecord]) -> anyhow::Result<Rate> {
    let started = Instant::now();
    let mut delivered = 0;
    let mut deliveries = 0;
    for chunk in records.chunks(KINESIS_BATCH) {
        deliveries += 1;
        let report = destination.deliver(chunk.to_vec()).await?;
        if !report.rejected.is_empty() {
            bail!("the destination rejected {} records", report.rejected.len());
        }
        delivered += report.delivered;
    }
    if delivered != records.len() {
        bail!("delivered {delivered} of {}", records.len());
    }
    let took = started.elapsed();
    Ok(Rate {
        records: records.len(),
        took,
        note: format!(
            "{:.1} ms per delivery",
            took.as_secs_f64() * 1e3 / f64::from(deliveries.max(1))
        ),
    })
}

/// The raw produce loop: the sinks client's producer settings (idempotent, acks=all, linger
/// 5 ms), every record in flight, then every acknowledgement awaited.
async fn kafka_raw(target: &KafkaTarget, records: &[OutRecord]) -> anyhow::Result<Rate> {
    let producer: FutureProducer = target.client_config(&RetryPolicy::default()).create()?;
    // Connections and the producer id first, untimed.
    if let Some(r) = records.first() {
        producer
            .send(
                FutureRecord::to(&target.topic)
                    .key(r.partition_key.as_bytes())
                    .payload(&r.data),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let started = Instant::now();
    produce_all(&producer, &target.topic, records, None).await?;
    Ok(Rate {
        records: records.len(),
        took: started.elapsed(),
        note: String::new(),
    })
}

// ---- the stage -------------------------------------------------------------------------------

/// Where a bench flow delivers.
#[derive(Clone)]
enum Target {
    Kinesis { endpoint: String, stream: String },
    Kafka { bootstrap: String, topic: String },
}

/// A fresh namespace for one stage phase: its topics (catalog, segment's, sinks'), a catalog
/// view, and the configuration to start the stage with.
struct Namespace {
    topics: Topics,
    view: CatalogView,
    config: cdp::CdpConfig,
}

async fn namespace(base: &cdp::CdpConfig, label: &str) -> anyhow::Result<Namespace> {
    let name = format!(
        "bench-{}-{label}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let mut config = base.clone();
    config.topics.namespace = name.clone();
    config.sinks.group_prefix = format!("{name}-sinks");
    config.edge.listen = "127.0.0.1:0".into();
    config.control.listen = "127.0.0.1:0".into();
    config.health.listen = "127.0.0.1:0".into();
    let topics = config.topics.clone();
    let mut specs = vec![cdp_catalog::topic_spec(&topics)];
    specs.extend(cdp_engine::run::topic_specs(
        &topics,
        config.profile.partitions,
        config.profile.identity_partitions,
    ));
    specs.extend(cdp_sinks::flows::topic_specs(
        &topics,
        config.profile.partitions,
    ));
    ensure_topics(&config.kafka, &specs).await?;
    let view = CatalogView::start(&config.kafka, &topics)?;
    view.caught_up(Duration::from_secs(30)).await?;
    Ok(Namespace {
        topics,
        view,
        config,
    })
}

/// Writes, as control would: the profile source, per target a base connection (credentials
/// sealed with the stage's key) and a target connection, and one enabled flow selecting
/// [`SEGMENT_ID`] to all targets. Returns the target connection ids.
async fn write_flow(
    ns: &Namespace,
    key: &SecretKey,
    flow_id: &str,
    targets: &[Target],
) -> anyhow::Result<Vec<String>> {
    let writer = CatalogWriter::new(&ns.config.kafka, &ns.topics, ns.view.clone())?;
    let now = now_ms();
    let etag = || uuid::Uuid::new_v4().simple().to_string();
    let org = super::ORG.to_string();
    let sandbox = "prod".to_string();
    writer
        .put(&CatalogRecord::Connection(Connection {
            id: format!("{flow_id}-ups"),
            name: "Base connection to Experience Platform".into(),
            description: None,
            org_id: org.clone(),
            sandbox: sandbox.clone(),
            connection_spec_id: PROFILE_SOURCE_SPEC.into(),
            auth: None,
            etag: etag(),
            created_at: now,
            updated_at: now,
        }))
        .await?;
    writer
        .put(&CatalogRecord::SourceConnection(SourceConnection {
            id: format!("{flow_id}-source"),
            name: "Connecting to Unified Profile Service".into(),
            description: None,
            org_id: org.clone(),
            sandbox: sandbox.clone(),
            connection_spec_id: PROFILE_SOURCE_SPEC.into(),
            base_connection_id: format!("{flow_id}-ups"),
            format: FORMAT_JSON.into(),
            params: json!({}),
            etag: etag(),
            created_at: now,
            updated_at: now,
        }))
        .await?;
    let mut ids = Vec::new();
    for (n, target) in targets.iter().enumerate() {
        let (spec, spec_name, auth, params) = match target {
            Target::Kinesis { endpoint, stream } => (
                KINESIS_SPEC,
                "Amazon Kinesis authentication credentials",
                json!({(param::ACCESS_KEY_ID): ACCESS_KEY_ID, (param::SECRET_KEY): SECRET_ACCESS_KEY,
                       (param::REGION): REGION, (param::CONNECTION_URL): endpoint}),
                json!({(param::STREAM): stream, (param::REGION): REGION}),
            ),
            Target::Kafka { bootstrap, topic } => (
                KAFKA_SPEC,
                "Kafka authentication credentials",
                json!({(param::BOOTSTRAP_SERVERS): bootstrap}),
                json!({(param::TOPIC): topic}),
            ),
        };
        let connection = format!("{flow_id}-connection-{n}");
        let auth: Map<String, Value> = auth.as_object().cloned().unwrap_or_default();
        writer
            .put(&CatalogRecord::Connection(Connection {
                id: connection.clone(),
                name: format!("bench destination {n}"),
                description: None,
                org_id: org.clone(),
                sandbox: sandbox.clone(),
                connection_spec_id: spec.into(),
                auth: Some(ConnectionAuth::seal(
                    spec_name,
                    &auth,
                    key,
                    &connection,
                    &org,
                )),
                etag: etag(),
                created_at: now,
                updated_at: now,
            }))
            .await?;
        let id = format!("{flow_id}-target-{n}");
        writer
            .put(&CatalogRecord::TargetConnection(TargetConnection {
                id: id.clone(),
                name: format!("bench target {n}"),
                description: None,
                org_id: org.clone(),
                sandbox: sandbox.clone(),
                connection_spec_id: spec.into(),
                base_connection_id: connection,
                format: FORMAT_JSON.into(),
                params: params.as_object().cloned().unwrap_or_default(),
                etag: etag(),
                created_at: now,
                updated_at: now,
            }))
            .await?;
        ids.push(id);
    }
    writer
        .put(&CatalogRecord::Flow(Flow {
            id: flow_id.into(),
            name: "bench flow".into(),
            description: None,
            org_id: org,
            sandbox,
            flow_spec_id: PROFILE_FLOW_SPEC.into(),
            source_connection_ids: vec![format!("{flow_id}-source")],
            target_connection_ids: ids.clone(),
            transformations: json!([{
                "name": GENERAL_TRANSFORM,
                "params": {
                    "segmentSelectors": {"selectors": [{"type": PLATFORM_SEGMENT,
                        "value": {"id": SEGMENT_ID, "name": "bench", "description": ""}}]},
                    "profileSelectors": {"selectors": [
                        {"type": "JSON_PATH", "value": {"operator": "EXISTS", "path": "personalEmail.address"}}]},
                },
            }]),
            etag: etag(),
            state: FLOW_ENABLED.into(),
            created_at: now,
            updated_at: now,
        }))
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ns.view.read().flows.contains_key(flow_id) {
        if Instant::now() > deadline {
            bail!("the catalog did not show flow {flow_id} within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(ids)
}

fn flow_headers(flow_id: &str) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: FLOW_HEADER,
        value: Some(flow_id),
    })
}

/// Writes the records to `<ns>.segment.exports` as the segment stage would (key = profile id,
/// header `cdp-flow`), as fast as the producer takes them.
async fn produce_exports(
    kafka: &KafkaSettings,
    topic: &str,
    flow_id: &str,
    records: &[OutRecord],
) -> anyhow::Result<()> {
    let producer: FutureProducer = kafka.producer("bench-sinks-load", 120_000).create()?;
    produce_all(&producer, topic, records, Some(&flow_headers(flow_id))).await
}

/// Produces every record (key = partition key) with as many in flight as the producer's queue
/// takes, then waits for all acknowledgements.
async fn produce_all(
    producer: &FutureProducer,
    topic: &str,
    records: &[OutRecord],
    headers: Option<&OwnedHeaders>,
) -> anyhow::Result<()> {
    let mut in_flight = VecDeque::with_capacity(records.len());
    for r in records {
        let mut record = FutureRecord::to(topic)
            .key(r.partition_key.as_bytes())
            .payload(&r.data);
        if let Some(h) = headers {
            record = record.headers(h.clone());
        }
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    in_flight.push_back(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match in_flight.pop_front() {
                        Some(f) => {
                            f.await?.map_err(|(e, _)| e)?;
                        }
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }
    for f in in_flight {
        f.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// What the stage has delivered for one flow target, by its own count
/// (`cdp_sinks_records_delivered_total`, the FlowRun's `recordsDelivered`).
fn delivered(flow_id: &str, target_id: &str) -> u64 {
    let page = cdp_contract::prometheus::render().unwrap_or_default();
    let flow = format!("flow=\"{flow_id}\"");
    let target = format!("target=\"{target_id}\"");
    page.lines()
        .filter(|l| l.starts_with("cdp_sinks_records_delivered_total{"))
        .filter(|l| l.contains(&flow) && l.contains(&target))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A stage phase's throughput.
struct StageRate {
    records: usize,
    /// From `cdp::start` to the last record acknowledged.
    took: Duration,
    /// Until the first delivery was counted (start-up, catalog, group join).
    first: Duration,
    /// Records counted at the first sighting, and from then to the end.
    steady: f64,
    cpu: String,
}

impl StageRate {
    fn overall(&self) -> f64 {
        self.records as f64 / self.took.as_secs_f64().max(1e-6)
    }
}

/// The stage on pre-produced exports until the flow target has delivered them all.
async fn through_stage(
    base: &cdp::CdpConfig,
    key: &SecretKey,
    pids: &Pids,
    label: &str,
    target: Target,
    records: &[OutRecord],
) -> anyhow::Result<StageRate> {
    let ns = namespace(base, label).await?;
    let flow_id = format!("{}-flow", ns.topics.namespace);
    let started = Instant::now();
    produce_exports(
        &ns.config.kafka,
        &ns.topics.segment_exports(),
        &flow_id,
        records,
    )
    .await?;
    println!(
        "  {} exports written to {} in {:.1} s (not timed)",
        records.len(),
        ns.topics.segment_exports(),
        started.elapsed().as_secs_f64()
    );
    let target_id = write_flow(&ns, key, &flow_id, &[target]).await?.remove(0);
    let want = records.len() as u64;
    let started = Instant::now();
    let running = cdp::start(&ns.config, cdp::Stages::SINKS)
        .await
        .context("starting the sinks stage")?;
    let mut first: Option<(Instant, u64)> = None;
    // CPU from the first delivery on: the delivery, not the start-up.
    let mut cpu = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut printed = Instant::now();
    let done = loop {
        let n = delivered(&flow_id, &target_id);
        let now = Instant::now();
        if n > 0 && first.is_none() {
            first = Some((now, n));
            cpu = Some(CpuMark::take(pids));
        }
        if n >= want {
            break now;
        }
        if now > deadline {
            running.shutdown().await;
            bail!("the stage delivered only {n} of {want} records within 10 minutes");
        }
        if printed.elapsed() > Duration::from_secs(10) {
            println!(
                "    {:>4.0} s: {n} delivered",
                started.elapsed().as_secs_f64()
            );
            printed = now;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let cpu = cpu.map(|c| c.since(pids)).unwrap_or_default();
    running.shutdown().await;
    let (first_at, first_n) = first.unwrap_or((done, 0));
    Ok(StageRate {
        records: records.len(),
        took: done - started,
        first: first_at - started,
        steady: (want - first_n) as f64 / (done - first_at).as_secs_f64().max(1e-6),
        cpu,
    })
}

// ---- latency ---------------------------------------------------------------------------------

struct Percentiles {
    samples: usize,
    p50: i64,
    p99: i64,
    max: i64,
}

fn percentiles(mut v: Vec<i64>) -> Option<Percentiles> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let pick = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    Some(Percentiles {
        samples: v.len(),
        p50: pick(0.5),
        p99: pick(0.99),
        max: v[v.len() - 1],
    })
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {} ms, p99 {} ms, max {} ms ({} records)",
            self.p50, self.p99, self.max, self.samples
        )
    }
}

#[derive(Default)]
struct LatencyResult {
    offered: f64,
    count: u64,
    kinesis: Option<Percentiles>,
    kafka_broker: Option<(Percentiles, &'static str)>,
    kafka_read: Option<Percentiles>,
    cpu: String,
}

/// What a reader of the destination topic saw: seq → (sent ms, read ms, timestamp, its type).
type Seen = HashMap<u64, (i64, i64, i64, &'static str)>;

#[allow(clippy::too_many_arguments)]
async fn latency(
    base: &cdp::CdpConfig,
    key: &SecretKey,
    pids: &Pids,
    kinesis: Option<&Kinesis>,
    dest: Option<&KafkaSettings>,
    shards: i32,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<LatencyResult> {
    let ns = namespace(base, "latency").await?;
    let flow_id = format!("{}-flow", ns.topics.namespace);
    let stream = format!("{}-latency", ns.topics.namespace);
    let topic = format!("{}-latency", ns.topics.namespace);
    let mut targets = Vec::new();
    if let Some(k) = kinesis {
        k.create_stream(&stream, shards).await?;
        targets.push(Target::Kinesis {
            endpoint: k.endpoint.clone(),
            stream: stream.clone(),
        });
    }
    if let Some(d) = dest {
        create_destination_topic(d, &topic, shards).await?;
        targets.push(Target::Kafka {
            bootstrap: d.bootstrap_servers.clone(),
            topic: topic.clone(),
        });
    }
    let ids = write_flow(&ns, key, &flow_id, &targets).await?;
    let running = cdp::start(&ns.config, cdp::Stages::SINKS)
        .await
        .context("starting the sinks stage")?;
    let producer: FutureProducer = ns
        .config
        .kafka
        .producer("bench-sinks-latency", 60_000)
        .create()?;
    let exports = ns.topics.segment_exports();
    let count = rate * seconds;
    // Export `seq` for profile `seq` (one record per profile: every record is a new key).
    let send = |seq: u64| -> anyhow::Result<DeliveryFuture> {
        let key = profile_id(seq);
        let sent = now_ms();
        let value = document(seq, seq, sent);
        let delivery = producer
            .send_result(
                FutureRecord::to(&exports)
                    .key(key.as_bytes())
                    .payload(&value)
                    .headers(flow_headers(&flow_id))
                    .timestamp(sent),
            )
            .map_err(|(e, _)| e);
        Ok(delivery?)
    };
    // Warm-up, not measured: the workers have joined their groups, the clients are connected.
    const WARM: u64 = 20;
    for i in 0..WARM {
        send(count + i)?.await?.map_err(|(e, _)| e)?;
    }
    let all_at = |want: u64| ids.iter().all(|t| delivered(&flow_id, t) >= want);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !all_at(WARM) {
        if Instant::now() > deadline {
            bail!("the warm-up exports were not delivered within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The reader of the destination topic, from its current end.
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let reading = match dest {
        Some(d) => {
            let reader: StreamConsumer = d.reader("bench-sinks-latency").create()?;
            let mut tpl = TopicPartitionList::new();
            for p in 0..shards {
                let (_, high) = reader.fetch_watermarks(&topic, p, Duration::from_secs(10))?;
                tpl.add_partition_offset(&topic, p, Offset::Offset(high))?;
            }
            reader.assign(&tpl)?;
            let seen = seen.clone();
            Some(tokio::spawn(async move {
                while let Ok(m) = reader.recv().await {
                    let at = now_ms();
                    let (ts, kind) = match m.timestamp() {
                        Timestamp::LogAppendTime(t) => (t, "LogAppendTime"),
                        Timestamp::CreateTime(t) => (t, "CreateTime"),
                        Timestamp::NotAvailable => (0, "none"),
                    };
                    if let Some((seq, sent)) = m.payload().and_then(stamp) {
                        seen.lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(seq, (sent, at, ts, kind));
                    }
                }
            }))
        }
        None => None,
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let cpu = CpuMark::take(pids);
    let started = Instant::now();
    let per_tick = (rate / 100).max(1);
    let mut sends = Vec::with_capacity(count as usize);
    let mut seq = 0;
    let mut tick = 0u32;
    while seq < count {
        tokio::time::sleep_until((started + Duration::from_millis(10) * tick).into()).await;
        tick += 1;
        for _ in 0..per_tick.min(count - seq) {
            sends.push(send(seq)?);
            seq += 1;
        }
    }
    let offered = count as f64 / started.elapsed().as_secs_f64();
    for s in sends {
        s.await?.map_err(|(e, _)| e)?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let read = seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .filter(|seq| **seq < count)
            .count() as u64;
        if all_at(WARM + count) && (reading.is_none() || read >= count) {
            break;
        }
        if Instant::now() > deadline {
            println!("  not every export delivered and read within 2 minutes ({read} read)");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = cpu.since(pids);
    if let Some(r) = reading {
        r.abort();
    }
    running.shutdown().await;

    let mut result = LatencyResult {
        offered,
        count,
        cpu,
        ..LatencyResult::default()
    };
    if let Some(k) = kinesis {
        let mut lat = Vec::new();
        let mut distinct = HashSet::new();
        for (data, arrival) in k.read_all(&stream).await? {
            if let Some((seq, sent)) = stamp(&data) {
                if seq < count && distinct.insert(seq) {
                    lat.push(arrival - sent);
                }
            }
        }
        result.kinesis = percentiles(lat);
        k.delete_stream(&stream).await;
    }
    if dest.is_some() {
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let seen = seen.iter().filter(|(seq, _)| **seq < count);
        let mut broker = Vec::new();
        let mut read = Vec::new();
        let mut kind = "none";
        for (_, (sent, at, ts, k)) in seen {
            read.push(at - sent);
            if *ts > 0 {
                broker.push(ts - sent);
                kind = *k;
            }
        }
        result.kafka_broker = percentiles(broker).map(|p| (p, kind));
        result.kafka_read = percentiles(read);
    }
    Ok(result)
}

// ---- the run ---------------------------------------------------------------------------------

fn verdict(ratio: f64) -> &'static str {
    if ratio >= 0.5 {
        "met"
    } else {
        "MISSED"
    }
}

struct Phase {
    name: String,
    /// The raw loop before the client and stage phases, and again after them.
    raw: Rate,
    raw_after: Rate,
    client: Rate,
    stage: StageRate,
    /// What the destination holds after the stage phase (≥ the records: at least once).
    held: u64,
}

pub async fn run(config: Option<PathBuf>, args: SinksBenchArgs) -> anyhow::Result<()> {
    let config = load_config(config)?;
    if config.kafka.bootstrap_servers.is_empty() {
        bail!("no broker configured (CDP_KAFKA__BOOTSTRAP_SERVERS); `make bench-sinks` starts one");
    }
    if args.records == 0 || args.kafka_records == 0 || args.keys == 0 || args.shards < 1 {
        bail!("need --records, --kafka-records, --keys and --shards of at least 1");
    }
    // The stage's counters are read from the process's recorder: install it before it starts.
    if cdp_contract::prometheus::handle().is_none() {
        bail!("no Prometheus recorder: the delivered counts cannot be read");
    }
    let key = config.control.secret_key()?;
    let kafka = config.kafka.clone();
    let kinesis = match (&args.kinesis_endpoint, args.skip_kinesis) {
        (_, true) => None,
        (None, false) => bail!(
            "no Kinesis server: pass --kinesis-endpoint (or CDP_BENCH_KINESIS_ENDPOINT); `make bench-sinks` starts kinesalite"
        ),
        (Some(endpoint), false) => {
            let client = KinesisClient::new(
                KinesisTarget {
                    stream: "bench".into(),
                    region: REGION.into(),
                    endpoint: Some(endpoint.clone()),
                    access_key_id: ACCESS_KEY_ID.into(),
                    secret_key: Secret::new(SECRET_ACCESS_KEY),
                },
                RetryPolicy::default(),
            )?;
            Some(Kinesis {
                endpoint: endpoint.clone(),
                sdk: client.sdk().clone(),
            })
        }
    };
    let dest = (!args.skip_kafka).then(|| {
        KafkaSettings::with_bootstrap(
            args.destination_bootstrap
                .clone()
                .unwrap_or_else(|| kafka.bootstrap_servers.clone()),
        )
    });
    let separate = dest
        .as_ref()
        .is_some_and(|d| d.bootstrap_servers != kafka.bootstrap_servers);
    let pids = Pids {
        broker: broker_pid(&kafka.bootstrap_servers),
        destination: dest
            .as_ref()
            .filter(|_| separate)
            .and_then(|d| broker_pid(&d.bootstrap_servers)),
        kinesalite: kinesis.as_ref().and_then(|k| {
            let port = k.endpoint.rsplit(':').next()?.trim_end_matches('/');
            pid_of(&["kinesalite", &format!("--port {port}")])
        }),
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let records = records(args.records, args.keys);
    let kafka_records = if args.skip_kafka {
        Vec::new()
    } else {
        self::records(args.kafka_records, args.keys)
    };
    let bytes = records.iter().map(|r| r.data.len()).sum::<usize>() / records.len();
    let distinct = records
        .iter()
        .map(|r| r.partition_key.as_str())
        .collect::<HashSet<_>>()
        .len();
    let requests: usize = records.chunks(KINESIS_BATCH).map(kinesis_requests).sum();
    println!(
        "cdp-bench sinks: export records of ~{bytes} B over {distinct} profiles ({} for Kinesis, {} for Kafka), {} shards / partitions per destination, segment.exports of {} partitions; pipeline broker {}, Kafka destination {}, Kinesis {}; stage max_batch {}, max_wait_ms {}",
        records.len(),
        kafka_records.len(),
        args.shards,
        config.profile.partitions,
        kafka.bootstrap_servers,
        dest.as_ref().map_or("-".to_string(), |d| {
            format!(
                "{} ({})",
                d.bootstrap_servers,
                if separate { "its own broker" } else { "the pipeline broker" }
            )
        }),
        args.kinesis_endpoint.as_deref().filter(|_| kinesis.is_some()).unwrap_or("-"),
        config.sinks.max_batch,
        config.sinks.max_wait_ms,
    );
    let rss = |pid: Option<&str>| {
        pid.and_then(|p| status_kb(p, "VmRSS:"))
            .map_or("?".into(), |kb| format!("{:.0} MiB", kb as f64 / 1024.0))
    };

    let mut phases = Vec::new();
    if let Some(k) = &kinesis {
        println!("Kinesis (kinesalite):");
        let raw_stream = format!("bench-{run_id}-raw");
        k.create_stream(&raw_stream, args.shards).await?;
        // kinesalite (node) compiles its hot paths during the first requests: a warm-up round
        // on a stream of its own, untimed.
        let warm_stream = format!("bench-{run_id}-warm");
        k.create_stream(&warm_stream, args.shards).await?;
        kinesis_raw(k, &warm_stream, &records[..records.len().min(2_000)]).await?;
        k.delete_stream(&warm_stream).await;
        let cpu = CpuMark::take(&pids);
        let raw = kinesis_raw(k, &raw_stream, &records).await?;
        println!(
            "  raw PutRecords (SDK, 500 a request, one at a time): {:.0} records/s ({:.2} s, {})",
            raw.per_second(),
            raw.took.as_secs_f64(),
            raw.note
        );
        println!("    {}", cpu.since(&pids));
        k.delete_stream(&raw_stream).await;

        let client_stream = format!("bench-{run_id}-client");
        k.create_stream(&client_stream, args.shards).await?;
        let destination = Destination::kinesis(k.target(&client_stream), RetryPolicy::default())?;
        destination.check().await?;
        let cpu = CpuMark::take(&pids);
        let mut client = client_loop(&destination, &records).await?;
        client.note = format!(
            "{}; {requests} PutRecords requests: one record per key in a request",
            client.note
        );
        println!(
            "  sinks client (Destination::deliver, batches of 500): {:.0} records/s ({:.2} s, {})",
            client.per_second(),
            client.took.as_secs_f64(),
            client.note
        );
        println!("    {}", cpu.since(&pids));
        k.delete_stream(&client_stream).await;

        let stage_stream = format!("bench-{run_id}-stage");
        k.create_stream(&stage_stream, args.shards).await?;
        let stage = through_stage(
            &config,
            &key,
            &pids,
            "kinesis",
            Target::Kinesis {
                endpoint: k.endpoint.clone(),
                stream: stage_stream.clone(),
            },
            &records,
        )
        .await?;
        let stored = k.read_all(&stage_stream).await?;
        let present = stored
            .iter()
            .filter_map(|(d, _)| stamp(d).map(|s| s.0))
            .collect::<HashSet<_>>()
            .len();
        println!(
            "  sinks stage: {:.0} records/s from the first delivery ({:.0} records/s from start, {:.2} s, the first delivery after {:.2} s); the stream holds {} records, {present} distinct",
            stage.steady,
            stage.overall(),
            stage.took.as_secs_f64(),
            stage.first.as_secs_f64(),
            stored.len()
        );
        println!("    {}", stage.cpu);
        if present != records.len() {
            bail!(
                "stream {stage_stream} holds {present} of the {} records",
                records.len()
            );
        }
        k.delete_stream(&stage_stream).await;
        let again_stream = format!("bench-{run_id}-raw-again");
        k.create_stream(&again_stream, args.shards).await?;
        let raw_after = kinesis_raw(k, &again_stream, &records).await?;
        println!(
            "  raw PutRecords again: {:.0} records/s ({:.2} s)",
            raw_after.per_second(),
            raw_after.took.as_secs_f64()
        );
        k.delete_stream(&again_stream).await;
        phases.push(Phase {
            name: format!("Kinesis (kinesalite), {} records", records.len()),
            raw,
            raw_after,
            client,
            stage,
            held: stored.len() as u64,
        });
    }

    if let Some(d) = &dest {
        println!(
            "Kafka destination ({}):",
            if separate {
                "a broker of its own"
            } else {
                "the pipeline broker"
            }
        );
        let raw_topic = format!("bench-{run_id}-raw");
        create_destination_topic(d, &raw_topic, args.shards).await?;
        let cpu = CpuMark::take(&pids);
        let raw = kafka_raw(
            &KafkaTarget::new(&d.bootstrap_servers, &raw_topic),
            &kafka_records,
        )
        .await?;
        println!(
            "  raw produce loop (idempotent, acks=all, every record in flight): {:.0} records/s ({:.2} s)",
            raw.per_second(),
            raw.took.as_secs_f64()
        );
        println!("    {}", cpu.since(&pids));
        let client_topic = format!("bench-{run_id}-client");
        create_destination_topic(d, &client_topic, args.shards).await?;
        let destination = Destination::kafka(
            KafkaTarget::new(&d.bootstrap_servers, &client_topic),
            RetryPolicy::default(),
        )?;
        // The producer's connections and producer id, untimed.
        destination.deliver(vec![kafka_records[0].clone()]).await?;
        let cpu = CpuMark::take(&pids);
        let client = client_loop(&destination, &kafka_records).await?;
        println!(
            "  sinks client (Destination::deliver, batches of 500): {:.0} records/s ({:.2} s, {})",
            client.per_second(),
            client.took.as_secs_f64(),
            client.note
        );
        println!("    {}", cpu.since(&pids));
        // Diagnostic: the same client without the producer's 5 ms linger (the stage cannot be
        // configured so; it shows how much of a delivery is the linger).
        let linger_topic = format!("bench-{run_id}-linger0");
        create_destination_topic(d, &linger_topic, args.shards).await?;
        let mut target = KafkaTarget::new(&d.bootstrap_servers, &linger_topic);
        target.properties.insert("linger.ms".into(), "0".into());
        let unlingered = Destination::kafka(target, RetryPolicy::default())?;
        unlingered.deliver(vec![kafka_records[0].clone()]).await?;
        let linger0 = client_loop(&unlingered, &kafka_records).await?;
        println!(
            "  (diagnostic) sinks client with linger.ms=0: {:.0} records/s ({:.2} s, {})",
            linger0.per_second(),
            linger0.took.as_secs_f64(),
            linger0.note
        );
        let stage_topic = format!("bench-{run_id}-stage");
        create_destination_topic(d, &stage_topic, args.shards).await?;
        let stage = through_stage(
            &config,
            &key,
            &pids,
            "kafka",
            Target::Kafka {
                bootstrap: d.bootstrap_servers.clone(),
                topic: stage_topic.clone(),
            },
            &kafka_records,
        )
        .await?;
        let (held, present) = read_topic(d, &stage_topic, kafka_records.len()).await?;
        println!(
            "  sinks stage: {:.0} records/s from the first delivery ({:.0} records/s from start, {:.2} s, the first delivery after {:.2} s); the topic holds {held} records, {present} distinct",
            stage.steady,
            stage.overall(),
            stage.took.as_secs_f64(),
            stage.first.as_secs_f64(),
        );
        println!("    {}", stage.cpu);
        if present < kafka_records.len() {
            bail!(
                "topic {stage_topic} holds {present} of the {} records",
                kafka_records.len()
            );
        }
        let again_topic = format!("bench-{run_id}-raw-again");
        create_destination_topic(d, &again_topic, args.shards).await?;
        let raw_after = kafka_raw(
            &KafkaTarget::new(&d.bootstrap_servers, &again_topic),
            &kafka_records,
        )
        .await?;
        println!(
            "  raw produce loop again: {:.0} records/s ({:.2} s)",
            raw_after.per_second(),
            raw_after.took.as_secs_f64()
        );
        phases.push(Phase {
            name: format!(
                "Kafka ({}), {} records",
                if separate {
                    "second tansu"
                } else {
                    "pipeline tansu"
                },
                kafka_records.len()
            ),
            raw,
            raw_after,
            client,
            stage,
            held,
        });
    }

    let lat = if args.seconds > 0 && (kinesis.is_some() || dest.is_some()) {
        println!(
            "Latency: one flow to {}, {} exports/s for {} s:",
            match (kinesis.is_some(), dest.is_some()) {
                (true, true) => "both destinations",
                (true, false) => "Kinesis",
                _ => "Kafka",
            },
            args.rate,
            args.seconds
        );
        let l = latency(
            &config,
            &key,
            &pids,
            kinesis.as_ref(),
            dest.as_ref(),
            args.shards,
            args.rate,
            args.seconds,
        )
        .await?;
        println!("  offered {:.0} exports/s; {}", l.offered, l.cpu);
        Some(l)
    } else {
        None
    };
    println!(
        "RSS: cdp {}, pipeline broker {}, destination broker {}, kinesalite {}",
        rss(Some("self")),
        rss(pids.broker.as_deref()),
        rss(pids.destination.as_deref()),
        rss(pids.kinesalite.as_deref())
    );

    println!();
    println!("| destination | raw loop, before / after (records/s) | sinks client, batches of 500 (records/s) | sinks stage (records/s, steady) | stage / raw (mean) | target ≥ 0.5 | stage from start (records/s) | held after |");
    println!("|---|---|---|---|---|---|---|---|");
    for p in &phases {
        let ratio = p.stage.steady / p.ceiling();
        println!(
            "| {} | {:.0} / {:.0} | {:.0} ({:.2} of raw) | {:.0} | **{ratio:.2}** | {} | {:.0} (first delivery after {:.1} s) | {} |",
            p.name,
            p.raw.per_second(),
            p.raw_after.per_second(),
            p.client.per_second(),
            p.client.per_second() / p.ceiling(),
            p.stage.steady,
            verdict(ratio),
            p.stage.overall(),
            p.stage.first.as_secs_f64(),
            p.held
        );
    }
    if let Some(l) = lat {
        println!();
        println!(
            "| latency, export produced → destination, {} exports at {:.0}/s | result |",
            l.count, l.offered
        );
        println!("|---|---|");
        if let Some(p) = &l.kinesis {
            println!(
                "| Kinesis: ApproximateArrivalTimestamp (kinesalite stored it) − send time | {p} |"
            );
        }
        if let Some((p, kind)) = &l.kafka_broker {
            let what = if *kind == "LogAppendTime" {
                "Kafka: broker LogAppendTime − send time"
            } else {
                "Kafka: record CreateTime (the stage handed it to its producer) − send time"
            };
            println!("| {what} | {p} |");
        }
        if let Some(p) = &l.kafka_read {
            println!("| Kafka: read from the destination topic − send time | {p} |");
        }
    }
    Ok(())
}
