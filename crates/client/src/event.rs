//! An event (the XDM entity, `body.xdmEntity` on the wire), the identity helper, and the
//! message envelope the edge expects around it.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::ClientError;

/// One XDM ExperienceEvent: a JSON object such as
/// `{"eventType": "web.webpagedetails.pageViews", "web": {…}}`.
///
/// `_id` (a UUID v4) and `timestamp` (now, RFC 3339) are filled in when `send` finds them
/// missing. Anything that converts into a `serde_json::Value` object converts into an `Event`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    entity: Value,
}

impl Event {
    /// An event with `entity` as its XDM entity.
    pub fn new(entity: Value) -> Self {
        Event { entity }
    }

    /// Adds identity `id` of namespace `namespace` (`ECID`, `Email`, `CRMID`, …) to the
    /// event's `identityMap`, merging with what is there: an identity already listed keeps its
    /// place (its `primary` flag is updated). With `primary` set, every other identity of the
    /// event stops being primary: an event has at most one primary identity.
    ///
    /// An `identityMap` that is not an object is replaced. On an entity that is not an object
    /// this does nothing; `send` refuses such an event.
    pub fn with_identity(mut self, namespace: &str, id: impl Into<String>, primary: bool) -> Self {
        merge_identity(&mut self.entity, namespace, id.into(), primary);
        self
    }

    /// The entity as it stands (before `send` fills `_id` and `timestamp`).
    pub fn as_value(&self) -> &Value {
        &self.entity
    }

    pub fn into_value(self) -> Value {
        self.entity
    }
}

impl From<Value> for Event {
    fn from(entity: Value) -> Self {
        Event::new(entity)
    }
}

impl From<Map<String, Value>> for Event {
    fn from(entity: Map<String, Value>) -> Self {
        Event::new(Value::Object(entity))
    }
}

fn merge_identity(entity: &mut Value, namespace: &str, id: String, primary: bool) {
    let Some(entity) = entity.as_object_mut() else {
        return;
    };
    let map = entity
        .entry("identityMap")
        .or_insert_with(|| Value::Object(Map::new()));
    if !map.is_object() {
        *map = Value::Object(Map::new());
    }
    let Some(map) = map.as_object_mut() else {
        return;
    };
    if primary {
        for list in map.values_mut().filter_map(Value::as_array_mut) {
            for identity in list.iter_mut().filter_map(Value::as_object_mut) {
                identity.remove("primary");
            }
        }
    }
    let list = map
        .entry(namespace.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    let existing = list
        .iter_mut()
        .filter_map(Value::as_object_mut)
        .find(|i| i.get("id").and_then(Value::as_str) == Some(id.as_str()));
    match existing {
        Some(identity) => {
            if primary {
                identity.insert("primary".into(), Value::Bool(true));
            }
        }
        None => {
            let mut identity = Map::new();
            identity.insert("id".into(), Value::String(id));
            if primary {
                identity.insert("primary".into(), Value::Bool(true));
            }
            list.push(Value::Object(identity));
        }
    }
}

/// `header.schemaRef` and `body.xdmMeta.schemaRef`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SchemaRef {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// What every message of a client shares: where it belongs.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub schema_ref: SchemaRef,
    pub org_id: Option<String>,
    pub dataset_id: Option<String>,
    /// The size of the last message encoded: the next one's buffer starts that large, instead
    /// of growing (and copying) from serde_json's 128 bytes.
    pub size_hint: AtomicUsize,
}

#[derive(Serialize)]
struct Message<'a> {
    header: Header<'a>,
    body: Body<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Header<'a> {
    schema_ref: &'a SchemaRef,
    #[serde(skip_serializing_if = "Option::is_none")]
    ims_org_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataset_id: Option<&'a str>,
    created_at: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    xdm_meta: Meta<'a>,
    xdm_entity: &'a Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    schema_ref: &'a SchemaRef,
}

/// An event made ready to send: its `_id` (for the receipt) and its message as JSON text.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub id: String,
    pub json: Vec<u8>,
}

impl Envelope {
    /// Fills `_id` and `timestamp` when missing and wraps the entity in its message
    /// (`{"header": …, "body": {"xdmMeta": …, "xdmEntity": …}}`), encoded once here so the
    /// batch is a concatenation and its size is known before it is sent.
    pub fn prepare(&self, event: Event) -> Result<Prepared, ClientError> {
        let mut entity = event.entity;
        let Some(object) = entity.as_object_mut() else {
            return Err(ClientError::InvalidEvent(format!(
                "an event is a JSON object (the XDM entity), not {}",
                kind(&entity)
            )));
        };
        let now = chrono::Utc::now();
        if object.get("_id").is_none_or(Value::is_null) {
            object.insert(
                "_id".into(),
                Value::String(uuid::Uuid::new_v4().to_string()),
            );
        }
        if object.get("timestamp").is_none_or(Value::is_null) {
            object.insert(
                "timestamp".into(),
                Value::String(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            );
        }
        let id = match object.get("_id") {
            Some(Value::String(s)) => s.clone(),
            // A non-string `_id` is the caller's choice (the schema will say whether it is
            // valid); the receipt names it by its JSON text.
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let message = Message {
            header: Header {
                schema_ref: &self.schema_ref,
                ims_org_id: self.org_id.as_deref(),
                dataset_id: self.dataset_id.as_deref(),
                created_at: now.timestamp_millis(),
            },
            body: Body {
                xdm_meta: Meta {
                    schema_ref: &self.schema_ref,
                },
                xdm_entity: &entity,
            },
        };
        let mut json = Vec::with_capacity(self.size_hint.load(Ordering::Relaxed).max(128));
        serde_json::to_writer(&mut json, &message)
            .map_err(|e| ClientError::InvalidEvent(format!("cannot encode the event: {e}")))?;
        self.size_hint.store(json.len(), Ordering::Relaxed);
        // After a much larger event, do not hold on to its size while this one is buffered.
        if json.capacity() > 2 * json.len() + 1024 {
            json.shrink_to_fit();
        }
        Ok(Prepared { id, json })
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> Envelope {
        Envelope {
            schema_ref: SchemaRef {
                id: "https://ns.adobe.com/acme/schemas/web".into(),
                content_type: Some("application/vnd.adobe.xed-full+json;version=2".into()),
            },
            org_id: Some("ACME@AdobeOrg".into()),
            dataset_id: None,
            size_hint: AtomicUsize::new(0),
        }
    }

    #[test]
    fn identities_merge_and_one_stays_primary() {
        let e = Event::new(json!({"identityMap": {"ECID": [{"id": "e1", "primary": true}]}}))
            .with_identity("Email", "a@example.com", true)
            .with_identity("ECID", "e2", false)
            .with_identity("Email", "a@example.com", false)
            .with_identity("ECID", "e1", false);
        assert_eq!(
            e.into_value(),
            json!({"identityMap": {
                "ECID": [{"id": "e1"}, {"id": "e2"}],
                "Email": [{"id": "a@example.com", "primary": true}]
            }})
        );
        let odd = Event::new(json!({"identityMap": 3})).with_identity("ECID", "x", true);
        assert_eq!(
            odd.into_value(),
            json!({"identityMap": {"ECID": [{"id": "x", "primary": true}]}})
        );
        let not_object = Event::new(json!([1])).with_identity("ECID", "x", true);
        assert_eq!(not_object.into_value(), json!([1]));
    }

    #[test]
    fn fills_id_and_timestamp_and_wraps_the_entity() {
        let p = envelope()
            .prepare(json!({"eventType": "t", "_id": null}).into())
            .unwrap();
        let m: Value = serde_json::from_slice(&p.json).unwrap();
        let entity = &m["body"]["xdmEntity"];
        assert_eq!(entity["_id"], p.id.as_str());
        assert_eq!(uuid::Uuid::parse_str(&p.id).unwrap().get_version_num(), 4);
        let ts = entity["timestamp"].as_str().unwrap();
        let parsed = chrono::DateTime::parse_from_rfc3339(ts).unwrap();
        assert!((chrono::Utc::now() - parsed.to_utc()).num_seconds().abs() < 5);
        assert_eq!(
            m["header"]["schemaRef"],
            json!({"id": "https://ns.adobe.com/acme/schemas/web",
                   "contentType": "application/vnd.adobe.xed-full+json;version=2"})
        );
        assert_eq!(m["header"]["imsOrgId"], "ACME@AdobeOrg");
        assert!(m["header"].get("datasetId").is_none());
        assert!(m["header"]["createdAt"].as_i64().unwrap() > 0);
        assert_eq!(m["body"]["xdmMeta"]["schemaRef"], m["header"]["schemaRef"]);
    }

    #[test]
    fn keeps_what_the_caller_set_and_refuses_non_objects() {
        let p = envelope()
            .prepare(json!({"_id": "mine", "timestamp": 12}).into())
            .unwrap();
        let m: Value = serde_json::from_slice(&p.json).unwrap();
        assert_eq!(p.id, "mine");
        assert_eq!(m["body"]["xdmEntity"]["timestamp"], 12);
        let err = envelope().prepare(json!("text").into()).unwrap_err();
        assert!(
            matches!(&err, ClientError::InvalidEvent(m) if m.contains("a string")),
            "{err}"
        );
    }
}
