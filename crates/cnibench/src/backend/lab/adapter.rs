//! The lab backend: every point in its own small "cluster" of network namespaces on this
//! host ([`crate::backend::lab`]), with real netload processes inside the pod (or node) namespaces.
//!
//! Per point, [`LabBackend::prepare`] builds a [`Lab`] (nodes, client and server pods
//! placed per the point, services, filler pods and policies), runs the self-checks and
//! keeps the lab in a guard until [`Backend::teardown`] (or an error, or the backend's
//! drop) removes it. Self-checks, all before measuring:
//!
//! - **path**: a TCP connect from the client to the address it will measure while the
//!   counters of the path are read before and after: the DNAT rule of the measured service
//!   (service points), the client node's VXLAN device (vxlan profile, inter-node), the
//!   server's policy chain (policy points). Each must rise;
//! - **mtu/mss**: the server pod's MTU is the profile's pod MTU and the MSS a client
//!   connection gets is that MTU less 52 (IPv4, TCP and timestamps);
//! - **udp**: a UDP point through a service sends a datagram to the service's UDP port;
//!   it must reach the server and the UDP port's DNAT counter must rise;
//! - **deny**: with policies on, a connect from a pod the policies do not allow (the
//!   `deny` pod, on the client's node) to the server times out.
//!
//! A failing check makes the point not applicable with the reason; it is never measured.
//! The checks' results are added to each repetition's raw JSON under `cnibench_lab`
//! (next to the tool's own fields, which are left as they are), with the seconds each
//! phase of the build took under `setup_s` (`lab_up`, `pods`, `filler_pods`, `services`,
//! `policies`, `self_checks`); the runner records the whole prepare per point.
//!
//! With `tool = iperf3` a stream point runs `iperf3 -s -1` and `iperf3 -c ... -J` in the
//! same namespaces, on the same port and path (see [`crate::backend::tool::iperf3`]).
//!
//! Repetitions start the server in the server's namespace with `ip netns exec`, wait until
//! the kernel lists its port as listening in that namespace (`/proc/<pid>/net/tcp`), then
//! run the client with `--json` in the client's namespace. HTTP replicas are started once
//! per point (they serve until the point ends).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::build::{Prepared, build};
use crate::backend::lab::{self, Lab, LabError, LabSpec, PolicyMode, Profile, ProxyMode, Target};
use crate::backend::tool::netload::{
    self, client_outcome, finish_client, http_args, rr_args, rr_server_args, serves_one_test,
    stream_args, stream_server_args,
};
use crate::backend::tool::proc::{Proc, listening_pid};
use crate::backend::tool::{LocalTools, iperf3};
use crate::backend::{Backend, BackendError, Cancel, Readiness, RepOutcome};
use crate::carryover::StartState;
use crate::scenario::{PathKind, Placement, Point, Tool, Workload};

pub use super::build::{HTTP_PORT, RR_PORT, SERVER_PORT, TCP_OVERHEAD};

/// The run-wide choices of the lab (`cnibench run --backend lab --profile ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabOptions {
    /// Inter-node datapath.
    pub profile: Profile,
    /// Service implementation.
    pub proxy: ProxyMode,
    /// Policy implementation.
    pub policy_mode: PolicyMode,
    /// Underlay MTU (a point's own `mtu` wins).
    pub mtu: u32,
    /// Number of nodes (at least 2 for inter-node points).
    pub nodes: usize,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            profile: Profile::Routed,
            proxy: ProxyMode::Iptables,
            policy_mode: PolicyMode::Iptables,
            mtu: 1500,
            nodes: 2,
        }
    }
}

impl LabOptions {
    /// The options as `meta.json` records them among the tools (`lab_profile`, `lab_proxy`,
    /// `lab_policy_mode`, `lab_mtu`, `lab_nodes`); [`LabOptions::restore`] reads them back.
    pub fn recorded(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("lab_profile".to_string(), self.profile.to_string()),
            ("lab_proxy".to_string(), self.proxy.to_string()),
            ("lab_policy_mode".to_string(), self.policy_mode.to_string()),
            ("lab_mtu".to_string(), self.mtu.to_string()),
            ("lab_nodes".to_string(), self.nodes.to_string()),
        ])
    }

    /// These options with those a run recorded in `tools` (see [`LabOptions::recorded`])
    /// put back, for `--resume`; an option the run did not record keeps its value here.
    pub fn restore(mut self, tools: &BTreeMap<String, String>) -> Result<Self, LabError> {
        if let Some(v) = tools.get("lab_profile") {
            self.profile = v.parse()?;
        }
        if let Some(v) = tools.get("lab_proxy") {
            self.proxy = v.parse()?;
        }
        if let Some(v) = tools.get("lab_policy_mode") {
            self.policy_mode = v.parse()?;
        }
        if let Some(v) = tools.get("lab_mtu") {
            self.mtu = v.parse().map_err(|_| LabError::Invalid {
                field: "lab_mtu",
                message: format!("`{v}` is not an MTU in bytes"),
            })?;
        }
        if let Some(v) = tools.get("lab_nodes") {
            self.nodes = v.parse().map_err(|_| LabError::Invalid {
                field: "lab_nodes",
                message: format!("`{v}` is not a number of nodes"),
            })?;
        }
        Ok(self)
    }
}

/// The lab run id of a cnibench run id: `c` and 12 hex digits of its FNV-1a hash (lab ids
/// are at most 16 lower-case letters and digits). `cnibench clean RUN_ID` uses the same.
pub fn lab_run_id(run_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("c{:012x}", h >> 16)
}

/// Ends the processes and removes the namespaces a run left (`None`: every lab's
/// leftovers); returns what it ended and removed.
pub fn clean(run_id: Option<&str>) -> Result<lab::Cleaned, LabError> {
    lab::clean(&match run_id {
        Some(id) => lab::CleanScope::Run(lab_run_id(id)),
        None => lab::CleanScope::All,
    })
}

/// Checks the lab can run at all: root, and IPVS only where the kernel has it.
pub fn preflight(opts: &LabOptions) -> Result<(), LabError> {
    if opts.proxy == ProxyMode::Ipvs {
        lab::check_ipvs()?;
        return Err(LabError::IpvsUnsupported);
    }
    lab::check_root()
}

/// The lab backend.
pub struct LabBackend {
    tools: LocalTools,
    opts: LabOptions,
    lab_id: String,
    /// The cnibench run id, in every started process's environment.
    run_id: String,
    state: Option<Prepared>,
}

impl std::fmt::Debug for LabBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabBackend")
            .field("netload", &self.tools.netload)
            .field("opts", &self.opts)
            .field("lab_id", &self.lab_id)
            .field("prepared", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

fn lab_err(action: &str, e: &LabError) -> BackendError {
    BackendError::Io {
        action: format!("lab: {action}"),
        source: std::io::Error::other(e.to_string()),
    }
}

impl LabBackend {
    /// A lab backend for cnibench run `run_id` driving `netload`. Fails without root, or
    /// with `--proxy ipvs` (see [`preflight`]).
    pub fn new(netload: PathBuf, opts: LabOptions, run_id: &str) -> Result<Self, BackendError> {
        preflight(&opts).map_err(|e| BackendError::NotSupported {
            what: "the lab backend".into(),
            reason: match e {
                LabError::NotRoot => format!(
                    "{e}; run as root (CAP_NET_ADMIN), or use `--backend loopback` (no root, fewer scenarios)"
                ),
                other => other.to_string(),
            },
        })?;
        Ok(LabBackend {
            tools: LocalTools::new(netload)?,
            opts,
            lab_id: lab_run_id(run_id),
            run_id: run_id.to_string(),
            state: None,
        })
    }

    /// Measures the points whose tool is iperf3 with this binary (see [`iperf3::locate`]).
    #[must_use]
    pub fn with_iperf3(mut self, iperf3: (PathBuf, String)) -> Self {
        self.tools.iperf3 = Some(iperf3);
        self
    }

    /// The lab run id (namespaces are `cnb-<id>-…`).
    pub fn lab_id(&self) -> &str {
        &self.lab_id
    }

    fn spec(&self, point: &Point) -> LabSpec {
        let mut spec = LabSpec::new(self.lab_id.clone());
        spec.nodes = self.opts.nodes;
        spec.mtu = point.topology.mtu.unwrap_or(self.opts.mtu);
        spec.profile = self.opts.profile;
        spec.proxy = self.opts.proxy;
        spec.policy_mode = self.opts.policy_mode;
        spec
    }

    fn prefix(netns: &str) -> Vec<String> {
        ["ip", "netns", "exec", netns]
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn spawn(&self, netns: &str, args: &[String], capture: bool) -> Result<Proc, BackendError> {
        netload::spawn(
            &Self::prefix(netns),
            Some(&self.run_id),
            &self.tools.netload,
            args,
            capture,
        )
    }

    /// Waits until the server, inside its namespace, listens on `port` (read from its own
    /// view of /proc/net/tcp, which is per network namespace).
    fn wait_listening(server: &mut Proc, port: u16, cancel: &Cancel) -> Result<(), BackendError> {
        server.wait_ready(port, cancel, |pid| listening_pid(pid, port))
    }
}

/// A repetition's raw JSON with the point's self-checks under `cnibench_lab`, next to
/// the tool's own fields.
fn with_checks(mut outcome: RepOutcome, checks: &serde_json::Value) -> RepOutcome {
    if let Some(obj) = outcome.raw.as_object_mut() {
        obj.insert("cnibench_lab".into(), checks.clone());
    }
    outcome
}

/// Whether the lab can run `point` with `opts` (before building anything).
pub fn applicability(point: &Point, opts: &LabOptions) -> Readiness {
    if let na @ Readiness::NotApplicable(_) = iperf3::applicability(point) {
        return na;
    }
    if point.topology.placement == Placement::Inter && opts.nodes < 2 {
        return Readiness::NotApplicable(format!(
            "inter-node placement needs at least 2 nodes (--nodes {})",
            opts.nodes
        ));
    }
    if point.topology.host_network && point.topology.path == PathKind::Service {
        return Readiness::NotApplicable("the baseline has no service path".into());
    }
    Readiness::Ready
}

impl Backend for LabBackend {
    fn name(&self) -> &'static str {
        "lab"
    }

    fn tools(&self) -> BTreeMap<String, String> {
        let mut t = self.tools.meta();
        t.extend(self.opts.recorded());
        t.insert("lab_run_id".to_string(), self.lab_id.clone());
        t
    }

    fn setup_estimate(&self, _previous: Option<&Point>, point: &Point) -> Duration {
        let o = point.objects;
        // Measured (lab module docs): ~0.1 s lab, ~0.2 ms per service (and ~0.1 ms for
        // its filler backend), ~0.1 ms per policy or filler, ~7 ms per replica pod (a
        // namespace each), plus the deny probe's 0.5 s timeout with policies.
        Duration::from_millis(
            300 + u64::from(o.services) * 3 / 10
                + u64::from(o.policies + o.filler_pods) / 10
                + u64::from(o.replicas) * 7
                + if o.policies > 0 { 500 } else { 0 },
        )
    }

    fn rep_overhead(&self) -> Duration {
        Duration::from_millis(250)
    }

    fn applicability(&self, point: &Point) -> Readiness {
        applicability(point, &self.opts)
    }

    fn prepare(&mut self, point: &Point) -> Result<Readiness, BackendError> {
        // A point left prepared (should not happen) is removed first.
        self.state = None;
        if let r @ Readiness::NotApplicable(_) = self.applicability(point) {
            return Ok(r);
        }
        let prepared = match build(self.spec(point), point) {
            Ok(Ok(p)) => p,
            Ok(Err(reason)) => return Ok(Readiness::NotApplicable(reason)),
            Err(e) => return Err(lab_err("cannot build the point's lab", &e)),
        };
        // From here on the lab is owned by `self.state`'s guard: an error below leaves it
        // for teardown (the runner calls it after a failed prepare) or the backend's drop.
        self.state = Some(prepared);
        let prepared = self.state.as_mut().expect("just set");
        if let Workload::Http(h) = &point.workload {
            let replicas = point.objects.replicas.max(1);
            for r in 0..replicas {
                let pod = format!("server{r}");
                let ip = prepared.lab.pod(&pod).map_or(prepared.server.ip, |p| p.ip);
                let ns = prepared
                    .lab
                    .netns(Target::Pod(&pod))
                    .map_err(|e| lab_err("replica namespace", &e))?;
                let args: Vec<String> = vec![
                    "server".into(),
                    "--bind".into(),
                    ip.to_string(),
                    "--port".into(),
                    SERVER_PORT.to_string(),
                    "--rr-port".into(),
                    "0".into(),
                    "--http".into(),
                    HTTP_PORT.to_string(),
                    "--http-bind".into(),
                    ip.to_string(),
                    "--body-size".into(),
                    h.file_size.0.to_string(),
                    "--replica".into(),
                    pod.clone(),
                ];
                let mut p = netload::spawn(
                    &Self::prefix(&ns),
                    Some(&self.run_id),
                    &self.tools.netload,
                    &args,
                    false,
                )?;
                Self::wait_listening(&mut p, HTTP_PORT, &Cancel::default())?;
                prepared.servers.push(p);
            }
        }
        Ok(Readiness::Ready)
    }

    /// Flushes the conntrack tables of the point's lab (its own namespaces only) and counts
    /// the `TIME_WAIT` sockets of both ends.
    fn start_state(&mut self, _point: &Point) -> Result<Option<StartState>, BackendError> {
        let Some(st) = &self.state else {
            return Ok(None);
        };
        let time_wait = |ns: &str| -> Result<Option<u64>, BackendError> {
            crate::backend::lab::run_in(ns, crate::carryover::time_wait_sockets)
                .map_err(|e| lab_err("cannot count TIME_WAIT sockets", &e))
        };
        let tracked = |lab: &Lab| {
            lab.conntrack_entries()
                .map_err(|e| lab_err("cannot read conntrack counts", &e))
        };
        let mut reset = Vec::new();
        let before = tracked(&st.lab)?;
        let full: Vec<_> = before.iter().filter(|(_, n)| *n > 0).collect();
        if !full.is_empty() {
            for (ns, _) in &full {
                st.lab.flush_conntrack(ns).map_err(|e| {
                    lab_err("cannot flush conntrack (is `conntrack` installed?)", &e)
                })?;
            }
            reset.push(format!(
                "conntrack: {} entries flushed in {} namespace(s)",
                full.iter().map(|(_, n)| n).sum::<u64>(),
                full.len()
            ));
        }
        let after = tracked(&st.lab)?;
        Ok(Some(StartState {
            client_time_wait: time_wait(&st.client_ns)?,
            server_time_wait: time_wait(&st.server_ns)?,
            conntrack_entries: (!after.is_empty()).then(|| after.iter().map(|(_, n)| n).sum()),
            reset,
        }))
    }

    fn run_rep(
        &mut self,
        point: &Point,
        _rep: u32,
        cancel: &Cancel,
    ) -> Result<RepOutcome, BackendError> {
        let Some(st) = &self.state else {
            return Err(BackendError::NotSupported {
                what: point.id.clone(),
                reason: "the lab of this point was not prepared".into(),
            });
        };
        let bind = st.server.ip.to_string();
        let host = st.dest.to_string();
        if let (Tool::Iperf3, Workload::Stream(s)) = (point.tool, &point.workload) {
            let binary = self.tools.iperf3()?;
            let ends = iperf3::Ends {
                binary,
                server_prefix: &Self::prefix(&st.server_ns),
                client_prefix: &Self::prefix(&st.client_ns),
                bind: &bind,
                host: &host,
                port: SERVER_PORT,
                run_id: Some(&self.run_id),
            };
            let outcome = iperf3::run_rep(&ends, s, point, cancel, |pid| {
                listening_pid(pid, SERVER_PORT)
            })?;
            return Ok(with_checks(outcome, &st.checks));
        }
        let (server, client_args) = match &point.workload {
            Workload::Stream(s) => {
                let args = stream_server_args(s, &bind, SERVER_PORT, true);
                let mut p = self.spawn(&st.server_ns, &args, false)?;
                Self::wait_listening(&mut p, SERVER_PORT, cancel)?;
                (Some(p), stream_args(s, &host, SERVER_PORT))
            }
            Workload::Rr(r) => {
                let args = rr_server_args(&bind, RR_PORT);
                let mut p = self.spawn(&st.server_ns, &args, false)?;
                Self::wait_listening(&mut p, RR_PORT, cancel)?;
                (Some(p), rr_args(r, &host, RR_PORT))
            }
            Workload::Http(h) => (None, http_args(h, &format!("http://{host}:{HTTP_PORT}/"))),
        };
        let mut server = server;
        let mut client = self.spawn(&st.client_ns, &client_args, true)?;
        let (out, err) = finish_client(&mut client, point, cancel)?;
        if let (Some(p), Workload::Stream(s)) = (server.as_mut(), &point.workload)
            && serves_one_test(s)
        {
            let _ = p.wait(Duration::from_secs(5), cancel);
        }
        drop(server);
        let outcome = client_outcome(&client.name, &out, &err, point)?;
        Ok(with_checks(outcome, &st.checks))
    }

    fn teardown(&mut self, _point: &Point) -> Result<(), BackendError> {
        if let Some(mut st) = self.state.take() {
            for p in &mut st.servers {
                p.kill();
            }
            st.servers.clear();
            st.lab
                .down()
                .map_err(|e| lab_err("cannot remove the point's lab", &e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_run_ids_are_valid_and_stable() {
        let a = lab_run_id("20261125T083100Z-quick");
        assert_eq!(a, lab_run_id("20261125T083100Z-quick"));
        assert_ne!(a, lab_run_id("20261125T083101Z-quick"));
        lab::spec::validate_run_id(&a).unwrap();
        assert_eq!(a.len(), 13);
    }
}
