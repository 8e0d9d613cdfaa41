//! The typed, backend-agnostic scenario model: what one measured point is.
//!
//! A [`Point`] is one cell of a suite's matrix: a [`ScenarioKind`] (the rows of the
//! DESIGN.md table), a [`Topology`] (where client and server sit), the [`Objects`] that must
//! exist in the cluster while it runs (filler pods, policies, services, replicas) and a
//! [`Workload`] (what netload does). Pure data: serde only, no I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use netload::spec::{Direction, Zerocopy};

/// Seconds, as a newtype so durations are never confused with rates or counts.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seconds(pub f64);

impl Seconds {
    /// As a [`Duration`] (negative values clamp to zero).
    pub fn duration(self) -> Duration {
        Duration::from_secs_f64(self.0.max(0.0))
    }
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        const DECIMAL: [(u64, &str); 3] = [(1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "kB")];
        for (size, unit) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        for (size, unit) in DECIMAL {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// A rate in bits per second; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BitsPerSec(pub u64);

impl fmt::Display for BitsPerSec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => f.write_str("unlimited"),
            b if b.is_multiple_of(1_000_000_000) => write!(f, "{}G", b / 1_000_000_000),
            b if b.is_multiple_of(1_000_000) => write!(f, "{}M", b / 1_000_000),
            b if b.is_multiple_of(1_000) => write!(f, "{}K", b / 1_000),
            b => write!(f, "{b}"),
        }
    }
}

/// The scenarios of DESIGN.md's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// Host to host (hostNetwork): the bare-metal calibration.
    Baseline,
    /// Client pod to server pod IP.
    PodToPod,
    /// Pod to pod with N filler pods and network policies present.
    PodToPodPolicies,
    /// Client to `ClusterIP` to one server pod, with S services present.
    PodToService,
    /// HTTP GETs through a service to R replicas, S services present.
    HttpReplicas,
    /// Request/response latency, pod to pod or through a service.
    RrLatency,
}

impl ScenarioKind {
    /// Every kind, in table order.
    pub const ALL: [ScenarioKind; 6] = [
        ScenarioKind::Baseline,
        ScenarioKind::PodToPod,
        ScenarioKind::PodToPodPolicies,
        ScenarioKind::PodToService,
        ScenarioKind::HttpReplicas,
        ScenarioKind::RrLatency,
    ];

    /// The kebab-case name used in suite files and point ids.
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioKind::Baseline => "baseline",
            ScenarioKind::PodToPod => "pod-to-pod",
            ScenarioKind::PodToPodPolicies => "pod-to-pod-policies",
            ScenarioKind::PodToService => "pod-to-service",
            ScenarioKind::HttpReplicas => "http-replicas",
            ScenarioKind::RrLatency => "rr-latency",
        }
    }

    /// Parses a kebab-case name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Workloads that make sense for this scenario.
    pub fn allowed_workloads(self) -> &'static [WorkloadKind] {
        use WorkloadKind as W;
        match self {
            ScenarioKind::Baseline
            | ScenarioKind::PodToPod
            | ScenarioKind::PodToPodPolicies
            | ScenarioKind::PodToService => &[W::Tcp, W::Udp, W::TcpRr, W::TcpCrr, W::UdpRr],
            ScenarioKind::HttpReplicas => &[W::Http],
            ScenarioKind::RrLatency => &[W::TcpRr, W::TcpCrr, W::UdpRr],
        }
    }
}

impl fmt::Display for ScenarioKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether client and server share a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// Client and server on different nodes.
    Inter,
    /// Client and server on the same node.
    Intra,
}

impl Placement {
    /// Name in suite files.
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Inter => "inter",
            Placement::Intra => "intra",
        }
    }
}

/// How the client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathKind {
    /// Straight to the server's (pod or host) IP.
    Direct,
    /// Through a `ClusterIP` service (NAT to a backend).
    Service,
}

impl PathKind {
    /// Name in suite files.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Service => "service",
        }
    }
}

/// Where the two ends of a point run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Same node or different nodes.
    pub placement: Placement,
    /// Both ends in the host network namespace (the baseline).
    pub host_network: bool,
    /// Direct to the server or through a service.
    pub path: PathKind,
    /// MTU to configure on the pod (or lab) interfaces, bytes; `None` keeps the default.
    pub mtu: Option<u32>,
}

/// Cluster objects that exist while the point runs, besides client and server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Objects {
    /// Idle filler pods (`netload idle`).
    pub filler_pods: u32,
    /// `NetworkPolicies` (all of them allow only the measured pair).
    pub policies: u32,
    /// Services present (the one in the path included).
    pub services: u32,
    /// Server replicas behind the measured service (1 = a single server).
    pub replicas: u32,
}

impl Objects {
    /// True when the point needs nothing beyond a client and a server.
    pub fn is_empty(&self) -> bool {
        self.filler_pods == 0 && self.policies == 0 && self.services == 0 && self.replicas <= 1
    }
}

/// The workload types, as named in suite files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// TCP stream (`netload tcp`).
    Tcp,
    /// UDP stream (`netload udp`).
    Udp,
    /// TCP request/response on one connection.
    TcpRr,
    /// TCP connect/request/response/close per transaction.
    TcpCrr,
    /// UDP request/response.
    UdpRr,
    /// HTTP/1.1 GETs (`netload http`).
    Http,
}

impl WorkloadKind {
    /// Every workload.
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Tcp,
        WorkloadKind::Udp,
        WorkloadKind::TcpRr,
        WorkloadKind::TcpCrr,
        WorkloadKind::UdpRr,
        WorkloadKind::Http,
    ];

    /// Name in suite files and point ids.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Tcp => "tcp",
            WorkloadKind::Udp => "udp",
            WorkloadKind::TcpRr => "tcp-rr",
            WorkloadKind::TcpCrr => "tcp-crr",
            WorkloadKind::UdpRr => "udp-rr",
            WorkloadKind::Http => "http",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// True for the stream workloads.
    pub fn is_stream(self) -> bool {
        matches!(self, WorkloadKind::Tcp | WorkloadKind::Udp)
    }

    /// True for the request/response workloads.
    pub fn is_rr(self) -> bool {
        matches!(
            self,
            WorkloadKind::TcpRr | WorkloadKind::TcpCrr | WorkloadKind::UdpRr
        )
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream workload (`netload tcp|udp`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamWorkload {
    /// True for UDP, false for TCP.
    pub udp: bool,
    /// Measured duration.
    pub duration: Seconds,
    /// Warm-up inside each repetition, not measured (`--omit`).
    pub omit: Seconds,
    /// Parallel streams (`-P`).
    pub streams: u32,
    /// Bytes per write or UDP payload size (`-l`); `None` = netload's default.
    pub length: Option<Bytes>,
    /// TCP MSS to set (`--mss`).
    pub mss: Option<u32>,
    /// Target rate per stream (`--rate`); 0 = unlimited.
    pub rate: BitsPerSec,
    /// Forward, reverse (`-R`) or both (`--bidir`).
    pub direction: Direction,
    /// Disable Nagle's algorithm (`--nodelay`; TCP only).
    #[serde(default)]
    pub nodelay: bool,
    /// Zero-copy send (`--zerocopy sendfile|msg`; TCP only).
    #[serde(default)]
    pub zerocopy: Zerocopy,
    /// Where the stream threads run (`--affinity C/S`); `None` leaves placement to the
    /// scheduler (the most repeatable choice measured in the lab, benches/README.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Socket buffer size (`-w`), bytes; `None` lets the kernel autotune.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Bytes>,
    /// UDP only: search for the no-drop rate (`netload udp --find-rate`) instead of
    /// sending at `rate`; a repetition is then one whole search. Absent in runs written
    /// before the search existed, whose UDP points sent at `rate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find_rate: Option<RateSearch>,
}

/// Where the stream threads of a point are pinned.
///
/// Serialized as `"same"` or `[client, server]` (the shape runs written before `same`
/// existed had).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "AffinityRepr", into = "AffinityRepr")]
pub enum Affinity {
    /// Client and server threads on one core, the last one the runner may use
    /// (`affinity = "same"`): the whole path (sender, forwarding, receiver, softirq) runs
    /// there, so packets of a flow never queue on two CPUs' backlogs at once.
    SameCore,
    /// Client threads on the first core, server threads on the second (`"C/S"`).
    Cores(u16, u16),
}

impl Affinity {
    /// The client and server cores to pin to; `last_core` is the core
    /// [`Affinity::SameCore`] means.
    pub fn cores(self, last_core: u16) -> (u16, u16) {
        match self {
            Affinity::SameCore => (last_core, last_core),
            Affinity::Cores(client, server) => (client, server),
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum AffinityRepr {
    Cores(u16, u16),
    Named(AffinityName),
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AffinityName {
    Same,
}

impl From<AffinityRepr> for Affinity {
    fn from(r: AffinityRepr) -> Self {
        match r {
            AffinityRepr::Cores(c, s) => Affinity::Cores(c, s),
            AffinityRepr::Named(AffinityName::Same) => Affinity::SameCore,
        }
    }
}

impl From<Affinity> for AffinityRepr {
    fn from(a: Affinity) -> Self {
        match a {
            Affinity::Cores(c, s) => AffinityRepr::Cores(c, s),
            Affinity::SameCore => AffinityRepr::Named(AffinityName::Same),
        }
    }
}

/// How a UDP point searches for its no-drop rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateSearch {
    /// Highest acceptable receiver loss, percent.
    pub loss_percent: f64,
}

impl RateSearch {
    /// netload's default loss target.
    pub const DEFAULT: RateSearch = RateSearch {
        loss_percent: netload::ndr::DEFAULT_LOSS_PERCENT,
    };

    /// Measured seconds of the search's short trials for a workload measuring `duration`:
    /// 0.5 s, or less when the workload is shorter (its `duration` is what the one
    /// confirmation trial at the final rate lasts).
    pub fn trial(duration: Seconds) -> Seconds {
        Seconds(duration.0.min(0.5))
    }

    /// Confirmations of the rate found: one per repetition in a suite, since the
    /// repetitions themselves confirm it again (netload alone confirms twice).
    pub const CONFIRMATIONS: u32 = 1;

    /// Wall-time budget of one search for a workload measuring `duration`, the bound
    /// `netload` keeps (trials that would end past it are not started): the confirmation
    /// plus about eight short trials, 3 × duration + 4 s within 10..60 s (16 s at the
    /// thesis suite's 4 s). A suite of a dozen UDP points must stay within minutes.
    pub fn budget(duration: Seconds) -> Duration {
        Duration::from_secs_f64((3.0 * duration.0 + 4.0).clamp(10.0, 60.0))
    }
}

/// Request/response flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RrMode {
    /// `TCP_RR`: many transactions on one connection.
    TcpRr,
    /// `TCP_CRR`: a new connection per transaction.
    TcpCrr,
    /// `UDP_RR`.
    UdpRr,
}

/// A request/response workload (`netload rr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RrWorkload {
    /// Which flavour.
    pub mode: RrMode,
    /// Measured duration.
    pub duration: Seconds,
    /// Request and response payload size.
    pub size: Bytes,
}

/// An HTTP workload (`netload http`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpWorkload {
    /// Size of the body the servers serve.
    pub file_size: Bytes,
    /// Measured duration.
    pub duration: Seconds,
    /// Concurrent connections of the client.
    pub concurrency: u32,
}

/// What netload does at a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Workload {
    /// Stream throughput.
    Stream(StreamWorkload),
    /// Request/response latency.
    Rr(RrWorkload),
    /// HTTP GETs.
    Http(HttpWorkload),
}

impl Workload {
    /// The suite-file name of this workload.
    pub fn kind(&self) -> WorkloadKind {
        match self {
            Workload::Stream(s) if s.udp => WorkloadKind::Udp,
            Workload::Stream(_) => WorkloadKind::Tcp,
            Workload::Rr(r) => match r.mode {
                RrMode::TcpRr => WorkloadKind::TcpRr,
                RrMode::TcpCrr => WorkloadKind::TcpCrr,
                RrMode::UdpRr => WorkloadKind::UdpRr,
            },
            Workload::Http(_) => WorkloadKind::Http,
        }
    }

    /// The same workload for a warm-up repetition: at most `secs` measured, rounded up to
    /// whole seconds and at least 1 (every tool takes that), and no omitted seconds inside
    /// (the whole repetition is discarded anyway). A warm-up only has to bring the path up
    /// (neighbours, conntrack, caches, CPU clocks), not to last as long as a measurement.
    #[must_use]
    pub fn for_warmup(&self, secs: f64) -> Workload {
        let cap = |d: Seconds| Seconds(d.0.min(secs.ceil().max(1.0)));
        match self {
            // A warm-up brings the path up at full speed; it needs no rate search.
            Workload::Stream(s) => Workload::Stream(StreamWorkload {
                duration: cap(s.duration),
                omit: Seconds(0.0),
                find_rate: None,
                ..s.clone()
            }),
            Workload::Rr(r) => Workload::Rr(RrWorkload {
                duration: cap(r.duration),
                ..r.clone()
            }),
            Workload::Http(h) => Workload::Http(HttpWorkload {
                duration: cap(h.duration),
                ..h.clone()
            }),
        }
    }

    /// Expected wall time of one repetition (warm-up plus measured window), without
    /// process start-up.
    pub fn nominal_duration(&self) -> Duration {
        match self {
            Workload::Stream(s) if s.find_rate.is_some() => RateSearch::budget(s.duration),
            Workload::Stream(s) => s.omit.duration() + s.duration.duration(),
            Workload::Rr(r) => r.duration.duration(),
            Workload::Http(h) => h.duration.duration(),
        }
    }
}

/// The traffic generator that measures a point.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Tool {
    /// netload, every workload.
    #[default]
    Netload,
    /// iperf3 (the system's binary, `-J`), stream workloads only: so a user can put the
    /// tool they know next to netload on the same path in the same run.
    Iperf3,
}

impl Tool {
    /// Every tool.
    pub const ALL: [Tool; 2] = [Tool::Netload, Tool::Iperf3];

    /// Name in suite files, `--tool` and point ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Netload => "netload",
            Tool::Iperf3 => "iperf3",
        }
    }

    /// Parses a name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the tool is netload (the default; serde skips it in `meta.json`).
    #[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes &T
    pub fn is_netload(&self) -> bool {
        *self == Tool::Netload
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One measured point of a suite: the unit of preparation, repetition and reporting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Stable id, `<scenario>/<key>=<value>,...`; matches points across runs.
    pub id: String,
    /// Id of the suite scenario this point comes from (a kind name unless renamed).
    pub scenario: String,
    /// Which row of the scenario table.
    pub kind: ScenarioKind,
    /// Where the ends run.
    pub topology: Topology,
    /// Objects present while measuring.
    pub objects: Objects,
    /// What the tool does.
    pub workload: Workload,
    /// Which traffic generator measures it (runs written before tools existed: netload).
    #[serde(default, skip_serializing_if = "Tool::is_netload")]
    pub tool: Tool,
    /// The coordinates of this point in its sweep, as `key → value` text (for tables and
    /// charts); keys that do not apply to the workload are left out.
    pub params: BTreeMap<String, String>,
}
