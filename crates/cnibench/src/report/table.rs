//! The terminal table: one line per point, the primary metric with its CI, spread, the
//! percentage of the baseline and a flag for anything that needs attention.

use std::fmt::Write as _;

use super::{Row, coords, num, pct, rows};
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
            (
                s.n.to_string(),
                format!("{}{unit}", num(s.mean)),
                s.ci_relative.map_or("-".into(), |r| format!("±{}", pct(r))),
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
            let _ = writeln!(
                out,
                "  {:<28} {}{}",
                p.flag(),
                p.point.id,
                p.note
                    .as_ref()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default()
            );
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
}
