//! The registry state: a deterministic fold of the schemas topic. Ids are the offset (+1) of
//! the first accepted registration of a schema, so every instance that reads the same topic
//! computes the same ids; identical schemas (after normalisation) share the lowest id.

use std::collections::{BTreeMap, HashMap};

use apache_avro::Schema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::compat::{self, Level};

/// One record of the schemas topic.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum LogRecord {
    /// Key `register/<random>`: keys are never reused, so compaction never drops a
    /// registration and offsets (= ids) stay stable.
    #[serde(rename_all = "camelCase")]
    Register {
        subject: String,
        schema: String,
        #[serde(default)]
        schema_type: Option<String>,
    },
    /// Key `config` (global) or `config/<subject>`: the latest value wins.
    #[serde(rename_all = "camelCase")]
    Config {
        #[serde(default)]
        subject: Option<String>,
        compatibility: Level,
    },
}

#[derive(Debug, Clone)]
pub struct StoredSchema {
    pub id: u32,
    /// The text as first registered.
    pub text: String,
    pub parsed: Schema,
}

/// What became of one registration record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Registered { id: u32, version: u32 },
    Invalid(String),
    Incompatible(Vec<String>),
}

#[derive(Debug, Default, Clone)]
pub struct SrState {
    pub schemas: BTreeMap<u32, StoredSchema>,
    by_normal: HashMap<String, u32>,
    /// Subject → schema ids, version N at index N-1.
    pub subjects: BTreeMap<String, Vec<u32>>,
    pub global: Level,
    pub subject_levels: HashMap<String, Level>,
    /// Outcomes of registrations by offset, so the writer learns what its record became.
    pub outcomes: HashMap<i64, Outcome>,
}

/// A key-order independent, whitespace-free form of a schema's JSON: two texts with the same
/// normal form are the same schema (defaults and docs included, unlike Avro's Parsing
/// Canonical Form, because defaults matter for compatibility).
pub fn normalize(text: &str) -> Result<String, String> {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let b: BTreeMap<&String, Value> = m.iter().map(|(k, v)| (k, sorted(v))).collect();
                Value::Object(b.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    let v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    // serde_json may preserve insertion order (feature unification), so order explicitly.
    let mut out = String::new();
    write_sorted(&sorted(&v), &mut out);
    Ok(out)
}

fn write_sorted(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_sorted(&m[*k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Parses an Avro schema the way registration does.
pub fn parse_avro(text: &str) -> Result<(Schema, String), String> {
    let parsed = Schema::parse_str(text).map_err(|e| e.to_string())?;
    Ok((parsed, normalize(text)?))
}

impl SrState {
    pub fn level(&self, subject: &str) -> Level {
        self.subject_levels
            .get(subject)
            .copied()
            .unwrap_or(self.global)
    }

    /// The id of `normal` if some subject already has it.
    pub fn id_of(&self, normal: &str) -> Option<u32> {
        self.by_normal.get(normal).copied()
    }

    /// The version of schema `id` in `subject`, if registered there.
    pub fn version_in(&self, subject: &str, id: u32) -> Option<u32> {
        self.subjects
            .get(subject)?
            .iter()
            .position(|x| *x == id)
            .map(|i| i as u32 + 1)
    }

    /// What registering `text` in `subject` would give now (also used by the fold).
    pub fn evaluate(&self, subject: &str, text: &str) -> Result<Option<(u32, u32)>, Outcome> {
        let (parsed, normal) = parse_avro(text).map_err(Outcome::Invalid)?;
        if let Some(id) = self.id_of(&normal) {
            if let Some(v) = self.version_in(subject, id) {
                return Ok(Some((id, v)));
            }
        }
        let existing: Vec<&Schema> = self
            .subjects
            .get(subject)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.schemas.get(id))
                    .map(|s| &s.parsed)
                    .collect()
            })
            .unwrap_or_default();
        compat::check(self.level(subject), &parsed, &existing).map_err(Outcome::Incompatible)?;
        Ok(None)
    }

    pub fn apply(&mut self, offset: i64, key: &str, value: Option<&[u8]>) {
        let Some(value) = value else {
            // Tombstones: only config keys are ever deleted (back to the default).
            if key == "config" {
                self.global = Level::default();
            } else if let Some(subject) = key.strip_prefix("config/") {
                self.subject_levels.remove(subject);
            }
            return;
        };
        match serde_json::from_slice::<LogRecord>(value) {
            Ok(LogRecord::Config {
                subject,
                compatibility,
            }) => match subject {
                Some(s) => {
                    self.subject_levels.insert(s, compatibility);
                }
                None => self.global = compatibility,
            },
            Ok(LogRecord::Register {
                subject, schema, ..
            }) => {
                let outcome = match self.evaluate(&subject, &schema) {
                    Ok(Some((id, version))) => Outcome::Registered { id, version },
                    Ok(None) => self.insert(offset, &subject, &schema),
                    Err(o) => o,
                };
                self.outcomes.insert(offset, outcome);
            }
            Err(e) => tracing::debug!(key, error = %e, "skipping schemas record"),
        }
    }

    fn insert(&mut self, offset: i64, subject: &str, text: &str) -> Outcome {
        let Ok((parsed, normal)) = parse_avro(text) else {
            return Outcome::Invalid("unparsable".into());
        };
        let id = match self.by_normal.get(&normal) {
            Some(id) => *id,
            None => {
                let id = (offset + 1) as u32;
                self.by_normal.insert(normal, id);
                self.schemas.insert(
                    id,
                    StoredSchema {
                        id,
                        text: text.to_string(),
                        parsed,
                    },
                );
                id
            }
        };
        let versions = self.subjects.entry(subject.to_string()).or_default();
        versions.push(id);
        Outcome::Registered {
            id,
            version: versions.len() as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(subject: &str, schema: &str) -> Vec<u8> {
        serde_json::to_vec(&LogRecord::Register {
            subject: subject.into(),
            schema: schema.into(),
            schema_type: None,
        })
        .unwrap()
    }

    #[test]
    fn ids_are_offsets_and_deduplicated() {
        let a = r#"{"type":"record","name":"r","fields":[{"name":"a","type":"string"}]}"#;
        let a2 = r#"{"fields":[{"type":"string","name":"a"}],"name":"r","type":"record"}"#;
        let mut s = SrState::default();
        s.apply(0, "register/x", Some(&reg("t-value", a)));
        s.apply(1, "register/y", Some(&reg("u-value", a2)));
        assert_eq!(s.outcomes[&0], Outcome::Registered { id: 1, version: 1 });
        assert_eq!(s.outcomes[&1], Outcome::Registered { id: 1, version: 1 });
        s.apply(2, "register/z", Some(&reg("t-value", "{nope")));
        assert!(matches!(s.outcomes[&2], Outcome::Invalid(_)));
    }
}
