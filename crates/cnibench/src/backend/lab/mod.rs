//! The lab: a small Kubernetes-like "cluster" of Linux network namespaces on one host.
//!
//! [`Lab::up`] builds it from a [`LabSpec`]; the [`Lab`] guard tears it down on drop (and
//! [`Lab::down`] does so reporting errors). [`clean`] removes whatever a killed run left.
//! Needs root (CAP_NET_ADMIN), iproute2, iptables (nf_tables backend) and nftables.
//!
//! # Topology
//!
//! ```text
//!  cnb-<run>-fabric: br0 ── n0 ─┐        ┌─ n1 ── (same br0)
//!                               │ veth   │ veth
//!  cnb-<run>-n0:   eth0 198.18.0.1/24    eth0 198.18.0.2/24   :cnb-<run>-n1
//!                  br0  198.18.32.1/19   br0  198.18.64.1/19
//!                  [vxlan0 198.18.32.0]  [vxlan0 198.18.64.0]   (vxlan profile)
//!                   │ veth cnb<hex ip>     │
//!  cnb-<run>-p-<name>: eth0 198.18.32.2/32, default via 198.18.32.1 onlink
//! ```
//!
//! Every object lives inside a namespace named `cnb-<run>-…`; nothing is created in the
//! host's namespace (veth peers are created directly in their target namespace), so
//! deleting the namespaces removes every link, address, route, rule and set of a run.
//! Addresses and the exact tool input are planned in [`plan`] (pure, snapshot-tested).
//!
//! Services are programmed on every node as kube-proxy does it (see
//! [`plan::iptables_services`] and [`plan::nft_services`]); policies on the node hosting
//! their target (see [`plan::iptables_policies`] and [`plan::nft_policies`]). Each change
//! is one `iptables-restore` or `nft -f` transaction per node, nodes in parallel.
//!
//! # Filler pods
//!
//! Scale scenarios need thousands of pods whose only role is to exist in the datapath:
//! as service endpoints and policy targets. What costs on the packet path is the state a
//! CNI installs for them in the node (routes, neighbour entries, rules and set elements),
//! not their namespaces. So a filler pod ([`Lab::add_filler_pods`]) is a /32 route and a
//! permanent neighbour entry on its node's bridge, no namespace and no veth: 10 000 of
//! them take one `ip -batch` run per node (under half a second), where real pods cost
//! about 6.5 ms each (100 in 0.65 s, so over a minute for 10 000, plus a veth, a
//! conntrack table and routing tables each that no packet of the benchmark touches).
//! Pods that send or receive traffic (client, server, replicas, deny probe) are real
//! namespaces ([`Lab::add_pods`]). Filler addresses are not put on a dummy device
//! because that device type is a module on the development kernel, and the lab cannot
//! load modules.
//!
//! # Setup times
//!
//! Measured on the development VM (2 vCPU, kernel 6.18, iptables 1.8.9 nf_tables,
//! nft 1.0.6, 2 nodes, creation of each kind in one call) by the ignored test
//! `netns_scale_bench` in `tests/lab_netns.rs`:
//!
//! | objects (two runs) | iptables | nftables |
//! |---|---:|---:|
//! | 10 000 filler pods (routes + neighbours) | 0.3 s | 0.4–0.5 s |
//! | 10 000 services, 1 endpoint each (4 rules or 2 chains + map element each) | 2.1–2.2 s | 1.7–2.0 s |
//! | 20 000 policies on 10 000 filler pods | 1.7–1.9 s | 0.3 s |
//! | removing all of the above | 0.5–0.6 s | 0.6–0.7 s |
//!
//! A lab (2 nodes, vxlan) comes up in 0.06 s; 100 pods with namespaces take 0.65 s;
//! teardown 0.02 s.
//!
//! iptables services are written as one full `iptables-restore` of the nat table: the
//! `--noflush` path of iptables-nft took 12.5 s for the same 10 000 services.
//!
//! Layout:
//! - [`adapter`] — [`adapter::LabBackend`], the [`crate::backend::Backend`] on top of all this;
//! - `build` — one point's lab, built phase by phase and self-checked;
//! - [`spec`] — [`LabSpec`], datapath choices and object names;
//! - [`plan`] — the address plan and tool input (pure);
//! - [`exec`] — runs plans and closures inside namespaces (the I/O edge);
//! - [`check`] — counter parsers and probes for self-checks;
//! - [`mod@error`] — the error type, [`LabError`].

pub mod adapter;
mod build;
pub mod check;
pub mod error;
pub mod exec;
pub mod plan;
pub mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::Path;
use std::time::Duration;

pub use check::{LinkStats, PolicyCounters, ProbeOutcome, RuleCounter};
pub use error::LabError;
pub use exec::{NetnsThread, run_in, spawn_in};
pub use plan::{Policy, Service, ServicePort};
pub use spec::{LabSpec, PolicyMode, Profile, Protocol, ProxyMode};

use plan::{PodAddr, node_of};

/// A pod with its own network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Name given in [`PodSpec`].
    pub name: String,
    /// Node index.
    pub node: usize,
    /// Pod address (a /32 on its `eth0`).
    pub ip: Ipv4Addr,
    /// Its network namespace, for [`run_in`] or `ip netns exec`.
    pub netns: String,
}

/// A pod to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSpec {
    /// Unique name: 1 to 32 lower-case letters, digits or `-`.
    pub name: String,
    /// Node index.
    pub node: usize,
}

impl PodSpec {
    /// Pod `name` on node `node`.
    pub fn new(name: impl Into<String>, node: usize) -> Self {
        PodSpec {
            name: name.into(),
            node,
        }
    }
}

/// A service to create; the lab assigns its ClusterIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Ports (1 to 16).
    pub ports: Vec<ServicePort>,
    /// Endpoint (pod) addresses, 1 to 1000.
    pub endpoints: Vec<Ipv4Addr>,
}

impl ServiceSpec {
    /// A service with one TCP port `port` forwarded to `target_port` on `endpoints`.
    pub fn tcp(port: u16, target_port: u16, endpoints: Vec<Ipv4Addr>) -> Self {
        ServiceSpec {
            ports: vec![ServicePort::tcp(port, target_port)],
            endpoints,
        }
    }
}

/// Where to run something or read counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// Node `i` (the host network of that node: the baseline scenario runs here).
    Node(usize),
    /// The pod with this name.
    Pod(&'a str),
    /// The fabric joining the nodes.
    Fabric,
}

/// A counter that should rise when traffic takes the expected path (see
/// [`Lab::check_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathCounter {
    /// Connections DNATed to any endpoint of a service port on a node (the client's).
    Dnat {
        /// The service.
        service: Service,
        /// Its port.
        port: ServicePort,
        /// The node where the client's connections enter the service datapath.
        node: usize,
    },
    /// Packets sent by a node's VXLAN device (vxlan profile).
    VxlanTx(usize),
    /// New connections the policies of a pod accepted.
    PolicyAccepted(Ipv4Addr),
    /// New connections the policies of a pod dropped.
    PolicyDropped(Ipv4Addr),
}

/// How much a [`PathCounter`] moved across a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterDelta {
    /// The counter.
    pub counter: PathCounter,
    /// Value before the probe.
    pub before: u64,
    /// Value after the probe.
    pub after: u64,
}

impl CounterDelta {
    /// Whether the counter rose: the probe took this path.
    pub fn rose(&self) -> bool {
        self.after > self.before
    }
}

/// Which leftovers [`clean`] removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanScope {
    /// Everything of one run id.
    Run(String),
    /// Everything any lab created (every `cnb-` namespace).
    All,
}

/// Fails with [`LabError::NoIpvs`] unless this kernel has IPVS.
pub fn check_ipvs() -> Result<(), LabError> {
    if Path::new("/proc/net/ip_vs").exists() || Path::new("/sys/module/ip_vs").exists() {
        Ok(())
    } else {
        Err(LabError::NoIpvs)
    }
}

/// Fails with [`LabError::NotRoot`] without root.
pub fn check_root() -> Result<(), LabError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

/// Names of the lab namespaces that exist now (`cnb-…` under /run/netns), sorted.
pub fn list_namespaces(scope: &CleanScope) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(exec::NETNS_DIR) else {
        return Vec::new();
    };
    select_namespaces(
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned()),
        scope,
    )
}

/// The names of `scope` among `names`, in teardown order: pods, nodes, then the fabric.
pub fn select_namespaces(
    names: impl IntoIterator<Item = String>,
    scope: &CleanScope,
) -> Vec<String> {
    let prefix = match scope {
        CleanScope::Run(id) => format!("{}{id}-", spec::PREFIX),
        CleanScope::All => spec::PREFIX.to_owned(),
    };
    let mut names: Vec<String> = names
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    names.sort_by_key(|n| (!n.contains("-p-"), n.ends_with("-fabric"), n.clone()));
    names
}

/// How long [`clean`] gives the processes in a namespace to exit on SIGTERM before it
/// sends SIGKILL: netload's servers stop within 1.5 s (the grace of open HTTP responses).
pub const CLEAN_GRACE: Duration = Duration::from_secs(2);

/// What [`clean`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Namespaces removed, in teardown order.
    pub namespaces: Vec<String>,
    /// Processes that were still running inside them, ended first.
    pub ended: Vec<crate::child::Ended>,
}

/// Ends the processes still running in the namespaces of `scope` (SIGTERM, up to
/// [`CLEAN_GRACE`], SIGKILL), then removes the namespaces (and with them every link, route,
/// rule and set in them). For runs that were killed: a live [`Lab`] cleans itself.
pub fn clean(scope: &CleanScope) -> Result<Cleaned, LabError> {
    if let CleanScope::Run(id) = scope {
        spec::validate_run_id(id)?;
    }
    let found = list_namespaces(scope);
    // `ip netns del` only unmounts the name: a process inside keeps the namespace alive,
    // unnamed, out of reach of any later clean, so the processes go first.
    let mut pids = Vec::new();
    for ns in &found {
        pids.extend(exec::pids_in(ns)?);
    }
    let ended = crate::child::end(&pids, CLEAN_GRACE);
    exec::run_plan(&plan::delete_namespaces(&found))?;
    let left = list_namespaces(scope);
    if let Some(first) = left.first() {
        return Err(LabError::Command {
            command: format!("ip netns del {first}"),
            status: "namespace still present".into(),
            line: String::new(),
            stderr: format!("{} namespaces could not be removed", left.len()),
        });
    }
    Ok(Cleaned {
        namespaces: found,
        ended,
    })
}

/// A running lab. Dropping it deletes every namespace it created.
#[derive(Debug)]
pub struct Lab {
    spec: LabSpec,
    pods: BTreeMap<String, Pod>,
    used_slots: Vec<BTreeSet<u32>>,
    cursor: Vec<u32>,
    fillers: Vec<Ipv4Addr>,
    services: Vec<Service>,
    isolated: BTreeSet<Ipv4Addr>,
    policies: usize,
    torn_down: bool,
}

impl Lab {
    /// Validates `spec` and builds the fabric, the nodes, their bridges, the inter-node
    /// datapath and empty service and policy tables. On error, whatever was built is
    /// removed before returning.
    pub fn up(spec: &LabSpec) -> Result<Lab, LabError> {
        spec.validate()?;
        if spec.proxy == ProxyMode::Ipvs {
            check_ipvs()?;
            return Err(LabError::IpvsUnsupported);
        }
        check_root()?;
        let leftovers = list_namespaces(&CleanScope::Run(spec.run_id.clone()));
        if !leftovers.is_empty() {
            return Err(LabError::Invalid {
                field: "run id",
                message: format!(
                    "{} namespaces of run {} already exist (a killed run, or one still running?); remove them with `cnibench clean {}`",
                    leftovers.len(),
                    spec.run_id,
                    spec.run_id
                ),
            });
        }
        let lab = Lab {
            spec: spec.clone(),
            pods: BTreeMap::new(),
            used_slots: vec![BTreeSet::new(); spec.nodes],
            cursor: vec![0; spec.nodes],
            fillers: Vec::new(),
            services: Vec::new(),
            isolated: BTreeSet::new(),
            policies: 0,
            torn_down: false,
        };
        // From here on, `lab`'s Drop removes whatever part was created.
        exec::run_plan(&plan::up(spec))?;
        Ok(lab)
    }

    /// The spec the lab was built from.
    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    /// Underlay address of node `i` (the baseline scenario's endpoints).
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        plan::node_ip(i)
    }

    /// A pod by name.
    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.get(name)
    }

    /// Services created so far, in creation order.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// Filler pod addresses created so far.
    pub fn filler_pods(&self) -> &[Ipv4Addr] {
        &self.fillers
    }

    /// Policies created so far.
    pub fn policy_count(&self) -> usize {
        self.policies
    }

    /// Namespace of `target`.
    pub fn netns(&self, target: Target<'_>) -> Result<String, LabError> {
        let names = self.spec.names();
        match target {
            Target::Node(i) if i < self.spec.nodes => Ok(names.node(i)),
            Target::Node(i) => Err(LabError::Unknown {
                kind: "node",
                name: i.to_string(),
            }),
            Target::Pod(p) => {
                self.pods
                    .get(p)
                    .map(|p| p.netns.clone())
                    .ok_or_else(|| LabError::Unknown {
                        kind: "pod",
                        name: p.to_owned(),
                    })
            }
            Target::Fabric => Ok(names.fabric()),
        }
    }

    fn check_node(&self, node: usize) -> Result<(), LabError> {
        if node < self.spec.nodes {
            Ok(())
        } else {
            Err(LabError::Invalid {
                field: "node",
                message: format!("{node} is not below the lab's {} nodes", self.spec.nodes),
            })
        }
    }

    fn alloc(&mut self, node: usize) -> Result<Ipv4Addr, LabError> {
        let used = &mut self.used_slots[node];
        let mut slot = self.cursor[node];
        while used.contains(&slot) {
            slot += 1;
        }
        let ip = plan::pod_ip(node, slot).ok_or(LabError::Exhausted {
            what: "a pod",
            range: "the node's /19 pod CIDR",
        })?;
        used.insert(slot);
        self.cursor[node] = slot + 1;
        Ok(ip)
    }

    fn free(&mut self, ip: Ipv4Addr) {
        if let Some(node) = node_of(ip) {
            let slot = u32::from(ip) - u32::from(plan::pod_cidr(node)) - 2;
            self.used_slots[node].remove(&slot);
            self.cursor[node] = self.cursor[node].min(slot);
        }
    }

    /// Creates pods with namespaces, all in a few batches.
    pub fn add_pods(&mut self, pods: &[PodSpec]) -> Result<Vec<Pod>, LabError> {
        let mut seen = BTreeSet::new();
        for p in pods {
            spec::validate_pod_name(&p.name)?;
            self.check_node(p.node)?;
            if self.pods.contains_key(&p.name) || !seen.insert(&p.name) {
                return Err(LabError::Invalid {
                    field: "pod name",
                    message: format!("{} is used twice", p.name),
                });
            }
        }
        let names = self.spec.names();
        let mut created = Vec::new();
        for p in pods {
            let ip = self.alloc(p.node)?;
            let pod = Pod {
                name: p.name.clone(),
                node: p.node,
                ip,
                netns: names.pod(&p.name),
            };
            // Recorded before anything runs, so teardown finds partly built pods.
            self.pods.insert(p.name.clone(), pod.clone());
            created.push(pod);
        }
        let addrs: Vec<PodAddr> = created
            .iter()
            .map(|p| PodAddr {
                name: p.name.clone(),
                node: p.node,
                ip: p.ip,
            })
            .collect();
        exec::run_plan(&plan::add_pods(&self.spec, &addrs))?;
        Ok(created)
    }

    /// Creates `count` filler pods on `node` (routes and neighbour entries, no namespace;
    /// see the module docs) and returns their addresses.
    pub fn add_filler_pods(
        &mut self,
        node: usize,
        count: usize,
    ) -> Result<Vec<Ipv4Addr>, LabError> {
        self.check_node(node)?;
        let mut ips = Vec::with_capacity(count);
        for _ in 0..count {
            match self.alloc(node) {
                Ok(ip) => ips.push(ip),
                Err(e) => {
                    for ip in ips {
                        self.free(ip);
                    }
                    return Err(e);
                }
            }
        }
        self.fillers.extend(&ips);
        exec::run_plan(&plan::add_fillers(&self.spec, &ips))?;
        Ok(ips)
    }

    /// Removes every filler pod.
    pub fn clear_filler_pods(&mut self) -> Result<(), LabError> {
        let fillers = std::mem::take(&mut self.fillers);
        exec::run_plan(&plan::remove_fillers(&self.spec, &fillers))?;
        for ip in fillers {
            self.free(ip);
        }
        Ok(())
    }

    /// Creates services (ClusterIPs assigned in order from 198.19.0.1) on every node, in
    /// one transaction per node.
    pub fn add_services(&mut self, services: &[ServiceSpec]) -> Result<Vec<Service>, LabError> {
        let mut created = Vec::with_capacity(services.len());
        for (k, s) in services.iter().enumerate() {
            if s.endpoints.is_empty() || s.endpoints.len() > plan::MAX_ENDPOINTS {
                return Err(LabError::Invalid {
                    field: "service endpoints",
                    message: format!(
                        "service #{k} has {} endpoints; allowed 1..={}",
                        s.endpoints.len(),
                        plan::MAX_ENDPOINTS
                    ),
                });
            }
            let distinct: BTreeSet<(Protocol, u16)> =
                s.ports.iter().map(|p| (p.protocol, p.port)).collect();
            if s.ports.is_empty()
                || s.ports.len() > plan::MAX_PORTS
                || distinct.len() < s.ports.len()
            {
                return Err(LabError::Invalid {
                    field: "service ports",
                    message: format!(
                        "service #{k} has {} ports; allowed 1..={}, each protocol and port once",
                        s.ports.len(),
                        plan::MAX_PORTS
                    ),
                });
            }
            let ip =
                plan::service_ip((self.services.len() + k) as u32).ok_or(LabError::Exhausted {
                    what: "a service",
                    range: "198.19.0.0/16",
                })?;
            created.push(Service {
                ip,
                ports: s.ports.clone(),
                endpoints: s.endpoints.clone(),
            });
        }
        exec::run_plan(&plan::add_services(&self.spec, &self.services, &created))?;
        self.services.extend(created.iter().cloned());
        Ok(created)
    }

    /// Removes every service.
    pub fn clear_services(&mut self) -> Result<(), LabError> {
        exec::run_plan(&plan::clear_services(&self.spec))?;
        self.services.clear();
        Ok(())
    }

    /// Installs policies: each target pod (real or filler) becomes isolated (default
    /// deny for new connections) and accepts only the peers its policies allow. One
    /// transaction per node hosting targets.
    pub fn add_policies(&mut self, policies: &[Policy]) -> Result<(), LabError> {
        for p in policies {
            let node = node_of(p.target).filter(|&n| n < self.spec.nodes);
            if node.is_none() {
                return Err(LabError::Invalid {
                    field: "policy target",
                    message: format!("{} is not a pod address of this lab", p.target),
                });
            }
        }
        let mut isolated = self.isolated.clone();
        let plan = plan::add_policies(&self.spec, policies, &mut isolated);
        let result = exec::run_plan(&plan);
        // Partly applied on error: remember the chains that may now exist, so a retry
        // does not redeclare (and so flush) them.
        self.isolated = isolated;
        result?;
        self.policies += policies.len();
        Ok(())
    }

    /// Removes every policy.
    pub fn clear_policies(&mut self) -> Result<(), LabError> {
        exec::run_plan(&plan::clear_policies(&self.spec))?;
        self.isolated.clear();
        self.policies = 0;
        Ok(())
    }

    /// Starts `f` on a thread inside `target`'s namespace (see [`spawn_in`]).
    pub fn spawn_in<T: Send + 'static>(
        &self,
        target: Target<'_>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<NetnsThread<T>, LabError> {
        exec::spawn_in(&self.netns(target)?, f)
    }

    /// Runs `f` on a thread inside `target`'s namespace and returns its value.
    pub fn run_in<T: Send + 'static>(
        &self,
        target: Target<'_>,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, LabError> {
        exec::run_in(&self.netns(target)?, f)
    }

    /// Connection-tracking entries of the namespaces that track connections (the nodes,
    /// whose service and policy rules need conntrack, and the fabric): (namespace, count),
    /// for namespaces with a readable count only.
    pub fn conntrack_entries(&self) -> Result<Vec<(String, u64)>, LabError> {
        let mut found = Vec::new();
        let targets = (0..self.spec.nodes)
            .map(Target::Node)
            .chain([Target::Fabric]);
        for target in targets {
            let ns = self.netns(target)?;
            if let Some(n) = exec::run_in(&ns, crate::carryover::conntrack_entries)? {
                found.push((ns, n));
            }
        }
        Ok(found)
    }

    /// Empties the connection-tracking table of namespace `netns` (`conntrack -F`), so the
    /// next repetition starts with the table its first one had. The entries of finished
    /// connections (120 s in `TIME_WAIT`) would otherwise pile up by tens of thousands per
    /// connection-per-transaction repetition, until a full table drops new SYNs.
    pub fn flush_conntrack(&self, netns: &str) -> Result<(), LabError> {
        exec::output_in(netns, "conntrack", &["-F"]).map(drop)
    }

    /// Packets each endpoint's DNAT rule of `port` of `service` has translated on `node`
    /// (the client's node: DNAT happens where a connection enters the service datapath;
    /// only a connection's first packet is counted, conntrack handles the rest). With the
    /// iptables proxy, adding services resets these counters (the nat table is rewritten).
    pub fn service_counters(
        &self,
        service: &Service,
        port: ServicePort,
        node: usize,
    ) -> Result<Vec<u64>, LabError> {
        self.check_node(node)?;
        let netns = self.spec.names().node(node);
        // One endpoint chain at a time: listing a whole nat table of 10 000 services took
        // 8-17 s per read (iptables-save, loaded 2-core machine), the endpoint chains of
        // the measured service take milliseconds.
        let dnat_packets = |counters: Vec<RuleCounter>, verdict: &dyn Fn(&str) -> bool| {
            counters
                .iter()
                .filter(|c| verdict(&c.rule))
                .map(|c| c.packets)
                .sum::<u64>()
        };
        (0..service.endpoints.len())
            .map(|i| match self.spec.proxy {
                ProxyMode::Iptables => {
                    let chain = service.sep_chain(port, i);
                    let out =
                        exec::output_in(&netns, "iptables", &["-t", "nat", "-v", "-S", &chain])?;
                    Ok(dnat_packets(
                        check::parse_iptables_chain_counters(&out),
                        &|r| r.contains("-j DNAT"),
                    ))
                }
                ProxyMode::Nftables => {
                    let chain = service.nft_sep_chain(port, i);
                    let out = exec::output_in(
                        &netns,
                        "nft",
                        &["-j", "list", "chain", "ip", plan::NFT_SVC_TABLE, &chain],
                    )?;
                    Ok(dnat_packets(
                        check::parse_nft_counters(&out)
                            .map_err(|m| check::parse_err("nft -j list chain", m))?,
                        &|r| r == "dnat",
                    ))
                }
                ProxyMode::Ipvs => Err(LabError::IpvsUnsupported),
            })
            .collect()
    }

    /// Current value of one path counter.
    pub fn read_counter(&self, counter: &PathCounter) -> Result<u64, LabError> {
        Ok(match counter {
            PathCounter::Dnat {
                service,
                port,
                node,
            } => self.service_counters(service, *port, *node)?.iter().sum(),
            PathCounter::VxlanTx(node) => self.vxlan_stats(*node)?.tx_packets,
            PathCounter::PolicyAccepted(ip) => self.policy_counters(*ip)?.accepted,
            PathCounter::PolicyDropped(ip) => self.policy_counters(*ip)?.dropped,
        })
    }

    /// Reads `counters`, runs `probe`, reads them again: the self-check that proves a
    /// scenario point's traffic takes the path it claims (see [`CounterDelta::rose`]).
    pub fn check_path<R>(
        &self,
        counters: &[PathCounter],
        probe: impl FnOnce() -> R,
    ) -> Result<(R, Vec<CounterDelta>), LabError> {
        let before: Vec<u64> = counters
            .iter()
            .map(|c| self.read_counter(c))
            .collect::<Result<_, _>>()?;
        let out = probe();
        let deltas = counters
            .iter()
            .zip(before)
            .map(|(c, before)| {
                Ok(CounterDelta {
                    counter: c.clone(),
                    before,
                    after: self.read_counter(c)?,
                })
            })
            .collect::<Result<_, LabError>>()?;
        Ok((out, deltas))
    }

    /// Packets accepted and dropped by the policies of the pod at `target`. With
    /// nftables policies the counters are shared by all pods of the target's node.
    pub fn policy_counters(&self, target: Ipv4Addr) -> Result<PolicyCounters, LabError> {
        let node = node_of(target)
            .filter(|&n| n < self.spec.nodes)
            .ok_or_else(|| LabError::Unknown {
                kind: "pod",
                name: target.to_string(),
            })?;
        let netns = self.spec.names().node(node);
        let mut pc = PolicyCounters::default();
        match self.spec.policy_mode {
            PolicyMode::Iptables => {
                // The pod's own chain, not `iptables-save` of 20 000 policies.
                let chain = plan::policy_chain(target);
                let out =
                    exec::output_in(&netns, "iptables", &["-t", "filter", "-v", "-S", &chain])?;
                for c in check::parse_iptables_chain_counters(&out) {
                    if c.chain != chain {
                        continue;
                    }
                    if c.rule.ends_with("-j ACCEPT") {
                        pc.accepted += c.packets;
                    } else if c.rule.ends_with("-j DROP") {
                        pc.dropped += c.packets;
                    }
                }
            }
            PolicyMode::Nftables => {
                let out = exec::output_in(
                    &netns,
                    "nft",
                    &["-j", "list", "chain", "ip", plan::NFT_POL_TABLE, "ingress"],
                )?;
                for c in check::parse_nft_counters(&out)
                    .map_err(|m| check::parse_err("nft -j list chain", m))?
                {
                    match c.rule.as_str() {
                        "accept" => pc.accepted += c.packets,
                        "drop" => pc.dropped += c.packets,
                        _ => {}
                    }
                }
            }
        }
        Ok(pc)
    }

    /// MTU and counters of interface `dev` in `target` (e.g. `vxlan0` on a node, `eth0`
    /// in a pod).
    pub fn link_stats(&self, target: Target<'_>, dev: &str) -> Result<LinkStats, LabError> {
        let netns = self.netns(target)?;
        let shown = format!("ip -n {netns} -j -s link show dev {dev}");
        let out = exec::run_tool(
            "ip",
            &["-n", &netns, "-j", "-s", "link", "show", "dev", dev],
            None,
            &shown,
        )?;
        check::parse_link_stats(&out).map_err(|m| check::parse_err(&shown, m))
    }

    /// Counters of node `node`'s VXLAN device (vxlan profile only).
    pub fn vxlan_stats(&self, node: usize) -> Result<LinkStats, LabError> {
        self.link_stats(Target::Node(node), plan::VXLAN_DEV)
    }

    /// MTU of a pod's interface, as the kernel has it.
    pub fn pod_mtu(&self, pod: &str) -> Result<u32, LabError> {
        Ok(self.link_stats(Target::Pod(pod), plan::POD_IF)?.mtu)
    }

    /// Payload bytes per segment (TCP_MAXSEG, i.e. the MSS less TCP options such as the
    /// 12-byte timestamps) the kernel uses for a TCP connection from pod `client` to pod
    /// `server`: pod MTU − 52 with timestamps on (a listener on an ephemeral port in the
    /// server for the time of the probe).
    pub fn effective_mss(&self, client: &str, server: &str) -> Result<u32, LabError> {
        let server_ip = self
            .pod(server)
            .ok_or_else(|| LabError::Unknown {
                kind: "pod",
                name: server.to_owned(),
            })?
            .ip;
        let netns = self.netns(Target::Pod(server))?;
        let listener = self
            .run_in(Target::Pod(server), move || {
                TcpListener::bind(SocketAddrV4::new(server_ip, 0))
            })?
            .map_err(|source| LabError::Setns {
                netns: netns.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| LabError::Setns {
            netns: netns.clone(),
            source,
        })?;
        let client_ns = self.netns(Target::Pod(client))?;
        self.run_in(Target::Pod(client), move || {
            let s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            socket2::SockRef::from(&s).tcp_mss()
        })?
        .map_err(|source| LabError::Setns {
            netns: client_ns,
            source,
        })
    }

    /// One TCP connect from `from` to `addr` with `timeout`. With policies on, a probe from
    /// a pod that is not allowed must come back [`ProbeOutcome::TimedOut`].
    pub fn connect_probe(
        &self,
        from: Target<'_>,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<ProbeOutcome, LabError> {
        self.run_in(from, move || check::connect_probe(addr, timeout))
    }

    /// Deletes every namespace of the lab, reporting errors (Drop does the same silently).
    pub fn down(mut self) -> Result<(), LabError> {
        self.torn_down = true;
        self.teardown()
    }

    fn teardown(&self) -> Result<(), LabError> {
        let pods: Vec<String> = self.pods.keys().cloned().collect();
        exec::run_plan(&plan::delete_namespaces(&plan::namespaces(
            &self.spec, &pods,
        )))?;
        let left = list_namespaces(&CleanScope::Run(self.spec.run_id.clone()));
        match left.first() {
            None => Ok(()),
            Some(first) => Err(LabError::Command {
                command: format!("ip netns del {first}"),
                status: "namespace still present".into(),
                line: String::new(),
                stderr: format!("{} namespaces of the run remain", left.len()),
            }),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.torn_down {
            self.torn_down = true;
            let _ = self.teardown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_selects_only_its_run_in_teardown_order() {
        let names = [
            "cnb-a-fabric",
            "cnb-a-n0",
            "cnb-a-p-x",
            "cnb-ab-n0",
            "nlb-1-0-a",
            "other",
        ]
        .map(String::from);
        assert_eq!(
            select_namespaces(names.clone(), &CleanScope::Run("a".into())),
            ["cnb-a-p-x", "cnb-a-n0", "cnb-a-fabric"]
        );
        assert_eq!(select_namespaces(names, &CleanScope::All).len(), 4);
    }

    #[test]
    fn ipvs_request_is_refused_before_touching_anything() {
        let mut s = LabSpec::new("x");
        s.proxy = ProxyMode::Ipvs;
        let e = Lab::up(&s).unwrap_err().to_string();
        assert!(e.contains("--proxy iptables or nftables"), "{e}");
    }
}
