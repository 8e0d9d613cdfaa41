//! A netload test against an iperf3 server (`netload tcp|udp HOST --peer iperf3`).
//!
//! netload runs its own side with its own engines and CPU accounting; the server's side of
//! the report is iperf3's results object converted, and the report says so
//! ([`crate::report::StreamReport::server_peer`]).

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use super::proto::{
    self, COOKIE_SIZE, LEGACY_UDP_CONNECT_REPLY, MAX_RESULTS_JSON, PeerResults, State,
    UDP_CONNECT_MSG, UDP_CONNECT_REPLY,
};
use crate::client::{
    ClientError, ClientOptions, ServerSide, TestOutcome, connect_tcp_stream, finish_report, plan,
    resolve,
};
use crate::clock;
use crate::control::FrameError;
use crate::report::{
    CpuReport, EffectiveSettings, Interval, SideReport, StreamRole, StreamStats, TcpStats, UdpStats,
};
use crate::spec::{Protocol, TestSpec};
use crate::stream::{self, DataSocket, RunControl, Schedule, StreamPlan, rate_bps};

/// What the report names as the server when it is iperf3.
pub const PEER_LABEL: &str = "iperf3 (server figures are iperf3's own report: bytes, retransmits, UDP loss and jitter, process CPU as a share of the window; no node CPU)";

struct Control<'a> {
    addr: SocketAddr,
    conn: &'a TcpStream,
}

impl Control<'_> {
    fn io(&self, e: io::Error) -> ClientError {
        ClientError::Control {
            addr: self.addr,
            source: FrameError::Io(e),
        }
    }

    fn send(&self, bytes: &[u8]) -> Result<(), ClientError> {
        let mut c = self.conn;
        c.write_all(bytes).map_err(|e| self.io(e))
    }

    /// Reads the next state; SERVER_ERROR and ACCESS_DENIED become iperf3-style errors.
    fn state(&self) -> Result<State, ClientError> {
        let mut b = [0u8; 1];
        let mut c = self.conn;
        c.read_exact(&mut b).map_err(|e| self.io(e))?;
        match State::from_byte(b[0]) {
            Some(State::ServerError) => {
                let mut nums = [0u8; 8];
                c.read_exact(&mut nums).map_err(|e| self.io(e))?;
                let code = i32::from_be_bytes(nums[..4].try_into().expect("4 bytes"));
                let os = i32::from_be_bytes(nums[4..].try_into().expect("4 bytes"));
                let mut message = format!("iperf3 error {code}: {}", proto::strerror(code));
                if os > 0 {
                    let _ = write!(message, " ({})", io::Error::from_raw_os_error(os));
                }
                Err(ClientError::Refused {
                    addr: self.addr,
                    message,
                })
            }
            Some(State::AccessDenied) => Err(ClientError::Refused {
                addr: self.addr,
                message: proto::strerror(proto::errno::IEACCESSDENIED),
            }),
            Some(s) => Ok(s),
            None => Err(self.broke(format!("unknown iperf3 state {}", b[0]))),
        }
    }

    fn expect(&self, wanted: State) -> Result<(), ClientError> {
        match self.state()? {
            s if s == wanted => Ok(()),
            other => Err(self.broke(format!("expected {wanted:?}, got {other:?}"))),
        }
    }

    fn broke(&self, message: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr,
            message,
        }
    }
}

/// Runs `opts.spec` against an iperf3 server. `on_interval` sees the client's intervals.
pub fn run_test(
    opts: &ClientOptions,
    on_interval: &mut dyn FnMut(&Interval),
) -> Result<TestOutcome, ClientError> {
    let mut spec = opts.spec.clone();
    if spec.protocol == Protocol::Udp {
        spec.udp_wire = crate::wire::UdpWire::Iperf3 { counters64: true };
    }
    let params = proto::params_from_spec(&spec).map_err(|message| ClientError::Refused {
        addr: SocketAddr::from(([0, 0, 0, 0], opts.port)),
        message: format!("not possible against iperf3: {message}"),
    })?;
    let addr = resolve(&opts.host, opts.port)?;
    let conn = TcpStream::connect_timeout(&addr, opts.phase_timeout)
        .map_err(|source| ClientError::Connect { addr, source })?;
    conn.set_read_timeout(Some(opts.phase_timeout))
        .and_then(|()| conn.set_write_timeout(Some(opts.phase_timeout)))
        .map_err(|source| ClientError::Connect { addr, source })?;
    let _ = conn.set_nodelay(true);
    let ctl = Control { addr, conn: &conn };
    let cookie = proto::make_cookie();
    ctl.send(&cookie)?;
    ctl.expect(State::ParamExchange)?;
    ctl.send(&proto::encode_json(&params))?;
    ctl.expect(State::CreateStreams)?;
    let plans = connect_streams(addr, &spec, &cookie, opts.phase_timeout)?;
    ctl.expect(State::TestStart)?;
    ctl.expect(State::TestRunning)?;
    let started_unix_s = clock::wall_time() + spec.omit_s;
    let schedule = Schedule::new(&spec, clock::now());
    let control = RunControl::new(plans.len());
    let finished = Arc::new(AtomicBool::new(false));
    let ender = {
        let conn = conn.try_clone().map_err(|e| ctl.io(e))?;
        let control = Arc::clone(&control);
        let finished = Arc::clone(&finished);
        let interrupt = opts.interrupt.clone();
        let sockets: Vec<(DataSocket, StreamRole)> =
            plans.iter().map(|p| (p.socket.clone(), p.role)).collect();
        thread::Builder::new()
            .name("iperf3-end".into())
            .spawn(move || {
                end_test(
                    &conn,
                    schedule,
                    &control,
                    &finished,
                    interrupt.as_deref(),
                    &sockets,
                )
            })
            .map_err(|e| ctl.io(e))?
    };
    let run = stream::run_side(&spec, plans, schedule, &control, on_interval);
    finished.store(true, Ordering::Relaxed);
    let (sent_end, interrupted) = ender.join().unwrap_or((Ok(()), false));
    sent_end.map_err(|e| ctl.io(e))?;
    conn.set_read_timeout(Some(opts.phase_timeout + stream::DRAIN_GRACE * 2))
        .map_err(|e| ctl.io(e))?;
    ctl.expect(State::ExchangeResults)?;
    let ours = proto::results_json(&spec, &run.report, None);
    ctl.send(&proto::encode_json(&ours))?;
    let theirs = proto::read_json(&conn, MAX_RESULTS_JSON)
        .map_err(|e| ctl.broke(format!("server results: {e}")))?;
    let theirs =
        proto::parse_results(&theirs).map_err(|e| ctl.broke(format!("server results: {e}")))?;
    ctl.expect(State::DisplayResults)?;
    ctl.send(&[State::IperfDone.byte()])?;
    let (side, sent) = peer_side(&spec, &theirs);
    let mut warnings = vec!["the server is iperf3: its side of this report is iperf3's own results, converted (no node CPU, no interval series)".to_string()];
    if spec.rx_discard {
        warnings.push(
            "iperf3 before 3.17 ignores skip_rx_copy: the server may have copied payload".into(),
        );
    }
    let server = ServerSide {
        side,
        sent,
        errors: Vec::new(),
        version: "iperf3".into(),
        peer: Some(PEER_LABEL.into()),
        warnings,
    };
    Ok(finish_report(
        &spec,
        run,
        server,
        started_unix_s,
        interrupted,
    ))
}

/// Sends TEST_END when this side's time is up (or on interrupt, or when the streams ended
/// early), then gives the streams a bounded drain before stopping them: an iperf3 server
/// closes its data sockets only once the test is over.
fn end_test(
    conn: &TcpStream,
    schedule: Schedule,
    control: &RunControl,
    finished: &AtomicBool,
    interrupt: Option<&AtomicBool>,
    sockets: &[(DataSocket, StreamRole)],
) -> (io::Result<()>, bool) {
    let mut interrupted = false;
    while !finished.load(Ordering::Relaxed) && clock::now() < schedule.deadline {
        if interrupt.is_some_and(|f| f.load(Ordering::Relaxed)) {
            interrupted = true;
            control.abort.store(true, Ordering::Relaxed);
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let mut c = conn;
    let sent = c.write_all(&[State::TestEnd.byte()]);
    let give_up = clock::now() + stream::DRAIN_GRACE * 2;
    while !finished.load(Ordering::Relaxed) && clock::now() < give_up {
        thread::sleep(Duration::from_millis(10));
    }
    if !finished.load(Ordering::Relaxed) {
        super::stop_streams(control, sockets);
    }
    (sent, interrupted)
}

fn connect_streams(
    addr: SocketAddr,
    spec: &TestSpec,
    cookie: &[u8; COOKIE_SIZE],
    timeout: Duration,
) -> Result<Vec<StreamPlan>, ClientError> {
    (0..spec.stream_count())
        .map(|id| {
            let err = |source| ClientError::Stream { stream: id, source };
            let socket = match spec.protocol {
                Protocol::Tcp => DataSocket::Tcp(Arc::new(
                    connect_tcp_stream(addr, spec, cookie, timeout).map_err(err)?,
                )),
                Protocol::Udp => {
                    DataSocket::Udp(Arc::new(connect_udp(addr, spec, timeout).map_err(err)?))
                }
            };
            Ok(plan(spec, id, socket))
        })
        .collect()
}

/// Opens a UDP stream the way `iperf_udp_connect` does: a connect datagram, then the
/// server's reply on the connected socket.
fn connect_udp(addr: SocketAddr, spec: &TestSpec, timeout: Duration) -> io::Result<UdpSocket> {
    let bind = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(addr)?;
    stream::udp::configure(&sock, spec)?;
    sock.send(&UDP_CONNECT_MSG)?;
    sock.set_read_timeout(Some(timeout))?;
    let mut reply = [0u8; 64];
    let n = sock.recv(&mut reply)?;
    let reply = &reply[..n];
    if reply != UDP_CONNECT_REPLY && reply != LEGACY_UDP_CONNECT_REPLY {
        return Err(io::Error::other(format!(
            "unexpected {n}-byte answer to the UDP connect datagram"
        )));
    }
    Ok(sock)
}

/// The server's side as iperf3 reported it, and per stream index what it sent (bytes for
/// TCP, datagrams for UDP) for this side's loss accounting.
pub fn peer_side(spec: &TestSpec, peer: &PeerResults) -> (SideReport, Vec<u64>) {
    let udp = spec.protocol == Protocol::Udp;
    let count = spec.stream_count() as usize;
    let mut sent = vec![0u64; count];
    let mut side = SideReport::default();
    let mut jitters = Vec::new();
    for s in &peer.streams {
        let role = if spec.client_sends_on(s.index as u32) {
            StreamRole::Receive
        } else {
            StreamRole::Send
        };
        side.duration_s = side.duration_s.max(s.seconds);
        match role {
            StreamRole::Send => {
                side.sent_bytes += s.bytes;
                if let Some(slot) = sent.get_mut(s.index) {
                    *slot = if udp { s.packets } else { s.bytes };
                }
            }
            StreamRole::Receive => {
                side.received_bytes += s.bytes;
                if udp {
                    jitters.push(s.jitter_ms);
                    *side.lost.get_or_insert(0) += s.errors;
                }
            }
        }
        // iperf3 fills retransmits of UDP senders with whatever its TCP counter held.
        if let (Some(r), StreamRole::Send, false) = (s.retransmits, role, udp) {
            let total = side.retransmits.get_or_insert(0);
            *total = total.saturating_add(r);
        }
        if udp {
            *side.packets.get_or_insert(0) += s.packets;
        }
        side.streams.push(StreamStats {
            id: s.index as u32,
            role,
            bytes: s.bytes,
            bits_per_second: rate_bps(s.bytes, s.seconds),
            cpu_core: None,
            placement: None,
            tcp: (!udp && role == StreamRole::Send).then(|| TcpStats {
                retransmits: s.retransmits.unwrap_or(0),
                ..TcpStats::default()
            }),
            udp: udp.then_some(UdpStats {
                packets: s.packets,
                lost: if role == StreamRole::Receive {
                    s.errors
                } else {
                    0
                },
                duplicates: 0,
                out_of_order: 0,
                jitter_ms: s.jitter_ms,
                socket_drops: None,
                datagrams_per_packet: None,
            }),
            zerocopy: None,
        });
    }
    if side.duration_s == 0.0 {
        side.duration_s = spec.duration_s;
    }
    if !jitters.is_empty() {
        side.jitter_ms = Some(jitters.iter().sum::<f64>() / jitters.len() as f64);
    }
    side.bytes = side.sent_bytes + side.received_bytes;
    side.bits_per_second = rate_bps(side.bytes, side.duration_s);
    let window = side.duration_s;
    let [_, user, system] = peer.cpu_util;
    let process_s = (user + system) * window / 100.0;
    side.cpu = CpuReport {
        window_s: window,
        process_user_s: user * window / 100.0,
        process_system_s: system * window / 100.0,
        process_s_per_gb: (side.bytes > 0).then(|| process_s / (side.bytes as f64 / 1e9)),
        ..CpuReport::default()
    };
    side.settings = EffectiveSettings {
        congestion: peer.congestion_used.clone(),
        zerocopy: "unknown".into(),
        ..EffectiveSettings::default()
    };
    (side, sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iperf3::proto::PeerStream;
    use crate::spec::Direction;

    #[test]
    fn peer_side_maps_roles_loss_and_cpu() {
        let mut spec = TestSpec::new(Protocol::Udp);
        spec.direction = Direction::Bidir;
        let stream = |index, bytes, errors, packets| PeerStream {
            index,
            bytes,
            retransmits: None,
            jitter_ms: 0.5,
            errors,
            packets,
            seconds: 2.0,
        };
        let peer = PeerResults {
            cpu_util: [50.0, 10.0, 40.0],
            congestion_used: None,
            streams: vec![stream(0, 1000, 3, 10), stream(1, 2000, 0, 20)],
        };
        let (side, sent) = peer_side(&spec, &peer);
        // Stream 0 is the client's sending stream: the server received on it.
        assert_eq!(side.streams[0].role, StreamRole::Receive);
        assert_eq!((side.received_bytes, side.sent_bytes), (1000, 2000));
        assert_eq!(side.lost, Some(3));
        assert_eq!(sent, [0, 20]);
        assert!((side.cpu.process_system_s - 0.8).abs() < 1e-12);
        assert!((side.duration_s - 2.0).abs() < f64::EPSILON);
    }
}
