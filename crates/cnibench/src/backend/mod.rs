//! Where points run: the [`Backend`] trait and its implementations.
//!
//! One folder per backend, each holding its adapter and its internals:
//!
//! - [`fake`]: deterministic seeded results, no privileges; drives end-to-end tests;
//! - [`loopback`]: real `netload` processes on 127.0.0.1; points that need topology or
//!   cluster objects are reported as not applicable;
//! - [`lab`]: real `netload` processes in a lab of network namespaces per point (root);
//!   the datapath library and [`lab::adapter`];
//! - [`kube`]: real pods on a Kubernetes cluster through kube-rs; objects, rendering,
//!   API operations and [`kube::adapter`].
//!
//! [`tool`] drives the tools the backends run (processes, netload, iperf3); it imports no
//! backend.

pub mod fake;
pub mod kube;
pub mod lab;
pub mod loopback;
pub mod tool;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::carryover::StartState;
use crate::metrics::Metrics;
use crate::scenario::Point;

/// Whether a backend can run a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Environment prepared; repetitions may run.
    Ready,
    /// The backend cannot reproduce this point; the reason is recorded.
    NotApplicable(String),
    /// The datapath ignores what the point is about (a CNI that does not enforce
    /// NetworkPolicy): measuring it would time another datapath; the evidence is recorded.
    NotEnforced(String),
}

/// What one repetition produced.
#[derive(Debug, Clone, PartialEq)]
pub struct RepOutcome {
    /// Metrics extracted from the raw output.
    pub metrics: Metrics,
    /// The tool's JSON output, untouched.
    pub raw: serde_json::Value,
}

/// A shared cancellation flag, set by Ctrl-C.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag set from outside (e.g. registered with signal-hook).
    pub fn from_flag(flag: Arc<AtomicBool>) -> Self {
        Cancel(flag)
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Failures of a backend.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The tool or backend does not support this workload (yet); the point is recorded as
    /// not applicable.
    #[error("{what} is not supported: {reason}")]
    NotSupported {
        /// The workload or feature.
        what: String,
        /// Why.
        reason: String,
    },
    /// The repetition was cancelled (Ctrl-C).
    #[error("cancelled")]
    Cancelled,
    /// A tool binary could not be found.
    #[error("{tool} binary not found: {detail}")]
    ToolMissing {
        /// The tool.
        tool: String,
        /// Where it was looked for and how to point at it.
        detail: String,
    },
    /// A tool could not be started.
    #[error("cannot start {tool} ({path}): {source}")]
    Spawn {
        /// The tool.
        tool: String,
        /// The binary.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        /// The command.
        tool: String,
        /// Exit status.
        status: String,
        /// The end of its stderr.
        stderr: String,
    },
    /// A tool did not finish in time.
    #[error("{tool} did not finish within {seconds} s")]
    Timeout {
        /// The command.
        tool: String,
        /// The limit.
        seconds: u64,
    },
    /// The tool's output could not be read.
    #[error("cannot read {tool} output: {message}")]
    Output {
        /// The command.
        tool: String,
        /// What is wrong.
        message: String,
    },
    /// An environment operation failed.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The Kubernetes API or cluster failed (after retries), or a wait timed out.
    #[error("kube: {0}")]
    Kube(String),
    /// A failure injected by the fake backend for tests.
    #[error("injected failure at point {point} repetition {rep}")]
    Injected {
        /// Point id.
        point: String,
        /// Repetition index.
        rep: u32,
    },
}

/// An environment that can run scenario points.
pub trait Backend {
    /// Name recorded in `meta.json`.
    fn name(&self) -> &'static str;

    /// Versions of the tools it drives, recorded in `meta.json`.
    fn tools(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Expected time to prepare and tear down `point` when `previous` ran before it
    /// (`None`: it is the first), for `cnibench plan`; a backend that keeps objects
    /// between points counts only the difference.
    fn setup_estimate(&self, _previous: Option<&Point>, _point: &Point) -> Duration {
        Duration::ZERO
    }

    /// Expected time to remove what is left after the last point `last` (for `cnibench
    /// plan`; zero for backends that clean up per point).
    fn finish_estimate(&self, _last: Option<&Point>) -> Duration {
        Duration::ZERO
    }

    /// Expected process start-up and collection overhead of one repetition.
    fn rep_overhead(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether the backend can run the point at all, without preparing anything.
    fn applicability(&self, point: &Point) -> Readiness;

    /// Creates the point's environment (objects, namespaces, servers...).
    fn prepare(&mut self, point: &Point) -> Result<Readiness, BackendError>;

    /// Brings the prepared point back to the state its first repetition started from, as
    /// far as the backend can (the lab flushes the connection tracking of its own
    /// namespaces), and reports what the next repetition starts from. `None`: the backend
    /// cannot observe it (the fake, a cluster without access to the pods' namespaces).
    fn start_state(&mut self, _point: &Point) -> Result<Option<StartState>, BackendError> {
        Ok(None)
    }

    /// Runs one repetition of the point's workload.
    fn run_rep(
        &mut self,
        point: &Point,
        rep: u32,
        cancel: &Cancel,
    ) -> Result<RepOutcome, BackendError>;

    /// Removes everything `prepare` and `run_rep` created. Called after every prepared
    /// point: on success, on error and on Ctrl-C. Must be idempotent.
    fn teardown(&mut self, point: &Point) -> Result<(), BackendError>;

    /// Where to report the steps of a long setup (the run loop passes its own before the
    /// first point); a backend whose setup is quick ignores it.
    fn set_setup_progress(&mut self, _progress: Arc<dyn SetupProgress>) {}
}

/// Progress of one long setup step of a backend (objects created or deleted, a wait):
/// the backend counts, the run loop draws it.
pub trait Step: Send + Sync {
    /// `n` more units are done.
    fn inc(&self, n: u64);
    /// What the step is doing now.
    fn set_message(&self, message: String);
    /// The step is over and no longer shown.
    fn finish(&self);
}

/// Where a backend reports its setup steps (see [`Backend::set_setup_progress`]); the run
/// loop renders them ([`crate::progress`]).
pub trait SetupProgress: Send + Sync {
    /// Starts a step of `len` units (`None`: a wait of unknown length) described by `what`.
    fn step(&self, len: Option<u64>, what: &str) -> Box<dyn Step>;
}

/// Setup progress nobody sees: tests, and a backend before the run loop gave it its own.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl SetupProgress for NoProgress {
    fn step(&self, _len: Option<u64>, _what: &str) -> Box<dyn Step> {
        Box::new(NoProgress)
    }
}

impl Step for NoProgress {
    fn inc(&self, _n: u64) {}
    fn set_message(&self, _message: String) {}
    fn finish(&self) {}
}
