//! The Flow Service API (seed 004) against a real broker: connection specs, base, source and
//! target connections, a dataflow activated with a JSON Patch under `If-Match`, the refusals
//! (428, 412, 400s naming what is wrong, 404s, other sandboxes), and credentials that never
//! reach the catalog topic in clear.

use std::sync::Arc;
use std::time::Duration;

use cdp_catalog::flows::{
    EVENT_HUBS_SPEC, KAFKA_SPEC, KINESIS_SPEC, PROFILE_FLOW_SPEC, PROFILE_SOURCE_SPEC,
};
use cdp_catalog::{CatalogRecord, SecretKey, SegmentDefinition};
use cdp_contract::admin::ensure_topics;
use cdp_contract::Topics;
use cdp_control::flows::{router, FlowApi};
use cdp_control::{CatalogView, CatalogWriter};
use cdp_test_support::{unique_name, Broker};
use reqwest::Method;
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token";
const ORG: &str = "ACME@AdobeOrg";
const SECRET: &str = "s3cr3t-KEY";
const SAS_KEY: &str = "sas-k3y-VALUE";
const KEY_HEX: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Segment definitions of `prod` (and one of `dev`) that flows may select.
const MEN_OVER_50: &str = "72ddd79b-6b0a-4e97-a8d2-112ccd81bd02";
const LOYAL: &str = "7841ba61-23c1-4bb3-a495-00d695fe1e93";
const DEV_SEGMENT: &str = "d0d0d0d0-0000-4000-8000-000000000001";

struct Harness {
    broker: Broker,
    topics: Topics,
    view: CatalogView,
    writer: CatalogWriter,
    base: String,
    http: reqwest::Client,
}

fn segment(id: &str, name: &str, sandbox: &str) -> SegmentDefinition {
    SegmentDefinition {
        id: id.into(),
        name: name.into(),
        description: None,
        org_id: ORG.into(),
        sandbox: sandbox.into(),
        schema_name: "_xdm.context.profile".into(),
        expression: "person.birthYear < 1970".into(),
        streaming: true,
        classification: "profile only".into(),
        profile_only: true,
        creation_time: 1,
        update_time: 1,
    }
}

impl Harness {
    async fn start() -> Harness {
        let broker = Broker::start();
        let kafka = broker.kafka();
        let topics = Topics::new(unique_name("flows-api"));
        ensure_topics(&kafka, &[cdp_catalog::topic_spec(&topics)])
            .await
            .expect("topics");
        let view = CatalogView::start(&kafka, &topics).expect("catalog view");
        let writer = CatalogWriter::new(&kafka, &topics, view.clone()).expect("writer");
        for d in [
            segment(MEN_OVER_50, "Men over 50", "prod"),
            segment(LOYAL, "Loyal", "prod"),
            segment(DEV_SEGMENT, "Dev only", "dev"),
        ] {
            writer
                .put(&CatalogRecord::Segment(d))
                .await
                .expect("segment");
        }
        let mut h = Harness {
            broker,
            topics,
            view,
            writer,
            base: String::new(),
            http: reqwest::Client::new(),
        };
        h.base = h.serve(SecretKey::from_config(KEY_HEX).unwrap()).await;
        h
    }

    /// Another server of the same catalog with `key`; answers its base URL.
    async fn serve(&self, key: SecretKey) -> String {
        let app = router(FlowApi {
            view: self.view.clone(),
            writer: self.writer.clone(),
            secrets: key,
            auth: cdp_catalog::principal::Authenticator::new(
                Arc::from(ADMIN),
                self.view.clone(),
                cdp_catalog::tokens::Tokens::new("flows-api-test-token-secret"),
            ),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn req(&self, method: Method, path: &str, sandbox: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .header("x-gw-ims-org-id", ORG)
            .header("x-sandbox-name", sandbox)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value, reqwest::header::HeaderMap) {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, body, headers)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.get_in(path, "prod").await
    }

    async fn get_in(&self, path: &str, sandbox: &str) -> (u16, Value) {
        let (s, b, _) = self.send(self.req(Method::GET, path, sandbox)).await;
        (s, b)
    }

    /// POSTs `body` to `path` in `prod` and expects a 400 whose detail names each of `expected`.
    async fn refuses(&self, path: &str, body: Value, expected: &[&str]) {
        self.refuses_in("prod", path, body, expected).await
    }

    async fn refuses_in(&self, sandbox: &str, path: &str, body: Value, expected: &[&str]) {
        let (status, answer, _) = self
            .send(self.req(Method::POST, path, sandbox).json(&body))
            .await;
        assert_eq!(status, 400, "POST {path} {body} answered {answer}");
        for e in expected {
            assert!(detail(&answer).contains(e), "{e:?} not in {answer}");
        }
    }

    /// `DELETE /flows/{id}`, with `If-Match` if given; answers the status.
    async fn delete_flow(&self, id: &str, if_match: Option<&str>) -> u16 {
        let mut req = self.req(Method::DELETE, &format!("/flows/{id}"), "prod");
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        self.send(req).await.0
    }

    /// POSTs and expects a 201 with `{id, etag}`; answers the id.
    async fn create(&self, path: &str, body: &Value) -> String {
        let (status, answer, headers) = self
            .send(self.req(Method::POST, path, "prod").json(body))
            .await;
        assert_eq!(status, 201, "POST {path}: {answer}");
        let id = answer["id"].as_str().expect("id").to_string();
        let etag = answer["etag"].as_str().expect("etag");
        assert!(!etag.is_empty());
        assert_eq!(
            headers.get("etag").and_then(|v| v.to_str().ok()),
            Some(format!("\"{etag}\"").as_str())
        );
        id
    }

    async fn patch(
        &self,
        id: &str,
        if_match: Option<&str>,
        body: &Value,
    ) -> (u16, Value, Option<String>) {
        let mut req = self
            .req(Method::PATCH, &format!("/flows/{id}"), "prod")
            .json(body);
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        let (status, body, headers) = self.send(req).await;
        let etag = headers
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        (status, body, etag)
    }

    /// The seed's base connection to the platform's data and source connection.
    async fn source_connection(&self) -> String {
        let base = self
            .create(
                "/connections",
                &json!({
                    "name": "Base connection to Experience Platform",
                    "description": "This call establishes the connection to Experience Platform data",
                    "connectionSpec": {"id": PROFILE_SOURCE_SPEC, "version": "1.0"}
                }),
            )
            .await;
        self.create(
            "/sourceConnections",
            &json!({
                "name": "Connecting to Unified Profile Service",
                "description": "Optional",
                "connectionSpec": {"id": PROFILE_SOURCE_SPEC, "version": "1.0"},
                "baseConnectionId": base,
                "data": {"format": "json"},
                "params": {}
            }),
        )
        .await
    }

    /// A Kinesis base connection (its secret key is [`SECRET`]).
    async fn kinesis_connection(&self) -> String {
        self.create(
            "/connections",
            &json!({
                "name": "Connection for Amazon Kinesis",
                "description": "your company's holiday campaign",
                "connectionSpec": {"id": KINESIS_SPEC, "version": "1.0"},
                "auth": {
                    "specName": "Amazon Kinesis authentication credentials",
                    "params": {"accessKeyId": "AKIATESTACCESSID", "secretKey": SECRET, "region": "eu-west-1"}
                }
            }),
        )
        .await
    }

    /// An Event Hubs base connection (its key is [`SAS_KEY`]), with a Kafka `endpoint` if given.
    async fn hubs_connection(&self, endpoint: Option<&str>) -> String {
        let mut params = json!({"sasKeyName": "send", "sasKey": SAS_KEY, "namespace": "acme"});
        if let Some(endpoint) = endpoint {
            params["endpoint"] = json!(endpoint);
        }
        self.create(
            "/connections",
            &json!({"name": "hubs", "connectionSpec": {"id": EVENT_HUBS_SPEC, "version": "1.0"},
                    "auth": {"specName": "Azure Event Hubs authentication credentials",
                             "params": params}}),
        )
        .await
    }

    async fn kinesis_target(&self, base: &str) -> String {
        self.create(
            "/targetConnections",
            &json!({
                "name": "Amazon Kinesis target connection",
                "description": "Connection to Amazon Kinesis",
                "baseConnection": base,
                "connectionSpec": {"id": KINESIS_SPEC, "version": "1.0"},
                "data": {"format": "json"},
                "params": {"stream": "profiles", "region": "eu-west-1"}
            }),
        )
        .await
    }

    async fn flow(&self, source: &str, target: &str) -> String {
        self.create(
            "/flows",
            &json!({
                "name": "Create dataflow to Amazon Kinesis",
                "description": "This operation creates a dataflow to Amazon Kinesis",
                "flowSpec": {"id": PROFILE_FLOW_SPEC, "version": "1.0"},
                "sourceConnectionIds": [source],
                "targetConnectionIds": [target]
            }),
        )
        .await
    }

    async fn etag_of(&self, flow: &str) -> String {
        let (status, body) = self.get(&format!("/flows/{flow}")).await;
        assert_eq!(status, 200, "{body}");
        body["etag"].as_str().expect("etag").to_string()
    }
}

fn add_segment(id: &str, name: &str) -> Value {
    json!({
        "op": "add",
        "path": "/transformations/0/params/segmentSelectors/selectors/-",
        "value": {"type": "PLATFORM_SEGMENT",
                  "value": {"name": name, "description": format!("{name} (test)"), "id": id}}
    })
}

fn add_attribute(path: &str) -> Value {
    json!({
        "op": "add",
        "path": "/transformations/0/params/profileSelectors/selectors/-",
        "value": {"type": "JSON_PATH", "value": {"operator": "EXISTS", "path": path}}
    })
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_sequence_activates_segments_and_attributes() {
    let h = Harness::start().await;

    // The destinations there are.
    let (status, specs) = h.get("/connectionSpecs").await;
    assert_eq!(status, 200, "{specs}");
    let items = specs["items"].as_array().expect("items");
    let by_id = |id: &str| items.iter().find(|s| s["id"] == id).cloned().expect(id);
    assert_eq!(by_id(KINESIS_SPEC)["name"], "Amazon Kinesis");
    assert_eq!(by_id(EVENT_HUBS_SPEC)["name"], "Azure Event Hubs");
    assert_eq!(
        by_id(PROFILE_SOURCE_SPEC)["name"],
        "Unified Profile Service"
    );
    assert_eq!(by_id(KAFKA_SPEC)["name"], "Kafka");
    assert_eq!(by_id(KINESIS_SPEC)["attributes"]["category"], "destination");
    let (status, one) = h.get(&format!("/connectionSpecs/{EVENT_HUBS_SPEC}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        one["authSpec"][0]["spec"]["required"],
        json!(["sasKeyName", "sasKey", "namespace"])
    );
    assert_eq!(
        one["targetSpec"]["spec"]["required"],
        json!(["eventHubName"])
    );

    // Connections, as the seed makes them.
    let source = h.source_connection().await;
    let base = h.kinesis_connection().await;
    let target = h.kinesis_target(&base).await;
    let (status, s) = h.get(&format!("/sourceConnections/{source}")).await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(s["connectionSpec"]["id"], PROFILE_SOURCE_SPEC);
    assert_eq!(s["data"]["format"], "json");
    let (status, t) = h.get(&format!("/targetConnections/{target}")).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["baseConnectionId"], base);
    assert_eq!(
        t["params"],
        json!({"stream": "profiles", "region": "eu-west-1"})
    );
    assert_eq!(
        t["connectionSpec"],
        json!({"id": KINESIS_SPEC, "version": "1.0"})
    );

    // The dataflow: it starts selecting nothing.
    let flow = h.flow(&source, &target).await;
    let (status, created, headers) = h
        .send(h.req(Method::GET, &format!("/flows/{flow}"), "prod"))
        .await;
    assert_eq!(status, 200, "{created}");
    let etag = created["etag"].as_str().unwrap().to_string();
    assert_eq!(
        headers.get("etag").unwrap().to_str().unwrap(),
        format!("\"{etag}\"")
    );
    assert_eq!(created["flowSpec"]["id"], PROFILE_FLOW_SPEC);
    assert_eq!(created["state"], "enabled");
    assert_eq!(created["sourceConnectionIds"], json!([source]));
    assert_eq!(created["targetConnectionIds"], json!([target]));
    assert_eq!(
        created["transformations"],
        json!([{"name": "GeneralTransform", "params": {
            "profileSelectors": {"selectors": []},
            "segmentSelectors": {"selectors": []}}}])
    );

    // Activate two segments and two profile attributes in one call, If-Match quoted.
    let (status, body, new_etag) = h
        .patch(
            &flow,
            Some(&format!("\"{etag}\"")),
            &json!([
                add_segment(MEN_OVER_50, "Men over 50"),
                add_segment(LOYAL, "Loyal"),
                add_attribute("personalEmail.address"),
                add_attribute("person.lastName"),
            ]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, Value::Null, "no body");
    let new_etag = new_etag.expect("ETag header");

    // Validate the data flow: the transformations hold them, under the new etag.
    let (status, got) = h.get(&format!("/flows/{flow}")).await;
    assert_eq!(status, 200);
    assert_eq!(format!("\"{}\"", got["etag"].as_str().unwrap()), new_etag);
    assert_ne!(got["etag"], created["etag"]);
    let params = &got["transformations"][0]["params"];
    assert_eq!(
        params["segmentSelectors"]["selectors"],
        json!([
            {"type": "PLATFORM_SEGMENT", "value": {"name": "Men over 50", "description": "Men over 50 (test)", "id": MEN_OVER_50}},
            {"type": "PLATFORM_SEGMENT", "value": {"name": "Loyal", "description": "Loyal (test)", "id": LOYAL}},
        ])
    );
    assert_eq!(
        params["profileSelectors"]["selectors"],
        json!([
            {"type": "JSON_PATH", "value": {"operator": "EXISTS", "path": "personalEmail.address"}},
            {"type": "JSON_PATH", "value": {"operator": "EXISTS", "path": "person.lastName"}},
        ])
    );
    assert!(got["updatedAt"].as_i64() > created["updatedAt"].as_i64());

    // What the sink stage reads: the catalog's typed record.
    let stored = h
        .view
        .read()
        .flows
        .get(&flow)
        .cloned()
        .expect("flow in the catalog");
    assert_eq!(stored.segment_ids(), vec![MEN_OVER_50, LOYAL]);
    assert_eq!(
        stored.profile_paths(),
        vec!["personalEmail.address", "person.lastName"]
    );
    let stored_target = h
        .view
        .read()
        .target_connections
        .get(&target)
        .cloned()
        .unwrap();
    assert_eq!(stored_target.param("stream"), Some("profiles"));

    // Listed; then deleted.
    let (status, list) = h.get("/flows").await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["id"], flow);
    assert_eq!(h.delete_flow(&flow, None).await, 204);
    assert_eq!(h.get(&format!("/flows/{flow}")).await.0, 404);
    assert!(h.view.read().flows.is_empty());
    assert_eq!(h.delete_flow(&flow, None).await, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_need_the_current_etag_and_valid_selectors() {
    let h = Harness::start().await;
    let source = h.source_connection().await;
    let base = h.kinesis_connection().await;
    let target = h.kinesis_target(&base).await;
    let flow = h.flow(&source, &target).await;
    let first = h.etag_of(&flow).await;
    let one = json!([add_segment(MEN_OVER_50, "Men over 50")]);

    // No If-Match: 428.
    let (status, body, _) = h.patch(&flow, None, &one).await;
    assert_eq!(status, 428, "{body}");
    assert!(detail(&body).contains("If-Match"), "{body}");

    // An etag that never was: 412; the flow is unchanged.
    let (status, body, _) = h.patch(&flow, Some("\"not-the-etag\""), &one).await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(h.etag_of(&flow).await, first);

    // The current etag, unquoted, is accepted too.
    let (status, body, _) = h.patch(&flow, Some(&first), &one).await;
    assert_eq!(status, 202, "{body}");
    let second = h.etag_of(&flow).await;
    assert_ne!(second, first);

    // The first etag is stale now: 412.
    let (status, body, _) = h
        .patch(
            &flow,
            Some(&format!("\"{first}\"")),
            &json!([add_segment(LOYAL, "Loyal")]),
        )
        .await;
    assert_eq!(status, 412, "{body}");
    assert!(detail(&body).contains(&flow), "{body}");

    let current = format!("\"{second}\"");
    let refused = |body: Value| {
        let h = &h;
        let (flow, current) = (flow.clone(), current.clone());
        async move {
            let (status, answer, _) = h.patch(&flow, Some(&current), &body).await;
            assert_eq!(status, 400, "{body} answered {answer}");
            detail(&answer).to_string()
        }
    };

    // A segment that is not a definition of this sandbox (one of `dev`, one of nowhere).
    let d = refused(json!([
        add_segment(LOYAL, "Loyal"),
        add_segment("no-such-segment", "x")
    ]))
    .await;
    assert!(
        d.contains("segment no-such-segment is not a segment definition of sandbox prod"),
        "{d}"
    );
    assert!(d.contains("segmentSelectors/selectors/2"), "{d}");
    let d = refused(json!([add_segment(DEV_SEGMENT, "dev")])).await;
    assert!(d.contains(DEV_SEGMENT), "{d}");

    // Selectors of the wrong shape.
    let d = refused(
        json!([{"op": "add", "path": "/transformations/0/params/segmentSelectors/selectors/-",
                            "value": {"type": "AUDIENCE", "value": {"id": LOYAL}}}]),
    )
    .await;
    assert!(d.contains("type must be PLATFORM_SEGMENT"), "{d}");
    let d = refused(json!([{"op": "add", "path": "/transformations/0/params/profileSelectors/selectors/-",
                            "value": {"type": "JSON_PATH", "value": {"operator": "EQUALS", "path": "a.b"}}}]))
    .await;
    assert!(d.contains("value.operator must be EXISTS"), "{d}");
    let d = refused(json!([add_attribute("")])).await;
    assert!(d.contains("value.path must be a non-empty"), "{d}");

    // A patch that does not apply names the operation.
    let d = refused(json!([add_attribute("person.firstName"),
                           {"op": "replace", "path": "/transformations/5/name", "value": "x"}]))
    .await;
    assert!(
        d.contains("operation 1 (replace /transformations/5/name) does not apply"),
        "{d}"
    );
    let d = refused(json!([{"op": "replace", "path": "/flowSpec/id", "value": "x"}])).await;
    assert!(d.contains("operation 0 (replace /flowSpec/id)"), "{d}");
    let d = refused(json!([{"op": "test", "path": "/name", "value": "another name"}])).await;
    assert!(d.contains("operation 0 (test /name) does not apply"), "{d}");
    let d = refused(json!({"op": "add"})).await;
    assert!(d.contains("JSON Patch array"), "{d}");
    let d = refused(json!([{"op": "fly", "path": "/name"}])).await;
    assert!(
        d.contains("operation 0 is not a JSON Patch operation"),
        "{d}"
    );

    // None of them changed anything.
    assert_eq!(h.etag_of(&flow).await, second);
    let (_, got) = h.get(&format!("/flows/{flow}")).await;
    assert_eq!(
        got["transformations"][0]["params"]["segmentSelectors"]["selectors"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Unknown flows are 404s (with a problem body), whatever the If-Match.
    let (status, body, _) = h.patch("no-such-flow", Some(&current), &one).await;
    assert_eq!(status, 404, "{body}");
    assert!(detail(&body).contains("no flow no-such-flow"), "{body}");

    // Two PATCHes racing on one etag: one wins, the other is told it lost.
    let (loyal, gender) = (
        json!([add_segment(LOYAL, "Loyal")]),
        json!([add_attribute("person.gender")]),
    );
    let a = h.patch(&flow, Some(&current), &loyal);
    let b = h.patch(&flow, Some(&current), &gender);
    let ((sa, _, _), (sb, _, _)) = tokio::join!(a, b);
    let mut statuses = [sa, sb];
    statuses.sort();
    assert_eq!(statuses, [202, 412]);

    // DELETE under a stale If-Match is refused.
    assert_eq!(h.delete_flow(&flow, Some(&current)).await, 412);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_checked_against_their_spec_and_sandbox() {
    let h = Harness::start().await;

    // Unknown spec; missing credentials, named.
    h.refuses(
        "/connections",
        json!({"name": "x", "connectionSpec": {"id": "no-such-spec", "version": "1.0"}}),
        &["no-such-spec"],
    )
    .await;
    h.refuses(
        "/connections",
        json!({"name": "x", "connectionSpec": {"id": KINESIS_SPEC, "version": "1.0"},
               "auth": {"specName": "Amazon Kinesis authentication credentials",
                        "params": {"region": "eu-west-1"}}}),
        &["accessKeyId, secretKey"],
    )
    .await;
    h.refuses(
        "/connections",
        json!({"name": "x", "connectionSpec": {"id": EVENT_HUBS_SPEC, "version": "1.0"}}),
        &["auth is required"],
    )
    .await;
    h.refuses(
        "/connections",
        json!({"connectionSpec": {"id": PROFILE_SOURCE_SPEC, "version": "1.0"}}),
        &["name is required"],
    )
    .await;

    let source = h.source_connection().await;
    let profile_base = h.get("/sourceConnections").await.1["items"][0]["baseConnectionId"]
        .as_str()
        .unwrap()
        .to_string();
    let kinesis = h.kinesis_connection().await;
    let hubs = h.hubs_connection(Some("127.0.0.1:9092")).await;

    // A source connection on a destination's connection: 400 saying what is expected.
    h.refuses(
        "/sourceConnections",
        json!({"name": "s", "connectionSpec": {"id": PROFILE_SOURCE_SPEC, "version": "1.0"},
               "baseConnectionId": kinesis, "data": {"format": "json"}, "params": {}}),
        &["Amazon Kinesis", PROFILE_SOURCE_SPEC],
    )
    .await;

    // A target connection whose spec is not its base connection's: 400 with the expected one.
    h.refuses(
        "/targetConnections",
        json!({"name": "t", "baseConnection": hubs,
               "connectionSpec": {"id": KINESIS_SPEC, "version": "1.0"},
               "data": {"format": "json"}, "params": {"stream": "s", "region": "r"}}),
        &[&format!("expected {EVENT_HUBS_SPEC} (Azure Event Hubs)")],
    )
    .await;
    // …on the profile source's connection, or missing its params, or in avro on Kinesis.
    h.refuses(
        "/targetConnections",
        json!({"name": "t", "baseConnection": profile_base,
               "connectionSpec": {"id": PROFILE_SOURCE_SPEC}, "params": {}}),
        &["not of a destination"],
    )
    .await;
    h.refuses(
        "/targetConnections",
        json!({"name": "t", "baseConnectionId": hubs,
               "connectionSpec": {"id": EVENT_HUBS_SPEC}, "params": {}}),
        &["misses eventHubName"],
    )
    .await;
    h.refuses(
        "/targetConnections",
        json!({"name": "t", "baseConnection": kinesis, "connectionSpec": {"id": KINESIS_SPEC},
               "data": {"format": "avro"}, "params": {"stream": "s", "region": "r"}}),
        &["data.format \"avro\""],
    )
    .await;
    let hubs_target = h
        .create(
            "/targetConnections",
            &json!({"name": "hub", "baseConnectionId": hubs,
                    "connectionSpec": {"id": EVENT_HUBS_SPEC, "version": "1.0"},
                    "data": {"format": "json"}, "params": {"eventHubName": "profiles"}}),
        )
        .await;

    // Flows: the flow spec, and connections of the right kind.
    let flow_body = |spec: &str, sources: Value, targets: Value| {
        json!({"name": "f", "flowSpec": {"id": spec, "version": "1.0"},
               "sourceConnectionIds": sources, "targetConnectionIds": targets})
    };
    h.refuses(
        "/flows",
        flow_body(KINESIS_SPEC, json!([source]), json!([hubs_target])),
        &[PROFILE_FLOW_SPEC],
    )
    .await;
    h.refuses(
        "/flows",
        flow_body(
            PROFILE_FLOW_SPEC,
            json!([hubs_target]),
            json!([hubs_target]),
        ),
        &["sourceConnectionIds names"],
    )
    .await;
    h.refuses(
        "/flows",
        flow_body(PROFILE_FLOW_SPEC, json!([source]), json!([])),
        &["targetConnectionIds is required"],
    )
    .await;
    let flow = h
        .create(
            "/flows",
            &flow_body(PROFILE_FLOW_SPEC, json!([source]), json!([hubs_target])),
        )
        .await;

    // Unknown ids are 404s with a problem body; so is everything of `prod` seen from `dev`.
    for path in [
        "/connections/nope".to_string(),
        "/sourceConnections/nope".to_string(),
        "/targetConnections/nope".to_string(),
        "/flows/nope".to_string(),
        "/connectionSpecs/nope".to_string(),
    ] {
        let (status, body) = h.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["status"], 404, "{path}: {body}");
    }
    for path in [
        format!("/connections/{kinesis}"),
        format!("/sourceConnections/{source}"),
        format!("/targetConnections/{hubs_target}"),
        format!("/flows/{flow}"),
    ] {
        assert_eq!(h.get(&path).await.0, 200, "{path}");
        let (status, body) = h.get_in(&path, "dev").await;
        assert_eq!(status, 404, "{path} from dev: {body}");
        assert!(detail(&body).contains("sandbox dev"), "{body}");
    }
    assert_eq!(h.get_in("/flows", "dev").await.1["items"], json!([]));
    assert_eq!(h.get_in("/connections", "dev").await.1["items"], json!([]));
    // A prod connection cannot be used from dev either.
    h.refuses_in(
        "dev",
        "/targetConnections",
        json!({"name": "t", "baseConnection": kinesis, "connectionSpec": {"id": KINESIS_SPEC},
               "params": {"stream": "s", "region": "r"}}),
        &["not a connection of sandbox dev"],
    )
    .await;

    // The headers and the token are required.
    let (status, _, _) = h
        .send(h.http.get(format!("{}/flows", h.base)).bearer_auth(ADMIN))
        .await;
    assert_eq!(status, 400);
    let (status, _, _) = h
        .send(
            h.http
                .get(format!("{}/connectionSpecs", h.base))
                .header("x-gw-ims-org-id", ORG),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_reach_the_catalog_or_the_api_in_clear() {
    let h = Harness::start().await;
    let kinesis = h.kinesis_connection().await;
    let hubs = h.hubs_connection(None).await;
    let kafka = h
        .create(
            "/connections",
            &json!({"name": "kafka", "connectionSpec": {"id": KAFKA_SPEC, "version": "1.0"},
                    "auth": {"specName": "Kafka authentication credentials",
                             "params": {"bootstrapServers": "127.0.0.1:9092", "saslMechanism": "PLAIN",
                                        "username": "cdp", "password": SECRET}}}),
        )
        .await;

    // GET shows the non-secret params only.
    let (status, got) = h.get(&format!("/connections/{kinesis}")).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["auth"]["specName"],
        "Amazon Kinesis authentication credentials"
    );
    assert_eq!(got["auth"]["params"], json!({"region": "eu-west-1"}));
    assert_eq!(got["connectionSpec"]["id"], KINESIS_SPEC);
    let (_, got_hubs) = h.get(&format!("/connections/{hubs}")).await;
    assert_eq!(
        got_hubs["auth"]["params"],
        json!({"sasKeyName": "send", "namespace": "acme"})
    );
    let (_, got_kafka) = h.get(&format!("/connections/{kafka}")).await;
    assert_eq!(
        got_kafka["auth"]["params"],
        json!({"bootstrapServers": "127.0.0.1:9092", "saslMechanism": "PLAIN", "username": "cdp"})
    );
    let (_, listed) = h.get("/connections").await;
    for shown in [&got, &got_hubs, &got_kafka, &listed] {
        let text = shown.to_string();
        for secret in [SECRET, SAS_KEY, "AKIATESTACCESSID"] {
            assert!(!text.contains(secret), "{secret} shown: {text}");
        }
    }

    // The raw catalog topic: every record, none holding a secret.
    let records = h
        .broker
        .read_committed(&h.topics.catalog(), 6, Duration::from_secs(20))
        .await;
    let connections: Vec<_> = records
        .iter()
        .filter(|r| {
            r.key
                .as_deref()
                .is_some_and(|k| k.starts_with("connection/"))
        })
        .collect();
    assert_eq!(connections.len(), 3, "three connection records");
    for r in &records {
        let text = String::from_utf8_lossy(&r.value);
        for secret in [SECRET, SAS_KEY, "AKIATESTACCESSID", "secretKey", "sasKey\""] {
            assert!(
                !text.contains(secret),
                "{secret} in catalog record {:?}: {text}",
                r.key
            );
        }
    }
    // …yet sealed there: the key opens them (what the sink stage does).
    let stored = h.view.read().connections.get(&kinesis).cloned().unwrap();
    let opened = stored
        .open_auth(&SecretKey::from_config(KEY_HEX).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(opened["secretKey"], SECRET);
    assert_eq!(opened["accessKeyId"], "AKIATESTACCESSID");

    // A control configured with another key cannot open them, and says so.
    let other = h.serve(SecretKey::development()).await;
    let resp = h
        .http
        .get(format!("{other}/connections/{kinesis}"))
        .bearer_auth(ADMIN)
        .header("x-gw-ims-org-id", ORG)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let body: Value = resp.json().await.unwrap();
    assert!(detail(&body).contains("another key"), "{body}");
    assert!(!body.to_string().contains(SECRET));
}

/// Connections, source and target connections cannot be deleted while something uses them
/// (409 naming it); a flow is disabled and enabled again through `state`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_wait_for_their_users_and_flows_are_disabled_through_state() {
    let h = Harness::start().await;
    let source = h.source_connection().await;
    let base = h.kinesis_connection().await;
    let target = h.kinesis_target(&base).await;
    let flow = h.flow(&source, &target).await;
    let h = &h;
    let delete = |path: String| async move {
        let (status, body, _) = h.send(h.req(Method::DELETE, &path, "prod")).await;
        (status, body)
    };

    let (status, body) = delete(format!("/connections/{base}")).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        detail(&body).contains(&format!("target connection {target}")),
        "{body}"
    );
    let (status, body) = delete(format!("/targetConnections/{target}")).await;
    assert_eq!(status, 409, "{body}");
    assert!(detail(&body).contains(&format!("flow {flow}")), "{body}");
    let (status, body) = delete(format!("/sourceConnections/{source}")).await;
    assert_eq!(status, 409, "{body}");
    assert!(detail(&body).contains(&format!("flow {flow}")), "{body}");

    // Disabled through state, under If-Match; anything but enabled/disabled is refused.
    let etag = h.etag_of(&flow).await;
    let (status, body, _) = h
        .patch(
            &flow,
            Some(&etag),
            &json!([{"op": "replace", "path": "/state", "value": "paused"}]),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).contains("enabled"), "{body}");
    let (status, body, _) = h
        .patch(
            &flow,
            Some(&etag),
            &json!([{"op": "replace", "path": "/state", "value": "disabled"}]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (_, shown) = h.get(&format!("/flows/{flow}")).await;
    assert_eq!(shown["state"], "disabled", "{shown}");
    let stored = h.view.read().flows[&flow].clone();
    assert!(!stored.is_enabled());
    let etag = h.etag_of(&flow).await;
    let (status, _, _) = h
        .patch(
            &flow,
            Some(&etag),
            &json!([{"op": "replace", "path": "/state", "value": "enabled"}]),
        )
        .await;
    assert_eq!(status, 202);
    assert!(h.view.read().flows[&flow].is_enabled());

    // Once the flow is gone, its connections go, users first; a gone one is 404.
    assert_eq!(h.delete_flow(&flow, None).await, 204);
    assert_eq!(delete(format!("/connections/{base}")).await.0, 409);
    assert_eq!(delete(format!("/targetConnections/{target}")).await.0, 204);
    assert_eq!(delete(format!("/sourceConnections/{source}")).await.0, 204);
    assert_eq!(delete(format!("/connections/{base}")).await.0, 204);
    assert_eq!(delete(format!("/connections/{base}")).await.0, 404);
    let (status, _) = h.get(&format!("/connections/{base}")).await;
    assert_eq!(status, 404);
}

/// A base connection's name and credentials change under `If-Match`; the new credentials are
/// sealed again (never shown, never readable through the patch) and open to the new values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_changed_and_its_credentials_sealed_again() {
    let h = Harness::start().await;
    let base = h.kinesis_connection().await;
    let path = format!("/connections/{base}");
    let patch = |if_match: Option<String>, body: Value| {
        let mut req = h.req(Method::PATCH, &path, "prod").json(&body);
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        h.send(req)
    };
    let (status, body, _) = patch(None, json!([])).await;
    assert_eq!(status, 428, "{body}");
    let (_, shown) = h.get(&path).await;
    let etag = shown["etag"].as_str().expect("etag").to_string();
    let before = h.view.read().connections[&base].clone();

    // Reading a secret through the patch is refused.
    let (status, body, _) = patch(
        Some(etag.clone()),
        json!([{"op": "test", "path": "/auth/params/secretKey", "value": SECRET}]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).contains("holds secrets"), "{body}");
    // Params are checked as on creation.
    let (status, body, _) = patch(
        Some(etag.clone()),
        json!([{"op": "remove", "path": "/auth/params/secretKey"}]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).contains("secretKey"), "{body}");

    let (status, body, headers) = patch(
        Some(format!("\"{etag}\"")),
        json!([
            {"op": "replace", "path": "/name", "value": "Kinesis (rotated)"},
            {"op": "replace", "path": "/auth/params/secretKey", "value": "n3w-s3cr3t"},
            {"op": "replace", "path": "/auth/params/region", "value": "us-east-1"}]),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let new_etag = headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .trim_matches('"')
        .to_string();
    assert_ne!(new_etag, etag);
    let after = h.view.read().connections[&base].clone();
    assert_eq!(after.name, "Kinesis (rotated)");
    assert_ne!(
        after.auth.as_ref().map(|a| &a.sealed),
        before.auth.as_ref().map(|a| &a.sealed)
    );
    let opened = after
        .open_auth(&SecretKey::from_config(KEY_HEX).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(opened["secretKey"], "n3w-s3cr3t");
    assert_eq!(opened["region"], "us-east-1");
    let (_, shown) = h.get(&path).await;
    assert_eq!(shown["auth"]["params"]["region"], "us-east-1", "{shown}");
    assert!(!shown.to_string().contains("n3w-s3cr3t"), "{shown}");

    // The old etag is stale now.
    let (status, _, _) = patch(Some(etag), json!([])).await;
    assert_eq!(status, 412);
}

/// The profile attributes a flow selects must be ones a profile of the org can have by its
/// profile schema (400 naming the path); an org without one is not checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_attributes_are_checked_against_the_profile_schema() {
    let h = Harness::start().await;
    let mut people = cdp_test_support::XdmFixture::new(
        "https://ns.adobe.com/acme/schemas/people",
        "crm-people",
        ORG,
        // Closed, as composed XDM schemas are: only these fields exist.
        json!({"type": "object", "additionalProperties": false, "properties": {
            "person": {"type": "object", "additionalProperties": false, "properties": {
                "lastName": {"type": "string"}}},
            "personalEmail": {"type": "object", "properties": {
                "address": {"type": "string"}}}}}),
    );
    people.schema.class = "_xdm.context.profile".into();
    people.write(&h.writer).await;
    let source = h.source_connection().await;
    let base = h.kinesis_connection().await;
    let target = h.kinesis_target(&base).await;
    let flow = h.flow(&source, &target).await;

    let etag = h.etag_of(&flow).await;
    let (status, body, _) = h
        .patch(
            &flow,
            Some(&etag),
            &json!([
                add_attribute("person.lastName"),
                add_attribute("person.shoeSize")
            ]),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).contains("person.shoeSize"), "{body}");
    assert!(!detail(&body).contains("person.lastName"), "{body}");
    let (status, body, _) = h
        .patch(
            &flow,
            Some(&etag),
            &json!([
                add_attribute("person.lastName"),
                add_attribute("personalEmail.address")
            ]),
        )
        .await;
    assert_eq!(status, 202, "{body}");
}
