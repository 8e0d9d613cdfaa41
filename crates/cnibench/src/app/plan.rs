//! `cnibench plan`: the expanded points of a suite, which of them the backend can run and
//! the estimated wall time. The backend is built when its tools are here (its own
//! applicability and estimates); planning needs no tools, so without them the backend's
//! settings answer ([`BackendSettings`]): one path for every backend either way.

use std::time::Duration;

use super::args::PlanArgs;
use super::{BackendSettings, Result, backend_kind, chain, load_suite, rule, warmup_time};
use crate::backend::{Backend, Cancel, Readiness};
use crate::plan::{self, Estimate, Warmup};
use crate::scenario::Point;
use crate::suite;

/// What the plan is estimated with.
enum Planner {
    /// The backend, built with its tools.
    Built(Box<dyn Backend>),
    /// Its settings alone (a tool is missing here).
    Offline(Box<BackendSettings>),
    /// Settings that do not hold (the reason): no point can run.
    Unusable(String),
}

impl Planner {
    fn applicability(&self, point: &Point) -> Readiness {
        match self {
            Planner::Built(b) => b.applicability(point),
            Planner::Offline(s) => s.applicability(point),
            Planner::Unusable(why) => Readiness::NotApplicable(why.clone()),
        }
    }

    /// Setup time of `point` after `previous`, and the overhead of each repetition.
    fn setup(&self, previous: Option<&Point>, point: &Point) -> (Duration, Duration) {
        match self {
            Planner::Built(b) => (b.setup_estimate(previous, point), b.rep_overhead()),
            Planner::Offline(s) => (s.setup_estimate(previous, point), s.rep_overhead()),
            Planner::Unusable(_) => (Duration::ZERO, Duration::from_millis(200)),
        }
    }

    fn finish(&self, last: Option<&Point>) -> Duration {
        match self {
            Planner::Built(b) => b.finish_estimate(last),
            Planner::Offline(s) => s.finish_estimate(last),
            Planner::Unusable(_) => Duration::ZERO,
        }
    }
}

/// `cnibench plan`: the text to print. What the backend would need to run (a missing
/// tool) is a note on stderr, not an error.
pub fn plan(a: &PlanArgs) -> Result<String> {
    let suite = load_suite(&a.suite)?;
    let points = suite::expand(&suite)?;
    let rule = rule(&a.rule)?;
    let warmup = Warmup {
        reps: a.rule.warmup,
        secs: warmup_time(&a.rule)?,
    };
    let kind = backend_kind(&a.backend);
    let planner = match BackendSettings::from_args(kind, &a.backend) {
        Err(e) => {
            eprintln!("note: {} (needed to run, not to plan)", chain(&e));
            Planner::Unusable(e.to_string())
        }
        Ok(settings) => match settings.open("plan", &points, &Cancel::default()) {
            Ok(b) => Planner::Built(b),
            Err(e) => {
                eprintln!("note: {} (needed to run, not to plan)", chain(&e));
                Planner::Offline(Box::new(settings))
            }
        },
    };
    let notes: Vec<Option<String>> = points
        .iter()
        .map(|p| match planner.applicability(p) {
            Readiness::NotApplicable(why) => Some(format!("not applicable: {why}")),
            Readiness::NotEnforced(why) => Some(format!("not enforced: {why}")),
            Readiness::Ready => None,
        })
        .collect();
    // A backend that keeps objects between points is estimated from the point run
    // before each one (not-applicable points are skipped, they prepare nothing).
    let mut previous: Option<&Point> = None;
    let mut estimates: Vec<Estimate> = Vec::with_capacity(points.len());
    for (p, note) in points.iter().zip(&notes) {
        let (setup, overhead) = planner.setup(previous, p);
        estimates.push(plan::estimate(p, &rule, warmup, setup, overhead));
        if note.is_none() {
            previous = Some(p);
        }
    }
    let finish = planner.finish(previous);
    Ok(format!(
        "suite {} ({}), backend {}\n\n{}",
        suite.name,
        suite.description,
        format!("{kind:?}").to_lowercase(),
        plan::render(&points, &estimates, &notes, finish)
    ))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        plan: PlanArgs,
    }

    fn plan_of(args: &[&str]) -> String {
        let f = Flags::parse_from(std::iter::once("cnibench").chain(args.iter().copied()));
        plan(&f.plan).unwrap()
    }

    #[test]
    fn without_its_tools_a_backend_is_planned_from_its_settings() {
        let text = plan_of(&[
            "--suite",
            "quick",
            "--backend",
            "loopback",
            "--netload",
            "/nonexistent/netload",
        ]);
        assert!(text.starts_with("suite quick ("), "{text}");
        assert!(text.contains("backend loopback"), "{text}");
        assert!(text.contains("loopback has one host"), "{text}");
    }

    #[test]
    fn settings_that_do_not_hold_make_every_point_not_applicable() {
        let text = plan_of(&["--suite", "quick", "--backend", "lab", "--nodes", "w1,w2"]);
        assert!(text.contains("the lab wants a number of nodes"), "{text}");
    }

    #[test]
    fn the_fake_is_built_and_runs_everything() {
        let text = plan_of(&["--suite", "quick", "--backend", "fake"]);
        assert!(!text.contains("not applicable"), "{text}");
    }
}
