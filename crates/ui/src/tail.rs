//! The last events of a stream, for the live view: the tails of the raw topic (accepted by the
//! edge) and the error topic (refused by the edge, or failed validation), read without a
//! consumer group from each partition's last offsets.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cdp_contract::admin::partitions_of;
use cdp_contract::quarantine::ErrorRecord;
use cdp_contract::{KafkaSettings, RawHeaders};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

/// Longest a payload is shown; the rest is cut with a note.
const MAX_PAYLOAD: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("the reader task stopped")]
    Task,
}

/// One event as the live view shows it.
#[derive(Debug, Clone)]
pub struct Tailed {
    pub received_ms: i64,
    pub xaction_id: String,
    pub batch_id: String,
    /// `None`: accepted onto the raw topic; else who refused it and why.
    pub refusal: Option<Refusal>,
    /// `eventType · _id` of the XDM entity, when it has them.
    pub summary: String,
    pub payload: String,
}

#[derive(Debug, Clone)]
pub struct Refusal {
    pub stage: String,
    pub reasons: Vec<String>,
}

/// Which topic a tail reads, and so how its records are read.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Raw,
    Error,
}

/// The events of `stream_id` among the last `per_partition` records of each partition of
/// `topic`, newest first.
pub async fn tail(
    kafka: &KafkaSettings,
    topic: &str,
    kind: Kind,
    stream_id: &str,
    per_partition: i64,
) -> Result<Vec<Tailed>, TailError> {
    let (kafka, topic, stream_id) = (kafka.clone(), topic.to_string(), stream_id.to_string());
    tokio::task::spawn_blocking(move || read_tail(&kafka, &topic, kind, &stream_id, per_partition))
        .await
        .map_err(|_| TailError::Task)?
}

fn read_tail(
    kafka: &KafkaSettings,
    topic: &str,
    kind: Kind,
    stream_id: &str,
    per_partition: i64,
) -> Result<Vec<Tailed>, TailError> {
    let consumer: BaseConsumer = kafka.reader("cdp-ui-tail").create()?;
    let mut assignment = TopicPartitionList::new();
    // Partition → the offset after its last record.
    let mut ends = HashMap::new();
    for p in partitions_of(&consumer, topic)? {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(5))?;
        if high > low {
            let start = (high - per_partition).max(low);
            assignment.add_partition_offset(topic, p, Offset::Offset(start))?;
            ends.insert(p, high);
        }
    }
    let mut found = Vec::new();
    if ends.is_empty() {
        return Ok(found);
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(3);
    // The reported end can lag behind the last record (tansu reports the last batch's), so
    // the read goes on past it until a poll finds nothing more.
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            None if ends.is_empty() => break,
            None => {
                // Transaction markers take offsets without being delivered, so a partition's
                // last record may sit before its end: its fetch position says it is read.
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let (Offset::Offset(at), Some(end)) =
                            (e.offset(), ends.get(&e.partition()))
                        {
                            if at >= *end {
                                ends.remove(&e.partition());
                            }
                        }
                    }
                }
            }
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(m)) => {
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    ends.remove(&m.partition());
                }
                if let Some(t) = read(&m, kind, stream_id) {
                    found.push(t);
                }
            }
        }
    }
    found.sort_by_key(|t| std::cmp::Reverse((t.received_ms, t.xaction_id.clone())));
    Ok(found)
}

fn read(m: &BorrowedMessage<'_>, kind: Kind, stream_id: &str) -> Option<Tailed> {
    let value = m.payload().unwrap_or_default();
    match kind {
        Kind::Raw => {
            let headers = m.headers().and_then(RawHeaders::from_kafka)?;
            (headers.stream_id == stream_id).then(|| {
                let json = serde_json::from_slice::<serde_json::Value>(value).ok();
                Tailed {
                    received_ms: headers.received_ms,
                    xaction_id: headers.xaction_id,
                    batch_id: headers.batch_id,
                    refusal: None,
                    summary: json.as_ref().map(summary).unwrap_or_default(),
                    payload: pretty(value),
                }
            })
        }
        Kind::Error => {
            let record: ErrorRecord = serde_json::from_slice(value).ok()?;
            (record.stream_id == stream_id).then(|| Tailed {
                received_ms: record.received_ms,
                xaction_id: record.xaction_id,
                batch_id: record.batch_id,
                refusal: Some(Refusal {
                    stage: serde_json::to_value(record.stage)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    reasons: record
                        .violations
                        .iter()
                        .map(|v| {
                            if v.pointer.is_empty() {
                                v.message.clone()
                            } else {
                                format!("{}: {}", v.pointer, v.message)
                            }
                        })
                        .collect(),
                }),
                summary: summary(&record.payload),
                payload: truncate(
                    serde_json::to_string_pretty(&record.payload).unwrap_or_default(),
                ),
            })
        }
    }
}

/// `eventType · _id` of an XDM message's entity (`body.xdmEntity`, or the value itself for
/// streaming ingest), so a person can spot an event without opening its payload.
fn summary(value: &serde_json::Value) -> String {
    let entity = value.pointer("/body/xdmEntity").unwrap_or(value);
    [entity.get("eventType"), entity.get("_id")]
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(" · ")
}

/// Pretty JSON when the value is JSON, else the text as it is (lossy for binary values).
fn pretty(value: &[u8]) -> String {
    let text = match serde_json::from_slice::<serde_json::Value>(value) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(value).into_owned(),
    };
    truncate(text)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_PAYLOAD {
        let mut cut = MAX_PAYLOAD;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let total = text.len();
        text.truncate(cut);
        text.push_str(&format!("\n… ({total} bytes in all)"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_payloads_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_PAYLOAD);
        let cut = truncate(long.clone());
        assert!(cut.len() < long.len());
        assert!(cut.ends_with(&format!("({} bytes in all)", long.len())));
        assert_eq!(pretty(br#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(pretty(b"not json"), "not json");
        let message =
            serde_json::json!({"body": {"xdmEntity": {"_id": "e1", "eventType": "web.pageViews"}}});
        assert_eq!(summary(&message), "web.pageViews · e1");
        assert_eq!(summary(&serde_json::json!({"_id": "e2"})), "e2");
        assert_eq!(summary(&serde_json::json!("text")), "");
    }
}
