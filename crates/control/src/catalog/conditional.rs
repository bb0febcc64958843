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

use super::view::CatalogState;
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

impl CatalogState {
    /// Whether a dataset is bound to this version, which makes it immutable.
    pub fn in_use(&self, id: &str, version: u32) -> bool {
        self.datasets
            .values()
            .any(|d| d.schema_id == id && d.schema_version == version)
    }

    pub(super) fn decide(&mut self, offset: i64, record: Conditional) {
        let decision = match record {
            Conditional::SchemaChange(c) => self.schema_change(offset, c),
            Conditional::DatasetCreation(c) => self.dataset_creation(c),
        };
        if let Err(refusal) = decision {
            tracing::debug!(offset, %refusal, "conditional catalog record refused");
            self.refusals.insert(offset, refusal);
        }
    }

    fn schema_change(&mut self, offset: i64, c: SchemaChange) -> Result<(), Refusal> {
        let id = c.schema.id.clone();
        let version = c.schema.version;
        let moved = || Refusal::SchemaMoved { id: id.clone() };
        let latest = self
            .latest_schema(&id)
            .map(|s| s.version)
            .ok_or_else(moved)?;
        if self.revision(&id, latest) != Some(c.base) {
            return Err(moved());
        }
        if version == latest {
            if self.in_use(&id, version) {
                return Err(Refusal::VersionInUse { id, version });
            }
        } else if version != latest + 1 {
            return Err(moved());
        }
        self.set_schema(offset, c.schema);
        Ok(())
    }

    fn dataset_creation(&mut self, c: DatasetCreation) -> Result<(), Refusal> {
        let d = c.dataset;
        if self.datasets.contains_key(&d.id) {
            return Err(Refusal::DatasetExists(d.id));
        }
        if self.revision(&d.schema_id, d.schema_version) != Some(c.schema_revision) {
            return Err(Refusal::SchemaChanged {
                id: d.schema_id,
                version: d.schema_version,
            });
        }
        self.datasets.insert(d.id.clone(), d);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CatalogRecord, ValueFormat};

    const ID: &str = "https://ns.adobe.com/acme/schemas/s";

    fn schema(version: u32, title: &str) -> XdmSchema {
        XdmSchema {
            id: ID.into(),
            version,
            title: title.into(),
            tenant: "acme".into(),
            class: "_xdm.context.experienceevent".into(),
            field_groups: vec![],
            profile_enabled: false,
            definition: serde_json::json!({ "title": title }),
            created_at: 0,
        }
    }

    fn dataset(id: &str, version: u32) -> Dataset {
        Dataset {
            id: id.into(),
            name: id.into(),
            org_id: "o".into(),
            schema_id: ID.into(),
            schema_version: version,
            profile_enabled: false,
            format: ValueFormat::Json,
            created_at: 0,
        }
    }

    fn change(base: i64, s: XdmSchema) -> Conditional {
        Conditional::SchemaChange(SchemaChange {
            change: uuid::Uuid::new_v4().simple().to_string(),
            base,
            schema: s,
        })
    }

    fn creation(revision: i64, d: Dataset) -> Conditional {
        Conditional::DatasetCreation(DatasetCreation {
            schema_revision: revision,
            dataset: d,
        })
    }

    /// Folds `records` at offsets 0, 1, … as the follower would (through the JSON).
    fn fold(records: &[(String, Vec<u8>)]) -> CatalogState {
        let mut s = CatalogState::default();
        for (offset, (key, value)) in records.iter().enumerate() {
            s.apply_record(offset as i64, key, Some(value));
        }
        s
    }

    fn plain(r: CatalogRecord) -> (String, Vec<u8>) {
        (r.key(), serde_json::to_vec(&r).unwrap())
    }

    fn cond(r: Conditional) -> (String, Vec<u8>) {
        (r.key(), serde_json::to_vec(&r).unwrap())
    }

    fn title(s: &CatalogState, version: u32) -> &str {
        &s.schema(ID, version).unwrap().title
    }

    #[test]
    fn replacing_a_version_bound_in_between_is_refused() {
        // Both writers read version 1 at revision 0; the dataset got there first.
        let s = fold(&[
            plain(CatalogRecord::Schema(schema(1, "v1"))),
            cond(creation(0, dataset("d", 1))),
            cond(change(0, schema(1, "v1 replaced"))),
        ]);
        assert_eq!(title(&s, 1), "v1");
        assert!(s.datasets.contains_key("d"));
        assert_eq!(
            s.refusal(2),
            Some(&Refusal::VersionInUse {
                id: ID.into(),
                version: 1
            })
        );
        assert_eq!(s.refusal(1), None);
    }

    #[test]
    fn binding_a_version_replaced_in_between_is_refused() {
        let s = fold(&[
            plain(CatalogRecord::Schema(schema(1, "v1"))),
            cond(change(0, schema(1, "v1 replaced"))),
            cond(creation(0, dataset("d", 1))),
        ]);
        assert_eq!(title(&s, 1), "v1 replaced");
        assert_eq!(s.revision(ID, 1), Some(1));
        assert!(s.datasets.is_empty());
        assert!(matches!(s.refusal(2), Some(Refusal::SchemaChanged { .. })));
        // Checked again against revision 1, the same dataset binds.
        let mut s = s;
        s.apply_record(
            3,
            "datasetCreation/d",
            Some(&cond(creation(1, dataset("d", 1))).1),
        );
        assert_eq!(s.refusal(3), None);
        assert!(s.datasets.contains_key("d"));
    }

    #[test]
    fn changes_from_a_stale_base_are_refused() {
        let s = fold(&[
            plain(CatalogRecord::Schema(schema(1, "v1"))),
            plain(CatalogRecord::Dataset(dataset("d", 1))),
            // Two writers saw version 1 in use and both made version 2.
            cond(change(0, schema(2, "first v2"))),
            cond(change(0, schema(2, "second v2"))),
            // A change is to the latest version or the one after it.
            cond(change(2, schema(4, "v4"))),
        ]);
        assert_eq!(title(&s, 2), "first v2");
        assert!(matches!(s.refusal(3), Some(Refusal::SchemaMoved { .. })));
        assert!(matches!(s.refusal(4), Some(Refusal::SchemaMoved { .. })));
        assert!(s.schema(ID, 4).is_none());
    }

    #[test]
    fn compaction_does_not_change_decisions() {
        // Patches rewrite dataset/d before and after the refused change; compaction (the last
        // record of each key stays, at its offset) drops the first patch, but not the creation
        // record that bound the dataset before the change.
        let patched = |on| {
            plain(CatalogRecord::Dataset(Dataset {
                profile_enabled: on,
                ..dataset("d", 1)
            }))
        };
        let full: Vec<(i64, (String, Vec<u8>))> = [
            plain(CatalogRecord::Schema(schema(1, "v1"))),
            cond(creation(0, dataset("d", 1))),
            patched(false),
            cond(change(0, schema(1, "v1 replaced"))),
            patched(true),
        ]
        .into_iter()
        .enumerate()
        .map(|(o, r)| (o as i64, r))
        .collect();
        let compacted: Vec<_> = full
            .iter()
            .enumerate()
            .filter(|(i, (_, (key, _)))| !full[i + 1..].iter().any(|(_, (k, _))| k == key))
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(compacted.len(), full.len() - 1);
        let fold_at = |records: &[(i64, (String, Vec<u8>))]| {
            let mut s = CatalogState::default();
            for (offset, (key, value)) in records {
                s.apply_record(*offset, key, Some(value));
            }
            s
        };
        for s in [fold_at(&full), fold_at(&compacted)] {
            assert_eq!(title(&s, 1), "v1");
            assert_eq!(s.revision(ID, 1), Some(0));
            assert!(s.datasets["d"].profile_enabled);
            assert!(matches!(s.refusal(3), Some(Refusal::VersionInUse { .. })));
        }
    }
}
