//! The terminal table: one line per point, the primary metric with its CI, spread, the
//! percentage of the baseline and a flag for anything that needs attention; an unstable
//! point shows its two levels (`0.246 -> 3.36 ms`) in the mean column, and why under the
//! table.

use std::fmt::Write as _;

use super::{Row, coords, levels, num, pct, rows};
use crate::results::{Meta, RunSummary};

/// Aligns cells into columns; numeric-looking columns are right-aligned.
pub fn align(header: &[&str], body: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in body {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let right: Vec<bool> = (0..cols)
        .map(|i| {
            body.iter().all(|r| {
                r.get(i).is_none_or(|c| {
                    c.is_empty()
                        || c == "-"
                        || c.starts_with(|ch: char| {
                            ch.is_ascii_digit() || ch == '±' || ch == '+' || ch == '-'
                        })
                })
            }) && !body.is_empty()
        })
        .collect();
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = width[i].saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    let head: Vec<String> = header.iter().map(ToString::to_string).collect();
    line(&head, &mut out);
    let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    line(&rule, &mut out);
    for row in body {
        line(row, &mut out);
    }
    out
}

/// Cells of one row: the same columns in the table, Markdown and HTML.
pub fn cells(row: &Row<'_>) -> Vec<String> {
    let p = row.summary;
    let unit = if row.metric.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", row.metric.unit)
    };
    let (n, mean, ci, median, cov, range) = match p.primary_summary() {
        Some(m) => {
            let s = &m.stats;
            // An unstable point shows its two levels instead of their mean, and no interval
            // of that mean.
            let (mean, ci) = match &m.unstable {
                Some(i) => (format!("{}{unit}", levels(i)), "-".into()),
                None => (
                    format!("{}{unit}", num(s.mean)),
                    s.ci_relative.map_or("-".into(), |r| format!("±{}", pct(r))),
                ),
            };
            (
                s.n.to_string(),
                mean,
                ci,
                num(s.median),
                s.cov.map_or("-".into(), pct),
                format!("{}..{}", num(s.min), num(s.max)),
            )
        }
        None => (
            "0".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ),
    };
    vec![
        p.point.scenario.clone(),
        coords(p),
        row.metric.label.to_string(),
        n,
        mean,
        ci,
        median,
        cov,
        range,
        row.pct_baseline.map_or("-".into(), |x| format!("{x:.1}%")),
        row.cpu.map_or("-".into(), |(_, v)| num(v)),
        p.flag().to_string(),
    ]
}

/// Column headers matching [`cells`].
pub const HEADER: [&str; 12] = [
    "scenario",
    "point",
    "metric",
    "n",
    "mean",
    "CI95",
    "median",
    "CoV",
    "min..max",
    "% base",
    "server CPU s/Gbit",
    "flag",
];

/// The terminal report of a run.
pub fn render(meta: &Meta, run: &RunSummary) -> String {
    let body: Vec<Vec<String>> = rows(run).iter().map(cells).collect();
    let mut out = format!("{}\n\n", super::header(meta));
    out.push_str(&align(&HEADER, &body));
    if let Some(scale) = super::scaling::rows(run) {
        let _ = writeln!(
            out,
            "\nscale ({}): {}\n",
            super::scaling::modes(meta),
            super::scaling::LEGEND
        );
        out.push_str(&align(&super::scaling::HEADER, &scale));
    }
    out.push_str(&footer(run));
    out
}

/// What to say after a flagged point's id: why it is unstable, then the note.
pub fn detail(p: &crate::results::PointSummary) -> String {
    let parts: Vec<String> = p
        .unstable_reason()
        .into_iter()
        .chain(p.note.clone())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
}

/// Notes under a table: the verdict, points needing attention and not-applicable points
/// with their reasons, warnings.
pub fn footer(run: &RunSummary) -> String {
    let mut out = format!("\n{}\n", run.verdict());
    let list = |out: &mut String, title: &str, points: Vec<&crate::results::PointSummary>| {
        if points.is_empty() {
            return;
        }
        let _ = writeln!(out, "{title}:");
        for p in points {
            let _ = writeln!(out, "  {:<28} {}{}", p.flag(), p.point.id, detail(p));
        }
    };
    list(
        &mut out,
        "needs attention",
        run.points.iter().filter(|p| p.needs_attention()).collect(),
    );
    list(
        &mut out,
        "not applicable",
        run.points.iter().filter(|p| p.not_applicable()).collect(),
    );
    for w in &run.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn snapshot() {
        let (meta, run) = fixtures::run("cni-a", 1);
        insta::assert_snapshot!(render(&meta, &run));
    }

    /// An unstable point shows its two levels, no CI, the UNSTABLE flag, and the reason
    /// with the repetition under the table.
    #[test]
    fn unstable_point_is_never_averaged() {
        let (meta, run) = fixtures::unstable_run();
        let text = render(&meta, &run);
        let line = text
            .lines()
            .find(|l| l.starts_with("http-replicas"))
            .unwrap();
        assert!(line.contains("0.300 -> 4.47 ms"), "{line}");
        assert!(line.ends_with("UNSTABLE"), "{line}");
        assert!(!line.contains('±'), "no CI of a two-regime mean: {line}");
        assert!(
            text.contains(
                "TTFB p50: level shift at repetition 9 of 12: 0.300 ms -> 4.47 ms (x14.9)"
            ),
            "{text}"
        );
        assert!(text.contains("1 unstable"), "{text}");
        insta::assert_snapshot!(text);
    }
}
