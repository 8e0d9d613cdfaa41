//! One self-contained HTML page: summary table, flagged points, SVG charts drawn with
//! plotters (bars with 95% CI error bars per scenario, annotated with the % of baseline;
//! line charts for sweeps over services, pods, replicas or streams), raw repetitions.
//! No scripts, no external resources.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use plotters::prelude::*;

use super::table::{HEADER, cells};
use super::{baseline_for, coords, num, rows};
use crate::metrics;
use crate::results::{Meta, PointSummary, RunSummary};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];
const FLAGGED: RGBColor = RGBColor(200, 80, 60);
const FONT: &str = "sans-serif";

/// One bar of a bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// Category label.
    pub label: String,
    /// Mean.
    pub mean: f64,
    /// 95% CI half-width.
    pub half: Option<f64>,
    /// % of baseline.
    pub pct_baseline: Option<f64>,
    /// Not converged or failed: drawn in a warning colour.
    pub flagged: bool,
}

/// A horizontal bar chart with CI error bars, as SVG text.
pub fn bar_chart(title: &str, unit: &str, bars: &[Bar]) -> String {
    let mut svg = String::new();
    let n = bars.len();
    let height = 96 + 34 * n as u32;
    let result = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (860, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let top = bars
            .iter()
            .map(|b| b.mean + b.half.unwrap_or(0.0))
            .fold(0.0, f64::max);
        let xmax = if top > 0.0 { top * 1.45 } else { 1.0 };
        let label_width = bars
            .iter()
            .map(|b| b.label.chars().count())
            .max()
            .unwrap_or(8) as u32
            * 7
            + 12;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 16))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(label_width.clamp(60, 380))
            .build_cartesian_2d(0f64..xmax, (0..n).into_segmented())?;
        // Segment 0 is at the bottom; list the first point at the top.
        let row = |i: usize| n - 1 - i;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n.max(1))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < n => bars[n - 1 - *i].label.clone(),
                _ => String::new(),
            })
            .x_desc(unit)
            .label_style((FONT, 12))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
            let color = if b.flagged { FLAGGED } else { COLORS[0] };
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(row(i))),
                    (b.mean, SegmentValue::Exact(row(i) + 1)),
                ],
                color.mix(0.8).filled(),
            );
            r.set_margin(5, 5, 0, 0);
            r
        }))?;
        for (i, b) in bars.iter().enumerate() {
            let y = || SegmentValue::CenterOf(row(i));
            let mut end = b.mean;
            if let Some(h) = b.half {
                end = b.mean + h;
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(b.mean - h, y()), (b.mean + h, y())],
                    BLACK.stroke_width(2),
                )))?;
                for x in [b.mean - h, b.mean + h] {
                    chart.draw_series(std::iter::once(
                        EmptyElement::at((x, y()))
                            + PathElement::new(vec![(0, -6), (0, 6)], BLACK.stroke_width(2)),
                    ))?;
                }
            }
            let mut text = num(b.mean);
            if let Some(p) = b.pct_baseline {
                let _ = write!(text, "  ({p:.1}% of baseline)");
            }
            if b.flagged {
                text.push_str("  ⚠");
            }
            chart.draw_series(std::iter::once(
                EmptyElement::at((end, y())) + Text::new(text, (8, -6), (FONT, 12)),
            ))?;
        }
        root.present()?;
        Ok(())
    })();
    if let Err(e) = result {
        return format!(
            "<p class=\"error\">chart error: {}</p>",
            esc(&e.to_string())
        );
    }
    svg
}

/// A series of a line chart: (x, mean, CI half-width) points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Points sorted by x.
    pub points: Vec<(f64, f64, Option<f64>)>,
}

/// A line chart with CI error bars; `log_x` plots x on a log10 axis. `baseline` draws a
/// dashed reference line.
pub fn line_chart(
    title: &str,
    x_name: &str,
    unit: &str,
    series: &[Series],
    log_x: bool,
    baseline: Option<f64>,
) -> String {
    let mut svg = String::new();
    let tx = |x: f64| if log_x { x.max(1e-9).log10() } else { x };
    let result = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
        let root = SVGBackend::with_string(&mut svg, (860, 380)).into_drawing_area();
        root.fill(&WHITE)?;
        let xs: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| tx(p.0)))
            .collect();
        let (mut x0, mut x1) = xs
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                (a.min(*x), b.max(*x))
            });
        if x0 >= x1 {
            x0 -= 1.0;
            x1 += 1.0;
        }
        let pad = (x1 - x0) * 0.05;
        let ytop = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1 + p.2.unwrap_or(0.0)))
            .chain(baseline)
            .fold(0.0, f64::max);
        let ymax = if ytop > 0.0 { ytop * 1.15 } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((x0 - pad)..(x1 + pad), 0f64..ymax)?;
        let xfmt = |v: &f64| {
            if log_x {
                let x = 10f64.powf(*v);
                if (x - x.round()).abs() < 1e-6 * x.max(1.0) {
                    format!("{}", x.round())
                } else {
                    String::new()
                }
            } else {
                num(*v)
            }
        };
        chart
            .configure_mesh()
            .x_desc(if log_x {
                format!("{x_name} (log scale)")
            } else {
                x_name.to_string()
            })
            .y_desc(unit)
            .x_label_formatter(&xfmt)
            .label_style((FONT, 12))
            .draw()?;
        if let Some(b) = baseline {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0 - pad, b), (x1 + pad, b)],
                    6,
                    4,
                    BLACK.mix(0.6).stroke_width(1),
                ))?
                .label(format!("baseline {}", num(b)))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.6)));
        }
        for (k, s) in series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (tx(p.0), p.1)).collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
            for p in &s.points {
                if let Some(h) = p.2 {
                    let x = tx(p.0);
                    chart.draw_series(std::iter::once(PathElement::new(
                        vec![(x, p.1 - h), (x, p.1 + h)],
                        color.stroke_width(1),
                    )))?;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .label_font((FONT, 12))
            .draw()?;
        root.present()?;
        Ok(())
    })();
    if let Err(e) = result {
        return format!(
            "<p class=\"error\">chart error: {}</p>",
            esc(&e.to_string())
        );
    }
    svg
}

/// Keys a sweep chart may put on its x axis.
const SWEEP_KEYS: [&str; 4] = ["services", "pods", "replicas", "streams"];

fn sweep_charts(run: &RunSummary, scenario: &[&PointSummary]) -> Vec<String> {
    let mut out = Vec::new();
    for key in SWEEP_KEYS {
        let values: std::collections::BTreeSet<&String> = scenario
            .iter()
            .filter_map(|p| p.point.params.get(key))
            .collect();
        if values.len() < 2 {
            continue;
        }
        let mut by_workload: BTreeMap<String, Vec<&PointSummary>> = BTreeMap::new();
        for p in scenario {
            by_workload
                .entry(p.point.workload.kind().to_string())
                .or_default()
                .push(p);
        }
        for (workload, points) in by_workload {
            let workload_kind = points[0].point.workload.kind();
            let mut keys = vec![metrics::primary(workload_kind)];
            keys.extend(metrics::cpu_metric(workload_kind));
            for metric in keys {
                let mut groups: BTreeMap<String, Vec<(f64, f64, Option<f64>)>> = BTreeMap::new();
                for p in &points {
                    let (Some(x), Some(m)) = (
                        p.point.params.get(key).and_then(|v| v.parse::<f64>().ok()),
                        p.metrics.get(metric),
                    ) else {
                        continue;
                    };
                    let name: Vec<String> = p
                        .point
                        .params
                        .iter()
                        .filter(|(k, _)| *k != key && *k != "policies" && *k != "workload")
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    let name = if name.is_empty() {
                        workload.clone()
                    } else {
                        name.join(" ")
                    };
                    groups
                        .entry(name)
                        .or_default()
                        .push((x, m.stats.mean, m.stats.ci_half_width));
                }
                let series: Vec<Series> = groups
                    .into_iter()
                    .filter(|(_, pts)| pts.len() >= 2)
                    .map(|(name, mut points)| {
                        points.sort_by(|a, b| a.0.total_cmp(&b.0));
                        Series { name, points }
                    })
                    .collect();
                if series.is_empty() {
                    continue;
                }
                let (lo, hi) = series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| p.0))
                    .fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
                let log_x = lo >= 1.0 && hi / lo >= 20.0;
                let info = metrics::info(metric);
                let baseline = points
                    .first()
                    .and_then(|p| baseline_for(run, p))
                    .and_then(|b| b.metrics.get(metric))
                    .map(|m| m.stats.mean);
                out.push(line_chart(
                    &format!("{workload}: {} vs {key}", info.label),
                    key,
                    &format!("{} ({})", info.label, info.unit),
                    &series,
                    log_x,
                    baseline,
                ));
            }
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1250px;color:#222;padding:0 1em}\
h1{margin-bottom:.2em}.meta{color:#555;font-size:.9em}\
.verdict{padding:.6em 1em;border-radius:6px;margin:1em 0;font-weight:600}\
.ok{background:#e6f4ea;border:1px solid #9ccc9c}.warn{background:#fdecea;border:1px solid #e0a39a}\
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}\
th{background:#f3f3f3}td.l,th.l{text-align:left;white-space:normal}tr.flag td{background:#fdecea}tr.na td{color:#888}\
section{margin:1.5em 0}svg{max-width:100%;height:auto;display:block;margin:.5em 0}\
details{margin:1em 0}code{font-size:.9em}";

/// The HTML report of a run.
pub fn render(meta: &Meta, run: &RunSummary) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>cnibench {}</title><style>{STYLE}</style></head><body>\n",
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
    for row in rows(run) {
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
    for w in &run.warnings {
        let _ = writeln!(h, "<p class=\"verdict warn\">warning: {}</p>", esc(w));
    }
    h.push_str("<h2>Charts</h2>\n");
    let mut scenarios: Vec<&str> = Vec::new();
    for p in &run.points {
        if !scenarios.contains(&p.point.scenario.as_str()) {
            scenarios.push(&p.point.scenario);
        }
    }
    let mut unmeasured: Vec<&str> = Vec::new();
    for scenario in scenarios {
        let points: Vec<&PointSummary> = run
            .points
            .iter()
            .filter(|p| p.point.scenario == scenario)
            .collect();
        let mut section = String::new();
        let mut by_metric: BTreeMap<&str, Vec<Bar>> = BTreeMap::new();
        for p in &points {
            let Some(m) = p.primary_summary() else {
                continue;
            };
            let pct_baseline = baseline_for(run, p)
                .and_then(|b| b.primary_summary())
                .map(|b| b.stats.mean)
                .filter(|b| *b != 0.0)
                .map(|b| m.stats.mean / b * 100.0);
            by_metric.entry(p.primary.as_str()).or_default().push(Bar {
                label: coords(p),
                mean: m.stats.mean,
                half: m.stats.ci_half_width,
                pct_baseline,
                flagged: p.needs_attention(),
            });
        }
        if by_metric.is_empty() {
            unmeasured.push(scenario);
            continue;
        }
        for (metric, bars) in by_metric {
            let info = metrics::info(metric);
            section.push_str(&bar_chart(
                &format!("{}: {} (mean, 95% CI)", scenario, info.label),
                info.unit,
                &bars,
            ));
            section.push('\n');
        }
        for chart in sweep_charts(run, &points) {
            section.push_str(&chart);
            section.push('\n');
        }
        let _ = writeln!(
            h,
            "<section><h3>{}</h3>\n{section}</section>",
            esc(scenario)
        );
    }
    if !unmeasured.is_empty() {
        let _ = writeln!(
            h,
            "<p class=\"meta\">No measurements, so no charts, for: {} (see the table for why).</p>",
            esc(&unmeasured.join(", "))
        );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn snapshot_without_svg_bodies() {
        let (meta, run) = fixtures::run("cni-a", 1);
        let html = render(&meta, &run);
        assert!(!html.contains("chart error"), "a chart failed to render");
        // Self-contained: no scripts, no linked resources (SVG namespaces are fine).
        for needle in ["<script", "<link", "src=", "href="] {
            assert!(!html.contains(needle), "{needle}");
        }
        // Bars per scenario with data, plus throughput and CPU line charts of the sweep.
        assert_eq!(
            html.matches("<svg").count(),
            6,
            "{}",
            html.matches("<svg").count()
        );
        insta::with_settings!({filters => vec![(r"(?s)<svg.*?</svg>", "[svg]")]}, {
            insta::assert_snapshot!(html);
        });
    }
}
