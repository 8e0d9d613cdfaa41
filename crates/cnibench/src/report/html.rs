//! One self-contained HTML page: the verdict and the overview chart first, then the
//! summary table, flagged points, scale sweeps, CPU cost, latency distributions, every
//! repetition of every point, and the raw values. The charts are [`figures`] inlined as
//! SVG; no scripts, no external resources, readable at 1280 px and in print.
//!
//! [`figures`]: super::figures

use std::fmt::Write as _;

use super::figures::{Figure, Section};
use super::table::{HEADER, cells};
use super::{esc, num};
use crate::results::{Meta, PointSummary, RunSummary};

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1250px;color:#222;padding:0 1em}\
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}.meta{color:#555;font-size:.9em}\
.verdict{padding:.6em 1em;border-radius:6px;margin:1em 0;font-weight:600}\
.ok{background:#e6f4ea;border:1px solid #9ccc9c}.warn{background:#fdecea;border:1px solid #e0a39a}\
.chips span{display:inline-block;margin:0 .4em .3em 0;padding:.1em .6em;border-radius:1em;background:#eee;font-size:.85em}\
.chips span.bad{background:#fbe3d6}\
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}\
th{background:#f3f3f3}td.l,th.l{text-align:left;white-space:normal}tr.flag td{background:#fdecea}tr.na td{color:#888}\
figure{margin:.8em 0;break-inside:avoid}figure svg{max-width:100%;height:auto;display:block}\
figcaption{font-size:.85em;color:#444;margin-top:.2em}figure.flag figcaption{color:#a33}figure.flag{outline:2px solid #e6a07a;outline-offset:2px}\
.grid{display:flex;flex-wrap:wrap;gap:10px}.grid figure{width:400px;margin:0}\
details{margin:1em 0}code{font-size:.9em}\
@media print{body{max-width:none;margin:0}.grid figure{width:32%}details>*{display:block}h2{break-after:avoid}}";

/// One figure as HTML: the SVG, its caption, and `data-marks` (the data it draws; the
/// browser test reads it).
fn figure(f: &Figure) -> String {
    format!(
        "<figure id=\"{}\" class=\"chart{}\" data-marks=\"{}\">{}<figcaption>{}</figcaption></figure>\n",
        esc(&f.id),
        if f.flagged { " flag" } else { "" },
        f.marks,
        f.svg,
        esc(&f.caption)
    )
}

/// Counts of points by their flag, in first-seen order (`converged`, `NOT CONVERGED
/// (max reps)`, ...): every status a point can have is counted, whatever it is.
pub fn status_counts(run: &RunSummary) -> Vec<(String, usize, bool)> {
    let mut out: Vec<(String, usize, bool)> = Vec::new();
    for p in &run.points {
        let name = match p.flag() {
            "" => "converged",
            f => f,
        };
        match out.iter_mut().find(|c| c.0 == name) {
            Some(c) => c.1 += 1,
            None => out.push((name.to_string(), 1, p.needs_attention())),
        }
    }
    out
}

/// The HTML report of a run with its `figures` (from [`super::figures::figures`]).
pub fn render(meta: &Meta, run: &RunSummary, figures: &[Figure]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>cnibench {}</title><style>{STYLE}</style></head><body>\n",
        esc(&meta.run_id)
    );
    let _ = writeln!(
        h,
        "<h1>cnibench report{}</h1>",
        meta.label
            .as_ref()
            .map(|l| format!(" — {}", esc(l)))
            .unwrap_or_default()
    );
    let _ = writeln!(h, "<p class=\"meta\">{}</p>", esc(&super::header(meta)));
    let flagged: Vec<&PointSummary> = run.points.iter().filter(|p| p.needs_attention()).collect();
    let _ = writeln!(
        h,
        "<div class=\"verdict {}\">{} (target: 95% CI within ±{:.1}% of the mean)</div>",
        if flagged.is_empty() { "ok" } else { "warn" },
        esc(&run.verdict()),
        meta.rule.ci_target * 100.0,
    );
    h.push_str("<p class=\"chips\">");
    for (name, n, bad) in status_counts(run) {
        let _ = write!(
            h,
            "<span{}>{n} {}</span>",
            if bad { " class=\"bad\"" } else { "" },
            esc(&name)
        );
    }
    h.push_str("</p>\n");
    for w in &run.warnings {
        let _ = writeln!(h, "<p class=\"verdict warn\">warning: {}</p>", esc(w));
    }
    for f in figures.iter().filter(|f| f.section == Section::Overview) {
        h.push_str(&figure(f));
    }
    h.push_str("<h2>Summary</h2>\n<table><tr>");
    for (i, c) in HEADER.iter().enumerate() {
        let _ = write!(
            h,
            "<th{}>{}</th>",
            if i < 3 || i == 11 { " class=\"l\"" } else { "" },
            esc(c)
        );
    }
    h.push_str("</tr>\n");
    for row in super::rows(run) {
        let class = if row.summary.needs_attention() {
            " class=\"flag\""
        } else if row.summary.not_applicable() {
            " class=\"na\""
        } else {
            ""
        };
        let _ = write!(h, "<tr{class}>");
        for (i, c) in cells(&row).iter().enumerate() {
            let _ = write!(
                h,
                "<td{}>{}</td>",
                if i < 3 || i == 11 { " class=\"l\"" } else { "" },
                esc(c)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    if !flagged.is_empty() {
        h.push_str("<h2>Needs attention</h2>\n<ul>\n");
        for p in &flagged {
            let _ = writeln!(
                h,
                "<li><b>{}</b> <code>{}</code>{}</li>",
                esc(p.flag()),
                esc(&p.point.id),
                p.note
                    .as_ref()
                    .map(|n| format!(": {}", esc(n)))
                    .unwrap_or_default()
            );
        }
        h.push_str("</ul>\n");
    }
    let na: Vec<&PointSummary> = run.points.iter().filter(|p| p.not_applicable()).collect();
    if !na.is_empty() {
        h.push_str("<h2>Not applicable on this backend</h2>\n<ul>\n");
        for p in &na {
            let _ = writeln!(
                h,
                "<li><code>{}</code>: {}</li>",
                esc(&p.point.id),
                esc(p.note.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</ul>\n");
    }
    for section in [
        Section::Sweeps,
        Section::Cpu,
        Section::Latency,
        Section::Loss,
        Section::Repetitions,
    ] {
        let of: Vec<&Figure> = figures.iter().filter(|f| f.section == section).collect();
        let _ = writeln!(
            h,
            "<h2 id=\"{}\">{}</h2>",
            section.anchor(),
            section.title()
        );
        if of.is_empty() {
            let _ = writeln!(h, "<p class=\"meta\">{}</p>", esc(empty_note(section)));
            continue;
        }
        if section == Section::Repetitions {
            h.push_str("<p class=\"meta\">The primary metric of every repetition in run order: dots measured, hollow grey warm-ups (not counted); dashed line the mean, band its 95% CI. The y axis is zoomed to the data, so that a shift, a trend or two modes show.</p>\n");
        }
        // Scenarios in page order, each with its figures.
        let mut by_scenario: Vec<(&str, Vec<&Figure>)> = Vec::new();
        for f in of {
            match by_scenario.iter_mut().find(|(s, _)| *s == f.scenario) {
                Some((_, figs)) => figs.push(f),
                None => by_scenario.push((&f.scenario, vec![f])),
            }
        }
        for (scenario, figs) in by_scenario {
            if !scenario.is_empty() && section != Section::Sweeps && section != Section::Cpu {
                let _ = writeln!(h, "<h3>{}</h3>", esc(scenario));
            }
            let (wide, small): (Vec<&Figure>, Vec<&Figure>) =
                figs.into_iter().partition(|f| !f.small);
            for f in wide {
                h.push_str(&figure(f));
            }
            if !small.is_empty() {
                h.push_str("<div class=\"grid\">\n");
                for f in small {
                    h.push_str(&figure(f));
                }
                h.push_str("</div>\n");
            }
        }
    }
    h.push_str("<details><summary>Raw repetitions (every measured value)</summary>\n");
    for p in &run.points {
        if p.metrics.is_empty() {
            continue;
        }
        let _ = write!(
            h,
            "<h4><code>{}</code></h4><table><tr><th>rep</th>",
            esc(&p.point.id)
        );
        for k in p.metrics.keys() {
            let _ = write!(h, "<th>{}</th>", esc(k));
        }
        h.push_str("</tr>\n");
        let n = p.metrics.values().map(|m| m.raw.len()).max().unwrap_or(0);
        for i in 0..n {
            let _ = write!(h, "<tr><td>{}</td>", i + 1);
            for m in p.metrics.values() {
                let _ = write!(
                    h,
                    "<td>{}</td>",
                    m.raw.get(i).map_or("-".into(), |v| num(*v))
                );
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
    h.push_str("</details>\n");
    let tools: Vec<String> = meta.tools.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(
        h,
        "<p class=\"meta\">{}</p>\n</body></html>",
        esc(&tools.join(" · "))
    );
    h
}

/// Why a section has no chart.
fn empty_note(section: Section) -> &'static str {
    match section {
        Section::Sweeps => {
            "No scenario varies an object count (services, policies, replicas) over two values or more."
        }
        Section::Cpu => {
            "No stream point with the node CPU split of both ends (it comes from netload's raw JSON, which this run directory does not have, or the points used another tool)."
        }
        Section::Latency => {
            "No request/response or HTTP point with recorded percentiles (they come from netload's raw JSON)."
        }
        Section::Loss => {
            "No UDP point searched for its no-drop rate (the trials come from netload's raw JSON)."
        }
        Section::Repetitions | Section::Overview => "No measured repetitions.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{figures, fixtures, reps};

    #[test]
    fn snapshot_without_svg_bodies() {
        let (meta, run, records) = fixtures::run_with_records("cni-a", 1);
        let figs = figures::figures(&meta, &run, &reps::from_records(&records));
        let html = render(&meta, &run, &figs);
        assert!(!html.contains("chart error"), "a chart failed to render");
        // Self-contained: no scripts, no linked resources (SVG namespaces are fine).
        for needle in ["<script", "<link", "src=", "href="] {
            assert!(!html.contains(needle), "{needle}");
        }
        assert_eq!(html.matches("<svg").count(), figs.len());
        assert_eq!(html.matches("<figure").count(), figs.len());
        insta::with_settings!({filters => vec![(r"(?s)<svg.*?</svg>", "[svg]")]}, {
            insta::assert_snapshot!(html);
        });
    }
}
