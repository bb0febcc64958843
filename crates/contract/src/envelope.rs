//! The headers that travel with every message on the raw topic, so later stages know where an
//! event came from without parsing its body.

use rdkafka::message::{Header, Headers, OwnedHeaders};

pub const STREAM_ID: &str = "cdp-stream-id";
pub const ORG_ID: &str = "cdp-org-id";
pub const SANDBOX: &str = "cdp-sandbox";
pub const BATCH_ID: &str = "cdp-batch-id";
pub const XACTION_ID: &str = "cdp-xaction-id";
pub const RECEIVED_MS: &str = "cdp-received-ms";
pub const CONTENT_TYPE: &str = "content-type";
/// `collection` (an XDM `{header, body}` message) or `stream` (a plain record).
pub const SOURCE: &str = "cdp-source";

// Added by validation on events.valid and events.error (besides the raw headers above).
/// The dataset the event belongs to.
pub const DATASET_ID: &str = "cdp-dataset-id";
/// The XDM schema id (`https://ns.adobe.com/{tenant}/schemas/{id}`) it was validated against.
pub const SCHEMA_ID: &str = "cdp-schema-id";
/// The XDM schema version it was validated against.
pub const SCHEMA_VERSION: &str = "cdp-schema-version";
/// `json` (the value is the XDM entity as JSON) or `avro` (Confluent wire format).
pub const VALUE_FORMAT: &str = "cdp-value-format";
/// `partition:offset` of the raw event an output came from. Lineage for people, and what the
/// validate stage's recovery reads to learn which raw events already have their output.
pub const RAW_POSITION: &str = "cdp-raw-position";
/// The validate consumer group (pipeline) that wrote an output: recovery counts only its own.
pub const VALIDATE_GROUP: &str = "cdp-validate-group";

/// Which endpoint a raw message came through; it decides how the value is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An XDM message `{header, body}` from `/collection/...`.
    Collection,
    /// A plain JSON record from `/stream/v0/data/...` (XML records are converted to JSON).
    Stream,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Collection => "collection",
            Source::Stream => "stream",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "collection" => Some(Source::Collection),
            "stream" => Some(Source::Stream),
            _ => None,
        }
    }
}

/// Provenance of one raw event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeaders {
    pub stream_id: String,
    pub org_id: String,
    pub sandbox: String,
    pub batch_id: String,
    pub xaction_id: String,
    pub received_ms: i64,
    /// The content type the client sent (`application/json`, `application/xml`).
    pub content_type: String,
    pub source: Source,
}

impl RawHeaders {
    pub fn to_kafka(&self) -> OwnedHeaders {
        let received = self.received_ms.to_string();
        OwnedHeaders::new_with_capacity(8)
            .insert(header(STREAM_ID, &self.stream_id))
            .insert(header(ORG_ID, &self.org_id))
            .insert(header(SANDBOX, &self.sandbox))
            .insert(header(BATCH_ID, &self.batch_id))
            .insert(header(XACTION_ID, &self.xaction_id))
            .insert(header(RECEIVED_MS, &received))
            .insert(header(CONTENT_TYPE, &self.content_type))
            .insert(header(SOURCE, self.source.as_str()))
    }

    /// Reads the headers back; `None` when one is missing or not UTF-8 (a message that did not
    /// come from the edge).
    pub fn from_kafka<H: Headers>(headers: &H) -> Option<Self> {
        let get = |name: &str| -> Option<String> {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        };
        Some(Self {
            stream_id: get(STREAM_ID)?,
            org_id: get(ORG_ID)?,
            sandbox: get(SANDBOX)?,
            batch_id: get(BATCH_ID)?,
            xaction_id: get(XACTION_ID)?,
            received_ms: get(RECEIVED_MS)?.parse().ok()?,
            content_type: get(CONTENT_TYPE)?,
            source: Source::parse(&get(SOURCE)?)?,
        })
    }
}

fn header<'a>(key: &'a str, value: &'a str) -> Header<'a, &'a str> {
    Header {
        key,
        value: Some(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let h = RawHeaders {
            stream_id: "s1".into(),
            org_id: "ORG@AdobeOrg".into(),
            sandbox: "prod".into(),
            batch_id: "1:2:3".into(),
            xaction_id: "1:2:3:0".into(),
            received_ms: 1_700_000_000_000,
            content_type: "application/json".into(),
            source: Source::Collection,
        };
        assert_eq!(RawHeaders::from_kafka(&h.to_kafka()), Some(h));
    }

    #[test]
    fn missing_header_is_none() {
        let only = OwnedHeaders::new().insert(header(STREAM_ID, "s1"));
        assert_eq!(RawHeaders::from_kafka(&only), None);
    }
}
