//! Schema updates and dataset creations that race across two control instances, against a real
//! broker. Each instance decides from its own view of the catalog, which can lag the topic; the
//! tests make one view lag on purpose (its follower runs on a runtime the test can freeze) and
//! issue the requests in the order that used to break the rule "a version is immutable once a
//! dataset uses it":
//!
//! - a stale instance replaces version 1 in place after another instance bound a dataset to it;
//! - a stale instance binds a profile-enabled dataset to version 1 after another instance
//!   replaced version 1 in place with one that is not profile-enabled.
//!
//! Whatever the views show, the catalog topic's order decides, the same way in every instance.

mod common;

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use cdp_contract::admin::ensure_topics;
use cdp_contract::{KafkaSettings, Topics};
use cdp_control::{CatalogView, CatalogWriter};
use cdp_registry::{xdm_router, RegistryState};
use cdp_test_support::{eventually, unique_name, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use reqwest::StatusCode;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A one-worker runtime whose worker the test can occupy, so that nothing spawned on it (an
/// instance's catalog follower) makes progress until it is thawed.
struct Freezer {
    runtime: Option<tokio::runtime::Runtime>,
    hold: Option<mpsc::Sender<()>>,
}

impl Freezer {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("follower runtime");
        Self {
            runtime: Some(runtime),
            hold: None,
        }
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.runtime.as_ref().expect("runtime").handle().clone()
    }

    /// Returns once the worker is blocked.
    fn freeze(&mut self) {
        let (hold, held) = mpsc::channel::<()>();
        let (blocked, is_blocked) = mpsc::channel::<()>();
        self.handle().spawn(async move {
            let _ = blocked.send(());
            // Blocking the only worker on purpose: this is the freeze.
            let _ = held.recv();
        });
        is_blocked
            .recv_timeout(WAIT)
            .expect("the follower runtime did not freeze");
        self.hold = Some(hold);
    }

    fn thaw(&mut self) {
        self.hold = None;
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        self.thaw();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A registry instance on 127.0.0.1:0 with its own catalog view; with `follower_on`, the view's
/// follower runs on that runtime.
async fn instance(
    kafka: &KafkaSettings,
    topics: &Topics,
    follower_on: Option<tokio::runtime::Handle>,
) -> String {
    let view = match follower_on {
        Some(handle) => {
            let _entered = handle.enter();
            CatalogView::start(kafka, topics).expect("catalog view")
        }
        None => CatalogView::start(kafka, topics).expect("catalog view"),
    };
    view.caught_up(WAIT).await.expect("catalog read");
    let writer = CatalogWriter::new(kafka, topics, view.clone()).expect("catalog writer");
    let auth = cdp_catalog::principal::Authenticator::new(
        common::ADMIN.into(),
        view.clone(),
        cdp_catalog::tokens::Tokens::new(common::TOKEN_SECRET),
    );
    let state = RegistryState::start(kafka, topics, view, writer)
        .await
        .expect("registry state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, xdm_router(state, auth)).await });
    format!("http://{addr}")
}

/// The catalog topic's end offset: how a test knows a stale instance's write reached the broker.
async fn catalog_end(kafka: &KafkaSettings, topics: &Topics) -> i64 {
    let consumer: BaseConsumer = kafka
        .reader(&unique_name("race-watermarks"))
        .create()
        .expect("consumer");
    let topic = topics.catalog();
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(5))
            .expect("watermarks")
            .1
    })
    .await
    .unwrap()
}

struct Setup {
    _broker: Broker,
    kafka: KafkaSettings,
    topics: Topics,
    /// Up to date.
    a: String,
    /// Its view can be frozen.
    b: String,
    freezer: Freezer,
    http: reqwest::Client,
}

async fn setup() -> Setup {
    let broker = Broker::start();
    let kafka = broker.kafka();
    let topics = Topics::new(unique_name("race"));
    ensure_topics(&kafka, &[cdp_control::catalog::topic_spec(&topics)])
        .await
        .expect("catalog topic");
    let freezer = Freezer::new();
    let a = instance(&kafka, &topics, None).await;
    let b = instance(&kafka, &topics, Some(freezer.handle())).await;
    Setup {
        _broker: broker,
        kafka,
        topics,
        a,
        b,
        freezer,
        http: common::http(),
    }
}

impl Setup {
    async fn create_schema(&self, profile_enabled: bool) -> String {
        let r = self
            .http
            .post(format!("{}/xdm/schemas", self.a))
            .json(&json!({
                "title": "Web events", "tenant": "acme", "class": "_xdm.context.experienceevent",
                "fieldGroups": ["environment-details"], "profileEnabled": profile_enabled
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let id = r.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        // B must know the schema before its view is frozen.
        eventually(WAIT, "B sees the schema", async || {
            self.version(&self.b, &id, 1).await.is_some()
        })
        .await;
        id
    }

    async fn version(&self, base: &str, id: &str, version: u32) -> Option<Value> {
        let r = self
            .http
            .get(format!("{base}/xdm/schemas/{}?version={version}", enc(id)))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::OK {
            Some(r.json().await.unwrap())
        } else {
            None
        }
    }

    async fn datasets(&self, base: &str) -> Vec<Value> {
        let list: Value = self
            .http
            .get(format!("{base}/datasets"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        list["datasets"].as_array().cloned().unwrap_or_default()
    }

    /// Sends a request to the frozen B, waits until its catalog write is on the topic, thaws B
    /// and answers B's response.
    async fn through_stale_b(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let before = catalog_end(&self.kafka, &self.topics).await;
        let pending = tokio::spawn(request.send());
        eventually(WAIT, "B's write on the catalog topic", async || {
            catalog_end(&self.kafka, &self.topics).await > before
        })
        .await;
        self.freezer.thaw();
        tokio::time::timeout(WAIT * 2, pending)
            .await
            .expect("B answers once thawed")
            .unwrap()
            .unwrap()
    }

    /// What a control instance started now folds from the topic.
    async fn fresh_view(&self) -> CatalogView {
        let view = CatalogView::start(&self.kafka, &self.topics).expect("catalog view");
        view.caught_up(WAIT).await.expect("catalog read");
        view
    }
}

/// A binds a dataset to version 1; B, whose view has not seen the dataset, is asked to change
/// the schema. Version 1 must keep the definition the dataset was bound to, everywhere; the
/// change becomes version 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_from_a_stale_view_never_changes_a_bound_version() {
    let mut s = setup().await;
    let id = s.create_schema(false).await;

    s.freezer.freeze();
    let r = s
        .http
        .post(format!("{}/datasets", s.a))
        .json(&json!({ "name": "web", "orgId": "org@AdobeOrg", "schemaRef": { "id": id } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let dataset: Value = r.json().await.unwrap();
    assert_eq!(dataset["schemaVersion"], 1);
    let bound = s.version(&s.a, &id, 1).await.expect("version 1");

    let put = s
        .http
        .put(format!("{}/xdm/schemas/{}", s.b, enc(&id)))
        .json(&json!({ "fieldGroups": ["environment-details", "web-details"] }));
    let r = s.through_stale_b(put).await;
    let status = r.status();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        (status, &answer["version"]),
        (StatusCode::CREATED, &json!(2)),
        "the change must become version 2, not replace the bound version 1"
    );

    for (who, base) in [("A", &s.a), ("B", &s.b)] {
        // A learns of version 2 through its own view, a moment after B answered.
        let v2 = eventually(WAIT, &format!("{who} sees version 2"), async || {
            s.version(base, &id, 2).await
        })
        .await;
        assert!(
            v2["fieldGroups"]
                .as_array()
                .unwrap()
                .contains(&json!("web-details")),
            "{who}: {v2}"
        );
        let v1 = s.version(base, &id, 1).await.expect("version 1");
        assert_eq!(
            v1["definition"], bound["definition"],
            "{who}: version 1 changed under the dataset bound to it"
        );
    }
    let fresh = s.fresh_view().await;
    let catalog = fresh.read();
    assert_eq!(
        catalog.schema(&id, 1).map(|v| &v.definition),
        Some(&bound["definition"]),
        "a fresh fold of the topic disagrees about version 1"
    );
    assert_eq!(catalog.schema(&id, 2).map(|v| v.version), Some(2));
    let d = &catalog.datasets[dataset["id"].as_str().unwrap()];
    assert_eq!((d.schema_id.as_str(), d.schema_version), (id.as_str(), 1));
}

/// A replaces version 1 in place with a definition that is not profile-enabled; B, whose view
/// still has the old version 1, is asked for a profile-enabled dataset of it. The dataset must be
/// checked against the version it is bound to, so it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dataset_from_a_stale_view_is_checked_against_the_current_version() {
    let mut s = setup().await;
    let id = s.create_schema(true).await;

    s.freezer.freeze();
    let r = s
        .http
        .put(format!("{}/xdm/schemas/{}", s.a, enc(&id)))
        .json(&json!({ "profileEnabled": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "version 1 is not used yet");
    assert_eq!(r.json::<Value>().await.unwrap()["version"], 1);

    let create = s.http.post(format!("{}/datasets", s.b)).json(&json!({
        "name": "web", "orgId": "org@AdobeOrg", "schemaRef": { "id": id }, "profileEnabled": true
    }));
    let r = s.through_stale_b(create).await;
    let status = r.status();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a profile-enabled dataset of a version that is not profile-enabled: {answer}"
    );
    assert!(
        answer["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not enabled for Profile"),
        "{answer}"
    );

    for (who, base) in [("A", &s.a), ("B", &s.b)] {
        assert!(s.datasets(base).await.is_empty(), "{who} lists a dataset");
    }
    assert!(s.fresh_view().await.read().datasets.is_empty());
}
