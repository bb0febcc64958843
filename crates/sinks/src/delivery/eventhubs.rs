//! Azure Event Hubs through the namespace's Kafka endpoint: a [`KafkaTarget`] built from the
//! destination's `namespace`, `sasKeyName`, `sasKey` and `eventHubName`.
//!
//! Production: `<namespace>.servicebus.windows.net:9093`, `SASL_SSL` with mechanism `PLAIN`,
//! user `$ConnectionString` and the namespace's connection string as password, the event hub as
//! the topic. `endpoint` (tests) replaces the bootstrap address and connects in plaintext without
//! SASL — the one difference from production.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{KafkaSecurity, KafkaTarget, SaslCredentials, SaslMechanism, Secret};

/// The largest message Event Hubs takes through its Kafka endpoint (key, value and overhead).
pub const EVENT_HUBS_MAX_MESSAGE_BYTES: usize = 1_046_528;
/// Microsoft asks for a request timeout of at least 20 s; its samples use 60 s.
const EVENT_HUBS_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const EVENT_HUBS_DOMAIN: &str = "servicebus.windows.net";
const EVENT_HUBS_PORT: u16 = 9093;

/// An event hub to deliver to. `Debug` hides the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubsTarget {
    /// The namespace's name (`contoso`), or its host name for clouds with another domain
    /// (`contoso.servicebus.chinacloudapi.cn`).
    pub namespace: String,
    pub sas_key_name: String,
    pub sas_key: Secret,
    pub event_hub_name: String,
    /// A Kafka bootstrap address that replaces the namespace's, reached in plaintext (tests).
    pub endpoint: Option<String>,
}

impl EventHubsTarget {
    /// The namespace's host: `<namespace>.servicebus.windows.net`, or `namespace` as given when
    /// it is already a host name (an `sb://` prefix and a trailing `/` are dropped).
    pub fn host(&self) -> String {
        let ns = self.namespace.trim();
        let ns = ns.strip_prefix("sb://").unwrap_or(ns);
        let ns = ns.trim_end_matches('/');
        if ns.contains('.') {
            ns.to_string()
        } else {
            format!("{ns}.{EVENT_HUBS_DOMAIN}")
        }
    }

    /// `Endpoint=sb://<host>/;SharedAccessKeyName=<name>;SharedAccessKey=<key>`: the SASL
    /// password.
    pub fn connection_string(&self) -> Secret {
        Secret::new(format!(
            "Endpoint=sb://{}/;SharedAccessKeyName={};SharedAccessKey={}",
            self.host(),
            self.sas_key_name.trim(),
            self.sas_key.expose().trim()
        ))
    }

    /// The Kafka target for this event hub.
    pub fn kafka_target(&self) -> KafkaTarget {
        let (bootstrap_servers, security) = match &self.endpoint {
            Some(endpoint) => (endpoint.trim().to_string(), KafkaSecurity::Plaintext),
            None => (
                format!("{}:{EVENT_HUBS_PORT}", self.host()),
                KafkaSecurity::SaslSsl(SaslCredentials {
                    mechanism: SaslMechanism::Plain,
                    username: "$ConnectionString".into(),
                    password: self.connection_string(),
                }),
            ),
        };
        // Microsoft's recommendations for librdkafka: keep connections alive (the service
        // closes idle ones after 240 s) and refresh metadata before it does.
        let properties = BTreeMap::from([
            ("socket.keepalive.enable".to_string(), "true".to_string()),
            ("metadata.max.age.ms".to_string(), "180000".to_string()),
            ("connections.max.idle.ms".to_string(), "180000".to_string()),
        ]);
        KafkaTarget {
            bootstrap_servers,
            topic: self.event_hub_name.trim().to_string(),
            security,
            max_message_bytes: EVENT_HUBS_MAX_MESSAGE_BYTES,
            request_timeout: EVENT_HUBS_REQUEST_TIMEOUT,
            properties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{KafkaClient, RetryPolicy};

    fn target() -> EventHubsTarget {
        EventHubsTarget {
            namespace: "contoso".into(),
            sas_key_name: "RootManageSharedAccessKey".into(),
            sas_key: Secret::new("c2VjcmV0LWtleQ=="),
            event_hub_name: "profiles".into(),
            endpoint: None,
        }
    }

    #[test]
    fn production_config_is_sasl_ssl_plain_with_the_connection_string() {
        let c = target()
            .kafka_target()
            .client_config(&RetryPolicy::default());
        assert_eq!(
            c.get("bootstrap.servers"),
            Some("contoso.servicebus.windows.net:9093")
        );
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("PLAIN"));
        assert_eq!(c.get("sasl.username"), Some("$ConnectionString"));
        assert_eq!(
            c.get("sasl.password"),
            Some(
                "Endpoint=sb://contoso.servicebus.windows.net/;\
                 SharedAccessKeyName=RootManageSharedAccessKey;\
                 SharedAccessKey=c2VjcmV0LWtleQ=="
            )
        );
        assert_eq!(c.get("request.timeout.ms"), Some("60000"));
        assert_eq!(c.get("message.max.bytes"), Some("1046528"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("socket.keepalive.enable"), Some("true"));
        assert_eq!(c.get("metadata.max.age.ms"), Some("180000"));
        assert_eq!(target().kafka_target().topic, "profiles");
    }

    #[test]
    fn the_endpoint_override_is_plaintext_without_sasl() {
        let t = EventHubsTarget {
            endpoint: Some("127.0.0.1:19092".into()),
            ..target()
        };
        let c = t.kafka_target().client_config(&RetryPolicy::default());
        assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:19092"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("sasl.mechanism"), None);
        assert_eq!(c.get("sasl.password"), None);
        // Everything else is as in production.
        assert_eq!(c.get("request.timeout.ms"), Some("60000"));
        assert_eq!(c.get("message.max.bytes"), Some("1046528"));
    }

    #[test]
    fn namespaces_given_as_host_names_are_kept() {
        for ns in [
            "contoso.servicebus.chinacloudapi.cn",
            "sb://contoso.servicebus.chinacloudapi.cn/",
        ] {
            let t = EventHubsTarget {
                namespace: ns.into(),
                ..target()
            };
            assert_eq!(t.host(), "contoso.servicebus.chinacloudapi.cn");
        }
    }

    #[test]
    fn no_debug_output_shows_the_key() {
        let t = target();
        for debug in [
            format!("{t:?}"),
            format!("{:?}", t.kafka_target()),
            format!("{:?}", t.connection_string()),
        ] {
            assert!(!debug.contains("c2VjcmV0LWtleQ"), "{debug}");
        }
    }

    /// librdkafka takes the production configuration: it is built with SSL, so `sasl_ssl` is
    /// usable. (The bootstrap address is a closed loopback port, so nothing leaves the machine.)
    #[tokio::test]
    async fn librdkafka_accepts_sasl_ssl() {
        let mut kafka = target().kafka_target();
        kafka.bootstrap_servers = "127.0.0.1:1".into();
        let client = KafkaClient::new(kafka, RetryPolicy::default());
        assert!(client.is_ok(), "{:?}", client.err());
    }
}
