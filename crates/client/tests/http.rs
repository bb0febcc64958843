//! The client against a small real HTTP server (axum on a loopback port) that plays the edge
//! and control: scripted 429 / 503 / 400 / 413 / 401 answers, stalls, and 207 answers that
//! refuse the messages whose entity says `"bad": true`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cdp_client::{Auth, Client, ClientBuilder, ClientError, Event, Outcome};
use serde_json::{json, Value};
use tokio::sync::watch;

const SCHEMA: &str = "https://ns.adobe.com/acme/schemas/web";

/// A scripted answer, used before the default 207.
#[derive(Clone)]
struct Scripted {
    status: u16,
    retry_after: Option<&'static str>,
    detail: &'static str,
}

fn answer(status: u16) -> Scripted {
    Scripted {
        status,
        retry_after: None,
        detail: "scripted",
    }
}

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    stream: String,
    bearer: Option<String>,
    query: Option<String>,
    body: Value,
}

struct ServerState {
    script: Mutex<VecDeque<Scripted>>,
    seen: Mutex<Vec<Seen>>,
    /// While true, edge requests wait (after being recorded) before they are answered.
    stall: watch::Receiver<bool>,
    /// With `Some(n)`, the edge takes only bearer tokens `tok-<m>` with m ≥ n (401 otherwise,
    /// 403 for a token not of that form).
    min_token: Mutex<Option<u64>>,
    tokens_issued: AtomicU64,
    token_lifetime_secs: AtomicU64,
    batches: AtomicU32,
    /// Ids of `"flaky": true` events already answered 503 once.
    flaked: Mutex<std::collections::HashSet<String>>,
}

struct Server {
    url: String,
    state: Arc<ServerState>,
    stall: watch::Sender<bool>,
}

impl Server {
    async fn start() -> Server {
        let (stall_tx, stall_rx) = watch::channel(false);
        let state = Arc::new(ServerState {
            script: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
            stall: stall_rx,
            min_token: Mutex::new(None),
            tokens_issued: AtomicU64::new(0),
            token_lifetime_secs: AtomicU64::new(3600),
            batches: AtomicU32::new(0),
            flaked: Mutex::new(std::collections::HashSet::new()),
        });
        let app = Router::new()
            .route("/collection/batch/{stream}", post(edge))
            .route("/tokens", post(tokens))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server {
            url: format!("http://{addr}"),
            state,
            stall: stall_tx,
        }
    }

    fn script(&self, answers: impl IntoIterator<Item = Scripted>) {
        self.state.script.lock().unwrap().extend(answers);
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Messages per request, in order.
    fn sizes(&self) -> Vec<usize> {
        self.seen()
            .iter()
            .map(|s| s.body["messages"].as_array().map_or(0, Vec::len))
            .collect()
    }

    fn client(&self) -> ClientBuilder {
        Client::builder(&self.url, "stream-1")
            .schema_id(SCHEMA)
            .linger(Duration::from_millis(20))
            .backoff(Duration::from_millis(20), Duration::from_millis(200))
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

async fn edge(
    State(state): State<Arc<ServerState>>,
    Path(stream): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: String,
) -> Response {
    let bearer = bearer(&headers);
    let body: Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    state.seen.lock().unwrap().push(Seen {
        at: Instant::now(),
        stream,
        bearer: bearer.clone(),
        query,
        body: body.clone(),
    });
    let mut stall = state.stall.clone();
    let _ = stall.wait_for(|s| !*s).await;
    let min_token = *state.min_token.lock().unwrap();
    if let Some(min) = min_token {
        let n = bearer
            .as_deref()
            .and_then(|t| t.strip_prefix("tok-"))
            .and_then(|n| n.parse::<u64>().ok());
        match n {
            None => {
                return problem(403, "the access token is invalid", None);
            }
            Some(n) if n < min => {
                return problem(401, "the access token was revoked", None);
            }
            Some(_) => {}
        }
    }
    let scripted = state.script.lock().unwrap().pop_front();
    if let Some(s) = scripted {
        return problem(s.status, s.detail, s.retry_after);
    }
    let n = state.batches.fetch_add(1, Ordering::SeqCst);
    let batch_id = format!("b{n}");
    let responses: Vec<Value> = body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .enumerate()
                .map(|(i, m)| {
                    let entity = &m["body"]["xdmEntity"];
                    let id = entity["_id"].as_str().unwrap_or("?").to_string();
                    // Not written, as the edge answers when its producer queue filled mid-batch:
                    // a flaky event once, a stuck one every time.
                    let unwritten = entity["stuck"] == json!(true)
                        || (entity["flaky"] == json!(true) && state.flaked.lock().unwrap().insert(id));
                    if unwritten {
                        json!({"statusCode": 503, "message": "not written: send this message again"})
                    } else if entity["bad"] == json!(true) {
                        json!({"statusCode": 400, "message": format!("bad event {}", entity["_id"].as_str().unwrap_or("?"))})
                    } else {
                        json!({"xactionId": format!("{batch_id}:{i}")})
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    (
        StatusCode::MULTI_STATUS,
        Json(json!({"inletId": "stream-1", "batchId": batch_id, "receivedTimeMs": 1, "responses": responses})),
    )
        .into_response()
}

fn problem(status: u16, detail: &str, retry_after: Option<&str>) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let mut resp = (
        status,
        Json(json!({"type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(), "detail": detail})),
    )
        .into_response();
    if let Some(r) = retry_after {
        resp.headers_mut().insert("retry-after", r.parse().unwrap());
    }
    resp
}

async fn tokens(State(state): State<Arc<ServerState>>, Json(req): Json<Value>) -> Response {
    if req["apiKey"] != "cdpk.k1.secret" {
        return problem(401, "unknown API key", None);
    }
    assert_eq!(req["days"], 1, "{req}");
    let n = state.tokens_issued.fetch_add(1, Ordering::SeqCst) + 1;
    let lifetime = state.token_lifetime_secs.load(Ordering::SeqCst) as i64;
    let now = chrono::Utc::now().timestamp();
    Json(json!({"accessToken": format!("tok-{n}"), "tokenType": "Bearer", "orgId": "ACME@AdobeOrg", "expiresAt": now + lifetime})).into_response()
}

fn api_key(server: &Server) -> Auth {
    Auth::ApiKey {
        control_url: server.url.clone(),
        api_key: "cdpk.k1.secret".into(),
    }
}

#[tokio::test]
async fn envelope_and_a_mixed_207_give_typed_outcomes_in_order() {
    let server = Server::start().await;
    let client = server
        .client()
        .org_id("ACME@AdobeOrg")
        .dataset_id("ds-1")
        .schema_version(2)
        .sync_validation(true)
        .build()
        .unwrap();
    let events = [
        Event::new(json!({"eventType": "a"})).with_identity("ECID", "e-1", true),
        Event::new(json!({"eventType": "b", "bad": true, "_id": "bad-1"})),
        Event::new(json!({"eventType": "c", "_id": "mine", "timestamp": "2026-01-01T00:00:00Z"})),
        Event::new(json!({"bad": true, "_id": "bad-2"})),
        Event::new(json!({"eventType": "e"})),
    ];
    let mut receipts = Vec::new();
    for e in events {
        receipts.push(client.send(e).await.unwrap());
    }
    client.flush().await.unwrap();
    let ids: Vec<String> = receipts.iter().map(|r| r.id().to_string()).collect();
    let mut outcomes = Vec::new();
    for r in receipts {
        outcomes.push(r.await);
    }
    assert!(
        matches!(&outcomes[0], Outcome::Accepted { xaction_id, batch_id } if xaction_id == "b0:0" && batch_id == "b0"),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], Outcome::Refused { status_code: 400, message, batch_id: Some(b) } if message == "bad event bad-1" && b == "b0"),
        "{outcomes:?}"
    );
    assert!(matches!(&outcomes[2], Outcome::Accepted { xaction_id, .. } if xaction_id == "b0:2"));
    assert!(
        matches!(&outcomes[3], Outcome::Refused { message, .. } if message == "bad event bad-2")
    );
    assert!(outcomes[4].is_accepted());

    // One request, with the collection API's envelope around each event.
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].stream, "stream-1");
    assert_eq!(seen[0].query.as_deref(), Some("syncValidation=true"));
    assert_eq!(seen[0].bearer, None);
    let messages = seen[0].body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 5);
    let schema_ref =
        json!({"id": SCHEMA, "contentType": "application/vnd.adobe.xed-full+json;version=2"});
    for (m, id) in messages.iter().zip(&ids) {
        assert_eq!(m["header"]["schemaRef"], schema_ref);
        assert_eq!(m["header"]["imsOrgId"], "ACME@AdobeOrg");
        assert_eq!(m["header"]["datasetId"], "ds-1");
        assert_eq!(m["body"]["xdmMeta"]["schemaRef"], schema_ref);
        assert_eq!(m["body"]["xdmEntity"]["_id"], id.as_str());
        let ts = m["body"]["xdmEntity"]["timestamp"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(ts).unwrap();
    }
    assert_eq!(uuid_version(&ids[0]), Some(4));
    assert_eq!(ids[2], "mine");
    assert_eq!(
        messages[2]["body"]["xdmEntity"]["timestamp"],
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(
        messages[0]["body"]["xdmEntity"]["identityMap"],
        json!({"ECID": [{"id": "e-1", "primary": true}]})
    );
    let stats = client.stats();
    assert_eq!(
        (
            stats.sent,
            stats.accepted,
            stats.refused,
            stats.failed,
            stats.batches,
            stats.retries,
            stats.buffered
        ),
        (5, 3, 2, 0, 1, 0, 0)
    );
    client.close().await.unwrap();
}

fn uuid_version(s: &str) -> Option<u8> {
    // xxxxxxxx-xxxx-Vxxx-…
    let parts: Vec<&str> = s.split('-').collect();
    (parts.len() == 5 && parts[0].len() == 8)
        .then(|| u8::from_str_radix(&parts[2][..1], 16).ok())
        .flatten()
}

/// A 207 that answers some messages 503 (the edge could not write them; the others it did):
/// only those are sent again, and one that is never written ends refused with its 503.
#[tokio::test]
async fn messages_a_207_did_not_write_are_sent_again_alone() {
    let server = Server::start().await;
    let client = server.client().max_retries(2).build().unwrap();
    let events = [
        Event::new(json!({"_id": "plain"})),
        Event::new(json!({"_id": "flaky", "flaky": true})),
        Event::new(json!({"_id": "stuck", "stuck": true})),
        Event::new(json!({"_id": "bad", "bad": true})),
    ];
    let mut receipts = Vec::new();
    for e in events {
        receipts.push(client.send(e).await.unwrap());
    }
    client.flush().await.unwrap();
    let mut outcomes = Vec::new();
    for r in receipts {
        outcomes.push(r.await);
    }
    assert!(
        matches!(&outcomes[0], Outcome::Accepted { batch_id, .. } if batch_id == "b0"),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1], Outcome::Accepted { batch_id, .. } if batch_id == "b1"),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[2], Outcome::Refused { status_code: 503, batch_id: Some(b), .. } if b == "b2"),
        "{outcomes:?}"
    );
    assert!(
        matches!(
            &outcomes[3],
            Outcome::Refused {
                status_code: 400,
                ..
            }
        ),
        "{outcomes:?}"
    );

    // The whole batch once, then only what was not written: flaky and stuck, then stuck.
    assert_eq!(server.sizes(), vec![4, 2, 1]);
    let ids = |i: usize| -> Vec<String> {
        server.seen()[i].body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["body"]["xdmEntity"]["_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(1), ["flaky", "stuck"]);
    assert_eq!(ids(2), ["stuck"]);
    let stats = client.stats();
    assert_eq!(
        (
            stats.sent,
            stats.accepted,
            stats.refused,
            stats.failed,
            stats.batches,
            stats.retries
        ),
        (4, 2, 2, 0, 1, 2)
    );
    client.close().await.unwrap();
}

#[tokio::test]
async fn throttled_429_waits_for_retry_after() {
    let server = Server::start().await;
    server.script([Scripted {
        status: 429,
        retry_after: Some("1"),
        detail: "stream over its limit",
    }]);
    let client = server.client().build().unwrap();
    let started = Instant::now();
    let receipt = client.send(json!({"eventType": "t"})).await.unwrap();
    let outcome = receipt.await;
    let took = started.elapsed();
    assert!(outcome.is_accepted(), "{outcome:?}");
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_secs(1),
        "retried {gap:?} after a Retry-After of 1 s"
    );
    // Retry-After plus at most the base back-off as jitter, plus scheduling slack.
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(seen[0].body, seen[1].body, "the same batch is sent again");
    assert_eq!(client.stats().retries, 1);
}

#[tokio::test]
async fn server_errors_back_off_then_succeed_or_give_up() {
    let server = Server::start().await;
    server.script([answer(503), answer(500)]);
    let client = server.client().max_retries(3).build().unwrap();
    let outcome = client.send(json!({})).await.unwrap().await;
    assert!(outcome.is_accepted(), "{outcome:?}");
    assert_eq!(server.seen().len(), 3);
    assert_eq!(client.stats().retries, 2);

    // Always 503: 1 + 3 attempts, then every event of the batch fails with the last error.
    server.script(std::iter::repeat_n(answer(503), 10));
    let started = Instant::now();
    let a = client.send(json!({})).await.unwrap();
    let b = client.send(json!({})).await.unwrap();
    let (a, b) = (a.await, b.await);
    for outcome in [&a, &b] {
        match outcome {
            Outcome::Failed(e) => match e.as_ref() {
                ClientError::RetriesExhausted { attempts: 4, last } => assert!(
                    matches!(last.as_ref(), ClientError::Status { status: 503, .. }),
                    "{last}"
                ),
                other => panic!("{other}"),
            },
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.seen().len(), 3 + 4);
    // Back-off ceilings 20, 40, 80 ms: well under two seconds in all, even on a busy machine.
    assert!(started.elapsed() < Duration::from_secs(2));
    let stats = client.stats();
    assert_eq!((stats.accepted, stats.failed, stats.retries), (1, 2, 2 + 3));
}

#[tokio::test]
async fn bad_request_and_too_large_are_refused_without_retry() {
    let server = Server::start().await;
    server.script([Scripted {
        status: 400,
        retry_after: None,
        detail: "x-gw-ims-org-id OTHER is not the org of this stream",
    }]);
    let client = server.client().build().unwrap();
    let receipts = [
        client.send(json!({})).await.unwrap(),
        client.send(json!({})).await.unwrap(),
    ];
    for r in receipts {
        match r.await {
            Outcome::Refused {
                status_code: 400,
                message,
                batch_id: None,
            } => assert_eq!(
                message,
                "x-gw-ims-org-id OTHER is not the org of this stream"
            ),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.seen().len(), 1);

    server.script([answer(413)]);
    let outcome = client.send(json!({})).await.unwrap().await;
    assert!(
        matches!(
            outcome,
            Outcome::Refused {
                status_code: 413,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(server.seen().len(), 2);
    assert_eq!(client.stats().retries, 0);
    assert_eq!(client.stats().refused, 3);
}

#[tokio::test]
async fn connection_errors_are_retried() {
    // A port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = Client::builder(format!("http://127.0.0.1:{port}"), "s")
        .schema_id(SCHEMA)
        .max_retries(2)
        .backoff(Duration::from_millis(10), Duration::from_millis(20))
        .linger(Duration::ZERO)
        .build()
        .unwrap();
    match client.send(json!({})).await.unwrap().await {
        Outcome::Failed(e) => match e.as_ref() {
            ClientError::RetriesExhausted { attempts: 3, last } => {
                assert!(
                    matches!(last.as_ref(), ClientError::Transport { .. }),
                    "{last}"
                )
            }
            other => panic!("{other}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(client.stats().retries, 2);
    assert_eq!(client.stats().failed, 1);
}

#[tokio::test]
async fn api_key_token_is_renewed_once_when_refused() {
    let server = Server::start().await;
    // The first token the client gets is already revoked.
    *server.state.min_token.lock().unwrap() = Some(2);
    let client = server.client().auth(api_key(&server)).build().unwrap();
    let outcome = client.send(json!({})).await.unwrap().await;
    assert!(outcome.is_accepted(), "{outcome:?}");
    let bearers: Vec<_> = server.seen().into_iter().map(|s| s.bearer).collect();
    assert_eq!(
        bearers,
        [Some("tok-1".to_string()), Some("tok-2".to_string())]
    );
    assert_eq!(server.state.tokens_issued.load(Ordering::SeqCst), 2);
    assert_eq!(client.stats().retries, 1);

    // A valid token is kept for the next batches.
    let outcome = client.send(json!({})).await.unwrap().await;
    assert!(outcome.is_accepted());
    assert_eq!(server.state.tokens_issued.load(Ordering::SeqCst), 2);

    // Refused again right after renewal: the key has no access, no loop.
    *server.state.min_token.lock().unwrap() = Some(100);
    match client.send(json!({})).await.unwrap().await {
        Outcome::Failed(e) => assert!(
            matches!(e.as_ref(), ClientError::Unauthorized { status: 401, message } if message == "the access token was revoked"),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.state.tokens_issued.load(Ordering::SeqCst), 3);
    assert_eq!(server.seen().len(), 5);
}

#[tokio::test]
async fn api_key_token_is_renewed_before_it_expires() {
    let server = Server::start().await;
    // Four-second tokens: renewed half way, after two seconds.
    server.state.token_lifetime_secs.store(4, Ordering::SeqCst);
    let client = server.client().auth(api_key(&server)).build().unwrap();
    assert!(client.send(json!({})).await.unwrap().await.is_accepted());
    assert!(client.send(json!({})).await.unwrap().await.is_accepted());
    assert_eq!(server.state.tokens_issued.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(client.send(json!({})).await.unwrap().await.is_accepted());
    assert_eq!(server.state.tokens_issued.load(Ordering::SeqCst), 2);
    let bearers: Vec<_> = server.seen().into_iter().filter_map(|s| s.bearer).collect();
    assert_eq!(bearers, ["tok-1", "tok-1", "tok-2"]);
    // No request was refused: the token was replaced before the edge saw it expire.
    assert_eq!(client.stats().retries, 0);
}

#[tokio::test]
async fn a_wrong_api_key_or_a_fixed_token_is_not_retried() {
    let server = Server::start().await;
    let client = server
        .client()
        .auth(Auth::ApiKey {
            control_url: server.url.clone(),
            api_key: "cdpk.k1.wrong".into(),
        })
        .build()
        .unwrap();
    match client.send(json!({})).await.unwrap().await {
        Outcome::Failed(e) => assert!(
            matches!(e.as_ref(), ClientError::Token { message, .. } if message.contains("unknown API key")),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(server.seen().is_empty());

    *server.state.min_token.lock().unwrap() = Some(1);
    let fixed = server
        .client()
        .auth(Auth::Token("forged".into()))
        .build()
        .unwrap();
    match fixed.send(json!({})).await.unwrap().await {
        Outcome::Failed(e) => assert!(
            matches!(e.as_ref(), ClientError::Unauthorized { status: 403, .. }),
            "{e}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.seen().len(), 1);
    assert_eq!(fixed.stats().retries, 0);
}

#[tokio::test]
async fn a_full_buffer_blocks_send_and_fails_try_send() {
    let server = Server::start().await;
    server.stall.send_replace(true);
    let client = server
        .client()
        .buffer(4)
        .batch_size(2)
        .linger(Duration::from_millis(5))
        .build()
        .unwrap();
    let mut receipts = Vec::new();
    for i in 0..4 {
        let r = tokio::time::timeout(Duration::from_secs(1), client.send(json!({"n": i})))
            .await
            .expect("room in the buffer")
            .unwrap();
        receipts.push(r);
    }
    // The fifth waits: the server holds the first batch, the buffer holds four events.
    let sender = client.clone();
    let fifth = tokio::spawn(async move { sender.send(json!({"n": 4})).await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!fifth.is_finished(), "send returned with a full buffer");
    assert!(matches!(
        client.try_send(json!({"n": 5})),
        Err(ClientError::Full { capacity: 4 })
    ));
    let stats = client.stats();
    assert_eq!((stats.sent, stats.buffered), (4, 4));
    // One request in flight (the stalled one), the other batch waits its turn.
    assert_eq!(server.sizes(), [2]);

    server.stall.send_replace(false);
    let fifth = tokio::time::timeout(Duration::from_secs(5), fifth)
        .await
        .expect("send resumed once the server answered")
        .unwrap()
        .unwrap();
    receipts.push(fifth);
    client.flush().await.unwrap();
    for r in receipts {
        assert!(r.await.is_accepted());
    }
    let stats = client.stats();
    assert_eq!((stats.sent, stats.accepted, stats.buffered), (5, 5, 0));
    assert_eq!(server.sizes().iter().sum::<usize>(), 5);
}

#[tokio::test]
async fn batches_by_count_bytes_and_linger() {
    let server = Server::start().await;
    let client = server
        .client()
        .batch_size(3)
        .linger(Duration::from_millis(600))
        .max_in_flight(2)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut receipts = Vec::new();
    for i in 0..7 {
        receipts.push(client.send(json!({"n": i})).await.unwrap());
    }
    for r in receipts {
        assert!(r.await.is_accepted());
    }
    let seen = server.seen();
    let mut sizes = server.sizes();
    sizes.sort();
    assert_eq!(sizes, [1, 3, 3]);
    // The full batches went at once; the last one waited for the linger time.
    let (full, partial): (Vec<&Seen>, Vec<&Seen>) = seen
        .iter()
        .partition(|s| s.body["messages"].as_array().unwrap().len() == 3);
    assert!(partial[0].at - started >= Duration::from_millis(580));
    for s in full {
        assert!(
            s.at - started < Duration::from_millis(500),
            "{:?}",
            s.at - started
        );
    }

    // By bytes: each message is ~250 bytes, so at most 3 fit in 1 000.
    let small = server
        .client()
        .max_batch_bytes(1_000)
        .batch_size(100)
        .build()
        .unwrap();
    let before = server.seen().len();
    let mut receipts = Vec::new();
    for i in 0..7 {
        receipts.push(
            small
                .send(json!({"n": i, "pad": "x".repeat(60)}))
                .await
                .unwrap(),
        );
    }
    small.flush().await.unwrap();
    let seen = server.seen();
    for s in &seen[before..] {
        let len = serde_json::to_vec(&s.body).unwrap().len();
        assert!(len <= 1_000, "{len}");
    }
    assert_eq!(
        seen[before..]
            .iter()
            .map(|s| s.body["messages"].as_array().unwrap().len())
            .sum::<usize>(),
        7
    );
    assert!(seen.len() - before >= 3);
}

#[tokio::test]
async fn flush_skips_the_linger_and_close_stops_the_client() {
    let server = Server::start().await;
    let client = server
        .client()
        .linger(Duration::from_secs(30))
        .build()
        .unwrap();
    let a = client.send(json!({})).await.unwrap();
    let b = client.send(json!({})).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), client.flush())
        .await
        .expect("flush does not wait for the linger time")
        .unwrap();
    // Settled by the time flush returns.
    assert_eq!(client.stats().accepted, 2);
    assert!(a.await.is_accepted() && b.await.is_accepted());

    let c = client.send(json!({})).await.unwrap();
    let other = client.clone();
    client.close().await.unwrap();
    assert!(c.await.is_accepted(), "close delivers what was sent");
    assert!(matches!(
        other.send(json!({})).await,
        Err(ClientError::Closed)
    ));
    assert!(matches!(
        other.try_send(json!({})),
        Err(ClientError::Closed)
    ));
    assert!(matches!(other.flush().await, Err(ClientError::Closed)));
    other.close().await.unwrap();
    assert_eq!(server.sizes(), [2, 1]);
}

#[test]
fn close_blocking_outside_a_runtime_delivers_everything() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (server, client, receipts) = rt.block_on(async {
        let server = Server::start().await;
        let client = server
            .client()
            .linger(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut receipts = Vec::new();
        for _ in 0..3 {
            receipts.push(client.send(json!({})).await.unwrap());
        }
        (server, client, receipts)
    });
    // Plain thread, no runtime context: as in a Drop implementation.
    client.close_blocking(Duration::from_secs(5)).unwrap();
    assert_eq!(server.sizes(), [3]);
    for r in receipts {
        assert!(rt.block_on(r).is_accepted());
    }
    assert!(matches!(
        client.try_send(json!({})),
        Err(ClientError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_blocking_on_a_multi_thread_runtime() {
    let server = Server::start().await;
    let client = server
        .client()
        .linger(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = client.send(json!({})).await.unwrap();
    client.close_blocking(Duration::from_secs(5)).unwrap();
    assert!(r.await.is_accepted());
    assert_eq!(server.sizes(), [1]);
}

#[tokio::test]
async fn close_blocking_refuses_to_deadlock_a_current_thread_runtime() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();
    assert!(matches!(
        client.close_blocking(Duration::from_secs(1)),
        Err(ClientError::WouldBlock(_))
    ));
    client.close().await.unwrap();
}

#[tokio::test]
async fn invalid_events_and_configuration_are_errors() {
    let server = Server::start().await;
    let client = server.client().build().unwrap();
    assert!(matches!(
        client.send(json!([1, 2])).await,
        Err(ClientError::InvalidEvent(_))
    ));
    assert_eq!(client.stats().sent, 0);
    for builder in [
        Client::builder(&server.url, "s"),
        server.client().batch_size(0),
        server
            .client()
            .batch_size(cdp_client::EDGE_MAX_MESSAGES + 1),
        server.client().buffer(0),
        Client::builder("ftp://host", "s").schema_id(SCHEMA),
        Client::builder(&server.url, "").schema_id(SCHEMA),
    ] {
        assert!(matches!(builder.build(), Err(ClientError::Config(_))));
    }
}

#[test]
fn build_needs_a_runtime() {
    let err = Client::builder("http://127.0.0.1:1", "s")
        .schema_id(SCHEMA)
        .build()
        .unwrap_err();
    assert!(matches!(err, ClientError::Config(m) if m.contains("Tokio runtime")));
}
