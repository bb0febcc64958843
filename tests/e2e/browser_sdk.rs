//! The web SDK (`sdks/js`) in a real browser (Debian's headless Chromium) against the real edge:
//! a shop page on another origin than the edge (so CORS is real), an authenticated and
//! rate-limited stream (so the SDK meets 403 and 429 and must recover), two loads of the page
//! (the ECID cookie), one refused event, and pages left with events still queued (the
//! page-hide flush). What counts is what reaches `cdp.ingest.raw`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cdp_e2e::Pipeline;
use cdp_test_support::browser::{browser_script, repo_root, run_script, BROWSER_INSTALL_HINT};
use serde_json::{json, Value};

const ORG: &str = "SHOP@AdobeOrg";

/// What the page's server needs: control (for tokens) and an API key of the org.
#[derive(Clone)]
struct Site {
    control: String,
    api_key: String,
    http: reqwest::Client,
    token_calls: Arc<AtomicUsize>,
}

fn dist() -> PathBuf {
    repo_root().join("sdks/js/dist")
}

async fn page() -> Response {
    match tokio::fs::read_to_string(browser_script("sdk-page.html")).await {
        Ok(html) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// The SDK's built modules; nothing but `*.js` names from `sdks/js/dist`.
async fn sdk_file(Path(name): Path<String>) -> Response {
    let safe = name.ends_with(".js")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !name.contains("..");
    if !safe {
        return StatusCode::NOT_FOUND.into_response();
    }
    match tokio::fs::read(dist().join(&name)).await {
        Ok(js) => ([(header::CONTENT_TYPE, "text/javascript")], js).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// What a shop's backend does for its pages: trade its API key for a fresh access token.
async fn token(State(site): State<Site>) -> Response {
    site.token_calls.fetch_add(1, Ordering::SeqCst);
    let resp = site
        .http
        .post(format!("{}/tokens", site.control))
        .json(&json!({"apiKey": site.api_key, "days": 1}))
        .send()
        .await;
    let body: Option<Value> = match resp {
        Ok(r) if r.status().is_success() => r.json().await.ok(),
        _ => None,
    };
    match body.and_then(|b| b["accessToken"].as_str().map(str::to_string)) {
        Some(t) => Json(json!({ "token": t })).into_response(),
        None => (StatusCode::BAD_GATEWAY, "control issued no token").into_response(),
    }
}

async fn serve_site(site: Site) -> SocketAddr {
    let app = Router::new()
        .route("/", get(page))
        .route("/sdk/{name}", get(sdk_file))
        .route("/token", post(token))
        .with_state(site);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the page server");
    let addr = listener.local_addr().expect("page server address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("expected a string: {s}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn the_web_sdk_delivers_from_a_real_browser_through_cors_auth_throttling_and_page_hide() {
    assert!(
        dist().join("index.js").exists(),
        "the web SDK is not built: {BROWSER_INSTALL_HINT}"
    );
    let p = Pipeline::start().await;
    let (_, api_key) = p.create_key(ORG).await;
    let site = Site {
        control: p.control.clone(),
        api_key,
        http: reqwest::Client::new(),
        token_calls: Arc::new(AtomicUsize::new(0)),
    };
    let page_addr = serve_site(site.clone()).await;
    let origin = format!("http://{page_addr}");

    let stream = p
        .create_stream(json!({
            "name": "shop", "orgId": ORG, "authenticationRequired": true, "rateLimit": 1,
            "allowedOrigins": [origin],
        }))
        .await;
    assert_eq!(stream["allowedOrigins"], json!([origin]));
    let beacon_stream = p
        .create_stream(json!({
            "name": "shop-beacons", "orgId": ORG, "datasetId": stream["datasetId"],
            "allowedOrigins": [origin],
        }))
        .await;
    let stream_id = stream["id"].as_str().expect("stream id");
    let beacon_id = beacon_stream["id"].as_str().expect("stream id");
    cors_at_the_edge(&p, &stream, &origin).await;

    let seen = run_script(
        &browser_script("sdk.mjs"),
        &[
            ("CDP_PAGE_URL", format!("{origin}/")),
            ("CDP_EDGE_URL", p.edge.clone()),
            ("CDP_STREAM_ID", stream_id.to_string()),
            ("CDP_BEACON_STREAM_ID", beacon_id.to_string()),
            ("CDP_ORG_ID", ORG.to_string()),
            (
                "CDP_DATASET_ID",
                stream["datasetId"].as_str().expect("datasetId").to_string(),
            ),
            (
                "CDP_SCHEMA_ID",
                stream["schemaRef"]["id"]
                    .as_str()
                    .expect("schemaRef")
                    .to_string(),
            ),
        ],
        Duration::from_secs(45),
    )
    .await;
    eprintln!(
        "{}",
        serde_json::to_string_pretty(&seen).unwrap_or_default()
    );

    // What the pages saw while they were alive.
    let load1 = &seen["load1"];
    let load2 = &seen["load2"];
    let ecid = load1["ecid"].as_str().expect("ecid").to_string();
    assert_eq!(ecid.len(), 38, "{ecid}");
    assert!(ecid.bytes().all(|b| b.is_ascii_digit()), "{ecid}");
    assert_eq!(
        load2["ecid"],
        ecid.as_str(),
        "the cookie survived the reload"
    );
    let cookie = seen["cookies"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "cdp_ecid"))
        .unwrap_or_else(|| panic!("no cdp_ecid cookie: {}", seen["cookies"]));
    assert_eq!(cookie["value"], ecid.as_str());
    assert_eq!(cookie["path"], "/");
    assert_eq!(cookie["sameSite"], "Lax");
    let days = (cookie["expires"].as_f64().expect("a persistent cookie")
        - cdp_control::model::now_ms() as f64 / 1000.0)
        / 86_400.0;
    assert!((364.0..=366.0).contains(&days), "expires in {days} days");

    // The invalid token: 403, one fresh token, the batch again.
    assert_eq!(load1["tokenCalls"], 1, "one refresh, not a loop: {load1}");
    assert!(
        load1["results"][0]["attempts"].as_u64() >= Some(2),
        "the first batch went again with the fresh token: {}",
        load1["results"][0]
    );
    assert!(site.token_calls.load(Ordering::SeqCst) >= 2);
    assert!(
        load1["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .all(|e| e["kind"] == "rejected"),
        "only the bad event failed: {}",
        load1["errors"]
    );
    // The rate limit: at least one 429 waited out (Retry-After) and sent again.
    let throttled: Vec<&Value> = load1["retries"]
        .as_array()
        .expect("retries")
        .iter()
        .filter(|r| r["status"] == 429)
        .collect();
    assert!(
        !throttled.is_empty(),
        "no 429 retried: {}",
        load1["retries"]
    );
    assert!(
        throttled
            .iter()
            .all(|r| r["retryAfterMs"].as_u64() >= Some(1000)),
        "the page could read Retry-After (exposed by CORS): {throttled:?}"
    );
    // The refused event: reported with the edge's reason, not accepted.
    let bad = load1["bad"].as_str().expect("bad event id").to_string();
    let rejected: Vec<Value> = load1["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .flat_map(|e| e["events"].as_array().cloned().unwrap_or_default())
        .collect();
    assert_eq!(rejected.len(), 1, "{}", load1["errors"]);
    assert_eq!(rejected[0]["id"], bad.as_str());
    assert_eq!(rejected[0]["statusCode"], 400);
    assert!(
        rejected[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-dataset")),
        "{}",
        rejected[0]
    );
    assert_eq!(load1["flushed"]["accepted"], 12, "{}", load1["flushed"]);
    assert_eq!(load1["flushed"]["rejected"], 1);
    assert_eq!(load2["flushed"]["accepted"], 4, "{}", load2["flushed"]);
    let accepted_x: usize = [load1, load2]
        .iter()
        .flat_map(|l| l["results"].as_array().cloned().unwrap_or_default())
        .map(|r| r["accepted"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(accepted_x, 16, "onResult saw every accepted event");

    // Everything the browser sent, by _id, exactly once on the raw topic.
    let mut expected: Vec<String> = Vec::new();
    for load in [load1, load2] {
        expected.extend(strings(&load["sent"]));
    }
    let hidden = &seen["hidden"];
    let mut hidden_ids = Vec::new();
    for case in ["coldClose", "navigation", "closeBeacon", "closeFetch"] {
        assert_eq!(hidden[case]["ecid"], ecid.as_str(), "{case}");
        hidden_ids.extend(strings(&hidden[case]["sent"]));
    }
    expected.extend(hidden_ids.iter().cloned());
    let records = p.raw_records(expected.len()).await;
    let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
    for r in &records {
        let v = r.json();
        let id = v["body"]["xdmEntity"]["_id"]
            .as_str()
            .expect("_id")
            .to_string();
        by_id.entry(id).or_default().push(v);
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !by_id.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} events missing (page-hide ones: {:?}); log: {}",
        missing.len(),
        expected.len(),
        missing
            .iter()
            .filter(|m| hidden_ids.contains(m))
            .collect::<Vec<_>>(),
        seen["log"]
    );
    let twice: Vec<(&String, usize)> = by_id
        .iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|(k, v)| (k, v.len()))
        .collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    assert_eq!(
        records.len(),
        expected.len(),
        "nothing else on the raw topic"
    );
    assert!(
        !by_id.contains_key(&bad),
        "the refused event is not on the raw topic"
    );
    let expected: HashSet<&String> = expected.iter().collect();
    for (id, values) in &by_id {
        assert!(expected.contains(id), "unexpected event {id}");
        let v = &values[0];
        let ecids = &v["body"]["xdmEntity"]["identityMap"]["ECID"];
        assert_eq!(ecids, &json!([{"id": ecid, "primary": true}]), "{id}");
        assert_eq!(v["header"]["imsOrgId"], ORG);
        assert_eq!(v["header"]["datasetId"], stream["datasetId"]);
        assert_eq!(v["header"]["schemaRef"]["id"], stream["schemaRef"]["id"]);
        assert!(v["header"]["source"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("@cdp/web-sdk/")));
    }
    // Which stream each page-hide case reached: the beacon went to the stream without auth.
    let on_stream = |id: &String| {
        records
            .iter()
            .find(|r| r.json()["body"]["xdmEntity"]["_id"] == id.as_str())
            .and_then(|r| r.header("cdp-stream-id").map(str::to_string))
    };
    for id in strings(&hidden["closeBeacon"]["sent"]) {
        assert_eq!(on_stream(&id).as_deref(), Some(beacon_id));
    }
    for id in strings(&hidden["closeFetch"]["sent"])
        .into_iter()
        .chain(strings(&hidden["coldClose"]["sent"]))
    {
        assert_eq!(on_stream(&id).as_deref(), Some(stream_id));
    }

    // How each page handed its queue over (logged by the pages as they went): fetch keepalive
    // where the stream needs the token (a beacon cannot carry it), sendBeacon where it does not.
    let log = seen["log"].as_array().expect("log");
    let hand_over = |page: &str| {
        log.iter()
            .find(|e| e["page"] == page && e.get("pageHide").is_some())
            .map(|e| e["pageHide"].clone())
            .unwrap_or_else(|| panic!("no page hide logged by {page}: {log:?}"))
    };
    let keepalive = |n: usize| json!({"keepalive": n, "beacon": 0, "left": 0, "requests": 1});
    assert_eq!(
        hand_over("?load=0"),
        keepalive(4),
        "closed before any preflight"
    );
    assert_eq!(hand_over("?load=1"), keepalive(5), "left by navigation");
    assert_eq!(
        hand_over("?load=3"),
        json!({"keepalive": 0, "beacon": 5, "left": 0, "requests": 1}),
        "closed, no token"
    );
    assert_eq!(hand_over("?load=4"), keepalive(5), "closed");
}

/// What the browser relies on, asked directly: the preflight of the page's origin, the headers
/// on a refusal it must read (401), another origin refused before anything is written, and
/// control refusing an origin with a path.
async fn cors_at_the_edge(p: &Pipeline, stream: &Value, origin: &str) {
    let stream_id = stream["id"].as_str().expect("stream id");
    let url = format!("{}/collection/batch/{stream_id}", p.edge);
    let preflight = p
        .http
        .request(reqwest::Method::OPTIONS, &url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .expect("preflight");
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], origin);
    assert_eq!(h["access-control-allow-methods"], "POST");
    assert_eq!(h["access-control-max-age"], "600");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap_or_default();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );

    let unauthorized = p
        .http
        .post(&url)
        .header("origin", origin)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("POST without a token");
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        unauthorized.headers()["access-control-allow-origin"],
        origin
    );
    assert_eq!(unauthorized.headers()["vary"], "origin");

    for method in [reqwest::Method::OPTIONS, reqwest::Method::POST] {
        let refused = p
            .http
            .request(method.clone(), &url)
            .header("origin", "https://elsewhere.example")
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .expect("request from another origin");
        assert_eq!(refused.status(), 403, "{method}");
        assert!(refused
            .headers()
            .get("access-control-allow-origin")
            .is_none());
    }

    let resp = p
        .http
        .post(format!("{}/streams", p.control))
        .bearer_auth(cdp_e2e::ADMIN)
        .json(
            &json!({"name": "bad", "orgId": ORG, "datasetId": stream["datasetId"],
                      "allowedOrigins": [format!("{origin}/shop")]}),
        )
        .send()
        .await
        .expect("POST /streams");
    assert_eq!(resp.status(), 400);
    let problem: Value = resp.json().await.expect("problem JSON");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("allowedOrigins[0]")),
        "{problem}"
    );
}
