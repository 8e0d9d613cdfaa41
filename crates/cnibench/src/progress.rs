//! Progress of a run on stderr (a [`runner::Observer`]).
//!
//! On a terminal: two indicatif bars, the suite (points done, elapsed, ETA) and the current
//! point (repetition, CI so far against the target). Without a terminal (CI logs, `nohup`):
//! one line per repetition with the same facts and the ETA, and one per finished point.
//! The ETA is [`eta`]: a pure estimate from the repetitions and points seen so far.
//! A backend's long setup steps (thousands of cluster objects, waits for pods) are bars
//! under the same two ([`SetupBars`]), so every backend's progress is drawn here.
//!
//! [`runner::Observer`]: crate::runner::Observer

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backend::{SetupProgress, Step};
use crate::clock;
use crate::metrics;
use crate::results::{PointEnd, PointStatus, RepRecord};
use crate::runner::Observer;
use crate::scenario::Point;
use crate::stats::{self, StopRule};

/// What the ETA is estimated from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EtaInput {
    /// Mean wall time of the points measured so far in this invocation, seconds.
    pub mean_point_s: Option<f64>,
    /// Mean wall time of a repetition so far (warm-ups included), seconds.
    pub mean_rep_s: Option<f64>,
    /// Repetitions of the current point so far, warm-ups included.
    pub current_reps: usize,
    /// Points after the current one.
    pub remaining: usize,
}

/// Seconds left in the run, or `None` before anything was timed. The current point is
/// expected to reach the rule's minimum plus the warm-ups (one more repetition once past
/// it); every remaining point is expected to take as long as the mean finished one, or,
/// before any finished, the minimum repetitions at the mean repetition time. A rough
/// guide: a point that does not converge runs to its maximum.
pub fn eta(rule: &StopRule, warmups: u32, e: &EtaInput) -> Option<f64> {
    let rep = e.mean_rep_s?;
    let floor = rule.min_reps + warmups as usize;
    let current_left = floor.saturating_sub(e.current_reps).max(1) as f64 * rep;
    let per_point = e
        .mean_point_s
        .unwrap_or((rule.min_reps + warmups as usize) as f64 * rep);
    Some(current_left + per_point * e.remaining as f64)
}

/// Shows progress on stderr.
#[derive(Debug)]
pub struct Progress {
    multi: MultiProgress,
    suite: ProgressBar,
    point: Option<ProgressBar>,
    rule: StopRule,
    warmups: u32,
    tty: bool,
    started: Instant,
    point_started: Instant,
    index: usize,
    total: usize,
    current_reps: usize,
    rep_walls: Vec<f64>,
    point_walls: Vec<f64>,
}

impl Progress {
    /// Progress of `total` points under `rule` with `warmups` warm-up repetitions each.
    pub fn new(total: usize, rule: StopRule, warmups: u32) -> Self {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let suite = multi.add(ProgressBar::new(total as u64));
        suite.set_style(
            ProgressStyle::with_template(
                "{prefix:>7} [{bar:30}] {pos}/{len} points  elapsed {elapsed}  {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        suite.set_prefix("suite");
        if tty {
            suite.enable_steady_tick(Duration::from_secs(1));
        }
        let now = clock::now();
        Progress {
            multi,
            suite,
            point: None,
            rule,
            warmups,
            tty,
            started: now,
            point_started: now,
            index: 0,
            total,
            current_reps: 0,
            rep_walls: Vec::new(),
            point_walls: Vec::new(),
        }
    }

    fn line(&self, text: &str) {
        if self.tty {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    fn eta_text(&self) -> String {
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let input = EtaInput {
            mean_point_s: mean(&self.point_walls),
            mean_rep_s: mean(&self.rep_walls),
            current_reps: self.current_reps,
            remaining: self.total.saturating_sub(self.index + 1),
        };
        eta(&self.rule, self.warmups, &input).map_or("ETA after the first repetition".into(), |s| {
            format!(
                "ETA {}",
                clock::human_duration(Duration::from_secs_f64(s.max(0.0)))
            )
        })
    }

    /// Clears the bars.
    pub fn finish(&self) {
        self.suite.finish_and_clear();
        let _ = self.multi.clear();
    }
}

/// Setup steps drawn as bars: under a run's [`Progress`], or on their own on stderr
/// (`cnibench clean`). Hidden when stderr is not a terminal.
#[derive(Debug, Clone)]
pub struct SetupBars {
    multi: MultiProgress,
}

impl SetupBars {
    /// Bars of their own on stderr.
    pub fn stderr() -> Self {
        SetupBars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
        }
    }
}

impl SetupProgress for SetupBars {
    fn step(&self, len: Option<u64>, what: &str) -> Box<dyn Step> {
        let bar = self.multi.add(ProgressBar::new(len.unwrap_or(0)));
        let style = match len {
            Some(_) => ProgressStyle::with_template("  {msg:24} [{bar:30}] {pos}/{len} {per_sec}")
                .expect("valid template")
                .progress_chars("=> "),
            None => ProgressStyle::with_template("  {msg:24} {spinner} {elapsed}")
                .expect("valid template"),
        };
        bar.set_style(style);
        bar.set_message(what.to_string());
        if len.is_none() {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        Box::new(SetupBar {
            bar,
            multi: self.multi.clone(),
        })
    }
}

/// One step of [`SetupBars`]; removed from the display when finished.
struct SetupBar {
    bar: ProgressBar,
    multi: MultiProgress,
}

impl Step for SetupBar {
    fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    fn set_message(&self, message: String) {
        self.bar.set_message(message);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
        self.multi.remove(&self.bar);
    }
}

/// A plain bar counts a step too (the kube tests read its position).
impl Step for ProgressBar {
    fn inc(&self, n: u64) {
        ProgressBar::inc(self, n);
    }

    fn set_message(&self, message: String) {
        ProgressBar::set_message(self, message);
    }

    fn finish(&self) {
        self.finish_and_clear();
    }
}

impl Observer for Progress {
    fn setup_progress(&self) -> Arc<dyn SetupProgress> {
        Arc::new(SetupBars {
            multi: self.multi.clone(),
        })
    }

    fn point_started(&mut self, index: usize, total: usize, point: &Point) {
        self.index = index;
        self.total = total;
        self.current_reps = 0;
        self.point_started = clock::now();
        let bar = self.multi.add(ProgressBar::new(self.rule.max_reps as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>7} [{bar:30}] rep {pos}/{len}  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{total}", index + 1));
        bar.set_message(format!("{} (warm-up)", point.id));
        self.point = Some(bar);
        self.suite.set_message(self.eta_text());
    }

    fn rep_finished(&mut self, point: &Point, rep: &RepRecord, values: &[f64]) {
        self.current_reps += 1;
        self.rep_walls.push(rep.wall_s);
        let ci = stats::summarize(values)
            .and_then(|s| s.ci_relative)
            .map_or("CI after 2 reps".to_string(), |r| {
                format!("CI ±{:.1}%", r * 100.0)
            });
        let what = if rep.warmup {
            "warm-up".to_string()
        } else {
            format!("rep {}", values.len())
        };
        let eta = self.eta_text();
        self.suite.set_message(eta.clone());
        if let Some(bar) = &self.point {
            bar.set_position(values.len() as u64);
            bar.set_message(format!(
                "{}  {ci} (target ±{:.1}%){}",
                point.id,
                self.rule.ci_target * 100.0,
                if rep.warmup { " (warm-up done)" } else { "" }
            ));
        }
        if !self.tty {
            let info = metrics::info(metrics::primary(point.workload.kind()));
            let value = rep.metrics.get(info.key).map_or("-".into(), |v| {
                format!("{} {}", super::report::num(*v), info.unit)
            });
            eprintln!(
                "[{}/{}] {} {what}: {value}  {ci} (target ±{:.1}%)  elapsed {}  {eta}",
                self.index + 1,
                self.total,
                point.id,
                self.rule.ci_target * 100.0,
                clock::human_duration(clock::now() - self.started),
            );
        }
    }

    fn point_ended(&mut self, point: &Point, end: &PointEnd) {
        if let Some(bar) = self.point.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        if end.reps > 0 {
            self.point_walls
                .push((clock::now() - self.point_started).as_secs_f64());
        }
        self.suite.inc(1);
        let key = metrics::primary_of(&point.workload);
        let info = metrics::info(key);
        let detail = match end.status {
            PointStatus::NotApplicable | PointStatus::NotEnforced | PointStatus::Failed => {
                end.note.clone().unwrap_or_default()
            }
            _ => format!("n={} {}", end.reps, info.label),
        };
        self.line(&format!(
            "{:<28} {}  {detail}",
            end.status.as_str(),
            point.id
        ));
    }

    fn point_skipped(&mut self, point: &Point, status: PointStatus) {
        self.suite.inc(1);
        self.line(&format!(
            "{:<28} {}  (done before --resume)",
            status.as_str(),
            point.id
        ));
    }

    fn warn(&mut self, message: &str) {
        self.line(&format!("warning: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_counts_the_current_point_and_the_rest() {
        let rule = StopRule::default();
        let mut e = EtaInput {
            mean_point_s: None,
            mean_rep_s: None,
            current_reps: 0,
            remaining: 10,
        };
        assert_eq!(eta(&rule, 1, &e), None);
        // Before any point ended: 4 reps (3 + 1 warm-up) of 2 s each, for this point and 10 more.
        e.mean_rep_s = Some(2.0);
        e.current_reps = 1;
        assert_eq!(eta(&rule, 1, &e), Some(6.0 + 80.0));
        // Past the minimum: one more repetition; the rest at the mean point time.
        e.current_reps = 6;
        e.mean_point_s = Some(30.0);
        assert_eq!(eta(&rule, 1, &e), Some(2.0 + 300.0));
        e.remaining = 0;
        assert_eq!(eta(&rule, 1, &e), Some(2.0));
    }
}
