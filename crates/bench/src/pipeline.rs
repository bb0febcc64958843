//! `cdp-bench pipeline`: the whole pipeline (edge → validate with the profile intake →
//! identity → engine), started in-process on a fresh namespace, with `--segments` streaming definitions spread over the five
//! streaming query types and `--profiles` profiles:
//!
//! - **sustained**: `--sustained-events` events posted to `/collection/batch` as fast as the
//!   edge takes them (concurrent requests of `--batch` messages), timed until the engine has
//!   written the `event` update of every one (read_committed), and the membership changes it
//!   wrote meanwhile;
//! - **latency** at `--rate` events/s for `--seconds`: each event is the first of a fresh
//!   profile with an event type only two single-event definitions match (`single-0`, and
//!   `single-1` with a `--window-seconds` window); per event, the time from the edge's 2xx to
//!   its `single-0` membership record being readable by a read_committed consumer of the JSON
//!   membership topic (matched by `eventId`);
//! - **timer lateness**: the `single-1` exits of those profiles (trigger `timer`), fire time
//!   (`time`) minus due time (event timestamp + window); and the stage's own
//!   `cdp_engine_timer_lateness_seconds` histogram over the same phase.
//!
//! The lake stage is not started (it is not on the path to a membership, and it would compete
//! for the disk and the two cores); control is not either (its Profile API asks the engine).

use super::group::assign_every_partition;
use super::hops::{CommitTimes, HopTracer};
use super::procfs::{broker_pid, status_kb};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cdp_catalog::model::{CatalogRecord, PayloadType, SegmentDefinition, Stream};
use cdp_catalog::{CatalogView, CatalogWriter, Dataset, ValueFormat, XdmSchema};
use cdp_contract::clock::now_ms;
use cdp_contract::records::{MembershipChange, Status, Trigger};
use cdp_contract::KafkaSettings;
use clap::Args;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::Offset;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::load_config;

#[derive(Args, Debug, Clone)]
pub struct PipelineBenchArgs {
    /// Profiles the sustained events are spread over (round robin).
    #[arg(long, default_value_t = 100_000)]
    profiles: u64,
    /// Streaming segment definitions, spread evenly over the five streaming types.
    #[arg(long, default_value_t = 100)]
    segments: usize,
    /// Offered load of the latency phase, events per second.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Length of the latency phase; 0 skips it.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events of the sustained phase; 0 skips it.
    #[arg(long, default_value_t = 200_000)]
    sustained_events: u64,
    /// Messages per `/collection/batch` request in the sustained phase.
    #[arg(long, default_value_t = 200)]
    batch: usize,
    /// Concurrent requests in the sustained phase.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// The window of the definitions that exit by timer (`occurs < N seconds before now`).
    #[arg(long, default_value_t = 5)]
    window_seconds: u64,
    /// Every n-th profile gets a profile record with a loyalty tier first (0: none).
    #[arg(long, default_value_t = 4)]
    records_every: u64,
    /// How long the profile records may take to have their updates.
    #[arg(long, default_value_t = 300)]
    records_wait_seconds: u64,
}

const EVENT_SCHEMA: &str = "https://ns.adobe.com/bench/schemas/web";
const CRM_SCHEMA: &str = "https://ns.adobe.com/bench/schemas/crm";

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The definitions: `m` of each type, `(id, classification, profile_only, expression)`.
fn definitions(m: usize, window: u64) -> Vec<(String, &'static str, bool, String)> {
    let mut out = Vec::new();
    for k in 0..m {
        let expression = match k {
            0 => r#"xEvent.any(eventType = "enter")"#.to_string(),
            1 => format!(
                r#"xEvent.any(eventType = "enter" and timestamp occurs < {window} seconds before now)"#
            ),
            k if k % 2 == 1 => format!(
                r#"xEvent.any(eventType = "page-{k}" and timestamp occurs < {window} seconds before now)"#
            ),
            k => format!(r#"xEvent.any(eventType = "page-{k}")"#),
        };
        out.push((format!("single-{k}"), "single event", false, expression));
    }
    for k in 0..m {
        out.push((
            format!("profile-{k}"),
            "profile only",
            true,
            format!(r#"loyalty.tier = "tier-{k}""#),
        ));
    }
    for k in 0..m {
        out.push((
            format!("attr-{k}"),
            "single event with profile attributes",
            false,
            format!(
                r#"xEvent.any(eventType = "page-{k}" and timestamp occurs < 1 hours before now) and loyalty.tier = "tier-{k}""#
            ),
        ));
    }
    for k in 0..m {
        let inner = if k < 2 {
            format!("profile-{k}")
        } else {
            format!("single-{k}")
        };
        out.push((
            format!("of-{k}"),
            "segment of segments",
            false,
            format!(r#"inSegment("{inner}")"#),
        ));
    }
    for k in 0..m {
        let expression = if k % 2 == 0 {
            format!(
                r#"xEvent[eventType = "page-{k}" and timestamp occurs < 24 hours before now].count() >= 2"#
            )
        } else {
            format!(
                r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "page-{k}"), C1: WHAT(eventType = "page-{}") WITHIN 24 hours AFTER C0])"#,
                (k + 1) % m
            )
        };
        out.push((format!("multi-{k}"), "multiple events", false, expression));
    }
    out
}

/// The event type of a profile's `round`-th sustained event: `page-2` … `page-<m-1>`, the same
/// for two rounds in a row (so counts reach 2), then the next.
fn page(m: usize, person: u64, round: u64) -> usize {
    2 + ((person + round / 2) % (m as u64 - 2)) as usize
}

fn message(schema: &str, dataset: &str, entity: Value) -> Value {
    json!({
        "header": {
            "schemaRef": {"id": schema, "contentType": "application/vnd.adobe.xed-full+json;version=1"},
            "imsOrgId": super::ORG,
            "datasetId": dataset
        },
        "body": {"xdmMeta": {"schemaRef": {"id": schema}}, "xdmEntity": entity}
    })
}

fn event(id: &str, ecid: &str, event_type: &str, ts_ms: i64) -> Value {
    message(
        EVENT_SCHEMA,
        "bench-dataset",
        json!({
            "_id": id,
            "timestamp": rfc3339(ts_ms),
            "eventType": event_type,
            "identityMap": {"ECID": [{"id": ecid, "primary": true}]},
            "web": {"webPageDetails": {"name": event_type, "URL": "https://shop.example.com/"}}
        }),
    )
}

/// ECIDs are 38 digits: sustained profiles `0…0<p>`, latency profiles `9<j>`.
fn person(p: u64) -> String {
    format!("{p:038}")
}

fn fresh(j: u64) -> String {
    format!("9{j:037}")
}

/// Posts one batch; an error unless every message was accepted.
async fn post(http: &reqwest::Client, url: &str, messages: Vec<Value>) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&json!({ "messages": messages }))?;
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    if status == 200 {
        return Ok(());
    }
    let text = resp.text().await.unwrap_or_default();
    if status == 207 {
        let v: Value = serde_json::from_str(&text).unwrap_or_default();
        let refused = v["responses"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r.get("status").is_some_and(|s| s.as_u64() != Some(200)));
        if !refused {
            return Ok(());
        }
    }
    bail!(
        "edge answered {status}: {}",
        text.chars().take(300).collect::<String>()
    )
}

/// The event schema, a profile-record schema with `loyalty.tier`, their datasets and streams.
async fn seed(
    kafka: &KafkaSettings,
    topics: &cdp_contract::Topics,
    view: &CatalogView,
) -> anyhow::Result<()> {
    super::seed_catalog(
        kafka,
        topics,
        view,
        json!({"type": "object", "required": ["_id", "timestamp"]}),
    )
    .await?;
    let writer = CatalogWriter::new(kafka, topics, view.clone())?;
    let records = [
        CatalogRecord::Schema(XdmSchema {
            org_id: None,
            id: CRM_SCHEMA.into(),
            version: 1,
            title: "bench crm".into(),
            tenant: "bench".into(),
            class: "_xdm.context.profile".into(),
            field_groups: vec![],
            profile_enabled: true,
            definition: json!({"type": "object"}),
            created_at: 0,
        }),
        CatalogRecord::Dataset(Dataset {
            id: "bench-crm".into(),
            name: "bench crm".into(),
            org_id: super::ORG.into(),
            schema_id: CRM_SCHEMA.into(),
            schema_version: 1,
            profile_enabled: true,
            profile_event_ttl_days: None,
            format: ValueFormat::Json,
            created_at: 0,
        }),
        CatalogRecord::Stream(Stream {
            id: "bench-crm".into(),
            name: "bench crm".into(),
            description: None,
            org_id: super::ORG.into(),
            sandbox: "prod".into(),
            payload_type: PayloadType::Json,
            authentication_required: false,
            rate_limit: None,
            dataset_id: Some("bench-crm".into()),
            schema_ref: None,
            allowed_origins: Vec::new(),
            created_at: 0,
        }),
    ];
    for r in &records {
        writer.put(r).await?;
    }
    Ok(())
}

/// What the follower of profile.updates and the JSON membership topic has seen.
#[derive(Default)]
struct Seen {
    /// One bit per sustained event (`ev-<i>`) with an `event` update.
    bits: Vec<u64>,
    distinct: u64,
    last_new: Option<Instant>,
    updates_by_type: BTreeMap<String, u64>,
    memberships: u64,
    /// Changes not made by a timer (entries and exits caused by data), and the last one's time.
    data_memberships: u64,
    last_data_membership: Option<Instant>,
    memberships_by: BTreeMap<String, u64>,
    last_membership: Option<Instant>,
    /// `single-0` realized by a latency event (`lat-<j>`): when it was read (epoch ms).
    entered: HashMap<u64, i64>,
    /// `single-1` exited by timer for latency profile `9<j>`: the change's `time`.
    timed_exits: HashMap<u64, i64>,
    unreadable: u64,
}

#[derive(Deserialize)]
struct UpdateHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default, borrow)]
    event: Option<EventHead<'a>>,
}

#[derive(Deserialize)]
struct EventHead<'a> {
    #[serde(rename = "itemId", borrow)]
    item_id: &'a str,
}

/// Reads both topics (read_committed, from the beginning) on its own thread.
struct Follower {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Follower {
    fn start(
        kafka: &KafkaSettings,
        updates: &str,
        memberships: &str,
        events: u64,
    ) -> anyhow::Result<Follower> {
        let reader: BaseConsumer = kafka.reader("bench-pipeline").create()?;
        assign_every_partition(&reader, &[updates, memberships], Offset::Beginning)?;
        let seen = Arc::new(Mutex::new(Seen {
            bits: vec![0; events.div_ceil(64) as usize],
            ..Seen::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let updates = updates.to_string();
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let at = Instant::now();
                    let at_ms = now_ms();
                    let payload = m.payload().unwrap_or_default();
                    let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                    if m.topic() == updates {
                        let Ok(head) = serde_json::from_slice::<UpdateHead>(payload) else {
                            s.unreadable += 1;
                            continue;
                        };
                        *s.updates_by_type.entry(head.kind.to_string()).or_default() += 1;
                        let Some(i) = head
                            .event
                            .filter(|_| head.kind == "event")
                            .and_then(|e| e.item_id.strip_prefix("ev-")?.parse::<u64>().ok())
                        else {
                            continue;
                        };
                        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
                        if let Some(w) = s.bits.get_mut(word) {
                            if *w & bit == 0 {
                                *w |= bit;
                                s.distinct += 1;
                                s.last_new = Some(at);
                            }
                        }
                        continue;
                    }
                    let Ok(change) = serde_json::from_slice::<MembershipChange>(payload) else {
                        s.unreadable += 1;
                        continue;
                    };
                    s.memberships += 1;
                    s.last_membership = Some(at);
                    if change.trigger != Trigger::Timer {
                        s.data_memberships += 1;
                        s.last_data_membership = Some(at);
                    }
                    let kind = format!("{} by {}", change.status.as_str(), change.trigger.as_str());
                    *s.memberships_by.entry(kind).or_default() += 1;
                    let latency_profile = || {
                        change
                            .identities
                            .iter()
                            .find(|i| i.ns == "ECID")
                            .and_then(|i| i.id.strip_prefix('9')?.parse::<u64>().ok())
                    };
                    match (change.segment_id.as_str(), change.status, change.trigger) {
                        ("single-0", Status::Realized, _) => {
                            if let Some(j) = change
                                .event_id
                                .as_deref()
                                .and_then(|e| e.strip_prefix("lat-ev-")?.parse::<u64>().ok())
                            {
                                s.entered.entry(j).or_insert(at_ms);
                            }
                        }
                        ("single-1", Status::Exited, Trigger::Timer) => {
                            if let Some(j) = latency_profile() {
                                s.timed_exits.entry(j).or_insert(change.time);
                            }
                        }
                        _ => {}
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

/// Cumulative bucket counts of a histogram (`le` → count, summed over label sets) and its count.
fn histogram(name: &str) -> (BTreeMap<String, f64>, f64) {
    let page = cdp_contract::prometheus::render().unwrap_or_default();
    let mut buckets = BTreeMap::new();
    let mut count = 0.0;
    for line in page.lines() {
        let Some(value) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) else {
            continue;
        };
        if line.starts_with(&format!("{name}_bucket")) {
            if let Some(le) = line.split("le=\"").nth(1).and_then(|r| r.split('"').next()) {
                *buckets.entry(le.to_string()).or_default() += value;
            }
        } else if line.starts_with(&format!("{name}_count")) {
            count += value;
        }
    }
    (buckets, count)
}

/// The smallest bucket bound holding `q` of the observations between two readings.
fn bucket_quantile(
    before: &(BTreeMap<String, f64>, f64),
    after: &(BTreeMap<String, f64>, f64),
    q: f64,
) -> Option<String> {
    let n = after.1 - before.1;
    if n <= 0.0 {
        return None;
    }
    let mut bounds: Vec<(f64, String, f64)> = after
        .0
        .iter()
        .map(|(le, c)| {
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::INFINITY)
            };
            (
                bound,
                le.clone(),
                c - before.0.get(le).copied().unwrap_or(0.0),
            )
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    bounds
        .into_iter()
        .find(|(_, _, c)| *c >= q * n)
        .map(|(_, le, _)| format!("≤ {le} s"))
}

pub(crate) fn percentiles(mut v: Vec<i64>) -> Option<(f64, f64, f64, f64)> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let pick = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize] as f64;
    Some((pick(0.5), pick(0.9), pick(0.99), v[v.len() - 1] as f64))
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

pub async fn run(config: Option<PathBuf>, args: PipelineBenchArgs) -> anyhow::Result<()> {
    let m = args.segments / 5;
    if m < 4 || args.profiles == 0 || args.batch == 0 || args.concurrency == 0 {
        bail!("need --segments >= 20, --profiles > 0, --batch > 0 and --concurrency > 0");
    }
    let mut config = load_config(config)?;
    if config.kafka.bootstrap_servers.is_empty() {
        bail!(
            "no broker configured (CDP_KAFKA__BOOTSTRAP_SERVERS); `make bench-pipeline` starts one"
        );
    }
    let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let state_base = std::env::temp_dir().join(format!("cdp-bench-pipeline-{namespace}"));
    config.topics.namespace = namespace.clone();
    config.edge.listen = "127.0.0.1:0".into();
    config.control.listen = "127.0.0.1:0".into();
    config.health.listen = "127.0.0.1:0".into();
    config.validate.group_id = format!("{namespace}-validate");
    config.profile.group_prefix = format!("{namespace}-profile");
    config.profile.state_dir = Some(state_base.join("profile").display().to_string());
    let kafka = config.kafka.clone();
    let topics = config.topics.clone();
    let broker = broker_pid(&kafka.bootstrap_servers);
    let rss = move || {
        let mib =
            |kb: Option<u64>| kb.map_or("?".into(), |kb| format!("{:.0} MiB", kb as f64 / 1024.0));
        format!(
            "RSS: cdp {}, broker {}",
            mib(status_kb("self", "VmRSS:")),
            mib(broker.as_deref().and_then(|p| status_kb(p, "VmRSS:")))
        )
    };

    let stages = cdp::Stages {
        edge: true,
        validate: true,
        profile: true,
        engine: true,
        ..cdp::Stages::NONE
    };
    let running = cdp::start(&config, stages)
        .await
        .context("starting edge, validate, profile and segment")?;
    let edge = running.edge_addr.context("the edge did not start")?;
    let view = running.catalog.clone();
    seed(&kafka, &topics, &view).await?;
    let defs = definitions(m, args.window_seconds);
    let writer = CatalogWriter::new(&kafka, &topics, view.clone())?;
    let now = now_ms();
    for (id, classification, profile_only, expression) in &defs {
        writer
            .put(&CatalogRecord::Segment(SegmentDefinition {
                id: id.clone(),
                name: id.clone(),
                description: None,
                org_id: super::ORG.into(),
                sandbox: "prod".into(),
                schema_name: "_xdm.context.profile".into(),
                expression: expression.clone(),
                streaming: true,
                classification: (*classification).into(),
                profile_only: *profile_only,
                creation_time: now,
                update_time: now,
            }))
            .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while view.read().segments.len() < defs.len() || !view.read().streams.contains_key("bench-crm")
    {
        if Instant::now() > deadline {
            bail!("the catalog did not show the definitions within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let follower = Follower::start(
        &kafka,
        &topics.profile_updates(),
        &topics.segment_membership_json(),
        args.sustained_events,
    )?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let events_url = format!("http://{edge}/collection/batch/bench");
    let crm_url = format!("http://{edge}/collection/batch/bench-crm");
    println!(
        "cdp-bench pipeline: {} definitions ({m} of each streaming type), {} profiles, {} sustained events in requests of {} ({} concurrent), latency at {} events/s for {} s, timer window {} s, broker {}; {}",
        defs.len(), args.profiles, args.sustained_events, args.batch, args.concurrency, args.rate, args.seconds, args.window_seconds, kafka.bootstrap_servers, rss()
    );

    // Profile records: a loyalty tier for every `records_every`-th profile (not timed).
    if args.records_every > 0 {
        let people: Vec<u64> = (0..args.profiles)
            .step_by(args.records_every as usize)
            .collect();
        let started = Instant::now();
        let before = follower.with(|s| s.updates_by_type.values().sum::<u64>());
        for chunk in people.chunks(args.batch) {
            let messages = chunk
                .iter()
                .map(|&p| {
                    message(
                        CRM_SCHEMA,
                        "bench-crm",
                        json!({"identityMap": {"ECID": [{"id": person(p), "primary": true}]},
                               "loyalty": {"tier": format!("tier-{}", page(m, p, 0))}}),
                    )
                })
                .collect();
            post(&http, &crm_url, messages).await?;
        }
        let deadline = Instant::now() + Duration::from_secs(args.records_wait_seconds);
        while follower.with(|s| s.updates_by_type.values().sum::<u64>())
            < before + people.len() as u64
        {
            if Instant::now() > deadline {
                let (by_type, unreadable) =
                    follower.with(|s| (s.updates_by_type.clone(), s.unreadable));
                bail!("the profile records did not all have updates within 5 minutes: updates {by_type:?}, {unreadable} unreadable");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "profile records: {} through the pipeline in {:.1} s (not timed); {}",
            people.len(),
            started.elapsed().as_secs_f64(),
            rss()
        );
    }

    // Sustained.
    let mut sustained = None;
    if args.sustained_events > 0 {
        let total = args.sustained_events;
        let members_before = follower.with(|s| s.data_memberships);
        let next = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let mut senders = Vec::new();
        for _ in 0..args.concurrency {
            let (http, url, next) = (http.clone(), events_url.clone(), next.clone());
            let (batch, profiles) = (args.batch as u64, args.profiles);
            senders.push(tokio::spawn(async move {
                loop {
                    let from = next.fetch_add(batch, Ordering::Relaxed);
                    if from >= total {
                        return anyhow::Ok(());
                    }
                    let ts = now_ms();
                    let messages = (from..(from + batch).min(total))
                        .map(|i| {
                            let (p, round) = (i % profiles, i / profiles);
                            event(
                                &format!("ev-{i}"),
                                &person(p),
                                &format!("page-{}", page(m, p, round)),
                                ts,
                            )
                        })
                        .collect();
                    post(&http, &url, messages).await?;
                }
            }));
        }
        for s in senders {
            s.await??;
        }
        let accepted = started.elapsed();
        println!(
            "sustained: {total} events accepted by the edge in {:.1} s ({:.0} events/s); {}",
            accepted.as_secs_f64(),
            total as f64 / accepted.as_secs_f64(),
            rss()
        );
        let mut printed = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            let (distinct, members) = follower.with(|s| (s.distinct, s.data_memberships));
            if distinct >= total {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {distinct} of {total} events had profile updates within 15 minutes");
            }
            if printed.elapsed() > Duration::from_secs(10) {
                println!(
                    "  {:>5.0} s: {distinct} events with profile updates, {} membership changes; {}",
                    started.elapsed().as_secs_f64(),
                    members - members_before,
                    rss()
                );
                printed = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profiled = follower.with(|s| s.last_new).unwrap_or_else(Instant::now) - started;
        // The membership changes have settled when none came for 5 s (timer exits included).
        loop {
            let last = follower.with(|s| s.last_membership);
            if last.is_some_and(|l| l.elapsed() > Duration::from_secs(5)) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the membership changes did not settle within 15 minutes");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (members, last) =
            follower.with(|s| (s.data_memberships - members_before, s.last_data_membership));
        let segmented = last.unwrap_or_else(Instant::now) - started;
        println!(
            "sustained: every event's profile update after {:.1} s ({:.0} events/s); {members} membership changes by data (not timers), the last after {:.1} s ({:.0} changes/s); {}",
            profiled.as_secs_f64(),
            total as f64 / profiled.as_secs_f64(),
            segmented.as_secs_f64(),
            members as f64 / segmented.as_secs_f64(),
            rss()
        );
        sustained = Some((
            total as f64 / profiled.as_secs_f64(),
            profiled,
            members,
            segmented,
            accepted,
        ));
    }

    // Latency and timer lateness.
    let mut latency = None;
    let mut lateness = None;
    let mut lateness_metric = None;
    if args.seconds > 0 {
        let count = args.rate * args.seconds;
        let per_tick = (args.rate / 100).max(1);
        let acks: Arc<Mutex<HashMap<u64, i64>>> = Arc::default();
        let sent_ts: Arc<Mutex<HashMap<u64, i64>>> = Arc::default();
        let metric_before = histogram("cdp_engine_timer_lateness_seconds");
        let commits_before = CommitTimes::read();
        let hops = HopTracer::start(
            &kafka,
            &[
                ("ingest.raw", topics.ingest_raw()),
                ("profile.sequence", topics.profile_sequence()),
                ("profile.resolved", topics.profile_resolved()),
                ("membership", topics.segment_membership_json()),
            ],
        )?;
        // One warm-up request (connections), not measured.
        post(
            &http,
            &events_url,
            vec![event(
                "warm",
                "warm",
                "web.webpagedetails.pageViews",
                now_ms(),
            )],
        )
        .await?;
        let started = Instant::now();
        let mut requests = Vec::new();
        let mut j = 0u64;
        let mut tick = 0u32;
        while j < count {
            tokio::time::sleep_until((started + Duration::from_millis(10) * tick).into()).await;
            tick += 1;
            let ts = now_ms();
            let ids: Vec<u64> = (j..(j + per_tick).min(count)).collect();
            j += ids.len() as u64;
            let messages = ids
                .iter()
                .map(|j| event(&format!("lat-ev-{j}"), &fresh(*j), "enter", ts))
                .collect();
            {
                let mut s = sent_ts.lock().unwrap_or_else(|e| e.into_inner());
                for &j in &ids {
                    s.insert(j, ts);
                }
            }
            let (http, url, acks) = (http.clone(), events_url.clone(), acks.clone());
            requests.push(tokio::spawn(async move {
                post(&http, &url, messages).await?;
                let at = now_ms();
                let mut a = acks.lock().unwrap_or_else(|e| e.into_inner());
                for j in ids {
                    a.insert(j, at);
                }
                anyhow::Ok(())
            }));
        }
        for r in requests {
            r.await??;
        }
        let offered = count as f64 / started.elapsed().as_secs_f64();
        println!(
            "latency: {count} events offered at {offered:.0} events/s in requests of {per_tick}; {}",
            rss()
        );
        let deadline = Instant::now() + Duration::from_secs(120 + args.window_seconds);
        loop {
            let (entered, exited) =
                follower.with(|s| (s.entered.len() as u64, s.timed_exits.len() as u64));
            if entered >= count && exited >= count {
                break;
            }
            if Instant::now() > deadline {
                println!("  only {entered} entries and {exited} timer exits of {count} within the deadline");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Timers due during the phase have fired and been recorded.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let metric_after = histogram("cdp_engine_timer_lateness_seconds");
        let acks = acks.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sent_ts = sent_ts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let window_ms = args.window_seconds as i64 * 1000;
        let (lat, late, slow) = follower.with(|s| {
            let lat: Vec<i64> = acks
                .iter()
                .filter_map(|(j, ack)| s.entered.get(j).map(|seen| seen - ack))
                .collect();
            let late: Vec<i64> = sent_ts
                .iter()
                .filter_map(|(j, ts)| s.timed_exits.get(j).map(|t| t - (ts + window_ms)))
                .collect();
            // Where in the run the slow ones were (by event number).
            let slow: Vec<u64> = acks
                .iter()
                .filter(|(j, ack)| s.entered.get(j).is_some_and(|seen| seen - *ack > 250))
                .map(|(j, _)| *j)
                .collect();
            (lat, late, slow)
        });
        println!("  where the time went, hop by hop (created: the record's timestamp; readable: read here, read_committed):");
        for line in hops.report(&acks) {
            println!("{line}");
        }
        drop(hops);
        println!("  the commits of the stages on the way, over the phase:");
        for line in CommitTimes::read().report(&commits_before) {
            println!("{line}");
        }
        let tenth = count / 10;
        println!(
            "  entries slower than 250 ms: {} in the first tenth of the run, {} in the rest",
            slow.iter().filter(|j| **j < tenth).count(),
            slow.iter().filter(|j| **j >= tenth).count()
        );
        latency = percentiles(lat.clone()).map(|p| (p, lat.len(), count));
        lateness = percentiles(late.clone())
            .map(|p| (p, late.len(), late.iter().filter(|l| **l < 0).count()));
        lateness_metric = Some((
            bucket_quantile(&metric_before, &metric_after, 0.99),
            bucket_quantile(&metric_before, &metric_after, 0.5),
            metric_after.1 - metric_before.1,
        ));
    }

    let (updates_by_type, memberships_by, unreadable) = follower.with(|s| {
        (
            s.updates_by_type.clone(),
            s.memberships_by.clone(),
            s.unreadable,
        )
    });
    drop(follower);
    let fast_path = super::profile::FastPathShare::between(
        "",
        &cdp_contract::prometheus::render().unwrap_or_default(),
    );
    running.shutdown().await;
    let _ = std::fs::remove_dir_all(&state_base);
    println!(
        "{fast_path} (profile.identity_fast_path = {})",
        config.profile.identity_fast_path
    );

    println!();
    println!("profile updates by type: {updates_by_type:?}; membership changes: {memberships_by:?}; unreadable records: {unreadable}");
    println!();
    println!("| measure | result | target | |");
    println!("|---|---|---|---|");
    if let Some((rate, profiled, members, segmented, accepted)) = sustained {
        println!(
            "| sustained, edge → profile update for every event ({} events, {} profiles) | {rate:.0} events/s ({:.1} s; the edge took them in {:.1} s) | ≥ 30 000 events/s | {} |",
            args.sustained_events,
            args.profiles,
            profiled.as_secs_f64(),
            accepted.as_secs_f64(),
            verdict(rate >= 30_000.0)
        );
        println!(
            "| membership changes by data (entries and exits, not timer exits) written for them | {members} in {:.1} s ({:.0} changes/s) | | |",
            segmented.as_secs_f64(),
            members as f64 / segmented.as_secs_f64()
        );
    }
    if let Some(((p50, p90, p99, max), n, count)) = latency {
        println!(
            "| edge 2xx → membership readable (read_committed) at {} events/s, {n} of {count} events | p50 {p50:.0} ms, p90 {p90:.0} ms, p99 {p99:.0} ms, max {max:.0} ms | p99 ≤ 250 ms | {} |",
            args.rate,
            verdict(p99 <= 250.0 && n as u64 == count)
        );
    } else if args.seconds > 0 {
        println!("| edge 2xx → membership readable | no entries seen | p99 ≤ 250 ms | MISSED |");
    }
    if let Some(((p50, p90, p99, max), n, early)) = lateness {
        println!(
            "| exit-timer lateness, exit time − (event time + {} s), {n} exits ({early} early) | p50 {p50:.0} ms, p90 {p90:.0} ms, p99 {p99:.0} ms, max {max:.0} ms | p99 ≤ 1 s | {} |",
            args.window_seconds,
            verdict(p99 <= 1000.0)
        );
    } else if args.seconds > 0 {
        println!("| exit-timer lateness | no timer exits seen | p99 ≤ 1 s | MISSED |");
    }
    if let Some((p99, p50, n)) = lateness_metric {
        println!(
            "| `cdp_engine_timer_lateness_seconds` over the latency phase ({n:.0} timers) | p50 {}, p99 {} | | |",
            p50.unwrap_or_else(|| "-".into()),
            p99.unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}
