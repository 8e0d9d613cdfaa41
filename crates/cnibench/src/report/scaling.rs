//! The scale section: every scale point as a ratio to the smallest point of its sweep,
//! with its 95% confidence interval (see [`crate::scaling`]), as rows shared by the
//! terminal table and the Markdown report.

use crate::metrics;
use crate::results::{Meta, RunSummary};
use crate::scaling::{ScaleSweep, sweeps};

/// Column headers matching [`body`].
pub const HEADER: [&str; 7] = [
    "sweep",
    "metric",
    "base",
    "point",
    "ratio",
    "CI95",
    "p (Welch)",
];

/// The proxy and policy modes a run measured, for the section's title (`lab_proxy`,
/// `lab_policy_mode` or the kube preflight's `kube_proxy_mode` in `meta.json`).
pub fn modes(meta: &Meta) -> String {
    let get = |k: &str| meta.tools.get(k).map(String::as_str);
    match (
        get("lab_proxy").or(get("kube_proxy_mode")),
        get("lab_policy_mode"),
    ) {
        (Some(proxy), Some(policy)) => format!("proxy {proxy}, policies {policy}"),
        (Some(proxy), None) => format!("proxy {proxy}"),
        _ => "modes not recorded".into(),
    }
}

/// One row per scale point: `ratio` is mean(point) / mean(base); `CI95` its interval;
/// a trailing `*` marks a difference significant at 5%.
pub fn body(sweeps: &[ScaleSweep]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for s in sweeps {
        let info = metrics::info(&s.metric);
        for r in &s.ratios {
            let significant = r.p_value.is_some_and(|p| p < crate::stats::SIGNIFICANCE);
            rows.push(vec![
                format!("{} ({})", s.series, s.key),
                info.label.to_string(),
                s.base_count.to_string(),
                r.count.to_string(),
                format!("{:.3}{}", r.ratio, if significant { " *" } else { "" }),
                match (r.ci_low, r.ci_high) {
                    (Some(lo), Some(hi)) => format!("{lo:.3}..{hi:.3}"),
                    _ => "-".into(),
                },
                r.p_value.map_or("-".into(), |p| format!("{p:.3}")),
            ]);
        }
        for (_, count, why) in &s.unstable {
            rows.push(vec![
                format!("{} ({})", s.series, s.key),
                info.label.to_string(),
                s.base_count.to_string(),
                count.to_string(),
                "UNSTABLE".into(),
                "-".into(),
                why.clone(),
            ]);
        }
    }
    rows
}

/// The section's rows for `run`, or `None` when the run has no sweep.
pub fn rows(run: &RunSummary) -> Option<Vec<Vec<String>>> {
    let found = sweeps(run);
    (!found.is_empty()).then(|| body(&found))
}

/// What the section's numbers mean, printed under its title.
pub const LEGEND: &str = "ratio = mean at the point / mean at the smallest point of its sweep \
(1.000 = no change); CI95 by the delta method; * = significant at 5% (Welch)";
