//! Identity namespaces (`/identity/namespaces`) and merge policies (`/config/mergePolicies`) on
//! control's port, scoped by AEP's org and sandbox headers; the edge, following the catalog
//! topic, sees what they decide.

use cdp_e2e::{event_schema, Pipeline, ADMIN};
use reqwest::Method;
use serde_json::{json, Value};

const ORG: &str = "ACME@AdobeOrg";

/// One org and sandbox talking to control.
struct Api<'a> {
    p: &'a Pipeline,
    org: Option<&'a str>,
    sandbox: Option<&'a str>,
}

impl<'a> Api<'a> {
    fn new(p: &'a Pipeline, sandbox: Option<&'a str>) -> Self {
        Api {
            p,
            org: Some(ORG),
            sandbox,
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

    async fn create_policy(&self, name: &str, default: bool) -> Value {
        let (status, body) = self
            .post(
                "/config/mergePolicies",
                json!({"name": name, "schema": {"name": "_xdm.context.profile"},
                       "identityGraph": {"type": "pdg"},
                       "attributeMerge": {"type": "timestampOrdered"}, "default": default}),
            )
            .await;
        assert_eq!(status, 201, "create {name}: {body}");
        body
    }

    /// `default` of each policy of the sandbox, by name.
    async fn defaults(&self) -> Vec<(String, bool)> {
        let (status, list) = self.get("/config/mergePolicies").await;
        assert_eq!(status, 200, "{list}");
        let children = list["children"].as_array().unwrap();
        assert_eq!(list["_page"]["totalCount"], children.len());
        children
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["default"].as_bool().unwrap(),
                )
            })
            .collect()
    }
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or_default()
}

fn codes(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|n| n["code"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn namespaces_list_create_and_replace_a_standard_one() {
    let p = Pipeline::start().await;
    let prod = Api::new(&p, None);
    let dev = Api::new(&p, Some("dev"));

    let (status, list) = prod.get("/identity/namespaces").await;
    assert_eq!(status, 200, "{list}");
    for code in ["ECID", "CRMID", "Email", "Phone", "IDFA", "GAID"] {
        assert!(codes(&list).contains(&code), "{code} in {list}");
    }
    let (status, ecid) = prod.get("/identity/namespaces/ECID").await;
    assert_eq!(status, 200);
    assert_eq!(ecid["id"], 4);
    assert_eq!(ecid["idType"], "COOKIE");
    assert_eq!(ecid["status"], "ACTIVE");
    assert_eq!(ecid["custom"], false);
    assert_eq!(ecid["namespaceType"], "Standard");
    let (_, crmid) = prod.get("/identity/namespaces/CRMID").await;
    assert_eq!(crmid["unique"], true);

    // A tenant's own namespace; idType as AEP's examples spell it.
    let (status, loyalty) = prod
        .post(
            "/identity/namespaces",
            json!({"name": "Loyalty Member", "code": "Loyalty", "description": "Loyalty id",
                   "idType": "Cross_device", "unique": true, "priority": 2}),
        )
        .await;
    assert_eq!(status, 201, "{loyalty}");
    assert_eq!(loyalty["idType"], "CROSS_DEVICE");
    assert_eq!(loyalty["custom"], true);
    assert_eq!(loyalty["namespaceType"], "Custom");
    assert_eq!(loyalty["priority"], 2);
    assert!(loyalty["id"].as_u64().is_some(), "{loyalty}");
    let (status, got) = prod.get("/identity/namespaces/Loyalty").await;
    assert_eq!((status, &got), (200, &loyalty));
    assert_eq!(dev.get("/identity/namespaces/Loyalty").await.0, 404);

    // A standard code replaces the standard meaning, in that sandbox only.
    let (status, own_crmid) = prod
        .post(
            "/identity/namespaces",
            json!({"name": "CRM ID (shared)", "code": "CRMID", "idType": "CROSS_DEVICE", "unique": false}),
        )
        .await;
    assert_eq!(status, 201, "{own_crmid}");
    let (_, list) = prod.get("/identity/namespaces").await;
    let crm: Vec<&Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["code"] == "CRMID")
        .collect();
    assert_eq!(crm.len(), 1, "{list}");
    assert_eq!(crm[0]["unique"], false);
    assert_eq!(crm[0]["custom"], true);
    assert!(codes(&list).contains(&"Loyalty"));
    let (_, dev_crmid) = dev.get("/identity/namespaces/CRMID").await;
    assert_eq!(dev_crmid["unique"], true);
    assert_eq!(dev_crmid["custom"], false);
    // The stages see it through the catalog topic.
    p.wait_for_edge(|c| {
        c.namespace(ORG, "prod", "CRMID").is_some_and(|n| !n.unique)
            && c.namespace(ORG, "dev", "CRMID").is_some_and(|n| n.unique)
    })
    .await;

    // 409: a tenant's code exists already (the replaced standard one too).
    for code in ["Loyalty", "CRMID"] {
        let (status, body) = prod
            .post(
                "/identity/namespaces",
                json!({"name": "again", "code": code, "idType": "PHONE"}),
            )
            .await;
        assert_eq!(status, 409, "{code}: {body}");
        assert!(detail(&body).contains(code), "{body}");
    }
    // …but the same code in another sandbox is free.
    let (status, _) = dev
        .post(
            "/identity/namespaces",
            json!({"name": "Loyalty", "code": "Loyalty", "idType": "PHONE"}),
        )
        .await;
    assert_eq!(status, 201);

    // 400s, each saying what is wrong.
    for (body, says) in [
        (
            json!({"name": "n", "code": "X", "idType": "NON_PEOPLE"}),
            "COOKIE, DEVICE, CROSS_DEVICE, EMAIL, PHONE, PARTNER",
        ),
        (json!({"name": "n", "code": "", "idType": "EMAIL"}), "empty"),
        (
            json!({"name": "n", "code": "a".repeat(65), "idType": "EMAIL"}),
            "64",
        ),
        (
            json!({"name": "n", "code": "bad code", "idType": "EMAIL"}),
            "letters",
        ),
        (
            json!({"name": "n", "code": "P", "idType": "EMAIL", "priority": 1}),
            "unique",
        ),
    ] {
        let (status, problem) = prod.post("/identity/namespaces", body.clone()).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(detail(&problem).contains(says), "{body}: {problem}");
    }
    assert_eq!(prod.get("/identity/namespaces/Nope").await.0, 404);

    // AEP's org header is required; the admin token too.
    let anonymous = Api {
        org: None,
        ..Api::new(&p, None)
    };
    let (status, problem) = anonymous.get("/identity/namespaces").await;
    assert_eq!(status, 400);
    assert!(detail(&problem).contains("x-gw-ims-org-id"), "{problem}");
    let status = p
        .http
        .get(format!("{}/identity/namespaces", p.control))
        .header("x-gw-ims-org-id", ORG)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 401);
}

#[tokio::test]
async fn merge_policy_defaults_switch_and_the_default_goes_last() {
    let p = Pipeline::start().await;
    let api = Api::new(&p, None);

    // The first policy is the default whatever it says.
    let a = api.create_policy("a", false).await;
    assert_eq!(a["default"], true, "{a}");
    assert_eq!(a["imsOrgId"], ORG);
    assert_eq!(
        a["sandbox"],
        json!({"sandboxName": "prod", "sandboxType": "production", "default": true})
    );
    assert_eq!(a["schema"]["name"], "_xdm.context.profile");
    assert_eq!(a["version"], 1);
    assert!(a["updateEpoch"].as_i64().unwrap() > 1_600_000_000, "{a}");
    let a_id = a["id"].as_str().unwrap().to_string();
    let b = api.create_policy("b", false).await;
    assert_eq!(b["default"], false);
    let b_id = b["id"].as_str().unwrap().to_string();

    // A new default takes over; the old one is rewritten as non-default.
    let c = api.create_policy("c", true).await;
    assert_eq!(c["default"], true);
    let c_id = c["id"].as_str().unwrap().to_string();
    assert_eq!(
        api.defaults().await,
        [("a".into(), false), ("b".into(), false), ("c".into(), true)]
    );
    let (_, only) = api.get("/config/mergePolicies?default=true").await;
    assert_eq!(only["_page"]["totalCount"], 1);
    assert_eq!(only["children"][0]["id"], c["id"]);
    p.wait_for_edge(|s| {
        s.default_merge_policy(ORG, "prod")
            .is_some_and(|m| m.id == c_id)
    })
    .await;

    // PATCH switches it back; PATCH can rename without touching the rest.
    let (status, patched) = api
        .patch(
            &format!("/config/mergePolicies/{a_id}"),
            json!({"default": true, "name": "a2"}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["default"], true);
    assert_eq!(patched["identityGraph"], json!({"type": "pdg"}));
    assert_eq!(
        api.defaults().await,
        [
            ("a2".into(), true),
            ("b".into(), false),
            ("c".into(), false)
        ]
    );
    p.wait_for_edge(|s| {
        s.default_merge_policy(ORG, "prod")
            .is_some_and(|m| m.id == a_id)
    })
    .await;

    // The default does not give up being the default, nor go while others exist.
    let (status, problem) = api
        .patch(
            &format!("/config/mergePolicies/{a_id}"),
            json!({"default": false}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    let (status, problem) = api
        .call(
            Method::DELETE,
            &format!("/config/mergePolicies/{a_id}"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        detail(&problem).contains("make another policy the default first"),
        "{problem}"
    );

    // The limit: five per sandbox.
    api.create_policy("d", false).await;
    api.create_policy("e", false).await;
    let (status, problem) = api
        .post(
            "/config/mergePolicies",
            json!({"name": "f", "identityGraph": {"type": "none"},
                   "attributeMerge": {"type": "timestampOrdered"}}),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert!(detail(&problem).contains("limit is 5"), "{problem}");
    // Another sandbox has its own limit and its own (first) default.
    let dev = Api::new(&p, Some("dev"));
    let dev_first = dev.create_policy("dev", false).await;
    assert_eq!(dev_first["default"], true);
    assert_eq!(dev_first["sandbox"]["sandboxType"], "development");
    assert_eq!(api.defaults().await.len(), 5);

    // Non-defaults go; then the default, once it is the last one.
    for id in [&b_id, &c_id] {
        assert_eq!(
            api.delete(&format!("/config/mergePolicies/{id}")).await,
            204
        );
        assert_eq!(api.get(&format!("/config/mergePolicies/{id}")).await.0, 404);
    }
    let rest: Vec<String> = {
        let (_, list) = api.get("/config/mergePolicies?default=false").await;
        list["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(rest.len(), 2);
    for id in &rest {
        assert_eq!(
            api.delete(&format!("/config/mergePolicies/{id}")).await,
            204
        );
    }
    assert_eq!(
        api.delete(&format!("/config/mergePolicies/{a_id}")).await,
        204
    );
    assert!(api.defaults().await.is_empty());
    p.wait_for_edge(|s| s.default_merge_policy(ORG, "prod").is_none())
        .await;
}

#[tokio::test]
async fn merge_policies_are_validated_and_scoped() {
    let p = Pipeline::start().await;
    let api = Api::new(&p, None);
    let crm = p.create_dataset(ORG, event_schema()).await;
    let crm_id = crm["id"].as_str().unwrap();
    let elsewhere = p.create_dataset("other-org", event_schema()).await;

    // Precedence over datasets of the org; AEP's `attributeMerge.order`.
    let (status, policy) = api
        .post(
            "/config/mergePolicies",
            json!({"name": "crm first", "schema": {"name": "_xdm.context.profile"},
                   "identityGraph": {"type": "none"},
                   "attributeMerge": {"type": "dataSetPrecedence", "order": [crm_id]}}),
        )
        .await;
    assert_eq!(status, 201, "{policy}");
    assert_eq!(
        policy["attributeMerge"],
        json!({"type": "dataSetPrecedence", "order": [crm_id]})
    );
    let id = policy["id"].as_str().unwrap().to_string();
    let url = format!("/config/mergePolicies/{id}");

    let precedence = |order: Value| {
        json!({"name": "p", "identityGraph": {"type": "pdg"},
               "attributeMerge": {"type": "dataSetPrecedence", "order": order}})
    };
    for (body, says) in [
        (precedence(json!([crm_id, "nope"])), "nope".to_string()),
        (
            precedence(json!([elsewhere["id"]])),
            elsewhere["id"].as_str().unwrap().to_string(),
        ),
        (precedence(json!([])), "attributeMerge.order".into()),
        (
            json!({"name": "p", "identityGraph": {"type": "pdg"},
                   "attributeMerge": {"type": "timestampOrdered", "order": [crm_id]}}),
            "timestampOrdered".into(),
        ),
        (
            json!({"name": "p", "schema": {"name": "_xdm.context.experienceevent"},
                   "identityGraph": {"type": "pdg"}, "attributeMerge": {"type": "timestampOrdered"}}),
            "_xdm.context.profile".into(),
        ),
        (
            json!({"name": "p", "identityGraph": {"type": "graph"},
                   "attributeMerge": {"type": "timestampOrdered"}}),
            "none, pdg".into(),
        ),
    ] {
        let (status, problem) = api.post("/config/mergePolicies", body.clone()).await;
        assert_eq!(status, 400, "{body}: {problem}");
        assert!(detail(&problem).contains(&says), "{body}: {problem}");
        // The same checks on PUT.
        let (status, _) = api.call(Method::PUT, &url, Some(body.clone())).await;
        assert_eq!(status, 400, "PUT {body}");
    }

    // PUT replaces; a GET answer can be sent back as it is.
    let (_, mut current) = api.get(&url).await;
    current["name"] = json!("timestamps");
    current["attributeMerge"] = json!({"type": "timestampOrdered"});
    let (status, replaced) = api.call(Method::PUT, &url, Some(current)).await;
    assert_eq!(status, 200, "{replaced}");
    assert_eq!(
        replaced["attributeMerge"],
        json!({"type": "timestampOrdered"})
    );
    assert_eq!(replaced["default"], true);
    let (status, missing) = api
        .call(Method::PUT, &url, Some(json!({"name": "only a name"})))
        .await;
    assert_eq!(status, 400, "{missing}");

    // Unknown ids, and policies of another org or sandbox: 404.
    let unknown = "/config/mergePolicies/00000000-0000-0000-0000-000000000000";
    assert_eq!(api.get(unknown).await.0, 404);
    assert_eq!(api.patch(unknown, json!({"name": "x"})).await.0, 404);
    assert_eq!(
        api.call(Method::PUT, unknown, Some(json!({"name": "x"})))
            .await
            .0,
        404
    );
    assert_eq!(api.delete(unknown).await, 404);
    let other_org = Api {
        org: Some("other-org"),
        ..Api::new(&p, None)
    };
    assert_eq!(other_org.get(&url).await.0, 404);
    assert_eq!(Api::new(&p, Some("dev")).get(&url).await.0, 404);

    // AEP's org header is required.
    let anonymous = Api {
        org: None,
        ..Api::new(&p, None)
    };
    for (status, problem) in [
        anonymous.get("/config/mergePolicies").await,
        anonymous
            .post("/config/mergePolicies", json!({"name": "x"}))
            .await,
    ] {
        assert_eq!(status, 400, "{problem}");
        assert!(detail(&problem).contains("x-gw-ims-org-id"), "{problem}");
    }
    // The Confluent `/config` of the registry still answers beside it (with a credential, as
    // every registry call).
    let status = p
        .http
        .get(format!("{}/config", p.control))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}
