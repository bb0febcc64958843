//! `/segment/definitions` against a real broker: XDM schemas written to the catalog (so paths
//! are checked), definitions created, classified, listed, changed and deleted over HTTP.
//! (`explain` on a real profile is in the end-to-end tests, tests/e2e/explain.rs: the profile
//! is read where the engine holds it.)

use std::sync::Arc;

use cdp_contract::admin::{ensure_topics, TopicSpec};
use cdp_contract::Topics;
use cdp_control::profiles::Lookups;
use cdp_control::segments::{router, SegmentApi};
use cdp_control::{CatalogView, CatalogWriter};
use cdp_test_support::{unique_name, Broker, XdmFixture};
use serde_json::{json, Value};

const ADMIN: &str = "test-admin-token";
const ORG: &str = "ACME@AdobeOrg";
const PROFILE: &str = "_xdm.context.profile";
const PATH: &str = "/segment/definitions";

const SINGLE_EVENT: &str =
    r#"xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 3 hours before now)"#;
const PROFILE_ONLY: &str = r#"person.birthYear < 1970 and homeAddress.countryCode = "US""#;
const IGNORING_YEAR: &str = "person.birthDate occurs today ignoring year";

/// A broker with the catalog and the profile topics, the org's XDM schemas in the catalog, and
/// the segment API on a loopback port.
struct Harness {
    _broker: Broker,
    base: String,
    http: reqwest::Client,
    /// Writes what other APIs would (a destination flow).
    writer: CatalogWriter,
}

impl Harness {
    async fn start() -> Harness {
        let broker = Broker::start();
        let kafka = broker.kafka();
        let topics = Topics::new(unique_name("segment-api"));
        ensure_topics(
            &kafka,
            &[
                cdp_catalog::topic_spec(&topics),
                TopicSpec {
                    name: topics.endpoints(),
                    partitions: 1,
                    compacted: true,
                },
            ],
        )
        .await
        .expect("topics");
        let catalog = CatalogView::start(&kafka, &topics).expect("catalog view");
        let writer = CatalogWriter::new(&kafka, &topics, catalog.clone()).expect("writer");
        let mut people = XdmFixture::new(
            "https://ns.adobe.com/acme/schemas/people",
            "crm-people",
            ORG,
            json!({"type": "object", "properties": {
                "person": {"type": "object", "properties": {
                    "birthYear": {"type": "integer"},
                    "birthDate": {"type": "string", "format": "date"}}},
                "homeAddress": {"type": "object", "properties": {
                    "countryCode": {"type": "string"}}}}}),
        );
        people.schema.class = PROFILE.into();
        people.write(&writer).await;
        XdmFixture::new(
            "https://ns.adobe.com/acme/schemas/web",
            "web-events",
            ORG,
            json!({"type": "object", "properties": {
                "_id": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "eventType": {"type": "string"},
                "commerce": {"type": "object", "properties": {
                    "order": {"type": "object", "properties": {
                        "priceTotal": {"type": "number"}}}}}}}),
        )
        .write(&writer)
        .await;
        let profiles = Lookups::start(&kafka, &topics, Arc::from(ADMIN))
            .await
            .expect("profile lookups");
        let auth = cdp_catalog::principal::Authenticator::new(
            Arc::from(ADMIN),
            catalog.clone(),
            cdp_catalog::tokens::Tokens::new("segment-api-test-token-secret"),
        );
        let app = router(SegmentApi {
            view: catalog,
            writer: writer.clone(),
            profiles,
            auth,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Harness {
            _broker: broker,
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            writer,
        }
    }

    /// A request as the admin in `ORG`'s `sandbox`.
    fn req(&self, method: reqwest::Method, path: &str, sandbox: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .header("x-gw-ims-org-id", ORG)
            .header("x-sandbox-name", sandbox)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        self.send(self.req(reqwest::Method::GET, path, "prod").query(query))
            .await
    }

    async fn post(&self, body: &Value) -> (u16, Value) {
        self.send(self.req(reqwest::Method::POST, PATH, "prod").json(body))
            .await
    }

    async fn patch(&self, id: &str, body: &Value) -> (u16, Value) {
        self.send(
            self.req(reqwest::Method::PATCH, &format!("{PATH}/{id}"), "prod")
                .json(body),
        )
        .await
    }

    async fn delete(&self, id: &str) -> u16 {
        self.send(self.req(reqwest::Method::DELETE, &format!("{PATH}/{id}"), "prod"))
            .await
            .0
    }

    /// Creates a definition; answers its id and the answer.
    async fn create(&self, name: &str, pql: &str) -> (String, Value) {
        let (status, body) = self.post(&definition(name, pql)).await;
        assert_eq!(status, 200, "{name}: {body}");
        let id = body["id"].as_str().expect("id").to_string();
        (id, body)
    }
}

/// A POST body as the seed writes it (with an `evaluationInfo` the classifier ignores).
fn definition(name: &str, pql: &str) -> Value {
    json!({
        "schema": {"name": PROFILE},
        "name": name,
        "description": format!("{name} (test)"),
        "expression": {"type": "PQL", "format": "pql/text", "value": pql},
        "evaluationInfo": {"batch": {"enabled": false}, "continuous": {"enabled": true},
                           "synchronous": {"enabled": false}},
    })
}

fn streaming(v: &Value) -> bool {
    v["evaluationInfo"]["continuous"]["enabled"] == json!(true)
        && v["evaluationInfo"]["batch"]["enabled"] == json!(false)
}

fn reason(v: &Value) -> &str {
    v["evaluationInfo"]["continuous"]["reason"]
        .as_str()
        .unwrap_or_default()
}

fn detail(v: &Value) -> &str {
    v["detail"].as_str().unwrap_or_default()
}

fn ids(list: &Value) -> Vec<String> {
    list["segments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_are_classified_listed_and_paged() {
    let h = Harness::start().await;

    let (single, body) = h.create("Recent buyers", SINGLE_EVENT).await;
    assert!(uuid_like(&single), "{single}");
    assert_eq!(body["schema"], json!({"name": PROFILE}));
    assert_eq!(body["imsOrgId"], ORG);
    assert_eq!(
        body["sandbox"],
        json!({"sandboxId": "", "sandboxName": "prod", "type": "production", "default": true})
    );
    assert_eq!(body["name"], "Recent buyers");
    assert_eq!(body["description"], "Recent buyers (test)");
    assert_eq!(
        body["expression"],
        json!({"type": "PQL", "format": "pql/text", "value": SINGLE_EVENT})
    );
    assert!(streaming(&body), "{body}");
    assert_eq!(reason(&body), "single event");
    assert_eq!(body["evaluationInfo"]["synchronous"]["enabled"], false);
    let created = body["creationTime"].as_i64().expect("creationTime");
    assert_eq!(body["updateTime"], created);
    assert_eq!(body["updateEpoch"], created);

    let (profile_only, body) = h.create("Older Americans", PROFILE_ONLY).await;
    assert!(streaming(&body));
    assert_eq!(reason(&body), "profile only");

    // The seed's select form, without a window, streams too.
    let (seed_form, body) = h
        .create(
            "Seed form",
            r#"select var1 from xEvent where var1.eventType = "web.webpagedetails.pageViews""#,
        )
        .await;
    assert!(streaming(&body), "{body}");

    // Batch, whatever the request's evaluationInfo says: "ignore year", a multi-entity query.
    let (birthday, body) = h.create("Birthday today", IGNORING_YEAR).await;
    assert!(!streaming(&body), "{body}");
    assert!(reason(&body).contains("ignor"), "{body}");
    let (multi, body) = h
        .create(
            "Products",
            r#"xProduct.any(eventType = "x") and person.birthYear < 1970"#,
        )
        .await;
    assert!(!streaming(&body), "{body}");
    assert!(reason(&body).contains("xProduct"), "{body}");

    // A segment of segments: a single event with a profile-only definition streams.
    let (of_segments, body) = h
        .create(
            "Older buyers",
            &format!(r#"inSegment("{profile_only}") and {SINGLE_EVENT}"#),
        )
        .await;
    assert!(streaming(&body), "{body}");

    // GET one; the seed's list of streaming definitions, newest first.
    let (status, one) = h.get(&format!("{PATH}/{single}"), &[]).await;
    assert_eq!((status, &one["name"]), (200, &json!("Recent buyers")));
    let (status, list) = h
        .get(PATH, &[("evaluationInfo.continuous.enabled", "true")])
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        ids(&list),
        [&of_segments, &seed_form, &profile_only, &single].map(String::clone)
    );
    assert_eq!(
        list["page"],
        json!({"totalCount": 4, "totalPages": 1, "sortField": "creationTime", "sort": "desc",
               "pageSize": 4, "limit": 100})
    );
    assert_eq!(list["link"], json!({}));
    let (_, batch) = h
        .get(PATH, &[("evaluationInfo.continuous.enabled", "false")])
        .await;
    assert_eq!(ids(&batch), [multi, birthday]);

    // Paging: 6 definitions, 4 a page.
    let (_, first) = h.get(PATH, &[("limit", "4")]).await;
    assert_eq!(ids(&first).len(), 4);
    assert_eq!(first["page"]["totalCount"], 6);
    assert_eq!(first["page"]["totalPages"], 2);
    assert_eq!(
        first["link"]["next"],
        "/segment/definitions?limit=4&start=1"
    );
    let (_, second) = h.get(PATH, &[("limit", "4"), ("start", "1")]).await;
    assert_eq!(ids(&second), [&profile_only, &single].map(String::clone));
    assert_eq!(second["page"]["pageSize"], 2);
    let (status, bad) = h.get(PATH, &[("limit", "1001")]).await;
    assert_eq!(status, 400);
    assert!(detail(&bad).contains("limit"), "{bad}");

    // Another sandbox or org sees none of them.
    let (status, dev) = h.send(h.req(reqwest::Method::GET, PATH, "dev")).await;
    assert_eq!((status, dev["page"]["totalCount"].clone()), (200, json!(0)));
    let (status, _) = h
        .send(h.req(reqwest::Method::GET, &format!("{PATH}/{single}"), "dev"))
        .await;
    assert_eq!(status, 404);
    let (status, other) = h
        .send(
            h.http
                .get(format!("{}{PATH}/{single}", h.base))
                .bearer_auth(ADMIN)
                .header("x-gw-ims-org-id", "globex"),
        )
        .await;
    assert_eq!(status, 404, "{other}");
    assert!(detail(&other).contains(&single), "{other}");

    // The admin token and the org header are required.
    let resp = h
        .http
        .get(format!("{}{PATH}", h.base))
        .header("x-gw-ims-org-id", ORG)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    let (status, body) = h
        .send(h.http.get(format!("{}{PATH}", h.base)).bearer_auth(ADMIN))
        .await;
    assert_eq!(status, 400);
    assert!(detail(&body).contains("x-gw-ims-org-id"), "{body}");
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reclassify_and_errors_say_where() {
    let h = Harness::start().await;
    let (single, created) = h.create("Recent buyers", SINGLE_EVENT).await;
    let (profile_only, _) = h.create("Older Americans", PROFILE_ONLY).await;
    let (dependent, body) = h
        .create(
            "Older buyers",
            &format!(r#"inSegment("{profile_only}") and {SINGLE_EVENT}"#),
        )
        .await;
    assert!(streaming(&body), "{body}");

    // A window over 24 hours: the streaming definition switches to batch.
    let longer = SINGLE_EVENT.replace("3 hours", "48 hours");
    let (status, changed) = h
        .patch(
            &single,
            &json!({"expression": {"type": "PQL", "format": "pql/text", "value": longer}}),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert!(!streaming(&changed), "{changed}");
    assert!(reason(&changed).contains("48 hours"), "{changed}");
    assert_eq!(changed["name"], "Recent buyers");
    assert_eq!(changed["creationTime"], created["creationTime"]);
    assert!(changed["updateTime"].as_i64() > created["updateTime"].as_i64());
    assert_eq!(changed["updateEpoch"], changed["updateTime"]);
    let (_, list) = h
        .get(PATH, &[("evaluationInfo.continuous.enabled", "true")])
        .await;
    assert!(!ids(&list).contains(&single), "{list}");
    // A rename keeps the classification.
    let (status, renamed) = h.patch(&single, &json!({"name": "Buyers, 2 days"})).await;
    assert_eq!(
        (status, renamed["name"].clone()),
        (200, json!("Buyers, 2 days"))
    );
    assert!(!streaming(&renamed));

    // The profile-only definition names an event now: the one streaming on it turns batch.
    let (status, body) = h
        .patch(
            &profile_only,
            &json!({"expression": {"type": "PQL", "format": "pql/text",
                                    "value": format!("{PROFILE_ONLY} and {SINGLE_EVENT}")}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, dep) = h.get(&format!("{PATH}/{dependent}"), &[]).await;
    assert!(!streaming(&dep), "{dep}");
    assert!(reason(&dep).contains("inSegment"), "{dep}");
    // A definition cannot come to depend on itself.
    let (status, body) = h
        .patch(
            &profile_only,
            &json!({"expression": {"type": "PQL", "format": "pql/text",
                                    "value": format!(r#"inSegment("{dependent}")"#)}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).contains("depend on itself"), "{body}");

    // 400s: a parse error with its line and column, an unknown path, the wrong type, names.
    let (status, body) = h
        .post(&definition("Broken", "person.birthYear <\n  and true"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        detail(&body).contains("error at line 2, column 3"),
        "{body}"
    );
    assert_eq!(body["errors"][0]["line"], 2);
    assert_eq!(body["errors"][0]["column"], 3);
    assert!(body["errors"][0]["message"].as_str().is_some());
    let (status, body) = h.post(&definition("Typo", "person.birthYer < 1970")).await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).contains("person.birthYer"), "{body}");
    let (status, body) = h
        .post(&definition(
            "Typo",
            r#"xEvent.any(eventTyp = "commerce.purchases")"#,
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).contains("eventTyp"), "{body}");
    let mut sql = definition("SQL", PROFILE_ONLY);
    sql["expression"]["type"] = json!("SQL");
    let (status, body) = h.post(&sql).await;
    assert_eq!(status, 400);
    assert!(detail(&body).contains("expression.type"), "{body}");
    let mut json_format = definition("JSON", PROFILE_ONLY);
    json_format["expression"]["format"] = json!("pql/json");
    let (status, body) = h.post(&json_format).await;
    assert_eq!(status, 400);
    assert!(detail(&body).contains("pql/text"), "{body}");
    let (status, body) = h.post(&definition("", PROFILE_ONLY)).await;
    assert_eq!(status, 400);
    assert!(detail(&body).contains("name"), "{body}");
    let (status, body) = h
        .post(&definition(
            "Of nothing",
            r#"inSegment("no-such-definition")"#,
        ))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(detail(&body).contains("no-such-definition"), "{body}");
    assert_eq!(body["errors"][0]["column"], 1);

    // 404s.
    let (status, _) = h.get(&format!("{PATH}/nope"), &[]).await;
    assert_eq!(status, 404);
    let (status, _) = h.patch("nope", &json!({"name": "x"})).await;
    assert_eq!(status, 404);
    assert_eq!(h.delete("nope").await, 404);

    // DELETE: 409 while another definition names it, then 204 once it does not.
    assert_eq!(h.delete(&profile_only).await, 409);
    let (_, body) = h
        .send(h.req(
            reqwest::Method::DELETE,
            &format!("{PATH}/{profile_only}"),
            "prod",
        ))
        .await;
    assert!(detail(&body).contains(&dependent), "{body}");
    assert_eq!(h.delete(&dependent).await, 204);
    assert_eq!(h.delete(&profile_only).await, 204);
    let (status, _) = h.get(&format!("{PATH}/{profile_only}"), &[]).await;
    assert_eq!(status, 404);
    let (_, list) = h.get(PATH, &[]).await;
    assert_eq!(ids(&list), [single]);
}

/// A definition a destination flow activates cannot be deleted (409 naming the flow) until the
/// flow no longer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_definition_a_flow_activates_is_not_deleted_under_it() {
    let h = Harness::start().await;
    let (status, body) = h.post(&definition("Older", PROFILE_ONLY)).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_str().expect("id").to_string();
    let mut transformations = cdp_catalog::Flow::initial_transformations();
    transformations[0]["params"]["segmentSelectors"]["selectors"] = json!([
        {"type": "PLATFORM_SEGMENT", "value": {"id": id, "name": "Older"}}]);
    let flow = cdp_catalog::Flow {
        id: "flow-1".into(),
        name: "to Kinesis".into(),
        description: None,
        org_id: ORG.into(),
        sandbox: "prod".into(),
        flow_spec_id: cdp_catalog::flows::PROFILE_FLOW_SPEC.into(),
        source_connection_ids: vec!["s".into()],
        target_connection_ids: vec!["t".into()],
        transformations,
        etag: "e".into(),
        state: cdp_catalog::flows::FLOW_ENABLED.into(),
        created_at: 1,
        updated_at: 1,
    };
    assert_eq!(flow.segment_ids(), vec![id.clone()]);
    h.writer
        .put(&cdp_catalog::CatalogRecord::Flow(flow))
        .await
        .expect("flow written");
    let (status, body) = h
        .send(h.req(reqwest::Method::DELETE, &format!("{PATH}/{id}"), "prod"))
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(detail(&body).contains("flow flow-1"), "{body}");
    h.writer
        .delete(&cdp_catalog::model::flow_key("flow-1"))
        .await
        .expect("flow deleted");
    assert_eq!(h.delete(&id).await, 204);
}
