//! The fold: how each record of the catalog topic, in topic order, changes a [`CatalogState`].
//! Plain records set or (as tombstones) delete a key; [`Conditional`] records are decided here,
//! against the state as of their offset, so every reader and every control instance decides them
//! alike (see [`crate::conditional`] for the rules).

use cdp_contract::follower::Fold;

use crate::conditional::{Conditional, DatasetCreation, Refusal, SchemaChange};
use crate::model::{CatalogRecord, XdmSchema};
use crate::state::CatalogState;

impl CatalogState {
    fn set_schema(&mut self, offset: i64, schema: XdmSchema) {
        self.revisions
            .entry(schema.id.clone())
            .or_default()
            .insert(schema.version, offset);
        self.schemas
            .entry(schema.id.clone())
            .or_default()
            .insert(schema.version, schema);
    }

    fn apply_record(&mut self, offset: i64, key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            // Tombstone: the key says what to forget.
            match key.split_once('/') {
                Some(("stream", id)) => {
                    self.streams.remove(id);
                }
                Some(("apiKey", id)) => {
                    self.api_keys.remove(id);
                }
                Some(("dataset" | "datasetCreation", id)) => {
                    self.datasets.remove(id);
                }
                Some(("namespace", rest)) => {
                    let mut parts = rest.splitn(3, '/');
                    if let (Some(org), Some(sandbox), Some(code)) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        self.namespaces
                            .remove(&(org.into(), sandbox.into(), code.into()));
                    }
                }
                Some(("mergePolicy", id)) => {
                    self.merge_policies.remove(id);
                }
                Some(("segment", id)) => {
                    self.segments.remove(id);
                }
                Some(("schedule", id)) => {
                    self.schedules.remove(id);
                }
                Some(("connection", id)) => {
                    self.connections.remove(id);
                }
                Some(("sourceConnection", id)) => {
                    self.source_connections.remove(id);
                }
                Some(("targetConnection", id)) => {
                    self.target_connections.remove(id);
                }
                Some(("flow", id)) => {
                    self.flows.remove(id);
                }
                Some(("schema", rest)) => {
                    if let Some((id, version)) = rest.rsplit_once('@') {
                        if let (Some(versions), Ok(v)) = (self.schemas.get_mut(id), version.parse())
                        {
                            versions.remove(&v);
                            if let Some(revisions) = self.revisions.get_mut(id) {
                                revisions.remove(&v);
                            }
                        }
                    }
                }
                _ => tracing::warn!(key, "catalog tombstone with an unknown key"),
            }
            return;
        };
        match serde_json::from_slice::<CatalogRecord>(value) {
            Ok(CatalogRecord::Stream(s)) => {
                self.streams.insert(s.id.clone(), s);
            }
            Ok(CatalogRecord::ApiKey(k)) => {
                self.api_keys.insert(k.id.clone(), k);
            }
            Ok(CatalogRecord::Schema(s)) => self.set_schema(offset, s),
            Ok(CatalogRecord::Dataset(d)) => {
                self.datasets.insert(d.id.clone(), d);
            }
            Ok(CatalogRecord::Namespace(n)) => {
                let key = (
                    n.org_id.clone().unwrap_or_default(),
                    n.sandbox.clone().unwrap_or_default(),
                    n.code.clone(),
                );
                self.namespaces.insert(key, n);
            }
            Ok(CatalogRecord::MergePolicy(m)) => {
                self.merge_policies.insert(m.id.clone(), m);
            }
            Ok(CatalogRecord::Segment(d)) => {
                self.segments.insert(d.id.clone(), d);
            }
            Ok(CatalogRecord::Schedule(s)) => {
                self.schedules.insert(s.id.clone(), s);
            }
            Ok(CatalogRecord::Connection(c)) => {
                self.connections.insert(c.id.clone(), c);
            }
            Ok(CatalogRecord::SourceConnection(c)) => {
                self.source_connections.insert(c.id.clone(), c);
            }
            Ok(CatalogRecord::TargetConnection(c)) => {
                self.target_connections.insert(c.id.clone(), c);
            }
            Ok(CatalogRecord::Flow(f)) => {
                self.flows.insert(f.id.clone(), f);
            }
            Err(e) => match serde_json::from_slice::<Conditional>(value) {
                Ok(c) => self.decide(offset, c),
                // Records of kinds this version does not know (written by a newer control) are
                // skipped, not fatal, so stages can be upgraded one at a time.
                Err(_) => tracing::debug!(key, error = %e, "skipping catalog record"),
            },
        }
    }

    fn decide(&mut self, offset: i64, record: Conditional) {
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

impl Fold for CatalogState {
    fn apply(&mut self, _: i32, offset: i64, key: &str, value: Option<&[u8]>) {
        self.apply_record(offset, key, value);
        self.version = offset + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dataset, PayloadType, Stream, ValueFormat};

    fn stream(id: &str) -> Stream {
        Stream {
            id: id.into(),
            name: "web".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            payload_type: PayloadType::Json,
            authentication_required: false,
            rate_limit: None,
            dataset_id: None,
            schema_ref: None,
            allowed_origins: Vec::new(),
            created_at: 0,
        }
    }

    #[test]
    fn apply_then_tombstone() {
        let mut s = CatalogState::default();
        let rec = serde_json::to_vec(&CatalogRecord::Stream(stream("a"))).unwrap();
        s.apply_record(0, "stream/a", Some(&rec));
        assert!(s.streams.contains_key("a"));
        s.apply_record(1, "stream/a", None);
        assert!(s.streams.is_empty());
    }

    #[test]
    fn flow_service_records_apply_and_tombstones_delete() {
        use crate::flows::{Flow, SourceConnection, TargetConnection, PROFILE_FLOW_SPEC};
        use crate::model::{
            connection_key, flow_key, source_connection_key, target_connection_key,
        };
        let source = SourceConnection {
            id: "s".into(),
            name: "profiles".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            connection_spec_id: crate::flows::PROFILE_SOURCE_SPEC.into(),
            base_connection_id: "c".into(),
            format: "json".into(),
            params: serde_json::json!({}),
            etag: "e".into(),
            created_at: 0,
            updated_at: 0,
        };
        let target = TargetConnection {
            id: "t".into(),
            name: "topic".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            connection_spec_id: crate::flows::KAFKA_SPEC.into(),
            base_connection_id: "c".into(),
            format: "json".into(),
            params: serde_json::json!({"topic": "out"})
                .as_object()
                .cloned()
                .unwrap(),
            etag: "e".into(),
            created_at: 0,
            updated_at: 0,
        };
        let flow = Flow {
            id: "f".into(),
            name: "flow".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            flow_spec_id: PROFILE_FLOW_SPEC.into(),
            source_connection_ids: vec!["s".into()],
            target_connection_ids: vec!["t".into()],
            transformations: Flow::initial_transformations(),
            etag: "e".into(),
            state: "enabled".into(),
            created_at: 0,
            updated_at: 0,
        };
        let connection = crate::flows::Connection {
            id: "c".into(),
            name: "base".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            connection_spec_id: crate::flows::PROFILE_SOURCE_SPEC.into(),
            auth: None,
            etag: "e".into(),
            created_at: 0,
            updated_at: 0,
        };
        let mut s = fold(&[
            plain(CatalogRecord::Connection(connection.clone())),
            plain(CatalogRecord::SourceConnection(source.clone())),
            plain(CatalogRecord::TargetConnection(target.clone())),
            plain(CatalogRecord::Flow(flow.clone())),
        ]);
        assert_eq!(s.connections.get("c"), Some(&connection));
        assert_eq!(s.source_connections.get("s"), Some(&source));
        assert_eq!(s.target_connections.get("t"), Some(&target));
        assert_eq!(s.flows.get("f"), Some(&flow));
        for (offset, key) in [
            connection_key("c"),
            source_connection_key("s"),
            target_connection_key("t"),
            flow_key("f"),
        ]
        .iter()
        .enumerate()
        {
            s.apply_record(10 + offset as i64, key, None);
        }
        assert!(s.connections.is_empty() && s.source_connections.is_empty());
        assert!(s.target_connections.is_empty() && s.flows.is_empty());
    }

    #[test]
    fn unknown_kind_is_skipped() {
        let mut s = CatalogState::default();
        s.apply_record(0, "segment/x", Some(br#"{"kind":"segment","id":"x"}"#));
        assert!(s.streams.is_empty() && s.api_keys.is_empty());
    }

    const ID: &str = "https://ns.adobe.com/acme/schemas/s";

    fn schema(version: u32, title: &str) -> XdmSchema {
        XdmSchema {
            org_id: None,
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
            profile_event_ttl_days: None,
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
                profile_event_ttl_days: None,
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
