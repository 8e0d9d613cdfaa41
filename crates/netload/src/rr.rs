//! Request/response latency: `netload rr HOST --mode tcp-rr|tcp-crr|udp-rr`, and its
//! responder [`RrServer`] (`netload rr-server`).
//!
//! One OS thread per connection on both ends, blocking sockets, `TCP_NODELAY`: the
//! latency measured is the kernel's and the network's, not an event loop's.
//!
//! - `tcp-rr`: one connection per thread; each transaction writes the request and reads the
//!   whole response.
//! - `tcp-crr`: a new connection per transaction (connect, request, response, close): the
//!   cost that grows with conntrack and DNAT state. Who closes first decides where the
//!   `TIME_WAIT` socket stays ([`CloseBy`]): by default the responder closes first, so the
//!   client keeps no `TIME_WAIT` state and its ephemeral ports never run low; a client that
//!   closed first would hold one `TIME_WAIT` socket per transaction for 60 s, and once half
//!   its port range is taken every `connect` searches milliseconds for a free port: the
//!   figure would then measure the kernel's port allocator, not the network.
//! - `udp-rr`: one datagram each way, matched by sequence number; a response not back within
//!   `--timeout` counts as a timeout (lost).
//!
//! Latency is the **round trip** (sockperf and netperf print half of it). Closed loop by
//! default; `--rate` makes it open loop, measuring from each transaction's intended send
//! time ([`crate::hist::Schedule`]). Percentiles come from `HdrHistogram`s merged across
//! threads, per interval and in total.
//!
//! Wire format (own port until the control protocol carries it): a TCP connection starts
//! with a 12-byte hello `"NLRR", request size, response size` (big-endian u32); then every
//! transaction is `request size` bytes in, `response size` bytes out. The hello
//! `"NLR1", ...` asks for one transaction after which the responder closes first. A UDP request starts
//! with `"NLRR", response size, sequence (u64)`; the response starts with the sequence.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::cpu::{self, CpuSample};
use crate::hist::{self, LatencyHistogram, LatencySummary, Schedule};
use crate::http::ErrorKind;
use crate::report::CpuReport;
pub use crate::spec::CloseBy;

/// Default port of the standalone responder.
pub const DEFAULT_RR_PORT: u16 = 9202;
/// First bytes of every hello and UDP request.
pub const MAGIC: [u8; 4] = *b"NLRR";
/// First bytes of a hello asking for one transaction, after which the responder closes
/// the connection first ([`CloseBy::Server`]).
pub const ONE_SHOT_MAGIC: [u8; 4] = *b"NLR1";
/// Bytes of the TCP hello.
pub const HELLO_LEN: usize = 12;
/// Bytes of the UDP request header (magic, response size, sequence).
pub const UDP_REQ_HEADER: usize = 16;
/// Bytes of the UDP response header (sequence).
pub const UDP_RESP_HEADER: usize = 8;
/// Largest request or response (TCP), bytes.
pub const MAX_MESSAGE: u32 = 1 << 20;
/// Largest UDP payload over IPv4.
pub const MAX_UDP_MESSAGE: u32 = 65_507;
/// Version of the [`RrReport`] schema.
pub const RR_SCHEMA_VERSION: u32 = 1;

/// Transaction kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RrMode {
    /// Many transactions over one TCP connection per thread.
    TcpRr,
    /// One TCP connection per transaction (connect, request, response, close).
    TcpCrr,
    /// One UDP datagram each way.
    UdpRr,
}

impl RrMode {
    /// Name as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RrMode::TcpRr => "tcp-rr",
            RrMode::TcpCrr => "tcp-crr",
            RrMode::UdpRr => "udp-rr",
        }
    }
}

/// `--size REQ[/RESP]`: request and response sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RrSizes {
    /// Request bytes.
    pub request: u32,
    /// Response bytes.
    pub response: u32,
}

impl std::str::FromStr for RrSizes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let one = |v: &str| -> Result<u32, String> {
            let b = v.parse::<crate::spec::ByteSize>()?.0;
            u32::try_from(b).map_err(|_| format!("{v:?} is too large"))
        };
        let (req, resp) = if let Some((a, b)) = s.split_once('/') {
            (one(a)?, one(b)?)
        } else {
            let v = one(s)?;
            (v, v)
        };
        Ok(RrSizes {
            request: req,
            response: resp,
        })
    }
}

/// A validated request/response test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RrSpec {
    /// Responder host as given.
    pub host: String,
    /// Responder port.
    pub port: u16,
    /// Transaction kind.
    pub mode: RrMode,
    /// Request bytes.
    pub request_size: u32,
    /// Response bytes.
    pub response_size: u32,
    /// Measured duration, seconds.
    pub duration_s: f64,
    /// Parallel connections (threads).
    pub parallel: u32,
    /// Open-loop rate in transactions per second; absent for closed loop.
    pub rate: Option<f64>,
    /// Interval period, seconds; 0 = no series.
    pub interval_s: f64,
    /// Per-transaction timeout, seconds.
    pub timeout_s: f64,
    /// `tcp-crr`: which end closes each connection first (documents written before it was
    /// recorded closed from the client).
    #[serde(default = "CloseBy::before_recorded")]
    pub close: CloseBy,
    /// Client cores, cycled over threads.
    pub client_affinity: Vec<usize>,
    /// Server cores (applied by the responder when it is told; not yet on the wire).
    pub server_affinity: Vec<usize>,
    /// Client spins on non-blocking sockets while waiting.
    pub busy_poll: bool,
}

/// An invalid spec, naming the flag.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {flag}: {problem}")]
pub struct RrSpecError {
    /// The flag at fault.
    pub flag: &'static str,
    /// What is wrong and what is allowed.
    pub problem: String,
}

fn bad(flag: &'static str, problem: impl Into<String>) -> RrSpecError {
    RrSpecError {
        flag,
        problem: problem.into(),
    }
}

impl RrSpec {
    /// Checks ranges, naming the flag at fault.
    pub fn validate(&self) -> Result<(), RrSpecError> {
        if !(self.duration_s.is_finite() && self.duration_s > 0.0 && self.duration_s <= 86_400.0) {
            return Err(bad("--time", "must be in (0, 86400] seconds"));
        }
        if self.parallel == 0 || self.parallel > 1024 {
            return Err(bad("--parallel", "must be between 1 and 1024"));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0 && r <= 10_000_000.0)
        {
            return Err(bad(
                "--rate",
                "must be in (0, 10000000] transactions per second",
            ));
        }
        if !(self.interval_s == 0.0
            || (self.interval_s.is_finite()
                && self.interval_s >= 0.01
                && self.duration_s / self.interval_s <= 10_000.0))
        {
            return Err(bad(
                "--interval",
                "must be 0 or at least 0.01 s, with at most 10000 intervals",
            ));
        }
        if !(self.timeout_s.is_finite() && self.timeout_s >= 0.001 && self.timeout_s <= 3600.0) {
            return Err(bad("--timeout", "must be in [0.001, 3600] seconds"));
        }
        let (min_req, min_resp, max) = match self.mode {
            RrMode::UdpRr => (
                UDP_REQ_HEADER as u32,
                UDP_RESP_HEADER as u32,
                MAX_UDP_MESSAGE,
            ),
            RrMode::TcpRr | RrMode::TcpCrr => (1, 1, MAX_MESSAGE),
        };
        if !(min_req..=max).contains(&self.request_size)
            || !(min_resp..=max).contains(&self.response_size)
        {
            return Err(bad(
                "--size",
                format!(
                    "request must be {min_req}..={max} and response {min_resp}..={max} bytes for this mode"
                ),
            ));
        }
        Ok(())
    }
}

/// One interval of the series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RrInterval {
    /// Start on the test clock, seconds.
    pub start_s: f64,
    /// End on the test clock, seconds.
    pub end_s: f64,
    /// Transactions completed in the interval.
    pub transactions: u64,
    /// `transactions` over the interval length.
    pub transactions_per_second: f64,
    /// Round-trip latency of those transactions.
    pub latency: LatencySummary,
}

/// `netload rr --json`: one versioned document per run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RrReport {
    /// Always [`RR_SCHEMA_VERSION`] for documents written by this build.
    pub schema_version: u32,
    /// netload version that produced the document.
    pub netload_version: String,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// What was run.
    pub spec: RrSpec,
    /// Completed transactions.
    pub transactions: u64,
    /// Measured window, seconds.
    pub duration_s: f64,
    /// `transactions` over `duration_s`.
    pub transactions_per_second: f64,
    /// Round-trip latency (request sent, or due in open loop, to response fully read).
    pub latency: LatencySummary,
    /// Open loop only: how late each request was sent after its intended time (the
    /// thread's wake-up latency, or a backlog when the peer is slower than `--rate`);
    /// part of `latency` by design.
    pub send_lag: Option<LatencySummary>,
    /// Per-interval series (completion time decides the interval).
    pub intervals: Vec<RrInterval>,
    /// Failed transactions by kind.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Client CPU over the window.
    pub cpu: CpuReport,
    /// Client process CPU (user + system) per transaction, microseconds (netperf's
    /// "service demand"); absent when nothing completed.
    pub cpu_us_per_transaction: Option<f64>,
    /// Responder CPU over the run (from a CPU session on the responder's port); absent
    /// when the responder did not answer one.
    pub server_cpu: Option<CpuReport>,
}

fn pin_to(core: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(core).is_ok() {
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}

// ---------------------------------------------------------------- responder

/// Settings of the responder.
#[derive(Debug, Clone)]
pub struct RrServerConfig {
    /// Most concurrent TCP connections; more are closed at once.
    pub max_connections: usize,
    /// A TCP connection idle this long is closed.
    pub idle_timeout: Duration,
    /// Cores for connection threads, cycled.
    pub affinity: Vec<usize>,
}

impl Default for RrServerConfig {
    fn default() -> Self {
        RrServerConfig {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            affinity: Vec::new(),
        }
    }
}

/// Starts a responder on `addr` (TCP and UDP); the library form of `netload rr-server`.
pub fn serve(addr: SocketAddr, config: RrServerConfig) -> io::Result<RrServer> {
    RrServer::bind(addr, config)
}

/// Poll period of blocking calls, so stop requests are seen promptly.
const TICK: Duration = Duration::from_millis(200);

/// A running responder; dropping it stops it.
pub struct RrServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl RrServer {
    /// Binds TCP and UDP on `addr` (port 0: a free TCP port, UDP on the same number).
    pub fn bind(addr: SocketAddr, config: RrServerConfig) -> io::Result<Self> {
        let tcp = TcpListener::bind(addr)?;
        let addr = tcp.local_addr()?;
        let udp = UdpSocket::bind(addr)?;
        udp.set_read_timeout(Some(TICK))?;
        let stop = Arc::new(AtomicBool::new(false));
        let config = Arc::new(config);
        let mut threads = Vec::new();
        let s = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("rr-udp".into())
                .spawn(move || serve_udp(&udp, &s))?,
        );
        let s = stop.clone();
        threads.push(
            std::thread::Builder::new()
                .name("rr-accept".into())
                .spawn(move || accept_loop(&tcp, &config, &s))?,
        );
        Ok(RrServer {
            addr,
            stop,
            threads,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and serving, and waits for the threads (at most one tick).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        // Every thread polls this flag at least once a tick. Nothing is woken over the
        // network: the bound address may be gone (a deleted veth), and then a connect to
        // it never reaches the accept it was meant to wake.
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for RrServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn accept_loop(listener: &TcpListener, config: &Arc<RrServerConfig>, stop: &Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    let mut next_core = 0usize;
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        // Polled, so the stop flag is seen within 100 ms whatever became of the address.
        let (stream, _) = match crate::serve::poll_accept(listener, "netload rr-server") {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                eprintln!("netload rr-server: the listening socket failed: {e}");
                break;
            }
        };
        if stop.load(Ordering::SeqCst) {
            break;
        }
        conns.retain(|h| !h.is_finished());
        if active.load(Ordering::SeqCst) >= config.max_connections {
            drop(stream);
            continue;
        }
        active.fetch_add(1, Ordering::SeqCst);
        let core = (!config.affinity.is_empty())
            .then(|| config.affinity[next_core % config.affinity.len()]);
        next_core += 1;
        let (conn_active, conn_stop, idle) = (active.clone(), stop.clone(), config.idle_timeout);
        let spawned = std::thread::Builder::new()
            .name("rr-conn".into())
            .spawn(move || {
                if let Some(c) = core {
                    pin_to(c);
                }
                let _ = serve_tcp(stream, &conn_stop, idle);
                conn_active.fetch_sub(1, Ordering::SeqCst);
            });
        match spawned {
            Ok(h) => conns.push(h),
            Err(_) => {
                active.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }
    for h in conns {
        let _ = h.join();
    }
}

/// Reads exactly `buf.len()` bytes, ticking so `stop` and the idle limit are honoured.
/// `Ok(false)` on a clean EOF before the first byte.
fn read_full(
    stream: &mut TcpStream,
    buf: &mut [u8],
    stop: &AtomicBool,
    idle: Duration,
) -> io::Result<bool> {
    let mut got = 0;
    let mut last = clock::now();
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                got += n;
                last = clock::now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) || clock::now() - last > idle {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn serve_tcp(mut stream: TcpStream, stop: &AtomicBool, idle: Duration) -> io::Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(TICK))?;
    stream.set_write_timeout(Some(idle))?;
    let mut hello = [0u8; HELLO_LEN];
    if !read_full(
        &mut stream,
        &mut hello,
        stop,
        idle.min(Duration::from_secs(10)),
    )? {
        return Ok(());
    }
    if hello == cpu_hello() {
        return serve_cpu_session(stream, stop);
    }
    let hello = parse_hello(&hello).ok_or(io::ErrorKind::InvalidData)?;
    let mut inbuf = vec![0u8; hello.request as usize];
    let outbuf = vec![b'r'; hello.response as usize];
    if hello.one_shot {
        // Closing first puts the TIME_WAIT socket here, where it costs no ephemeral port:
        // the client sees the end of the stream and closes passively. Every request byte
        // was read, so the close is a FIN, not a reset.
        if read_full(&mut stream, &mut inbuf, stop, idle)? {
            stream.write_all(&outbuf)?;
        }
        return Ok(());
    }
    // Bounded by the peer: each pass needs a full request; idle peers time out.
    while read_full(&mut stream, &mut inbuf, stop, idle)? {
        stream.write_all(&outbuf)?;
    }
    let _ = stream.shutdown(Shutdown::Both);
    Ok(())
}

/// First bytes of a CPU session: the responder samples its CPU now and again when the
/// client sends one byte, and answers with the window as JSON (u32 length prefix).
pub const CPU_MAGIC: [u8; 4] = *b"NLRC";

/// Longest CPU session (a run of `--time` at most a day, plus slack).
const CPU_SESSION_LIMIT: Duration = Duration::from_secs(90_000);

/// Largest CPU report accepted by the client, bytes.
const MAX_CPU_REPORT: u32 = 64 << 10;

/// The hello that opens a CPU session.
pub fn cpu_hello() -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(&CPU_MAGIC);
    h
}

fn serve_cpu_session(mut stream: TcpStream, stop: &AtomicBool) -> io::Result<()> {
    let start = CpuSample::take();
    stream.write_all(&[1])?;
    let mut end = [0u8; 1];
    if !read_full(&mut stream, &mut end, stop, CPU_SESSION_LIMIT)? {
        return Ok(());
    }
    let report = cpu::window(&start, &CpuSample::take(), 0);
    let json = serde_json::to_vec(&report).map_err(io::Error::other)?;
    stream.write_all(&(json.len() as u32).to_be_bytes())?;
    stream.write_all(&json)
}

/// Client side of a CPU session: opened before the test, closed after it.
struct CpuSession(TcpStream);

impl CpuSession {
    /// Opens a session; `None` when the responder does not answer (it then simply has no
    /// CPU figures in the report).
    fn open(addr: SocketAddr, timeout: Duration) -> Option<Self> {
        let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        s.set_write_timeout(Some(timeout)).ok()?;
        s.write_all(&cpu_hello()).ok()?;
        let mut ack = [0u8; 1];
        s.read_exact(&mut ack).ok()?;
        (ack[0] == 1).then_some(CpuSession(s))
    }

    /// Ends the session and returns the responder's CPU over it.
    fn close(mut self) -> Option<CpuReport> {
        self.0.write_all(&[1]).ok()?;
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).ok()?;
        let len = u32::from_be_bytes(len);
        if len > MAX_CPU_REPORT {
            return None;
        }
        let mut json = vec![0u8; len as usize];
        self.0.read_exact(&mut json).ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// The TCP hello for `sizes`: any number of transactions on the connection.
pub fn hello(request: u32, response: u32) -> [u8; HELLO_LEN] {
    hello_with(MAGIC, request, response)
}

/// The TCP hello of one transaction after which the responder closes first.
pub fn one_shot_hello(request: u32, response: u32) -> [u8; HELLO_LEN] {
    hello_with(ONE_SHOT_MAGIC, request, response)
}

fn hello_with(magic: [u8; 4], request: u32, response: u32) -> [u8; HELLO_LEN] {
    let mut h = [0u8; HELLO_LEN];
    h[..4].copy_from_slice(&magic);
    h[4..8].copy_from_slice(&request.to_be_bytes());
    h[8..].copy_from_slice(&response.to_be_bytes());
    h
}

/// A parsed TCP hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Request bytes.
    pub request: u32,
    /// Response bytes.
    pub response: u32,
    /// One transaction, then the responder closes first.
    pub one_shot: bool,
}

/// The hello's sizes and kind; `None` unless the magic is known and both sizes are within
/// 1..=[`MAX_MESSAGE`].
pub fn parse_hello(h: &[u8; HELLO_LEN]) -> Option<Hello> {
    let one_shot = match h[..4].try_into().ok()? {
        MAGIC => false,
        ONE_SHOT_MAGIC => true,
        _ => return None,
    };
    let request = u32::from_be_bytes(h[4..8].try_into().ok()?);
    let response = u32::from_be_bytes(h[8..].try_into().ok()?);
    let ok = |v: u32| (1..=MAX_MESSAGE).contains(&v);
    (ok(request) && ok(response)).then_some(Hello {
        request,
        response,
        one_shot,
    })
}

/// The response a responder owes to UDP request `datagram`: the response size and the
/// sequence; `None` for anything that is not a well-formed request.
pub fn parse_udp_request(datagram: &[u8]) -> Option<(usize, u64)> {
    if datagram.len() < UDP_REQ_HEADER || datagram[..4] != MAGIC {
        return None;
    }
    let resp = u32::from_be_bytes(datagram[4..8].try_into().ok()?);
    let seq = u64::from_be_bytes(datagram[8..16].try_into().ok()?);
    ((UDP_RESP_HEADER as u32..=MAX_UDP_MESSAGE).contains(&resp)).then_some((resp as usize, seq))
}

fn serve_udp(sock: &UdpSocket, stop: &AtomicBool) {
    let mut inbuf = vec![0u8; 65_536];
    let mut outbuf = vec![b'r'; MAX_UDP_MESSAGE as usize];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, peer)) = sock.recv_from(&mut inbuf) else {
            continue;
        };
        if let Some((resp, seq)) = parse_udp_request(&inbuf[..n]) {
            outbuf[..8].copy_from_slice(&seq.to_be_bytes());
            let _ = sock.send_to(&outbuf[..resp], peer);
        }
    }
}

// ---------------------------------------------------------------- client

struct ThreadResult {
    intervals: Vec<LatencyHistogram>,
    total: LatencyHistogram,
    send_lag: LatencyHistogram,
    errors: BTreeMap<ErrorKind, u64>,
}

struct ClientCtx {
    addr: SocketAddr,
    /// Where threads flush their histograms at each interval boundary, so a thread holds
    /// only the current interval's (memory independent of `-P` times intervals).
    results: std::sync::Mutex<ThreadResult>,
    n_intervals: usize,
    stop: Arc<AtomicBool>,
    spec: RrSpec,
    start: Instant,
    deadline: Instant,
    timeout: Duration,
    interval: Duration,
}

/// Waits for `buf` to fill, by spinning on a non-blocking socket or blocking; errors with
/// `TimedOut` past `limit`.
///
/// A blocking read waits at most the socket's read timeout, set once to `--timeout` when
/// the connection opens: setting it per transaction would put a `setsockopt` (and the
/// socket lock it takes) inside every measured round trip. A response that arrives in
/// pieces is checked against `limit` between reads.
fn recv_full(stream: &mut TcpStream, buf: &mut [u8], limit: Instant, spin: bool) -> io::Result<()> {
    let mut got = 0;
    let mut polls = 0u32;
    while got < buf.len() {
        match stream.read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                got += n;
                if got < buf.len() && clock::now() >= limit {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                polls += 1;
                if !spin || polls.is_multiple_of(256) && clock::now() >= limit {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                std::hint::spin_loop();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn classify(e: &io::Error) -> ErrorKind {
    ErrorKind::of_io(e.kind())
}

fn connect(ctx: &ClientCtx) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&ctx.addr, ctx.timeout)?;
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(ctx.timeout))?;
    s.set_read_timeout(Some(ctx.timeout))?;
    Ok(s)
}

enum Link {
    None,
    Tcp(TcpStream),
    Udp(UdpSocket, u64, Vec<u8>),
}

fn transaction(ctx: &ClientCtx, link: &mut Link, req: &[u8], resp: &mut [u8]) -> io::Result<()> {
    let limit = clock::now() + ctx.timeout;
    let spin = ctx.spec.busy_poll;
    match ctx.spec.mode {
        RrMode::TcpRr => {
            if matches!(link, Link::None) {
                let mut s = connect(ctx)?;
                s.write_all(&hello(ctx.spec.request_size, ctx.spec.response_size))?;
                s.set_nonblocking(spin)?;
                *link = Link::Tcp(s);
            }
            let Link::Tcp(s) = link else { unreachable!() };
            write_all_spin(s, req)?;
            recv_full(s, resp, limit, spin)
        }
        RrMode::TcpCrr => {
            let mut s = connect(ctx)?;
            let (request, response) = (ctx.spec.request_size, ctx.spec.response_size);
            let opening = match ctx.spec.close {
                CloseBy::Server => one_shot_hello(request, response),
                CloseBy::Client | CloseBy::Reset => hello(request, response),
            };
            let mut msg = Vec::with_capacity(HELLO_LEN + req.len());
            msg.extend_from_slice(&opening);
            msg.extend_from_slice(req);
            s.write_all(&msg)?;
            recv_full(&mut s, resp, limit, false)?;
            close_crr(s, ctx.spec.close, limit)
        }
        RrMode::UdpRr => {
            if matches!(link, Link::None) {
                let local: SocketAddr = if ctx.addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let sock = UdpSocket::bind(local)?;
                sock.connect(ctx.addr)?;
                sock.set_nonblocking(spin)?;
                // Once, not per transaction (see `recv_full`); re-armed only after a stale
                // datagram.
                sock.set_read_timeout(Some(ctx.timeout))?;
                *link = Link::Udp(sock, 0, req.to_vec());
            }
            let Link::Udp(sock, seq, buf) = link else {
                unreachable!()
            };
            *seq += 1;
            buf[..4].copy_from_slice(&MAGIC);
            buf[4..8].copy_from_slice(&ctx.spec.response_size.to_be_bytes());
            buf[8..16].copy_from_slice(&seq.to_be_bytes());
            sock.send(buf)?;
            let mut polls = 0u32;
            // Bounded by `limit`: stale or foreign datagrams are skipped until then.
            let mut rearmed = false;
            loop {
                match sock.recv(resp) {
                    Ok(n) if n >= UDP_RESP_HEADER && resp[..8] == seq.to_be_bytes() => {
                        if rearmed {
                            sock.set_read_timeout(Some(ctx.timeout))?;
                        }
                        return Ok(());
                    }
                    // A late answer to an earlier (timed-out) request: wait for ours, but
                    // only until `limit`.
                    Ok(_) if !spin => {
                        let left = limit.saturating_duration_since(clock::now());
                        if left.is_zero() {
                            sock.set_read_timeout(Some(ctx.timeout))?;
                            return Err(io::ErrorKind::TimedOut.into());
                        }
                        sock.set_read_timeout(Some(left))?;
                        rearmed = true;
                    }
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        if rearmed {
                            sock.set_read_timeout(Some(ctx.timeout))?;
                        }
                        polls += 1;
                        if !spin || polls.is_multiple_of(256) && clock::now() >= limit {
                            return Err(io::ErrorKind::TimedOut.into());
                        }
                        std::hint::spin_loop();
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Ends a `tcp-crr` connection the way `close` says. The transaction's latency is already
/// taken; the wait for the responder's FIN still counts in the transaction rate, as the
/// close does in netperf's `TCP_CRR`.
fn close_crr(mut s: TcpStream, close: CloseBy, limit: Instant) -> io::Result<()> {
    match close {
        CloseBy::Client => Ok(()),
        CloseBy::Reset => socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)),
        CloseBy::Server => {
            let mut rest = [0u8; 1];
            loop {
                match s.read(&mut rest) {
                    Ok(0) => return Ok(()),
                    // The responder sends nothing after its response.
                    Ok(_) => return Err(io::ErrorKind::InvalidData.into()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) && clock::now() < limit => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

fn write_all_spin(s: &mut TcpStream, mut buf: &[u8]) -> io::Result<()> {
    // Request sizes are far below the socket buffer, so a non-blocking write only spins
    // when the peer has stopped reading; bounded by the response timeout that follows.
    let mut spins = 0u32;
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                spins += 1;
                if spins > 10_000_000 {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                std::hint::spin_loop();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Number of intervals of a run; transactions completing after the deadline fold into
/// the last one.
fn interval_count(length: Duration, interval: Duration) -> usize {
    if interval.is_zero() {
        0
    } else {
        length.as_nanos().div_ceil(interval.as_nanos()).max(1) as usize
    }
}

/// Adds a thread's current interval into the shared results and empties it.
fn flush(ctx: &ClientCtx, index: usize, cur: &mut LatencyHistogram, lag: &mut LatencyHistogram) {
    let mut shared = ctx
        .results
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    hist::merge(&mut shared.total, cur);
    hist::merge(&mut shared.send_lag, lag);
    if let Some(h) = shared.intervals.get_mut(index) {
        hist::merge(h, cur);
    }
    cur.reset();
    lag.reset();
}

fn client_thread(ctx: &ClientCtx, index: u32) {
    if !ctx.spec.client_affinity.is_empty() {
        pin_to(ctx.spec.client_affinity[index as usize % ctx.spec.client_affinity.len()]);
    }
    let n_intervals = ctx.n_intervals;
    let mut cur = hist::new_histogram();
    let mut cur_index = 0usize;
    let mut errors: BTreeMap<ErrorKind, u64> = BTreeMap::new();
    let mut send_lag = hist::new_coarse_histogram();
    let schedule = ctx.spec.rate.map(|r| {
        let per_thread = r / f64::from(ctx.spec.parallel);
        let offset = Duration::from_secs_f64(f64::from(index) / r);
        Schedule::new(ctx.start + offset, per_thread)
    });
    let req = vec![b'q'; ctx.spec.request_size as usize];
    let mut resp = vec![0u8; ctx.spec.response_size as usize];
    let mut link = Link::None;
    let mut k = 0u64;
    // Bounded by the deadline: every transaction ends within the timeout.
    loop {
        let start = if let Some(s) = schedule {
            let due = s.due(k);
            if due >= ctx.deadline {
                break;
            }
            // Sleeps in slices so an interrupt is seen within 100 ms even at low rates.
            while clock::now() < due && !ctx.stop.load(Ordering::Relaxed) {
                if ctx.spec.busy_poll {
                    std::hint::spin_loop();
                } else {
                    clock::sleep_until(due.min(clock::now() + Duration::from_millis(100)));
                }
            }
            if ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            hist::record(&mut send_lag, clock::now().saturating_duration_since(due));
            due
        } else {
            let now = clock::now();
            if now >= ctx.deadline || ctx.stop.load(Ordering::Relaxed) {
                break;
            }
            now
        };
        k += 1;
        match transaction(ctx, &mut link, &req, &mut resp) {
            Ok(()) => {
                let end = clock::now();
                if n_intervals > 0 {
                    let i =
                        hist::interval_index(end - ctx.start, ctx.interval).min(n_intervals - 1);
                    if i != cur_index {
                        flush(ctx, cur_index, &mut cur, &mut send_lag);
                        cur_index = i;
                    }
                }
                hist::record(&mut cur, end - start);
            }
            Err(e) => {
                *errors.entry(classify(&e)).or_insert(0) += 1;
                if !matches!(ctx.spec.mode, RrMode::UdpRr) || e.kind() != io::ErrorKind::TimedOut {
                    link = Link::None;
                }
                // A refused or unreachable peer fails at once: do not spin on it.
                if matches!(classify(&e), ErrorKind::Refused | ErrorKind::Unreachable) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    flush(ctx, cur_index, &mut cur, &mut send_lag);
    let mut shared = ctx
        .results
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for (k, n) in errors {
        *shared.errors.entry(k).or_insert(0) += n;
    }
}

/// Runs the test and returns its report.
pub fn execute(spec: &RrSpec) -> anyhow::Result<RrReport> {
    execute_until(spec, &Arc::new(AtomicBool::new(false)))
}

/// Runs the test, ending early (and still reporting) once `stop` is raised.
pub fn execute_until(spec: &RrSpec, stop: &Arc<AtomicBool>) -> anyhow::Result<RrReport> {
    use anyhow::Context as _;
    spec.validate()?;
    let addr = (spec.host.as_str(), spec.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", spec.host))?
        .next()
        .with_context(|| format!("{} resolves to no address", spec.host))?;
    let server_cpu = CpuSession::open(addr, Duration::from_secs_f64(spec.timeout_s.max(1.0)));
    let started_unix_s = clock::wall_time();
    let cpu_start = CpuSample::take();
    let start = clock::now();
    let interval = Duration::from_secs_f64(spec.interval_s);
    let n_intervals = interval_count(Duration::from_secs_f64(spec.duration_s), interval);
    let ctx = Arc::new(ClientCtx {
        addr,
        results: std::sync::Mutex::new(ThreadResult {
            intervals: (0..n_intervals)
                .map(|_| hist::new_coarse_histogram())
                .collect(),
            total: hist::new_histogram(),
            send_lag: hist::new_histogram(),
            errors: BTreeMap::new(),
        }),
        n_intervals,
        stop: stop.clone(),
        spec: spec.clone(),
        start,
        deadline: start + Duration::from_secs_f64(spec.duration_s),
        timeout: Duration::from_secs_f64(spec.timeout_s),
        interval,
    });
    let handles = (0..spec.parallel)
        .map(|i| {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("rr-{i}"))
                .spawn(move || client_thread(&ctx, i))
        })
        .collect::<io::Result<Vec<_>>>()
        .context("starting client threads")?;
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
    }
    let end = clock::now();
    let results = std::mem::replace(
        &mut *ctx
            .results
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        ThreadResult {
            intervals: Vec::new(),
            total: hist::new_histogram(),
            send_lag: hist::new_histogram(),
            errors: BTreeMap::new(),
        },
    );
    let cpu_end = CpuSample::take();
    let duration_s = (end - start).as_secs_f64();
    let mut report = build_report(
        spec,
        std::slice::from_ref(&results),
        duration_s,
        started_unix_s,
        cpu::window(&cpu_start, &cpu_end, 0),
    );
    report.server_cpu = server_cpu.and_then(CpuSession::close);
    Ok(report)
}

fn build_report(
    spec: &RrSpec,
    results: &[ThreadResult],
    duration_s: f64,
    started_unix_s: f64,
    cpu: CpuReport,
) -> RrReport {
    let mut total = hist::new_histogram();
    let mut send_lag = hist::new_histogram();
    let mut errors = BTreeMap::new();
    let n_intervals = results.first().map_or(0, |r| r.intervals.len());
    let mut intervals: Vec<LatencyHistogram> = (0..n_intervals)
        .map(|_| hist::new_coarse_histogram())
        .collect();
    for r in results {
        hist::merge(&mut total, &r.total);
        hist::merge(&mut send_lag, &r.send_lag);
        for (i, h) in r.intervals.iter().enumerate() {
            hist::merge(&mut intervals[i], h);
        }
        for (k, n) in &r.errors {
            *errors.entry(*k).or_insert(0) += n;
        }
    }
    let series = intervals
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let start_s = i as f64 * spec.interval_s;
            let end_s = (start_s + spec.interval_s).min(duration_s.max(start_s));
            let len = end_s - start_s;
            RrInterval {
                start_s,
                end_s,
                transactions: h.len(),
                transactions_per_second: if len > 0.0 { h.len() as f64 / len } else { 0.0 },
                latency: LatencySummary::of(h),
            }
        })
        .filter(|iv| iv.end_s > iv.start_s || iv.transactions > 0)
        .collect();
    RrReport {
        schema_version: RR_SCHEMA_VERSION,
        netload_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_unix_s,
        spec: spec.clone(),
        transactions: total.len(),
        duration_s,
        transactions_per_second: if duration_s > 0.0 {
            total.len() as f64 / duration_s
        } else {
            0.0
        },
        latency: LatencySummary::of(&total),
        send_lag: spec.rate.map(|_| LatencySummary::of(&send_lag)),
        intervals: series,
        errors,
        cpu_us_per_transaction: (!total.is_empty())
            .then(|| (cpu.process_user_s + cpu.process_system_s) * 1e6 / total.len() as f64),
        cpu,
        server_cpu: None,
    }
}

/// Human-readable table of a report.
pub fn render_table(r: &RrReport) -> String {
    let mut out = String::new();
    let s = &r.spec;
    let _ = writeln!(
        out,
        "netload rr {}{} to {}:{}, {}/{} bytes, {} connection(s), {}{}; latency is the round trip",
        s.mode.as_str(),
        if s.mode == RrMode::TcpCrr {
            format!(" (close: {})", s.close.as_str())
        } else {
            String::new()
        },
        s.host,
        s.port,
        s.request_size,
        s.response_size,
        s.parallel,
        s.rate.map_or_else(
            || "closed loop".to_owned(),
            |r| format!("open loop at {r} tps")
        ),
        // Spinning changes what is measured (no wake-up on the client), so say so.
        if s.busy_poll {
            ", busy-poll (client spins on a non-blocking socket)"
        } else {
            ""
        },
    );
    let _ = writeln!(
        out,
        "{:>13} {:>10} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "interval s", "trans", "trans/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs"
    );
    let row = |out: &mut String, label: &str, n: u64, tps: f64, l: &LatencySummary| {
        let _ = writeln!(
            out,
            "{label:>13} {n:>10} {tps:>12.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            l.p50_us, l.p90_us, l.p99_us, l.p99_9_us, l.max_us
        );
    };
    for iv in &r.intervals {
        let label = format!("{:.1}-{:.1}", iv.start_s, iv.end_s);
        row(
            &mut out,
            &label,
            iv.transactions,
            iv.transactions_per_second,
            &iv.latency,
        );
    }
    if let Some(lag) = &r.send_lag {
        row(&mut out, "send lag", lag.count, 0.0, lag);
    }
    row(
        &mut out,
        "total",
        r.transactions,
        r.transactions_per_second,
        &r.latency,
    );
    if !r.errors.is_empty() {
        let list: Vec<String> = r
            .errors
            .iter()
            .map(|(k, n)| format!("{} {n}", k.as_str()))
            .collect();
        let _ = writeln!(out, "errors: {}", list.join(", "));
    }
    let _ = writeln!(out, "{}", crate::render::cpu_line("client", &r.cpu));
    if let Some(c) = &r.server_cpu {
        let _ = writeln!(out, "{}", crate::render::cpu_line("server", c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_schema_is_generated() {
        let rr = serde_json::to_value(schemars::schema_for!(RrReport)).unwrap();
        assert!(rr["properties"]["latency"].is_object());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(
            "64/1K".parse::<RrSizes>(),
            Ok(RrSizes {
                request: 64,
                response: 1024
            })
        );
        assert_eq!(
            "100".parse::<RrSizes>(),
            Ok(RrSizes {
                request: 100,
                response: 100
            })
        );
        assert!("x/1".parse::<RrSizes>().is_err());
        assert!("8G".parse::<RrSizes>().is_err());
    }

    #[test]
    fn hello_round_trips_and_rejects_garbage() {
        let sizes = |h: Option<Hello>| h.map(|h| (h.request, h.response, h.one_shot));
        assert_eq!(sizes(parse_hello(&hello(1, 1000))), Some((1, 1000, false)));
        assert_eq!(
            sizes(parse_hello(&one_shot_hello(7, 9))),
            Some((7, 9, true))
        );
        assert_eq!(parse_hello(&hello(0, 1)), None);
        assert_eq!(parse_hello(&hello(1, MAX_MESSAGE + 1)), None);
        let mut h = hello(1, 1);
        h[0] = b'X';
        assert_eq!(parse_hello(&h), None);
    }

    #[test]
    fn udp_request_parsing() {
        let mut d = vec![0u8; 32];
        d[..4].copy_from_slice(&MAGIC);
        d[4..8].copy_from_slice(&100u32.to_be_bytes());
        d[8..16].copy_from_slice(&7u64.to_be_bytes());
        assert_eq!(parse_udp_request(&d), Some((100, 7)));
        assert_eq!(parse_udp_request(&d[..15]), None);
        d[4..8].copy_from_slice(&4u32.to_be_bytes());
        assert_eq!(parse_udp_request(&d), None);
    }

    /// What `netload rr 127.0.0.1 -p 1 --mode udp-rr -t 1 --affinity 0/1` asks for.
    fn spec() -> RrSpec {
        RrSpec {
            host: "127.0.0.1".into(),
            port: 1,
            mode: RrMode::UdpRr,
            request_size: UDP_REQ_HEADER as u32,
            response_size: UDP_RESP_HEADER as u32,
            duration_s: 1.0,
            parallel: 1,
            rate: None,
            interval_s: 1.0,
            timeout_s: 1.0,
            close: CloseBy::Server,
            client_affinity: vec![0],
            server_affinity: vec![1],
            busy_poll: false,
        }
    }

    #[test]
    fn table_snapshot() {
        let spec = spec();
        let mut t = ThreadResult {
            intervals: vec![hist::new_histogram(), hist::new_histogram()],
            total: hist::new_histogram(),
            send_lag: hist::new_histogram(),
            errors: BTreeMap::new(),
        };
        for us in 1..=100u64 {
            let d = Duration::from_micros(us * 10);
            hist::record(&mut t.total, d);
            hist::record(&mut t.intervals[usize::from(us > 50)], d);
        }
        t.errors.insert(ErrorKind::Timeout, 3);
        let mut spec = spec;
        spec.interval_s = 0.5;
        let r = build_report(&spec, &[t], 1.0, 0.0, CpuReport::default());
        assert_eq!(r.transactions, 100);
        assert_eq!(r.intervals.len(), 2);
        assert_eq!(r.intervals[0].transactions, 50);
        insta::assert_snapshot!("rr_table", render_table(&r));
        assert!(!render_table(&r).contains("busy-poll"));
        let mut busy = r.clone();
        busy.spec.busy_poll = true;
        assert!(
            render_table(&busy)
                .lines()
                .next()
                .unwrap()
                .contains("busy-poll (client spins")
        );
    }
}
