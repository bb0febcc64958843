//! Profiles exactly once across instances and crashes, with the profile stages as real
//! `cdp profile` processes: the same valid events (as validate's profile intake writes them)
//! go to two pipelines. One is served by two
//! instances at once (the halves of a person's merge live on different partitions, so on
//! different instances, and the people are in two sandboxes whose identity graphs are on
//! different partitions of profile.sequence, so each instance owns one of them), one of which
//! is killed with SIGKILL mid-stream and restarted; the other by one instance that runs
//! undisturbed. Both end with the same profiles: the same identities together, every event in
//! exactly one profile, none counted twice.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use cdp_contract::endpoints::Endpoints;
use cdp_contract::envelope::Source;
use cdp_contract::follower::Follower;
use cdp_contract::records::{Change, Identity, ProfileUpdate};
use cdp_contract::{RawHeaders, Topics};
use cdp_control::{CatalogView, CatalogWriter};
use cdp_test_support::{eventually, eventually_every, unique_name, Broker, ChildGuard, XdmFixture};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

/// People; every fifth logs in (an ECID and a CRM id in one event), joining what was seen
/// under the cookie (keyed by ECID) with what follows under the CRM id (keyed by CRMID).
const PEOPLE: usize = 300;
const DATASET: &str = "ds-profiles";
/// Partitions of profile.sequence: one identity owner each.
const OWNERS: i32 = 2;

/// The two sandboxes the people are in (even people in the first): `prod` and the first other
/// name placed on the other partition of profile.sequence.
fn sandboxes() -> [String; 2] {
    use cdp_contract::partition::for_sandbox;
    let prod = for_sandbox("acme", "prod", OWNERS);
    let other = (0..100)
        .map(|i| format!("dev{i}"))
        .find(|s| for_sandbox("acme", s, OWNERS) != prod)
        .expect("a sandbox on the other partition");
    ["prod".to_string(), other]
}

fn ecid(n: usize) -> String {
    format!("{n:038}")
}

/// One event: its sandbox, key (the primary identity) and body.
type Event = (String, String, serde_json::Value);

/// The events of one person, in order.
fn events_of(person: usize) -> Vec<Event> {
    let cookie = ecid(person);
    let crm = format!("crm-{person}");
    let sandbox = sandboxes()[person % 2].clone();
    let anon = |k: usize| {
        (
            sandbox.clone(),
            format!("ECID:{cookie}"),
            json!({"_id": format!("p{person}-a{k}"), "timestamp": now(), "identityMap": {"ECID": [{"id": cookie, "primary": true}]}}),
        )
    };
    let mut events: Vec<_> = (0..3).map(anon).collect();
    if person.is_multiple_of(5) {
        events.push((
            sandbox.clone(),
            format!("CRMID:{crm}"),
            json!({"_id": format!("p{person}-login"), "timestamp": now(),
                   "identityMap": {"CRMID": [{"id": crm, "primary": true}], "ECID": [{"id": cookie}]}}),
        ));
        events.push((
            sandbox.clone(),
            format!("CRMID:{crm}"),
            json!({"_id": format!("p{person}-c1"), "timestamp": now(), "identityMap": {"CRMID": [{"id": crm, "primary": true}]}}),
        ));
    }
    events
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339()
}

fn all_events() -> Vec<Event> {
    // Round-robin over people so a person's events are spread over the stream.
    let per: Vec<Vec<_>> = (0..PEOPLE).map(events_of).collect();
    let longest = per.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|k| per.iter().filter_map(move |e| e.get(k).cloned()))
        .collect()
}

/// Topics and catalog of one pipeline on the shared broker.
async fn pipeline(broker: &Broker, name: &str) -> Topics {
    let kafka = broker.kafka();
    let topics = Topics::new(unique_name(name));
    // As validate with the profile intake creates them (the fast path writes profile.resolved).
    broker
        .create_topic(&topics.profile_sequence(), OWNERS)
        .await;
    broker.create_topic(&topics.profile_resolved(), 3).await;
    broker.create_pipeline_topics(&topics, 3).await;
    let view = CatalogView::start(&kafka, &topics).expect("view");
    let writer = CatalogWriter::new(&kafka, &topics, view.clone()).expect("writer");
    XdmFixture::new(
        "https://ns.adobe.com/acme/schemas/profiles",
        DATASET,
        "acme",
        json!({"type": "object"}),
    )
    .write(&writer)
    .await;
    topics
}

/// Writes events as validate's profile intake does (to profile.sequence, or to profile.resolved
/// on the identity fast path): the intake's own code judges each event (headers, key = primary
/// identity) against the pipeline's catalog. Answers how many went to profile.sequence.
async fn produce(broker: &Broker, topics: &Topics, events: &[Event]) -> usize {
    use cdp_validate::Follower as _;
    let producer: FutureProducer = broker
        .kafka()
        .producer("valid", 30_000)
        .create()
        .expect("producer");
    let view = CatalogView::start(&broker.kafka(), topics).expect("view");
    view.caught_up(Duration::from_secs(30))
        .await
        .expect("catalog read");
    let placement = cdp_profile::run::Placement::of(&broker.kafka(), topics)
        .await
        .expect("the profile topics' partitions");
    assert_eq!(placement.sequence, OWNERS);
    let intake =
        cdp_profile::run::intake(&cdp_profile::ProfileSettings::default(), topics, placement);
    let sends = events.iter().enumerate().map(|(i, (sandbox, key, value))| {
        let raw = RawHeaders {
            stream_id: "s".into(),
            org_id: "acme".into(),
            sandbox: sandbox.clone(),
            batch_id: "b".into(),
            xaction_id: format!("b:{i}"),
            received_ms: cdp_contract::clock::now_ms(),
            content_type: "application/json".into(),
            source: Source::Collection,
        };
        let text = value.to_string();
        let item = intake
            .follow(
                &cdp_validate::Valid {
                    raw: &raw,
                    dataset_id: DATASET,
                    entity: value,
                    text: &text,
                    key,
                    position: (0, i as i64),
                },
                &view.read(),
            )
            .expect("the item can be written")
            .expect("the intake takes the event");
        assert_ne!(item.topic, topics.events_error(), "an item, not a refusal");
        let partition = item
            .partition
            .expect("the intake places an item by its sandbox");
        let (producer, topic, payload) =
            (producer.clone(), item.topic, item.value.unwrap_or_default());
        async move {
            producer
                .send(
                    FutureRecord::to(&topic)
                        .key(key.as_str())
                        .payload(&payload)
                        .partition(partition),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| e)
                .expect("item written");
            topic
        }
    });
    let sent = futures::future::join_all(sends).await;
    sent.into_iter()
        .filter(|topic| *topic == topics.profile_sequence())
        .count()
}

fn profile_process(broker: &Broker, topics: &Topics, instance: &str, run: u32) -> ChildGuard {
    let log = std::env::temp_dir().join(format!(
        "cdp-profile-{}-{instance}-{run}.log",
        topics.namespace
    ));
    let file = std::fs::File::create(&log).expect("log file");
    let state = std::env::temp_dir().join(format!("cdp-profile-state-{}", topics.namespace));
    ChildGuard::spawn(
        Command::new(env!("CARGO_BIN_EXE_cdp"))
            .arg("profile")
            .env("CDP_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap())
            .env("CDP_TOPICS__NAMESPACE", &topics.namespace)
            .env(
                "CDP_PROFILE__GROUP_PREFIX",
                format!("{}-profile", topics.namespace),
            )
            .env("CDP_PROFILE__INSTANCE_ID", instance)
            .env("CDP_PROFILE__PARTITIONS", "3")
            .env("CDP_PROFILE__IDENTITY_PARTITIONS", OWNERS.to_string())
            .env("CDP_PROFILE__STATE_DIR", state)
            // Small transactions, so a kill lands with many behind it and one open.
            .env("CDP_PROFILE__MAX_BATCH", "20")
            .env("CDP_PROFILE__MAX_TRANSACTION_RECORDS", "20")
            .env("CDP_HEALTH__LISTEN", "127.0.0.1:0")
            .env("CDP_PROFILE__QUERY_LISTEN", "127.0.0.1:0")
            .env("CDP_VALIDATE__PARTITIONS", "3")
            .env("CDP_EDGE__RAW_PARTITIONS", "3")
            .env("RUST_LOG", "warn,cdp_profile=info,cdp_stage=info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file),
        "cdp profile",
    )
}

/// A profile as profile.updates tells it, keyed by its identities (ids may differ between
/// runs whose inputs interleave differently; who is with whom may not).
#[derive(Debug, Clone, PartialEq, Default)]
struct Folded {
    events: BTreeSet<String>,
    count: u32,
}

async fn profiles(broker: &Broker, topics: &Topics) -> BTreeMap<Vec<Identity>, Folded> {
    let records = broker
        .read_committed_settle(
            &topics.profile_updates(),
            usize::MAX,
            Duration::from_secs(3),
            Duration::ZERO,
        )
        .await;
    let mut by_id: BTreeMap<String, (Vec<Identity>, Folded)> = BTreeMap::new();
    for r in records {
        let u: ProfileUpdate = serde_json::from_value(r.json()).expect("a profile update");
        if let Change::Merged { .. } = u.change {
            by_id.remove(&u.profile_id);
            continue;
        }
        let entry = by_id.entry(u.profile_id.clone()).or_default();
        entry.0 = u.identities.clone();
        entry.1.count = u.event_count;
        for removed in &u.removed_events {
            entry.1.events.remove(removed);
        }
        if let Change::Event { event } = &u.change {
            entry.1.events.insert(event.item_id.clone());
        }
    }
    by_id
        .into_values()
        .map(|(mut ids, f)| {
            ids.sort();
            (ids, f)
        })
        .filter(|(ids, _)| !ids.is_empty())
        .collect()
}

/// Which instance owns each partition of profile.sequence, as the instances advertise it.
fn identity_owners(endpoints: &Follower<Endpoints>) -> Vec<Option<String>> {
    let read = endpoints.read();
    (0..OWNERS)
        .map(|p| {
            read.owners("identity", p)
                .first()
                .map(|e| e.instance.clone())
        })
        .collect()
}

fn total_events() -> usize {
    all_events().len()
}

fn complete(p: &BTreeMap<Vec<Identity>, Folded>) -> bool {
    p.len() == PEOPLE && p.values().map(|f| f.events.len()).sum::<usize>() == total_events()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_and_a_kill_make_the_profiles_of_an_undisturbed_run() {
    cdp_contract::telemetry::init_for_tests();
    let broker = Broker::start();
    let events = all_events();
    let (half, rest) = events.split_at(events.len() / 2);

    // The undisturbed reference: one instance, all events.
    let reference = pipeline(&broker, "profiles-ref").await;
    let to_owners = produce(&broker, &reference, &events).await;
    let placed: BTreeSet<i32> = broker
        .read_committed_settle(
            &reference.profile_sequence(),
            to_owners,
            Duration::from_secs(30),
            Duration::ZERO,
        )
        .await
        .iter()
        .map(|r| r.partition)
        .collect();
    assert_eq!(
        placed,
        (0..OWNERS).collect(),
        "each sandbox's items on its own partition of profile.sequence"
    );
    assert!(
        to_owners < events.len(),
        "events with one identity take the fast path ({to_owners} of {} to the owners)",
        events.len()
    );
    let _undisturbed = profile_process(&broker, &reference, "ref", 1);

    // Two instances; the first is killed once the second half of the stream is flowing.
    let crashing = pipeline(&broker, "profiles-crash").await;
    produce(&broker, &crashing, half).await;
    let mut a = profile_process(&broker, &crashing, "a", 1);
    let _b = profile_process(&broker, &crashing, "b", 1);
    let endpoints: Follower<Endpoints> = Follower::start(
        &broker.kafka(),
        &crashing.endpoints(),
        &[0],
        "test-endpoints",
    )
    .expect("follow the endpoints");
    eventually(
        Duration::from_secs(60),
        "each instance owns one sandbox's identity graphs",
        async || {
            let mut owners = identity_owners(&endpoints);
            owners.sort();
            owners == [Some("a".to_string()), Some("b".to_string())]
        },
    )
    .await;
    eventually_every(
        Duration::from_secs(60),
        Duration::from_millis(50),
        "some profiles committed",
        async || !profiles(&broker, &crashing).await.is_empty(),
    )
    .await;
    let feeding = async {
        for chunk in rest.chunks(60) {
            produce(&broker, &crashing, chunk).await;
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let killing = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let status = a.kill();
        assert_eq!(
            status.signal(),
            Some(9),
            "instance a ran until SIGKILL ({status})"
        );
        let at_kill: usize = profiles(&broker, &crashing)
            .await
            .values()
            .map(|f| f.events.len())
            .sum();
        assert!(
            at_kill < total_events(),
            "killed mid-stream ({at_kill} of {} events in)",
            total_events()
        );
    };
    tokio::join!(feeding, killing);
    let _a_again = profile_process(&broker, &crashing, "a", 2);

    let mut expected = BTreeMap::new();
    eventually(
        Duration::from_secs(120),
        "the undisturbed run complete",
        async || {
            expected = profiles(&broker, &reference).await;
            complete(&expected)
        },
    )
    .await;
    let mut got = BTreeMap::new();
    eventually(
        Duration::from_secs(120),
        "the disturbed run complete",
        async || {
            got = profiles(&broker, &crashing).await;
            complete(&got)
        },
    )
    .await;
    let stitched = expected.keys().filter(|ids| ids.len() == 2).count();
    assert_eq!(
        stitched,
        PEOPLE / 5,
        "every fifth person is one profile of two identities"
    );
    for (ids, f) in &got {
        assert_eq!(
            f.count as usize,
            f.events.len(),
            "{ids:?}: no event counted twice"
        );
    }
    assert_eq!(
        got, expected,
        "same profiles, same events, as the undisturbed run"
    );
}
