//! Stationarity of a point's repetitions: is one summary (mean, CI) of them meaningful at
//! all? Pure functions over slices, no I/O.
//!
//! A tight confidence interval over two regimes is not convergence (DESIGN.md, "Measurement
//! rules": level shifts, trends and two modes are flagged, never averaged). [`detect`] looks
//! for three departures from "independent draws of one distribution", in this order:
//!
//! 1. **Level shift** ([`InstabilityKind::Shift`]): the least-squares change point, i.e.
//!    the split of the series into a "before" and an "after" segment that maximises the
//!    pooled two-sample t statistic (Hawkins, "Testing a sequence of observations for a
//!    shift in location", JASA 72, 1977). Significance: the t test at that split with a
//!    Bonferroni correction over the n − 1 candidate splits (Worsley, Biometrika 69, 1982,
//!    shows the bound is close for small n), at [`ALPHA`]. Robust effect: the medians of
//!    the two segments differ by at least [`EFFECT`] pooled MAD-based standard deviations
//!    of the repetitions around their own segment's median. Size: the medians differ by at
//!    least [`MATERIAL`]. A segment of one repetition (the first or the last) needs a
//!    factor [`GROSS`] instead of the t test: with one value on one side the test has the
//!    other side's n − 2 degrees of freedom, one at n = 3, where it would need t ≈ 127
//!    (Cauchy tails) and miss a ×16 jump between 0.29 ms and 4.6–4.8 ms. The factor is
//!    judged against the worst noise of stationary lab points instead (CoV ≈ 20%): ×3 is
//!    5.5 such standard deviations on the log scale, and it still needs the robust effect
//!    against the other segment's spread.
//! 2. **Trend** ([`InstabilityKind::Trend`]): the Mann–Kendall test (Mann, Econometrica 13,
//!    1945; Kendall, *Rank Correlation Methods*, 1975) with its exact null distribution
//!    (the number of inversions of a random permutation), significant at [`TREND_ALPHA`],
//!    and a Theil–Sen slope (Sen, JASA 63, 1968) whose change over the whole series is at
//!    least [`MATERIAL`]. Needs [`MIN_TREND_REPS`]: below that no ordering of distinct
//!    values reaches p ≤ [`TREND_ALPHA`] (the exact minimum is 2 / n!).
//!    When a shift and a trend both pass, the model with the smaller residual sum of
//!    squares names the kind (two segment means against a least-squares line).
//! 3. **Two modes** ([`InstabilityKind::Bimodal`]): the widest gap between neighbouring
//!    sorted values that leaves at least [`MIN_MODE`] repetitions on each side, accepted
//!    when the gap itself is at least [`MATERIAL`] and at least [`GAP`] pooled standard
//!    deviations of the repetitions around their own cluster's mean. This finds two levels
//!    that alternate in time, which the shift and trend tests cannot.
//!
//! Everything is computed on natural logarithms: every primary metric (throughput, latency,
//! rate) is a positive ratio-scale quantity, its noise is roughly proportional to its level
//! (lab streams show a constant CoV, latencies a right skew), and a change is a factor
//! (×14.5 up is as large as ÷14.5 down). A series with a value that is not finite or not
//! positive is not assessed; neither is one of fewer than [`MIN_REPS`] values.
//!
//! Thresholds and where they come from:
//! - [`MATERIAL`] 20%: four times the 5% noise of a stationary series (issue 13), so such a
//!   series rarely produces it (3.1e-5 false alarms a series, measured over a million); well below every regime
//!   change seen in the lab (×14.5 TTFB and ÷4.5 throughput in the quick suite, ×16 tcp-crr
//!   latency in the thesis suite, −25% drift of a baseline stream); smaller drifts (8% in the
//!   quick suite's tcp-rr point) are left to the confidence interval.
//! - [`ALPHA`] 1% (shift) and [`TREND_ALPHA`] 0.1%: a stationary Gaussian series passes
//!   the significance step with at most that probability, whatever its noise level; the
//!   size and effect steps cut that further where the noise is small.
//! - [`EFFECT`] 3 and [`GAP`] 4 standard deviations: the two levels do not overlap; chosen
//!   with the false-alarm tests below. Measured over 20 000 stationary Gaussian series
//!   (2 000 seeds × lengths 3..=12): 0 alarms at 5% noise, 70 (0.35%) at 10%, 253 (1.3%) at
//!   20% (the shift test's 1% level and the gap rule dominate there: noise that large hides
//!   a 20% step anyway).
//! - [`GROSS`] ×3: no stationary lab point has a repetition a factor 3 (or even 2) from its
//!   median (the widest, UDP streams at CoV 19%, stay within ×0.68..×1.3), while the
//!   regime changes of issue 13 are ×6 to ×17. At ×2, Gaussian 20% noise (whose low tail
//!   reaches half the level at z = −2.5) raised 2% more false alarms.
//!
//! Small n: for 3..=5 repetitions only a level shift can be reported (the trend test needs
//! 7, two modes 3 + 3). With one repetition on one side of the split that means a factor
//! [`GROSS`] from the others and [`EFFECT`] times their spread, like the thesis suite's
//! tcp-crr points (0.29 ms, then 4.79 and 4.75 ms); with two or more on each side, medians
//! 20% apart and a t test that survives the Bonferroni correction with n − 2 degrees of
//! freedom (at n = 4 and 5 only a very clean step does). A shift of less than ×3 at n = 3
//! (e.g. 10, 10.2, 25) gets no verdict: three values cannot tell it from an outlier.

use serde::{Deserialize, Serialize};

use super::{mean, median, student_t_cdf};

/// Fewest repetitions [`detect`] assesses; a shift needs a segment of two to estimate the
/// within-segment spread from.
pub const MIN_REPS: usize = 3;
/// Fewest repetitions for the trend test (the exact Mann–Kendall p-value of a perfectly
/// monotonic series of 6 is 2/720 > [`TREND_ALPHA`]).
pub const MIN_TREND_REPS: usize = 7;
/// Fewest repetitions in each of two modes. With two, stationary series split into "modes"
/// 3 times in 20 000 at 5% noise and 1.5% of the time at 10% (measured with the tests
/// below); two repetitions off the others are outliers, not a mode.
pub const MIN_MODE: usize = 3;
/// Significance level of the shift test.
pub const ALPHA: f64 = 0.01;
/// Significance level of the trend test. Stricter than [`ALPHA`]: at 1% a stationary 5%
/// series wandered into a "20% trend" about once in 10 000 (measured with the tests
/// below); a real trend of that size over 7 or more repetitions is far below 0.1%.
pub const TREND_ALPHA: f64 = 0.001;
/// Smallest relative change between two levels that counts (0.2 = 20%).
pub const MATERIAL: f64 = 0.20;
/// Smallest factor between a single first or last repetition and the rest.
pub const GROSS: f64 = 3.0;
/// Smallest difference of segment medians, in robust within-segment standard deviations.
pub const EFFECT: f64 = 3.0;
/// Smallest gap between two modes, in pooled within-mode standard deviations.
pub const GAP: f64 = 4.0;

/// Consistency constant of the median absolute deviation for normal data (1 / Φ⁻¹(3/4)).
const MAD_SCALE: f64 = 1.4826;

/// Which way a series is not stationary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstabilityKind {
    /// The level changed once between two repetitions.
    Shift,
    /// The level drifts monotonically over the repetitions.
    Trend,
    /// The values cluster around two levels, not necessarily contiguous in time.
    Bimodal,
}

impl InstabilityKind {
    /// Short lowercase name (`shift`, `trend`, `bimodal`) for CSV and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            InstabilityKind::Shift => "shift",
            InstabilityKind::Trend => "trend",
            InstabilityKind::Bimodal => "bimodal",
        }
    }
}

/// Why a series is not stationary, with the figures a reader needs instead of its mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instability {
    /// Shift, trend or two modes.
    pub kind: InstabilityKind,
    /// Shift: 0-based index, among the measured values, of the first repetition at the new
    /// level; absent for trends and modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Shift: that repetition's recorded number (`rep` in `results.jsonl`, warm-ups
    /// counted); filled in by [`crate::results::summarize`], absent from [`detect`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rep: Option<u32>,
    /// Shift: median before; trend: fitted value at the first repetition; two modes: the
    /// lower mode's median. In the metric's unit.
    pub from: f64,
    /// Shift: median after; trend: fitted value at the last repetition; two modes: the
    /// higher mode's median. In the metric's unit.
    pub to: f64,
    /// Trend: relative change per repetition (Theil–Sen, 0.01 = +1% per repetition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slope: Option<f64>,
    /// Shift: repetitions before and after; two modes: repetitions in the lower and the
    /// higher mode; absent for trends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<[usize; 2]>,
    /// Shift: Bonferroni-adjusted p-value of the t test; trend: exact Mann–Kendall
    /// p-value; absent for modes (the gap rule is not a test) and for a shift of a single
    /// first or last repetition (judged by [`GROSS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Number of values assessed.
    pub n: usize,
    /// One line for people, e.g. `level shift at repetition 9 of 12: 0.31 ms -> 4.5 ms
    /// (x14.5)`; repetitions counted from 1 among the measured ones.
    pub reason: String,
}

impl Instability {
    /// `to / from`: the factor between the two levels.
    pub fn ratio(&self) -> f64 {
        self.to / self.from
    }

    /// The reason line with `unit` after each level (`""` for none).
    pub fn describe(&self, unit: &str) -> String {
        let u = if unit.is_empty() {
            String::new()
        } else {
            format!(" {unit}")
        };
        let (from, to) = (sig3(self.from), sig3(self.to));
        let change = change(self.ratio());
        match self.kind {
            InstabilityKind::Shift => {
                let at = self.index.unwrap_or(0) + 1;
                let [before, after] = self.counts.unwrap_or([at - 1, self.n + 1 - at]);
                let only = if after == 1 {
                    " (last repetition only: more repetitions tell whether it persists)"
                } else if before == 1 {
                    " (first repetition only)"
                } else {
                    ""
                };
                format!(
                    "level shift at repetition {at} of {}: {from}{u} -> {to}{u} ({change}){only}",
                    self.n
                )
            }
            InstabilityKind::Trend => format!(
                "trend over {} repetitions: {from}{u} -> {to}{u} ({change}, {:+.1}% per repetition)",
                self.n,
                self.slope.unwrap_or(0.0) * 100.0
            ),
            InstabilityKind::Bimodal => {
                let [low, high] = self.counts.unwrap_or([0, 0]);
                format!(
                    "two modes: {low} repetitions near {from}{u}, {high} near {to}{u} ({change})"
                )
            }
        }
    }
}

/// Formats a level with three significant digits (0.246, 3.36, 13.7, 120).
fn sig3(x: f64) -> String {
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.01 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

/// A factor as people read it: `x14.5` / `/4.5` beyond a factor 2, else a percentage.
fn change(ratio: f64) -> String {
    if ratio >= 2.0 {
        format!("x{ratio:.1}")
    } else if ratio <= 0.5 {
        format!("/{:.1}", 1.0 / ratio)
    } else {
        format!("{:+.0}%", (ratio - 1.0) * 100.0)
    }
}

/// Checks `xs` (measured values in repetition order) for a level shift, a trend or two
/// modes, in that order; `None` when none is found or the series is not assessed (fewer
/// than [`MIN_REPS`] values, or a value that is not finite and positive). The reason has
/// no unit; see [`Instability::describe`].
pub fn detect(xs: &[f64]) -> Option<Instability> {
    if xs.len() < MIN_REPS || xs.iter().any(|x| !x.is_finite() || *x <= 0.0) {
        return None;
    }
    let y: Vec<f64> = xs.iter().map(|x| x.ln()).collect();
    let n = y.len();
    let shift = shift(&y);
    let trend = trend(&y);
    let mut found = match (shift, trend) {
        (Some(s), Some(t)) => {
            if ols_sse(&y) < s.sse {
                Some(t.instability)
            } else {
                Some(s.instability)
            }
        }
        (Some(s), None) => Some(s.instability),
        (None, Some(t)) => Some(t.instability),
        (None, None) => bimodal(&y),
    }?;
    found.n = n;
    found.reason = found.describe("");
    Some(found)
}

/// A candidate with the residual sum of squares of its model (log scale).
struct Fit {
    instability: Instability,
    sse: f64,
}

fn blank(kind: InstabilityKind, from: f64, to: f64) -> Instability {
    Instability {
        kind,
        index: None,
        rep: None,
        from: from.exp(),
        to: to.exp(),
        slope: None,
        counts: None,
        p_value: None,
        n: 0,
        reason: String::new(),
    }
}

fn sum_sq(xs: &[f64]) -> f64 {
    let m = mean(xs);
    xs.iter().map(|x| (x - m) * (x - m)).sum()
}

/// Pooled-variance two-sample t statistic of `b` against `a` with its within-segment sum of
/// squares; ±∞ when neither segment varies but their means differ, 0 when they are equal.
fn pooled_t(a: &[f64], b: &[f64]) -> (f64, f64) {
    let sse = sum_sq(a) + sum_sq(b);
    let df = (a.len() + b.len() - 2) as f64;
    let diff = mean(b) - mean(a);
    let se = (sse / df * (1.0 / a.len() as f64 + 1.0 / b.len() as f64)).sqrt();
    let t = if se > 0.0 {
        diff / se
    } else if diff == 0.0 {
        0.0
    } else {
        diff.signum() * f64::INFINITY
    };
    (t, sse)
}

/// MAD-based standard deviation of the values around their own segment's median, pooled
/// over the segments of two or more values (a single value says nothing about spread).
/// When half the values sit exactly on their median (counters such as retransmits: 3, 17,
/// 17) the MAD is 0 and says nothing either; the pooled standard deviation stands in.
fn robust_within(segments: &[&[f64]]) -> f64 {
    let mut dev = Vec::new();
    let (mut sse, mut df) = (0.0, 0usize);
    for s in segments.iter().filter(|s| s.len() >= 2) {
        let m = median(s);
        dev.extend(s.iter().map(|x| (x - m).abs()));
        sse += sum_sq(s);
        df += s.len() - 1;
    }
    let mad = MAD_SCALE * median(&dev);
    if mad > 0.0 || df == 0 {
        mad
    } else {
        (sse / df as f64).sqrt()
    }
}

fn shift(y: &[f64]) -> Option<Fit> {
    let n = y.len();
    let splits = (n - 1) as f64;
    let df = (n - 2) as f64;
    let material = (1.0 + MATERIAL).ln();
    let mut best: Option<(f64, Fit)> = None;
    for k in 1..n {
        let (before, after) = y.split_at(k);
        let (ma, mb) = (median(before), median(after));
        let delta = mb - ma;
        let needed = if k == 1 || k == n - 1 {
            GROSS.ln()
        } else {
            material
        };
        if delta.abs() < needed {
            continue;
        }
        let spread = robust_within(&[before, after]);
        if spread > 0.0 && delta.abs() / spread < EFFECT {
            continue;
        }
        let (stat, sse) = pooled_t(before, after);
        let p_raw = 2.0 * (1.0 - student_t_cdf(stat.abs(), df));
        let p_adj = (p_raw * splits).min(1.0);
        // A single first or last repetition is judged by GROSS instead (module docs).
        let single = k == 1 || k == n - 1;
        if (!single && p_adj > ALPHA) || best.as_ref().is_some_and(|(bt, _)| *bt >= stat.abs()) {
            continue;
        }
        let mut inst = blank(InstabilityKind::Shift, ma, mb);
        inst.index = Some(k);
        inst.counts = Some([k, n - k]);
        inst.p_value = (!single).then_some(p_adj);
        best = Some((
            stat.abs(),
            Fit {
                instability: inst,
                sse,
            },
        ));
    }
    best.map(|(_, f)| f)
}

/// Residual sum of squares of the least-squares line through `(i, y_i)`.
fn ols_sse(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    let tm = (n - 1.0) / 2.0;
    let ym = mean(y);
    let (mut sty, mut stt) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let t = i as f64 - tm;
        sty += t * (v - ym);
        stt += t * t;
    }
    let b = sty / stt;
    y.iter()
        .enumerate()
        .map(|(i, v)| {
            let r = v - ym - b * (i as f64 - tm);
            r * r
        })
        .sum()
}

/// Mann–Kendall S: concordant minus discordant pairs in time order (ties count 0).
fn kendall_s(y: &[f64]) -> i64 {
    let mut s = 0;
    for i in 0..y.len() {
        for j in i + 1..y.len() {
            s += match y[j].partial_cmp(&y[i]) {
                Some(std::cmp::Ordering::Greater) => 1,
                Some(std::cmp::Ordering::Less) => -1,
                _ => 0,
            };
        }
    }
    s
}

/// Exact two-sided p-value of Mann–Kendall's S for `n` values without ties: under the null
/// every ordering is equally likely and the discordant pairs are the inversions of a
/// random permutation, whose distribution (the Mahonian numbers over n!) is built one
/// element at a time. With ties |S| only shrinks, so the p-value is conservative.
pub fn mann_kendall_p(s: i64, n: usize) -> f64 {
    if n < 2 || s == 0 {
        return 1.0;
    }
    let pairs = (n * (n - 1) / 2) as i64;
    // P(inversions = k) for permutations of m elements, m = 1..=n.
    let mut dist = vec![1.0_f64];
    for m in 2..=n {
        let mut next = vec![0.0; dist.len() + m - 1];
        for (k, p) in dist.iter().enumerate() {
            for slot in &mut next[k..k + m] {
                *slot += p / m as f64;
            }
        }
        dist = next;
    }
    // |S| ≥ s  ⇔  inversions ≤ (pairs − s)/2 or ≥ (pairs + s)/2; the law is symmetric.
    let low = (pairs - s.abs()).div_euclid(2);
    let tail: f64 = dist.iter().take((low + 1).max(0) as usize).sum();
    (2.0 * tail).min(1.0)
}

fn trend(y: &[f64]) -> Option<Fit> {
    let n = y.len();
    if n < MIN_TREND_REPS {
        return None;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            slopes.push((y[j] - y[i]) / (j - i) as f64);
        }
    }
    let slope = median(&slopes);
    let span = (n - 1) as f64;
    if (slope * span).abs() < (1.0 + MATERIAL).ln() {
        return None;
    }
    let p = mann_kendall_p(kendall_s(y), n);
    if p > TREND_ALPHA {
        return None;
    }
    let offsets: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(i, v)| v - slope * i as f64)
        .collect();
    let intercept = median(&offsets);
    let mut inst = blank(InstabilityKind::Trend, intercept, intercept + slope * span);
    inst.slope = Some(slope.exp() - 1.0);
    inst.p_value = Some(p);
    Some(Fit {
        instability: inst,
        sse: 0.0,
    })
}

fn bimodal(y: &[f64]) -> Option<Instability> {
    let n = y.len();
    if n < 2 * MIN_MODE {
        return None;
    }
    let mut z = y.to_vec();
    z.sort_by(f64::total_cmp);
    let j = (MIN_MODE..=n - MIN_MODE)
        .max_by(|&a, &b| (z[a] - z[a - 1]).total_cmp(&(z[b] - z[b - 1])))?;
    let (low, high) = z.split_at(j);
    let (ml, mh) = (median(low), median(high));
    if mh - ml < (1.0 + MATERIAL).ln() {
        return None;
    }
    let within = ((sum_sq(low) + sum_sq(high)) / (n - 2) as f64).sqrt();
    let gap = z[j] - z[j - 1];
    if gap < (1.0 + MATERIAL).ln() || gap < GAP * within {
        return None;
    }
    let mut inst = blank(InstabilityKind::Bimodal, ml, mh);
    inst.counts = Some([low.len(), high.len()]);
    Some(inst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A seeded generator of standard normal variates (xorshift64* and Box–Muller), so the
    /// false-alarm rates below are the same on every run.
    struct Normal(u64);

    impl Normal {
        fn uniform(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let r = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
            ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn gauss(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    /// Stationary series: `level · (1 + cov · z)`, z standard normal.
    fn stationary(rng: &mut Normal, n: usize, level: f64, cov: f64) -> Vec<f64> {
        (0..n).map(|_| level * (1.0 + cov * rng.gauss())).collect()
    }

    /// False alarms over `seeds` series of every length 3..=12 at `cov`.
    fn false_alarms(cov: f64, seeds: u64) -> (usize, usize) {
        let mut alarms = 0;
        let mut total = 0;
        for n in 3..=12 {
            for seed in 0..seeds {
                let mut rng = Normal(0x9e37_79b9_7f4a_7c15 ^ (seed * 1000 + n as u64));
                let xs = stationary(&mut rng, n, 10.0, cov);
                total += 1;
                if let Some(i) = detect(&xs) {
                    alarms += 1;
                    assert!(
                        cov > 0.05,
                        "false alarm at n={n} seed={seed}: {xs:?}: {}",
                        i.reason
                    );
                }
            }
        }
        (alarms, total)
    }

    /// The requirement: a stationary series with 5% Gaussian noise raises no alarm.
    /// Measured: 0 alarms in 20 000 series (2 000 seeds × lengths 3..=12).
    #[test]
    fn no_false_alarm_at_5_percent_noise() {
        let (alarms, total) = false_alarms(0.05, 2000);
        assert_eq!((alarms, total), (0, 20_000));
    }

    /// The false-alarm rate at 5% noise is small, not zero: a random seed found a stationary
    /// series of 11 that rises 20% (Mann–Kendall p = 0.00076). Measured here: 31 alarms in
    /// 1 000 000 series (lengths 3..=12; 17 shifts, 13 trends), 3.1e-5 a series, so about
    /// one point in 30 000 of a stationary 5% run gets flagged. Slow in a debug build:
    /// `cargo test --release -p cnibench --lib false_alarm_rate -- --ignored`.
    #[test]
    #[ignore = "a million series: run with --release --ignored"]
    fn false_alarm_rate_at_5_percent_over_a_million_series() {
        let mut alarms = 0;
        for n in 3..=12 {
            for seed in 0..100_000u64 {
                let mut rng = Normal(0x5151_2323_7f4a_7c15 ^ (seed * 1000 + n as u64));
                alarms += usize::from(detect(&stationary(&mut rng, n, 10.0, 0.05)).is_some());
            }
        }
        assert!(alarms <= 50, "{alarms} false alarms in 1 000 000 series");
    }

    /// Noisier than the issue asks, as lab UDP streams are (CoV up to 19%). Measured: 70 of
    /// 20 000 (0.35%) at 10% noise, 253 (1.3%) at 20%.
    #[test]
    fn false_alarms_stay_rare_at_lab_noise() {
        for (cov, bound) in [(0.10, 0.005), (0.20, 0.02)] {
            let (alarms, total) = false_alarms(cov, 2000);
            let rate = alarms as f64 / total as f64;
            assert!(
                rate <= bound,
                "CoV {cov}: {alarms} of {total} ({:.3}%)",
                rate * 100.0
            );
        }
    }

    /// The quick suite's http-replicas point (issue 13): 8 repetitions at 0.22–0.43 ms TTFB,
    /// then 4 at 4.4–4.6 ms.
    #[test]
    fn quick_suite_ttfb_shift() {
        let xs = [
            0.31, 0.22, 0.43, 0.27, 0.25, 0.38, 0.29, 0.33, 4.5, 4.4, 4.6, 4.45,
        ];
        let i = detect(&xs).expect("a shift");
        assert_eq!(i.kind, InstabilityKind::Shift);
        assert_eq!(i.index, Some(8));
        assert_eq!(i.counts, Some([8, 4]));
        assert!(
            (i.from - 0.30).abs() < 0.011 && (i.to - 4.475).abs() < 0.01,
            "{i:?}"
        );
        assert_eq!(
            i.describe("ms"),
            "level shift at repetition 9 of 12: 0.300 ms -> 4.47 ms (x14.9)"
        );
    }

    /// The same point's throughput: 6.8 Gbit/s, then 1.5.
    #[test]
    fn quick_suite_throughput_shift() {
        let xs = [
            6.8, 6.7, 6.9, 6.85, 6.75, 6.8, 6.95, 6.7, 1.5, 1.52, 1.48, 1.51,
        ];
        let i = detect(&xs).expect("a shift");
        assert_eq!((i.kind, i.index), (InstabilityKind::Shift, Some(8)));
        assert!(i.ratio() < 0.25);
        assert!(
            i.describe("Gbit/s")
                .contains("6.80 Gbit/s -> 1.50 Gbit/s (/4.5)")
        );
    }

    /// The committed quick run's http-replicas series, with its transition repetition.
    #[test]
    fn committed_quick_run_http_point() {
        let xs = [
            0.246, 0.248, 0.24, 0.232, 0.219, 0.244, 0.285, 0.256, 0.691, 3.316, 3.359, 3.568,
        ];
        let i = detect(&xs).expect("a shift");
        assert_eq!(
            (i.kind, i.index),
            (InstabilityKind::Shift, Some(9)),
            "{i:?}"
        );
        // Seen from inside the run: the transition value alone (x2.8) is not enough, the
        // first slow one (x13.5) is, so the runner keeps repeating from there.
        assert_eq!(detect(&xs[..9]), None);
        let early = detect(&xs[..10]).expect("the last repetition stands out");
        assert_eq!(early.index, Some(9));
        assert!(
            early.reason.contains("last repetition only"),
            "{}",
            early.reason
        );
        assert_eq!(early.p_value, None, "judged by the factor, not the t test");
    }

    /// Three repetitions as in the committed thesis run: one fast, two slow and tight.
    #[test]
    fn three_reps_with_a_gross_first_repetition() {
        let i = detect(&[291.839, 4788.223, 4747.263]).expect("a shift");
        assert_eq!((i.kind, i.index), (InstabilityKind::Shift, Some(1)));
        assert!(i.reason.contains("first repetition only"));
        // The same with the slow repetitions 30% apart, and the fast one last.
        let i = detect(&[530.0, 450.0, 2994.0]).expect("a shift");
        assert_eq!(i.index, Some(2));
        // Three ordinary repetitions, a ×2.5 step of a single repetition: no verdict.
        assert_eq!(detect(&[10.6, 12.8, 13.8]), None);
        assert_eq!(detect(&[10.0, 10.2, 25.0]), None);
        assert_eq!(detect(&[10.0, 10.2]), None);
    }

    #[test]
    fn moderate_shift_is_found_at_its_repetition() {
        let mut rng = Normal(7);
        let mut xs = stationary(&mut rng, 6, 100.0, 0.03);
        xs.extend(stationary(&mut rng, 6, 140.0, 0.03));
        let i = detect(&xs).expect("a 40% shift at 3% noise");
        assert_eq!(
            (i.kind, i.index),
            (InstabilityKind::Shift, Some(6)),
            "{i:?}"
        );
        assert!(i.p_value.unwrap() <= ALPHA);
    }

    #[test]
    fn small_or_overlapping_shifts_are_not_flagged() {
        // 10% step at 3% noise: real, but under MATERIAL; left to the confidence interval.
        let mut rng = Normal(3);
        let mut xs = stationary(&mut rng, 6, 100.0, 0.03);
        xs.extend(stationary(&mut rng, 6, 110.0, 0.03));
        assert_eq!(detect(&xs), None);
        // 25% step under 20% noise: the levels overlap.
        let xs = [
            10.0, 13.0, 8.5, 11.5, 9.0, 12.0, 12.5, 15.5, 10.5, 14.5, 11.0, 16.0,
        ];
        assert_eq!(detect(&xs), None);
    }

    #[test]
    fn one_outlier_in_the_middle_is_not_a_shift_or_a_mode() {
        let xs = [10.0, 10.1, 9.9, 25.0, 10.05, 9.95, 10.0];
        assert_eq!(detect(&xs), None);
    }

    #[test]
    fn linear_drift_is_a_trend() {
        // 15 → 11 Gbit/s in 12 steps with 2% noise, like the interrupted thesis run's
        // baseline stream.
        let mut rng = Normal(5);
        let xs: Vec<f64> = (0..12)
            .map(|i| (15.0 - 4.0 * f64::from(i) / 11.0) * (1.0 + 0.02 * rng.gauss()))
            .collect();
        let i = detect(&xs).expect("a trend");
        assert_eq!(i.kind, InstabilityKind::Trend, "{i:?}");
        assert!(
            i.slope.unwrap() < -0.02 && i.slope.unwrap() > -0.04,
            "{i:?}"
        );
        assert!(
            (i.from - 15.0).abs() < 0.6 && (i.to - 11.0).abs() < 0.6,
            "{i:?}"
        );
        assert!(
            i.reason.starts_with("trend over 12 repetitions"),
            "{}",
            i.reason
        );
        // Six values cannot show a significant trend, however clean (nor a shift: the
        // medians of any split are too close for the t test's few degrees of freedom).
        assert_eq!(
            detect(&[10.0, 10.8, 11.6, 12.4, 13.2, 14.0]).map(|i| i.kind),
            None
        );
    }

    #[test]
    fn interleaved_modes_are_bimodal() {
        let xs = [
            34.0, 26.5, 34.5, 26.8, 27.0, 35.0, 26.2, 34.2, 26.9, 33.8, 27.1, 34.6,
        ];
        let i = detect(&xs).expect("two modes");
        assert_eq!(i.kind, InstabilityKind::Bimodal, "{i:?}");
        assert_eq!(i.counts, Some([6, 6]));
        assert!(
            i.reason
                .starts_with("two modes: 6 repetitions near 26.8, 6 near 34.3 (+28%)"),
            "{}",
            i.reason
        );
        // Three and three is the least.
        let i = detect(&[10.0, 13.0, 10.1, 13.1, 13.05, 9.95]).expect("two modes at n = 6");
        assert_eq!(i.kind, InstabilityKind::Bimodal);
        assert_eq!(detect(&[10.0, 13.0, 10.1, 13.1, 9.95]), None);
        // One or two low values are outliers, not a mode.
        assert_eq!(detect(&[10.0, 10.1, 7.0, 9.9, 10.05, 10.0]), None);
        assert_eq!(detect(&[10.0, 10.1, 7.0, 9.9, 10.05, 7.1, 10.0]), None);
    }

    /// Counters tie: the MAD of 3, 17, 17 is 0, which must not make any step "robust".
    #[test]
    fn tied_values_do_not_fake_a_robust_effect() {
        assert_eq!(detect(&[2.0, 3.0, 17.0, 17.0]), None);
        // Truly constant segments are a shift when the factor is there.
        let i = detect(&[10.0, 40.0, 40.0, 40.0]).expect("a shift");
        assert_eq!(i.index, Some(1));
    }

    #[test]
    fn not_assessed_series() {
        assert_eq!(detect(&[1.0, 0.0, 5.0, 5.0]), None);
        assert_eq!(detect(&[1.0, f64::NAN, 5.0, 5.0]), None);
        assert_eq!(detect(&[]), None);
    }

    #[test]
    fn mann_kendall_exact_p_matches_enumeration() {
        // n = 4: 24 orderings; |S| = 6 (monotonic) in 2, so p = 1/12; |S| ≥ 4 in 8 (S = ±4
        // needs one inversion from either end: 3 each) → p = 8/24.
        assert!((mann_kendall_p(6, 4) - 2.0 / 24.0).abs() < 1e-12);
        assert!((mann_kendall_p(4, 4) - 8.0 / 24.0).abs() < 1e-12);
        assert!((mann_kendall_p(15, 6) - 2.0 / 720.0).abs() < 1e-12);
        assert!((mann_kendall_p(0, 10) - 1.0).abs() < 1e-12);
    }

    proptest! {
        /// The verdict does not depend on the unit: multiplying every value by a constant
        /// scales the levels and keeps the kind and the repetition.
        #[test]
        fn verdict_is_scale_invariant(
            xs in prop::collection::vec(0.5f64..20.0, 3..=12),
            k in 0.001f64..1000.0,
        ) {
            let a = detect(&xs);
            let scaled: Vec<f64> = xs.iter().map(|x| x * k).collect();
            let b = detect(&scaled);
            prop_assert_eq!(a.as_ref().map(|i| (i.kind, i.index)), b.as_ref().map(|i| (i.kind, i.index)));
            if let (Some(a), Some(b)) = (a, b) {
                prop_assert!((b.from / a.from / k - 1.0).abs() < 1e-9);
            }
        }

        /// A shift of at least ×3 between two segments of 3+ repetitions at 5% noise is
        /// always found, at the right repetition.
        #[test]
        fn gross_shifts_are_always_found(seed in any::<u64>(), before in 3usize..=9, after in 3usize..=9, factor in 3.0f64..20.0, up in any::<bool>()) {
            let mut rng = Normal(seed | 1);
            let f = if up { factor } else { 1.0 / factor };
            let mut xs = stationary(&mut rng, before, 10.0, 0.05);
            xs.extend(stationary(&mut rng, after, 10.0 * f, 0.05));
            let i = detect(&xs);
            prop_assert!(i.is_some(), "{:?}", xs);
            let i = i.unwrap();
            prop_assert_eq!((i.kind, i.index), (InstabilityKind::Shift, Some(before)));
        }
    }
}
