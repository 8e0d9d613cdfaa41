//! Validated description of a stream test, shared by client, server and report.
//!
//! A [`TestSpec`] crosses the wire in the control protocol, so the server validates it again
//! with [`TestSpec::validate`] against its own [`Limits`]: a client cannot ask for more than
//! the server allows.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clap::ValueEnum;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Transport of a stream test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP byte stream.
    Tcp,
    /// UDP datagrams with sequence numbers.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// Which way payload flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client sends (iperf3's default).
    Forward,
    /// Server sends (`-R`).
    Reverse,
    /// Both send at once on separate streams (`--bidir`).
    Bidir,
}

/// How the sender hands payload to the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Zerocopy {
    /// Plain `write`/`send`: the kernel copies from user memory.
    #[default]
    None,
    /// `sendfile` from an in-memory file: pages are referenced, not copied.
    Sendfile,
    /// `send(MSG_ZEROCOPY)` with completions read from the socket error queue.
    Msg,
}

impl Zerocopy {
    /// Name as used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Zerocopy::None => "none",
            Zerocopy::Sendfile => "sendfile",
            Zerocopy::Msg => "msg",
        }
    }
}

/// A stream test as both ends must run it. Unknown fields are rejected: a server must not
/// silently ignore an option a newer client asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Who sends.
    pub direction: Direction,
    /// Measured duration, seconds (after `omit_s`).
    pub duration_s: f64,
    /// Warm-up before the measured window, seconds; not counted anywhere.
    pub omit_s: f64,
    /// Interval report period, seconds; 0 disables the series.
    pub interval_s: f64,
    /// Parallel streams per direction, each with its own thread on both ends.
    pub parallel: u32,
    /// Bytes per write (TCP) or UDP payload bytes per datagram.
    pub length: u32,
    /// Requested SO_SNDBUF/SO_RCVBUF, bytes.
    pub window: Option<u32>,
    /// TCP congestion control algorithm to set on both ends.
    pub congestion: Option<String>,
    /// TCP_MAXSEG to set, bytes.
    pub mss: Option<u32>,
    /// TCP_NODELAY on data sockets.
    pub nodelay: bool,
    /// Sender's zero-copy mode.
    pub zerocopy: Zerocopy,
    /// Receivers discard payload in the kernel (MSG_TRUNC) instead of copying it.
    pub rx_discard: bool,
    /// UDP target rate per stream, bits per second; 0 = unlimited.
    pub udp_rate_bps: u64,
    /// Use UDP GSO/GRO (UDP_SEGMENT / UDP_GRO) where the kernel has them.
    pub udp_gso: bool,
    /// Batch datagrams with sendmmsg/recvmmsg.
    pub udp_batch: bool,
    /// Cores for the client's stream threads, in stream order (cycled).
    pub client_affinity: Vec<usize>,
    /// Cores for the server's stream threads, in stream order (cycled).
    pub server_affinity: Vec<usize>,
    /// UDP datagram header layout: netload's own, or iperf3's when the peer is iperf3.
    /// Never on the wire: each end sets it from the protocol it speaks.
    #[serde(skip)]
    #[schemars(skip)]
    pub udp_wire: crate::wire::UdpWire,
}

/// Largest UDP payload over IPv4 (65535 - 20 - 8).
pub const MAX_UDP_PAYLOAD: u32 = 65_507;
/// Smallest UDP payload: room for the sequence header.
pub const MIN_UDP_PAYLOAD: u32 = crate::wire::HEADER_LEN as u32;
/// Largest TCP write length accepted (64 MiB).
pub const MAX_TCP_LENGTH: u32 = 64 << 20;

/// Default TCP write size: large writes amortise syscalls (iperf3 uses 128 KiB).
pub const DEFAULT_TCP_LENGTH: u32 = 256 << 10;
/// Default UDP payload: fits a 1500-byte MTU with IPv4, UDP and a VXLAN header to spare.
pub const DEFAULT_UDP_LENGTH: u32 = 1400;

/// What a server is willing to run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// Longest `omit_s + duration_s`, seconds.
    pub max_duration_s: f64,
    /// Most parallel streams per direction.
    pub max_parallel: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_duration_s: 3600.0,
            max_parallel: 128,
        }
    }
}

/// A spec that cannot run, naming the field and what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {field}: {problem}")]
pub struct SpecError {
    /// The offending field, as its command-line flag.
    pub field: &'static str,
    /// What is wrong and what would be allowed.
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> SpecError {
    SpecError {
        field,
        problem: problem.into(),
    }
}

impl TestSpec {
    /// A spec with netload's defaults for `protocol`: 10 s, forward, one stream.
    pub fn new(protocol: Protocol) -> Self {
        TestSpec {
            protocol,
            direction: Direction::Forward,
            duration_s: 10.0,
            omit_s: 0.0,
            interval_s: 1.0,
            parallel: 1,
            length: match protocol {
                Protocol::Tcp => DEFAULT_TCP_LENGTH,
                Protocol::Udp => DEFAULT_UDP_LENGTH,
            },
            window: None,
            congestion: None,
            mss: None,
            nodelay: false,
            zerocopy: Zerocopy::None,
            rx_discard: false,
            udp_rate_bps: 0,
            udp_gso: true,
            udp_batch: true,
            client_affinity: Vec::new(),
            server_affinity: Vec::new(),
            udp_wire: crate::wire::UdpWire::Netload,
        }
    }

    /// Checks every field against the protocol's rules and the server's `limits`.
    pub fn validate(&self, limits: &Limits) -> Result<(), SpecError> {
        let finite_non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !(self.duration_s.is_finite() && self.duration_s > 0.0) {
            return Err(invalid("--time", "must be a positive number of seconds"));
        }
        if !finite_non_negative(self.omit_s) {
            return Err(invalid(
                "--omit",
                "must be zero or a positive number of seconds",
            ));
        }
        if self.duration_s + self.omit_s > limits.max_duration_s {
            return Err(invalid(
                "--time",
                format!(
                    "--time plus --omit is {} s, the server allows at most {} s",
                    self.duration_s + self.omit_s,
                    limits.max_duration_s
                ),
            ));
        }
        if !finite_non_negative(self.interval_s)
            || (self.interval_s > 0.0 && self.interval_s < 0.01)
        {
            return Err(invalid("--interval", "must be 0 (off) or at least 0.01 s"));
        }
        if self.parallel == 0 || self.parallel > limits.max_parallel {
            return Err(invalid(
                "--parallel",
                format!("must be between 1 and {}", limits.max_parallel),
            ));
        }
        match self.protocol {
            Protocol::Tcp => {
                if self.length == 0 || self.length > MAX_TCP_LENGTH {
                    return Err(invalid(
                        "--length",
                        format!("must be between 1 and {MAX_TCP_LENGTH} bytes for TCP"),
                    ));
                }
                if let Some(mss) = self.mss
                    && !(88..=65_535).contains(&mss)
                {
                    return Err(invalid("--mss", "must be between 88 and 65535 bytes"));
                }
                if self.udp_rate_bps != 0 {
                    return Err(invalid("--rate", "applies to UDP only"));
                }
            }
            Protocol::Udp => {
                if !(MIN_UDP_PAYLOAD..=MAX_UDP_PAYLOAD).contains(&self.length) {
                    return Err(invalid(
                        "--length",
                        format!(
                            "must be between {MIN_UDP_PAYLOAD} and {MAX_UDP_PAYLOAD} bytes for UDP"
                        ),
                    ));
                }
                if self.mss.is_some() {
                    return Err(invalid("--mss", "applies to TCP only"));
                }
                if self.nodelay {
                    return Err(invalid("--nodelay", "applies to TCP only"));
                }
                if self.zerocopy != Zerocopy::None {
                    return Err(invalid("--zerocopy", "applies to TCP only"));
                }
                if self.congestion.is_some() {
                    return Err(invalid("--congestion", "applies to TCP only"));
                }
            }
        }
        if let Some(window) = self.window
            && !(1024..=(1 << 30)).contains(&window)
        {
            return Err(invalid("--window", "must be between 1 KiB and 1 GiB"));
        }
        if let Some(algo) = &self.congestion
            && (algo.is_empty()
                || algo.len() > 15
                || !algo.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(invalid(
                "--congestion",
                "must be a kernel algorithm name such as cubic or bbr",
            ));
        }
        Ok(())
    }

    /// Measured window plus warm-up.
    pub fn total_duration(&self) -> Duration {
        Duration::from_secs_f64(self.omit_s + self.duration_s)
    }

    /// Number of stream sockets the test opens (both directions counted).
    pub fn stream_count(&self) -> u32 {
        match self.direction {
            Direction::Bidir => self.parallel * 2,
            Direction::Forward | Direction::Reverse => self.parallel,
        }
    }

    /// Whether the client sends on stream `id` (streams `0..parallel` go client→server
    /// except in reverse mode; bidir adds `parallel..2*parallel` server→client).
    pub fn client_sends_on(&self, id: u32) -> bool {
        match self.direction {
            Direction::Forward => true,
            Direction::Reverse => false,
            Direction::Bidir => id < self.parallel,
        }
    }
}

/// A byte count parsed from `1400`, `128K`, `10MiB`, `1G` (K = 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (digits, mult) = split_suffix(s, 1024)?;
        digits
            .checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

/// A rate in bits per second parsed from `0`, `500M`, `10G` (K = 1000, as iperf3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BitRate(pub u64);

impl FromStr for BitRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (digits, mult) = split_suffix(s, 1000)?;
        digits
            .checked_mul(mult)
            .map(BitRate)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

fn split_suffix(s: &str, base: u64) -> Result<(u64, u64), String> {
    let s = s.trim();
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, suffix) = s.split_at(end);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a number with an optional K/M/G suffix"))?;
    let mult = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => base,
        "m" | "mb" | "mib" => base * base,
        "g" | "gb" | "gib" => base * base * base,
        other => return Err(format!("unknown suffix {other:?} (use K, M or G)")),
    };
    Ok((value, mult))
}

/// A core list such as `0,2,3` or `1-3`.
pub fn parse_core_list(s: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (usize, usize) = (
                a.parse().map_err(|_| format!("bad core {a:?}"))?,
                b.parse().map_err(|_| format!("bad core {b:?}"))?,
            );
            if a > b || b - a > 1024 {
                return Err(format!("bad core range {part:?}"));
            }
            cores.extend(a..=b);
        } else {
            cores.push(part.parse().map_err(|_| format!("bad core {part:?}"))?);
        }
    }
    if cores.is_empty() {
        return Err("empty core list".into());
    }
    Ok(cores)
}

/// `--affinity C1,C2[/S1,S2]`: client cores, then optionally server cores.
pub fn parse_affinity(s: &str) -> Result<(Vec<usize>, Vec<usize>), String> {
    match s.split_once('/') {
        Some((c, srv)) => Ok((
            if c.is_empty() {
                Vec::new()
            } else {
                parse_core_list(c)?
            },
            parse_core_list(srv)?,
        )),
        None => Ok((parse_core_list(s)?, Vec::new())),
    }
}

/// Which end of a connection-per-transaction exchange (`rr --mode tcp-crr`, `http
/// --new-connection`) closes first, and so keeps the `TIME_WAIT` socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CloseBy {
    /// The responder closes right after its response; the client reads the end of the
    /// stream and closes too (passive close: no `TIME_WAIT` on the client). HTTP asks for
    /// it with `Connection: close`; `tcp-crr` needs a responder of this version.
    Server,
    /// The client closes first (netperf's `TCP_CRR`, curl): one `TIME_WAIT` socket per
    /// transaction stays on the client for 60 s. Only meaningful in short runs or with
    /// `net.ipv4.tcp_tw_reuse` set in the client's namespace.
    Client,
    /// The client aborts with a reset (`SO_LINGER` 0): no `TIME_WAIT` anywhere, but the
    /// peer and every middlebox see an RST instead of a FIN exchange.
    Reset,
}

impl CloseBy {
    /// Name as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseBy::Server => "server",
            CloseBy::Client => "client",
            CloseBy::Reset => "reset",
        }
    }

    /// What documents written before the field existed used.
    pub(crate) fn before_recorded() -> Self {
        CloseBy::Client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_use_binary_multiples() {
        assert_eq!("1400".parse::<ByteSize>(), Ok(ByteSize(1400)));
        assert_eq!("128K".parse::<ByteSize>(), Ok(ByteSize(128 * 1024)));
        assert_eq!("10MiB".parse::<ByteSize>(), Ok(ByteSize(10 << 20)));
        assert!("10X".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
        assert!("99999999999999G".parse::<ByteSize>().is_err());
    }

    #[test]
    fn bit_rates_use_decimal_multiples() {
        assert_eq!("500M".parse::<BitRate>(), Ok(BitRate(500_000_000)));
        assert_eq!("0".parse::<BitRate>(), Ok(BitRate(0)));
    }

    #[test]
    fn affinity_splits_client_and_server_cores() {
        assert_eq!(parse_affinity("0,1/1-2"), Ok((vec![0, 1], vec![1, 2])));
        assert_eq!(parse_affinity("3"), Ok((vec![3], vec![])));
        assert_eq!(parse_affinity("/2"), Ok((vec![], vec![2])));
        assert!(parse_affinity("a").is_err());
        assert!(parse_affinity("3-1").is_err());
    }

    #[test]
    fn validation_names_the_flag() {
        let limits = Limits::default();
        let mut spec = TestSpec::new(Protocol::Udp);
        assert_eq!(spec.validate(&limits), Ok(()));
        spec.mss = Some(1000);
        assert_eq!(spec.validate(&limits).unwrap_err().field, "--mss");
        let mut spec = TestSpec::new(Protocol::Tcp);
        spec.parallel = 0;
        assert_eq!(spec.validate(&limits).unwrap_err().field, "--parallel");
        spec.parallel = 1;
        spec.duration_s = 5000.0;
        assert_eq!(spec.validate(&limits).unwrap_err().field, "--time");
        spec.duration_s = f64::NAN;
        assert_eq!(spec.validate(&limits).unwrap_err().field, "--time");
        spec.duration_s = 1.0;
        spec.congestion = Some("cubic; rm".into());
        assert_eq!(spec.validate(&limits).unwrap_err().field, "--congestion");
    }

    #[test]
    fn bidir_streams_split_by_index() {
        let mut spec = TestSpec::new(Protocol::Tcp);
        spec.direction = Direction::Bidir;
        spec.parallel = 2;
        assert_eq!(spec.stream_count(), 4);
        assert!(spec.client_sends_on(1));
        assert!(!spec.client_sends_on(2));
    }
}
