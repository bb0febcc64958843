//! Which dataset and schema version a message belongs to, and whether its header agrees with
//! them. The edge runs these checks synchronously (answering per message) and the validate
//! stage runs them again on what it consumes, because the catalog may have changed in between.

use cdp_catalog::CatalogState;
use cdp_catalog::{Dataset, Stream, XdmSchema};

/// What a message says about where it belongs (all optional: a plain record says nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageRefs<'a> {
    pub dataset_id: Option<&'a str>,
    /// `header.schemaRef.id`.
    pub schema_id: Option<&'a str>,
    /// `header.schemaRef.contentType`, which may carry the version.
    pub content_type: Option<&'a str>,
}

/// The dataset a message lands in and the schema version its body is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub dataset: &'a Dataset,
    pub schema: &'a XdmSchema,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("Message has no dataset: set header.datasetId or give the stream a dataset")]
    NoDataset,
    #[error("Message references an unknown dataset {0}")]
    UnknownDataset(String),
    /// The seed's wording for a schema that is unknown or not the dataset's.
    #[error("Message has unknown xdm format")]
    UnknownSchema(String),
}

impl TargetError {
    /// A longer explanation for logs and the error topic.
    pub fn detail(&self) -> String {
        match self {
            TargetError::UnknownSchema(why) => format!("{self}: {why}"),
            _ => self.to_string(),
        }
    }
}

/// The dataset a refused message's error record is filed under: the one it names when that is
/// a dataset of the stream's org, else the stream's own. A message can name any id, and filing
/// it under another org's dataset would count it there and show its payload in that org's
/// failed records; the named id stays in the payload and in the reason.
pub fn filed_under(catalog: &CatalogState, stream: &Stream, named: Option<&str>) -> Option<String> {
    match named {
        Some(id)
            if catalog
                .datasets
                .get(id)
                .is_some_and(|d| d.org_id == stream.org_id) =>
        {
            Some(id.to_string())
        }
        _ => stream.dataset_id.clone(),
    }
}

pub fn target<'a>(
    catalog: &'a CatalogState,
    stream: &Stream,
    refs: MessageRefs<'_>,
) -> Result<Target<'a>, TargetError> {
    let dataset_id = refs
        .dataset_id
        .or(stream.dataset_id.as_deref())
        .ok_or(TargetError::NoDataset)?;
    let dataset = catalog
        .datasets
        .get(dataset_id)
        // Another org's dataset is reported as unknown: its existence is not ours to reveal.
        .filter(|d| d.org_id == stream.org_id)
        .ok_or_else(|| TargetError::UnknownDataset(dataset_id.to_string()))?;
    let schema = match refs.schema_id {
        Some(id) => {
            let schema = crate::resolve(catalog, id, refs.content_type)
                .map_err(|e| TargetError::UnknownSchema(e.to_string()))?;
            if schema.id != dataset.schema_id {
                return Err(TargetError::UnknownSchema(format!(
                    "dataset {} uses schema {}, the message names {}",
                    dataset.id, dataset.schema_id, schema.id
                )));
            }
            schema
        }
        None => catalog
            .schema(&dataset.schema_id, dataset.schema_version)
            .ok_or_else(|| {
                TargetError::UnknownSchema(format!(
                    "schema {} version {} of dataset {} is missing from the catalog",
                    dataset.schema_id, dataset.schema_version, dataset.id
                ))
            })?,
    };
    Ok(Target { dataset, schema })
}
