//! Explanations: which predicate or event decided a segment's answer.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use crate::eval::{aggregate, chain, eval, Context, Scope};
use crate::plan::{Kind, Node, Plan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub qualified: bool,
    pub next_change: Option<DateTime<Utc>>,
    /// Human-readable account of the deciding predicate(s) and events.
    pub because: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} because {}",
            if self.qualified {
                "qualified"
            } else {
                "not qualified"
            },
            self.because
        )?;
        if let Some(t) = self.next_change {
            write!(
                f,
                "; may change at {}",
                t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            )?;
        }
        Ok(())
    }
}

impl Plan {
    /// Evaluates like [`Plan::evaluate`] and says why. Slower; meant for humans.
    pub fn explain(&self, cx: &Context<'_>) -> Explanation {
        let outcome = self.evaluate(cx);
        let (_, because) = why(&self.root, cx, cx.profile_scope());
        Explanation {
            qualified: outcome.qualified,
            next_change: outcome.next_change,
            because,
        }
    }
}

fn show(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

fn describe_event(cx: &Context<'_>, i: usize) -> String {
    let Some(e) = cx.events.get(i) else {
        return format!("event #{i}");
    };
    let ty = e
        .value
        .get("eventType")
        .map(show)
        .unwrap_or_else(|| "(no eventType)".into());
    let ts =
        e.ts.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .unwrap_or_else(|| "no timestamp".into());
    format!("event #{i} ({ty} at {ts})")
}

fn why(n: &Node, cx: &Context<'_>, scope: Scope<'_>) -> (bool, String) {
    match &n.kind {
        Kind::And(parts) => {
            let mut reasons = Vec::new();
            for p in parts {
                let (b, r) = why(p, cx, scope);
                if !b {
                    return (false, r);
                }
                reasons.push(r);
            }
            (true, reasons.join("; and "))
        }
        Kind::Or(parts) => {
            let mut reasons = Vec::new();
            for p in parts {
                let (b, r) = why(p, cx, scope);
                if b {
                    return (true, r);
                }
                reasons.push(r);
            }
            (false, reasons.join("; and "))
        }
        Kind::Not(a) => {
            let (b, r) = why(a, cx, scope);
            (!b, format!("`{}` is {} ({r})", n.text, !b))
        }
        Kind::Cmp { field, .. }
        | Kind::In { field, .. }
        | Kind::Exists(field)
        | Kind::Str { field, .. }
        | Kind::Occurs { field, .. } => {
            let (b, _) = eval::<false>(n, cx, scope);
            let name = field.keys.join(".");
            let seen = match field.get(scope) {
                Some(v) => format!("{name} = {}", show(v)),
                None => format!("{name} is missing"),
            };
            (b, format!("`{}` is {b} ({seen})", n.text))
        }
        Kind::InSegment(id) => {
            let b = cx.memberships.contains(id);
            let what = if b { "is a member" } else { "is not a member" };
            (
                b,
                format!("`{}` is {b} (the profile {what} of \"{id}\")", n.text),
            )
        }
        Kind::NoData => (
            false,
            format!("`{}` is false (no data for that entity)", n.text),
        ),
        Kind::Any { cond, .. } => {
            let hit = cx
                .events
                .iter()
                .position(|e| eval::<false>(cond, cx, (*e).into()).0);
            match hit {
                Some(i) => (
                    true,
                    format!("`{}` is true: {} matched", n.text, describe_event(cx, i)),
                ),
                None => (
                    false,
                    format!(
                        "`{}` is false: none of {} event(s) matched",
                        n.text,
                        cx.events.len()
                    ),
                ),
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
            let (b, _, got) = aggregate::<false>(
                cx,
                filter.as_deref(),
                types.as_deref(),
                *kind,
                field.as_ref(),
                *op,
                *value,
            );
            let got = got.map_or("undefined (no values)".to_string(), |g| g.to_string());
            (
                b,
                format!(
                    "`{}` is {b}: the aggregate over {} event(s) is {got}",
                    n.text,
                    cx.events.len()
                ),
            )
        }
        Kind::Chain { time, steps } => {
            let (m, _) = chain::<false>(cx, time, steps);
            match m {
                Some(idx) => {
                    let evs: Vec<String> = idx.iter().map(|&i| describe_event(cx, i)).collect();
                    (
                        true,
                        format!("`{}` is true: matched {}", n.text, evs.join(", then ")),
                    )
                }
                None => (
                    false,
                    format!(
                        "`{}` is false: no ordered sequence of events satisfies every step",
                        n.text
                    ),
                ),
            }
        }
    }
}
