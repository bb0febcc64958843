//! From a dataset's JSON Schema to Parquet columns, and from an event to a row of them.
//!
//! Objects with fixed `properties` become Arrow structs, arrays with one `items` schema become
//! lists, `string`/`integer`/`number`/`boolean` become Utf8/Int64/Float64/Boolean. Whatever has
//! no fixed shape (maps like `identityMap`, `oneOf`/`anyOf`, untyped values, tuples) becomes a
//! JSON-text column. `format: date-time` stays Utf8: the text is what the client sent, offset
//! included, and converting it would lose that.
//!
//! Nothing an event carries is dropped: a value the schema has no column for (an undeclared
//! property, a value of the wrong type) goes into the `_extra` column as `{pointer: value}`.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use serde_json::{Map, Value};

/// Deeper schemas are stored as JSON text; also stops recursive `$ref`s.
const MAX_DEPTH: usize = 24;

/// The column holding the whole entity when the schema has no object shape at its root.
pub const ENTITY: &str = "_entity";
/// Values the schema has no column for, as a JSON object keyed by JSON pointer.
pub const EXTRA: &str = "_extra";
/// Provenance columns added to every row of a data file.
pub const METADATA: [(&str, DataType); 6] = [
    ("_batch_id", DataType::Utf8),
    ("_xaction_id", DataType::Utf8),
    ("_stream_id", DataType::Utf8),
    ("_received_ms", DataType::Int64),
    ("_partition", DataType::Int32),
    ("_offset", DataType::Int64),
];

/// The shape of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Utf8,
    Int64,
    Float64,
    Boolean,
    /// Any JSON value, stored as its text.
    Json,
    Struct(Vec<(String, Column)>),
    List(Box<Column>),
}

impl Column {
    pub fn data_type(&self) -> DataType {
        match self {
            Column::Utf8 | Column::Json => DataType::Utf8,
            Column::Int64 => DataType::Int64,
            Column::Float64 => DataType::Float64,
            Column::Boolean => DataType::Boolean,
            Column::Struct(fields) => DataType::Struct(Fields::from(
                fields
                    .iter()
                    .map(|(n, c)| Field::new(n, c.data_type(), true))
                    .collect::<Vec<_>>(),
            )),
            Column::List(item) => {
                DataType::List(Arc::new(Field::new("item", item.data_type(), true)))
            }
        }
    }
}

/// The columns of a dataset's data files: entity columns, then metadata, then `_extra`.
#[derive(Debug, Clone)]
pub struct EntityLayout {
    /// Top-level entity columns; empty means "one `_entity` JSON column".
    pub fields: Vec<(String, Column)>,
    pub schema: SchemaRef,
}

impl EntityLayout {
    /// Columns for events of `definition` (a JSON Schema of the entity).
    pub fn from_schema(definition: &Value) -> Self {
        let fields = match column(definition, definition, 0) {
            Column::Struct(fields) => fields
                .into_iter()
                .filter(|(n, _)| !is_reserved(n))
                .collect(),
            _ => Vec::new(),
        };
        Self::with_fields(fields)
    }

    /// Columns when the schema is unknown: the entity as JSON text.
    pub fn untyped() -> Self {
        Self::with_fields(Vec::new())
    }

    fn with_fields(fields: Vec<(String, Column)>) -> Self {
        let mut arrow: Vec<Field> = if fields.is_empty() {
            vec![Field::new(ENTITY, DataType::Utf8, true)]
        } else {
            fields
                .iter()
                .map(|(n, c)| Field::new(n, c.data_type(), true))
                .collect()
        };
        arrow.extend(
            METADATA
                .iter()
                .map(|(n, t)| Field::new(*n, t.clone(), false)),
        );
        arrow.push(Field::new(EXTRA, DataType::Utf8, true));
        Self {
            fields,
            schema: Arc::new(Schema::new(arrow)),
        }
    }

    /// The entity part of a row (entity columns and `_extra`), shaped for the Arrow decoder.
    pub fn entity_row(&self, entity: &Value) -> Map<String, Value> {
        let mut row = Map::new();
        let mut extra = Map::new();
        if self.fields.is_empty() {
            row.insert(ENTITY.to_string(), Value::String(entity.to_string()));
        } else if let Value::Object(obj) = entity {
            for (name, value) in obj {
                match self.fields.iter().find(|(n, _)| n == name) {
                    Some((_, col)) => {
                        let v = normalize(value, col, &pointer("", name), &mut extra);
                        row.insert(name.clone(), v);
                    }
                    None => {
                        extra.insert(pointer("", name), value.clone());
                    }
                }
            }
        } else {
            extra.insert(String::new(), entity.clone());
        }
        if !extra.is_empty() {
            row.insert(
                EXTRA.to_string(),
                Value::String(Value::Object(extra).to_string()),
            );
        }
        row
    }
}

fn is_reserved(name: &str) -> bool {
    name == EXTRA || name == ENTITY || METADATA.iter().any(|(n, _)| *n == name)
}

fn pointer(parent: &str, token: &str) -> String {
    format!("{parent}/{}", token.replace('~', "~0").replace('/', "~1"))
}

/// The column for one JSON Schema node.
fn column(schema: &Value, root: &Value, depth: usize) -> Column {
    if depth > MAX_DEPTH {
        return Column::Json;
    }
    let Value::Object(s) = schema else {
        return Column::Json;
    };
    if let Some(Value::String(r)) = s.get("$ref") {
        // Local references only (`#/$defs/…`); the resolved schema is self-contained.
        return match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
            Some(target) => column(target, root, depth + 1),
            None => Column::Json,
        };
    }
    if s.contains_key("oneOf") || s.contains_key("anyOf") {
        return Column::Json;
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        return match all.as_slice() {
            [only] => column(only, root, depth + 1),
            _ => Column::Json,
        };
    }
    let types: Vec<&str> = match s.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ if s.contains_key("properties") => vec!["object"],
        _ if s.contains_key("items") => vec!["array"],
        _ => vec![],
    };
    match types.as_slice() {
        ["string"] => Column::Utf8,
        ["integer"] => Column::Int64,
        ["number"] => Column::Float64,
        ["boolean"] => Column::Boolean,
        ["object"] => match s.get("properties") {
            Some(Value::Object(props)) if !props.is_empty() => Column::Struct(
                props
                    .iter()
                    .map(|(n, p)| (n.clone(), column(p, root, depth + 1)))
                    .collect(),
            ),
            _ => Column::Json,
        },
        ["array"] => match s.get("items") {
            Some(items @ Value::Object(_)) => {
                Column::List(Box::new(column(items, root, depth + 1)))
            }
            _ => Column::Json,
        },
        _ => Column::Json,
    }
}

/// Shapes `value` for `col`; what does not fit goes to `extra` under its pointer.
fn normalize(value: &Value, col: &Column, at: &str, extra: &mut Map<String, Value>) -> Value {
    if value.is_null() {
        return Value::Null;
    }
    let misfit = |extra: &mut Map<String, Value>| {
        extra.insert(at.to_string(), value.clone());
        Value::Null
    };
    match col {
        Column::Json => Value::String(value.to_string()),
        Column::Utf8 => match value {
            Value::String(_) => value.clone(),
            _ => misfit(extra),
        },
        Column::Boolean => match value {
            Value::Bool(_) => value.clone(),
            _ => misfit(extra),
        },
        Column::Float64 => match value.as_f64() {
            Some(f) if value.is_number() => Value::from(f),
            _ => misfit(extra),
        },
        Column::Int64 => match (value.as_i64(), value.as_f64()) {
            (Some(i), _) => Value::from(i),
            // 3.0 is an integer to JSON Schema.
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => misfit(extra),
        },
        Column::Struct(fields) => match value {
            Value::Object(obj) => {
                let mut out = Map::new();
                for (name, v) in obj {
                    let p = pointer(at, name);
                    match fields.iter().find(|(n, _)| n == name) {
                        Some((_, c)) => {
                            out.insert(name.clone(), normalize(v, c, &p, extra));
                        }
                        None => {
                            extra.insert(p, v.clone());
                        }
                    }
                }
                Value::Object(out)
            }
            _ => misfit(extra),
        },
        Column::List(item) => match value {
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| normalize(v, item, &format!("{at}/{i}"), extra))
                    .collect(),
            ),
            _ => misfit(extra),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "_id": {"type": "string"},
                "timestamp": {"type": "string", "format": "date-time"},
                "identityMap": {"type": "object", "additionalProperties": {"type": "array"}},
                "web": {"type": "object", "properties": {
                    "page": {"$ref": "#/$defs/page"},
                    "tags": {"type": "array", "items": {"type": "string"}}
                }},
                "value": {"type": ["number", "null"]},
                "count": {"type": "integer"},
                "either": {"oneOf": [{"type": "string"}, {"type": "integer"}]}
            },
            "$defs": {"page": {"type": "object", "properties": {"name": {"type": "string"}}}}
        })
    }

    #[test]
    fn maps_schema_to_columns() {
        let layout = EntityLayout::from_schema(&schema());
        let col = |n: &str| {
            layout
                .fields
                .iter()
                .find(|(f, _)| f == n)
                .map(|(_, c)| c.clone())
        };
        assert_eq!(col("identityMap"), Some(Column::Json));
        assert_eq!(col("either"), Some(Column::Json));
        assert_eq!(col("value"), Some(Column::Float64));
        assert_eq!(
            col("web"),
            Some(Column::Struct(vec![
                (
                    "page".into(),
                    Column::Struct(vec![("name".into(), Column::Utf8)])
                ),
                ("tags".into(), Column::List(Box::new(Column::Utf8))),
            ]))
        );
        assert!(layout.schema.field_with_name("_offset").is_ok());
    }

    #[test]
    fn misfits_go_to_extra() {
        let layout = EntityLayout::from_schema(&schema());
        let row = layout.entity_row(&json!({
            "_id": "e1", "count": 2.0, "value": "high", "undeclared": 1,
            "web": {"page": {"name": "home", "x": true}},
            "identityMap": {"ECID": [{"id": "1"}]}
        }));
        assert_eq!(row["count"], json!(2));
        assert_eq!(row["identityMap"], json!("{\"ECID\":[{\"id\":\"1\"}]}"));
        let extra: Value = serde_json::from_str(row[EXTRA].as_str().unwrap()).unwrap();
        assert_eq!(
            extra,
            json!({"/value": "high", "/undeclared": 1, "/web/page/x": true})
        );
    }
}
