//! Prints a [`Query`] back to PQL text that parses to the same tree.

use chrono::SecondsFormat;

use crate::ast::*;

pub fn print(q: &Query) -> String {
    let mut out = String::new();
    let prefix = q.select.as_ref().map(|s| {
        out.push_str(&format!("select {} from {} where ", s.var, s.source));
        s.var.as_str()
    });
    expr(&mut out, &q.cond, prefix);
    out
}

/// Prints one expression as it would appear outside any `select`.
pub fn print_expr(e: &Expr) -> String {
    let mut out = String::new();
    expr(&mut out, e, None);
    out
}

pub fn print_literal(l: &Literal) -> String {
    match l {
        Literal::Str(s) => quote(s),
        Literal::Num(n) => format!("{n}"),
        Literal::Bool(b) => b.to_string(),
        Literal::Date(d) => format!("date(\"{}\")", d.format("%Y-%m-%d")),
        Literal::DateTime(d) => format!(
            "datetime(\"{}\")",
            d.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        ),
    }
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path(out: &mut String, p: &Path, prefix: Option<&str>) {
    if let Some(v) = prefix {
        out.push_str(v);
        out.push('.');
    }
    out.push_str(&p.dotted());
}

fn operand(out: &mut String, e: &Expr, prefix: Option<&str>) {
    if matches!(e.kind, ExprKind::And(..) | ExprKind::Or(..)) {
        out.push('(');
        expr(out, e, prefix);
        out.push(')');
    } else {
        expr(out, e, prefix);
    }
}

fn expr(out: &mut String, e: &Expr, prefix: Option<&str>) {
    match &e.kind {
        ExprKind::And(a, b) | ExprKind::Or(a, b) => {
            operand(out, a, prefix);
            out.push_str(if matches!(e.kind, ExprKind::And(..)) {
                " and "
            } else {
                " or "
            });
            operand(out, b, prefix);
        }
        ExprKind::Not(a) => {
            out.push_str("not ");
            operand(out, a, prefix);
        }
        ExprKind::Compare { path: p, op, value } => {
            path(out, p, prefix);
            out.push_str(&format!(" {} {}", op.symbol(), print_literal(value)));
        }
        ExprKind::In { path: p, values } => {
            path(out, p, prefix);
            let vs: Vec<String> = values.iter().map(print_literal).collect();
            out.push_str(&format!(" in [{}]", vs.join(", ")));
        }
        ExprKind::Exists(p) => {
            out.push_str("exists ");
            path(out, p, prefix);
        }
        ExprKind::StrMatch { path: p, func, arg } => {
            path(out, p, prefix);
            out.push_str(&format!(".{}({})", func.name(), quote(arg)));
        }
        ExprKind::Occurs { path: p, cond } => {
            path(out, p, prefix);
            match cond {
                TimeCond::BeforeNow { op, window } => out.push_str(&format!(
                    " occurs {} {} before now",
                    op.symbol(),
                    window.describe()
                )),
                TimeCond::TodayIgnoringYear => out.push_str(" occurs today ignoring year"),
            }
        }
        ExprKind::InSegment(id) => out.push_str(&format!("inSegment({})", quote(id))),
        ExprKind::Any { source, cond } => {
            out.push_str(&format!("{source}.any("));
            expr(out, cond, None);
            out.push(')');
        }
        ExprKind::Aggregate {
            source,
            filter,
            agg,
            op,
            value,
        } => {
            out.push_str(source);
            if let Some(f) = filter {
                out.push('[');
                expr(out, f, None);
                out.push(']');
            }
            out.push_str(&format!(".{}(", agg.name()));
            if let Some(p) = agg.field() {
                out.push_str(&p.dotted());
            }
            out.push_str(&format!(") {} {value}", op.symbol()));
        }
        ExprKind::Chain {
            source,
            time_path,
            steps,
        } => {
            out.push_str(&format!("chain({source}, {}, [", time_path.dotted()));
            for (i, s) in steps.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&s.label);
                out.push_str(if s.negated { ": NOT WHAT(" } else { ": WHAT(" });
                expr(out, &s.cond, None);
                out.push(')');
                if let Some((w, after)) = &s.within {
                    out.push_str(&format!(" WITHIN {} AFTER {after}", w.describe()));
                }
            }
            out.push_str("])");
        }
    }
}
