//! Compatibility levels and checks, as Confluent defines them for Avro.

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// The new schema can read data written with the latest one (consumers upgrade first).
    #[default]
    Backward,
    BackwardTransitive,
    /// Data written with the new schema can be read with the latest one.
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
    None,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_uppercase())).ok()
    }

    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Level::BackwardTransitive | Level::ForwardTransitive | Level::FullTransitive
        )
    }
}

/// Whether `reader` can always read what `writer` wrote. Partial compatibility (e.g. an enum
/// symbol or union branch the reader lacks) fails at read time for some data, so it counts as
/// incompatible, as in Confluent.
fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => Err("only partially compatible".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Checks `new` against `existing` (oldest first) under `level`; the reasons on failure.
pub fn check(level: Level, new: &Schema, existing: &[&Schema]) -> Result<(), Vec<String>> {
    let against: &[&Schema] = if level.transitive() {
        existing
    } else {
        existing.last().map(std::slice::from_ref).unwrap_or(&[])
    };
    let mut reasons = Vec::new();
    for (i, old) in against.iter().enumerate() {
        let backward = matches!(
            level,
            Level::Backward | Level::BackwardTransitive | Level::Full | Level::FullTransitive
        );
        let forward = matches!(
            level,
            Level::Forward | Level::ForwardTransitive | Level::Full | Level::FullTransitive
        );
        if backward {
            if let Err(e) = can_read(old, new) {
                reasons.push(format!(
                    "new schema cannot read data written by schema #{i}: {e}"
                ));
            }
        }
        if forward {
            if let Err(e) = can_read(new, old) {
                reasons.push(format!(
                    "schema #{i} cannot read data written by the new schema: {e}"
                ));
            }
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(fields: &str) -> Schema {
        Schema::parse_str(&format!(
            r#"{{"type":"record","name":"r","fields":[{{"name":"a","type":"string"}}{fields}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn backward_needs_defaults_for_new_fields() {
        let v1 = s("");
        let with_default = s(r#",{"name":"b","type":"string","default":"x"}"#);
        let without = s(r#",{"name":"b","type":"string"}"#);
        assert!(check(Level::Backward, &with_default, &[&v1]).is_ok());
        assert!(check(Level::Backward, &without, &[&v1]).is_err());
        // Forward: old readers ignore the new field, so both are fine.
        assert!(check(Level::Forward, &without, &[&v1]).is_ok());
        assert!(check(Level::Full, &without, &[&v1]).is_err());
        assert!(check(Level::None, &without, &[&v1]).is_ok());
        assert_eq!(Level::parse("full_transitive"), Some(Level::FullTransitive));
        assert_eq!(Level::FullTransitive.name(), "FULL_TRANSITIVE");
    }
}
