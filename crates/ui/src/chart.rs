//! Per-minute stacked bar charts as inline SVG: one `<g class="point">` per minute (with a
//! tooltip and its values in data attributes), so the pages need no charting script.

use std::fmt::Write;

use crate::html::{clock, count, esc};

/// One series of a chart: its name (legend, tooltip) and CSS class (colour).
pub struct Series {
    pub name: &'static str,
    pub class: &'static str,
}

/// One minute: its start and one value per series.
pub struct Point {
    pub start_ms: i64,
    pub values: Vec<u64>,
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 48.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// The chart, titled `label` for screen readers, with a legend below it.
pub fn stacked_bars(label: &str, series: &[Series], points: &[Point]) -> String {
    let max = points
        .iter()
        .map(|p| p.values.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_w = WIDTH - LEFT;
    let plot_h = HEIGHT - BOTTOM - TOP;
    let slot = plot_w / points.len().max(1) as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" data-points="{n}">"#,
        label = esc(label),
        n = points.len()
    );
    // The y axis: zero and the highest stack.
    let _ = write!(
        svg,
        r#"<line class="axis" x1="{LEFT}" y1="{y0}" x2="{WIDTH}" y2="{y0}"/><text class="tick" x="{x}" y="{y0}" text-anchor="end">0</text><text class="tick" x="{x}" y="{ytop}" text-anchor="end">{max}</text>"#,
        y0 = TOP + plot_h,
        x = LEFT - 6.0,
        ytop = TOP + 10.0,
        max = count(max)
    );
    for (i, p) in points.iter().enumerate() {
        let x = LEFT + i as f64 * slot + (slot - bar_w) / 2.0;
        let tip: Vec<String> = series
            .iter()
            .zip(&p.values)
            .map(|(s, v)| format!("{} {}", s.name, count(*v)))
            .collect();
        let values: Vec<String> = p.values.iter().map(u64::to_string).collect();
        let _ = write!(
            svg,
            r#"<g class="point" data-start="{}" data-values="{}"><title>{} — {}</title>"#,
            p.start_ms,
            values.join(","),
            clock(p.start_ms),
            esc(&tip.join(", "))
        );
        // An invisible full-height rect, so the tooltip shows over empty minutes too.
        let _ = write!(
            svg,
            r#"<rect class="hit" x="{x:.1}" y="{TOP}" width="{bar_w:.1}" height="{plot_h}"/>"#
        );
        let mut y = TOP + plot_h;
        for (s, v) in series.iter().zip(&p.values) {
            if *v == 0 {
                continue;
            }
            let h = *v as f64 / max as f64 * plot_h;
            y -= h;
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{x:.1}" y="{y:.1}" width="{bar_w:.1}" height="{h:.1}"/>"#,
                s.class
            );
        }
        svg.push_str("</g>");
    }
    // Time labels: the first, middle and last minute.
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let mid = &points[points.len() / 2];
        let y = HEIGHT - 6.0;
        for (p, x, anchor) in [
            (first, LEFT, "start"),
            (mid, LEFT + plot_w / 2.0, "middle"),
            (last, WIDTH, "end"),
        ] {
            let _ = write!(
                svg,
                r#"<text class="tick" x="{x}" y="{y}" text-anchor="{anchor}">{}</text>"#,
                clock(p.start_ms)
            );
        }
    }
    svg.push_str("</svg>");
    let legend: String = series
        .iter()
        .map(|s| {
            format!(
                r#"<span class="key"><i class="{}"></i>{}</span>"#,
                s.class,
                esc(s.name)
            )
        })
        .collect();
    format!(r#"<figure>{svg}<figcaption>{legend}</figcaption></figure>"#)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_point_per_minute_with_stacks_scaled_to_the_highest() {
        let series = [
            Series {
                name: "records",
                class: "ok",
            },
            Series {
                name: "failed",
                class: "bad",
            },
        ];
        let points: Vec<Point> = (0..3)
            .map(|i| Point {
                start_ms: i * 60_000,
                values: vec![i as u64 * 2, 1],
            })
            .collect();
        let svg = stacked_bars("activity", &series, &points);
        assert_eq!(svg.matches(r#"<g class="point""#).count(), 3);
        assert!(svg.contains(r#"data-points="3""#));
        assert!(svg.contains(r#"data-values="4,1""#));
        // The highest stack (4 + 1) fills the plot.
        assert!(svg.contains(">5</text>"));
        assert!(svg.contains("<title>00:02 — records 4, failed 1</title>"));
        // Zero values draw no bar.
        assert_eq!(svg.matches(r#"<rect class="ok""#).count(), 2);
    }
}
