//! The sinks stage: one delivery worker per enabled flow and target connection, started,
//! restarted and stopped as the catalog changes. Each worker is its own consumer group on
//! `<ns>.segment.exports`, so a destination that is slow, throttles or refuses the credentials
//! holds back only its own position ([`worker`]); its status goes to `<ns>.sinks.status`
//! ([`status`]) and its refusals to `<ns>.sinks.deadletter`.

pub mod avro;
pub mod status;
pub mod targets;
pub mod worker;

use std::collections::HashMap;
use std::time::Duration;

use cdp_catalog::{CatalogState, CatalogView, SecretKey};
use cdp_contract::admin::{ensure_topics, AdminError, TopicSpec};
use cdp_contract::{KafkaSettings, Topics};
use rdkafka::producer::FutureProducer;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::delivery::RetryPolicy;
use crate::settings::SinksSettings;
use avro::ExportAvro;
use cdp_registry::confluent::SchemaLog;
use status::StatusReporter;
use worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum SinksError {
    #[error("cannot create the sinks topics: {0}")]
    Topics(#[from] AdminError),
    #[error("cannot create the status producer: {0}")]
    Producer(rdkafka::error::KafkaError),
    #[error("cannot follow the schemas log (for Avro targets): {0}")]
    Schemas(#[from] cdp_registry::confluent::SchemaLogError),
}

/// The topics the stage writes (`partitions`: as many as `profile.updates`). The exports it
/// reads are the segment stage's topic (`cdp_engine::run::topic_specs`).
pub fn topic_specs(topics: &Topics, partitions: i32) -> Vec<TopicSpec> {
    vec![
        TopicSpec {
            name: topics.sinks_deadletter(),
            partitions,
            compacted: false,
        },
        TopicSpec {
            name: topics.sinks_status(),
            partitions: 1,
            compacted: true,
        },
    ]
}

struct Running {
    fingerprint: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Runs the stage until `shutdown` turns true. `key`: control's secret key, which opens the
/// connections' credentials.
pub async fn run(
    kafka: &KafkaSettings,
    topics: &Topics,
    settings: &SinksSettings,
    partitions: i32,
    key: SecretKey,
    catalog: CatalogView,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SinksError> {
    // On `/readyz` with the other stages of the process; a failure to start stays there.
    let health = cdp_stage::health::Registration::new("sinks");
    let started = async {
        ensure_topics(kafka, &topic_specs(topics, partitions)).await?;
        kafka
            .producer("cdp-sinks", 30_000)
            .create::<FutureProducer>()
            .map_err(SinksError::Producer)
    };
    let producer = match started.await {
        Ok(p) => p,
        Err(e) => {
            health.set(cdp_stage::health::Status::Failed);
            return Err(e);
        }
    };
    health.set(cdp_stage::health::Status::Ready);
    // The project's registry, followed once an Avro target needs it.
    let mut schemas: Option<SchemaLog> = None;
    let mut running: HashMap<(String, String), Running> = HashMap::new();
    // Targets that could not be set up, with the fingerprint they failed at: not tried again
    // until their configuration changes.
    let mut broken: HashMap<(String, String), String> = HashMap::new();
    tracing::info!("sinks stage following the catalog's flows");
    loop {
        let wanted = wanted(&catalog.read());
        // Stop what is gone or changed.
        let stale: Vec<(String, String)> = running
            .iter()
            .filter(|(k, r)| wanted.get(*k) != Some(&r.fingerprint))
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(r) = running.remove(&k) {
                tracing::info!(flow = %k.0, target = %k.1, "flow changed or removed: its delivery stops");
                let _ = r.stop.send(true);
                let _ = r.task.await;
            }
        }
        broken.retain(|k, f| wanted.get(k) == Some(f));
        for ((flow, target), fingerprint) in &wanted {
            let k = (flow.clone(), target.clone());
            if running.contains_key(&k) || broken.get(&k) == Some(fingerprint) {
                continue;
            }
            let policy = RetryPolicy {
                initial: Duration::from_millis(settings.retry_initial_ms.min(200)),
                ..RetryPolicy::default()
            };
            let resolved = targets::resolve(&catalog.read(), &key, target, policy);
            let mut status = StatusReporter::new(
                producer.clone(),
                topics.sinks_status(),
                Duration::from_millis(settings.status_interval_ms),
                flow,
                target,
                resolved.as_ref().map_or("unknown", |r| r.name),
            );
            let resolved = match resolved {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(flow = %flow, target = %target, error = %e, "cannot set up the flow's destination");
                    status.failed(&e.to_string(), 0);
                    status.flush(true).await;
                    broken.insert(k, fingerprint.clone());
                    continue;
                }
            };
            let avro = match &resolved.avro_topic {
                None => None,
                Some(topic) => {
                    if schemas.is_none() {
                        schemas = Some(SchemaLog::start(kafka, topics).await?);
                    }
                    let Some(log) = &schemas else { continue };
                    match ExportAvro::register(log, topic).await {
                        Ok(a) => Some(a),
                        Err(e) => {
                            tracing::error!(flow = %flow, target = %target, error = %e, "cannot register the export schema");
                            status.failed(&e.to_string(), 0);
                            status.flush(true).await;
                            broken.insert(k, fingerprint.clone());
                            continue;
                        }
                    }
                }
            };
            let worker = Worker {
                flow_id: flow.clone(),
                target_id: target.clone(),
                destination: resolved.destination,
                exports_topic: topics.segment_exports(),
                deadletter_topic: topics.sinks_deadletter(),
                producer: producer.clone(),
                status,
                settings: settings.clone(),
                avro,
            };
            let (stop, stopped) = watch::channel(false);
            let kafka = kafka.clone();
            let (f, t) = (flow.clone(), target.clone());
            let task = tokio::spawn(async move {
                if let Err(e) = worker.run(&kafka, stopped).await {
                    tracing::error!(flow = %f, target = %t, error = %e, "flow delivery stopped");
                }
            });
            running.insert(
                k,
                Running {
                    fingerprint: fingerprint.clone(),
                    stop,
                    task,
                },
            );
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(Duration::from_millis(settings.refresh_ms)) => {}
        }
    }
    for (_, r) in running.drain() {
        let _ = r.stop.send(true);
        let _ = r.task.await;
    }
    tracing::info!("sinks stage stopped");
    Ok(())
}

/// Every enabled flow with a segment and each of its targets, with the fingerprint of their
/// configuration: a disabled flow (`state` `disabled`) runs no worker, so it delivers nothing.
fn wanted(state: &CatalogState) -> HashMap<(String, String), String> {
    let mut out = HashMap::new();
    for flow in state.flows.values() {
        if flow.state != cdp_catalog::flows::FLOW_ENABLED || flow.segment_ids().is_empty() {
            continue;
        }
        for target in &flow.target_connection_ids {
            out.insert(
                (flow.id.clone(), target.clone()),
                targets::fingerprint(state, &flow.etag, target),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_catalog::flows::{FLOW_DISABLED, FLOW_ENABLED, PROFILE_FLOW_SPEC};
    use cdp_catalog::Flow;
    use serde_json::json;

    fn flow(id: &str, state: &str, segments: &[&str]) -> Flow {
        let mut transformations = Flow::initial_transformations();
        transformations[0]["params"]["segmentSelectors"]["selectors"] = segments
            .iter()
            .map(|s| json!({"type": "PLATFORM_SEGMENT", "value": {"id": s}}))
            .collect();
        Flow {
            id: id.into(),
            name: id.into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            flow_spec_id: PROFILE_FLOW_SPEC.into(),
            source_connection_ids: vec!["s".into()],
            target_connection_ids: vec![format!("{id}-target")],
            transformations,
            etag: "e".into(),
            state: state.into(),
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn only_enabled_flows_with_segments_run_workers() {
        let mut state = CatalogState::default();
        for f in [
            flow("on", FLOW_ENABLED, &["seg"]),
            flow("off", FLOW_DISABLED, &["seg"]),
            flow("empty", FLOW_ENABLED, &[]),
        ] {
            state.flows.insert(f.id.clone(), f);
        }
        let running: Vec<(String, String)> = wanted(&state).into_keys().collect();
        assert_eq!(running, vec![("on".to_string(), "on-target".to_string())]);
    }
}
