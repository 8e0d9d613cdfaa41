//! Pure planning: addresses, names and the exact tool input (iproute2 batch lines,
//! `iptables-restore` text, `nft -f` text) that builds and changes a lab. No I/O here;
//! [`super::exec`] runs what this module returns.
//!
//! Address plan (all inside 198.18.0.0/15, RFC 2544):
//!
//! | what | range |
//! |---|---|
//! | node underlay, on the fabric bridge | 198.18.0.0/24, node `i` = 198.18.0.(i+1) |
//! | pod CIDR of node `i` | 198.18.(32·(i+1)).0/19 |
//! | node `i`'s bridge (pods' gateway) | first address + 1 of its pod CIDR |
//! | node `i`'s VXLAN device (VTEP address, as Flannel) | first address of its pod CIDR |
//! | pods (real and filler) of node `i` | from first address + 2 of its pod CIDR |
//! | services (ClusterIPs) | 198.19.0.0/16, from 198.19.0.1 |
//!
//! Pods get a /32 address and a default route via their node's bridge address, so every pod
//! packet, also between two pods of one node, is routed by the node namespace and passes
//! its netfilter hooks: service DNAT and policy filtering work whether or not the host has
//! `br_netfilter` loaded (a lab cannot load modules), as with Calico's /32 routed pods.
//! ICMP redirects are off in node namespaces so pods keep sending through the node. Where
//! `br_netfilter` is loaded, frames crossing a node's bridge also pass its iptables hooks,
//! and a service packet DNATed back to the pod that sent it is bridged out of its ingress
//! port: pod ports are in hairpin mode for that, as kubelet's `hairpin-veth` sets them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use super::spec::{LabSpec, Names, PolicyMode, Profile, Protocol, ProxyMode};

/// Prefix length of the underlay network.
pub const UNDERLAY_PREFIX: u8 = 24;
/// Prefix length of each node's pod CIDR.
pub const POD_CIDR_PREFIX: u8 = 19;
/// Pod addresses per node: a /19 less the VTEP, gateway and broadcast addresses.
pub const POD_SLOTS: u32 = (1 << (32 - POD_CIDR_PREFIX)) - 3;
/// First service address.
pub const SERVICE_BASE: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// Service addresses available (198.19.0.1–198.19.255.254).
pub const SERVICE_SLOTS: u32 = 65534;
/// Most endpoints per service (keeps iptables chain names within 28 characters).
pub const MAX_ENDPOINTS: usize = 1000;
/// Most ports per service.
pub const MAX_PORTS: usize = 16;
/// VXLAN network identifier of the overlay.
pub const VXLAN_ID: u32 = 1;
/// VXLAN UDP port (IANA).
pub const VXLAN_PORT: u16 = 4789;
/// Name of the underlay interface in a node, of the pod bridge and of the VXLAN device.
pub const NODE_UPLINK: &str = "eth0";
/// Bridge of a node's pods (and of the fabric).
pub const BRIDGE: &str = "br0";
/// VXLAN device of a node.
pub const VXLAN_DEV: &str = "vxlan0";
/// Interface name inside a pod.
pub const POD_IF: &str = "eth0";
/// nftables table of services.
pub const NFT_SVC_TABLE: &str = "cnb_svc";
/// nftables table of policies.
pub const NFT_POL_TABLE: &str = "cnb_pol";
/// iptables chain every service match sits in (kube-proxy's name).
pub const KUBE_SERVICES: &str = "KUBE-SERVICES";
/// iptables chain marking a connection for masquerading (kube-proxy's name).
pub const KUBE_MARK_MASQ: &str = "KUBE-MARK-MASQ";
/// Packet mark bit that asks for masquerading: kube-proxy's default `--masquerade-bit 14`.
pub const MASQ_MARK: &str = "0x4000";
/// iptables chain dispatching forwarded packets to per-pod policy chains.
pub const POLICY_CHAIN: &str = "CNB-POLICY";

/// Underlay address of node `i`.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, (i + 1) as u8)
}

/// Network address of node `i`'s pod CIDR (prefix [`POD_CIDR_PREFIX`]).
pub fn pod_cidr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, (32 * (i + 1)) as u8, 0)
}

/// Address of node `i`'s pod bridge: the pods' default gateway.
pub fn gateway(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(pod_cidr(i)) + 1)
}

/// Address of node `i`'s VXLAN device.
pub fn vtep_ip(i: usize) -> Ipv4Addr {
    pod_cidr(i)
}

/// MAC address of node `i`'s VXLAN device (fixed, so peers are planned without asking).
pub fn vtep_mac(i: usize) -> String {
    format!("02:cb:00:00:00:{:02x}", i + 1)
}

/// Address of pod slot `slot` on node `node`.
pub fn pod_ip(node: usize, slot: u32) -> Option<Ipv4Addr> {
    (slot < POD_SLOTS).then(|| Ipv4Addr::from(u32::from(pod_cidr(node)) + 2 + slot))
}

/// The node whose pod CIDR holds `ip`.
pub fn node_of(ip: Ipv4Addr) -> Option<usize> {
    let o = ip.octets();
    (o[0] == 198 && o[1] == 18 && o[2] >= 32).then(|| usize::from(o[2] / 32) - 1)
}

/// Address of service number `k`.
pub fn service_ip(k: u32) -> Option<Ipv4Addr> {
    (k < SERVICE_SLOTS).then(|| Ipv4Addr::from(u32::from(SERVICE_BASE) + k))
}

/// Name of a pod's veth end in its node: `cnb` and the pod address in hex (fits IFNAMSIZ).
pub fn host_if(ip: Ipv4Addr) -> String {
    format!("cnb{:08x}", u32::from(ip))
}

fn hex(ip: Ipv4Addr) -> String {
    format!("{:08X}", u32::from(ip))
}

/// MAC address a filler pod's neighbour entry points to.
pub fn filler_mac(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:cb:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// A pod with a network namespace of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddr {
    /// Pod name (unique in the lab).
    pub name: String,
    /// Node index.
    pub node: usize,
    /// Pod address.
    pub ip: Ipv4Addr,
}

/// One port of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServicePort {
    /// Protocol.
    pub protocol: Protocol,
    /// Port on the ClusterIP.
    pub port: u16,
    /// Port on the endpoints.
    pub target_port: u16,
}

impl ServicePort {
    /// A TCP port.
    pub fn tcp(port: u16, target_port: u16) -> Self {
        ServicePort {
            protocol: Protocol::Tcp,
            port,
            target_port,
        }
    }
    /// A UDP port.
    pub fn udp(port: u16, target_port: u16) -> Self {
        ServicePort {
            protocol: Protocol::Udp,
            port,
            target_port,
        }
    }
}

/// A ClusterIP service with its ports and endpoints. Each port is load-balanced on its
/// own, as kube-proxy does (one service chain per port), so a netload server can be
/// reached on TCP (control) and UDP (data) through one ClusterIP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// ClusterIP.
    pub ip: Ipv4Addr,
    /// Ports (1 to [`MAX_PORTS`]).
    pub ports: Vec<ServicePort>,
    /// Endpoint (pod) addresses (1 to [`MAX_ENDPOINTS`]).
    pub endpoints: Vec<Ipv4Addr>,
}

impl Service {
    fn key(&self, p: ServicePort) -> String {
        format!(
            "{}{}{:04X}",
            hex(self.ip),
            &p.protocol.as_str()[..1].to_uppercase(),
            p.port
        )
    }
    /// iptables chain of port `p` (`KUBE-SVC-…`).
    pub fn svc_chain(&self, p: ServicePort) -> String {
        format!("KUBE-SVC-{}", self.key(p))
    }
    /// iptables chain of port `p` and endpoint `i` (`KUBE-SEP-…`), whose DNAT rule counts
    /// its connections.
    pub fn sep_chain(&self, p: ServicePort, i: usize) -> String {
        format!("KUBE-SEP-{}-{i}", self.key(p))
    }
    /// nftables chain of port `p`.
    pub fn nft_svc_chain(&self, p: ServicePort) -> String {
        format!("svc_{}", self.key(p))
    }
    /// nftables chain of port `p` and endpoint `i`, whose counter counts its connections.
    pub fn nft_sep_chain(&self, p: ServicePort, i: usize) -> String {
        format!("sep_{}_{i}", self.key(p))
    }
}

/// One ingress rule: `target` accepts new connections from `from` (on `port`, or on any
/// port when `None`). A pod named by any policy is isolated: everything else is dropped,
/// as with Kubernetes NetworkPolicy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Policy {
    /// The pod the policy selects (real or filler).
    pub target: Ipv4Addr,
    /// The peer allowed in.
    pub from: Ipv4Addr,
    /// Allowed protocol and port; `None` allows every port.
    pub port: Option<(Protocol, u16)>,
}

/// iptables chain holding the policies of the pod at `ip`.
pub fn policy_chain(ip: Ipv4Addr) -> String {
    format!("CNB-PI-{}", hex(ip))
}

/// One invocation of a system tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `ip [-n NETNS] [-force] -batch -` with these lines on stdin.
    Ip {
        /// Namespace; `None` for namespace-management lines (`netns add`).
        netns: Option<String>,
        /// Keep going past failing lines (teardown).
        force: bool,
        /// Batch lines.
        lines: Vec<String>,
    },
    /// `bridge -n NETNS -batch -` (VXLAN forwarding entries).
    Bridge {
        /// Namespace.
        netns: String,
        /// Batch lines.
        lines: Vec<String>,
    },
    /// `ip netns exec NETNS sysctl -qw K=V…`.
    Sysctl {
        /// Namespace.
        netns: String,
        /// Keys and values.
        settings: Vec<(String, String)>,
    },
    /// `ip netns exec NETNS iptables-restore [--noflush]` with `text` on stdin.
    IptablesRestore {
        /// Namespace.
        netns: String,
        /// Add to the tables instead of replacing them.
        noflush: bool,
        /// The restore input.
        text: String,
    },
    /// `ip netns exec NETNS nft -f -` with `text` on stdin: one atomic transaction.
    Nft {
        /// Namespace.
        netns: String,
        /// The nft script.
        text: String,
    },
}

impl Step {
    /// The namespace the step works in, if any.
    pub fn netns(&self) -> Option<&str> {
        match self {
            Step::Ip { netns, .. } => netns.as_deref(),
            Step::Bridge { netns, .. }
            | Step::Sysctl { netns, .. }
            | Step::IptablesRestore { netns, .. }
            | Step::Nft { netns, .. } => Some(netns),
        }
    }

    /// The command line, as shown in errors.
    pub fn command(&self) -> String {
        let exec = |ns: &str, rest: &str| format!("ip netns exec {ns} {rest}");
        match self {
            Step::Ip { netns, force, .. } => format!(
                "ip{}{} -batch -",
                netns.as_ref().map_or(String::new(), |n| format!(" -n {n}")),
                if *force { " -force" } else { "" }
            ),
            Step::Bridge { netns, .. } => format!("bridge -n {netns} -batch -"),
            Step::Sysctl { netns, settings } => exec(
                netns,
                &format!(
                    "sysctl -qw {}",
                    settings
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            Step::IptablesRestore { netns, noflush, .. } => exec(
                netns,
                if *noflush {
                    "iptables-restore --noflush"
                } else {
                    "iptables-restore"
                },
            ),
            Step::Nft { netns, .. } => exec(netns, "nft -f -"),
        }
    }

    /// Standard input of the command.
    pub fn input(&self) -> String {
        match self {
            Step::Ip { lines, .. } | Step::Bridge { lines, .. } => {
                let mut s = lines.join("\n");
                s.push('\n');
                s
            }
            Step::Sysctl { .. } => String::new(),
            Step::IptablesRestore { text, .. } | Step::Nft { text, .. } => text.clone(),
        }
    }
}

/// Steps in phases: every step of a phase may run at the same time (they touch different
/// namespaces); phases run in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The phases, in order.
    pub phases: Vec<Vec<Step>>,
}

impl Plan {
    fn phase(&mut self, steps: Vec<Step>) {
        if !steps.is_empty() {
            self.phases.push(steps);
        }
    }

    /// Number of steps (tool invocations).
    pub fn steps(&self) -> usize {
        self.phases.iter().map(Vec::len).sum()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, phase) in self.phases.iter().enumerate() {
            writeln!(f, "## phase {}", i + 1)?;
            for step in phase {
                writeln!(f, "$ {}", step.command())?;
                f.write_str(&step.input())?;
            }
        }
        Ok(())
    }
}

fn ip(netns: Option<String>, lines: Vec<String>) -> Step {
    Step::Ip {
        netns,
        force: false,
        lines,
    }
}

/// Builds the topology: fabric, nodes, bridges, inter-node datapath, empty service and
/// policy tables.
pub fn up(spec: &LabSpec) -> Plan {
    let names = spec.names();
    let nodes = spec.nodes;
    let mtu = spec.mtu;
    let pod_mtu = spec.pod_mtu();
    let mut plan = Plan::default();

    let mut add = vec![format!("netns add {}", names.fabric())];
    add.extend((0..nodes).map(|i| format!("netns add {}", names.node(i))));
    plan.phase(vec![ip(None, add)]);

    // Before any device exists, so every device inherits `default`.
    plan.phase(
        (0..nodes)
            .map(|i| Step::Sysctl {
                netns: names.node(i),
                settings: [
                    ("net.ipv4.ip_forward", "1"),
                    ("net.ipv4.conf.all.send_redirects", "0"),
                    ("net.ipv4.conf.default.send_redirects", "0"),
                    ("net.ipv4.conf.all.rp_filter", "0"),
                    ("net.ipv4.conf.default.rp_filter", "0"),
                ]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            })
            .collect(),
    );

    let mut fabric = vec![
        "link set lo up".to_owned(),
        format!("link add {BRIDGE} mtu {mtu} type bridge"),
        format!("link set {BRIDGE} up"),
    ];
    for i in 0..nodes {
        fabric.push(format!(
            "link add n{i} mtu {mtu} type veth peer name {NODE_UPLINK} netns {} mtu {mtu}",
            names.node(i)
        ));
        fabric.push(format!("link set n{i} master {BRIDGE} up"));
    }
    plan.phase(vec![ip(Some(names.fabric()), fabric)]);

    let mut node_steps = Vec::new();
    let mut fdb_steps = Vec::new();
    for i in 0..nodes {
        let mut l = vec![
            "link set lo up".to_owned(),
            format!(
                "addr add {}/{UNDERLAY_PREFIX} dev {NODE_UPLINK}",
                node_ip(i)
            ),
            format!("link set {NODE_UPLINK} up"),
            format!("link add {BRIDGE} mtu {pod_mtu} type bridge"),
            format!("addr add {}/{POD_CIDR_PREFIX} dev {BRIDGE}", gateway(i)),
            format!("link set {BRIDGE} up"),
        ];
        let others = (0..nodes).filter(|&j| j != i);
        match spec.profile {
            Profile::Routed => {
                for j in others {
                    l.push(format!(
                        "route add {}/{POD_CIDR_PREFIX} via {} dev {NODE_UPLINK}",
                        pod_cidr(j),
                        node_ip(j)
                    ));
                }
            }
            Profile::Vxlan => {
                l.push(format!(
                    "link add {VXLAN_DEV} mtu {pod_mtu} address {} type vxlan id {VXLAN_ID} local {} dev {NODE_UPLINK} dstport {VXLAN_PORT} nolearning",
                    vtep_mac(i),
                    node_ip(i)
                ));
                l.push(format!("addr add {}/32 dev {VXLAN_DEV}", vtep_ip(i)));
                l.push(format!("link set {VXLAN_DEV} up"));
                let mut fdb = Vec::new();
                for j in others {
                    l.push(format!(
                        "neigh add {} lladdr {} dev {VXLAN_DEV} nud permanent",
                        vtep_ip(j),
                        vtep_mac(j)
                    ));
                    l.push(format!(
                        "route add {}/{POD_CIDR_PREFIX} via {} dev {VXLAN_DEV} onlink",
                        pod_cidr(j),
                        vtep_ip(j)
                    ));
                    fdb.push(format!(
                        "fdb append {} dev {VXLAN_DEV} dst {}",
                        vtep_mac(j),
                        node_ip(j)
                    ));
                }
                if !fdb.is_empty() {
                    fdb_steps.push(Step::Bridge {
                        netns: names.node(i),
                        lines: fdb,
                    });
                }
            }
        }
        node_steps.push(ip(Some(names.node(i)), l));
    }
    plan.phase(node_steps);

    let mut base = fdb_steps;
    for i in 0..nodes {
        base.extend(base_rules(spec, &names, i));
    }
    plan.phase(base);
    plan
}

fn iptables_nat_base() -> String {
    iptables_services(&[])
}

fn iptables_filter_base() -> String {
    format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:{POLICY_CHAIN} - [0:0]\n-A FORWARD -j {POLICY_CHAIN}\n-A {POLICY_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\nCOMMIT\n"
    )
}

fn nft_svc_base() -> String {
    format!(
        "table ip {NFT_SVC_TABLE} {{
\tmap services {{
\t\ttype ipv4_addr . inet_proto . inet_service : verdict
\t}}
\tchain mark_for_masquerade {{
\t\tmeta mark set meta mark | {MASQ_MARK}
\t}}
\tchain masquerading {{
\t\ttype nat hook postrouting priority 100; policy accept;
\t\tmeta mark & {MASQ_MARK} == 0 return
\t\tmeta mark set meta mark ^ {MASQ_MARK}
\t\tmasquerade fully-random
\t}}
\tchain prerouting {{
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tip daddr . meta l4proto . th dport vmap @services
\t}}
\tchain output {{
\t\ttype nat hook output priority -100; policy accept;
\t\tip daddr . meta l4proto . th dport vmap @services
\t}}
}}
"
    )
}

fn nft_pol_base() -> String {
    format!(
        "table ip {NFT_POL_TABLE} {{
\tset isolated {{
\t\ttype ipv4_addr
\t}}
\tset allow {{
\t\ttype ipv4_addr . ipv4_addr . inet_proto . inet_service
\t}}
\tset allow_any {{
\t\ttype ipv4_addr . ipv4_addr
\t}}
\tchain forward {{
\t\ttype filter hook forward priority 0; policy accept;
\t\tct state established,related accept
\t\tip daddr @isolated jump ingress
\t}}
\tchain ingress {{
\t\tip saddr . ip daddr . meta l4proto . th dport @allow counter accept
\t\tip saddr . ip daddr @allow_any counter accept
\t\tcounter drop
\t}}
}}
"
    )
}

fn base_rules(spec: &LabSpec, names: &Names, node: usize) -> Vec<Step> {
    let netns = names.node(node);
    let mut ipt = String::new();
    let mut nft = String::new();
    match spec.proxy {
        ProxyMode::Iptables => ipt.push_str(&iptables_nat_base()),
        ProxyMode::Nftables => nft.push_str(&nft_svc_base()),
        ProxyMode::Ipvs => {}
    }
    match spec.policy_mode {
        PolicyMode::Iptables => ipt.push_str(&iptables_filter_base()),
        PolicyMode::Nftables => nft.push_str(&nft_pol_base()),
    }
    let mut steps = Vec::new();
    if !ipt.is_empty() {
        steps.push(Step::IptablesRestore {
            netns: netns.clone(),
            noflush: false,
            text: ipt,
        });
    }
    if !nft.is_empty() {
        steps.push(Step::Nft { netns, text: nft });
    }
    steps
}

/// Adds pods with namespaces: a veth from the node's bridge to `eth0` in the pod, a /32
/// address and a default route via the node.
pub fn add_pods(spec: &LabSpec, pods: &[PodAddr]) -> Plan {
    let names = spec.names();
    let mtu = spec.pod_mtu();
    let mut plan = Plan::default();
    if pods.is_empty() {
        return plan;
    }
    plan.phase(vec![ip(
        None,
        pods.iter()
            .map(|p| format!("netns add {}", names.pod(&p.name)))
            .collect(),
    )]);
    let mut by_node: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for p in pods {
        let hif = host_if(p.ip);
        let l = by_node.entry(p.node).or_default();
        l.push(format!(
            "link add {hif} mtu {mtu} type veth peer name {POD_IF} netns {} mtu {mtu}",
            names.pod(&p.name)
        ));
        l.push(format!("link set {hif} master {BRIDGE} up"));
        // As kubelet's hairpin-veth: where br_netfilter is loaded, a service packet from
        // an endpoint DNATed back to itself is bridged out of the port it came in by.
        l.push(format!("link set {hif} type bridge_slave hairpin on"));
    }
    plan.phase(
        by_node
            .into_iter()
            .map(|(n, l)| ip(Some(names.node(n)), l))
            .collect(),
    );
    plan.phase(
        pods.iter()
            .map(|p| {
                ip(
                    Some(names.pod(&p.name)),
                    vec![
                        "link set lo up".to_owned(),
                        format!("addr add {}/32 dev {POD_IF}", p.ip),
                        format!("link set {POD_IF} up"),
                        format!(
                            "route add default via {} dev {POD_IF} onlink",
                            gateway(p.node)
                        ),
                    ],
                )
            })
            .collect(),
    );
    plan
}

/// Adds filler pods without namespaces: each is a /32 route and a permanent neighbour
/// entry on its node's bridge, the per-pod state a node holds for a pod it hosts.
pub fn add_fillers(spec: &LabSpec, fillers: &[Ipv4Addr]) -> Plan {
    filler_lines(spec, fillers, false)
}

/// Removes filler pods added by [`add_fillers`].
pub fn remove_fillers(spec: &LabSpec, fillers: &[Ipv4Addr]) -> Plan {
    filler_lines(spec, fillers, true)
}

fn filler_lines(spec: &LabSpec, fillers: &[Ipv4Addr], remove: bool) -> Plan {
    let names = spec.names();
    let mut by_node: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for &f in fillers {
        let Some(n) = node_of(f) else { continue };
        let l = by_node.entry(n).or_default();
        if remove {
            l.push(format!("route del {f}/32 dev {BRIDGE}"));
            l.push(format!("neigh del {f} dev {BRIDGE}"));
        } else {
            l.push(format!(
                "neigh add {f} lladdr {} dev {BRIDGE} nud permanent",
                filler_mac(f)
            ));
            l.push(format!("route add {f}/32 dev {BRIDGE} scope link"));
        }
    }
    let mut plan = Plan::default();
    plan.phase(
        by_node
            .into_iter()
            .map(|(n, lines)| Step::Ip {
                netns: Some(names.node(n)),
                force: remove,
                lines,
            })
            .collect(),
    );
    plan
}

/// Adds `new` services on every node (kube-proxy runs everywhere), one transaction per
/// node. With iptables the whole nat table is rewritten with `existing` and `new` (as
/// kube-proxy's full sync does): iptables-nft's `--noflush` path is about 5× slower at
/// 10k services, and a full restore also resets the rules' counters. With nftables only
/// the new chains and map elements are added.
pub fn add_services(spec: &LabSpec, existing: &[Service], new: &[Service]) -> Plan {
    let mut plan = Plan::default();
    if new.is_empty() {
        return plan;
    }
    match spec.proxy {
        ProxyMode::Iptables => {
            let all: Vec<Service> = existing.iter().chain(new).cloned().collect();
            plan.phase(per_node(spec, true, &iptables_services(&all)));
        }
        ProxyMode::Nftables => plan.phase(per_node(spec, false, &nft_services(new))),
        ProxyMode::Ipvs => {}
    }
    plan
}

fn per_node(spec: &LabSpec, iptables: bool, text: &str) -> Vec<Step> {
    let names = spec.names();
    (0..spec.nodes)
        .map(|i| {
            if iptables {
                Step::IptablesRestore {
                    netns: names.node(i),
                    noflush: false,
                    text: text.to_owned(),
                }
            } else {
                Step::Nft {
                    netns: names.node(i),
                    text: text.to_owned(),
                }
            }
        })
        .collect()
}

/// Removes every service (the table is rebuilt empty in one transaction).
pub fn clear_services(spec: &LabSpec) -> Plan {
    let mut plan = Plan::default();
    match spec.proxy {
        ProxyMode::Iptables => plan.phase(
            (0..spec.nodes)
                .map(|i| Step::IptablesRestore {
                    netns: spec.names().node(i),
                    noflush: false,
                    text: iptables_nat_base(),
                })
                .collect(),
        ),
        ProxyMode::Nftables => plan.phase(per_node(
            spec,
            false,
            &format!("delete table ip {NFT_SVC_TABLE}\n{}", nft_svc_base()),
        )),
        ProxyMode::Ipvs => {}
    }
    plan
}

/// The whole nat table in kube-proxy's iptables layout: a match per service in
/// KUBE-SERVICES jumping to the service's chain, which picks an endpoint chain with
/// `statistic --mode random` probabilities 1/n, 1/(n-1), …, 1 (uniform overall), each
/// endpoint chain marking hairpin traffic (an endpoint reaching itself through the
/// service) for masquerading and DNATing. Pod sources are routable, so other traffic is
/// not masqueraded, as with kube-proxy's `--cluster-cidr`. For `iptables-restore`
/// without `--noflush` (replaces the table).
pub fn iptables_services(services: &[Service]) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    for s in services {
        for &p in &s.ports {
            let svc = s.svc_chain(p);
            let proto = p.protocol.as_str();
            let _ = writeln!(chains, ":{svc} - [0:0]");
            let _ = writeln!(
                rules,
                "-A {KUBE_SERVICES} -d {}/32 -p {proto} -m {proto} --dport {} -j {svc}",
                s.ip, p.port
            );
            let n = s.endpoints.len();
            for (i, ep) in s.endpoints.iter().enumerate() {
                let sep = s.sep_chain(p, i);
                let _ = writeln!(chains, ":{sep} - [0:0]");
                if i + 1 < n {
                    let _ = writeln!(
                        rules,
                        "-A {svc} -m statistic --mode random --probability {:.10} -j {sep}",
                        1.0 / (n - i) as f64
                    );
                } else {
                    let _ = writeln!(rules, "-A {svc} -j {sep}");
                }
                let _ = writeln!(rules, "-A {sep} -s {ep}/32 -j {KUBE_MARK_MASQ}");
                let _ = writeln!(
                    rules,
                    "-A {sep} -p {proto} -m {proto} -j DNAT --to-destination {ep}:{}",
                    p.target_port
                );
            }
        }
    }
    format!(
        "*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:{KUBE_SERVICES} - [0:0]
:{KUBE_MARK_MASQ} - [0:0]
:KUBE-POSTROUTING - [0:0]
{chains}-A PREROUTING -j {KUBE_SERVICES}
-A OUTPUT -j {KUBE_SERVICES}
-A POSTROUTING -j KUBE-POSTROUTING
-A {KUBE_MARK_MASQ} -j MARK --set-xmark {MASQ_MARK}/{MASQ_MARK}
-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark {MASQ_MARK}/0x0
-A KUBE-POSTROUTING -j MASQUERADE --random-fully
{rules}COMMIT
"
    )
}

/// Elements per `add element` line: keeps lines short for nft's parser.
const NFT_ELEMENTS_PER_LINE: usize = 1000;

/// kube-proxy's nftables layout: a verdict map from address . protocol . port to the
/// service's chain, which picks an endpoint chain with `numgen random mod n`; each
/// endpoint chain marks hairpin traffic for masquerading, then counts and DNATs.
pub fn nft_services(services: &[Service]) -> String {
    let mut out = String::new();
    let mut elems = Vec::new();
    for s in services {
        for &p in &s.ports {
            let svc = s.nft_svc_chain(p);
            let proto = p.protocol.as_str();
            let _ = writeln!(out, "add chain ip {NFT_SVC_TABLE} {svc}");
            for (i, ep) in s.endpoints.iter().enumerate() {
                let sep = s.nft_sep_chain(p, i);
                let _ = writeln!(out, "add chain ip {NFT_SVC_TABLE} {sep}");
                let _ = writeln!(
                    out,
                    "add rule ip {NFT_SVC_TABLE} {sep} ip saddr {ep} jump mark_for_masquerade"
                );
                let _ = writeln!(
                    out,
                    "add rule ip {NFT_SVC_TABLE} {sep} counter meta l4proto {proto} dnat to {ep}:{}",
                    p.target_port
                );
            }
            if s.endpoints.len() == 1 {
                let _ = writeln!(
                    out,
                    "add rule ip {NFT_SVC_TABLE} {svc} goto {}",
                    s.nft_sep_chain(p, 0)
                );
            } else {
                let arms: Vec<String> = (0..s.endpoints.len())
                    .map(|i| format!("{i} : goto {}", s.nft_sep_chain(p, i)))
                    .collect();
                let _ = writeln!(
                    out,
                    "add rule ip {NFT_SVC_TABLE} {svc} numgen random mod {} vmap {{ {} }}",
                    s.endpoints.len(),
                    arms.join(", ")
                );
            }
            elems.push(format!("{} . {proto} . {} : goto {svc}", s.ip, p.port));
        }
    }
    for chunk in elems.chunks(NFT_ELEMENTS_PER_LINE) {
        let _ = writeln!(
            out,
            "add element ip {NFT_SVC_TABLE} services {{ {} }}",
            chunk.join(", ")
        );
    }
    out
}

/// Programs `policies` on the nodes hosting their targets. `isolated` lists targets that
/// already have policies (their chain exists); it is updated with the new ones.
pub fn add_policies(
    spec: &LabSpec,
    policies: &[Policy],
    isolated: &mut BTreeSet<Ipv4Addr>,
) -> Plan {
    let names = spec.names();
    let mut by_node: BTreeMap<usize, Vec<Policy>> = BTreeMap::new();
    for p in policies {
        if let Some(n) = node_of(p.target) {
            by_node.entry(n).or_default().push(*p);
        }
    }
    let steps = by_node
        .into_iter()
        .map(|(n, ps)| match spec.policy_mode {
            PolicyMode::Iptables => Step::IptablesRestore {
                netns: names.node(n),
                noflush: true,
                text: iptables_policies(&ps, isolated),
            },
            PolicyMode::Nftables => {
                let text = nft_policies(&ps);
                isolated.extend(ps.iter().map(|p| p.target));
                Step::Nft {
                    netns: names.node(n),
                    text,
                }
            }
        })
        .collect();
    let mut plan = Plan::default();
    plan.phase(steps);
    plan
}

fn iptables_accept(p: &Policy) -> String {
    match p.port {
        Some((proto, port)) => {
            let proto = proto.as_str();
            format!(
                "-s {}/32 -p {proto} -m {proto} --dport {port} -j ACCEPT",
                p.from
            )
        }
        None => format!("-s {}/32 -j ACCEPT", p.from),
    }
}

/// Where to insert the policy of a new target so that, in iptables mode, its dispatch rule
/// lands in the middle of those of `node` (one rule per isolated pod, in the order targets
/// first appear in `policies`): before the first policy of the median target of the node.
pub fn middle_of_node(policies: &[Policy], node: usize) -> usize {
    let mut seen = BTreeSet::new();
    let firsts: Vec<usize> = policies
        .iter()
        .enumerate()
        .filter(|(_, p)| node_of(p.target) == Some(node) && seen.insert(p.target))
        .map(|(i, _)| i)
        .collect();
    firsts
        .get(firsts.len() / 2)
        .copied()
        .unwrap_or(policies.len())
}

/// Per-pod chains: CNB-POLICY jumps to the target's chain, which accepts each allowed
/// peer and drops the rest. New chains are declared and end with DROP; rules for pods
/// that already have a chain are inserted at its top (declaring an existing chain in
/// `--noflush` mode would flush it).
pub fn iptables_policies(policies: &[Policy], isolated: &mut BTreeSet<Ipv4Addr>) -> String {
    // Targets in the order they first appear: the dispatch rules follow the caller's order.
    let mut by_target: Vec<(Ipv4Addr, Vec<&Policy>)> = Vec::new();
    let mut slot: BTreeMap<Ipv4Addr, usize> = BTreeMap::new();
    for p in policies {
        let i = *slot.entry(p.target).or_insert_with(|| {
            by_target.push((p.target, Vec::new()));
            by_target.len() - 1
        });
        by_target[i].1.push(p);
    }
    let mut chains = String::new();
    let mut rules = String::new();
    for (target, ps) in by_target {
        let chain = policy_chain(target);
        if isolated.insert(target) {
            let _ = writeln!(chains, ":{chain} - [0:0]");
            let _ = writeln!(rules, "-A {POLICY_CHAIN} -d {target}/32 -j {chain}");
            for p in ps {
                let _ = writeln!(rules, "-A {chain} {}", iptables_accept(p));
            }
            let _ = writeln!(rules, "-A {chain} -j DROP");
        } else {
            for p in ps {
                let _ = writeln!(rules, "-I {chain} 1 {}", iptables_accept(p));
            }
        }
    }
    format!("*filter\n{chains}{rules}COMMIT\n")
}

/// Set elements: the target joins `isolated`, the allowed tuple joins `allow` (or
/// `allow_any` without a port).
pub fn nft_policies(policies: &[Policy]) -> String {
    let mut out = String::new();
    let targets: BTreeSet<Ipv4Addr> = policies.iter().map(|p| p.target).collect();
    let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
    for chunk in targets.chunks(NFT_ELEMENTS_PER_LINE) {
        let _ = writeln!(
            out,
            "add element ip {NFT_POL_TABLE} isolated {{ {} }}",
            chunk.join(", ")
        );
    }
    let (ported, any): (Vec<&Policy>, Vec<&Policy>) =
        policies.iter().partition(|p| p.port.is_some());
    let ported: Vec<String> = ported
        .iter()
        .filter_map(|p| {
            p.port.map(|(proto, port)| {
                format!("{} . {} . {} . {port}", p.from, p.target, proto.as_str())
            })
        })
        .collect();
    for chunk in ported.chunks(NFT_ELEMENTS_PER_LINE) {
        let _ = writeln!(
            out,
            "add element ip {NFT_POL_TABLE} allow {{ {} }}",
            chunk.join(", ")
        );
    }
    let any: Vec<String> = any
        .iter()
        .map(|p| format!("{} . {}", p.from, p.target))
        .collect();
    for chunk in any.chunks(NFT_ELEMENTS_PER_LINE) {
        let _ = writeln!(
            out,
            "add element ip {NFT_POL_TABLE} allow_any {{ {} }}",
            chunk.join(", ")
        );
    }
    out
}

/// Removes every policy (tables rebuilt empty).
pub fn clear_policies(spec: &LabSpec) -> Plan {
    let mut plan = Plan::default();
    match spec.policy_mode {
        PolicyMode::Iptables => plan.phase(
            (0..spec.nodes)
                .map(|i| Step::IptablesRestore {
                    netns: spec.names().node(i),
                    noflush: false,
                    text: iptables_filter_base(),
                })
                .collect(),
        ),
        PolicyMode::Nftables => plan.phase(per_node(
            spec,
            false,
            &format!("delete table ip {NFT_POL_TABLE}\n{}", nft_pol_base()),
        )),
    }
    plan
}

/// Deletes namespaces (pods first, then nodes, then the fabric); missing ones are skipped.
pub fn delete_namespaces(namespaces: &[String]) -> Plan {
    let mut plan = Plan::default();
    if !namespaces.is_empty() {
        plan.phase(vec![Step::Ip {
            netns: None,
            force: true,
            lines: namespaces
                .iter()
                .map(|n| format!("netns del {n}"))
                .collect(),
        }]);
    }
    plan
}

/// Every namespace of a lab with `pods`, in teardown order.
pub fn namespaces(spec: &LabSpec, pods: &[String]) -> Vec<String> {
    let names = spec.names();
    let mut all: Vec<String> = pods.iter().map(|p| names.pod(p)).collect();
    all.extend((0..spec.nodes).map(|i| names.node(i)));
    all.push(names.fabric());
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(k: u32, eps: usize) -> Service {
        Service {
            ip: service_ip(k).unwrap(),
            ports: vec![ServicePort::tcp(80, 8080)],
            endpoints: (0..eps).map(|i| pod_ip(i % 2, i as u32).unwrap()).collect(),
        }
    }

    #[test]
    fn addresses_follow_the_plan() {
        assert_eq!(node_ip(0), Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(pod_cidr(1), Ipv4Addr::new(198, 18, 64, 0));
        assert_eq!(gateway(0), Ipv4Addr::new(198, 18, 32, 1));
        assert_eq!(pod_ip(0, 0), Some(Ipv4Addr::new(198, 18, 32, 2)));
        assert_eq!(
            pod_ip(6, POD_SLOTS - 1),
            Some(Ipv4Addr::new(198, 18, 255, 254))
        );
        assert_eq!(pod_ip(0, POD_SLOTS), None);
        assert_eq!(node_of(Ipv4Addr::new(198, 18, 63, 254)), Some(0));
        assert_eq!(node_of(Ipv4Addr::new(198, 18, 64, 2)), Some(1));
        assert_eq!(node_of(Ipv4Addr::new(198, 18, 0, 2)), None);
        assert_eq!(service_ip(0), Some(SERVICE_BASE));
        assert_eq!(
            service_ip(SERVICE_SLOTS - 1),
            Some(Ipv4Addr::new(198, 19, 255, 254))
        );
        assert_eq!(service_ip(SERVICE_SLOTS), None);
        assert!(host_if(Ipv4Addr::new(198, 18, 255, 254)).len() <= 15);
    }

    #[test]
    fn chain_names_fit_iptables() {
        let s = svc(65533, 1);
        let p = ServicePort::udp(65535, 1);
        assert!(s.sep_chain(p, MAX_ENDPOINTS - 1).len() <= 28);
        assert!(s.svc_chain(p).len() <= 28);
        assert!(policy_chain(Ipv4Addr::new(198, 18, 255, 254)).len() <= 28);
    }

    #[test]
    fn probabilities_are_uniform_overall() {
        let text = iptables_services(&[svc(0, 3)]);
        assert!(text.contains("--probability 0.3333333333 "), "{text}");
        assert!(text.contains("--probability 0.5000000000 "), "{text}");
        assert_eq!(text.matches("-j DNAT").count(), 3);
    }

    #[test]
    fn existing_policy_chains_are_not_redeclared() {
        let t = pod_ip(1, 0).unwrap();
        let p = |from| Policy {
            target: t,
            from,
            port: Some((Protocol::Tcp, 5201)),
        };
        let mut iso = BTreeSet::new();
        let first = iptables_policies(&[p(pod_ip(0, 0).unwrap())], &mut iso);
        assert!(first.contains(":CNB-PI-"));
        assert!(first.contains("-j DROP"));
        let second = iptables_policies(&[p(pod_ip(0, 1).unwrap())], &mut iso);
        assert!(!second.contains(":CNB-PI-"), "{second}");
        assert!(second.contains("-I CNB-PI-C6124002 1 -s 198.18.32.3/32"));
    }

    #[test]
    fn the_measured_pod_is_dispatched_from_the_middle_of_its_node() {
        // Fillers alternate between two nodes and each is targeted twice, as the lab
        // writes 2N policies for N filler pods.
        let fillers: Vec<Ipv4Addr> = (0..20)
            .map(|k| pod_ip(k % 2, 1 + k as u32 / 2).unwrap())
            .collect();
        let mut policies: Vec<Policy> = (0..40)
            .map(|i| Policy {
                target: fillers[i % fillers.len()],
                from: fillers[(i + 1) % fillers.len()],
                port: Some((Protocol::Tcp, 5201)),
            })
            .collect();
        let server = pod_ip(1, 0).unwrap();
        let at = middle_of_node(&policies, 1);
        policies.insert(
            at,
            Policy {
                target: server,
                from: pod_ip(0, 0).unwrap(),
                port: None,
            },
        );
        let on_node_1: Vec<Policy> = policies
            .iter()
            .copied()
            .filter(|p| node_of(p.target) == Some(1))
            .collect();
        let text = iptables_policies(&on_node_1, &mut BTreeSet::new());
        let dispatch: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("-A CNB-POLICY -d "))
            .collect();
        assert_eq!(dispatch.len(), 11);
        assert_eq!(
            dispatch[5],
            format!("-A CNB-POLICY -d {server}/32 -j {}", policy_chain(server))
        );
        assert_eq!(middle_of_node(&[], 1), 0);
    }

    fn pods() -> Vec<PodAddr> {
        vec![
            PodAddr {
                name: "client".into(),
                node: 0,
                ip: pod_ip(0, 0).unwrap(),
            },
            PodAddr {
                name: "server".into(),
                node: 1,
                ip: pod_ip(1, 0).unwrap(),
            },
        ]
    }

    #[test]
    fn snapshot_routed_iptables() {
        let spec = LabSpec::new("snap");
        let mut iso = BTreeSet::new();
        let mut out = up(&spec).to_string();
        out += &add_pods(&spec, &pods()).to_string();
        out += &add_fillers(&spec, &[pod_ip(1, 1).unwrap()]).to_string();
        out += &add_services(&spec, &[svc(1, 1)], &[svc(0, 3)]).to_string();
        out += &add_policies(
            &spec,
            &[Policy {
                target: pod_ip(1, 0).unwrap(),
                from: pod_ip(0, 0).unwrap(),
                port: Some((Protocol::Tcp, 5201)),
            }],
            &mut iso,
        )
        .to_string();
        out +=
            &delete_namespaces(&namespaces(&spec, &["client".into(), "server".into()])).to_string();
        insta::assert_snapshot!(out);
    }

    #[test]
    fn snapshot_vxlan_nftables() {
        let mut spec = LabSpec::new("snap");
        spec.profile = Profile::Vxlan;
        spec.proxy = ProxyMode::Nftables;
        spec.policy_mode = PolicyMode::Nftables;
        let mut iso = BTreeSet::new();
        let mut out = up(&spec).to_string();
        out += &add_pods(&spec, &pods()).to_string();
        let mut two_ports = svc(1, 1);
        two_ports.ports.push(ServicePort::udp(80, 8080));
        out += &add_services(&spec, &[], &[svc(0, 3), two_ports]).to_string();
        out += &add_policies(
            &spec,
            &[
                Policy {
                    target: pod_ip(1, 0).unwrap(),
                    from: pod_ip(0, 0).unwrap(),
                    port: Some((Protocol::Tcp, 5201)),
                },
                Policy {
                    target: pod_ip(1, 1).unwrap(),
                    from: pod_ip(0, 0).unwrap(),
                    port: None,
                },
            ],
            &mut iso,
        )
        .to_string();
        out += &clear_services(&spec).to_string();
        insta::assert_snapshot!(out);
    }
}
