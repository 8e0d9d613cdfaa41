//! Progress bars (indicatif) for a run: one for the suite, one for the current point.
//! When stderr is not a terminal, one line per point is printed instead.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::metrics;
use crate::results::{PointEnd, PointStatus, RepRecord};
use crate::runner::Observer;
use crate::scenario::Point;
use crate::stats::{self, StopRule};

/// Shows progress on stderr.
#[derive(Debug)]
pub struct Progress {
    multi: MultiProgress,
    suite: ProgressBar,
    point: Option<ProgressBar>,
    rule: StopRule,
    tty: bool,
}

impl Progress {
    /// Bars for `total` points under `rule`.
    pub fn new(total: usize, rule: StopRule) -> Self {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let suite = multi.add(ProgressBar::new(total as u64));
        suite.set_style(
            ProgressStyle::with_template(
                "{prefix:>6} [{bar:30}] {pos}/{len} points  elapsed {elapsed}  ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        suite.set_prefix("suite");
        Progress {
            multi,
            suite,
            point: None,
            rule,
            tty,
        }
    }

    fn line(&self, text: &str) {
        if self.tty {
            let _ = self.multi.println(text);
        } else {
            eprintln!("{text}");
        }
    }

    /// Clears the bars.
    pub fn finish(&self) {
        self.suite.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Observer for Progress {
    fn point_started(&mut self, index: usize, total: usize, point: &Point) {
        let bar = self.multi.add(ProgressBar::new(self.rule.max_reps as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>6} [{bar:30}] {pos}/{len} reps  {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{total}", index + 1));
        bar.set_message(format!("{} (warm-up)", point.id));
        self.point = Some(bar);
    }

    fn rep_finished(&mut self, point: &Point, rep: &RepRecord, values: &[f64]) {
        if let Some(bar) = &self.point {
            bar.set_position(values.len() as u64);
            let ci = stats::summarize(values)
                .and_then(|s| s.ci_relative)
                .map_or("CI after 2 reps".to_string(), |r| {
                    format!("CI ±{:.1}%", r * 100.0)
                });
            let kind = if rep.warmup { " (warm-up done)" } else { "" };
            bar.set_message(format!(
                "{}  {ci} (target ±{:.1}%){kind}",
                point.id,
                self.rule.ci_target * 100.0
            ));
        }
    }

    fn point_ended(&mut self, point: &Point, end: &PointEnd) {
        if let Some(bar) = self.point.take() {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.suite.inc(1);
        let key = metrics::primary_of(&point.workload);
        let info = metrics::info(key);
        let detail = match end.status {
            PointStatus::NotApplicable | PointStatus::Failed => {
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
