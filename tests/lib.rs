//! End-to-end harness: a real broker (tansu, or the one `CDP_TEST_BOOTSTRAP` names), control and
//! the edge started through the same code as `cdp control` and `cdp edge` — as two separate
//! runtimes, so the edge learns about streams only by following the catalog topic, as it does
//! in production. Each pipeline has topics and groups of its own, so pipelines can share a
//! broker.

use std::time::Duration;

use cdp::{CdpConfig, Running, Stages};
use cdp_contract::Topics;
use cdp_test_support::{eventually, unique_name, Broker, Record, XdmFixture};
use serde_json::{json, Value};

pub const ADMIN: &str = "test-admin-token";
pub const SECRET: &str = "test-token-secret";

/// The profile stages of a pipeline: identity and the engine (the intake runs in validate).
pub struct ProfileStages {
    // Field order is drop order: the engine stops before the stages feeding it.
    pub engine: Running,
    pub identity: Running,
}

pub struct Pipeline {
    // Field order is drop order: the stages stop before the broker does.
    pub edge_running: Running,
    pub validate_running: Running,
    pub lake_running: Running,
    pub control_running: Running,
    pub broker: Broker,
    pub config: CdpConfig,
    pub edge: String,
    pub control: String,
    pub http: reqwest::Client,
}

impl Pipeline {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut CdpConfig)) -> Self {
        Self::start_on(Broker::start(), adjust).await
    }

    /// On a given broker: for a test that needs the local tansu ([`Broker::start_local`]).
    pub async fn start_on(broker: Broker, adjust: impl FnOnce(&mut CdpConfig)) -> Self {
        cdp_contract::telemetry::init_for_tests();
        let namespace = unique_name("e2e");
        let mut config = CdpConfig {
            kafka: broker.kafka(),
            topics: Topics::new(namespace.clone()),
            ..CdpConfig::default()
        };
        config.validate.group_id = format!("{namespace}-validate");
        config.lake.group_id = format!("{namespace}-lake");
        config.edge.listen = "127.0.0.1:0".into();
        config.health.listen = "127.0.0.1:0".into();
        config.edge.raw_partitions = 3;
        config.validate.partitions = 3;
        config.validate.instance_id = Some("e2e".into());
        config.profile.group_prefix = format!("{namespace}-profile");
        config.profile.instance_id = Some("e2e".into());
        config.profile.partitions = 3;
        // The profile stages' query API: a free port per process.
        config.profile.query_listen = "127.0.0.1:0".into();
        // A known port, so the lake can decode Avro values through control's registry.
        let control_port = cdp_test_support::free_port();
        config.control.listen = format!("127.0.0.1:{control_port}");
        config.lake.registry_url = format!("http://127.0.0.1:{control_port}");
        config.control.admin_token = ADMIN.into();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let lake_dir =
            std::env::temp_dir().join(format!("cdp-e2e-lake-{}-{n}", std::process::id()));
        config.lake.root = format!("file://{}", lake_dir.display());
        config.lake.flush_interval_ms = 300;
        // Pipelines of one test binary share a process: each keeps its state apart.
        config.profile.state_dir = Some(
            std::env::temp_dir()
                .join(format!("cdp-e2e-state-{}-{n}", std::process::id()))
                .display()
                .to_string(),
        );
        config.auth.token_secret = SECRET.into();
        adjust(&mut config);
        let control_running = cdp::start(&config, Stages::CONTROL)
            .await
            .expect("start control");
        let edge_running = cdp::start(&config, Stages::EDGE).await.expect("start edge");
        let validate_running = cdp::start(&config, Stages::VALIDATE)
            .await
            .expect("start validate");
        let lake_running = cdp::start(&config, Stages::LAKE).await.expect("start lake");
        let edge = format!("http://{}", edge_running.edge_addr.expect("edge address"));
        let control = format!(
            "http://{}",
            control_running.control_addr.expect("control address")
        );
        Pipeline {
            edge_running,
            validate_running,
            lake_running,
            control_running,
            broker,
            config,
            edge,
            control,
            // A request that never answers fails the test with its URL, not at the watchdog.
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("the test's HTTP client"),
        }
    }

    /// Starts the profile stages in this process: identity, and the profile engine
    /// (profile state and segments) as a part of its own, so a test can stop and restart it.
    /// Dropping the result stops them.
    pub async fn start_profile(&self) -> ProfileStages {
        self.start_profile_with(|_| {}).await
    }

    pub async fn start_profile_with(&self, adjust: impl FnOnce(&mut CdpConfig)) -> ProfileStages {
        let mut config = self.config.clone();
        config.profile.registry_url = self.control.clone();
        adjust(&mut config);
        let identity = cdp::start(&config, Stages::IDENTITY)
            .await
            .expect("start the identity stage");
        let engine = cdp::start(&config, Stages::ENGINE)
            .await
            .expect("start the profile engine");
        ProfileStages { engine, identity }
    }

    /// Starts the profile engine alone in this process (after [`ProfileStages::engine`] was
    /// shut down); dropping the result stops it.
    pub async fn start_engine(&self) -> Running {
        self.start_with_stages(Stages::ENGINE, |_| {}).await
    }

    /// Starts `stages` in this process with an adjusted configuration (a second engine
    /// instance, say); dropping the result stops them.
    pub async fn start_with_stages(
        &self,
        stages: Stages,
        adjust: impl FnOnce(&mut CdpConfig),
    ) -> Running {
        let mut config = self.config.clone();
        config.profile.registry_url = self.control.clone();
        adjust(&mut config);
        cdp::start(&config, stages).await.expect("start the stages")
    }

    pub fn raw_topic(&self) -> String {
        self.config.topics.ingest_raw()
    }

    /// Creates a stream through the management API and waits until the edge knows it. Without
    /// a `datasetId` in `body`, a dataset of the test event schema is created for its org.
    pub async fn create_stream(&self, mut body: Value) -> Value {
        if body.get("datasetId").is_none() {
            let org = body["orgId"].as_str().expect("orgId").to_string();
            let dataset = self
                .create_dataset_with(&org, WEB_SCHEMA, event_schema())
                .await;
            body["datasetId"] = dataset["id"].clone();
        }
        let resp = self
            .http
            .post(format!("{}/streams", self.control))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("POST /streams");
        assert_eq!(
            resp.status(),
            201,
            "create stream: {}",
            resp.text().await.unwrap_or_default()
        );
        let stream: Value = resp.json().await.expect("stream JSON");
        let id = stream["id"].as_str().expect("stream id").to_string();
        self.wait_for_edge(|view| view.streams.contains_key(&id))
            .await;
        stream
    }

    /// Creates an XDM schema with `definition` and a dataset of it in `org`; returns the dataset.
    pub async fn create_dataset(&self, org: &str, definition: Value) -> Value {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let schema_id = format!("https://ns.adobe.com/acme/schemas/test{n}");
        self.create_dataset_with(org, &schema_id, definition).await
    }

    /// Like [`Self::create_dataset`], with a given schema id (version 1).
    pub async fn create_dataset_with(
        &self,
        org: &str,
        schema_id: &str,
        definition: Value,
    ) -> Value {
        self.create_dataset_adjusted(org, schema_id, definition, |_| {})
            .await
    }

    /// Like [`Self::create_dataset_with`], with the fixture changed first (a profile class,
    /// the profile toggle off, …).
    pub async fn create_dataset_adjusted(
        &self,
        org: &str,
        schema_id: &str,
        definition: Value,
        adjust: impl FnOnce(&mut XdmFixture),
    ) -> Value {
        let writer = cdp_control::CatalogWriter::new(
            &self.config.kafka,
            &self.config.topics,
            self.control_running.catalog.clone(),
        )
        .expect("catalog writer");
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut fixture = XdmFixture::new(
            schema_id,
            &format!("ds{n}-{}", std::process::id()),
            org,
            definition,
        );
        fixture.schema.title = format!("test schema {n}");
        fixture.dataset.name = format!("dataset {n}");
        adjust(&mut fixture);
        fixture.write(&writer).await;
        let dataset = fixture.dataset;
        let id = dataset.id.clone();
        self.wait_for_edge(|c| c.datasets.contains_key(&id)).await;
        serde_json::to_value(dataset).expect("dataset JSON")
    }

    /// Waits (up to 5 s) until the edge's own catalog view satisfies `ready`.
    pub async fn wait_for_edge(&self, ready: impl Fn(&cdp_control::catalog::CatalogState) -> bool) {
        eventually(
            Duration::from_secs(5),
            "the edge to see the catalog change",
            async || ready(&self.edge_running.catalog.read()),
        )
        .await;
    }

    /// Creates an API key (role `send`, every sandbox); returns (key id, full API key string).
    pub async fn create_key(&self, org: &str) -> (String, String) {
        self.create_key_with(json!({"orgId": org})).await
    }

    /// Creates an API key from `body` (`orgId`, and `roles` or `sandboxes` when wanted);
    /// returns (key id, full API key string).
    pub async fn create_key_with(&self, mut body: Value) -> (String, String) {
        body["name"] = json!("test");
        let v: Value = self
            .http
            .post(format!("{}/api-keys", self.control))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .expect("POST /api-keys")
            .json()
            .await
            .expect("key JSON");
        let id = v["id"].as_str().expect("key id").to_string();
        self.wait_for_edge(|c| c.api_keys.contains_key(&id)).await;
        (id, v["apiKey"].as_str().expect("apiKey").to_string())
    }

    pub async fn token(&self, api_key: &str, days: u32) -> String {
        let resp = self
            .http
            .post(format!("{}/tokens", self.control))
            .json(&json!({"apiKey": api_key, "days": days}))
            .send()
            .await
            .expect("POST /tokens");
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.expect("token JSON");
        v["accessToken"].as_str().expect("accessToken").to_string()
    }

    /// Posts `messages` to a stream as one `/collection/batch` request; asserts the 207 and
    /// returns its body.
    pub async fn post_batch(&self, stream: &Value, messages: Vec<Value>) -> Value {
        let id = stream["id"].as_str().expect("stream id");
        let (status, resp, _) = self
            .post(
                &format!("/collection/batch/{id}"),
                "application/json",
                json!({ "messages": messages }).to_string(),
            )
            .await;
        assert_eq!(status, 207, "{resp}");
        resp
    }

    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        self.post_with(path, content_type, body, None).await
    }

    pub async fn post_with(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
        bearer: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.edge))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("edge request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value, headers)
    }

    /// Reads the raw topic until `expected` records arrived, then a little longer for extras.
    pub async fn raw_records(&self, expected: usize) -> Vec<Record> {
        self.broker
            .read_committed(&self.raw_topic(), expected, Duration::from_secs(20))
            .await
    }
}

/// The schema of the datasets `create_stream` makes when not given one.
pub const WEB_SCHEMA: &str = "https://ns.adobe.com/acme/schemas/web";

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// An ExperienceEvent-like schema: `_id` and `timestamp` required, the rest open.
pub fn event_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["_id", "timestamp"],
        "properties": {
            "_id": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "eventType": {"type": "string"},
            "identityMap": {"type": "object"}
        }
    })
}

/// A seed request with its placeholders filled in for `dataset` (its id and schema).
pub fn seed_request(name: &str, dataset: &Value) -> String {
    fixture(name)
        .replace(
            "https://ns.adobe.com/{TENANT_ID}/schemas/{SCHEMA_ID}",
            dataset["schemaId"].as_str().expect("schemaId"),
        )
        .replace("{DATASET_ID}", dataset["id"].as_str().expect("dataset id"))
        .replace("{SCHEMA_VERSION}", "version=1")
}

pub fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
