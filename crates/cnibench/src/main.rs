//! `cnibench` command line: parses arguments and calls the library.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use cnibench::backend::fake::{FailAt, FakeBackend};
use cnibench::backend::iperf3;
use cnibench::backend::lab::{LabBackend, LabOptions};
use cnibench::backend::loopback::{LoopbackBackend, locate_netload};
use cnibench::backend::{Backend, Cancel, Readiness};
use cnibench::kube::backend::{KubeBackend, KubeOptions};
use cnibench::kube::cluster::Tuning;
use cnibench::kube::objects::ServiceMode;
use cnibench::results::{LoadedRun, Meta, RunDir};
use cnibench::runner::{self, RunConfig};
use cnibench::stats::StopRule;
use cnibench::suite::{self, Overrides, Suite, presets};
use cnibench::{clock, host, plan, progress, report};

/// Kubernetes CNI benchmarks driven by netload: suites, repetitions until the confidence
/// interval is tight, crash-safe results, reports and comparisons.
#[derive(Parser, Debug)]
#[command(name = "cnibench", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a suite (or continue one with --resume) and write a run directory.
    Run(RunArgs),
    /// Print the expanded points of a suite and the estimated wall time.
    Plan(PlanArgs),
    /// Render a run directory: terminal table, Markdown, CSV, HTML.
    Report(ReportArgs),
    /// Compare runs point by point (Welch's t-test on the repetitions).
    Compare(CompareArgs),
    /// Turn `iperf3 -J` results (one file per repetition) into a run directory.
    #[command(name = "import-iperf3")]
    ImportIperf3(ImportArgs),
    /// Remove what runs left behind: the processes still running in lab namespaces (TERM,
    /// then KILL after 2 s), then the namespaces (links, rules, sets with them), or with
    /// `--backend kube` the cluster namespaces labelled by cnibench.
    Clean(CleanArgs),
    /// Write the Kubernetes objects the kube backend applies, as YAML (one file per point).
    Render(RenderArgs),
    /// Print a built-in suite as TOML (a starting point for your own suite file).
    Suite {
        /// Built-in suite name.
        #[arg(default_value = "thesis", value_parser = ["thesis", "quick"])]
        name: String,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BackendKind {
    /// Deterministic simulated results (no privileges; for tests and demos).
    Fake,
    /// Real netload processes on 127.0.0.1.
    Loopback,
    /// Real netload processes in a lab of network namespaces, one per point (root).
    Lab,
    /// Pods on a Kubernetes cluster (kubeconfig from the usual places).
    Kube,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum CleanBackend {
    /// Lab namespaces on this host.
    Lab,
    /// Labelled namespaces on the cluster of the kubeconfig.
    Kube,
}

#[derive(Args, Debug, Clone)]
struct KubeArgs {
    /// Kube: kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kube: kubeconfig context (default: the current one).
    #[arg(long)]
    context: Option<String>,
}

#[derive(Args, Debug)]
struct RenderArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    /// Output directory (files are replaced; `manifests` holds `--suite thesis --sample`).
    #[arg(long)]
    out: PathBuf,
    /// Only a small representative set: per scenario its smallest point with every object
    /// kind, plus the points with the largest counts (without their scale files).
    #[arg(long)]
    sample: bool,
    /// The netload image.
    #[arg(long, default_value_t = cnibench::kube::objects::default_image())]
    image: String,
    /// How filler services get endpoints (selector, endpointslice).
    #[arg(long, value_enum, default_value = "endpointslice")]
    service_mode: ServiceMode,
}
#[derive(Args, Debug)]
struct CleanArgs {
    /// The cnibench run id whose leftovers to remove (its `meta.json` `run_id`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    run_id: Option<String>,
    /// Remove the leftovers of every run (lab: every `cnb-` namespace; kube: every
    /// namespace labelled app.kubernetes.io/managed-by=cnibench).
    #[arg(long)]
    all: bool,
    /// What to clean: the lab on this host, or the cluster.
    #[arg(long, value_enum, default_value = "lab")]
    backend: CleanBackend,
    #[command(flatten)]
    kube: KubeArgs,
}

#[derive(Args, Debug, Clone)]
struct SuiteArgs {
    /// Built-in suite (thesis, quick) or path to a TOML suite file.
    #[arg(long, default_value = "quick")]
    suite: String,
    /// Run only these scenario ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Skip these scenario ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Replace a parameter's values in every scenario it applies to, e.g. services=1,10,100.
    #[arg(long = "set", value_name = "KEY=V1,V2")]
    set: Vec<String>,
    /// Traffic generator of every point: netload, iperf3 (stream points only; the others
    /// are recorded as not applicable), or netload,iperf3 for both side by side (each
    /// point twice, one after the other, labelled tool=...). Same as --set tool=...
    #[arg(long, value_name = "TOOL[,TOOL]")]
    tool: Option<String>,
}

#[derive(Args, Debug, Clone)]
struct BackendArgs {
    /// Where to run the points (default: lab as root, loopback otherwise).
    #[arg(long, value_enum)]
    backend: Option<BackendKind>,
    /// Lab: inter-node datapath (routed, vxlan).
    #[arg(long, default_value = "routed")]
    profile: cnibench::lab::Profile,
    /// Lab: service implementation (iptables, nftables, ipvs).
    #[arg(long, default_value = "iptables")]
    proxy: cnibench::lab::ProxyMode,
    /// Lab: network policy implementation (iptables, nftables).
    #[arg(long, default_value = "iptables")]
    policy_mode: cnibench::lab::PolicyMode,
    /// Lab: underlay MTU in bytes (pods get it less 50 with vxlan).
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Lab: number of nodes. Kube: the two nodes to use, server first (`A,B`), instead of
    /// the first two schedulable workers.
    #[arg(long, default_value = "2")]
    nodes: String,
    #[command(flatten)]
    kube: KubeArgs,
    /// Kube: the netload image.
    #[arg(long, default_value_t = cnibench::kube::objects::default_image())]
    image: String,
    /// Kube: how filler services get endpoints (selector: they select the server pods;
    /// endpointslice: selectorless, with EndpointSlices cnibench writes).
    #[arg(long, value_enum, default_value = "endpointslice")]
    service_mode: ServiceMode,
    /// Kube: most create requests in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    concurrency: u16,
    /// netload binary (default: next to cnibench).
    #[arg(long, env = "NETLOAD")]
    netload: Option<PathBuf>,
    /// iperf3 binary for points with tool=iperf3 (default: iperf3 on PATH).
    #[arg(long, env = "IPERF3")]
    iperf3: Option<PathBuf>,
    /// Seed of the fake backend.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Fake backend: fail at `POINT_SUBSTRING@REP` (for tests).
    #[arg(long, hide = true)]
    fake_fail: Option<FailAt>,
    /// Fake backend: real milliseconds per repetition (for tests).
    #[arg(long, hide = true, default_value_t = 0)]
    fake_delay_ms: u64,
    /// Fake backend: noise scale (1 = default; larger imitates a loaded machine).
    #[arg(long, hide = true, default_value_t = 1.0)]
    fake_noise: f64,
}

#[derive(Args, Debug, Clone)]
struct RuleArgs {
    /// Target relative half-width of the 95% CI of the mean, percent.
    #[arg(long, default_value_t = 2.5)]
    ci_target: f64,
    /// Fewest measured repetitions per point.
    #[arg(long, default_value_t = 3)]
    min_reps: usize,
    /// Most measured repetitions per point.
    #[arg(long, default_value_t = 12)]
    max_reps: usize,
    /// Wall-time budget per point (seconds, or with a unit: 90s, 10m).
    #[arg(long, default_value = "10m")]
    time_budget: String,
    /// Warm-up repetitions per point (discarded).
    #[arg(long, default_value_t = 1)]
    warmup: u32,
    /// Length cap of a warm-up repetition (whole seconds, e.g. 2s), or `full` for as long
    /// as a measured repetition. A warm-up only brings the path up; it is never measured.
    #[arg(long, default_value = "2s")]
    warmup_time: String,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    rule: RuleArgs,
    /// Run directory (default: results/<run-id>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A label for the run, e.g. the CNI and its version.
    #[arg(long)]
    label: Option<String>,
    /// Continue an interrupted run in this directory (suite, rule and backend come from it).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "suite", "only", "skip", "set", "tool"])]
    resume: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct PlanArgs {
    #[command(flatten)]
    suite: SuiteArgs,
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    rule: RuleArgs,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Aligned terminal table.
    Table,
    /// Markdown.
    Markdown,
    /// CSV.
    Csv,
    /// Self-contained HTML with SVG charts.
    Html,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// The run directory.
    run_dir: PathBuf,
    /// Print this format to stdout (default: the table, and write report.md, report.csv and
    /// report.html into the run directory).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Run directories; the first is the reference.
    #[arg(required = true, num_args = 2..)]
    runs: Vec<PathBuf>,
    /// Output format printed to stdout (table, markdown, csv, html).
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Also write the comparison as one self-contained HTML page (ratio chart, sweeps of
    /// every run overlaid, the full table) to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ImportArgs {
    /// `iperf3 -J` output files, one repetition each.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Point id to file the results under, e.g. baseline/workload=tcp to compare with a
    /// netload run's baseline.
    #[arg(long = "as", value_name = "NAME")]
    name: String,
    /// Run directory (default: results/<stamp>-iperf3).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A label for the run.
    #[arg(long)]
    label: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cmd_run(&a),
        Command::Plan(a) => cmd_plan(&a).map(|()| ExitCode::SUCCESS),
        Command::Report(a) => cmd_report(&a).map(|()| ExitCode::SUCCESS),
        Command::Compare(a) => cmd_compare(&a).map(|()| ExitCode::SUCCESS),
        Command::ImportIperf3(a) => cmd_import(a).map(|()| ExitCode::SUCCESS),
        Command::Clean(a) => cmd_clean(&a).map(|()| ExitCode::SUCCESS),
        Command::Render(a) => cmd_render(&a).map(|()| ExitCode::SUCCESS),
        Command::Suite { name } => {
            print!("{}", presets::text(&name).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cnibench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_suite(a: &SuiteArgs) -> Result<Suite> {
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
fn warmup_time(a: &RuleArgs) -> Result<Option<f64>> {
    if a.warmup_time == "full" {
        return Ok(None);
    }
    let s = suite::params::parse_seconds(&a.warmup_time)
        .map_err(|e| anyhow::anyhow!("--warmup-time: {e} (or `full`)"))?;
    if !(s > 0.0 && s <= 3600.0) {
        bail!(
            "--warmup-time: {} is out of range (seconds from 1 to 3600, or `full`)",
            a.warmup_time
        );
    }
    Ok(Some(s.ceil()))
}

fn rule(a: &RuleArgs) -> Result<StopRule> {
    let budget = suite::params::parse_seconds(&a.time_budget)
        .map_err(|e| anyhow::anyhow!("--time-budget: {e}"))?;
    if !(a.ci_target > 0.0 && a.ci_target < 100.0) {
        bail!(
            "--ci-target: {} is out of range (a percentage between 0 and 100, e.g. 2.5)",
            a.ci_target
        );
    }
    if a.min_reps < 2 || a.max_reps < a.min_reps {
        bail!(
            "--min-reps {} / --max-reps {}: need 2 <= min-reps <= max-reps",
            a.min_reps,
            a.max_reps
        );
    }
    Ok(StopRule {
        ci_target: a.ci_target / 100.0,
        min_reps: a.min_reps,
        max_reps: a.max_reps,
        time_budget_s: budget,
    })
}

/// The backend `--backend` names; without it, lab as root and loopback otherwise.
fn backend_kind(a: &BackendArgs) -> BackendKind {
    a.backend.unwrap_or_else(|| {
        if cnibench::lab::check_root().is_ok() {
            BackendKind::Lab
        } else {
            BackendKind::Loopback
        }
    })
}

fn lab_options(a: &BackendArgs) -> Result<LabOptions> {
    Ok(LabOptions {
        profile: a.profile,
        proxy: a.proxy,
        policy_mode: a.policy_mode,
        mtu: a.mtu,
        nodes: a.nodes.parse().map_err(|_| {
            anyhow::anyhow!(
                "--nodes {}: the lab wants a number of nodes (node names are for --backend kube)",
                a.nodes
            )
        })?,
    })
}

fn kube_options(a: &BackendArgs) -> KubeOptions {
    // A bare count (the lab's default "2") means: let the preflight choose.
    let nodes = if a.nodes.chars().all(|c| c.is_ascii_digit()) {
        Vec::new()
    } else {
        a.nodes
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
        tuning: Tuning {
            concurrency: usize::from(a.concurrency),
            ..Tuning::default()
        },
    }
}

/// The backend for `points`; iperf3 is looked for only when a point needs it, and a
/// missing one is an error before anything is created.
fn backend(
    kind: BackendKind,
    a: &BackendArgs,
    run_id: &str,
    points: &[cnibench::scenario::Point],
    cancel: &Cancel,
) -> Result<Box<dyn Backend>> {
    let iperf3 = || -> Result<Option<(PathBuf, String)>> {
        if kind == BackendKind::Fake || !iperf3::needed(points) {
            return Ok(None);
        }
        Ok(Some(iperf3::locate(a.iperf3.as_deref())?))
    };
    Ok(match kind {
        BackendKind::Fake => {
            let mut f = FakeBackend::new(a.seed);
            f.fail.clone_from(&a.fake_fail);
            f.delay = Duration::from_millis(a.fake_delay_ms);
            f.noise = a.fake_noise;
            Box::new(f)
        }
        BackendKind::Loopback => {
            let path = locate_netload(a.netload.as_deref())?;
            let mut b = LoopbackBackend::new(path)?;
            if let Some(i) = iperf3()? {
                b = b.with_iperf3(i);
            }
            Box::new(b)
        }
        BackendKind::Lab => {
            let path = locate_netload(a.netload.as_deref())?;
            let mut b = LabBackend::new(path, lab_options(a)?, run_id)?;
            if let Some(i) = iperf3()? {
                b = b.with_iperf3(i);
            }
            Box::new(b)
        }
        BackendKind::Kube => Box::new(
            KubeBackend::connect(&kube_options(a), run_id, cancel.clone())
                .context("kube backend")?,
        ),
    })
}

fn cmd_clean(a: &CleanArgs) -> Result<()> {
    let run_id = if a.all { None } else { a.run_id.as_deref() };
    let removed = match a.backend {
        CleanBackend::Lab => {
            let cleaned = cnibench::backend::lab::clean(run_id)?;
            for e in &cleaned.ended {
                println!(
                    "ended process {} ({}{})",
                    e.pid,
                    e.command,
                    if e.killed {
                        "; SIGKILL, it outlived SIGTERM"
                    } else {
                        ""
                    }
                );
            }
            cleaned.namespaces
        }
        CleanBackend::Kube => {
            let rt = cnibench::kube::backend::runtime()?;
            rt.block_on(async {
                let (client, _) = cnibench::kube::backend::connect(
                    a.kube.kubeconfig.as_deref(),
                    a.kube.context.as_deref(),
                )
                .await?;
                cnibench::kube::backend::clean(&client, run_id, &Tuning::default(), true).await
            })
            .context("kube clean")?
        }
    };
    if removed.is_empty() {
        println!("nothing to clean");
    } else {
        println!(
            "removed {} namespaces: {}",
            removed.len(),
            removed.join(" ")
        );
    }
    Ok(())
}

fn cmd_render(a: &RenderArgs) -> Result<()> {
    let suite = load_suite(&a.suite)?;
    let points = suite::expand(&suite)?;
    let settings = cnibench::kube::render::render_settings(a.image.clone(), a.service_mode);
    let (files, rendered) = if a.sample {
        let sample = cnibench::kube::render::render_sample(&suite.name, &points, &settings)?;
        for (id, pick) in &sample.picks {
            let why: Vec<String> = pick.reasons.iter().map(ToString::to_string).collect();
            eprintln!("sample: {id} ({})", why.join("; "));
        }
        (sample.files, sample.picks.len())
    } else {
        let files = cnibench::kube::render::render(&suite.name, &points, &settings)?;
        (files, points.len())
    };
    cnibench::kube::render::write(&a.out, &files)?;
    let bytes: usize = files.iter().map(|f| f.text.len()).sum();
    eprintln!(
        "wrote {} files ({rendered} of {} points, {:.1} MB) under {}",
        files.len(),
        points.len(),
        bytes as f64 / 1e6,
        a.out.display()
    );
    Ok(())
}

fn cmd_plan(a: &PlanArgs) -> Result<()> {
    let suite = load_suite(&a.suite)?;
    let points = suite::expand(&suite)?;
    let rule = rule(&a.rule)?;
    let warmup = plan::Warmup {
        reps: a.rule.warmup,
        secs: warmup_time(&a.rule)?,
    };
    // Planning needs no tools: a loopback plan without netload still shows what applies.
    let kind = backend_kind(&a.backend);
    let backend: Option<Box<dyn Backend>> =
        match backend(kind, &a.backend, "plan", &points, &Cancel::default()) {
            Ok(b) => Some(b),
            Err(e) => {
                eprintln!("note: {e:#} (needed to run, not to plan)");
                None
            }
        };
    let notes: Vec<Option<String>> = points
        .iter()
        .map(|p| {
            let readiness = match (&backend, kind) {
                (Some(b), _) => b.applicability(p),
                (None, BackendKind::Loopback) => match iperf3::applicability(p) {
                    Readiness::Ready => cnibench::backend::loopback::applicability(p),
                    na @ Readiness::NotApplicable(_) => na,
                },
                (None, BackendKind::Lab) => match lab_options(&a.backend) {
                    Ok(o) => match iperf3::applicability(p) {
                        Readiness::Ready => cnibench::backend::lab::applicability(p, &o),
                        na @ Readiness::NotApplicable(_) => na,
                    },
                    Err(e) => Readiness::NotApplicable(e.to_string()),
                },
                (None, BackendKind::Fake) => iperf3::applicability(p),
                (None, BackendKind::Kube) => cnibench::kube::backend::tool_applicability(p),
            };
            match readiness {
                Readiness::NotApplicable(why) => Some(format!("not applicable: {why}")),
                Readiness::Ready => None,
            }
        })
        .collect();
    // A backend that keeps objects between points is estimated from the point run
    // before each one (not-applicable points are skipped, they prepare nothing).
    let mut previous: Option<&cnibench::scenario::Point> = None;
    let mut estimates: Vec<plan::Estimate> = Vec::with_capacity(points.len());
    for (p, note) in points.iter().zip(&notes) {
        let (setup, overhead) = backend.as_ref().map_or_else(
            || match kind {
                // The estimate needs no cluster.
                BackendKind::Kube => (
                    cnibench::kube::backend::setup_estimate(previous, p, a.backend.service_mode),
                    Duration::from_millis(300),
                ),
                _ => (Duration::ZERO, Duration::from_millis(200)),
            },
            |b| (b.setup_estimate(previous, p), b.rep_overhead()),
        );
        estimates.push(plan::estimate(p, &rule, warmup, setup, overhead));
        if note.is_none() {
            previous = Some(p);
        }
    }
    let finish = match (&backend, kind) {
        (Some(b), _) => b.finish_estimate(previous),
        (None, BackendKind::Kube) => {
            cnibench::kube::backend::finish_estimate(previous, a.backend.service_mode)
        }
        (None, _) => Duration::ZERO,
    };
    println!(
        "suite {} ({}), backend {}\n",
        suite.name,
        suite.description,
        format!("{kind:?}").to_lowercase()
    );
    print!("{}", plan::render(&points, &estimates, &notes, finish));
    Ok(())
}

fn run_id(suite: &str, label: Option<&str>) -> String {
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

fn cmd_run(a: &RunArgs) -> Result<ExitCode> {
    let cancel_flag = Arc::new(AtomicBool::new(false));
    // A second Ctrl-C exits at once (exit status 130); the first asks for a clean stop.
    signal_hook::flag::register_conditional_shutdown(
        signal_hook::consts::SIGINT,
        130,
        Arc::clone(&cancel_flag),
    )
    .context("cannot install the Ctrl-C handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&cancel_flag))
        .context("cannot install the Ctrl-C handler")?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&cancel_flag))
        .context("cannot install the SIGTERM handler")?;
    let cancel = Cancel::from_flag(cancel_flag);

    let (dir, meta, prior, mut writer, mut backend) = if let Some(resume) = &a.resume {
        let (dir, loaded, writer) = RunDir::resume(resume)?;
        for w in &loaded.parsed.warnings {
            eprintln!("warning: {}: {w}", resume.display());
        }
        let kind = match loaded.meta.backend.as_str() {
            "fake" => BackendKind::Fake,
            "loopback" => BackendKind::Loopback,
            "lab" => BackendKind::Lab,
            "kube" => BackendKind::Kube,
            other => bail!(
                "{}: cannot resume a run of backend `{other}` with this cnibench",
                resume.display()
            ),
        };
        let mut args = a.backend.clone();
        let t = &loaded.meta.tools;
        if let Some(v) = t.get("lab_profile") {
            args.profile = v.parse()?;
        }
        if let Some(v) = t.get("lab_proxy") {
            args.proxy = v.parse()?;
        }
        if let Some(v) = t.get("lab_policy_mode") {
            args.policy_mode = v.parse()?;
        }
        if let Some(v) = t.get("lab_mtu") {
            args.mtu = v.parse()?;
        }
        if let Some(v) = t.get("lab_nodes") {
            args.nodes.clone_from(v);
        }
        if let Some(v) = t.get("kube_nodes") {
            args.nodes.clone_from(v);
        }
        if let Some(v) = t.get("kube_image") {
            args.image.clone_from(v);
        }
        if let Some(v) = t.get("kube_service_mode") {
            args.service_mode = ServiceMode::from_str(v, false).map_err(|e| anyhow::anyhow!(e))?;
        }
        let backend = backend(
            kind,
            &args,
            &loaded.meta.run_id,
            &loaded.meta.points,
            &cancel,
        )?;
        let LoadedRun { meta, parsed, .. } = loaded;
        eprintln!(
            "resuming {} ({} records so far)",
            dir.path.display(),
            parsed.records.len()
        );
        (dir, meta, parsed.records, writer, backend)
    } else {
        let suite = load_suite(&a.suite)?;
        let points = suite::expand(&suite)?;
        let rule = rule(&a.rule)?;
        let warmup_s = warmup_time(&a.rule)?;
        // Find the tools before creating anything on disk.
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
        let backend = backend(kind, &a.backend, &run_id, &points, &cancel)?;
        let out = a
            .out
            .clone()
            .unwrap_or_else(|| Path::new("results").join(&run_id));
        let mut tools = backend.tools();
        tools.insert("cnibench".into(), env!("CARGO_PKG_VERSION").into());
        let meta = Meta {
            format_version: cnibench::results::FORMAT_VERSION,
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
        let (dir, writer) = RunDir::create(&out, &meta)
            .with_context(|| format!("cannot start a run in {}", out.display()))?;
        eprintln!("run directory: {}", dir.path.display());
        (dir, meta, Vec::new(), writer, backend)
    };

    let config = RunConfig {
        rule: meta.rule,
        warmup_reps: meta.warmup_reps,
        warmup_s: meta.warmup_s,
    };
    let mut bars = progress::Progress::new(meta.points.len(), meta.rule, meta.warmup_reps);
    let outcome = runner::run(
        backend.as_mut(),
        &meta.points,
        &prior,
        &mut writer,
        &config,
        &cancel,
        &mut bars,
    );
    bars.finish();
    let outcome = outcome.context("results could not be written; the run stopped")?;

    let (_, loaded) = RunDir::open(&dir.path)?;
    let summary = loaded.summary();
    dir.write_summary(&summary)?;
    write_reports(&dir.path, &loaded, &summary)?;
    println!("{}", report::table::render(&loaded.meta, &summary));
    eprintln!(
        "results: {} (report.html, report.md, report.csv, summary.json)",
        dir.path.display()
    );
    if outcome.interrupted {
        eprintln!("{}", interrupted_note(&dir.path, &summary));
        return Ok(ExitCode::from(130));
    }
    if outcome.failed > 0 {
        eprintln!(
            "cnibench: {} point(s) failed (see the table); measured repetitions are kept; retry them with `cnibench run --resume {}`",
            outcome.failed,
            dir.path.display()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What Ctrl-C kept and how to go on: `--resume` skips finished points and continues an
/// unfinished one from its kept repetitions (after a fresh warm-up, see `runner`).
fn interrupted_note(dir: &Path, summary: &cnibench::results::RunSummary) -> String {
    let measured: usize = summary
        .points
        .iter()
        .filter_map(|p| p.primary_summary().map(|m| m.raw.len()))
        .sum();
    let finished = summary
        .points
        .iter()
        .filter(|p| {
            p.status
                .is_some_and(cnibench::results::PointStatus::is_final)
        })
        .count();
    let partial: Vec<&str> = summary
        .points
        .iter()
        .filter(|p| {
            !p.status
                .is_some_and(cnibench::results::PointStatus::is_final)
                && (p.warmups > 0 || !p.metrics.is_empty())
        })
        .map(|p| p.point.id.as_str())
        .collect();
    let mut text = format!(
        "interrupted: kept {measured} measured repetitions in {}; {finished} of {} points are finished and will be skipped",
        dir.join(cnibench::results::RESULTS).display(),
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

fn write_reports(
    dir: &Path,
    loaded: &LoadedRun,
    summary: &cnibench::results::RunSummary,
) -> Result<()> {
    // Charts of an earlier rendering that this one no longer draws must not linger.
    let charts = dir.join(report::markdown::CHARTS_DIR);
    if charts.is_dir() {
        for entry in std::fs::read_dir(&charts)
            .with_context(|| format!("cannot list {}", charts.display()))?
        {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "svg") {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
    }
    for (name, text) in report::files(&loaded.meta, summary, &loaded.parsed.records) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn open_run(path: &Path) -> Result<LoadedRun> {
    let (_, loaded) = RunDir::open(path)?;
    for w in &loaded.parsed.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    Ok(loaded)
}

fn cmd_report(a: &ReportArgs) -> Result<()> {
    let loaded = open_run(&a.run_dir)?;
    let summary = loaded.summary();
    match a.format {
        None => {
            write_reports(&a.run_dir, &loaded, &summary)?;
            print!("{}", report::table::render(&loaded.meta, &summary));
            eprintln!(
                "wrote report.html, report.md and report.csv in {}",
                a.run_dir.display()
            );
        }
        Some(Format::Table) => print!("{}", report::table::render(&loaded.meta, &summary)),
        Some(f @ (Format::Markdown | Format::Csv | Format::Html)) => {
            let name = match f {
                Format::Markdown => "report.md",
                Format::Csv => "report.csv",
                _ => "report.html",
            };
            let files = report::files(&loaded.meta, &summary, &loaded.parsed.records);
            let text = files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.as_str())
                .unwrap_or_default();
            print!("{text}");
        }
    }
    Ok(())
}

fn cmd_compare(a: &CompareArgs) -> Result<()> {
    let loaded = a
        .runs
        .iter()
        .map(|p| open_run(p))
        .collect::<Result<Vec<_>>>()?;
    let runs: Vec<_> = loaded.iter().map(LoadedRun::summary).collect();
    let metas: Vec<Meta> = loaded.into_iter().map(|l| l.meta).collect();
    let lines = report::compare::compare(&runs);
    match a.format {
        Format::Table => print!("{}", report::compare::render_table(&runs, &lines)),
        Format::Markdown => print!("{}", report::compare::render_markdown(&runs, &lines)),
        Format::Csv => print!("{}", report::compare::render_csv(&runs, &lines)),
        Format::Html => print!("{}", report::compare::render_html(&runs, &metas, &lines)),
    }
    if let Some(path) = &a.html {
        std::fs::write(path, report::compare::render_html(&runs, &metas, &lines))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn cmd_import(a: ImportArgs) -> Result<()> {
    let docs = a
        .files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            let json = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", f.display()))?;
            Ok((f.display().to_string(), json))
        })
        .collect::<Result<Vec<_>>>()?;
    let run_id = run_id("iperf3", a.label.as_deref().or(Some("iperf3")));
    let created = clock::utc_rfc3339(clock::wall_time().as_secs());
    let (mut meta, records) = report::iperf3::import(
        &docs,
        &a.name,
        &run_id,
        &created,
        a.label.clone(),
        host::host_info(),
    )?;
    meta.command = std::env::args().collect();
    let out = a.out.unwrap_or_else(|| Path::new("results").join(&run_id));
    let (dir, mut writer) = RunDir::create(&out, &meta)?;
    for r in &records {
        writer.append(r)?;
    }
    let summary = cnibench::results::summarize(&meta, &records, &[]);
    dir.write_summary(&summary)?;
    println!("{}", dir.path.display());
    Ok(())
}
