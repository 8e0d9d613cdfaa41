//! What a lab is made of: the validated [`LabSpec`], its datapath choices and the names of
//! every object it creates (all derived from the run id, so `clean` finds them after a crash).

use std::fmt;
use std::str::FromStr;

use super::LabError;

/// Prefix of every namespace the lab creates; [`super::clean`] removes names carrying it.
pub const PREFIX: &str = "cnb-";
/// Longest run id: namespace names stay short and readable.
pub const MAX_RUN_ID: usize = 16;
/// Most nodes: the plan gives each node one /19 of 198.18.32.0–198.18.255.255.
pub const MAX_NODES: usize = 7;
/// Smallest underlay MTU: the IPv4 minimum for a VXLAN pod path of 1280 (IPv6 minimum) + 50.
pub const MIN_MTU: u32 = 1330;
/// Largest underlay MTU (jumbo frames).
pub const MAX_MTU: u32 = 9000;
/// Bytes a VXLAN encapsulation adds over IPv4: outer IPv4 20 + UDP 8 + VXLAN 8 + inner
/// Ethernet 14 (RFC 7348); Flannel and Calico subtract the same 50.
pub const VXLAN_OVERHEAD: u32 = 50;

/// How pod traffic crosses between nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Direct routes to each node's pod CIDR via its underlay address (Calico BGP,
    /// kube-router).
    Routed,
    /// A VXLAN overlay (Flannel, Calico VXLAN); pod MTU is the underlay MTU minus 50.
    Vxlan,
}

/// How services are implemented (kube-proxy modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyMode {
    /// iptables: linear KUBE-SERVICES, per-service chains, statistic-match load balancing.
    Iptables,
    /// nftables: a verdict map keyed by address . protocol . port, numgen load balancing.
    Nftables,
    /// IPVS: rejected by [`super::Lab::up`] with a clear error (no IPVS on this kernel).
    Ipvs,
}

/// How network policies are implemented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyMode {
    /// A chain per isolated pod with one ACCEPT per allowed peer and a final DROP (Calico
    /// iptables style): cost grows with the number of rules walked.
    Iptables,
    /// Sets of isolated pods and allowed (source, destination, protocol, port) tuples
    /// (nftables CNIs): one hashed lookup per new connection.
    Nftables,
}

/// Transport protocol of a service port or policy port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The lower-case name iptables and nft use.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

macro_rules! choice {
    ($ty:ident, $field:literal, $($name:literal => $variant:ident),+) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self { $($ty::$variant => $name),+ })
            }
        }
        impl FromStr for $ty {
            type Err = LabError;
            fn from_str(s: &str) -> Result<Self, LabError> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(LabError::Invalid {
                        field: $field,
                        message: format!(
                            "{s:?} is not one of: {}",
                            [$($name),+].join(", ")
                        ),
                    }),
                }
            }
        }
    };
}
choice!(Profile, "profile", "routed" => Routed, "vxlan" => Vxlan);
choice!(ProxyMode, "proxy", "iptables" => Iptables, "nftables" => Nftables, "ipvs" => Ipvs);
choice!(PolicyMode, "policy mode", "iptables" => Iptables, "nftables" => Nftables);
choice!(Protocol, "protocol", "tcp" => Tcp, "udp" => Udp);

/// What to build. Construct with [`LabSpec::new`] and adjust the public fields;
/// [`LabSpec::validate`] (called by [`super::Lab::up`]) checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    /// Identifies the run: every namespace is named `cnb-<run_id>-…`. Lower-case ASCII
    /// letters and digits, 1 to 16 of them.
    pub run_id: String,
    /// Number of nodes (1 to 7; default 2).
    pub nodes: usize,
    /// Underlay (node-to-node link) MTU in bytes; pods get this, or this minus 50 with VXLAN.
    pub mtu: u32,
    /// Inter-node datapath.
    pub profile: Profile,
    /// Service implementation.
    pub proxy: ProxyMode,
    /// Network policy implementation.
    pub policy_mode: PolicyMode,
}

impl LabSpec {
    /// Two nodes, MTU 1500, routed, iptables proxy and policies.
    pub fn new(run_id: impl Into<String>) -> Self {
        LabSpec {
            run_id: run_id.into(),
            nodes: 2,
            mtu: 1500,
            profile: Profile::Routed,
            proxy: ProxyMode::Iptables,
            policy_mode: PolicyMode::Iptables,
        }
    }

    /// Checks every field against its allowed range.
    pub fn validate(&self) -> Result<(), LabError> {
        validate_run_id(&self.run_id)?;
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return Err(LabError::Invalid {
                field: "nodes",
                message: format!("{} is outside 1..={MAX_NODES}", self.nodes),
            });
        }
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return Err(LabError::Invalid {
                field: "mtu",
                message: format!("{} is outside {MIN_MTU}..={MAX_MTU} bytes", self.mtu),
            });
        }
        Ok(())
    }

    /// MTU of pod interfaces: the underlay MTU, less the VXLAN overhead on the overlay.
    pub fn pod_mtu(&self) -> u32 {
        match self.profile {
            Profile::Routed => self.mtu,
            Profile::Vxlan => self.mtu - VXLAN_OVERHEAD,
        }
    }

    /// Names of this run's objects.
    pub fn names(&self) -> Names {
        Names {
            run_id: self.run_id.clone(),
        }
    }
}

/// Checks a run id: 1 to 16 lower-case ASCII letters or digits.
pub fn validate_run_id(run_id: &str) -> Result<(), LabError> {
    if run_id.is_empty()
        || run_id.len() > MAX_RUN_ID
        || !run_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(LabError::Invalid {
            field: "run id",
            message: format!("{run_id:?} must be 1 to {MAX_RUN_ID} lower-case letters or digits"),
        });
    }
    Ok(())
}

/// Checks a pod name: 1 to 32 lower-case letters, digits or `-`.
pub fn validate_pod_name(name: &str) -> Result<(), LabError> {
    if name.is_empty()
        || name.len() > 32
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(LabError::Invalid {
            field: "pod name",
            message: format!("{name:?} must be 1 to 32 lower-case letters, digits or '-'"),
        });
    }
    Ok(())
}

/// Namespace names of one run. Nothing the lab creates lives outside these namespaces:
/// links, addresses, routes, rules and sets all go when the namespaces go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    run_id: String,
}

impl Names {
    /// `cnb-<run>-` : the prefix of every namespace of the run.
    pub fn run_prefix(&self) -> String {
        format!("{PREFIX}{}-", self.run_id)
    }
    /// The fabric namespace holding the underlay bridge that joins the nodes.
    pub fn fabric(&self) -> String {
        format!("{}fabric", self.run_prefix())
    }
    /// Namespace of node `i`.
    pub fn node(&self, i: usize) -> String {
        format!("{}n{i}", self.run_prefix())
    }
    /// Namespace of the pod called `pod`.
    pub fn pod(&self, pod: &str) -> String {
        format!("{}p-{pod}", self.run_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_field() {
        LabSpec::new("r1").validate().unwrap();
        let mut s = LabSpec::new("R!");
        assert!(s.validate().unwrap_err().to_string().contains("run id"));
        s.run_id = "ok".into();
        s.nodes = 8;
        assert!(s.validate().unwrap_err().to_string().contains("nodes"));
        s.nodes = 2;
        s.mtu = 1000;
        assert!(s.validate().unwrap_err().to_string().contains("mtu"));
        assert!(
            "ipvsx"
                .parse::<ProxyMode>()
                .unwrap_err()
                .to_string()
                .contains("iptables, nftables, ipvs")
        );
        assert_eq!("vxlan".parse::<Profile>().unwrap(), Profile::Vxlan);
    }

    #[test]
    fn vxlan_pods_lose_fifty_bytes() {
        let mut s = LabSpec::new("r");
        assert_eq!(s.pod_mtu(), 1500);
        s.profile = Profile::Vxlan;
        assert_eq!(s.pod_mtu(), 1450);
        s.mtu = 9000;
        assert_eq!(s.pod_mtu(), 8950);
    }

    #[test]
    fn names_carry_the_run_id() {
        let n = LabSpec::new("abc").names();
        assert_eq!(n.node(1), "cnb-abc-n1");
        assert_eq!(n.pod("server"), "cnb-abc-p-server");
        assert_eq!(n.fabric(), "cnb-abc-fabric");
    }
}
