//! Bounded property runs: printing round-trips, random input never panics and
//! always gets a positioned error, and `next_change` is never later than a change.

use std::collections::{HashMap, HashSet};

use cdp_pql::ast::*;
use cdp_pql::{check, classify, parse, print, Context, Plan, Schemas};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "occurs",
    "exists",
    "select",
    "from",
    "where",
    "chain",
    "insegment",
    "true",
    "false",
    "date",
    "datetime",
    "today",
    "ignoring",
    "year",
    "before",
    "now",
    "what",
    "within",
    "after",
];

fn ident() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("eventType".to_string()),
        Just("timestamp".to_string()),
        Just("person".to_string()),
        Just("birthYear".to_string()),
        "[a-z_][a-zA-Z0-9_]{0,5}",
    ]
    .prop_filter("keyword", |s| {
        !KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(s))
    })
}

fn path() -> impl Strategy<Value = Path> {
    prop::collection::vec(ident(), 1..4).prop_map(|segments| Path {
        segments,
        span: Span::default(),
    })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        "[a-zA-Z0-9 @._\"\\\\-]{0,8}".prop_map(Literal::Str),
        (-100_000i64..100_000).prop_map(|n| Literal::Num(n as f64 / 100.0)),
        any::<bool>().prop_map(Literal::Bool),
        (1900i32..2100, 1u32..13, 1u32..29)
            .prop_map(|(y, m, d)| { Literal::Date(NaiveDate::from_ymd_opt(y, m, d).unwrap()) }),
        (0i64..4_000_000_000).prop_map(|s| Literal::DateTime(Utc.timestamp_opt(s, 0).unwrap())),
    ]
}

fn cmp() -> impl Strategy<Value = CmpOp> {
    prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge)
    ]
}

fn window() -> impl Strategy<Value = Window> {
    (
        0u32..200,
        prop_oneof![
            Just(TimeUnit::Seconds),
            Just(TimeUnit::Minutes),
            Just(TimeUnit::Hours),
            Just(TimeUnit::Days)
        ],
    )
        .prop_map(|(amount, unit)| Window { amount, unit })
}

fn e(kind: ExprKind) -> Expr {
    Expr {
        kind,
        span: Span::default(),
    }
}

fn leaf() -> BoxedStrategy<Expr> {
    prop_oneof![
        (path(), cmp(), literal()).prop_map(|(path, op, value)| e(ExprKind::Compare {
            path,
            op,
            value
        })),
        (path(), prop::collection::vec(literal(), 1..3))
            .prop_map(|(path, values)| e(ExprKind::In { path, values })),
        path().prop_map(|p| e(ExprKind::Exists(p))),
        (
            path(),
            prop_oneof![
                Just(StrFn::StartsWith),
                Just(StrFn::EndsWith),
                Just(StrFn::Contains)
            ],
            "[a-z@.]{0,5}"
        )
            .prop_map(|(path, func, arg)| e(ExprKind::StrMatch { path, func, arg })),
        (path(), cmp(), window()).prop_map(|(path, op, window)| e(ExprKind::Occurs {
            path,
            cond: TimeCond::BeforeNow { op, window }
        })),
        // Time conditions on the event timestamp, so windows really matter.
        (cmp(), window()).prop_map(|(op, window)| e(ExprKind::Occurs {
            path: Path {
                segments: vec!["timestamp".into()],
                span: Span::default()
            },
            cond: TimeCond::BeforeNow { op, window }
        })),
        path().prop_map(|path| e(ExprKind::Occurs {
            path,
            cond: TimeCond::TodayIgnoringYear
        })),
        "[a-z0-9-]{1,6}".prop_map(|s| e(ExprKind::InSegment(s))),
        prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(|t| e(ExprKind::Compare {
            path: Path {
                segments: vec!["eventType".into()],
                span: Span::default()
            },
            op: CmpOp::Eq,
            value: Literal::Str(t.into()),
        })),
    ]
    .boxed()
}

fn boolean(inner: BoxedStrategy<Expr>) -> BoxedStrategy<Expr> {
    inner
        .prop_recursive(3, 12, 2, |x| {
            prop_oneof![
                (x.clone(), x.clone())
                    .prop_map(|(a, b)| e(ExprKind::And(Box::new(a), Box::new(b)))),
                (x.clone(), x.clone()).prop_map(|(a, b)| e(ExprKind::Or(Box::new(a), Box::new(b)))),
                x.prop_map(|a| e(ExprKind::Not(Box::new(a)))),
            ]
        })
        .boxed()
}

fn agg() -> impl Strategy<Value = Agg> {
    prop_oneof![
        Just(Agg::Count),
        path().prop_map(Agg::Sum),
        path().prop_map(Agg::Min),
        path().prop_map(Agg::Max),
        path().prop_map(Agg::Avg),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        ident(),
        any::<bool>(),
        boolean(leaf()),
        prop::option::of((window(), ident())),
    )
        .prop_map(|(label, negated, cond, within)| Step {
            label,
            negated,
            cond,
            within,
            span: Span::default(),
        })
}

fn event_pred() -> BoxedStrategy<Expr> {
    let source = prop_oneof![4 => Just("xEvent".to_string()), 1 => Just("xProduct".to_string())];
    prop_oneof![
        (source.clone(), boolean(leaf())).prop_map(|(source, c)| e(ExprKind::Any {
            source,
            cond: Box::new(c)
        })),
        (
            source.clone(),
            prop::option::of(boolean(leaf())),
            agg(),
            cmp(),
            (0i64..50).prop_map(|n| n as f64)
        )
            .prop_map(|(source, filter, agg, op, value)| e(ExprKind::Aggregate {
                source,
                filter: filter.map(Box::new),
                agg,
                op,
                value
            })),
        (source, prop::collection::vec(step(), 1..4)).prop_map(|(source, steps)| e(
            ExprKind::Chain {
                source,
                time_path: Path {
                    segments: vec!["timestamp".into()],
                    span: Span::default()
                },
                steps
            }
        )),
    ]
    .boxed()
}

fn query() -> impl Strategy<Value = Query> {
    let cond = boolean(prop_oneof![3 => leaf(), 1 => event_pred()].boxed());
    (prop::option::of(ident()), cond).prop_map(|(var, cond)| Query {
        select: var.map(|var| Select {
            var,
            source: "xEvent".into(),
        }),
        cond,
    })
}

fn now() -> DateTime<Utc> {
    "2026-11-26T12:00:00Z".parse().unwrap()
}

fn sample_events() -> Vec<Value> {
    let mut out = Vec::new();
    for (i, ty) in ["a", "b", "c", "a", "b", "a"].iter().enumerate() {
        let t = now() - Duration::minutes(37 * i as i64 * i as i64)
            + Duration::minutes(if i == 5 { 90 } else { 0 });
        out.push(json!({"eventType": ty, "timestamp": t.to_rfc3339(), "person": {"birthYear": 1900 + i * 20}}));
    }
    out
}

fn sample_profile() -> Value {
    json!({"person": {"birthYear": 1970, "birthDate": "1980-11-27"}, "eventType": "a", "timestamp": "2026-11-26T11:00:00Z"})
}

const VOCAB: &[&str] = &[
    "select",
    "var1",
    "from",
    "xEvent",
    "where",
    "var1.a",
    "and",
    "or",
    "not",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    ":",
    "=",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "exists",
    "in",
    "occurs",
    "3",
    "-1.5",
    "hours",
    "before",
    "now",
    "today",
    "ignoring",
    "year",
    "\"US\"",
    "true",
    "date(\"2020-01-01\")",
    "person.birthYear",
    "eventType",
    "timestamp",
    "xEvent.any(",
    "xEvent[",
    "].count()",
    ".sum(",
    "chain(",
    "C0:",
    "C1:",
    "WHAT(",
    "NOT",
    "WITHIN",
    "AFTER",
    "C0",
    "inSegment(",
    ".endsWith(",
    "\"",
    "\\",
    "\n",
    "é",
    "!",
];

fn assert_positioned(src: &str, err: &cdp_pql::PqlError) {
    for d in err.diagnostics() {
        assert!(d.span.line >= 1 && d.span.col >= 1, "{src:?}: {d}");
        assert!(
            d.span.start <= src.len() && d.span.end <= src.len(),
            "{src:?}: {d:?}"
        );
    }
    let _ = err.render(src);
}

fn exercise(src: &str) {
    match parse(src) {
        Err(err) => assert_positioned(src, &err),
        Ok(q) => {
            assert_eq!(parse(&print(&q)).unwrap(), q, "{src:?}");
            if let Err(err) = check(&q, &Schemas::default()) {
                assert_positioned(src, &err);
            }
            let _ = classify(&q, &HashMap::new()).to_string();
            if let Ok(plan) = Plan::compile(&q) {
                let members = HashSet::new();
                let (p, ev) = (sample_profile(), sample_events());
                let _ = plan.explain(&Context::new(&p, &ev, &members, now()));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        // Random chains often refer to labels that don't exist; those are skipped.
        max_global_rejects: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn print_then_parse_is_identity(q in query()) {
        let text = print(&q);
        let back = parse(&text).map_err(|e| TestCaseError::fail(e.render(&text)))?;
        prop_assert_eq!(back, q, "{}", text);
    }

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,80}") {
        exercise(&src);
    }

    #[test]
    fn token_soup_never_panics(words in prop::collection::vec(prop::sample::select(VOCAB), 0..30)) {
        exercise(&words.join(" "));
        exercise(&words.concat());
    }

    /// `next_change` is a safe timer: the answer holds at every instant before it
    /// (and forever when it is `None`).
    #[test]
    fn next_change_is_never_late(q in query(), offsets in prop::collection::vec(0.0f64..1.0, 3)) {
        let plan = Plan::compile(&q);
        prop_assume!(plan.is_ok());
        let plan = plan.unwrap();
        let members: HashSet<String> = ["seg-1".to_string()].into_iter().collect();
        let (p, ev) = (sample_profile(), sample_events());
        let out = plan.evaluate(&Context::new(&p, &ev, &members, now()));
        let ex = plan.explain(&Context::new(&p, &ev, &members, now()));
        prop_assert_eq!((ex.qualified, ex.next_change), (out.qualified, out.next_change));
        prop_assert_eq!(out.qualified, plan.qualifies(&Context::new(&p, &ev, &members, now())));
        let horizon = match out.next_change {
            Some(t) => {
                prop_assert!(t > now());
                t
            }
            None => now() + Duration::days(3000),
        };
        let span = (horizon - now()).num_nanoseconds().unwrap_or(i64::MAX) as f64;
        for f in offsets {
            let at = now() + Duration::nanoseconds((span * f) as i64);
            if at >= horizon { continue; }
            let later = plan.qualifies(&Context::new(&p, &ev, &members, at));
            prop_assert_eq!(later, out.qualified, "{} at {} (next_change {:?})", print(&q), at, out.next_change);
        }
        let last = horizon - Duration::nanoseconds(1);
        if last >= now() {
            prop_assert_eq!(plan.qualifies(&Context::new(&p, &ev, &members, last)), out.qualified);
        }
    }
}

/// A chain step of one of three event types, maybe with a window relative to
/// now, maybe negated, maybe WITHIN some minutes after an earlier step.
/// (negated, event type, window in minutes, WITHIN minutes after the step `1 + n` back)
type RawStep = (bool, &'static str, Option<u32>, Option<(u32, usize)>);

fn chain_step() -> impl Strategy<Value = RawStep> {
    (
        prop::bool::weighted(0.3),
        prop_oneof![Just("a"), Just("b"), Just("c")],
        prop::option::of(1u32..300),
        prop::option::of((1u32..200, 0usize..3)),
    )
}

fn label_steps(raw: Vec<RawStep>) -> Vec<Step> {
    raw.iter()
        .enumerate()
        .map(|(i, (negated, ty, window, within))| {
            let mut cond = e(ExprKind::Compare {
                path: Path {
                    segments: vec!["eventType".into()],
                    span: Span::default(),
                },
                op: CmpOp::Eq,
                value: Literal::Str(ty.to_string()),
            });
            if let Some(w) = window {
                let time = e(ExprKind::Occurs {
                    path: Path {
                        segments: vec!["timestamp".into()],
                        span: Span::default(),
                    },
                    cond: TimeCond::BeforeNow {
                        op: CmpOp::Lt,
                        window: Window {
                            amount: *w,
                            unit: TimeUnit::Minutes,
                        },
                    },
                });
                cond = e(ExprKind::And(Box::new(cond), Box::new(time)));
            }
            let within = within.and_then(|(m, back)| {
                i.checked_sub(1 + back).map(|r| {
                    (
                        Window {
                            amount: m,
                            unit: TimeUnit::Minutes,
                        },
                        format!("C{r}"),
                    )
                })
            });
            Step {
                label: format!("C{i}"),
                negated: *negated,
                cond,
                within,
                span: Span::default(),
            }
        })
        .collect()
}

/// Reference semantics of a chain, by brute force over every assignment of
/// events to the positive steps.
fn chain_by_brute_force(steps: &[Step], events: &[Value], members: &HashSet<String>) -> bool {
    let profile = json!({});
    let times: Vec<Option<DateTime<Utc>>> = events
        .iter()
        .map(|e| e["timestamp"].as_str().and_then(|s| s.parse().ok()))
        .collect();
    let matches: Vec<Vec<bool>> = steps
        .iter()
        .map(|s| {
            let plan = Plan::compile(&Query {
                select: None,
                cond: e(ExprKind::Any {
                    source: "xEvent".into(),
                    cond: Box::new(s.cond.clone()),
                }),
            })
            .unwrap();
            events
                .iter()
                .map(|ev| {
                    let one = [ev.clone()];
                    plan.qualifies(&Context::new(&profile, &one, members, now()))
                })
                .collect()
        })
        .collect();
    let positive: Vec<usize> = (0..steps.len()).filter(|&i| !steps[i].negated).collect();
    let n = events.len();
    let total = n.pow(positive.len() as u32);
    'assign: for code in 0..total {
        let mut pick = vec![None; steps.len()];
        let mut c = code;
        for &k in &positive {
            pick[k] = Some(c % n);
            c /= n;
        }
        let mut prev: Option<DateTime<Utc>> = None;
        for (k, s) in steps.iter().enumerate() {
            let Some(i) = pick[k] else { continue };
            let Some(t) = times[i] else { continue 'assign };
            if !matches[k][i] || prev.is_some_and(|p| t <= p) {
                continue 'assign;
            }
            if let Some((w, label)) = &s.within {
                let r = steps.iter().position(|o| &o.label == label).unwrap();
                let tr = times[pick[r].unwrap()].unwrap();
                if t - tr > w.duration() {
                    continue 'assign;
                }
            }
            // Negated steps between the previous positive step and this one.
            for neg in (0..k).rev().take_while(|&j| steps[j].negated) {
                let hit = (0..n).any(|q| {
                    matches[neg][q]
                        && times[q].is_some_and(|tq| prev.is_none_or(|p| tq > p) && tq < t)
                });
                if hit {
                    continue 'assign;
                }
            }
            prev = Some(t);
        }
        return true;
    }
    false
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        max_global_rejects: 100_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// The chain search (indexed, pruned, memoised) agrees with brute force.
    #[test]
    fn chain_matches_brute_force(
        steps in prop::collection::vec(chain_step(), 1..5).prop_map(label_steps),
        types in prop::collection::vec((prop_oneof![Just("a"), Just("b"), Just("c")], 0i64..300), 0..7),
    ) {
        let query = Query {
            select: None,
            cond: e(ExprKind::Chain {
                source: "xEvent".into(),
                time_path: Path { segments: vec!["timestamp".into()], span: Span::default() },
                steps: steps.clone(),
            }),
        };
        prop_assume!(check(&query, &Schemas::default()).is_ok());
        let plan = Plan::compile(&query).unwrap();
        let events: Vec<Value> = types
            .iter()
            .map(|(ty, ago)| json!({"eventType": ty, "timestamp": (now() - Duration::minutes(*ago)).to_rfc3339()}))
            .collect();
        let members = HashSet::new();
        let p = json!({});
        let got = plan.qualifies(&Context::new(&p, &events, &members, now()));
        prop_assert_eq!(got, chain_by_brute_force(&steps, &events, &members), "{}", print(&query));
    }
}
