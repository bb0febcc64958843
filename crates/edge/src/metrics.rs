//! Prometheus metrics of the edge: requests by route and status, messages accepted and
//! rejected, bytes received, and broker acknowledgement latency.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;

/// The process-wide recorder (shared with every stage in the process).
pub fn handle() -> Option<&'static PrometheusHandle> {
    cdp_contract::prometheus::handle()
}

pub async fn track_requests(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("cdp_edge_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("cdp_edge_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

pub fn messages(accepted: usize, rejected: usize) {
    metrics::counter!("cdp_edge_messages_total", "outcome" => "accepted")
        .increment(accepted as u64);
    metrics::counter!("cdp_edge_messages_total", "outcome" => "rejected")
        .increment(rejected as u64);
}

pub fn bytes_received(n: usize) {
    metrics::counter!("cdp_edge_received_bytes_total").increment(n as u64);
}

pub fn produce_latency(d: Duration) {
    metrics::histogram!("cdp_edge_produce_latency_seconds").record(d.as_secs_f64());
}
