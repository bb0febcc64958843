//! Kinesis delivery against a real kinesalite (scripts/kinesalite.sh install), with a
//! fault-injecting proxy in front of it for throttling, partial failures and refused credentials.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use cdp_sinks::delivery::{
    Destination, ErrorKind, KinesisClient, KinesisTarget, OutRecord, RetryPolicy,
    KINESIS_MAX_RECORD_BYTES,
};
use support::{target, FaultProxy, Faults, Kinesalite, StreamRecord};

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(200),
        attempts: 8,
        deadline: Some(Duration::from_secs(30)),
        jitter: 0.5,
    }
}

/// `keys` profiles with `per_key` records each, interleaved: p0#0, p1#0, …, p0#1, p1#1, …
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

/// Every record of `sent` is in `stream` exactly once, and each key's records are in the
/// order they were sent.
fn assert_exactly_once_in_key_order(sent: &[OutRecord], stream: &[StreamRecord]) {
    let mut want: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for r in sent {
        want.entry(&r.partition_key).or_default().push(&r.data);
    }
    let mut got: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for r in stream {
        got.entry(&r.partition_key).or_default().push(&r.data);
    }
    assert_eq!(
        stream.len(),
        sent.len(),
        "records in the stream vs records sent"
    );
    for (key, records) in &want {
        let got = got.get(key).cloned().unwrap_or_default();
        assert_eq!(&got, records, "records of {key}, in stream order");
    }
}

#[tokio::test]
async fn delivers_1200_records_to_a_two_shard_stream_in_key_order() {
    let kinesis = Kinesalite::start().await;
    kinesis.create_stream("profiles", 2).await;
    let destination = Destination::kinesis(target(&kinesis, "profiles"), fast_policy()).unwrap();
    destination.check().await.expect("the stream exists");

    // 600 keys with 2 records each: 2 waves of 600, each split into requests of 500 and 100.
    let sent = records(600, 2);
    let report = destination.deliver(sent.clone()).await.unwrap();
    assert_eq!(report.delivered, 1200);
    assert_eq!(report.retried, 0);
    assert!(report.rejected.is_empty());

    let stream = kinesis.read_all("profiles").await;
    assert_exactly_once_in_key_order(&sent, &stream);
    let shards: std::collections::BTreeSet<_> = stream.iter().map(|r| r.shard.as_str()).collect();
    assert_eq!(shards.len(), 2, "records spread over both shards");
    // One key, one shard.
    let mut shard_of: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &stream {
        let shard = shard_of.entry(&r.partition_key).or_insert(&r.shard);
        assert_eq!(*shard, r.shard);
    }
}

#[tokio::test]
async fn a_record_over_1_mib_is_rejected_and_the_others_delivered() {
    let kinesis = Kinesalite::start().await;
    kinesis.create_stream("big", 1).await;
    let client = KinesisClient::new(target(&kinesis, "big"), fast_policy()).unwrap();

    let mut sent = records(3, 2);
    // Index 6: one byte over the limit (data and key); index 7: exactly at it; then five
    // records of ~1 MB with their own keys, which need two requests (5 MiB each at most).
    sent.push(OutRecord::new(
        "profile-1",
        vec![b'x'; KINESIS_MAX_RECORD_BYTES - "profile-1".len() + 1],
    ));
    sent.push(OutRecord::new(
        "profile-2",
        vec![b'y'; KINESIS_MAX_RECORD_BYTES - "profile-2".len()],
    ));
    for k in 0..5 {
        sent.push(OutRecord::new(format!("large-{k}"), vec![b'z'; 1_000_000]));
    }
    let report = client.deliver(sent.clone()).await.unwrap();
    assert_eq!(report.delivered, sent.len() - 1);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].index, 6);
    assert!(
        report.rejected[0].reason.contains("1 MiB"),
        "{}",
        report.rejected[0].reason
    );

    let mut expected = sent.clone();
    expected.remove(6);
    let stream = kinesis.read_all("big").await;
    assert_exactly_once_in_key_order(&expected, &stream);
}

#[tokio::test]
async fn partial_failures_and_throttling_deliver_every_record_exactly_once_in_order() {
    let kinesis = Kinesalite::start().await;
    kinesis.create_stream("flaky", 2).await;
    let proxy = FaultProxy::start(
        kinesis.endpoint(),
        Faults {
            throttle: 1,
            partial: 4,
            fail_every: 3,
            always: None,
        },
    )
    .await;
    let target = KinesisTarget {
        endpoint: Some(proxy.endpoint()),
        ..target(&kinesis, "flaky")
    };
    let destination = Destination::kinesis(target, fast_policy()).unwrap();

    // 40 keys with 8 records each: a key's later records must wait for its failed one.
    let sent = records(40, 8);
    let report = destination.deliver(sent.clone()).await.unwrap();
    let stats = proxy.stats();
    assert_eq!(stats.throttled, 1, "{stats:?}");
    assert_eq!(stats.partially_failed, 4, "{stats:?}");
    assert!(stats.entries_failed > 0, "{stats:?}");
    assert_eq!(report.delivered, sent.len());
    assert!(report.rejected.is_empty());
    // The throttled request's entries were sent again, and each failed entry once more.
    assert!(
        report.retried >= stats.entries_failed,
        "{report:?} vs {stats:?}"
    );

    let stream = kinesis.read_all("flaky").await;
    assert_exactly_once_in_key_order(&sent, &stream);
}

#[tokio::test]
async fn an_unknown_stream_is_a_permanent_error_with_the_destination_message() {
    let kinesis = Kinesalite::start().await;
    let destination = Destination::kinesis(target(&kinesis, "missing"), fast_policy()).unwrap();

    let e = destination.check().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");

    let started = std::time::Instant::now();
    let e = destination.deliver(records(2, 2)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound, "{e}");
    assert!(!e.is_transient());
    assert!(
        e.message
            .starts_with("ResourceNotFoundException: Stream missing under account"),
        "{}",
        e.message
    );
    assert_eq!(e.pending, [0, 1, 2, 3]);
    assert_eq!(e.partial.delivered, 0);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no retries for a permanent error"
    );
}

#[tokio::test]
async fn refused_credentials_are_a_permanent_error_with_the_destination_message() {
    let kinesis = Kinesalite::start().await;
    kinesis.create_stream("s", 1).await;
    let proxy = FaultProxy::start(
        kinesis.endpoint(),
        Faults {
            always: Some((
                400,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )),
            ..Faults::default()
        },
    )
    .await;
    let target = KinesisTarget {
        endpoint: Some(proxy.endpoint()),
        ..target(&kinesis, "s")
    };
    let destination = Destination::kinesis(target, fast_policy()).unwrap();
    let e = destination.check().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    let e = destination.deliver(records(1, 3)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unauthorized, "{e}");
    assert!(!e.is_transient());
    assert_eq!(
        e.message,
        "UnrecognizedClientException: The security token included in the request is invalid."
    );
    assert_eq!(proxy.stats().put_records, 1, "not retried");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_as_transient() {
    let kinesis = Kinesalite::start().await;
    kinesis.create_stream("s", 1).await;
    let proxy = FaultProxy::start(
        kinesis.endpoint(),
        Faults {
            always: Some((500, "InternalFailure", "Internal service failure.")),
            ..Faults::default()
        },
    )
    .await;
    let target = KinesisTarget {
        endpoint: Some(proxy.endpoint()),
        ..target(&kinesis, "s")
    };
    let policy = RetryPolicy {
        attempts: 3,
        ..fast_policy()
    };
    let e = Destination::kinesis(target, policy)
        .unwrap()
        .deliver(records(2, 1))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.is_transient());
    assert!(
        e.message
            .contains("InternalFailure: Internal service failure."),
        "{e}"
    );
    assert!(e.message.contains("gave up after 3 tries"), "{e}");
    assert_eq!(proxy.stats().put_records, 3);
    assert_eq!(e.pending, [0, 1]);
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_error() {
    // A port that was free a moment ago: nothing listens there.
    let port = cdp_test_support::free_port();
    let target = KinesisTarget {
        stream: "s".into(),
        region: "us-east-1".into(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        access_key_id: "AKIDTEST".into(),
        secret_key: "x".into(),
    };
    let policy = RetryPolicy {
        attempts: 2,
        ..fast_policy()
    };
    let e = Destination::kinesis(target, policy)
        .unwrap()
        .deliver(records(1, 1))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.is_transient());
    assert!(e.message.contains("gave up after 2 tries"), "{e}");
}
