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
use crate::scenario::{
    Direction, HttpWorkload, Point, RateSearch, RrMode, RrWorkload, StreamWorkload,
};

/// Whether a backend can run a point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Environment prepared; repetitions may run.
    Ready,
    /// The backend cannot reproduce this point; the reason is recorded.
    NotApplicable(String),
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
}

/// The client and server cores a stream's threads are pinned to, `None` for the
/// scheduler.
pub fn stream_cores(s: &StreamWorkload) -> Option<(u16, u16)> {
    s.affinity.map(|a| a.cores(last_allowed_core()))
}

/// The highest-numbered core this process may run on (0 if that cannot be read): the
/// core [`crate::scenario::Affinity::SameCore`] means.
pub fn last_allowed_core() -> u16 {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return 0;
    };
    (0..nix::sched::CpuSet::count().min(usize::from(u16::MAX)))
        .rev()
        .find(|&c| set.is_set(c).unwrap_or(false))
        .map_or(0, |c| c as u16)
}

/// Command-line arguments of `netload tcp|udp HOST ... --json` for a stream workload.
pub fn stream_args(s: &StreamWorkload, host: &str, port: u16) -> Vec<String> {
    let mut a: Vec<String> = vec![
        if s.udp { "udp" } else { "tcp" }.into(),
        host.into(),
        "--port".into(),
        port.to_string(),
        "-t".into(),
        s.duration.0.to_string(),
        "--omit".into(),
        s.omit.0.to_string(),
        "-P".into(),
        s.streams.to_string(),
    ];
    match s.direction {
        Direction::Forward => {}
        Direction::Reverse => a.push("-R".into()),
        Direction::Bidir => a.push("--bidir".into()),
    }
    if let Some(l) = s.length {
        a.extend(["-l".into(), l.0.to_string()]);
    }
    if let Some(m) = s.mss {
        a.extend(["--mss".into(), m.to_string()]);
    }
    if s.nodelay {
        a.push("--nodelay".into());
    }
    if s.zerocopy != crate::scenario::Zerocopy::None {
        a.extend(["--zerocopy".into(), s.zerocopy.as_str().into()]);
    }
    if let Some((client, server)) = stream_cores(s) {
        a.extend(["--affinity".into(), format!("{client}/{server}")]);
    }
    if let Some(w) = s.window {
        a.extend(["-w".into(), w.0.to_string()]);
    }
    if let Some(search) = s.find_rate.filter(|_| s.udp) {
        // One repetition is one search: short trials to find the knee, then confirmations
        // of the workload's own duration (`-t`) at the rate found; `--omit` warms up every
        // trial.
        a.extend([
            "--find-rate".into(),
            search.loss_percent.to_string(),
            "--trial-time".into(),
            RateSearch::trial(s.duration).0.to_string(),
            "--confirm".into(),
            RateSearch::CONFIRMATIONS.to_string(),
            "--search-budget".into(),
            RateSearch::budget(s.duration).as_secs_f64().to_string(),
        ]);
    } else if s.udp {
        // netload's UDP default is 1G; always say what the suite asked for (0 = unlimited).
        a.extend(["--rate".into(), s.rate.0.to_string()]);
    }
    a.push("--json".into());
    a
}

/// Whether the stream server of `s` serves exactly one test (`netload server --once`): not
/// when the client searches for a no-drop rate, which runs one test per trial (the server
/// is then stopped by its guard once the client is done).
pub fn serves_one_test(s: &StreamWorkload) -> bool {
    !(s.udp && s.find_rate.is_some())
}

/// Command-line arguments of `netload rr HOST ... --json` for a request/response workload
/// (its responder is `netload rr-server`, see [`rr_server_args`]).
pub fn rr_args(r: &RrWorkload, host: &str, port: u16) -> Vec<String> {
    let mode = match r.mode {
        RrMode::TcpRr => "tcp-rr",
        RrMode::TcpCrr => "tcp-crr",
        RrMode::UdpRr => "udp-rr",
    };
    vec![
        "rr".into(),
        host.into(),
        "--port".into(),
        port.to_string(),
        "--mode".into(),
        mode.into(),
        "-t".into(),
        r.duration.0.to_string(),
        "--size".into(),
        r.size.0.to_string(),
        "--json".into(),
    ]
}

/// Command-line arguments of `netload http URL ... --json` for an HTTP workload. Every
/// request opens a new connection (`--new-connection`), as the thesis's curl did: service
/// balancers pin a connection to one backend, so keep-alive would measure one replica of R.
pub fn http_args(h: &HttpWorkload, url: &str) -> Vec<String> {
    vec![
        "http".into(),
        url.into(),
        "-c".into(),
        h.concurrency.to_string(),
        "-t".into(),
        h.duration.0.to_string(),
        "--new-connection".into(),
        "--json".into(),
    ]
}

/// Command-line arguments of the request/response responder.
pub fn rr_server_args(bind: &str, port: u16) -> Vec<String> {
    vec![
        "rr-server".into(),
        "--bind".into(),
        bind.into(),
        "--port".into(),
        port.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Affinity, BitsPerSec, Bytes, Seconds};

    #[test]
    fn stream_arguments() {
        let s = StreamWorkload {
            udp: false,
            duration: Seconds(2.0),
            omit: Seconds(0.5),
            streams: 4,
            length: Some(Bytes(65536)),
            mss: Some(1400),
            rate: BitsPerSec(0),
            direction: Direction::Reverse,
            nodelay: true,
            zerocopy: crate::scenario::Zerocopy::Sendfile,
            affinity: None,
            window: None,
            find_rate: None,
        };
        assert_eq!(
            stream_args(&s, "127.0.0.1", 9201).join(" "),
            "tcp 127.0.0.1 --port 9201 -t 2 --omit 0.5 -P 4 -R -l 65536 --mss 1400 --nodelay --zerocopy sendfile --json"
        );
        let pinned = StreamWorkload {
            affinity: Some(Affinity::Cores(0, 1)),
            window: Some(Bytes(4 << 20)),
            ..s.clone()
        };
        assert!(
            stream_args(&pinned, "h", 1)
                .join(" ")
                .ends_with("--affinity 0/1 -w 4194304 --json")
        );
        let last = last_allowed_core();
        let same = StreamWorkload {
            affinity: Some(Affinity::SameCore),
            ..s.clone()
        };
        assert!(
            stream_args(&same, "h", 1)
                .join(" ")
                .ends_with(&format!("--affinity {last}/{last} --json"))
        );
        assert!(!stream_args(&s, "h", 1).contains(&"--affinity".to_string()));
    }

    #[test]
    fn the_last_allowed_core_is_one_this_process_may_use() {
        let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
        let last = usize::from(last_allowed_core());
        assert!(set.is_set(last).unwrap());
        assert!((last + 1..nix::sched::CpuSet::count()).all(|c| !set.is_set(c).unwrap()));
    }

    #[test]
    fn udp_without_a_rate_searches_for_the_no_drop_rate() {
        let mut s = StreamWorkload {
            udp: true,
            duration: Seconds(4.0),
            omit: Seconds(1.0),
            streams: 2,
            length: Some(Bytes(64)),
            mss: None,
            rate: BitsPerSec(0),
            direction: Direction::Forward,
            nodelay: false,
            zerocopy: crate::scenario::Zerocopy::None,
            affinity: None,
            window: None,
            find_rate: Some(RateSearch { loss_percent: 1.0 }),
        };
        assert_eq!(
            stream_args(&s, "198.18.0.2", 9201).join(" "),
            "udp 198.18.0.2 --port 9201 -t 4 --omit 1 -P 2 -l 64 --find-rate 1 --trial-time 0.5 --confirm 1 --search-budget 16 --json"
        );
        s.find_rate = None;
        s.rate = BitsPerSec(500_000_000);
        assert!(
            stream_args(&s, "h", 1)
                .join(" ")
                .contains("--rate 500000000 --json")
        );
    }

    #[test]
    fn http_arguments_open_a_connection_per_request() {
        let h = HttpWorkload {
            file_size: Bytes(1_000_000),
            duration: Seconds(2.0),
            concurrency: 4,
        };
        assert_eq!(
            http_args(&h, "http://198.18.0.9:8080/").join(" "),
            "http http://198.18.0.9:8080/ -c 4 -t 2 --new-connection --json"
        );
    }
}
