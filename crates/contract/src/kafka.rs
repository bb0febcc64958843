//! How every Kafka client of the pipeline is configured, so the delivery guarantees are the
//! same in every stage: idempotent producers with acks=all, read_committed consumers, and
//! short session timeouts (tansu otherwise delays the first group join by ~20 s).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// `host:port[,host:port…]`. Empty means "start the development broker" for `cdp up`.
    pub bootstrap_servers: String,
    /// Consumer group session timeout; seconds, not the Kafka default of 45 s, so a restarted
    /// stage gets its partitions back quickly.
    pub session_timeout_ms: u32,
    /// How long a consumer's fetch may wait at the broker for data. Kafka answers as soon as
    /// data arrives; tansu holds the fetch for the whole time, which then adds to every hop's
    /// latency (librdkafka's default is 500 ms). Short costs a few idle requests a second.
    pub fetch_wait_max_ms: u32,
    /// Extra librdkafka properties (SASL, TLS, compression…), passed through verbatim.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: String::new(),
            session_timeout_ms: 6000,
            fetch_wait_max_ms: 25,
            properties: BTreeMap::new(),
        }
    }
}

impl KafkaSettings {
    pub fn with_bootstrap(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap.into(),
            ..Self::default()
        }
    }

    fn base(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// An idempotent producer that only reports a write once every in-sync replica has it.
    /// `delivery_timeout_ms` bounds how long a send may wait for the broker.
    pub fn producer(&self, client_id: &str, delivery_timeout_ms: u32) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", delivery_timeout_ms.to_string())
            .set("linger.ms", "2");
        // User properties win over our defaults, except the guarantees above.
        for (k, v) in &self.properties {
            if !matches!(k.as_str(), "enable.idempotence" | "acks") {
                c.set(k, v);
            }
        }
        c
    }

    /// A transactional producer for consume → transform → produce stages.
    pub fn transactional_producer(&self, client_id: &str, transactional_id: &str) -> ClientConfig {
        let mut c = self.producer(client_id, 30_000);
        c.set("transactional.id", transactional_id);
        c
    }

    /// A group consumer that only sees committed data and commits offsets explicitly.
    pub fn consumer(&self, client_id: &str, group_id: &str) -> ClientConfig {
        let mut c = self.base(client_id);
        c.set("group.id", group_id)
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 3).to_string(),
            );
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// A consumer that reads partitions it assigns itself (no group membership), e.g. to follow
    /// the catalog from the beginning.
    pub fn reader(&self, client_id: &str) -> ClientConfig {
        let mut c = self.consumer(client_id, &format!("{client_id}-reader"));
        c.set("enable.partition.eof", "false");
        c
    }

    pub fn admin(&self, client_id: &str) -> ClientConfig {
        self.base(client_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_keeps_guarantees_over_user_properties() {
        let mut s = KafkaSettings::with_bootstrap("127.0.0.1:9092");
        s.properties.insert("acks".into(), "1".into());
        s.properties.insert("compression.type".into(), "lz4".into());
        let c = s.producer("t", 5000);
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("message.timeout.ms"), Some("5000"));
    }

    #[test]
    fn consumer_reads_committed() {
        let c = KafkaSettings::with_bootstrap("b:1").consumer("t", "g");
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
    }
}
