//! Who may call what (issue 19): every route control and the edge serve, walked from the
//! OpenAPI document that lists them and checked against the routes the source declares; and two
//! orgs, each with its own keys, that cannot reach each other.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use cdp_e2e::{Pipeline, ADMIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const A: &str = "ORG-A@AdobeOrg";
const B: &str = "ORG-B@AdobeOrg";
const ORG_HEADER: &str = "x-gw-ims-org-id";

/// Routes no credential is asked for: a route documented as public must be listed here too.
const PUBLIC: [&str; 6] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/tokens",
    "/ui/login",
    "/ui/style.css",
];

/// The stages' own query APIs (on `profile.query_listen`, not control's or the edge's port):
/// control calls them with the admin token.
const INTERNAL: &str = "/internal/";

/// One operation of the OpenAPI document, with its `security` as written.
#[derive(Debug)]
struct Operation {
    path: String,
    method: Method,
    security: String,
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// The operations of `docs/openapi.yaml`. Every one must say who may call it.
fn documented() -> Vec<Operation> {
    let text = std::fs::read_to_string(repo().join("docs/openapi.yaml")).expect("openapi.yaml");
    let mut ops = Vec::new();
    let (mut in_paths, mut path) = (false, String::new());
    for line in text.lines() {
        if line == "paths:" {
            in_paths = true;
            continue;
        }
        if in_paths && !line.starts_with(' ') && !line.is_empty() {
            break;
        }
        if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            path = format!("/{p}");
        } else if let Some(m) = line.strip_prefix("    ").and_then(|m| m.strip_suffix(':')) {
            if let Ok(method) = m.to_uppercase().parse::<Method>() {
                if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                    ops.push(Operation {
                        path: path.clone(),
                        method,
                        security: String::new(),
                    });
                }
            }
        } else if let Some(s) = line.strip_prefix("      security: ") {
            if let Some(op) = ops.last_mut() {
                op.security = s.trim().to_string();
            }
        }
    }
    for op in &ops {
        assert!(
            !op.security.is_empty(),
            "{} {} in docs/openapi.yaml has no security: say who may call it",
            op.method,
            op.path
        );
    }
    ops
}

/// `/a/{x}/b` → `/a/{}/b`: path parameters are named differently in the source and the docs.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            c if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// Every path a `.route("…")` of the crates' sources declares.
fn declared() -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![repo().join("crates")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read crates").flatten() {
            let p = entry.path();
            if p.is_dir() {
                // Sources only: a test's own routes are not served.
                if !p.ends_with("tests") && !p.ends_with("target") {
                    dirs.push(p);
                }
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p).expect("source");
                let mut rest = text.as_str();
                while let Some(at) = rest.find(".route(") {
                    rest = &rest[at + ".route(".len()..];
                    let trimmed = rest.trim_start();
                    if let Some(lit) = trimmed.strip_prefix('"') {
                        if let Some(end) = lit.find('"') {
                            found.insert(lit[..end].to_string());
                        }
                    }
                }
            }
        }
    }
    found
}

/// A credential of each kind the walk needs.
struct Callers {
    /// Org A, every role.
    a_all: String,
    /// Org A, `send` only (a key's default).
    a_send: String,
    /// Org A, `read` only.
    a_read: String,
    /// Org B, every role.
    b_all: String,
}

async fn token_of(p: &Pipeline, body: Value) -> String {
    let (_, key) = p.create_key_with(body).await;
    p.token(&key, 1).await
}

async fn callers(p: &Pipeline) -> Callers {
    let all = json!(["send", "read", "manage"]);
    Callers {
        a_all: token_of(p, json!({"orgId": A, "roles": all})).await,
        a_send: token_of(p, json!({"orgId": A})).await,
        a_read: token_of(p, json!({"orgId": A, "roles": ["read"]})).await,
        b_all: token_of(p, json!({"orgId": B, "roles": all})).await,
    }
}

/// Calls `op` on `base` with the path parameters filled in, a JSON body for writes, and the
/// given bearer token and org header; answers the status.
async fn call(base: &str, op: &Operation, bearer: Option<&str>, org: Option<&str>) -> StatusCode {
    call_path(base, &op.method, &fill(&op.path), bearer, org).await
}

async fn call_path(
    base: &str,
    method: &Method,
    path: &str,
    bearer: Option<&str>,
    org: Option<&str>,
) -> StatusCode {
    // Redirects are answers here (the dashboard's to its sign-in form), not to be followed.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client")
    });
    let mut req = client
        .request(method.clone(), format!("{base}{path}"))
        .header("accept", "application/json");
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(o) = org {
        req = req.header(ORG_HEADER, o);
    }
    if *method != Method::GET && *method != Method::DELETE {
        req = req.json(&json!({}));
    }
    req.send().await.expect("request").status()
}

fn fill(path: &str) -> String {
    shape(path).replace("{}", "authz-probe")
}

fn refused(s: StatusCode) -> bool {
    s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN
}

#[tokio::test]
async fn every_route_of_control_and_the_edge_checks_who_calls() {
    let ops = documented();

    // The walk covers what is served: every route the sources declare is documented.
    let documented_shapes: BTreeSet<String> = ops.iter().map(|o| shape(&o.path)).collect();
    let undocumented: Vec<String> = declared()
        .into_iter()
        .filter(|r| !r.starts_with(INTERNAL) && !documented_shapes.contains(&shape(r)))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes served but not in docs/openapi.yaml (so not walked here): {undocumented:?}"
    );

    let p = Pipeline::start().await;
    let who = callers(&p).await;
    let stream = p
        .create_stream(json!({"name": "secure", "orgId": A, "authenticationRequired": true}))
        .await;
    let stream_id = stream["id"].as_str().expect("stream id");

    let mut walked = 0;
    for op in &ops {
        let what = format!("{} {} ({})", op.method, op.path, op.security);
        let is_edge = op.path.starts_with("/collection") || op.path.starts_with("/stream/");
        if op.security == "[]" {
            assert!(
                PUBLIC.contains(&op.path.as_str()),
                "{what} is documented as public: add it to PUBLIC if it must be"
            );
            continue;
        }
        walked += 1;
        if is_edge {
            // On a stream of org A that requires authentication.
            let path = shape(&op.path).replace("{}", stream_id);
            let edge = p.edge.as_str();
            let none = call_path(edge, &op.method, &path, None, None).await;
            assert_eq!(none, StatusCode::UNAUTHORIZED, "{what}: no credential");
            for (name, t) in [("org B", &who.b_all), ("org A read-only", &who.a_read)] {
                let s = call_path(edge, &op.method, &path, Some(t), None).await;
                assert!(refused(s), "{what}: {name}'s token was let in ({s})");
            }
            let s = call_path(edge, &op.method, &path, Some(&who.a_send), None).await;
            assert!(
                !refused(s),
                "{what}: org A's sending token was refused ({s})"
            );
            continue;
        }
        let control = p.control.as_str();
        let none = call(control, op, None, None).await;
        if op.security.contains("uiSession") {
            // The dashboard: a redirect to sign in, or 401, without a session; an org's
            // credential needs role read (and then sees its org only).
            assert!(
                none == StatusCode::SEE_OTHER || none == StatusCode::UNAUTHORIZED,
                "{what}: no session ({none})"
            );
            let s = call(control, op, Some(&who.a_send), None).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{what}: a token without read");
            let s = call(control, op, Some(&who.a_read), None).await;
            // Signing out answers with a redirect to the form; a page would only redirect
            // there if the token were refused.
            let sent_to_sign_in = s == StatusCode::SEE_OTHER && op.method == Method::GET;
            assert!(
                !refused(s) && !sent_to_sign_in,
                "{what}: a token with read was refused ({s})"
            );
            continue;
        }
        assert_eq!(none, StatusCode::UNAUTHORIZED, "{what}: no credential");
        let admin = call(control, op, Some(ADMIN), Some(A)).await;
        assert!(
            !refused(admin),
            "{what}: the admin token was refused ({admin})"
        );
        if op.security == "[{admin: []}]" {
            let s = call(control, op, Some(&who.a_all), None).await;
            assert_eq!(
                s,
                StatusCode::FORBIDDEN,
                "{what}: an org's token on an operator route"
            );
            continue;
        }
        let role = if op.security.contains("[read]") {
            "read"
        } else if op.security.contains("[manage]") {
            "manage"
        } else {
            panic!("{what}: neither the operator's nor a role's");
        };
        let s = call(control, op, Some(&who.b_all), Some(A)).await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "{what}: org B's token, org A's header"
        );
        let lacking = if role == "read" {
            &who.a_send
        } else {
            &who.a_read
        };
        let s = call(control, op, Some(lacking), Some(A)).await;
        assert_eq!(
            s,
            StatusCode::FORBIDDEN,
            "{what}: org A's token without '{role}'"
        );
        let s = call(control, op, Some(&who.a_all), None).await;
        assert!(
            !refused(s),
            "{what}: org A's token with '{role}' was refused ({s})"
        );
    }
    assert!(walked > 60, "only {walked} routes walked");
}

/// The ids of the streams `token` lists.
async fn list(p: &Pipeline, token: &str) -> Vec<String> {
    let v: Value = p
        .http
        .get(format!("{}/streams", p.control))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET /streams")
        .json()
        .await
        .expect("streams");
    v["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn two_orgs_each_see_and_change_only_their_own() {
    let p = Pipeline::start().await;
    let all = json!(["send", "read", "manage"]);
    let (_, a_key) = p.create_key_with(json!({"orgId": A, "roles": all})).await;
    let a = p.token(&a_key, 1).await;
    let b = token_of(&p, json!({"orgId": B, "roles": all})).await;
    let dataset_a = p.create_dataset(A, cdp_e2e::event_schema()).await;
    let dataset_b = p.create_dataset(B, cdp_e2e::event_schema()).await;

    // Streams: each org creates its own, with its own token, and cannot create another's.
    let create = |token: &str, org: &str, dataset: &Value| {
        p.http
            .post(format!("{}/streams", p.control))
            .bearer_auth(token)
            .json(&json!({"name": format!("{org} stream"), "orgId": org,
                          "datasetId": dataset["id"], "authenticationRequired": true}))
            .send()
    };
    let resp = create(&a, A, &dataset_a).await.expect("POST /streams");
    assert_eq!(resp.status(), 201);
    let stream_a: Value = resp.json().await.expect("stream");
    let resp = create(&b, B, &dataset_b).await.expect("POST /streams");
    assert_eq!(resp.status(), 201);
    let stream_b: Value = resp.json().await.expect("stream");
    let resp = create(&b, A, &dataset_a).await.expect("POST /streams");
    assert_eq!(resp.status(), 403, "org B created a stream in org A");
    let id_a = stream_a["id"].as_str().expect("id").to_string();
    let id_b = stream_b["id"].as_str().expect("id").to_string();
    assert_eq!(list(&p, &a).await, vec![id_a.clone()]);
    assert_eq!(list(&p, &b).await, vec![id_b.clone()]);
    let admin_sees = list(&p, ADMIN).await;
    assert!(admin_sees.contains(&id_a) && admin_sees.contains(&id_b));
    for method in [Method::GET, Method::DELETE] {
        let s = call_path(
            &p.control,
            &method,
            &format!("/streams/{id_a}"),
            Some(&b),
            None,
        )
        .await;
        assert_eq!(
            s,
            StatusCode::NOT_FOUND,
            "{method} of org A's stream by org B"
        );
    }

    // The edge: org A's token sends to A's stream; B's is refused there.
    p.wait_for_edge(|c| c.streams.contains_key(&id_a)).await;
    let batch = format!("/collection/batch/{id_a}");
    let body = r#"{"messages":[{"header":{},"body":{"xdmMeta":{},"xdmEntity":{"_id":"1"}}}]}"#;
    let (status, answer, _) = p
        .post_with(&batch, "application/json", body, Some(&a))
        .await;
    assert_eq!(status, 207);
    assert_eq!(
        p.post_with(&batch, "application/json", body, Some(&b))
            .await
            .0,
        403
    );

    // Datasets and their batches: each org sees its own only.
    let ds_a = format!(
        "/datasets/{}",
        dataset_a["id"].as_str().expect("dataset id")
    );
    assert_eq!(
        call_path(&p.control, &Method::GET, &ds_a, Some(&a), None).await,
        StatusCode::OK
    );
    assert_eq!(
        call_path(&p.control, &Method::GET, &ds_a, Some(&b), None).await,
        StatusCode::NOT_FOUND
    );
    let datasets: Value = p
        .http
        .get(format!("{}/datasets", p.control))
        .bearer_auth(&b)
        .send()
        .await
        .expect("GET /datasets")
        .json()
        .await
        .expect("datasets");
    let orgs: BTreeSet<&str> = datasets["datasets"]
        .as_array()
        .expect("datasets")
        .iter()
        .filter_map(|d| d["orgId"].as_str())
        .collect();
    assert_eq!(orgs, BTreeSet::from([B]), "{datasets}");
    let batch_path = format!("/batches/{}", answer["batchId"].as_str().expect("batchId"));
    cdp_test_support::eventually(
        std::time::Duration::from_secs(30),
        "org A's batch in the lake",
        async || {
            call_path(&p.control, &Method::GET, &batch_path, Some(&a), None).await == StatusCode::OK
        },
    )
    .await;
    assert_eq!(
        call_path(&p.control, &Method::GET, &batch_path, Some(&b), None).await,
        StatusCode::NOT_FOUND
    );

    // Segments, addressed by the org header: the credential fills it in, and may not name
    // another org.
    let segment = json!({"name": "buyers", "schema": {"name": "_xdm.context.profile"},
        "expression": {"type": "PQL", "format": "pql/text",
                       "value": "xEvent.any(eventType = \"commerce.purchases\")"}});
    let resp = p
        .http
        .post(format!("{}/segment/definitions", p.control))
        .bearer_auth(&a)
        .json(&segment)
        .send()
        .await
        .expect("POST /segment/definitions");
    assert_eq!(resp.status(), 200);
    let definition: Value = resp.json().await.expect("definition");
    assert_eq!(definition["imsOrgId"], A, "{definition}");
    let seg_path = format!(
        "/segment/definitions/{}",
        definition["id"].as_str().unwrap_or_default()
    );
    assert_eq!(
        call_path(&p.control, &Method::GET, &seg_path, Some(&a), None).await,
        StatusCode::OK
    );
    assert_eq!(
        call_path(&p.control, &Method::GET, &seg_path, Some(&b), None).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call_path(&p.control, &Method::GET, &seg_path, Some(&b), Some(A)).await,
        StatusCode::FORBIDDEN
    );
    let listed: Value = p
        .http
        .get(format!("{}/segment/definitions", p.control))
        .bearer_auth(&b)
        .send()
        .await
        .expect("GET /segment/definitions")
        .json()
        .await
        .expect("definitions");
    assert!(
        !listed
            .to_string()
            .contains(definition["id"].as_str().unwrap_or("-")),
        "org B lists org A's segment: {listed}"
    );

    // XDM schemas: an org's own, or shared by the operator.
    let schema_body = |org: Option<&str>| {
        let mut body = json!({"title": "Web events", "tenant": "acme",
            "class": "_xdm.context.experienceevent",
            "fieldGroups": ["web-details"]});
        if let Some(org) = org {
            body["orgId"] = json!(org);
        }
        body
    };
    let create_schema = |token: &str, body: Value| {
        p.http
            .post(format!("{}/xdm/schemas", p.control))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let resp = create_schema(&a, schema_body(None)).await.expect("POST");
    assert_eq!(resp.status(), 201);
    let own: Value = resp.json().await.expect("schema");
    assert_eq!(own["orgId"], A, "{own}");
    let own_path = format!(
        "/xdm/schemas/{}",
        own["id"]
            .as_str()
            .expect("schema id")
            .replace('/', "%2F")
            .replace(':', "%3A")
    );
    let resp = create_schema(&a, schema_body(Some(B))).await.expect("POST");
    assert_eq!(resp.status(), 403, "org A made a schema for org B");
    let resp = create_schema(ADMIN, schema_body(None)).await.expect("POST");
    assert_eq!(resp.status(), 201);
    let shared: Value = resp.json().await.expect("schema");
    assert!(shared.get("orgId").is_none_or(Value::is_null), "{shared}");
    let shared_path = format!(
        "/xdm/schemas/{}",
        shared["id"]
            .as_str()
            .expect("schema id")
            .replace('/', "%2F")
            .replace(':', "%3A")
    );
    assert_eq!(
        call_path(&p.control, &Method::GET, &own_path, Some(&a), None).await,
        StatusCode::OK
    );
    assert_eq!(
        call_path(&p.control, &Method::GET, &own_path, Some(&b), None).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call_path(&p.control, &Method::GET, &shared_path, Some(&b), None).await,
        StatusCode::OK
    );
    assert_eq!(
        call_path(&p.control, &Method::PUT, &shared_path, Some(&b), None).await,
        StatusCode::FORBIDDEN,
        "an org changed a shared schema"
    );
    let listed: Value = p
        .http
        .get(format!("{}/xdm/schemas", p.control))
        .bearer_auth(&b)
        .send()
        .await
        .expect("GET /xdm/schemas")
        .json()
        .await
        .expect("schemas");
    let ids: Vec<&str> = listed["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert!(
        ids.contains(&shared["id"].as_str().unwrap_or("-")),
        "{listed}"
    );
    assert!(
        !ids.contains(&own["id"].as_str().unwrap_or("-")),
        "{listed}"
    );
    let resp = p
        .http
        .post(format!("{}/datasets", p.control))
        .bearer_auth(&b)
        .json(&json!({"name": "borrowed", "orgId": B, "schemaRef": {"id": own["id"]}}))
        .send()
        .await
        .expect("POST /datasets");
    assert_eq!(
        resp.status(),
        400,
        "org B bound a dataset to org A's schema"
    );

    // A token narrowed to reading cannot send, and a token cannot be wider than its key.
    let narrow = |body: Value| {
        p.http
            .post(format!("{}/tokens", p.control))
            .json(&body)
            .send()
    };
    let resp = narrow(json!({"apiKey": a_key, "roles": ["read"]}))
        .await
        .expect("POST /tokens");
    assert_eq!(resp.status(), 200);
    let reader: Value = resp.json().await.expect("token");
    assert_eq!(reader["roles"], json!(["read"]));
    let reader = reader["accessToken"].as_str().expect("token").to_string();
    assert_eq!(
        p.post_with(&batch, "application/json", body, Some(&reader))
            .await
            .0,
        403
    );
    assert_eq!(list(&p, &reader).await, vec![id_a.clone()]);
    let (_, sender_key) = p.create_key(A).await;
    let resp = narrow(json!({"apiKey": sender_key, "roles": ["manage"]}))
        .await
        .expect("POST /tokens");
    assert_eq!(resp.status(), 403, "a token wider than its key");

    // A key for one sandbox: the default (prod) is refused, its own is not.
    let dev = token_of(
        &p,
        json!({"orgId": A, "roles": ["read"], "sandboxes": ["dev"]}),
    )
    .await;
    let get_definitions = |sandbox: Option<&'static str>| {
        let mut r = p
            .http
            .get(format!("{}/segment/definitions", p.control))
            .bearer_auth(&dev);
        if let Some(s) = sandbox {
            r = r.header("x-sandbox-name", s);
        }
        r.send()
    };
    assert_eq!(get_definitions(None).await.expect("GET").status(), 403);
    assert_eq!(
        get_definitions(Some("dev")).await.expect("GET").status(),
        200
    );
}

#[tokio::test]
async fn the_dashboard_signed_in_with_an_orgs_key_shows_that_org_only() {
    let p = Pipeline::start().await;
    let stream_a = p.create_stream(json!({"name": "a web", "orgId": A})).await;
    let stream_b = p.create_stream(json!({"name": "b web", "orgId": B})).await;
    let (id_a, id_b) = (
        stream_a["id"].as_str().expect("id"),
        stream_b["id"].as_str().expect("id"),
    );
    let (dataset_a, dataset_b) = (
        stream_a["datasetId"].as_str().expect("dataset"),
        stream_b["datasetId"].as_str().expect("dataset"),
    );
    let (key_id, reader) = p
        .create_key_with(json!({"orgId": A, "roles": ["read"]}))
        .await;
    let (_, sender) = p.create_key(A).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let sign_in = |key: String| {
        browser
            .post(format!("{}/ui/login", p.control))
            .form(&[("token", key.as_str()), ("next", "/ui")])
            .send()
    };

    // A key that may only send does not open the dashboard.
    let refused = sign_in(sender).await.expect("POST /ui/login");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(refused.headers().get("set-cookie").is_none());

    let resp = sign_in(reader).await.expect("POST /ui/login");
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("session cookie")
        .to_string();
    let page = |path: String| {
        browser
            .get(format!("{}{path}", p.control))
            .header("cookie", &cookie)
            .send()
    };
    let overview = page("/ui".into()).await.expect("GET /ui");
    assert_eq!(overview.status(), StatusCode::OK);
    let html = overview.text().await.expect("html");
    assert!(
        html.contains(id_a) && html.contains(dataset_a),
        "org A's own"
    );
    assert!(
        !html.contains(id_b) && !html.contains(dataset_b),
        "org B's stream or dataset on org A's dashboard"
    );
    for path in [
        format!("/ui/datasets/{dataset_b}"),
        format!("/ui/streams/{id_b}/events?refresh=0"),
    ] {
        let s = page(path.clone()).await.expect("GET").status();
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
    }
    let own = page(format!("/ui/datasets/{dataset_a}"))
        .await
        .expect("GET");
    assert_eq!(own.status(), StatusCode::OK);
    // The profile page looks profiles up in the key's own org, whatever the query asks.
    let html = page(format!("/ui/profiles?org={B}&sandbox=prod"))
        .await
        .expect("GET /ui/profiles")
        .text()
        .await
        .expect("html");
    assert!(
        html.contains(&format!(r#"name="org" value="{A}""#)) && html.contains(" readonly>"),
        "the org field is org A's, fixed: {html}"
    );
    assert!(!html.contains(B), "org B on org A's profile page: {html}");

    // Rotating the key ends its sessions.
    let rotated = p
        .http
        .post(format!("{}/api-keys/{key_id}/rotate", p.control))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("rotate");
    assert_eq!(rotated.status(), StatusCode::OK);
    cdp_test_support::eventually(
        std::time::Duration::from_secs(10),
        "the rotated key's session to end",
        async || page("/ui".into()).await.expect("GET /ui").status() == StatusCode::SEE_OTHER,
    )
    .await;
}
