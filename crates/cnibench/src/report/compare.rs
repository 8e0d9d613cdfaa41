//! `cnibench compare`: runs side by side per point, with the difference of each run from
//! the first and whether it is significant (Welch's t-test on the raw repetitions).

use std::fmt::Write as _;

use super::table::align;
use super::{csv, markdown, num, pct};
use crate::metrics::{self, MetricInfo};
use crate::results::{MetricSummary, RunSummary};
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
}

impl Line {
    /// Verdict of run `i` against the first run.
    pub fn verdict(&self, i: usize) -> &'static str {
        let Some(cell) = self.cells.get(i).and_then(Option::as_ref) else {
            return "not measured";
        };
        let Some(first) = self.cells.first().and_then(Option::as_ref) else {
            return "not in the first run";
        };
        // A t-test of means over two regimes answers nothing about either regime.
        if cell.metric.unstable.is_some() || first.metric.unstable.is_some() {
            return "unstable: not compared";
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
            Some(Line {
                point: id,
                metric: metrics::info(&key),
                cells,
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
}
