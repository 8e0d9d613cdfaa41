//! `cnibench` command line: parses arguments, then one library call per command
//! ([`cnibench::app`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use cnibench::app::args::{Format, KubeArgs, PlanArgs, RunArgs, SuiteArgs};
use cnibench::app::run::RunEnd;
use cnibench::app::{self, CleanTarget};
use cnibench::backend::kube::objects::ServiceMode;
use cnibench::suite::{self, presets};

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
enum CleanBackend {
    /// Lab namespaces on this host.
    Lab,
    /// Labelled namespaces on the cluster of the kubeconfig.
    Kube,
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
    #[arg(long, default_value_t = cnibench::backend::kube::objects::default_image())]
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
    match dispatch(Cli::parse().command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cnibench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run(a) => {
            return Ok(match app::run::run(&a)? {
                RunEnd::Finished => ExitCode::SUCCESS,
                RunEnd::Failed => ExitCode::FAILURE,
                RunEnd::Interrupted => ExitCode::from(130),
            });
        }
        Command::Plan(a) => print!("{}", app::plan::plan(&a)?),
        Command::Report(a) => app::files::report(&a.run_dir, a.format)?,
        Command::Compare(a) => app::files::compare(&a.runs, a.format, a.html.as_deref())?,
        Command::ImportIperf3(a) => {
            let dir = app::files::import_iperf3(&a.files, &a.name, a.out, a.label)?;
            println!("{}", dir.display());
        }
        Command::Clean(a) => cmd_clean(&a)?,
        Command::Render(a) => cmd_render(&a)?,
        Command::Suite { name } => print!("{}", presets::text(&name).unwrap_or_default()),
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_clean(a: &CleanArgs) -> Result<()> {
    let target = match a.backend {
        CleanBackend::Lab => CleanTarget::Lab,
        CleanBackend::Kube => CleanTarget::Kube,
    };
    let cleaned = app::clean(
        target,
        if a.all { None } else { a.run_id.as_deref() },
        &a.kube,
    )?;
    for line in &cleaned.ended {
        println!("{line}");
    }
    if cleaned.namespaces.is_empty() {
        if cleaned.ended.is_empty() {
            println!("nothing to clean");
        }
    } else {
        println!(
            "removed {} namespaces: {}",
            cleaned.namespaces.len(),
            cleaned.namespaces.join(" ")
        );
    }
    Ok(())
}

fn cmd_render(a: &RenderArgs) -> Result<()> {
    let suite = app::load_suite(&a.suite)?;
    let points = suite::expand(&suite)?;
    let settings =
        cnibench::backend::kube::render::render_settings(a.image.clone(), a.service_mode);
    let (files, rendered) = if a.sample {
        let sample =
            cnibench::backend::kube::render::render_sample(&suite.name, &points, &settings)?;
        for (id, pick) in &sample.picks {
            let why: Vec<String> = pick.reasons.iter().map(ToString::to_string).collect();
            eprintln!("sample: {id} ({})", why.join("; "));
        }
        (sample.files, sample.picks.len())
    } else {
        let files = cnibench::backend::kube::render::render(&suite.name, &points, &settings)?;
        (files, points.len())
    };
    cnibench::backend::kube::render::write(&a.out, &files)?;
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
