//! Schedules (`/config/schedules`, seed 003 "Enable scheduled evaluation") on control's port:
//! the seed's creation body, its JSON Patch enabling the schedule, one schedule per org, and
//! the refusals; the catalog record is what the segment stage follows.

use cdp_catalog::{CatalogRecord, SegmentDefinition};
use cdp_e2e::{Pipeline, ADMIN};
use reqwest::Method;
use serde_json::{json, Value};

const ORG: &str = "ACME@AdobeOrg";
const SCHEDULES: &str = "/config/schedules";

/// One org and sandbox talking to control, with the admin token.
struct Api<'a> {
    p: &'a Pipeline,
    org: Option<&'a str>,
    sandbox: Option<&'a str>,
}

impl<'a> Api<'a> {
    fn new(p: &'a Pipeline) -> Self {
        Api {
            p,
            org: Some(ORG),
            sandbox: None,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .p
            .http
            .request(method, format!("{}{path}", self.p.control))
            .bearer_auth(ADMIN);
        if let Some(org) = self.org {
            req = req.header("x-gw-ims-org-id", org);
        }
        if let Some(sandbox) = self.sandbox {
            req = req.header("x-sandbox-name", sandbox);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("control request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> u16 {
        self.call(Method::DELETE, path, None).await.0
    }

    /// The sandbox's schedules, after checking the list's shape.
    async fn list(&self) -> Vec<Value> {
        let (status, list) = self.get(SCHEDULES).await;
        assert_eq!(status, 200, "{list}");
        let children = list["children"].as_array().expect("children").clone();
        assert_eq!(list["_page"]["totalCount"], children.len(), "{list}");
        assert_eq!(list["_page"]["count"], children.len(), "{list}");
        children
    }
}

/// The seed's creation body.
fn seed_body(name: &str) -> Value {
    json!({
        "name": name,
        "type": "batch_segmentation",
        "properties": {"segments": ["*"]},
        "schedule": "0 0 1 * * ?",
        "state": "inactive"
    })
}

/// The seed's "Enable a schedule" request body.
fn enable() -> Value {
    json!([{"op": "add", "path": "/state", "value": "active"}])
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_seeds_schedule_is_created_enabled_by_its_json_patch_and_deleted() {
    let p = Pipeline::start().await;
    let api = Api::new(&p);
    assert!(api.list().await.is_empty());

    let before = cdp_contract::clock::now_ms() / 1000;
    let (status, created) = api.post(SCHEDULES, seed_body("nightly")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("an id").to_string();
    let created_at = created["createEpoch"].as_i64().expect("createEpoch");
    assert!(created_at >= before, "{created}");
    assert_eq!(
        created,
        json!({
            "id": id, "imsOrgId": ORG,
            "sandbox": {"sandboxId": "", "sandboxName": "prod", "type": "production", "default": true},
            "name": "nightly", "state": "inactive", "type": "batch_segmentation",
            "schedule": "0 0 1 * * ?", "properties": {"segments": ["*"]},
            "createEpoch": created_at, "updateEpoch": created_at
        })
    );
    let url = format!("{SCHEDULES}/{id}");
    assert_eq!(api.list().await, std::slice::from_ref(&created));
    assert_eq!(api.get(&url).await, (200, created.clone()));

    // One schedule per org, in whichever sandbox.
    for sandbox in [None, Some("dev")] {
        let api = Api {
            sandbox,
            ..Api::new(&p)
        };
        let (status, problem) = api.post(SCHEDULES, seed_body("second")).await;
        assert_eq!(status, 409, "{sandbox:?}: {problem}");
        assert!(detail(&problem).contains(&id), "{problem}");
    }
    // Another org has its own.
    let other = Api {
        org: Some("other-org"),
        ..Api::new(&p)
    };
    let (status, theirs) = other.post(SCHEDULES, seed_body("theirs")).await;
    assert_eq!(status, 201, "{theirs}");
    // A schedule is seen in its org and sandbox only.
    assert_eq!(other.get(&url).await.0, 404);
    let dev = Api {
        sandbox: Some("dev"),
        ..Api::new(&p)
    };
    assert_eq!(dev.get(&url).await.0, 404);
    assert!(dev.list().await.is_empty());
    assert_eq!(api.list().await.len(), 1);

    // The seed enables it with a JSON Patch sent with POST: 204, no body.
    let (status, body) = api.post(&url, enable()).await;
    assert_eq!((status, body), (204, Value::String(String::new())));
    let (_, enabled) = api.get(&url).await;
    assert_eq!(enabled["state"], "active", "{enabled}");
    assert!(
        enabled["updateEpoch"].as_i64() >= Some(created_at),
        "{enabled}"
    );
    assert_eq!(enabled["createEpoch"], created_at);
    // The catalog the segment stage follows holds it.
    {
        let catalog = p.control_running.catalog.read();
        let record = catalog.schedules.get(&id).expect("the catalog record");
        assert_eq!(
            (record.state.as_str(), record.org_id.as_str()),
            ("active", ORG)
        );
    }
    // PATCH does the same; several operations at once.
    let (status, body) = api
        .patch(
            &url,
            json!([
                {"op": "replace", "path": "/state", "value": "inactive"},
                {"op": "replace", "path": "/schedule", "value": "0 30 2 * * ?"},
                {"op": "replace", "path": "/name", "value": "half past two"}
            ]),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (_, changed) = api.get(&url).await;
    assert_eq!(
        (&changed["state"], &changed["schedule"], &changed["name"]),
        (
            &json!("inactive"),
            &json!("0 30 2 * * ?"),
            &json!("half past two")
        )
    );

    // Deleted, it is gone, and the org may create one again.
    assert_eq!(api.delete(&url).await, 204);
    assert_eq!(api.get(&url).await.0, 404);
    assert_eq!(api.delete(&url).await, 404);
    assert!(api.list().await.is_empty());
    assert!(!p.control_running.catalog.read().schedules.contains_key(&id));
    let (status, again) = api.post(SCHEDULES, seed_body("again")).await;
    assert_eq!(status, 201, "{again}");
}

#[tokio::test]
async fn schedules_are_validated_and_patches_name_the_refused_operation() {
    let p = Pipeline::start().await;
    let api = Api::new(&p);
    // A definition of the sandbox, written as the definitions API does.
    let writer = cdp_control::CatalogWriter::new(
        &p.config.kafka,
        &p.config.topics,
        p.control_running.catalog.clone(),
    )
    .expect("catalog writer");
    let now = cdp_contract::clock::now_ms();
    writer
        .put(&CatalogRecord::Segment(SegmentDefinition {
            id: "nightly-viewers".into(),
            name: "nightly viewers".into(),
            description: None,
            org_id: ORG.into(),
            sandbox: "prod".into(),
            schema_name: "_xdm.context.profile".into(),
            expression: r#"xEvent[eventType = "web.webpagedetails.pageViews"].count() >= 1"#.into(),
            streaming: false,
            classification: "batch".into(),
            profile_only: false,
            creation_time: now,
            update_time: now,
        }))
        .await
        .expect("definition written");

    let with = |field: &str, value: Value| {
        let mut body = seed_body("nightly");
        body[field] = value;
        body
    };
    for (body, says) in [
        (
            with("schedule", json!("0 */5 * * * ?")),
            "schedule \"0 */5 * * * ?\" is not accepted: minutes must be a number from 0 to 59",
        ),
        (with("schedule", json!("0 0 1 * *")), "six fields"),
        (
            with("type", json!("streaming")),
            "type \"streaming\" is not one of batch_segmentation, export",
        ),
        (
            with(
                "properties",
                json!({"segments": ["nightly-viewers", "nope"]}),
            ),
            "properties.segments names nope",
        ),
        (
            with("properties", json!({})),
            "properties.segments is required",
        ),
        (with("state", json!("enabled")), "active, inactive"),
        (
            json!({"type": "export", "schedule": "0 0 1 * * ?"}),
            "name is required",
        ),
    ] {
        let (status, problem) = api.post(SCHEDULES, body.clone()).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(detail(&problem).contains(says), "{body}: {problem}");
    }
    // The definition exists in prod, not in dev.
    let dev = Api {
        sandbox: Some("dev"),
        ..Api::new(&p)
    };
    let (status, problem) = dev
        .post(
            SCHEDULES,
            with("properties", json!({"segments": ["nightly-viewers"]})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(detail(&problem).contains("nightly-viewers"), "{problem}");

    let (status, created) = api
        .post(
            SCHEDULES,
            with("properties", json!({"segments": ["nightly-viewers"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["properties"]["segments"],
        json!(["nightly-viewers"])
    );
    let url = format!("{SCHEDULES}/{}", created["id"].as_str().expect("an id"));

    // Refused patches name the operation; none of a refused patch is applied.
    for (patch, says) in [
        (
            json!([{"op": "add", "path": "/state", "value": "active"},
                   {"op": "replace", "path": "/type", "value": "export"}]),
            "operation 1 (replace /type): /type cannot be changed",
        ),
        (
            json!([{"op": "remove", "path": "/state"}]),
            "operation 0 (remove /state): only add and replace are supported",
        ),
        (
            json!([{"op": "add", "path": "/state", "value": "on"}]),
            "operation 0 (add /state): state \"on\" is not one of active, inactive",
        ),
        (
            json!([{"op": "replace", "path": "/schedule", "value": "0 0 */2 * * ?"}]),
            "operation 0 (replace /schedule): schedule \"0 0 */2 * * ?\" is not accepted: hours",
        ),
        (
            json!([{"op": "add", "path": "/properties/segments", "value": ["gone"]}]),
            "operation 0 (add /properties/segments): properties.segments names gone",
        ),
        (enable()[0].clone(), "JSON Patch array"),
    ] {
        let (status, problem) = api.post(&url, patch.clone()).await;
        assert_eq!(status, 400, "{patch}: {problem}");
        assert!(detail(&problem).contains(says), "{patch}: {problem}");
        assert_eq!(api.patch(&url, patch.clone()).await.0, 400, "PATCH {patch}");
    }
    let (_, unchanged) = api.get(&url).await;
    assert_eq!(unchanged, created);

    // Unknown ids: 404 for every method.
    let unknown = format!("{SCHEDULES}/00000000-0000-0000-0000-000000000000");
    assert_eq!(api.get(&unknown).await.0, 404);
    assert_eq!(api.post(&unknown, enable()).await.0, 404);
    assert_eq!(api.patch(&unknown, enable()).await.0, 404);
    assert_eq!(api.delete(&unknown).await, 404);

    // AEP's org header and the admin token are required.
    let anonymous = Api {
        org: None,
        ..Api::new(&p)
    };
    let (status, problem) = anonymous.get(SCHEDULES).await;
    assert_eq!(status, 400, "{problem}");
    assert!(detail(&problem).contains("x-gw-ims-org-id"), "{problem}");
    let no_token = p
        .http
        .get(format!("{}{SCHEDULES}", p.control))
        .header("x-gw-ims-org-id", ORG)
        .send()
        .await
        .expect("control request")
        .status();
    assert_eq!(no_token, 401);

    // The registry's Confluent `/config` and `/config/{subject}` still answer beside it (with a
    // credential, as every registry call).
    for path in ["/config", "/config/some-subject-value?defaultToGlobal=true"] {
        let resp = p
            .http
            .get(format!("{}{path}", p.control))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("registry request");
        assert_eq!(resp.status(), 200, "{path}");
        let body: Value = resp.json().await.expect("registry JSON");
        assert!(body["compatibilityLevel"].is_string(), "{path}: {body}");
    }
}
