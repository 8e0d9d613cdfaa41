//! What each `cnibench` command does, behind the command line: flags in, a validated
//! suite, stopping rule and [`BackendSettings`], then the work. The binary parses the
//! arguments ([`args`] holds the groups `run` and `plan` share) and calls one function
//! here per command, so tests reach run, resume and plan without a process.
//!
//! - [`run`]: `cnibench run`, a new run or `--resume`: signals, the run loop, reports;
//! - [`resume`]: a resumed run's settings restored from its `meta.json`;
//! - [`session`]: a run ready for the run loop, new or resumed;
//! - [`plan`]: `cnibench plan`, the expanded points with their estimates;
//! - [`files`]: `report`, `compare` and `import-iperf3` over run directories;
//! - this module: suite and rule validation, the typed backend settings, `clean`.
//!
//! Errors are [`AppError`]: the library's own, and what a command adds to them.

pub mod args;
mod error;
pub mod files;
pub mod plan;
pub mod resume;
pub mod run;
pub mod session;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::error::{AppError, Result, chain};

use self::args::{BackendArgs, BackendKind, KubeArgs, RuleArgs, SuiteArgs};
use crate::backend::fake::FakeBackend;
use crate::backend::kube::adapter::{self as kube, KubeBackend, KubeOptions};
use crate::backend::kube::cluster::Tuning;
use crate::backend::kube::driver;
use crate::backend::kube::estimate;
use crate::backend::lab::adapter::{self as lab, LabBackend, LabOptions};
use crate::backend::loopback::{self, LoopbackBackend};
use crate::backend::tool::{iperf3, netload};
use crate::backend::{Backend, Cancel, Readiness};
use crate::scenario::Point;
use crate::stats::StopRule;
use crate::suite::{self, Overrides, Suite, presets};
use crate::{clock, progress};

/// The suite `a` names (a built-in or a TOML file) with its overrides applied.
pub fn load_suite(a: &SuiteArgs) -> Result<Suite> {
    let suite = if let Some(s) = presets::load(&a.suite) {
        s
    } else {
        let path = Path::new(&a.suite);
        let text = std::fs::read_to_string(path).map_err(|source| suite::SuiteError::Read {
            path: a.suite.clone(),
            builtins: presets::NAMES.join(", "),
            source,
        })?;
        suite::file::parse(&text, &a.suite)?
    };
    let mut set = a
        .set
        .iter()
        .map(|s| suite::parse_set(s))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(tool) = &a.tool {
        let (key, mut sweep) = suite::parse_set(&format!("tool={tool}"))?;
        sweep.origin = suite::Origin::arg(format!("--tool {tool}"));
        set.push((key, sweep));
    }
    let overrides = Overrides {
        only: a.only.clone(),
        skip: a.skip.clone(),
        set,
    };
    Ok(suite.apply(&overrides)?)
}

/// `--warmup-time`: `None` for `full`.
pub fn warmup_time(a: &RuleArgs) -> Result<Option<f64>> {
    if a.warmup_time == "full" {
        return Ok(None);
    }
    let s = suite::params::parse_seconds(&a.warmup_time)
        .map_err(|e| AppError::Invalid(format!("--warmup-time: {e} (or `full`)")))?;
    if !(s > 0.0 && s <= 3600.0) {
        return Err(AppError::Invalid(format!(
            "--warmup-time: {} is out of range (seconds from 1 to 3600, or `full`)",
            a.warmup_time
        )));
    }
    Ok(Some(s.ceil()))
}

/// The stopping rule of `a`, each flag checked against its range.
pub fn rule(a: &RuleArgs) -> Result<StopRule> {
    let budget = suite::params::parse_seconds(&a.time_budget)
        .map_err(|e| AppError::Invalid(format!("--time-budget: {e}")))?;
    if !(a.ci_target > 0.0 && a.ci_target < 100.0) {
        return Err(AppError::Invalid(format!(
            "--ci-target: {} is out of range (a percentage between 0 and 100, e.g. 2.5)",
            a.ci_target
        )));
    }
    if a.min_reps < 2 || a.max_reps < a.min_reps {
        return Err(AppError::Invalid(format!(
            "--min-reps {} / --max-reps {}: need 2 <= min-reps <= max-reps",
            a.min_reps, a.max_reps
        )));
    }
    Ok(StopRule {
        ci_target: a.ci_target / 100.0,
        min_reps: a.min_reps,
        max_reps: a.max_reps,
        time_budget_s: budget,
    })
}

/// The backend `--backend` names; without it, lab as root and loopback otherwise.
pub fn backend_kind(a: &BackendArgs) -> BackendKind {
    a.backend.unwrap_or_else(|| {
        if crate::backend::lab::check_root().is_ok() {
            BackendKind::Lab
        } else {
            BackendKind::Loopback
        }
    })
}

/// The binaries a backend that starts local processes is pointed at (`--netload`,
/// `--iperf3`; `None`: looked for).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalPaths {
    /// The netload binary (default: next to cnibench).
    pub netload: Option<PathBuf>,
    /// The iperf3 binary (default: iperf3 on `PATH`), looked for only when a point needs it.
    pub iperf3: Option<PathBuf>,
}

/// The validated settings of one backend: what it is built from, and what `cnibench plan`
/// estimates with when it cannot be built here.
#[derive(Debug, Clone)]
pub enum BackendSettings {
    /// The fake backend (its seed, injected failure, delay and noise).
    Fake(FakeBackend),
    /// netload on 127.0.0.1.
    Loopback(LocalPaths),
    /// A lab of network namespaces per point.
    Lab(LabOptions, LocalPaths),
    /// A Kubernetes cluster.
    Kube(KubeOptions),
}

impl BackendSettings {
    /// The settings of backend `kind` from the flags `a`.
    pub fn from_args(kind: BackendKind, a: &BackendArgs) -> Result<Self> {
        Self::with_nodes(kind, a, &a.nodes)
    }

    /// As [`BackendSettings::from_args`] with `--nodes` replaced by `nodes` (a resumed run
    /// keeps the nodes it recorded).
    fn with_nodes(kind: BackendKind, a: &BackendArgs, nodes: &str) -> Result<Self> {
        let paths = LocalPaths {
            netload: a.netload.clone(),
            iperf3: a.iperf3.clone(),
        };
        Ok(match kind {
            BackendKind::Fake => {
                let mut f = FakeBackend::new(a.seed);
                f.fail.clone_from(&a.fake_fail);
                f.delay = Duration::from_millis(a.fake_delay_ms);
                f.noise = a.fake_noise;
                BackendSettings::Fake(f)
            }
            BackendKind::Loopback => BackendSettings::Loopback(paths),
            BackendKind::Lab => BackendSettings::Lab(lab_options(a, nodes)?, paths),
            BackendKind::Kube => BackendSettings::Kube(kube_options(a, nodes)),
        })
    }

    /// Which backend these settings are for.
    pub fn kind(&self) -> BackendKind {
        match self {
            BackendSettings::Fake(_) => BackendKind::Fake,
            BackendSettings::Loopback(_) => BackendKind::Loopback,
            BackendSettings::Lab(..) => BackendKind::Lab,
            BackendSettings::Kube(_) => BackendKind::Kube,
        }
    }

    /// Builds the backend for cnibench run `run_id` and its `points`; iperf3 is looked for
    /// only when a point needs it, and a missing tool is an error before anything is
    /// created. `cancel` is the run's Ctrl-C flag.
    pub fn open(
        &self,
        run_id: &str,
        points: &[Point],
        cancel: &Cancel,
    ) -> Result<Box<dyn Backend>> {
        let iperf3 = |paths: &LocalPaths| -> Result<Option<(PathBuf, String)>> {
            if !iperf3::needed(points) {
                return Ok(None);
            }
            Ok(Some(iperf3::locate(paths.iperf3.as_deref())?))
        };
        Ok(match self {
            BackendSettings::Fake(f) => Box::new(f.clone()),
            BackendSettings::Loopback(paths) => {
                let path = netload::locate(paths.netload.as_deref())?;
                let mut b = LoopbackBackend::new(path)?;
                if let Some(i) = iperf3(paths)? {
                    b = b.with_iperf3(i);
                }
                Box::new(b)
            }
            BackendSettings::Lab(opts, paths) => {
                let path = netload::locate(paths.netload.as_deref())?;
                let mut b = LabBackend::new(path, opts.clone(), run_id)?;
                if let Some(i) = iperf3(paths)? {
                    b = b.with_iperf3(i);
                }
                Box::new(b)
            }
            BackendSettings::Kube(opts) => Box::new(
                KubeBackend::connect(opts, run_id, cancel.clone())
                    .map_err(AppError::KubeBackend)?,
            ),
        })
    }

    /// Whether the backend can run `point`, from the settings alone (no tools, no root, no
    /// cluster): what `cnibench plan` shows when the backend cannot be built here.
    pub fn applicability(&self, point: &Point) -> Readiness {
        match self {
            BackendSettings::Fake(_) => iperf3::applicability(point),
            BackendSettings::Loopback(_) => match iperf3::applicability(point) {
                Readiness::Ready => loopback::applicability(point),
                other => other,
            },
            BackendSettings::Lab(opts, _) => lab::applicability(point, opts),
            BackendSettings::Kube(_) => driver::tool_applicability(point),
        }
    }

    /// Setup and teardown time of `point` after `previous`, from the settings alone (only
    /// the kube estimate needs no cluster; the others are known once built).
    pub fn setup_estimate(&self, previous: Option<&Point>, point: &Point) -> Duration {
        match self {
            BackendSettings::Kube(o) => estimate::setup_estimate(previous, point, o.service_mode),
            _ => Duration::ZERO,
        }
    }

    /// Overhead of one repetition, from the settings alone.
    pub fn rep_overhead(&self) -> Duration {
        match self {
            BackendSettings::Kube(_) => Duration::from_millis(300),
            _ => Duration::from_millis(200),
        }
    }

    /// Time to remove what is left after the last point `last`, from the settings alone.
    pub fn finish_estimate(&self, last: Option<&Point>) -> Duration {
        match self {
            BackendSettings::Kube(o) => estimate::finish_estimate(last, o.service_mode),
            _ => Duration::ZERO,
        }
    }
}

/// The lab's options from the flags, with `nodes` for `--nodes`.
fn lab_options(a: &BackendArgs, nodes: &str) -> Result<LabOptions> {
    Ok(LabOptions {
        profile: a.profile,
        proxy: a.proxy,
        policy_mode: a.policy_mode,
        mtu: a.mtu,
        nodes: nodes.parse().map_err(|_| {
            AppError::Invalid(format!(
                "--nodes {nodes}: the lab wants a number of nodes (node names are for --backend kube)",
            ))
        })?,
    })
}

/// The kube backend's options from the flags, with `nodes` for `--nodes`.
fn kube_options(a: &BackendArgs, nodes: &str) -> KubeOptions {
    // A bare count (the lab's default "2") means: let the preflight choose.
    let nodes = if nodes.chars().all(|c| c.is_ascii_digit()) {
        Vec::new()
    } else {
        nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect()
    };
    KubeOptions {
        kubeconfig: a.kube.kubeconfig.clone(),
        context: a.kube.context.clone(),
        image: a.image.clone(),
        service_mode: a.service_mode,
        nodes,
        namespace: a.kube.namespace.clone(),
        tuning: Tuning {
            concurrency: usize::from(a.concurrency),
            ..Tuning::default()
        },
    }
}

/// A run id: the UTC time and the label (or the suite name) with unsafe characters
/// replaced.
pub fn run_id(suite: &str, label: Option<&str>) -> String {
    let stamp = clock::utc_stamp(clock::wall_time().as_secs());
    let tail: String = label
        .unwrap_or(suite)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{stamp}-{tail}")
}

/// Where `cnibench clean` removes leftovers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanTarget {
    /// Lab namespaces (and the processes in them) on this host.
    Lab,
    /// Labelled namespaces on the cluster of the kubeconfig.
    Kube,
}

/// What `cnibench clean` did, for the user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// One line per process ended (lab), or for the objects deleted in a namespace kept
    /// (`--namespace`).
    pub ended: Vec<String>,
    /// The namespaces removed.
    pub namespaces: Vec<String>,
}

/// Removes what runs left behind: run `run_id`'s, or every run's for `None`.
pub fn clean(target: CleanTarget, run_id: Option<&str>, kube_args: &KubeArgs) -> Result<Cleaned> {
    match target {
        CleanTarget::Lab => {
            let cleaned = lab::clean(run_id)?;
            Ok(Cleaned {
                ended: cleaned
                    .ended
                    .iter()
                    .map(|e| {
                        format!(
                            "ended process {} ({}{})",
                            e.pid,
                            e.command,
                            if e.killed {
                                "; SIGKILL, it outlived SIGTERM"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect(),
                namespaces: cleaned.namespaces,
            })
        }
        CleanTarget::Kube => {
            let rt = kube::runtime()?;
            let (namespaces, objects) = rt
                .block_on(async {
                    let (client, _) = kube::connect(
                        kube_args.kubeconfig.as_deref(),
                        kube_args.context.as_deref(),
                    )
                    .await?;
                    let (t, steps) = (Tuning::default(), progress::SetupBars::stderr());
                    match &kube_args.namespace {
                        Some(ns) => driver::clean_in(&client, run_id, ns, &t, &steps)
                            .await
                            .map(|n| (Vec::new(), Some((ns.clone(), n)))),
                        None => driver::clean(&client, run_id, &t, &steps)
                            .await
                            .map(|names| (names, None)),
                    }
                })
                .map_err(AppError::KubeClean)?;
            Ok(Cleaned {
                ended: objects
                    .filter(|(_, n)| *n > 0)
                    .map(|(ns, n)| format!("deleted {n} cnibench objects in namespace {ns} (kept: it was created beforehand)"))
                    .into_iter()
                    .collect(),
                namespaces,
            })
        }
    }
}
