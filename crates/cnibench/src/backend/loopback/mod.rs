//! Real netload processes on 127.0.0.1: no root, no cluster. A user's first minute and CI.
//!
//! Per repetition: pick a free port, start `netload server --once` on it, wait until the
//! kernel shows the port listening (bounded polling of `/proc/net/tcp`: connecting to
//! probe would spend the server's single session), run the client with `--json`, collect
//! its output and the server's exit. Points that need a second node, a service or cluster
//! objects cannot be reproduced on one loopback interface: they are reported as not
//! applicable, never approximated.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::tool::netload::{
    self, client_outcome, finish_client, rr_args, rr_server_args, serves_one_test, stream_args,
    stream_server_args,
};
use super::tool::proc::listening;
use super::tool::{LocalTools, iperf3};
use super::{Backend, BackendError, Cancel, Readiness, RepOutcome};
use crate::carryover::StartState;
use crate::scenario::{PathKind, Placement, Point, Tool, Workload};

/// The loopback backend.
#[derive(Debug)]
pub struct LoopbackBackend {
    tools: LocalTools,
    support: BTreeMap<&'static str, Option<String>>,
}

/// A port nobody listens on right now (the kernel's choice for an ephemeral bind).
fn free_port() -> Result<u16, BackendError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| BackendError::Io {
        action: "cannot find a free port on 127.0.0.1".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| BackendError::Io {
            action: "cannot read a bound address".into(),
            source,
        })
}

/// Whether one host without a cluster can run `point` (independent of the netload build).
pub fn applicability(point: &Point) -> Readiness {
    let o = point.objects;
    let mut needs = Vec::new();
    if point.topology.placement == Placement::Inter && !point.topology.host_network {
        needs.push("two nodes".to_string());
    }
    if point.topology.path == PathKind::Service || o.services > 0 {
        needs.push(format!("{} service(s)", o.services.max(1)));
    }
    if o.filler_pods > 0 || o.policies > 0 {
        needs.push(format!(
            "{} filler pods and {} network policies",
            o.filler_pods, o.policies
        ));
    }
    if o.replicas > 1 {
        needs.push(format!("{} server replicas", o.replicas));
    }
    if point.topology.mtu.is_some() {
        needs.push("an MTU setting".into());
    }
    if needs.is_empty() {
        Readiness::Ready
    } else {
        Readiness::NotApplicable(format!(
            "loopback has one host and no cluster; this point needs {} (use the lab or kube backend)",
            needs.join(", ")
        ))
    }
}

impl LoopbackBackend {
    /// A backend driving the netload binary at `netload` (see [`netload::locate`]).
    pub fn new(netload: PathBuf) -> Result<Self, BackendError> {
        Ok(LoopbackBackend {
            tools: LocalTools::new(netload)?,
            support: BTreeMap::new(),
        })
    }

    /// Measures the points whose tool is iperf3 with this binary (see [`iperf3::locate`]).
    #[must_use]
    pub fn with_iperf3(mut self, iperf3: (PathBuf, String)) -> Self {
        self.tools.iperf3 = Some(iperf3);
        self
    }

    /// Whether this netload build has a subcommand; `Some(reason)` when it has not.
    fn unsupported(&mut self, sub: &'static str) -> Result<Option<String>, BackendError> {
        if let Some(known) = self.support.get(sub) {
            return Ok(known.clone());
        }
        let verdict = netload::unsupported(&self.tools.netload, sub)?;
        self.support.insert(sub, verdict.clone());
        Ok(verdict)
    }
}

impl Backend for LoopbackBackend {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn tools(&self) -> BTreeMap<String, String> {
        self.tools.meta()
    }

    fn rep_overhead(&self) -> Duration {
        Duration::from_millis(200)
    }

    fn applicability(&self, point: &Point) -> Readiness {
        match iperf3::applicability(point) {
            Readiness::Ready => applicability(point),
            other => other,
        }
    }

    fn prepare(&mut self, point: &Point) -> Result<Readiness, BackendError> {
        if let r @ Readiness::NotApplicable(_) = self.applicability(point) {
            return Ok(r);
        }
        let sub = match point.workload {
            Workload::Stream(_) => return Ok(Readiness::Ready),
            Workload::Rr(_) => "rr",
            Workload::Http(_) => "http",
        };
        Ok(match self.unsupported(sub)? {
            Some(reason) => Readiness::NotApplicable(reason),
            None => Readiness::Ready,
        })
    }

    /// Both ends share the host's namespace: its `TIME_WAIT` sockets (every process's, so
    /// also those another program left) and its conntrack count where readable. Nothing is
    /// reset: the host is not ours.
    fn start_state(&mut self, _point: &Point) -> Result<Option<StartState>, BackendError> {
        let time_wait = crate::carryover::time_wait_sockets();
        Ok(Some(StartState {
            client_time_wait: time_wait,
            server_time_wait: time_wait,
            conntrack_entries: crate::carryover::conntrack_entries(),
            reset: Vec::new(),
        }))
    }

    fn run_rep(
        &mut self,
        point: &Point,
        _rep: u32,
        cancel: &Cancel,
    ) -> Result<RepOutcome, BackendError> {
        let port = free_port()?;
        let host = "127.0.0.1";
        if let (Tool::Iperf3, Workload::Stream(s)) = (point.tool, &point.workload) {
            let binary = self.tools.iperf3()?;
            let ends = iperf3::Ends {
                binary,
                server_prefix: &[],
                client_prefix: &[],
                bind: host,
                host,
                port,
                run_id: None,
            };
            return iperf3::run_rep(&ends, s, point, cancel, |_| {
                listening(port).unwrap_or(false)
            });
        }
        let (server_args, client_args) = match &point.workload {
            Workload::Stream(s) => (
                stream_server_args(s, host, port, false),
                stream_args(s, host, port),
            ),
            Workload::Rr(r) => (rr_server_args(host, port), rr_args(r, host, port)),
            Workload::Http(_) => {
                return Err(BackendError::NotSupported {
                    what: "http".into(),
                    reason: "the loopback backend has no replicas to serve HTTP".into(),
                });
            }
        };
        let mut server = netload::spawn(&[], None, &self.tools.netload, &server_args, false)?;
        server.wait_ready(port, cancel, |_| match listening(port) {
            Some(found) => found,
            // No /proc: fall back to a connect probe (may cost a --once session).
            None => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        })?;
        let mut client = netload::spawn(&[], None, &self.tools.netload, &client_args, true)?;
        let (out, err) = finish_client(&mut client, point, cancel)?;
        // A stream server exits after its one test; give it a moment. The rr responder
        // serves until stopped. Either way the `Proc` guard kills what is left.
        if matches!(&point.workload, Workload::Stream(s) if serves_one_test(s)) {
            let _ = server.wait(Duration::from_secs(5), cancel);
        }
        client_outcome(&client.name, &out, &err, point)
    }

    fn teardown(&mut self, _point: &Point) -> Result<(), BackendError> {
        // Each repetition's processes are owned by `Proc` guards, killed on drop.
        Ok(())
    }
}
