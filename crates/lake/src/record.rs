//! One consumed message, read into what the lake writes: a data row of a dataset, or a failed
//! record. Nothing is dropped: a message the lake cannot read becomes a failed record
//! (stage `lake`) with the reason and the raw value.

use cdp_contract::envelope;
use cdp_contract::quarantine::ErrorRecord;
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::Value;

use crate::encode::{ErrorRow, Provenance, ViolationRow};
use cdp_xdm::decode::ValueDecoder;

/// A message of events.valid that the lake could read.
#[derive(Debug, Clone)]
pub struct ValidRecord {
    pub dataset_id: String,
    pub schema: Option<(String, u32)>,
    pub entity: Value,
    pub provenance: Provenance,
}

#[derive(Debug, Clone)]
pub enum Pending {
    Valid(ValidRecord),
    Failed(ErrorRow),
}

impl Pending {
    pub fn batch_id(&self) -> &str {
        match self {
            Pending::Valid(v) => &v.provenance.batch_id,
            Pending::Failed(f) => &f.provenance.batch_id,
        }
    }

    pub fn received_ms(&self) -> i64 {
        match self {
            Pending::Valid(v) => v.provenance.received_ms,
            Pending::Failed(f) => f.provenance.received_ms,
        }
    }
}

fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_string)
}

fn provenance(m: &OwnedMessage) -> Provenance {
    Provenance {
        batch_id: header(m, envelope::BATCH_ID).unwrap_or_default(),
        xaction_id: header(m, envelope::XACTION_ID).unwrap_or_default(),
        stream_id: header(m, envelope::STREAM_ID).unwrap_or_default(),
        received_ms: header(m, envelope::RECEIVED_MS)
            .and_then(|r| r.parse().ok())
            .unwrap_or_default(),
        partition: m.partition(),
        offset: m.offset(),
    }
}

/// A failed record made by the lake itself, from what the headers say.
fn unreadable(m: &OwnedMessage, reason: String) -> Pending {
    let raw = m.payload().unwrap_or_default();
    let payload = serde_json::from_slice::<Value>(raw)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned()));
    Pending::Failed(ErrorRow {
        provenance: provenance(m),
        dataset_id: header(m, envelope::DATASET_ID),
        org_id: header(m, envelope::ORG_ID).unwrap_or_default(),
        sandbox: header(m, envelope::SANDBOX).unwrap_or_default(),
        stage: "lake".to_string(),
        violations: vec![ViolationRow {
            pointer: String::new(),
            message: reason,
        }],
        payload: payload.to_string(),
    })
}

/// Reads a message of events.valid.
pub async fn valid(m: &OwnedMessage, decoder: &ValueDecoder) -> Pending {
    let Some(dataset_id) = header(m, envelope::DATASET_ID) else {
        return unreadable(m, format!("no {} header", envelope::DATASET_ID));
    };
    let format = header(m, envelope::VALUE_FORMAT);
    let entity = match decoder
        .decode(format.as_deref(), m.payload().unwrap_or_default())
        .await
    {
        Ok(e) => e,
        Err(e) => return unreadable(m, e.to_string()),
    };
    let schema = header(m, envelope::SCHEMA_ID)
        .zip(header(m, envelope::SCHEMA_VERSION).and_then(|v| v.parse::<u32>().ok()));
    Pending::Valid(ValidRecord {
        dataset_id,
        schema,
        entity,
        provenance: provenance(m),
    })
}

/// Reads a message of events.error.
pub fn failed(m: &OwnedMessage) -> Pending {
    let record: ErrorRecord = match serde_json::from_slice(m.payload().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => return unreadable(m, format!("unreadable error record: {e}")),
    };
    let stage = serde_json::to_value(record.stage)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    Pending::Failed(ErrorRow {
        provenance: Provenance {
            batch_id: record.batch_id,
            xaction_id: record.xaction_id,
            stream_id: record.stream_id,
            received_ms: record.received_ms,
            partition: m.partition(),
            offset: m.offset(),
        },
        dataset_id: record
            .dataset_id
            .or_else(|| header(m, envelope::DATASET_ID)),
        org_id: record.org_id,
        sandbox: record.sandbox,
        stage,
        violations: record
            .violations
            .into_iter()
            .map(|v| ViolationRow {
                pointer: v.pointer,
                message: v.message,
            })
            .collect(),
        payload: record.payload.to_string(),
    })
}
