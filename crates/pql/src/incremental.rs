//! A sandbox's definitions evaluated together for one profile, and only those whose inputs
//! changed.
//!
//! [`DefinitionSet`] orders definitions so that one reading another's membership (`inSegment`)
//! comes after it, and indexes them by what they read ([`crate::Inputs`]): event types,
//! profile attribute paths, segments. [`DefinitionSet::evaluate`] takes what changed since the
//! profile was last evaluated ([`Changes`]) and evaluates a definition only when
//!
//! - an event of a type it reads arrived or left (any event, for definitions reading any),
//! - a profile attribute at one of its paths changed,
//! - a segment it reads changed earlier in the same pass, or outside it ([`Changes::segments`]),
//! - or its own time came: the instant its answer can change with no new data, kept per
//!   definition in [`SegmentState::due`] (the profile's one timer is the earliest of them).
//!
//! With [`Changes::everything`] it evaluates every definition: the reference the incremental
//! path must agree with (tests/incremental.rs checks it over random definitions and event
//! streams). One context serves the whole pass; memberships change inside it as definitions
//! are decided.
//!
//! Events that left what the context holds since the last evaluation (a lookback window, an
//! expiry) are changes like events that arrived: the caller names their types in
//! [`Changes::event_types`], and sets the profile's timer for the next one to leave
//! ([`DefinitionSet::reads_event_type`] says which event types matter), so a qualification
//! that rests on events ends when they leave. Keeping that out of [`SegmentState::due`] keeps a
//! due time only for definitions with a time window of their own: a profile's state stays small
//! with many definitions.

use std::collections::{BTreeMap, HashSet};

use crate::fast::FastMap;
use std::sync::Arc;

use serde_json::Value;

use crate::eval::Context;
use crate::plan::{EventReads, Plan};

/// One definition of a set.
#[derive(Debug, Clone)]
pub struct Definition {
    pub id: String,
    pub plan: Arc<Plan>,
}

/// A sandbox's definitions of one kind (streaming, or the batch ones a schedule runs) in
/// evaluation order, indexed by what they read.
#[derive(Debug, Clone, Default)]
pub struct DefinitionSet {
    defs: Vec<Definition>,
    /// Event type → the definitions reading events of that type.
    by_type: FastMap<String, Vec<usize>>,
    /// Definitions reading every event.
    any_event: Vec<usize>,
    /// Definitions reading profile attributes.
    attribute_readers: Vec<usize>,
    /// Segment id → the definitions reading it.
    readers: FastMap<String, Vec<usize>>,
    /// Position of each definition.
    index: FastMap<String, usize>,
    /// Whether answers keep a time of their own ([`SegmentState::due`]); a schedule's batch
    /// definitions do not.
    timed: bool,
}

/// What a profile holds of its segments between evaluations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentState {
    /// Segment id → when the profile (last) qualified, epoch ms.
    pub members: BTreeMap<String, i64>,
    /// Definition id → the instant (epoch ms) its answer can change with no new data.
    pub due: BTreeMap<String, i64>,
}

impl SegmentState {
    /// When the profile must be evaluated again with no new data: its timer.
    pub fn next_due(&self) -> Option<i64> {
        self.due.values().min().copied()
    }
}

/// What changed in a profile since its definitions were last evaluated.
#[derive(Debug, Clone, Default)]
pub struct Changes<'a> {
    /// Evaluate every definition (a new definition set, a schedule, the reference).
    pub everything: bool,
    /// Types of the events that arrived or left (`None`: an event without a string type).
    pub event_types: Vec<Option<&'a str>>,
    /// The attributes before the change, when they changed (the context holds the new ones).
    pub attributes_before: Option<&'a Value>,
    /// Segments whose membership changed outside this evaluation.
    pub segments: Vec<&'a str>,
    /// Definitions to evaluate whatever changed (new or changed ones).
    pub definitions: Vec<&'a str>,
}

impl Changes<'_> {
    pub fn everything() -> Self {
        Changes {
            everything: true,
            ..Changes::default()
        }
    }
}

/// One membership that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub segment: String,
    /// Entered (`true`) or left.
    pub entered: bool,
    /// When the profile qualified: now for an entry, the stored time for an exit.
    pub since_ms: i64,
}

/// The definitions a pass must evaluate ([`DefinitionSet::pending`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    dirty: Vec<bool>,
}

impl Pending {
    /// Nothing to evaluate.
    pub fn is_empty(&self) -> bool {
        !self.dirty.iter().any(|d| *d)
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub transitions: Vec<Transition>,
    /// How many definitions were evaluated.
    pub evaluated: usize,
}

impl DefinitionSet {
    /// `timed`: streaming definitions, whose answers change with time and keep a due time.
    /// Definitions reading others come after them; a cycle (which control refuses) is broken in
    /// id order.
    pub fn new(mut defs: Vec<Definition>, timed: bool) -> Self {
        defs.sort_by(|a, b| a.id.cmp(&b.id));
        let defs = dependency_order(defs);
        let mut set = DefinitionSet {
            timed,
            ..DefinitionSet::default()
        };
        for (i, d) in defs.iter().enumerate() {
            let inputs = d.plan.inputs();
            match &inputs.events {
                EventReads::None => {}
                EventReads::Any => set.any_event.push(i),
                EventReads::Types(types) => {
                    for t in types {
                        set.by_type.entry(t.clone()).or_default().push(i);
                    }
                }
            }
            if !inputs.profile_paths.is_empty() {
                set.attribute_readers.push(i);
            }
            for s in &inputs.segments {
                set.readers.entry(s.clone()).or_default().push(i);
            }
        }
        set.index = defs
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        set.defs = defs;
        set
    }

    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }

    /// The definitions, in evaluation order.
    pub fn definitions(&self) -> &[Definition] {
        &self.defs
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Which definitions `changes` concerns, or whose time came, before any is evaluated:
    /// nothing to do when none is (the caller then needs no context). `attributes`: the
    /// profile's attributes now.
    pub fn pending(
        &self,
        changes: &Changes<'_>,
        attributes: &Value,
        state: &SegmentState,
        now_ms: i64,
    ) -> Pending {
        let mut dirty = vec![changes.everything; self.defs.len()];
        if !changes.everything {
            for t in &changes.event_types {
                for &i in t.and_then(|t| self.by_type.get(t)).into_iter().flatten() {
                    dirty[i] = true;
                }
            }
            if !changes.event_types.is_empty() {
                for &i in &self.any_event {
                    dirty[i] = true;
                }
            }
            if let Some(before) = changes.attributes_before {
                for &i in &self.attribute_readers {
                    let paths = &self.defs[i].plan.inputs().profile_paths;
                    if paths
                        .iter()
                        .any(|p| lookup(before, p) != lookup(attributes, p))
                    {
                        dirty[i] = true;
                    }
                }
            }
            for s in &changes.segments {
                self.mark_readers(s, &mut dirty);
            }
            for id in &changes.definitions {
                if let Some(&i) = self.index.get(*id) {
                    dirty[i] = true;
                }
            }
        }
        if self.timed {
            for (id, &due) in &state.due {
                if due <= now_ms {
                    if let Some(&i) = self.index.get(id) {
                        dirty[i] = true;
                    }
                }
            }
        }
        Pending { dirty }
    }

    /// Evaluates the definitions `changes` concerns (and those whose time came) for the
    /// profile in `cx`, whose memberships are taken from `state`; updates `state` and returns
    /// the memberships that changed.
    pub fn evaluate(
        &self,
        cx: &mut Context<'_>,
        state: &mut SegmentState,
        changes: &Changes<'_>,
    ) -> Outcome {
        let pending = self.pending(changes, cx.profile, state, cx.now().timestamp_millis());
        self.run(pending, cx, state)
    }

    /// Whether any definition reads events of this type (`None`: without a string type): when
    /// such an event leaves the context, definitions must be evaluated again.
    pub fn reads_event_type(&self, event_type: Option<&str>) -> bool {
        !self.any_event.is_empty() || event_type.is_some_and(|t| self.by_type.contains_key(t))
    }

    /// Evaluates what [`Self::pending`] found, and the definitions reading segments that
    /// change on the way.
    pub fn run(&self, pending: Pending, cx: &mut Context<'_>, state: &mut SegmentState) -> Outcome {
        let Pending { mut dirty } = pending;
        dirty.resize(self.defs.len(), false);
        let now = cx.now();
        let now_ms = now.timestamp_millis();
        cx.memberships = state.members.keys().cloned().collect();
        if self.timed {
            // Times of definitions that are gone would keep the profile's timer in the past.
            state.due.retain(|id, _| self.index.contains_key(id));
        }
        let mut outcome = Outcome::default();
        for (i, def) in self.defs.iter().enumerate() {
            if !dirty[i] {
                continue;
            }
            outcome.evaluated += 1;
            let answer = def.plan.evaluate(cx);
            if self.timed {
                match answer.next_change {
                    Some(at) => {
                        state.due.insert(def.id.clone(), at.timestamp_millis());
                    }
                    None => {
                        state.due.remove(&def.id);
                    }
                }
            }
            let was = state.members.contains_key(&def.id);
            if answer.qualified == was {
                continue;
            }
            let since_ms = if answer.qualified {
                state.members.insert(def.id.clone(), now_ms);
                now_ms
            } else {
                state.members.remove(&def.id).unwrap_or(now_ms)
            };
            cx.set_member(&def.id, answer.qualified);
            outcome.transitions.push(Transition {
                segment: def.id.clone(),
                entered: answer.qualified,
                since_ms,
            });
            for &r in self.readers.get(&def.id).into_iter().flatten() {
                if r > i {
                    dirty[r] = true;
                } else if self.timed {
                    // A cycle read backwards: the reader sees the change at once, by its time.
                    state.due.insert(self.defs[r].id.clone(), now_ms);
                }
            }
        }
        outcome
    }

    fn mark_readers(&self, segment: &str, dirty: &mut [bool]) {
        for &r in self.readers.get(segment).into_iter().flatten() {
            dirty[r] = true;
        }
    }
}

/// The value at a path of the attributes, as the evaluator reads it (null is absent).
fn lookup<'v>(attributes: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(attributes, |v, k| v.get(k.as_str()))
        .filter(|v| !v.is_null())
}

/// Definitions (sorted by id) reordered so that each comes after the ones it reads, keeping id
/// order otherwise; the members of a cycle keep their id order at the end.
fn dependency_order(defs: Vec<Definition>) -> Vec<Definition> {
    let ids: HashSet<&str> = defs.iter().map(|d| d.id.as_str()).collect();
    let mut placed: HashSet<String> = HashSet::new();
    let mut order: Vec<usize> = Vec::with_capacity(defs.len());
    let mut remaining: Vec<usize> = (0..defs.len()).collect();
    loop {
        let before = remaining.len();
        remaining.retain(|&i| {
            let ready = defs[i]
                .plan
                .inputs()
                .segments
                .iter()
                .all(|s| s == &defs[i].id || !ids.contains(s.as_str()) || placed.contains(s));
            if ready {
                placed.insert(defs[i].id.clone());
                order.push(i);
            }
            !ready
        });
        if remaining.is_empty() || remaining.len() == before {
            break;
        }
    }
    order.extend(remaining);
    let mut slots: Vec<Option<Definition>> = defs.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use chrono::{DateTime, TimeZone, Utc};
    use serde_json::json;

    fn def(id: &str, src: &str) -> Definition {
        let q = parse(src).expect("parses");
        Definition {
            id: id.into(),
            plan: Arc::new(Plan::compile(&q).expect("compiles")),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn inputs_say_what_a_definition_reads() {
        let inputs = |src: &str| def("x", src).plan.inputs().clone();
        let types = |t: &[&str]| EventReads::Types(t.iter().map(|s| s.to_string()).collect());
        let paths = |p: &[&str]| -> std::collections::BTreeSet<Vec<String>> {
            p.iter()
                .map(|p| p.split('.').map(String::from).collect())
                .collect()
        };
        let i = inputs(
            r#"person.age > 3 and xEvent[eventType = "buy"].sum(commerce.total) > 9 and inSegment("s")"#,
        );
        assert_eq!(i.events, types(&["buy"]));
        assert_eq!(i.profile_paths, paths(&["person.age"]));
        assert_eq!(i.event_paths, paths(&["eventType", "commerce.total"]));
        assert_eq!(i.segments.into_iter().collect::<Vec<_>>(), ["s"]);
        let chain = inputs(
            r#"chain(xEvent, timestamp, [A: WHAT(eventType = "v"), N: NOT WHAT(eventType in ["r", "q"]), B: WHAT(eventType = "c" and web.page = "x")])"#,
        );
        assert_eq!(chain.events, types(&["c", "q", "r", "v"]));
        // The chain orders by the events' time, which the context holds apart.
        assert_eq!(chain.event_paths, paths(&["eventType", "web.page"]));
        let compared = inputs(r#"xEvent.any(timestamp > datetime("2026-01-01T00:00:00Z"))"#);
        assert_eq!(compared.event_paths, paths(&["timestamp"]));
        assert!(chain.profile_paths.is_empty());
        assert_eq!(inputs("xEvent.count() > 2").events, EventReads::Any);
        assert_eq!(inputs(r#"xEvent.any(value > 2)"#).events, EventReads::Any);
        assert_eq!(inputs(r#"tier = "gold""#).events, EventReads::None);
    }

    #[test]
    fn readers_come_after_what_they_read() {
        let set = DefinitionSet::new(
            vec![
                def("a", r#"inSegment("c")"#),
                def("b", r#"inSegment("a")"#),
                def("c", "x = 1"),
            ],
            true,
        );
        let order: Vec<&str> = set.definitions().iter().map(|d| d.id.as_str()).collect();
        assert_eq!(order, ["c", "a", "b"]);
    }

    #[test]
    fn only_definitions_whose_inputs_changed_are_evaluated() {
        let set = DefinitionSet::new(
            vec![
                def("buyers", r#"xEvent.any(eventType = "buy")"#),
                def("viewers", r#"xEvent[eventType = "view"].count() >= 2"#),
                def("gold", r#"loyalty.tier = "gold""#),
                def(
                    "gold-buyers",
                    r#"inSegment("buyers") and inSegment("gold")"#,
                ),
            ],
            true,
        );
        let profile = json!({"loyalty": {"tier": "gold"}});
        let events = vec![json!({"eventType": "buy", "timestamp": at(0).to_rfc3339()})];
        let mut state = SegmentState::default();
        let mut cx = Context::new(&profile, &events, &HashSet::new(), at(1));
        let first = set.evaluate(&mut cx, &mut state, &Changes::everything());
        assert_eq!(first.evaluated, 4);
        let entered: Vec<&str> = first
            .transitions
            .iter()
            .map(|t| t.segment.as_str())
            .collect();
        assert_eq!(entered, ["buyers", "gold", "gold-buyers"]);

        // A view: only the definition reading views.
        let events = vec![
            json!({"eventType": "buy", "timestamp": at(0).to_rfc3339()}),
            json!({"eventType": "view", "timestamp": at(2).to_rfc3339()}),
        ];
        let mut cx = Context::new(&profile, &events, &HashSet::new(), at(3));
        let changes = Changes {
            event_types: vec![Some("view")],
            ..Changes::default()
        };
        let out = set.evaluate(&mut cx, &mut state, &changes);
        assert_eq!((out.evaluated, out.transitions.len()), (1, 0));

        // The tier changes: "gold" exits, and the segment reading it follows in the same pass.
        let silver = json!({"loyalty": {"tier": "silver"}});
        let mut cx = Context::new(&silver, &events, &HashSet::new(), at(4));
        let changes = Changes {
            attributes_before: Some(&profile),
            ..Changes::default()
        };
        let out = set.evaluate(&mut cx, &mut state, &changes);
        assert_eq!(out.evaluated, 2);
        let left: Vec<(&str, bool)> = out
            .transitions
            .iter()
            .map(|t| (t.segment.as_str(), t.entered))
            .collect();
        assert_eq!(left, [("gold", false), ("gold-buyers", false)]);
        assert_eq!(state.members.keys().collect::<Vec<_>>(), ["buyers"]);
    }

    #[test]
    fn an_event_that_left_is_a_change_of_the_definitions_reading_its_type() {
        let set = DefinitionSet::new(
            vec![
                def("buyers", r#"xEvent.any(eventType = "buy")"#),
                def(
                    "soon",
                    r#"xEvent.any(eventType = "view" and timestamp occurs < 10 seconds before now)"#,
                ),
            ],
            true,
        );
        assert!(set.reads_event_type(Some("buy")));
        assert!(!set.reads_event_type(Some("other")));
        assert!(!set.reads_event_type(None));
        let profile = json!({});
        let events = vec![
            json!({"eventType": "buy", "timestamp": at(0).to_rfc3339()}),
            json!({"eventType": "view", "timestamp": at(0).to_rfc3339()}),
        ];
        let mut state = SegmentState::default();
        let mut cx = Context::new(&profile, &events, &HashSet::new(), at(1));
        set.evaluate(&mut cx, &mut state, &Changes::everything());
        assert_eq!(state.members.len(), 2);
        // Only the window of its own is a due time.
        assert_eq!(state.due.keys().collect::<Vec<_>>(), ["soon"]);
        assert_eq!(state.next_due(), Some(at(10).timestamp_millis()));
        // The purchase leaves what the context holds (a lookback): the caller says so.
        let left = vec![json!({"eventType": "view", "timestamp": at(0).to_rfc3339()})];
        let mut cx = Context::new(&profile, &left, &HashSet::new(), at(5));
        let changes = Changes {
            event_types: vec![Some("buy")],
            ..Changes::default()
        };
        let out = set.evaluate(&mut cx, &mut state, &changes);
        assert_eq!(out.evaluated, 1);
        assert_eq!(out.transitions[0].segment, "buyers");
        assert!(!out.transitions[0].entered);
    }
}
