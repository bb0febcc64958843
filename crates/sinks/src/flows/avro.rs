//! Exports in Avro for Kafka destinations whose target connection says `data.format: avro`:
//! Confluent wire format (magic byte 0, the schema id big-endian, the datum), the schema
//! registered in the project's registry as `<destination topic>-value`, so a
//! schema-registry-aware consumer pointed at control's registry decodes them.
//!
//! The selected attributes differ per flow and follow the tenant's XDM schema, so they travel
//! as one JSON text field; memberships and identities have fixed shapes and are typed.

use apache_avro::types::Value;
use apache_avro::Schema;
use cdp_registry::confluent::{wire, RegisterError, SchemaLog};
use serde_json::Value as Json;

pub const EXPORT_SCHEMA: &str = r#"{
  "type": "record", "name": "ProfileExport", "namespace": "cdp.sinks",
  "fields": [
    {"name": "profileId", "type": "string"},
    {"name": "attributes", "type": "string", "doc": "the flow's selected profile attributes, a JSON object"},
    {"name": "segmentMembership", "type": {"type": "map", "values": {
      "type": "record", "name": "Membership", "fields": [
        {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["realized", "existing", "exited"]}},
        {"name": "lastQualificationTime", "type": "string"}]}}},
    {"name": "identityMap", "type": {"type": "map", "values": {"type": "array", "items": "string"}}}
  ]
}"#;

#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("the export schema does not parse: {0}")]
    Schema(String),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("the export is not a JSON object of the expected shape: {0}")]
    Shape(String),
    #[error("the export does not encode: {0}")]
    Encode(String),
}

pub struct ExportAvro {
    schema: Schema,
    id: u32,
}

impl ExportAvro {
    /// Registers the schema as `<topic>-value` (an identical schema keeps its id).
    pub async fn register(log: &SchemaLog, topic: &str) -> Result<Self, AvroError> {
        let schema =
            Schema::parse_str(EXPORT_SCHEMA).map_err(|e| AvroError::Schema(e.to_string()))?;
        let id = log
            .register_id(&format!("{topic}-value"), EXPORT_SCHEMA)
            .await?;
        Ok(Self { schema, id })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The export document (seed 004's JSON) of `profile_id`, in the wire format.
    pub fn encode(&self, profile_id: &str, document: &[u8]) -> Result<Vec<u8>, AvroError> {
        let value = to_avro(profile_id, document)?;
        wire::encode(&self.schema, self.id, value).map_err(|e| AvroError::Encode(e.to_string()))
    }
}

fn shape(what: &str) -> AvroError {
    AvroError::Shape(what.to_string())
}

fn to_avro(profile_id: &str, document: &[u8]) -> Result<Value, AvroError> {
    let Json::Object(mut doc) =
        serde_json::from_slice::<Json>(document).map_err(|e| AvroError::Shape(e.to_string()))?
    else {
        return Err(shape("not an object"));
    };
    let memberships = doc
        .remove("segmentMembership")
        .and_then(|m| m.get("ups").cloned())
        .unwrap_or(Json::Null);
    let identities = doc.remove("identityMap").unwrap_or(Json::Null);
    let mut segments = Vec::new();
    for (segment, m) in memberships.as_object().into_iter().flatten() {
        let status = m["status"].as_str().unwrap_or_default();
        let index = match status {
            "realized" => 0,
            "existing" => 1,
            "exited" => 2,
            other => return Err(AvroError::Shape(format!("membership status `{other}`"))),
        };
        let since = m["lastQualificationTime"].as_str().unwrap_or_default();
        segments.push((
            segment.clone(),
            Value::Record(vec![
                ("status".into(), Value::Enum(index, status.to_string())),
                (
                    "lastQualificationTime".into(),
                    Value::String(since.to_string()),
                ),
            ]),
        ));
    }
    let mut map = Vec::new();
    for (ns, ids) in identities.as_object().into_iter().flatten() {
        let ids = ids
            .as_array()
            .ok_or_else(|| shape("identityMap values are arrays"))?
            .iter()
            .filter_map(|i| i["id"].as_str())
            .map(|id| Value::String(id.to_string()))
            .collect();
        map.push((ns.clone(), Value::Array(ids)));
    }
    Ok(Value::Record(vec![
        ("profileId".into(), Value::String(profile_id.to_string())),
        (
            "attributes".into(),
            Value::String(Json::Object(doc).to_string()),
        ),
        (
            "segmentMembership".into(),
            Value::Map(segments.into_iter().collect()),
        ),
        ("identityMap".into(), Value::Map(map.into_iter().collect())),
    ]))
}

#[cfg(test)]
mod tests {
    use apache_avro::reader::datum::GenericDatumReader;

    use super::*;

    #[test]
    fn the_seed_document_encodes_and_decodes_with_its_schema() {
        let schema = Schema::parse_str(EXPORT_SCHEMA).unwrap();
        let avro = ExportAvro {
            schema: schema.clone(),
            id: 9,
        };
        let doc = br#"{"person":{"email":"a@b.c"},
            "segmentMembership":{"ups":{"s1":{"lastQualificationTime":"2020-03-03T21:24:39Z","status":"exited"}}},
            "identityMap":{"ecid":[{"id":"1"},{"id":"2"}]}}"#;
        let bytes = avro.encode("p1", doc).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 9]);
        let back = GenericDatumReader::builder(&schema)
            .build()
            .and_then(|r| r.read_value(&mut &bytes[5..]))
            .unwrap();
        let Value::Record(fields) = back else {
            panic!("a record")
        };
        assert_eq!(fields[0].1, Value::String("p1".into()));
        assert_eq!(
            fields[1].1,
            Value::String(r#"{"person":{"email":"a@b.c"}}"#.into())
        );
        let Value::Map(segments) = &fields[2].1 else {
            panic!("a map")
        };
        let Value::Record(s1) = &segments["s1"] else {
            panic!("a membership")
        };
        assert_eq!(s1[0].1, Value::Enum(2, "exited".into()));
        let Value::Map(ids) = &fields[3].1 else {
            panic!("a map")
        };
        assert_eq!(
            ids["ecid"],
            Value::Array(vec![Value::String("1".into()), Value::String("2".into())])
        );
    }

    #[test]
    fn a_document_of_another_shape_is_refused_with_the_reason() {
        let schema = Schema::parse_str(EXPORT_SCHEMA).unwrap();
        let avro = ExportAvro { schema, id: 1 };
        assert!(matches!(avro.encode("p", b"[1]"), Err(AvroError::Shape(_))));
        let bad = br#"{"segmentMembership":{"ups":{"s":{"status":"maybe"}}}}"#;
        assert!(avro
            .encode("p", bad)
            .unwrap_err()
            .to_string()
            .contains("maybe"));
    }
}
