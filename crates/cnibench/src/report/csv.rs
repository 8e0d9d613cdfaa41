//! CSV report: one row per point and metric, with every statistic and the raw values.

use std::fmt::Write as _;

use super::baseline_for;
use crate::results::RunSummary;

/// Quotes a field when it holds a comma, quote or newline (RFC 4180).
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v}")).unwrap_or_default()
}

/// Column headers. The last six describe a metric whose repetitions are not stationary
/// (empty otherwise): `unstable` is `shift`, `trend` or `bimodal`; `unstable_index` the
/// 0-based measured index and `unstable_rep` the recorded repetition number where a shift
/// starts; `level_from`/`level_to` the two levels (before/after, first/last fitted, lower/
/// higher mode) in the metric's unit; `unstable_reason` one line for people. Appended after
/// `raw` so that readers of the older columns are unaffected.
pub const HEADER: &str = "run,label,point,scenario,workload,metric,status,n,mean,median,trimmed_mean,stddev,cov,ci95_low,ci95_high,ci95_relative,min,max,pct_of_baseline,raw,unstable,unstable_index,unstable_rep,level_from,level_to,unstable_reason";

/// The CSV report of a run.
pub fn render(run: &RunSummary) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for p in &run.points {
        let base = baseline_for(run, p);
        let status = p.status.map_or("incomplete", |s| match s {
            crate::results::PointStatus::Converged => "converged",
            crate::results::PointStatus::MaxReps => "max-reps",
            crate::results::PointStatus::TimeBudget => "time-budget",
            crate::results::PointStatus::NotApplicable => "not-applicable",
            crate::results::PointStatus::NotEnforced => "not-enforced",
            crate::results::PointStatus::Failed => "failed",
            crate::results::PointStatus::Interrupted => "interrupted",
        });
        let lead = [
            field(&run.run_id),
            field(run.label.as_deref().unwrap_or("")),
            field(&p.point.id),
            field(&p.point.scenario),
            p.point.workload.kind().to_string(),
        ]
        .join(",");
        if p.metrics.is_empty() {
            let _ = writeln!(
                out,
                "{lead},{},{status},0,,,,,,,,,,,,,,,,,,",
                field(&p.primary)
            );
            continue;
        }
        for (key, m) in &p.metrics {
            let s = &m.stats;
            let pct = base
                .and_then(|b| b.metrics.get(key))
                .map(|b| b.stats.mean)
                .filter(|b| *b != 0.0)
                .map(|b| s.mean / b * 100.0);
            let raw: Vec<String> = m.raw.iter().map(|v| format!("{v}")).collect();
            let unstable = m.unstable.as_ref().map_or_else(
                || ",,,,,".to_string(),
                |i| {
                    format!(
                        "{},{},{},{},{},{}",
                        i.kind.as_str(),
                        i.index.map(|k| k.to_string()).unwrap_or_default(),
                        i.rep.map(|r| r.to_string()).unwrap_or_default(),
                        i.from,
                        i.to,
                        field(&i.reason)
                    )
                },
            );
            let _ = writeln!(
                out,
                "{lead},{key},{status},{},{},{},{},{},{},{},{},{},{},{},{},{},{unstable}",
                s.n,
                s.mean,
                s.median,
                s.trimmed_mean,
                s.stddev,
                opt(s.cov),
                s.ci_low(),
                s.ci_high(),
                opt(s.ci_relative),
                s.min,
                s.max,
                opt(pct),
                field(&raw.join(";"))
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
    fn quoting() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("plain"), "plain");
    }

    #[test]
    fn unstable_columns() {
        let (_, run) = fixtures::unstable_run();
        let text = render(&run);
        let row = text
            .lines()
            .find(|l| l.contains("http-replicas") && l.contains(",ttfb_p50_ms,"))
            .unwrap();
        let tail: Vec<&str> = row.rsplitn(7, ',').collect();
        assert_eq!(
            tail[..6],
            [
                "level shift at repetition 9 of 12: 0.300 ms -> 4.47 ms (x14.9)",
                tail[1],
                tail[2],
                "9",
                "8",
                "shift"
            ],
            "{row}"
        );
        let (from, to): (f64, f64) = (tail[2].parse().unwrap(), tail[1].parse().unwrap());
        assert!(
            (from - 0.30).abs() < 0.001 && (to - 4.475).abs() < 0.001,
            "{row}"
        );
        let stable = text
            .lines()
            .find(|l| l.contains(",baseline,tcp,throughput_gbps,"))
            .unwrap();
        assert!(stable.ends_with(",,,,,,"), "{stable}");
    }

    #[test]
    fn snapshot() {
        let (_, run) = fixtures::run("cni-a", 1);
        let text = render(&run);
        let cols = HEADER.split(',').count();
        for line in text.lines().skip(1) {
            // Point ids hold commas and are quoted; count fields outside quotes.
            let mut n = 1;
            let mut quoted = false;
            for c in line.chars() {
                match c {
                    '"' => quoted = !quoted,
                    ',' if !quoted => n += 1,
                    _ => {}
                }
            }
            assert_eq!(n, cols, "{line}");
        }
        insta::assert_snapshot!(text);
    }
}
