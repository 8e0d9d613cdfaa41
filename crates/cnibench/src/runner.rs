//! The repetition loop: prepare, warm up, repeat until the stopping rule holds, tear down,
//! record every repetition as it happens.
//!
//! A point whose repetitions are not stationary (a level shift, a trend, two modes; see
//! [`crate::stats::stationarity`]) never converges: it is repeated up to the maximum or the time
//! budget so both regimes are seen (why: [`StopRule::decide`]), and a warning names the
//! repetition where it changed.
//!
//! A backend error ends its point (recorded as failed, measured repetitions kept) and the
//! run goes on with the next point; only a failure to write results stops the run, since
//! measuring without recording would lose data. Cancellation (Ctrl-C) ends the current
//! repetition, tears the point down, records it as interrupted and stops.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::backend::{Backend, BackendError, Cancel, NoProgress, Readiness, SetupProgress};
use crate::carryover::{self, StartState};
use crate::clock;
use crate::metrics;
use crate::results::{
    PointEnd, PointStatus, Record, RepRecord, ResultsError, RunWriter, finished_points,
};
use crate::scenario::Point;
use crate::stats::stationarity;
use crate::stats::{Decision, StopRule};

/// How to repeat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunConfig {
    /// The stopping rule.
    pub rule: StopRule,
    /// Warm-up repetitions per point, discarded (recorded with `warmup: true`).
    pub warmup_reps: u32,
    /// Length cap of a warm-up repetition, seconds (see [`crate::scenario::Workload::for_warmup`]); `None`
    /// runs warm-ups as long as measured repetitions.
    pub warmup_s: Option<f64>,
}

/// What happened, for progress display.
pub trait Observer {
    /// Where backends report their setup steps while this observer watches the run.
    fn setup_progress(&self) -> Arc<dyn SetupProgress> {
        Arc::new(NoProgress)
    }
    /// A point starts (index from 0 among `total`).
    fn point_started(&mut self, _index: usize, _total: usize, _point: &Point) {}
    /// A repetition finished; `values` are the primary metric's measured values so far.
    fn rep_finished(&mut self, _point: &Point, _rep: &RepRecord, _values: &[f64]) {}
    /// A point ended.
    fn point_ended(&mut self, _point: &Point, _end: &PointEnd) {}
    /// A point was skipped because a resumed run had finished it.
    fn point_skipped(&mut self, _point: &Point, _status: PointStatus) {}
    /// Something the user should see.
    fn warn(&mut self, _message: &str) {}
}

/// An observer that shows nothing.
#[derive(Debug, Default)]
pub struct Silent;

impl Observer for Silent {}

/// Counts of how points ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// Points whose status was recorded in this invocation, by status.
    pub ended: BTreeMap<String, usize>,
    /// Points skipped because a resumed run had finished them.
    pub skipped: usize,
    /// Points that failed.
    pub failed: usize,
    /// Points that ended without meeting the CI target.
    pub not_converged: usize,
    /// The run was interrupted.
    pub interrupted: bool,
}

/// Runs `points` on `backend`, appending to `writer`. `prior` are the records of a resumed
/// run: finished points are skipped, measured repetitions of unfinished ones are kept.
pub fn run(
    backend: &mut dyn Backend,
    points: &[Point],
    prior: &[Record],
    writer: &mut RunWriter,
    config: &RunConfig,
    cancel: &Cancel,
    observer: &mut dyn Observer,
) -> Result<RunOutcome, ResultsError> {
    backend.set_setup_progress(observer.setup_progress());
    let finished = finished_points(prior);
    let mut outcome = RunOutcome::default();
    for (index, point) in points.iter().enumerate() {
        if cancel.is_cancelled() {
            outcome.interrupted = true;
            break;
        }
        if let Some(status) = finished.get(&point.id) {
            outcome.skipped += 1;
            observer.point_skipped(point, *status);
            continue;
        }
        observer.point_started(index, points.len(), point);
        let end = run_point(backend, point, prior, writer, config, cancel, observer)?;
        match end.status {
            PointStatus::Failed => outcome.failed += 1,
            PointStatus::MaxReps | PointStatus::TimeBudget => outcome.not_converged += 1,
            PointStatus::Interrupted => outcome.interrupted = true,
            PointStatus::Converged | PointStatus::NotApplicable | PointStatus::NotEnforced => {}
        }
        *outcome
            .ended
            .entry(end.status.as_str().to_string())
            .or_default() += 1;
        writer.append(&Record::PointEnd(end.clone()))?;
        observer.point_ended(point, &end);
        if outcome.interrupted {
            break;
        }
    }
    Ok(outcome)
}

fn run_point(
    backend: &mut dyn Backend,
    point: &Point,
    prior: &[Record],
    writer: &mut RunWriter,
    config: &RunConfig,
    cancel: &Cancel,
    observer: &mut dyn Observer,
) -> Result<PointEnd, ResultsError> {
    let primary = metrics::primary_of(&point.workload);
    let mut values: Vec<f64> = Vec::new();
    let mut next_rep = 0u32;
    for rec in prior {
        if let Record::Rep(r) = rec
            && r.point == point.id
        {
            next_rep = next_rep.max(r.rep + 1);
            if !r.warmup
                && let Some(v) = r.metrics.get(primary)
            {
                values.push(*v);
            }
        }
    }
    let prepare_start = clock::now();
    let prepared = backend.prepare(point);
    let setup_s = Some(clock::now().duration_since(prepare_start).as_secs_f64());
    let end = |status, values: &[f64], note: Option<String>| PointEnd {
        point: point.id.clone(),
        status,
        reps: values.len() as u32,
        note,
        setup_s,
    };
    match prepared {
        Ok(Readiness::Ready) => {}
        Ok(Readiness::NotApplicable(reason)) => {
            return Ok(end(PointStatus::NotApplicable, &values, Some(reason)));
        }
        Ok(Readiness::NotEnforced(evidence)) => {
            observer.warn(&format!("{}: not enforced: {evidence}", point.id));
            return Ok(end(PointStatus::NotEnforced, &values, Some(evidence)));
        }
        // Ctrl-C during the preparation (a bulk create, a readiness wait) interrupts the
        // point like Ctrl-C during a repetition: the run stops and says how to resume.
        Err(e) if matches!(e, BackendError::Cancelled) || cancel.is_cancelled() => {
            let note = with_teardown(
                format!("interrupted while preparing: {e}"),
                backend.teardown(point),
            );
            return Ok(end(PointStatus::Interrupted, &values, Some(note)));
        }
        Err(e) => {
            let note = with_teardown(format!("prepare failed: {e}"), backend.teardown(point));
            return Ok(end(PointStatus::Failed, &values, Some(note)));
        }
    }
    let started = clock::now();
    let mut last_rep = point.workload.nominal_duration();
    let mut warmups_left = config.warmup_reps;
    let warm_point = config.warmup_s.map(|secs| Point {
        workload: point.workload.for_warmup(secs),
        ..point.clone()
    });
    // Measured repetitions, counted apart from `values` so that a backend answering
    // without the primary metric cannot keep the loop going past `max_reps`.
    let mut measured = values.len();
    let (status, note) = loop {
        let warmup = warmups_left > 0;
        if !warmup {
            let decision =
                match config
                    .rule
                    .decide(&values, clock::now().duration_since(started), last_rep)
                {
                    Decision::Continue if measured >= config.rule.max_reps => Decision::MaxReps,
                    d => d,
                };
            match decision {
                Decision::Continue => {}
                Decision::Converged => break (PointStatus::Converged, None),
                Decision::MaxReps => break (PointStatus::MaxReps, None),
                Decision::TimeBudget => break (PointStatus::TimeBudget, None),
            }
        }
        if cancel.is_cancelled() {
            break (PointStatus::Interrupted, None);
        }
        let start = match settle(backend, point, cancel, observer) {
            Ok(s) => s,
            Err(e) => {
                break (
                    PointStatus::Failed,
                    Some(format!(
                        "before repetition {next_rep}: cannot read or reset what it starts from: {e}"
                    )),
                );
            }
        };
        let rep_start = clock::now();
        let started_unix_s = clock::wall_time().as_secs_f64();
        let target = match &warm_point {
            Some(w) if warmup => w,
            _ => point,
        };
        let result = backend.run_rep(target, next_rep, cancel);
        last_rep = clock::now().duration_since(rep_start);
        if warmup && warm_point.is_some() {
            // The next repetition is a full one: budget for that.
            last_rep = last_rep.max(point.workload.nominal_duration());
        }
        match result {
            Ok(out) => {
                let rec = RepRecord {
                    point: point.id.clone(),
                    rep: next_rep,
                    warmup,
                    started_unix_s,
                    wall_s: last_rep.as_secs_f64(),
                    metrics: out.metrics,
                    start,
                    raw: out.raw,
                };
                if !warmup {
                    measured += 1;
                    if let Some(v) = rec.metrics.get(primary) {
                        values.push(*v);
                    }
                }
                if let Err(e) = writer.append(&Record::Rep(rec.clone())) {
                    // Cannot record: stop measuring, but leave nothing behind.
                    let _ = backend.teardown(point);
                    return Err(e);
                }
                observer.rep_finished(point, &rec, &values);
                next_rep += 1;
                warmups_left = warmups_left.saturating_sub(1);
            }
            // Ctrl-C from a terminal reaches the tool processes too; whatever error that
            // causes is the interruption, not a failure of the point.
            Err(e) if cancel.is_cancelled() => {
                let detail = match e {
                    BackendError::Cancelled => String::new(),
                    other => format!(" ({other})"),
                };
                break (
                    PointStatus::Interrupted,
                    Some(format!(
                        "interrupted during a repetition; it was discarded{detail}"
                    )),
                );
            }
            Err(BackendError::Cancelled) => {
                break (
                    PointStatus::Interrupted,
                    Some("interrupted during a repetition; it was discarded".into()),
                );
            }
            Err(BackendError::NotSupported { what, reason }) => {
                break (
                    PointStatus::NotApplicable,
                    Some(format!("{what}: {reason}")),
                );
            }
            Err(e) => {
                break (
                    PointStatus::Failed,
                    Some(format!("repetition {next_rep} failed: {e}")),
                );
            }
        }
    };
    let note = match (status, note) {
        (PointStatus::MaxReps | PointStatus::TimeBudget, None) => {
            Some(convergence_note(&values, config.rule.ci_target))
        }
        (_, note) => note,
    };
    let note = match note {
        Some(n) => Some(with_teardown(n, backend.teardown(point))),
        None => backend
            .teardown(point)
            .err()
            .map(|e| format!("teardown failed: {e}")),
    };
    if let Some(n) = &note
        && status != PointStatus::NotApplicable
    {
        observer.warn(&format!("{}: {n}", point.id));
    }
    if let Some(i) = stationarity::detect(&values) {
        let unit = metrics::info(primary).unit;
        observer.warn(&format!(
            "{}: {}: {}",
            point.id,
            crate::results::UNSTABLE,
            i.describe(unit)
        ));
    }
    Ok(end(status, &values, note))
}

/// Asks the backend to reset what it can, then waits out client `TIME_WAIT` sockets above
/// [`carryover::CLIENT_TIME_WAIT_LIMIT`] (left by a tool or close mode that closes from the
/// client): a repetition starting with a crowded port range measures the port allocator.
/// Bounded by the sockets' fixed lifetime; Ctrl-C ends the wait.
fn settle(
    backend: &mut dyn Backend,
    point: &Point,
    cancel: &Cancel,
    observer: &mut dyn Observer,
) -> Result<Option<StartState>, BackendError> {
    let mut state = backend.start_state(point)?;
    let crowded = |s: &Option<StartState>| {
        s.as_ref()
            .and_then(|s| s.client_time_wait)
            .filter(|&n| n > carryover::CLIENT_TIME_WAIT_LIMIT)
    };
    let Some(first) = crowded(&state) else {
        return Ok(state);
    };
    observer.warn(&format!(
        "{}: {first} TIME_WAIT sockets on the client; waiting up to {} s for them to expire",
        point.id,
        carryover::TIME_WAIT_EXPIRY_S
    ));
    let waited_from = clock::now();
    let limit = std::time::Duration::from_secs(carryover::TIME_WAIT_EXPIRY_S);
    while crowded(&state).is_some()
        && clock::now().duration_since(waited_from) < limit
        && !cancel.is_cancelled()
    {
        std::thread::sleep(std::time::Duration::from_secs(1));
        state = backend.start_state(point)?;
    }
    if let Some(s) = state.as_mut() {
        s.reset.push(format!(
            "waited {:.0} s for {first} client TIME_WAIT sockets to expire",
            clock::now().duration_since(waited_from).as_secs_f64()
        ));
    }
    Ok(state)
}

/// How far a point that stopped without converging got: its CI against the target.
fn convergence_note(values: &[f64], target: f64) -> String {
    match crate::stats::summarize(values).and_then(|s| s.ci_relative) {
        Some(r) => format!(
            "95% CI ±{:.1}% of the mean after {} repetitions (target ±{:.1}%)",
            r * 100.0,
            values.len(),
            target * 100.0
        ),
        None => format!(
            "{} measured repetition(s): too few for a confidence interval",
            values.len()
        ),
    }
}

fn with_teardown(note: String, teardown: Result<(), BackendError>) -> String {
    match teardown {
        Ok(()) => note,
        Err(e) => format!("{note}; teardown failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{RepOutcome, Step};
    use crate::results::{HostInfo, Meta, RunDir, parse_records};
    use crate::scenario::Workload;
    use crate::suite::{expand, presets};

    /// A backend that answers from a script: per point index, what repetition `n` does.
    struct Scripted {
        cancel_at: Option<(usize, u32)>,
        /// Ctrl-C while this point is being prepared (kube: during a bulk create).
        cancel_in_prepare: Option<usize>,
        unsupported: Option<usize>,
        points: Vec<String>,
        cancel: Cancel,
        torn_down: Vec<String>,
    }

    impl Backend for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn applicability(&self, _: &Point) -> Readiness {
            Readiness::Ready
        }
        fn prepare(&mut self, point: &Point) -> Result<Readiness, BackendError> {
            let i = self.points.iter().position(|p| *p == point.id).unwrap();
            if self.cancel_in_prepare == Some(i) {
                self.cancel.cancel();
                return Err(BackendError::Cancelled);
            }
            Ok(Readiness::Ready)
        }
        fn run_rep(
            &mut self,
            point: &Point,
            rep: u32,
            _: &Cancel,
        ) -> Result<RepOutcome, BackendError> {
            let i = self.points.iter().position(|p| *p == point.id).unwrap();
            if self.unsupported == Some(i) {
                return Err(BackendError::NotSupported {
                    what: "netload rr".into(),
                    reason: "not yet".into(),
                });
            }
            if self.cancel_at == Some((i, rep)) {
                // As with Ctrl-C in a terminal: the tool dies, then the flag is seen.
                self.cancel.cancel();
                return Err(BackendError::Tool {
                    tool: "netload tcp".into(),
                    status: "signal 2".into(),
                    stderr: String::new(),
                });
            }
            let key = metrics::primary_of(&point.workload);
            Ok(RepOutcome {
                metrics: [(key.to_string(), 100.0 + f64::from(rep % 2))].into(),
                raw: serde_json::json!({}),
            })
        }
        fn teardown(&mut self, point: &Point) -> Result<(), BackendError> {
            self.torn_down.push(point.id.clone());
            Ok(())
        }
    }

    #[test]
    fn unsupported_is_not_applicable_and_interruption_stops_after_teardown() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let meta = Meta {
            format_version: crate::results::FORMAT_VERSION,
            run_id: "t".into(),
            created: "t".into(),
            backend: "scripted".into(),
            label: None,
            suite: "quick".into(),
            host: HostInfo::default(),
            tools: BTreeMap::new(),
            rule: StopRule::default(),
            warmup_reps: 1,
            warmup_s: None,
            points: points.clone(),
            command: vec![],
        };
        let (_, mut writer) = RunDir::create(tmp.path(), &meta).unwrap();
        let cancel = Cancel::default();
        let mut backend = Scripted {
            cancel_at: Some((2, 2)),
            cancel_in_prepare: None,
            unsupported: Some(1),
            points: points.iter().map(|p| p.id.clone()).collect(),
            cancel: cancel.clone(),
            torn_down: vec![],
        };
        let config = RunConfig {
            rule: StopRule::default(),
            warmup_reps: 1,
            warmup_s: None,
        };
        let outcome = run(
            &mut backend,
            &points,
            &[],
            &mut writer,
            &config,
            &cancel,
            &mut Silent,
        )
        .unwrap();
        assert!(outcome.interrupted);
        assert_eq!(
            backend.torn_down.len(),
            3,
            "every prepared point is torn down"
        );
        let text = std::fs::read_to_string(tmp.path().join("results.jsonl")).unwrap();
        let ends: Vec<PointEnd> = parse_records(&text)
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::PointEnd(e) => Some(e),
                Record::Rep(_) => None,
            })
            .collect();
        let statuses: Vec<PointStatus> = ends.iter().map(|e| e.status).collect();
        assert_eq!(
            statuses,
            [
                PointStatus::Converged,
                PointStatus::NotApplicable,
                PointStatus::Interrupted
            ]
        );
        assert_eq!(
            ends[2].reps, 1,
            "the measured repetition before the interruption is kept"
        );
        assert!(ends[1].note.as_deref().unwrap().contains("not yet"));
    }

    /// Regression: Ctrl-C during a kube bulk create ended the point as "failed" and the
    /// run went on (exit status 1, not 130); it is an interruption like any other.
    #[test]
    fn ctrl_c_while_preparing_interrupts_the_run() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let meta = Meta {
            format_version: crate::results::FORMAT_VERSION,
            run_id: "t".into(),
            created: "t".into(),
            backend: "scripted".into(),
            label: None,
            suite: "quick".into(),
            host: HostInfo::default(),
            tools: BTreeMap::new(),
            rule: StopRule::default(),
            warmup_reps: 0,
            warmup_s: None,
            points: points.clone(),
            command: vec![],
        };
        let (_, mut writer) = RunDir::create(tmp.path(), &meta).unwrap();
        let cancel = Cancel::default();
        let mut backend = Scripted {
            cancel_at: None,
            cancel_in_prepare: Some(0),
            unsupported: None,
            points: points.iter().map(|p| p.id.clone()).collect(),
            cancel: cancel.clone(),
            torn_down: vec![],
        };
        let config = RunConfig {
            rule: StopRule::default(),
            warmup_reps: 0,
            warmup_s: None,
        };
        let outcome = run(
            &mut backend,
            &points,
            &[],
            &mut writer,
            &config,
            &cancel,
            &mut Silent,
        )
        .unwrap();
        assert!(outcome.interrupted);
        assert_eq!(outcome.failed, 0);
        assert_eq!(backend.torn_down, [points[0].id.clone()]);
        let text = std::fs::read_to_string(tmp.path().join("results.jsonl")).unwrap();
        let ends: Vec<PointEnd> = parse_records(&text)
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::PointEnd(e) => Some(e),
                Record::Rep(_) => None,
            })
            .collect();
        assert_eq!(ends.len(), 1, "the run stops at the interrupted point");
        assert_eq!(ends[0].status, PointStatus::Interrupted);
    }

    /// A backend whose repetitions are answered by a closure; everything else is ready.
    struct Answering<F>(F);

    impl<F: FnMut(&Point) -> Result<RepOutcome, BackendError>> Backend for Answering<F> {
        fn name(&self) -> &'static str {
            "answering"
        }
        fn applicability(&self, _: &Point) -> Readiness {
            Readiness::Ready
        }
        fn prepare(&mut self, _: &Point) -> Result<Readiness, BackendError> {
            Ok(Readiness::Ready)
        }
        fn run_rep(&mut self, p: &Point, _: u32, _: &Cancel) -> Result<RepOutcome, BackendError> {
            (self.0)(p)
        }
        fn teardown(&mut self, _: &Point) -> Result<(), BackendError> {
            Ok(())
        }
    }

    fn meta_for(points: &[Point]) -> Meta {
        Meta {
            format_version: crate::results::FORMAT_VERSION,
            run_id: "t".into(),
            created: "t".into(),
            backend: "fake".into(),
            label: None,
            suite: "quick".into(),
            host: HostInfo::default(),
            tools: BTreeMap::new(),
            rule: StopRule::default(),
            warmup_reps: 1,
            warmup_s: None,
            points: points.to_vec(),
            command: vec![],
        }
    }

    fn ends_of(dir: &std::path::Path) -> Vec<PointEnd> {
        let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
        parse_records(&text)
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::PointEnd(e) => Some(e),
                Record::Rep(_) => None,
            })
            .collect()
    }

    /// A loaded machine, imitated by the fake backend's seeded noise: every point still
    /// stops within `max_reps`, and whether it converged is recorded with how far it got.
    #[test]
    fn noisy_points_stop_at_max_reps_and_say_so() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let rule = StopRule {
            max_reps: 6,
            ..StopRule::default()
        };
        let config = RunConfig {
            rule,
            warmup_reps: 1,
            warmup_s: None,
        };
        for (noise, seed) in [(1.0, 11), (15.0, 11), (15.0, 12)] {
            let tmp = tempfile::tempdir().unwrap();
            let (_, mut writer) = RunDir::create(tmp.path(), &meta_for(&points)).unwrap();
            let mut fake = crate::backend::fake::FakeBackend::new(seed);
            fake.noise = noise;
            let outcome = run(
                &mut fake,
                &points,
                &[],
                &mut writer,
                &config,
                &Cancel::default(),
                &mut Silent,
            )
            .unwrap();
            let ends = ends_of(tmp.path());
            assert_eq!(ends.len(), points.len());
            for e in &ends {
                assert!(e.reps as usize <= rule.max_reps, "{e:?}");
                assert!(e.setup_s.is_some(), "setup time recorded: {e:?}");
                match e.status {
                    PointStatus::Converged => assert!(e.note.is_none(), "{e:?}"),
                    PointStatus::MaxReps => {
                        assert_eq!(e.reps as usize, rule.max_reps, "{e:?}");
                        let note = e.note.as_deref().unwrap();
                        assert!(note.contains("95% CI ±") && note.contains("target ±2.5%"));
                    }
                    other => panic!("unexpected {other:?}: {e:?}"),
                }
            }
            let flagged = ends
                .iter()
                .filter(|e| e.status == PointStatus::MaxReps)
                .count();
            assert_eq!(outcome.not_converged, flagged);
            if noise > 1.0 {
                assert!(flagged >= 3, "noise {noise} seed {seed}: {ends:?}");
            } else {
                assert!(flagged <= 1, "default noise converges: {ends:?}");
            }
        }
    }

    /// A backend that reports one setup step per prepared point, of one unit per object.
    #[derive(Default)]
    struct Stepping {
        steps: Option<Arc<dyn SetupProgress>>,
    }

    impl Backend for Stepping {
        fn name(&self) -> &'static str {
            "stepping"
        }
        fn applicability(&self, _: &Point) -> Readiness {
            Readiness::Ready
        }
        fn prepare(&mut self, _: &Point) -> Result<Readiness, BackendError> {
            if let Some(steps) = &self.steps {
                let step = steps.step(Some(2), "creating objects");
                step.inc(2);
                step.finish();
            }
            Ok(Readiness::Ready)
        }
        fn run_rep(&mut self, p: &Point, _: u32, _: &Cancel) -> Result<RepOutcome, BackendError> {
            Ok(RepOutcome {
                metrics: [(metrics::primary(p.workload.kind()).to_string(), 1.0)].into(),
                raw: serde_json::json!({}),
            })
        }
        fn teardown(&mut self, _: &Point) -> Result<(), BackendError> {
            Ok(())
        }
        fn set_setup_progress(&mut self, progress: Arc<dyn SetupProgress>) {
            self.steps = Some(progress);
        }
    }

    /// Counts what backends report to the observer's setup progress.
    #[derive(Default)]
    struct Tally(std::sync::Mutex<Vec<(String, u64, bool)>>);

    struct TallyStep(Arc<Tally>, usize);

    impl Step for TallyStep {
        fn inc(&self, n: u64) {
            self.0.0.lock().unwrap()[self.1].1 += n;
        }
        fn set_message(&self, _: String) {}
        fn finish(&self) {
            self.0.0.lock().unwrap()[self.1].2 = true;
        }
    }

    struct TallyProgress(Arc<Tally>);

    impl SetupProgress for TallyProgress {
        fn step(&self, _: Option<u64>, what: &str) -> Box<dyn Step> {
            let mut v = self.0.0.lock().unwrap();
            v.push((what.to_string(), 0, false));
            Box::new(TallyStep(Arc::clone(&self.0), v.len() - 1))
        }
    }

    struct Watching(Arc<Tally>);

    impl Observer for Watching {
        fn setup_progress(&self) -> Arc<dyn SetupProgress> {
            Arc::new(TallyProgress(Arc::clone(&self.0)))
        }
    }

    /// The run loop is where setup progress goes: the backend reports to the observer's.
    #[test]
    fn backends_report_setup_steps_to_the_observer() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let points = &points[..2];
        let tmp = tempfile::tempdir().unwrap();
        let (_, mut writer) = RunDir::create(tmp.path(), &meta_for(points)).unwrap();
        let config = RunConfig {
            rule: StopRule {
                min_reps: 2,
                max_reps: 2,
                ..StopRule::default()
            },
            warmup_reps: 0,
            warmup_s: None,
        };
        let tally = Arc::new(Tally::default());
        let mut observer = Watching(Arc::clone(&tally));
        run(
            &mut Stepping::default(),
            points,
            &[],
            &mut writer,
            &config,
            &Cancel::default(),
            &mut observer,
        )
        .unwrap();
        let steps = tally.0.lock().unwrap();
        assert_eq!(
            *steps,
            vec![("creating objects".to_string(), 2, true); points.len()]
        );
    }

    /// A backend whose client namespace starts crowded with `TIME_WAIT` sockets that expire
    /// after `crowded_reads` reads of the start state.
    struct Crowded {
        crowded_reads: u32,
        reads: u32,
    }

    impl Backend for Crowded {
        fn name(&self) -> &'static str {
            "crowded"
        }
        fn applicability(&self, _: &Point) -> Readiness {
            Readiness::Ready
        }
        fn prepare(&mut self, _: &Point) -> Result<Readiness, BackendError> {
            Ok(Readiness::Ready)
        }
        fn start_state(&mut self, _: &Point) -> Result<Option<StartState>, BackendError> {
            self.reads += 1;
            let time_wait = if self.reads <= self.crowded_reads {
                carryover::CLIENT_TIME_WAIT_LIMIT + 5_000
            } else {
                3
            };
            Ok(Some(StartState {
                client_time_wait: Some(time_wait),
                ..StartState::default()
            }))
        }
        fn run_rep(&mut self, p: &Point, _: u32, _: &Cancel) -> Result<RepOutcome, BackendError> {
            Ok(RepOutcome {
                metrics: [(metrics::primary(p.workload.kind()).to_string(), 1.0)].into(),
                raw: serde_json::json!({}),
            })
        }
        fn teardown(&mut self, _: &Point) -> Result<(), BackendError> {
            Ok(())
        }
    }

    /// Each repetition records what it started from; a crowded client port range is waited
    /// out before the repetition, and the wait is recorded with it.
    #[test]
    fn repetitions_record_their_start_and_wait_out_time_wait() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let points = &points[..1];
        let tmp = tempfile::tempdir().unwrap();
        let (_, mut writer) = RunDir::create(tmp.path(), &meta_for(points)).unwrap();
        let config = RunConfig {
            rule: StopRule {
                min_reps: 3,
                max_reps: 3,
                ..StopRule::default()
            },
            warmup_reps: 0,
            warmup_s: None,
        };
        let mut backend = Crowded {
            crowded_reads: 1,
            reads: 0,
        };
        run(
            &mut backend,
            points,
            &[],
            &mut writer,
            &config,
            &Cancel::default(),
            &mut Silent,
        )
        .unwrap();
        let text = std::fs::read_to_string(tmp.path().join("results.jsonl")).unwrap();
        let starts: Vec<StartState> = parse_records(&text)
            .records
            .into_iter()
            .filter_map(|r| match r {
                Record::Rep(r) => r.start,
                Record::PointEnd(_) => None,
            })
            .collect();
        assert_eq!(starts.len(), 3, "every repetition records its start");
        assert!(
            starts.iter().all(|s| s.client_time_wait == Some(3)),
            "{starts:?}"
        );
        assert!(
            starts[0].reset[0].contains("client TIME_WAIT sockets to expire"),
            "{starts:?}"
        );
        assert!(starts[1].reset.is_empty() && starts[2].reset.is_empty());
        assert_eq!(backend.reads, 4, "one extra read while waiting");
    }

    /// A backend that answers without the primary metric must not repeat forever.
    #[test]
    fn repetitions_without_the_primary_metric_stop_at_max_reps() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let points = &points[..1];
        let tmp = tempfile::tempdir().unwrap();
        let (_, mut writer) = RunDir::create(tmp.path(), &meta_for(points)).unwrap();
        let config = RunConfig {
            rule: StopRule {
                max_reps: 4,
                ..StopRule::default()
            },
            warmup_reps: 0,
            warmup_s: None,
        };
        let mut empty = Answering(|_: &Point| {
            Ok(RepOutcome {
                metrics: crate::metrics::Metrics::new(),
                raw: serde_json::json!({}),
            })
        });
        run(
            &mut empty,
            points,
            &[],
            &mut writer,
            &config,
            &Cancel::default(),
            &mut Silent,
        )
        .unwrap();
        let text = std::fs::read_to_string(tmp.path().join("results.jsonl")).unwrap();
        let reps = parse_records(&text)
            .records
            .iter()
            .filter(|r| matches!(r, Record::Rep(_)))
            .count();
        assert_eq!(reps, 4);
        let ends = ends_of(tmp.path());
        assert_eq!(ends[0].status, PointStatus::MaxReps);
        assert!(
            ends[0].note.as_deref().unwrap().contains("too few"),
            "{:?}",
            ends[0]
        );
    }

    /// Collects warnings.
    #[derive(Default)]
    struct Warnings(Vec<String>);

    impl Observer for Warnings {
        fn warn(&mut self, message: &str) {
            self.0.push(message.to_string());
        }
    }

    /// Issue 13's quick-suite shape: a level shift whose two regimes are each tight. With a
    /// 10% target and at least 10 repetitions the interval alone would stop the point at
    /// repetition 10 (±8.4%); it must instead run to `max_reps`, be warned about with the
    /// repetition where it changed, and be summarized as unstable.
    #[test]
    fn a_level_shift_never_converges_and_is_flagged() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let points = &points[..1];
        let tmp = tempfile::tempdir().unwrap();
        let meta = meta_for(points);
        let (_, mut writer) = RunDir::create(tmp.path(), &meta).unwrap();
        let config = RunConfig {
            rule: StopRule {
                ci_target: 0.10,
                min_reps: 10,
                ..StopRule::default()
            },
            warmup_reps: 1,
            warmup_s: None,
        };
        let mut calls = 0u32;
        let mut shifting = Answering(|p: &Point| {
            calls += 1;
            // Call 1 is the warm-up; measured repetitions 1..=8 are fast, then slow.
            let v = if calls <= 9 { 6.8 } else { 5.0 } + 0.01 * f64::from(calls % 3);
            Ok(RepOutcome {
                metrics: [(metrics::primary(p.workload.kind()).to_string(), v)].into(),
                raw: serde_json::json!({}),
            })
        });
        let mut warnings = Warnings::default();
        let outcome = run(
            &mut shifting,
            points,
            &[],
            &mut writer,
            &config,
            &Cancel::default(),
            &mut warnings,
        )
        .unwrap();
        assert_eq!(outcome.not_converged, 1);
        let ends = ends_of(tmp.path());
        assert_eq!((ends[0].status, ends[0].reps), (PointStatus::MaxReps, 12));
        assert!(
            warnings
                .0
                .iter()
                .any(|w| w.contains("UNSTABLE: level shift at repetition 9 of 12")),
            "{:?}",
            warnings.0
        );
        let text = std::fs::read_to_string(tmp.path().join("results.jsonl")).unwrap();
        let summary = crate::results::summarize(&meta, &parse_records(&text).records, &[]);
        let p = &summary.points[0];
        let i = p.instability().expect("unstable");
        // Measured index 8 is recorded repetition 9: the warm-up was repetition 0.
        assert_eq!((i.index, i.rep), (Some(8), Some(9)));
        assert_eq!(p.flag(), crate::results::UNSTABLE);
        assert!(!p.converged() && p.needs_attention());
        assert!(
            summary.verdict().contains("1 unstable"),
            "{}",
            summary.verdict()
        );
    }

    /// A warm-up repetition runs the capped workload; measured ones the point's own.
    #[test]
    fn warmups_run_shortened() {
        let suite = crate::suite::file::parse(
            "[[scenario]]\nkind = \"baseline\"\nduration = 10\nomit = 2\n",
            "t.toml",
        )
        .unwrap();
        let points = expand(&suite).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let (_, mut writer) = RunDir::create(tmp.path(), &meta_for(&points)).unwrap();
        let config = RunConfig {
            rule: StopRule::default(),
            warmup_reps: 1,
            warmup_s: Some(1.5),
        };
        let mut seen = Vec::new();
        let mut rec = Answering(|p: &Point| {
            let Workload::Stream(s) = &p.workload else {
                panic!("a stream point")
            };
            seen.push((s.duration.0, s.omit.0));
            Ok(RepOutcome {
                metrics: [(metrics::THROUGHPUT.to_string(), 1.0)].into(),
                raw: serde_json::json!({}),
            })
        });
        run(
            &mut rec,
            &points,
            &[],
            &mut writer,
            &config,
            &Cancel::default(),
            &mut Silent,
        )
        .unwrap();
        assert_eq!(seen, [(2.0, 0.0), (10.0, 2.0), (10.0, 2.0), (10.0, 2.0)]);
    }
}
