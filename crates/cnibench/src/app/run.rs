//! `cnibench run`: a new run (suite and rule from the flags) or a resumed one (from its
//! `meta.json`, see [`super::resume`]), then the run loop with progress on stderr, the
//! summary and the reports, and what the exit status says.
//!
//! Ctrl-C and SIGTERM are handled here, once per process: the first asks for a clean stop
//! (the runner tears the point down and records it as interrupted), a second Ctrl-C
//! exits at once with status 130.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use super::args::{BackendKind, RunArgs};
use super::session::Session;
use super::{
    AppError, BackendSettings, Result, backend_kind, files, load_suite, rule, run_id, warmup_time,
};
use crate::backend::Cancel;
use crate::results::{self, Meta, PointStatus, RunDir, RunSummary};
use crate::{clock, host, progress, report, suite};

/// How a run ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunEnd {
    /// Every point ended (measured, not converged or not applicable).
    Finished,
    /// Some point failed; its measured repetitions are kept.
    Failed,
    /// Ctrl-C or SIGTERM stopped it; `--resume` continues it.
    Interrupted,
}

/// `cnibench run`: starts or resumes the run `a` asks for and runs it to its end.
pub fn run(a: &RunArgs) -> Result<RunEnd> {
    let cancel = install_signals()?;
    let mut session = match &a.resume {
        Some(dir) => super::resume::open(dir, &a.backend, &cancel)?,
        None => start(a, &cancel)?,
    };
    let mut bars = progress::Progress::new(
        session.meta.points.len(),
        session.meta.rule,
        session.meta.warmup_reps,
    );
    let outcome = session.execute(&cancel, &mut bars);
    bars.finish();
    let outcome = outcome?;
    // The session (and so the backend: the kube backend deletes its namespace on drop)
    // lives until the reports are written and the table is shown.
    let dir = session.dir.path.clone();
    let (run_dir, loaded) = RunDir::open(&dir)?;
    let summary = loaded.summary();
    run_dir.write_summary(&summary)?;
    files::write_reports(&dir, &loaded, &summary)?;
    println!("{}", report::table::render(&loaded.meta, &summary));
    eprintln!(
        "results: {} (report.html, report.md, report.csv, summary.json)",
        dir.display()
    );
    if outcome.interrupted {
        eprintln!("{}", interrupted_note(&dir, &summary));
        return Ok(RunEnd::Interrupted);
    }
    if outcome.failed > 0 {
        eprintln!(
            "cnibench: {} point(s) failed (see the table); measured repetitions are kept; retry them with `cnibench run --resume {}`",
            outcome.failed,
            dir.display()
        );
        return Ok(RunEnd::Failed);
    }
    Ok(RunEnd::Finished)
}

/// The Ctrl-C flag: SIGINT and SIGTERM set it; a second SIGINT exits at once (status 130).
fn install_signals() -> Result<Cancel> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        Arc::clone(&flag),
    )
    .map_err(|source| AppError::Signal {
        signal: "Ctrl-C",
        source,
    })?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&flag)).map_err(
        |source| AppError::Signal {
            signal: "Ctrl-C",
            source,
        },
    )?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&flag)).map_err(
        |source| AppError::Signal {
            signal: "SIGTERM",
            source,
        },
    )?;
    Ok(Cancel::from_flag(flag))
}

/// A new run: the suite expanded, the rule checked and the backend built (its tools
/// found) before anything is created on disk.
fn start(a: &RunArgs, cancel: &Cancel) -> Result<Session> {
    let suite = load_suite(&a.suite)?;
    let points = suite::expand(&suite)?;
    let rule = rule(&a.rule)?;
    let warmup_s = warmup_time(&a.rule)?;
    let run_id = run_id(&suite.name, a.label.as_deref());
    let kind = backend_kind(&a.backend);
    if a.backend.backend.is_none() {
        eprintln!(
            "backend: {} ({}; choose with --backend)",
            format!("{kind:?}").to_lowercase(),
            if kind == BackendKind::Lab {
                "running as root"
            } else {
                "not root, so no lab"
            }
        );
    }
    let backend = BackendSettings::from_args(kind, &a.backend)?.open(&run_id, &points, cancel)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| Path::new("results").join(&run_id));
    let mut tools = backend.tools();
    tools.insert("cnibench".into(), env!("CARGO_PKG_VERSION").into());
    let meta = Meta {
        format_version: results::FORMAT_VERSION,
        run_id,
        created: clock::utc_rfc3339(clock::wall_time().as_secs()),
        backend: backend.name().into(),
        label: a.label.clone(),
        suite: suite.name.clone(),
        host: host::host_info(),
        tools,
        rule,
        warmup_reps: a.rule.warmup,
        warmup_s,
        points,
        command: std::env::args().collect(),
    };
    let (dir, writer) = RunDir::create(&out, &meta).map_err(|source| AppError::Start {
        path: out.clone(),
        source,
    })?;
    eprintln!("run directory: {}", dir.path.display());
    Ok(Session {
        dir,
        meta,
        prior: Vec::new(),
        writer,
        backend,
    })
}

/// What Ctrl-C kept and how to go on: `--resume` skips finished points and continues an
/// unfinished one from its kept repetitions (after a fresh warm-up, see `runner`).
fn interrupted_note(dir: &Path, summary: &RunSummary) -> String {
    let measured: usize = summary
        .points
        .iter()
        .filter_map(|p| p.primary_summary().map(|m| m.raw.len()))
        .sum();
    let finished = summary
        .points
        .iter()
        .filter(|p| p.status.is_some_and(PointStatus::is_final))
        .count();
    let partial: Vec<&str> = summary
        .points
        .iter()
        .filter(|p| {
            !p.status.is_some_and(PointStatus::is_final) && (p.warmups > 0 || !p.metrics.is_empty())
        })
        .map(|p| p.point.id.as_str())
        .collect();
    let mut text = format!(
        "interrupted: kept {measured} measured repetitions in {}; {finished} of {} points are finished and will be skipped",
        dir.join(results::RESULTS).display(),
        summary.points.len()
    );
    if !partial.is_empty() {
        let _ = write!(
            text,
            "; unfinished, continued from the repetitions kept (after a fresh warm-up): {}",
            partial.join(", ")
        );
    }
    let _ = write!(
        text,
        "\ncontinue with: cnibench run --resume {}",
        dir.display()
    );
    text
}
