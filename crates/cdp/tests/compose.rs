//! The compose file, proved without a Docker engine: every service of docker-compose.yml but
//! the broker runs as its own `cdp <command>` process with exactly the environment the file
//! gives it, started in the order of its `depends_on` once its dependencies answer their
//! health checks; an event sent to the edge then reaches a Kinesis export (kinesalite) and the
//! lake's files. Only what a machine without Docker must change is changed: service addresses
//! (`redpanda:9092` is the test's broker, `<service>:<port>` and `0.0.0.0:<port>` a free port
//! on 127.0.0.1 per service and port), volume paths (a directory per volume), `${…}`
//! variables (test values), and the topic namespace (one of its own, so tests can share a
//! broker).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdp_catalog::flows::{KINESIS_SPEC, PROFILE_FLOW_SPEC, PROFILE_SOURCE_SPEC};
use cdp_test_support::{eventually, free_port, unique_name, Broker, ChildGuard, Kinesalite};
use serde_json::{json, Value};
use serde_yaml_ng::Value as Yaml;

const ORG: &str = "acme";
const SANDBOX: &str = "prod";
/// The value every `${VAR}` of the compose file gets: the secrets it asks for are hex strings
/// of 32 bytes, which this is.
const SECRET: &str = "5f2b9c0e7d4a61f38e2c9b7a0d5e4f1a6b3c8d2e9f0a7b4c1d6e3f8a5b2c9d0e";

/// A service of the compose file, ready to run here.
struct Service {
    name: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    depends_on: Vec<String>,
    /// Its health check's URL, mapped to this machine.
    health: Option<String>,
}

fn compose_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker-compose.yml")
}

fn text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn strings(v: &Yaml) -> Vec<String> {
    match v {
        Yaml::Sequence(items) => items.iter().filter_map(text).collect(),
        other => text(other)
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

/// `${NAME}`, `${NAME:?message}`, `${NAME:-default}` and `$$`, as compose interpolates them; every
/// variable is [`SECRET`] (what the file requires of its user) unless it has a default.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(end) = rest.strip_prefix("${").and_then(|r| r.find('}')) {
            let inner = &rest[2..2 + end];
            match inner.split_once(":-") {
                Some((_, default)) => out.push_str(default),
                None => out.push_str(SECRET),
            }
            rest = &rest[2 + end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Where each `host:port` of the file is on this machine.
struct Addresses {
    broker: String,
    services: Vec<String>,
    ports: HashMap<(String, u16), u16>,
}

impl Addresses {
    fn port(&mut self, service: &str, port: u16) -> u16 {
        *self
            .ports
            .entry((service.to_string(), port))
            .or_insert_with(free_port)
    }

    /// `s` with `<service>:<port>` mapped, and `0.0.0.0:<port>`, `127.0.0.1:<port>` and
    /// `localhost:<port>` taken as `own`'s.
    fn map(&mut self, own: &str, s: &str) -> String {
        let mut out = String::new();
        let mut i = 0;
        let bytes = s.as_bytes();
        let hosts: Vec<String> = self
            .services
            .iter()
            .map(String::as_str)
            .chain(["0.0.0.0", "127.0.0.1", "localhost"])
            .map(String::from)
            .collect();
        'scan: while i < s.len() {
            let boundary = i == 0 || {
                let c = bytes[i - 1];
                !(c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_')
            };
            if boundary {
                for host in &hosts {
                    let Some(after) = s[i..].strip_prefix(&format!("{host}:")) else {
                        continue;
                    };
                    let digits = after.bytes().take_while(u8::is_ascii_digit).count();
                    let Ok(port) = after[..digits].parse::<u16>() else {
                        continue;
                    };
                    if host == "redpanda" {
                        out.push_str(&self.broker);
                    } else {
                        let owner = if self.services.contains(host) {
                            host.clone()
                        } else {
                            own.to_string()
                        };
                        let mapped = self.port(&owner, port);
                        out.push_str(&format!("127.0.0.1:{mapped}"));
                    }
                    i += host.len() + 1 + digits;
                    continue 'scan;
                }
            }
            let c = s[i..].chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
        out
    }
}

/// Every service but the broker, mapped to this machine; volumes become directories under
/// `volumes`.
fn services(broker: &str, volumes: &Path) -> Vec<Service> {
    let file = compose_file();
    let source = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    let mut doc: Yaml = serde_yaml_ng::from_str(&source).expect("docker-compose.yml is YAML");
    doc.apply_merge().expect("merge keys");
    let declared = doc["services"]
        .as_mapping()
        .expect("docker-compose.yml has services")
        .clone();
    let names: Vec<String> = declared.keys().filter_map(text).collect();
    let mut addresses = Addresses {
        broker: broker.to_string(),
        services: names.clone(),
        ports: HashMap::new(),
    };
    let mut out = Vec::new();
    for (name, spec) in declared.iter() {
        let name = text(name).expect("a service name");
        if spec.get("image").is_some() && spec.get("build").is_none() {
            // The broker (redpanda): the test's own broker stands in for it.
            continue;
        }
        // Volume mounts, `name:/path`: the path becomes a directory of the test's.
        let mut mounts = Vec::new();
        for v in spec
            .get("volumes")
            .and_then(Yaml::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(text)
        {
            if let Some((volume, path)) = v.split_once(':') {
                let path = path.split(':').next().unwrap_or(path).to_string();
                let dir = volumes.join(volume.trim_start_matches("./"));
                std::fs::create_dir_all(&dir).expect("volume directory");
                mounts.push((path, dir));
            }
        }
        let mut env = BTreeMap::new();
        match spec.get("environment") {
            Some(Yaml::Mapping(m)) => {
                for (k, v) in m {
                    let (Some(k), Some(v)) = (text(k), text(v)) else {
                        panic!("service {name}: environment entries are scalars");
                    };
                    env.insert(k, v);
                }
            }
            Some(Yaml::Sequence(items)) => {
                for item in items.iter().filter_map(text) {
                    let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                    env.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
        for value in env.values_mut() {
            let mut v = addresses.map(&name, &interpolate(value));
            for (path, dir) in &mounts {
                v = v.replace(path.as_str(), &dir.display().to_string());
            }
            *value = v;
        }
        let depends_on = match spec.get("depends_on") {
            Some(Yaml::Mapping(m)) => m.keys().filter_map(text).collect(),
            Some(other) => strings(other),
            None => Vec::new(),
        };
        let health = spec
            .get("healthcheck")
            .and_then(|h| h.get("test"))
            .map(strings)
            .and_then(|words| {
                let joined = words.join(" ");
                let start = joined.find("http://")?;
                let url: String = joined[start..]
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != '\'' && *c != '"')
                    .collect();
                Some(addresses.map(&name, &url))
            });
        out.push(Service {
            name,
            command: spec.get("command").map(strings).unwrap_or_default(),
            env,
            depends_on,
            health,
        });
    }
    out
}

/// A service's process and where its output goes.
struct Running {
    _process: ChildGuard,
    log: PathBuf,
}

fn logs(running: &BTreeMap<String, Running>) -> String {
    running
        .iter()
        .map(|(name, r)| {
            let log = std::fs::read_to_string(&r.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            format!(
                "--- {name} (last lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn healthy(http: &reqwest::Client, url: &str) -> bool {
    http.get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

#[tokio::test]
async fn every_compose_service_as_its_own_process_carries_an_event_to_a_kinesis_export() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let kinesis = Kinesalite::start().await;
    kinesis.create_stream("exports", 1).await;
    let namespace = unique_name("compose");
    let base = std::env::temp_dir().join(format!("cdp-{namespace}"));
    let volumes = base.join("volumes");
    let services = services(&broker.bootstrap(), &volumes);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");

    // Every stage has a service, and every service names a stage.
    let commands: Vec<&str> = services
        .iter()
        .filter_map(|s| s.command.first().map(String::as_str))
        .collect();
    for stage in ["control", "edge", "validate", "lake", "profile", "sinks"] {
        assert!(
            commands.contains(&stage),
            "docker-compose.yml runs `cdp {stage}`: {commands:?}"
        );
    }

    // Started in dependency order, each once what it depends on answers its health check.
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut healthy_set: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while healthy_set.len() < services.len() {
        assert!(
            Instant::now() < deadline,
            "not every service healthy within 180 s (healthy: {healthy_set:?})\n{}",
            logs(&running)
        );
        for s in &services {
            let ready = s
                .depends_on
                .iter()
                .all(|d| healthy_set.contains(d) || !services.iter().any(|o| &o.name == d));
            if ready && !running.contains_key(&s.name) {
                let log = base.join(format!("{}.log", s.name));
                let file = std::fs::File::create(&log).expect("log file");
                let process = ChildGuard::spawn(
                    Command::new(env!("CARGO_BIN_EXE_cdp"))
                        .args(&s.command)
                        .env_clear()
                        .env("PATH", std::env::var("PATH").unwrap_or_default())
                        .envs(&s.env)
                        .env("CDP_TOPICS__NAMESPACE", &namespace)
                        .env("RUST_LOG", "info")
                        .env("CDP_LOG_FORMAT", "text")
                        .stdin(Stdio::null())
                        .stdout(file.try_clone().expect("log file"))
                        .stderr(file),
                    &format!("cdp {}", s.command.join(" ")),
                );
                running.insert(
                    s.name.clone(),
                    Running {
                        _process: process,
                        log,
                    },
                );
            }
            if running.contains_key(&s.name) && !healthy_set.contains(&s.name) {
                let url = s
                    .health
                    .as_deref()
                    .unwrap_or_else(|| panic!("service {} has no HTTP health check", s.name));
                if healthy(&http, url).await {
                    healthy_set.push(s.name.clone());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Control's and the edge's addresses: their listeners in their own services' environment.
    let listener = |stage: &str, key: &str| -> String {
        let s = services
            .iter()
            .find(|s| s.command.first().map(String::as_str) == Some(stage))
            .expect("a service runs the stage");
        let listen = s
            .env
            .get(key)
            .unwrap_or_else(|| panic!("service {} sets {key}", s.name));
        format!("http://{listen}")
    };
    let control = listener("control", "CDP_CONTROL__LISTEN");
    let edge = listener("edge", "CDP_EDGE__LISTEN");
    let admin = services
        .iter()
        .find_map(|s| s.env.get("CDP_CONTROL__ADMIN_TOKEN").cloned())
        .expect("the admin token in the file");
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut request = http
            .request(method, format!("{control}{path}"))
            .bearer_auth(&admin)
            .header("x-gw-ims-org-id", ORG)
            .header("x-sandbox-name", SANDBOX);
        if let Some(body) = body {
            request = request.json(&body);
        }
        async move {
            let resp = request.send().await.expect("control answers");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text)),
            )
        }
    };
    let create = |path: &'static str, body: Value| {
        let call = &call;
        async move {
            let (status, answer) = call(reqwest::Method::POST, path, Some(body)).await;
            assert!(
                status == 200 || status == 201,
                "POST {path}: {status} {answer}"
            );
            answer
        }
    };

    // A profile-enabled event dataset and its stream, a segment of buyers, and a flow that
    // exports its members to the Kinesis stream.
    let schema = create(
        "/xdm/schemas",
        json!({"title": "Compose events", "tenant": "acme", "orgId": ORG,
               "class": "_xdm.context.experienceevent",
               "fieldGroups": ["environment-details", "web-details", "commerce-details"],
               "profileEnabled": true}),
    )
    .await;
    let schema_id = schema["id"].as_str().expect("schema id").to_string();
    let dataset = create(
        "/datasets",
        json!({"name": "compose events", "orgId": ORG, "schemaRef": {"id": schema_id},
               "profileEnabled": true}),
    )
    .await;
    let stream = create(
        "/streams",
        json!({"name": "compose", "orgId": ORG, "datasetId": dataset["id"]}),
    )
    .await;
    let segment = create(
        "/segment/definitions",
        json!({"name": "Buyers", "schema": {"name": "_xdm.context.profile"},
               "expression": {"type": "PQL", "format": "pql/text",
                              "value": "xEvent.any(eventType = \"commerce.purchases\")"}}),
    )
    .await;
    let segment_id = segment["id"].as_str().expect("segment id").to_string();
    let connection = create(
        "/connections",
        json!({"name": "Connection for Amazon Kinesis",
               "connectionSpec": {"id": KINESIS_SPEC, "version": "1.0"},
               "auth": {"specName": "Amazon Kinesis authentication credentials",
                        "params": {"accessKeyId": Kinesalite::ACCESS_KEY_ID,
                                   "secretKey": Kinesalite::SECRET_KEY,
                                   "region": Kinesalite::REGION,
                                   "connectionUrl": kinesis.endpoint()}}}),
    )
    .await;
    let target = create(
        "/targetConnections",
        json!({"name": "Amazon Kinesis target connection", "baseConnection": connection["id"],
               "connectionSpec": {"id": KINESIS_SPEC, "version": "1.0"},
               "data": {"format": "json"},
               "params": {"stream": "exports", "region": Kinesalite::REGION}}),
    )
    .await;
    let base_connection = create(
        "/connections",
        json!({"name": "Base connection to Experience Platform",
               "connectionSpec": {"id": PROFILE_SOURCE_SPEC, "version": "1.0"}}),
    )
    .await;
    let source = create(
        "/sourceConnections",
        json!({"name": "Connecting to Unified Profile Service",
               "connectionSpec": {"id": PROFILE_SOURCE_SPEC, "version": "1.0"},
               "baseConnectionId": base_connection["id"], "data": {"format": "json"},
               "params": {}}),
    )
    .await;
    let flow = create(
        "/flows",
        json!({"name": "Buyers to Kinesis",
               "flowSpec": {"id": PROFILE_FLOW_SPEC, "version": "1.0"},
               "sourceConnectionIds": [source["id"]],
               "targetConnectionIds": [target["id"]]}),
    )
    .await;
    let flow_id = flow["id"].as_str().expect("flow id");
    let etag = flow["etag"].as_str().expect("flow etag");
    let resp = http
        .patch(format!("{control}/flows/{flow_id}"))
        .bearer_auth(&admin)
        .header("x-gw-ims-org-id", ORG)
        .header("x-sandbox-name", SANDBOX)
        .header("If-Match", format!("\"{etag}\""))
        .json(&json!([
            {"op": "add", "path": "/transformations/0/params/segmentSelectors/selectors/-",
             "value": {"type": "PLATFORM_SEGMENT",
                       "value": {"name": "Buyers", "description": "", "id": segment_id}}}
        ]))
        .send()
        .await
        .expect("PATCH the flow");
    let status = resp.status().as_u16();
    assert_eq!(
        status,
        202,
        "activating the flow: {}",
        resp.text().await.unwrap_or_default()
    );

    // hank buys something, through the edge (once the edge has read the new stream).
    let stream_id = stream["id"].as_str().expect("stream id");
    let message = json!({"messages": [{
        "header": {"schemaRef": {"id": schema_id,
                                 "contentType": "application/vnd.adobe.xed-full+json;version=1"},
                   "imsOrgId": ORG, "datasetId": dataset["id"]},
        "body": {"xdmMeta": {"schemaRef": {"id": schema_id}},
                 "xdmEntity": {"_id": "compose-buy-1",
                               "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                               "eventType": "commerce.purchases",
                               "identityMap": {"CRMID": [{"id": "hank", "primary": true}]}}}}]});
    let mut answer = (0, Value::Null);
    eventually(
        Duration::from_secs(30),
        "the edge to take the event",
        async || {
            let resp = http
                .post(format!("{edge}/collection/batch/{stream_id}"))
                .json(&message)
                .send()
                .await
                .expect("the edge answers");
            let status = resp.status().as_u16();
            answer = (status, resp.json().await.unwrap_or(Value::Null));
            status != 404
        },
    )
    .await;
    // 207 lists each message's outcome; one without a status was written.
    assert!(
        answer.0 == 200
            || (answer.0 == 207
                && answer.1["responses"].as_array().is_some_and(|r| r
                    .iter()
                    .all(|m| m.get("status").is_none_or(|s| s.as_u64() == Some(200))))),
        "the edge took the event: {} {}",
        answer.0,
        answer.1
    );

    // The export in Kinesis: hank, a realized member of the segment.
    let mut delivered = Vec::new();
    let started = Instant::now();
    while delivered.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "no export in Kinesis within 90 s\n{}",
            logs(&running)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        delivered = kinesis.read_all("exports").await;
    }
    assert_eq!(delivered.len(), 1, "one export: {delivered:?}");
    let document: Value = serde_json::from_slice(&delivered[0].data).expect("export JSON");
    assert_eq!(
        document["segmentMembership"]["ups"][&segment_id]["status"], "realized",
        "{document}"
    );
    assert_eq!(
        document["identityMap"]["crmid"],
        json!([{"id": "hank"}]),
        "{document}"
    );

    // The lake wrote the event into the dataset's files, on its volume.
    let parquet = |dir: &Path| -> usize {
        fn walk(dir: &Path, n: &mut usize) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if path.extension().is_some_and(|e| e == "parquet") {
                    *n += 1;
                }
            }
        }
        let mut n = 0;
        walk(dir, &mut n);
        n
    };
    let started = Instant::now();
    while parquet(&volumes) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no Parquet file under the compose volumes ({}) within 60 s\n{}",
            volumes.display(),
            logs(&running)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    drop(running);
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn interpolation_fills_required_variables_and_keeps_defaults() {
    assert_eq!(interpolate("${CDP_ADMIN_TOKEN:?set it}"), SECRET);
    assert_eq!(interpolate("${PORT:-8080}"), "8080");
    assert_eq!(interpolate("a$$b"), "a$b");
    assert_eq!(interpolate("plain"), "plain");
}

#[test]
fn addresses_map_services_listeners_and_the_broker() {
    let mut a = Addresses {
        broker: "127.0.0.1:19999".into(),
        services: vec!["redpanda".into(), "control".into(), "profile".into()],
        ports: HashMap::new(),
    };
    assert_eq!(a.map("edge", "redpanda:9092"), "127.0.0.1:19999");
    let control = a.map("edge", "http://control:8081/x");
    let listen = a.map("control", "0.0.0.0:8081");
    assert_eq!(control.replace("/x", ""), format!("http://{listen}"));
    let own = a.map("control", "http://127.0.0.1:8081/readyz");
    assert_eq!(own, format!("http://{listen}/readyz"));
    // A longer name that merely ends like a service is left alone.
    assert_eq!(a.map("edge", "mycontrol:8081"), "mycontrol:8081");
}
