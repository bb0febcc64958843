//! Recursive-descent parser: tokens to [`Query`]. Every failure is a [`Diagnostic`]
//! pointing at the token that could not be accepted.

use chrono::{DateTime, NaiveDate, Utc};

use crate::ast::*;
use crate::error::{Diagnostic, PqlError};
use crate::lexer::{tokenize, Tok, Token};

/// Nesting beyond this is refused rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 64;
/// `a and b and ...` builds a left-deep tree whose depth is the operand count;
/// capping it keeps every recursive walk (printer, checker, drop) shallow.
const MAX_OPERATORS: usize = 512;

pub fn parse(src: &str) -> Result<Query, PqlError> {
    let toks = tokenize(src).map_err(PqlError::Parse)?;
    let mut p = Parser {
        toks,
        pos: 0,
        select_var: None,
        depth: 0,
        operators: 0,
    };
    p.query().map_err(PqlError::Parse)
}

type PResult<T> = Result<T, Diagnostic>;

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    /// Inside `select v from ... where`, paths must start with `v.`.
    select_var: Option<String>,
    depth: usize,
    operators: usize,
}

fn join(a: Span, b: Span) -> Span {
    Span {
        start: a.start,
        end: b.end.max(a.start),
        line: a.line,
        col: a.col,
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> &Tok {
        let i = (self.pos + n).min(self.toks.len().saturating_sub(1));
        self.toks.get(i).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn span(&self) -> Span {
        let i = self.pos.min(self.toks.len().saturating_sub(1));
        self.toks.get(i).map(|t| t.span).unwrap_or_default()
    }

    fn prev_span(&self) -> Span {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .map(|t| t.span)
            .unwrap_or_default()
    }

    fn advance(&mut self) -> Token {
        let t = self.toks.get(self.pos).cloned().unwrap_or(Token {
            tok: Tok::Eof,
            span: Span::default(),
        });
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        t
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
    }

    fn err<T>(&self, what: &str) -> PResult<T> {
        Err(Diagnostic::new(
            format!("expected {what}, found {}", self.peek().describe()),
            self.span(),
        ))
    }

    fn expect(&mut self, t: Tok) -> PResult<Span> {
        if *self.peek() == t {
            Ok(self.advance().span)
        } else {
            self.err(&t.describe())
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<Span> {
        if self.is_kw(kw) {
            Ok(self.advance().span)
        } else {
            self.err(&format!("`{kw}`"))
        }
    }

    fn ident(&mut self, what: &str) -> PResult<(String, Span)> {
        match self.peek().clone() {
            Tok::Ident(s) => Ok((s, self.advance().span)),
            _ => self.err(what),
        }
    }

    fn string(&mut self, what: &str) -> PResult<(String, Span)> {
        match self.peek().clone() {
            Tok::Str(s) => Ok((s, self.advance().span)),
            _ => self.err(what),
        }
    }

    fn query(&mut self) -> PResult<Query> {
        let select = if self.is_kw("select") {
            self.advance();
            let (var, _) = self.ident("a variable name after `select`")?;
            self.expect_kw("from")?;
            let (source, _) = self.ident("an entity such as `xEvent` after `from`")?;
            self.expect_kw("where")?;
            self.select_var = Some(var.clone());
            Some(Select { var, source })
        } else {
            None
        };
        let cond = self.expr()?;
        if *self.peek() != Tok::Eof {
            return self.err("`and`, `or` or the end of the query");
        }
        Ok(Query { select, cond })
    }

    fn count_operator(&mut self) -> PResult<()> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(Diagnostic::new(
                format!("query has more than {MAX_OPERATORS} `and`/`or`/`not` operators"),
                self.span(),
            ));
        }
        Ok(())
    }

    fn expr(&mut self) -> PResult<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Diagnostic::new("query is nested too deeply", self.span()));
        }
        let r = self.or();
        self.depth -= 1;
        r
    }

    fn or(&mut self) -> PResult<Expr> {
        let mut left = self.and()?;
        while self.is_kw("or") {
            self.count_operator()?;
            self.advance();
            let right = self.and()?;
            let span = join(left.span, right.span);
            left = Expr {
                kind: ExprKind::Or(Box::new(left), Box::new(right)),
                span,
            };
        }
        Ok(left)
    }

    fn and(&mut self) -> PResult<Expr> {
        let mut left = self.unary()?;
        while self.is_kw("and") {
            self.count_operator()?;
            self.advance();
            let right = self.unary()?;
            let span = join(left.span, right.span);
            left = Expr {
                kind: ExprKind::And(Box::new(left), Box::new(right)),
                span,
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> PResult<Expr> {
        if self.is_kw("not") {
            self.count_operator()?;
            let start = self.advance().span;
            self.depth += 1;
            if self.depth > MAX_DEPTH {
                return Err(Diagnostic::new("query is nested too deeply", start));
            }
            let inner = self.unary();
            self.depth -= 1;
            let inner = inner?;
            let span = join(start, inner.span);
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                span,
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> PResult<Expr> {
        let start = self.span();
        if *self.peek() == Tok::LParen {
            self.advance();
            let e = self.expr()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        if self.is_kw("exists") && matches!(self.peek_at(1), Tok::Ident(_)) {
            self.advance();
            let path = self.plain_path()?;
            let path = self.scoped(path)?;
            let span = join(start, self.prev_span());
            return Ok(Expr {
                kind: ExprKind::Exists(path),
                span,
            });
        }
        if self.is_kw("inSegment") && *self.peek_at(1) == Tok::LParen {
            self.advance();
            self.advance();
            let (id, _) = self.string("a segment id string")?;
            self.expect(Tok::RParen)?;
            return Ok(Expr {
                kind: ExprKind::InSegment(id),
                span: join(start, self.prev_span()),
            });
        }
        if self.is_kw("chain") && *self.peek_at(1) == Tok::LParen {
            return self.chain();
        }
        if matches!(self.peek(), Tok::Ident(_)) {
            return self.path_predicate();
        }
        self.err("a condition (a path, `not`, `(`, `exists`, `inSegment` or `chain`)")
    }

    /// `a.b.c` with no method call; used where only a field may appear.
    fn plain_path(&mut self) -> PResult<Path> {
        let (first, start) = self.ident("a field path")?;
        let mut segments = vec![first];
        while *self.peek() == Tok::Dot {
            self.advance();
            let (s, _) = self.ident("a field name after `.`")?;
            segments.push(s);
        }
        Ok(Path {
            segments,
            span: join(start, self.prev_span()),
        })
    }

    /// Applies the `select v from ...` rule: `v.a.b` means field `a.b` of the event.
    fn scoped(&self, mut path: Path) -> PResult<Path> {
        if let Some(var) = &self.select_var {
            if path.segments.len() < 2 || &path.segments[0] != var {
                return Err(Diagnostic::new(
                    format!("in `select {var} from ...`, paths must start with `{var}.`"),
                    path.span,
                ));
            }
            path.segments.remove(0);
        }
        Ok(path)
    }

    /// Parses a nested event condition with its own (event-relative) path scope.
    fn event_cond(&mut self) -> PResult<Expr> {
        let saved = self.select_var.take();
        let r = self.expr();
        self.select_var = saved;
        r
    }

    fn path_predicate(&mut self) -> PResult<Expr> {
        let (first, start) = self.ident("a field path")?;
        let mut segments = vec![first];
        loop {
            if *self.peek() == Tok::LBracket && segments.len() == 1 {
                let source = segments.remove(0);
                self.advance();
                let filter = self.event_cond()?;
                self.expect(Tok::RBracket)?;
                self.expect(Tok::Dot)?;
                let (name, name_span) = self.ident("an aggregate: count, sum, min, max or avg")?;
                return self.aggregate(start, source, Some(Box::new(filter)), &name, name_span);
            }
            if *self.peek() != Tok::Dot {
                break;
            }
            self.advance();
            let (name, name_span) = self.ident("a field name after `.`")?;
            if *self.peek() != Tok::LParen {
                segments.push(name);
                continue;
            }
            let source_like = segments.len() == 1;
            match name.as_str() {
                "any" if source_like => {
                    self.advance();
                    let cond = self.event_cond()?;
                    self.expect(Tok::RParen)?;
                    return Ok(Expr {
                        kind: ExprKind::Any {
                            source: segments.remove(0),
                            cond: Box::new(cond),
                        },
                        span: join(start, self.prev_span()),
                    });
                }
                "count" | "sum" | "min" | "max" | "avg" if source_like => {
                    let source = segments.remove(0);
                    return self.aggregate(start, source, None, &name, name_span);
                }
                "startsWith" | "endsWith" | "contains" | "exists" => {
                    let path = self.scoped(Path {
                        segments,
                        span: join(start, self.prev_span()),
                    })?;
                    self.advance();
                    let kind = if name == "exists" {
                        ExprKind::Exists(path)
                    } else {
                        let (arg, _) = self.string("a string argument")?;
                        let func = match name.as_str() {
                            "startsWith" => StrFn::StartsWith,
                            "endsWith" => StrFn::EndsWith,
                            _ => StrFn::Contains,
                        };
                        ExprKind::StrMatch { path, func, arg }
                    };
                    self.expect(Tok::RParen)?;
                    return Ok(Expr {
                        kind,
                        span: join(start, self.prev_span()),
                    });
                }
                _ => {
                    return Err(Diagnostic::new(
                        format!(
                            "unknown function `{name}` (expected startsWith, endsWith, contains, exists, or on an event source any, count, sum, min, max, avg)"
                        ),
                        name_span,
                    ))
                }
            }
        }
        let path = self.scoped(Path {
            segments,
            span: join(start, self.prev_span()),
        })?;
        if let Some(op) = self.cmp_op() {
            let value = self.literal()?;
            return Ok(Expr {
                kind: ExprKind::Compare { path, op, value },
                span: join(start, self.prev_span()),
            });
        }
        if self.is_kw("in") {
            self.advance();
            self.expect(Tok::LBracket)?;
            let mut values = vec![self.literal()?];
            while *self.peek() == Tok::Comma {
                self.advance();
                values.push(self.literal()?);
            }
            self.expect(Tok::RBracket)?;
            return Ok(Expr {
                kind: ExprKind::In { path, values },
                span: join(start, self.prev_span()),
            });
        }
        if self.is_kw("occurs") {
            self.advance();
            let cond = if self.is_kw("today") {
                self.advance();
                self.expect_kw("ignoring")?;
                self.expect_kw("year")?;
                TimeCond::TodayIgnoringYear
            } else {
                let Some(op) = self.cmp_op() else {
                    return self
                        .err("a comparison (`<`, `<=`, `>`, `>=`, `=`) or `today` after `occurs`");
                };
                let window = self.window()?;
                self.expect_kw("before")?;
                self.expect_kw("now")?;
                TimeCond::BeforeNow { op, window }
            };
            return Ok(Expr {
                kind: ExprKind::Occurs { path, cond },
                span: join(start, self.prev_span()),
            });
        }
        self.err("a comparison, `in`, `occurs` or a function call after the path")
    }

    fn aggregate(
        &mut self,
        start: Span,
        source: String,
        filter: Option<Box<Expr>>,
        name: &str,
        name_span: Span,
    ) -> PResult<Expr> {
        self.expect(Tok::LParen)?;
        let agg = if name == "count" {
            Agg::Count
        } else {
            let saved = self.select_var.take();
            let field = self.plain_path();
            self.select_var = saved;
            let field = field?;
            match name {
                "sum" => Agg::Sum(field),
                "min" => Agg::Min(field),
                "max" => Agg::Max(field),
                "avg" => Agg::Avg(field),
                _ => {
                    return Err(Diagnostic::new(
                        format!(
                            "unknown aggregate `{name}` (expected count, sum, min, max or avg)"
                        ),
                        name_span,
                    ))
                }
            }
        };
        self.expect(Tok::RParen)?;
        let Some(op) = self.cmp_op() else {
            return self.err("a comparison after the aggregate");
        };
        let value = match *self.peek() {
            Tok::Num(n, _) => {
                self.advance();
                n
            }
            _ => return self.err("a number"),
        };
        Ok(Expr {
            kind: ExprKind::Aggregate {
                source,
                filter,
                agg,
                op,
                value,
            },
            span: join(start, self.prev_span()),
        })
    }

    fn chain(&mut self) -> PResult<Expr> {
        let start = self.advance().span;
        self.expect(Tok::LParen)?;
        let (source, _) = self.ident("an event source such as `xEvent`")?;
        self.expect(Tok::Comma)?;
        let time_path = self.plain_path()?;
        self.expect(Tok::Comma)?;
        self.expect(Tok::LBracket)?;
        let mut steps = vec![self.step()?];
        while *self.peek() == Tok::Comma {
            self.advance();
            steps.push(self.step()?);
        }
        self.expect(Tok::RBracket)?;
        self.expect(Tok::RParen)?;
        Ok(Expr {
            kind: ExprKind::Chain {
                source,
                time_path,
                steps,
            },
            span: join(start, self.prev_span()),
        })
    }

    fn step(&mut self) -> PResult<Step> {
        let (label, start) = self.ident("a step label such as `C0`")?;
        self.expect(Tok::Colon)?;
        let negated = if self.is_kw("not") {
            self.advance();
            true
        } else {
            false
        };
        self.expect_kw("WHAT")?;
        self.expect(Tok::LParen)?;
        let cond = self.event_cond()?;
        self.expect(Tok::RParen)?;
        let within = if self.is_kw("WITHIN") {
            self.advance();
            let w = self.window()?;
            self.expect_kw("AFTER")?;
            let (other, _) = self.ident("the label of an earlier step")?;
            Some((w, other))
        } else {
            None
        };
        Ok(Step {
            label,
            negated,
            cond,
            within,
            span: join(start, self.prev_span()),
        })
    }

    fn window(&mut self) -> PResult<Window> {
        let amount = match *self.peek() {
            Tok::Num(n, true) if (0.0..=f64::from(u32::MAX)).contains(&n) => {
                self.advance();
                n as u32
            }
            _ => return self.err("a whole, non-negative number of time units"),
        };
        let unit = match self.peek() {
            Tok::Ident(s) => match s.to_ascii_lowercase().as_str() {
                "second" | "seconds" => TimeUnit::Seconds,
                "minute" | "minutes" => TimeUnit::Minutes,
                "hour" | "hours" => TimeUnit::Hours,
                "day" | "days" => TimeUnit::Days,
                _ => return self.err("a time unit: seconds, minutes, hours or days"),
            },
            _ => return self.err("a time unit: seconds, minutes, hours or days"),
        };
        self.advance();
        Ok(Window { amount, unit })
    }

    fn cmp_op(&mut self) -> Option<CmpOp> {
        let op = match self.peek() {
            Tok::Eq => CmpOp::Eq,
            Tok::Ne => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            _ => return None,
        };
        self.advance();
        Some(op)
    }

    fn literal(&mut self) -> PResult<Literal> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.advance();
                Ok(Literal::Str(s))
            }
            Tok::Num(n, _) => {
                self.advance();
                Ok(Literal::Num(n))
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => {
                self.advance();
                Ok(Literal::Bool(true))
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => {
                self.advance();
                Ok(Literal::Bool(false))
            }
            Tok::Ident(s)
                if (s == "date" || s == "datetime") && *self.peek_at(1) == Tok::LParen =>
            {
                self.advance();
                self.advance();
                let (text, span) = self.string("a quoted date")?;
                self.expect(Tok::RParen)?;
                if s == "date" {
                    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                        .map(Literal::Date)
                        .map_err(|_| Diagnostic::new("expected a date as \"YYYY-MM-DD\"", span))
                } else {
                    DateTime::parse_from_rfc3339(&text)
                        .map(|d| Literal::DateTime(d.with_timezone(&Utc)))
                        .map_err(|_| {
                            Diagnostic::new(
                                "expected an RFC 3339 date-time such as \"2024-05-01T10:00:00Z\"",
                                span,
                            )
                        })
                }
            }
            _ => self
                .err("a literal (string, number, true, false, date(\"...\") or datetime(\"...\"))"),
        }
    }
}
