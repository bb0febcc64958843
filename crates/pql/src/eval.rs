//! Evaluation of a [`Plan`] against one profile, its recent events, its other
//! segment memberships and the current time.
//!
//! Besides the answer, evaluation computes `next_change`: the earliest instant
//! after `now` at which the answer may differ although no new data arrived (only
//! the passing of time changes it). Each predicate reports how long its own value
//! holds; `and`/`or`/`any` combine these bounds so that the result is never later
//! than the real change. For plain windows ("bought in the last 3 hours") it is
//! exact; for aggregates and chains it can be earlier, and a re-evaluation at that
//! instant simply yields the same answer and a later time.

use std::collections::HashSet;

use crate::fast::{FastMap, FastSet};

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::Value;

use crate::plan::{AggKind, Clock, FieldRef, Kind, Lit, Node, PStep, Plan};

/// An instant until which a value is known to hold; `None` means forever.
pub(crate) type Until = Option<DateTime<Utc>>;

pub(crate) fn earliest(a: Until, b: Until) -> Until {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

pub(crate) fn latest(a: Until, b: Until) -> Until {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        _ => None,
    }
}

/// The data one evaluation looks at. Build it once per profile update and evaluate
/// every segment's plan against it: event timestamps are parsed and sorted here.
#[derive(Debug)]
pub struct Context<'a> {
    pub(crate) profile: &'a Value,
    pub(crate) events: Vec<EventRef<'a>>,
    /// Events with a timestamp, oldest first: (timestamp, index into `events`).
    pub(crate) timeline: Vec<(DateTime<Utc>, usize)>,
    pub(crate) memberships: HashSet<String>,
    pub(crate) now: DateTime<Utc>,
    /// Event indices by string `eventType`, in input order.
    pub(crate) by_type: FastMap<&'a str, Vec<usize>>,
    /// For each event, its position in `timeline`.
    pub(crate) time_pos: Vec<Option<usize>>,
}

/// Indices of the events an event condition can match.
pub(crate) enum Candidates<'c> {
    All(std::ops::Range<usize>),
    Typed {
        cx: &'c Context<'c>,
        types: &'c [String],
        list: usize,
        at: usize,
    },
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            Candidates::All(r) => r.next(),
            Candidates::Typed {
                cx,
                types,
                list,
                at,
            } => loop {
                let ty = types.get(*list)?;
                match cx.by_type.get(ty.as_str()).and_then(|l| l.get(*at)) {
                    Some(&i) => {
                        *at += 1;
                        return Some(i);
                    }
                    None => {
                        *list += 1;
                        *at = 0;
                    }
                }
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct EventRef<'a> {
    pub value: &'a Value,
    pub ts: Option<DateTime<Utc>>,
}

impl<'a> Context<'a> {
    /// `events` are XDM experience events (JSON objects with an RFC 3339
    /// `timestamp` and an `eventType`); ones without a readable timestamp still
    /// count for conditions that don't need time, and never for time conditions.
    pub fn new(
        profile: &'a Value,
        events: &'a [Value],
        memberships: &HashSet<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let times = events
            .iter()
            .map(|value| value.get("timestamp").and_then(parse_time))
            .collect();
        Self::with_times(profile, events, times, memberships.clone(), now)
    }

    /// Like [`Self::new`], with each event's timestamp already known (`times[i]` for
    /// `events[i]`; `None` for an event without a readable one): a caller that keeps events
    /// with their parsed time saves parsing it on every evaluation.
    pub fn with_times(
        profile: &'a Value,
        events: &'a [Value],
        times: Vec<Option<DateTime<Utc>>>,
        memberships: HashSet<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let events: Vec<EventRef<'a>> = events
            .iter()
            .zip(times.into_iter().chain(std::iter::repeat(None)))
            .map(|(value, ts)| EventRef { value, ts })
            .collect();
        let mut timeline: Vec<(DateTime<Utc>, usize)> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.ts.map(|t| (t, i)))
            .collect();
        timeline.sort();
        let mut time_pos = vec![None; events.len()];
        for (pos, &(_, i)) in timeline.iter().enumerate() {
            time_pos[i] = Some(pos);
        }
        let mut by_type: FastMap<&'a str, Vec<usize>> = FastMap::default();
        for (i, e) in events.iter().enumerate() {
            if let Some(t) = e.value.get("eventType").and_then(Value::as_str) {
                by_type.entry(t).or_default().push(i);
            }
        }
        Context {
            profile,
            events,
            timeline,
            memberships,
            now,
            by_type,
            time_pos,
        }
    }

    /// The segments `inSegment` sees the profile in.
    pub fn memberships(&self) -> &HashSet<String> {
        &self.memberships
    }

    /// Puts the profile in or out of a segment for the evaluations that follow: the caller
    /// evaluating a sandbox's definitions one after the other keeps one context.
    pub fn set_member(&mut self, segment: &str, member: bool) {
        if member {
            if !self.memberships.contains(segment) {
                self.memberships.insert(segment.to_string());
            }
        } else {
            self.memberships.remove(segment);
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    pub(crate) fn candidates<'c>(&'c self, types: Option<&'c [String]>) -> Candidates<'c> {
        match types {
            None => Candidates::All(0..self.events.len()),
            Some(types) => Candidates::Typed {
                cx: self,
                types,
                list: 0,
                at: 0,
            },
        }
    }

    pub(crate) fn profile_scope(&self) -> Scope<'a> {
        Scope {
            value: self.profile,
            ts: None,
        }
    }
}

/// What a predicate reads fields from: the profile, or one event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub value: &'a Value,
    pub ts: Option<DateTime<Utc>>,
}

impl<'a> From<EventRef<'a>> for Scope<'a> {
    fn from(e: EventRef<'a>) -> Self {
        Scope {
            value: e.value,
            ts: e.ts,
        }
    }
}

/// The result of evaluating one segment for one profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub qualified: bool,
    /// Earliest future instant at which `qualified` may flip with no new event;
    /// `None` if only new data can change it. Set a timer for it.
    pub next_change: Option<DateTime<Utc>>,
}

impl Plan {
    /// Evaluates and computes when the answer would change by itself.
    pub fn evaluate(&self, cx: &Context<'_>) -> Answer {
        let (qualified, next_change) = eval::<true>(&self.root, cx, cx.profile_scope());
        Answer {
            qualified,
            next_change,
        }
    }

    /// Only the answer: cheaper when the caller needs no timer.
    pub fn qualifies(&self, cx: &Context<'_>) -> bool {
        eval::<false>(&self.root, cx, cx.profile_scope()).0
    }
}

pub(crate) fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?;
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

fn parse_date(v: &Value) -> Option<NaiveDate> {
    let s = v.as_str()?;
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .or_else(|| parse_time(v).map(|d| d.date_naive()))
}

impl FieldRef {
    pub(crate) fn get<'v>(&self, scope: Scope<'v>) -> Option<&'v Value> {
        let mut v = scope.value;
        for k in &self.keys {
            v = v.get(k.as_str())?;
        }
        if v.is_null() {
            None
        } else {
            Some(v)
        }
    }

    pub(crate) fn time(&self, scope: Scope<'_>) -> Option<DateTime<Utc>> {
        if self.is_timestamp && scope.ts.is_some() {
            return scope.ts;
        }
        self.get(scope).and_then(parse_time)
    }
}

pub(crate) fn compare(v: &Value, op: crate::ast::CmpOp, lit: &Lit) -> bool {
    let ord = match lit {
        Lit::Num(n) => v.as_f64().and_then(|x| x.partial_cmp(n)),
        Lit::Str(s) => v.as_str().map(|x| x.cmp(s.as_str())),
        Lit::Bool(b) => v.as_bool().map(|x| x.cmp(b)),
        Lit::Date(d) => parse_date(v).map(|x| x.cmp(d)),
        Lit::DateTime(d) => parse_time(v).map(|x| x.cmp(d)),
    };
    ord.is_some_and(|o| op.holds(o))
}

/// Whether a time condition holds for a value `t` at instant `now`.
fn clock_holds(clock: Clock, t: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    match clock {
        Clock::BeforeNow { op, window } => {
            // "before now": a time in the future satisfies no such condition.
            now >= t && op.holds((now - t).cmp(&window))
        }
        Clock::TodayIgnoringYear => t.month() == now.month() && t.day() == now.day(),
    }
}

/// When a time condition on `t` next changes value after `now`.
fn clock_until(clock: Clock, t: DateTime<Utc>, now: DateTime<Utc>, current: bool) -> Until {
    match clock {
        Clock::BeforeNow { window, .. } => {
            // The truth of `op(now - t, window)` is piecewise constant with steps
            // only at t, t + window and just after t + window.
            let eps = Duration::nanoseconds(1);
            let edge = t.checked_add_signed(window)?;
            [Some(t), Some(edge), edge.checked_add_signed(eps)]
                .into_iter()
                .flatten()
                .filter(|&c| c > now)
                .find(|&c| clock_holds(clock, t, c) != current)
        }
        Clock::TodayIgnoringYear => {
            let midnight = now.date_naive().succ_opt()?.and_hms_opt(0, 0, 0)?.and_utc();
            if current {
                return Some(midnight);
            }
            // Next calendar day with t's month and day (Feb 29 waits for a leap year).
            (now.year()..now.year() + 9)
                .filter_map(|y| NaiveDate::from_ymd_opt(y, t.month(), t.day()))
                .filter_map(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
                .find(|&d| d > now)
        }
    }
}

/// `T` selects whether the `next_change` bound is computed; without it the
/// evaluator short-circuits freely.
pub(crate) fn eval<const T: bool>(n: &Node, cx: &Context<'_>, scope: Scope<'_>) -> (bool, Until) {
    match &n.kind {
        Kind::And(parts) => {
            if !T {
                return (parts.iter().all(|p| eval::<false>(p, cx, scope).0), None);
            }
            // True holds until the first part flips; false holds while any false
            // part stays false.
            let mut all_true = true;
            let mut true_until: Until = None;
            let mut false_until: Until = Some(cx.now);
            for p in parts {
                let (b, u) = eval::<T>(p, cx, scope);
                if b {
                    true_until = earliest(true_until, u);
                } else {
                    if all_true {
                        false_until = u;
                    } else {
                        false_until = latest(false_until, u);
                    }
                    all_true = false;
                    if u.is_none() {
                        return (false, None);
                    }
                }
            }
            if all_true {
                (true, true_until)
            } else {
                (false, false_until)
            }
        }
        Kind::Or(parts) => {
            if !T {
                return (parts.iter().any(|p| eval::<false>(p, cx, scope).0), None);
            }
            let mut any_true = false;
            let mut false_until: Until = None;
            let mut true_until: Until = Some(cx.now);
            for p in parts {
                let (b, u) = eval::<T>(p, cx, scope);
                if b {
                    if any_true {
                        true_until = latest(true_until, u);
                    } else {
                        true_until = u;
                    }
                    any_true = true;
                    if u.is_none() {
                        return (true, None);
                    }
                } else {
                    false_until = earliest(false_until, u);
                }
            }
            if any_true {
                (true, true_until)
            } else {
                (false, false_until)
            }
        }
        Kind::Not(a) => {
            let (b, u) = eval::<T>(a, cx, scope);
            (!b, u)
        }
        Kind::Cmp { field, op, lit } => {
            (field.get(scope).is_some_and(|v| compare(v, *op, lit)), None)
        }
        Kind::In { field, lits } => (
            field
                .get(scope)
                .is_some_and(|v| lits.iter().any(|l| compare(v, crate::ast::CmpOp::Eq, l))),
            None,
        ),
        Kind::Exists(field) => (field.get(scope).is_some(), None),
        Kind::Str { field, func, arg } => {
            let b = field
                .get(scope)
                .and_then(Value::as_str)
                .is_some_and(|s| match func {
                    crate::ast::StrFn::StartsWith => s.starts_with(arg.as_str()),
                    crate::ast::StrFn::EndsWith => s.ends_with(arg.as_str()),
                    crate::ast::StrFn::Contains => s.contains(arg.as_str()),
                });
            (b, None)
        }
        Kind::Occurs { field, clock } => match field.time(scope) {
            None => (false, None),
            Some(t) => {
                let b = clock_holds(*clock, t, cx.now);
                let u = if T {
                    clock_until(*clock, t, cx.now, b)
                } else {
                    None
                };
                (b, u)
            }
        },
        Kind::InSegment(id) => (cx.memberships.contains(id), None),
        Kind::NoData => (false, None),
        Kind::Any { cond, types } => {
            let mut found = false;
            let mut true_until: Until = Some(cx.now);
            let mut false_until: Until = None;
            for i in cx.candidates(types.as_deref()) {
                let (b, u) = eval::<T>(cond, cx, cx.events[i].into());
                if b {
                    if !T || u.is_none() {
                        return (true, None);
                    }
                    true_until = if found { latest(true_until, u) } else { u };
                    found = true;
                } else if T {
                    false_until = earliest(false_until, u);
                }
            }
            if found {
                (true, true_until)
            } else {
                (false, false_until)
            }
        }
        Kind::Agg {
            filter,
            types,
            kind,
            field,
            op,
            value,
        } => {
            let (b, u, _) = aggregate::<T>(
                cx,
                filter.as_deref(),
                types.as_deref(),
                *kind,
                field.as_ref(),
                *op,
                *value,
            );
            (b, u)
        }
        Kind::Chain { time, steps } => {
            let (m, u) = chain::<T>(cx, time, steps);
            (m.is_some(), u)
        }
    }
}

/// Returns the answer, its bound, and the aggregate value (for explanations).
pub(crate) fn aggregate<const T: bool>(
    cx: &Context<'_>,
    filter: Option<&Node>,
    types: Option<&[String]>,
    kind: AggKind,
    field: Option<&FieldRef>,
    op: crate::ast::CmpOp,
    value: f64,
) -> (bool, Until, Option<f64>) {
    let mut until: Until = None;
    let mut count = 0usize;
    let mut sum = 0.0;
    let mut n = 0usize;
    let mut min = f64::INFINITY;
    let mut max = f64::NEG_INFINITY;
    for i in cx.candidates(types) {
        let e = &cx.events[i];
        let ok = match filter {
            None => true,
            Some(f) => {
                let (b, u) = eval::<T>(f, cx, (*e).into());
                until = earliest(until, u);
                b
            }
        };
        if !ok {
            continue;
        }
        count += 1;
        if let Some(x) = field
            .and_then(|f| f.get((*e).into()))
            .and_then(Value::as_f64)
        {
            sum += x;
            n += 1;
            min = min.min(x);
            max = max.max(x);
        }
    }
    let got = match kind {
        AggKind::Count => Some(count as f64),
        AggKind::Sum => Some(sum),
        AggKind::Min => (n > 0).then_some(min),
        AggKind::Max => (n > 0).then_some(max),
        AggKind::Avg => (n > 0).then(|| sum / n as f64),
    };
    let b = got
        .and_then(|g| g.partial_cmp(&value))
        .is_some_and(|o| op.holds(o));
    (b, until, got)
}

/// Finds one sequence of events satisfying the chain; returns the event indices
/// (into `cx.events`) matched by the positive steps, and the time bound.
pub(crate) fn chain<const T: bool>(
    cx: &Context<'_>,
    time: &FieldRef,
    steps: &[PStep],
) -> (Option<Vec<usize>>, Until) {
    // Events in time order, each with the chain's time field.
    let owned;
    let ordered: &[(DateTime<Utc>, usize)] = if time.is_timestamp {
        &cx.timeline
    } else {
        let mut v: Vec<(DateTime<Utc>, usize)> = cx
            .events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| time.time((*e).into()).map(|t| (t, i)))
            .collect();
        v.sort();
        owned = v;
        &owned
    };
    let mut until: Until = None;
    let mut matches: Vec<Vec<bool>> = Vec::with_capacity(steps.len());
    for s in steps {
        let mut row = vec![false; ordered.len()];
        match (&s.types, time.is_timestamp) {
            // Only events of the step's types can match; the index finds them.
            (Some(types), true) => {
                for i in cx.candidates(Some(types)) {
                    if let Some(pos) = cx.time_pos[i] {
                        let (b, u) = eval::<T>(&s.cond, cx, cx.events[i].into());
                        until = earliest(until, u);
                        row[pos] = b;
                    }
                }
            }
            _ => {
                for (pos, &(_, i)) in ordered.iter().enumerate() {
                    let (b, u) = eval::<T>(&s.cond, cx, cx.events[i].into());
                    until = earliest(until, u);
                    row[pos] = b;
                }
            }
        }
        matches.push(row);
    }
    let mut chosen: Vec<Option<usize>> = vec![None; steps.len()];
    // The latest position each positive step can take and still leave room for
    // the following ones (in strictly increasing time). Found backwards, greedily;
    // it prunes hopeless branches and rejects impossible chains at once.
    let mut latest = vec![usize::MAX; steps.len()];
    let mut bound: Option<DateTime<Utc>> = None;
    for k in (0..steps.len()).rev().filter(|&k| !steps[k].negated) {
        let pos = (0..ordered.len())
            .rev()
            .find(|&p| matches[k][p] && bound.is_none_or(|b| ordered[p].0 < b));
        match pos {
            Some(p) => {
                latest[k] = p;
                bound = Some(ordered[p].0);
            }
            None => return (None, until),
        }
    }
    let mut search = Search {
        steps,
        matches: &matches,
        ordered,
        latest,
        failed: FastSet::default(),
    };
    let found = search.run(0, None, &mut chosen);
    let result = found.then(|| chosen.iter().flatten().map(|&pos| ordered[pos].1).collect());
    (result, until)
}

/// Depth-first search for the positions (in `ordered`) of the positive steps.
struct Search<'s> {
    steps: &'s [PStep],
    matches: &'s [Vec<bool>],
    ordered: &'s [(DateTime<Utc>, usize)],
    latest: Vec<usize>,
    /// Dead ends already explored. Without this, a chain whose last step can't
    /// match would try every combination of the earlier steps' events.
    failed: FastSet<(usize, Option<usize>, Vec<Option<usize>>)>,
}

impl Search<'_> {
    /// Whether steps from `step` on can be placed after position `prev`. The
    /// answer depends only on `step`, `prev` and the positions of earlier steps
    /// that later WITHIN clauses refer to, which is what failures are keyed by.
    fn run(&mut self, step: usize, prev: Option<usize>, chosen: &mut Vec<Option<usize>>) -> bool {
        let live: Vec<Option<usize>> = self.steps[step..]
            .iter()
            .filter_map(|s| s.within.map(|(_, target)| target))
            .filter(|&t| t < step)
            .map(|t| chosen[t])
            .collect();
        let key = (step, prev, live);
        if self.failed.contains(&key) {
            return false;
        }
        let found = self.place(step, prev, chosen);
        if !found {
            self.failed.insert(key);
        }
        found
    }

    fn place(&mut self, step: usize, prev: Option<usize>, chosen: &mut Vec<Option<usize>>) -> bool {
        let (steps, matches, ordered) = (self.steps, self.matches, self.ordered);
        // Negated steps are checked once their following positive step is placed.
        let Some(next) = (step..steps.len()).find(|&s| !steps[s].negated) else {
            return true;
        };
        let start = prev.map_or(0, |p| p + 1);
        // Every later step bounded by WITHIN after an already placed step also
        // bounds this one (times increase), so the scan stops at that deadline.
        let deadline = steps[next..]
            .iter()
            .filter_map(|s| s.within)
            .filter(|&(_, r)| r < next)
            .filter_map(|(d, r)| chosen[r].and_then(|p| ordered[p].0.checked_add_signed(d)))
            .min();
        for pos in start..ordered.len() {
            if pos > self.latest[next] || deadline.is_some_and(|d| ordered[pos].0 > d) {
                break;
            }
            if !matches[next][pos] {
                continue;
            }
            let t = ordered[pos].0;
            if let Some(p) = prev {
                // Strict ordering: an event at the same instant is not "after".
                if t <= ordered[p].0 {
                    continue;
                }
            }
            if let Some((limit, target)) = steps[next].within {
                if let Some(tp) = chosen[target] {
                    if t - ordered[tp].0 > limit {
                        break;
                    }
                }
            }
            let lo = prev.map(|p| ordered[p].0);
            let forbidden = (step..next).any(|neg| {
                (start..pos).any(|q| {
                    matches[neg][q] && lo.is_none_or(|l| ordered[q].0 > l) && ordered[q].0 < t
                })
            });
            if forbidden {
                continue;
            }
            chosen[next] = Some(pos);
            if self.run(next + 1, Some(pos), chosen) {
                return true;
            }
            chosen[next] = None;
        }
        false
    }
}
