//! Incremental evaluation gives the same memberships as evaluating everything: random
//! definition sets (every streaming query type, `inSegment` on earlier definitions, windows
//! shorter and longer than the lookback) and random streams of events (some arriving late) and
//! attribute changes, on a virtual clock. Two profiles see the same stream: one evaluated
//! incrementally (only what the change concerns, and what is due), one evaluating every
//! definition at each change; each fires its own timers. After every change both are in the
//! same segments.

use std::collections::HashSet;
use std::sync::Arc;

use cdp_pql::incremental::{Changes, Definition, DefinitionSet, SegmentState};
use cdp_pql::{parse, Context, Plan};
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

/// The lookback: events stop being seen this long after their timestamp.
const LOOKBACK_S: i64 = 90;
const TYPES: [&str; 3] = ["a", "b", "c"];

fn t0() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).single().expect("time")
}

/// A definition's text from a template number and parameters; `earlier` is the id of an
/// earlier definition (for `inSegment`), if any.
fn definition(
    kind: u8,
    ty: usize,
    ty2: usize,
    n: u32,
    window: i64,
    earlier: Option<&str>,
) -> String {
    let (t, u) = (TYPES[ty % 3], TYPES[ty2 % 3]);
    match kind % 14 {
        0 => format!(r#"xEvent.any(eventType = "{t}")"#),
        1 => format!(
            r#"xEvent.any(eventType = "{t}" and timestamp occurs < {window} seconds before now)"#
        ),
        2 => format!(r#"xEvent[eventType = "{t}"].count() >= {n}"#),
        3 => format!(r#"xEvent[eventType = "{t}"].count() < {n}"#),
        4 => format!(
            r#"chain(xEvent, timestamp, [A: WHAT(eventType = "{t}"), B: WHAT(eventType = "{u}") WITHIN {window} seconds AFTER A])"#
        ),
        5 => format!(
            r#"chain(xEvent, timestamp, [A: WHAT(eventType = "{t}"), N: NOT WHAT(eventType = "c"), B: WHAT(eventType = "{u}")])"#
        ),
        6 => format!(r#"tier = "t{}""#, n % 3),
        7 => format!(r#"tier = "t{}" and xEvent.any(eventType = "{t}")"#, n % 3),
        8 => format!("xEvent.any(value > {})", n * 10),
        9 => format!("xEvent.count() >= {n}"),
        10 => format!(r#"xEvent[eventType = "{t}"].sum(value) >= {}"#, n * 15),
        11 => match earlier {
            Some(id) => format!(r#"inSegment("{id}")"#),
            None => format!(r#"xEvent.any(eventType = "{t}")"#),
        },
        12 => match earlier {
            Some(id) => format!(r#"not inSegment("{id}") and xEvent.any(eventType = "{t}")"#),
            None => "tier = \"t1\"".to_string(),
        },
        _ => match earlier {
            Some(id) => format!(
                r#"inSegment("{id}") and xEvent.any(eventType = "{t}" and timestamp occurs < {window} seconds before now)"#
            ),
            None => format!(r#"tier = "t0" or xEvent[eventType = "{t}"].count() >= {n}"#),
        },
    }
}

type RawDef = (u8, usize, usize, u32, i64, usize);

fn raw_def() -> impl Strategy<Value = RawDef> {
    (
        0u8..14,
        0usize..3,
        0usize..3,
        1u32..4,
        prop_oneof![Just(5i64), Just(20), Just(45), Just(200)],
        0usize..8,
    )
}

fn build(raw: &[RawDef]) -> (Vec<(String, String)>, DefinitionSet) {
    let mut texts: Vec<(String, String)> = Vec::new();
    for (i, (kind, ty, ty2, n, window, pick)) in raw.iter().enumerate() {
        let earlier = (i > 0).then(|| format!("d{}", pick % i));
        let text = definition(*kind, *ty, *ty2, *n, *window, earlier.as_deref());
        texts.push((format!("d{i}"), text));
    }
    let defs = texts
        .iter()
        .map(|(id, text)| Definition {
            id: id.clone(),
            plan: Arc::new(
                Plan::compile(
                    &parse(text).unwrap_or_else(|e| panic!("{text}: {}", e.render(text))),
                )
                .expect("compiles"),
            ),
        })
        .collect();
    (texts, DefinitionSet::new(defs, true))
}

#[derive(Debug, Clone)]
enum Step {
    /// An event of a type with a value, `late` seconds before the step's time.
    Event { ty: usize, value: u32, late: i64 },
    /// The profile's tier changes.
    Tier(u8),
}

fn step() -> impl Strategy<Value = (i64, Step)> {
    (
        0i64..40,
        prop_oneof![
            4 => (0usize..3, 0u32..30, prop_oneof![3 => Just(0i64), 1 => 0i64..120])
                .prop_map(|(ty, value, late)| Step::Event { ty, value, late }),
            1 => (0u8..4).prop_map(Step::Tier),
        ],
    )
}

/// One profile as the engine keeps it: events with their time, attributes, segment state, and
/// when it was last evaluated (the engine's record).
#[derive(Clone)]
struct Profile {
    events: Vec<(DateTime<Utc>, Value)>,
    attributes: Value,
    state: SegmentState,
    evaluated: Option<DateTime<Utc>>,
}

impl Profile {
    fn new() -> Self {
        Profile {
            events: Vec::new(),
            attributes: json!({}),
            state: SegmentState::default(),
            evaluated: None,
        }
    }

    /// Evaluates at `now` with the events still in the lookback; the types of those that left
    /// it since the last evaluation are changes too, as the engine names them.
    fn evaluate(&mut self, set: &DefinitionSet, now: DateTime<Utc>, changes: &Changes<'_>) {
        let window = Duration::seconds(LOOKBACK_S);
        let floor = now - window;
        let left: Vec<Option<&str>> = self
            .events
            .iter()
            .filter(|(t, _)| *t <= floor && self.evaluated.is_some_and(|e| *t > e - window))
            .map(|(_, v)| v["eventType"].as_str())
            .collect();
        let mut changes = changes.clone();
        changes.event_types.extend(left);
        let seen: Vec<&(DateTime<Utc>, Value)> =
            self.events.iter().filter(|(t, _)| *t > floor).collect();
        let values: Vec<Value> = seen.iter().map(|(_, v)| v.clone()).collect();
        let times = seen.iter().map(|(t, _)| Some(*t)).collect();
        let mut cx = Context::with_times(&self.attributes, &values, times, HashSet::new(), now);
        set.evaluate(&mut cx, &mut self.state, &changes);
        self.evaluated = Some(now);
    }

    /// The profile's timer: its earliest due definition, or the next event to leave the
    /// lookback whose type a definition reads.
    fn timer(&self, set: &DefinitionSet) -> Option<i64> {
        let window = Duration::seconds(LOOKBACK_S);
        let leaves = self
            .events
            .iter()
            .filter(|(_, v)| set.reads_event_type(v["eventType"].as_str()))
            .map(|(t, _)| *t + window)
            .filter(|t| self.evaluated.is_some_and(|e| *t > e))
            .map(|t| t.timestamp_millis())
            .min();
        match (self.state.next_due(), leaves) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires every timer due by `until`, at its own time.
    fn run_timers(&mut self, set: &DefinitionSet, until: DateTime<Utc>, everything: bool) {
        for _ in 0..500 {
            let Some(due) = self.timer(set) else {
                return;
            };
            if due > until.timestamp_millis() {
                return;
            }
            let at = Utc.timestamp_millis_opt(due).single().expect("time");
            let changes = if everything {
                Changes::everything()
            } else {
                Changes::default()
            };
            self.evaluate(set, at, &changes);
        }
        panic!("timers kept firing before {until}");
    }

    fn members(&self) -> Vec<String> {
        self.state.members.keys().cloned().collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn incremental_evaluation_agrees_with_evaluating_everything(
        raw in prop::collection::vec(raw_def(), 1..9),
        steps in prop::collection::vec(step(), 1..40),
    ) {
        let (texts, set) = build(&raw);
        let mut incremental = Profile::new();
        let mut full = Profile::new();
        let mut now = t0();
        for (i, (dt, step)) in steps.iter().enumerate() {
            now += Duration::seconds(*dt);
            incremental.run_timers(&set, now, false);
            full.run_timers(&set, now, true);
            let before = incremental.attributes.clone();
            let ty = match step {
                Step::Event { ty, value, late } => {
                    let at = now - Duration::seconds(*late);
                    let event = json!({"eventType": TYPES[*ty], "value": value,
                                       "timestamp": at.to_rfc3339()});
                    incremental.events.push((at, event.clone()));
                    full.events.push((at, event));
                    Some(TYPES[*ty])
                }
                Step::Tier(t) => {
                    let attrs = json!({"tier": format!("t{t}")});
                    incremental.attributes = attrs.clone();
                    full.attributes = attrs;
                    None
                }
            };
            // A profile's first evaluation is of everything (the engine does that for a new
            // profile, and for new definitions through its sweep).
            let changes = if i == 0 {
                Changes::everything()
            } else {
                Changes {
                    event_types: ty.map(Some).into_iter().collect(),
                    attributes_before: ty.is_none().then_some(&before),
                    ..Changes::default()
                }
            };
            incremental.evaluate(&set, now, &changes);
            full.evaluate(&set, now, &Changes::everything());
            prop_assert_eq!(
                incremental.members(),
                full.members(),
                "after step {} ({:?}) at +{}s; definitions: {:#?}",
                i,
                step,
                (now - t0()).num_seconds(),
                texts
            );
        }
        // And after the last timers (the lookback empties every event-based segment).
        let end = now + Duration::seconds(LOOKBACK_S + 300);
        incremental.run_timers(&set, end, false);
        full.run_timers(&set, end, true);
        prop_assert_eq!(incremental.members(), full.members(), "at the end; {:#?}", texts);
    }
}

/// The incremental path does less: on a stream touching one event type of three, definitions
/// of the other types are not evaluated.
#[test]
fn incremental_evaluation_evaluates_fewer_definitions() {
    let raw: Vec<RawDef> = (0..30u8)
        .map(|k| (k % 11, usize::from(k % 3), usize::from(k / 3 % 3), 2, 45, 0))
        .collect();
    let (_, set) = build(&raw);
    let mut p = Profile::new();
    let mut now = t0();
    let mut evaluated = 0usize;
    for k in 0..20 {
        now += Duration::seconds(2);
        let event = json!({"eventType": "a", "value": k, "timestamp": now.to_rfc3339()});
        p.events.push((now, event));
        let floor = now - Duration::seconds(LOOKBACK_S);
        let values: Vec<Value> = p
            .events
            .iter()
            .filter(|(t, _)| *t > floor)
            .map(|(_, v)| v.clone())
            .collect();
        let mut cx = Context::new(&p.attributes, &values, &HashSet::new(), now);
        let changes = if k == 0 {
            Changes::everything()
        } else {
            Changes {
                event_types: vec![Some("a")],
                ..Changes::default()
            }
        };
        evaluated += set.evaluate(&mut cx, &mut p.state, &changes).evaluated;
    }
    let everything = 20 * set.len();
    assert!(
        evaluated * 2 < everything,
        "{evaluated} evaluations of {everything}"
    );
}
