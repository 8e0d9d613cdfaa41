//! The charts of a run report, built from its summary and repetitions (pure): what each
//! chart shows is decided here, how it is drawn in [`super::charts`].
//!
//! In page order: the overview (every point as % of its paired baseline), scale sweeps
//! (metric against object count, one line per mode, tool and remaining coordinates), the
//! CPU split per Gbit of both ends, latency distributions (a CDF per scenario and a
//! percentile plot per point), the loss curve of every UDP point's no-drop rate search,
//! and every repetition of every point in run order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::charts::{self, HBar, Line, LinePoint, Lines, PALETTE, StackRow, Strip, WIDE, XAxis};
use super::reps::{self, Reps};
use super::{baseline_for, coords, num};
use crate::metrics::{self, MetricInfo};
use crate::results::{Meta, PointSummary, RunSummary};
use crate::scenario::{Workload, WorkloadKind};

/// Where a figure goes on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Top of the page.
    Overview,
    /// Metric against object count.
    Sweeps,
    /// CPU split per Gbit.
    Cpu,
    /// CDFs and percentile plots.
    Latency,
    /// Loss against offered rate of UDP points (their no-drop rate searches).
    Loss,
    /// Strip plots of every repetition.
    Repetitions,
}

impl Section {
    /// Anchor of the section on the page (`report.html#sweeps`).
    pub fn anchor(self) -> &'static str {
        match self {
            Section::Overview => "overview",
            Section::Sweeps => "sweeps",
            Section::Cpu => "cpu",
            Section::Latency => "latency",
            Section::Loss => "loss",
            Section::Repetitions => "repetitions",
        }
    }

    /// Heading of the section.
    pub fn title(self) -> &'static str {
        match self {
            Section::Overview => "Overview",
            Section::Sweeps => "Scale sweeps",
            Section::Cpu => "CPU cost per Gbit",
            Section::Latency => "Latency distributions",
            Section::Loss => "UDP loss against offered rate",
            Section::Repetitions => "Every repetition",
        }
    }
}

/// One chart with what the page says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// File-safe id (`charts/<id>.svg`, HTML anchor).
    pub id: String,
    /// Section.
    pub section: Section,
    /// Scenario it belongs to (empty for run-wide charts).
    pub scenario: String,
    /// Title.
    pub title: String,
    /// Caption: how to read it, what is flagged.
    pub caption: String,
    /// Whether the caption reports something a reader must look at.
    pub flagged: bool,
    /// A small multiple (three per row).
    pub small: bool,
    /// Data marks drawn (points, bars); every figure has at least one.
    pub marks: usize,
    /// The SVG.
    pub svg: String,
}

/// What to mark on a point's charts, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// The flag and its reason, as the tables say it.
    pub text: String,
    /// The measured repetition (1-based) where the point changed, if known.
    pub at_rep: Option<usize>,
}

/// A caption's ending for a marked point (` · ⚠ reason`), empty otherwise.
fn caption_mark(m: Option<&Mark>) -> String {
    m.map(|m| format!(" · ⚠ {}", m.text)).unwrap_or_default()
}

/// Whether a point's charts carry a warning, and its text: the one place the charts decide
/// what to mark, from what [`PointSummary`] says (status, flag, note).
pub fn mark(p: &PointSummary) -> Option<Mark> {
    if let Some(reason) = p.unstable_reason() {
        return Some(Mark {
            text: format!("UNSTABLE: {reason}"),
            // 1-based measured repetition where the new level starts.
            at_rep: p.instability().and_then(|i| i.index).map(|i| i + 1),
        });
    }
    if !p.needs_attention() {
        return None;
    }
    let text = match &p.note {
        Some(n) => format!("{}: {n}", p.flag()),
        None => p.flag().to_string(),
    };
    Some(Mark { text, at_rep: None })
}

/// File-safe id from free text.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

fn axis(info: &MetricInfo) -> String {
    if info.unit.is_empty() {
        info.label.to_string()
    } else {
        format!("{} ({})", info.label, info.unit)
    }
}

fn scenarios(run: &RunSummary) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for p in &run.points {
        if !out.contains(&p.point.scenario.as_str()) {
            out.push(&p.point.scenario);
        }
    }
    out
}

/// Every chart of the run, in page order.
pub fn figures(meta: &Meta, run: &RunSummary, reps: &Reps) -> Vec<Figure> {
    let mut out = Vec::new();
    out.extend(overview(run));
    out.extend(sweeps(meta, run));
    out.extend(cpu(run, reps));
    out.extend(latency(run, reps));
    out.extend(loss(run, reps));
    out.extend(repetitions(run, reps));
    out
}

/// Per UDP point that searched for its no-drop rate: every trial's loss against its
/// offered rate, a line per measured repetition, the target loss dashed.
fn loss(run: &RunSummary, reps: &Reps) -> Vec<Figure> {
    let mut out = Vec::new();
    for p in &run.points {
        let Some(rs) = reps.get(&p.point.id) else {
            continue;
        };
        let curves: Vec<&Vec<metrics::CurvePoint>> = rs
            .iter()
            .filter(|r| !r.warmup)
            .filter_map(|r| r.loss_curve.as_ref())
            .filter(|c| !c.is_empty())
            .collect();
        if curves.is_empty() {
            continue;
        }
        let target = match &p.point.workload {
            Workload::Stream(s) => s.find_rate.map(|f| f.loss_percent),
            _ => None,
        };
        let series: Vec<Line> = curves
            .iter()
            .enumerate()
            .map(|(i, c)| Line {
                name: format!("rep {}", i + 1),
                points: c
                    .iter()
                    .map(|t| LinePoint {
                        x: t.offered_gbps,
                        y: t.loss_percent,
                        ci: None,
                        flagged: false,
                    })
                    .collect(),
                thin: true,
                color: i,
            })
            .collect();
        let found = p
            .primary_summary()
            .map(|m| {
                format!(
                    "; the no-drop goodput found: mean {} Gbit/s",
                    num(m.stats.mean)
                )
            })
            .unwrap_or_default();
        let m = mark(p);
        let title = coords(p);
        out.push(Figure {
            id: slug(&format!("loss {}", p.point.id)),
            section: Section::Loss,
            scenario: p.point.scenario.clone(),
            caption: format!(
                "Every trial of the rate search: receiver loss against the offered rate, a line per repetition ({}){}{}{}",
                curves.len(),
                target.map(|t| format!("; dashed: the target loss, {}%", num(t))).unwrap_or_default(),
                found,
                caption_mark(m.as_ref())
            ),
            flagged: m.is_some(),
            small: true,
            marks: series.iter().map(|s| s.points.len()).sum(),
            svg: charts::lines(&Lines {
                title: &title,
                x_desc: "offered rate (Gbit/s)",
                y_desc: "loss (%)",
                series: &series,
                x_axis: XAxis::Linear,
                reference: target.map(|t| ("target loss".to_string(), t)),
                y_from_zero: true,
                size: charts::SMALL,
            }),
            title,
        });
    }
    out
}

/// A point's performance as % of its baseline: own/baseline for higher-is-better metrics,
/// baseline/own otherwise, so that 100 % is the baseline and less is always worse. The CI
/// is the first-order (delta-method) interval of a ratio of two independent means: the
/// relative half-widths add in quadrature.
pub fn pct_of_baseline(run: &RunSummary, p: &PointSummary) -> Option<(f64, Option<(f64, f64)>)> {
    let b = baseline_for(run, p)?.primary_summary()?;
    let m = p.primary_summary()?;
    let higher = metrics::info(&p.primary).higher_is_better;
    let (num, den) = if higher {
        (&m.stats, &b.stats)
    } else {
        (&b.stats, &m.stats)
    };
    if !num.mean.is_finite() {
        return None;
    }
    let (ratio, ci) = crate::stats::mean_ratio(num, den)?;
    Some((ratio * 100.0, ci.map(|(lo, hi)| (lo * 100.0, hi * 100.0))))
}

fn overview(run: &RunSummary) -> Option<Figure> {
    let mut rows: Vec<(f64, HBar, bool)> = Vec::new();
    let mut unpaired: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &run.points {
        if p.point.kind == crate::scenario::ScenarioKind::Baseline || p.primary_summary().is_none()
        {
            continue;
        }
        let Some((pct, ci)) = pct_of_baseline(run, p) else {
            *unpaired
                .entry(p.point.workload.kind().as_str())
                .or_default() += 1;
            continue;
        };
        let info = metrics::info(&p.primary);
        let m = mark(p);
        let mean = p.primary_summary().map_or(0.0, |s| s.stats.mean);
        let mut text = format!("{pct:.1}%  ({} {} {})", info.label, num(mean), info.unit);
        if let Some(m) = &m {
            text.push_str("  ⚠ ");
            text.push_str(m.text.split(':').next().unwrap_or(""));
        }
        rows.push((
            pct,
            HBar {
                label: format!("{} {}", p.point.scenario, coords(p)),
                value: pct,
                ci,
                text,
                color: if m.is_some() {
                    charts::FLAGGED
                } else {
                    charts::NORMAL
                },
            },
            m.is_some(),
        ));
    }
    if rows.is_empty() {
        return None;
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let flagged = rows.iter().any(|r| r.2);
    let bars: Vec<HBar> = rows.into_iter().map(|r| r.1).collect();
    let mut caption = "100 % = the baseline (host to host) with the same workload and tool; less is worse: throughput and rates as own/baseline, latencies as baseline/own. Whiskers: 95 % CI of the ratio (relative CIs added in quadrature). Orange: the point needs attention (see the table).".to_string();
    if !unpaired.is_empty() {
        let list: Vec<String> = unpaired.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = write!(
            caption,
            " Not shown, no baseline with their workload in this run: {} point(s).",
            list.join(", ")
        );
    }
    Some(Figure {
        id: "overview".into(),
        section: Section::Overview,
        scenario: String::new(),
        title: "Every point as % of its baseline".into(),
        caption,
        flagged,
        small: false,
        marks: bars.len(),
        svg: charts::hbars(
            "Every point as % of its baseline (95% CI), best first",
            "% of baseline performance (100 = baseline)",
            &bars,
            Some(100.0),
            false,
        ),
    })
}

/// Keys a sweep puts on its x axis, in order of preference; `pods` only where it is not
/// tied to `policies` (the policy scenario has 2 policies per pod).
const SWEEP_KEYS: [&str; 5] = ["services", "policies", "replicas", "pods", "streams"];

/// The metrics a sweep of `workload` shows: stream throughput and CPU per Gbit,
/// connection rate, TTFB.
pub fn sweep_metrics(workload: WorkloadKind) -> &'static [&'static str] {
    match workload {
        WorkloadKind::Tcp | WorkloadKind::Udp => &[metrics::THROUGHPUT, metrics::SERVER_CPU],
        WorkloadKind::TcpCrr => &[metrics::TPS],
        WorkloadKind::Http => &[metrics::TTFB_P50],
        WorkloadKind::TcpRr | WorkloadKind::UdpRr => &[metrics::LATENCY_P50],
    }
}

/// The implementation mode behind a sweep key, from the run's metadata (`proxy iptables`).
fn mode(meta: &Meta, key: &str) -> Option<String> {
    let (tool_key, what) = match key {
        "services" | "replicas" => ("lab_proxy", "proxy"),
        "policies" | "pods" => ("lab_policy_mode", "policies"),
        _ => return None,
    };
    meta.tools.get(tool_key).map(|v| format!("{what} {v}"))
}

/// Series of one sweep chart, keyed by the point's other coordinates.
pub fn sweep_series(
    points: &[&PointSummary],
    key: &str,
    metric: &str,
    suffix: Option<&str>,
    first_color: usize,
) -> Vec<Line> {
    let mut groups: BTreeMap<String, Vec<LinePoint>> = BTreeMap::new();
    for p in points {
        let (Some(x), Some(m)) = (
            p.point.params.get(key).and_then(|v| v.parse::<f64>().ok()),
            p.metrics.get(metric),
        ) else {
            continue;
        };
        let tied = key == "policies";
        let mut name: Vec<String> = p
            .point
            .params
            .iter()
            .filter(|(k, _)| *k != key && !(tied && *k == "pods"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        name.extend(suffix.map(String::from));
        groups.entry(name.join(" ")).or_default().push(LinePoint {
            x,
            y: m.stats.mean,
            ci: m
                .stats
                .ci_half_width
                .map(|_| (m.stats.ci_low(), m.stats.ci_high())),
            flagged: mark(p).is_some(),
        });
    }
    groups
        .into_iter()
        .filter(|(_, pts)| pts.len() >= 2)
        .enumerate()
        .map(|(i, (name, mut points))| {
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            Line {
                name,
                points,
                thin: false,
                color: first_color + i,
            }
        })
        .collect()
}

/// The x key of a scenario's sweep: the first of the sweep keys (services, policies, replicas, pods, streams) with two values or more.
pub fn sweep_keys(points: &[&PointSummary]) -> Vec<&'static str> {
    let mut keys = Vec::new();
    for key in SWEEP_KEYS {
        let values: BTreeSet<&String> = points
            .iter()
            .filter_map(|p| p.point.params.get(key))
            .collect();
        if values.len() < 2 || (key == "pods" && keys.contains(&"policies")) {
            continue;
        }
        keys.push(key);
    }
    keys
}

/// A log x axis when the values span a factor of 5 or more (object counts grow by
/// decades: 1..10k services, 1k..20k policies).
pub fn log_axis(series: &[Line]) -> XAxis {
    let (lo, hi) = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.x))
        .fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(x), b.max(x)));
    if lo > 0.0 && hi / lo >= 5.0 {
        XAxis::Log
    } else {
        XAxis::Linear
    }
}

fn sweeps(meta: &Meta, run: &RunSummary) -> Vec<Figure> {
    let mut out = Vec::new();
    for scenario in scenarios(run) {
        let points: Vec<&PointSummary> = run
            .points
            .iter()
            .filter(|p| p.point.scenario == scenario)
            .collect();
        for key in sweep_keys(&points) {
            let mut kinds: Vec<WorkloadKind> = Vec::new();
            for p in &points {
                let k = p.point.workload.kind();
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
            let mut metric_list: Vec<&str> = Vec::new();
            for k in &kinds {
                for m in sweep_metrics(*k) {
                    if !metric_list.contains(m) {
                        metric_list.push(m);
                    }
                }
            }
            for metric in metric_list {
                let of_metric: Vec<&PointSummary> = points
                    .iter()
                    .copied()
                    .filter(|p| sweep_metrics(p.point.workload.kind()).contains(&metric))
                    .collect();
                let label = mode(meta, key);
                let series = sweep_series(&of_metric, key, metric, label.as_deref(), 0);
                if series.is_empty() {
                    continue;
                }
                let info = metrics::info(metric);
                let reference = (metric == metrics::THROUGHPUT)
                    .then(|| of_metric.first().and_then(|p| baseline_for(run, p)))
                    .flatten()
                    .and_then(|b| b.metrics.get(metric))
                    .map(|m| {
                        (
                            format!("baseline {} {}", num(m.stats.mean), info.unit),
                            m.stats.mean,
                        )
                    });
                let x_axis = log_axis(&series);
                let title = format!("{scenario}: {} vs {key}", info.label);
                let marks = series.iter().map(|s| s.points.len()).sum();
                let flagged = series.iter().any(|s| s.points.iter().any(|p| p.flagged));
                out.push(Figure {
                    id: slug(&format!("sweep {scenario} {metric} {key}")),
                    section: Section::Sweeps,
                    scenario: scenario.to_string(),
                    caption: format!(
                        "Mean per point with its 95 % CI as a band{}{}.{}",
                        if x_axis == XAxis::Log {
                            "; x on a log scale"
                        } else {
                            ""
                        },
                        if reference.is_some() {
                            "; dashed: the baseline"
                        } else {
                            ""
                        },
                        if flagged {
                            " Ringed points need attention (see the table)."
                        } else {
                            ""
                        }
                    ),
                    flagged,
                    small: false,
                    marks,
                    svg: charts::lines(&Lines {
                        title: &title,
                        x_desc: &format!(
                            "{key}{}",
                            if x_axis == XAxis::Log {
                                " (log scale)"
                            } else {
                                ""
                            }
                        ),
                        y_desc: &axis(&info),
                        series: &series,
                        x_axis,
                        reference,
                        y_from_zero: true,
                        size: (WIDE, 400),
                    }),
                    title,
                });
            }
        }
    }
    out
}

/// Stacking order and colours of the CPU parts.
const CPU_PARTS: [(&str, plotters::style::RGBColor); 4] = [
    ("user", PALETTE[0]),
    ("system", PALETTE[1]),
    ("softirq + irq", PALETTE[3]),
    ("steal", PALETTE[7]),
];

fn cpu(run: &RunSummary, reps: &Reps) -> Vec<Figure> {
    let mut out = Vec::new();
    for scenario in scenarios(run) {
        let mut rows = Vec::new();
        for p in run.points.iter().filter(|p| p.point.scenario == scenario) {
            let Some(split) = reps.get(&p.point.id).and_then(reps::mean_cpu) else {
                continue;
            };
            for (end, e) in [("client", split.client), ("server", split.server)] {
                rows.push(StackRow {
                    label: format!("{} · {end}", coords(p)),
                    parts: e.parts().iter().map(|x| x.1).collect(),
                });
            }
        }
        if rows.is_empty() {
            continue;
        }
        let title = format!("{scenario}: node CPU seconds per Gbit moved, by state");
        out.push(Figure {
            id: slug(&format!("cpu {scenario}")),
            section: Section::Cpu,
            scenario: scenario.to_string(),
            caption: "Mean over the measured repetitions of each end's node CPU (from /proc/stat over the measured window) divided by the Gbit that end moved. softirq is where the network stack, and so the datapath, spends its time. Both lab nodes share one host, so each end's node figure includes the other's work there.".into(),
            flagged: false,
            small: false,
            marks: rows.len(),
            svg: charts::stacked(&title, "CPU seconds per Gbit (s/Gbit)", &CPU_PARTS, &rows),
            title,
        });
    }
    out
}

fn latency(run: &RunSummary, reps: &Reps) -> Vec<Figure> {
    let mut out = Vec::new();
    for scenario in scenarios(run) {
        let mut cdf: Vec<Line> = Vec::new();
        let mut per_point = Vec::new();
        let mut unit = "";
        for p in run.points.iter().filter(|p| p.point.scenario == scenario) {
            let Some(rs) = reps.get(&p.point.id) else {
                continue;
            };
            let measured: Vec<&reps::Percentiles> = rs
                .iter()
                .filter(|r| !r.warmup)
                .filter_map(|r| r.latency.as_ref())
                .collect();
            let Some(median) = reps::median_percentiles(measured.iter().copied()) else {
                continue;
            };
            unit = metrics::info(&p.primary).unit;
            let color = cdf.len();
            cdf.push(Line {
                name: coords(p),
                // A zero minimum has no place on a log axis.
                points: median
                    .0
                    .iter()
                    .filter(|(_, v)| *v > 0.0)
                    .map(|(q, v)| LinePoint {
                        x: *v,
                        y: *q,
                        ci: None,
                        flagged: false,
                    })
                    .collect(),
                thin: false,
                color,
            });
            // The percentile plot: one thin line per repetition, the median bold. The
            // minimum and maximum are left out (quantiles 0 and 1 have no place on the axis).
            let inner = |p: &reps::Percentiles| -> Vec<LinePoint> {
                p.0.iter()
                    .filter(|(q, _)| *q > 0.0 && *q < 1.0)
                    .map(|(q, v)| LinePoint {
                        x: *q,
                        y: *v,
                        ci: None,
                        flagged: false,
                    })
                    .collect()
            };
            let mut series: Vec<Line> = measured
                .iter()
                .map(|r| Line {
                    name: String::new(),
                    points: inner(r),
                    thin: true,
                    color,
                })
                .collect();
            // Unnamed: a small multiple has no room for a legend; the caption says it.
            series.push(Line {
                name: String::new(),
                points: inner(&median),
                thin: false,
                color,
            });
            let title = coords(p);
            let m = mark(p);
            per_point.push(Figure {
                id: slug(&format!("percentiles {}", p.point.id)),
                section: Section::Latency,
                scenario: scenario.to_string(),
                caption: format!(
                    "p50 … p99.9: a thin line per repetition ({}), bold their median; max {} {unit}{}",
                    measured.len(),
                    num(median.0.last().map_or(0.0, |x| x.1)),
                    caption_mark(m.as_ref())
                ),
                flagged: m.is_some(),
                small: true,
                marks: series.iter().map(|s| s.points.len()).sum(),
                svg: charts::lines(&Lines {
                    title: &title,
                    x_desc: "percentile",
                    y_desc: &format!("latency ({unit})"),
                    series: &series,
                    x_axis: XAxis::Percentile,
                    reference: None,
                    y_from_zero: true,
                    size: charts::SMALL,
                }),
                title,
            });
        }
        if cdf.is_empty() {
            continue;
        }
        let title = format!("{scenario}: latency CDF (median of repetitions)");
        out.push(Figure {
            id: slug(&format!("cdf {scenario}")),
            section: Section::Latency,
            scenario: scenario.to_string(),
            caption: "Cumulative fraction of requests by latency, through the recorded percentiles (min, p50, p90, p99, p99.9, max), each the median over the point's repetitions; x on a log scale.".into(),
            flagged: false,
            small: false,
            marks: cdf.iter().map(|s| s.points.len()).sum(),
            svg: charts::lines(&Lines {
                title: &title,
                x_desc: &format!("latency ({unit}, log scale)"),
                y_desc: "fraction of requests",
                series: &cdf,
                x_axis: XAxis::Log,
                reference: None,
                y_from_zero: true,
                size: (WIDE, 400),
            }),
            title,
        });
        out.extend(per_point);
    }
    out
}

fn repetitions(run: &RunSummary, reps: &Reps) -> Vec<Figure> {
    let mut out = Vec::new();
    for p in &run.points {
        let Some(summary) = p.primary_summary() else {
            continue;
        };
        let values: Vec<(bool, f64)> = reps
            .get(&p.point.id)
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| r.metrics.get(&p.primary).map(|v| (r.warmup, *v)))
                    .collect()
            })
            .unwrap_or_default();
        if values.is_empty() {
            continue;
        }
        let info = metrics::info(&p.primary);
        let s = &summary.stats;
        let m = mark(p);
        let title = coords(p);
        let warmups = values.iter().filter(|v| v.0).count();
        out.push(Figure {
            id: slug(&format!("reps {}", p.point.id)),
            section: Section::Repetitions,
            scenario: p.point.scenario.clone(),
            caption: format!(
                "n={} mean {} {}{}{}{}",
                s.n,
                num(s.mean),
                info.unit,
                s.ci_relative
                    .map_or(String::new(), |r| format!(", 95% CI ±{}", super::pct(r))),
                if warmups > 0 {
                    format!(" · {warmups} warm-up (hollow, not counted)")
                } else {
                    String::new()
                },
                caption_mark(m.as_ref())
            ),
            flagged: m.is_some(),
            small: true,
            marks: values.len(),
            svg: charts::strip(&Strip {
                title: &title,
                y_desc: &axis(&info),
                values: &values,
                mean: s.mean,
                ci: s.ci_half_width.map(|_| (s.ci_low(), s.ci_high())),
                flagged: m.is_some(),
                change_at: m.as_ref().and_then(|m| m.at_rep).map(|r| r + warmups),
            }),
            title,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures;

    #[test]
    fn every_figure_has_data_and_a_unique_id() {
        let (meta, run, records) = fixtures::run_with_records("cni-a", 1);
        let figs = figures(&meta, &run, &reps::from_records(&records));
        let mut ids = BTreeSet::new();
        for f in &figs {
            assert!(f.marks > 0, "{}", f.id);
            assert!(!f.svg.contains("chart error"), "{}", f.id);
            assert!(ids.insert(f.id.clone()), "duplicate {}", f.id);
        }
        let count = |s: Section| figs.iter().filter(|f| f.section == s).count();
        // Overview; services sweep: throughput and CPU; CPU split of baseline and
        // services; rr CDF + one percentile plot and the HTTP one; every measured point.
        assert_eq!(
            [
                Section::Overview,
                Section::Sweeps,
                Section::Cpu,
                Section::Latency,
                Section::Repetitions
            ]
            .map(count),
            [1, 2, 2, 4, 9]
        );
        // The failed last point and the unconverged HTTP point are marked.
        let flagged: Vec<&str> = figs
            .iter()
            .filter(|f| f.section == Section::Repetitions && f.flagged)
            .map(|f| f.id.as_str())
            .collect();
        assert_eq!(flagged.len(), 2, "{flagged:?}");
    }

    #[test]
    fn udp_points_plot_every_trial_of_their_rate_search() {
        let (meta, run, records) = fixtures::run_of_suite(
            "cni-a",
            1,
            "name = \"udp\"\n[[scenario]]\nid = \"udp\"\nkind = \"baseline\"\nworkload = \"udp\"\n[[scenario]]\nid = \"tcp\"\nkind = \"baseline\"\nworkload = \"tcp\"\n",
        );
        let reps = reps::from_records(&records);
        let figs = figures(&meta, &run, &reps);
        let loss: Vec<&Figure> = figs.iter().filter(|f| f.section == Section::Loss).collect();
        assert_eq!(loss.len(), 1, "one UDP point, the TCP one has no search");
        let udp = run
            .points
            .iter()
            .find(|p| p.point.id.contains("udp"))
            .unwrap();
        let trials: usize = reps[&udp.point.id]
            .iter()
            .filter(|r| !r.warmup)
            .map(|r| r.loss_curve.as_ref().unwrap().len())
            .sum();
        assert!(trials > 4, "{trials} trials");
        assert_eq!(loss[0].marks, trials, "every measured trial is a mark");
        assert!(
            loss[0].caption.contains("dashed: the target loss"),
            "{}",
            loss[0].caption
        );
        assert!(!loss[0].svg.contains("chart error"));
        // From a summary alone (no raw JSON) there is no curve and so no figure.
        let bare = figures(&meta, &run, &reps::from_summary(&run));
        assert!(bare.iter().all(|f| f.section != Section::Loss));
    }

    #[test]
    fn baseline_ratio_is_oriented_and_has_a_ci() {
        let (_, run) = fixtures::run("cni-a", 1);
        let p = run
            .points
            .iter()
            .find(|p| p.point.id.contains("services=10000"))
            .unwrap();
        let (pct, ci) = pct_of_baseline(&run, p).unwrap();
        assert!(pct < 100.0, "{pct}");
        let (lo, hi) = ci.unwrap();
        assert!(lo < pct && pct < hi);
        assert_eq!(
            slug("pod-to-service/placement=inter,services=1"),
            "pod-to-service-placement-inter-services-1"
        );
    }
}
