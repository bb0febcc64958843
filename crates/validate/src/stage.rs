//! The validate stage: a [`Processor`] on the stage runtime. Each raw event becomes a valid
//! event (events.valid, keyed by the profile's primary identity) or an error record
//! (events.error); the runtime writes them in Kafka transactions with the raw offsets, and its
//! recovery (the `cdp-raw-position` / `cdp-validate-group` lineage headers and
//! `<ns>.validate.checkpoints`) keeps that exactly once on brokers that show aborted records.

use std::collections::HashMap;
use std::sync::Arc;

use cdp_catalog::{CatalogView, XdmSchema};
use cdp_contract::envelope::{RAW_POSITION, VALIDATE_GROUP};
use cdp_contract::{KafkaSettings, RawHeaders, Topics};
use cdp_stage::{
    Cause, Context, Lineage, Output, ProcessError, Processor, StageError, StageMetrics, StageSpec,
};
use rdkafka::message::{Headers, Message, OwnedMessage};
use tokio::sync::watch;

use crate::avro_values::{AvroValueError, AvroValues};
use crate::follow::Follower;
use crate::process::{process, refuse, Encoding, RawInput, Verdict};
use crate::ValidateSettings;
use cdp_xdm::SchemaValidators;

/// The headers that tie each output to its raw event, for people and for recovery.
pub const LINEAGE: Lineage = Lineage {
    position: RAW_POSITION,
    group: VALIDATE_GROUP,
};

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Instance(#[from] cdp_stage::InstanceError),
    #[error("cannot follow the schemas log for Avro values: {0}")]
    Schemas(#[from] cdp_registry::confluent::SchemaLogError),
}

/// The runtime's description of this stage; `follower`'s topics are outputs too.
pub fn spec(
    topics: &Topics,
    settings: &ValidateSettings,
    instance: &str,
    follower: Option<&dyn Follower>,
) -> StageSpec {
    let mut outputs = vec![topics.events_valid(), topics.events_error()];
    for topic in follower.map(|f| f.topics()).unwrap_or_default() {
        if !outputs.contains(&topic) {
            outputs.push(topic);
        }
    }
    StageSpec {
        stage: "validate",
        group_id: settings.group_id.clone(),
        instance: instance.to_string(),
        transactional_id: format!("{}-validate-{instance}", topics.namespace),
        input: topics.ingest_raw(),
        outputs,
        checkpoints: topics.validate_checkpoints(),
        changelog: None,
        lineage: LINEAGE,
        settings: settings.runtime(),
        queries: None,
    }
}

/// Runs the stage until `shutdown` turns true; `follower` (the profile intake) takes each valid
/// event in the same transaction.
pub async fn run(
    kafka: &KafkaSettings,
    topics: &Topics,
    settings: &ValidateSettings,
    identity_namespaces: &[String],
    catalog: CatalogView,
    follower: Option<Arc<dyn Follower>>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ValidateError> {
    let instance = cdp_stage::instance_id(settings.instance_id.as_deref())?;
    let processor = Validate {
        catalog,
        validators: SchemaValidators::default(),
        avro: AvroValues::new(
            cdp_registry::confluent::SchemaLog::start(kafka, topics).await?,
            topics.events_valid(),
        ),
        namespaces: identity_namespaces.to_vec(),
        max_future_ms: settings.max_future_ms,
        follower: follower.clone(),
        valid_topic: topics.events_valid(),
        error_topic: topics.events_error(),
        metrics: StageMetrics::new("validate"),
    };
    cdp_stage::run(
        kafka,
        spec(topics, settings, &instance, follower.as_deref()),
        processor,
        shutdown,
    )
    .await?;
    Ok(())
}

struct Validate {
    catalog: CatalogView,
    validators: SchemaValidators,
    avro: AvroValues,
    namespaces: Vec<String>,
    max_future_ms: i64,
    /// The profile intake, when this deployment has profiles.
    follower: Option<Arc<dyn Follower>>,
    valid_topic: String,
    error_topic: String,
    metrics: StageMetrics,
}

fn input(m: &OwnedMessage) -> RawInput<'_> {
    RawInput {
        key: m.key(),
        payload: m.payload().unwrap_or_default(),
        headers: m.headers().and_then(RawHeaders::from_kafka),
        position: (m.partition(), m.offset()),
    }
}

impl Processor for Validate {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        let mut verdicts: Vec<Verdict> = {
            let state = self.catalog.read();
            batch
                .iter()
                .map(|m| {
                    process(
                        &input(m),
                        &state,
                        &self.validators,
                        &self.namespaces,
                        self.max_future_ms,
                        self.follower.as_deref(),
                    )
                })
                .collect()
        };
        // Only a registry that cannot be written fails the batch; the runtime reads it again.
        encode_avro(batch, &mut verdicts, &self.catalog, &self.avro)
            .await
            .map_err(|e| ProcessError::Retry(format!("cannot encode Avro values: {e}")))?;
        for (i, verdict) in verdicts.into_iter().enumerate() {
            let output = match verdict {
                Verdict::Valid {
                    key,
                    value,
                    headers,
                    follow,
                    ..
                } => {
                    ctx.emit(
                        Cause::Input(i),
                        Output::new(&self.valid_topic, key, value).with_headers(headers),
                    );
                    match follow.map_err(ProcessError::Fatal)? {
                        Some(output) => output,
                        None => continue,
                    }
                }
                Verdict::Invalid {
                    key,
                    record,
                    headers,
                    reason,
                } => {
                    self.metrics.quarantined(reason.label());
                    let value = serde_json::to_vec(&record).map_err(|e| {
                        ProcessError::Fatal(format!("an error record cannot be written: {e}"))
                    })?;
                    Output::new(&self.error_topic, key, value).with_headers(headers)
                }
            };
            ctx.emit(Cause::Input(i), output);
        }
        Ok(())
    }
}

/// Encodes the Avro-format valid verdicts in place. A value the registry cannot take (its
/// schema refused, or it does not fit) is quarantined with the reason; only a registry that
/// cannot be written fails the batch.
async fn encode_avro(
    batch: &[OwnedMessage],
    verdicts: &mut [Verdict],
    catalog: &CatalogView,
    avro: &AvroValues,
) -> Result<(), AvroValueError> {
    // One copy of each schema per batch, not per event: the catalog's read guard cannot be held
    // across the registry's awaits.
    let mut schemas: HashMap<(String, u32), Option<XdmSchema>> = HashMap::new();
    for (raw, verdict) in batch.iter().zip(verdicts.iter_mut()) {
        let Verdict::Valid {
            value,
            encoding: Encoding::Avro { schema_id, version },
            headers,
            ..
        } = verdict
        else {
            continue;
        };
        let schema = schemas
            .entry((schema_id.clone(), *version))
            .or_insert_with(|| catalog.read().schema(schema_id, *version).cloned());
        let encoded = match (schema, serde_json::from_slice::<serde_json::Value>(value)) {
            (Some(schema), Ok(entity)) => avro.encode(schema, &entity).await,
            (None, _) => Err(AvroValueError::Mapping(
                schema_id.clone(),
                format!("version {version} is no longer in the catalog"),
            )),
            (_, Err(e)) => Err(AvroValueError::Mapping(
                schema_id.clone(),
                format!("the validated entity is not JSON: {e}"),
            )),
        };
        match encoded {
            Ok(bytes) => *value = bytes,
            Err(e @ AvroValueError::Registry { .. }) => return Err(e),
            Err(e) => {
                let dataset = headers
                    .iter()
                    .find(|h| h.key == cdp_contract::envelope::DATASET_ID)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default();
                *verdict = refuse(&input(raw), &dataset, e.to_string());
            }
        }
    }
    Ok(())
}
