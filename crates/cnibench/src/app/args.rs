//! The option groups of the command line that `run` and `plan` share (clap derive, the
//! raw layer): strings and numbers as typed, validated by [`super`] into a suite, a
//! stopping rule and [`super::BackendSettings`]. The binary flattens them into its
//! subcommands.
//!
//! The field docs are the `--help` text, where `<run-id>` is literal, not HTML.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::backend::fake::FailAt;
use crate::backend::kube::objects::ServiceMode;

/// Where a run's points run (`--backend`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// Deterministic simulated results (no privileges; for tests and demos).
    Fake,
    /// Real netload processes on 127.0.0.1.
    Loopback,
    /// Real netload processes in a lab of network namespaces, one per point (root).
    Lab,
    /// Pods on a Kubernetes cluster (kubeconfig from the usual places).
    Kube,
}

/// Which cluster: the kubeconfig options (`run`, `plan`, `clean`).
#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// Kube: kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Kube: kubeconfig context (default: the current one).
    #[arg(long)]
    pub context: Option<String>,
    /// Kube: a namespace created beforehand to run in (`run`) or to clean (`clean`),
    /// instead of cnibench's own (for users who may not create namespaces); only
    /// cnibench's labelled objects in it are ever deleted, never the namespace.
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,
}

/// Which suite and which of its points (`run`, `plan`, `render`).
#[derive(Args, Debug, Clone)]
pub struct SuiteArgs {
    /// Built-in suite (thesis, quick) or path to a TOML suite file.
    #[arg(long, default_value = "quick")]
    pub suite: String,
    /// Run only these scenario ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip these scenario ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub skip: Vec<String>,
    /// Replace a parameter's values in every scenario it applies to, e.g. services=1,10,100.
    #[arg(long = "set", value_name = "KEY=V1,V2")]
    pub set: Vec<String>,
    /// Traffic generator of every point: netload, iperf3 (stream points only; the others
    /// are recorded as not applicable), or netload,iperf3 for both side by side (each
    /// point twice, one after the other, labelled tool=...). Same as --set tool=...
    #[arg(long, value_name = "TOOL[,TOOL]")]
    pub tool: Option<String>,
}

/// The backend and its settings (`run`, `plan`); validated into
/// [`super::BackendSettings`].
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Where to run the points (default: lab as root, loopback otherwise).
    #[arg(long, value_enum)]
    pub backend: Option<BackendKind>,
    /// Lab: inter-node datapath (routed, vxlan).
    #[arg(long, default_value = "routed")]
    pub profile: crate::backend::lab::Profile,
    /// Lab: service implementation (iptables, nftables, ipvs).
    #[arg(long, default_value = "iptables")]
    pub proxy: crate::backend::lab::ProxyMode,
    /// Lab: network policy implementation (iptables, nftables).
    #[arg(long, default_value = "iptables")]
    pub policy_mode: crate::backend::lab::PolicyMode,
    /// Lab: underlay MTU in bytes (pods get it less 50 with vxlan).
    #[arg(long, default_value_t = 1500)]
    pub mtu: u32,
    /// Lab: number of nodes. Kube: the two nodes to use, server first (`A,B`), instead of
    /// the first two schedulable workers.
    #[arg(long, default_value = "2")]
    pub nodes: String,
    /// Kube: which cluster.
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Kube: the netload image.
    #[arg(long, default_value_t = crate::backend::kube::objects::default_image())]
    pub image: String,
    /// Kube: how filler services get endpoints (selector: they select the server pods;
    /// endpointslice: selectorless, with EndpointSlices cnibench writes).
    #[arg(long, value_enum, default_value = "endpointslice")]
    pub service_mode: ServiceMode,
    /// Kube: most create requests in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: u16,
    /// netload binary (default: next to cnibench).
    #[arg(long, env = "NETLOAD")]
    pub netload: Option<PathBuf>,
    /// iperf3 binary for points with tool=iperf3 (default: iperf3 on PATH).
    #[arg(long, env = "IPERF3")]
    pub iperf3: Option<PathBuf>,
    /// Seed of the fake backend.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fake backend: fail at `POINT_SUBSTRING@REP` (for tests).
    #[arg(long, hide = true)]
    pub fake_fail: Option<FailAt>,
    /// Fake backend: real milliseconds per repetition (for tests).
    #[arg(long, hide = true, default_value_t = 0)]
    pub fake_delay_ms: u64,
    /// Fake backend: noise scale (1 = default; larger imitates a loaded machine).
    #[arg(long, hide = true, default_value_t = 1.0)]
    pub fake_noise: f64,
}

/// The stopping rule and the warm-up (`run`, `plan`); validated into a
/// [`crate::stats::StopRule`] and [`crate::plan::Warmup`].
#[derive(Args, Debug, Clone)]
pub struct RuleArgs {
    /// Target relative half-width of the 95% CI of the mean, percent.
    #[arg(long, default_value_t = 2.5)]
    pub ci_target: f64,
    /// Fewest measured repetitions per point.
    #[arg(long, default_value_t = 3)]
    pub min_reps: usize,
    /// Most measured repetitions per point.
    #[arg(long, default_value_t = 12)]
    pub max_reps: usize,
    /// Wall-time budget per point (seconds, or with a unit: 90s, 10m).
    #[arg(long, default_value = "10m")]
    pub time_budget: String,
    /// Warm-up repetitions per point (discarded).
    #[arg(long, default_value_t = 1)]
    pub warmup: u32,
    /// Length cap of a warm-up repetition (whole seconds, e.g. 2s), or `full` for as long
    /// as a measured repetition. A warm-up only brings the path up; it is never measured.
    #[arg(long, default_value = "2s")]
    pub warmup_time: String,
}

/// `cnibench run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The suite and its points.
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// The backend and its settings.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// The stopping rule and the warm-up.
    #[command(flatten)]
    pub rule: RuleArgs,
    /// Run directory (default: results/<run-id>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A label for the run, e.g. the CNI and its version.
    #[arg(long)]
    pub label: Option<String>,
    /// Continue an interrupted run in this directory (suite, rule and backend come from it).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["out", "suite", "only", "skip", "set", "tool"])]
    pub resume: Option<PathBuf>,
}

/// `cnibench plan`.
#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The suite and its points.
    #[command(flatten)]
    pub suite: SuiteArgs,
    /// The backend and its settings.
    #[command(flatten)]
    pub backend: BackendArgs,
    /// The stopping rule and the warm-up.
    #[command(flatten)]
    pub rule: RuleArgs,
}

/// An output format of `report` and `compare`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned terminal table.
    Table,
    /// Markdown.
    Markdown,
    /// CSV.
    Csv,
    /// Self-contained HTML with SVG charts.
    Html,
}
