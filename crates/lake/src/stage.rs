//! The lake stage: a consumer group on events.valid and events.error that buffers records per
//! partition and flushes them to Parquet on count or time, then commits the offsets.
//!
//! Order of a flush: manifest → files → batch contributions → offset commit. A crash anywhere
//! before the commit means the flush is read again from the committed offset; the first flush
//! after an assignment removes what uncommitted flushes wrote (see [`crate::manifest`]), and
//! file names are derived from (topic, partition, first offset), so the replay never leaves a
//! row twice.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use cdp_catalog::CatalogView;
use cdp_contract::admin::ensure_topics;
use cdp_contract::{KafkaSettings, Topics};
use cdp_stage::consumer::Tp;
use cdp_stage::health::{self, Status};
use cdp_stage::{StageConsumer, StageMetrics};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::batches;
use crate::encode;
use crate::flush::{Flusher, PartitionBuffer};
use crate::record;
use crate::settings::LakeSettings;
use crate::store;
use crate::LakeError;
use cdp_xdm::decode::ValueDecoder;

/// How often a failed flush is tried again before the stage gives up (and, restarted, replays).
const FLUSH_ATTEMPTS: u32 = 8;

/// Runs the lake until `shutdown` turns true; buffered records are flushed before returning.
pub async fn run(
    kafka: &KafkaSettings,
    topics: &Topics,
    settings: &LakeSettings,
    catalog: CatalogView,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LakeError> {
    ensure_topics(
        kafka,
        &[batches::topic_spec(topics, settings.batch_partitions)],
    )
    .await?;
    let store = store::open(settings)?;
    let client_id = format!("cdp-lake-{}", uuid::Uuid::new_v4().simple());
    let metrics = StageMetrics::without_transactions("lake");
    let health = health::Registration::new("lake");
    let consumer = StageConsumer::new(kafka, &client_id, &settings.group_id, metrics.clone())
        .map_err(LakeError::Kafka)?;
    let (valid_topic, error_topic) = (topics.events_valid(), topics.events_error());
    if !consumer
        .wait_for_topics(&[&valid_topic, &error_topic], &mut shutdown)
        .await
    {
        return Ok(());
    }
    consumer
        .subscribe(&[valid_topic.as_str(), error_topic.as_str()])
        .map_err(LakeError::Kafka)?;
    let producer: FutureProducer = kafka
        .producer(&client_id, 30_000)
        .create()
        .map_err(LakeError::Kafka)?;
    let mut flusher = Flusher {
        store,
        producer,
        batches_topic: topics.batches(),
        catalog,
        compression: encode::compression(&settings.compression),
        concurrency: settings.write_concurrency,
        layouts: Default::default(),
    };
    let decoder = ValueDecoder::new(
        &settings.registry_url,
        settings.registry_token.as_deref().unwrap_or_default(),
    )
    .map_err(LakeError::Registry)?;
    let interval = Duration::from_millis(settings.flush_interval_ms.max(1));
    tracing::info!(root = %settings.root, group = %settings.group_id, "lake consuming");
    health.set(Status::Ready);
    let result = consume(
        &consumer,
        &mut flusher,
        &decoder,
        settings,
        &metrics,
        &valid_topic,
        interval,
        shutdown,
    )
    .await;
    health.set(if result.is_ok() {
        Status::Stopped
    } else {
        Status::Failed
    });
    result
}

/// Buffers records per partition and flushes them on count or time until shut down.
#[allow(clippy::too_many_arguments)]
async fn consume(
    consumer: &StageConsumer,
    flusher: &mut Flusher,
    decoder: &ValueDecoder,
    settings: &LakeSettings,
    metrics: &StageMetrics,
    valid_topic: &str,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), LakeError> {
    // Partitions whose recovery ran since they were assigned.
    let mut recovered: HashSet<Tp> = HashSet::new();
    let mut buffers: BTreeMap<Tp, PartitionBuffer> = BTreeMap::new();
    let mut buffered = 0usize;
    let mut oldest: Option<Instant> = None;
    loop {
        let deadline = oldest.map(|o| o + interval);
        let msg = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => break,
            _ = sleep_until(deadline) => None,
            m = consumer.recv() => Some(m),
        };
        drop_revoked(consumer, &mut buffers, &mut recovered, &mut buffered);
        match msg {
            Some(Ok(m)) => {
                let tp = (m.topic().to_string(), m.partition());
                if !recovered.contains(&tp) {
                    // First message since assignment: its offset is where consumption resumed.
                    flusher.recover(&tp.0, tp.1, m.offset()).await?;
                    recovered.insert(tp.clone());
                }
                let pending = if tp.0 == valid_topic {
                    record::valid(&m, decoder).await
                } else {
                    record::failed(&m)
                };
                let buf = buffers
                    .entry(tp.clone())
                    .or_insert_with(|| PartitionBuffer {
                        topic: tp.0.clone(),
                        partition: tp.1,
                        first_offset: m.offset(),
                        next_offset: m.offset(),
                        records: Vec::new(),
                    });
                buf.next_offset = m.offset() + 1;
                buf.records.push(pending);
                buffered += 1;
                oldest.get_or_insert_with(Instant::now);
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "lake read failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            None => {}
        }
        let due = deadline.is_some_and(|d| Instant::now() >= d);
        if buffered >= settings.flush_records || (buffered > 0 && due) {
            metrics.batch(buffered);
            flush_all(flusher, consumer, metrics, &mut buffers).await?;
            buffered = 0;
            oldest = None;
        }
    }
    drop_revoked(consumer, &mut buffers, &mut recovered, &mut buffered);
    if !buffers.is_empty() {
        metrics.batch(buffered);
        flush_all(flusher, consumer, metrics, &mut buffers).await?;
    }
    tracing::info!("lake stopped");
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn drop_revoked(
    consumer: &StageConsumer,
    buffers: &mut BTreeMap<Tp, PartitionBuffer>,
    recovered: &mut HashSet<Tp>,
    buffered: &mut usize,
) {
    for tp in consumer.take_revoked() {
        if let Some(b) = buffers.remove(&tp) {
            *buffered -= b.records.len();
            tracing::info!(
                topic = tp.0,
                partition = tp.1,
                records = b.records.len(),
                "partition revoked; its buffer is left to the next owner"
            );
        }
        recovered.remove(&tp);
    }
}

/// Flushes every partition's buffer, then commits their next offsets.
async fn flush_all(
    flusher: &mut Flusher,
    consumer: &StageConsumer,
    metrics: &StageMetrics,
    buffers: &mut BTreeMap<Tp, PartitionBuffer>,
) -> Result<(), LakeError> {
    let mut offsets = TopicPartitionList::new();
    let started = Instant::now();
    for (tp, buf) in std::mem::take(buffers) {
        let next = buf.next_offset;
        let records = buf.records.len() as u64;
        let mut attempt = 0;
        // A failed flush is retried with the same records, so it writes the same names.
        while let Err(e) = flusher.flush(&buf).await {
            attempt += 1;
            if attempt >= FLUSH_ATTEMPTS {
                return Err(e.into());
            }
            tracing::warn!(topic = tp.0, partition = tp.1, attempt, error = %e, "flush failed; retrying");
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(4))).await;
        }
        metrics.records_out(&tp.0, records);
        offsets
            .add_partition_offset(&tp.0, tp.1, Offset::Offset(next))
            .map_err(LakeError::Kafka)?;
    }
    metrics.duration("flush", started.elapsed());
    if let Err(e) = consumer.commit(offsets).await {
        // The files are written; whoever owns the partitions now replays from the last
        // commit and recovery replaces them.
        tracing::warn!(error = %e, "offset commit failed (rebalance?)");
    }
    Ok(())
}
