//! How the tansu build the tests run on handles transactions, pinned so that the tests built on
//! it mean what they claim:
//! - it **shows aborted records to read_committed readers** (Kafka and Redpanda hide them). The
//!   validate stage's recovery (crates/validate/src/recovery.rs) exists for this; because tansu
//!   shows them, the SIGKILL test of `cdp validate` exercises that recovery. If this pin fails,
//!   tansu was fixed and the recovery becomes belt and braces;
//! - a new producer with the same transactional id aborts its predecessor's transaction
//!   **offsets** (what exactly-once relies on);
//! - it drops the metadata of transactional offset commits, so the stage keeps its checkpoints
//!   on a topic instead.
//!
//! The first and last pin tansu itself and need the local one (`Broker::start_local`); the
//! fencing test holds on Kafka and Redpanda too and runs against `CDP_TEST_BOOTSTRAP`.

use std::time::Duration;

use cdp_test_support::{eventually, unique_name, Broker};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

const T: Duration = Duration::from_secs(20);

fn txn_producer(broker: &Broker, id: &str) -> ThreadedProducer<DefaultProducerContext> {
    let p: ThreadedProducer<DefaultProducerContext> = broker
        .kafka()
        .transactional_producer(id, id)
        .create()
        .expect("producer");
    p.init_transactions(T).expect("init_transactions");
    p
}

fn send(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, range: std::ops::Range<usize>) {
    for i in range {
        let v = format!("v{i}");
        p.send(BaseRecord::<str, str>::to(topic).key("k").payload(&v))
            .map_err(|(e, _)| e)
            .expect("enqueue");
    }
    p.flush(T).expect("flush");
}

/// A consumer that has joined `group` on topic `input`, so its group metadata is real.
async fn group_member(broker: &Broker, group: &str, input: &str) -> BaseConsumer {
    let consumer: BaseConsumer = broker
        .kafka()
        .consumer(group, group)
        .create()
        .expect("consumer");
    consumer.subscribe(&[input]).expect("subscribe");
    eventually(
        Duration::from_secs(30),
        &format!("an assignment of {input} in group {group}"),
        async || {
            // Polling drives the join; the assignment appears in a poll's rebalance callback.
            let _ = consumer.poll(Duration::from_millis(100));
            consumer.assignment().map(|a| a.count()).unwrap_or(0) > 0
        },
    )
    .await;
    consumer
}

fn values(records: &[cdp_test_support::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_shows_aborted_records_to_read_committed_readers() {
    let Some(broker) = Broker::start_local(
        "it pins that tansu shows aborted records to read_committed readers; Kafka hides them",
    ) else {
        return;
    };
    broker.create_topic("out", 1).await;
    let p = txn_producer(&broker, "probe-abort");
    p.begin_transaction().expect("begin");
    send(&p, "out", 0..10);
    p.abort_transaction(T).expect("abort");
    p.begin_transaction().expect("begin");
    send(&p, "out", 10..15);
    p.commit_transaction(T).expect("commit");
    let read = broker
        .read_committed("out", 15, Duration::from_secs(20))
        .await;
    // On Kafka this would be v10..v15 only.
    assert_eq!(
        values(&read),
        (0..15).map(|i| format!("v{i}")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_producer_aborts_its_predecessors_transaction_offsets() {
    // Unique names: on an external broker earlier runs left their topics, groups and
    // transactional ids behind.
    let broker = Broker::start();
    let (input, out) = (unique_name("probe-in"), unique_name("probe-out"));
    broker.create_topic(&input, 1).await;
    broker.create_topic(&out, 1).await;
    for i in 0..20 {
        broker
            .produce(&input, "k", format!("in{i}").as_bytes())
            .await;
    }
    let consumer = group_member(&broker, &unique_name("probe-group"), &input).await;

    let fence_id = unique_name("probe-fence");
    let old = txn_producer(&broker, &fence_id);
    old.begin_transaction().expect("begin");
    send(&old, &out, 0..10);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&input, 0, Offset::Offset(10))
        .expect("offset");
    old.send_offsets_to_transaction(&offsets, &consumer.group_metadata().expect("meta"), T)
        .expect("send offsets");
    // The old instance "dies" here; its successor takes over the transactional id.
    let new = txn_producer(&broker, &fence_id);
    let committed = consumer.committed(T).expect("committed offsets");
    let at = committed
        .find_partition(&input, 0)
        .map(|e| e.offset())
        .expect("partition listed");
    assert!(
        !matches!(at, Offset::Offset(10)),
        "the aborted transaction's offset became committed: {at:?}"
    );
    new.begin_transaction().expect("begin");
    send(&new, &out, 100..105);
    new.commit_transaction(T).expect("commit");
    drop(old);
    // tansu shows the 10 aborted records too (the first test); Kafka and Redpanda only the 5
    // committed ones, and waiting for 15 there would just run into the timeout.
    let expected = if broker.is_external() { 5 } else { 15 };
    let read = broker
        .read_committed(&out, expected, Duration::from_secs(30))
        .await;
    let read = values(&read);
    for i in 100..105 {
        assert!(read.contains(&format!("v{i}")), "v{i} committed: {read:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tansu_drops_the_metadata_of_transactional_offsets() {
    let Some(broker) = Broker::start_local(
        "it pins that tansu drops the metadata of transactional offsets; Kafka keeps it",
    ) else {
        return;
    };
    broker.create_topic("in", 1).await;
    broker.produce("in", "k", b"x").await;
    let consumer = group_member(&broker, "probe-meta", "in").await;
    let p = txn_producer(&broker, "probe-meta");
    p.begin_transaction().expect("begin");
    send(&p, "out", 0..1);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("in", 0, Offset::Offset(1))
        .expect("offset");
    offsets
        .find_partition("in", 0)
        .expect("listed")
        .set_metadata("valid=0:7,1:9");
    p.send_offsets_to_transaction(&offsets, &consumer.group_metadata().expect("meta"), T)
        .expect("send offsets");
    p.commit_transaction(T).expect("commit");
    let committed = consumer.committed(T).expect("committed");
    let e = committed.find_partition("in", 0).expect("listed");
    assert_eq!(e.offset(), Offset::Offset(1));
    // Kafka keeps it.
    assert_eq!(e.metadata(), "");
}
