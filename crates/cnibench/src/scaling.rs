//! How a metric changes with the number of objects in the cluster: every scale point as a
//! ratio to the smallest point of its sweep, with a confidence interval (pure).
//!
//! A sweep is the points of one scenario that differ only in one scale key (`services`,
//! `pods`, `policies`, `replicas`); `policies` follows `pods` in the built-in suites, so a
//! sweep over pods carries both. The thesis saw iptables-based plugins slow down as
//! services and policies grew and others stay flat: these ratios are that figure, per run
//! (one proxy and policy mode per run, recorded in `meta.json`).
//!
//! The interval of a ratio of two independent means is the delta method's (first-order
//! Taylor expansion of `b̄ / ā`): `se(r)² ≈ r² (s_a²/(n_a ā²) + s_b²/(n_b b̄²))`, with
//! Welch–Satterthwaite degrees of freedom for the Student t quantile. With the few
//! repetitions of a point and CIs of a few percent, it agrees with Fieller's interval to
//! well under a tenth of a percent; it is not used when either mean's CI includes zero.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::results::{PointSummary, RunSummary};
use crate::stats::{self, CONFIDENCE};

/// Scale keys, in the order a sweep is looked for.
pub const SCALE_KEYS: [&str; 4] = ["services", "pods", "policies", "replicas"];

/// One point of a sweep against the sweep's smallest point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleRatio {
    /// The point.
    pub point: String,
    /// Its object count on the sweep's key.
    pub count: u64,
    /// Mean of the metric at this point over the mean at the smallest point.
    pub ratio: f64,
    /// Lower end of the 95% confidence interval of `ratio`; absent with too few repetitions.
    pub ci_low: Option<f64>,
    /// Upper end of the 95% confidence interval of `ratio`.
    pub ci_high: Option<f64>,
    /// Welch's two-sided p-value of the difference of the means.
    pub p_value: Option<f64>,
}

/// A sweep of one metric over one scale key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleSweep {
    /// The scenario's points without the scale key, e.g.
    /// `pod-to-service/placement=inter,workload=tcp`.
    pub series: String,
    /// The scale key that varies.
    pub key: String,
    /// The metric.
    pub metric: String,
    /// The smallest point, the base of every ratio.
    pub base: String,
    /// Its object count.
    pub base_count: u64,
    /// Every larger point, by rising count.
    pub ratios: Vec<ScaleRatio>,
    /// Points of the sweep whose metric is not stationary (a level shift, trend or two
    /// modes): their mean means nothing, so they get no ratio. (point, count, reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unstable: Vec<(String, u64, String)>,
}

/// The metrics a sweep is worth looking at for a point: throughput for streams; the
/// connection rate and the latency for request/response; TTFB for HTTP.
fn sweep_metrics(p: &PointSummary) -> Vec<&str> {
    use crate::metrics::{RPS, THROUGHPUT, TPS, TTFB_P50};
    let mut m = vec![p.primary.as_str()];
    for extra in [THROUGHPUT, TPS, TTFB_P50, RPS] {
        if extra != p.primary && p.metrics.contains_key(extra) {
            m.push(extra);
        }
    }
    m
}

/// Every sweep in `summary`: points grouped by scenario and every parameter but one scale
/// key (and `policies` when the key is `pods`, which it follows), with at least two counts
/// measured. Points without a measured value of the metric are left out.
pub fn sweeps(summary: &RunSummary) -> Vec<ScaleSweep> {
    let mut out = Vec::new();
    for key in SCALE_KEYS {
        // series → count → point
        let mut groups: BTreeMap<String, BTreeMap<u64, &PointSummary>> = BTreeMap::new();
        for p in &summary.points {
            let Some(count) = p.point.params.get(key).and_then(|v| v.parse::<u64>().ok()) else {
                continue;
            };
            if key == "policies" && p.point.params.contains_key("pods") {
                continue; // swept with `pods`
            }
            let rest: Vec<String> = p
                .point
                .params
                .iter()
                .filter(|(k, _)| k.as_str() != key && !(key == "pods" && k.as_str() == "policies"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let series = format!("{}/{}", p.point.scenario, rest.join(","));
            groups.entry(series).or_default().insert(count, p);
        }
        for (series, by_count) in groups {
            if by_count.len() < 2 {
                continue;
            }
            let first = by_count.values().next().expect("two or more");
            for metric in sweep_metrics(first) {
                let unstable: Vec<(String, u64, String)> = by_count
                    .iter()
                    .filter_map(|(&count, p)| {
                        let why = p.metrics.get(metric)?.unstable.as_ref()?;
                        Some((p.point.id.clone(), count, why.reason.clone()))
                    })
                    .collect();
                // The base is the smallest count with a stationary value.
                let mut stable = by_count
                    .iter()
                    .filter(|(_, p)| p.metrics.get(metric).is_some_and(|m| m.unstable.is_none()));
                let Some((&base_count, base)) = stable.next() else {
                    continue;
                };
                let base_values = &base.metrics[metric].raw;
                let ratios: Vec<ScaleRatio> = stable
                    .filter_map(|(&count, p)| {
                        let values = &p.metrics.get(metric)?.raw;
                        ratio(base_values, values).map(|r| ScaleRatio {
                            point: p.point.id.clone(),
                            count,
                            ..r
                        })
                    })
                    .collect();
                if !ratios.is_empty() || !unstable.is_empty() {
                    out.push(ScaleSweep {
                        series: series.clone(),
                        key: key.to_owned(),
                        metric: metric.to_owned(),
                        base: base.point.id.clone(),
                        base_count,
                        ratios,
                        unstable,
                    });
                }
            }
        }
    }
    out
}

/// `mean(b) / mean(a)` with its delta-method confidence interval (see the module docs);
/// `None` when either sample is empty or `a`'s mean is zero. `point` and `count` are left
/// for the caller.
pub fn ratio(a: &[f64], b: &[f64]) -> Option<ScaleRatio> {
    let (sa, sb) = (stats::summarize(a)?, stats::summarize(b)?);
    if sa.mean == 0.0 {
        return None;
    }
    let r = sb.mean / sa.mean;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let interval = (a.len() >= 2 && b.len() >= 2 && sb.mean != 0.0).then(|| {
        let ua = sa.stddev * sa.stddev / (na * sa.mean * sa.mean);
        let ub = sb.stddev * sb.stddev / (nb * sb.mean * sb.mean);
        let se = r.abs() * (ua + ub).sqrt();
        // Welch–Satterthwaite on the relative variances; all-equal samples give 0/0.
        let df = if ua + ub > 0.0 {
            (ua + ub).powi(2) / (ua * ua / (na - 1.0) + ub * ub / (nb - 1.0))
        } else {
            na + nb - 2.0
        };
        let t = stats::student_t_quantile(0.5 + CONFIDENCE / 2.0, df);
        (r - t * se, r + t * se)
    });
    Some(ScaleRatio {
        point: String::new(),
        count: 0,
        ratio: r,
        ci_low: interval.map(|i| i.0),
        ci_high: interval.map(|i| i.1),
        p_value: stats::welch(a, b).map(|w| w.p_value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_equal_samples_is_one_with_a_tight_interval() {
        let a = [10.0, 10.1, 9.9, 10.0];
        let r = ratio(&a, &a).unwrap();
        assert!((r.ratio - 1.0).abs() < 1e-12);
        let (lo, hi) = (r.ci_low.unwrap(), r.ci_high.unwrap());
        assert!(lo < 1.0 && hi > 1.0 && hi - lo < 0.03, "{lo} {hi}");
        assert!(r.p_value.unwrap() > 0.99);
    }

    #[test]
    fn a_real_slowdown_excludes_one() {
        let a = [10.0, 10.2, 9.8, 10.1, 9.9];
        let b = [8.0, 8.1, 7.9, 8.05, 7.95];
        let r = ratio(&a, &b).unwrap();
        assert!((r.ratio - 0.8).abs() < 1e-9);
        assert!(
            r.ci_high.unwrap() < 0.83 && r.ci_low.unwrap() > 0.77,
            "{r:?}"
        );
        assert!(r.p_value.unwrap() < 1e-6);
    }

    /// The delta-method interval covers the true ratio about 95% of the time (seeded
    /// normal samples of the size points have: 5 repetitions, 2% noise).
    #[test]
    fn interval_coverage_is_near_nominal() {
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        let mut normal = move || {
            // Box–Muller on a xorshift generator: deterministic, no dependency.
            let mut u = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            };
            let (u1, u2) = (u().max(1e-12), u());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        let trials = 2000;
        let mut covered = 0;
        for _ in 0..trials {
            let a: Vec<f64> = (0..5).map(|_| 10.0 * (1.0 + 0.02 * normal())).collect();
            let b: Vec<f64> = (0..5).map(|_| 7.0 * (1.0 + 0.02 * normal())).collect();
            let r = ratio(&a, &b).unwrap();
            if r.ci_low.unwrap() <= 0.7 && 0.7 <= r.ci_high.unwrap() {
                covered += 1;
            }
        }
        let coverage = f64::from(covered) / f64::from(trials);
        assert!((0.92..=0.975).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn degenerate_samples() {
        assert!(ratio(&[], &[1.0]).is_none());
        assert!(ratio(&[0.0, 0.0], &[1.0, 1.0]).is_none());
        let single = ratio(&[2.0], &[3.0]).unwrap();
        assert!((single.ratio - 1.5).abs() < 1e-12);
        assert!(single.ci_low.is_none(), "one repetition has no interval");
    }

    /// Four repetitions of every point from the fake backend.
    fn fake_summary(points: &[crate::scenario::Point]) -> RunSummary {
        use crate::backend::{Backend, Cancel};
        use crate::results::{HostInfo, Meta, PointEnd, PointStatus, Record, RepRecord};
        let meta = Meta {
            format_version: crate::results::FORMAT_VERSION,
            run_id: "t".into(),
            created: "t".into(),
            backend: "fake".into(),
            label: None,
            suite: "thesis".into(),
            host: HostInfo::default(),
            tools: BTreeMap::new(),
            rule: stats::StopRule::default(),
            warmup_reps: 0,
            warmup_s: None,
            points: points.to_vec(),
            command: vec![],
        };
        let mut fake = crate::backend::fake::FakeBackend::new(3);
        let mut records = Vec::new();
        for p in points {
            for rep in 0..4 {
                let out = fake.run_rep(p, rep, &Cancel::default()).unwrap();
                records.push(Record::Rep(RepRecord {
                    point: p.id.clone(),
                    rep,
                    warmup: false,
                    started_unix_s: 0.0,
                    wall_s: 1.0,
                    metrics: out.metrics,
                    start: None,
                    raw: serde_json::json!({}),
                }));
            }
            records.push(Record::PointEnd(PointEnd {
                point: p.id.clone(),
                status: PointStatus::Converged,
                reps: 4,
                note: None,
                setup_s: None,
            }));
        }
        crate::results::summarize(&meta, &records, &[])
    }

    #[test]
    fn sweeps_group_points_by_everything_but_the_scale_key() {
        let suite = crate::suite::presets::load("thesis").unwrap();
        let points = crate::suite::expand(&suite).unwrap();
        let summary = fake_summary(&points);
        let found = sweeps(&summary);
        let services: Vec<&ScaleSweep> = found
            .iter()
            .filter(|s| {
                s.key == "services"
                    && s.series == "pod-to-service/placement=inter,workload=tcp"
                    && s.metric == crate::metrics::THROUGHPUT
            })
            .collect();
        assert_eq!(services.len(), 1, "{found:#?}");
        let s = services[0];
        assert_eq!(s.base_count, 1);
        let counts: Vec<u64> = s.ratios.iter().map(|r| r.count).collect();
        assert_eq!(counts, [10, 100, 1000, 10000]);
        // Policies follow pods: one sweep over pods, none over policies.
        assert!(found.iter().any(|s| s.key == "pods"));
        assert!(!found.iter().any(|s| s.key == "policies"));
        // tcp-crr sweeps carry the connection rate too.
        assert!(
            found
                .iter()
                .any(|s| s.series.contains("workload=tcp-crr") && s.metric == crate::metrics::TPS)
        );
    }
}
