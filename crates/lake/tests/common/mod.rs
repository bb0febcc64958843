//! Shared set-up for the lake's tests: a real broker with the topics and a catalog holding one
//! dataset, producers of events.valid / events.error records with the validate stage's headers,
//! the lake stage in a task, and read-back of Parquet files.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::json::ArrayWriter;
use arrow::record_batch::RecordBatch;
use cdp_contract::admin::{ensure_topics, TopicSpec};
use cdp_contract::envelope;
use cdp_contract::quarantine::{ErrorRecord, Stage, Violation};
use cdp_contract::{KafkaSettings, Topics};
use cdp_control::{CatalogView, CatalogWriter};
use cdp_lake::LakeSettings;
pub use cdp_test_support::eventually;
use cdp_test_support::{unique_name, Broker, ChildGuard, XdmFixture};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const DATASET: &str = "ds-web";
pub const SCHEMA_ID: &str = "https://ns.adobe.com/acme/schemas/web";
pub const RECEIVED_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

pub struct Env {
    pub broker: Broker,
    pub kafka: KafkaSettings,
    pub topics: Topics,
    pub catalog: CatalogView,
    pub producer: FutureProducer,
}

pub fn schema_definition() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "_id": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "eventType": {"type": "string"},
            "identityMap": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "object"}}
            },
            "web": {"type": "object", "properties": {
                "webPageDetails": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "URL": {"type": "string"}
                }}
            }},
            "commerce": {"type": "object", "properties": {
                "order": {"type": "object", "properties": {"priceTotal": {"type": "number"}}}
            }},
            "productListItems": {"type": "array", "items": {"type": "object", "properties": {
                "SKU": {"type": "string"},
                "quantity": {"type": "integer"}
            }}}
        },
        "required": ["_id", "timestamp"]
    })
}

pub fn event(i: usize) -> Value {
    json!({
        "_id": format!("e{i}"),
        "timestamp": "2026-01-01T00:00:00Z",
        "eventType": "web.webpagedetails.pageViews",
        "identityMap": {"ECID": [{"id": format!("ecid-{}", i % 7), "primary": true}]},
        "web": {"webPageDetails": {"name": format!("page {i}"), "URL": "https://example.com/"}},
        "commerce": {"order": {"priceTotal": i as f64 + 0.5}},
        "productListItems": [{"SKU": "sku-1", "quantity": i as i64}, {"SKU": "sku-2", "quantity": 1}]
    })
}

impl Env {
    pub async fn start() -> Env {
        let broker = Broker::start();
        let kafka = broker.kafka();
        let topics = Topics::new(unique_name("lake"));
        ensure_topics(
            &kafka,
            &[
                cdp_control::catalog::topic_spec(&topics),
                TopicSpec {
                    name: topics.events_valid(),
                    partitions: 2,
                    compacted: false,
                },
                TopicSpec {
                    name: topics.events_error(),
                    partitions: 2,
                    compacted: false,
                },
            ],
        )
        .await
        .expect("topics");
        let catalog = CatalogView::start(&kafka, &topics).expect("catalog view");
        let writer = CatalogWriter::new(&kafka, &topics, catalog.clone()).expect("writer");
        let mut fixture = XdmFixture::new(SCHEMA_ID, DATASET, "ORG@AdobeOrg", schema_definition());
        fixture.schema.title = "Web".into();
        fixture.dataset.name = "Web events".into();
        fixture.write(&writer).await;
        let producer = kafka
            .producer("lake-test", 10_000)
            .create()
            .expect("producer");
        Env {
            broker,
            kafka,
            topics,
            catalog,
            producer,
        }
    }

    fn headers(batch: &str, xaction: &str, dataset: Option<&str>) -> OwnedHeaders {
        let received = RECEIVED_MS.to_string();
        let mut h = OwnedHeaders::new();
        for (k, v) in [
            (envelope::STREAM_ID, "stream-1"),
            (envelope::ORG_ID, "ORG@AdobeOrg"),
            (envelope::SANDBOX, "prod"),
            (envelope::BATCH_ID, batch),
            (envelope::XACTION_ID, xaction),
            (envelope::RECEIVED_MS, received.as_str()),
            (envelope::CONTENT_TYPE, "application/json"),
            (envelope::SOURCE, "collection"),
        ] {
            h = h.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        if let Some(d) = dataset {
            h = h.insert(Header {
                key: envelope::DATASET_ID,
                value: Some(d),
            });
        }
        h
    }

    /// An event on events.valid as the validate stage writes it.
    pub async fn produce_valid(&self, batch: &str, i: usize) {
        self.produce_valid_value(batch, i, "json", event(i).to_string().as_bytes())
            .await;
    }

    /// A value on events.valid in the given `cdp-value-format`.
    pub async fn produce_valid_value(&self, batch: &str, i: usize, format: &str, value: &[u8]) {
        let h = Self::headers(batch, &format!("{batch}:{i}"), Some(DATASET))
            .insert(Header {
                key: envelope::SCHEMA_ID,
                value: Some(SCHEMA_ID),
            })
            .insert(Header {
                key: envelope::SCHEMA_VERSION,
                value: Some("1"),
            })
            .insert(Header {
                key: envelope::VALUE_FORMAT,
                value: Some(format),
            });
        let key = format!("ECID:ecid-{}", i % 7);
        self.producer
            .send(
                FutureRecord::to(&self.topics.events_valid())
                    .key(&key)
                    .payload(value)
                    .headers(h),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce valid");
    }

    /// A refused event on events.error.
    pub async fn produce_error(&self, batch: &str, i: usize, dataset: Option<&str>) {
        let record = ErrorRecord {
            batch_id: batch.into(),
            xaction_id: format!("{batch}:{i}"),
            stream_id: "stream-1".into(),
            org_id: "ORG@AdobeOrg".into(),
            sandbox: "prod".into(),
            dataset_id: dataset.map(str::to_string),
            received_ms: RECEIVED_MS,
            stage: Stage::Validate,
            violations: vec![Violation {
                pointer: "/timestamp".into(),
                message: "\"timestamp\" is a required property".into(),
            }],
            payload: json!({"header": {"n": i}, "body": {"xdmEntity": {"_id": format!("bad{i}")}}}),
        };
        let value = serde_json::to_string(&record).expect("json");
        let key = format!("k{i}");
        self.producer
            .send(
                FutureRecord::to(&self.topics.events_error())
                    .key(&key)
                    .payload(&value)
                    .headers(Self::headers(batch, &record.xaction_id, dataset)),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce error");
    }

    /// Starts the lake stage in a task.
    pub fn run_lake(&self, settings: LakeSettings) -> RunningLake {
        let (tx, rx) = watch::channel(false);
        let (kafka, topics, catalog) = (
            self.kafka.clone(),
            self.topics.clone(),
            self.catalog.clone(),
        );
        let task =
            tokio::spawn(
                async move { cdp_lake::run(&kafka, &topics, &settings, catalog, rx).await },
            );
        RunningLake { stop: tx, task }
    }
}

pub struct RunningLake {
    pub stop: watch::Sender<bool>,
    pub task: JoinHandle<Result<(), cdp_lake::LakeError>>,
}

impl RunningLake {
    /// Graceful stop: flushes what is buffered.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("lake task").expect("lake ran");
    }

    /// A crash: the task is dropped wherever it is, nothing more is flushed or committed.
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

pub fn temp_root(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cdp-lake-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn settings(root: &Path) -> LakeSettings {
    LakeSettings {
        root: format!("file://{}", root.display()),
        group_id: unique_name("lake-group"),
        flush_records: 1000,
        flush_interval_ms: 300,
        ..LakeSettings::default()
    }
}

/// Every `.parquet` file under `dir`, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The rows of Parquet bytes, as JSON objects (nested structs and lists included).
pub fn rows_of(bytes: bytes::Bytes) -> Vec<Value> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let mut w = ArrayWriter::new(Vec::new());
    for b in &batches {
        w.write(b).expect("json");
    }
    w.finish().expect("json");
    let buf = w.into_inner();
    if buf.is_empty() {
        return Vec::new();
    }
    serde_json::from_slice::<Vec<Value>>(&buf).expect("rows")
}

pub fn rows_in(files: &[PathBuf]) -> Vec<Value> {
    files
        .iter()
        .flat_map(|f| rows_of(bytes::Bytes::from(std::fs::read(f).expect("read file"))))
        .collect()
}

/// moto's S3 server on a free port, killed on drop.
pub struct Moto {
    pub endpoint: String,
    _server: ChildGuard,
}

pub const MOTO_HINT: &str =
    "run `scripts/s3.sh install` (installs moto[server] into ~/.cache/cdp/moto-venv)";

impl Moto {
    pub fn start() -> Moto {
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
        let bin = std::env::var("CDP_MOTO_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|_| cache.join("moto-venv/bin/moto_server"));
        assert!(
            bin.exists(),
            "moto_server not found at {}: {MOTO_HINT}",
            bin.display()
        );
        let port = free_port();
        let server = ChildGuard::spawn(
            Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "moto_server",
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _server: server,
        }
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).expect("connect moto");
        write!(s, "PUT /{bucket} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("send");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read");
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "create bucket: {answer}"
        );
    }
}
