//! The syntax tree of a PQL query, as written by the author (before compilation).

use chrono::{DateTime, Duration, NaiveDate, Utc};

/// Where a node sits in the source. Byte offsets plus 1-based line/column.
#[derive(Debug, Clone, Copy, Default, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub line: u32,
    pub col: u32,
}

// Spans are metadata: two trees are equal when they say the same thing, wherever
// they were written. This is what lets `parse(print(ast)) == ast` hold.
impl PartialEq for Span {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub segments: Vec<String>,
    pub span: Span,
}

impl Path {
    pub fn dotted(&self) -> String {
        self.segments.join(".")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    pub fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            CmpOp::Eq => ord == Equal,
            CmpOp::Ne => ord != Equal,
            CmpOp::Lt => ord == Less,
            CmpOp::Le => ord != Greater,
            CmpOp::Gt => ord == Greater,
            CmpOp::Ge => ord != Less,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Minutes,
    Hours,
    Days,
}

impl TimeUnit {
    pub fn word(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "seconds",
            TimeUnit::Minutes => "minutes",
            TimeUnit::Hours => "hours",
            TimeUnit::Days => "days",
        }
    }
}

/// A length of time such as `3 hours`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub amount: u32,
    pub unit: TimeUnit,
}

impl Window {
    pub fn duration(self) -> Duration {
        let n = i64::from(self.amount);
        match self.unit {
            TimeUnit::Seconds => Duration::seconds(n),
            TimeUnit::Minutes => Duration::minutes(n),
            TimeUnit::Hours => Duration::hours(n),
            TimeUnit::Days => Duration::days(n),
        }
    }

    pub fn describe(self) -> String {
        format!("{} {}", self.amount, self.unit.word())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrFn {
    StartsWith,
    EndsWith,
    Contains,
}

impl StrFn {
    pub fn name(self) -> &'static str {
        match self {
            StrFn::StartsWith => "startsWith",
            StrFn::EndsWith => "endsWith",
            StrFn::Contains => "contains",
        }
    }
}

/// What `occurs` says about a date or date-time.
#[derive(Debug, Clone, PartialEq)]
pub enum TimeCond {
    /// `occurs < 3 hours before now`: the age (now - t) compared with the window.
    /// Times after `now` never satisfy a `before now` condition.
    BeforeNow { op: CmpOp, window: Window },
    /// `occurs today ignoring year`: same month and day as `now` (UTC).
    TodayIgnoringYear,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Agg {
    Count,
    Sum(Path),
    Min(Path),
    Max(Path),
    Avg(Path),
}

impl Agg {
    pub fn name(&self) -> &'static str {
        match self {
            Agg::Count => "count",
            Agg::Sum(_) => "sum",
            Agg::Min(_) => "min",
            Agg::Max(_) => "max",
            Agg::Avg(_) => "avg",
        }
    }

    pub fn field(&self) -> Option<&Path> {
        match self {
            Agg::Count => None,
            Agg::Sum(p) | Agg::Min(p) | Agg::Max(p) | Agg::Avg(p) => Some(p),
        }
    }
}

/// One step of a `chain(...)`: `C1: WHAT(cond) WITHIN 1 hours AFTER C0`, or a
/// negated `C1: NOT WHAT(cond)` that must not happen between its neighbours.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub label: String,
    pub negated: bool,
    pub cond: Expr,
    pub within: Option<(Window, String)>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare {
        path: Path,
        op: CmpOp,
        value: Literal,
    },
    In {
        path: Path,
        values: Vec<Literal>,
    },
    Exists(Path),
    StrMatch {
        path: Path,
        func: StrFn,
        arg: String,
    },
    Occurs {
        path: Path,
        cond: TimeCond,
    },
    InSegment(String),
    /// `xEvent.any(cond)`: at least one event of `source` satisfies `cond`.
    Any {
        source: String,
        cond: Box<Expr>,
    },
    /// `xEvent[filter].count() > 5`, `xEvent[filter].sum(path) >= 100`.
    Aggregate {
        source: String,
        filter: Option<Box<Expr>>,
        agg: Agg,
        op: CmpOp,
        value: f64,
    },
    Chain {
        source: String,
        time_path: Path,
        steps: Vec<Step>,
    },
}

/// The seed's `select var1 from xEvent where ...` head. Paths in the where clause
/// are stored without the `var1.` prefix; the printer puts it back.
#[derive(Debug, Clone, PartialEq)]
pub struct Select {
    pub var: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub select: Option<Select>,
    pub cond: Expr,
}

/// The entity name PQL uses for experience events.
pub const EVENT_SOURCE: &str = "xEvent";
