//! The validate stage: a consumer group on the raw topic. Each batch of raw events becomes one
//! Kafka transaction holding its outputs (events.valid / events.error) and the consumer
//! offsets, so a crash at any point neither loses nor duplicates: either the whole batch is
//! committed with its offsets, or none of it is and the batch is read again. Before a partition
//! is (re)processed after an assignment or an abort, [`crate::recovery`] finds the raw events
//! whose output is already visible, for brokers that show aborted records.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdp_contract::admin::{ensure_topics, AdminError, TopicSpec};
use cdp_contract::envelope::{RAW_POSITION, VALIDATE_GROUP};
use cdp_contract::{KafkaSettings, RawHeaders, Topics};
use cdp_control::{CatalogView, XdmSchema};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::avro_values::{AvroValueError, AvroValues};
use crate::process::{process, refuse, Encoding, Outcome, RawInput};
use crate::recovery::{raw_position, Positions, Recovery, RecoveryError};
use crate::{SchemaValidators, ValidateSettings};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a raw partition's checkpoint is renewed.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("cannot create the validate consumer: {0}")]
    Consumer(KafkaError),
    #[error("cannot create the transactional producer: {0}")]
    Producer(KafkaError),
    #[error("transactions cannot start (does the broker support them?): {0}")]
    InitTransactions(KafkaError),
    #[error("the producer was fenced or failed fatally; another instance with the same instance_id may be running: {0}")]
    Fatal(KafkaError),
    #[error("a blocking Kafka call did not complete (the runtime is shutting down?)")]
    Join,
    #[error("cannot create the checkpoint topic: {0}")]
    Topics(#[from] AdminError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error("cannot follow the schemas log for Avro values: {0}")]
    Schemas(#[from] cdp_registry::confluent::SchemaLogError),
}

/// Counts rebalances, so the stage knows when the partitions it recovered may have changed
/// hands.
#[derive(Default)]
struct RebalanceEpoch(AtomicU64);

impl ClientContext for RebalanceEpoch {}

impl ConsumerContext for RebalanceEpoch {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if !matches!(rebalance, Rebalance::Error(_)) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

type RawConsumer = StreamConsumer<RebalanceEpoch>;

/// What the stage remembers between transactions.
struct Progress {
    /// Lower bounds of where this instance's next outputs land, written as checkpoints.
    positions: Positions,
    /// Raw partitions checked since the last rebalance or abort, with the raw offsets whose
    /// output is already on the topics.
    recovered: HashMap<i32, HashSet<i64>>,
    /// When this instance's checkpoint of a raw partition last committed (since assignment).
    checkpointed: HashMap<i32, Instant>,
    epoch: u64,
}

/// Counts of what one transaction carried.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    valid: u64,
    invalid: u64,
}

pub async fn run(
    kafka: &KafkaSettings,
    topics: &Topics,
    settings: &ValidateSettings,
    catalog: CatalogView,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), StageError> {
    let instance = settings.instance();
    let consumer: RawConsumer = kafka
        .consumer(&format!("cdp-validate-{instance}"), &settings.group_id)
        .create_with_context(RebalanceEpoch::default())
        .map_err(StageError::Consumer)?;
    let raw_topic = topics.ingest_raw();
    consumer
        .subscribe(&[raw_topic.as_str()])
        .map_err(StageError::Consumer)?;
    let mut producer_config = kafka.transactional_producer(
        &format!("cdp-validate-{instance}"),
        &format!("{}-validate-{instance}", topics.namespace),
    );
    // A crashed instance's open transaction blocks read_committed readers until it times out
    // (or the restarted instance fences it), so keep the timeout short.
    producer_config
        .set("transaction.timeout.ms", "20000")
        .set("message.timeout.ms", "20000");
    let producer: FutureProducer = producer_config.create().map_err(StageError::Producer)?;
    blocking(&producer, |p| p.init_transactions(TXN_TIMEOUT))
        .await?
        .map_err(StageError::InitTransactions)?;
    let recovery = Arc::new(Recovery::new(
        kafka,
        topics,
        &settings.group_id,
        &instance,
        TXN_TIMEOUT,
    )?);
    let checkpoint_partitions = prepare_checkpoints(kafka, topics, &recovery).await?;
    let mut progress = Progress {
        positions: {
            let r = recovery.clone();
            run_blocking(move || r.output_ends()).await??
        },
        recovered: HashMap::new(),
        checkpointed: HashMap::new(),
        epoch: consumer.context().0.load(Ordering::SeqCst),
    };
    tracing::info!(instance, group = %settings.group_id, topic = %raw_topic, "validate stage consuming");

    let validators = SchemaValidators::default();
    let avro = AvroValues::new(
        cdp_registry::confluent::SchemaLog::start(kafka, topics).await?,
        topics.events_valid(),
    );
    let valid_topic = topics.events_valid();
    let error_topic = topics.events_error();
    let checkpoint_topic = topics.validate_checkpoints();
    loop {
        let first = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            m = consumer.recv() => m,
        };
        let first = match first {
            Ok(m) => m.detach(),
            Err(e) => {
                tracing::warn!(error = %e, "raw topic read failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + Duration::from_millis(settings.max_wait_ms);
        while batch.len() < settings.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, consumer.recv()).await {
                Ok(Ok(m)) => batch.push(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "raw topic read failed");
                    break;
                }
                Err(_) => break,
            }
        }

        let epoch = consumer.context().0.load(Ordering::SeqCst);
        if epoch != progress.epoch {
            progress.epoch = epoch;
            progress.recovered.clear();
            progress.checkpointed.clear();
            // Partitions taken away while the batch was read are another instance's now: it
            // starts from their committed offsets, so committing them here would race it.
            if let Ok(assigned) = consumer.assignment() {
                let before = batch.len();
                batch.retain(|m| assigned.find_partition(m.topic(), m.partition()).is_some());
                if batch.len() < before {
                    tracing::info!(
                        dropped = before - batch.len(),
                        "partitions revoked while reading the batch; their events are left to their new owner"
                    );
                }
            }
            if batch.is_empty() {
                continue;
            }
        }
        let mut first_offsets: HashMap<i32, i64> = HashMap::new();
        let mut next_offsets: HashMap<i32, i64> = HashMap::new();
        for m in &batch {
            let first = first_offsets.entry(m.partition()).or_insert(m.offset());
            *first = (*first).min(m.offset());
            let next = next_offsets.entry(m.partition()).or_insert(m.offset() + 1);
            *next = (*next).max(m.offset() + 1);
        }
        let unchecked: HashMap<i32, i64> = first_offsets
            .iter()
            .filter(|(p, _)| !progress.recovered.contains_key(p))
            .map(|(p, o)| (*p, *o))
            .collect();
        if !unchecked.is_empty() {
            let r = recovery.clone();
            let from = unchecked.clone();
            let started = Instant::now();
            match run_blocking(move || r.emitted(&from)).await? {
                Ok(mut found) => {
                    tracing::info!(
                        partitions = ?unchecked.keys().collect::<Vec<_>>(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "recovery: read the outputs since the partitions' checkpoints"
                    );
                    for partition in unchecked.keys() {
                        let done = found.remove(partition).unwrap_or_default();
                        if !done.is_empty() {
                            tracing::info!(
                                partition,
                                events = done.len(),
                                "recovery: these raw events already have their output; skipping them"
                            );
                        }
                        progress.recovered.insert(*partition, done);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recovery failed; reading the batch again");
                    rewind(&consumer, &raw_topic, &first_offsets);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }

        let mut outcomes: Vec<(&OwnedMessage, Outcome)> = {
            let state = catalog.read();
            batch
                .iter()
                .filter(|m| {
                    !progress
                        .recovered
                        .get_mut(&m.partition())
                        .is_some_and(|done| done.remove(&m.offset()))
                })
                .map(|m| {
                    let input = RawInput {
                        key: m.key(),
                        payload: m.payload().unwrap_or_default(),
                        headers: m.headers().and_then(RawHeaders::from_kafka),
                    };
                    (
                        m,
                        process(&input, &state, &validators, &settings.identity_namespaces),
                    )
                })
                .collect()
        };
        if let Err(e) = encode_avro(&mut outcomes, &catalog, &avro).await {
            tracing::warn!(error = %e, "cannot encode Avro values; reading the batch again");
            rewind(&consumer, &raw_topic, &first_offsets);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &next_offsets {
            let _ = offsets.add_partition_offset(&raw_topic, *partition, Offset::Offset(*next));
        }
        // Any earlier checkpoint is still a lower bound (positions only grow), so one per
        // partition and second is enough to keep recovery scans short; each one adds partitions
        // to the transaction. The first transaction after an assignment always writes one.
        let checkpoints: Vec<i32> = next_offsets
            .keys()
            .copied()
            .filter(|p| (*p as usize) < checkpoint_partitions)
            .filter(|p| {
                progress
                    .checkpointed
                    .get(p)
                    .is_none_or(|at| at.elapsed() >= CHECKPOINT_EVERY)
            })
            .collect();
        let checkpoint = if checkpoints.is_empty() {
            Vec::new()
        } else {
            progress.positions.to_json()
        };
        let plan = Transaction {
            outcomes: &outcomes,
            offsets: &offsets,
            valid_topic: &valid_topic,
            error_topic: &error_topic,
            group: &settings.group_id,
            checkpoint: (&checkpoint_topic, &checkpoints, &checkpoint),
        };

        match transact(&producer, &consumer, plan, &mut progress.positions).await {
            Ok(tally) => {
                let now = Instant::now();
                for partition in &checkpoints {
                    progress.checkpointed.insert(*partition, now);
                }
                tracing::debug!(
                    events = batch.len(),
                    valid = tally.valid,
                    invalid = tally.invalid,
                    "transaction committed"
                );
            }
            Err(e) => {
                let fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
                let _ = blocking(&producer, |p| p.abort_transaction(TXN_TIMEOUT)).await;
                if fatal {
                    return Err(StageError::Fatal(e));
                }
                tracing::warn!(error = %e, events = batch.len(), "transaction aborted; reading the batch again");
                rewind(&consumer, &raw_topic, &first_offsets);
                // What the aborted transaction wrote may still be visible: check again.
                for partition in first_offsets.keys() {
                    progress.recovered.remove(partition);
                    progress.checkpointed.remove(partition);
                }
            }
        }
    }
    tracing::info!("validate stage stopped");
    Ok(())
}

/// One batch's transaction: its outputs, the raw offsets, and a checkpoint per raw partition.
struct Transaction<'a> {
    outcomes: &'a [(&'a OwnedMessage, Outcome)],
    offsets: &'a TopicPartitionList,
    valid_topic: &'a str,
    error_topic: &'a str,
    /// The consumer group: the checkpoints' key and a header on every output.
    group: &'a str,
    checkpoint: (&'a str, &'a [i32], &'a [u8]),
}

/// Runs one transaction; on success, `positions` learns where its outputs landed.
async fn transact(
    producer: &FutureProducer,
    consumer: &RawConsumer,
    plan: Transaction<'_>,
    positions: &mut Positions,
) -> Result<Tally, KafkaError> {
    producer.begin_transaction()?;
    let mut tally = Tally::default();
    let mut deliveries = Vec::with_capacity(plan.outcomes.len());
    for (raw, outcome) in plan.outcomes {
        let (topic, key, headers, value) = match outcome {
            Outcome::Valid {
                key,
                value,
                headers,
                ..
            } => {
                tally.valid += 1;
                (
                    plan.valid_topic,
                    key,
                    headers,
                    Cow::Borrowed(value.as_slice()),
                )
            }
            Outcome::Invalid {
                key,
                record,
                headers,
            } => {
                tally.invalid += 1;
                let value = serde_json::to_vec(record).unwrap_or_default();
                (plan.error_topic, key, headers, Cow::Owned(value))
            }
        };
        let position = raw_position(raw.partition(), raw.offset());
        let headers = headers
            .clone()
            .insert(Header {
                key: RAW_POSITION,
                value: Some(position.as_str()),
            })
            .insert(Header {
                key: VALIDATE_GROUP,
                value: Some(plan.group),
            });
        let delivery = send(
            producer,
            FutureRecord::to(topic)
                .key(key.as_bytes())
                .payload(value.as_ref())
                .headers(headers),
        )?;
        deliveries.push((topic, delivery));
    }
    let (checkpoint_topic, partitions, checkpoint) = plan.checkpoint;
    let mut acks = Vec::with_capacity(partitions.len());
    for partition in partitions {
        acks.push(send(
            producer,
            FutureRecord::to(checkpoint_topic)
                .partition(*partition)
                .key(plan.group.as_bytes())
                .payload(checkpoint),
        )?);
    }
    let metadata = consumer.group_metadata().ok_or(KafkaError::ConsumerCommit(
        rdkafka::types::RDKafkaErrorCode::State,
    ))?;
    let offsets = plan.offsets.clone();
    blocking(producer, move |p| {
        p.send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)
    })
    .await
    .map_err(|_| KafkaError::Canceled)??;
    blocking(producer, |p| p.commit_transaction(TXN_TIMEOUT))
        .await
        .map_err(|_| KafkaError::Canceled)??;
    for (topic, d) in deliveries {
        let (partition, offset) = delivered(d).await?;
        positions.advance(topic, partition, offset + 1);
    }
    for d in acks {
        delivered(d).await?;
    }
    Ok(tally)
}

async fn delivered(d: rdkafka::producer::DeliveryFuture) -> Result<(i32, i64), KafkaError> {
    match d.await {
        Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(KafkaError::Canceled),
    }
}

/// Encodes the Avro-format valid outcomes in place. A value the registry cannot take (its schema
/// refused, or it does not fit) is quarantined with the reason; only a registry that cannot be
/// written fails the batch, which is then read again.
async fn encode_avro(
    outcomes: &mut [(&OwnedMessage, Outcome)],
    catalog: &CatalogView,
    avro: &AvroValues,
) -> Result<(), AvroValueError> {
    // One copy of each schema per batch, not per event: the catalog's read guard cannot be held
    // across the registry's awaits.
    let mut schemas: HashMap<(String, u32), Option<XdmSchema>> = HashMap::new();
    for (raw, outcome) in outcomes.iter_mut() {
        let Outcome::Valid {
            value,
            encoding: Encoding::Avro { schema_id, version },
            headers,
            ..
        } = outcome
        else {
            continue;
        };
        let schema = schemas
            .entry((schema_id.clone(), *version))
            .or_insert_with(|| catalog.read().schema(schema_id, *version).cloned());
        let entity: serde_json::Value = serde_json::from_slice(value).unwrap_or_default();
        let encoded = match schema {
            Some(schema) => avro.encode(schema, &entity).await,
            None => Err(AvroValueError::Mapping(
                schema_id.clone(),
                format!("version {version} is no longer in the catalog"),
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
                let input = RawInput {
                    key: raw.key(),
                    payload: raw.payload().unwrap_or_default(),
                    headers: raw.headers().and_then(RawHeaders::from_kafka),
                };
                *outcome = refuse(&input, &dataset, e.to_string());
            }
        }
    }
    Ok(())
}

/// Puts the consumer back at the batch's first offsets, so the batch is read again.
fn rewind(consumer: &RawConsumer, topic: &str, first_offsets: &HashMap<i32, i64>) {
    for (partition, first) in first_offsets {
        if let Err(e) = consumer.seek(
            topic,
            *partition,
            Offset::Offset(*first),
            Duration::from_secs(5),
        ) {
            tracing::debug!(partition, error = %e, "cannot rewind (partition moved away?)");
        }
    }
}

/// Creates the checkpoint topic with one partition per raw partition; says how many it has.
async fn prepare_checkpoints(
    kafka: &KafkaSettings,
    topics: &Topics,
    recovery: &Arc<Recovery>,
) -> Result<usize, StageError> {
    let raw_partitions = {
        let (r, raw) = (recovery.clone(), topics.ingest_raw());
        run_blocking(move || r.partitions(&raw)).await??.len()
    };
    ensure_topics(
        kafka,
        &[TopicSpec {
            name: topics.validate_checkpoints(),
            partitions: raw_partitions.max(1) as i32,
            // The newest checkpoint per raw partition is all recovery reads; compaction keeps
            // it however long a partition is idle.
            compacted: true,
        }],
    )
    .await?;
    let r = recovery.clone();
    let have = run_blocking(move || r.checkpoint_partitions()).await??;
    if have < raw_partitions {
        tracing::warn!(
            raw_partitions,
            checkpoint_partitions = have,
            "the checkpoint topic has fewer partitions than the raw topic: the others rely on Kafka transactions alone (on a broker that shows aborted records, a batch in flight at a crash may then appear twice); add partitions to it"
        );
    }
    Ok(have)
}

fn send(
    producer: &FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    producer.send_result(record).map_err(|(e, _)| e)
}

/// Runs a blocking librdkafka call off the async threads.
async fn run_blocking<T: Send + 'static>(
    call: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StageError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|_| StageError::Join)
}

/// Runs a blocking librdkafka producer call off the async threads.
async fn blocking<T: Send + 'static>(
    producer: &FutureProducer,
    call: impl FnOnce(&FutureProducer) -> T + Send + 'static,
) -> Result<T, StageError> {
    let producer = producer.clone();
    run_blocking(move || call(&producer)).await
}
