//! Compilation of a checked [`Query`] into an evaluation plan: paths split once,
//! literals and windows converted once, chain labels resolved to indices.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::ast::*;
use crate::error::{Diagnostic, PqlError};
use crate::printer::print_expr;

/// A compiled segment definition. Build it once with [`Plan::compile`] and
/// evaluate it against many profiles.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) root: Node,
    inputs: Inputs,
}

/// What a definition reads, found once at compilation: which changes of a profile can change
/// its answer (besides time), and which event fields a profile must keep for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Profile attribute paths (`person.birthYear` → `["person", "birthYear"]`).
    pub profile_paths: BTreeSet<Vec<String>>,
    /// The events it reads.
    pub events: EventReads,
    /// Event fields it reads: in event conditions, a chain's time field, an aggregate's field;
    /// not `timestamp` where only the event's time is read (`occurs`, a chain's order), which
    /// the context is given apart.
    pub event_paths: BTreeSet<Vec<String>>,
    /// The segments it reads (`inSegment`).
    pub segments: BTreeSet<String>,
}

/// Which of a profile's events a definition reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EventReads {
    /// None: only attributes, memberships or time.
    #[default]
    None,
    /// Only events with one of these `eventType`s can change its answer.
    Types(BTreeSet<String>),
    /// Any event.
    Any,
}

impl EventReads {
    fn add(&mut self, types: &EventTypes) {
        match (types, &mut *self) {
            (_, EventReads::Any) => {}
            (None, _) => *self = EventReads::Any,
            (Some(t), EventReads::Types(have)) => have.extend(t.iter().cloned()),
            (Some(t), EventReads::None) => {
                *self = EventReads::Types(t.iter().cloned().collect());
            }
        }
    }

    /// Whether an event of type `event_type` (`None`: without a string `eventType`) is read.
    pub fn reads(&self, event_type: Option<&str>) -> bool {
        match self {
            EventReads::None => false,
            EventReads::Any => true,
            EventReads::Types(types) => event_type.is_some_and(|t| types.contains(t)),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    /// The PQL text of this node, for explanations.
    pub text: String,
}

#[derive(Debug, Clone)]
pub(crate) struct FieldRef {
    pub keys: Vec<String>,
    /// `timestamp` of an event is parsed once per context, not per predicate.
    pub is_timestamp: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    BeforeNow { op: CmpOp, window: Duration },
    TodayIgnoringYear,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum AggKind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

#[derive(Debug, Clone)]
pub(crate) struct PStep {
    pub negated: bool,
    pub cond: Node,
    pub types: EventTypes,
    /// Maximum gap after the referenced (earlier, positive) step.
    pub within: Option<(Duration, usize)>,
}

/// The `eventType` values an event condition can only match (from a top-level
/// `eventType = "..."` or `eventType in [...]`): evaluation then visits only
/// those events, through the context's index. `None`: every event.
pub(crate) type EventTypes = Option<Vec<String>>;

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
    Cmp {
        field: FieldRef,
        op: CmpOp,
        lit: Lit,
    },
    In {
        field: FieldRef,
        lits: Vec<Lit>,
    },
    Exists(FieldRef),
    Str {
        field: FieldRef,
        func: StrFn,
        arg: String,
    },
    Occurs {
        field: FieldRef,
        clock: Clock,
    },
    InSegment(String),
    /// Predicates over an entity this evaluator has no data for (multi-entity
    /// queries) see an empty collection.
    NoData,
    Any {
        cond: Box<Node>,
        types: EventTypes,
    },
    Agg {
        filter: Option<Box<Node>>,
        types: EventTypes,
        kind: AggKind,
        field: Option<FieldRef>,
        op: CmpOp,
        value: f64,
    },
    Chain {
        time: FieldRef,
        steps: Vec<PStep>,
    },
}

fn field(p: &Path) -> FieldRef {
    FieldRef {
        is_timestamp: p.segments.len() == 1 && p.segments[0] == "timestamp",
        keys: p.segments.clone(),
    }
}

fn lit(l: &Literal) -> Lit {
    match l {
        Literal::Str(s) => Lit::Str(s.clone()),
        Literal::Num(n) => Lit::Num(*n),
        Literal::Bool(b) => Lit::Bool(*b),
        Literal::Date(d) => Lit::Date(*d),
        Literal::DateTime(d) => Lit::DateTime(*d),
    }
}

impl Plan {
    /// Compiles a parsed query. Fails only on structural mistakes the checker
    /// would also report (a chain step referring to an unknown label).
    pub fn compile(q: &Query) -> Result<Plan, PqlError> {
        let cond = node(&q.cond)?;
        // `select v from xEvent where c` qualifies a profile with an event
        // satisfying `c`, exactly like `xEvent.any(c)`.
        let root = match &q.select {
            None => cond,
            Some(sel) => Node {
                text: crate::printer::print(q),
                kind: if sel.source == EVENT_SOURCE {
                    Kind::Any {
                        types: event_types(&cond),
                        cond: Box::new(cond),
                    }
                } else {
                    Kind::NoData
                },
            },
        };
        let mut inputs = Inputs::default();
        collect(&root, false, &mut inputs);
        Ok(Plan { root, inputs })
    }

    /// What the plan reads ([`Inputs`]).
    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }
}

/// Walks a plan: `in_event` is true inside an event condition, where paths are event fields.
fn collect(n: &Node, in_event: bool, out: &mut Inputs) {
    let path = |f: &FieldRef, out: &mut Inputs| {
        let target = if in_event {
            &mut out.event_paths
        } else {
            &mut out.profile_paths
        };
        target.insert(f.keys.clone());
    };
    match &n.kind {
        Kind::And(parts) | Kind::Or(parts) => {
            for p in parts {
                collect(p, in_event, out);
            }
        }
        Kind::Not(a) => collect(a, in_event, out),
        Kind::Cmp { field, .. }
        | Kind::In { field, .. }
        | Kind::Exists(field)
        | Kind::Str { field, .. } => path(field, out),
        // An event's time is known without its `timestamp` field (the context is given it).
        Kind::Occurs { field, .. } if in_event && field.is_timestamp => {}
        Kind::Occurs { field, .. } => path(field, out),
        Kind::InSegment(id) => {
            out.segments.insert(id.clone());
        }
        Kind::NoData => {}
        Kind::Any { cond, types } => {
            out.events.add(types);
            collect(cond, true, out);
        }
        Kind::Agg {
            filter,
            types,
            field,
            ..
        } => {
            out.events.add(types);
            if let Some(f) = filter {
                collect(f, true, out);
            }
            if let Some(f) = field {
                out.event_paths.insert(f.keys.clone());
            }
        }
        Kind::Chain { time, steps } => {
            for s in steps {
                out.events.add(&s.types);
                collect(&s.cond, true, out);
            }
            if !time.is_timestamp {
                out.event_paths.insert(time.keys.clone());
            }
        }
    }
}

fn node(e: &Expr) -> Result<Node, PqlError> {
    let kind = match &e.kind {
        ExprKind::And(..) | ExprKind::Or(..) => {
            // Flattening `a and b and c` keeps evaluation a loop, not a recursion.
            let is_and = matches!(e.kind, ExprKind::And(..));
            let mut parts = Vec::new();
            flatten(e, is_and, &mut parts);
            let mut nodes = parts.into_iter().map(node).collect::<Result<Vec<_>, _>>()?;
            // Cheap, time-independent parts first: a false `and` part (true `or`
            // part) that never changes ends evaluation before the event scans.
            nodes.sort_by_key(cost);
            if is_and {
                Kind::And(nodes)
            } else {
                Kind::Or(nodes)
            }
        }
        ExprKind::Not(a) => Kind::Not(Box::new(node(a)?)),
        ExprKind::Compare { path, op, value } => Kind::Cmp {
            field: field(path),
            op: *op,
            lit: lit(value),
        },
        ExprKind::In { path, values } => Kind::In {
            field: field(path),
            lits: values.iter().map(lit).collect(),
        },
        ExprKind::Exists(p) => Kind::Exists(field(p)),
        ExprKind::StrMatch { path, func, arg } => Kind::Str {
            field: field(path),
            func: *func,
            arg: arg.clone(),
        },
        ExprKind::Occurs { path, cond } => Kind::Occurs {
            field: field(path),
            clock: match cond {
                TimeCond::BeforeNow { op, window } => Clock::BeforeNow {
                    op: *op,
                    window: window.duration(),
                },
                TimeCond::TodayIgnoringYear => Clock::TodayIgnoringYear,
            },
        },
        ExprKind::InSegment(id) => Kind::InSegment(id.clone()),
        ExprKind::Any { source, cond } => {
            if source == EVENT_SOURCE {
                let cond = node(cond)?;
                Kind::Any {
                    types: event_types(&cond),
                    cond: Box::new(cond),
                }
            } else {
                Kind::NoData
            }
        }
        ExprKind::Aggregate {
            source,
            filter,
            agg,
            op,
            value,
        } => {
            if source != EVENT_SOURCE {
                Kind::NoData
            } else {
                let kind = match agg {
                    Agg::Count => AggKind::Count,
                    Agg::Sum(_) => AggKind::Sum,
                    Agg::Min(_) => AggKind::Min,
                    Agg::Max(_) => AggKind::Max,
                    Agg::Avg(_) => AggKind::Avg,
                };
                let filter = match filter {
                    Some(f) => Some(Box::new(node(f)?)),
                    None => None,
                };
                Kind::Agg {
                    types: filter.as_deref().and_then(event_types),
                    filter,
                    kind,
                    field: agg.field().map(field),
                    op: *op,
                    value: *value,
                }
            }
        }
        ExprKind::Chain {
            source,
            time_path,
            steps,
        } => {
            if source != EVENT_SOURCE {
                Kind::NoData
            } else {
                let mut out = Vec::with_capacity(steps.len());
                for (i, s) in steps.iter().enumerate() {
                    let within = match &s.within {
                        None => None,
                        Some((w, label)) => {
                            let target = steps[..i]
                                .iter()
                                .position(|o| &o.label == label && !o.negated)
                                .ok_or_else(|| {
                                    PqlError::Check(vec![Diagnostic::new(
                                        format!("`AFTER {label}` must name an earlier, non-negated step"),
                                        s.span,
                                    )])
                                })?;
                            Some((w.duration(), target))
                        }
                    };
                    let cond = node(&s.cond)?;
                    out.push(PStep {
                        negated: s.negated,
                        types: event_types(&cond),
                        cond,
                        within,
                    });
                }
                Kind::Chain {
                    time: field(time_path),
                    steps: out,
                }
            }
        }
    };
    Ok(Node {
        kind,
        text: print_expr(e),
    })
}

fn event_types(n: &Node) -> EventTypes {
    let is_type = |f: &FieldRef| f.keys.len() == 1 && f.keys[0] == "eventType";
    let mut types = match &n.kind {
        Kind::Cmp {
            field,
            op: CmpOp::Eq,
            lit: Lit::Str(s),
        } if is_type(field) => vec![s.clone()],
        Kind::In { field, lits } if is_type(field) => {
            let mut v = Vec::new();
            for l in lits {
                // Another literal type can never equal a string eventType.
                if let Lit::Str(s) = l {
                    v.push(s.clone());
                }
            }
            v
        }
        Kind::And(parts) => return parts.iter().find_map(event_types),
        Kind::Or(parts) => {
            let mut v = Vec::new();
            for p in parts {
                v.extend(event_types(p)?);
            }
            v
        }
        _ => return None,
    };
    // An event must be visited once even when listed twice (counts).
    types.sort();
    types.dedup();
    Some(types)
}

fn cost(n: &Node) -> u8 {
    match &n.kind {
        Kind::Cmp { .. }
        | Kind::In { .. }
        | Kind::Exists(_)
        | Kind::Str { .. }
        | Kind::InSegment(_)
        | Kind::NoData => 0,
        Kind::Occurs { .. } => 1,
        Kind::Not(a) => cost(a),
        Kind::And(parts) | Kind::Or(parts) => parts.iter().map(cost).max().unwrap_or(0),
        Kind::Any { .. } | Kind::Agg { .. } | Kind::Chain { .. } => 3,
    }
}

fn flatten<'a>(e: &'a Expr, is_and: bool, out: &mut Vec<&'a Expr>) {
    match &e.kind {
        ExprKind::And(a, b) if is_and => {
            flatten(a, is_and, out);
            flatten(b, is_and, out);
        }
        ExprKind::Or(a, b) if !is_and => {
            flatten(a, is_and, out);
            flatten(b, is_and, out);
        }
        _ => out.push(e),
    }
}
