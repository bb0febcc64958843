//! End-to-end latency at an offered load: raw records are written at a steady rate, each with
//! its send time as the record timestamp; a read_committed reader on the outputs takes the
//! `cdp-raw-position` header of each output it sees and the latency is the time it saw it minus
//! the raw record's timestamp. Whatever runs between (the validate stage, the copy loop) must be
//! consuming already.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use cdp_contract::clock::now_ms;
use cdp_contract::envelope::RAW_POSITION;
use cdp_contract::KafkaSettings;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

type Position = (i32, i64);

/// p50 / p90 / p99 / max of one run, in milliseconds.
pub struct Latency {
    pub samples: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

fn parse_position(v: &[u8]) -> Option<Position> {
    let (p, o) = std::str::from_utf8(v).ok()?.split_once(':')?;
    Some((p.parse().ok()?, o.parse().ok()?))
}

/// Writes `count` records at `rate` per second to `input` (`record(i)` gives key, value and
/// headers) and measures until every one has an output on `outputs`.
pub async fn measure<'p>(
    kafka: &KafkaSettings,
    input: &str,
    outputs: &[String],
    rate: u64,
    count: usize,
    record: impl Fn(usize) -> (String, &'p [u8], OwnedHeaders),
) -> anyhow::Result<Latency> {
    let seen: Arc<Mutex<HashMap<Position, i64>>> = Arc::default();
    let reader: StreamConsumer = kafka.reader("bench-latency").create()?;
    let mut tpl = TopicPartitionList::new();
    for topic in outputs {
        let metadata = reader.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                // The current end as a concrete offset: `Offset::End` is resolved only at the
                // reader's first fetch, and outputs seen late then count as slow.
                let (_, high) = reader.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(high))?;
            }
        }
    }
    reader.assign(&tpl)?;
    let reading = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Ok(m) = reader.recv().await {
                let at = now_ms();
                let position = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == RAW_POSITION))
                    .and_then(|h| h.value)
                    .and_then(parse_position);
                if let Some(p) = position {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).insert(p, at);
                }
            }
        })
    };
    // Give the reader's first fetches a moment, so it is reading when the load starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let producer: FutureProducer = kafka.producer("bench-latency", 60_000).create()?;
    // A new idempotent producer first fetches metadata and its producer id: records sent
    // meanwhile wait in its queue with their timestamps already taken. One acknowledged record
    // first, so the clock measures the pipeline, not the load generator's start. (Its output is
    // not among the measured ones.)
    let (key, value, headers) = record(count);
    producer
        .send(
            FutureRecord::to(input)
                .key(&key)
                .payload(value)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    let started = Instant::now();
    let per_tick = (rate / 100).max(1) as usize;
    let mut sends = Vec::with_capacity(count);
    for i in 0..count {
        if i % per_tick == 0 {
            let tick = (i / per_tick) as u32;
            tokio::time::sleep_until((started + Duration::from_millis(10) * tick).into()).await;
        }
        let (key, value, headers) = record(i);
        let ts = now_ms();
        let delivery = producer
            .send_result(
                FutureRecord::to(input)
                    .key(&key)
                    .payload(value)
                    .headers(headers)
                    .timestamp(ts),
            )
            .map_err(|(e, _)| e)?;
        sends.push((ts, delivery));
    }
    let offered = count as f64 / started.elapsed().as_secs_f64();
    let mut sent: HashMap<Position, i64> = HashMap::with_capacity(count);
    for (ts, d) in sends {
        let delivery = d.await?.map_err(|(e, _)| e)?;
        sent.insert((delivery.partition, delivery.offset), ts);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = {
            let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            sent.keys().filter(|p| seen.contains_key(p)).count()
        };
        if done == sent.len() {
            break;
        }
        if Instant::now() > deadline {
            reading.abort();
            bail!(
                "only {done} of {} outputs seen within 2 minutes",
                sent.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reading.abort();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let mut latencies: Vec<i64> = sent
        .iter()
        .filter_map(|(p, ts)| seen.get(p).map(|at| at - ts))
        .collect();
    // Where in the run the slowest outputs were: a tail at the start is the harness
    // warming up, one spread over the run is the pipeline's.
    let mut by_send: Vec<(i64, i64)> = sent
        .iter()
        .filter_map(|(p, ts)| seen.get(p).map(|at| (*ts, at - ts)))
        .collect();
    by_send.sort_unstable();
    let tenth = by_send.len() / 10;
    let slow = |part: &[(i64, i64)]| part.iter().filter(|(_, l)| *l > 250).count();
    println!(
        "  outputs slower than 250 ms: {} in the first tenth of the run, {} in the rest",
        slow(&by_send[..tenth]),
        slow(&by_send[tenth..])
    );
    latencies.sort_unstable();
    let pick = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or(0) as f64
    };
    println!(
        "  offered {offered:.0} events/s for {:.1} s",
        count as f64 / offered
    );
    Ok(Latency {
        samples: latencies.len(),
        p50: pick(0.50),
        p90: pick(0.90),
        p99: pick(0.99),
        max: latencies.last().copied().unwrap_or(0) as f64,
    })
}
