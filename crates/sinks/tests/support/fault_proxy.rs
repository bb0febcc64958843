//! [`FaultProxy`]: an HTTP proxy in front of kinesalite that injects the failures real Kinesis
//! produces — a whole `PutRecords` request throttled, a partial failure (some entries fail with
//! `ProvisionedThroughputExceededException` / `InternalFailure` and are *not* written, the others
//! are), or one fixed error for every request (bad credentials, 5xx).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// What to inject, consumed request by request.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next `throttle` PutRecords requests are refused whole with a 400
    /// `ProvisionedThroughputExceededException`, and nothing is written.
    pub throttle: usize,
    /// Then the next `partial` PutRecords requests fail the entries at positions `i` with
    /// `i % fail_every == 1`: those are not written, the others are.
    pub partial: usize,
    pub fail_every: usize,
    /// Every request, of any kind, is answered with this status, error type and message.
    pub always: Option<(u16, &'static str, &'static str)>,
}

/// What the proxy saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub put_records: usize,
    pub throttled: usize,
    pub partially_failed: usize,
    pub entries_failed: usize,
}

struct Shared {
    upstream: String,
    http: reqwest::Client,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
}

pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    pub async fn start(upstream: String, faults: Faults) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream,
            http: reqwest::Client::new(),
            faults: Mutex::new(faults),
            stats: Mutex::new(Stats::default()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FaultProxy { addr, shared, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().unwrap().clone()
    }
}

fn aws_error(status: u16, kind: &str, message: &str) -> Response {
    let body = json!({ "__type": kind, "message": message }).to_string();
    let mut response = (
        StatusCode::from_u16(status).expect("status"),
        Body::from(body),
    )
        .into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

enum Plan {
    Fail(u16, &'static str, &'static str),
    Throttle,
    Partial(usize),
    Forward,
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match to_bytes(body, 64 << 20).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let is_put_records = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.ends_with(".PutRecords"));
    let plan = {
        let mut faults = shared.faults.lock().unwrap();
        let mut stats = shared.stats.lock().unwrap();
        if is_put_records {
            stats.put_records += 1;
        }
        if let Some((status, kind, message)) = faults.always {
            Plan::Fail(status, kind, message)
        } else if is_put_records && faults.throttle > 0 {
            faults.throttle -= 1;
            stats.throttled += 1;
            Plan::Throttle
        } else if is_put_records && faults.partial > 0 {
            faults.partial -= 1;
            stats.partially_failed += 1;
            Plan::Partial(faults.fail_every.max(2))
        } else {
            Plan::Forward
        }
    };
    let forward = |body: Vec<u8>| {
        let mut request = shared
            .http
            .post(format!("{}{}", shared.upstream, parts.uri.path()));
        for (name, value) in &parts.headers {
            if name != "host" && name != "content-length" {
                request = request.header(name, value);
            }
        }
        request.body(body).send()
    };
    match plan {
        Plan::Fail(status, kind, message) => aws_error(status, kind, message),
        Plan::Throttle => aws_error(
            400,
            "ProvisionedThroughputExceededException",
            "Rate exceeded for stream under account 000000000000.",
        ),
        Plan::Forward => match forward(body.to_vec()).await {
            Ok(upstream) => relay(upstream).await,
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        },
        Plan::Partial(every) => {
            let mut request: Value = serde_json::from_slice(&body).expect("PutRecords is JSON");
            let entries = request["Records"].as_array().cloned().unwrap_or_default();
            let failed: Vec<bool> = (0..entries.len()).map(|i| i % every == 1).collect();
            let kept: Vec<Value> = entries
                .iter()
                .zip(&failed)
                .filter(|(_, f)| !**f)
                .map(|(e, _)| e.clone())
                .collect();
            let n_failed = failed.iter().filter(|f| **f).count();
            let mut written: Vec<Value> = if kept.is_empty() {
                Vec::new()
            } else {
                request["Records"] = Value::Array(kept);
                let upstream = match forward(request.to_string().into_bytes()).await {
                    Ok(r) => r,
                    Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
                };
                if !upstream.status().is_success() {
                    return relay(upstream).await;
                }
                let answer: Value = upstream.json().await.expect("PutRecords answer");
                answer["Records"].as_array().cloned().unwrap_or_default()
            };
            written.reverse();
            let mut results = Vec::with_capacity(entries.len());
            for (i, f) in failed.iter().enumerate() {
                if *f {
                    results.push(if i % 2 == 1 {
                        json!({
                            "ErrorCode": "ProvisionedThroughputExceededException",
                            "ErrorMessage": "Rate exceeded for shard shardId-000000000000 in stream s under account 000000000000."
                        })
                    } else {
                        json!({ "ErrorCode": "InternalFailure", "ErrorMessage": "Internal service failure." })
                    });
                } else {
                    results.push(written.pop().expect("one result per written entry"));
                }
            }
            shared.stats.lock().unwrap().entries_failed += n_failed;
            let body = json!({ "FailedRecordCount": n_failed, "Records": results }).to_string();
            let mut response = (StatusCode::OK, Body::from(body)).into_response();
            response.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("application/x-amz-json-1.1"),
            );
            response
        }
    }
}

async fn relay(upstream: reqwest::Response) -> Response {
    let status = StatusCode::from_u16(upstream.status().as_u16()).expect("status");
    let content_type = upstream
        .headers()
        .get("content-type")
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let body = upstream.bytes().await.unwrap_or_default();
    let mut response = (status, Body::from(body)).into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert("content-type", ct);
    }
    response
}
