//! [`XdmFixture`]: the catalog a test needs before any stage can handle an event — an
//! ExperienceEvent schema, a dataset of it and, when asked, a stream into the dataset — written
//! as the management API would write it, without going through HTTP.

use cdp_catalog::{
    CatalogRecord, CatalogWriter, Dataset, PayloadType, Stream, ValueFormat, XdmSchema,
};
use serde_json::Value;

/// The records of one schema (version 1), one dataset of it and an optional stream. The fields
/// are public: a test that needs something else (an Avro dataset, an XML stream) changes them
/// before writing.
#[derive(Debug, Clone)]
pub struct XdmFixture {
    pub schema: XdmSchema,
    pub dataset: Dataset,
    pub stream: Option<Stream>,
}

impl XdmFixture {
    /// Schema `schema_id` (tenant acme, profile-enabled, validated against `definition`) and a
    /// JSON dataset `dataset_id` of it in `org`.
    pub fn new(schema_id: &str, dataset_id: &str, org: &str, definition: Value) -> XdmFixture {
        let title = schema_id
            .rsplit('/')
            .next()
            .unwrap_or(schema_id)
            .to_string();
        XdmFixture {
            schema: XdmSchema {
                org_id: None,
                id: schema_id.to_string(),
                version: 1,
                title,
                tenant: "acme".into(),
                class: "_xdm.context.experienceevent".into(),
                field_groups: vec![],
                profile_enabled: true,
                definition,
                created_at: 0,
            },
            dataset: Dataset {
                id: dataset_id.to_string(),
                name: dataset_id.to_string(),
                org_id: org.to_string(),
                schema_id: schema_id.to_string(),
                schema_version: 1,
                profile_enabled: true,
                profile_event_ttl_days: None,
                format: ValueFormat::Json,
                created_at: 0,
            },
            stream: None,
        }
    }

    /// Adds stream `stream_id` into the dataset: sandbox prod, JSON payloads, no
    /// authentication, no rate limit.
    pub fn with_stream(mut self, stream_id: &str) -> XdmFixture {
        self.stream = Some(Stream {
            id: stream_id.to_string(),
            name: stream_id.to_string(),
            description: None,
            org_id: self.dataset.org_id.clone(),
            sandbox: "prod".into(),
            payload_type: PayloadType::Json,
            authentication_required: false,
            rate_limit: None,
            dataset_id: Some(self.dataset.id.clone()),
            schema_ref: None,
            allowed_origins: Vec::new(),
            created_at: 0,
        });
        self
    }

    /// The catalog records, in the order a reader can resolve them: schema, dataset, stream.
    pub fn records(&self) -> Vec<CatalogRecord> {
        let mut records = vec![
            CatalogRecord::Schema(self.schema.clone()),
            CatalogRecord::Dataset(self.dataset.clone()),
        ];
        records.extend(self.stream.clone().map(CatalogRecord::Stream));
        records
    }

    /// Writes the records to the catalog topic; panics if the broker refuses one.
    pub async fn write(&self, writer: &CatalogWriter) {
        for record in self.records() {
            writer
                .put(&record)
                .await
                .unwrap_or_else(|e| panic!("catalog record {}: {e}", record.key()));
        }
    }
}
