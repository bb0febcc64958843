//! Evaluation throughput for a realistic mix: 100 segments, 20 of each streaming
//! query type, over one profile with 200 recent events; with and without the
//! next-change computation. Run: `cargo run --release -p cdp-pql --example eval_bench`.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant};

use cdp_pql::{classify, parse, Context, Plan, QueryType, SegmentInfo};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

fn segments() -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..20 {
        out.push(format!(
            r#"xEvent.any(eventType = "type{}" and timestamp occurs < {} hours before now)"#,
            i % 8,
            1 + i % 12
        ));
        out.push(format!(
            r#"person.birthYear < {} and homeAddress.countryCode = "US" and personalEmail.address.endsWith("@example.com")"#,
            1950 + i
        ));
        out.push(format!(
            r#"homeAddress.countryCode in ["US", "CA"] and xEvent.any(eventType = "commerce.purchases" and commerce.order.priceTotal > {} and timestamp occurs < 3 hours before now)"#,
            i * 5
        ));
        out.push(format!(
            r#"inSegment("seg-{}") and not inSegment("seg-{}")"#,
            i,
            i + 1
        ));
        out.push(if i % 2 == 0 {
            format!(
                r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "productView"), C1: NOT WHAT(eventType = "type{}"), C2: WHAT(eventType = "checkout") WITHIN {} hours AFTER C0])"#,
                i % 8,
                1 + i % 5
            )
        } else {
            format!(
                r#"xEvent[eventType = "web.webpagedetails.pageViews" and timestamp occurs < 24 hours before now].count() > {}"#,
                i
            )
        });
    }
    out
}

fn events(now: DateTime<Utc>) -> Vec<Value> {
    let kinds = [
        "web.webpagedetails.pageViews",
        "productView",
        "checkout",
        "commerce.purchases",
    ];
    (0..200)
        .map(|i| {
            let ty = if i % 3 == 0 {
                format!("type{}", i % 8)
            } else {
                kinds[i % 4].to_string()
            };
            json!({
                "eventType": ty,
                "timestamp": (now - Duration::seconds(431 * i as i64)).to_rfc3339(),
                "commerce": {"order": {"priceTotal": (i % 50) as f64 * 3.0}},
                "web": {"webPageDetails": {"URL": format!("https://example.com/p/{i}")}}
            })
        })
        .collect()
}

/// Runs `f` repeatedly for about `budget` and returns calls per second.
fn rate(budget: StdDuration, mut f: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut calls = 0usize;
    while start.elapsed() < budget {
        calls += f();
    }
    calls as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let now: DateTime<Utc> = "2026-11-26T12:00:00Z".parse().expect("constant time");
    let budget = StdDuration::from_secs(3);
    let sources = segments();
    let none = HashMap::<String, SegmentInfo>::new();
    let mut by_type: HashMap<String, Vec<Plan>> = HashMap::new();
    let plans: Vec<Plan> = sources
        .iter()
        .map(|s| {
            let q = parse(s).expect("bench query parses");
            let c = classify(&q, &none);
            let t = c
                .query_type
                .map_or("batch".to_string(), |t: QueryType| t.describe().to_string());
            let plan = Plan::compile(&q).expect("bench query compiles");
            by_type.entry(t).or_default().push(plan.clone());
            plan
        })
        .collect();
    let profile = json!({
        "person": {"birthYear": 1962},
        "homeAddress": {"countryCode": "US"},
        "personalEmail": {"address": "ann@example.com"}
    });
    let evs = events(now);
    let members: HashSet<String> = (0..20).step_by(3).map(|i| format!("seg-{i}")).collect();

    let cx = Context::new(&profile, &evs, &members, now);
    let qualified = plans.iter().filter(|p| p.qualifies(&cx)).count();
    let timers = plans
        .iter()
        .filter(|p| p.evaluate(&cx).next_change.is_some())
        .count();

    let with = rate(budget, || {
        for p in &plans {
            black_box(p.evaluate(black_box(&cx)));
        }
        plans.len()
    });
    let without = rate(budget, || {
        for p in &plans {
            black_box(p.qualifies(black_box(&cx)));
        }
        plans.len()
    });
    let contexts = rate(StdDuration::from_secs(1), || {
        black_box(Context::new(&profile, black_box(&evs), &members, now));
        1
    });
    let updates = rate(budget, || {
        let cx = Context::new(&profile, black_box(&evs), &members, now);
        for p in &plans {
            black_box(p.evaluate(&cx));
        }
        1
    });

    let mut types: Vec<_> = by_type.into_iter().collect();
    types.sort_by(|a, b| a.0.cmp(&b.0));
    let counts: Vec<(&str, usize)> = types.iter().map(|(t, p)| (t.as_str(), p.len())).collect();
    println!("segments: {} ({counts:?})", plans.len());
    println!("events per profile: {}", evs.len());
    println!(
        "qualified: {qualified}/{}, with a timer: {timers}",
        plans.len()
    );
    println!("evaluations/s with next_change:    {with:>12.0}");
    println!("evaluations/s without next_change: {without:>12.0}");
    println!(
        "cost ratio with/without:           {:>12.2}",
        without / with
    );
    println!("context builds/s (200 events):     {contexts:>12.0}");
    println!("profile updates/s (context + 100 segments with next_change): {updates:.0}");
    println!("per query type (evaluations/s with / without next_change):");
    for (t, ps) in &types {
        let with = rate(budget / 6, || {
            for p in ps {
                black_box(p.evaluate(black_box(&cx)));
            }
            ps.len()
        });
        let without = rate(budget / 6, || {
            for p in ps {
                black_box(p.qualifies(black_box(&cx)));
            }
            ps.len()
        });
        println!("  {t:<40} {with:>12.0} {without:>12.0}");
    }
}
