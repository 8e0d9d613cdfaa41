//! The iperf3 side of `netload server --iperf3-port`: iperf3 3.x clients run their tests
//! against netload's stream engines.
//!
//! One thread accepts on the iperf3 port; each connection gets a bounded thread that reads
//! the 37-byte cookie. A cookie of a test waiting for its streams makes the connection a
//! data stream of that test; any other well-formed cookie opens a control session; anything
//! else is logged and closed. UDP streams announce themselves to a UDP socket on the same
//! port number with a 4-byte datagram, matched to the waiting test by client address.
//! Every phase has the server's phase timeout; tests count against `max_sessions`
//! together with netload's own.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::proto::{
    self, COOKIE_SIZE, LEGACY_UDP_CONNECT_MSG, MAX_PARAMS_JSON, MAX_RESULTS_JSON, State,
    UDP_CONNECT_MSG, UDP_CONNECT_REPLY, errno,
};
use crate::clock;
use crate::render;
use crate::report::StreamRole;
use crate::serve::{
    PendingSlot, PhaseReader, ServerConfig, SessionSlots, bind_tcp_and_udp, poll_accept,
    server_plans, udp_stream_socket,
};
use crate::spec::{Protocol, TestSpec};
use crate::stream::{self, DataSocket, RunControl, Schedule, StreamPlan};

/// How long past the client's own duration the server lets a test run before it decides
/// the client's TEST_END is not coming; TEST_END normally ends the streams first.
const END_SLACK: Duration = Duration::from_secs(2);

/// A data stream on its way to its test, with its place in accept order.
enum StreamConn {
    Tcp { order: u64, socket: TcpStream },
    Udp { order: u64, peer: SocketAddr },
}

type Cookie = [u8; COOKIE_SIZE];

/// Tests waiting for their streams: TCP by cookie, UDP by client address.
#[derive(Default)]
struct Waiting {
    tcp: Mutex<HashMap<Cookie, Sender<StreamConn>>>,
    udp: Mutex<Vec<(IpAddr, Cookie, Sender<StreamConn>)>>,
    order: AtomicU64,
}

/// Removes a test from [`Waiting`] and frees its session slot however it ends.
struct WaitGuard<'a> {
    ctx: &'a Ctx,
    cookie: [u8; COOKIE_SIZE],
}

impl Drop for WaitGuard<'_> {
    fn drop(&mut self) {
        let waiting = &self.ctx.waiting;
        waiting
            .tcp
            .lock()
            .expect("waiting lock")
            .remove(&self.cookie);
        waiting
            .udp
            .lock()
            .expect("waiting lock")
            .retain(|(_, c, _)| *c != self.cookie);
        self.ctx.slots.release();
    }
}

struct Ctx {
    config: ServerConfig,
    slots: Arc<SessionSlots>,
    waiting: Waiting,
    pending: AtomicUsize,
    shutdown: Arc<AtomicBool>,
    port: u16,
}

/// The bound iperf3 port: a TCP listener and a UDP socket on the same port number.
pub struct Listener {
    tcp: TcpListener,
    udp: UdpSocket,
}

impl Listener {
    /// Binds `addr` (TCP and UDP).
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let (tcp, udp) = bind_tcp_and_udp(addr, 128)?;
        Ok(Listener { tcp, udp })
    }

    /// Address bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Serves iperf3 clients until `shutdown` is set.
    pub(crate) fn run(
        self,
        config: ServerConfig,
        slots: Arc<SessionSlots>,
        shutdown: Arc<AtomicBool>,
    ) -> io::Result<()> {
        let ctx = Arc::new(Ctx {
            port: self.tcp.local_addr()?.port(),
            config,
            slots,
            waiting: Waiting::default(),
            pending: AtomicUsize::new(0),
            shutdown,
        });
        let udp_thread = {
            let ctx = Arc::clone(&ctx);
            let udp = self.udp;
            thread::Builder::new()
                .name("iperf3-udp".into())
                .spawn(move || udp_connect_loop(&udp, &ctx))?
        };
        while !ctx.shutdown.load(Ordering::Relaxed) {
            let Some((socket, peer)) = poll_accept(&self.tcp, "netload server: iperf3")? else {
                continue;
            };
            let order = ctx.waiting.order.fetch_add(1, Ordering::Relaxed);
            if ctx.pending.fetch_add(1, Ordering::AcqRel) >= ctx.config.max_pending {
                ctx.pending.fetch_sub(1, Ordering::AcqRel);
                eprintln!("netload server: iperf3: too many pending connections, dropping {peer}");
                continue;
            }
            let conn_ctx = Arc::clone(&ctx);
            let spawned = thread::Builder::new()
                .name("iperf3-conn".into())
                .spawn(move || handle_connection(&conn_ctx, socket, peer, order));
            if let Err(e) = spawned {
                ctx.pending.fetch_sub(1, Ordering::AcqRel);
                eprintln!("netload server: iperf3: cannot spawn a thread for {peer}: {e}");
            }
        }
        let _ = udp_thread.join();
        Ok(())
    }
}

fn handle_connection(ctx: &Ctx, mut socket: TcpStream, peer: SocketAddr, order: u64) {
    let mut slot = PendingSlot(Some(&ctx.pending));
    let phase = ctx.config.phase_timeout;
    let _ = socket.set_write_timeout(Some(phase));
    let mut cookie = [0u8; COOKIE_SIZE];
    if let Err(e) = PhaseReader::new(&socket, phase).read_exact(&mut cookie) {
        eprintln!("netload server: iperf3 {peer}: no cookie ({e}), closing");
        return;
    }
    if !proto::is_cookie(&cookie) {
        eprintln!(
            "netload server: iperf3 {peer}: not an iperf3 client (malformed cookie), closing"
        );
        return;
    }
    let waiting = ctx
        .waiting
        .tcp
        .lock()
        .expect("waiting lock")
        .get(&cookie)
        .cloned();
    if let Some(tx) = waiting {
        let _ = tx.send(StreamConn::Tcp { order, socket });
        return;
    }
    slot.release();
    if !ctx.slots.try_take(ctx.config.max_sessions) {
        eprintln!(
            "netload server: iperf3 {peer}: busy ({} tests running), access denied",
            ctx.config.max_sessions
        );
        let _ = socket.write_all(&[State::AccessDenied.byte()]);
        return;
    }
    let _ = socket.set_nodelay(true);
    let (tx, rx) = mpsc::channel();
    ctx.waiting
        .tcp
        .lock()
        .expect("waiting lock")
        .insert(cookie, tx.clone());
    let result = {
        let _guard = WaitGuard { ctx, cookie };
        session(ctx, &mut socket, peer, (cookie, &tx), &rx)
    };
    // The slot is free before the client hears the outcome, so it may start another test.
    match result {
        Ok(line) => {
            eprintln!("netload server: iperf3 {peer}: {line}");
            // `--once` counts iperf3 tests too.
            if ctx.config.once {
                ctx.shutdown.store(true, Ordering::Relaxed);
            }
        }
        Err(Failure { code, message }) => {
            eprintln!("netload server: iperf3 {peer}: {message}");
            if let Some(code) = code {
                let _ = socket.write_all(&proto::server_error(code, 0));
            }
        }
    }
}

/// Why a session ended early; `code` is sent to the client when the protocol still allows.
struct Failure {
    code: Option<i32>,
    message: String,
}

fn fail(code: i32, message: impl Into<String>) -> Failure {
    Failure {
        code: Some(code),
        message: message.into(),
    }
}

/// The client is gone: nothing can be sent.
fn gone(message: impl Into<String>) -> Failure {
    Failure {
        code: None,
        message: message.into(),
    }
}

fn send_state(socket: &TcpStream, state: State) -> Result<(), Failure> {
    let mut s = socket;
    s.write_all(&[state.byte()])
        .map_err(|e| gone(format!("cannot send {state:?}: {e}")))
}

fn send_json(socket: &TcpStream, value: &Value) -> Result<(), Failure> {
    let mut s = socket;
    s.write_all(&proto::encode_json(value))
        .map_err(|e| gone(format!("cannot send results: {e}")))
}

/// Runs one iperf3 test; returns the log line of its outcome.
fn session(
    ctx: &Ctx,
    socket: &mut TcpStream,
    peer: SocketAddr,
    (cookie, tx): ([u8; COOKIE_SIZE], &Sender<StreamConn>),
    rx: &Receiver<StreamConn>,
) -> Result<String, Failure> {
    let phase = ctx.config.phase_timeout;
    send_state(socket, State::ParamExchange)?;
    let params = proto::read_json(PhaseReader::new(socket, phase), MAX_PARAMS_JSON)
        .map_err(|e| fail(errno::IERECVPARAMS, format!("parameters: {e}")))?;
    let spec = proto::spec_from_params(&params, &ctx.config.limits).map_err(|r| {
        fail(
            r.code,
            format!(
                "refused: {} (iperf3 error {}: {})",
                r.message,
                r.code,
                proto::strerror(r.code)
            ),
        )
    })?;
    if spec.protocol == Protocol::Udp {
        ctx.waiting
            .udp
            .lock()
            .expect("waiting lock")
            .push((peer.ip(), cookie, tx.clone()));
    }
    send_state(socket, State::CreateStreams)?;
    let local_ip = socket
        .local_addr()
        .map_err(|e| fail(errno::IEINITTEST, e.to_string()))?
        .ip();
    let plans = collect_streams(ctx, &spec, rx, socket, SocketAddr::new(local_ip, ctx.port))
        .map_err(|m| fail(errno::IESTREAMACCEPT, m))?;
    send_state(socket, State::TestStart)?;
    send_state(socket, State::TestRunning)?;
    let mut run_spec = spec.clone();
    run_spec.duration_s += END_SLACK.as_secs_f64();
    let schedule = Schedule::new(&run_spec, clock::now());
    let control = RunControl::new(plans.len());
    let sockets: Vec<(DataSocket, StreamRole)> =
        plans.iter().map(|p| (p.socket.clone(), p.role)).collect();
    let watcher = {
        let socket = socket
            .try_clone()
            .map_err(|e| fail(errno::IEINITTEST, e.to_string()))?;
        let control = Arc::clone(&control);
        let wait = run_spec.total_duration() + phase;
        thread::Builder::new()
            .name("iperf3-watch".into())
            .spawn(move || watch_for_end(&socket, wait, &control, &sockets))
            .map_err(|e| fail(errno::IEINITTEST, e.to_string()))?
    };
    let run = stream::run_side(&run_spec, plans, schedule, &control, &mut |_| {});
    watcher
        .join()
        .unwrap_or_else(|_| Err(gone("control watcher panicked")))?;
    for e in &run.errors {
        eprintln!("netload server: iperf3 {peer}: {e}");
    }
    send_state(socket, State::ExchangeResults)?;
    let theirs = proto::read_json(PhaseReader::new(socket, phase), MAX_RESULTS_JSON)
        .map_err(|e| fail(errno::IERECVRESULTS, format!("client results: {e}")))?;
    let theirs = proto::parse_results(&theirs)
        .map_err(|e| fail(errno::IERECVRESULTS, format!("client results: {e}")))?;
    let side = run.report;
    let congestion = side.settings.congestion.clone();
    send_json(
        socket,
        &proto::results_json(
            &spec,
            &side,
            congestion
                .as_deref()
                .filter(|_| spec.protocol == Protocol::Tcp),
        ),
    )?;
    send_state(socket, State::DisplayResults)?;
    let mut done = [0u8; 1];
    match PhaseReader::new(socket, phase).read_exact(&mut done) {
        Ok(()) if State::from_byte(done[0]) == Some(State::IperfDone) => {}
        Ok(()) => eprintln!(
            "netload server: iperf3 {peer}: expected IPERF_DONE, got {}",
            done[0]
        ),
        Err(e) => eprintln!("netload server: iperf3 {peer}: no IPERF_DONE ({e})"),
    }
    let client_sent: u64 = theirs.streams.iter().map(|s| s.bytes).sum();
    Ok(format!(
        "{} {:?} x{}: sent {} received {} in {:.2} s ({}); the client reported {} on its side",
        spec.protocol,
        spec.direction,
        spec.parallel,
        render::bytes(side.sent_bytes),
        render::bytes(side.received_bytes),
        side.duration_s,
        render::rate(side.bits_per_second),
        render::bytes(client_sent),
    ))
}

/// Reads the control connection while the streams run. TEST_END (the client's timer ran
/// out) stops the streams at once: iperf3 clients stop reading and writing there, so
/// waiting for data sockets to drain would only wait for their timeouts.
fn watch_for_end(
    socket: &TcpStream,
    wait: Duration,
    control: &RunControl,
    sockets: &[(DataSocket, StreamRole)],
) -> Result<(), Failure> {
    let mut state = [0u8; 1];
    let read = PhaseReader::new(socket, wait).read_exact(&mut state);
    super::stop_streams(control, sockets);
    match read.map(|()| State::from_byte(state[0])) {
        Ok(Some(State::TestEnd)) => Ok(()),
        Ok(Some(State::ClientTerminate)) => Err(gone("the client terminated the test")),
        Ok(_) => Err(fail(
            errno::IEMESSAGE,
            format!("unexpected control message {} during the test", state[0]),
        )),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(gone(
            "the client closed the control connection during the test",
        )),
        Err(e) => Err(gone(format!("control connection during the test: {e}"))),
    }
}

/// Waits for every data stream of the test, in the order the client opened them.
fn collect_streams(
    ctx: &Ctx,
    spec: &TestSpec,
    rx: &Receiver<StreamConn>,
    control: &TcpStream,
    udp_local: SocketAddr,
) -> Result<Vec<StreamPlan>, String> {
    let count = spec.stream_count() as usize;
    let mut got: Vec<(u64, DataSocket)> = Vec::with_capacity(count);
    let give_up = clock::now() + ctx.config.phase_timeout;
    while got.len() < count {
        let left = give_up.saturating_duration_since(clock::now());
        let conn = match rx.recv_timeout(left.min(CONTROL_CHECK)) {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) if !left.is_zero() => {
                if control_closed(control) {
                    return Err(
                        "the client closed the control connection while opening streams".into(),
                    );
                }
                continue;
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                return Err(format!(
                    "{} of {count} data streams did not connect within {} s",
                    count - got.len(),
                    ctx.config.phase_timeout.as_secs()
                ));
            }
        };
        match (conn, spec.protocol) {
            (StreamConn::Tcp { order, socket }, Protocol::Tcp) => {
                stream::tcp::post_connect(&socket, spec).map_err(|e| e.to_string())?;
                got.push((order, DataSocket::Tcp(Arc::new(socket))));
            }
            (StreamConn::Udp { order, peer }, Protocol::Udp) => {
                let sock = udp_stream_socket(udp_local, peer, spec)?;
                sock.send(&UDP_CONNECT_REPLY)
                    .map_err(|e| format!("UDP connect reply: {e}"))?;
                got.push((order, DataSocket::Udp(Arc::new(sock))));
            }
            _ => return Err("a data stream of the wrong protocol".into()),
        }
    }
    // iperf3 clients open streams one after the other; accept order is creation order,
    // which decides roles in --bidir and the stream ids both ends report.
    got.sort_by_key(|(order, _)| *order);
    Ok(server_plans(
        spec,
        got.into_iter().map(|(_, socket)| socket),
    ))
}

/// How often a test waiting for its streams checks that its client is still there.
const CONTROL_CHECK: Duration = Duration::from_millis(100);

/// Whether the peer closed the control connection (nothing may arrive on it in this phase).
fn control_closed(control: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    if control.set_nonblocking(true).is_err() {
        return false;
    }
    let closed = matches!(control.peek(&mut probe), Ok(0))
        || matches!(control.peek(&mut probe), Err(e) if e.kind() != io::ErrorKind::WouldBlock);
    let _ = control.set_nonblocking(false);
    closed
}

/// Hands UDP connect datagrams to the test waiting for UDP streams from that address.
fn udp_connect_loop(udp: &UdpSocket, ctx: &Ctx) {
    let mut buf = [0u8; 64];
    while !ctx.shutdown.load(Ordering::Relaxed) {
        let Ok((n, peer)) = udp.recv_from(&mut buf) else {
            continue;
        };
        let msg = &buf[..n];
        if msg != UDP_CONNECT_MSG && msg != LEGACY_UDP_CONNECT_MSG {
            eprintln!("netload server: iperf3: ignoring a {n}-byte datagram from {peer}");
            continue;
        }
        let order = ctx.waiting.order.fetch_add(1, Ordering::Relaxed);
        let delivered = ctx
            .waiting
            .udp
            .lock()
            .expect("waiting lock")
            .iter()
            .find(|(ip, _, _)| *ip == peer.ip())
            .is_some_and(|(_, _, tx)| tx.send(StreamConn::Udp { order, peer }).is_ok());
        if !delivered {
            eprintln!("netload server: iperf3: UDP connect from {peer} matches no test, ignored");
        }
    }
}
