//! iperf3's control protocol as data: states, cookie, JSON framing, the parameter object a
//! client sends and the results object both ends exchange. Nothing here touches a socket.
//!
//! Learned from iperf3's public sources (`iperf_api.h`, `iperf_api.c`, `iperf_util.c`,
//! `iperf_udp.c`); the wire is what those files write, the code is our own.

use std::io::{self, Read};

use serde_json::{Map, Value, json};

use crate::report::{SideReport, StreamRole};
use crate::spec::{Direction, Limits, Protocol, SpecError, TestSpec, Zerocopy};
use crate::wire::UdpWire;

/// Bytes of the cookie that opens every iperf3 connection: 36 characters and a NUL.
pub const COOKIE_SIZE: usize = 37;
/// Largest parameter object a server reads (`MAX_PARAMS_JSON_STRING` in iperf3).
pub const MAX_PARAMS_JSON: u32 = 8 * 1024;
/// Largest results object we read (iperf3 reads any size; a bound keeps a peer honest).
pub const MAX_RESULTS_JSON: u32 = 1 << 20;
/// Datagram a UDP stream opens with: the native-endian `0x36373839` of iperf3 on the
/// little-endian hosts it runs on, "9876" on the wire.
pub const UDP_CONNECT_MSG: [u8; 4] = *b"9876";
/// iperf3 before 3.11 sent 123456789 in native order.
pub const LEGACY_UDP_CONNECT_MSG: [u8; 4] = 123_456_789u32.to_le_bytes();
/// The server's answer to [`UDP_CONNECT_MSG`]: "6789" on the wire.
pub const UDP_CONNECT_REPLY: [u8; 4] = *b"6789";
/// What servers before 3.11 answered.
pub const LEGACY_UDP_CONNECT_REPLY: [u8; 4] = 987_654_321u32.to_le_bytes();
/// The port iperf3 listens on by default.
pub const DEFAULT_PORT: u16 = 5201;

/// A control message: one signed byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Streams are set up; the test is about to start.
    TestStart,
    /// Data flows.
    TestRunning,
    /// The client's timer ran out.
    TestEnd,
    /// The client is to send its parameters.
    ParamExchange,
    /// The client is to open its data streams.
    CreateStreams,
    /// The server was interrupted.
    ServerTerminate,
    /// The client was interrupted.
    ClientTerminate,
    /// Results objects follow, client's first.
    ExchangeResults,
    /// The client may print; it answers with `IperfDone`.
    DisplayResults,
    /// The client is done with the connection.
    IperfDone,
    /// The server is busy with another test.
    AccessDenied,
    /// The server failed; two big-endian i32 follow: iperf3's error number and errno.
    ServerError,
}

impl State {
    /// The byte on the wire (the numbers of `iperf_api.h`).
    pub fn byte(self) -> u8 {
        let v: i8 = match self {
            State::TestStart => 1,
            State::TestRunning => 2,
            State::TestEnd => 4,
            State::ParamExchange => 9,
            State::CreateStreams => 10,
            State::ServerTerminate => 11,
            State::ClientTerminate => 12,
            State::ExchangeResults => 13,
            State::DisplayResults => 14,
            State::IperfDone => 16,
            State::AccessDenied => -1,
            State::ServerError => -2,
        };
        v.to_ne_bytes()[0]
    }

    /// The state a byte stands for; `None` for numbers iperf3 does not send.
    pub fn from_byte(b: u8) -> Option<State> {
        Some(match i8::from_ne_bytes([b]) {
            1 => State::TestStart,
            2 => State::TestRunning,
            4 => State::TestEnd,
            9 => State::ParamExchange,
            10 => State::CreateStreams,
            11 => State::ServerTerminate,
            12 => State::ClientTerminate,
            13 => State::ExchangeResults,
            14 => State::DisplayResults,
            16 => State::IperfDone,
            -1 => State::AccessDenied,
            -2 => State::ServerError,
            _ => return None,
        })
    }
}

/// iperf3 error numbers (`i_errno`, `iperf_api.h`) this implementation sends or explains.
pub mod errno {
    /// Test duration too long.
    pub const IEDURATION: i32 = 5;
    /// Too many parallel streams.
    pub const IENUMSTREAMS: i32 = 6;
    /// Block size too large.
    pub const IEBLOCKSIZE: i32 = 7;
    /// Socket buffer too large.
    pub const IEBUFSIZE: i32 = 8;
    /// MSS out of range.
    pub const IEMSS: i32 = 10;
    /// Bad `--omit`.
    pub const IEOMIT: i32 = 12;
    /// An option is not implemented.
    pub const IEUNIMP: i32 = 13;
    /// UDP block size out of range.
    pub const IEUDPBLOCKSIZE: i32 = 20;
    /// Test initialisation failed.
    pub const IEINITTEST: i32 = 101;
    /// The control connection closed.
    pub const IECTRLCLOSE: i32 = 109;
    /// An unknown control message arrived.
    pub const IEMESSAGE: i32 = 110;
    /// The parameters could not be read.
    pub const IERECVPARAMS: i32 = 114;
    /// The results could not be read.
    pub const IERECVRESULTS: i32 = 117;
    /// The client terminated.
    pub const IECLIENTTERM: i32 = 119;
    /// The server terminated.
    pub const IESERVERTERM: i32 = 120;
    /// The server is busy.
    pub const IEACCESSDENIED: i32 = 121;
    /// A data stream could not be accepted.
    pub const IESTREAMACCEPT: i32 = 204;
}

/// iperf3's text for an error number (`iperf_strerror`), for the ones we meet.
pub fn strerror(code: i32) -> String {
    use errno::{
        IEACCESSDENIED, IEBLOCKSIZE, IEBUFSIZE, IECLIENTTERM, IECTRLCLOSE, IEDURATION, IEINITTEST,
        IEMESSAGE, IEMSS, IENUMSTREAMS, IEOMIT, IERECVPARAMS, IERECVRESULTS, IESERVERTERM,
        IESTREAMACCEPT, IEUDPBLOCKSIZE, IEUNIMP,
    };
    match code {
        IEDURATION => "test duration too long".into(),
        IENUMSTREAMS => "invalid number of parallel streams".into(),
        IEBLOCKSIZE => "block size too large".into(),
        IEBUFSIZE => "socket buffer size too large".into(),
        IEMSS => "TCP MSS too large".into(),
        IEOMIT => "bogus value for --omit".into(),
        IEUNIMP => "an option you are trying to set is not implemented yet".into(),
        IEUDPBLOCKSIZE => "block size invalid".into(),
        IEINITTEST => "test initialization failed".into(),
        IECTRLCLOSE => "control socket has closed unexpectedly".into(),
        IEMESSAGE => "received an unknown control message".into(),
        IERECVPARAMS => "unable to receive parameters from client".into(),
        IERECVRESULTS => "unable to receive results".into(),
        IECLIENTTERM => "the client has terminated".into(),
        IESERVERTERM => "the server has terminated".into(),
        IEACCESSDENIED => "the server is busy running a test. try again later".into(),
        IESTREAMACCEPT => "unable to accept stream connection".into(),
        other => format!("iperf3 error {other}"),
    }
}

/// The `SERVER_ERROR` message: state byte, error number and errno, both big-endian i32.
pub fn server_error(code: i32, os_errno: i32) -> [u8; 9] {
    let mut out = [0u8; 9];
    out[0] = State::ServerError.byte();
    out[1..5].copy_from_slice(&code.to_be_bytes());
    out[5..9].copy_from_slice(&os_errno.to_be_bytes());
    out
}

/// A fresh cookie the way `make_cookie` builds one: 36 characters of `a-z2-7`, then NUL.
pub fn make_cookie() -> [u8; COOKIE_SIZE] {
    const CHARS: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let raw: [u8; COOKIE_SIZE] = rand::random();
    let mut out = [0u8; COOKIE_SIZE];
    for (o, r) in out.iter_mut().zip(raw).take(COOKIE_SIZE - 1) {
        *o = CHARS[usize::from(r) % CHARS.len()];
    }
    out
}

/// Whether 37 bytes look like an iperf3 cookie: printable ASCII, NUL-terminated. Anything
/// else on the port is not an iperf3 client.
pub fn is_cookie(bytes: &[u8; COOKIE_SIZE]) -> bool {
    bytes[COOKIE_SIZE - 1] == 0 && bytes[..COOKIE_SIZE - 1].iter().all(u8::is_ascii_graphic)
}

/// Why a JSON object could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The connection failed or closed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The announced length is zero or above the bound.
    #[error("JSON object of {len} bytes announced (at most {max} accepted)")]
    Length {
        /// Announced length.
        len: u32,
        /// Bound.
        max: u32,
    },
    /// The bytes are not a JSON object.
    #[error("malformed JSON object: {0}")]
    Parse(String),
}

/// A JSON object framed as iperf3 frames it: 4-byte big-endian length, then the text.
pub fn encode_json(value: &Value) -> Vec<u8> {
    let text = value.to_string();
    let mut out = Vec::with_capacity(4 + text.len());
    out.extend_from_slice(&(text.len() as u32).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out
}

/// Reads one framed JSON object of at most `max` bytes.
pub fn read_json(mut r: impl Read, max: u32) -> Result<Map<String, Value>, JsonError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len == 0 || len > max {
        return Err(JsonError::Length { len, max });
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    match serde_json::from_slice(&buf) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(JsonError::Parse("not an object".into())),
        Err(e) => Err(JsonError::Parse(e.to_string())),
    }
}

/// A client's parameters the server will not run, with the iperf3 error number to send.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    /// iperf3 error number (`i_errno`) for the client.
    pub code: i32,
    /// Our explanation, for the log.
    pub message: String,
}

fn refuse(code: i32, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Keys a client sends that do not change what the server does: cosmetic text, the
/// sender-side pacing timer, GSO/GRO preferences of newer clients (the engine decides
/// those per socket), and the client's own congestion algorithm.
const HARMLESS_KEYS: &[&str] = &[
    "title",
    "extra_data",
    "pacing_timer",
    "congestion_used",
    "repeating_payload",
    "gso",
    "gso_dg_size",
    "gso_bf_size",
    "gro",
    "gro_bf_size",
    "client_version",
];

fn number(map: &Map<String, Value>, key: &str) -> Result<Option<f64>, Refusal> {
    match map.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .map(Some)
            .ok_or_else(|| {
                refuse(
                    errno::IERECVPARAMS,
                    format!("parameter {key:?} is not a number: {v}"),
                )
            }),
    }
}

fn flag(map: &Map<String, Value>, key: &str) -> bool {
    match map.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|v| v != 0.0),
        _ => false,
    }
}

fn as_u32(v: f64, key: &str, code: i32) -> Result<u32, Refusal> {
    if v.fract() == 0.0 && v <= f64::from(u32::MAX) {
        Ok(v as u32)
    } else {
        Err(refuse(code, format!("parameter {key:?} out of range: {v}")))
    }
}

/// Turns a client's parameter object into the test this server runs, or refuses it.
///
/// Every key iperf3 3.x sends is either mapped, known to be harmless, or refused with
/// `IEUNIMP` naming the option: a server must not silently run another test than the one
/// asked for.
pub fn spec_from_params(map: &Map<String, Value>, limits: &Limits) -> Result<TestSpec, Refusal> {
    if let Some(v) = map.get("client_version") {
        let version = v.as_str().unwrap_or_default();
        if !version.starts_with("3.") {
            return Err(refuse(
                errno::IEUNIMP,
                format!("client version {v} is not supported (iperf3 3.x only)"),
            ));
        }
    }
    let protocol = if flag(map, "udp") {
        Protocol::Udp
    } else if flag(map, "sctp") {
        return Err(refuse(errno::IEUNIMP, "SCTP (--sctp) is not supported"));
    } else {
        Protocol::Tcp
    };
    let mut spec = TestSpec::new(protocol);
    spec.interval_s = 0.0;
    // netload's own defaults serve netload; an iperf3 client expects iperf3's behaviour.
    spec.udp_gso = false;
    spec.udp_batch = true;
    let unsupported = |what: &str| refuse(errno::IEUNIMP, format!("{what} is not supported"));
    for key in map.keys() {
        let known = matches!(
            key.as_str(),
            "tcp"
                | "udp"
                | "omit"
                | "server_affinity"
                | "time"
                | "num"
                | "blockcount"
                | "MSS"
                | "nodelay"
                | "parallel"
                | "reverse"
                | "bidirectional"
                | "window"
                | "len"
                | "bandwidth"
                | "congestion"
                | "udp_counters_64bit"
                | "zerocopy"
                | "skip_rx_copy"
        ) || HARMLESS_KEYS.contains(&key.as_str());
        if !known {
            let what = match key.as_str() {
                "fqrate" => "--fq-rate",
                "burst" => "a burst count (-b RATE/BURST)",
                "TOS" => "-S/--tos",
                "flowlabel" => "-L/--flowlabel",
                "get_server_output" => "--get-server-output",
                "dont_fragment" => "--dont-fragment",
                "authtoken" => "authentication (--username)",
                "mptcp" => "--mptcp",
                other => other,
            };
            return Err(unsupported(what));
        }
    }
    if number(map, "num")?.unwrap_or(0.0) != 0.0 || number(map, "blockcount")?.unwrap_or(0.0) != 0.0
    {
        return Err(unsupported("ending a test by bytes or blocks (-n/-k)"));
    }
    spec.duration_s = number(map, "time")?.unwrap_or(10.0);
    if spec.duration_s == 0.0 {
        return Err(unsupported("an unlimited test (-t 0)"));
    }
    spec.omit_s = number(map, "omit")?.unwrap_or(0.0);
    if let Some(p) = number(map, "parallel")? {
        spec.parallel = as_u32(p, "parallel", errno::IENUMSTREAMS)?;
    }
    spec.direction = match (flag(map, "reverse"), flag(map, "bidirectional")) {
        (_, true) => Direction::Bidir,
        (true, false) => Direction::Reverse,
        (false, false) => Direction::Forward,
    };
    if let Some(len) = number(map, "len")? {
        let code = match protocol {
            Protocol::Tcp => errno::IEBLOCKSIZE,
            Protocol::Udp => errno::IEUDPBLOCKSIZE,
        };
        spec.length = as_u32(len, "len", code)?;
    }
    if let Some(w) = number(map, "window")? {
        spec.window = Some(as_u32(w, "window", errno::IEBUFSIZE)?);
    }
    if let Some(mss) = number(map, "MSS")? {
        spec.mss = Some(as_u32(mss, "MSS", errno::IEMSS)?);
    }
    spec.nodelay = flag(map, "nodelay");
    if let Some(core) = number(map, "server_affinity")? {
        spec.server_affinity = vec![as_u32(core, "server_affinity", errno::IEUNIMP)? as usize];
    }
    spec.congestion = map
        .get("congestion")
        .and_then(Value::as_str)
        .map(str::to_string);
    let rate = number(map, "bandwidth")?.unwrap_or(0.0);
    match protocol {
        Protocol::Udp => spec.udp_rate_bps = rate as u64,
        Protocol::Tcp if rate > 0.0 => return Err(unsupported("a TCP rate limit (-b with TCP)")),
        Protocol::Tcp => {}
    }
    if flag(map, "zerocopy") && protocol == Protocol::Tcp {
        spec.zerocopy = Zerocopy::Sendfile;
    }
    spec.rx_discard = flag(map, "skip_rx_copy") && protocol == Protocol::Tcp;
    spec.udp_wire = match protocol {
        Protocol::Udp => UdpWire::Iperf3 {
            counters64: flag(map, "udp_counters_64bit"),
        },
        Protocol::Tcp => UdpWire::Netload,
    };
    spec.validate(limits)
        .map_err(|e| refusal_for(&e, protocol))?;
    Ok(spec)
}

/// The iperf3 error number closest to a spec's validation error.
fn refusal_for(e: &SpecError, protocol: Protocol) -> Refusal {
    let code = match e.field {
        "--time" => errno::IEDURATION,
        "--omit" => errno::IEOMIT,
        "--parallel" => errno::IENUMSTREAMS,
        "--length" if protocol == Protocol::Udp => errno::IEUDPBLOCKSIZE,
        "--length" => errno::IEBLOCKSIZE,
        "--mss" => errno::IEMSS,
        "--window" => errno::IEBUFSIZE,
        _ => errno::IEUNIMP,
    };
    refuse(code, e.to_string())
}

/// The parameter object netload sends to an iperf3 server for `spec`, or why iperf3
/// cannot run it.
pub fn params_from_spec(spec: &TestSpec) -> Result<Value, String> {
    let mut m = Map::new();
    m.insert(spec.protocol.to_string(), Value::Bool(true));
    m.insert("omit".into(), json!(spec.omit_s.ceil() as u64));
    if spec.omit_s.fract() != 0.0 || spec.duration_s.fract() != 0.0 {
        return Err("iperf3 takes whole seconds for --time and --omit".into());
    }
    m.insert("time".into(), json!(spec.duration_s as u64));
    m.insert("num".into(), json!(0));
    m.insert("blockcount".into(), json!(0));
    m.insert("parallel".into(), json!(spec.parallel));
    match spec.direction {
        Direction::Forward => {}
        Direction::Reverse => {
            m.insert("reverse".into(), Value::Bool(true));
        }
        Direction::Bidir => {
            m.insert("bidirectional".into(), Value::Bool(true));
        }
    }
    if let Some(mss) = spec.mss {
        m.insert("MSS".into(), json!(mss));
    }
    if spec.nodelay {
        m.insert("nodelay".into(), Value::Bool(true));
    }
    if let Some(w) = spec.window {
        m.insert("window".into(), json!(w));
    }
    m.insert("len".into(), json!(spec.length));
    if spec.protocol == Protocol::Udp {
        m.insert("bandwidth".into(), json!(spec.udp_rate_bps));
        m.insert("udp_counters_64bit".into(), json!(1));
    }
    m.insert("pacing_timer".into(), json!(1000));
    if let Some(c) = &spec.congestion {
        m.insert("congestion".into(), json!(c));
    }
    match spec.server_affinity.as_slice() {
        [] => {}
        [core] => {
            m.insert("server_affinity".into(), json!(core));
        }
        _ => return Err("iperf3 pins its server to one core only (--affinity C/S)".into()),
    }
    let server_sends = spec.direction != Direction::Forward;
    match spec.zerocopy {
        Zerocopy::Sendfile if server_sends => {
            m.insert("zerocopy".into(), json!(1));
        }
        Zerocopy::Msg if server_sends => {
            return Err("iperf3 has no MSG_ZEROCOPY sender (its -Z is sendfile)".into());
        }
        _ => {}
    }
    if spec.rx_discard {
        m.insert("skip_rx_copy".into(), json!(1));
    }
    m.insert("client_version".into(), json!("3.12"));
    Ok(Value::Object(m))
}

/// iperf3's id of the stream at `index` in creation order: 1, 3, 4, 5... (`iperf_add_stream`
/// skips 2, and both ends must agree).
pub fn stream_id(index: usize) -> u64 {
    if index == 0 { 1 } else { index as u64 + 2 }
}

/// Index in creation order of iperf3's stream `id`.
pub fn stream_index(id: u64) -> Option<usize> {
    match id {
        1 => Some(0),
        0 | 2 => None,
        n => usize::try_from(n - 2).ok(),
    }
}

/// This side's results object (`send_results`): CPU as percent of the window, per stream
/// bytes, retransmits (−1 when not a TCP sender), jitter in seconds, lost and packets.
pub fn results_json(spec: &TestSpec, side: &SideReport, congestion: Option<&str>) -> Value {
    let cpu = &side.cpu;
    let pct = |s: f64| {
        if cpu.window_s > 0.0 {
            s * 100.0 / cpu.window_s
        } else {
            0.0
        }
    };
    let tcp = spec.protocol == Protocol::Tcp;
    let sends = side.streams.iter().any(|s| s.role == StreamRole::Send);
    let sender_has_retransmits = if sends { i32::from(tcp) } else { -1 };
    let streams: Vec<Value> = side
        .streams
        .iter()
        .map(|s| {
            let udp = s.udp.unwrap_or_default();
            let retransmits = match (s.role, &s.tcp) {
                (StreamRole::Send, Some(t)) => t.retransmits as i64,
                _ => -1,
            };
            let (errors, packets) = match s.role {
                // iperf3's receiver count is the highest sequence number seen.
                StreamRole::Receive => (
                    udp.lost,
                    udp.packets.saturating_sub(udp.duplicates) + udp.lost,
                ),
                StreamRole::Send => (0, udp.packets),
            };
            json!({
                "id": stream_id(s.id as usize),
                "bytes": s.bytes,
                "retransmits": retransmits,
                "jitter": udp.jitter_ms / 1000.0,
                "errors": errors,
                "omitted_errors": 0,
                "packets": packets,
                "omitted_packets": 0,
                "start_time": 0.0,
                "end_time": side.duration_s,
            })
        })
        .collect();
    let mut m = json!({
        "cpu_util_total": pct(cpu.process_user_s + cpu.process_system_s),
        "cpu_util_user": pct(cpu.process_user_s),
        "cpu_util_system": pct(cpu.process_system_s),
        "sender_has_retransmits": sender_has_retransmits,
        "streams": streams,
    });
    if let Some(c) = congestion {
        m["congestion_used"] = json!(c);
    }
    m
}

/// One stream of an iperf3 results object.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerStream {
    /// Index in creation order (from iperf3's id).
    pub index: usize,
    /// Bytes the peer sent or received on it.
    pub bytes: u64,
    /// Retransmits, when the peer was a TCP sender.
    pub retransmits: Option<u64>,
    /// Jitter the peer measured as a UDP receiver, milliseconds.
    pub jitter_ms: f64,
    /// Datagrams the peer found lost (UDP receiver).
    pub errors: u64,
    /// Datagrams sent or received.
    pub packets: u64,
    /// Length of the peer's window for the stream, seconds.
    pub seconds: f64,
}

/// The peer's results object (`get_results`).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerResults {
    /// Process CPU over the test, percent of one core: total, user, system.
    pub cpu_util: [f64; 3],
    /// Congestion control algorithm the peer used.
    pub congestion_used: Option<String>,
    /// Streams.
    pub streams: Vec<PeerStream>,
}

/// Parses a results object; the fields `get_results` requires must be there.
pub fn parse_results(map: &Map<String, Value>) -> Result<PeerResults, String> {
    let num = |m: &Map<String, Value>, k: &str| {
        m.get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("results lack the number {k:?}"))
    };
    let cpu_util = [
        num(map, "cpu_util_total")?,
        num(map, "cpu_util_user")?,
        num(map, "cpu_util_system")?,
    ];
    num(map, "sender_has_retransmits")?;
    let streams = map
        .get("streams")
        .and_then(Value::as_array)
        .ok_or("results lack the array \"streams\"")?;
    let streams = streams
        .iter()
        .map(|s| {
            let s = s.as_object().ok_or("a results stream is not an object")?;
            let id = num(s, "id")?;
            let index = stream_index(id as u64).ok_or_else(|| format!("bad stream id {id}"))?;
            let retrans = num(s, "retransmits")?;
            let start = s.get("start_time").and_then(Value::as_f64).unwrap_or(0.0);
            let end = s.get("end_time").and_then(Value::as_f64).unwrap_or(0.0);
            Ok(PeerStream {
                index,
                bytes: num(s, "bytes")? as u64,
                retransmits: (retrans >= 0.0).then_some(retrans as u64),
                jitter_ms: num(s, "jitter")? * 1000.0,
                errors: num(s, "errors")?.max(0.0) as u64,
                packets: num(s, "packets")?.max(0.0) as u64,
                seconds: (end - start).max(0.0),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(PeerResults {
        cpu_util,
        congestion_used: map
            .get("congestion_used")
            .and_then(Value::as_str)
            .map(str::to_string),
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    /// What iperf3 3.12 sends for `iperf3 -c H -t 2 -P 2 -R -M 1200 -N -Z`.
    fn iperf312_tcp() -> Value {
        json!({"tcp":true,"omit":0,"time":2,"num":0,"blockcount":0,"MSS":1200,"nodelay":true,
               "parallel":2,"reverse":true,"len":131_072,"pacing_timer":1000,"zerocopy":1,
               "client_version":"3.12"})
    }

    #[test]
    fn states_have_iperf3_numbers() {
        assert_eq!(State::ServerError.byte(), 0xfe);
        assert_eq!(State::AccessDenied.byte(), 0xff);
        assert_eq!(State::ParamExchange.byte(), 9);
        for b in 0..=255u8 {
            if let Some(s) = State::from_byte(b) {
                assert_eq!(s.byte(), b);
            }
        }
        assert_eq!(State::from_byte(3), None);
        assert_eq!(server_error(13, 0), [0xfe, 0, 0, 0, 13, 0, 0, 0, 0]);
    }

    #[test]
    fn cookie_is_iperf3_shaped() {
        let c = make_cookie();
        assert!(is_cookie(&c));
        assert!(
            c[..36]
                .iter()
                .all(|b| b"abcdefghijklmnopqrstuvwxyz234567".contains(b))
        );
        let mut bad = c;
        bad[36] = b'x';
        assert!(!is_cookie(&bad));
        let mut bad = c;
        bad[3] = 0x01;
        assert!(!is_cookie(&bad));
    }

    #[test]
    fn json_framing_round_trips_and_bounds() {
        let v = json!({"a": 1});
        let bytes = encode_json(&v);
        assert_eq!(&bytes[..4], &7u32.to_be_bytes());
        assert_eq!(Value::Object(read_json(&bytes[..], 100).unwrap()), v);
        assert!(matches!(
            read_json(&bytes[..], 6),
            Err(JsonError::Length { len: 7, max: 6 })
        ));
        assert!(matches!(
            read_json(&[0u8, 0, 0, 0][..], 6),
            Err(JsonError::Length { .. })
        ));
        assert!(matches!(read_json(&bytes[..6], 100), Err(JsonError::Io(_))));
        let mut not_obj = 2u32.to_be_bytes().to_vec();
        not_obj.extend_from_slice(b"[]");
        assert!(matches!(
            read_json(&not_obj[..], 100),
            Err(JsonError::Parse(_))
        ));
    }

    #[test]
    fn iperf312_parameters_map_onto_a_spec() {
        let spec = spec_from_params(&params(iperf312_tcp()), &Limits::default()).unwrap();
        assert_eq!(spec.protocol, Protocol::Tcp);
        assert_eq!(spec.direction, Direction::Reverse);
        assert_eq!(spec.parallel, 2);
        assert_eq!(spec.mss, Some(1200));
        assert!(spec.nodelay);
        assert_eq!(spec.zerocopy, Zerocopy::Sendfile);
        assert_eq!(spec.length, 131_072);
        assert!((spec.duration_s - 2.0).abs() < f64::EPSILON);
        let udp = json!({"udp":true,"omit":0,"time":1,"num":0,"blockcount":0,"parallel":1,
                         "bidirectional":true,"len":1448,"bandwidth":1_048_576,"pacing_timer":1000,
                         "udp_counters_64bit":1,"client_version":"3.12"});
        let spec = spec_from_params(&params(udp), &Limits::default()).unwrap();
        assert_eq!(spec.direction, Direction::Bidir);
        assert_eq!(spec.udp_rate_bps, 1_048_576);
        assert_eq!(spec.udp_wire, UdpWire::Iperf3 { counters64: true });
    }

    #[test]
    fn unsupported_parameters_are_refused_with_iperf3_numbers() {
        let refused = |patch: Value| {
            let mut m = params(iperf312_tcp());
            for (k, v) in patch.as_object().unwrap() {
                m.insert(k.clone(), v.clone());
            }
            spec_from_params(&m, &Limits::default()).unwrap_err()
        };
        assert_eq!(refused(json!({"TOS": 16})).code, errno::IEUNIMP);
        assert!(refused(json!({"TOS": 16})).message.contains("--tos"));
        assert_eq!(refused(json!({"num": 1000})).code, errno::IEUNIMP);
        assert_eq!(refused(json!({"bandwidth": 1000})).code, errno::IEUNIMP);
        assert_eq!(
            refused(json!({"client_version": "4.0"})).code,
            errno::IEUNIMP
        );
        assert_eq!(refused(json!({"frobnicate": 1})).code, errno::IEUNIMP);
        assert_eq!(
            refused(json!({"parallel": 100_000})).code,
            errno::IENUMSTREAMS
        );
        assert_eq!(refused(json!({"time": 1e9})).code, errno::IEDURATION);
        assert_eq!(refused(json!({"time": "ten"})).code, errno::IERECVPARAMS);
        assert_eq!(
            refused(json!({"sctp": true, "tcp": false})).code,
            errno::IEUNIMP
        );
    }

    #[test]
    fn our_parameters_parse_back() {
        let mut spec = TestSpec::new(Protocol::Udp);
        spec.duration_s = 3.0;
        spec.parallel = 2;
        spec.direction = Direction::Bidir;
        spec.udp_rate_bps = 5_000_000;
        let v = params_from_spec(&spec).unwrap();
        let back = spec_from_params(v.as_object().unwrap(), &Limits::default()).unwrap();
        assert_eq!(back.direction, Direction::Bidir);
        assert_eq!(back.parallel, 2);
        assert_eq!(back.udp_rate_bps, 5_000_000);
        assert_eq!(back.length, spec.length);
        spec.duration_s = 1.5;
        assert!(params_from_spec(&spec).is_err());
    }

    #[test]
    fn stream_ids_skip_two() {
        let ids: Vec<u64> = (0..4).map(stream_id).collect();
        assert_eq!(ids, [1, 3, 4, 5]);
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(stream_index(*id), Some(i));
        }
        assert_eq!(stream_index(2), None);
    }

    #[test]
    fn results_round_trip_through_get_results_rules() {
        use crate::report::{StreamStats, UdpStats};
        let spec = TestSpec::new(Protocol::Udp);
        let mut side = SideReport {
            duration_s: 2.0,
            ..SideReport::default()
        };
        side.cpu.window_s = 2.0;
        side.cpu.process_user_s = 0.5;
        side.cpu.process_system_s = 1.0;
        side.streams.push(StreamStats {
            id: 1,
            role: StreamRole::Receive,
            bytes: 14_000,
            bits_per_second: 0.0,
            cpu_core: None,
            placement: None,
            tcp: None,
            udp: Some(UdpStats {
                packets: 11,
                lost: 2,
                duplicates: 1,
                out_of_order: 0,
                jitter_ms: 0.25,
                socket_drops: None,
                datagrams_per_packet: None,
            }),
            zerocopy: None,
        });
        let v = results_json(&spec, &side, None);
        assert_eq!(v["sender_has_retransmits"], -1);
        assert!((v["cpu_util_total"].as_f64().unwrap() - 75.0).abs() < 1e-9);
        assert_eq!(v["streams"][0]["id"], 3);
        let back = parse_results(v.as_object().unwrap()).unwrap();
        let s = &back.streams[0];
        assert_eq!((s.index, s.bytes, s.errors, s.packets), (1, 14_000, 2, 12));
        assert!((s.jitter_ms - 0.25).abs() < 1e-12);
        assert_eq!(s.retransmits, None);
        let mut broken = v.as_object().unwrap().clone();
        broken.remove("cpu_util_user");
        assert!(parse_results(&broken).is_err());
    }
}
