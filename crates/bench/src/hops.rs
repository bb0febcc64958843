//! Where a latency event's time goes, hop by hop: for each topic on its way to a membership
//! (`ingest.raw` → validate → `profile.sequence` → identity → `profile.resolved` → engine →
//! memberships), when the record carrying it was created (the producer's timestamp) and when it
//! became readable to a read_committed consumer here. The difference between a topic's "created"
//! and its "readable" is the producing stage's commit (plus this reader's fetch); between one
//! topic's "readable" and the next one's "created", the next stage's wait and processing.
//!
//! Records are matched by the event's id (`lat-ev-<j>`) anywhere in their bytes, so the tracer
//! does not depend on any topic's encoding. It reads from the topics' ends, started just before
//! the latency phase.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cdp_contract::clock::now_ms;
use cdp_contract::KafkaSettings;
use rdkafka::consumer::BaseConsumer;
use rdkafka::message::Message;
use rdkafka::Offset;

use crate::group::assign_every_partition;

const MARK: &[u8] = b"lat-ev-";

/// For one topic: event number → (record created, first readable here), epoch ms.
type Seen = HashMap<u64, (i64, i64)>;

pub struct HopTracer {
    labels: Vec<String>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HopTracer {
    /// Follows `topics` (label, topic; in path order) from their current ends.
    pub fn start(kafka: &KafkaSettings, topics: &[(&str, String)]) -> anyhow::Result<HopTracer> {
        let reader: BaseConsumer = kafka.reader("bench-hops").create()?;
        let names: Vec<&str> = topics.iter().map(|(_, t)| t.as_str()).collect();
        assign_every_partition(&reader, &names, Offset::End)?;
        let index: HashMap<String, usize> = topics
            .iter()
            .enumerate()
            .map(|(i, (_, topic))| (topic.clone(), i))
            .collect();
        let seen = Arc::new(Mutex::new(vec![Seen::new(); topics.len()]));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) else {
                        continue;
                    };
                    let read = now_ms();
                    let Some(&i) = index.get(m.topic()) else {
                        continue;
                    };
                    let created = m.timestamp().to_millis().unwrap_or(read);
                    let ids = event_numbers(m.payload().unwrap_or_default());
                    if ids.is_empty() {
                        continue;
                    }
                    let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
                    for j in ids {
                        s[i].entry(j).or_insert((created, read));
                    }
                }
            })
        };
        Ok(HopTracer {
            labels: topics.iter().map(|(l, _)| l.to_string()).collect(),
            seen,
            stop,
            thread: Some(thread),
        })
    }

    /// One line per step: p50 and p99 over the events seen at both of its ends. `sent` is each
    /// event's 2xx from the edge (epoch ms).
    pub fn report(&self, acks: &HashMap<u64, i64>) -> Vec<String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut lines = Vec::new();
        let mut step = |what: String, deltas: Vec<i64>| {
            if let Some((p50, _, p99, _)) = super::pipeline::percentiles(deltas.clone()) {
                lines.push(format!(
                    "  {what}: p50 {p50:.0} ms, p99 {p99:.0} ms ({} events)",
                    deltas.len()
                ));
            }
        };
        for (i, topic) in self.labels.iter().enumerate() {
            let here = &seen[i];
            if i == 0 {
                step(
                    format!("edge 2xx → {topic} created"),
                    delta(acks, here, |ack| ack, |(c, _)| c),
                );
            } else {
                let before = &seen[i - 1];
                step(
                    format!("{} readable → {topic} created", self.labels[i - 1]),
                    delta(before, here, |(_, r)| r, |(c, _)| c),
                );
            }
            step(
                format!("{topic} created → readable"),
                here.values().map(|(c, r)| r - c).collect(),
            );
        }
        if let Some(last) = seen.last() {
            step(
                "edge 2xx → last readable".to_string(),
                delta(acks, last, |ack| ack, |(_, r)| r),
            );
        }
        lines
    }
}

/// The stages on a latency event's way, and the parts of their commits (the runtime's
/// `cdp_<stage>_commit_<part>_duration_seconds`).
const STAGES: [&str; 3] = ["validate", "identity", "engine"];
const PARTS: [&str; 5] = [
    "commit",
    "commit_deliveries",
    "commit_seals",
    "commit_offsets",
    "commit_end",
];

/// Sum and count of every commit part's histogram, to difference over a phase.
pub struct CommitTimes(Vec<(f64, f64)>);

impl CommitTimes {
    pub fn read() -> CommitTimes {
        let page = cdp_contract::prometheus::render().unwrap_or_default();
        let value = |metric: &str| -> f64 {
            page.lines()
                .filter(|l| l.split([' ', '{']).next() == Some(metric))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        CommitTimes(
            STAGES
                .iter()
                .flat_map(|stage| PARTS.iter().map(move |part| (stage, part)))
                .map(|(stage, part)| {
                    let name = format!("cdp_{stage}_{part}_duration_seconds");
                    (
                        value(&format!("{name}_sum")),
                        value(&format!("{name}_count")),
                    )
                })
                .collect(),
        )
    }

    /// Per stage: its commits over the phase and the mean of each part, in ms.
    pub fn report(&self, before: &CommitTimes) -> Vec<String> {
        let mut lines = Vec::new();
        for (s, stage) in STAGES.iter().enumerate() {
            let mean = |p: usize| {
                let i = s * PARTS.len() + p;
                let (sum, count) = (self.0[i].0 - before.0[i].0, self.0[i].1 - before.0[i].1);
                (count > 0.0).then(|| (sum / count * 1000.0, count))
            };
            let Some((total, commits)) = mean(0) else {
                continue;
            };
            let parts: Vec<String> = (1..PARTS.len())
                .filter_map(|p| {
                    let (ms, _) = mean(p)?;
                    Some(format!(
                        "{} {ms:.1}",
                        PARTS[p].trim_start_matches("commit_")
                    ))
                })
                .collect();
            lines.push(format!(
                "  {stage}: {commits:.0} commits, mean {total:.1} ms ({} ms)",
                parts.join(", ")
            ));
        }
        lines
    }
}

/// `b(to) - a(from)` for every event seen at both ends.
fn delta<A: Copy, B: Copy>(
    from: &HashMap<u64, A>,
    to: &HashMap<u64, B>,
    a: impl Fn(A) -> i64,
    b: impl Fn(B) -> i64,
) -> Vec<i64> {
    from.iter()
        .filter_map(|(j, x)| to.get(j).map(|y| b(*y) - a(*x)))
        .collect()
}

/// Every `lat-ev-<j>` in `bytes`.
fn event_numbers(bytes: &[u8]) -> Vec<u64> {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(i) = bytes[at..]
        .windows(MARK.len())
        .position(|w| w == MARK)
        .map(|i| at + i + MARK.len())
    {
        let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if let Some(j) = std::str::from_utf8(&bytes[i..i + digits])
            .ok()
            .and_then(|d| d.parse().ok())
        {
            found.push(j);
        }
        at = i + digits;
    }
    found
}

impl Drop for HopTracer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::event_numbers;

    #[test]
    fn finds_every_event_id_whatever_surrounds_it() {
        assert_eq!(
            event_numbers(br#"[{"itemId":"lat-ev-12"},{"itemId":"lat-ev-3"}]"#),
            vec![12, 3]
        );
        assert_eq!(event_numbers(b"\x00\x0alat-ev-7\x02"), vec![7]);
        assert!(event_numbers(b"lat-ev-").is_empty());
    }
}
