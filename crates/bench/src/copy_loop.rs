//! The broker's ceiling for a stage on this machine: a plain rdkafka consume → produce loop,
//! at least once (auto-committed offsets, no transactions), no parsing or validation. It copies
//! records with their headers and adds the same lineage header the stages write
//! (`cdp-raw-position`), so the latency probe can follow it like a stage.

use std::time::{Duration, Instant};

use cdp_contract::envelope::RAW_POSITION;
use cdp_contract::KafkaSettings;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::watch;

/// What one run of the loop did.
pub struct Copied {
    pub records: u64,
    /// When the first record was read.
    pub first: Option<Instant>,
    /// When the last record was acknowledged by the broker.
    pub done: Instant,
}

/// Copies `input` to `output` until `target` records were copied (and acknowledged) or `stop`
/// turns true.
pub async fn run(
    kafka: &KafkaSettings,
    input: &str,
    output: &str,
    group: &str,
    target: Option<u64>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Copied> {
    let mut config = kafka.consumer("bench-copy", group);
    config.set("enable.auto.commit", "true");
    let consumer: StreamConsumer = config.create()?;
    consumer.subscribe(&[input])?;
    // The stages' producer settings, without the transaction.
    let producer: FutureProducer = kafka.producer("bench-copy", 60_000).create()?;
    let mut copied = Copied {
        records: 0,
        first: None,
        done: Instant::now(),
    };
    let mut pending = Vec::new();
    loop {
        if target.is_some_and(|t| copied.records >= t) {
            break;
        }
        let m = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            m = consumer.recv() => m?,
        };
        copied.first.get_or_insert_with(Instant::now);
        let position = format!("{}:{}", m.partition(), m.offset());
        let mut headers = OwnedHeaders::new();
        if let Some(h) = m.headers() {
            use rdkafka::message::Headers;
            for h in h.iter() {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
        headers = headers.insert(Header {
            key: RAW_POSITION,
            value: Some(position.as_str()),
        });
        let mut record = FutureRecord::to(output).headers(headers);
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(p) = m.payload() {
            record = record.payload(p);
        }
        let delivery = loop {
            match producer.send_result(record) {
                Ok(d) => break d,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(e.into()),
            }
        };
        pending.push(delivery);
        copied.records += 1;
        // Keep the list of acknowledgements short without waiting on each one.
        if pending.len() >= 10_000 {
            for d in pending.drain(..) {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    let p = producer.clone();
    tokio::task::spawn_blocking(move || p.flush(Duration::from_secs(60))).await??;
    copied.done = Instant::now();
    Ok(copied)
}
