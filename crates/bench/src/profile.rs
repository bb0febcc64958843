//! `cdp-bench profile`: the profile stages (identity → engine, with the sandbox's streaming
//! definitions) against the validate stage on the same events, in one run, on one broker, each
//! phase under its own namespace:
//!
//! - **validate reference**: the events as raw messages through one validate stage (exactly
//!   once, without the profile intake, as before the intake moved into validate), until its
//!   group has committed the end of the raw topic — events/s;
//! - **profile**: the events pre-produced to profile.sequence as validate's profile intake
//!   writes them (the intake's own code makes the items), then the two profile
//!   stages started in-process (the engine evaluating `--definitions` streaming definitions), until every event has its `event` update on profile.updates
//!   (read_committed) — events/s and the ratio to validate; resident memory and the state
//!   directory's bytes per profile;
//! - **engine alone**: the engine on a copy of the run's profile.resolved, without identity
//!   in front of it — events/s and the ratio to validate;
//! - **lookups**: a `cdp control` process answering Profile API lookups routed to the engine's
//!   query listener — its resident memory and the lookups' latency;
//! - **latency** at an offered load on the running pipeline: per event, the time from producing
//!   its item to profile.sequence to reading its committed `event` update (matched by the event's `_id`);
//! - **restore**: with the stages stopped, each partition of the engine (and identity)
//!   changelog read into a fresh state store by the runtime's own restore code; then the stages
//!   restarted with an empty state directory, timed until new events have their updates;
//! - **changelog**: records per partition (log end − start) × the average record size of a
//!   sample.
//!
//! Profiles: `--profiles` people with `--events-per-profile` events each, in rounds (one event
//! of every person, then the next), so a profile's events are spread over the stream. A share
//! of the people (`--stitched-pct`) are stitched: an anonymous part keyed by ECID, one login
//! event carrying the ECID and a CRMID (keyed by the CRMID), then a part keyed by the CRMID.

use super::procfs::{broker_pid, cpu_by_thread, cpu_seconds, status_kb};
use cdp::synthetic::mix;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cdp_catalog::CatalogView;
use cdp_contract::admin::{ensure_topics, TopicSpec};
use cdp_contract::clock::now_ms;
use cdp_contract::envelope::Source;
use cdp_contract::{KafkaSettings, RawHeaders, Topics};
use cdp_profile::ProfileSettings;
use cdp_stage::metrics::Phase;
use cdp_stage::state::{PartitionState, StateStore};
use cdp_stage::{Lineage, Recovery};
use cdp_validate::ValidateSettings;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::load_config;

#[derive(Args, Debug, Clone)]
pub struct ProfileBenchArgs {
    /// People, so profiles.
    #[arg(long, default_value_t = 100_000)]
    profiles: u64,
    /// Events per person.
    #[arg(long, default_value_t = 10)]
    events_per_profile: u64,
    /// Share of people stitched from an ECID part and a CRMID part by a login event, percent.
    #[arg(long, default_value_t = 20)]
    stitched_pct: u64,
    /// Partitions of events.valid, profile.resolved and profile.updates (and so of the
    /// engine's state).
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Offered load of the latency phase, events per second.
    #[arg(long, default_value_t = 5_000)]
    latency_rate: u64,
    /// Length of the latency phase; 0 skips it.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// No validate reference (saves the broker the raw copy of every event).
    #[arg(long)]
    skip_validate: bool,
    /// No restore phase.
    #[arg(long)]
    skip_restore: bool,
    /// The state store's block cache, MiB (profile.state_cache_mb).
    #[arg(long, default_value_t = ProfileSettings::default().state_cache_mb)]
    state_cache_mb: u64,
    /// Streaming segment definitions in the sandbox (the five query types in equal parts).
    #[arg(long, default_value_t = 100)]
    definitions: usize,
    /// Profile API lookups through a `cdp control` process after (c) (its memory is measured);
    /// 0 skips it.
    #[arg(long, default_value_t = 2_000)]
    lookups: u64,
    /// No engine-alone phase (the engine on a copy of profile.resolved).
    #[arg(long)]
    skip_engine_alone: bool,
}

/// How long the runtime's restore may read a changelog partition before it gives up
/// (`Recovery`'s timeout in crates/stage/src/runtime.rs).
const RUNTIME_RESTORE_TIMEOUT: Duration = Duration::from_secs(30);

/// The people and their events.
#[derive(Clone, Copy)]
pub(super) struct Shape {
    pub(super) profiles: u64,
    pub(super) per: u64,
    pub(super) stitched_pct: u64,
}

/// Which identity an event names.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Anonymous,
    Login,
    Known,
}

impl Shape {
    pub(super) fn total(&self) -> u64 {
        self.profiles * self.per
    }

    fn stitched(&self, person: u64) -> bool {
        mix(person ^ 0x5717_c4ed) % 100 < self.stitched_pct
    }

    pub(super) fn stitched_count(&self) -> u64 {
        (0..self.profiles).filter(|p| self.stitched(*p)).count() as u64
    }

    /// 38 digits, unique per person.
    fn ecid(person: u64) -> String {
        format!(
            "{:019}{:019}",
            mix(person) % 10_000_000_000_000_000_000,
            person
        )
    }

    fn crmid(person: u64) -> String {
        format!("crm-{:016x}", mix(person ^ 0xc0ff_ee00))
    }

    /// What the `slot`-th event of a person is: a stitched person logs in half way.
    fn part(&self, person: u64, slot: u64) -> Part {
        if !self.stitched(person) {
            return Part::Anonymous;
        }
        let login = self.per / 2;
        match slot.cmp(&login) {
            std::cmp::Ordering::Less => Part::Anonymous,
            std::cmp::Ordering::Equal => Part::Login,
            std::cmp::Ordering::Greater => Part::Known,
        }
    }

    /// Event `i` of the stream (round `i / profiles`, person `i % profiles`): its key (the
    /// primary identity) and value.
    pub(super) fn event(&self, i: u64) -> (String, Vec<u8>) {
        let (person, slot) = (i % self.profiles, i / self.profiles);
        self.event_of(person, slot, &format!("ev-{i}"))
    }

    fn event_of(&self, person: u64, slot: u64, id: &str) -> (String, Vec<u8>) {
        let (ecid, crm) = (Self::ecid(person), Self::crmid(person));
        let (key, identity_map) = match self.part(person, slot) {
            Part::Anonymous => (
                format!("ECID:{ecid}"),
                json!({"ECID": [{"id": ecid, "primary": true}]}),
            ),
            Part::Login => (
                format!("CRMID:{crm}"),
                json!({"CRMID": [{"id": crm, "primary": true}], "ECID": [{"id": ecid}]}),
            ),
            Part::Known => (
                format!("CRMID:{crm}"),
                json!({"CRMID": [{"id": crm, "primary": true}]}),
            ),
        };
        let h = mix(person.wrapping_mul(31).wrapping_add(slot));
        let product = h % 500;
        let timestamp = chrono::DateTime::from_timestamp_millis(now_ms())
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let value = json!({
            "_id": id,
            "timestamp": timestamp,
            "eventType": if slot % 3 == 2 { "commerce.productViews" } else { "web.webpagedetails.pageViews" },
            "identityMap": identity_map,
            "web": {"webPageDetails": {"name": format!("product-{product}"), "URL": format!("https://shop.example.com/p/{product}"), "isHomePage": product == 0}},
            "productListItems": [{"SKU": format!("SKU-{product:05}"), "name": "Fernie Snow", "quantity": 1 + h % 3, "priceTotal": (h % 10_000) as f64 / 100.0}],
            "environment": {"browserDetails": {
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0",
                "acceptLanguage": "en-US"}}
        });
        (key, value.to_string().into_bytes())
    }
}

/// The bench schema: what validate checks the events against.
fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["_id", "timestamp"],
        "properties": {
            "_id": {"type": "string"},
            "timestamp": {"type": "string", "format": "date-time"},
            "eventType": {"type": "string"},
            "identityMap": {"type": "object", "additionalProperties": {"type": "array", "items": {
                "type": "object", "properties": {"id": {"type": "string"}, "primary": {"type": "boolean"}}}}},
            "web": {"type": "object", "properties": {"webPageDetails": {"type": "object", "properties": {
                "name": {"type": "string"}, "URL": {"type": "string"}, "isHomePage": {"type": "boolean"}}}}},
            "productListItems": {"type": "array", "items": {"type": "object", "properties": {
                "SKU": {"type": "string"}, "name": {"type": "string"}, "quantity": {"type": "integer"}, "priceTotal": {"type": "number"}}}},
            "environment": {"type": "object", "properties": {"browserDetails": {"type": "object", "properties": {
                "userAgent": {"type": "string"}, "acceptLanguage": {"type": "string"}}}}}
        }
    })
}

fn raw_headers(i: u64, sandbox: &str) -> RawHeaders {
    RawHeaders {
        stream_id: "bench".into(),
        org_id: super::ORG.into(),
        sandbox: sandbox.into(),
        batch_id: "bench".into(),
        xaction_id: format!("bench:{i}"),
        received_ms: now_ms(),
        content_type: "application/json".into(),
        source: Source::Stream,
    }
}

/// Events as the profile intake (inside validate) writes them, to profile.sequence (the
/// identity owner) or, on the identity fast path, to profile.resolved: the same code judges
/// the bench's events, so the profile stages see exactly what validate would hand them.
pub(super) struct Items {
    intake: cdp_profile::intake::ProfileIntake,
    view: CatalogView,
}

impl Items {
    pub(super) fn new(
        topics: &Topics,
        settings: &ProfileSettings,
        placement: cdp_profile::run::Placement,
        view: &CatalogView,
    ) -> Self {
        Self {
            intake: cdp_profile::run::intake(settings, topics, placement),
            view: view.clone(),
        }
    }

    /// Event `i`'s item on profile.sequence, in sandbox `prod`.
    fn of(&self, i: u64, key: &str, value: &[u8]) -> anyhow::Result<Load> {
        self.of_in(i, "prod", key, value)
    }

    /// Event `i`'s item on profile.sequence, in `sandbox`, on its sandbox's partition.
    pub(super) fn of_in(
        &self,
        i: u64,
        sandbox: &str,
        key: &str,
        value: &[u8],
    ) -> anyhow::Result<Load> {
        use cdp_validate::Follower as _;
        let entity: Value = serde_json::from_slice(value)?;
        let text = std::str::from_utf8(value)?;
        let raw = raw_headers(i, sandbox);
        let output = self
            .intake
            .follow(
                &cdp_validate::Valid {
                    raw: &raw,
                    dataset_id: "bench-dataset",
                    entity: &entity,
                    text,
                    key,
                    position: (0, i as i64),
                },
                &self.view.read(),
            )
            .map_err(|e| anyhow::anyhow!(e))?
            .context("the intake skipped a bench event (is the bench dataset profile-enabled?)")?;
        if output.topic == self.intake.error_topic {
            bail!(
                "the intake refused a bench event: {}",
                String::from_utf8_lossy(output.value.as_deref().unwrap_or_default())
            );
        }
        Ok(Load {
            topic: Some(output.topic),
            key: key.to_string(),
            value: output.value.unwrap_or_default(),
            headers: output.headers,
            partition: output.partition,
        })
    }
}

/// A fresh namespace with the bench catalog and `topics` (besides the catalog).
pub(super) async fn namespace(
    kafka: &KafkaSettings,
    partitions: i32,
    topics_of: impl Fn(&Topics) -> Vec<String>,
) -> anyhow::Result<(Topics, CatalogView)> {
    let topics = Topics::new(format!(
        "bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let mut specs = vec![TopicSpec {
        name: topics.catalog(),
        partitions: 1,
        compacted: true,
    }];
    for name in topics_of(&topics) {
        specs.push(TopicSpec {
            name,
            partitions,
            compacted: false,
        });
    }
    ensure_topics(kafka, &specs).await?;
    let view = CatalogView::start(kafka, &topics)?;
    view.caught_up(Duration::from_secs(30)).await?;
    super::seed_catalog(kafka, &topics, &view, schema()).await?;
    Ok((topics, view))
}

/// One record for [`produce_all`]: to its own topic if it names one (the profile intake's
/// items go to the identity owner or, on the fast path, to the profile), else to the one
/// given; without a partition, the key's (Kafka's partitioner).
pub(super) struct Load {
    topic: Option<String>,
    key: String,
    value: Vec<u8>,
    headers: OwnedHeaders,
    partition: Option<i32>,
}

impl Load {
    fn to<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, str, [u8]> {
        let rec = FutureRecord::to(self.topic.as_deref().unwrap_or(topic))
            .key(self.key.as_str())
            .payload(self.value.as_slice())
            .headers(self.headers.clone());
        match self.partition {
            Some(p) => rec.partition(p),
            None => rec,
        }
    }
}

/// Writes `count` records (`record(i)`) to `topic`, as fast as the producer takes them.
pub(super) async fn produce_all(
    kafka: &KafkaSettings,
    topic: &str,
    count: u64,
    record: impl Fn(u64) -> anyhow::Result<Load>,
) -> anyhow::Result<()> {
    let producer: FutureProducer = kafka.producer("bench-profile-load", 120_000).create()?;
    let mut pending = std::collections::VecDeque::new();
    for i in 0..count {
        let load = record(i)?;
        let mut rec = load.to(topic);
        loop {
            match producer.send_result(rec) {
                Ok(d) => {
                    pending.push_back(d);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    match pending.pop_front() {
                        Some(d) => {
                            d.await?.map_err(|(e, _)| e)?;
                        }
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        while pending.len() > 50_000 {
            if let Some(d) = pending.pop_front() {
                d.await?.map_err(|(e, _)| e)?;
            }
        }
    }
    for d in pending {
        d.await?.map_err(|(e, _)| e)?;
    }
    Ok(())
}

/// Throughput of one stage run.
struct Rates {
    /// From the first output to the last.
    steady: f64,
    /// From start, group joins included.
    overall: f64,
    /// Until the first output.
    first: Duration,
    took: Duration,
    /// Where the CPU went.
    cpu: String,
}

impl Rates {
    fn of(count: u64, started: Instant, first: Instant, done: Instant) -> Rates {
        Rates {
            steady: count as f64 / (done - first).as_secs_f64().max(1e-3),
            overall: count as f64 / (done - started).as_secs_f64().max(1e-3),
            first: first - started,
            took: done - started,
            cpu: String::new(),
        }
    }
}

/// (b): the events as raw messages through one validate stage.
async fn validate_reference(
    kafka: &KafkaSettings,
    shape: Shape,
    partitions: i32,
    broker: Option<&str>,
) -> anyhow::Result<Rates> {
    let (topics, view) = namespace(kafka, partitions, |t| {
        vec![t.ingest_raw(), t.events_valid(), t.events_error()]
    })
    .await?;
    produce_all(kafka, &topics.ingest_raw(), shape.total(), |i| {
        let (key, value) = shape.event(i);
        Ok(Load {
            topic: None,
            key,
            value,
            headers: raw_headers(i, "prod").to_kafka(),
            partition: None,
        })
    })
    .await?;
    println!("  {} raw events written", shape.total());

    let group = format!("bench-validate-{}", uuid::Uuid::new_v4().simple());
    let raw = topics.ingest_raw();
    let probe: BaseConsumer = kafka.consumer("bench-probe", &group).create()?;
    let (ends, total) = super::group::end_offsets(&probe, &raw, partitions)?;
    let (stop, stopped) = watch::channel(false);
    let settings = ValidateSettings {
        group_id: group.clone(),
        instance_id: Some(format!("{group}-0")),
        ..ValidateSettings::default()
    };
    let cpu = CpuMark::take(broker);
    let started = Instant::now();
    let stage = {
        let (kafka, topics, view) = (kafka.clone(), topics.clone(), view.clone());
        tokio::spawn(async move {
            let identity = cdp_contract::IdentitySettings::default().namespaces;
            // Validation alone, without the profile intake: the reference the profile stages
            // are compared with is the same as before the intake moved into validate.
            cdp_validate::stage::run(&kafka, &topics, &settings, &identity, view, None, stopped)
                .await
        })
    };
    let mut first: Option<(Instant, i64)> = None;
    loop {
        let done = super::group::committed(&probe, &ends)?;
        if done > 0 && first.is_none() {
            first = Some((Instant::now(), done));
        }
        if done >= total {
            break;
        }
        if stage.is_finished() {
            stage.await??;
            bail!("the validate stage stopped at {done} of {total}");
        }
        if started.elapsed() > Duration::from_secs(1800) {
            bail!("validate did not finish within 30 minutes ({done} of {total})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = Instant::now();
    let (first_at, first_done) = first.unwrap_or((started, 0));
    let mut rates = Rates::of((total - first_done) as u64, started, first_at, done);
    rates.overall = total as f64 / (done - started).as_secs_f64();
    rates.cpu = cpu.since(broker, total as u64);
    let _ = stop.send(true);
    stage.await.context("validate task")??;
    Ok(rates)
}

/// What the follower of profile.updates has seen.
#[derive(Default)]
struct Seen {
    /// One bit per stream event (`ev-<i>`) with an `event` update.
    bits: Vec<u64>,
    distinct: u64,
    updates: u64,
    by_type: BTreeMap<String, u64>,
    unreadable: u64,
    first: Option<Instant>,
    last_new: Option<Instant>,
    /// Other events (latency, restart probes): when their update was read and when the
    /// profile stage made it (epoch ms).
    marks: HashMap<String, (i64, i64)>,
}

#[derive(Deserialize)]
struct UpdateHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(rename = "timeMs", default)]
    time_ms: i64,
    #[serde(default, borrow)]
    event: Option<EventHead<'a>>,
}

#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "itemId", borrow)]
    item_id: &'a str,
}

/// Reads profile.updates (read_committed, from the beginning) on its own thread.
struct Follower {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn start(
        kafka: &KafkaSettings,
        topic: &str,
        partitions: i32,
        events: u64,
    ) -> anyhow::Result<Follower> {
        let reader: BaseConsumer = kafka.reader("bench-profile-updates").create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        reader.assign(&tpl)?;
        let seen = Arc::new(Mutex::new(Seen {
            bits: vec![0; events.div_ceil(64) as usize],
            ..Seen::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(m) = reader.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let Ok(m) = m else {
                        continue;
                    };
                    let at = Instant::now();
                    let at_ms = now_ms();
                    let head: Option<UpdateHead> =
                        m.payload().and_then(|p| serde_json::from_slice(p).ok());
                    let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                    s.updates += 1;
                    let Some(head) = head else {
                        s.unreadable += 1;
                        continue;
                    };
                    *s.by_type.entry(head.kind.to_string()).or_default() += 1;
                    let Some(event) = head.event.filter(|_| head.kind == "event") else {
                        continue;
                    };
                    if let Some(i) = event
                        .item_id
                        .strip_prefix("ev-")
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
                        if let Some(w) = s.bits.get_mut(word) {
                            if *w & bit == 0 {
                                *w |= bit;
                                s.distinct += 1;
                                s.first.get_or_insert(at);
                                s.last_new = Some(at);
                            }
                        }
                    } else {
                        s.marks
                            .entry(event.item_id.to_string())
                            .or_insert((at_ms, head.time_ms));
                    }
                }
            })
        };
        Ok(Follower {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// CPU seconds between two readings, largest first.
fn cpu_spent(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> String {
    let mut spent: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v >= 0.05)
        .collect();
    spent.sort_by(|a, b| b.1.total_cmp(&a.1));
    spent
        .iter()
        .map(|(k, v)| format!("{k} {v:.1}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// CPU used from here on, by this process (per thread name) and by the broker.
struct CpuMark {
    at: Instant,
    own: f64,
    broker: f64,
    threads: BTreeMap<String, f64>,
}

impl CpuMark {
    fn take(broker: Option<&str>) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            own: cpu_seconds("self").unwrap_or(0.0),
            broker: broker.and_then(cpu_seconds).unwrap_or(0.0),
            threads: cpu_by_thread(),
        }
    }

    /// CPU seconds since the mark: this process, the broker, and this process by thread.
    fn since(&self, broker: Option<&str>, events: u64) -> String {
        let wall = self.at.elapsed().as_secs_f64().max(1e-3);
        let own = cpu_seconds("self").unwrap_or(0.0) - self.own;
        let b = broker.and_then(cpu_seconds).unwrap_or(0.0) - self.broker;
        format!(
            "CPU over {wall:.1} s: this process {own:.1} s ({:.0} µs/event), broker {b:.1} s ({:.0} µs/event), {:.0} % of {} cores in all; by thread: {}",
            own * 1e6 / events.max(1) as f64,
            b * 1e6 / events.max(1) as f64,
            (own + b) * 100.0 / (wall * cores() as f64),
            cores(),
            cpu_spent(&self.threads, &cpu_by_thread())
        )
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn mib(kb: Option<u64>) -> String {
    kb.map_or("?".into(), |kb| format!("{:.0} MiB", kb as f64 / 1024.0))
}

/// Resets this process's peak resident memory (VmHWM) to the current one.
fn reset_peak() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        println!("  cannot reset VmHWM ({e}): the peak below includes earlier phases");
    }
}

/// Bytes under `dir`: allocated, apparent, and allocated in the store's journal (write-ahead
/// log) files.
fn du_split(dir: &Path, in_journal: bool) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0, 0);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            let journal = in_journal || e.file_name().to_string_lossy().contains("journal");
            if m.is_dir() {
                let (a, b, j) = du_split(&e.path(), journal);
                total = (total.0 + a, total.1 + b, total.2 + j);
            } else {
                let allocated = m.blocks() * 512;
                let j = if journal || e.path().extension().is_some_and(|x| x == "jnl") {
                    allocated
                } else {
                    0
                };
                total = (total.0 + allocated, total.1 + m.len(), total.2 + j);
            }
        }
    }
    total
}

/// Bytes of each stage's state directory under `base` (`<stage>-<instance>-<pid>`):
/// allocated, apparent, of which journal.
fn state_bytes(base: &Path) -> BTreeMap<String, (u64, u64, u64)> {
    let mut out = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(base) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stage = name.split('-').next().unwrap_or_default().to_string();
            out.insert(stage, du_split(&e.path(), false));
        }
    }
    out
}

/// The sum of a metric's series whose line contains `labels`.
fn metric(page: &str, name: &str, labels: &str) -> f64 {
    page.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                && l.contains(labels)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How many events took the identity fast path, and how many reached the identity owner
/// (the intake's items are counted once per process: the bench's are all written in (a)).
pub(super) struct FastPathShare {
    direct: f64,
    owner: f64,
    applied: f64,
    forwarded: f64,
}

impl FastPathShare {
    pub(super) fn between(before: &str, after: &str) -> Self {
        let diff =
            |name: &str, labels: &str| metric(after, name, labels) - metric(before, name, labels);
        // An empty sum is -0.0; counts are never negative.
        Self {
            direct: metric(after, "cdp_intake_items_total", "path=\"direct\"").max(0.0),
            owner: metric(after, "cdp_intake_items_total", "path=\"owner\"").max(0.0),
            applied: diff("cdp_engine_direct_total", "outcome=\"applied\"").max(0.0),
            forwarded: diff("cdp_engine_direct_total", "outcome=\"forwarded\"").max(0.0),
        }
    }
}

impl std::fmt::Display for FastPathShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items = (self.direct + self.owner).max(1.0);
        write!(
            f,
            "identity fast path: {:.0} of {:.0} items sent straight to their profile ({:.1} %), {:.0} applied there, {:.0} forwarded; {:.1} % of the events reached the identity owner",
            self.direct,
            items,
            self.direct * 100.0 / items,
            self.applied,
            self.forwarded,
            (self.owner + self.forwarded) * 100.0 / items,
        )
    }
}

fn page() -> String {
    cdp_contract::prometheus::render().unwrap_or_default()
}

/// Records in per profile stage so far, from the runtime's metrics.
fn stage_inputs(page: &str) -> String {
    ["identity", "engine"]
        .iter()
        .map(|s| {
            format!(
                "{s} {:.0}",
                metric(page, &format!("cdp_{s}_records_in_total"), "")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What each stage's transactions did between two metric pages.
fn transactions(before: &str, after: &str) -> Vec<String> {
    ["identity", "engine"]
        .iter()
        .map(|s| {
            let d = |name: &str| {
                let n = format!("cdp_{s}_{name}");
                metric(after, &n, "") - metric(before, &n, "")
            };
            let n = d("transaction_duration_seconds_count").max(1.0);
            format!(
                "{s}: {:.0} records in, {:.0} transactions of {:.0} records, {:.0} ms open, {:.0} ms committing",
                d("records_in_total"),
                d("transaction_duration_seconds_count"),
                d("transaction_records_sum") / n,
                d("transaction_duration_seconds_sum") * 1000.0 / n,
                d("commit_duration_seconds_sum") * 1000.0 / n,
            )
        })
        .collect()
}

/// `n` streaming definitions of the five query types in equal parts, over the bench's events
/// (page views and product views of `product-<k>`): `(id, classification, expression)`. An
/// event of either type is read by about a third of them.
fn bench_definitions(n: usize) -> Vec<(String, &'static str, String)> {
    let per = n.div_ceil(5);
    let ty = |k: usize| {
        if k.is_multiple_of(2) {
            "web.webpagedetails.pageViews"
        } else {
            "commerce.productViews"
        }
    };
    let mut out = Vec::new();
    for k in 0..per {
        let window = if k % 2 == 1 {
            " and timestamp occurs < 1 hours before now"
        } else {
            ""
        };
        out.push((
            format!("single-{k}"),
            "single event",
            format!(
                r#"xEvent.any(eventType = "{}" and web.webPageDetails.name = "product-{k}"{window})"#,
                ty(k)
            ),
        ));
        out.push((
            format!("profile-{k}"),
            "profile only",
            format!(r#"loyalty.tier = "tier-{k}""#),
        ));
        out.push((
            format!("attr-{k}"),
            "single event with profile attributes",
            format!(
                r#"loyalty.tier = "tier-{k}" and xEvent.any(eventType = "{}")"#,
                ty(k)
            ),
        ));
        out.push((
            format!("of-{k}"),
            "segment of segments",
            format!(r#"inSegment("single-{k}")"#),
        ));
        let multi = if k.is_multiple_of(2) {
            format!(
                r#"xEvent[eventType = "{}" and web.webPageDetails.name = "product-{k}"].count() >= 2"#,
                ty(k)
            )
        } else {
            format!(
                r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "web.webpagedetails.pageViews" and web.webPageDetails.name = "product-{k}"), C1: WHAT(eventType = "commerce.productViews") WITHIN 24 hours AFTER C0])"#
            )
        };
        out.push((format!("multi-{k}"), "multiple events", multi));
    }
    out.truncate(n);
    out
}

/// Writes the bench's definitions to a namespace's catalog.
async fn define(
    kafka: &KafkaSettings,
    topics: &Topics,
    view: &CatalogView,
    n: usize,
) -> anyhow::Result<()> {
    let writer = cdp_catalog::CatalogWriter::new(kafka, topics, view.clone())?;
    let now = now_ms();
    for (id, classification, expression) in bench_definitions(n) {
        writer
            .put(&cdp_catalog::CatalogRecord::Segment(
                cdp_catalog::SegmentDefinition {
                    id: id.clone(),
                    name: id,
                    description: None,
                    org_id: super::ORG.into(),
                    sandbox: "prod".into(),
                    schema_name: "_xdm.context.profile".into(),
                    expression,
                    streaming: true,
                    classification: classification.into(),
                    profile_only: classification == "profile only",
                    creation_time: now,
                    update_time: now,
                },
            ))
            .await?;
    }
    Ok(())
}

/// The admin token of the bench's stages and control.
const BENCH_TOKEN: &str = "bench-admin-token";

/// The configuration the bench starts stages with.
pub(super) fn config_of(
    kafka: &KafkaSettings,
    topics: &Topics,
    settings: &ProfileSettings,
) -> cdp::CdpConfig {
    let mut c = cdp::CdpConfig {
        kafka: kafka.clone(),
        topics: topics.clone(),
        ..cdp::CdpConfig::default()
    };
    c.profile = settings.clone();
    c.profile.query_listen = "127.0.0.1:0".into();
    c.health.listen = "127.0.0.1:0".into();
    c.control.admin_token = BENCH_TOKEN.into();
    c
}

/// Running profile stages (identity and the engine, or the engine alone), in-process,
/// started as `cdp profile` / `cdp engine` start them (their query API included).
struct Pipeline {
    running: cdp::Running,
}

impl Pipeline {
    async fn start(
        kafka: &KafkaSettings,
        topics: &Topics,
        settings: &ProfileSettings,
        stages: cdp::Stages,
    ) -> anyhow::Result<Pipeline> {
        let running = cdp::start(&config_of(kafka, topics, settings), stages)
            .await
            .context("starting the profile stages")?;
        Ok(Pipeline { running })
    }

    async fn stop(self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(120), self.running.shutdown())
            .await
            .context("the profile stages did not stop within 2 minutes")?;
        Ok(())
    }
}

/// p50 / p90 / p99 / max in ms.
struct Latency {
    samples: usize,
    offered: f64,
    p50: i64,
    p90: i64,
    p99: i64,
    max: i64,
    /// Produced → the profile stage made the update (before its transaction committed).
    made_p50: i64,
    made_p99: i64,
    /// Events slower than 500 ms in the first tenth of the run, and in the rest.
    slow_first: usize,
    slow_rest: usize,
}

/// The `q` quantile of sorted values.
fn quantile(sorted: &[i64], q: f64) -> i64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or(0)
}

/// (d): events at `rate` for `seconds` into the running pipeline (as items on
/// profile.sequence), for existing profiles.
async fn latency(
    kafka: &KafkaSettings,
    topics: &Topics,
    items: &Items,
    shape: Shape,
    follower: &Follower,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Latency> {
    let producer: FutureProducer = kafka.producer("bench-profile-latency", 60_000).create()?;
    let topic = topics.profile_sequence();
    let record = |j: u64, id: &str| {
        let person = mix(j ^ 0x1a7e_0c1e) % shape.profiles;
        // The person's last kind of event: CRMID for a stitched person, else ECID.
        let (key, value) = shape.event_of(person, shape.per.saturating_sub(1), id);
        items.of(j, &key, &value)
    };
    // One acknowledged record first: a new idempotent producer holds what it is given until
    // it has its producer id (see latency.rs).
    let warm = record(u64::MAX, "lat-warm")?;
    producer
        .send(warm.to(&topic), Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)?;
    let count = (rate * seconds) as usize;
    let per_tick = (rate / 100).max(1) as usize;
    let started = Instant::now();
    let mut sends = Vec::with_capacity(count);
    for j in 0..count {
        if j % per_tick == 0 {
            let tick = (j / per_tick) as u32;
            tokio::time::sleep_until((started + Duration::from_millis(10) * tick).into()).await;
        }
        let id = format!("lat-{j}");
        let load = record(j as u64, &id)?;
        let ts = now_ms();
        let delivery = producer
            .send_result(load.to(&topic).timestamp(ts))
            .map_err(|(e, _)| e)?;
        sends.push((id, ts, delivery));
    }
    let offered = count as f64 / started.elapsed().as_secs_f64();
    let mut sent = Vec::with_capacity(count);
    for (id, ts, d) in sends {
        d.await?.map_err(|(e, _)| e)?;
        sent.push((id, ts));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let pairs = loop {
        let got: Vec<(i64, i64)> = follower.with(|s| {
            sent.iter()
                .filter_map(|(id, ts)| s.marks.get(id).map(|(at, made)| (at - ts, made - ts)))
                .collect()
        });
        if got.len() == sent.len() {
            break got;
        }
        if Instant::now() > deadline {
            bail!(
                "only {} of {} latency events had their update within 2 minutes",
                got.len(),
                sent.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // In send order: where the slow ones fall.
    let tenth = pairs.len() / 10;
    let slow = |part: &[(i64, i64)]| part.iter().filter(|(l, _)| *l > 500).count();
    let (slow_first, slow_rest) = (slow(&pairs[..tenth]), slow(&pairs[tenth..]));
    let mut latencies: Vec<i64> = pairs.iter().map(|(l, _)| *l).collect();
    let mut made: Vec<i64> = pairs.iter().map(|(_, m)| *m).collect();
    latencies.sort_unstable();
    made.sort_unstable();
    Ok(Latency {
        samples: latencies.len(),
        offered,
        p50: quantile(&latencies, 0.5),
        p90: quantile(&latencies, 0.9),
        p99: quantile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(0),
        made_p50: quantile(&made, 0.5),
        made_p99: quantile(&made, 0.99),
        slow_first,
        slow_rest,
    })
}

/// One changelog partition restored into a fresh store by the runtime's restore code.
struct Restored {
    partition: i32,
    keys: usize,
    records: usize,
    took: Duration,
    /// The store's directory after the restore (allocated bytes), and its journal's.
    bytes: u64,
    journal: u64,
}

/// The live state of a sample of profiles: keys + values, and what the records' parts take
/// (MessagePack, uncompressed).
#[derive(Default)]
struct Logical {
    profiles: usize,
    bytes: usize,
    events: usize,
    event_bytes: usize,
    member_bytes: usize,
    due_bytes: usize,
    members: usize,
    dues: usize,
}

impl Logical {
    fn per_profile(&self) -> f64 {
        self.bytes as f64 / self.profiles.max(1) as f64
    }
}

/// Sums the keys and values of the profiles whose id starts with `00` (1/256 of them), by the
/// engine's key layout (crates/engine/src/keys.rs: one record per profile,
/// `p<org>\0<sandbox>\0<id>`).
fn sample_logical(store: &StateStore, partition: i32, into: &mut Logical) -> anyhow::Result<()> {
    for (key, value) in store.scan(partition, b"p")? {
        let Some((_, _, id)) = cdp_engine::keys::parse_profile(&key) else {
            continue;
        };
        if !id.starts_with("00") {
            continue;
        }
        into.profiles += 1;
        into.bytes += key.len() + value.len();
        let record = cdp_engine::record::ProfileRecord::decode(&value)?;
        into.events += record.events.len();
        into.members += record.members.len();
        into.dues += record.due.len();
        let size = |v: &dyn erased::Size| v.size();
        into.event_bytes += size(&record.events);
        into.member_bytes += size(&record.members);
        into.due_bytes += size(&record.due);
    }
    Ok(())
}

/// (e): every partition of `changelog` read into a fresh state store, one after the other, as
/// the runtime does after an assignment; with `logical`, the live state of a sample of
/// profiles is measured too.
async fn restore(
    kafka: &KafkaSettings,
    changelog: &str,
    partitions: i32,
    dir: &Path,
    cache_mb: u64,
    mut logical: Option<&mut Logical>,
) -> anyhow::Result<Vec<Restored>> {
    let recovery = Arc::new(Recovery::new(
        kafka,
        "bench-profile-restore",
        "bench-profile-restore",
        Lineage::INPUT,
        format!("{changelog}.unused-checkpoints"),
        Vec::new(),
        // Longer than the runtime's, to measure restores it would give up on.
        Duration::from_secs(1800),
    )?);
    let mut store = StateStore::open(changelog.to_string(), dir, cache_mb)?;
    let mut out = Vec::new();
    for partition in 0..partitions {
        let loader = store.loader(partition)?;
        let (r, c) = (recovery.clone(), changelog.to_string());
        let started = Instant::now();
        let state =
            tokio::task::spawn_blocking(move || PartitionState::load(&r, &c, loader)).await??;
        let took = started.elapsed();
        let (keys, records) = (state.approximate_len(), state.records());
        store.install(partition, state);
        if let Some(l) = logical.as_deref_mut() {
            sample_logical(&store, partition, l)?;
        }
        let disk = du_split(dir, false);
        out.push(Restored {
            partition,
            keys,
            records,
            took,
            bytes: disk.0,
            journal: disk.2,
        });
    }
    Ok(out)
}

/// Records and approximate bytes of a topic: per partition log end − log start, times the
/// average key + value size of up to `sample` records read from each partition's start.
fn topic_size(
    kafka: &KafkaSettings,
    topic: &str,
    partitions: i32,
    sample: usize,
) -> anyhow::Result<(i64, f64)> {
    let reader: BaseConsumer = kafka.reader("bench-profile-size").create()?;
    let (mut records, mut bytes) = (0i64, 0f64);
    for p in 0..partitions {
        let (low, high) = reader.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        let n = high - low;
        records += n;
        if n <= 0 {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
        reader.assign(&tpl)?;
        let want = (n as usize).min(sample);
        let (mut got, mut size) = (0usize, 0usize);
        let deadline = Instant::now() + Duration::from_secs(30);
        while got < want && Instant::now() < deadline {
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(200)) {
                got += 1;
                size += m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len);
            }
        }
        if got > 0 {
            bytes += n as f64 * size as f64 / got as f64;
        }
    }
    Ok((records, bytes))
}

fn per_profile(bytes: f64, profiles: u64) -> String {
    format!("{:.0} B/profile", bytes / profiles.max(1) as f64)
}

pub async fn run(config: Option<PathBuf>, args: ProfileBenchArgs) -> anyhow::Result<()> {
    let config = load_config(config)?;
    if config.kafka.bootstrap_servers.is_empty() {
        bail!("no broker configured (CDP_KAFKA__BOOTSTRAP_SERVERS); `make bench` starts one");
    }
    if args.profiles == 0 || args.events_per_profile == 0 {
        bail!("--profiles and --events-per-profile must be at least 1");
    }
    let kafka = config.kafka.clone();
    let bootstrap = kafka.bootstrap_servers.clone();
    let shape = Shape {
        profiles: args.profiles,
        per: args.events_per_profile,
        stitched_pct: args.stitched_pct.min(100),
    };
    let total = shape.total();
    let stitched = shape.stitched_count();
    let sizes: Vec<usize> = (0..1000.min(total))
        .map(|i| shape.event(i).1.len())
        .collect();
    let average = sizes.iter().sum::<usize>() / sizes.len().max(1);
    println!(
        "cdp-bench profile: {} profiles × {} events = {total} events of ~{average} B, {stitched} profiles ({:.1} %) stitched from ECID + CRMID by a login event, {} partitions, broker {bootstrap}",
        args.profiles,
        args.events_per_profile,
        stitched as f64 * 100.0 / args.profiles as f64,
        args.partitions,
    );
    let broker_pid = broker_pid(&bootstrap);
    let broker = || mib(broker_pid.as_deref().and_then(|p| status_kb(p, "VmRSS:")));
    println!("broker RSS at start: {}", broker());

    // (b) The validate stage on the same events, as raw messages.
    let validate = if args.skip_validate {
        None
    } else {
        println!("(b) validate reference: raw events → one validate stage, exactly once");
        let r = validate_reference(&kafka, shape, args.partitions, broker_pid.as_deref()).await?;
        println!(
            "(b) validate stage, 1 instance:   {:>9.0} events/s steady; {:.0} events/s including {:.1} s to the first commit ({:.1} s in all); broker RSS {}",
            r.steady, r.overall, r.first.as_secs_f64(), r.took.as_secs_f64(), broker()
        );
        println!("    {}", r.cpu);
        Some(r)
    };

    // (a) The events on events.valid of a fresh namespace, as validate writes them.
    let (topics, view) = namespace(&kafka, args.partitions, |t| {
        vec![t.events_valid(), t.events_error()]
    })
    .await?;
    let state_base = std::env::temp_dir().join(format!("cdp-bench-profile-{}", topics.namespace));
    let settings = ProfileSettings {
        group_prefix: format!("{}-profile", topics.namespace),
        instance_id: Some("bench".into()),
        partitions: args.partitions,
        state_dir: Some(state_base.join("run").display().to_string()),
        state_cache_mb: args.state_cache_mb,
        ..ProfileSettings::default()
    };
    ensure_topics(&kafka, &cdp_profile::run::topic_specs(&topics, &settings)).await?;
    ensure_topics(
        &kafka,
        &cdp_engine::run::topic_specs(&topics, settings.partitions, settings.identity_partitions),
    )
    .await?;
    let started = Instant::now();
    let placement = cdp_profile::run::Placement::of(&kafka, &topics).await?;
    let sequence_partitions = placement.sequence;
    let items = Items::new(&topics, &settings, placement, &view);
    produce_all(&kafka, &topics.profile_sequence(), total, |i| {
        let (key, value) = shape.event(i);
        items.of(i, &key, &value)
    })
    .await?;
    println!(
        "(a) {total} events written to {} as validate's profile intake writes them, in {:.1} s (not timed); broker RSS {}",
        topics.profile_sequence(),
        started.elapsed().as_secs_f64(),
        broker()
    );

    // The sandbox's streaming definitions.
    define(&kafka, &topics, &view, args.definitions).await?;
    println!(
        "    {} streaming definitions of the five query types in the sandbox",
        args.definitions
    );

    // (c) Identity and the engine until every event has its committed update.
    let follower = Follower::start(&kafka, &topics.profile_updates(), args.partitions, total)?;
    reset_peak();
    let rss_before = status_kb("self", "VmRSS:");
    let page_before = page();
    let cpu = CpuMark::take(broker_pid.as_deref());
    let started = Instant::now();
    let pipeline = Pipeline::start(&kafka, &topics, &settings, cdp::Stages::PROFILE).await?;
    let mut progress = (0u64, Instant::now());
    let mut printed = Instant::now();
    loop {
        let distinct = follower.with(|s| s.distinct);
        if distinct >= total {
            break;
        }
        if distinct > progress.0 {
            progress = (distinct, Instant::now());
        } else if progress.1.elapsed() > Duration::from_secs(300) {
            bail!(
                "no progress for 5 minutes: {distinct} of {total} events have their update; records in: {}",
                stage_inputs(&page())
            );
        }
        if printed.elapsed() >= Duration::from_secs(10) {
            printed = Instant::now();
            println!(
                "  {:>5.0} s: {distinct} of {total} events have their update; records in: {}; RSS {}, broker {}",
                started.elapsed().as_secs_f64(),
                stage_inputs(&page()),
                mib(status_kb("self", "VmRSS:")),
                broker()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = Instant::now();
    let (first, last, by_type, updates, unreadable) = follower.with(|s| {
        (
            s.first,
            s.last_new,
            s.by_type.clone(),
            s.updates,
            s.unreadable,
        )
    });
    let profile = Rates::of(
        total,
        started,
        first.unwrap_or(started),
        last.unwrap_or(done),
    );
    let cpu = cpu.since(broker_pid.as_deref(), total);
    let rss_after = status_kb("self", "VmRSS:");
    let rss_peak = status_kb("self", "VmHWM:");
    let page_after = page();
    let state = state_bytes(&state_base.join("run"));
    println!(
        "(c) profile stages (identity → engine): {:>9.0} events/s steady{}; {:.0} events/s including {:.1} s to the first update ({:.1} s in all)",
        profile.steady,
        validate
            .as_ref()
            .map(|v| format!(" ({:.2} of validate)", profile.steady / v.steady))
            .unwrap_or_default(),
        profile.overall,
        profile.first.as_secs_f64(),
        profile.took.as_secs_f64()
    );
    for line in transactions(&page_before, &page_after) {
        println!("    {line}");
    }
    println!("    {cpu}");
    let changes = |op: &str| {
        metric(
            &page_after,
            "cdp_identity_graph_changes_total",
            &format!("op=\"{op}\""),
        ) - metric(
            &page_before,
            "cdp_identity_graph_changes_total",
            &format!("op=\"{op}\""),
        )
    };
    println!(
        "    updates read: {updates} ({by_type:?}, {unreadable} unreadable); graph: {:.0} created, {:.0} linked, {:.0} merged, {:.0} split",
        changes("created"),
        changes("linked"),
        changes("merged"),
        changes("split")
    );
    println!("    {}", FastPathShare::between(&page_before, &page_after));
    println!(
        "(f) resident memory of this process: {} before the stages, peak {} while they ran, {} after (anonymous {}, file-backed {}); broker {}",
        mib(rss_before),
        mib(rss_peak),
        mib(rss_after),
        mib(status_kb("self", "RssAnon:")),
        mib(status_kb("self", "RssFile:")),
        broker()
    );
    for (stage, (allocated, apparent, journal)) in &state {
        println!(
            "(f) {stage} state directory: {:.1} MiB on disk ({:.1} MiB apparent), of which {:.1} MiB journal; {}",
            *allocated as f64 / 1048576.0,
            *apparent as f64 / 1048576.0,
            *journal as f64 / 1048576.0,
            per_profile(*allocated as f64, args.profiles)
        );
    }

    // Changelogs: records and approximate bytes.
    let (profile_records, profile_bytes) =
        topic_size(&kafka, &topics.engine_changelog(), args.partitions, 2_000)?;
    let (identity_records, identity_bytes) = topic_size(
        &kafka,
        &topics.identity_changelog(),
        sequence_partitions,
        2_000,
    )?;
    println!(
        "(f) engine.changelog: {profile_records} records, ~{:.1} MiB ({}); identity.changelog: {identity_records} records, ~{:.1} MiB ({}) after (c) (records = log end − log start, bytes = records × the average key + value of the first 2,000 per partition)",
        profile_bytes / 1048576.0,
        per_profile(profile_bytes, args.profiles),
        identity_bytes / 1048576.0,
        per_profile(identity_bytes, args.profiles),
    );

    // (g) Control answering Profile API lookups from the engine: its memory.
    let control = if args.lookups > 0 {
        let c = control_lookups(&kafka, &topics, shape, args.lookups).await?;
        println!(
            "(g) cdp control: {} of {} Profile API lookups answered 200 (p50 {} ms, p99 {} ms); control's RSS {} (peak {})",
            c.found, args.lookups, c.p50, c.p99, mib(c.rss_kb), mib(c.hwm_kb)
        );
        Some(c)
    } else {
        None
    };

    // (c2) The engine alone on the same events: a copy of what the identity stage wrote.
    let alone = if args.skip_engine_alone {
        None
    } else {
        let r = engine_alone(
            &kafka,
            &topics,
            &settings,
            args.definitions,
            total,
            &state_base,
            broker_pid.as_deref(),
        )
        .await?;
        println!(
            "(c2) the engine alone on a copy of profile.resolved ({} records): {:>9.0} events/s steady{}; {:.0} events/s including {:.1} s to the first update",
            r.1,
            r.0.steady,
            validate
                .as_ref()
                .map(|v| format!(" ({:.2} of validate)", r.0.steady / v.steady))
                .unwrap_or_default(),
            r.0.overall,
            r.0.first.as_secs_f64()
        );
        println!("    {}", r.0.cpu);
        println!("    {}", r.2);
        Some(r.0)
    };

    // (d) Latency on the running pipeline.
    let lat = if args.latency_seconds > 0 {
        let page_before = page();
        let cpu = CpuMark::take(broker_pid.as_deref());
        let l = latency(
            &kafka,
            &topics,
            &items,
            shape,
            &follower,
            args.latency_rate,
            args.latency_seconds,
        )
        .await?;
        println!(
            "(d) latency events.valid → committed profile update at {:.0} events/s for {} s: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} events)",
            l.offered, args.latency_seconds, l.p50, l.p90, l.p99, l.max, l.samples
        );
        println!(
            "    events.valid → the profile stage made the update (before its commit): p50 {} ms, p99 {} ms; slower than 500 ms: {} in the first tenth of the run, {} in the rest",
            l.made_p50, l.made_p99, l.slow_first, l.slow_rest
        );
        for line in transactions(&page_before, &page()) {
            println!("    {line}");
        }
        println!("    {}", cpu.since(broker_pid.as_deref(), l.samples as u64));
        Some(l)
    } else {
        None
    };
    pipeline.stop().await?;

    // (e) Restore.
    let mut restored = Vec::new();
    let mut restart = None;
    let mut logical = Logical::default();
    if !args.skip_restore {
        for (name, changelog, partitions) in [
            ("engine", topics.engine_changelog(), args.partitions),
            ("identity", topics.identity_changelog(), sequence_partitions),
        ] {
            let dir = state_base.join(format!("restore-{name}"));
            let sample = (name == "engine").then_some(&mut logical);
            let parts = restore(
                &kafka,
                &changelog,
                partitions,
                &dir,
                args.state_cache_mb,
                sample,
            )
            .await?;
            for r in &parts {
                println!(
                    "(e) {name} state, partition {}: {} keys from {} changelog records in {:.2} s ({:.0} records/s){}; store {:.1} MiB after ({:.1} MiB journal)",
                    r.partition,
                    r.keys,
                    r.records,
                    r.took.as_secs_f64(),
                    r.records as f64 / r.took.as_secs_f64().max(1e-3),
                    if r.took > RUNTIME_RESTORE_TIMEOUT {
                        " — longer than the runtime's 30 s restore timeout"
                    } else {
                        ""
                    },
                    r.bytes as f64 / 1048576.0,
                    r.journal as f64 / 1048576.0,
                );
            }
            restored.push((name, parts));
        }
        let n = logical.profiles.max(1) as f64;
        println!(
            "(f) live profile state (keys + values, uncompressed) of {} sampled profiles: {:.0} B/profile: {:.1} events in {:.0} B, {:.1} memberships in {:.0} B, {:.1} due times in {:.0} B",
            logical.profiles,
            logical.per_profile(),
            logical.events as f64 / n,
            logical.event_bytes as f64 / n,
            logical.members as f64 / n,
            logical.member_bytes as f64 / n,
            logical.dues as f64 / n,
            logical.due_bytes as f64 / n,
        );
        // The stages again with an empty state directory: time until new events have their
        // updates (group joins, both restores, processing).
        let settings = ProfileSettings {
            state_dir: Some(state_base.join("restart").display().to_string()),
            ..settings.clone()
        };
        let probes = (args.partitions as u64 * 4).max(8);
        let started = Instant::now();
        let pipeline = Pipeline::start(&kafka, &topics, &settings, cdp::Stages::PROFILE).await?;
        produce_all(&kafka, &topics.profile_sequence(), probes, |j| {
            let person = mix(j ^ 0x04e5_7a47) % shape.profiles;
            let (key, value) = shape.event_of(person, 0, &format!("rst-{j}"));
            items.of(j, &key, &value)
        })
        .await?;
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let got = follower.with(|s| {
                (0..probes)
                    .filter(|j| s.marks.contains_key(&format!("rst-{j}")))
                    .count() as u64
            });
            if got == probes {
                break;
            }
            if Instant::now() > deadline {
                bail!("after the restart only {got} of {probes} new events had their update within 30 minutes");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let took = started.elapsed();
        println!(
            "(e) restart with an empty state directory → {probes} new events have their updates: {:.1} s",
            took.as_secs_f64()
        );
        restart = Some(took);
        pipeline.stop().await?;
    }
    drop(follower);
    let _ = std::fs::remove_dir_all(&state_base);

    // The table.
    println!();
    println!(
        "| {} profiles × {} events ({total} events, {:.0} % stitched, {} partitions) | result |",
        args.profiles,
        args.events_per_profile,
        stitched as f64 * 100.0 / args.profiles as f64,
        args.partitions
    );
    println!("|---|---|");
    if let Some(v) = &validate {
        println!(
            "| (b) validate stage, 1 instance, events/s | {:.0} |",
            v.steady
        );
    }
    println!(
        "| (c) identity → engine, events/s | {:.0}{} |",
        profile.steady,
        validate
            .as_ref()
            .map(|v| format!(" ({:.2} of validate)", profile.steady / v.steady))
            .unwrap_or_default()
    );
    if let Some(a) = &alone {
        println!(
            "| (c2) the engine alone, {} definitions, events/s | {:.0}{} |",
            args.definitions,
            a.steady,
            validate
                .as_ref()
                .map(|v| format!(" (**{:.2}** of validate)", a.steady / v.steady))
                .unwrap_or_default()
        );
    }
    if let Some(c) = &control {
        println!(
            "| (g) control's RSS after {} Profile API lookups (peak) | {} ({}); lookups p50 {} ms, p99 {} ms |",
            args.lookups,
            mib(c.rss_kb),
            mib(c.hwm_kb),
            c.p50,
            c.p99
        );
    }
    if let Some(l) = &lat {
        println!(
            "| (d) latency at {:.0} events/s, p50 / p90 / p99 / max | {} / {} / **{}** / {} ms |",
            l.offered, l.p50, l.p90, l.p99, l.max
        );
    }
    for (name, parts) in &restored {
        let keys: usize = parts.iter().map(|r| r.keys).sum();
        let records: usize = parts.iter().map(|r| r.records).sum();
        let slowest = parts.iter().map(|r| r.took).max().unwrap_or_default();
        println!(
            "| (e) {name} restore, per partition (slowest of {}) | {:.1} s ({:.0} keys, {:.0} records per partition on average) |",
            parts.len(),
            slowest.as_secs_f64(),
            keys as f64 / parts.len().max(1) as f64,
            records as f64 / parts.len().max(1) as f64
        );
    }
    if let Some(t) = restart {
        println!(
            "| (e) restart with empty state → first new updates | {:.1} s |",
            t.as_secs_f64()
        );
    }
    println!(
        "| (f) RSS before / peak during / after (c) | {} / **{}** / {} |",
        mib(rss_before),
        mib(rss_peak),
        mib(rss_after)
    );
    if let Some((allocated, _, _)) = state.get("engine") {
        println!(
            "| (f) engine state on disk after (c) | {:.1} MiB, **{}** |",
            *allocated as f64 / 1048576.0,
            per_profile(*allocated as f64, args.profiles)
        );
    }
    if let Some((_, parts)) = restored.iter().find(|(n, _)| *n == "engine") {
        if let Some(last) = parts.last() {
            println!(
                "| (f) engine state on disk after a restore | {:.1} MiB, {} |",
                last.bytes as f64 / 1048576.0,
                per_profile(last.bytes as f64, args.profiles)
            );
        }
    }
    if logical.profiles > 0 {
        println!(
            "| (f) live profile state, keys + values uncompressed (sample of {}) | {:.0} B/profile ({:.1} events) |",
            logical.profiles,
            logical.per_profile(),
            logical.events as f64 / logical.profiles as f64,
        );
    }
    if let Some((allocated, _, _)) = state.get("identity") {
        println!(
            "| (f) identity state on disk after (c) | {:.1} MiB, {} |",
            *allocated as f64 / 1048576.0,
            per_profile(*allocated as f64, args.profiles)
        );
    }
    println!(
        "| (f) engine.changelog | {profile_records} records, ~{:.0} MiB, {} |",
        profile_bytes / 1048576.0,
        per_profile(profile_bytes, args.profiles)
    );
    Ok(())
}

/// What `cdp control` used while answering lookups.
struct ControlRun {
    found: u64,
    p50: i64,
    p99: i64,
    rss_kb: Option<u64>,
    hwm_kb: Option<u64>,
}

/// (g): a `cdp control` process (this binary) on the namespace answers Profile API lookups of
/// random profiles, asking the engine and the identity owner; its resident memory after.
async fn control_lookups(
    kafka: &KafkaSettings,
    topics: &Topics,
    shape: Shape,
    lookups: u64,
) -> anyhow::Result<ControlRun> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::env::temp_dir().join(format!("cdp-bench-control-{}.log", topics.namespace));
    let file = std::fs::File::create(&log)?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("control")
        .env("CDP_KAFKA__BOOTSTRAP_SERVERS", &kafka.bootstrap_servers)
        .env("CDP_TOPICS__NAMESPACE", &topics.namespace)
        .env("CDP_CONTROL__LISTEN", format!("127.0.0.1:{port}"))
        .env("CDP_CONTROL__ADMIN_TOKEN", BENCH_TOKEN)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("starting cdp control")?;
    let pid = child.id().to_string();
    let http = reqwest::Client::new();
    let lookup = |person: u64| {
        let http = http.clone();
        async move {
            let started = Instant::now();
            let status = http
                .get(format!("http://127.0.0.1:{port}/access/entities"))
                .query(&[
                    ("schema.name", "_xdm.context.profile"),
                    ("entityId", Shape::ecid(person).as_str()),
                    ("entityIdNS", "ECID"),
                ])
                .bearer_auth(BENCH_TOKEN)
                .header("x-gw-ims-org-id", super::ORG)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            (status, started.elapsed().as_millis() as i64)
        }
    };
    let ready = Instant::now();
    while lookup(0).await.0 != 200 {
        if ready.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            bail!(
                "cdp control did not answer a lookup within a minute (log: {})",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut times = Vec::with_capacity(lookups as usize);
    let mut found = 0;
    for j in 0..lookups {
        let (status, ms) = lookup(mix(j ^ 0x100c_0b5e) % shape.profiles).await;
        if status == 200 {
            found += 1;
        }
        times.push(ms);
    }
    times.sort_unstable();
    let run = ControlRun {
        found,
        p50: quantile(&times, 0.5),
        p99: quantile(&times, 0.99),
        rss_kb: status_kb(&pid, "VmRSS:"),
        hwm_kb: status_kb(&pid, "VmHWM:"),
    };
    let _ = child.kill();
    let _ = child.wait();
    Ok(run)
}

/// Copies every record of `from` to the same partition of `to` (keys and values; read
/// committed), as fast as the broker takes them; how many.
fn copy_topic(kafka: &KafkaSettings, from: &str, to: &str, partitions: i32) -> anyhow::Result<u64> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let reader: BaseConsumer = kafka.reader("bench-copy").create()?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for p in 0..partitions {
        tpl.add_partition_offset(from, p, Offset::Beginning)?;
        let (_, high) = reader.fetch_watermarks(from, p, Duration::from_secs(10))?;
        ends.insert(p, high);
    }
    reader.assign(&tpl)?;
    let producer: BaseProducer = kafka.producer("bench-copy", 120_000).create()?;
    let mut copied = 0u64;
    let mut idle_since = Instant::now();
    loop {
        let Some(m) = reader.poll(Duration::from_millis(200)) else {
            // The end as read may lie before the last records (tansu reports the last batch's
            // offset): stop once nothing came for a while.
            if ends.is_empty() || idle_since.elapsed() > Duration::from_secs(3) {
                break;
            }
            continue;
        };
        let m = m?;
        idle_since = Instant::now();
        if ends
            .get(&m.partition())
            .is_some_and(|end| m.offset() + 1 >= *end)
        {
            ends.remove(&m.partition());
        }
        let mut record = BaseRecord::to(to).partition(m.partition());
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        if let Some(v) = m.payload() {
            record = record.payload(v);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        copied += 1;
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(copied)
}

/// (c2): the engine alone, in a namespace of its own with the same definitions, on a copy of
/// what the identity stage wrote to profile.resolved in (c), until every event has its update.
#[allow(clippy::too_many_arguments)]
async fn engine_alone(
    kafka: &KafkaSettings,
    from: &Topics,
    settings: &ProfileSettings,
    definitions: usize,
    total: u64,
    state_base: &Path,
    broker: Option<&str>,
) -> anyhow::Result<(Rates, u64, String)> {
    let partitions = settings.partitions;
    let (topics, view) = namespace(kafka, partitions, |_| Vec::new()).await?;
    define(kafka, &topics, &view, definitions).await?;
    ensure_topics(kafka, &cdp_engine::run::topic_specs(&topics, partitions, 1)).await?;
    let (k, source, target) = (
        kafka.clone(),
        from.profile_resolved(),
        topics.profile_resolved(),
    );
    let copied =
        tokio::task::spawn_blocking(move || copy_topic(&k, &source, &target, partitions)).await??;
    let follower = Follower::start(kafka, &topics.profile_updates(), partitions, total)?;
    let settings = ProfileSettings {
        group_prefix: format!("{}-profile", topics.namespace),
        state_dir: Some(state_base.join("alone").display().to_string()),
        ..settings.clone()
    };
    let cpu = CpuMark::take(broker);
    let page_before = page();
    let started = Instant::now();
    let pipeline = Pipeline::start(kafka, &topics, &settings, cdp::Stages::ENGINE).await?;
    let mut progress = (0u64, Instant::now());
    loop {
        let distinct = follower.with(|s| s.distinct);
        if distinct >= total {
            break;
        }
        if distinct > progress.0 {
            progress = (distinct, Instant::now());
        } else if progress.1.elapsed() > Duration::from_secs(300) {
            bail!("the engine alone: no progress for 5 minutes ({distinct} of {total} events)");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = Instant::now();
    let (first, last) = follower.with(|s| (s.first, s.last_new));
    let mut rates = Rates::of(
        total,
        started,
        first.unwrap_or(started),
        last.unwrap_or(done),
    );
    rates.cpu = cpu.since(broker, total);
    let steady = last.unwrap_or(done) - first.unwrap_or(started);
    let busy = loop_time(&page_before, &page(), "engine", done - started, steady);
    pipeline.stop().await?;
    Ok((rates, copied, busy))
}

/// Where a stage's loop spent its time between two metric pages (`cdp_<stage>_loop_seconds`):
/// every phase but waiting for input, beside the run's `wall` time and its `steady` window
/// (first output to last); busy as long as the steady window means the loop never waited
/// there. (Waiting is left out: the stages of an earlier phase of the run, idle under the
/// same names, wait too.)
fn loop_time(before: &str, after: &str, stage: &str, wall: Duration, steady: Duration) -> String {
    let name = format!("cdp_{stage}_loop_seconds_sum");
    let phases: Vec<(&str, f64)> = Phase::ALL
        .iter()
        .filter(|p| !matches!(p, Phase::Input))
        .map(|p| {
            let label = format!("phase=\"{}\"", p.label());
            let spent = metric(after, &name, &label) - metric(before, &name, &label);
            (p.label(), spent)
        })
        .collect();
    let busy: f64 = phases.iter().map(|(_, s)| s).sum();
    let each = phases
        .iter()
        .map(|(label, spent)| format!("{label} {spent:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{stage}'s loop: busy {busy:.1} s of {:.1} s from start, the steady window {:.1} s: {each} s",
        wall.as_secs_f64(),
        steady.as_secs_f64()
    )
}

/// The MessagePack size of a part of a record.
mod erased {
    pub trait Size {
        fn size(&self) -> usize;
    }

    impl<T: serde::Serialize> Size for T {
        fn size(&self) -> usize {
            rmp_serde::to_vec(self).map_or(0, |v| v.len())
        }
    }
}
