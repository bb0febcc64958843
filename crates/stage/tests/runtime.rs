//! The runtime against a real broker: recovery across a retried batch (the defect found in the
//! validate stage's Avro-registry retry path), keyed state restored from the changelog after a
//! restart, wall-clock timers that fire on an idle partition and survive a restart, and the
//! loop's time per phase in the metrics.

use std::collections::HashMap;
use std::time::Duration;

use cdp_contract::admin::{ensure_topics, TopicSpec};
use cdp_contract::KafkaSettings;
use cdp_stage::{
    Cause, Context, Lineage, Output, ProcessError, Processor, RuntimeSettings, StageSpec, Timer,
};
use cdp_test_support::{Broker, Record};
use rdkafka::message::{Header, OwnedMessage};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const GROUP: &str = "runtime-test";

struct Names {
    input: String,
    output: String,
    checkpoints: String,
    changelog: String,
}

fn names(test: &str) -> Names {
    let ns = cdp_test_support::unique_name(test);
    Names {
        input: format!("{ns}.input"),
        output: format!("{ns}.output"),
        checkpoints: format!("{ns}.checkpoints"),
        changelog: format!("{ns}.changelog"),
    }
}

fn spec(n: &Names, instance: &str, stateful: bool) -> StageSpec {
    StageSpec {
        stage: "runtime_test",
        group_id: GROUP.into(),
        instance: instance.into(),
        transactional_id: format!("{}-{instance}", n.input),
        input: n.input.clone(),
        outputs: vec![n.output.clone()],
        checkpoints: n.checkpoints.clone(),
        changelog: stateful.then(|| n.changelog.clone()),
        lineage: Lineage::INPUT,
        settings: RuntimeSettings {
            max_batch: 7,
            ..RuntimeSettings::default()
        },
        queries: None,
    }
}

async fn topics(kafka: &KafkaSettings, n: &Names) {
    let spec = |name: &str, compacted| TopicSpec {
        name: name.to_string(),
        partitions: 1,
        compacted,
    };
    ensure_topics(
        kafka,
        &[
            spec(&n.input, false),
            spec(&n.output, false),
            spec(&n.checkpoints, true),
            spec(&n.changelog, true),
        ],
    )
    .await
    .expect("topics");
}

fn start<P: Processor>(
    kafka: &KafkaSettings,
    spec: StageSpec,
    processor: P,
) -> (
    watch::Sender<bool>,
    JoinHandle<Result<(), cdp_stage::StageError>>,
) {
    let (stop, stopped) = watch::channel(false);
    let kafka = kafka.clone();
    let task = tokio::spawn(async move { cdp_stage::run(&kafka, spec, processor, stopped).await });
    (stop, task)
}

async fn stop(
    stage: (
        watch::Sender<bool>,
        JoinHandle<Result<(), cdp_stage::StageError>>,
    ),
) {
    stage.0.send(true).expect("stop");
    stage.1.await.expect("join").expect("stage ran");
}

/// Copies every input to the output; the first `fail_first` calls ask for a retry, as the
/// validate stage does when the schema registry cannot be written.
struct Copy {
    output: String,
    fail_first: usize,
    calls: usize,
}

impl Processor for Copy {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        self.calls += 1;
        if self.calls <= self.fail_first {
            return Err(ProcessError::Retry("the registry is away".into()));
        }
        for (i, m) in batch.iter().enumerate() {
            ctx.emit(
                Cause::Input(i),
                Output::new(&self.output, "k", m.payload().unwrap_or_default()),
            );
        }
        Ok(())
    }
}

fn positions(records: &[Record]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in records {
        let p = r
            .header(Lineage::INPUT.position)
            .expect("lineage position")
            .to_string();
        *seen.entry(p).or_default() += 1;
    }
    seen
}

/// A crashed instance left outputs for input offsets 0..10 in a transaction it never ended
/// (tansu shows them to read_committed readers), with the partition's checkpoint. The restarted
/// stage's first batch fails and is read again: recovery must still skip those ten, so that
/// every input has exactly one output. (Before the fix, the set of already-written offsets was
/// used up by the failed attempt and the retry wrote them again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_does_not_write_recovered_outputs_twice() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let kafka = broker.kafka();
    let n = names("retry");
    topics(&kafka, &n).await;
    const INPUTS: usize = 30;
    const ZOMBIE: usize = 10;
    for i in 0..INPUTS {
        broker
            .produce(&n.input, "k", format!("e{i}").as_bytes())
            .await;
    }
    let spec = spec(&n, "r", false);
    let zombie: ThreadedProducer<DefaultProducerContext> = kafka
        .transactional_producer("zombie", &spec.transactional_id)
        .create()
        .expect("zombie");
    zombie
        .init_transactions(Duration::from_secs(20))
        .expect("init");
    zombie.begin_transaction().expect("begin");
    zombie
        .send(
            BaseRecord::to(&n.checkpoints)
                .partition(0)
                .key(GROUP)
                .payload(&format!(r#"{{"{}":{{"0":0}}}}"#, n.output)),
        )
        .map_err(|(e, _)| e)
        .expect("zombie checkpoint");
    for i in 0..ZOMBIE {
        let (position, value) = (format!("0:{i}"), format!("e{i}"));
        let headers = rdkafka::message::OwnedHeaders::new()
            .insert(Header {
                key: Lineage::INPUT.position,
                value: Some(position.as_str()),
            })
            .insert(Header {
                key: Lineage::INPUT.group,
                value: Some(GROUP),
            });
        zombie
            .send(
                BaseRecord::to(&n.output)
                    .key("k")
                    .payload(&value)
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .expect("zombie output");
    }
    zombie.flush(Duration::from_secs(10)).expect("flush");
    std::mem::forget(zombie); // dies without ending its transaction

    let stage = start(
        &kafka,
        spec,
        Copy {
            output: n.output.clone(),
            fail_first: 1,
            calls: 0,
        },
    );
    let out = broker
        .read_committed_settle(
            &n.output,
            INPUTS,
            Duration::from_secs(60),
            Duration::from_secs(3),
        )
        .await;
    stop(stage).await;
    let seen = positions(&out);
    for i in 0..INPUTS {
        assert_eq!(
            seen.get(&format!("0:{i}")),
            Some(&1),
            "input offset {i}: {seen:?}"
        );
    }
    assert_eq!(out.len(), INPUTS);
}

/// Counts inputs per key in the state and emits the count; each input also sets a timer for
/// its key, `delay_ms` later, which emits `<key> expired`.
struct Counter {
    output: String,
    delay_ms: i64,
}

impl Processor for Counter {
    async fn process(
        &mut self,
        batch: &[OwnedMessage],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        for (i, m) in batch.iter().enumerate() {
            let key = m.key().unwrap_or_default().to_vec();
            let count = ctx
                .get(m.partition(), &key)?
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            ctx.put(Cause::Input(i), &key, count.to_string().into_bytes());
            let due = now_ms() + self.delay_ms;
            ctx.set_timer(Cause::Input(i), &key, due);
            let text = format!("{}={count}", String::from_utf8_lossy(&key));
            ctx.emit(Cause::Input(i), Output::new(&self.output, key, text));
        }
        Ok(())
    }

    async fn on_timers(
        &mut self,
        timers: &[Timer],
        ctx: &mut Context<'_>,
    ) -> Result<(), ProcessError> {
        for t in timers {
            let text = format!("{} expired", String::from_utf8_lossy(&t.key));
            ctx.emit(
                Cause::Timer(t.partition),
                Output::new(&self.output, t.key.clone(), text),
            );
        }
        Ok(())
    }
}

/// `cdp_runtime_test_loop_seconds<suffix>{phase="…"}` on a metrics page.
fn loop_phase(page: &str, suffix: &str, phase: &str) -> f64 {
    let name = format!("cdp_runtime_test_loop_seconds{suffix}{{");
    let label = format!("phase=\"{phase}\"");
    page.lines()
        .filter(|l| l.starts_with(&name) && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn texts(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.value).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restarts_and_timers_fire_on_an_idle_partition() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let kafka = broker.kafka();
    let n = names("state");
    topics(&kafka, &n).await;
    let counter = |delay_ms| Counter {
        output: n.output.clone(),
        delay_ms,
    };

    // 1. Counts, then (no input arriving any more) the timers fire.
    for key in ["a", "a", "b"] {
        broker.produce(&n.input, key, b"x").await;
    }
    let stage = start(&kafka, spec(&n, "s", true), counter(1_500));
    let out = broker
        .read_committed(&n.output, 5, Duration::from_secs(60))
        .await;
    let seen = texts(&out);
    assert_eq!(&seen[..3], ["a=1", "a=2", "b=1"], "{seen:?}");
    let mut expired = seen[3..].to_vec();
    expired.sort();
    assert_eq!(expired, ["a expired", "b expired"], "{seen:?}");
    stop(stage).await;
    // Where the loop's time went, per phase: the batch was processed, its state written and
    // its outputs produced, and the timers fired.
    let page = cdp_contract::prometheus::render().expect("the metrics recorder is installed");
    for phase in ["input", "process", "state", "produce", "timers"] {
        let turns = loop_phase(&page, "_count", phase);
        assert!(turns >= 1.0, "phase {phase}: {turns} turns\n{page}");
    }
    assert!(loop_phase(&page, "_sum", "process") > 0.0, "{page}");

    // 2. A new instance restores the counts from the changelog; its timer (an hour away) is
    //    still pending when it stops.
    broker.produce(&n.input, "a", b"x").await;
    let stage = start(&kafka, spec(&n, "s", true), counter(3_600_000));
    let out = broker
        .read_committed(&n.output, 6, Duration::from_secs(60))
        .await;
    assert_eq!(texts(&out).last().map(String::as_str), Some("a=3"));
    stop(stage).await;

    // 3. One more input whose timer comes due while no instance runs: the next instance fires
    //    it right after restoring the state, with no new input.
    broker.produce(&n.input, "c", b"x").await;
    let stage = start(&kafka, spec(&n, "s", true), counter(2_500));
    let out = broker
        .read_committed(&n.output, 7, Duration::from_secs(60))
        .await;
    assert_eq!(texts(&out).last().map(String::as_str), Some("c=1"));
    stop(stage).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let stage = start(&kafka, spec(&n, "s", true), counter(2_500));
    let out = broker
        .read_committed(&n.output, 8, Duration::from_secs(60))
        .await;
    stop(stage).await;
    let seen = texts(&out);
    assert_eq!(seen.len(), 8, "{seen:?}");
    assert_eq!(seen[7], "c expired", "{seen:?}");
    // The hour-long timer of `a` did not fire.
    assert_eq!(seen.iter().filter(|s| *s == "a expired").count(), 1);
}

/// Two instances of a stateful stage in one group, the second joining mid-stream: the
/// partitions move, their state is restored from the changelog on the new owner, and every
/// key still counts 1, 2, … with each count written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_follows_partitions_across_a_rebalance() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let kafka = broker.kafka();
    let n = names("rebalance");
    let spec3 = |name: &str, compacted| TopicSpec {
        name: name.to_string(),
        partitions: 3,
        compacted,
    };
    ensure_topics(
        &kafka,
        &[
            spec3(&n.input, false),
            spec3(&n.output, false),
            spec3(&n.checkpoints, true),
            spec3(&n.changelog, true),
        ],
    )
    .await
    .expect("topics");
    const KEYS: usize = 30;
    const ROUNDS: usize = 20;
    let producer: rdkafka::producer::FutureProducer =
        kafka.producer("inputs", 10_000).create().expect("producer");
    let send_round = |round: usize| {
        let producer = producer.clone();
        let input = n.input.clone();
        async move {
            for k in 0..KEYS {
                let key = format!("k{k}");
                producer
                    .send(
                        rdkafka::producer::FutureRecord::to(&input)
                            .key(&key)
                            .payload(&format!("{round}")),
                        Duration::from_secs(10),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("input");
            }
        }
    };
    let counter = || Counter {
        output: n.output.clone(),
        delay_ms: 3_600_000,
    };
    for round in 0..ROUNDS / 2 {
        send_round(round).await;
    }
    let first = start(&kafka, spec(&n, "a", true), counter());
    broker
        .read_committed(&n.output, KEYS * 3, Duration::from_secs(60))
        .await;
    let second = start(&kafka, spec(&n, "b", true), counter());
    for round in ROUNDS / 2..ROUNDS {
        send_round(round).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = broker
        .read_committed_settle(
            &n.output,
            KEYS * ROUNDS,
            Duration::from_secs(90),
            Duration::from_secs(3),
        )
        .await;
    stop(first).await;
    stop(second).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for text in texts(&out) {
        *seen.entry(text).or_default() += 1;
    }
    for k in 0..KEYS {
        for c in 1..=ROUNDS {
            assert_eq!(
                seen.get(&format!("k{k}={c}")),
                Some(&1),
                "k{k}={c} in {} outputs",
                out.len()
            );
        }
    }
    assert_eq!(out.len(), KEYS * ROUNDS);
}

/// The defect seals fix, made deterministic: a killed instance's first transaction reached the
/// broker only in part (tansu shows such a part to read_committed readers). Input 0 (`a`) has its
/// output but not its state change; input 1 (`b`) its state change but not its output; input 2
/// (`c`) nothing. The transaction never sealed, so the restarted stage must restore the state
/// without `b`'s change, process all three again, not send `a=1` a second time, and go on
/// counting from there: every count exactly once, none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_visible_transaction_is_completed_not_repeated() {
    use cdp_stage::recovery::{AT_HEADER, CHECKPOINT_HEADER, OPEN, TXN_HEADER};
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let kafka = broker.kafka();
    let n = names("partial");
    topics(&kafka, &n).await;
    for key in ["a", "b", "c", "a", "b", "c"] {
        broker.produce(&n.input, key, b"x").await;
    }
    let spec = spec(&n, "p", true);
    let zombie: ThreadedProducer<DefaultProducerContext> = kafka
        .transactional_producer("zombie", &spec.transactional_id)
        .create()
        .expect("zombie");
    zombie
        .init_transactions(Duration::from_secs(20))
        .expect("init");
    zombie.begin_transaction().expect("begin");
    let positions = format!(
        r#"{{"{}":{{"0":0}},"{}":{{"0":0}}}}"#,
        n.output, n.changelog
    );
    let headers = |position: Option<&str>| {
        let h = rdkafka::message::OwnedHeaders::new()
            .insert(Header {
                key: Lineage::INPUT.group,
                value: Some(GROUP),
            })
            .insert(Header {
                key: TXN_HEADER,
                value: Some("zombie.1"),
            });
        match position {
            Some(p) => h.insert(Header {
                key: Lineage::INPUT.position,
                value: Some(p),
            }),
            None => h,
        }
    };
    // The partition's first checkpoint, as the runtime opens it before anything else.
    zombie
        .send(
            BaseRecord::to(&n.checkpoints)
                .partition(0)
                .key(GROUP)
                .payload(&positions)
                .headers(
                    headers(None)
                        .insert(Header {
                            key: CHECKPOINT_HEADER,
                            value: Some(OPEN),
                        })
                        .insert(Header {
                            key: AT_HEADER,
                            value: Some(positions.as_str()),
                        }),
                ),
        )
        .map_err(|(e, _)| e)
        .expect("zombie checkpoint");
    zombie
        .send(
            BaseRecord::to(&n.output)
                .key("a")
                .payload("a=1")
                .headers(headers(Some("0:0"))),
        )
        .map_err(|(e, _)| e)
        .expect("zombie output");
    zombie
        .send(
            BaseRecord::to(&n.changelog)
                .partition(0)
                .key("vb")
                .payload("1")
                .headers(headers(Some("0:1"))),
        )
        .map_err(|(e, _)| e)
        .expect("zombie state change");
    zombie.flush(Duration::from_secs(10)).expect("flush");
    std::mem::forget(zombie); // dies without ending its transaction

    let stage = start(
        &kafka,
        spec,
        Counter {
            output: n.output.clone(),
            delay_ms: 3_600_000,
        },
    );
    let out = broker
        .read_committed_settle(
            &n.output,
            6,
            Duration::from_secs(60),
            Duration::from_secs(3),
        )
        .await;
    stop(stage).await;
    let mut seen = texts(&out);
    seen.sort();
    assert_eq!(
        seen,
        ["a=1", "a=2", "b=1", "b=2", "c=1", "c=2"],
        "{:?}",
        texts(&out)
    );
}

/// The same for a timer: a killed instance's timer transaction reached the broker only in
/// part, its output (`a expired`) without the changelog record that cancels the timer. The
/// restarted stage restores the timer, which fires again at once: its output must not be
/// written a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_visible_timer_transaction_is_not_repeated() {
    use cdp_stage::recovery::{TIMER_HEADER, TXN_HEADER};
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let kafka = broker.kafka();
    let n = names("partial-timer");
    topics(&kafka, &n).await;
    let counter = |delay_ms| Counter {
        output: n.output.clone(),
        delay_ms,
    };
    broker.produce(&n.input, "a", b"x").await;
    let stage = start(&kafka, spec(&n, "t", true), counter(4_000));
    broker
        .read_committed(&n.output, 1, Duration::from_secs(60))
        .await;
    stop(stage).await;

    let zombie: ThreadedProducer<DefaultProducerContext> = kafka
        .transactional_producer("zombie", &spec(&n, "t", true).transactional_id)
        .create()
        .expect("zombie");
    zombie
        .init_transactions(Duration::from_secs(20))
        .expect("init");
    zombie.begin_transaction().expect("begin");
    let headers = rdkafka::message::OwnedHeaders::new()
        .insert(Header {
            key: Lineage::INPUT.group,
            value: Some(GROUP),
        })
        .insert(Header {
            key: TXN_HEADER,
            value: Some("zombie.1"),
        })
        .insert(Header {
            key: TIMER_HEADER,
            value: Some("0"),
        });
    zombie
        .send(
            BaseRecord::to(&n.output)
                .key("a")
                .payload("a expired")
                .headers(headers),
        )
        .map_err(|(e, _)| e)
        .expect("zombie output");
    zombie.flush(Duration::from_secs(10)).expect("flush");
    std::mem::forget(zombie); // dies without ending its transaction

    tokio::time::sleep(Duration::from_millis(4_000)).await;
    let stage = start(&kafka, spec(&n, "t", true), counter(4_000));
    let out = broker
        .read_committed_settle(
            &n.output,
            2,
            Duration::from_secs(60),
            Duration::from_secs(4),
        )
        .await;
    stop(stage).await;
    assert_eq!(texts(&out), ["a=1", "a expired"]);
}
