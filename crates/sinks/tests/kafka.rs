//! Kafka and Event Hubs delivery against a real broker (tansu, from cdp-test-support): Event
//! Hubs through the endpoint override (plaintext; production is SASL_SSL), a plain Kafka topic.

use std::collections::BTreeMap;
use std::time::Duration;

use cdp_sinks::delivery::{
    Destination, ErrorKind, EventHubsTarget, KafkaSecurity, KafkaTarget, OutRecord, RetryPolicy,
    SaslCredentials, SaslMechanism, Secret, EVENT_HUBS_MAX_MESSAGE_BYTES,
};
use cdp_test_support::{unique_name, Broker, Record};

fn policy() -> RetryPolicy {
    RetryPolicy {
        deadline: Some(Duration::from_secs(30)),
        ..RetryPolicy::default()
    }
}

fn records(keys: usize, per_key: usize) -> Vec<OutRecord> {
    let mut out = Vec::with_capacity(keys * per_key);
    for n in 0..per_key {
        for k in 0..keys {
            out.push(OutRecord::new(
                format!("profile-{k}"),
                format!("{{\"profile\":{k},\"n\":{n}}}"),
            ));
        }
    }
    out
}

/// Every record arrived once, under its key, and each key's records in the order sent.
fn assert_delivered_in_key_order(sent: &[OutRecord], mut got: Vec<Record>) {
    assert_eq!(
        got.len(),
        sent.len(),
        "records in the topic vs records sent"
    );
    got.sort_by_key(|r| (r.partition, r.offset));
    let mut want: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for r in sent {
        want.entry(&r.partition_key).or_default().push(&r.data);
    }
    let mut by_key: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    for r in got {
        let key = r.key.clone().expect("every message has its key");
        let p = *partition_of.entry(key.clone()).or_insert(r.partition);
        assert_eq!(p, r.partition, "key {key} on one partition");
        by_key.entry(key).or_default().push(r.value);
    }
    for (key, records) in want {
        let got: Vec<&[u8]> = by_key
            .get(key)
            .map(|v| v.iter().map(Vec::as_slice).collect())
            .unwrap_or_default();
        assert_eq!(got, records, "records of {key}");
    }
}

#[tokio::test]
async fn a_kafka_target_delivers_with_keys_and_their_order_kept() {
    let broker = Broker::start();
    let topic = unique_name("export");
    broker.create_topic(&topic, 3).await;
    let destination =
        Destination::kafka(KafkaTarget::new(broker.bootstrap(), &topic), policy()).unwrap();
    destination.check().await.expect("the topic exists");

    let sent = records(50, 10);
    let report = destination.deliver(sent.clone()).await.unwrap();
    assert_eq!(report.delivered, 500);
    assert!(report.rejected.is_empty());
    // A second delivery through the same producer.
    let more = records(5, 2);
    assert_eq!(
        destination.deliver(more.clone()).await.unwrap().delivered,
        10
    );

    let got = broker
        .read_committed(&topic, 510, Duration::from_secs(20))
        .await;
    let all: Vec<OutRecord> = sent.into_iter().chain(more).collect();
    assert_delivered_in_key_order(&all, got);
}

#[tokio::test]
async fn event_hubs_with_the_endpoint_override_delivers_to_the_event_hub_topic() {
    let broker = Broker::start();
    let hub = unique_name("hub");
    broker.create_topic(&hub, 2).await;
    let target = EventHubsTarget {
        namespace: "contoso".into(),
        sas_key_name: "send".into(),
        sas_key: Secret::new("not-used-in-plaintext"),
        event_hub_name: hub.clone(),
        endpoint: Some(broker.bootstrap()),
    };
    let destination = Destination::event_hubs(&target, policy()).unwrap();
    assert_eq!(
        destination.describe(),
        format!("kafka:{hub}@{}", broker.bootstrap())
    );

    let mut sent = records(20, 5);
    // Over Event Hubs' 1,046,528-byte limit: rejected by the client, the others delivered.
    sent.insert(
        7,
        OutRecord::new("profile-7", vec![b'x'; EVENT_HUBS_MAX_MESSAGE_BYTES + 1]),
    );
    let report = destination.deliver(sent.clone()).await.unwrap();
    assert_eq!(report.delivered, 100);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].index, 7);
    assert!(
        report.rejected[0].reason.contains("1046528"),
        "{}",
        report.rejected[0].reason
    );

    let got = broker
        .read_committed(&hub, 100, Duration::from_secs(20))
        .await;
    sent.remove(7);
    assert_delivered_in_key_order(&sent, got);
}

#[tokio::test]
async fn a_message_over_the_target_limit_is_rejected() {
    let broker = Broker::start();
    let topic = unique_name("small");
    broker.create_topic(&topic, 1).await;
    let target = KafkaTarget {
        max_message_bytes: 10_000,
        ..KafkaTarget::new(broker.bootstrap(), &topic)
    };
    let destination = Destination::kafka(target, policy()).unwrap();
    let sent = vec![
        OutRecord::new("a", b"1".to_vec()),
        OutRecord::new("a", vec![b'x'; 20_000]),
        OutRecord::new("a", b"3".to_vec()),
    ];
    let report = destination.deliver(sent).await.unwrap();
    assert_eq!(report.delivered, 2);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].index, 1);
}

#[tokio::test]
async fn an_unknown_topic_is_a_permanent_error() {
    let broker = Broker::start();
    let topic = unique_name("missing");
    let mut target = KafkaTarget::new(broker.bootstrap(), &topic);
    // How long librdkafka waits for a topic to appear before failing its messages.
    target
        .properties
        .insert("topic.metadata.propagation.max.ms".into(), "1000".into());
    let destination = Destination::kafka(target, policy()).unwrap();
    let e = destination.check().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    let e = destination.deliver(records(2, 2)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(!e.is_transient());
    assert_eq!(e.pending, [0, 1, 2, 3]);
}

#[tokio::test]
async fn an_unreachable_broker_is_a_transient_error_naming_the_cause() {
    let port = cdp_test_support::free_port();
    let policy = RetryPolicy {
        deadline: Some(Duration::from_secs(2)),
        ..RetryPolicy::default()
    };
    let mut target = KafkaTarget::new(format!("127.0.0.1:{port}"), "t");
    target.request_timeout = Duration::from_secs(1);
    let destination = Destination::kafka(target, policy).unwrap();
    let e = destination.deliver(records(1, 2)).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert_eq!(e.kind, ErrorKind::Timeout, "{e}");
    assert!(e.message.contains("last client error"), "{e}");
    assert_eq!(e.pending, [0, 1]);
}

#[tokio::test]
async fn a_failed_sasl_handshake_is_a_permanent_error() {
    // tansu's plaintext listener does not do SASL: the handshake fails as it does with
    // credentials a broker refuses, and the delivery ends without waiting for the timeout.
    let broker = Broker::start();
    let topic = unique_name("sasl");
    broker.create_topic(&topic, 1).await;
    let target = KafkaTarget {
        security: KafkaSecurity::SaslPlaintext(SaslCredentials {
            mechanism: SaslMechanism::Plain,
            username: "$ConnectionString".into(),
            password: Secret::new("Endpoint=sb://x/;SharedAccessKeyName=k;SharedAccessKey=v"),
        }),
        ..KafkaTarget::new(broker.bootstrap(), &topic)
    };
    let destination = Destination::kafka(target, policy()).unwrap();
    let started = std::time::Instant::now();
    let e = destination.deliver(records(1, 2)).await.unwrap_err();
    assert!(!e.is_transient(), "{e}");
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(!e.message.contains("SharedAccessKey=v"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}
