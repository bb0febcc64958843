//! A Kafka topic (and, through [`EventHubsTarget`](super::EventHubsTarget), an Azure event hub):
//! an idempotent librdkafka producer (`enable.idempotence=true`, `acks=all`), the partition key
//! as the message key.
//!
//! librdkafka's idempotent producer does the retrying: in order, without duplicates, within
//! `message.timeout.ms` (the [`RetryPolicy`] deadline). A delivery returns once every message is
//! acknowledged by all in-sync replicas. A message over `message.max.bytes` is rejected (also
//! when the broker's own limit is lower and it says so); a SASL authentication failure ends the
//! delivery at once as a permanent error instead of waiting for the message timeout.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer, PurgeConfig};
use tokio::sync::watch;

use super::{
    pending_tail, Deliver, DeliveryError, DeliveryReport, ErrorKind, Fate, OutRecord, Rejected,
    RetryPolicy, Secret,
};

/// librdkafka's default `message.max.bytes`, and Kafka's usual broker limit.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The message timeout when the policy has no deadline.
const DEFAULT_MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);

/// A Kafka topic to deliver to.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaTarget {
    pub bootstrap_servers: String,
    pub topic: String,
    pub security: KafkaSecurity,
    /// `message.max.bytes`: a larger message (key, value and record overhead) is rejected.
    pub max_message_bytes: usize,
    /// `request.timeout.ms`.
    pub request_timeout: Duration,
    /// Further librdkafka settings (`ssl.ca.location`, `linger.ms`, …). They are applied first:
    /// the delivery guarantees and the security settings above cannot be overridden.
    pub properties: BTreeMap<String, String>,
}

/// How to connect and authenticate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KafkaSecurity {
    /// `security.protocol=plaintext`.
    Plaintext,
    /// `security.protocol=ssl`: TLS, no SASL.
    Ssl,
    /// `security.protocol=sasl_plaintext`.
    SaslPlaintext(SaslCredentials),
    /// `security.protocol=sasl_ssl`: what Event Hubs and most managed Kafka take.
    SaslSsl(SaslCredentials),
}

/// SASL user and password; `Debug` hides the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    /// The `sasl.mechanism` value.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl KafkaTarget {
    /// A plaintext target with the defaults: 1,000,000-byte messages, 30 s request timeout.
    pub fn new(bootstrap_servers: impl Into<String>, topic: impl Into<String>) -> KafkaTarget {
        KafkaTarget {
            bootstrap_servers: bootstrap_servers.into(),
            topic: topic.into(),
            security: KafkaSecurity::Plaintext,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            properties: BTreeMap::new(),
        }
    }

    /// The producer's librdkafka configuration. It holds the SASL password: never log it.
    pub fn client_config(&self, policy: &RetryPolicy) -> ClientConfig {
        let mut c = ClientConfig::new();
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        let ms = |d: Duration| d.as_millis().min(i32::MAX as u128).to_string();
        let backoff = policy
            .initial
            .clamp(Duration::from_millis(1), Duration::from_secs(300));
        let backoff_max = policy.max.clamp(backoff, Duration::from_secs(300));
        let message_timeout = policy
            .deadline_or(DEFAULT_MESSAGE_TIMEOUT)
            .max(self.request_timeout)
            .max(Duration::from_secs(1));
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", "cdp-sinks")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set("message.max.bytes", self.max_message_bytes.to_string())
            .set("request.timeout.ms", ms(self.request_timeout))
            .set("message.timeout.ms", ms(message_timeout))
            .set("retry.backoff.ms", ms(backoff))
            .set("retry.backoff.max.ms", ms(backoff_max))
            // The destination's topic must exist: a misspelt name is an error, not a new topic.
            .set("allow.auto.create.topics", "false");
        // A delivery enqueues its whole batch at once and waits for every ack: lingering would
        // only delay the batch (it cost ~5 of ~8 ms per batch in `cdp-bench sinks`).
        if !self.properties.contains_key("linger.ms") {
            c.set("linger.ms", "0");
        }
        let sasl = match &self.security {
            KafkaSecurity::Plaintext => {
                c.set("security.protocol", "plaintext");
                None
            }
            KafkaSecurity::Ssl => {
                c.set("security.protocol", "ssl");
                None
            }
            KafkaSecurity::SaslPlaintext(s) => {
                c.set("security.protocol", "sasl_plaintext");
                Some(s)
            }
            KafkaSecurity::SaslSsl(s) => {
                c.set("security.protocol", "sasl_ssl");
                Some(s)
            }
        };
        if let Some(s) = sasl {
            c.set("sasl.mechanism", s.mechanism.as_str())
                .set("sasl.username", &s.username)
                .set("sasl.password", s.password.expose());
        }
        c
    }
}

impl fmt::Debug for KafkaTarget {
    /// Shows the names of the extra properties, not their values (they may hold key passwords).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaTarget")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic", &self.topic)
            .field("security", &self.security)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Sees librdkafka's client-level errors: remembers the last one (for the message of a timeout)
/// and signals authentication failures, which no retry fixes.
struct SinkContext(Arc<ClientErrors>);

struct ClientErrors {
    last_error: Mutex<Option<String>>,
    auth_failure: watch::Sender<Option<String>>,
}

impl ClientErrors {
    fn last(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|l| l.clone())
    }
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "{fac} {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let message = format!("{error}: {reason}");
        tracing::warn!(target: "librdkafka", "{message}");
        if let Ok(mut last) = self.0.last_error.lock() {
            // "All broker connections are down" follows the error that says why (connection
            // refused, SSL handshake failed): keep the latter.
            if error.rdkafka_error_code() != Some(RDKafkaErrorCode::AllBrokersDown)
                || last.is_none()
            {
                *last = Some(message.clone());
            }
        }
        if error
            .rdkafka_error_code()
            .is_some_and(|c| kind_of(c) == ErrorKind::Unauthorized)
        {
            self.0.auth_failure.send_replace(Some(message));
        }
    }
}

/// A producer and what its context saw.
struct Handle {
    producer: FutureProducer<SinkContext>,
    errors: Arc<ClientErrors>,
}

/// Delivers to one Kafka topic with one idempotent producer. A producer that hits a fatal
/// idempotence error is replaced by a new one before the next delivery.
pub struct KafkaClient {
    target: KafkaTarget,
    policy: RetryPolicy,
    producer: Mutex<Arc<Handle>>,
}

impl fmt::Debug for KafkaClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaClient")
            .field("target", &self.target)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl KafkaClient {
    /// Creates the producer (it connects in the background). Fails with [`ErrorKind::Config`]
    /// when librdkafka refuses the configuration — e.g. `sasl_ssl` in a build without SSL.
    pub fn new(target: KafkaTarget, policy: RetryPolicy) -> Result<KafkaClient, DeliveryError> {
        if target.topic.trim().is_empty() {
            return Err(DeliveryError::config("Kafka: the topic name is empty"));
        }
        if target.bootstrap_servers.trim().is_empty() {
            return Err(DeliveryError::config("Kafka: no bootstrap servers"));
        }
        let producer = create_producer(&target, &policy)?;
        Ok(KafkaClient {
            target,
            policy,
            producer: Mutex::new(Arc::new(producer)),
        })
    }

    pub fn target(&self) -> &KafkaTarget {
        &self.target
    }

    /// `kafka:TOPIC@BOOTSTRAP`.
    pub fn describe(&self) -> String {
        format!(
            "kafka:{}@{}",
            self.target.topic, self.target.bootstrap_servers
        )
    }

    fn handle(&self) -> Result<Arc<Handle>, DeliveryError> {
        let mut guard = self
            .producer
            .lock()
            .map_err(|_| DeliveryError::config("Kafka: producer lock poisoned"))?;
        if let Some((code, reason)) = guard.producer.client().fatal_error() {
            tracing::warn!(?code, %reason, "Kafka producer hit a fatal error; creating a new one");
            *guard = Arc::new(create_producer(&self.target, &self.policy)?);
        }
        Ok(Arc::clone(&guard))
    }

    /// The topic's metadata: it exists and the credentials may see it.
    pub async fn check(&self) -> Result<(), DeliveryError> {
        let handle = self.handle()?;
        let topic = self.target.topic.clone();
        let timeout = self.target.request_timeout;
        let answer = tokio::task::spawn_blocking(move || {
            let metadata = handle
                .producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|e| classify(&e, handle.errors.last()))?;
            let error = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map(|t| t.error());
            match error {
                Some(None) => Ok(()),
                Some(Some(e)) => {
                    let code = RDKafkaErrorCode::from(e);
                    Err(DeliveryError::new(
                        kind_of(code),
                        format!("topic {topic}: {code}"),
                    ))
                }
                None => Err(DeliveryError::new(
                    ErrorKind::NotFound,
                    format!("topic {topic} is not in the cluster's metadata"),
                )),
            }
        })
        .await;
        answer.map_err(|e| DeliveryError::new(ErrorKind::Unavailable, e.to_string()))?
    }

    /// Delivers `records`; see the module documentation for how.
    pub async fn deliver(&self, records: Vec<OutRecord>) -> Result<DeliveryReport, DeliveryError> {
        let handle = self.handle()?;
        let producer = &handle.producer;
        handle.errors.auth_failure.send_replace(None);
        let mut auth_failure = handle.errors.auth_failure.subscribe();

        let mut report = DeliveryReport::default();
        let mut fates = vec![Fate::Pending; records.len()];
        let mut in_flight = Vec::with_capacity(records.len());
        let mut error: Option<DeliveryError> = None;
        'enqueue: for (i, r) in records.iter().enumerate() {
            let mut record = FutureRecord::to(&self.target.topic)
                .key(r.partition_key.as_bytes())
                .payload(&r.data);
            loop {
                match producer.send_result(record) {
                    Ok(future) => {
                        in_flight.push((i, future));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The queue drains as the broker acknowledges; it will not if the
                        // broker refused our credentials (handled below).
                        if auth_failure.borrow().is_some() {
                            break 'enqueue;
                        }
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) if is_rejection(&e) => {
                        fates[i] = Fate::Rejected;
                        report.rejected.push(Rejected {
                            index: i,
                            reason: self.rejection_reason(&e, r),
                        });
                        break;
                    }
                    Err((e, _)) => {
                        error = Some(classify(&e, handle.errors.last()));
                        break 'enqueue;
                    }
                }
            }
        }

        let wait_all = async {
            let mut results = Vec::with_capacity(in_flight.len());
            for (i, future) in in_flight {
                results.push((i, future.await));
            }
            results
        };
        tokio::pin!(wait_all);
        let mut auth_error = None;
        let results = tokio::select! {
            biased;
            results = &mut wait_all => results,
            Some(message) = async {
                auth_failure.wait_for(Option::is_some).await.ok().and_then(|m| m.clone())
            } => {
                auth_error = Some(message);
                // What is still queued or in flight fails at once (purged) instead of waiting
                // for the message timeout; what was acknowledged already stays delivered.
                producer.purge(PurgeConfig::default().queue().inflight());
                wait_all.await
            }
        };

        for (i, result) in results {
            match result {
                Ok(Ok(_)) => {
                    fates[i] = Fate::Delivered;
                    report.delivered += 1;
                }
                Ok(Err((e, _))) if is_rejection(&e) => {
                    fates[i] = Fate::Rejected;
                    report.rejected.push(Rejected {
                        index: i,
                        reason: self.rejection_reason(&e, &records[i]),
                    });
                }
                Ok(Err((e, _))) => {
                    let e = classify(&e, handle.errors.last());
                    // A permanent error outranks a transient one.
                    if error.as_ref().is_none_or(|old| old.is_transient()) {
                        error = Some(e);
                    }
                }
                Err(_canceled) => {
                    error.get_or_insert_with(|| {
                        DeliveryError::new(ErrorKind::Unavailable, "the Kafka producer shut down")
                    });
                }
            }
        }
        if let Some(message) = auth_error {
            error = Some(DeliveryError::new(ErrorKind::Unauthorized, message));
        }
        report.rejected.sort_by_key(|r| r.index);
        if fates.iter().all(|f| *f != Fate::Pending) {
            return Ok(report);
        }
        let pending = pending_tail(&records, &fates);
        let error = error.unwrap_or_else(|| {
            DeliveryError::new(ErrorKind::Unavailable, "not every message was acknowledged")
        });
        let message = format!("topic {}: {}", self.target.topic, error.message);
        Err(DeliveryError::new(error.kind, message).with_progress(report, pending))
    }

    fn rejection_reason(&self, e: &KafkaError, r: &OutRecord) -> String {
        format!(
            "{e}: message of {} bytes (key and value) is over the destination's limit of {} \
             bytes",
            r.partition_key.len() + r.data.len(),
            self.target.max_message_bytes
        )
    }
}

impl Deliver for KafkaClient {
    fn deliver(
        &self,
        records: Vec<OutRecord>,
    ) -> impl std::future::Future<Output = Result<DeliveryReport, DeliveryError>> + Send {
        KafkaClient::deliver(self, records)
    }
}

fn create_producer(target: &KafkaTarget, policy: &RetryPolicy) -> Result<Handle, DeliveryError> {
    let errors = Arc::new(ClientErrors {
        last_error: Mutex::new(None),
        auth_failure: watch::channel(None).0,
    });
    let producer = target
        .client_config(policy)
        .create_with_context(SinkContext(Arc::clone(&errors)))
        .map_err(|e| DeliveryError::config(format!("Kafka: {e}")))?;
    Ok(Handle { producer, errors })
}

/// A message the destination refuses for good: too large, or an invalid record.
fn is_rejection(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

fn kind_of(code: RDKafkaErrorCode) -> ErrorKind {
    use RDKafkaErrorCode as C;
    match code {
        C::MessageTimedOut | C::RequestTimedOut | C::OperationTimedOut => ErrorKind::Timeout,
        C::ThrottlingQuotaExceeded => ErrorKind::Throttled,
        C::UnknownTopic | C::UnknownTopicOrPartition => ErrorKind::NotFound,
        C::Authentication
        | C::SaslAuthenticationFailed
        | C::UnsupportedSASLMechanism
        | C::IllegalSASLState
        | C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed => ErrorKind::Unauthorized,
        C::InvalidTopic | C::PolicyViolation | C::InvalidRequiredAcks | C::InvalidArgument => {
            ErrorKind::Invalid
        }
        _ => ErrorKind::Unavailable,
    }
}

/// A [`DeliveryError`] for a librdkafka error; a transient one names the client's last error
/// (a timeout alone says little: the last error says "connection refused" or "SSL handshake").
fn classify(e: &KafkaError, last_client_error: Option<String>) -> DeliveryError {
    let kind = e
        .rdkafka_error_code()
        .map(kind_of)
        .unwrap_or(ErrorKind::Unavailable);
    let message = match last_client_error {
        Some(last) if kind.is_transient() => format!("{e} (last client error: {last})"),
        _ => e.to_string(),
    };
    DeliveryError::new(kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_is_idempotent_and_waits_for_all_replicas() {
        let target = KafkaTarget::new("127.0.0.1:9092", "exports");
        let policy = RetryPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(3),
            deadline: Some(Duration::from_secs(45)),
            ..RetryPolicy::default()
        };
        let c = target.client_config(&policy);
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("message.max.bytes"), Some("1000000"));
        assert_eq!(c.get("message.timeout.ms"), Some("45000"));
        assert_eq!(c.get("retry.backoff.ms"), Some("200"));
        assert_eq!(c.get("retry.backoff.max.ms"), Some("3000"));
        assert_eq!(c.get("sasl.password"), None);
        assert_eq!(c.get("allow.auto.create.topics"), Some("false"));
    }

    #[test]
    fn extra_properties_cannot_weaken_the_guarantees() {
        let mut target = KafkaTarget::new("b:9092", "t");
        target
            .properties
            .insert("enable.idempotence".into(), "false".into());
        target.properties.insert("acks".into(), "1".into());
        target
            .properties
            .insert("ssl.ca.location".into(), "/etc/ca.pem".into());
        target.security = KafkaSecurity::SaslSsl(SaslCredentials {
            mechanism: SaslMechanism::ScramSha512,
            username: "u".into(),
            password: Secret::new("pw-123"),
        });
        let c = target.client_config(&RetryPolicy::default());
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some("pw-123"));
        let debug = format!("{target:?}");
        assert!(!debug.contains("pw-123"), "{debug}");
        assert!(!debug.contains("/etc/ca.pem"), "{debug}");
    }

    #[test]
    fn errors_are_classified() {
        assert_eq!(
            kind_of(RDKafkaErrorCode::MessageTimedOut),
            ErrorKind::Timeout
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::Authentication),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::UnknownTopicOrPartition),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind_of(RDKafkaErrorCode::AllBrokersDown),
            ErrorKind::Unavailable
        );
        let e = classify(
            &KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            Some("Connection refused".into()),
        );
        assert!(e.is_transient());
        assert!(e.message.contains("Connection refused"), "{e}");
        assert!(is_rejection(&KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
    }
}
