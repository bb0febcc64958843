//! Page furniture: escaping (every value from the catalog or an event goes through [`esc`]),
//! the layout with its navigation, and how times and counts are written.

use axum::response::Html;
use chrono::{TimeZone, Utc};

/// Escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a path segment of a link to another page (ids are URL-safe today; names may not be).
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        // `:` and `@` may stand in a path segment (RFC 3986 pchar): batch ids hold colons.
        if b.is_ascii_alphanumeric() || b"-_.~:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The dashboard's sections, for the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Segments,
    Profiles,
    Flows,
    None,
}

pub struct Layout<'a> {
    title: &'a str,
    section: Section,
    nav: bool,
    /// Seconds after which the browser reloads the page (the live views).
    refresh: Option<u32>,
}

impl<'a> Layout<'a> {
    pub fn page(title: &'a str, section: Section) -> Self {
        Self {
            title,
            section,
            nav: true,
            refresh: None,
        }
    }

    /// Without navigation: the sign-in form.
    pub fn bare(title: &'a str) -> Self {
        Self {
            title,
            section: Section::None,
            nav: false,
            refresh: None,
        }
    }

    pub fn refresh(mut self, seconds: u32) -> Self {
        self.refresh = Some(seconds);
        self
    }

    pub fn render(&self, body: &str) -> Html<String> {
        let refresh = self.refresh.map_or(String::new(), |s| {
            format!(r#"<meta http-equiv="refresh" content="{s}">"#)
        });
        let nav = if self.nav {
            let link = |section: Section, href: &str, label: &str| {
                let current = if section == self.section {
                    r#" aria-current="page""#
                } else {
                    ""
                };
                format!(r#"<a href="{href}"{current}>{label}</a>"#)
            };
            format!(
                r#"<header><nav><span class="brand">cdp</span>{}{}{}{}</nav><form method="post" action="/ui/logout"><button type="submit" class="link">Sign out</button></form></header>"#,
                link(Section::Overview, "/ui", "Streams &amp; datasets"),
                link(Section::Segments, "/ui/segments", "Segments"),
                link(Section::Profiles, "/ui/profiles", "Profiles"),
                link(Section::Flows, "/ui/flows", "Flows"),
            )
        } else {
            String::new()
        };
        Html(format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{refresh}<title>{title} · cdp</title>
<link rel="stylesheet" href="/ui/style.css">
</head>
<body>
{nav}
<main>
{body}
</main>
</body>
</html>
"#,
            title = esc(self.title),
        ))
    }
}

/// `2026-11-28 21:56:13 UTC`; `—` for none.
pub fn time(ms: Option<i64>) -> String {
    ms.and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map_or("—".to_string(), |t| {
            t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        })
}

/// `HH:MM` of a minute, for chart labels.
pub fn clock(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map_or(String::new(), |t| t.format("%H:%M").to_string())
}

/// `12,345`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A table with a header row; `rows` are already rendered `<tr>`s. With no rows, `empty` says
/// why the table is empty.
pub fn table(class: &str, headers: &[&str], rows: &[String], empty: &str) -> String {
    if rows.is_empty() {
        return format!(r#"<p class="empty">{}</p>"#, esc(empty));
    }
    let head: String = headers.iter().map(|h| format!("<th>{h}</th>")).collect();
    format!(
        r#"<table class="{class}"><thead><tr>{head}</tr></thead><tbody>{}</tbody></table>"#,
        rows.concat()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cannot_become_markup() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn counts_and_times_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(None), "—");
        assert_eq!(clock(90 * 60_000), "01:30");
    }
}
