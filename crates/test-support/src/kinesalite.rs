//! [`Kinesalite`]: a Kinesis-compatible server (kinesalite, from npm; memory storage) on a free
//! loopback port, killed when dropped, with helpers to create a stream and read it back.
//! `scripts/kinesalite.sh install` installs it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_kinesis::config::{Credentials, Region};
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};

use crate::{eventually, free_port, ChildGuard};

pub const INSTALL_HINT: &str = "run `scripts/kinesalite.sh install` (needs node and npm)";

/// Where scripts/kinesalite.sh installs the server's entry point, or `CDP_KINESALITE_JS`.
pub fn kinesalite_entry() -> PathBuf {
    if let Ok(p) = std::env::var("CDP_KINESALITE_JS") {
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
    cache
        .join("kinesalite-3.3.3")
        .join("node_modules")
        .join("kinesalite")
        .join("cli.js")
}

/// One kinesalite server.
pub struct Kinesalite {
    _child: ChildGuard,
    port: u16,
    log: PathBuf,
}

/// A record read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub shard: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl Kinesalite {
    /// Starts a server and waits until it answers `ListStreams`.
    pub async fn start() -> Kinesalite {
        let entry = kinesalite_entry();
        assert!(
            entry.exists(),
            "kinesalite not found at {}: {INSTALL_HINT}",
            entry.display()
        );
        let port = free_port();
        let log = std::env::temp_dir().join(format!("cdp-kinesalite-{port}.log"));
        let log_file = std::fs::File::create(&log).expect("kinesalite log file");
        let mut command = Command::new("node");
        command
            .arg(&entry)
            .args(["--port", &port.to_string()])
            .args(["--createStreamMs", "0"])
            .args(["--deleteStreamMs", "0"])
            .args(["--updateStreamMs", "0"])
            .args(["--shardLimit", "100"])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file);
        let child = ChildGuard::spawn(&mut command, "kinesalite (node)");
        let server = Kinesalite {
            _child: child,
            port,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "kinesalite did not listen on {port} (log: {})",
                server.log.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let client = server.sdk();
        eventually(
            Duration::from_secs(20),
            "kinesalite to answer ListStreams",
            async || client.list_streams().send().await.map(|_| ()),
        )
        .await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Made-up credentials (kinesalite takes any): the access key id.
    pub const ACCESS_KEY_ID: &'static str = "AKIDTEST";
    /// …and the secret key.
    pub const SECRET_KEY: &'static str = "test-secret";
    pub const REGION: &'static str = "us-east-1";

    /// An SDK client of this server, for the test's own calls.
    pub fn sdk(&self) -> aws_sdk_kinesis::Client {
        let config = aws_sdk_kinesis::Config::builder()
            .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
            .region(Region::new(Self::REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new(
                Self::ACCESS_KEY_ID,
                Self::SECRET_KEY,
                None,
                None,
                "kinesalite",
            ))
            .build();
        aws_sdk_kinesis::Client::from_conf(config)
    }

    /// Creates `stream` with `shards` shards and waits until it is active.
    pub async fn create_stream(&self, stream: &str, shards: i32) {
        let client = self.sdk();
        client
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .expect("CreateStream");
        eventually(
            Duration::from_secs(10),
            "the stream to be active",
            async || {
                let summary = client
                    .describe_stream_summary()
                    .stream_name(stream)
                    .send()
                    .await
                    .map_err(|e| format!("{e:?}"))?;
                let status = summary
                    .stream_description_summary()
                    .map(|s| s.stream_status().clone());
                if status == Some(StreamStatus::Active) {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            },
        )
        .await;
    }

    /// Every record in `stream`, shard by shard, each shard in sequence order.
    pub async fn read_all(&self, stream: &str) -> Vec<StreamRecord> {
        let sdk = self.sdk();
        let shards = sdk
            .list_shards()
            .stream_name(stream)
            .send()
            .await
            .expect("ListShards");
        let mut out = Vec::new();
        for shard in shards.shards() {
            let mut iterator = sdk
                .get_shard_iterator()
                .stream_name(stream)
                .shard_id(shard.shard_id())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .expect("GetShardIterator")
                .shard_iterator()
                .map(str::to_string);
            while let Some(it) = iterator {
                let page = sdk
                    .get_records()
                    .shard_iterator(it)
                    .send()
                    .await
                    .expect("GetRecords");
                if page.records().is_empty() {
                    break;
                }
                for r in page.records() {
                    out.push(StreamRecord {
                        shard: shard.shard_id().to_string(),
                        partition_key: r.partition_key().unwrap_or_default().to_string(),
                        data: r.data().as_ref().to_vec(),
                    });
                }
                iterator = page.next_shard_iterator().map(str::to_string);
            }
        }
        out
    }
}
