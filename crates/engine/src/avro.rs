//! Membership records in Avro (Confluent wire format: magic byte 0, the schema id as a
//! big-endian u32, the datum), with the schema registered in the project's registry as
//! `<topic>-value`, so any schema-registry-aware consumer decodes them.

use apache_avro::types::Value;
use apache_avro::Schema;
use cdp_contract::records::{MembershipChange, Status, AVRO_SCHEMA};
use cdp_registry::confluent::{wire, RegisterError, SchemaLog};

#[derive(Debug, thiserror::Error)]
pub enum AvroError {
    #[error("the membership schema does not parse: {0}")]
    Schema(String),
    #[error(transparent)]
    Register(#[from] RegisterError),
    #[error("a membership record does not encode: {0}")]
    Encode(String),
}

pub struct MembershipAvro {
    schema: Schema,
    id: u32,
}

impl MembershipAvro {
    /// Registers the schema under `<topic>-value` (an identical schema gets its existing id).
    pub async fn register(log: &SchemaLog, topic: &str) -> Result<Self, AvroError> {
        let schema =
            Schema::parse_str(AVRO_SCHEMA).map_err(|e| AvroError::Schema(e.to_string()))?;
        let id = log
            .register_id(&format!("{topic}-value"), AVRO_SCHEMA)
            .await?;
        Ok(Self { schema, id })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn encode(&self, m: &MembershipChange) -> Result<Vec<u8>, AvroError> {
        let status = match m.status {
            Status::Realized => 0,
            Status::Existing => 1,
            Status::Exited => 2,
        };
        let identities = m
            .identities
            .iter()
            .map(|i| {
                Value::Record(vec![
                    ("ns".into(), Value::String(i.ns.clone())),
                    ("id".into(), Value::String(i.id.clone())),
                ])
            })
            .collect();
        let value = Value::Record(vec![
            ("profileId".into(), Value::String(m.profile_id.clone())),
            ("orgId".into(), Value::String(m.org_id.clone())),
            ("sandbox".into(), Value::String(m.sandbox.clone())),
            ("identities".into(), Value::Array(identities)),
            ("segmentId".into(), Value::String(m.segment_id.clone())),
            (
                "status".into(),
                Value::Enum(status, m.status.as_str().to_string()),
            ),
            (
                "lastQualificationTime".into(),
                Value::TimestampMillis(m.last_qualification_time),
            ),
            ("time".into(), Value::TimestampMillis(m.time)),
            (
                "trigger".into(),
                Value::String(m.trigger.as_str().to_string()),
            ),
            (
                "eventId".into(),
                match &m.event_id {
                    Some(id) => Value::Union(1, Box::new(Value::String(id.clone()))),
                    None => Value::Union(0, Box::new(Value::Null)),
                },
            ),
        ]);
        wire::encode(&self.schema, self.id, value).map_err(|e| AvroError::Encode(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::reader::datum::GenericDatumReader;
    use cdp_contract::records::{Identity, Trigger};

    use super::*;

    #[test]
    fn a_membership_encodes_in_the_wire_format_and_decodes_with_its_schema() {
        let schema = Schema::parse_str(AVRO_SCHEMA).unwrap();
        let avro = MembershipAvro {
            schema: schema.clone(),
            id: 7,
        };
        let m = MembershipChange {
            profile_id: "p".into(),
            org_id: "o".into(),
            sandbox: "prod".into(),
            identities: vec![Identity::new("CRMID", "c")],
            segment_id: "s".into(),
            status: Status::Exited,
            last_qualification_time: 5,
            time: 6,
            trigger: Trigger::Timer,
            event_id: None,
        };
        let bytes = avro.encode(&m).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 7]);
        let back = GenericDatumReader::builder(&schema)
            .build()
            .and_then(|r| r.read_value(&mut &bytes[5..]))
            .unwrap();
        let Value::Record(fields) = back else {
            panic!("a record")
        };
        assert_eq!(fields[5].1, Value::Enum(2, "exited".into()));
        assert_eq!(fields[9].1, Value::Union(0, Box::new(Value::Null)));
    }
}
