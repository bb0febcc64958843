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
//! JSON text. Both are recognised by [`try_avro_to_json`] without the schema, so the conversion
//! reproduces the original JSON. Null is valid JSON only where the mapping has JSON text, so an
//! explicit null travels as the text `null` and an absent field as the union's null branch:
//! the two stay apart. What does not survive: a `number` holding a whole value comes back as
//! an integer (`2.0` as `2`), and an `integer` sent as `3.0` comes back as `3`.
//!
//! This is the one Avro → JSON conversion of the project: the lake decodes events.valid with it.

use apache_avro::schema::{RecordSchema, Schema};
use apache_avro::types::Value as Avro;
use serde_json::{json, Map, Number, Value};

use cdp_catalog::XdmSchema;

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
    #[error("{path}/{field} does not hold what the mapping writes there: {reason}")]
    JsonText {
        path: String,
        field: String,
        reason: String,
    },
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

fn json_text_value(value: &Value) -> Avro {
    Avro::Record(vec![(
        JSON_FIELD.to_string(),
        Avro::String(value.to_string()),
    )])
}

/// The value of an optional field the entity leaves out: the null branch of its union.
fn absent(schema: &Schema) -> Option<Avro> {
    let Schema::Union(u) = schema else {
        return None;
    };
    u.variants()
        .iter()
        .position(|v| matches!(v, Schema::Null))
        .map(|i| Avro::Union(i as u32, Box::new(Avro::Null)))
}

/// An integer as JSON Schema counts them: 3.0 is one, so validate lets it through as the long 3.
fn integer(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0)
            .map(|f| f as i64)
    })
}

fn convert(schema: &Schema, value: &Value, path: &str) -> Result<Avro, AvroMapError> {
    match schema {
        Schema::Null => Ok(Avro::Null),
        Schema::String => value
            .as_str()
            .map(|s| Avro::String(s.to_string()))
            .ok_or_else(|| mismatch(path, "string", value)),
        Schema::Long => integer(value)
            .map(Avro::Long)
            .ok_or_else(|| mismatch(path, "integer", value)),
        Schema::Int => integer(value)
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
                // JSON Schema allows null only where the mapping has JSON text (type lists,
                // untyped values), so an explicit null goes there as "null" and comes back as
                // sent; the null branch stands for an absent field.
                if let Some(i) = variants
                    .iter()
                    .position(|v| matches!(v, Schema::Record(r) if is_json_text(r)))
                {
                    return Ok(Avro::Union(i as u32, Box::new(json_text_value(value))));
                }
                return absent(schema).ok_or_else(|| mismatch(path, "a value", value));
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
        Schema::Record(r) if is_json_text(r) => Ok(json_text_value(value)),
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
                        absent(&f.schema).ok_or(AvroMapError::Unsupported(here))?
                    } else {
                        let text = Value::String(Value::Object(extra).to_string());
                        convert(&f.schema, &text, &here)?
                    };
                    out.push((f.name.clone(), v));
                    continue;
                }
                let v = match obj.get(&f.name) {
                    Some(v) => convert(&f.schema, v, &here)?,
                    None => absent(&f.schema).ok_or(AvroMapError::Missing(here))?,
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

/// What to do with a JSON-text field (`__json`, `__extra`) that does not hold what
/// [`json_to_avro`] writes there (a value some other producer wrote).
#[derive(Debug, Clone, Copy, PartialEq)]
enum BadText {
    Fail,
    /// Keep the text as it is, as a JSON string, so nothing is lost.
    Keep,
}

/// Converts an Avro value produced by [`json_to_avro`] back to the JSON it came from: absent
/// optional fields (null branches) are left out, JSON-text fields are parsed (an explicit null
/// sent as JSON text stays an explicit null), `__extra` members are merged into their object.
///
/// Fails when a JSON-text field holds something the mapping never writes: text that is not
/// JSON, an `__extra` that is not an object or repeats a declared field.
pub fn try_avro_to_json(value: &Avro) -> Result<Value, AvroMapError> {
    to_json(value, BadText::Fail)
}

/// [`try_avro_to_json`] for values known to come from [`json_to_avro`]: a JSON-text field that
/// does not hold what the mapping writes is kept as its text instead of failing.
pub fn avro_to_json(value: &Avro) -> Value {
    // Keeping never fails; the fallback only satisfies the shared signature.
    to_json(value, BadText::Keep).unwrap_or_else(|e| Value::String(e.to_string()))
}

fn unwrap_union(mut value: &Avro) -> &Avro {
    while let Avro::Union(_, inner) = value {
        value = inner;
    }
    value
}

fn bad_text(field: &str, reason: impl ToString) -> AvroMapError {
    AvroMapError::JsonText {
        path: String::new(),
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

/// Prefixes the path of a JSON-text error with the member it happened under; built while the
/// error travels up, so conversions that succeed pay nothing for paths.
fn within(e: AvroMapError, member: &str) -> AvroMapError {
    match e {
        AvroMapError::JsonText {
            path,
            field,
            reason,
        } => AvroMapError::JsonText {
            path: format!("/{}{path}", member.replace('~', "~0").replace('/', "~1")),
            field,
            reason,
        },
        other => other,
    }
}

fn to_json(value: &Avro, bad: BadText) -> Result<Value, AvroMapError> {
    Ok(match value {
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
        // The mapping never writes these; other producers' values keep a readable text.
        Avro::BigDecimal(d) => Value::String(d.to_string()),
        Avro::Decimal(_) | Avro::Duration(_) => Value::String(format!("{value:?}")),
        Avro::Union(_, inner) => to_json(inner, bad)?,
        Avro::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| to_json(v, bad).map_err(|e| within(e, &i.to_string())))
                .collect::<Result<_, _>>()?,
        ),
        Avro::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v, bad).map_err(|e| within(e, k))?)))
                .collect::<Result<_, _>>()?,
        ),
        Avro::Record(fields) => {
            if let [(name, text)] = fields.as_slice() {
                if name == JSON_FIELD {
                    return parse_json_text(text, bad);
                }
            }
            record(fields, bad)?
        }
    })
}

/// The value of a `__json` field.
fn parse_json_text(text: &Avro, bad: BadText) -> Result<Value, AvroMapError> {
    let parsed = match text {
        Avro::String(t) => serde_json::from_str(t).map_err(|e| (e.to_string(), t)),
        other => {
            return match bad {
                BadText::Fail => Err(bad_text(JSON_FIELD, "not a string")),
                BadText::Keep => Ok(json!({ JSON_FIELD: to_json(other, bad)? })),
            }
        }
    };
    match (parsed, bad) {
        (Ok(v), _) => Ok(v),
        (Err((reason, _)), BadText::Fail) => Err(bad_text(JSON_FIELD, reason)),
        (Err((_, t)), BadText::Keep) => Ok(Value::String(t.clone())),
    }
}

fn record(fields: &[(String, Avro)], bad: BadText) -> Result<Value, AvroMapError> {
    let mut out = Map::new();
    let mut extra = None;
    for (name, v) in fields {
        // Avro cannot leave a field out: null is how an absent optional field travels.
        if matches!(unwrap_union(v), Avro::Null) {
            continue;
        }
        if name == EXTRA_FIELD {
            extra = Some(unwrap_union(v));
            continue;
        }
        out.insert(name.clone(), to_json(v, bad).map_err(|e| within(e, name))?);
    }
    let Some(extra) = extra else {
        return Ok(Value::Object(out));
    };
    let members = match extra {
        Avro::String(t) => match serde_json::from_str::<Value>(t) {
            Ok(Value::Object(m)) => match m.keys().find(|k| out.contains_key(k.as_str())) {
                Some(k) => Err(format!("{k:?} is also a declared field")),
                None => Ok(m),
            },
            Ok(other) => Err(format!("holds {}, not an object", kind(&other))),
            Err(e) => Err(e.to_string()),
        },
        _ => Err("not a string".to_string()),
    };
    match (members, bad) {
        (Ok(m), _) => out.extend(m),
        (Err(reason), BadText::Fail) => return Err(bad_text(EXTRA_FIELD, reason)),
        (Err(_), BadText::Keep) => {
            out.insert(EXTRA_FIELD.to_string(), to_json(extra, bad)?);
        }
    }
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(definition: Value) -> Schema {
        avro_schema_for(&XdmSchema {
            org_id: None,
            id: "https://ns.adobe.com/acme/schemas/t".into(),
            version: 1,
            title: "t".into(),
            tenant: "acme".into(),
            class: "_xdm.context.experienceevent".into(),
            field_groups: vec![],
            profile_enabled: false,
            definition,
            created_at: 0,
        })
        .expect("maps to Avro")
    }

    fn tenant_schema() -> Schema {
        schema(json!({
            "type": "object",
            "required": ["_id", "raw"],
            "properties": {
                "_id": {"type": "string"},
                "raw": {},
                "_acme": {
                    "type": "object",
                    "additionalProperties": true,
                    "properties": {
                        "nickname": {"type": ["string", "null"]},
                        "visits": {"type": "integer"},
                        "free": {"type": "object"}
                    }
                }
            },
            "additionalProperties": false
        }))
    }

    /// Through the binary encoding, as the lake sees it.
    // The single-datum helpers are deprecated in favour of builder-style readers/writers; they
    // are still the shortest way to encode one value.
    #[allow(deprecated)]
    fn round_trip(schema: &Schema, entity: &Value) -> Value {
        let value = json_to_avro(schema, entity).expect("converts");
        let bytes = apache_avro::to_avro_datum(schema, value).expect("encodes");
        let decoded =
            apache_avro::from_avro_datum(schema, &mut bytes.as_slice(), None).expect("decodes");
        try_avro_to_json(&decoded).expect("maps back")
    }

    #[test]
    fn explicit_nulls_and_absent_fields_stay_apart() {
        let s = tenant_schema();
        for entity in [
            json!({"_id": "e1", "raw": null, "_acme": {"nickname": null, "other": null}}),
            json!({"_id": "e2", "raw": {"a": [1, null]}, "_acme": {"nickname": "x"}}),
            json!({"_id": "e3", "raw": 1.5, "_acme": {}}),
            json!({"_id": "e4", "raw": "text"}),
        ] {
            assert_eq!(round_trip(&s, &entity), entity);
        }
    }

    #[test]
    fn undeclared_members_are_merged_back_and_integers_may_be_written_as_floats() {
        let s = tenant_schema();
        let entity = json!({"_id": "e1", "raw": 0,
            "_acme": {"visits": 3.0, "free": {"deep": {"k": [true]}}, "tier": "gold", "n": 2.5}});
        let mut expected = entity.clone();
        expected["_acme"]["visits"] = json!(3);
        assert_eq!(round_trip(&s, &entity), expected);
        let mut fractional = entity;
        fractional["_acme"]["visits"] = json!(3.5);
        assert!(json_to_avro(&s, &fractional).is_err());
    }

    #[test]
    fn json_text_another_producer_got_wrong_fails_or_is_kept() {
        let text = |t: &str| Avro::String(t.into());
        let bad_json = Avro::Record(vec![(
            "events".into(),
            Avro::Array(vec![Avro::Record(vec![(JSON_FIELD.into(), text("{nope"))])]),
        )]);
        let err = try_avro_to_json(&bad_json).unwrap_err();
        assert!(
            matches!(&err, AvroMapError::JsonText { path, field, .. } if path == "/events/0" && field == JSON_FIELD),
            "{err}"
        );
        assert_eq!(avro_to_json(&bad_json), json!({"events": ["{nope"]}));

        for extra in ["[1]", "{\"a\": 2}", "not json"] {
            let v = Avro::Record(vec![
                ("a".into(), Avro::Union(1, Box::new(Avro::Long(1)))),
                (EXTRA_FIELD.into(), Avro::Union(1, Box::new(text(extra)))),
            ]);
            assert!(try_avro_to_json(&v).is_err(), "{extra}");
            assert_eq!(avro_to_json(&v), json!({"a": 1, EXTRA_FIELD: extra}));
        }
    }
}
