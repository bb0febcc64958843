//! What the catalog holds: streaming connections, API keys, XDM schema versions and datasets, as
//! they are stored in the catalog topic and shown by the APIs (camelCase JSON).

use serde::{Deserialize, Serialize};

/// The one payload type a stream accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayloadType {
    #[default]
    Json,
    Xml,
}

/// `schemaRef` as in XDM message headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchemaRef {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
}

/// A streaming connection (an "inlet"): where events are posted and how they are checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stream {
    /// Also the connection id and inlet id in the collection URLs.
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub org_id: String,
    pub sandbox: String,
    pub payload_type: PayloadType,
    pub authentication_required: bool,
    /// Requests per second allowed on this stream (burst of one second); `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_ref: Option<SchemaRef>,
    pub created_at: i64,
}

/// An API key: its secret is shown once, only a SHA-256 of it is stored. `generation` grows on
/// every rotation; tokens carry the generation they were issued under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub secret_sha256: String,
    pub generation: u32,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<i64>,
}

/// How a dataset's valid events are encoded on `events.valid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ValueFormat {
    /// The XDM entity as JSON (the default: readable with any tool).
    #[default]
    Json,
    /// Avro in the Confluent wire format (magic byte + schema id), schema in the registry.
    Avro,
}

/// One version of an XDM schema: a class, field groups and tenant fields, resolved into one
/// JSON Schema (draft 2020-12). A version is immutable once a dataset uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct XdmSchema {
    /// `https://ns.adobe.com/{tenant}/schemas/{name}`, the `schemaRef.id` of messages.
    pub id: String,
    /// 1, 2, … (`application/vnd.adobe.xed-full+json;version=N`).
    pub version: u32,
    pub title: String,
    pub tenant: String,
    /// `_xdm.context.experienceevent` or `_xdm.context.profile`.
    pub class: String,
    pub field_groups: Vec<String>,
    /// The "union" tag: events of this schema may hydrate profiles.
    pub profile_enabled: bool,
    /// The resolved JSON Schema every event body (`xdmEntity`) is validated against.
    pub definition: serde_json::Value,
    pub created_at: i64,
}

/// A dataset: where events of one schema land (Parquet) and whether they feed profiles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    pub id: String,
    pub name: String,
    pub org_id: String,
    pub schema_id: String,
    pub schema_version: u32,
    pub profile_enabled: bool,
    #[serde(default)]
    pub format: ValueFormat,
    pub created_at: i64,
}

/// One value in the catalog topic. The key is `<kind>/<id>`; a tombstone (null value) deletes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum CatalogRecord {
    Stream(Stream),
    ApiKey(ApiKey),
    Schema(XdmSchema),
    Dataset(Dataset),
}

impl CatalogRecord {
    pub fn key(&self) -> String {
        match self {
            CatalogRecord::Stream(s) => stream_key(&s.id),
            CatalogRecord::ApiKey(k) => api_key_key(&k.id),
            CatalogRecord::Schema(s) => schema_key(&s.id, s.version),
            CatalogRecord::Dataset(d) => dataset_key(&d.id),
        }
    }
}

pub fn schema_key(id: &str, version: u32) -> String {
    format!("schema/{id}@{version}")
}

pub fn dataset_key(id: &str) -> String {
    format!("dataset/{id}")
}

pub fn stream_key(id: &str) -> String {
    format!("stream/{id}")
}

pub fn api_key_key(id: &str) -> String {
    format!("apiKey/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_with_kind_tag() {
        let r = CatalogRecord::ApiKey(ApiKey {
            id: "k1".into(),
            name: "n".into(),
            org_id: "o".into(),
            secret_sha256: "h".into(),
            generation: 2,
            created_at: 1,
            rotated_at: None,
        });
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["kind"], "apiKey");
        assert_eq!(json["orgId"], "o");
        let back: CatalogRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.key(), "apiKey/k1");
    }
}
