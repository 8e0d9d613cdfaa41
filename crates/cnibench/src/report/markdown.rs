//! Markdown report: the summary table, flagged points, the charts (as links to the SVG
//! files `cnibench report` writes under `charts/`, so a code-hosting page shows them), and
//! every raw repetition.

use std::fmt::Write as _;

use super::figures::{Figure, Section};
use super::table::{HEADER, cells};
use super::{num, rows};
use crate::results::{Meta, RunSummary};

/// Directory of the chart files, relative to the report.
pub const CHARTS_DIR: &str = "charts";

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Renders a Markdown table.
pub fn table(header: &[&str], body: &[Vec<String>]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in body {
        let cells: Vec<String> = row.iter().map(|c| md_escape(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out
}

/// The charts as Markdown images: wide charts one per paragraph, small multiples of a
/// scenario side by side in one paragraph.
fn charts(figures: &[Figure]) -> String {
    let mut out = String::new();
    let mut last: Option<(Section, &str)> = None;
    for f in figures {
        let here = (f.section, f.scenario.as_str());
        if last.map(|l| l.0) != Some(f.section) {
            let _ = writeln!(out, "\n### {}\n", f.section.title());
        } else if f.small && last != Some(here) {
            out.push('\n');
        }
        let image = format!(
            "![{}]({CHARTS_DIR}/{}.svg)",
            f.title.replace(['[', ']'], ""),
            f.id
        );
        if f.small {
            let _ = write!(out, "{image} ");
        } else {
            let _ = writeln!(out, "{image}\n\n{}\n", f.caption);
        }
        last = Some(here);
    }
    out.trim_end().to_string() + "\n"
}

/// The Markdown report of a run with its `figures` (their SVG files under [`CHARTS_DIR`]).
pub fn render(meta: &Meta, run: &RunSummary, figures: &[Figure]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# cnibench run {}\n", meta.run_id);
    let _ = writeln!(out, "- suite: {}", meta.suite);
    let _ = writeln!(out, "- backend: {}", meta.backend);
    let _ = writeln!(out, "- measured with: {}", super::tools_used(meta));
    if let Some(l) = &meta.label {
        let _ = writeln!(out, "- label: {l}");
    }
    let _ = writeln!(out, "- created: {}", meta.created);
    let _ = writeln!(
        out,
        "- host: {} ({}, {} cores, kernel {})",
        meta.host.hostname, meta.host.cpu_model, meta.host.cores, meta.host.kernel
    );
    let tools: Vec<String> = meta.tools.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(out, "- tools: {}", tools.join(", "));
    let _ = writeln!(
        out,
        "- stopping rule: 95% CI within ±{:.1}% of the mean, {}..{} repetitions, {} warm-up{}, budget {} s per point\n",
        meta.rule.ci_target * 100.0,
        meta.rule.min_reps,
        meta.rule.max_reps,
        meta.warmup_reps,
        meta.warmup_s
            .filter(|_| meta.warmup_reps > 0)
            .map(|s| format!(" of at most {} s", s.ceil().max(1.0)))
            .unwrap_or_default(),
        meta.rule.time_budget_s
    );
    let body: Vec<Vec<String>> = rows(run).iter().map(cells).collect();
    out.push_str("## Results\n\n");
    out.push_str(&table(&HEADER, &body));
    if let Some(scale) = super::scaling::rows(run) {
        let _ = writeln!(
            out,
            "\n## Scale ({})\n\n{}\n",
            super::scaling::modes(meta),
            super::scaling::LEGEND
        );
        out.push_str(&table(&super::scaling::HEADER, &scale));
    }
    let _ = writeln!(out, "\n{}", run.verdict());
    for (title, points) in [
        (
            "Needs attention",
            run.points
                .iter()
                .filter(|p| p.needs_attention())
                .collect::<Vec<_>>(),
        ),
        (
            "Not applicable on this backend",
            run.points.iter().filter(|p| p.not_applicable()).collect(),
        ),
    ] {
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n## {title}\n");
        for p in points {
            let _ = writeln!(
                out,
                "- **{}** `{}`{}",
                p.flag(),
                p.point.id,
                super::table::detail(p)
            );
        }
    }
    for w in &run.warnings {
        let _ = writeln!(out, "\n> warning: {w}");
    }
    let setup: Vec<Vec<String>> = run
        .points
        .iter()
        .filter_map(|p| {
            let o = p.point.objects;
            p.setup_s.map(|s| {
                vec![
                    format!("`{}`", p.point.id),
                    format!("{s:.2}"),
                    o.services.to_string(),
                    o.policies.to_string(),
                    o.filler_pods.to_string(),
                ]
            })
        })
        .collect();
    if !setup.is_empty() {
        out.push_str("\n## Setup time per point\n\n");
        out.push_str(
            "Building the point's environment and its self-checks (the backend's prepare).\n\n",
        );
        out.push_str(&table(
            &["point", "setup s", "services", "policies", "filler pods"],
            &setup,
        ));
    }
    if !figures.is_empty() {
        out.push_str("\n## Charts\n");
        out.push_str(&charts(figures));
    }
    out.push_str("\n## Raw repetitions\n\n");
    for p in &run.points {
        if p.metrics.is_empty() {
            continue;
        }
        let _ = writeln!(out, "### `{}`\n", p.point.id);
        for (key, m) in &p.metrics {
            if let Some(i) = &m.unstable {
                let _ = writeln!(
                    out,
                    "> **{}** {key}: {}\n",
                    crate::results::UNSTABLE,
                    i.reason
                );
            }
        }
        let keys: Vec<&String> = p.metrics.keys().collect();
        let mut header = vec!["rep"];
        header.extend(keys.iter().map(|k| k.as_str()));
        let n = p.metrics.values().map(|m| m.raw.len()).max().unwrap_or(0);
        let body: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let mut row = vec![(i + 1).to_string()];
                row.extend(
                    keys.iter()
                        .map(|k| p.metrics[*k].raw.get(i).map_or("-".into(), |v| num(*v))),
                );
                row
            })
            .collect();
        out.push_str(&table(&header, &body));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{figures, fixtures, reps};

    #[test]
    fn unstable_point_is_flagged_with_its_reason() {
        let (meta, run) = fixtures::unstable_run();
        let text = render(&meta, &run, &[]);
        assert!(text.contains("| 0.300 -> 4.47 ms | - |"), "{text}");
        assert!(text.contains("- **UNSTABLE** `http-replicas/"), "{text}");
        assert!(
            text.contains("> **UNSTABLE** throughput_gbps: level shift at repetition 9 of 12: 6.80 Gbit/s -> 1.50 Gbit/s (/4.5)"),
            "{text}"
        );
    }

    #[test]
    fn snapshot() {
        let (meta, run, records) = fixtures::run_with_records("cni-a", 1);
        let figs = figures::figures(&meta, &run, &reps::from_records(&records));
        insta::assert_snapshot!(render(&meta, &run, &figs));
    }
}
