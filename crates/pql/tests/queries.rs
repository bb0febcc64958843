//! Every example query of the streaming-segmentation seed and of the PQL issue:
//! parse → check → classify → evaluate on hand-built profiles.

use std::collections::{HashMap, HashSet};

use cdp_pql::{
    check, classify, parse, print, Answer, Context, Evaluation, FieldType, Plan, QueryType, Schema,
    Schemas, SegmentInfo,
};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

fn now() -> DateTime<Utc> {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339()
}

fn event(ty: &str, ago: Duration) -> Value {
    json!({"eventType": ty, "timestamp": at(now() - ago)})
}

fn mins(n: i64) -> Duration {
    Duration::minutes(n)
}

fn run_at(
    q: &str,
    profile: &Value,
    events: &[Value],
    members: &[&str],
    t: DateTime<Utc>,
) -> Answer {
    let query = parse(q).unwrap_or_else(|e| panic!("{}", e.render(q)));
    let plan = Plan::compile(&query).unwrap();
    let members: HashSet<String> = members.iter().map(|s| s.to_string()).collect();
    let cx = Context::new(profile, events, &members, t);
    let out = plan.evaluate(&cx);
    assert_eq!(
        out.qualified,
        plan.qualifies(&cx),
        "evaluate and qualifies disagree on {q}"
    );
    out
}

fn run(q: &str, profile: &Value, events: &[Value]) -> Answer {
    run_at(q, profile, events, &[], now())
}

fn class(q: &str) -> cdp_pql::Classification {
    classify(&parse(q).unwrap(), &HashMap::new())
}

fn roundtrip(q: &str) {
    let ast = parse(q).unwrap();
    assert_eq!(
        parse(&print(&ast)).unwrap(),
        ast,
        "printed: {}",
        print(&ast)
    );
}

const HOMEPAGE_TRUE: &str = "select var1 from xEvent where var1._experience.analytics.endUser.firstWeb.webPageDetails.isHomePage = true";
const HOMEPAGE_FALSE: &str = "select var1 from xEvent where var1._experience.analytics.endUser.firstWeb.webPageDetails.isHomePage = false";

fn page(home: bool) -> Value {
    json!({"eventType": "web.webpagedetails.pageViews", "timestamp": at(now() - mins(5)),
        "_experience": {"analytics": {"endUser": {"firstWeb": {"webPageDetails": {"isHomePage": home}}}}}})
}

#[test]
fn seed_select_homepage() {
    roundtrip(HOMEPAGE_TRUE);
    assert!(print(&parse(HOMEPAGE_TRUE).unwrap())
        .starts_with("select var1 from xEvent where var1._experience"));
    let p = json!({});
    assert!(run(HOMEPAGE_TRUE, &p, &[page(true)]).qualified);
    assert!(!run(HOMEPAGE_TRUE, &p, &[page(false)]).qualified);
    assert!(run(HOMEPAGE_FALSE, &p, &[page(false)]).qualified);
    assert!(!run(HOMEPAGE_FALSE, &p, &[]).qualified);
    let c = class(HOMEPAGE_TRUE);
    assert_eq!(c.query_type, Some(QueryType::SingleEvent), "{c}");
    assert_eq!(run(HOMEPAGE_TRUE, &p, &[page(true)]).next_change, None);
}

#[test]
fn select_paths_must_use_the_variable() {
    let e = parse("select var1 from xEvent where eventType = \"x\"").unwrap_err();
    let d = e.diagnostics()[0].clone();
    assert_eq!((d.span.line, d.span.col), (1, 31));
}

#[test]
fn profile_attribute_predicates() {
    let p = json!({
        "person": {"birthYear": 1965, "birthDate": "1965-04-02", "vip": true},
        "homeAddress": {"countryCode": "US"},
        "personalEmail": {"address": "ann@example.com"},
        "lastLogin": "2026-11-20T08:00:00Z"
    });
    let yes = [
        "person.birthYear < 1970",
        "homeAddress.countryCode = \"US\"",
        "personalEmail.address.endsWith(\"@example.com\")",
        "personalEmail.address.startsWith(\"ann\")",
        "personalEmail.address.contains(\"@\")",
        "exists person.birthYear",
        "person.birthYear.exists()",
        "homeAddress.countryCode in [\"US\", \"CA\"]",
        "person.birthYear in [1960, 1965]",
        "person.vip = true and not person.birthYear > 1970",
        "homeAddress.countryCode = \"FR\" or person.birthYear <= 1965",
        "person.birthDate < date(\"1970-01-01\")",
        "person.birthDate >= date(\"1965-04-02\")",
        "lastLogin > datetime(\"2026-11-20T07:59:59Z\")",
        "lastLogin occurs < 7 days before now",
        "homeAddress.countryCode > \"TT\"",
    ];
    for q in yes {
        roundtrip(q);
        assert!(run(q, &p, &[]).qualified, "{q}");
        assert_eq!(class(q).query_type, Some(QueryType::ProfileOnly), "{q}");
        assert!(class(q).profile_only);
    }
    let no = [
        "person.birthYear > 1970",
        "homeAddress.countryCode = \"CA\"",
        "personalEmail.address.endsWith(\"@example.org\")",
        "exists person.name",
        "homeAddress.countryCode in [\"DE\"]",
        "person.vip = false",
        "lastLogin occurs < 1 days before now",
    ];
    for q in no {
        assert!(!run(q, &p, &[]).qualified, "{q}");
    }
}

#[test]
fn missing_attributes_are_false_not_errors() {
    let p = json!({"person": {"birthYear": "nineteen"}});
    for q in [
        "person.birthYear < 1970",
        "person.birthYear != 1970",
        "homeAddress.countryCode = \"US\"",
        "homeAddress.countryCode != \"US\"",
        "personalEmail.address.endsWith(\"x\")",
        "person.birthDate occurs < 3 hours before now",
        "person.birthYear in [1]",
    ] {
        assert!(!run(q, &p, &[]).qualified, "{q}");
    }
    assert!(run("not person.birthYear < 1970", &p, &[]).qualified);
}

#[test]
fn red_shoes_exit_three_hours_after_the_purchase() {
    let q =
        r#"xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 3 hours before now)"#;
    roundtrip(q);
    let bought = now() - mins(30);
    let events = vec![json!({"eventType": "commerce.purchases", "timestamp": at(bought)})];
    let out = run(q, &json!({}), &events);
    assert!(out.qualified);
    assert_eq!(out.next_change, Some(bought + Duration::hours(3)));
    // Strict `<`: exactly three hours after the purchase the profile is out.
    let edge = bought + Duration::hours(3);
    assert!(!run_at(q, &json!({}), &events, &[], edge).qualified);
    assert!(
        run_at(
            q,
            &json!({}),
            &events,
            &[],
            edge - Duration::milliseconds(1)
        )
        .qualified
    );
    assert_eq!(run_at(q, &json!({}), &events, &[], edge).next_change, None);
    // `<=` includes the edge and changes just after it.
    let q2 = q.replace("< 3", "<= 3");
    let out = run_at(&q2, &json!({}), &events, &[], edge);
    assert!(out.qualified);
    assert_eq!(out.next_change, Some(edge + Duration::nanoseconds(1)));
    // A purchase timestamped in the future is not "before now" until it happens.
    let future =
        vec![json!({"eventType": "commerce.purchases", "timestamp": at(now() + mins(10))})];
    let out = run(q, &json!({}), &future);
    assert!(!out.qualified);
    assert_eq!(out.next_change, Some(now() + mins(10)));
    // The latest matching purchase decides the exit.
    let two = vec![
        event("commerce.purchases", mins(170)),
        event("commerce.purchases", mins(20)),
    ];
    assert_eq!(
        run(q, &json!({}), &two).next_change,
        Some(now() - mins(20) + Duration::hours(3))
    );
    assert!(!run(q, &json!({}), &[]).qualified);
    assert_eq!(class(q).query_type, Some(QueryType::SingleEvent));
}

#[test]
fn older_than_windows_enter_later() {
    let q = r#"xEvent.any(eventType = "signup" and timestamp occurs > 1 hours before now)"#;
    let events = vec![event("signup", mins(30))];
    let out = run(q, &json!({}), &events);
    assert!(!out.qualified);
    assert_eq!(
        out.next_change,
        Some(now() + mins(30) + Duration::nanoseconds(1))
    );
    let c = class(q);
    assert_eq!(c.evaluation, Evaluation::Batch, "{c}");
}

#[test]
fn count_of_page_views() {
    let q = r#"xEvent[eventType = "web.webpagedetails.pageViews" and timestamp occurs < 24 hours before now].count() > 5"#;
    roundtrip(q);
    let mut events: Vec<Value> = (0..6)
        .map(|i| event("web.webpagedetails.pageViews", Duration::hours(i * 2 + 1)))
        .collect();
    events.push(event("commerce.purchases", mins(1)));
    events.push(event("web.webpagedetails.pageViews", Duration::hours(30)));
    let out = run(q, &json!({}), &events);
    assert!(out.qualified);
    // The oldest in-window view (11 h ago) leaves first.
    assert_eq!(
        out.next_change,
        Some(now() - Duration::hours(11) + Duration::hours(24))
    );
    assert!(!run(q, &json!({}), &events[1..]).qualified);
    assert!(!run(q, &json!({}), &[]).qualified);
    let c = class(q);
    assert_eq!(c.query_type, Some(QueryType::MultipleEvents), "{c}");
}

#[test]
fn value_aggregates() {
    let events = vec![
        json!({"eventType": "commerce.purchases", "timestamp": at(now() - mins(10)), "commerce": {"order": {"priceTotal": 40.0}}}),
        json!({"eventType": "commerce.purchases", "timestamp": at(now() - mins(20)), "commerce": {"order": {"priceTotal": 70.5}}}),
        json!({"eventType": "commerce.purchases", "timestamp": at(now() - Duration::hours(30)), "commerce": {"order": {"priceTotal": 1000}}}),
    ];
    let w = r#"eventType = "commerce.purchases" and timestamp occurs < 24 hours before now"#;
    for (agg, yes, no) in [
        ("sum(commerce.order.priceTotal)", ">= 110.5", "> 110.5"),
        ("min(commerce.order.priceTotal)", "= 40", "< 40"),
        ("max(commerce.order.priceTotal)", "< 71", "> 71"),
        ("avg(commerce.order.priceTotal)", "= 55.25", "!= 55.25"),
    ] {
        let q = format!("xEvent[{w}].{agg} {yes}");
        roundtrip(&q);
        assert!(run(&q, &json!({}), &events).qualified, "{q}");
        let q = format!("xEvent[{w}].{agg} {no}");
        assert!(!run(&q, &json!({}), &events).qualified, "{q}");
    }
    // No values: min is undefined (false), sum is zero.
    assert!(
        !run(
            &format!("xEvent[{w}].min(commerce.order.priceTotal) >= 0"),
            &json!({}),
            &[]
        )
        .qualified
    );
    assert!(
        run(
            &format!("xEvent[{w}].sum(commerce.order.priceTotal) = 0"),
            &json!({}),
            &[]
        )
        .qualified
    );
    assert_eq!(
        class("xEvent.sum(commerce.order.priceTotal) > 100").evaluation,
        Evaluation::Batch
    );
}

const CHAIN: &str = r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "productView"), C1: WHAT(eventType = "checkout") WITHIN 1 hours AFTER C0])"#;

#[test]
fn chain_in_order_within_limit() {
    roundtrip(CHAIN);
    let p = json!({});
    assert!(
        run(
            CHAIN,
            &p,
            &[event("productView", mins(50)), event("checkout", mins(10))]
        )
        .qualified
    );
    // Exactly one hour apart: WITHIN includes its edge.
    assert!(
        run(
            CHAIN,
            &p,
            &[event("productView", mins(70)), event("checkout", mins(10))]
        )
        .qualified
    );
    assert!(
        !run(
            CHAIN,
            &p,
            &[event("productView", mins(71)), event("checkout", mins(10))]
        )
        .qualified
    );
    // Wrong order, same instant, missing step, empty history.
    assert!(
        !run(
            CHAIN,
            &p,
            &[event("checkout", mins(50)), event("productView", mins(10))]
        )
        .qualified
    );
    assert!(
        !run(
            CHAIN,
            &p,
            &[event("checkout", mins(10)), event("productView", mins(10))]
        )
        .qualified
    );
    assert!(!run(CHAIN, &p, &[event("productView", mins(10))]).qualified);
    assert!(!run(CHAIN, &p, &[]).qualified);
    // Backtracking: the first view is too early, a later one fits.
    assert!(
        run(
            CHAIN,
            &p,
            &[
                event("productView", mins(300)),
                event("productView", mins(40)),
                event("checkout", mins(5))
            ]
        )
        .qualified
    );
    let c = class(CHAIN);
    assert_eq!(c.query_type, Some(QueryType::MultipleEvents), "{c}");
    let with_profile = format!("{CHAIN} and homeAddress.countryCode = \"US\"");
    assert_eq!(
        class(&with_profile).query_type,
        Some(QueryType::MultipleEvents)
    );
}

const NEGATED: &str = r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "productView"), C1: NOT WHAT(eventType = "removeFromCart"), C2: WHAT(eventType = "checkout") WITHIN 2 hours AFTER C0])"#;

#[test]
fn chain_with_negated_step() {
    roundtrip(NEGATED);
    let p = json!({});
    let base = [event("productView", mins(60)), event("checkout", mins(10))];
    assert!(run(NEGATED, &p, &base).qualified);
    let mut between = base.to_vec();
    between.push(event("removeFromCart", mins(30)));
    assert!(!run(NEGATED, &p, &between).qualified);
    let mut outside = base.to_vec();
    outside.push(event("removeFromCart", mins(90)));
    outside.push(event("removeFromCart", mins(5)));
    assert!(run(NEGATED, &p, &outside).qualified);
    // A second view after the removal gives a clean sequence.
    between.push(event("productView", mins(20)));
    assert!(run(NEGATED, &p, &between).qualified);
    assert_eq!(class(NEGATED).query_type, Some(QueryType::MultipleEvents));
    check(&parse(NEGATED).unwrap(), &Schemas::default()).unwrap();
}

#[test]
fn chain_with_relative_windows_expires() {
    let q = r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "productView" and timestamp occurs < 3 hours before now), C1: WHAT(eventType = "checkout") WITHIN 1 hours AFTER C0])"#;
    let out = run(
        q,
        &json!({}),
        &[event("productView", mins(60)), event("checkout", mins(10))],
    );
    assert!(out.qualified);
    assert_eq!(out.next_change, Some(now() + Duration::hours(2)));
    assert_eq!(class(q).query_type, Some(QueryType::MultipleEvents));
}

#[test]
fn malformed_chains_are_check_errors() {
    for (q, needle) in [
        (
            r#"chain(xEvent, timestamp, [C0: NOT WHAT(eventType = "a"), C1: WHAT(eventType = "b")])"#,
            "between two other steps",
        ),
        (
            r#"chain(xEvent, timestamp, [C0: NOT WHAT(eventType = "a")])"#,
            "only of negated steps",
        ),
        (
            r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "a"), C1: WHAT(eventType = "b") WITHIN 1 hours AFTER C9])"#,
            "AFTER C9",
        ),
        (
            r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "a"), C0: WHAT(eventType = "b")])"#,
            "used twice",
        ),
        (
            r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "a"), C1: WHAT(eventType = "b") WITHIN 0 hours AFTER C0])"#,
            "longer than zero",
        ),
    ] {
        let err = check(&parse(q).unwrap(), &Schemas::default()).unwrap_err();
        assert!(
            err.to_string().contains(needle) || err.render(q).contains(needle),
            "{q}: {}",
            err.render(q)
        );
    }
}

#[test]
fn segment_of_segments() {
    let q = r#"inSegment("loyal") and not inSegment("churned")"#;
    roundtrip(q);
    assert!(run_at(q, &json!({}), &[], &["loyal"], now()).qualified);
    assert!(!run_at(q, &json!({}), &[], &["loyal", "churned"], now()).qualified);
    assert!(!run(q, &json!({}), &[]).qualified);
    assert_eq!(class(q).query_type, Some(QueryType::SegmentOfSegments));
}

#[test]
fn in_segment_with_single_event_needs_profile_only_inner_segment() {
    let q = r#"inSegment("us-people") and xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 3 hours before now)"#;
    let mut known = HashMap::new();
    known.insert(
        "us-people".to_string(),
        SegmentInfo {
            profile_only: false,
        },
    );
    let c = classify(&parse(q).unwrap(), &known);
    assert_eq!(c.evaluation, Evaluation::Batch);
    assert!(c.to_string().contains("not profile-only"), "{c}");
    known.insert("us-people".to_string(), SegmentInfo { profile_only: true });
    let c = classify(&parse(q).unwrap(), &known);
    assert_eq!(c.query_type, Some(QueryType::SingleEventWithProfile), "{c}");
    let c = classify(&parse(q).unwrap(), &HashMap::new());
    assert!(c.to_string().contains("unknown segment"), "{c}");
}

#[test]
fn single_event_with_profile_attributes() {
    let q = r#"person.birthYear < 1970 and xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 3 hours before now)"#;
    let p = json!({"person": {"birthYear": 1960}});
    let out = run(q, &p, &[event("commerce.purchases", mins(60))]);
    assert!(out.qualified);
    assert_eq!(out.next_change, Some(now() + Duration::hours(2)));
    // The profile attribute keeps it false forever, whatever the event does.
    let out = run(
        q,
        &json!({"person": {"birthYear": 1990}}),
        &[event("commerce.purchases", mins(60))],
    );
    assert_eq!(
        out,
        Answer {
            qualified: false,
            next_change: None
        }
    );
    assert_eq!(class(q).query_type, Some(QueryType::SingleEventWithProfile));
    let unbounded = r#"person.birthYear < 1970 and xEvent.any(eventType = "commerce.purchases")"#;
    assert_eq!(class(unbounded).evaluation, Evaluation::Batch);
}

#[test]
fn batch_rules_and_reasons() {
    let cases = [
        (
            r#"xEvent.any(eventType = "a" and timestamp occurs < 48 hours before now)"#,
            "window of 48 hours exceeds 24 hours",
        ),
        ("person.birthDate occurs today ignoring year", "ignore year"),
        (r#"xProduct.any(sku = "x")"#, "multi-entity"),
        (
            r#"not xEvent.any(eventType = "a" and timestamp occurs < 3 hours before now)"#,
            "cannot be a negation",
        ),
        (
            r#"xEvent.any(eventType = "a") and xEvent.any(eventType = "b")"#,
            "strict time order",
        ),
        (
            r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "a"), C1: WHAT(eventType = "b")])"#,
            "without a WITHIN",
        ),
        (
            r#"chain(xEvent, timestamp, [C0: WHAT(eventType = "a"), C1: WHAT(eventType = "b") WITHIN 20 hours AFTER C0, C2: WHAT(eventType = "c") WITHIN 10 hours AFTER C1])"#,
            "spans up to 30 hours",
        ),
    ];
    for (q, reason) in cases {
        let c = class(q);
        assert_eq!(c.evaluation, Evaluation::Batch, "{q}");
        assert!(c.to_string().starts_with("batch because: "), "{c}");
        assert!(c.to_string().contains(reason), "{q}: {c}");
    }
    // Exactly 24 hours is still streaming.
    let q = r#"xEvent.any(eventType = "a" and timestamp occurs < 24 hours before now)"#;
    assert_eq!(class(q).evaluation, Evaluation::Streaming);
}

#[test]
fn today_ignoring_year() {
    let q = "person.birthDate occurs today ignoring year";
    roundtrip(q);
    let p = json!({"person": {"birthDate": "1980-11-26"}});
    let out = run(q, &p, &[]);
    assert!(out.qualified);
    assert_eq!(
        out.next_change,
        Some("2026-11-27T00:00:00Z".parse().unwrap())
    );
    let out = run(q, &json!({"person": {"birthDate": "1980-12-03"}}), &[]);
    assert!(!out.qualified);
    assert_eq!(
        out.next_change,
        Some("2026-12-03T00:00:00Z".parse().unwrap())
    );
}

#[test]
fn parse_errors_have_positions_and_carets() {
    let q = "person.birthYear < 1970 and\n  homeAddress.countryCode == ";
    let e = parse(q).unwrap_err();
    let d = e.diagnostics()[0].clone();
    assert_eq!(d.span.line, 2);
    let r = e.render(q);
    assert!(r.contains("line 2"), "{r}");
    assert!(r.contains('^'), "{r}");
    for bad in [
        "",
        "person.",
        "xEvent.any(",
        "person.birthYear < ",
        "a.b.frobnicate(\"x\")",
        "\"unclosed",
        "x = date(\"2020-13-01\")",
        "timestamp occurs < 1.5 hours before now",
        "chain(xEvent, timestamp, [C0 WHAT(eventType = \"a\")])",
        "a = 1 b = 2",
        "a ! b",
        "x in []",
        "@",
    ] {
        let e = parse(bad).unwrap_err();
        let d = e.diagnostics()[0].clone();
        assert!(d.span.line >= 1 && d.span.col >= 1, "{bad}: {d}");
        assert!(e.render(bad).contains('^'), "{bad}");
    }
    let deep = format!("{}a = 1{}", "(".repeat(200), ")".repeat(200));
    assert!(parse(&deep).is_err());
}

fn profile_schema() -> Schema {
    Schema::from_json_schema(&json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "person": {"type": "object", "properties": {
                "birthYear": {"type": "integer"},
                "birthDate": {"type": "string", "format": "date"},
                "name": {"type": "object", "properties": {"firstName": {"type": ["string", "null"]}}}
            }},
            "homeAddress": {"type": "object", "properties": {"countryCode": {"type": "string"}}},
            "personalEmail": {"type": "object", "properties": {"address": {"type": "string"}}},
            "extra": {"type": "object"}
        }
    }))
    .unwrap()
}

#[test]
fn checker_against_schemas() {
    let profile = profile_schema();
    let event = Schema::from_path_map(&json!({
        "eventType": "string", "timestamp": "date-time", "commerce.order.priceTotal": "number"
    }))
    .unwrap();
    let schemas = Schemas {
        profile: Some(&profile),
        event: Some(&event),
    };
    for ok in [
        "person.birthYear < 1970 and homeAddress.countryCode = \"US\"",
        "person.name.firstName = \"Ann\"",
        "extra.anything.below = 1",
        "person.birthDate < date(\"1970-01-01\")",
        r#"xEvent[eventType = "p" and timestamp occurs < 1 hours before now].sum(commerce.order.priceTotal) > 3"#,
        CHAIN,
        NEGATED,
    ] {
        check(&parse(ok).unwrap(), &schemas).unwrap_or_else(|e| panic!("{}", e.render(ok)));
    }
    let q = "person.birthYear < 1970 and\nperson.nmae.firstName = \"Ann\"";
    let e = check(&parse(q).unwrap(), &schemas).unwrap_err();
    let d = e.diagnostics()[0].clone();
    assert_eq!((d.span.line, d.span.col), (2, 1));
    assert!(e
        .render(q)
        .contains("unknown field `person.nmae.firstName` in the profile schema"));
    assert!(
        e.render(q).contains("\n^^^^^^^^^^^^^^^^^^^^^"),
        "{}",
        e.render(q)
    );
    for (bad, needle) in [
        ("person.birthYear = \"1970\"", "type mismatch"),
        ("homeAddress.countryCode < 3", "type mismatch"),
        ("person.birthYear.endsWith(\"0\")", "applies to strings"),
        (
            "homeAddress.countryCode occurs < 3 hours before now",
            "dates and date-times",
        ),
        (
            "person.birthDate occurs < 0 hours before now",
            "longer than zero",
        ),
        ("person.birthDate occurs = 3 hours before now", "`<`, `<=`"),
        (
            r#"xEvent.any(eventTyp = "a")"#,
            "unknown field `eventTyp` in the event schema",
        ),
        (r#"xEvent.sum(eventType) > 1"#, "numeric field"),
        (r#"xEvent.any(inSegment("x"))"#, "profile condition"),
        (r#"xEvent.any(xEvent.any(eventType = "a"))"#, "nested"),
        (r#"xEvent.count() > 1.5"#, "whole number"),
    ] {
        let e = check(&parse(bad).unwrap(), &schemas).unwrap_err();
        assert!(e.render(bad).contains(needle), "{bad}: {}", e.render(bad));
    }
    let from_paths = Schema::from_paths([("person.birthYear", FieldType::Number)]);
    assert_eq!(
        from_paths.field(&["person".into()]),
        Some(FieldType::Object)
    );
}

#[test]
fn explain_names_the_deciding_predicate_or_event() {
    let q = r#"person.birthYear < 1970 and xEvent.any(eventType = "commerce.purchases" and timestamp occurs < 3 hours before now)"#;
    let plan = Plan::compile(&parse(q).unwrap()).unwrap();
    let members = HashSet::new();
    let p = json!({"person": {"birthYear": 1985}});
    let events = vec![event("commerce.purchases", mins(30))];
    let cx = Context::new(&p, &events, &members, now());
    let ex = plan.explain(&cx);
    assert!(!ex.qualified);
    assert!(
        ex.because
            .contains("`person.birthYear < 1970` is false (person.birthYear = 1985)"),
        "{ex}"
    );
    let p = json!({"person": {"birthYear": 1965}});
    let cx = Context::new(&p, &events, &members, now());
    let ex = plan.explain(&cx);
    assert!(ex.qualified);
    assert!(
        ex.because.contains("event #0 (\"commerce.purchases\""),
        "{ex}"
    );
    assert!(
        ex.to_string()
            .contains("may change at 2026-11-26T14:30:00Z"),
        "{ex}"
    );
    let plan = Plan::compile(&parse(CHAIN).unwrap()).unwrap();
    let events = vec![event("productView", mins(50)), event("checkout", mins(10))];
    let ex = plan.explain(&Context::new(&p, &events, &members, now()));
    assert!(ex.because.contains("matched event #0"), "{ex}");
}

#[test]
fn events_without_timestamps_are_ignored_by_time_conditions() {
    let q = r#"xEvent.any(eventType = "a" and timestamp occurs < 3 hours before now)"#;
    let events = vec![
        json!({"eventType": "a"}),
        json!({"eventType": "a", "timestamp": "yesterday"}),
    ];
    assert!(!run(q, &json!({}), &events).qualified);
    assert!(run(r#"xEvent.any(eventType = "a")"#, &json!({}), &events).qualified);
}

#[test]
fn event_type_index_visits_each_event_once() {
    let events = vec![
        event("a", mins(1)),
        event("b", mins(2)),
        event("a", mins(3)),
        json!({"eventType": 7}),
    ];
    for (q, yes) in [
        (r#"xEvent[eventType in ["a", "a", "b"]].count() = 3"#, true),
        (
            r#"xEvent[eventType = "a" or eventType = "a"].count() = 2"#,
            true,
        ),
        (
            r#"xEvent[eventType = "a" and timestamp occurs < 150 seconds before now].count() = 1"#,
            true,
        ),
        (r#"xEvent[eventType in [7]].count() = 0"#, true),
        (r#"xEvent[not eventType = "a"].count() = 2"#, true),
        (r#"xEvent.any(eventType = "c")"#, false),
    ] {
        assert_eq!(run(q, &json!({}), &events).qualified, yes, "{q}");
    }
}

#[test]
fn compile_in_one_call() {
    let seg = cdp_pql::compile(CHAIN, &Schemas::default(), &HashMap::new()).unwrap();
    assert_eq!(
        seg.classification.to_string(),
        "streaming: multiple events in strict order"
    );
    let members = HashSet::new();
    let events = vec![event("productView", mins(50)), event("checkout", mins(10))];
    let p = json!({});
    assert!(
        seg.plan
            .evaluate(&Context::new(&p, &events, &members, now()))
            .qualified
    );
    let err =
        cdp_pql::compile("person.birthYear <", &Schemas::default(), &HashMap::new()).unwrap_err();
    assert!(
        err.render("person.birthYear <")
            .contains("line 1, column 19"),
        "{}",
        err.render("person.birthYear <")
    );
}

#[test]
fn huge_windows_do_not_overflow() {
    let mut steps = vec![r#"C0: WHAT(eventType = "a")"#.to_string()];
    for i in 1..40 {
        steps.push(format!(
            r#"C{i}: WHAT(eventType = "a") WITHIN 4294967295 days AFTER C{}"#,
            i - 1
        ));
    }
    let q = format!("chain(xEvent, timestamp, [{}])", steps.join(", "));
    assert_eq!(class(&q).evaluation, Evaluation::Batch);
    assert!(!run(&q, &json!({}), &[event("a", mins(1))]).qualified);
    let q = r#"xEvent.any(timestamp occurs < 4294967295 days before now)"#;
    let out = run(q, &json!({}), &[event("a", mins(1))]);
    assert!(out.qualified);
}

#[test]
fn impossible_long_chain_over_many_events_is_fast() {
    let mut events: Vec<Value> = (0..200)
        .map(|i| event("a", Duration::seconds(i + 1)))
        .collect();
    events.push(event("b", Duration::hours(5)));
    let mut steps: Vec<String> = (0..9)
        .map(|i| format!(r#"C{i}: WHAT(eventType = "a")"#))
        .collect();
    steps.push(r#"C9: WHAT(eventType = "b")"#.into());
    let q = format!("chain(xEvent, timestamp, [{}])", steps.join(", "));
    let start = std::time::Instant::now();
    assert!(!run(&q, &json!({}), &events).qualified);
    let with_within = q.replace(
        r#"C9: WHAT(eventType = "b")"#,
        r#"C9: WHAT(eventType = "b") WITHIN 1 hours AFTER C0"#,
    );
    assert!(!run(&with_within, &json!({}), &events).qualified);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
