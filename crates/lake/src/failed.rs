//! Failed records of a batch, read back from the error Parquet files the batch's contributions
//! name, in file order, paginated.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use object_store::path::Path;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;
use serde_json::Value;

use crate::batches::Contribution;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("lake store: {0}")]
    Store(#[from] object_store::Error),
    #[error("cannot read Parquet file {0}: {1}")]
    Parquet(String, parquet::errors::ParquetError),
    #[error("Parquet file {0} lacks column {1}")]
    Column(String, &'static str),
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedRecord {
    pub xaction_id: String,
    pub stream_id: String,
    pub dataset_id: Option<String>,
    pub org_id: String,
    pub sandbox: String,
    pub received_ms: i64,
    /// `edge`, `validate` or `lake`.
    pub stage: String,
    pub violations: Vec<Reason>,
    /// The original message.
    pub payload: Value,
    pub file: String,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    pub pointer: String,
    pub message: String,
}

/// One page of a batch's failed records: `start` counts from the batch's first failed record.
pub async fn page(
    store: &Store,
    batch_id: &str,
    contributions: &[Contribution],
    start: usize,
    limit: usize,
) -> Result<Vec<FailedRecord>, ReadError> {
    let mut skipped = 0usize;
    let mut out = Vec::new();
    for c in contributions.iter().filter(|c| c.failed > 0) {
        if out.len() >= limit {
            break;
        }
        let in_file = c.failed as usize;
        if skipped + in_file <= start {
            // The counts say this whole file lies before the page.
            skipped += in_file;
            continue;
        }
        let rows = read_file(store, &c.file, batch_id).await?;
        for r in rows {
            if skipped < start {
                skipped += 1;
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(r);
        }
    }
    Ok(out)
}

fn strings<'a>(
    b: &'a RecordBatch,
    file: &str,
    name: &'static str,
) -> Result<&'a arrow::array::StringArray, ReadError> {
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or_else(|| ReadError::Column(file.to_string(), name))
}

async fn read_file(
    store: &Store,
    file: &str,
    batch_id: &str,
) -> Result<Vec<FailedRecord>, ReadError> {
    let bytes = store.get(&Path::from(file)).await?.bytes().await?;
    let perr = |e| ReadError::Parquet(file.to_string(), e);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(perr)?
        .build()
        .map_err(perr)?;
    let mut out = Vec::new();
    for b in reader {
        let b = b.map_err(|e| ReadError::Parquet(file.to_string(), e.into()))?;
        let col = |n| ReadError::Column(file.to_string(), n);
        let batch = strings(&b, file, "_batch_id")?;
        let xaction = strings(&b, file, "_xaction_id")?;
        let stream = strings(&b, file, "_stream_id")?;
        let dataset = strings(&b, file, "_dataset_id")?;
        let org = strings(&b, file, "_org_id")?;
        let sandbox = strings(&b, file, "_sandbox")?;
        let stage = strings(&b, file, "stage")?;
        let payload = strings(&b, file, "payload")?;
        let received = b
            .column_by_name("_received_ms")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| col("_received_ms"))?;
        let partition = b
            .column_by_name("_partition")
            .and_then(|c| c.as_primitive_opt::<Int32Type>())
            .ok_or_else(|| col("_partition"))?;
        let offset = b
            .column_by_name("_offset")
            .and_then(|c| c.as_primitive_opt::<Int64Type>())
            .ok_or_else(|| col("_offset"))?;
        let violations = b
            .column_by_name("violations")
            .and_then(|c| c.as_list_opt::<i32>())
            .ok_or_else(|| col("violations"))?;
        for i in 0..b.num_rows() {
            if batch.value(i) != batch_id {
                continue;
            }
            let list = violations.value(i);
            let reasons = match list.as_struct_opt() {
                Some(s) => {
                    let p = s
                        .column_by_name("pointer")
                        .and_then(|c| c.as_string_opt::<i32>());
                    let m = s
                        .column_by_name("message")
                        .and_then(|c| c.as_string_opt::<i32>());
                    match (p, m) {
                        (Some(p), Some(m)) => (0..s.len())
                            .map(|j| Reason {
                                pointer: p.value(j).to_string(),
                                message: m.value(j).to_string(),
                            })
                            .collect(),
                        _ => return Err(col("violations")),
                    }
                }
                None => return Err(col("violations")),
            };
            let text = payload.value(i);
            out.push(FailedRecord {
                xaction_id: xaction.value(i).to_string(),
                stream_id: stream.value(i).to_string(),
                dataset_id: (!dataset.is_null(i)).then(|| dataset.value(i).to_string()),
                org_id: org.value(i).to_string(),
                sandbox: sandbox.value(i).to_string(),
                received_ms: received.value(i),
                stage: stage.value(i).to_string(),
                violations: reasons,
                payload: serde_json::from_str(text)
                    .unwrap_or_else(|_| Value::String(text.to_string())),
                file: file.to_string(),
                partition: partition.value(i),
                offset: offset.value(i),
            });
        }
    }
    Ok(out)
}
