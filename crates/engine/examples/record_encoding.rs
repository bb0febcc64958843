//! Why the profile record is MessagePack: one `ProfileRecord`-shaped value (identities,
//! fragments, attributes, memberships, due times and 10 events of a realistic ~500 B XDM
//! ExperienceEvent) encoded three ways — JSON (serde_json), MessagePack (rmp-serde, structs
//! as arrays) and postcard — with its events projected to the three fields definitions read
//! and whole. For each: bytes, bytes after LZ4, encode, decode, and decode plus the JSON values
//! evaluation needs (the attributes and each event as `ProfileRecord::event_value` gives it).
//!
//! postcard cannot read a `serde_json::Value` (it is not self-describing), so its side keeps
//! a mirror of the record whose JSON values are a small `Field` enum; its encode includes
//! converting the record's values to `Field`s, its "decode + values" converting them back.
//!
//! Run: `cargo run --release -p cdp-engine --example record_encoding` (no broker).

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use cdp_contract::records::{Fragment, Identity};
use cdp_engine::projection::Projection;
use cdp_engine::record::{Event, ProfileRecord};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Number, Value};

/// Rounds, and how long each measurement runs per round.
const ROUNDS: usize = 9;
const SLICE: StdDuration = StdDuration::from_millis(100);

/// A JSON value postcard can carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Field {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Array(Vec<Field>),
    Object(Vec<(String, Field)>),
}

impl Field {
    fn from_value(v: &Value) -> Field {
        match v {
            Value::Null => Field::Null,
            Value::Bool(b) => Field::Bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Field::UInt(u)
                } else if let Some(i) = n.as_i64() {
                    Field::Int(i)
                } else {
                    Field::Float(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => Field::Str(s.clone()),
            Value::Array(a) => Field::Array(a.iter().map(Field::from_value).collect()),
            Value::Object(o) => Field::Object(
                o.iter()
                    .map(|(k, v)| (k.clone(), Field::from_value(v)))
                    .collect(),
            ),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Field::Null => Value::Null,
            Field::Bool(b) => Value::Bool(b),
            Field::Int(i) => Value::Number(i.into()),
            Field::UInt(u) => Value::Number(u.into()),
            Field::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Field::Str(s) => Value::String(s),
            Field::Array(a) => Value::Array(a.into_iter().map(Field::into_value).collect()),
            Field::Object(o) => {
                Value::Object(o.into_iter().map(|(k, v)| (k, v.into_value())).collect())
            }
        }
    }
}

/// `ProfileRecord` with `Field`s for JSON values (same fields, same order; fields added later
/// with `#[serde(default)]` and empty here are left out).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PcRecord {
    org: String,
    sandbox: String,
    identities: Vec<Identity>,
    owners: Vec<Identity>,
    datasets: Vec<String>,
    types: Vec<String>,
    events: Vec<PcEvent>,
    fragments: Vec<PcFragment>,
    attributes: Field,
    /// Empty here; as a `Field` so the mirror does not follow the audit entry's shape.
    refused: Field,
    flagged: bool,
    members: Vec<(String, i64)>,
    due: Vec<(String, i64)>,
    modified_ms: i64,
    definitions: u64,
    scheduled: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PcEvent {
    id: String,
    ts: i64,
    ingest_after: i64,
    dataset: u32,
    owner: u32,
    ty: Option<u32>,
    segmented: bool,
    bot: bool,
    fields: Field,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PcFragment {
    dataset_id: String,
    owner: Identity,
    timestamp_ms: i64,
    ingest_ms: i64,
    seq: u64,
    attributes: Field,
}

impl PcRecord {
    fn from_record(r: &ProfileRecord) -> PcRecord {
        PcRecord {
            org: r.org.clone(),
            sandbox: r.sandbox.clone(),
            identities: r.identities.clone(),
            owners: r.owners.clone(),
            datasets: r.datasets.clone(),
            types: r.types.clone(),
            events: r
                .events
                .iter()
                .map(|e| PcEvent {
                    id: e.id.clone(),
                    ts: e.ts,
                    ingest_after: e.ingest_after,
                    dataset: e.dataset,
                    owner: e.owner,
                    ty: e.ty,
                    segmented: e.segmented,
                    bot: e.bot,
                    fields: Field::from_value(&e.fields),
                })
                .collect(),
            fragments: r
                .fragments
                .iter()
                .map(|f| PcFragment {
                    dataset_id: f.dataset_id.clone(),
                    owner: f.owner.clone(),
                    timestamp_ms: f.timestamp_ms,
                    ingest_ms: f.ingest_ms,
                    seq: f.seq,
                    attributes: Field::from_value(&f.attributes),
                })
                .collect(),
            attributes: Field::from_value(&r.attributes),
            refused: Field::from_value(&serde_json::to_value(&r.refused).unwrap_or_default()),
            flagged: r.flagged,
            members: r.members.clone(),
            due: r.due.clone(),
            modified_ms: r.modified_ms,
            definitions: r.definitions,
            scheduled: r.scheduled.clone(),
        }
    }

    /// What evaluation reads: the attributes and each event with its `eventType`.
    fn into_values(self) -> (Value, Vec<Value>) {
        let types = self.types;
        let events = self
            .events
            .into_iter()
            .map(|e| {
                let mut m = match e.fields.into_value() {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                if let Some(t) = e.ty.and_then(|t| types.get(t as usize)) {
                    m.insert("eventType".into(), Value::String(t.clone()));
                }
                Value::Object(m)
            })
            .collect();
        (self.attributes.into_value(), events)
    }
}

/// What evaluation reads of a decoded `ProfileRecord`: like `ProfileRecord::event_value`, but
/// moving each event's fields out instead of cloning them, as the postcard side does.
fn values(r: ProfileRecord) -> (Value, Vec<Value>) {
    let types = r.types;
    let events = r
        .events
        .into_iter()
        .map(|e| {
            let mut m = match e.fields {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if let Some(t) = e.ty.and_then(|t| types.get(t as usize)) {
                m.insert("eventType".into(), Value::String(t.clone()));
            }
            Value::Object(m)
        })
        .collect();
    (r.attributes, events)
}

/// A realistic XDM ExperienceEvent (~500 B of JSON).
fn xdm_event(n: usize, ts: DateTime<Utc>) -> Value {
    let purchase = n.is_multiple_of(3);
    json!({
        "_id": format!("5f0c8a1e-{n:04}-4c1b-9a0e-2d3c4b5a6f70"),
        "eventType": if purchase { "commerce.purchases" } else { "web.webpagedetails.pageViews" },
        "timestamp": ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "web": {"webPageDetails": {"name": format!("Product {}", n % 17),
                                   "URL": format!("https://shop.example.com/p/{}", 1000 + n)}},
        "commerce": {"order": {"priceTotal": 19.99 + n as f64, "currencyCode": "EUR",
                               "purchaseID": format!("ord-{:06}", 41000 + n)}},
        "identityMap": {"ECID": [{"id": "12345678901234567890123456789012345678",
                                  "authenticatedState": "ambiguous", "primary": true}]},
        "environment": {"type": "browser",
                        "browserDetails": {"name": "Firefox", "version": "131.0"}}
    })
}

/// A profile as the engine keeps it, with its events projected by `projection`.
fn record(projection: &Projection, now: DateTime<Utc>) -> ProfileRecord {
    let ecid = Identity::new("ECID", "12345678901234567890123456789012345678");
    let email = Identity::new("Email", "ann@example.com");
    let mut r = ProfileRecord::new("acme", "prod");
    r.identities = vec![ecid.clone(), email.clone()];
    let attributes = json!({
        "person": {"name": {"firstName": "Ann", "lastName": "Lee"}, "birthYear": 1962},
        "homeAddress": {"countryCode": "US", "city": "Boston", "postalCode": "02110"},
        "personalEmail": {"address": "ann@example.com"},
        "loyalty": {"tier": "gold", "points": 1200}
    });
    r.fragments = vec![Fragment {
        dataset_id: "ds-crm".into(),
        owner: email,
        timestamp_ms: now.timestamp_millis() - 86_400_000,
        ingest_ms: now.timestamp_millis() - 86_399_000,
        seq: 7,
        attributes: attributes.clone(),
    }];
    r.attributes = attributes;
    for n in 0..10 {
        let ts = now - Duration::minutes(90 - 9 * n as i64);
        let e = xdm_event(n, ts);
        let ty = e["eventType"].as_str().map(str::to_string);
        let event = Event {
            id: e["_id"].as_str().unwrap_or_default().to_string(),
            ts: ts.timestamp_millis(),
            ingest_after: 35 + n as i64,
            dataset: r.dataset_index("ds-web"),
            owner: r.owner_index(&ecid),
            ty: ty.map(|t| r.type_index(&t)),
            segmented: true,
            bot: false,
            fields: projection.project(&e),
        };
        r.insert_event(event);
    }
    r.members = (0..8)
        .map(|i| {
            (
                format!("segment-{i:02}"),
                now.timestamp_millis() - 3_600_000 * i,
            )
        })
        .collect();
    r.due = (0..12)
        .map(|i| {
            (
                format!("segment-{i:02}"),
                now.timestamp_millis() + 600_000 * (i + 1),
            )
        })
        .collect();
    r.modified_ms = now.timestamp_millis();
    r.definitions = 0x5eed_cafe_f00d_d00d;
    r
}

/// Mean µs of each of `cells`, measured in `ROUNDS` interleaved rounds of `SLICE` each (so
/// that what else the machine runs meanwhile is spread over all of them): the median round.
fn micros(cells: &mut [Box<dyn FnMut() + '_>]) -> Vec<f64> {
    for f in cells.iter_mut() {
        for _ in 0..200 {
            f();
        }
    }
    let mut rounds = vec![Vec::new(); cells.len()];
    for _ in 0..ROUNDS {
        for (i, f) in cells.iter_mut().enumerate() {
            let start = Instant::now();
            let mut calls = 0u64;
            while start.elapsed() < SLICE {
                for _ in 0..50 {
                    f();
                }
                calls += 50;
            }
            rounds[i].push(start.elapsed().as_secs_f64() * 1e6 / calls as f64);
        }
    }
    rounds
        .into_iter()
        .map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        })
        .collect()
}

struct Row {
    name: &'static str,
    bytes: usize,
    lz4: usize,
    /// Encode, decode, decode + values (µs).
    times: [f64; 3],
}

fn measure(r: &ProfileRecord) -> Vec<Row> {
    let engine: Vec<Value> = r.events.iter().map(|e| r.event_value(e)).collect();
    assert_eq!(
        values(r.clone()).1,
        engine,
        "the events as the evaluator reads them"
    );

    let json = serde_json::to_vec(r).expect("json");
    let back: ProfileRecord = serde_json::from_slice(&json).expect("json back");
    assert_eq!(&back, r);
    let mp = rmp_serde::to_vec(r).expect("msgpack");
    let back: ProfileRecord = rmp_serde::from_slice(&mp).expect("msgpack back");
    assert_eq!(&back, r);
    let pc = postcard::to_allocvec(&PcRecord::from_record(r)).expect("postcard");
    let back: PcRecord = postcard::from_bytes(&pc).expect("postcard back");
    assert_eq!(back.into_values(), values(r.clone()));

    let mut cells: Vec<Box<dyn FnMut() + '_>> = vec![
        Box::new(|| {
            black_box(serde_json::to_vec(black_box(r)).expect("json"));
        }),
        Box::new(|| {
            black_box(serde_json::from_slice::<ProfileRecord>(black_box(&json)).expect("json"));
        }),
        Box::new(|| {
            let p: ProfileRecord = serde_json::from_slice(black_box(&json)).expect("json");
            black_box(values(p));
        }),
        Box::new(|| {
            black_box(rmp_serde::to_vec(black_box(r)).expect("msgpack"));
        }),
        Box::new(|| {
            black_box(rmp_serde::from_slice::<ProfileRecord>(black_box(&mp)).expect("msgpack"));
        }),
        Box::new(|| {
            let p: ProfileRecord = rmp_serde::from_slice(black_box(&mp)).expect("msgpack");
            black_box(values(p));
        }),
        Box::new(|| {
            let m = PcRecord::from_record(black_box(r));
            black_box(postcard::to_allocvec(&m).expect("postcard"));
        }),
        Box::new(|| {
            black_box(postcard::from_bytes::<PcRecord>(black_box(&pc)).expect("postcard"));
        }),
        Box::new(|| {
            let p: PcRecord = postcard::from_bytes(black_box(&pc)).expect("postcard");
            black_box(p.into_values());
        }),
    ];
    let t = micros(&mut cells);
    drop(cells);
    let row = |name, bytes: &[u8], i: usize| Row {
        name,
        bytes: bytes.len(),
        lz4: lz4_flex::compress_prepend_size(bytes).len(),
        times: [t[i], t[i + 1], t[i + 2]],
    };
    vec![
        row("JSON (serde_json)", &json, 0),
        row("MessagePack (rmp-serde, structs as arrays)", &mp, 3),
        row("postcard (Field mirror)", &pc, 6),
    ]
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
    let now = Utc::now();
    let sample = xdm_event(1, now);
    println!("# Profile record encoding (no broker)\n");
    println!("machine: {}", machine());
    println!("date: {}", now.format("%Y-%m-%d %H:%M UTC"));
    println!(
        "one XDM event: {} B of JSON",
        serde_json::to_vec(&sample).expect("json").len()
    );
    let paths = |p: &[&str]| -> Vec<Vec<String>> {
        p.iter()
            .map(|p| p.split('.').map(String::from).collect())
            .collect()
    };
    let projected = Projection::new(
        paths(&[
            "timestamp",
            "commerce.order.priceTotal",
            "web.webPageDetails.name",
        ]),
        &[],
    );
    let whole = Projection::new(paths(&[]), &["*".to_string()]);
    for (label, projection) in [
        ("events projected to 3 fields (timestamp, commerce.order.priceTotal, web.webPageDetails.name)", &projected),
        ("whole events (keep_event_fields = [\"*\"])", &whole),
    ] {
        let r = record(projection, now);
        println!("\n## 10 events, {label}\n");
        println!("| encoding | bytes | bytes after LZ4 | encode µs | decode µs | decode + values µs |");
        println!("|---|---|---|---|---|---|");
        for row in measure(&r) {
            println!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                row.name, row.bytes, row.lz4, row.times[0], row.times[1], row.times[2]
            );
        }
    }
}
