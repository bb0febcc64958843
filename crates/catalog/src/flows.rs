//! Destinations (seed 004, AEP's Flow Service API for streaming destinations): the records
//! behind `/connections`, `/sourceConnections`, `/targetConnections` and `/flows`, and the
//! connection specs they name.
//!
//! A dataflow reads the profile source (the "Unified Profile Service") and writes to a
//! destination:
//!
//! - a base [`Connection`] of a destination spec holds its credentials, sealed
//!   ([`crate::secrets`]: the catalog topic never holds a secret in clear);
//! - a [`SourceConnection`] on a base connection of the profile source spec;
//! - a [`TargetConnection`] on a destination's base connection says where inside it
//!   (a Kinesis stream, an event hub, a Kafka topic) and in which format;
//! - a [`Flow`] joins source and target connections; its `transformations` select the
//!   segments and profile attributes to export ([`Flow::segment_ids`],
//!   [`Flow::profile_paths`]).
//!
//! Keys: `connection/<id>`, `sourceConnection/<id>`, `targetConnection/<id>`, `flow/<id>`.
//! Every record belongs to one org and sandbox.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::secrets::{Sealed, SecretError, SecretKey};

/// Amazon Kinesis (destination).
pub const KINESIS_SPEC: &str = "86043421-563b-46ec-8e6c-e23184711bf6";
/// Azure Event Hubs (destination; spoken to over its Kafka endpoint).
pub const EVENT_HUBS_SPEC: &str = "bf9f5905-92b7-48bf-bf20-455bc6b60a4e";
/// A plain Kafka cluster (destination): this project's own, not an AEP spec.
pub const KAFKA_SPEC: &str = "2542d791-2c43-44f6-a95b-dc850edfd700";
/// The Unified Profile Service (source): the platform's profiles.
pub const PROFILE_SOURCE_SPEC: &str = "8a9c3494-9708-43d7-ae3f-cda01e5030e1";
/// The flow spec of profile-based destinations, the one flow spec there is.
pub const PROFILE_FLOW_SPEC: &str = "71471eba-b620-49e4-90fd-23f1fa0174d8";

/// The name of the one transformation a flow has.
pub const GENERAL_TRANSFORM: &str = "GeneralTransform";
/// `segmentSelectors.selectors[].type`.
pub const PLATFORM_SEGMENT: &str = "PLATFORM_SEGMENT";
/// `profileSelectors.selectors[].type`.
pub const JSON_PATH: &str = "JSON_PATH";
/// `profileSelectors.selectors[].value.operator`.
pub const EXISTS: &str = "EXISTS";
/// A flow's state when it exports (the only state a flow is created in).
pub const FLOW_ENABLED: &str = "enabled";
/// A flow that delivers nothing until it is enabled again.
pub const FLOW_DISABLED: &str = "disabled";
/// Target data formats.
pub const FORMAT_JSON: &str = "json";
pub const FORMAT_AVRO: &str = "avro";

/// The names of the params of the destination specs: `auth.params` of base connections (sealed)
/// and `params` of target connections.
pub mod param {
    /// Kinesis auth: the AWS access key id (kept sealed and never shown).
    pub const ACCESS_KEY_ID: &str = "accessKeyId";
    /// Kinesis auth: the AWS secret access key (secret).
    pub const SECRET_KEY: &str = "secretKey";
    /// Kinesis auth and target: the AWS region.
    pub const REGION: &str = "region";
    /// Kinesis auth, optional: an endpoint URL instead of AWS's for the region.
    pub const CONNECTION_URL: &str = "connectionUrl";
    /// Kinesis target: the data stream.
    pub const STREAM: &str = "stream";
    /// Event Hubs auth: the shared access policy's name.
    pub const SAS_KEY_NAME: &str = "sasKeyName";
    /// Event Hubs auth: the shared access key (secret).
    pub const SAS_KEY: &str = "sasKey";
    /// Event Hubs auth: the namespace (`<namespace>.servicebus.windows.net`).
    pub const NAMESPACE: &str = "namespace";
    /// Event Hubs auth, optional: a Kafka bootstrap instead of
    /// `<namespace>.servicebus.windows.net:9093` (for tests).
    pub const ENDPOINT: &str = "endpoint";
    /// Event Hubs target: the event hub.
    pub const EVENT_HUB_NAME: &str = "eventHubName";
    /// Kafka auth: the bootstrap servers (`host:port,…`).
    pub const BOOTSTRAP_SERVERS: &str = "bootstrapServers";
    /// Kafka auth, optional: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (then over TLS).
    pub const SASL_MECHANISM: &str = "saslMechanism";
    /// Kafka auth, optional: the SASL user name.
    pub const USERNAME: &str = "username";
    /// Kafka auth, optional: the SASL password (secret).
    pub const PASSWORD: &str = "password";
    /// Kafka target: the topic.
    pub const TOPIC: &str = "topic";
}

/// The SASL mechanisms a Kafka destination accepts.
pub const KAFKA_SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// Whether a spec reads from the platform or writes to a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpecCategory {
    Source,
    Destination,
}

/// The destinations there are, by spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestinationKind {
    Kinesis,
    EventHubs,
    Kafka,
}

impl DestinationKind {
    pub fn of_spec(spec_id: &str) -> Option<DestinationKind> {
        match spec_id {
            KINESIS_SPEC => Some(DestinationKind::Kinesis),
            EVENT_HUBS_SPEC => Some(DestinationKind::EventHubs),
            KAFKA_SPEC => Some(DestinationKind::Kafka),
            _ => None,
        }
    }

    pub fn spec_id(self) -> &'static str {
        match self {
            DestinationKind::Kinesis => KINESIS_SPEC,
            DestinationKind::EventHubs => EVENT_HUBS_SPEC,
            DestinationKind::Kafka => KAFKA_SPEC,
        }
    }
}

/// One param of a spec's `auth.params` or target `params`. All are strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: &'static str,
    pub required: bool,
    /// Never shown by the API (and, like every auth param, kept sealed).
    pub secret: bool,
    pub description: &'static str,
}

const fn required(name: &'static str, description: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        required: true,
        secret: false,
        description,
    }
}

const fn optional(name: &'static str, description: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        required: false,
        secret: false,
        description,
    }
}

const fn secret(p: ParamSpec) -> ParamSpec {
    ParamSpec { secret: true, ..p }
}

/// A connection spec: what `GET /connectionSpecs` lists, and what the API checks connections
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionSpec {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub category: SpecCategory,
    /// `auth.specName`; `None` for a spec without authentication (the profile source).
    pub auth_spec_name: Option<&'static str>,
    pub auth_params: &'static [ParamSpec],
    /// What a target connection of the spec names (empty for the source).
    pub target_params: &'static [ParamSpec],
    /// `data.format` a target (or source) connection may ask for; the first is the default.
    pub formats: &'static [&'static str],
}

impl ConnectionSpec {
    pub fn destination(&self) -> Option<DestinationKind> {
        DestinationKind::of_spec(self.id)
    }

    pub fn auth_param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.auth_params.iter().find(|p| p.name == name)
    }

    pub fn target_param(&self, name: &str) -> Option<&'static ParamSpec> {
        self.target_params.iter().find(|p| p.name == name)
    }
}

/// Every connection spec: the profile source and the three destinations.
pub const CONNECTION_SPECS: &[ConnectionSpec] = &[
    ConnectionSpec {
        id: PROFILE_SOURCE_SPEC,
        name: "Unified Profile Service",
        description: "The platform's profiles and their segment memberships: the source of every \
                      profile-based dataflow. Needs no authentication.",
        category: SpecCategory::Source,
        auth_spec_name: None,
        auth_params: &[],
        target_params: &[],
        formats: &[FORMAT_JSON],
    },
    ConnectionSpec {
        id: KINESIS_SPEC,
        name: "Amazon Kinesis",
        description: "Streams profiles to an Amazon Kinesis data stream.",
        category: SpecCategory::Destination,
        auth_spec_name: Some("Amazon Kinesis authentication credentials"),
        auth_params: &[
            secret(required(
                param::ACCESS_KEY_ID,
                "The access key id of an AWS identity allowed to put records to the stream.",
            )),
            secret(required(
                param::SECRET_KEY,
                "The secret access key of that identity.",
            )),
            required(
                param::REGION,
                "The AWS region of the stream, e.g. us-east-1.",
            ),
            optional(
                param::CONNECTION_URL,
                "An endpoint URL to use instead of AWS's for the region (e.g. a local Kinesis \
                 for tests).",
            ),
        ],
        target_params: &[
            required(
                param::STREAM,
                "The name of the existing Kinesis data stream.",
            ),
            required(param::REGION, "The AWS region of the stream."),
        ],
        formats: &[FORMAT_JSON],
    },
    ConnectionSpec {
        id: EVENT_HUBS_SPEC,
        name: "Azure Event Hubs",
        description: "Streams profiles to an Azure event hub (over its Kafka endpoint).",
        category: SpecCategory::Destination,
        auth_spec_name: Some("Azure Event Hubs authentication credentials"),
        auth_params: &[
            required(param::SAS_KEY_NAME, "The name of the shared access policy."),
            secret(required(
                param::SAS_KEY,
                "The shared access key of that policy.",
            )),
            required(
                param::NAMESPACE,
                "The Event Hubs namespace (<namespace>.servicebus.windows.net).",
            ),
            optional(
                param::ENDPOINT,
                "For tests: a plain Kafka bootstrap (host:port) instead of \
                 <namespace>.servicebus.windows.net:9093.",
            ),
        ],
        target_params: &[required(
            param::EVENT_HUB_NAME,
            "The name of the event hub in the namespace.",
        )],
        formats: &[FORMAT_JSON],
    },
    ConnectionSpec {
        id: KAFKA_SPEC,
        name: "Kafka",
        description: "Streams profiles to a topic of a Kafka cluster (this platform's own \
                      destination, not an AEP one).",
        category: SpecCategory::Destination,
        auth_spec_name: Some("Kafka authentication credentials"),
        auth_params: &[
            required(
                param::BOOTSTRAP_SERVERS,
                "The cluster's bootstrap servers, host:port[,host:port…].",
            ),
            optional(
                param::SASL_MECHANISM,
                "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (over TLS); absent: no authentication, \
                 plaintext.",
            ),
            optional(param::USERNAME, "The SASL user name."),
            secret(optional(param::PASSWORD, "The SASL password.")),
        ],
        target_params: &[required(param::TOPIC, "The topic profiles are written to.")],
        formats: &[FORMAT_JSON, FORMAT_AVRO],
    },
];

pub fn connection_spec(id: &str) -> Option<&'static ConnectionSpec> {
    CONNECTION_SPECS.iter().find(|s| s.id == id)
}

/// A base connection: a connection spec plus, for a destination, its credentials (sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub org_id: String,
    pub sandbox: String,
    pub connection_spec_id: String,
    /// `None` for the profile source (no authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ConnectionAuth>,
    /// Random, new on every change.
    #[serde(default)]
    pub etag: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// `auth` of a base connection: `params` sealed with the platform's [`SecretKey`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionAuth {
    /// `Amazon Kinesis authentication credentials`, …
    pub spec_name: String,
    pub sealed: Sealed,
}

/// What a connection's sealed params are bound to: its id and org. Copied onto another
/// connection, or into another org, they do not open.
pub fn auth_associated_data(connection_id: &str, org_id: &str) -> Vec<u8> {
    format!("cdp/connection-auth\0{connection_id}\0{org_id}").into_bytes()
}

impl ConnectionAuth {
    /// `params` sealed with `key` for connection `connection_id` of `org_id`.
    pub fn seal(
        spec_name: &str,
        params: &Map<String, Value>,
        key: &SecretKey,
        connection_id: &str,
        org_id: &str,
    ) -> Self {
        Self {
            spec_name: spec_name.to_string(),
            sealed: key.seal(params, &auth_associated_data(connection_id, org_id)),
        }
    }
}

impl Connection {
    /// The connection's `auth.params` in clear (every one, secrets included); `None` when it
    /// has no auth.
    pub fn open_auth(&self, key: &SecretKey) -> Result<Option<Map<String, Value>>, SecretError> {
        let associated = auth_associated_data(&self.id, &self.org_id);
        self.auth
            .as_ref()
            .map(|a| key.open(&a.sealed, &associated))
            .transpose()
    }

    /// This connection with its params sealed again by `key`'s current key, when another key
    /// (or none named) sealed them; `None` when there is nothing to do.
    pub fn resealed(&self, key: &SecretKey) -> Result<Option<Connection>, SecretError> {
        let Some(auth) = &self.auth else {
            return Ok(None);
        };
        if !key.needs_reseal(&auth.sealed) {
            return Ok(None);
        }
        let params = self.open_auth(key)?.unwrap_or_default();
        let mut again = self.clone();
        again.auth = Some(ConnectionAuth::seal(
            &auth.spec_name,
            &params,
            key,
            &self.id,
            &self.org_id,
        ));
        Ok(Some(again))
    }

    pub fn spec(&self) -> Option<&'static ConnectionSpec> {
        connection_spec(&self.connection_spec_id)
    }
}

/// A source connection: reads the platform's profiles, on a base connection of the
/// [`PROFILE_SOURCE_SPEC`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceConnection {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub org_id: String,
    pub sandbox: String,
    pub connection_spec_id: String,
    pub base_connection_id: String,
    /// `data.format`: `json`.
    pub format: String,
    /// As sent (`{}` in the seed).
    pub params: Value,
    #[serde(default)]
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A target connection: where inside a destination profiles go, and in which format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetConnection {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub org_id: String,
    pub sandbox: String,
    /// The base connection's spec.
    pub connection_spec_id: String,
    pub base_connection_id: String,
    /// `data.format`: [`FORMAT_JSON`], or [`FORMAT_AVRO`] for Kafka.
    pub format: String,
    /// Kinesis: `stream`, `region`; Event Hubs: `eventHubName`; Kafka: `topic` (strings).
    pub params: Map<String, Value>,
    #[serde(default)]
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TargetConnection {
    /// A string param (`stream`, `region`, `eventHubName`, `topic`).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }

    pub fn destination(&self) -> Option<DestinationKind> {
        DestinationKind::of_spec(&self.connection_spec_id)
    }
}

/// A record of the Flow Service API: it belongs to one org and sandbox, is found there by id,
/// and is listed oldest first (then by id).
pub trait Owned {
    fn id(&self) -> &str;
    fn org_id(&self) -> &str;
    fn sandbox(&self) -> &str;
    /// Unix milliseconds.
    fn created_at(&self) -> i64;

    /// Whether the record belongs to `org`'s `sandbox`.
    fn belongs_to(&self, org: &str, sandbox: &str) -> bool {
        self.org_id() == org && self.sandbox() == sandbox
    }
}

macro_rules! owned {
    ($($record:ty),+) => {$(
        impl Owned for $record {
            fn id(&self) -> &str {
                &self.id
            }
            fn org_id(&self) -> &str {
                &self.org_id
            }
            fn sandbox(&self) -> &str {
                &self.sandbox
            }
            fn created_at(&self) -> i64 {
                self.created_at
            }
        }
    )+};
}

owned!(Connection, SourceConnection, TargetConnection, Flow);

/// A dataflow from source connections to target connections: which segments' members, with
/// which profile attributes, are exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Flow {
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub org_id: String,
    pub sandbox: String,
    /// [`PROFILE_FLOW_SPEC`].
    pub flow_spec_id: String,
    pub source_connection_ids: Vec<String>,
    pub target_connection_ids: Vec<String>,
    /// The `transformations` array as created and patched: one `GeneralTransform` whose
    /// `params.segmentSelectors.selectors` and `params.profileSelectors.selectors` say what is
    /// exported ([`Flow::segment_ids`], [`Flow::profile_paths`]). Checked by the API on every
    /// change.
    pub transformations: Value,
    /// Random, new on every change; `If-Match` of a PATCH must name the current one.
    pub etag: String,
    /// [`FLOW_ENABLED`].
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Flow {
    /// What a new flow's `transformations` are: one `GeneralTransform` selecting nothing.
    pub fn initial_transformations() -> Value {
        serde_json::json!([{
            "name": GENERAL_TRANSFORM,
            "params": {
                "profileSelectors": {"selectors": []},
                "segmentSelectors": {"selectors": []},
            },
        }])
    }

    pub fn is_enabled(&self) -> bool {
        self.state == FLOW_ENABLED
    }

    fn selectors<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        selectors(&self.transformations, kind)
    }

    /// The ids of the segments the flow exports (`PLATFORM_SEGMENT` selectors), each once, in
    /// the order they were added.
    pub fn segment_ids(&self) -> Vec<String> {
        distinct(
            self.selectors("segmentSelectors")
                .filter(|s| s.get("type").and_then(Value::as_str) == Some(PLATFORM_SEGMENT))
                .filter_map(|s| s.pointer("/value/id").and_then(Value::as_str)),
        )
    }

    /// The profile attributes the flow exports (paths of `JSON_PATH` `EXISTS` selectors, e.g.
    /// `personalEmail.address`), each once, in the order they were added.
    pub fn profile_paths(&self) -> Vec<String> {
        profile_paths(&self.transformations)
    }
}

/// The selectors of one kind (`segmentSelectors` or `profileSelectors`) over every
/// transformation of `transformations`, in order.
fn selectors<'a>(
    transformations: &'a Value,
    kind: &'a str,
) -> impl Iterator<Item = &'a Value> + 'a {
    transformations
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(move |t| t.pointer(&format!("/params/{kind}/selectors")))
        .filter_map(Value::as_array)
        .flatten()
}

/// The profile attributes `transformations` select (paths of `JSON_PATH` `EXISTS` selectors),
/// each once, in the order they were added: [`Flow::profile_paths`], before there is a flow.
pub fn profile_paths(transformations: &Value) -> Vec<String> {
    distinct(
        selectors(transformations, "profileSelectors")
            .filter(|s| s.get("type").and_then(Value::as_str) == Some(JSON_PATH))
            .filter(|s| s.pointer("/value/operator").and_then(Value::as_str) == Some(EXISTS))
            .filter_map(|s| s.pointer("/value/path").and_then(Value::as_str)),
    )
}

fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !item.is_empty() && !out.iter().any(|o| o == item) {
            out.push(item.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flow(transformations: Value) -> Flow {
        Flow {
            id: "f".into(),
            name: "n".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            flow_spec_id: PROFILE_FLOW_SPEC.into(),
            source_connection_ids: vec!["s".into()],
            target_connection_ids: vec!["t".into()],
            transformations,
            etag: "e".into(),
            state: FLOW_ENABLED.into(),
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn a_new_flow_selects_nothing() {
        let f = flow(Flow::initial_transformations());
        assert!(f.segment_ids().is_empty());
        assert!(f.profile_paths().is_empty());
        assert!(f.is_enabled());
    }

    #[test]
    fn a_record_belongs_to_its_org_and_sandbox() {
        let f = flow(Flow::initial_transformations());
        assert_eq!((f.id(), f.created_at()), ("f", 1));
        assert!(f.belongs_to("o", "prod"));
        assert!(!f.belongs_to("o", "dev"));
        assert!(!f.belongs_to("other", "prod"));
    }

    #[test]
    fn selectors_are_read_from_the_transformations() {
        let segment = |id: &str| json!({"type": "PLATFORM_SEGMENT", "value": {"name": "x", "description": "", "id": id}});
        let path =
            |p: &str, op: &str| json!({"type": "JSON_PATH", "value": {"operator": op, "path": p}});
        let f = flow(json!([{
            "name": "GeneralTransform",
            "params": {
                "segmentSelectors": {"selectors": [segment("a"), segment("b"), segment("a"),
                                                   {"type": "OTHER", "value": {"id": "c"}}]},
                "profileSelectors": {"selectors": [path("personalEmail.address", "EXISTS"),
                                                   path("person.lastName", "EXISTS"),
                                                   path("person.firstName", "EQUALS")]},
            },
        }]));
        assert_eq!(f.segment_ids(), vec!["a", "b"]);
        assert_eq!(
            f.profile_paths(),
            vec!["personalEmail.address", "person.lastName"]
        );
        // Nothing of the right shape: nothing selected, no panic.
        assert!(flow(json!({"x": 1})).segment_ids().is_empty());
        assert!(flow(json!([1, {"params": 2}])).profile_paths().is_empty());
    }

    #[test]
    fn specs_are_found_by_id() {
        assert_eq!(
            connection_spec(KINESIS_SPEC).unwrap().name,
            "Amazon Kinesis"
        );
        assert_eq!(
            connection_spec(PROFILE_SOURCE_SPEC).unwrap().category,
            SpecCategory::Source
        );
        assert!(connection_spec(PROFILE_FLOW_SPEC).is_none());
        for spec in CONNECTION_SPECS {
            assert_eq!(
                spec.destination().is_some(),
                spec.category == SpecCategory::Destination
            );
            if let Some(kind) = spec.destination() {
                assert_eq!(kind.spec_id(), spec.id);
                assert!(!spec.target_params.is_empty());
                assert!(spec.auth_spec_name.is_some());
            }
        }
        let kinesis = connection_spec(KINESIS_SPEC).unwrap();
        assert!(kinesis.auth_param(param::SECRET_KEY).unwrap().secret);
        assert!(!kinesis.auth_param(param::REGION).unwrap().secret);
        assert!(!kinesis.auth_param(param::CONNECTION_URL).unwrap().required);
        let hubs = connection_spec(EVENT_HUBS_SPEC).unwrap();
        assert!(hubs.auth_param(param::SAS_KEY).unwrap().secret);
        assert!(hubs.target_param(param::EVENT_HUB_NAME).unwrap().required);
        let kafka = connection_spec(KAFKA_SPEC).unwrap();
        assert!(kafka.formats.contains(&FORMAT_AVRO));
        assert!(kafka.auth_param(param::PASSWORD).unwrap().secret);
    }

    #[test]
    fn a_connection_opens_its_auth_with_the_key() {
        let key = SecretKey::development();
        let params = json!({"sasKeyName": "send", "sasKey": "k3y", "namespace": "ns"});
        let c = Connection {
            id: "c".into(),
            name: "hubs".into(),
            description: None,
            org_id: "o".into(),
            sandbox: "prod".into(),
            connection_spec_id: EVENT_HUBS_SPEC.into(),
            auth: Some(ConnectionAuth::seal(
                "Azure Event Hubs authentication credentials",
                params.as_object().unwrap(),
                &key,
                "c",
                "o",
            )),
            etag: "e".into(),
            created_at: 1,
            updated_at: 1,
        };
        assert_eq!(
            c.open_auth(&key).unwrap().map(Value::Object),
            Some(params.clone())
        );
        assert!(!serde_json::to_string(&c).unwrap().contains("k3y"));
        assert!(matches!(
            c.open_auth(&SecretKey::from_bytes([1; 32])).unwrap_err(),
            SecretError::UnknownKey { .. }
        ));
        assert_eq!(
            c.spec().unwrap().destination(),
            Some(DestinationKind::EventHubs)
        );
        // The sealed params of one connection, copied onto another or into another org, do
        // not open.
        let copied = Connection {
            id: "other".into(),
            ..c.clone()
        };
        assert_eq!(copied.open_auth(&key).unwrap_err(), SecretError::WrongKey);
        let moved = Connection {
            org_id: "another org".into(),
            ..c.clone()
        };
        assert_eq!(moved.open_auth(&key).unwrap_err(), SecretError::WrongKey);

        // Rotation: the new key opens the old sealing, and reseals it once.
        let new = SecretKey::from_bytes([5; 32]).with_previous([key.clone()]);
        let resealed = c.resealed(&new).unwrap().expect("sealed by the old key");
        assert_eq!(
            resealed.auth.as_ref().unwrap().sealed.key_id,
            Some(new.id())
        );
        assert_eq!(
            resealed
                .open_auth(&SecretKey::from_bytes([5; 32]))
                .unwrap()
                .map(Value::Object),
            Some(params)
        );
        assert_eq!(resealed.resealed(&new).unwrap(), None);
    }
}
