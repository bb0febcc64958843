//! Static checks: fields known to the schemas, literals of the field's type,
//! sensible windows and well-formed chains. Every problem carries its position.

use std::collections::HashSet;

use crate::ast::*;
use crate::error::{Diagnostic, PqlError};
use crate::schema::{FieldType, Schema};

/// The schemas paths are checked against. A missing schema means "don't check
/// paths of that entity" (types are then unknown and accepted).
#[derive(Debug, Clone, Copy, Default)]
pub struct Schemas<'a> {
    pub profile: Option<&'a Schema>,
    pub event: Option<&'a Schema>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scope {
    Profile,
    Event,
}

/// Checks a parsed query; all problems are reported at once.
pub fn check(q: &Query, schemas: &Schemas<'_>) -> Result<(), PqlError> {
    let mut c = Checker {
        schemas: *schemas,
        diags: Vec::new(),
    };
    let scope = if q.select.is_some() {
        Scope::Event
    } else {
        Scope::Profile
    };
    c.expr(&q.cond, scope);
    if c.diags.is_empty() {
        Ok(())
    } else {
        Err(PqlError::Check(c.diags))
    }
}

struct Checker<'a> {
    schemas: Schemas<'a>,
    diags: Vec<Diagnostic>,
}

fn literal_type(l: &Literal) -> &'static str {
    match l {
        Literal::Str(_) => "string",
        Literal::Num(_) => "number",
        Literal::Bool(_) => "boolean",
        Literal::Date(_) => "date",
        Literal::DateTime(_) => "date-time",
    }
}

fn fits(t: FieldType, l: &Literal) -> bool {
    matches!(
        (t, l),
        (FieldType::Any, _)
            | (FieldType::String, Literal::Str(_))
            | (FieldType::Number, Literal::Num(_))
            | (FieldType::Boolean, Literal::Bool(_))
            | (FieldType::Date | FieldType::DateTime, Literal::Date(_))
            | (FieldType::Date | FieldType::DateTime, Literal::DateTime(_))
    )
}

impl Checker<'_> {
    fn err(&mut self, msg: impl Into<String>, span: Span) {
        self.diags.push(Diagnostic::new(msg, span));
    }

    /// The field's type, reporting unknown paths; `Any` when unchecked.
    fn field(&mut self, p: &Path, scope: Scope) -> FieldType {
        let (schema, entity) = match scope {
            Scope::Profile => (self.schemas.profile, "profile"),
            Scope::Event => (self.schemas.event, "event"),
        };
        let Some(schema) = schema else {
            return FieldType::Any;
        };
        if scope == Scope::Event && p.segments.len() == 1 && p.segments[0] == "timestamp" {
            return schema.field(&p.segments).unwrap_or(FieldType::DateTime);
        }
        match schema.field(&p.segments) {
            Some(t) => t,
            None => {
                self.err(
                    format!("unknown field `{}` in the {entity} schema", p.dotted()),
                    p.span,
                );
                FieldType::Any
            }
        }
    }

    fn window(&mut self, w: Window, span: Span) {
        if w.amount == 0 {
            self.err("a time window must be longer than zero", span);
        }
    }

    fn expr(&mut self, e: &Expr, scope: Scope) {
        match &e.kind {
            ExprKind::And(a, b) | ExprKind::Or(a, b) => {
                self.expr(a, scope);
                self.expr(b, scope);
            }
            ExprKind::Not(a) => self.expr(a, scope),
            ExprKind::Compare { path, op, value } => {
                let t = self.field(path, scope);
                self.literal(t, path, value, e.span);
                if matches!(value, Literal::Bool(_)) && !matches!(op, CmpOp::Eq | CmpOp::Ne) {
                    self.err("booleans can only be compared with `=` or `!=`", e.span);
                }
            }
            ExprKind::In { path, values } => {
                let t = self.field(path, scope);
                for v in values {
                    self.literal(t, path, v, e.span);
                }
            }
            ExprKind::Exists(p) => {
                self.field(p, scope);
            }
            ExprKind::StrMatch { path, func, .. } => {
                let t = self.field(path, scope);
                if !matches!(t, FieldType::String | FieldType::Any) {
                    self.err(
                        format!(
                            "`{}` applies to strings, but `{}` is a {}",
                            func.name(),
                            path.dotted(),
                            t.name()
                        ),
                        e.span,
                    );
                }
            }
            ExprKind::Occurs { path, cond } => {
                let t = self.field(path, scope);
                if !matches!(t, FieldType::Date | FieldType::DateTime | FieldType::Any) {
                    self.err(
                        format!(
                            "`occurs` applies to dates and date-times, but `{}` is a {}",
                            path.dotted(),
                            t.name()
                        ),
                        e.span,
                    );
                }
                if let TimeCond::BeforeNow { op, window } = cond {
                    if matches!(op, CmpOp::Eq | CmpOp::Ne) {
                        self.err("compare a time window with `<`, `<=`, `>` or `>=`", e.span);
                    }
                    self.window(*window, e.span);
                }
            }
            ExprKind::InSegment(_) => {
                if scope == Scope::Event {
                    self.err("`inSegment` is a profile condition; it cannot appear inside an event condition", e.span);
                }
            }
            ExprKind::Any { cond, .. } => {
                self.no_nesting(scope, e.span);
                self.expr(cond, Scope::Event);
            }
            ExprKind::Aggregate {
                filter, agg, value, ..
            } => {
                self.no_nesting(scope, e.span);
                if let Some(f) = filter {
                    self.expr(f, Scope::Event);
                }
                if let Some(p) = agg.field() {
                    let t = self.field(p, Scope::Event);
                    if !matches!(t, FieldType::Number | FieldType::Any) {
                        self.err(
                            format!(
                                "`{}` needs a numeric field, but `{}` is a {}",
                                agg.name(),
                                p.dotted(),
                                t.name()
                            ),
                            p.span,
                        );
                    }
                }
                if matches!(agg, Agg::Count) && (value.fract() != 0.0) {
                    self.err("a count is compared with a whole number", e.span);
                }
            }
            ExprKind::Chain {
                time_path, steps, ..
            } => {
                self.no_nesting(scope, e.span);
                let t = self.field(time_path, Scope::Event);
                if !matches!(t, FieldType::Date | FieldType::DateTime | FieldType::Any) {
                    self.err(
                        format!(
                            "the chain's time field `{}` must be a date-time, not a {}",
                            time_path.dotted(),
                            t.name()
                        ),
                        time_path.span,
                    );
                }
                self.chain(steps, e.span);
            }
        }
    }

    fn no_nesting(&mut self, scope: Scope, span: Span) {
        if scope == Scope::Event {
            self.err(
                "event conditions cannot be nested inside another event condition",
                span,
            );
        }
    }

    fn literal(&mut self, t: FieldType, p: &Path, l: &Literal, span: Span) {
        if !fits(t, l) {
            self.err(
                format!(
                    "type mismatch: `{}` is a {}, compared with a {}",
                    p.dotted(),
                    t.name(),
                    literal_type(l)
                ),
                span,
            );
        }
    }

    fn chain(&mut self, steps: &[Step], span: Span) {
        if steps.iter().all(|s| s.negated) {
            self.err(
                "a chain cannot consist only of negated steps (the whole event cannot be a negation)",
                span,
            );
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let last = steps.len().saturating_sub(1);
        for (i, s) in steps.iter().enumerate() {
            if !seen.insert(s.label.as_str()) {
                self.err(format!("step label `{}` is used twice", s.label), s.span);
            }
            self.expr(&s.cond, Scope::Event);
            if s.negated && (i == 0 || i == last) {
                self.err(
                    "a negated step must lie between two other steps (it says what must not happen between them)",
                    s.span,
                );
            }
            if let Some((w, after)) = &s.within {
                self.window(*w, s.span);
                if s.negated {
                    self.err(
                        "a negated step takes its time range from its neighbours; remove WITHIN",
                        s.span,
                    );
                }
                let ok = steps[..i].iter().any(|o| &o.label == after && !o.negated);
                if !ok {
                    self.err(
                        format!("`AFTER {after}` must name an earlier, non-negated step"),
                        s.span,
                    );
                }
            }
        }
    }
}
