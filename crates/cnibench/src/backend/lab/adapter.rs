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
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::backend::lab::check::ProbeOutcome;
use crate::backend::lab::plan::{Policy, ServicePort};
use crate::backend::lab::{
    self, CounterDelta, Lab, LabError, LabSpec, PathCounter, PodSpec, PolicyMode, Profile,
    ProxyMode, ServiceSpec, Target,
};
use crate::backend::tool::netload::{
    self, client_outcome, finish_client, http_args, rr_args, rr_server_args, serves_one_test,
    stream_args, stream_server_args,
};
use crate::backend::tool::proc::{Proc, listening_pid};
use crate::backend::tool::{LocalTools, iperf3};
use crate::backend::{Backend, BackendError, Cancel, Readiness, RepOutcome};
use crate::carryover::StartState;
use crate::clock;
use crate::scenario::{PathKind, Placement, Point, Tool, Workload};

/// Port of the measured server (netload control and data, TCP and UDP).
pub const SERVER_PORT: u16 = 5201;
/// Port of the request/response responder.
pub const RR_PORT: u16 = 9202;
/// Port of the HTTP replicas (and of their service).
pub const HTTP_PORT: u16 = 8080;
/// IPv4 (20) + TCP (20) + timestamps (12): MTU minus this is the payload per segment.
pub const TCP_OVERHEAD: u32 = 52;

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

/// Where one end of the measured pair runs.
#[derive(Debug, Clone)]
struct End {
    target: EndTarget,
    ip: Ipv4Addr,
}

#[derive(Debug, Clone)]
enum EndTarget {
    Node(usize),
    Pod(String),
}

impl End {
    /// A TCP listener on this end's address, opened inside its namespace (`netns`), for the
    /// self-check probes.
    fn listen(&self, lab: &Lab, netns: &str, port: u16) -> Result<TcpListener, LabError> {
        let ip = self.ip;
        lab.run_in(self.target(), move || {
            TcpListener::bind(SocketAddrV4::new(ip, port))
        })?
        .map_err(|source| LabError::Setns {
            netns: netns.to_string(),
            source,
        })
    }

    fn target(&self) -> Target<'_> {
        match &self.target {
            EndTarget::Node(i) => Target::Node(*i),
            EndTarget::Pod(p) => Target::Pod(p),
        }
    }
}

/// A prepared point: the lab guard and what runs in it.
struct Prepared {
    /// Long-running servers (HTTP replicas); killed before the lab goes.
    servers: Vec<Proc>,
    server: End,
    /// Server namespace and client namespace.
    server_ns: String,
    client_ns: String,
    /// Address and port the client measures (a pod, node or service address).
    dest: Ipv4Addr,
    checks: serde_json::Value,
    lab: Lab,
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

    /// Builds the point's lab and runs the self-checks; `Ok(Err(reason))` when a check
    /// failed (the lab is dropped).
    fn build(&self, point: &Point) -> Result<Result<Prepared, String>, LabError> {
        let spec = self.spec(point);
        let mut laps = Laps::start();
        let lab = Lab::up(&spec)?;
        laps.lap("lab_up");
        let mut checks = serde_json::Map::new();
        checks.insert("lab_run_id".into(), spec.run_id.clone().into());
        checks.insert("profile".into(), spec.profile.to_string().into());
        checks.insert("proxy".into(), spec.proxy.to_string().into());
        checks.insert("policy_mode".into(), spec.policy_mode.to_string().into());
        checks.insert("mtu".into(), spec.mtu.into());
        let mut b = Build {
            point,
            client_node: usize::from(point.topology.placement == Placement::Inter),
            port: match point.workload {
                Workload::Stream(_) => SERVER_PORT,
                Workload::Rr(_) => RR_PORT,
                Workload::Http(_) => HTTP_PORT,
            },
            spec,
            lab,
            checks,
            laps,
        };
        let (server, client) = b.ends()?;
        let server_ips = b.server_ips(&server);
        let fillers = b.fillers()?;
        let (dest, measured) = b.services(&fillers, &server, &server_ips)?;
        b.policies(&fillers, &server, &client)?;
        let server_ns = b.lab.netns(server.target())?;
        let client_ns = b.lab.netns(client.target())?;
        let to = Measured {
            server: &server,
            server_ns: &server_ns,
            client: &client,
            server_ips: &server_ips,
            dest,
            service: measured.as_ref(),
        };
        if let Some(reason) = b.check_path(&to)? {
            return Ok(Err(reason));
        }
        if let Some(reason) = b.check_udp(&to)? {
            return Ok(Err(reason));
        }
        if let Some(reason) = b.check_mtu_mss()? {
            return Ok(Err(reason));
        }
        if let Some(reason) = b.check_deny(&to)? {
            return Ok(Err(reason));
        }
        b.laps.lap("self_checks");
        b.checks
            .insert("setup_s".into(), serde_json::Value::Object(b.laps.phases));
        Ok(Ok(Prepared {
            servers: Vec::new(),
            server,
            server_ns,
            client_ns,
            dest,
            checks: serde_json::Value::Object(b.checks),
            lab: b.lab,
        }))
    }

    /// Waits until the server, inside its namespace, listens on `port` (read from its own
    /// view of /proc/net/tcp, which is per network namespace).
    fn wait_listening(server: &mut Proc, port: u16, cancel: &Cancel) -> Result<(), BackendError> {
        server.wait_ready(port, cancel, |pid| listening_pid(pid, port))
    }
}

/// Seconds per phase of a build, for `cnibench_lab.setup_s` (where setup time goes at 10k
/// services or 20k policies).
struct Laps {
    phases: serde_json::Map<String, serde_json::Value>,
    since: Instant,
}

impl Laps {
    fn start() -> Self {
        Laps {
            phases: serde_json::Map::new(),
            since: clock::now(),
        }
    }

    /// Records the time since the previous lap as phase `name`.
    fn lap(&mut self, name: &str) {
        let now = clock::now();
        self.phases.insert(
            name.into(),
            now.duration_since(self.since).as_secs_f64().into(),
        );
        self.since = now;
    }
}

/// A point's lab while [`LabBackend::build`] puts it together, phase by phase.
struct Build<'p> {
    point: &'p Point,
    spec: LabSpec,
    lab: Lab,
    /// The client's node: the second for inter-node placement, else the server's.
    client_node: usize,
    /// The port of the measured server (and of the measured service).
    port: u16,
    /// What goes into every repetition's `cnibench_lab`.
    checks: serde_json::Map<String, serde_json::Value>,
    laps: Laps,
}

/// What the self-checks probe: the measured pair and the address the client measures.
struct Measured<'a> {
    server: &'a End,
    server_ns: &'a str,
    client: &'a End,
    /// Every server replica's address (the service may pick any of them).
    server_ips: &'a [Ipv4Addr],
    dest: Ipv4Addr,
    /// The measured service, on service points.
    service: Option<&'a lab::plan::Service>,
}

impl Build<'_> {
    /// The measured ends: node namespaces for host-network points, else the client, the
    /// server replicas and (with policies) the `deny` pod.
    fn ends(&mut self) -> Result<(End, End), LabError> {
        let client_node = self.client_node;
        if self.point.topology.host_network {
            return Ok((
                End {
                    target: EndTarget::Node(0),
                    ip: self.lab.node_ip(0),
                },
                End {
                    target: EndTarget::Node(client_node),
                    ip: self.lab.node_ip(client_node),
                },
            ));
        }
        let o = self.point.objects;
        let mut pods = vec![PodSpec::new("client", client_node)];
        for r in 0..o.replicas.max(1) as usize {
            pods.push(PodSpec::new(format!("server{r}"), 0));
        }
        if o.policies > 0 {
            pods.push(PodSpec::new("deny", client_node));
        }
        let created = self.lab.add_pods(&pods)?;
        self.laps.lap("pods");
        Ok((
            End {
                target: EndTarget::Pod("server0".into()),
                ip: created[1].ip,
            },
            End {
                target: EndTarget::Pod("client".into()),
                ip: created[0].ip,
            },
        ))
    }

    /// Every server replica's address.
    fn server_ips(&self, server: &End) -> Vec<Ipv4Addr> {
        if self.point.topology.host_network {
            vec![server.ip]
        } else {
            (0..self.point.objects.replicas.max(1) as usize)
                .filter_map(|r| self.lab.pod(&format!("server{r}")).map(|p| p.ip))
                .collect()
        }
    }

    /// The number of services, the measured one included.
    fn service_count(&self) -> usize {
        let o = self.point.objects;
        (if self.point.topology.path == PathKind::Service {
            o.services.max(1)
        } else {
            o.services
        }) as usize
    }

    /// Filler pods, spread over the nodes: the requested ones, and backends for the
    /// services not measured.
    fn fillers(&mut self) -> Result<Vec<Ipv4Addr>, LabError> {
        let wanted =
            (self.point.objects.filler_pods as usize).max(self.service_count().saturating_sub(1));
        let mut fillers = Vec::with_capacity(wanted);
        let nodes = self.spec.nodes;
        for n in 0..nodes {
            let count = wanted / nodes + usize::from(n < wanted % nodes);
            if count > 0 {
                fillers.extend(self.lab.add_filler_pods(n, count)?);
            }
        }
        self.checks
            .insert("filler_pods".into(), fillers.len().into());
        self.laps.lap("filler_pods");
        Ok(fillers)
    }

    /// Services: the measured one (its endpoints the server pods) in the middle of the
    /// fillers. kube-proxy's KUBE-SERVICES has no order that favours one service, so a new
    /// connection to a service walks half of the list on average in iptables mode; first
    /// in the list, the measured one would hide what 10k services cost there. Returns the
    /// address the client measures and, on service points, the measured service.
    fn services(
        &mut self,
        fillers: &[Ipv4Addr],
        server: &End,
        server_ips: &[Ipv4Addr],
    ) -> Result<(Ipv4Addr, Option<lab::plan::Service>), LabError> {
        let services = self.service_count();
        if services == 0 {
            return Ok((server.ip, None));
        }
        let port = self.port;
        let ports = if uses_udp(&self.point.workload) {
            vec![ServicePort::tcp(port, port), ServicePort::udp(port, port)]
        } else {
            vec![ServicePort::tcp(port, port)]
        };
        let mut specs: Vec<ServiceSpec> = (1..services)
            .map(|k| ServiceSpec::tcp(port, port, vec![fillers[(k - 1) % fillers.len()]]))
            .collect();
        let middle = specs.len().div_ceil(2);
        specs.insert(
            middle,
            ServiceSpec {
                ports,
                endpoints: server_ips.to_vec(),
            },
        );
        let created = self.lab.add_services(&specs)?;
        self.laps.lap("services");
        self.checks.insert("services".into(), created.len().into());
        self.checks
            .insert("measured_service_index".into(), middle.into());
        Ok(if self.point.topology.path == PathKind::Service {
            (created[middle].ip, Some(created[middle].clone()))
        } else {
            (server.ip, None)
        })
    }

    /// Policies: default deny on the server allowing the client, the rest on fillers. The
    /// server's policy goes in the middle for the same reason as the measured service:
    /// iptables dispatches a new connection to its pod's chain by walking one rule per
    /// isolated pod of the node, in the order the policies were written.
    fn policies(
        &mut self,
        fillers: &[Ipv4Addr],
        server: &End,
        client: &End,
    ) -> Result<(), LabError> {
        let count = self.point.objects.policies as usize;
        if count == 0 {
            return Ok(());
        }
        let port = self.port;
        let mut policies: Vec<Policy> = (1..count)
            .map_while(|i| {
                (!fillers.is_empty()).then(|| Policy {
                    target: fillers[i % fillers.len()],
                    from: fillers[(i + 1) % fillers.len()],
                    port: Some((lab::Protocol::Tcp, port)),
                })
            })
            .collect();
        let server_node = lab::plan::node_of(server.ip).unwrap_or(0);
        policies.insert(
            lab::plan::middle_of_node(&policies, server_node),
            Policy {
                target: server.ip,
                from: client.ip,
                port: None,
            },
        );
        self.lab.add_policies(&policies)?;
        self.laps.lap("policies");
        self.checks
            .insert("policies".into(), self.lab.policy_count().into());
        Ok(())
    }

    /// Self-check: the path counters rise during a connect to what the client will
    /// measure; `Some(reason)` when not.
    fn check_path(&mut self, to: &Measured<'_>) -> Result<Option<String>, LabError> {
        let point = self.point;
        let port = self.port;
        let lab = &self.lab;
        let mut counters = Vec::new();
        if let Some(svc) = to.service {
            counters.push(PathCounter::Dnat {
                service: svc.clone(),
                port: svc.ports[0],
                node: self.client_node,
            });
        }
        if point.topology.placement == Placement::Inter
            && self.spec.profile == Profile::Vxlan
            && !point.topology.host_network
        {
            counters.push(PathCounter::VxlanTx(self.client_node));
        }
        if point.objects.policies > 0 {
            counters.push(PathCounter::PolicyAccepted(to.server.ip));
        }
        // Every replica listens: the service may send the probe to any of them.
        let mut listeners = vec![to.server.listen(lab, to.server_ns, port)?];
        if !point.topology.host_network {
            for (r, &ip) in to.server_ips.iter().enumerate().skip(1) {
                let pod = format!("server{r}");
                let replica = End {
                    target: EndTarget::Pod(pod.clone()),
                    ip,
                };
                let ns = lab.netns(Target::Pod(&pod))?;
                listeners.push(replica.listen(lab, &ns, port)?);
            }
        }
        let probe_addr = SocketAddr::V4(SocketAddrV4::new(to.dest, port));
        let (probe, deltas) = lab.check_path(&counters, || {
            lab.connect_probe(to.client.target(), probe_addr, Duration::from_secs(2))
        })?;
        drop(listeners);
        let probe = probe?;
        self.checks.insert(
            "path".into(),
            serde_json::json!({"probe": format!("{probe:?}"), "to": probe_addr.to_string(), "counters": deltas_json(&deltas)}),
        );
        if probe != ProbeOutcome::Connected {
            return Ok(Some(format!(
                "self-check failed: a connect from the client to {probe_addr} gave {probe:?}"
            )));
        }
        Ok(deltas.iter().find(|d| !d.rose()).map(|d| {
            format!(
                "self-check failed: counter {:?} did not rise during a probe to {probe_addr} ({} → {})",
                d.counter, d.before, d.after
            )
        }))
    }

    /// Self-check: a UDP point through a service also proves the UDP port's DNAT.
    fn check_udp(&mut self, to: &Measured<'_>) -> Result<Option<String>, LabError> {
        let Some(svc) = to.service.filter(|_| uses_udp(&self.point.workload)) else {
            return Ok(None);
        };
        let Some(&udp_port) = svc.ports.iter().find(|p| p.protocol == lab::Protocol::Udp) else {
            return Ok(None);
        };
        let port = self.port;
        let lab = &self.lab;
        let counters = [PathCounter::Dnat {
            service: svc.clone(),
            port: udp_port,
            node: self.client_node,
        }];
        let bind = SocketAddrV4::new(to.server.ip, port);
        let socket = lab
            .run_in(to.server.target(), move || UdpSocket::bind(bind))?
            .map_err(|source| LabError::Setns {
                netns: to.server_ns.to_string(),
                source,
            })?;
        let receiving = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            socket
                .set_read_timeout(Some(Duration::from_secs(2)))
                .is_ok()
                && socket.recv_from(&mut buf).is_ok()
        });
        let dest = SocketAddr::V4(SocketAddrV4::new(to.dest, port));
        // The receiver is joined inside the probe: the counters are read after the
        // datagram arrived (or the receiver gave up).
        let ((sent, received), deltas) = lab.check_path(&counters, || {
            let sent = lab.run_in(to.client.target(), move || -> std::io::Result<()> {
                let c = UdpSocket::bind("0.0.0.0:0")?;
                c.send_to(b"cnibench", dest)?;
                Ok(())
            });
            (sent, receiving.join().unwrap_or(false))
        })?;
        self.checks.insert(
            "path_udp".into(),
            serde_json::json!({"to": dest.to_string(), "received": received, "counters": deltas_json(&deltas)}),
        );
        if let Err(e) = sent? {
            return Ok(Some(format!(
                "self-check failed: cannot send a UDP datagram to {dest}: {e}"
            )));
        }
        if !received || deltas.iter().any(|d| !d.rose()) {
            return Ok(Some(format!(
                "self-check failed: a UDP datagram from the client to {dest} {} (UDP DNAT counter {} → {})",
                if received {
                    "arrived"
                } else {
                    "did not reach the server"
                },
                deltas[0].before,
                deltas[0].after
            )));
        }
        Ok(None)
    }

    /// Self-check: MTU and MSS match the profile (pods only).
    fn check_mtu_mss(&mut self) -> Result<Option<String>, LabError> {
        if self.point.topology.host_network {
            return Ok(None);
        }
        let mtu = self.lab.pod_mtu("server0")?;
        let mss = self.lab.effective_mss("client", "server0")?;
        let want_mtu = self.spec.pod_mtu();
        self.checks.insert(
            "mtu_mss".into(),
            serde_json::json!({"pod_mtu": mtu, "want_pod_mtu": want_mtu, "mss": mss, "want_mss": want_mtu - TCP_OVERHEAD}),
        );
        Ok((mtu != want_mtu || mss != want_mtu - TCP_OVERHEAD).then(|| {
            format!(
                "self-check failed: pod MTU {mtu} / MSS {mss}, the {} profile wants {want_mtu} / {}",
                self.spec.profile,
                want_mtu - TCP_OVERHEAD
            )
        }))
    }

    /// Self-check: a pod the policies do not allow cannot connect to the server.
    fn check_deny(&mut self, to: &Measured<'_>) -> Result<Option<String>, LabError> {
        if self.point.objects.policies == 0 {
            return Ok(None);
        }
        let listener = to.server.listen(&self.lab, to.server_ns, self.port)?;
        let addr = SocketAddr::V4(SocketAddrV4::new(to.server.ip, self.port));
        let deny = self
            .lab
            .connect_probe(Target::Pod("deny"), addr, Duration::from_millis(500))?;
        drop(listener);
        self.checks.insert(
            "deny_probe".into(),
            serde_json::json!({"from": "deny", "to": addr.to_string(), "outcome": format!("{deny:?}")}),
        );
        Ok((deny != ProbeOutcome::TimedOut).then(|| {
            format!(
                "self-check failed: a connect from a pod the policies do not allow gave {deny:?}, not a timeout"
            )
        }))
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

/// Whether the workload sends UDP (and so needs the service's UDP port).
fn uses_udp(w: &Workload) -> bool {
    match w {
        Workload::Stream(s) => s.udp,
        Workload::Rr(r) => r.mode == crate::scenario::RrMode::UdpRr,
        Workload::Http(_) => false,
    }
}

/// Counter deltas of a self-check as recorded in `cnibench_lab`.
fn deltas_json(deltas: &[CounterDelta]) -> Vec<serde_json::Value> {
    deltas
        .iter()
        .map(|d| {
            serde_json::json!({
                "counter": format!("{:?}", d.counter).split([' ', '(']).next().unwrap_or_default(),
                "before": d.before,
                "after": d.after,
                "rose": d.rose(),
            })
        })
        .collect()
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
        let prepared = match self.build(point) {
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
