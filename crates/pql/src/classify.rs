//! Streaming or batch: the rules of streaming segmentation applied to a query.
//!
//! Streaming when the definition is one of five query types — single event
//! within a window of at most 24 hours; profile only; single event with profile
//! attributes within a relative window of at most 24 hours; segment of segments;
//! multiple events within 24 hours (optionally with profile attributes) in a
//! strict order, negated steps allowed but not a wholly negated event. Anything
//! else (a longer window, "ignore year", several entities, a single event mixed
//! with `inSegment` of a segment that isn't profile-only, ...) is batch.

use std::collections::HashMap;
use std::fmt;

use chrono::Duration;

use crate::ast::*;

/// What the classifier must know about a segment referenced by `inSegment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub profile_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    Streaming,
    Batch,
}

/// The five streaming query types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    SingleEvent,
    ProfileOnly,
    SingleEventWithProfile,
    SegmentOfSegments,
    MultipleEvents,
}

impl QueryType {
    pub fn describe(self) -> &'static str {
        match self {
            QueryType::SingleEvent => "single event",
            QueryType::ProfileOnly => "profile only",
            QueryType::SingleEventWithProfile => "single event with profile attributes",
            QueryType::SegmentOfSegments => "segment of segments",
            QueryType::MultipleEvents => "multiple events in strict order",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    pub evaluation: Evaluation,
    /// The streaming query type; `None` when batch.
    pub query_type: Option<QueryType>,
    /// For batch: every rule that forced it. For streaming: empty.
    pub reasons: Vec<String>,
    /// Refers to no events, and only to profile-only segments: others may use
    /// this in their [`SegmentInfo`].
    pub profile_only: bool,
    /// The longest relative event window found, if any.
    pub lookback: Option<Duration>,
}

impl fmt::Display for Classification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.evaluation, self.query_type) {
            (Evaluation::Streaming, Some(t)) => write!(f, "streaming: {}", t.describe()),
            _ => write!(f, "batch because: {}", self.reasons.join("; ")),
        }
    }
}

const DAY_HOURS: i64 = 24;

fn window_text(d: Duration) -> String {
    if d.num_seconds() % 3600 == 0 {
        format!("{} hours", d.num_hours())
    } else {
        format!("{} minutes", d.num_minutes())
    }
}

#[derive(Debug)]
enum EventKind {
    Single,
    Aggregate,
    Chain,
}

#[derive(Debug)]
struct EventFact {
    kind: EventKind,
    negated: bool,
    /// The tightest `occurs <[=] N before now` that every match must satisfy.
    lookback: Option<Duration>,
    /// For chains: the longest time from the first step to the last, when every
    /// later positive step is bounded by WITHIN.
    chain_span: Option<Duration>,
    text: String,
}

#[derive(Default)]
struct Facts {
    profile_attrs: bool,
    segments: Vec<String>,
    events: Vec<EventFact>,
    reasons: Vec<String>,
    all_windows: Vec<Duration>,
}

/// Classifies a query. `segments` tells, for ids used in `inSegment`, whether
/// that segment is profile-only; unknown ids count as not profile-only.
pub fn classify(q: &Query, segments: &HashMap<String, SegmentInfo>) -> Classification {
    let mut f = Facts::default();
    match &q.select {
        Some(sel) => {
            if sel.source != EVENT_SOURCE {
                f.reasons.push(format!(
                    "multi-entity query: selects from `{}`, not xEvent",
                    sel.source
                ));
            }
            let fact = event_fact(
                &mut f,
                EventKind::Single,
                &[&q.cond],
                false,
                crate::printer::print(q),
            );
            f.events.push(fact);
        }
        None => walk(&q.cond, false, &mut f),
    }
    let lookback = f.all_windows.iter().max().copied();
    let profile_only = f.events.is_empty()
        && f.segments
            .iter()
            .all(|s| segments.get(s).is_some_and(|i| i.profile_only));

    let day = Duration::hours(DAY_HOURS);
    for e in &f.events {
        if matches!(e.kind, EventKind::Aggregate) && e.lookback.is_none() {
            f.reasons.push(format!(
                "`{}` aggregates over the whole event history (needs a window of at most 24 hours)",
                e.text
            ));
        }
        if matches!(e.kind, EventKind::Chain) && e.lookback.is_none_or(|l| l > day) {
            match e.chain_span {
                None => f.reasons.push(format!(
                    "`{}` has a step without a WITHIN time limit (events must fall within 24 hours)",
                    e.text
                )),
                Some(s) if s > day => f.reasons.push(format!(
                    "`{}` spans up to {}, more than 24 hours",
                    e.text,
                    window_text(s)
                )),
                Some(_) => {}
            }
        }
    }
    if f.events.len() > 1 {
        f.reasons.push(format!(
            "{} separate event conditions without a strict time order (put them in one chain)",
            f.events.len()
        ));
    }
    if !f.events.is_empty() && f.events.iter().all(|e| e.negated) {
        f.reasons.push(
            "its only event condition is negated (the entire event cannot be a negation)".into(),
        );
    }
    let single = f.events.len() == 1 && matches!(f.events[0].kind, EventKind::Single);
    if single {
        for s in &f.segments {
            match segments.get(s) {
                Some(i) if i.profile_only => {}
                Some(_) => f.reasons.push(format!(
                    "combines a single event with inSegment(\"{s}\"), which is not profile-only"
                )),
                None => f.reasons.push(format!(
                    "combines a single event with inSegment(\"{s}\"), an unknown segment"
                )),
            }
        }
        if (f.profile_attrs || !f.segments.is_empty()) && f.events[0].lookback.is_none() {
            f.reasons.push(
                "a single event combined with profile attributes needs a relative time window of at most 24 hours"
                    .into(),
            );
        }
    }

    let query_type = if !f.reasons.is_empty() {
        None
    } else if f.events.is_empty() {
        Some(if f.segments.is_empty() {
            QueryType::ProfileOnly
        } else {
            QueryType::SegmentOfSegments
        })
    } else if single {
        Some(if f.profile_attrs || !f.segments.is_empty() {
            QueryType::SingleEventWithProfile
        } else {
            QueryType::SingleEvent
        })
    } else {
        Some(QueryType::MultipleEvents)
    };
    Classification {
        evaluation: if query_type.is_some() {
            Evaluation::Streaming
        } else {
            Evaluation::Batch
        },
        query_type,
        reasons: f.reasons,
        profile_only,
        lookback,
    }
}

fn walk(e: &Expr, negated: bool, f: &mut Facts) {
    match &e.kind {
        ExprKind::And(a, b) | ExprKind::Or(a, b) => {
            walk(a, negated, f);
            walk(b, negated, f);
        }
        ExprKind::Not(a) => walk(a, !negated, f),
        ExprKind::Compare { .. }
        | ExprKind::In { .. }
        | ExprKind::Exists(_)
        | ExprKind::StrMatch { .. } => f.profile_attrs = true,
        ExprKind::Occurs { cond, .. } => {
            f.profile_attrs = true;
            if matches!(cond, TimeCond::TodayIgnoringYear) {
                f.reasons
                    .push("uses \"ignore year\" (`occurs today ignoring year`)".into());
            }
        }
        ExprKind::InSegment(id) => f.segments.push(id.clone()),
        ExprKind::Any { source, cond } => {
            entity(source, f);
            let fact = event_fact(
                f,
                EventKind::Single,
                &[cond],
                negated,
                crate::printer::print_expr(e),
            );
            f.events.push(fact);
        }
        ExprKind::Aggregate { source, filter, .. } => {
            entity(source, f);
            let conds: Vec<&Expr> = filter.iter().map(|b| b.as_ref()).collect();
            let fact = event_fact(
                f,
                EventKind::Aggregate,
                &conds,
                negated,
                crate::printer::print_expr(e),
            );
            f.events.push(fact);
        }
        ExprKind::Chain { source, steps, .. } => {
            entity(source, f);
            let positive: Vec<&Expr> = steps
                .iter()
                .filter(|s| !s.negated)
                .map(|s| &s.cond)
                .collect();
            let negatives: Vec<&Expr> = steps
                .iter()
                .filter(|s| s.negated)
                .map(|s| &s.cond)
                .collect();
            let text = crate::printer::print_expr(e);
            let mut fact = event_fact(f, EventKind::Chain, &positive, negated, text);
            // Windows inside negated steps still count against the 24-hour rule.
            let _ = event_fact(f, EventKind::Chain, &negatives, negated, String::new());
            // Offsets of each positive step from the first, via WITHIN ... AFTER.
            let mut offsets: HashMap<&str, Duration> = HashMap::new();
            let mut span = Some(Duration::zero());
            let first = steps.iter().position(|s| !s.negated);
            for (i, s) in steps.iter().enumerate().filter(|(_, s)| !s.negated) {
                let off = if Some(i) == first {
                    Some(Duration::zero())
                } else {
                    s.within.as_ref().and_then(|(w, after)| {
                        // Checked: a chain of huge windows must not overflow.
                        offsets
                            .get(after.as_str())
                            .and_then(|o| o.checked_add(&w.duration()))
                    })
                };
                match off {
                    Some(o) => {
                        offsets.insert(s.label.as_str(), o);
                        span = span.map(|m| m.max(o));
                    }
                    None => span = None,
                }
            }
            fact.chain_span = span;
            if positive.len() < 2 {
                fact.kind = EventKind::Single;
            }
            f.events.push(fact);
        }
    }
}

fn entity(source: &str, f: &mut Facts) {
    if source != EVENT_SOURCE {
        f.reasons.push(format!(
            "multi-entity query: refers to `{source}` besides the profile and xEvent"
        ));
    }
}

/// Looks at the windows inside event conditions. A window every match must
/// satisfy (reached only through `and`) bounds the lookback; a chain is bounded
/// only when each of its steps is, by the loosest of them.
fn event_fact(
    f: &mut Facts,
    kind: EventKind,
    conds: &[&Expr],
    negated: bool,
    text: String,
) -> EventFact {
    let mut bound = Duration::zero();
    let mut all_bounded = !conds.is_empty();
    for c in conds {
        let mut limiting = None;
        windows(c, true, f, &mut limiting);
        match limiting {
            Some(d) => bound = bound.max(d),
            None => all_bounded = false,
        }
    }
    EventFact {
        kind,
        negated,
        lookback: all_bounded.then_some(bound),
        chain_span: None,
        text,
    }
}

fn windows(e: &Expr, limiting_ctx: bool, f: &mut Facts, limiting: &mut Option<Duration>) {
    match &e.kind {
        ExprKind::And(a, b) => {
            windows(a, limiting_ctx, f, limiting);
            windows(b, limiting_ctx, f, limiting);
        }
        ExprKind::Or(a, b) => {
            windows(a, false, f, limiting);
            windows(b, false, f, limiting);
        }
        ExprKind::Not(a) => windows(a, false, f, limiting),
        ExprKind::Occurs { cond, .. } => match cond {
            TimeCond::BeforeNow { op, window } => {
                let d = window.duration();
                f.all_windows.push(d);
                match op {
                    CmpOp::Lt | CmpOp::Le => {
                        if d > Duration::hours(DAY_HOURS) {
                            f.reasons.push(format!(
                                "window of {} exceeds 24 hours",
                                window_text(d)
                            ));
                        }
                        if limiting_ctx {
                            *limiting = Some(limiting.map_or(d, |l: Duration| l.min(d)));
                        }
                    }
                    _ => f.reasons.push(format!(
                        "`occurs {} {} before now` looks at events older than the window, which has no 24-hour bound",
                        op.symbol(),
                        window.describe()
                    )),
                }
            }
            TimeCond::TodayIgnoringYear => f
                .reasons
                .push("uses \"ignore year\" (`occurs today ignoring year`)".into()),
        },
        _ => {}
    }
}
