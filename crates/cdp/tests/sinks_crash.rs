//! The sinks stage as a real `cdp sinks` process, delivering destination-flow exports to
//! kinesalite. The catalog (a Kinesis connection, its target connections, the flows) is
//! written directly, and the exports are produced to `<ns>.segment.exports` as the segment
//! stage writes them (key = profile id, header `cdp-flow`), so only the sinks stage runs.
//!
//! - A SIGKILL mid-delivery loses nothing: after a restart every export is in the stream, each
//!   profile's exports first arrive in their order, and the duplicates (at least once) are few.
//! - A flow whose stream does not exist reports `failed` with Kinesis' own message while a
//!   healthy flow in the same process delivers everything; the process keeps running, and once
//!   the stream exists the failed flow catches up and reports `success`.
//! - A connection changed while its flow's delivery hangs (a server that never answers) takes
//!   effect at once: the stage stops the worker without waiting for the delivery to time out.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdp_catalog::flows::{FLOW_ENABLED, FORMAT_JSON};
use cdp_catalog::{
    CatalogRecord, CatalogView, CatalogWriter, Connection, ConnectionAuth, Flow, SecretKey,
    TargetConnection, KINESIS_SPEC, PROFILE_FLOW_SPEC,
};
use cdp_contract::clock::now_ms;
use cdp_contract::flow_run::{FlowRun, RunStatus, FLOW_HEADER};
use cdp_contract::Topics;
use cdp_test_support::{
    eventually, eventually_every, unique_name, Broker, ChildGuard, Kinesalite, StreamRecord,
};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ORG: &str = "acme";
const SANDBOX: &str = "prod";
/// Partitions of `segment.exports` (and of what the stage creates: `CDP_PROFILE__PARTITIONS`).
const PARTITIONS: usize = 2;
const CONNECTION: &str = "conn-kinesis";

/// One namespace on the test's broker: its catalog and exports topic, and a catalog writer.
struct Pipeline {
    broker: Broker,
    topics: Topics,
    writer: CatalogWriter,
}

impl Pipeline {
    async fn start(name: &str) -> Pipeline {
        let broker = Broker::start();
        let topics = Topics::new(unique_name(name));
        broker
            .create_pipeline_topics(&topics, PARTITIONS as i32)
            .await;
        broker
            .create_topic(&topics.segment_exports(), PARTITIONS as i32)
            .await;
        let kafka = broker.kafka();
        let view = CatalogView::start(&kafka, &topics).expect("catalog view");
        let writer = CatalogWriter::new(&kafka, &topics, view).expect("catalog writer");
        Pipeline {
            broker,
            topics,
            writer,
        }
    }

    async fn put(&self, record: CatalogRecord) {
        self.writer.put(&record).await.expect("catalog record");
    }

    /// A Kinesis base connection to the server at `endpoint` (kinesalite or a proxy in front),
    /// its credentials sealed with the development key (control's and the sinks stage's
    /// default). Written again with another `etag`, it is a changed connection.
    async fn kinesis_connection(&self, endpoint: &str, etag: &str) {
        let params = json!({
            "accessKeyId": Kinesalite::ACCESS_KEY_ID,
            "secretKey": Kinesalite::SECRET_KEY,
            "region": Kinesalite::REGION,
            "connectionUrl": endpoint,
        });
        let now = now_ms();
        self.put(CatalogRecord::Connection(Connection {
            id: CONNECTION.into(),
            name: "Connection for Amazon Kinesis".into(),
            description: None,
            org_id: ORG.into(),
            sandbox: SANDBOX.into(),
            connection_spec_id: KINESIS_SPEC.into(),
            auth: Some(ConnectionAuth::seal(
                "Amazon Kinesis authentication credentials",
                params.as_object().expect("params are an object"),
                &SecretKey::development(),
                CONNECTION,
                ORG,
            )),
            etag: etag.into(),
            created_at: now,
            updated_at: now,
        }))
        .await;
    }

    /// A target connection on the Kinesis connection, to `stream`.
    async fn kinesis_target(&self, id: &str, stream: &str) {
        let now = now_ms();
        let params = json!({"stream": stream, "region": Kinesalite::REGION});
        self.put(CatalogRecord::TargetConnection(TargetConnection {
            id: id.into(),
            name: format!("Amazon Kinesis target connection {id}"),
            description: None,
            org_id: ORG.into(),
            sandbox: SANDBOX.into(),
            connection_spec_id: KINESIS_SPEC.into(),
            base_connection_id: CONNECTION.into(),
            format: FORMAT_JSON.into(),
            params: params.as_object().cloned().expect("params are an object"),
            etag: format!("etag-{id}"),
            created_at: now,
            updated_at: now,
        }))
        .await;
    }

    /// An enabled flow to `target`, exporting segment `seg-1`.
    async fn flow(&self, id: &str, target: &str) {
        let now = now_ms();
        self.put(CatalogRecord::Flow(Flow {
            id: id.into(),
            name: format!("Dataflow {id}"),
            description: None,
            org_id: ORG.into(),
            sandbox: SANDBOX.into(),
            flow_spec_id: PROFILE_FLOW_SPEC.into(),
            source_connection_ids: vec!["source-ups".into()],
            target_connection_ids: vec![target.into()],
            transformations: json!([{
                "name": "GeneralTransform",
                "params": {
                    "segmentSelectors": {"selectors": [
                        {"type": "PLATFORM_SEGMENT", "value": {"id": "seg-1", "name": "s"}}
                    ]},
                    "profileSelectors": {"selectors": []},
                },
            }]),
            etag: format!("etag-{id}"),
            state: FLOW_ENABLED.into(),
            created_at: now,
            updated_at: now,
        }))
        .await;
    }

    /// Writes exports to `segment.exports` in the order given (one producer, idempotent: a
    /// profile's exports land on its partition in that order).
    async fn produce(&self, exports: &[Export]) {
        let producer: FutureProducer = self
            .broker
            .kafka()
            .producer("segment-exports", 30_000)
            .create()
            .expect("producer");
        let topic = self.topics.segment_exports();
        let mut pending = Vec::with_capacity(exports.len());
        for e in exports {
            let payload = e.document().to_string();
            let key = e.key();
            let record = FutureRecord::to(&topic)
                .key(&key)
                .payload(&payload)
                .headers(OwnedHeaders::new().insert(Header {
                    key: FLOW_HEADER,
                    value: Some(e.flow),
                }));
            match producer.send_result(record) {
                Ok(delivery) => pending.push(delivery),
                Err((e, _)) => panic!("cannot queue an export: {e}"),
            }
        }
        for delivery in pending {
            delivery
                .await
                .expect("delivery not cancelled")
                .map_err(|(e, _)| e)
                .expect("export written");
        }
    }

    /// The latest status of each flow target (`<flow>/<target>`) on `sinks.status`.
    async fn statuses(&self) -> BTreeMap<String, FlowRun> {
        let records = self
            .broker
            .read_committed_settle(
                &self.topics.sinks_status(),
                1,
                Duration::from_secs(3),
                Duration::from_millis(300),
            )
            .await;
        let mut out = BTreeMap::new();
        for r in records {
            let run: FlowRun = serde_json::from_slice(&r.value).expect("a FlowRun");
            assert_eq!(r.key.as_deref(), Some(run.key().as_str()), "status key");
            out.insert(run.key(), run);
        }
        out
    }

    /// `cdp sinks` on this namespace; its log goes to the returned file.
    fn sinks(&self, run: u32, env: &[(&str, &str)]) -> (ChildGuard, PathBuf) {
        let log =
            std::env::temp_dir().join(format!("cdp-sinks-{}-{run}.log", self.topics.namespace));
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_cdp"));
        command
            .arg("sinks")
            .env("CDP_KAFKA__BOOTSTRAP_SERVERS", self.broker.bootstrap())
            .env("CDP_TOPICS__NAMESPACE", &self.topics.namespace)
            .env(
                "CDP_SINKS__GROUP_PREFIX",
                format!("{}-sinks", self.topics.namespace),
            )
            .env("CDP_SINKS__REFRESH_MS", "200")
            .env("CDP_SINKS__STATUS_INTERVAL_MS", "200")
            .env("CDP_PROFILE__PARTITIONS", PARTITIONS.to_string())
            .env("CDP_HEALTH__LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "warn,cdp_sinks=info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        (ChildGuard::spawn(&mut command, "cdp sinks"), log)
    }
}

/// One export: the `seq`-th of profile `profile` for flow `flow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Export {
    flow: &'static str,
    profile: usize,
    seq: usize,
}

impl Export {
    fn key(&self) -> String {
        format!("profile-{}", self.profile)
    }

    fn document(&self) -> Value {
        json!({"profileId": self.key(), "flow": self.flow, "seq": self.seq,
               "segmentMembership": {"ups": {"seg-1": {"status": "realized"}}}})
    }

    /// What a record in the stream is, checking it is keyed by its profile.
    fn of(record: &StreamRecord) -> Export {
        let doc: Value = serde_json::from_slice(&record.data).expect("an export document");
        let key = doc["profileId"].as_str().expect("profileId");
        assert_eq!(record.partition_key, key, "partition key is the profile id");
        let flow = match doc["flow"].as_str().expect("flow") {
            CRASH_FLOW => CRASH_FLOW,
            OTHER_FLOW => OTHER_FLOW,
            HEALTHY_FLOW => HEALTHY_FLOW,
            BROKEN_FLOW => BROKEN_FLOW,
            CHANGED_FLOW => CHANGED_FLOW,
            other => panic!("an export of an unknown flow {other}"),
        };
        Export {
            flow,
            profile: key
                .strip_prefix("profile-")
                .and_then(|n| n.parse().ok())
                .expect("profile-<n>"),
            seq: doc["seq"].as_u64().expect("seq") as usize,
        }
    }
}

/// `profiles` × `per_profile` exports of `flow`, sequence-major (every profile's first export,
/// then every profile's second…), so a profile's exports are spread over the whole topic.
fn exports(flow: &'static str, profiles: usize, per_profile: usize) -> Vec<Export> {
    (0..per_profile)
        .flat_map(|seq| (0..profiles).map(move |profile| Export { flow, profile, seq }))
        .collect()
}

async fn delivered(kinesis: &Kinesalite, stream: &str) -> Vec<Export> {
    kinesis
        .read_all(stream)
        .await
        .iter()
        .map(Export::of)
        .collect()
}

fn distinct(records: &[Export]) -> BTreeSet<Export> {
    records.iter().copied().collect()
}

/// Per profile, in stream order (a key is on one shard, read in sequence order), the
/// sequence numbers of the first occurrence of each of its exports.
fn first_occurrences(records: &[Export]) -> BTreeMap<usize, Vec<usize>> {
    let mut firsts: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for e in records {
        if seen.insert(*e) {
            firsts.entry(e.profile).or_default().push(e.seq);
        }
    }
    firsts
}

/// Each profile's exports arrived (first) in the order they were produced: 0, 1, 2…
fn assert_profile_order(records: &[Export], per_profile: usize) {
    let in_order: Vec<usize> = (0..per_profile).collect();
    for (profile, seqs) in first_occurrences(records) {
        assert_eq!(
            seqs, in_order,
            "profile-{profile}: first occurrences out of order"
        );
    }
}

/// Exactly `expected`, each once, each profile's in order.
fn assert_exactly_once_in_order(records: &[Export], expected: &[Export], per_profile: usize) {
    assert_eq!(records.len(), expected.len(), "records in the stream");
    assert_eq!(
        distinct(records),
        distinct(expected),
        "the exports delivered"
    );
    assert_profile_order(records, per_profile);
}

/// Whether the process is running: neither gone nor a zombie waiting to be reaped.
fn running(child: &ChildGuard) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", child.id())).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

const CRASH_FLOW: &str = "flow-crash";
const OTHER_FLOW: &str = "flow-other";
const HEALTHY_FLOW: &str = "flow-healthy";
const BROKEN_FLOW: &str = "flow-broken";
const CHANGED_FLOW: &str = "flow-changed";

/// Profiles and exports per profile of the crash test: 3,000 exports.
const PROFILES: usize = 600;
const PER_PROFILE: usize = 5;
/// Records per delivery: small, so the kill lands with many deliveries still to go.
const MAX_BATCH: usize = 50;
/// How long the proxy holds back each answer of kinesalite.
const ACK_DELAY: Duration = Duration::from_millis(60);

/// A TCP proxy in front of kinesalite that holds back every answer for a while: a request's
/// records are in the stream before the sink hears they are.
struct SlowProxy {
    addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowProxy {
    async fn start(upstream: &str, delay: Duration) -> SlowProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http endpoint")
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let requests = async {
                        let _ = tokio::io::copy(&mut from_client, &mut to_server).await;
                        let _ = to_server.shutdown().await;
                    };
                    let answers = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                            tokio::time::sleep(delay).await;
                            if to_client.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        let _ = to_client.shutdown().await;
                    };
                    tokio::join!(requests, answers);
                });
            }
        });
        SlowProxy { addr, task }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_delivery_loses_no_export_and_keeps_each_profiles_order() {
    let started = Instant::now();
    let p = Pipeline::start("sinks-crash").await;
    let kinesis = Kinesalite::start().await;
    let stream = "exports";
    kinesis.create_stream(stream, 2).await;
    // Acknowledgements come late: a batch is in the stream a while before the sink may commit
    // it, which is where the kill is likely to land.
    let proxy = SlowProxy::start(&kinesis.endpoint(), ACK_DELAY).await;
    p.kinesis_connection(&proxy.endpoint(), "v1").await;
    p.kinesis_target("target-crash", stream).await;
    p.flow(CRASH_FLOW, "target-crash").await;

    // The flow's exports and, interleaved, another flow's (not in the catalog: no worker),
    // which the flow's worker must skip.
    let ours = exports(CRASH_FLOW, PROFILES, PER_PROFILE);
    let mut all = Vec::new();
    for (i, e) in ours.iter().enumerate() {
        all.push(*e);
        if i % 10 == 0 {
            all.push(Export {
                flow: OTHER_FLOW,
                ..*e
            });
        }
    }
    p.produce(&all).await;
    let expected = distinct(&ours);
    assert_eq!(expected.len(), PROFILES * PER_PROFILE);

    let batch = MAX_BATCH.to_string();
    let env = [
        ("CDP_SINKS__MAX_BATCH", batch.as_str()),
        // The restarted process's consumer group waits for the killed member's session to
        // expire before it gets the partitions.
        ("CDP_KAFKA__SESSION_TIMEOUT_MS", "3000"),
    ];
    let (mut first, first_log) = p.sinks(1, &env);
    let in_at_kill = eventually_every(
        Duration::from_secs(20),
        Duration::from_millis(20),
        "some exports in kinesalite",
        async || {
            let n = kinesis.read_all(stream).await.len();
            if n >= 4 * MAX_BATCH {
                Ok(n)
            } else {
                Err(n)
            }
        },
    )
    .await;
    let status = first.kill();
    assert_eq!(
        status.signal(),
        Some(9),
        "cdp sinks ran until SIGKILL ({status}; log: {})",
        first_log.display()
    );
    let after_kill = distinct(&delivered(&kinesis, stream).await).len();
    assert!(
        after_kill < expected.len(),
        "killed mid-delivery: {after_kill} of {} exports were in (log: {})",
        expected.len(),
        first_log.display()
    );
    println!(
        "killed after {:.1?} with {in_at_kill}..{after_kill} of {} exports delivered",
        started.elapsed(),
        expected.len()
    );

    let (_second, second_log) = p.sinks(2, &env);
    let mut records = Vec::new();
    eventually(
        Duration::from_secs(30),
        "every export in kinesalite after the restart",
        async || {
            records = delivered(&kinesis, stream).await;
            let got = distinct(&records);
            if got.is_superset(&expected) {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} (log: {})",
                    expected.intersection(&got).count(),
                    expected.len(),
                    second_log.display()
                ))
            }
        },
    )
    .await;

    let got = distinct(&records);
    assert_eq!(
        got, expected,
        "every export of the flow, and nothing of the other flow"
    );
    let duplicates = records.len() - got.len();
    println!(
        "all {} exports delivered after {:.1?}: {} records in the stream, {duplicates} duplicates",
        expected.len(),
        started.elapsed(),
        records.len()
    );
    // At least once: what was delivered but not committed at the kill (one batch: the worker
    // commits after every delivery) goes again. One batch per partition is the bound.
    assert!(
        duplicates <= MAX_BATCH * PARTITIONS,
        "{duplicates} duplicates: more than one batch per partition"
    );
    // Per profile, the first occurrences of its exports are in the order they were produced.
    assert_profile_order(&records, PER_PROFILE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_fails_its_flow_only_and_is_retried_until_it_exists() {
    let started = Instant::now();
    let p = Pipeline::start("sinks-failing").await;
    let kinesis = Kinesalite::start().await;
    kinesis.create_stream("healthy", 1).await;
    p.kinesis_connection(&kinesis.endpoint(), "v1").await;
    p.kinesis_target("target-healthy", "healthy").await;
    p.kinesis_target("target-broken", "missing").await;
    p.flow(HEALTHY_FLOW, "target-healthy").await;
    p.flow(BROKEN_FLOW, "target-broken").await;

    let healthy = exports(HEALTHY_FLOW, 100, 3);
    let broken = exports(BROKEN_FLOW, 50, 3);
    // Interleaved, the broken flow's exports first: the healthy flow must not wait for them.
    let mut all = Vec::new();
    for i in 0..healthy.len().max(broken.len()) {
        all.extend(broken.get(i));
        all.extend(healthy.get(i));
    }
    p.produce(&all).await;

    let (sinks, log) = p.sinks(
        1,
        &[
            ("CDP_SINKS__RETRY_INITIAL_MS", "100"),
            ("CDP_SINKS__RETRY_MAX_MS", "1000"),
        ],
    );
    let healthy_key = format!("{HEALTHY_FLOW}/target-healthy");
    let broken_key = format!("{BROKEN_FLOW}/target-broken");

    // The healthy flow delivers everything, exactly once (nothing crashed).
    let mut records = Vec::new();
    eventually(
        Duration::from_secs(20),
        "the healthy flow's exports in kinesalite",
        async || {
            records = delivered(&kinesis, "healthy").await;
            records.len() >= healthy.len()
        },
    )
    .await;
    assert_exactly_once_in_order(&records, &healthy, 3);

    // The broken flow reports its failure in Kinesis' words; the healthy one its deliveries.
    let statuses = eventually(
        Duration::from_secs(15),
        "a failed status for the broken flow and a success for the healthy one",
        async || {
            let statuses = p.statuses().await;
            let failed = statuses.get(&broken_key).is_some_and(|r| {
                r.status == RunStatus::Failed
                    && r.last_error
                        .as_deref()
                        .is_some_and(|e| e.contains("ResourceNotFoundException"))
            });
            let success = statuses.get(&healthy_key).is_some_and(|r| {
                r.status == RunStatus::Success && r.records_delivered == healthy.len() as u64
            });
            if failed && success {
                Ok(statuses)
            } else {
                Err(statuses)
            }
        },
    )
    .await;
    let failed = &statuses[&broken_key];
    println!(
        "broken flow after {:.1?}: {}",
        started.elapsed(),
        serde_json::to_string(failed).unwrap_or_default()
    );
    assert_eq!(failed.destination, "Amazon Kinesis");
    assert_eq!(failed.records_delivered, 0);
    assert!(
        failed.records_retried > 0,
        "the failed batch counts as retried: {failed:?}"
    );
    let error = failed.last_error.as_deref().unwrap_or_default();
    assert!(error.contains("missing"), "names the stream: {error}");

    // Still running, still retrying: not a crash, not a restart loop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(running(&sinks), "cdp sinks exited (log: {})", log.display());
    assert_eq!(
        delivered(&kinesis, "healthy").await.len(),
        healthy.len(),
        "nothing more on the healthy stream"
    );
    // A stream that is missing refuses the delivery, not the records: nothing is dead-lettered.
    let dead = p
        .broker
        .read_committed_settle(
            &p.topics.sinks_deadletter(),
            0,
            Duration::from_secs(1),
            Duration::from_millis(500),
        )
        .await;
    assert!(dead.is_empty(), "{} records dead-lettered", dead.len());

    // The stream appears: the next retry delivers the broken flow's exports, in order.
    kinesis.create_stream("missing", 1).await;
    let fixed_at = Instant::now();
    let mut records = Vec::new();
    eventually(
        Duration::from_secs(15),
        "the broken flow's exports once its stream exists",
        async || {
            records = delivered(&kinesis, "missing").await;
            records.len() >= broken.len()
        },
    )
    .await;
    println!(
        "broken flow delivered {:.1?} after its stream was created",
        fixed_at.elapsed()
    );
    assert_exactly_once_in_order(&records, &broken, 3);
    eventually(
        Duration::from_secs(10),
        "a success status for the repaired flow",
        async || {
            let statuses = p.statuses().await;
            match statuses.get(&broken_key) {
                Some(r)
                    if r.status == RunStatus::Success
                        && r.records_delivered == broken.len() as u64 =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(running(&sinks), "cdp sinks exited (log: {})", log.display());
    // One worker for the broken flow the whole time: it retried, it was never restarted.
    let text = std::fs::read_to_string(&log).expect("the sinks log");
    let starts = text
        .lines()
        .filter(|l| l.contains("flow delivery started") && l.contains(BROKEN_FLOW))
        .count();
    assert_eq!(
        starts,
        1,
        "the broken flow's worker started once (log: {})",
        log.display()
    );
    println!("done after {:.1?}", started.elapsed());
}

/// A server that accepts connections and never answers: a request to it hangs until the
/// client's timeout (30 s per Kinesis attempt, and the delivery retries for up to 2 minutes).
struct Blackhole {
    addr: std::net::SocketAddr,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Blackhole {
    async fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the blackhole");
        let addr = listener.local_addr().expect("blackhole address");
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        Blackhole {
            addr,
            accepted,
            task,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_changed_during_a_hanging_delivery_takes_effect_at_once() {
    let started = Instant::now();
    let p = Pipeline::start("sinks-change").await;
    let kinesis = Kinesalite::start().await;
    kinesis.create_stream("changed", 1).await;
    let blackhole = Blackhole::start().await;
    // First the connection points at a server that never answers.
    p.kinesis_connection(&blackhole.endpoint(), "v1").await;
    p.kinesis_target("target-changed", "changed").await;
    p.flow(CHANGED_FLOW, "target-changed").await;
    let sent = exports(CHANGED_FLOW, 20, 2);
    p.produce(&sent).await;

    let (sinks, log) = p.sinks(1, &[]);
    eventually(
        Duration::from_secs(15),
        "a delivery hanging at the blackhole",
        async || blackhole.accepted() > 0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The connection is fixed (as PATCH /connections does: new endpoint, new etag): the worker
    // is restarted on it without waiting for the hanging delivery to time out.
    p.kinesis_connection(&kinesis.endpoint(), "v2").await;
    let fixed_at = Instant::now();
    let mut records = Vec::new();
    eventually(
        Duration::from_secs(10),
        "the exports in kinesalite once the connection is fixed",
        async || {
            records = delivered(&kinesis, "changed").await;
            if records.len() >= sent.len() {
                Ok(())
            } else {
                Err(format!("{} (log: {})", records.len(), log.display()))
            }
        },
    )
    .await;
    println!(
        "delivered {:.1?} after the connection changed ({:.1?} in all)",
        fixed_at.elapsed(),
        started.elapsed()
    );
    assert_exactly_once_in_order(&records, &sent, 2);
    assert!(running(&sinks), "cdp sinks exited (log: {})", log.display());
}
