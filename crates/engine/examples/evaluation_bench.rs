//! Segment evaluation alone, as the engine does it per event, without a broker: 100 streaming
//! definitions (20 of each streaming query type, after cdp-pql's `eval_bench`) in one
//! incremental `DefinitionSet`; a profile stored as the engine stores it (`ProfileRecord`, ~10
//! or ~100 events projected to the fields the definitions read, attributes, fragments,
//! memberships and due times). One profile update = decode the stored record, insert the new
//! (projected) event, `pending`, and when something is pending a context of the events in the
//! lookback, `run`, `set_segments`, then encode the record.
//!
//! Every event-reading definition has its own event type(s), except ten "single event with
//! profile attributes" definitions that all read the popular `commerce.purchases` (different
//! price thresholds): an update with an event of type `t0`…`t3` touches one definition, one
//! with a `commerce.purchases` event touches ten, and "everything" (`Changes::everything()`,
//! what the old segment stage did per update) evaluates all 100. The measured mean of
//! `Outcome::evaluated` is printed beside each rate.
//!
//! Run: `cargo run --release -p cdp-engine --example evaluation_bench`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use cdp_contract::records::{Fragment, Identity};
use cdp_engine::projection::Projection;
use cdp_engine::record::{Event, ProfileRecord};
use cdp_engine::SegmentSettings;
use cdp_pql::incremental::{Changes, Definition, DefinitionSet};
use cdp_pql::{classify, parse, Plan, SegmentInfo};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

/// Rounds, and how long each scenario runs per round.
const ROUNDS: usize = 5;
const SLICE: StdDuration = StdDuration::from_millis(400);

/// The 100 definitions: (id, PQL).
fn definitions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in 0..20 {
        // Single event: its own type.
        out.push((
            format!("single-{i:02}"),
            format!(
                r#"xEvent.any(eventType = "t{i}" and timestamp occurs < {} hours before now)"#,
                1 + i % 12
            ),
        ));
        // Profile only.
        out.push((
            format!("profile-{i:02}"),
            format!(
                r#"person.birthYear < {} and homeAddress.countryCode = "US" and personalEmail.address.endsWith("@example.com")"#,
                1950 + i
            ),
        ));
        // Single event with profile attributes: ten share commerce.purchases, ten have their
        // own type.
        let ty = if i < 10 {
            "commerce.purchases".to_string()
        } else {
            format!("p{i}")
        };
        out.push((
            format!("attr-event-{i:02}"),
            format!(
                r#"homeAddress.countryCode in ["US", "CA"] and xEvent.any(eventType = "{ty}" and commerce.order.priceTotal > {} and timestamp occurs < 3 hours before now)"#,
                i * 5
            ),
        ));
        // Segment of segments.
        out.push((
            format!("of-segments-{i:02}"),
            format!(
                r#"inSegment("single-{i:02}") and not inSegment("profile-{:02}")"#,
                (i + 1) % 20
            ),
        ));
        // Multiple events: chains over three types of their own, or counts of one.
        out.push((
            format!("multi-{i:02}"),
            if i % 2 == 0 {
                format!(
                    r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "c{i}.view"), C1: NOT WHAT(eventType = "c{i}.remove"), C2: WHAT(eventType = "c{i}.checkout") WITHIN {} hours AFTER C0])"#,
                    1 + i % 5
                )
            } else {
                format!(
                    r#"xEvent[eventType = "n{i}" and timestamp occurs < 24 hours before now].count() > {}"#,
                    i % 3
                )
            },
        ));
    }
    out
}

/// A whole XDM ExperienceEvent of `ty` at `ts`, as it arrives (the engine keeps a projection).
fn entity(n: usize, ty: &str, ts: DateTime<Utc>, price: f64) -> Value {
    json!({
        "_id": format!("ev-{n}"),
        "eventType": ty,
        "timestamp": ts.to_rfc3339(),
        "web": {"webPageDetails": {"name": format!("page {}", n % 17),
                                   "URL": format!("https://shop.example.com/p/{n}")}},
        "commerce": {"order": {"priceTotal": price, "currencyCode": "EUR",
                               "purchaseID": format!("o-{n}")}},
        "identityMap": {"ECID": [{"id": "12345678901234567890123456789012345678", "primary": true}]},
        "environment": {"type": "browser", "browserDetails": {"name": "Firefox", "version": "131"}}
    })
}

/// Event types of the older events of the larger profile.
const BACKGROUND: [&str; 12] = [
    "t4",
    "t5",
    "t6",
    "p11",
    "p12",
    "n1",
    "n3",
    "c2.view",
    "c2.checkout",
    "commerce.purchases",
    "web.webpagedetails.pageViews",
    "productView",
];

/// The recent events every profile has: the types the updates carry (so their definitions are
/// already decided), a purchase above every threshold, a chain.
const RECENT: [(&str, f64); 10] = [
    ("t0", 0.0),
    ("t1", 0.0),
    ("t2", 0.0),
    ("t3", 0.0),
    ("commerce.purchases", 99.0),
    ("commerce.purchases", 12.0),
    ("c0.view", 0.0),
    ("c0.checkout", 0.0),
    ("n1", 0.0),
    ("web.webpagedetails.pageViews", 0.0),
];

struct Bench {
    set: DefinitionSet,
    projection: Projection,
    lookback_ms: i64,
    now: DateTime<Utc>,
}

impl Bench {
    fn add_event(
        &self,
        record: &mut ProfileRecord,
        n: usize,
        ty: &str,
        ts: DateTime<Utc>,
        price: f64,
    ) {
        let e = entity(n, ty, ts, price);
        let event = Event {
            id: format!("ev-{n}"),
            ts: ts.timestamp_millis(),
            ingest_after: 40,
            dataset: record.dataset_index("ds-web"),
            owner: record.owner_index(&Identity::new(
                "ECID",
                "12345678901234567890123456789012345678",
            )),
            ty: Some(record.type_index(ty)),
            segmented: true,
            bot: false,
            fields: self.projection.project(&e),
        };
        record.insert_event(event);
    }

    /// A stored profile with `events` events, evaluated once with everything (its memberships
    /// and due times are those of a profile in steady state).
    fn profile(&self, events: usize) -> Vec<u8> {
        let ecid = Identity::new("ECID", "12345678901234567890123456789012345678");
        let email = Identity::new("Email", "ann@example.com");
        let mut record = ProfileRecord::new("acme", "prod");
        record.identities = vec![ecid.clone(), email.clone()];
        let attributes = json!({
            "person": {"name": {"firstName": "Ann", "lastName": "Lee"}, "birthYear": 1962},
            "homeAddress": {"countryCode": "US", "city": "Boston", "postalCode": "02110"},
            "personalEmail": {"address": "ann@example.com"},
            "loyalty": {"tier": "gold", "points": 1200}
        });
        record.fragments = vec![Fragment {
            dataset_id: "ds-crm".into(),
            owner: email,
            timestamp_ms: self.now.timestamp_millis() - 86_400_000,
            ingest_ms: self.now.timestamp_millis() - 86_399_000,
            seq: 7,
            attributes: attributes.clone(),
        }];
        record.attributes = attributes;
        let older = events.saturating_sub(RECENT.len());
        for n in 0..older {
            // Spread over the lookback, older than the recent ones.
            let ts = self.now - Duration::minutes(60 + (n as i64 * 1380) / older.max(1) as i64);
            let ty = BACKGROUND[n % BACKGROUND.len()];
            self.add_event(&mut record, 1000 + n, ty, ts, (n % 40) as f64);
        }
        for (n, (ty, price)) in RECENT.iter().take(events).enumerate() {
            let ts = self.now - Duration::minutes(50 - 5 * n as i64);
            self.add_event(&mut record, n, ty, ts, *price);
        }
        let mut state = record.segments();
        let out = self.evaluate(&mut record, &mut state, &Changes::everything());
        assert_eq!(out, 100, "the first evaluation evaluates everything");
        record.set_segments(state);
        record.encode().expect("encodes")
    }

    /// The evaluation of segments.rs: pending, then a context of the events in the lookback.
    fn evaluate(
        &self,
        record: &mut ProfileRecord,
        state: &mut cdp_pql::incremental::SegmentState,
        changes: &Changes<'_>,
    ) -> usize {
        let now = self.now.timestamp_millis();
        let pending = self.set.pending(changes, &record.attributes, state, now);
        if pending.is_empty() {
            return 0;
        }
        let floor = now - self.lookback_ms;
        let (values, times) = record.segment_events(floor);
        let mut cx = cdp_pql::Context::with_times(
            &record.attributes,
            &values,
            times,
            Default::default(),
            self.now,
        );
        let outcome = self.set.run(pending, &mut cx, state);
        outcome.evaluated
    }

    /// One profile update: an event of `ty` for the stored profile. Returns the new bytes and
    /// the definitions evaluated.
    fn update(
        &self,
        stored: &[u8],
        n: usize,
        ty: &str,
        everything: bool,
        new: &Value,
    ) -> (Vec<u8>, usize) {
        let mut record = ProfileRecord::decode(stored).expect("decodes");
        let ts = self.now.timestamp_millis() - 1000;
        let event = Event {
            id: format!("u-{n}"),
            ts,
            ingest_after: 40,
            dataset: record.dataset_index("ds-web"),
            owner: record.owner_index(&Identity::new(
                "ECID",
                "12345678901234567890123456789012345678",
            )),
            ty: Some(record.type_index(ty)),
            segmented: true,
            bot: false,
            fields: self.projection.project(new),
        };
        record.insert_event(event);
        let mut state = record.segments();
        let changes = if everything {
            Changes::everything()
        } else {
            Changes {
                event_types: vec![Some(ty)],
                ..Changes::default()
            }
        };
        let evaluated = self.evaluate(&mut record, &mut state, &changes);
        record.set_segments(state);
        (record.encode().expect("encodes"), evaluated)
    }
}

/// One scenario: a name, and one update (its number given) returning the definitions it
/// evaluated.
type Scenario<'a> = (&'static str, Box<dyn FnMut(usize) -> usize + 'a>);

/// Runs the scenarios in `ROUNDS` interleaved rounds of `SLICE` each (so that what else the
/// machine runs meanwhile is spread over all of them): per scenario, the median round's
/// updates/s and the mean definitions evaluated.
fn measure(scenarios: &mut [Scenario<'_>]) -> Vec<(f64, f64)> {
    let mut rates = vec![Vec::new(); scenarios.len()];
    let mut totals = vec![(0usize, 0usize); scenarios.len()];
    for (_, f) in scenarios.iter_mut() {
        for n in 0..200 {
            black_box(f(n));
        }
    }
    for _ in 0..ROUNDS {
        for (i, (_, f)) in scenarios.iter_mut().enumerate() {
            let start = Instant::now();
            let (mut calls, mut evaluated) = (0usize, 0usize);
            while start.elapsed() < SLICE {
                for _ in 0..20 {
                    evaluated += f(totals[i].0 + calls);
                    calls += 1;
                }
            }
            rates[i].push(calls as f64 / start.elapsed().as_secs_f64());
            totals[i].0 += calls;
            totals[i].1 += evaluated;
        }
    }
    rates
        .into_iter()
        .zip(totals)
        .map(|(mut r, (calls, evaluated))| {
            r.sort_by(f64::total_cmp);
            (r[r.len() / 2], evaluated as f64 / calls as f64)
        })
        .collect()
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores (nproc)")
}

fn main() {
    let sources = definitions();
    let none = std::collections::HashMap::<String, SegmentInfo>::new();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    let defs: Vec<Definition> = sources
        .iter()
        .map(|(id, src)| {
            let q = parse(src).expect("bench query parses");
            let kind = classify(&q, &none)
                .query_type
                .map_or("batch".to_string(), |t| t.describe().to_string());
            *kinds.entry(kind).or_default() += 1;
            Definition {
                id: id.clone(),
                plan: Arc::new(Plan::compile(&q).expect("bench query compiles")),
            }
        })
        .collect();
    let projection = Projection::new(
        defs.iter()
            .flat_map(|d| d.plan.inputs().event_paths.iter().cloned()),
        &[],
    );
    let now = Utc::now();
    let bench = Bench {
        set: DefinitionSet::new(defs, true),
        projection,
        lookback_ms: SegmentSettings::default().lookback_ms,
        now,
    };

    println!("# Segment evaluation alone (cdp-engine, no broker)\n");
    println!("machine: {}", machine());
    println!("date: {}", now.format("%Y-%m-%d %H:%M UTC"));
    println!("definitions: {} {:?}", bench.set.len(), kinds);
    let kept: Vec<String> = bench.projection.paths.iter().map(|p| p.join(".")).collect();
    println!("event fields kept (projection): {kept:?}");

    for events in [10, 100] {
        let stored = bench.profile(events);
        let record = ProfileRecord::decode(&stored).expect("decodes");
        println!(
            "\n## Profile with {} events ({} B stored, {} memberships, {} due times)\n",
            record.events.len(),
            stored.len(),
            record.members.len(),
            record.due.len()
        );
        let one = ["t0", "t1", "t2", "t3"];
        // The new event, a second old (`Bench::update` gives it that timestamp).
        let now = now - Duration::seconds(1);
        let purchase = entity(9, "commerce.purchases", now, 20.0);
        let typed: Vec<Value> = one.iter().map(|t| entity(9, t, now, 0.0)).collect();
        let nobody = entity(9, "unread.type", now, 0.0);

        let mut scenarios: Vec<Scenario<'_>> = Vec::new();
        scenarios.push((
            "decode + encode only",
            Box::new(|_| {
                let r = ProfileRecord::decode(black_box(&stored)).expect("decodes");
                black_box(r.encode().expect("encodes"));
                0
            }),
        ));
        scenarios.push((
            "context build alone (event values + Context::with_times)",
            Box::new(|_| {
                let floor = bench.now.timestamp_millis() - bench.lookback_ms;
                let (values, times) = record.segment_events(floor);
                let cx = cdp_pql::Context::with_times(
                    &record.attributes,
                    &values,
                    times,
                    Default::default(),
                    bench.now,
                );
                black_box(&cx);
                0
            }),
        ));
        scenarios.push((
            "0 definitions touched (type nobody reads)",
            Box::new(|n| {
                let (out, ev) = bench.update(&stored, n, "unread.type", false, &nobody);
                black_box(out);
                ev
            }),
        ));
        scenarios.push((
            "1 definition touched (t0…t3)",
            Box::new(|n| {
                let (out, ev) = bench.update(&stored, n, one[n % 4], false, &typed[n % 4]);
                black_box(out);
                ev
            }),
        ));
        scenarios.push((
            "10 definitions touched (commerce.purchases)",
            Box::new(|n| {
                let (out, ev) = bench.update(&stored, n, "commerce.purchases", false, &purchase);
                black_box(out);
                ev
            }),
        ));
        scenarios.push((
            "everything (Changes::everything, 100)",
            Box::new(|n| {
                let (out, ev) = bench.update(&stored, n, "commerce.purchases", true, &purchase);
                black_box(out);
                ev
            }),
        ));
        println!("| scenario | updates/s | mean definitions evaluated | µs/update |");
        println!("|---|---|---|---|");
        let results = measure(&mut scenarios);
        for ((name, _), (rate, mean)) in scenarios.iter().zip(&results) {
            println!(
                "| {name} | {} | {mean:.2} | {:.2} |",
                thousands(*rate),
                1e6 / rate
            );
        }
    }
}

fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
