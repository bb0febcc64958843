//! The Confluent wire format every Avro topic of the pipeline uses: magic byte 0, the schema id
//! (big-endian u32), the Avro datum.

use apache_avro::types::Value;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;

/// `value` written with `schema` and framed with the registry's `id` for it.
pub fn encode(schema: &Schema, id: u32, value: Value) -> Result<Vec<u8>, apache_avro::Error> {
    let datum = GenericDatumWriter::builder(schema)
        .build()
        .and_then(|w| w.write_value_to_vec(value))?;
    let mut out = Vec::with_capacity(5 + datum.len());
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&datum);
    Ok(out)
}
