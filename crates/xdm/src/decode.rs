//! Values of events.valid back to the XDM entity as JSON: JSON values are parsed, Avro values
//! (Confluent wire format) are decoded against the schema registry and converted by the
//! XDM → Avro mapping's inverse ([`crate::avro::try_avro_to_json`]), the counterpart of what
//! validate encodes with, so an Avro dataset lands the same rows as a JSON one.

use crate::avro::{try_avro_to_json, AvroMapError};
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("value is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("Avro value cannot be decoded: {0}")]
    Avro(String),
    #[error("Avro value does not map back to JSON: {0}")]
    Mapping(#[from] AvroMapError),
    #[error("unknown value format {0:?}")]
    Format(String),
    #[error("cannot set up the schema registry client: {0}")]
    Registry(String),
}

/// Decodes values by their `cdp-value-format` header.
pub struct ValueDecoder {
    avro: AvroDecoder,
}

impl ValueDecoder {
    /// A decoder asking the registry at `registry_url`, with `token` as its bearer credential
    /// (the registry refuses calls without one; the stages use control's admin token).
    pub fn new(registry_url: &str, token: &str) -> Result<Self, DecodeError> {
        let settings = SrSettings::new_builder(registry_url.to_string())
            .set_token_authorization(token)
            .build()
            .map_err(|e| DecodeError::Registry(e.to_string()))?;
        Ok(Self {
            avro: AvroDecoder::new(settings),
        })
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
                Ok(try_avro_to_json(&decoded.value)?)
            }
            other => Err(DecodeError::Format(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn json_values_are_parsed_and_unknown_formats_refused() {
        // No Avro value is decoded here, so the registry is never asked.
        let decoder = ValueDecoder::new("http://127.0.0.1:9", "token").expect("decoder");
        let v = decoder
            .decode(None, br#"{"_id": "e1", "n": null}"#)
            .await
            .unwrap();
        assert_eq!(v, serde_json::json!({"_id": "e1", "n": null}));
        assert!(matches!(
            decoder.decode(Some("protobuf"), b"").await,
            Err(DecodeError::Format(f)) if f == "protobuf"
        ));
    }
}
