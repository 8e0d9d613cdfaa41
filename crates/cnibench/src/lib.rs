//! cnibench: runs suites of CNI benchmark scenarios with netload and reports them.
//!
//! Main types: [`suite::Suite`] (validated suite) expanded into [`scenario::Point`]s,
//! [`backend::Backend`] (where points run), [`runner::run`] (repetitions until the
//! [`stats::StopRule`] holds), [`results::RunDir`] (crash-safe JSONL store) and
//! [`report`] (table, Markdown, CSV, HTML, compare).
//!
//! Layout:
//! - [`app`]: what each command does (run, resume, plan, report, compare, import,
//!   clean) between the command line and the modules below; typed backend settings;
//! - [`scenario`]: the typed scenario model (pure);
//! - [`suite`]: presets, TOML suite files, CLI overrides, expansion into points (pure);
//! - [`plan`]: the expanded plan and its estimated wall time (pure);
//! - [`stats`]: descriptive statistics, stopping rule, Welch's t-test (pure);
//! - [`stats::stationarity`]: level shifts, trends and two modes in a point's repetitions (pure);
//! - [`metrics`]: metric catalogue and extraction from netload's JSON (pure);
//! - [`results`]: run directory, `meta.json`, `results.jsonl`, `summary.json`, resume;
//! - [`backend`]: the `Backend` trait and one folder per backend: `fake`, `loopback`,
//!   `lab` (a small cluster of network namespaces on this host: datapath, services,
//!   policies, self-checks, clean-up), `kube` (Kubernetes objects, rendering and the
//!   cluster backend's operations); `backend::tool` drives netload and iperf3;
//! - [`carryover`]: what a repetition starts from (`TIME_WAIT` sockets, conntrack entries);
//! - [`runner`]: the repetition loop; cancellation (Ctrl-C) through [`backend::Cancel`];
//! - [`scaling`]: every scale point as a ratio to the smallest of its sweep, with CIs (pure);
//! - [`progress`]: indicatif progress bars (a [`runner::Observer`]);
//! - [`report`]: renderers returning strings (pure), `compare`, iperf3 import;
//! - [`host`]: host facts for `meta.json`;
//! - [`child`]: started processes die with cnibench; ending what a killed run left;
//! - [`clock`]: the one owner of time.
//!
//! `main.rs` parses the command line (clap) and calls one [`app`] function per command.

pub mod app;
pub mod backend;
pub mod carryover;
pub mod child;
pub mod clock;
pub mod host;
pub mod metrics;
pub mod plan;
pub mod progress;
pub mod report;
pub mod results;
pub mod runner;
pub mod scaling;
pub mod scenario;
pub mod stats;
pub mod suite;
