//! Backfill of event fields a profile did not keep. The engine keeps of each event only the
//! fields its sandbox's segment definitions read (and the operator's keep-list); a definition
//! created later that reads a field nobody kept first sees that field absent in the events the
//! profiles already hold. This makes the history right: when a sandbox's definitions come to
//! read fields beyond what its profiles kept, the events of the sandbox still within their
//! time-to-live are read again from `events.valid` and sent, as refresh items
//! ([`cdp_contract::records::Item::refresh`]), through the identity stage to the profiles that
//! hold them; the engine fills in the fields and evaluates the definitions reading them again.
//!
//! It runs in the identity owners (each for the sandboxes of the profile.sequence partitions it
//! holds), one sandbox at a time per instance, in a task beside the stage's loop.
//! Delivery is at least once and a refresh is idempotent; a backfill that did not finish (a
//! crash, a failure) runs again. State in the sandbox's partition: `r<org>\0<sandbox>` → the fields the
//! sandbox's profiles keep, and those a backfill in progress adds ([`Mark`]). A sandbox's mark
//! is written when its first item is placed, with what its definitions read then (what the
//! engine keeps of that item): a sandbox without one holds no profile, so nothing to read
//! again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdp_catalog::CatalogView;
use cdp_contract::clock::now_ms;
use cdp_contract::partition::for_sandbox;
use cdp_contract::{envelope, KafkaSettings};
use cdp_stage::{Cause, Context, ProcessError};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::intake::Intake;
use crate::json;

/// Dotted paths, split.
type Paths = BTreeSet<Vec<String>>;

/// Per sandbox, the event fields its definitions read, as of a catalog version.
type FieldsRead = (i64, HashMap<(String, String), Paths>);

/// What a sandbox's profiles keep of events, and what a backfill in progress adds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub kept: Paths,
    pub pending: Option<Paths>,
}

fn mark_key(org: &str, sandbox: &str) -> Vec<u8> {
    let mut k = b"r".to_vec();
    k.extend_from_slice(org.as_bytes());
    k.push(0);
    k.extend_from_slice(sandbox.as_bytes());
    k
}

type Running = (String, String, JoinHandle<Result<u64, String>>);

/// profile.sequence and its partition count.
#[derive(Debug, Clone)]
pub struct SequenceTopic {
    pub name: String,
    pub partitions: i32,
}

pub struct Backfill {
    pub catalog: CatalogView,
    pub kafka: KafkaSettings,
    pub events_topic: String,
    /// profile.sequence: refresh items go to their sandbox's partition of it.
    pub sequence: SequenceTopic,
    /// The operator's keep-list (`profile.keep_event_fields`).
    pub keep: Vec<String>,
    /// How far back profiles hold events (the longest time-to-live).
    pub ttl_ms: i64,
    /// Turns events.valid records into items, as the intake stage does.
    pub intake: Arc<Intake>,
    running: Option<Running>,
    /// The catalog version `read` was computed at, and per sandbox the fields its
    /// definitions read (with the keep-list).
    read: Mutex<FieldsRead>,
    /// Sandboxes known to have a mark, since the last turn.
    marked: Mutex<HashSet<(String, String)>>,
    /// No backfill starts before this (after a failure).
    pause_until: i64,
}

impl Backfill {
    pub fn new(
        catalog: CatalogView,
        kafka: KafkaSettings,
        events_topic: String,
        sequence: SequenceTopic,
        keep: Vec<String>,
        ttl_ms: i64,
        intake: Arc<Intake>,
    ) -> Self {
        Self {
            catalog,
            kafka,
            events_topic,
            sequence,
            keep,
            ttl_ms,
            intake,
            running: None,
            read: Mutex::new((-1, HashMap::new())),
            marked: Mutex::new(HashSet::new()),
            pause_until: 0,
        }
    }

    /// The keep-list's paths; `None` when it keeps whole events (nothing to backfill ever).
    fn kept_by_list(&self) -> Option<Paths> {
        if self.keep.iter().any(|k| k.trim() == "*") {
            return None;
        }
        Some(
            self.keep
                .iter()
                .map(|k| k.trim())
                .filter(|k| !k.is_empty())
                .map(|k| k.split('.').map(String::from).collect())
                .collect(),
        )
    }

    /// Per sandbox with definitions, the event fields they read, with the keep-list.
    fn fields_read(&self, list: &Paths) -> HashMap<(String, String), Paths> {
        let state = self.catalog.read();
        let mut cache = self.read.lock().unwrap_or_else(|e| e.into_inner());
        if state.version() == cache.0 {
            return cache.1.clone();
        }
        let mut out: HashMap<(String, String), Paths> = HashMap::new();
        for d in state.segments.values() {
            let paths = out
                .entry((d.org_id.clone(), d.sandbox.clone()))
                .or_insert_with(|| list.clone());
            if let Ok(plan) = cdp_pql::parse(&d.expression).and_then(|q| cdp_pql::Plan::compile(&q))
            {
                paths.extend(
                    plan.inputs()
                        .event_paths
                        .iter()
                        .filter(|p| !(p.len() == 1 && (p[0] == "eventType" || p[0] == "_id")))
                        .cloned(),
                );
            }
        }
        *cache = (state.version(), out.clone());
        out
    }

    /// An item of the sandbox (whose graph is on `partition`) is being placed: the sandbox gets
    /// its mark if it has none yet, with what its definitions read now.
    pub fn note(
        &self,
        ctx: &mut Context<'_>,
        cause: Cause,
        partition: i32,
        org: &str,
        sandbox: &str,
    ) -> Result<(), ProcessError> {
        let sandbox_key = (org.to_string(), sandbox.to_string());
        if self
            .marked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&sandbox_key)
        {
            return Ok(());
        }
        let Some(list) = self.kept_by_list() else {
            return Ok(());
        };
        let key = mark_key(org, sandbox);
        if ctx.get(partition, &key)?.is_none() {
            let kept = self.fields_read(&list).remove(&sandbox_key).unwrap_or(list);
            write_mark(
                ctx,
                cause,
                &key,
                &Mark {
                    kept,
                    pending: None,
                },
            )?;
        }
        self.marked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sandbox_key);
        Ok(())
    }

    /// One turn of the identity stage's loop (it holds `partitions`): records a backfill that
    /// finished, starts the next one needed. True when it changed the state.
    pub fn turn(
        &mut self,
        partitions: &[i32],
        ctx: &mut Context<'_>,
    ) -> Result<bool, ProcessError> {
        let held = |(org, sandbox): (&str, &str)| {
            partitions.contains(&for_sandbox(org, sandbox, self.sequence.partitions))
        };
        if self
            .running
            .as_ref()
            .is_some_and(|(o, s, _)| !held((o.as_str(), s.as_str())))
        {
            // Its sandbox moved to another owner, which runs it again from its mark.
            if let Some((_, _, task)) = self.running.take() {
                task.abort();
            }
        }
        let Some(list) = self.kept_by_list() else {
            return Ok(false);
        };
        let mut changed = false;
        if self
            .running
            .as_ref()
            .is_some_and(|(_, _, t)| t.is_finished())
        {
            if let Some((org, sandbox, task)) = self.running.take() {
                let partition = for_sandbox(&org, &sandbox, self.sequence.partitions);
                let key = mark_key(&org, &sandbox);
                let mut mark = read_mark(ctx, partition, &key, &list)?;
                match futures_join(task) {
                    Ok(sent) => {
                        tracing::info!(org = %org, sandbox = %sandbox, events = sent, "backfill of newly read event fields done");
                        if let Some(p) = mark.pending.take() {
                            mark.kept = p;
                        }
                        write_mark(ctx, Cause::Timer(partition), &key, &mark)?;
                        changed = true;
                    }
                    Err(e) => {
                        tracing::warn!(org = %org, sandbox = %sandbox, error = %e, "backfill of newly read event fields failed; it runs again");
                        self.pause_until = now_ms() + 10_000;
                    }
                }
            }
        }
        let fields = self.fields_read(&list);
        // Only sandboxes holding profiles have a mark.
        let mut sandboxes: BTreeMap<(String, String), (i32, Mark)> = BTreeMap::new();
        for &partition in partitions {
            for (k, v) in ctx.scan(partition, b"r")? {
                let rest = &k[1..];
                let mut parts = rest.splitn(2, |b| *b == 0);
                if let (Some(o), Some(s)) = (parts.next(), parts.next()) {
                    let key = (
                        String::from_utf8_lossy(o).into_owned(),
                        String::from_utf8_lossy(s).into_owned(),
                    );
                    sandboxes.insert(key, (partition, json::from_slice(&v, "a backfill mark")?));
                }
            }
        }
        for ((org, sandbox), (partition, mut mark)) in sandboxes {
            let cause = Cause::Timer(partition);
            let key = mark_key(&org, &sandbox);
            let now = fields
                .get(&(org.clone(), sandbox.clone()))
                .cloned()
                .unwrap_or_else(|| list.clone());
            let busy = self
                .running
                .as_ref()
                .is_some_and(|(o, s, _)| *o == org && *s == sandbox);
            if busy {
                continue;
            }
            if now.is_subset(&mark.kept) {
                // Fewer fields read (a definition gone): events from now on keep fewer.
                if now != mark.kept || mark.pending.is_some() {
                    mark = Mark {
                        kept: now,
                        pending: None,
                    };
                    write_mark(ctx, cause, &key, &mark)?;
                    changed = true;
                }
                continue;
            }
            if self.running.is_some() || now_ms() < self.pause_until {
                continue;
            }
            let added: Vec<String> = now.difference(&mark.kept).map(|p| p.join(".")).collect();
            tracing::info!(org = %org, sandbox = %sandbox, fields = ?added, "segment definitions read event fields the profiles did not keep: reading their events again from events.valid");
            metrics::counter!("cdp_identity_backfills_total").increment(1);
            mark.pending = Some(now);
            write_mark(ctx, cause, &key, &mark)?;
            changed = true;
            let task = tokio::spawn(run(
                self.kafka.clone(),
                self.events_topic.clone(),
                (self.sequence.name.clone(), partition),
                org.clone(),
                sandbox.clone(),
                now_ms() - self.ttl_ms,
                self.intake.clone(),
            ));
            self.running = Some((org, sandbox, task));
        }
        Ok(changed)
    }
}

/// The result of a task known to have finished.
fn futures_join(task: JoinHandle<Result<u64, String>>) -> Result<u64, String> {
    use std::future::Future;
    use std::task::{Context as TaskContext, Poll, Waker};
    let mut task = std::pin::pin!(task);
    match task
        .as_mut()
        .poll(&mut TaskContext::from_waker(Waker::noop()))
    {
        Poll::Ready(Ok(r)) => r,
        Poll::Ready(Err(e)) => Err(format!("the backfill task ended abnormally: {e}")),
        Poll::Pending => Err("the backfill task had not finished".into()),
    }
}

fn read_mark(
    ctx: &Context<'_>,
    partition: i32,
    key: &[u8],
    list: &Paths,
) -> Result<Mark, ProcessError> {
    match ctx.get(partition, key)? {
        Some(v) => json::from_slice(&v, "a backfill mark"),
        None => Ok(Mark {
            kept: list.clone(),
            pending: None,
        }),
    }
}

fn write_mark(
    ctx: &mut Context<'_>,
    cause: Cause,
    key: &[u8],
    mark: &Mark,
) -> Result<(), ProcessError> {
    let value = json::to_vec(mark, "a backfill mark")?;
    ctx.put(cause, key, value);
    Ok(())
}

fn header<'a, M: Message>(m: &'a M, name: &str) -> Option<&'a str> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// Reads the sandbox's events of `events.valid` from `since_ms` to the end as it is now, and
/// sends each profile event again as a refresh item to the sandbox's partition of
/// `profile.sequence`. Answers how many.
async fn run(
    kafka: KafkaSettings,
    events_topic: String,
    (sequence_topic, sequence_partition): (String, i32),
    org: String,
    sandbox: String,
    since_ms: i64,
    intake: Arc<Intake>,
) -> Result<u64, String> {
    let client = format!("cdp-backfill-{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer = kafka
        .reader(&client)
        .create()
        .map_err(|e| format!("cannot create the events.valid reader: {e}"))?;
    let producer: FutureProducer = kafka
        .producer(&client, 30_000)
        .create()
        .map_err(|e| format!("cannot create the producer: {e}"))?;
    let (start, end) = {
        let meta: BaseConsumer = kafka
            .admin(&format!("{client}-meta"))
            .create()
            .map_err(|e| format!("cannot create the metadata client: {e}"))?;
        let topic = events_topic.clone();
        tokio::task::spawn_blocking(
            move || -> Result<(TopicPartitionList, Vec<(i32, i64)>), String> {
                let partitions = cdp_contract::admin::partitions_of(&meta, &topic)
                    .map_err(|e| format!("cannot read the partitions of {topic}: {e}"))?;
                let mut wanted = TopicPartitionList::new();
                let mut end = Vec::new();
                for p in &partitions {
                    wanted
                        .add_partition_offset(&topic, *p, Offset::Offset(since_ms))
                        .map_err(|e| e.to_string())?;
                    let (_, high) = meta
                        .fetch_watermarks(&topic, *p, Duration::from_secs(10))
                        .map_err(|e| format!("cannot read the end of {topic}[{p}]: {e}"))?;
                    end.push((*p, high));
                }
                let start = meta
                    .offsets_for_times(wanted, Duration::from_secs(10))
                    .map_err(|e| format!("cannot find {topic}'s offsets at {since_ms}: {e}"))?;
                Ok((start, end))
            },
        )
        .await
        .map_err(|e| e.to_string())??
    };
    let mut assignment = TopicPartitionList::new();
    let mut open: BTreeMap<i32, i64> = BTreeMap::new();
    for elem in start.elements() {
        let high = end
            .iter()
            .find(|(p, _)| *p == elem.partition())
            .map_or(0, |(_, h)| *h);
        let from = match elem.offset() {
            Offset::Offset(o) => o,
            // No record at or after the time: nothing to read there.
            _ => continue,
        };
        if from >= high {
            continue;
        }
        assignment
            .add_partition_offset(&events_topic, elem.partition(), Offset::Offset(from))
            .map_err(|e| e.to_string())?;
        open.insert(elem.partition(), high);
    }
    if open.is_empty() {
        return Ok(0);
    }
    consumer
        .assign(&assignment)
        .map_err(|e| format!("cannot read {events_topic}: {e}"))?;
    let mut sent = 0u64;
    let mut in_flight = Vec::new();
    while !open.is_empty() {
        let m = match tokio::time::timeout(Duration::from_secs(5), consumer.recv()).await {
            Ok(Ok(m)) => m.detach(),
            Ok(Err(e)) => return Err(format!("reading {events_topic}: {e}")),
            // The end as it was at the start may lie beyond the last readable record (markers).
            Err(_) => break,
        };
        if open
            .get(&m.partition())
            .is_some_and(|high| m.offset() + 1 >= *high)
        {
            open.remove(&m.partition());
        }
        if header(&m, envelope::ORG_ID) != Some(org.as_str())
            || header(&m, envelope::SANDBOX) != Some(sandbox.as_str())
        {
            continue;
        }
        let Some(mut item) = intake.item_of(&m).await else {
            continue;
        };
        if item.kind != cdp_contract::records::ItemKind::Event {
            continue;
        }
        item.refresh = true;
        let value = serde_json::to_vec(&item).map_err(|e| e.to_string())?;
        let (producer, topic) = (&producer, &sequence_topic);
        in_flight.push(async move {
            producer
                .send(
                    FutureRecord::<[u8], _>::to(topic)
                        .partition(sequence_partition)
                        .payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| format!("cannot send to {topic}: {e}"))
        });
        if in_flight.len() >= 1_000 {
            sent += settle(std::mem::take(&mut in_flight)).await?;
        }
    }
    sent += settle(in_flight).await?;
    Ok(sent)
}

/// Waits for sends in flight; how many.
async fn settle<F, T>(sends: Vec<F>) -> Result<u64, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let n = sends.len() as u64;
    futures::future::try_join_all(sends).await?;
    Ok(n)
}
