//! The client end of a stream test: control exchange, data streams, and the final report.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use crate::clock;
use crate::control::{
    self, ClientMsg, Cookie, DATA_MAGIC, FrameError, MAX_SERVER_FRAME, PROTOCOL_NAME,
    PROTOCOL_VERSION, Preamble, ServerMsg, UDP_MAGIC,
};
use crate::report::{
    FlowDirection, FlowSummary, Interval, SCHEMA_VERSION, SideReport, StreamReport, StreamRole,
    apply_peer_sent,
};
use crate::spec::{Protocol, TestSpec};
use crate::stream::{self, DataSocket, End, RunControl, Schedule, StreamPlan, rate_bps};

/// Why a test could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Resolve {
        /// Host as given.
        host: String,
        /// Resolver error.
        #[source]
        source: io::Error,
    },
    /// No TCP connection to the server.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Server address.
        addr: SocketAddr,
        /// Socket error (refused, unreachable, timed out).
        #[source]
        source: io::Error,
    },
    /// The server refused the test or broke off.
    #[error("server {addr} refused: {message}")]
    Refused {
        /// Server address.
        addr: SocketAddr,
        /// Server's reason.
        message: String,
    },
    /// The control exchange failed.
    #[error("control connection to {addr}: {source}")]
    Control {
        /// Server address.
        addr: SocketAddr,
        /// Frame error.
        #[source]
        source: FrameError,
    },
    /// The server answered something the protocol does not allow here.
    #[error("server {addr} broke the protocol: {message}")]
    Protocol {
        /// Server address.
        addr: SocketAddr,
        /// What was wrong.
        message: String,
    },
    /// A data stream could not be set up.
    #[error("data stream {stream}: {source}")]
    Stream {
        /// Stream index.
        stream: u32,
        /// Socket error.
        #[source]
        source: io::Error,
    },
}

/// Where and how to run a test.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Server host name or address.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Test to run.
    pub spec: TestSpec,
    /// Timeout for connecting and for each protocol phase.
    pub phase_timeout: Duration,
    /// When set during the test, both ends stop early and report what they measured.
    pub interrupt: Option<Arc<AtomicBool>>,
}

impl ClientOptions {
    /// Options for `spec` against `host:port` with a 10 s phase timeout.
    pub fn new(host: impl Into<String>, port: u16, spec: TestSpec) -> Self {
        ClientOptions {
            host: host.into(),
            port,
            spec,
            phase_timeout: Duration::from_secs(10),
            interrupt: None,
        }
    }
}

/// A finished test. `errors` lists streams that ended early; the report still holds what
/// was measured.
#[derive(Debug)]
pub struct TestOutcome {
    /// The report.
    pub report: StreamReport,
    /// Stream failures on either end.
    pub errors: Vec<String>,
}

/// Runs one stream test against a netload server. `on_interval` sees the client's own
/// intervals as they close.
pub fn run_stream_test(
    opts: &ClientOptions,
    on_interval: &mut dyn FnMut(&Interval),
) -> Result<TestOutcome, ClientError> {
    let addr = resolve(&opts.host, opts.port)?;
    let control_conn = TcpStream::connect_timeout(&addr, opts.phase_timeout)
        .map_err(|source| ClientError::Connect { addr, source })?;
    control_conn
        .set_read_timeout(Some(opts.phase_timeout))
        .and_then(|()| control_conn.set_write_timeout(Some(opts.phase_timeout)))
        .map_err(|source| ClientError::Connect { addr, source })?;
    let _ = control_conn.set_nodelay(true);
    let session = Session {
        addr,
        conn: &control_conn,
    };

    session.send(&ClientMsg::Hello {
        protocol: PROTOCOL_NAME.into(),
        version: PROTOCOL_VERSION,
    })?;
    let (cookie, server_version) = match session.recv()? {
        ServerMsg::Welcome {
            version,
            cookie,
            server_version,
            ..
        } if version == PROTOCOL_VERSION => (cookie, server_version),
        other => return Err(session.unexpected("welcome", &other)),
    };
    let spec = &opts.spec;
    session.send(&ClientMsg::Setup { spec: spec.clone() })?;
    match session.recv()? {
        ServerMsg::Accepted => {}
        other => return Err(session.unexpected("accepted", &other)),
    }
    let plans = match spec.protocol {
        Protocol::Tcp => {
            let plans = connect_tcp_streams(addr, spec, cookie, opts.phase_timeout)?;
            match session.recv()? {
                ServerMsg::Ready => {}
                other => return Err(session.unexpected("ready", &other)),
            }
            plans
        }
        Protocol::Udp => connect_udp_streams(&session, spec, cookie, opts.phase_timeout)?,
    };
    let started_unix_s = clock::wall_time() + spec.omit_s;
    session.send(&ClientMsg::Start)?;
    let schedule = Schedule::new(spec, clock::now());
    let control = RunControl::new(plans.len());
    let finished = Arc::new(AtomicBool::new(false));
    let interrupt_watch = opts.interrupt.clone().map(|flag| {
        let conn = control_conn.try_clone();
        let control = Arc::clone(&control);
        let finished = Arc::clone(&finished);
        std::thread::spawn(move || watch_interrupt(&flag, conn.ok().as_ref(), &control, &finished))
    });
    let run = stream::run_side(spec, plans, schedule, &control, on_interval);
    finished.store(true, Ordering::Relaxed);
    // The watcher may be writing Stop: it must be done before Finish goes out.
    let interrupted = interrupt_watch.is_some_and(|h| h.join().unwrap_or(false));
    session.send(&ClientMsg::Finish {
        sent: run.sent.clone(),
    })?;
    control_conn
        .set_read_timeout(Some(opts.phase_timeout + stream::DRAIN_GRACE * 2))
        .map_err(|source| ClientError::Connect { addr, source })?;
    let (server, server_sent, server_errors) = match session.recv()? {
        ServerMsg::Report { side, sent, errors } => (*side, sent, errors),
        other => return Err(session.unexpected("report", &other)),
    };
    Ok(finish_report(
        spec,
        run,
        ServerSide {
            side: server,
            sent: server_sent,
            errors: server_errors,
            version: server_version,
            peer: None,
            warnings: Vec::new(),
        },
        started_unix_s,
        interrupted,
    ))
}

/// What the server contributed to a finished test.
pub(crate) struct ServerSide {
    /// Its side of the report.
    pub side: SideReport,
    /// Per stream id, what it sent (bytes for TCP, datagrams for UDP).
    pub sent: Vec<u64>,
    /// Its stream errors.
    pub errors: Vec<String>,
    /// Its software and version.
    pub version: String,
    /// Set when the server is not netload ([`StreamReport::server_peer`]).
    pub peer: Option<String>,
    /// Warnings that come with that kind of server.
    pub warnings: Vec<String>,
}

/// Joins this side's run and the server's side into the report.
pub(crate) fn finish_report(
    spec: &TestSpec,
    run: stream::SideRun,
    server: ServerSide,
    started_unix_s: f64,
    interrupted: bool,
) -> TestOutcome {
    let mut client = run.report;
    apply_peer_sent(spec, &mut client, &run.received_distinct, &server.sent);
    let errors: Vec<String> = (run.errors.iter().map(|e| format!("client {e}")))
        .chain(server.errors.iter().map(|e| format!("server {e}")))
        .collect();
    let mut warnings = warnings_for(spec, &client, &server.side, &errors);
    warnings.extend(server.warnings);
    if interrupted {
        warnings.push(format!(
            "interrupted: {:.2} s of the {} s planned were measured",
            client.duration_s, spec.duration_s
        ));
    }
    let report = StreamReport {
        schema_version: SCHEMA_VERSION,
        netload_version: format!("{} (server {})", env!("CARGO_PKG_VERSION"), server.version),
        started_unix_s,
        spec: spec.clone(),
        flows: flows(spec, &client, &server.side, &run.sent, &server.sent),
        client,
        server: server.side,
        warnings,
        interrupted,
        server_peer: server.peer,
    };
    TestOutcome { report, errors }
}

/// Polls the interrupt flag while the streams run; on interrupt, tells the server to stop
/// and then stops this side. Returns whether it interrupted.
fn watch_interrupt(
    flag: &AtomicBool,
    conn: Option<&TcpStream>,
    control: &RunControl,
    finished: &AtomicBool,
) -> bool {
    while !finished.load(Ordering::Relaxed) {
        if flag.load(Ordering::Relaxed) {
            if let Some(conn) = conn {
                let _ = control::write_frame(conn, &ClientMsg::Stop);
            }
            control.abort.store(true, Ordering::Relaxed);
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

struct Session<'a> {
    addr: SocketAddr,
    conn: &'a TcpStream,
}

impl Session<'_> {
    fn send(&self, msg: &ClientMsg) -> Result<(), ClientError> {
        control::write_frame(self.conn, msg).map_err(|e| ClientError::Control {
            addr: self.addr,
            source: FrameError::Io(e),
        })
    }

    fn recv(&self) -> Result<ServerMsg, ClientError> {
        control::read_frame(self.conn, MAX_SERVER_FRAME, None).map_err(|source| {
            ClientError::Control {
                addr: self.addr,
                source,
            }
        })
    }

    fn unexpected(&self, wanted: &str, got: &ServerMsg) -> ClientError {
        match got {
            ServerMsg::Error { message } => ClientError::Refused {
                addr: self.addr,
                message: message.clone(),
            },
            other => ClientError::Protocol {
                addr: self.addr,
                message: format!("expected {wanted}, got {other:?}"),
            },
        }
    }
}

pub(crate) fn resolve(host: &str, port: u16) -> Result<SocketAddr, ClientError> {
    let resolve_err = |source| ClientError::Resolve {
        host: host.to_string(),
        source,
    };
    (host, port)
        .to_socket_addrs()
        .map_err(resolve_err)?
        .next()
        .ok_or_else(|| resolve_err(io::Error::new(io::ErrorKind::NotFound, "no address")))
}

/// The client's plan of stream `id`.
pub(crate) fn plan(spec: &TestSpec, id: u32, socket: DataSocket) -> StreamPlan {
    StreamPlan::for_end(spec, End::Client, id, socket)
}

fn connect_tcp_streams(
    addr: SocketAddr,
    spec: &TestSpec,
    cookie: Cookie,
    timeout: Duration,
) -> Result<Vec<StreamPlan>, ClientError> {
    (0..spec.stream_count())
        .map(|id| {
            let preamble = Preamble { cookie, stream: id }.encode(DATA_MAGIC);
            let tcp = connect_tcp_stream(addr, spec, &preamble, timeout)
                .map_err(|source| ClientError::Stream { stream: id, source })?;
            Ok(plan(spec, id, DataSocket::Tcp(Arc::new(tcp))))
        })
        .collect()
}

/// Opens one TCP data stream: socket options that shape the handshake, connect, the bytes
/// that tie the stream to its test, then the options of a connected socket.
pub(crate) fn connect_tcp_stream(
    addr: SocketAddr,
    spec: &TestSpec,
    preamble: &[u8],
    timeout: Duration,
) -> io::Result<TcpStream> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    stream::tcp::pre_connect(&sock, spec)?;
    sock.connect_timeout(&addr.into(), timeout)?;
    let tcp: TcpStream = sock.into();
    io::Write::write_all(&mut &tcp, preamble)?;
    stream::tcp::post_connect(&tcp, spec)?;
    Ok(tcp)
}

/// UDP streams announce themselves with hello datagrams, repeated until the server says
/// Ready on the control connection (a lost hello only costs a retry).
fn connect_udp_streams(
    session: &Session<'_>,
    spec: &TestSpec,
    cookie: Cookie,
    timeout: Duration,
) -> Result<Vec<StreamPlan>, ClientError> {
    let addr = session.addr;
    let mut sockets = Vec::new();
    for id in 0..spec.stream_count() {
        let err = |source| ClientError::Stream { stream: id, source };
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal address");
        let sock = UdpSocket::bind(bind).map_err(err)?;
        sock.connect(addr).map_err(err)?;
        stream::udp::configure(&sock, spec).map_err(err)?;
        sockets.push(sock);
    }
    let give_up = clock::now() + timeout;
    let retry = Duration::from_millis(20);
    loop {
        for (id, sock) in sockets.iter().enumerate() {
            let hello = Preamble {
                cookie,
                stream: id as u32,
            }
            .encode(UDP_MAGIC);
            // A refused send means the server's port is not open; the control phase reports it.
            let _ = sock.send(&hello);
        }
        session
            .conn
            .set_read_timeout(Some(retry))
            .map_err(|source| ClientError::Connect { addr, source })?;
        let mut probe = [0u8; 1];
        let readable = match session.conn.peek(&mut probe) {
            Ok(_) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(source) => return Err(ClientError::Connect { addr, source }),
        };
        session
            .conn
            .set_read_timeout(Some(timeout))
            .map_err(|source| ClientError::Connect { addr, source })?;
        if readable {
            match session.recv()? {
                ServerMsg::Ready => break,
                other => return Err(session.unexpected("ready", &other)),
            }
        }
        if clock::now() > give_up {
            return Err(ClientError::Protocol {
                addr,
                message: format!(
                    "UDP streams not acknowledged within {} s (is UDP to port {} blocked?)",
                    timeout.as_secs(),
                    addr.port()
                ),
            });
        }
    }
    Ok(sockets
        .into_iter()
        .enumerate()
        .map(|(id, s)| plan(spec, id as u32, DataSocket::Udp(Arc::new(s))))
        .collect())
}

/// One summary per direction, with the receiver's count as the authoritative figure.
pub fn flows(
    spec: &TestSpec,
    client: &SideReport,
    server: &SideReport,
    client_sent: &[u64],
    server_sent: &[u64],
) -> Vec<FlowSummary> {
    FlowDirection::of(spec.direction)
        .iter()
        .map(|&direction| {
            let (sender, receiver, sent_counts) = match direction {
                FlowDirection::ClientToServer => (client, server, client_sent),
                FlowDirection::ServerToClient => (server, client, server_sent),
            };
            let sender_bytes = sender.sent_bytes;
            let receiver_bytes = receiver.received_bytes;
            let udp = spec.protocol == Protocol::Udp;
            let packets_sent: u64 = sender
                .streams
                .iter()
                .filter(|s| s.role == StreamRole::Send)
                .filter_map(|s| sent_counts.get(s.id as usize))
                .sum();
            let lost = receiver.lost.unwrap_or(0);
            FlowSummary {
                direction,
                sender_bytes,
                receiver_bytes,
                sender_bits_per_second: rate_bps(sender_bytes, sender.duration_s),
                receiver_bits_per_second: rate_bps(receiver_bytes, receiver.duration_s),
                retransmits: sender.retransmits,
                packets_sent: udp.then_some(packets_sent),
                lost: udp.then_some(lost),
                loss_percent: udp.then(|| {
                    if packets_sent == 0 {
                        0.0
                    } else {
                        lost as f64 * 100.0 / packets_sent as f64
                    }
                }),
                jitter_ms: if udp { receiver.jitter_ms } else { None },
            }
        })
        .collect()
}

fn warnings_for(
    spec: &TestSpec,
    client: &SideReport,
    server: &SideReport,
    errors: &[String],
) -> Vec<String> {
    let mut out = errors.to_vec();
    for (name, side) in [("client", client), ("server", server)] {
        for s in &side.streams {
            if let Some(z) = s.zerocopy
                && z.copied > 0
            {
                out.push(format!(
                    "{name} stream {}: the kernel copied {} of {} MSG_ZEROCOPY sends (it always does when the receiver is on this host, e.g. loopback or veth)",
                    s.id, z.copied, z.completed
                ));
            }
        }
    }
    if spec.rx_discard {
        out.push("receivers discarded payload in the kernel (MSG_TRUNC): no copy to user space, unlike iperf3's default".into());
    }
    if let Some(window) = spec.window {
        for (name, side) in [("client", client), ("server", server)] {
            let got = side.settings.receive_buffer.unwrap_or(0);
            if got < window {
                out.push(format!(
                    "{name}: requested a {window}-byte window, the kernel granted {got} (raise net.core.rmem_max/wmem_max)"
                ));
            }
        }
    }
    out
}
