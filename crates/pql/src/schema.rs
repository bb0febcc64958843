//! XDM field types known to the checker, read from a JSON Schema document
//! (nested `properties`, draft 2020-12 style) or from a flat path→type map.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::error::SchemaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    String,
    Number,
    Boolean,
    Date,
    DateTime,
    Object,
    Array,
    /// Anything goes: untyped or beyond what the schema describes.
    Any,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::DateTime => "date-time",
            FieldType::Object => "object",
            FieldType::Array => "array",
            FieldType::Any => "any",
        }
    }

    /// Accepts JSON Schema type names and the date formats as types.
    pub fn from_name(s: &str) -> Option<FieldType> {
        Some(match s {
            "string" => FieldType::String,
            "number" | "integer" => FieldType::Number,
            "boolean" => FieldType::Boolean,
            "date" => FieldType::Date,
            "date-time" | "datetime" => FieldType::DateTime,
            "object" => FieldType::Object,
            "array" => FieldType::Array,
            "any" => FieldType::Any,
            _ => return None,
        })
    }
}

/// The fields of one entity (the profile, or an experience event).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    fields: HashMap<String, FieldType>,
    /// Objects declared without `properties`: anything below them is accepted.
    open: HashSet<String>,
}

impl Schema {
    /// Reads a JSON Schema: walks `properties` recursively; `type` (first non-null
    /// entry when it is a list) and `format: date / date-time` give the field type.
    pub fn from_json_schema(doc: &Value) -> Result<Schema, SchemaError> {
        let props = doc
            .get("properties")
            .and_then(Value::as_object)
            .ok_or(SchemaError::NotAnObjectSchema)?;
        let mut s = Schema::default();
        s.walk("", props, 0)?;
        Ok(s)
    }

    /// Reads `{"person.birthYear": "integer", "homeAddress.countryCode": "string"}`.
    pub fn from_path_map(doc: &Value) -> Result<Schema, SchemaError> {
        let map = doc.as_object().ok_or(SchemaError::NotAnObjectSchema)?;
        let mut pairs = Vec::new();
        for (path, ty) in map {
            let name = ty.as_str().unwrap_or("");
            let t = FieldType::from_name(name).ok_or_else(|| SchemaError::UnknownType {
                path: path.clone(),
                ty: ty.to_string(),
            })?;
            pairs.push((path.clone(), t));
        }
        Ok(Schema::from_paths(pairs))
    }

    /// Builds a schema from dotted paths; parents become objects.
    pub fn from_paths<I, S>(pairs: I) -> Schema
    where
        I: IntoIterator<Item = (S, FieldType)>,
        S: Into<String>,
    {
        let mut s = Schema::default();
        for (path, t) in pairs {
            let path: String = path.into();
            let mut prefix = String::new();
            for seg in path.split('.') {
                if !prefix.is_empty() {
                    s.fields.entry(prefix.clone()).or_insert(FieldType::Object);
                    prefix.push('.');
                }
                prefix.push_str(seg);
            }
            s.fields.insert(path, t);
        }
        s
    }

    fn walk(
        &mut self,
        prefix: &str,
        props: &serde_json::Map<String, Value>,
        depth: usize,
    ) -> Result<(), SchemaError> {
        // Recursive schemas can't be expressed with plain `properties`, but a
        // hostile document could still be deep; stop well before the stack does.
        if depth > 64 {
            return Ok(());
        }
        for (name, sub) in props {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            let ty_name = match sub.get("type") {
                Some(Value::String(t)) => Some(t.as_str()),
                Some(Value::Array(ts)) => {
                    ts.iter().filter_map(Value::as_str).find(|t| *t != "null")
                }
                _ => None,
            };
            let format = sub.get("format").and_then(Value::as_str);
            let children = sub.get("properties").and_then(Value::as_object);
            let t = match (ty_name, format) {
                (Some("string"), Some("date")) => FieldType::Date,
                (Some("string"), Some("date-time")) => FieldType::DateTime,
                (Some(t), _) => {
                    FieldType::from_name(t).ok_or_else(|| SchemaError::UnknownType {
                        path: path.clone(),
                        ty: t.to_string(),
                    })?
                }
                (None, _) if children.is_some() => FieldType::Object,
                (None, _) => FieldType::Any,
            };
            self.fields.insert(path.clone(), t);
            match children {
                Some(c) => self.walk(&path, c, depth + 1)?,
                None if t == FieldType::Object => {
                    self.open.insert(path);
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The type of a field, `None` when the schema does not have it.
    pub fn field(&self, segments: &[String]) -> Option<FieldType> {
        let full = segments.join(".");
        if let Some(t) = self.fields.get(&full) {
            return Some(*t);
        }
        let mut prefix = String::new();
        for seg in segments.iter().take(segments.len().saturating_sub(1)) {
            if !prefix.is_empty() {
                prefix.push('.');
            }
            prefix.push_str(seg);
            if self.open.contains(&prefix)
                || matches!(
                    self.fields.get(&prefix),
                    Some(FieldType::Any | FieldType::Array)
                )
            {
                return Some(FieldType::Any);
            }
        }
        None
    }
}
