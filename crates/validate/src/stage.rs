//! The validate stage: a consumer group on the raw topic. Each batch of raw events becomes one
//! Kafka transaction holding its outputs (events.valid / events.error) and the consumer
//! offsets, so a crash at any point neither loses nor duplicates: either the whole batch is
//! committed with its offsets, or none of it is and the batch is read again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cdp_contract::{KafkaSettings, RawHeaders, Topics};
use cdp_control::CatalogView;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::process::{process, Outcome, RawInput};
use crate::{SchemaValidators, ValidateSettings};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

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
    let consumer: StreamConsumer = kafka
        .consumer(&format!("cdp-validate-{instance}"), &settings.group_id)
        .create()
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
    tracing::info!(instance, group = %settings.group_id, topic = %raw_topic, "validate stage consuming");

    let validators = SchemaValidators::default();
    let valid_topic = topics.events_valid();
    let error_topic = topics.events_error();
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

        let outcomes: Vec<Outcome> = {
            let state = catalog.read();
            batch
                .iter()
                .map(|m| {
                    let input = RawInput {
                        key: m.key(),
                        payload: m.payload().unwrap_or_default(),
                        headers: m.headers().and_then(RawHeaders::from_kafka),
                    };
                    process(&input, &state, &validators, &settings.identity_namespaces)
                })
                .collect()
        };
        let mut next_offsets: HashMap<i32, i64> = HashMap::new();
        let mut first_offsets: HashMap<i32, i64> = HashMap::new();
        for m in &batch {
            next_offsets
                .entry(m.partition())
                .and_modify(|o| *o = (*o).max(m.offset() + 1))
                .or_insert(m.offset() + 1);
            first_offsets
                .entry(m.partition())
                .and_modify(|o| *o = (*o).min(m.offset()))
                .or_insert(m.offset());
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in &next_offsets {
            let _ = offsets.add_partition_offset(&raw_topic, *partition, Offset::Offset(*next));
        }

        match transact(
            &producer,
            &consumer,
            &outcomes,
            &offsets,
            &valid_topic,
            &error_topic,
        )
        .await
        {
            Ok(tally) => {
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
                for (partition, first) in first_offsets {
                    if let Err(e) = consumer.seek(
                        &raw_topic,
                        partition,
                        Offset::Offset(first),
                        Duration::from_secs(5),
                    ) {
                        tracing::debug!(partition, error = %e, "cannot rewind (partition moved away?)");
                    }
                }
            }
        }
    }
    tracing::info!("validate stage stopped");
    Ok(())
}

async fn transact(
    producer: &FutureProducer,
    consumer: &StreamConsumer,
    outcomes: &[Outcome],
    offsets: &TopicPartitionList,
    valid_topic: &str,
    error_topic: &str,
) -> Result<Tally, KafkaError> {
    producer.begin_transaction()?;
    let mut tally = Tally::default();
    let mut deliveries = Vec::with_capacity(outcomes.len());
    for outcome in outcomes {
        let record = match outcome {
            Outcome::Valid {
                key,
                value,
                headers,
            } => {
                tally.valid += 1;
                FutureRecord::to(valid_topic)
                    .key(key.as_bytes())
                    .payload(value.as_slice())
                    .headers(headers.clone())
            }
            Outcome::Invalid {
                key,
                record,
                headers,
            } => {
                tally.invalid += 1;
                let value = serde_json::to_vec(record).unwrap_or_default();
                deliveries.push(send(
                    producer,
                    FutureRecord::to(error_topic)
                        .key(key.as_bytes())
                        .payload(value.as_slice())
                        .headers(headers.clone()),
                )?);
                continue;
            }
        };
        deliveries.push(send(producer, record)?);
    }
    let metadata = consumer.group_metadata().ok_or(KafkaError::ConsumerCommit(
        rdkafka::types::RDKafkaErrorCode::State,
    ))?;
    let offsets = offsets.clone();
    blocking(producer, move |p| {
        p.send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)
    })
    .await
    .map_err(|_| KafkaError::Canceled)??;
    blocking(producer, |p| p.commit_transaction(TXN_TIMEOUT))
        .await
        .map_err(|_| KafkaError::Canceled)??;
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => return Err(e),
            Err(_) => return Err(KafkaError::Canceled),
        }
    }
    Ok(tally)
}

fn send(
    producer: &FutureProducer,
    record: FutureRecord<'_, [u8], [u8]>,
) -> Result<rdkafka::producer::DeliveryFuture, KafkaError> {
    producer.send_result(record).map_err(|(e, _)| e)
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    producer: &FutureProducer,
    call: impl FnOnce(&FutureProducer) -> T + Send + 'static,
) -> Result<T, StageError> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || call(&producer))
        .await
        .map_err(|_| StageError::Join)
}
