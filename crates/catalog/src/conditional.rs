//! Conditional catalog records: writes whose fate depends on what the catalog holds when they
//! are applied. The fold decides them in topic order, the same way in every stage and every
//! control instance, instead of the writer deciding from its own view, which may lag the topic
//! (another control instance may have written a moment ago).
//!
//! They uphold "a schema version is immutable once a dataset is bound to it":
//!
//! - a [`SchemaChange`] names the revision of the schema's latest version it was computed from
//!   (`base`); it is refused if the latest version moved since, or if it would replace a version
//!   that a dataset is bound to by now;
//! - a [`DatasetCreation`] names the revision of the version its checks ran against; it is
//!   refused if that version was replaced in place since.
//!
//! A revision is the catalog offset of the record that set a version's current definition.
//!
//! Their keys are never reused (`schemaChange/<random>`, `datasetCreation/<dataset id>`), so
//! compaction neither removes a conditional record nor lets a refused one shadow an accepted
//! one. What a decision reads — the records that set schema versions and bind datasets — is
//! never compacted away either (`schema/<id>@1` is written once, dataset patches rewrite
//! `dataset/<id>` without changing the binding), so an instance that folds a compacted topic
//! decides exactly as one that saw every record.

use serde::{Deserialize, Serialize};

use crate::model::{Dataset, XdmSchema};

/// A conditional record of the catalog topic (a `kind` tag like [`crate::model::CatalogRecord`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Conditional {
    SchemaChange(SchemaChange),
    DatasetCreation(DatasetCreation),
}

impl Conditional {
    pub fn key(&self) -> String {
        match self {
            Conditional::SchemaChange(c) => format!("schemaChange/{}", c.change),
            Conditional::DatasetCreation(c) => format!("datasetCreation/{}", c.dataset.id),
        }
    }
}

/// The latest version of a schema replaced in place, or the version after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaChange {
    /// Random; names the record, so no two changes share a key.
    pub change: String,
    /// The revision of the latest version that the change was computed from.
    pub base: i64,
    pub schema: XdmSchema,
}

/// A new dataset bound to its schema version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetCreation {
    /// The revision of the dataset's schema version that its checks ran against.
    pub schema_revision: i64,
    pub dataset: Dataset,
}

/// Why the fold did not apply a conditional record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("schema {id} changed after the change was computed from it")]
    SchemaMoved { id: String },
    #[error("schema {id} version {version} is used by a dataset and cannot be replaced")]
    VersionInUse { id: String, version: u32 },
    #[error("schema {id} version {version} changed after the dataset was checked against it")]
    SchemaChanged { id: String, version: u32 },
    #[error("dataset {0} already exists")]
    DatasetExists(String),
}

/// What became of a conditional record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Applied,
    Refused(Refusal),
}
