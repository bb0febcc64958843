//! Rows to Parquet bytes: the data files of a dataset and the error files.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::ReaderBuilder;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::columns::EntityLayout;

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot build Arrow columns: {0}")]
    Arrow(#[from] ArrowError),
    #[error("cannot write Parquet: {0}")]
    Parquet(#[from] ParquetError),
}

/// Where a record came from (the metadata columns of every file).
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    #[serde(rename = "_batch_id")]
    pub batch_id: String,
    #[serde(rename = "_xaction_id")]
    pub xaction_id: String,
    #[serde(rename = "_stream_id")]
    pub stream_id: String,
    #[serde(rename = "_received_ms")]
    pub received_ms: i64,
    #[serde(rename = "_partition")]
    pub partition: i32,
    #[serde(rename = "_offset")]
    pub offset: i64,
}

/// One row of an error file.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRow {
    #[serde(flatten)]
    pub provenance: Provenance,
    #[serde(rename = "_dataset_id")]
    pub dataset_id: Option<String>,
    #[serde(rename = "_org_id")]
    pub org_id: String,
    #[serde(rename = "_sandbox")]
    pub sandbox: String,
    /// `edge`, `validate`, or `lake` (the lake could not read the record).
    pub stage: String,
    pub violations: Vec<ViolationRow>,
    /// The original message as JSON text.
    pub payload: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViolationRow {
    pub pointer: String,
    pub message: String,
}

/// The columns of every error file.
pub static ERROR_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let violation = DataType::Struct(Fields::from(vec![
        Field::new("pointer", DataType::Utf8, false),
        Field::new("message", DataType::Utf8, false),
    ]));
    Arc::new(Schema::new(vec![
        Field::new("_batch_id", DataType::Utf8, false),
        Field::new("_xaction_id", DataType::Utf8, false),
        Field::new("_stream_id", DataType::Utf8, false),
        Field::new("_received_ms", DataType::Int64, false),
        Field::new("_partition", DataType::Int32, false),
        Field::new("_offset", DataType::Int64, false),
        Field::new("_dataset_id", DataType::Utf8, true),
        Field::new("_org_id", DataType::Utf8, false),
        Field::new("_sandbox", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new(
            "violations",
            DataType::List(Arc::new(Field::new("item", violation, false))),
            false,
        ),
        Field::new("payload", DataType::Utf8, false),
    ]))
});

/// A data-file row: the entity's columns plus provenance.
pub fn data_row(layout: &EntityLayout, entity: &Value, p: &Provenance) -> Map<String, Value> {
    let mut row = layout.entity_row(entity);
    if let Ok(Value::Object(meta)) = serde_json::to_value(p) {
        row.extend(meta);
    }
    row
}

fn decode<S: Serialize>(schema: &SchemaRef, rows: &[S]) -> Result<RecordBatch, EncodeError> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()?;
    decoder.serialize(rows)?;
    Ok(decoder
        .flush()?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

pub fn compression(name: &str) -> Compression {
    match name {
        "none" | "uncompressed" => Compression::UNCOMPRESSED,
        "snappy" => Compression::SNAPPY,
        _ => Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
    }
}

fn parquet_bytes(batch: &RecordBatch, compression: Compression) -> Result<Vec<u8>, EncodeError> {
    let props = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props))?;
    writer.write(batch)?;
    Ok(writer.into_inner()?)
}

/// A data file from rows made by [`data_row`].
pub fn data_file(
    layout: &EntityLayout,
    rows: &[Map<String, Value>],
    compression: Compression,
) -> Result<Vec<u8>, EncodeError> {
    parquet_bytes(&decode(&layout.schema, rows)?, compression)
}

pub fn error_file(rows: &[ErrorRow], compression: Compression) -> Result<Vec<u8>, EncodeError> {
    parquet_bytes(&decode(&ERROR_SCHEMA, rows)?, compression)
}
