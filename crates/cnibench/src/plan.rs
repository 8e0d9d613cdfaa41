//! `cnibench plan`: the expanded points and an estimated wall time (pure).

use std::fmt::Write as _;
use std::time::Duration;

use crate::clock::human_duration;
use crate::scenario::Point;
use crate::stats::StopRule;

/// Estimated time of one point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// With `min_reps` repetitions (the CI target met at once).
    pub low: Duration,
    /// With `max_reps` repetitions, capped by the time budget.
    pub high: Duration,
}

/// How a point is warmed up: repetitions and their length cap (see
/// [`crate::scenario::Workload::for_warmup`]; `None` = as long as a measured one).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    /// Warm-up repetitions per point.
    pub reps: u32,
    /// Length cap of each, seconds.
    pub secs: Option<f64>,
}

/// Estimates one point: setup, warm-up and repetitions of `nominal + overhead` each.
pub fn estimate(
    point: &Point,
    rule: &StopRule,
    warmup: Warmup,
    setup: Duration,
    overhead: Duration,
) -> Estimate {
    let rep = point.workload.nominal_duration() + overhead;
    let warm = match warmup.secs {
        Some(s) => point.workload.for_warmup(s).nominal_duration() + overhead,
        None => rep,
    } * warmup.reps;
    let reps = |n: usize| warm + rep * n as u32;
    let budget = Duration::from_secs_f64(rule.time_budget_s.max(0.0));
    Estimate {
        low: setup + reps(rule.min_reps).min(budget),
        high: setup + reps(rule.max_reps).min(budget + rep),
    }
}

/// One line per point plus a total, as text. `applicability` gives a note per point (e.g.
/// "not applicable on loopback"), `None` when the point will run; `finish` is the end of
/// the run (a backend that keeps objects between points removes them then), shown on its
/// own line when not zero.
pub fn render(
    points: &[Point],
    estimates: &[Estimate],
    applicability: &[Option<String>],
    finish: Duration,
) -> String {
    let mut out = String::new();
    let width = points.iter().map(|p| p.id.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(
        out,
        "{:>3}  {:width$}  {:>16}  note",
        "#", "point", "estimate"
    );
    let (mut low, mut high) = (Duration::ZERO, Duration::ZERO);
    for (i, ((p, e), note)) in points.iter().zip(estimates).zip(applicability).enumerate() {
        let est = if note.is_some() {
            "-".to_string()
        } else {
            low += e.low;
            high += e.high;
            format!("{}..{}", human_duration(e.low), human_duration(e.high))
        };
        let _ = writeln!(
            out,
            "{:>3}  {:width$}  {est:>16}  {}",
            i + 1,
            p.id,
            note.as_deref().unwrap_or("")
        );
    }
    if !finish.is_zero() {
        low += finish;
        high += finish;
        let _ = writeln!(
            out,
            "{:>3}  {:width$}  {:>16}",
            "",
            "end of the run: delete what is left",
            human_duration(finish)
        );
    }
    let runnable = applicability.iter().filter(|a| a.is_none()).count();
    let _ = writeln!(
        out,
        "\n{} points ({runnable} runnable); estimated wall time {} (CI target met at min reps) to {} (every point at max reps)",
        points.len(),
        human_duration(low),
        human_duration(high)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{expand, presets};

    #[test]
    fn quick_suite_is_quick() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let rule = StopRule::default();
        let est: Vec<Estimate> = points
            .iter()
            .map(|p| {
                let warmup = Warmup {
                    reps: 1,
                    secs: None,
                };
                estimate(p, &rule, warmup, Duration::ZERO, Duration::from_millis(200))
            })
            .collect();
        // 2 s repetitions, 1 warm-up + 3 reps.
        assert_eq!(est[0].low, Duration::from_millis(8800));
        assert_eq!(est[0].high, Duration::from_millis(28600));
        // A 1 s warm-up saves a second per point.
        let short = Warmup {
            reps: 1,
            secs: Some(1.0),
        };
        let e = estimate(
            &points[0],
            &rule,
            short,
            Duration::ZERO,
            Duration::from_millis(200),
        );
        assert_eq!(e.low, Duration::from_millis(7800));
        let text = render(&points, &est, &vec![None; points.len()], Duration::ZERO);
        assert!(text.contains("6 points (6 runnable)"), "{text}");
    }
}
