//! A flow target's delivery status: counted in Prometheus metrics and written to
//! `<ns>.sinks.status` (compacted) when it changes, at most once per interval, for control's
//! `GET /flows/{id}/runs`.

use std::time::{Duration, Instant};

use cdp_contract::clock::now_ms;
use cdp_contract::flow_run::{FlowRun, RunStatus};
use rdkafka::producer::{FutureProducer, FutureRecord};

pub struct StatusReporter {
    run: FlowRun,
    producer: FutureProducer,
    topic: String,
    interval: Duration,
    written: Option<Instant>,
    dirty: bool,
}

impl StatusReporter {
    pub fn new(
        producer: FutureProducer,
        topic: String,
        interval: Duration,
        flow_id: &str,
        target_id: &str,
        destination: &str,
    ) -> Self {
        Self {
            run: FlowRun {
                flow_id: flow_id.to_string(),
                target_connection_id: target_id.to_string(),
                destination: destination.to_string(),
                status: RunStatus::Pending,
                records_delivered: 0,
                records_failed: 0,
                records_retried: 0,
                last_error: None,
                last_delivery_time: None,
                updated_at: now_ms(),
            },
            producer,
            topic,
            interval,
            written: None,
            dirty: true,
        }
    }

    pub fn delivered(&mut self, delivered: usize, retried: usize, failed: usize) {
        let labels = [
            ("flow", self.run.flow_id.clone()),
            ("target", self.run.target_connection_id.clone()),
        ];
        metrics::counter!("cdp_sinks_records_delivered_total", &labels).increment(delivered as u64);
        metrics::counter!("cdp_sinks_records_retried_total", &labels).increment(retried as u64);
        metrics::counter!("cdp_sinks_records_failed_total", &labels).increment(failed as u64);
        let now = now_ms();
        metrics::gauge!("cdp_sinks_last_delivery_timestamp_seconds", &labels)
            .set(now as f64 / 1000.0);
        self.run.records_delivered += delivered as u64;
        self.run.records_retried += retried as u64;
        self.run.records_failed += failed as u64;
        self.run.status = RunStatus::Success;
        self.run.last_delivery_time = Some(now);
        self.dirty = true;
    }

    /// A delivery attempt failed (`retrying`: it is tried again, the records count as retried).
    pub fn failed(&mut self, error: &str, retrying: usize) {
        let labels = [
            ("flow", self.run.flow_id.clone()),
            ("target", self.run.target_connection_id.clone()),
        ];
        metrics::counter!("cdp_sinks_delivery_errors_total", &labels).increment(1);
        self.run.records_retried += retrying as u64;
        self.run.status = RunStatus::Failed;
        self.run.last_error = Some(error.to_string());
        self.dirty = true;
    }

    /// Writes the status if it changed and the interval passed (`force`: now, if it changed).
    pub async fn flush(&mut self, force: bool) {
        if !self.dirty {
            return;
        }
        if !force && self.written.is_some_and(|at| at.elapsed() < self.interval) {
            return;
        }
        self.run.updated_at = now_ms();
        let key = self.run.key();
        let Ok(value) = serde_json::to_vec(&self.run) else {
            return;
        };
        let record = FutureRecord::to(&self.topic).key(&key).payload(&value);
        match self.producer.send(record, Duration::from_secs(5)).await {
            Ok(_) => {
                self.dirty = false;
                self.written = Some(Instant::now());
            }
            // Only the status is late; the next change or interval writes it again.
            Err((e, _)) => tracing::warn!(key, error = %e, "cannot write the flow status"),
        }
    }
}
