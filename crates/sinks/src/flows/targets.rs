//! From the catalog to a destination client: a flow's target connection, its base
//! connection's credentials (opened with the secret key) and the delivery settings.

use cdp_catalog::flows::{param, DestinationKind, TargetConnection, FORMAT_AVRO, FORMAT_JSON};
use cdp_catalog::{CatalogState, SecretKey};
use serde_json::{Map, Value};

use crate::delivery::{
    DeliveryError, Destination, EventHubsTarget, KafkaSecurity, KafkaTarget, KinesisTarget,
    RetryPolicy, SaslCredentials, SaslMechanism, Secret,
};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target connection {0} does not exist")]
    NoTarget(String),
    #[error("base connection {0} of the target connection does not exist")]
    NoConnection(String),
    #[error("target connection {0} is not of a destination spec this stage delivers to")]
    NotDestination(String),
    #[error("cannot open the connection's credentials (is sinks.secret_key control's key?): {0}")]
    Secrets(#[from] cdp_catalog::SecretError),
    #[error("the connection lacks `{0}`")]
    Missing(&'static str),
    #[error("data format `{0}` is not delivered to this destination; use json")]
    Format(String),
    #[error("unknown SASL mechanism `{0}`")]
    Mechanism(String),
    #[error(transparent)]
    Client(#[from] DeliveryError),
}

/// What a worker delivers to, and what identifies its configuration: a change of the flow,
/// the target or its base connection restarts the worker.
pub struct Resolved {
    pub destination: Destination,
    /// `Amazon Kinesis`, `Azure Event Hubs`, `Kafka`.
    pub name: &'static str,
    /// The destination topic, when exports go there in Avro (`data.format: avro`, Kafka only).
    pub avro_topic: Option<String>,
}

/// The etags that, changed, mean a target must be set up again.
pub fn fingerprint(state: &CatalogState, flow_etag: &str, target_id: &str) -> String {
    let target = state.target_connections.get(target_id);
    let connection = target.and_then(|t| state.connections.get(&t.base_connection_id));
    format!(
        "{flow_etag}/{}/{}",
        target.map_or("", |t| t.etag.as_str()),
        connection.map_or("", |c| c.etag.as_str())
    )
}

pub fn resolve(
    state: &CatalogState,
    key: &SecretKey,
    target_id: &str,
    policy: RetryPolicy,
) -> Result<Resolved, TargetError> {
    let target = state
        .target_connections
        .get(target_id)
        .ok_or_else(|| TargetError::NoTarget(target_id.to_string()))?;
    let connection = state
        .connections
        .get(&target.base_connection_id)
        .ok_or_else(|| TargetError::NoConnection(target.base_connection_id.clone()))?;
    let auth = connection.open_auth(key)?.unwrap_or_default();
    let kind = target
        .destination()
        .ok_or_else(|| TargetError::NotDestination(target_id.to_string()))?;
    let avro = match (kind, target.format.as_str()) {
        (_, FORMAT_JSON) => false,
        (DestinationKind::Kafka, FORMAT_AVRO) => true,
        (_, other) => return Err(TargetError::Format(other.to_string())),
    };
    Ok(match kind {
        DestinationKind::Kinesis => Resolved {
            destination: Destination::kinesis(kinesis(target, &auth)?, policy)?,
            name: "Amazon Kinesis",
            avro_topic: None,
        },
        DestinationKind::EventHubs => Resolved {
            destination: Destination::event_hubs(&event_hubs(target, &auth)?, policy)?,
            name: "Azure Event Hubs",
            avro_topic: None,
        },
        DestinationKind::Kafka => {
            let target = kafka(target, &auth)?;
            Resolved {
                avro_topic: avro.then(|| target.topic.clone()),
                destination: Destination::kafka(target, policy)?,
                name: "Kafka",
            }
        }
    })
}

fn text<'a>(params: &'a Map<String, Value>, name: &'static str) -> Option<&'a str> {
    params
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn required<'a>(
    params: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, TargetError> {
    text(params, name).ok_or(TargetError::Missing(name))
}

fn kinesis(
    target: &TargetConnection,
    auth: &Map<String, Value>,
) -> Result<KinesisTarget, TargetError> {
    let region = target
        .param(param::REGION)
        .or_else(|| text(auth, param::REGION))
        .ok_or(TargetError::Missing(param::REGION))?;
    Ok(KinesisTarget {
        stream: target
            .param(param::STREAM)
            .ok_or(TargetError::Missing(param::STREAM))?
            .to_string(),
        region: region.to_string(),
        endpoint: text(auth, param::CONNECTION_URL).map(str::to_string),
        access_key_id: required(auth, param::ACCESS_KEY_ID)?.to_string(),
        secret_key: Secret::new(required(auth, param::SECRET_KEY)?),
    })
}

fn event_hubs(
    target: &TargetConnection,
    auth: &Map<String, Value>,
) -> Result<EventHubsTarget, TargetError> {
    Ok(EventHubsTarget {
        namespace: required(auth, param::NAMESPACE)?.to_string(),
        sas_key_name: required(auth, param::SAS_KEY_NAME)?.to_string(),
        sas_key: Secret::new(required(auth, param::SAS_KEY)?),
        event_hub_name: target
            .param(param::EVENT_HUB_NAME)
            .ok_or(TargetError::Missing(param::EVENT_HUB_NAME))?
            .to_string(),
        endpoint: text(auth, param::ENDPOINT).map(str::to_string),
    })
}

fn kafka(target: &TargetConnection, auth: &Map<String, Value>) -> Result<KafkaTarget, TargetError> {
    let security = match text(auth, param::SASL_MECHANISM) {
        None => KafkaSecurity::Plaintext,
        Some(m) => {
            let mechanism = match m {
                "PLAIN" => SaslMechanism::Plain,
                "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                other => return Err(TargetError::Mechanism(other.to_string())),
            };
            KafkaSecurity::SaslSsl(SaslCredentials {
                mechanism,
                username: required(auth, param::USERNAME)?.to_string(),
                password: Secret::new(required(auth, param::PASSWORD)?),
            })
        }
    };
    let mut out = KafkaTarget::new(
        required(auth, param::BOOTSTRAP_SERVERS)?,
        target
            .param(param::TOPIC)
            .ok_or(TargetError::Missing(param::TOPIC))?,
    );
    out.security = security;
    Ok(out)
}
