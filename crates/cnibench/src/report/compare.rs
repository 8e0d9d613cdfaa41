//! `cnibench compare`: runs side by side per point, with the difference of each run from
//! the first and whether it is significant (Welch's t-test on the raw repetitions); as a
//! table, Markdown, CSV, or one self-contained HTML page with the ratios as a chart and
//! the scale sweeps of every run overlaid.

use std::fmt::Write as _;

use super::charts::{self, HBar, Lines};
use super::esc;
use super::figures::{log_axis, sweep_keys, sweep_metrics, sweep_series};
use super::table::align;
use super::{csv, markdown, num, pct};
use crate::metrics::{self, MetricInfo};
use crate::results::{Meta, MetricSummary, PointSummary, RunSummary};
use crate::stats::{self, Welch};

/// One run's figures at a point.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Statistics and raw values of the compared metric.
    pub metric: MetricSummary,
    /// Not converged / unstable / failed / interrupted flag (empty when fine).
    pub flag: String,
    /// Difference of the mean from the first run's, percent of the first run's mean.
    pub delta_pct: Option<f64>,
    /// Welch's t-test against the first run.
    pub welch: Option<Welch>,
}

/// One point of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Point id.
    pub point: String,
    /// The compared metric.
    pub metric: MetricInfo,
    /// One cell per run, `None` where the run did not measure the point.
    pub cells: Vec<Option<Cell>>,
    /// Per run: the point ended not enforced there (the cluster ignores what it tests).
    pub not_enforced: Vec<bool>,
}

/// The verdict of a point flagged unstable in either run.
const UNSTABLE: &str = "unstable: not compared";

impl Line {
    /// Verdict of run `i` against the first run.
    pub fn verdict(&self, i: usize) -> &'static str {
        let not_enforced = |i: usize| self.not_enforced.get(i).copied().unwrap_or(false);
        let Some(cell) = self.cells.get(i).and_then(Option::as_ref) else {
            return if not_enforced(i) {
                "not enforced: not measured"
            } else {
                "not measured"
            };
        };
        let Some(first) = self.cells.first().and_then(Option::as_ref) else {
            return if not_enforced(0) {
                "not enforced in the first run"
            } else {
                "not in the first run"
            };
        };
        // A t-test of means over two regimes answers nothing about either regime.
        if cell.metric.unstable.is_some() || first.metric.unstable.is_some() {
            return UNSTABLE;
        }
        match (cell.welch, cell.delta_pct) {
            (Some(w), Some(d)) if w.significant() => {
                if (d > 0.0) == self.metric.higher_is_better {
                    "better"
                } else {
                    "worse"
                }
            }
            (Some(_), _) => "no significant difference",
            _ => "too few repetitions",
        }
    }
}

impl Cell {
    /// Mean as a ratio to the first run's, with the first-order 95 % CI of that ratio
    /// (relative CIs of the two independent means added in quadrature).
    pub fn ratio(&self, first: &Cell) -> Option<(f64, Option<(f64, f64)>)> {
        crate::stats::mean_ratio(&self.metric.stats, &first.metric.stats)
    }
}

/// Compares the primary metric (and the CPU cost, for streams) of every point measured by
/// any run, in order of first appearance.
pub fn compare(runs: &[RunSummary]) -> Vec<Line> {
    let mut ids: Vec<(String, String)> = Vec::new();
    for run in runs {
        for p in &run.points {
            let mut keys = vec![p.primary.clone()];
            keys.extend(metrics::cpu_metric(p.point.workload.kind()).map(String::from));
            for k in keys {
                if !ids.contains(&(p.point.id.clone(), k.clone())) {
                    ids.push((p.point.id.clone(), k));
                }
            }
        }
    }
    ids.into_iter()
        .filter_map(|(id, key)| {
            let cells: Vec<Option<Cell>> = runs
                .iter()
                .map(|r| {
                    let p = r.points.iter().find(|p| p.point.id == id)?;
                    let m = p.metrics.get(&key)?;
                    Some(Cell {
                        metric: m.clone(),
                        flag: p.flag().to_string(),
                        delta_pct: None,
                        welch: None,
                    })
                })
                .collect();
            if cells.iter().all(Option::is_none) {
                return None;
            }
            let first = cells[0].clone();
            let cells = cells
                .into_iter()
                .enumerate()
                .map(|(i, c)| {
                    c.map(|mut c| {
                        if i > 0
                            && let Some(f) = &first
                        {
                            let base = f.metric.stats.mean;
                            c.delta_pct =
                                (base != 0.0).then(|| (c.metric.stats.mean - base) / base * 100.0);
                            c.welch = stats::welch(&f.metric.raw, &c.metric.raw);
                        }
                        c
                    })
                })
                .collect();
            let not_enforced = runs
                .iter()
                .map(|r| {
                    r.points.iter().any(|p| {
                        p.point.id == id
                            && p.status == Some(crate::results::PointStatus::NotEnforced)
                    })
                })
                .collect();
            Some(Line {
                point: id,
                metric: metrics::info(&key),
                cells,
                not_enforced,
            })
        })
        .collect()
}

fn names(runs: &[RunSummary]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in runs {
        let mut name = r.name().to_string();
        if out.contains(&name) {
            name = format!("{name} ({})", r.run_id);
        }
        out.push(name);
    }
    out
}

fn grid(runs: &[RunSummary], lines: &[Line]) -> (Vec<String>, Vec<Vec<String>>) {
    let names = names(runs);
    let mut header = vec!["point".to_string(), "metric".to_string()];
    for (i, n) in names.iter().enumerate() {
        header.push(n.clone());
        if i > 0 {
            header.push(format!("Δ vs {}", names[0]));
            header.push("p".into());
            header.push("verdict".into());
        }
    }
    let body = lines
        .iter()
        .map(|l| {
            let unit = if l.metric.unit.is_empty() {
                String::new()
            } else {
                format!(" {}", l.metric.unit)
            };
            let mut row = vec![l.point.clone(), l.metric.label.to_string()];
            for (i, c) in l.cells.iter().enumerate() {
                row.push(match c {
                    Some(c) => {
                        let s = &c.metric.stats;
                        let ci = s
                            .ci_relative
                            .map_or(String::new(), |r| format!(" ±{}", pct(r)));
                        let flag = if c.flag.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", c.flag)
                        };
                        format!("{}{unit}{ci} n={}{flag}", num(s.mean), s.n)
                    }
                    None => "-".into(),
                });
                if i > 0 {
                    let c = c.as_ref();
                    row.push(
                        c.and_then(|c| c.delta_pct)
                            .map_or("-".into(), |d| format!("{d:+.1}%")),
                    );
                    row.push(
                        c.and_then(|c| c.welch)
                            .map_or("-".into(), |w| format!("{:.3}", w.p_value)),
                    );
                    row.push(l.verdict(i).to_string());
                }
            }
            row
        })
        .collect();
    (header, body)
}

/// Terminal table of a comparison.
pub fn render_table(runs: &[RunSummary], lines: &[Line]) -> String {
    let (header, body) = grid(runs, lines);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut out = align(&header, &body);
    let _ = writeln!(
        out,
        "\nΔ: difference of the mean from the first run. p: Welch's t-test on the raw repetitions; significant when p < {}.\nWith many points, about {:.0}% of them show a \"significant\" difference by chance alone: look for consistent patterns.",
        stats::SIGNIFICANCE,
        stats::SIGNIFICANCE * 100.0
    );
    out
}

/// Markdown table of a comparison.
pub fn render_markdown(runs: &[RunSummary], lines: &[Line]) -> String {
    let (header, body) = grid(runs, lines);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    format!("# cnibench compare\n\n{}", markdown::table(&header, &body))
}

/// CSV of a comparison: one row per point, metric and run.
pub fn render_csv(runs: &[RunSummary], lines: &[Line]) -> String {
    let names = names(runs);
    let mut out =
        String::from("point,metric,run,n,mean,ci95_relative,flag,delta_pct,p_value,verdict\n");
    for l in lines {
        for (i, c) in l.cells.iter().enumerate() {
            let Some(c) = c else { continue };
            let s = &c.metric.stats;
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                csv::field(&l.point),
                l.metric.key,
                csv::field(&names[i]),
                s.n,
                s.mean,
                s.ci_relative.map(|r| r.to_string()).unwrap_or_default(),
                csv::field(&c.flag),
                c.delta_pct.map(|d| d.to_string()).unwrap_or_default(),
                c.welch.map(|w| w.p_value.to_string()).unwrap_or_default(),
                if i == 0 { "" } else { l.verdict(i) }
            );
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1250px;color:#222;padding:0 1em}\
h2{margin-top:1.6em;border-bottom:1px solid #ddd}.meta{color:#555;font-size:.9em}\
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}\
th{background:#f3f3f3}td.l,th.l{text-align:left}td.better{background:#d9f0d3}td.worse{background:#f8d0cc}td.same{color:#666}\
figure{margin:.8em 0;break-inside:avoid}figure svg{max-width:100%;height:auto;display:block}figcaption{font-size:.85em;color:#444}\
@media print{body{max-width:none;margin:0}}";

/// What distinguishes a run: label, backend and the implementation modes it ran with.
fn describe(run: &RunSummary, meta: Option<&Meta>) -> String {
    let mut parts = vec![
        format!("run {}", run.run_id),
        format!("backend {}", run.backend),
    ];
    if let Some(m) = meta {
        for (k, what) in [
            ("lab_profile", "datapath"),
            ("lab_proxy", "proxy"),
            ("lab_policy_mode", "policies"),
            ("kube_service_mode", "services"),
        ] {
            if let Some(v) = m.tools.get(k) {
                parts.push(format!("{what} {v}"));
            }
        }
        parts.push(m.created.clone());
    }
    parts.join(" · ")
}

fn class(verdict: &str) -> &'static str {
    match verdict {
        "better" => "better",
        "worse" => "worse",
        _ => "same",
    }
}

/// One self-contained HTML page comparing `runs` (the first is the reference) with their
/// `metas` (same order; used for the modes in legends): a chart of every other run's ratio
/// to the reference per point with its CI, green or red where Welch's test finds a
/// significant change, the scale sweeps of all runs overlaid, and the full table.
pub fn render_html(runs: &[RunSummary], metas: &[Meta], lines: &[Line]) -> String {
    let names = names(runs);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cnibench compare</title><style>{STYLE}</style></head><body>\n<h1>cnibench compare</h1>\n<ol>\n"
    );
    for (i, (r, n)) in runs.iter().zip(&names).enumerate() {
        let _ = writeln!(
            h,
            "<li><b>{}</b>{} — {}</li>",
            esc(n),
            if i == 0 { " (reference)" } else { "" },
            esc(&describe(r, metas.get(i)))
        );
    }
    let _ = writeln!(
        h,
        "</ol>\n<p class=\"meta\">Ratio: mean over the reference's mean; whiskers: 95% CI of the ratio. Green: significantly better, red: significantly worse (Welch's t-test on the raw repetitions, p &lt; {}); grey: no significant difference. With many points, about {:.0}% show a \"significant\" difference by chance alone: look for consistent patterns.</p>",
        stats::SIGNIFICANCE,
        stats::SIGNIFICANCE * 100.0
    );
    for (i, name) in names.iter().enumerate().skip(1) {
        // A ratio of means over two regimes is no ratio of anything: the table says so, the
        // chart leaves the point out and counts it.
        let mut unstable = 0;
        let bars: Vec<HBar> = lines
            .iter()
            .filter(|l| !l.metric.key.contains("cpu"))
            .filter_map(|l| {
                let first = l.cells.first()?.as_ref()?;
                let cell = l.cells.get(i)?.as_ref()?;
                let verdict = l.verdict(i);
                if verdict == UNSTABLE {
                    unstable += 1;
                    return None;
                }
                let (r, ci) = cell.ratio(first)?;
                let p = cell
                    .welch
                    .map_or("-".into(), |w| format!("{:.3}", w.p_value));
                Some(HBar {
                    label: format!("{} · {}", l.point, l.metric.label),
                    value: r * 100.0,
                    ci: ci.map(|(a, b)| (a * 100.0, b * 100.0)),
                    // Short, so that the text fits beside the widest whisker.
                    text: format!(
                        "{:.1}%  p={p}{}",
                        r * 100.0,
                        match class(verdict) {
                            "same" => String::new(),
                            c => format!("  {c}"),
                        }
                    ),
                    color: match class(verdict) {
                        "better" => charts::BETTER,
                        "worse" => charts::WORSE,
                        _ => charts::NEUTRAL,
                    },
                })
            })
            .collect();
        if bars.is_empty() {
            continue;
        }
        let _ = writeln!(
            h,
            "<h2>{} vs {}</h2>\n<figure class=\"chart\" data-marks=\"{}\">{}</figure>",
            esc(name),
            esc(&names[0]),
            bars.len(),
            charts::hbars(
                &format!("{name}: mean as % of {} (95% CI)", names[0]),
                &format!("% of {}", names[0]),
                &bars,
                Some(100.0),
                true
            )
        );
        if unstable > 0 {
            let _ = writeln!(
                h,
                "<p class=\"meta\">Not drawn: {unstable} point(s) flagged unstable in either run (see the table).</p>"
            );
        }
    }
    h.push_str(&sweep_overlays(runs, metas, &names));
    h.push_str(
        "<h2>Every point</h2>\n<table><tr><th class=\"l\">point</th><th class=\"l\">metric</th>",
    );
    for (i, n) in names.iter().enumerate() {
        let _ = write!(h, "<th>{}</th>", esc(n));
        if i > 0 {
            h.push_str("<th>ratio</th><th>95% CI</th><th>p</th><th class=\"l\">verdict</th>");
        }
    }
    h.push_str("</tr>\n");
    for l in lines {
        let _ = write!(
            h,
            "<tr><td class=\"l\"><code>{}</code></td><td class=\"l\">{}</td>",
            esc(&l.point),
            esc(l.metric.label)
        );
        let first = l.cells.first().and_then(Option::as_ref);
        for (i, c) in l.cells.iter().enumerate() {
            let _ = write!(
                h,
                "<td>{}</td>",
                c.as_ref().map_or("-".into(), |c| {
                    let s = &c.metric.stats;
                    esc(&format!(
                        "{} {}{} n={}{}",
                        num(s.mean),
                        l.metric.unit,
                        s.ci_relative
                            .map_or(String::new(), |r| format!(" ±{}", pct(r))),
                        s.n,
                        if c.flag.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", c.flag)
                        }
                    ))
                })
            );
            if i == 0 {
                continue;
            }
            let ratio = c.as_ref().zip(first).and_then(|(c, f)| c.ratio(f));
            let verdict = l.verdict(i);
            let _ = write!(
                h,
                "<td>{}</td><td>{}</td><td>{}</td><td class=\"l {}\">{}</td>",
                ratio.map_or("-".into(), |r| format!("{:.3}", r.0)),
                ratio
                    .and_then(|r| r.1)
                    .map_or("-".into(), |(a, b)| format!("{a:.3}..{b:.3}")),
                c.as_ref()
                    .and_then(|c| c.welch)
                    .map_or("-".into(), |w| format!("{:.3}", w.p_value)),
                class(verdict),
                esc(verdict)
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n</body></html>\n");
    h
}

/// Scale sweeps with every run's lines in one chart per scenario, key and metric (so
/// iptables against nftables, or one CNI against another, reads off one picture).
fn sweep_overlays(runs: &[RunSummary], metas: &[Meta], names: &[String]) -> String {
    let mut charts_of: Vec<(String, &'static str, &'static str)> = Vec::new();
    for run in runs {
        for p in &run.points {
            let scenario: Vec<&PointSummary> = run
                .points
                .iter()
                .filter(|q| q.point.scenario == p.point.scenario)
                .collect();
            for key in sweep_keys(&scenario) {
                for metric in sweep_metrics(p.point.workload.kind()) {
                    let id = (p.point.scenario.clone(), key, *metric);
                    if !charts_of.contains(&id) {
                        charts_of.push(id);
                    }
                }
            }
        }
    }
    let mut h = String::new();
    for (scenario, key, metric) in charts_of {
        let mut series = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            let points: Vec<&PointSummary> = r
                .points
                .iter()
                .filter(|q| {
                    q.point.scenario == scenario
                        && sweep_metrics(q.point.workload.kind()).contains(&metric)
                })
                .collect();
            let mut suffix = names[i].clone();
            let mode = metas.get(i).and_then(|m| match key {
                "policies" | "pods" => m.tools.get("lab_policy_mode"),
                _ => m.tools.get("lab_proxy"),
            });
            if let Some(mode) = mode {
                let _ = write!(suffix, " ({mode})");
            }
            let first = series.len();
            series.extend(sweep_series(&points, key, metric, Some(&suffix), first));
        }
        if series.is_empty() {
            continue;
        }
        let info = metrics::info(metric);
        let x_axis = log_axis(&series);
        let log = x_axis == charts::XAxis::Log;
        let marks: usize = series.iter().map(|s| s.points.len()).sum();
        let title = format!("{scenario}: {} vs {key}, every run", info.label);
        let _ = writeln!(
            h,
            "<figure class=\"chart\" data-marks=\"{marks}\">{}<figcaption>Mean per point with its 95% CI as a band{}.</figcaption></figure>",
            charts::lines(&Lines {
                title: &title,
                x_desc: &format!("{key}{}", if log { " (log scale)" } else { "" }),
                y_desc: &format!("{} ({})", info.label, info.unit),
                series: &series,
                x_axis,
                reference: None,
                y_from_zero: true,
                size: (charts::WIDE, 420),
            }),
            if log { "; x on a log scale" } else { "" }
        );
    }
    if h.is_empty() {
        return h;
    }
    format!("<h2>Scale sweeps, every run</h2>\n{h}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn same_seed_is_not_significant_other_seed_may_be() {
        let (_, a) = fixtures::run("cni-a", 1);
        let (_, a2) = fixtures::run("cni-a", 1);
        let lines = compare(&[a.clone(), a2]);
        for l in &lines {
            if let Some(Some(c)) = l.cells.get(1)
                && let Some(w) = c.welch
            {
                assert!(!w.significant(), "{l:?}");
            }
        }
        let (_, b) = fixtures::run("cni-b", 2);
        let lines = compare(&[a.clone(), b.clone()]);
        insta::assert_snapshot!(render_table(&[a, b], &lines));
    }

    #[test]
    fn html_page_colours_significant_changes_and_overlays_sweeps() {
        let (ma, a) = fixtures::run("cni-a", 1);
        let (mut mb, mut b) = fixtures::run("cni-b", 2);
        mb.tools.insert("lab_proxy".into(), "nftables".into());
        // A clear regression at one point: every repetition 20 % lower.
        let p = b
            .points
            .iter_mut()
            .find(|p| {
                p.point.id.contains("services=10000,workload=tcp") && p.point.id.contains("inter")
            })
            .unwrap();
        let m = p.metrics.get_mut(metrics::THROUGHPUT).unwrap();
        m.raw.iter_mut().for_each(|v| *v *= 0.8);
        m.stats = stats::summarize(&m.raw).unwrap();
        let runs = [a, b];
        let lines = compare(&runs);
        let html = render_html(&runs, &[ma, mb], &lines);
        for needle in ["<script", "<link", "src=", "href="] {
            assert!(!html.contains(needle), "{needle}");
        }
        assert!(
            html.contains("class=\"l worse\">worse<"),
            "the regression is coloured"
        );
        assert!(html.contains("proxy nftables") && html.contains("cni-b (nftables)"));
        // The ratio chart and the services sweep (throughput, CPU), every run overlaid.
        assert_eq!(html.matches("<svg").count(), 3, "{html}");
        assert!(!html.contains("chart error"));
    }

    #[test]
    fn a_point_one_cluster_does_not_enforce_says_so_in_the_comparison() {
        let (_, a) = fixtures::run("cni-a", 1);
        let (_, mut b) = fixtures::run("cni-b", 2);
        let p = b
            .points
            .iter_mut()
            .find(|p| p.point.id.contains("services=100,") && p.primary == metrics::THROUGHPUT)
            .unwrap();
        let id = p.point.id.clone();
        p.status = Some(crate::results::PointStatus::NotEnforced);
        p.metrics.clear();
        let lines = compare(&[a.clone(), b.clone()]);
        let line = lines
            .iter()
            .find(|l| l.point == id && l.metric.key == metrics::THROUGHPUT)
            .unwrap();
        assert_eq!(line.verdict(1), "not enforced: not measured");
        let lines = compare(&[b, a]);
        let line = lines
            .iter()
            .find(|l| l.point == id && l.metric.key == metrics::THROUGHPUT)
            .unwrap();
        assert_eq!(line.verdict(1), "not enforced in the first run");
    }

    #[test]
    fn unstable_points_stay_in_the_table_and_out_of_the_ratio_chart() {
        let (ma, a) = fixtures::run("cni-a", 1);
        let (mb, mut b) = fixtures::run("cni-b", 2);
        // Two regimes: three repetitions at the level, three at a fifth of it.
        let p = b
            .points
            .iter_mut()
            .find(|p| p.point.id.contains("services=10000,workload=tcp"))
            .unwrap();
        let id = p.point.id.clone();
        let level = p.metrics[metrics::THROUGHPUT].stats.mean;
        let raw = vec![
            level,
            level * 1.01,
            level * 0.99,
            level / 5.0,
            level / 5.1,
            level / 4.9,
        ];
        let shifted =
            crate::results::MetricSummary::new(raw, &[1, 2, 3, 4, 5, 6], "Gbit/s").unwrap();
        assert!(shifted.unstable.is_some(), "the fixture is a level shift");
        p.metrics.insert(metrics::THROUGHPUT.into(), shifted);
        let runs = [a.clone(), b];
        let lines = compare(&runs);
        let line = lines
            .iter()
            .find(|l| l.point == id && l.metric.key == metrics::THROUGHPUT)
            .unwrap();
        assert_eq!(line.verdict(1), UNSTABLE);
        let html = render_html(&runs, &[ma.clone(), mb], &lines);
        assert!(
            html.contains("Not drawn: 1 point(s) flagged unstable"),
            "{html}"
        );
        assert!(html.contains(UNSTABLE), "the table keeps it");
        // The chart has one mark fewer than the same comparison without the shift.
        let marks = |html: &str| {
            let at = html.find("data-marks=\"").unwrap() + "data-marks=\"".len();
            html[at..]
                .split('"')
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        };
        let (mb2, b2) = fixtures::run("cni-b", 2);
        let plain = [a, b2];
        let plain_html = render_html(&plain, &[ma, mb2], &compare(&plain));
        assert_eq!(marks(&html) + 1, marks(&plain_html));
    }
}
