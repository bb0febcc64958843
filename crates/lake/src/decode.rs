//! Values of events.valid back to the XDM entity as JSON: JSON values are parsed, Avro values
//! (Confluent wire format) are decoded against the schema registry and converted.

use apache_avro::types::Value as Avro;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde_json::{Map, Number, Value};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("value is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Avro value cannot be decoded: {0}")]
    Avro(String),
    #[error("unknown value format {0:?}")]
    Format(String),
}

/// Decodes values by their `cdp-value-format` header.
pub struct ValueDecoder {
    avro: AvroDecoder,
}

impl ValueDecoder {
    pub fn new(registry_url: &str) -> Self {
        Self {
            avro: AvroDecoder::new(SrSettings::new(registry_url.to_string())),
        }
    }

    pub async fn decode(&self, format: Option<&str>, bytes: &[u8]) -> Result<Value, DecodeError> {
        match format.unwrap_or("json") {
            "json" => Ok(serde_json::from_slice(bytes)?),
            "avro" => {
                let decoded = self
                    .avro
                    .decode(Some(bytes))
                    .await
                    .map_err(|e| DecodeError::Avro(e.to_string()))?;
                Ok(avro_to_json(decoded.value))
            }
            other => Err(DecodeError::Format(other.to_string())),
        }
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Avro → the JSON the event had: unions unwrapped, records as objects, logical types as their
/// plain JSON representation (timestamps as epoch numbers, uuids and decimals as text).
pub fn avro_to_json(v: Avro) -> Value {
    match v {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(b),
        Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => Value::from(i),
        Avro::Long(i)
        | Avro::TimeMicros(i)
        | Avro::TimestampMillis(i)
        | Avro::TimestampMicros(i)
        | Avro::TimestampNanos(i)
        | Avro::LocalTimestampMillis(i)
        | Avro::LocalTimestampMicros(i)
        | Avro::LocalTimestampNanos(i) => Value::from(i),
        Avro::Float(f) => float(f as f64),
        Avro::Double(f) => float(f),
        Avro::Bytes(b) | Avro::Fixed(_, b) => {
            Value::Array(b.into_iter().map(Value::from).collect())
        }
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s),
        Avro::Union(_, inner) => avro_to_json(*inner),
        Avro::Array(items) => Value::Array(items.into_iter().map(avro_to_json).collect()),
        Avro::Map(m) => Value::Object(m.into_iter().map(|(k, v)| (k, avro_to_json(v))).collect()),
        Avro::Record(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, avro_to_json(v)))
                .collect::<Map<_, _>>(),
        ),
        Avro::Uuid(u) => Value::String(u.to_string()),
        Avro::Decimal(d) => Value::String(format!("{d:?}")),
        Avro::BigDecimal(d) => Value::String(d.to_string()),
        Avro::Duration(d) => Value::String(format!("{d:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn avro_record_becomes_the_json_entity() {
        let v = Avro::Record(vec![
            ("_id".into(), Avro::String("e1".into())),
            ("n".into(), Avro::Union(1, Box::new(Avro::Long(3)))),
            ("tags".into(), Avro::Array(vec![Avro::String("a".into())])),
            ("none".into(), Avro::Union(0, Box::new(Avro::Null))),
        ]);
        assert_eq!(
            avro_to_json(v),
            json!({"_id": "e1", "n": 3, "tags": ["a"], "none": null})
        );
    }
}
