//! Statistics of repeated measurements: pure functions over slices, no I/O.
//!
//! - [`summarize`]: n, mean, median, trimmed mean, standard deviation, coefficient of
//!   variation, Student-t confidence interval of the mean, min and max;
//! - [`StopRule::decide`]: when to stop repeating a point (never "converged" on a series
//!   that [`stationarity`] finds unstable);
//! - [`welch`]: Welch's unequal-variance t-test for `cnibench compare`;
//! - [`student_t_cdf`] / [`student_t_quantile`]: the Student t distribution, computed from the
//!   regularized incomplete beta function (Numerical Recipes, 3rd ed., §6.4), so any
//!   degrees of freedom work, fractional ones included (Welch needs them).

pub mod stationarity;

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Confidence level of every interval cnibench reports (DESIGN.md, "Statistics").
pub const CONFIDENCE: f64 = 0.95;

/// Significance level of `cnibench compare`: a difference is significant when p < this.
pub const SIGNIFICANCE: f64 = 0.05;

/// Descriptive statistics of one metric over the measured repetitions of a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of repetitions.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (mean of the two middle values for even n).
    pub median: f64,
    /// Mean without the single smallest and largest value (the thesis' "drop best and
    /// worst"); equals the mean when n < 3.
    pub trimmed_mean: f64,
    /// Sample standard deviation (n − 1 denominator); 0 when n < 2.
    pub stddev: f64,
    /// Coefficient of variation, `stddev / |mean|`; absent when the mean is 0.
    pub cov: Option<f64>,
    /// Half-width of the 95% confidence interval of the mean (Student t); absent when n < 2.
    pub ci_half_width: Option<f64>,
    /// `ci_half_width / |mean|`; absent when n < 2 or the mean is 0.
    pub ci_relative: Option<f64>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
}

impl Summary {
    /// Lower end of the confidence interval (the mean when it is unknown).
    pub fn ci_low(&self) -> f64 {
        self.mean - self.ci_half_width.unwrap_or(0.0)
    }

    /// Upper end of the confidence interval (the mean when it is unknown).
    pub fn ci_high(&self) -> f64 {
        self.mean + self.ci_half_width.unwrap_or(0.0)
    }
}

/// Arithmetic mean; NaN for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// Median of a slice (not required to be sorted); NaN for an empty slice.
pub fn median(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let s = sorted(xs);
    let mid = s.len() / 2;
    if s.len().is_multiple_of(2) {
        f64::midpoint(s[mid - 1], s[mid])
    } else {
        s[mid]
    }
}

/// Mean after dropping the single smallest and single largest value; the plain mean when
/// fewer than three values are given.
pub fn trimmed_mean(xs: &[f64]) -> f64 {
    if xs.len() < 3 {
        return mean(xs);
    }
    let s = sorted(xs);
    mean(&s[1..s.len() - 1])
}

/// Sample standard deviation (Bessel-corrected, n − 1); 0 for fewer than two values.
pub fn stddev(xs: &[f64]) -> f64 {
    if xs.len() < 2 {
        return 0.0;
    }
    let m = mean(xs);
    let ss: f64 = xs.iter().map(|x| (x - m) * (x - m)).sum();
    (ss / (xs.len() - 1) as f64).sqrt()
}

/// Half-width of the two-sided confidence interval of the mean at `confidence`, using the
/// Student t quantile with n − 1 degrees of freedom; `None` for fewer than two values.
pub fn ci_half_width(xs: &[f64], confidence: f64) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let df = (xs.len() - 1) as f64;
    let t = student_t_quantile(f64::midpoint(1.0, confidence), df);
    Some(t * stddev(xs) / (xs.len() as f64).sqrt())
}

/// All descriptive statistics of `xs` at 95% confidence; `None` for an empty slice.
pub fn summarize(xs: &[f64]) -> Option<Summary> {
    if xs.is_empty() {
        return None;
    }
    let m = mean(xs);
    let sd = stddev(xs);
    let half = ci_half_width(xs, CONFIDENCE);
    let nonzero = m != 0.0;
    Some(Summary {
        n: xs.len(),
        mean: m,
        median: median(xs),
        trimmed_mean: trimmed_mean(xs),
        stddev: sd,
        cov: nonzero.then(|| sd / m.abs()),
        ci_half_width: half,
        ci_relative: half.filter(|_| nonzero).map(|h| h / m.abs()),
        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    s
}

/// `num.mean / den.mean` with the first-order 95% CI of that ratio of two independent
/// means: their relative CI half-widths added in quadrature (each with its own Student t).
/// `None` when `den`'s mean is 0; no interval when either has fewer than 2 values.
pub fn mean_ratio(num: &Summary, den: &Summary) -> Option<(f64, Option<(f64, f64)>)> {
    if den.mean == 0.0 {
        return None;
    }
    let r = num.mean / den.mean;
    let ci = num
        .ci_relative
        .zip(den.ci_relative)
        .map(|(a, b)| a.hypot(b) * r.abs())
        .map(|h| (r - h, r + h));
    Some((r, ci))
}

/// When to stop repeating a scenario point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StopRule {
    /// Target relative half-width of the 95% CI of the mean (0.025 = 2.5%).
    pub ci_target: f64,
    /// Fewest measured repetitions, even when the target is met earlier.
    pub min_reps: usize,
    /// Most measured repetitions; a point that reaches it without meeting the target is
    /// flagged as not converged.
    pub max_reps: usize,
    /// Wall-time budget of one point's repetitions, seconds (warm-up included).
    pub time_budget_s: f64,
}

impl Default for StopRule {
    fn default() -> Self {
        StopRule {
            ci_target: 0.025,
            min_reps: 3,
            max_reps: 12,
            time_budget_s: 600.0,
        }
    }
}

/// What the stopping rule says after a repetition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// Run another repetition.
    Continue,
    /// The CI target is met with at least `min_reps` repetitions.
    Converged,
    /// `max_reps` reached without meeting the target.
    MaxReps,
    /// Another repetition would exceed the time budget; target not met.
    TimeBudget,
}

impl StopRule {
    /// Decides after the measured values `xs`, `elapsed` into the point's budget, with
    /// `next_rep` the expected length of one more repetition.
    ///
    /// A series that is not stationary ([`stationarity::detect`] finds a level
    /// shift, a trend or two modes) never converges, however tight its interval: a tight
    /// interval over two regimes is not convergence. It is repeated on, up to `max_reps` or
    /// the time budget, rather than stopped at once, because
    /// - with few repetitions the verdict is provisional: a first or last repetition a
    ///   factor 2 away may be a one-off, and the following repetitions either confirm the
    ///   new level or absorb the outlier (the verdict then clears and the point may still
    ///   converge);
    /// - the later regime is usually the one the datapath settles in (client TIME_WAIT
    ///   build-up in issue 13 kept tcp-crr at 3–5 ms from the second repetition on), and
    ///   the report can only quote both levels with some repetitions in each;
    /// - the cost is bounded by `max_reps` and the budget, which the user already accepted
    ///   for a point that does not converge.
    pub fn decide(&self, xs: &[f64], elapsed: Duration, next_rep: Duration) -> Decision {
        let converged = xs.len() >= self.min_reps.max(2)
            && summarize(xs)
                .and_then(|s| s.ci_relative)
                .is_some_and(|r| r <= self.ci_target)
            && stationarity::detect(xs).is_none();
        if converged {
            Decision::Converged
        } else if xs.len() >= self.max_reps {
            Decision::MaxReps
        } else if (elapsed + next_rep).as_secs_f64() > self.time_budget_s {
            Decision::TimeBudget
        } else {
            Decision::Continue
        }
    }
}

/// Result of Welch's unequal-variance t-test of two samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Welch {
    /// The t statistic, `(mean_b − mean_a) / sqrt(s_a²/n_a + s_b²/n_b)`.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: f64,
    /// Two-sided p-value.
    pub p_value: f64,
}

impl Welch {
    /// Whether the difference is significant at [`SIGNIFICANCE`].
    pub fn significant(&self) -> bool {
        self.p_value < SIGNIFICANCE
    }
}

/// Welch's t-test (B. L. Welch, Biometrika 34, 1947) of `b` against `a`; `None` when either
/// sample has fewer than two values. Two samples without any spread give p = 1 when
/// their means are equal and p = 0 otherwise.
pub fn welch(a: &[f64], b: &[f64]) -> Option<Welch> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (stddev(a).powi(2) / na, stddev(b).powi(2) / nb);
    let diff = mean(b) - mean(a);
    let se2 = va + vb;
    if se2 == 0.0 {
        let p = if diff == 0.0 { 1.0 } else { 0.0 };
        return Some(Welch {
            t: if diff == 0.0 {
                0.0
            } else {
                diff.signum() * f64::INFINITY
            },
            df: na + nb - 2.0,
            p_value: p,
        });
    }
    let t = diff / se2.sqrt();
    let df = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let p_value = (2.0 * (1.0 - student_t_cdf(t.abs(), df))).clamp(0.0, 1.0);
    Some(Welch { t, df, p_value })
}

/// Cumulative distribution function of Student's t with `df` degrees of freedom:
/// `1 − ½·I_{df/(df+t²)}(df/2, ½)` for t ≥ 0, mirrored for t < 0.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let x = df / (df + t * t);
    let tail = 0.5 * incomplete_beta(x, df / 2.0, 0.5);
    if t >= 0.0 { 1.0 - tail } else { tail }
}

/// Quantile of Student's t: the `t` with `student_t_cdf(t, df) = p`, for 0 < p < 1, found
/// by bisection (the CDF is monotonic; 200 halvings reach f64 precision).
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    assert!(p > 0.0 && p < 1.0, "quantile needs 0 < p < 1, got {p}");
    if p < 0.5 {
        return -student_t_quantile(1.0 - p, df);
    }
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while student_t_cdf(hi, df) < p {
        lo = hi;
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = f64::midpoint(lo, hi);
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    f64::midpoint(lo, hi)
}

/// Regularized incomplete beta function `I_x(a, b)` by Lentz's continued fraction
/// (Numerical Recipes, 3rd ed., §6.4 `betai`/`betacf`).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(x, a, b) / a
    } else {
        1.0 - front * beta_cf(1.0 - x, b, a) / b
    }
}

#[allow(clippy::many_single_char_names)]
fn beta_cf(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=300 {
        let m = f64::from(m);
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 by the Lanczos approximation (g = 7, n = 9; the coefficients of
/// Godfrey's table as used by many numerical libraries), accurate to ~1e-15.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEF: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut acc = COEF[0];
    for (i, c) in COEF.iter().enumerate().skip(1) {
        acc += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + acc.ln()
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_quantiles_match_published_tables() {
        // Two-sided 95% critical values, e.g. NIST/SEMATECH e-Handbook table 1.3.6.7.2.
        for (df, t) in [
            (1.0, 12.706),
            (2.0, 4.303),
            (3.0, 3.182),
            (5.0, 2.571),
            (10.0, 2.228),
            (11.0, 2.201),
            (30.0, 2.042),
            (100.0, 1.984),
        ] {
            let q = student_t_quantile(0.975, df);
            assert!(close(q, t, 5e-4), "df={df}: {q} vs {t}");
        }
    }

    #[test]
    fn summary_of_known_sample() {
        let s = summarize(&[10.0, 12.0, 11.0, 9.0, 13.0]).unwrap();
        assert_eq!(s.n, 5);
        assert!(close(s.mean, 11.0, 1e-12));
        assert!(close(s.median, 11.0, 1e-12));
        assert!(close(s.trimmed_mean, 11.0, 1e-12));
        assert!(close(s.stddev, 2.5_f64.sqrt(), 1e-12));
        // t(0.975, 4) = 2.776; half = 2.776 * 1.5811 / sqrt(5) = 1.963
        assert!(close(s.ci_half_width.unwrap(), 1.963, 1e-3));
        assert_eq!((s.min, s.max), (9.0, 13.0));
    }

    #[test]
    fn single_value_has_no_interval() {
        let s = summarize(&[4.0]).unwrap();
        assert_eq!(s.ci_half_width, None);
        assert_eq!(s.stddev, 0.0);
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn trimmed_mean_drops_best_and_worst_once() {
        assert!(close(
            trimmed_mean(&[1.0, 100.0, 5.0, 5.0, 5.0]),
            5.0,
            1e-12
        ));
        assert!(close(trimmed_mean(&[1.0, 3.0]), 2.0, 1e-12));
    }

    #[test]
    fn welch_matches_reference() {
        // Reference computed independently (Python: Welch's formulas, p by numerical
        // integration of the t density): t = 3.1395, df = 7.7527, p = 0.014375.
        let a = [19.8, 20.4, 19.6, 17.8, 18.5];
        let b = [21.1, 22.3, 20.9, 19.9, 21.5];
        let w = welch(&a, &b).unwrap();
        let t =
            (mean(&b) - mean(&a)) / (stddev(&a).powi(2) / 5.0 + stddev(&b).powi(2) / 5.0).sqrt();
        assert!(close(w.t, t, 1e-12));
        assert!(
            close(w.t, 3.1395, 1e-4) && close(w.df, 7.7527, 1e-4),
            "{w:?}"
        );
        assert!(close(w.p_value, 0.014_375, 1e-5), "{w:?}");
        assert!(w.significant());
    }

    #[test]
    fn welch_of_identical_constant_samples_is_not_significant() {
        let w = welch(&[1.0, 1.0], &[1.0, 1.0]).unwrap();
        assert_eq!(w.p_value, 1.0);
    }

    #[test]
    fn stop_rule_cases() {
        let rule = StopRule::default();
        let tight = [100.0, 100.1, 99.9];
        let zero = Duration::ZERO;
        let one = Duration::from_secs(1);
        assert_eq!(rule.decide(&tight[..2], zero, one), Decision::Continue);
        assert_eq!(rule.decide(&tight, zero, one), Decision::Converged);
        let noisy: Vec<f64> = (0..12)
            .map(|i| if i % 2 == 0 { 50.0 } else { 150.0 })
            .collect();
        assert_eq!(rule.decide(&noisy, zero, one), Decision::MaxReps);
        assert_eq!(
            rule.decide(&noisy[..4], Duration::from_secs(600), one),
            Decision::TimeBudget
        );
    }

    /// Two tight regimes 30% apart meet a 10% CI target, and must not count as converged.
    #[test]
    fn stop_rule_never_converges_on_a_level_shift() {
        let rule = StopRule {
            ci_target: 0.10,
            ..StopRule::default()
        };
        let (zero, one) = (Duration::ZERO, Duration::from_secs(1));
        let mut xs = vec![100.0, 100.5, 99.5, 100.2, 99.8, 100.1, 99.9, 100.3];
        xs.extend([130.0, 130.4, 129.6, 130.2]);
        let ci = summarize(&xs).unwrap().ci_relative.unwrap();
        assert!(ci < 0.10, "the interval alone would pass: {ci}");
        assert_eq!(rule.decide(&xs[..11], zero, one), Decision::Continue);
        assert_eq!(rule.decide(&xs, zero, one), Decision::MaxReps);
        // The first regime alone converges.
        assert_eq!(rule.decide(&xs[..8], zero, one), Decision::Converged);
    }

    proptest! {
        #[test]
        fn summary_invariants(xs in prop::collection::vec(-1e6f64..1e6, 1..40)) {
            let s = summarize(&xs).unwrap();
            let eps = 1e-9 * (1.0 + s.max.abs().max(s.min.abs()));
            prop_assert!(s.min <= s.mean + eps && s.mean <= s.max + eps);
            prop_assert!(s.min <= s.median && s.median <= s.max);
            prop_assert!(s.min <= s.trimmed_mean + eps && s.trimmed_mean <= s.max + eps);
            prop_assert!(s.stddev >= 0.0);
            if let Some(h) = s.ci_half_width { prop_assert!(h >= 0.0); }
        }

        #[test]
        fn summary_is_order_independent(mut xs in prop::collection::vec(0.0f64..1e3, 2..20)) {
            let a = summarize(&xs).unwrap();
            xs.reverse();
            let b = summarize(&xs).unwrap();
            prop_assert!((a.mean - b.mean).abs() < 1e-9);
            prop_assert_eq!(a.median, b.median);
            prop_assert!((a.stddev - b.stddev).abs() < 1e-9);
        }

        #[test]
        fn shift_and_scale_equivariance(xs in prop::collection::vec(1.0f64..1e3, 2..20), k in 0.5f64..4.0, c in -100.0f64..100.0) {
            let a = summarize(&xs).unwrap();
            let ys: Vec<f64> = xs.iter().map(|x| k * x + c).collect();
            let b = summarize(&ys).unwrap();
            prop_assert!((b.mean - (k * a.mean + c)).abs() < 1e-6);
            prop_assert!((b.stddev - k * a.stddev).abs() < 1e-6);
            prop_assert!((b.ci_half_width.unwrap() - k * a.ci_half_width.unwrap()).abs() < 1e-6);
        }

        #[test]
        fn t_cdf_is_monotonic_and_symmetric(t in -50.0f64..50.0, df in 1.0f64..200.0) {
            let p = student_t_cdf(t, df);
            prop_assert!((0.0..=1.0).contains(&p));
            prop_assert!((p + student_t_cdf(-t, df) - 1.0).abs() < 1e-9);
            prop_assert!(student_t_cdf(t + 0.1, df) >= p - 1e-12);
        }

        #[test]
        fn t_quantile_inverts_cdf(p in 0.51f64..0.999, df in 1.0f64..100.0) {
            let q = student_t_quantile(p, df);
            prop_assert!((student_t_cdf(q, df) - p).abs() < 1e-9);
        }

        #[test]
        fn welch_p_value_is_a_probability_and_symmetric(
            a in prop::collection::vec(0.0f64..100.0, 2..10),
            b in prop::collection::vec(0.0f64..100.0, 2..10),
        ) {
            let ab = welch(&a, &b).unwrap();
            let ba = welch(&b, &a).unwrap();
            prop_assert!((0.0..=1.0).contains(&ab.p_value));
            prop_assert!((ab.p_value - ba.p_value).abs() < 1e-9);
        }

        #[test]
        fn stop_rule_never_exceeds_max_reps(n in 0usize..30, spread in 0.0f64..50.0) {
            let rule = StopRule::default();
            let xs: Vec<f64> = (0..n).map(|i| 100.0 + spread * ((i % 3) as f64 - 1.0)).collect();
            let d = rule.decide(&xs, Duration::ZERO, Duration::from_secs(1));
            if n >= rule.max_reps { prop_assert_ne!(d, Decision::Continue); }
            if n < rule.min_reps { prop_assert_ne!(d, Decision::Converged); }
        }
    }
}
