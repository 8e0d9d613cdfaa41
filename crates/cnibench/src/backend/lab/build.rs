//! The lab of one point: built phase by phase (nodes, pods, filler pods, services,
//! policies) and self-checked before anything is measured (see the adapter's module doc
//! for the checks). [`build`] returns the lab guard with what the repetitions need.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use super::check::ProbeOutcome;
use super::plan::{Policy, ServicePort};
use super::{
    self as lab, CounterDelta, Lab, LabError, LabSpec, PathCounter, PodSpec, Profile, ServiceSpec,
    Target,
};
use crate::backend::tool::proc::Proc;
use crate::clock;
use crate::scenario::{PathKind, Placement, Point, Workload};

/// Port of the measured server (netload control and data, TCP and UDP).
pub const SERVER_PORT: u16 = 5201;
/// Port of the request/response responder.
pub const RR_PORT: u16 = 9202;
/// Port of the HTTP replicas (and of their service).
pub const HTTP_PORT: u16 = 8080;
/// IPv4 (20) + TCP (20) + timestamps (12): MTU minus this is the payload per segment.
pub const TCP_OVERHEAD: u32 = 52;

/// Where one end of the measured pair runs.
#[derive(Debug, Clone)]
pub(super) struct End {
    target: EndTarget,
    pub(super) ip: Ipv4Addr,
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
pub(super) struct Prepared {
    /// Long-running servers (HTTP replicas); killed before the lab goes.
    pub(super) servers: Vec<Proc>,
    pub(super) server: End,
    /// Server namespace and client namespace.
    pub(super) server_ns: String,
    pub(super) client_ns: String,
    /// Address and port the client measures (a pod, node or service address).
    pub(super) dest: Ipv4Addr,
    pub(super) checks: serde_json::Value,
    pub(super) lab: Lab,
}

/// Builds the lab of `point` from `spec` and runs the self-checks; `Ok(Err(reason))` when a check
/// failed (the lab is dropped).
pub(super) fn build(spec: LabSpec, point: &Point) -> Result<Result<Prepared, String>, LabError> {
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

/// A point's lab while [`build`] puts it together, phase by phase.
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
