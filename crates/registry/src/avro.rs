//! XDM schema → Avro, for datasets whose events travel as Avro (validate encodes, the lake
//! decodes), and the JSON ⇄ Avro value conversions that go with it.
//!
//! Mapping: closed objects → records (nested records named by their path); optional fields →
//! `["null", T]` with default null; arrays → arrays; objects whose keys are data (identityMap,
//! segmentMembership) → maps; strings (date-times included, kept verbatim) → string; integer →
//! long; number → double; boolean → boolean. What the mapping cannot express (untyped or
//! mixed-type values, fully open objects, names Avro does not allow) becomes a record with one
//! field `__json` holding the JSON text, and an object with typed fields that also allows
//! undeclared ones (the tenant namespace) gets a `__extra` field with the undeclared members as
//! JSON text. Both are recognised by [`avro_to_json`] without the schema, so the conversion
//! reproduces the original JSON.

use apache_avro::schema::{RecordSchema, Schema};
use apache_avro::types::Value as Avro;
use serde_json::{json, Map, Number, Value};

use cdp_control::XdmSchema;

/// The field of a JSON-text record.
pub const JSON_FIELD: &str = "__json";
/// The field of undeclared members of an open record.
pub const EXTRA_FIELD: &str = "__extra";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AvroMapError {
    #[error("the Avro schema generated for {0} does not parse: {1}")]
    Schema(String, String),
    #[error("{path}: expected {expected}, got {got}")]
    Type {
        path: String,
        expected: String,
        got: String,
    },
    #[error("{0}: required field is missing")]
    Missing(String),
    #[error("{0}: the Avro schema uses a construct this mapping never generates")]
    Unsupported(String),
}

fn avro_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.insert(0, 'x');
    }
    out
}

fn valid_field_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s != JSON_FIELD
        && s != EXTRA_FIELD
}

/// The Avro schema of an XDM schema version. The record's name comes from the schema id (not
/// the version), so successive versions can be checked for compatibility.
pub fn avro_schema_for(schema: &XdmSchema) -> Result<Schema, AvroMapError> {
    let last = schema.id.rsplit('/').next().unwrap_or("schema");
    let class = schema.class.rsplit('.').next().unwrap_or("xdm");
    let name = avro_name(&format!("{class}_{last}"));
    let namespace = format!("xdm.{}", avro_name(&schema.tenant));
    let mut root = map_type(&schema.definition, &name);
    if let Some(obj) = root.as_object_mut() {
        obj.insert("namespace".into(), json!(namespace));
        obj.insert(
            "doc".into(),
            json!(format!("{} version {}", schema.id, schema.version)),
        );
    }
    Schema::parse(&root).map_err(|e| AvroMapError::Schema(schema.id.clone(), e.to_string()))
}

fn json_text(name: &str) -> Value {
    json!({
        "type": "record",
        "name": format!("{name}_json"),
        "doc": "A value the Avro mapping cannot type, as JSON text.",
        "fields": [{ "name": JSON_FIELD, "type": "string" }]
    })
}

/// The Avro type (as JSON) of one JSON Schema node; `name` is the path-derived record name.
fn map_type(s: &Value, name: &str) -> Value {
    match s["type"].as_str() {
        Some("string") => json!("string"),
        Some("integer") => json!("long"),
        Some("number") => json!("double"),
        Some("boolean") => json!("boolean"),
        Some("array") if s["items"].is_object() => {
            json!({ "type": "array", "items": map_type(&s["items"], &format!("{name}_item")) })
        }
        Some("object") => map_object(s, name),
        _ => json_text(name),
    }
}

fn map_object(s: &Value, name: &str) -> Value {
    let props = s["properties"].as_object().filter(|p| !p.is_empty());
    let additional = &s["additionalProperties"];
    let closed = additional == &Value::Bool(false);
    let Some(props) = props else {
        return if additional.is_object() {
            json!({ "type": "map", "values": map_type(additional, &format!("{name}_value")) })
        } else {
            json_text(name)
        };
    };
    if !props.keys().all(|k| valid_field_name(k)) {
        return json_text(name);
    }
    let required: Vec<&str> = s["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields: Vec<Value> = props
        .iter()
        .map(|(k, v)| {
            let t = map_type(v, &format!("{name}_{k}"));
            if required.contains(&k.as_str()) {
                json!({ "name": k, "type": t })
            } else {
                json!({ "name": k, "type": ["null", t], "default": null })
            }
        })
        .collect();
    if !closed {
        fields.push(json!({
            "name": EXTRA_FIELD,
            "type": ["null", "string"],
            "default": null,
            "doc": "Members the schema does not declare, as a JSON object text."
        }));
    }
    json!({ "type": "record", "name": name, "fields": fields })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn mismatch(path: &str, expected: &str, got: &Value) -> AvroMapError {
    AvroMapError::Type {
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
        expected: expected.into(),
        got: kind(got).into(),
    }
}

/// Converts a JSON value (a validated XDM entity) to an Avro value of `schema`.
pub fn json_to_avro(schema: &Schema, value: &Value) -> Result<Avro, AvroMapError> {
    convert(schema, value, "")
}

fn is_json_text(r: &RecordSchema) -> bool {
    r.fields.len() == 1 && r.fields[0].name == JSON_FIELD
}

fn convert(schema: &Schema, value: &Value, path: &str) -> Result<Avro, AvroMapError> {
    match schema {
        Schema::Null => Ok(Avro::Null),
        Schema::String => value
            .as_str()
            .map(|s| Avro::String(s.to_string()))
            .ok_or_else(|| mismatch(path, "string", value)),
        Schema::Long => value
            .as_i64()
            .map(Avro::Long)
            .ok_or_else(|| mismatch(path, "integer", value)),
        Schema::Int => value
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(Avro::Int)
            .ok_or_else(|| mismatch(path, "integer", value)),
        Schema::Double => value
            .as_f64()
            .map(Avro::Double)
            .ok_or_else(|| mismatch(path, "number", value)),
        Schema::Float => value
            .as_f64()
            .map(|f| Avro::Float(f as f32))
            .ok_or_else(|| mismatch(path, "number", value)),
        Schema::Boolean => value
            .as_bool()
            .map(Avro::Boolean)
            .ok_or_else(|| mismatch(path, "boolean", value)),
        Schema::Array(a) => {
            let items = value
                .as_array()
                .ok_or_else(|| mismatch(path, "array", value))?;
            items
                .iter()
                .enumerate()
                .map(|(i, v)| convert(&a.items, v, &format!("{path}/{i}")))
                .collect::<Result<_, _>>()
                .map(Avro::Array)
        }
        Schema::Map(m) => {
            let obj = value
                .as_object()
                .ok_or_else(|| mismatch(path, "object", value))?;
            obj.iter()
                .map(|(k, v)| Ok((k.clone(), convert(&m.types, v, &format!("{path}/{k}"))?)))
                .collect::<Result<_, _>>()
                .map(Avro::Map)
        }
        Schema::Union(u) => {
            let variants = u.variants();
            if value.is_null() {
                if let Some(i) = variants.iter().position(|v| matches!(v, Schema::Null)) {
                    return Ok(Avro::Union(i as u32, Box::new(Avro::Null)));
                }
                return Err(mismatch(path, "a value", value));
            }
            let mut last = None;
            for (i, v) in variants.iter().enumerate() {
                if matches!(v, Schema::Null) {
                    continue;
                }
                match convert(v, value, path) {
                    Ok(x) => return Ok(Avro::Union(i as u32, Box::new(x))),
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| mismatch(path, "a union branch", value)))
        }
        Schema::Record(r) if is_json_text(r) => Ok(Avro::Record(vec![(
            JSON_FIELD.to_string(),
            Avro::String(value.to_string()),
        )])),
        Schema::Record(r) => {
            let obj = value
                .as_object()
                .ok_or_else(|| mismatch(path, "object", value))?;
            let mut out = Vec::with_capacity(r.fields.len());
            for f in &r.fields {
                let here = format!("{path}/{}", f.name);
                if f.name == EXTRA_FIELD {
                    let extra: Map<String, Value> = obj
                        .iter()
                        .filter(|(k, _)| !r.lookup.contains_key(k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let v = if extra.is_empty() {
                        Value::Null
                    } else {
                        Value::String(Value::Object(extra).to_string())
                    };
                    out.push((f.name.clone(), convert(&f.schema, &v, &here)?));
                    continue;
                }
                let v = match obj.get(&f.name) {
                    Some(v) => convert(&f.schema, v, &here)?,
                    None if matches!(&f.schema, Schema::Union(u) if u.variants().iter().any(|v| matches!(v, Schema::Null))) => {
                        convert(&f.schema, &Value::Null, &here)?
                    }
                    None => return Err(AvroMapError::Missing(here)),
                };
                out.push((f.name.clone(), v));
            }
            Ok(Avro::Record(out))
        }
        _ => Err(AvroMapError::Unsupported(path.to_string())),
    }
}

fn number(f: f64) -> Value {
    // JSON has one number type: an integral double (a `number` field holding 1) goes back as
    // the integer it was sent as.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        return Value::from(f as i64);
    }
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Converts an Avro value produced by [`json_to_avro`] back to the JSON it came from: absent
/// optional fields are left out, JSON-text fields are parsed, `__extra` members are merged.
pub fn avro_to_json(value: &Avro) -> Value {
    match value {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(*b),
        Avro::Int(i) | Avro::Date(i) | Avro::TimeMillis(i) => Value::from(*i),
        Avro::Long(i)
        | Avro::TimeMicros(i)
        | Avro::TimestampMillis(i)
        | Avro::TimestampMicros(i)
        | Avro::TimestampNanos(i)
        | Avro::LocalTimestampMillis(i)
        | Avro::LocalTimestampMicros(i)
        | Avro::LocalTimestampNanos(i) => Value::from(*i),
        Avro::Float(f) => number(*f as f64),
        Avro::Double(f) => number(*f),
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s.clone()),
        Avro::Bytes(b) | Avro::Fixed(_, b) => {
            Value::Array(b.iter().map(|x| Value::from(*x)).collect())
        }
        Avro::Uuid(u) => Value::String(u.to_string()),
        Avro::Union(_, inner) => avro_to_json(inner),
        Avro::Array(items) => Value::Array(items.iter().map(avro_to_json).collect()),
        Avro::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), avro_to_json(v)))
                .collect(),
        ),
        Avro::Record(fields) => {
            if let [(name, Avro::String(text))] = fields.as_slice() {
                if name == JSON_FIELD {
                    return serde_json::from_str(text)
                        .unwrap_or_else(|_| Value::String(text.clone()));
                }
            }
            let mut out = Map::new();
            for (name, v) in fields {
                let v = avro_to_json(v);
                if v.is_null() {
                    continue;
                }
                if name == EXTRA_FIELD {
                    if let Some(Value::Object(extra)) =
                        v.as_str().and_then(|t| serde_json::from_str(t).ok())
                    {
                        out.extend(extra);
                    }
                    continue;
                }
                out.insert(name.clone(), v);
            }
            Value::Object(out)
        }
        other => Value::String(format!("{other:?}")),
    }
}
