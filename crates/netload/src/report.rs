//! The versioned JSON schema of a stream test result (`netload tcp|udp --json`).
//!
//! These types are the contract with `cnibench` and with anyone scripting netload. Every
//! field has its unit in its name or its doc line. `schema/stream-report.schema.json` is
//! generated from them (`netload schema`) and a test fails when it drifts.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::spec::{Direction, Protocol, TestSpec};

/// Version of this schema; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// One stream test, as seen by both ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamReport {
    /// Always [`SCHEMA_VERSION`] for documents written by this build.
    pub schema_version: u32,
    /// netload version that produced the document.
    pub netload_version: String,
    /// Wall-clock start of the measured window, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// What was asked for (validated).
    pub spec: TestSpec,
    /// The client's side.
    pub client: SideReport,
    /// The server's side.
    pub server: SideReport,
    /// One line per direction of traffic, with the receiver's count as the authoritative figure.
    pub flows: Vec<FlowSummary>,
    /// Things a reader must know to trust the numbers (copy fallbacks, clamped buffers...).
    pub warnings: Vec<String>,
    /// The test was stopped early (Ctrl-C): figures cover the shorter window actually run.
    #[serde(default)]
    pub interrupted: bool,
    /// Set when the server was not netload (`--peer iperf3`): names it and says that the
    /// `server` side holds that tool's own figures, converted, not netload's measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_peer: Option<String>,
}

impl StreamReport {
    /// Receiver-measured bits per second summed over all directions: the headline figure.
    pub fn receiver_bits_per_second(&self) -> f64 {
        self.flows.iter().map(|f| f.receiver_bits_per_second).sum()
    }
}

/// Totals of one direction of traffic (client→server or server→client).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FlowSummary {
    /// Which way the payload went.
    pub direction: FlowDirection,
    /// Payload bytes the sender wrote in the measured window.
    pub sender_bytes: u64,
    /// Payload bytes the receiver read in the measured window (authoritative).
    pub receiver_bytes: u64,
    /// Sender's bytes over the sender's window, bits per second.
    pub sender_bits_per_second: f64,
    /// Receiver's bytes over the receiver's window, bits per second (authoritative).
    pub receiver_bits_per_second: f64,
    /// TCP segments retransmitted by the sender (TCP only).
    pub retransmits: Option<u64>,
    /// UDP datagrams sent (UDP only).
    pub packets_sent: Option<u64>,
    /// UDP datagrams lost: sent minus distinct received (UDP only).
    pub lost: Option<u64>,
    /// `lost / packets_sent`, percent (UDP only).
    pub loss_percent: Option<f64>,
    /// RFC 3550 interarrival jitter at the receiver, milliseconds (UDP only).
    pub jitter_ms: Option<f64>,
}

/// Direction of a flow relative to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FlowDirection {
    /// Client sends, server receives.
    ClientToServer,
    /// Server sends, client receives.
    ServerToClient,
}

impl FlowDirection {
    /// Directions exercised by a test direction.
    pub fn of(direction: Direction) -> &'static [FlowDirection] {
        match direction {
            Direction::Forward => &[FlowDirection::ClientToServer],
            Direction::Reverse => &[FlowDirection::ServerToClient],
            Direction::Bidir => &[FlowDirection::ClientToServer, FlowDirection::ServerToClient],
        }
    }
}

/// Everything one end measured about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct SideReport {
    /// Payload bytes this end moved in the measured window (sent plus received).
    pub bytes: u64,
    /// `bytes` over `duration_s`, bits per second.
    pub bits_per_second: f64,
    /// Payload bytes sent in the measured window.
    pub sent_bytes: u64,
    /// Payload bytes received in the measured window.
    pub received_bytes: u64,
    /// Length of this end's measured window, seconds (excludes `--omit`).
    pub duration_s: f64,
    /// TCP retransmits of this end's sending streams (TCP only).
    pub retransmits: Option<u64>,
    /// Effective MSS of the first stream, from TCP_INFO `tcpi_snd_mss` (TCP only).
    pub mss: Option<u32>,
    /// UDP datagrams sent or received by this end (UDP only).
    pub packets: Option<u64>,
    /// UDP datagrams lost on the way to this end (UDP receiver only).
    pub lost: Option<u64>,
    /// RFC 3550 jitter seen by this end as a receiver, milliseconds (UDP receiver only).
    pub jitter_ms: Option<f64>,
    /// Per-interval series, on the test clock (0 = end of `--omit`).
    pub intervals: Vec<Interval>,
    /// Per-stream totals.
    pub streams: Vec<StreamStats>,
    /// CPU spent by this process and by the whole node during the measured window.
    pub cpu: CpuReport,
    /// Socket settings actually in force on this end.
    pub settings: EffectiveSettings,
}

/// One interval of the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Interval {
    /// Start on the test clock, seconds.
    pub start_s: f64,
    /// End on the test clock, seconds.
    pub end_s: f64,
    /// Payload bytes sent in this interval by this end.
    pub sent_bytes: u64,
    /// Payload bytes received in this interval by this end.
    pub received_bytes: u64,
    /// `(sent_bytes + received_bytes)` over the interval, bits per second.
    pub bits_per_second: f64,
    /// TCP retransmits in this interval (TCP senders only).
    pub retransmits: Option<u64>,
    /// Smoothed RTT of the first stream at the end of the interval, microseconds (TCP only).
    pub rtt_us: Option<u32>,
    /// Congestion window of the first stream at the end of the interval, segments (TCP only).
    pub cwnd: Option<u32>,
    /// UDP datagrams in this interval (UDP only).
    pub packets: Option<u64>,
    /// UDP datagrams found missing in this interval (UDP receivers only).
    pub lost: Option<u64>,
}

/// Totals of one stream (one socket, one thread).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StreamStats {
    /// Stream index, shared by both ends.
    pub id: u32,
    /// Whether this end sent or received on the stream.
    pub role: StreamRole,
    /// Payload bytes in the measured window.
    pub bytes: u64,
    /// `bytes` over the stream's measured window, bits per second.
    pub bits_per_second: f64,
    /// CPU core the stream's thread was pinned to, if any.
    pub cpu_core: Option<usize>,
    /// Where the stream's thread actually ran (absent in documents of older versions, and
    /// where `/proc` does not tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<ThreadPlacement>,
    /// TCP_INFO at the end of the stream (TCP only).
    pub tcp: Option<TcpStats>,
    /// Datagram accounting (UDP only).
    pub udp: Option<UdpStats>,
    /// MSG_ZEROCOPY accounting (senders with `--zerocopy msg` only).
    pub zerocopy: Option<ZerocopyStats>,
}

/// Where a stream's thread ran: the core the scheduler had it on at each interval
/// boundary, and how often it was switched out. A thread seen on several cores migrated,
/// and involuntary switches count the times another task (a neighbour, a softirq thread,
/// the other end on the same core) preempted it: both are sources of run-to-run spread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct ThreadPlacement {
    /// Cores the thread was seen on, with the number of samples on each (ascending core).
    pub cores_seen: Vec<CoreSamples>,
    /// Core the thread last ran on, at its end.
    pub last_core: Option<usize>,
    /// Voluntary context switches of the thread (it blocked: socket full or empty).
    pub voluntary_switches: u64,
    /// Involuntary context switches of the thread (preempted).
    pub involuntary_switches: u64,
}

/// Samples of a thread on one core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CoreSamples {
    /// The core.
    pub core: usize,
    /// Samples that found the thread on it.
    pub samples: u32,
}

/// What one end does on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StreamRole {
    /// Writes payload.
    Send,
    /// Reads payload.
    Receive,
}

/// TCP_INFO figures of one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct TcpStats {
    /// Segments retransmitted during the measured window (`tcpi_total_retrans` delta).
    pub retransmits: u64,
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u32,
    /// Round-trip time variance, microseconds.
    pub rttvar_us: u32,
    /// Congestion window, segments.
    pub snd_cwnd: u32,
    /// Sending MSS, bytes.
    pub snd_mss: u32,
    /// Receiving MSS estimate, bytes.
    pub rcv_mss: u32,
    /// Path MTU, bytes.
    pub pmtu: u32,
}

/// Datagram accounting of one UDP stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct UdpStats {
    /// Datagrams sent (sender) or received, duplicates included (receiver).
    pub packets: u64,
    /// Datagrams never received (receiver only; sender reports 0).
    pub lost: u64,
    /// Datagrams received more than once.
    pub duplicates: u64,
    /// Datagrams that arrived after a higher sequence number.
    pub out_of_order: u64,
    /// RFC 3550 interarrival jitter, milliseconds.
    pub jitter_ms: f64,
    /// Packets the kernel dropped at this receiving socket from the end of the warm-up on
    /// (SO_MEMINFO `sk_drops`: a full receive queue, i.e. the receiver did not keep up, as
    /// opposed to loss on the path), counted as the kernel queued them: a GSO/GRO
    /// super-packet counts once (see `datagrams_per_packet`). Receivers only; absent when
    /// the kernel does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_drops: Option<u64>,
    /// Mean datagrams per packet this receiving socket read (above 1 when GRO coalesced
    /// them); `socket_drops` times this estimates the datagrams those drops lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datagrams_per_packet: Option<f64>,
}

/// Outcome of MSG_ZEROCOPY sends, from the socket error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct ZerocopyStats {
    /// `send(MSG_ZEROCOPY)` calls made.
    pub sends: u64,
    /// Sends whose completion was read back from the error queue.
    pub completed: u64,
    /// Completed sends the kernel flagged `SO_EE_CODE_ZEROCOPY_COPIED`: it copied after all
    /// (always the case on loopback and veth, where the receiver is local).
    pub copied: u64,
}

/// CPU used over the measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct CpuReport {
    /// Length of the window, seconds.
    pub window_s: f64,
    /// This process's user time (getrusage), seconds.
    pub process_user_s: f64,
    /// This process's system time (getrusage), seconds.
    pub process_system_s: f64,
    /// Process CPU seconds per GB (1e9 bytes) this end moved; absent when nothing moved.
    pub process_s_per_gb: Option<f64>,
    /// Whole-node CPU time split by state, from `/proc/stat` deltas.
    pub node: NodeCpu,
    /// Node busy seconds (all but idle and iowait) per GB this end moved.
    pub node_busy_s_per_gb: Option<f64>,
}

/// Deltas of the aggregate `cpu` line of `/proc/stat`, in seconds summed over all cores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
pub struct NodeCpu {
    /// Cores the node has online.
    pub cores: u32,
    /// User mode.
    pub user: f64,
    /// User mode at low priority.
    pub nice: f64,
    /// Kernel mode outside interrupts.
    pub system: f64,
    /// Idle.
    pub idle: f64,
    /// Idle waiting for I/O.
    pub iowait: f64,
    /// Hard interrupts.
    pub irq: f64,
    /// Soft interrupts: where most of the network stack runs.
    pub softirq: f64,
    /// Stolen by the hypervisor.
    pub steal: f64,
}

impl NodeCpu {
    /// Seconds not idle (everything but `idle` and `iowait`).
    pub fn busy(&self) -> f64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }
}

/// Socket settings in force on one end, read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub struct EffectiveSettings {
    /// `SO_SNDBUF` as the kernel reports it (it doubles the requested value), bytes.
    pub send_buffer: Option<u32>,
    /// `SO_RCVBUF` as the kernel reports it, bytes.
    pub receive_buffer: Option<u32>,
    /// `TCP_MAXSEG` read back with getsockopt, bytes (TCP only).
    pub mss_sockopt: Option<u32>,
    /// TCP_NODELAY in force (TCP only).
    pub nodelay: Option<bool>,
    /// Congestion control algorithm in force (TCP only).
    pub congestion: Option<String>,
    /// Zero-copy mode this end used for sending: `none`, `sendfile` or `msg`.
    pub zerocopy: String,
    /// Whether received payload was discarded in the kernel (MSG_TRUNC) instead of copied.
    pub rx_discard: bool,
    /// UDP GSO segment size when UDP_SEGMENT was used, bytes.
    pub udp_gso_segment: Option<u32>,
    /// Whether UDP_GRO was enabled on receiving sockets.
    pub udp_gro: Option<bool>,
    /// Datagrams per sendmmsg/recvmmsg call (1 = no batching).
    pub udp_batch: Option<u32>,
    /// Cores the stream threads were pinned to, in stream order.
    pub affinity: Vec<usize>,
    /// SO_RCVLOWAT at the end of the first receiving TCP stream, bytes: netload raises it
    /// with the rate (about 1 ms of traffic per wake-up, at most one read buffer).
    pub receive_low_watermark: Option<u32>,
}

/// Which test this report belongs to.
impl StreamReport {
    /// Protocol of the test.
    pub fn protocol(&self) -> Protocol {
        self.spec.protocol
    }
}
/// Fills UDP loss of a side's receiving streams from the peer's sent counts.
pub fn apply_peer_sent(
    spec: &TestSpec,
    side: &mut SideReport,
    received_distinct: &[u64],
    peer_sent: &[u64],
) {
    if spec.protocol != Protocol::Udp {
        return;
    }
    let mut lost_total = 0;
    let mut receiving = false;
    for s in side
        .streams
        .iter_mut()
        .filter(|s| s.role == StreamRole::Receive)
    {
        receiving = true;
        let sent = peer_sent.get(s.id as usize).copied().unwrap_or(0);
        let got = received_distinct.get(s.id as usize).copied().unwrap_or(0);
        let lost = sent.saturating_sub(got);
        if let Some(udp) = &mut s.udp {
            udp.lost = lost;
        }
        lost_total += lost;
    }
    side.lost = receiving.then_some(lost_total);
}
