//! Latency recording and the pure helpers shared by the request/response modes
//! ([`crate::rr`], [`crate::http`]): `HdrHistogram` construction, percentile summaries,
//! Jain's fairness index and the open-loop send schedule.
//!
//! Percentiles are only ever computed from histograms; workers' histograms are merged
//! (added bucket by bucket) before a summary is taken, never averaged afterwards.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Latency histogram: nanoseconds, 3 significant digits.
pub type LatencyHistogram = Histogram<u64>;

/// Largest latency recorded exactly, nanoseconds (one hour); larger values are clamped to it.
pub const MAX_LATENCY_NS: u64 = 3_600_000_000_000;

/// Significant decimal digits kept by every latency histogram (0.1% relative error).
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// An empty latency histogram covering 1 ns ..= [`MAX_LATENCY_NS`].
pub fn new_histogram() -> LatencyHistogram {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// An empty histogram of the same range with 2 significant digits (1% relative error),
/// an eighth of the memory: for interval series, where many are kept at once.
pub fn new_coarse_histogram() -> LatencyHistogram {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 2).expect("constant histogram bounds are valid")
}

/// Records `d` (clamped to the histogram's range).
pub fn record(h: &mut LatencyHistogram, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns.min(MAX_LATENCY_NS));
}

/// Adds `from` into `into`; both come from [`new_histogram`], so bounds always agree.
pub fn merge(into: &mut LatencyHistogram, from: &LatencyHistogram) {
    into.add(from)
        .expect("histograms with equal bounds always merge");
}

/// Percentile summary of one latency histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Smallest sample, microseconds.
    pub min_us: f64,
    /// Arithmetic mean, microseconds.
    pub mean_us: f64,
    /// Median, microseconds.
    pub p50_us: f64,
    /// 90th percentile, microseconds.
    pub p90_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
    /// 99.9th percentile, microseconds.
    pub p99_9_us: f64,
    /// Largest sample, microseconds.
    pub max_us: f64,
}

impl LatencySummary {
    /// Summary of `h`; all zeros when it is empty.
    pub fn of(h: &LatencyHistogram) -> Self {
        if h.is_empty() {
            return LatencySummary::default();
        }
        let us = |ns: u64| ns as f64 / 1e3;
        LatencySummary {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean() / 1e3,
            p50_us: us(h.value_at_quantile(0.50)),
            p90_us: us(h.value_at_quantile(0.90)),
            p99_us: us(h.value_at_quantile(0.99)),
            p99_9_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
        }
    }
}

/// Jain's fairness index of the non-negative shares `x`: `(Σx)² / (n·Σx²)`.
///
/// 1 when every share is equal, `1/n` when one gets everything (R. Jain, D. Chiu,
/// W. Hawe, "A Quantitative Measure of Fairness and Discrimination for Resource
/// Allocation in Shared Computer Systems", DEC-TR-301, 1984). `None` for no shares or
/// when all are zero (the index is undefined there).
pub fn jain_index(x: &[f64]) -> Option<f64> {
    let sum: f64 = x.iter().sum();
    let sum_sq: f64 = x.iter().map(|v| v * v).sum();
    if x.is_empty() || sum_sq <= 0.0 || !sum_sq.is_finite() {
        return None;
    }
    Some((sum * sum / (x.len() as f64 * sum_sq)).clamp(1.0 / x.len() as f64, 1.0))
}

/// Open-loop send schedule: request `k` is due at `start + k / rate`, whatever happened to
/// earlier requests, and its latency is measured from that intended time. A stalled peer
/// therefore shows up as a long tail instead of silently lowering the sending rate
/// (coordinated omission).
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    period_ns: f64,
}

impl Schedule {
    /// A schedule of `rate` sends per second from `start`; `rate` must be positive.
    pub fn new(start: Instant, rate: f64) -> Self {
        assert!(
            rate > 0.0 && rate.is_finite(),
            "schedule rate must be positive"
        );
        Schedule {
            start,
            period_ns: 1e9 / rate,
        }
    }

    /// Offset of send `k` from the start.
    pub fn offset(&self, k: u64) -> Duration {
        Duration::from_nanos((k as f64 * self.period_ns) as u64)
    }

    /// Intended send time of send `k`.
    pub fn due(&self, k: u64) -> Instant {
        self.start + self.offset(k)
    }
}

/// Index of the interval of length `interval` that `elapsed` falls in.
pub fn interval_index(elapsed: Duration, interval: Duration) -> usize {
    if interval.is_zero() {
        return 0;
    }
    (elapsed.as_nanos() / interval.as_nanos()) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn summary_of_uniform_samples() {
        let mut h = new_histogram();
        for us in 1..=1000u64 {
            record(&mut h, Duration::from_micros(us));
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p90_us - 900.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_us - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.max_us - 1000.0).abs() < 1.0, "{s:?}");
        assert!((s.min_us - 1.0).abs() < 0.01, "{s:?}");
        assert_eq!(
            LatencySummary::of(&new_histogram()),
            LatencySummary::default()
        );
    }

    #[test]
    fn merged_percentiles_are_not_averaged_percentiles() {
        // One fast worker, one slow: the merged median sits inside the fast group's range
        // weighted by count, unlike the mean of the two medians.
        let mut fast = new_histogram();
        let mut slow = new_histogram();
        for _ in 0..900 {
            record(&mut fast, Duration::from_micros(10));
        }
        for _ in 0..100 {
            record(&mut slow, Duration::from_millis(1));
        }
        let mut all = new_histogram();
        merge(&mut all, &fast);
        merge(&mut all, &slow);
        let s = LatencySummary::of(&all);
        assert!((s.p50_us - 10.0).abs() < 0.1);
        assert!((s.p99_us - 1000.0).abs() < 1.0);
        assert_eq!(s.count, 1000);
    }

    #[test]
    fn huge_and_zero_values_are_clamped() {
        let mut h = new_histogram();
        record(&mut h, Duration::ZERO);
        record(&mut h, Duration::from_secs(100_000));
        assert_eq!(h.len(), 2);
        assert!(h.max() >= MAX_LATENCY_NS - MAX_LATENCY_NS / 1000);
    }

    #[test]
    fn jain_index_known_values() {
        assert_eq!(jain_index(&[]), None);
        assert_eq!(jain_index(&[0.0, 0.0]), None);
        assert!((jain_index(&[5.0, 5.0, 5.0]).unwrap() - 1.0).abs() < 1e-12);
        assert!((jain_index(&[1.0, 0.0, 0.0, 0.0]).unwrap() - 0.25).abs() < 1e-12);
        // (1+2+3)^2 / (3 * 14) = 36/42
        assert!((jain_index(&[1.0, 2.0, 3.0]).unwrap() - 36.0 / 42.0).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn jain_index_is_between_one_over_n_and_one(x in prop::collection::vec(0.0f64..1e9, 1..64)) {
            if let Some(j) = jain_index(&x) {
                let n = x.len() as f64;
                prop_assert!(j >= 1.0 / n - 1e-12 && j <= 1.0 + 1e-12, "j={j} n={n}");
            } else {
                prop_assert!(x.iter().all(|v| *v == 0.0));
            }
        }

        #[test]
        fn jain_index_is_scale_invariant(x in prop::collection::vec(0.001f64..1e6, 1..32), k in 0.001f64..1000.0) {
            let scaled: Vec<f64> = x.iter().map(|v| v * k).collect();
            let (a, b) = (jain_index(&x).unwrap(), jain_index(&scaled).unwrap());
            prop_assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn schedule_is_evenly_spaced_from_start() {
        let t0 = crate::clock::now();
        let s = Schedule::new(t0, 1000.0);
        assert_eq!(s.due(0), t0);
        assert_eq!(s.offset(1), Duration::from_millis(1));
        assert_eq!(s.offset(2500), Duration::from_millis(2500));
        assert_eq!(s.due(10) - t0, Duration::from_millis(10));
    }

    #[test]
    fn interval_index_buckets() {
        let i = Duration::from_secs(1);
        assert_eq!(interval_index(Duration::from_millis(999), i), 0);
        assert_eq!(interval_index(Duration::from_secs(1), i), 1);
        assert_eq!(interval_index(Duration::from_secs(5), Duration::ZERO), 0);
    }
}
