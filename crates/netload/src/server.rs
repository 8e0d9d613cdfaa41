//! `netload server`: accepts control and data connections on one port and runs tests.
//!
//! One thread accepts; each connection gets a short-lived thread that reads its first four
//! bytes to tell a data connection (routed to its session by cookie) from a control
//! connection (a session). A UDP socket on the same port number receives UDP streams'
//! hello datagrams. Hostile input costs a bounded thread for a bounded time: every read
//! has a timeout, frames are capped, concurrent connections and sessions are limited.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::clock;
use crate::control::{
    self, ClientMsg, Cookie, DATA_MAGIC, FrameError, MAX_CLIENT_FRAME, PROTOCOL_NAME,
    PROTOCOL_VERSION, Preamble, ServerMsg, UDP_MAGIC,
};
use crate::report::apply_peer_sent;
pub use crate::serve::ServerConfig;
use crate::serve::{
    PendingSlot, PhaseReader, SessionSlots, bind_tcp_and_udp, poll_accept, server_plans,
    udp_stream_socket,
};
use crate::spec::{Protocol, TestSpec};
use crate::stream::{self, DataSocket, RunControl, Schedule, StreamPlan};

/// A data connection on its way to its session.
#[derive(Debug)]
enum DataConn {
    Tcp { stream: u32, socket: TcpStream },
    UdpHello { stream: u32, peer: SocketAddr },
}

/// Sessions waiting for data connections, by cookie.
#[derive(Default)]
struct Registry {
    sessions: Mutex<HashMap<Cookie, Sender<DataConn>>>,
    /// Tests running, of either protocol (bounded by `max_sessions`).
    slots: Arc<SessionSlots>,
}

impl Registry {
    fn deliver(&self, cookie: Cookie, conn: DataConn) -> bool {
        let sessions = self.sessions.lock().expect("registry lock");
        sessions
            .get(&cookie)
            .is_some_and(|tx| tx.send(conn).is_ok())
    }
}

/// Removes a session from the registry and frees its slot, however the session ends.
struct SessionGuard<'a> {
    registry: &'a Registry,
    cookie: Cookie,
}

impl Drop for SessionGuard<'_> {
    fn drop(&mut self) {
        self.registry
            .sessions
            .lock()
            .expect("registry lock")
            .remove(&self.cookie);
        self.registry.slots.release();
    }
}

/// A bound, not yet running server.
pub struct Server {
    config: ServerConfig,
    listener: TcpListener,
    udp: UdpSocket,
    registry: Arc<Registry>,
    shutdown: Arc<AtomicBool>,
    iperf3: Option<crate::iperf3::server::Listener>,
}

/// A server running on a background thread (tests, `netload bench`).
pub struct ServerHandle {
    /// Address the server listens on.
    pub addr: SocketAddr,
    shutdown: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<io::Result<()>>>,
}

impl ServerHandle {
    /// Stops accepting and waits for the accept loop to end.
    pub fn stop(mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }
}

impl Server {
    /// Binds the TCP listener and the UDP hello socket.
    pub fn bind(config: ServerConfig) -> io::Result<Server> {
        let (listener, udp) = bind_tcp_and_udp(config.bind, 1024)?;
        let iperf3 = config
            .iperf3_port
            .map(|port| {
                crate::iperf3::server::Listener::bind(SocketAddr::new(config.bind.ip(), port))
            })
            .transpose()?;
        Ok(Server {
            config,
            listener,
            udp,
            registry: Arc::default(),
            shutdown: Arc::default(),
            iperf3,
        })
    }

    /// Address of the iperf3 port, when it is served.
    pub fn iperf3_addr(&self) -> Option<SocketAddr> {
        self.iperf3.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Address the server listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A flag that stops the accept loop when set.
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shutdown)
    }

    /// Runs on a background thread.
    pub fn spawn(self) -> io::Result<ServerHandle> {
        let addr = self.local_addr()?;
        let shutdown = self.shutdown_flag();
        let thread = thread::Builder::new()
            .name("netload-server".into())
            .spawn(move || self.run())?;
        Ok(ServerHandle {
            addr,
            shutdown,
            thread: Some(thread),
        })
    }

    /// Accepts connections until the shutdown flag is set (or, with `once`, until the
    /// first test ends).
    pub fn run(mut self) -> io::Result<()> {
        let iperf3_thread = match self.iperf3.take() {
            Some(listener) => {
                let config = self.config.clone();
                let slots = Arc::clone(&self.registry.slots);
                let shutdown = Arc::clone(&self.shutdown);
                Some(
                    thread::Builder::new()
                        .name("iperf3-accept".into())
                        .spawn(move || {
                            if let Err(e) = listener.run(config, slots, shutdown) {
                                eprintln!("netload server: the iperf3 port failed: {e}");
                            }
                        })?,
                )
            }
            None => None,
        };
        let udp = self.udp.try_clone()?;
        let registry = Arc::clone(&self.registry);
        let shutdown = Arc::clone(&self.shutdown);
        let udp_thread = thread::Builder::new()
            .name("udp-hello".into())
            .spawn(move || udp_hello_loop(&udp, &registry, &shutdown))?;
        let pending = Arc::new(AtomicUsize::new(0));
        let local_port = self.listener.local_addr()?.port();
        while !self.shutdown.load(Ordering::Relaxed) {
            let Some((socket, peer)) = poll_accept(&self.listener, "netload server")? else {
                continue;
            };
            if pending.fetch_add(1, Ordering::AcqRel) >= self.config.max_pending {
                pending.fetch_sub(1, Ordering::AcqRel);
                eprintln!("netload server: too many pending connections, dropping {peer}");
                continue;
            }
            let ctx = ConnContext {
                config: self.config.clone(),
                registry: Arc::clone(&self.registry),
                pending: Arc::clone(&pending),
                shutdown: Arc::clone(&self.shutdown),
                port: local_port,
            };
            let spawned = thread::Builder::new()
                .name("conn".into())
                .spawn(move || handle_connection(&ctx, socket, peer));
            if let Err(e) = spawned {
                pending.fetch_sub(1, Ordering::AcqRel);
                eprintln!("netload server: cannot spawn a thread for {peer}: {e}");
            }
        }
        let _ = udp_thread.join();
        if let Some(t) = iperf3_thread {
            let _ = t.join();
        }
        Ok(())
    }
}

struct ConnContext {
    config: ServerConfig,
    registry: Arc<Registry>,
    pending: Arc<AtomicUsize>,
    shutdown: Arc<AtomicBool>,
    port: u16,
}

fn handle_connection(ctx: &ConnContext, mut socket: TcpStream, peer: SocketAddr) {
    let mut slot = PendingSlot(Some(&ctx.pending));
    let _ = socket.set_read_timeout(Some(ctx.config.phase_timeout));
    let _ = socket.set_write_timeout(Some(ctx.config.phase_timeout));
    let mut head = [0u8; 4];
    let mut first_phase = PhaseReader::new(&socket, ctx.config.phase_timeout);
    if let Err(e) = first_phase.read_exact(&mut head) {
        eprintln!("netload server: {peer}: nothing readable ({e}), closing");
        return;
    }
    if head == DATA_MAGIC {
        let mut rest = [0u8; Preamble::LEN];
        rest[..4].copy_from_slice(&head);
        if first_phase.read_exact(&mut rest[4..]).is_err() {
            return;
        }
        let Some(pre) = Preamble::decode(&rest, DATA_MAGIC) else {
            return;
        };
        if !ctx.registry.deliver(
            pre.cookie,
            DataConn::Tcp {
                stream: pre.stream,
                socket,
            },
        ) {
            eprintln!("netload server: {peer}: data connection for an unknown test, closing");
        }
        return;
    }
    let result = session(ctx, &mut socket, head, &mut slot);
    match result {
        Ok(started) => {
            if started && ctx.config.once {
                ctx.shutdown.store(true, Ordering::Relaxed);
            }
        }
        Err(SessionError::Peer(msg)) => {
            eprintln!("netload server: {peer}: {msg}");
            let _ = control::write_frame(&socket, &ServerMsg::Error { message: msg });
        }
        Err(SessionError::Frame(e)) => {
            eprintln!("netload server: {peer}: {e}");
            let _ = control::write_frame(
                &socket,
                &ServerMsg::Error {
                    message: e.to_string(),
                },
            );
        }
        Err(SessionError::Failed { message, started }) => {
            eprintln!("netload server: {peer}: {message}");
            let _ = control::write_frame(&socket, &ServerMsg::Error { message });
            if started && ctx.config.once {
                ctx.shutdown.store(true, Ordering::Relaxed);
            }
        }
    }
}

#[derive(Debug)]
enum SessionError {
    /// The peer broke the protocol; tell it why.
    Peer(String),
    /// A frame could not be read.
    Frame(FrameError),
    /// The test could not run to the end.
    Failed { message: String, started: bool },
}

impl From<FrameError> for SessionError {
    fn from(e: FrameError) -> Self {
        SessionError::Frame(e)
    }
}

fn read_client(
    socket: &TcpStream,
    timeout: Duration,
    prefix: Option<[u8; 4]>,
) -> Result<ClientMsg, SessionError> {
    Ok(control::read_frame(
        PhaseReader::new(socket, timeout),
        MAX_CLIENT_FRAME,
        prefix,
    )?)
}

/// Runs one control session; `Ok(true)` when a test was set up (counts for `--once`).
fn session(
    ctx: &ConnContext,
    socket: &mut TcpStream,
    head: [u8; 4],
    slot: &mut PendingSlot<'_>,
) -> Result<bool, SessionError> {
    let phase = ctx.config.phase_timeout;
    match read_client(socket, phase, Some(head))? {
        ClientMsg::Hello { protocol, version } => {
            if protocol != PROTOCOL_NAME {
                return Err(SessionError::Peer(format!("unknown protocol {protocol:?}")));
            }
            if version != PROTOCOL_VERSION {
                return Err(SessionError::Peer(format!(
                    "protocol version {version} not supported (this server speaks {PROTOCOL_VERSION})"
                )));
            }
        }
        other => {
            return Err(SessionError::Peer(format!(
                "expected hello, got {}",
                msg_name(&other)
            )));
        }
    }
    slot.release();
    if !ctx.registry.slots.try_take(ctx.config.max_sessions) {
        return Err(SessionError::Peer(format!(
            "server busy: {} tests already running",
            ctx.config.max_sessions
        )));
    }
    let cookie = Cookie::random();
    let (tx, rx) = mpsc::channel();
    ctx.registry
        .sessions
        .lock()
        .expect("registry lock")
        .insert(cookie, tx);
    let _guard = SessionGuard {
        registry: &ctx.registry,
        cookie,
    };
    control::write_frame(
        &*socket,
        &ServerMsg::Welcome {
            version: PROTOCOL_VERSION,
            cookie,
            limits: ctx.config.limits,
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        },
    )
    .map_err(FrameError::Io)?;
    let spec = match read_client(socket, phase, None)? {
        ClientMsg::Setup { spec } => spec,
        other => {
            return Err(SessionError::Peer(format!(
                "expected setup, got {}",
                msg_name(&other)
            )));
        }
    };
    spec.validate(&ctx.config.limits)
        .map_err(|e| SessionError::Peer(e.to_string()))?;
    control::write_frame(&*socket, &ServerMsg::Accepted).map_err(FrameError::Io)?;
    let failed = |message: String| SessionError::Failed {
        message,
        started: true,
    };
    let local_ip = socket.local_addr().map_err(|e| failed(e.to_string()))?.ip();
    let plans =
        collect_streams(ctx, &spec, &rx, SocketAddr::new(local_ip, ctx.port)).map_err(failed)?;
    control::write_frame(&*socket, &ServerMsg::Ready).map_err(FrameError::Io)?;
    match read_client(socket, phase, None)? {
        ClientMsg::Start => {}
        other => {
            return Err(SessionError::Peer(format!(
                "expected start, got {}",
                msg_name(&other)
            )));
        }
    }
    let schedule = Schedule::new(&spec, clock::now());
    let control = RunControl::new(plans.len());
    // The control connection is watched during the run: a Stop or a vanished client stops
    // the streams at once instead of after their I/O timeouts.
    let watcher = {
        let socket = socket.try_clone().map_err(|e| failed(e.to_string()))?;
        let control = Arc::clone(&control);
        let wait = spec.total_duration() + phase + stream::DRAIN_GRACE * 2;
        thread::Builder::new()
            .name("control-watch".into())
            .spawn(move || watch_control(&socket, wait, &control))
            .map_err(|e| failed(e.to_string()))?
    };
    let run = stream::run_side(&spec, plans, schedule, &control, &mut |_| {});
    let peer_sent = watcher
        .join()
        .unwrap_or_else(|_| Err(SessionError::Peer("control watcher panicked".into())))?;
    let mut side = run.report;
    apply_peer_sent(&spec, &mut side, &run.received_distinct, &peer_sent);
    for e in &run.errors {
        eprintln!("netload server: {e}");
    }
    control::write_frame(
        &*socket,
        &ServerMsg::Report {
            side: Box::new(side),
            sent: run.sent,
            errors: run.errors,
        },
    )
    .map_err(FrameError::Io)?;
    Ok(true)
}

/// Reads the control connection while a test runs: a `Stop` aborts the streams and waits
/// for `Finish`; a closed or broken connection aborts them and ends the session.
fn watch_control(
    socket: &TcpStream,
    wait: Duration,
    control: &RunControl,
) -> Result<Vec<u64>, SessionError> {
    let deadline = clock::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(clock::now());
        let msg = read_client(socket, left, None).inspect_err(|_| {
            control.abort.store(true, Ordering::Relaxed);
        })?;
        match msg {
            ClientMsg::Stop => control.abort.store(true, Ordering::Relaxed),
            ClientMsg::Finish { sent } => return Ok(sent),
            other => {
                control.abort.store(true, Ordering::Relaxed);
                return Err(SessionError::Peer(format!(
                    "expected finish, got {}",
                    msg_name(&other)
                )));
            }
        }
    }
}

fn msg_name(msg: &ClientMsg) -> &'static str {
    match msg {
        ClientMsg::Hello { .. } => "hello",
        ClientMsg::Setup { .. } => "setup",
        ClientMsg::Start => "start",
        ClientMsg::Stop => "stop",
        ClientMsg::Finish { .. } => "finish",
    }
}

/// Waits for every data stream of the test and configures it.
fn collect_streams(
    ctx: &ConnContext,
    spec: &TestSpec,
    rx: &Receiver<DataConn>,
    udp_local: SocketAddr,
) -> Result<Vec<StreamPlan>, String> {
    let count = spec.stream_count();
    let mut slots: Vec<Option<DataSocket>> = vec![None; count as usize];
    let give_up = clock::now() + ctx.config.phase_timeout;
    while slots.iter().any(Option::is_none) {
        let left = give_up.saturating_duration_since(clock::now());
        let conn = match rx.recv_timeout(left) {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                let missing = slots.iter().filter(|s| s.is_none()).count();
                return Err(format!(
                    "{missing} of {count} data streams did not connect within {} s",
                    ctx.config.phase_timeout.as_secs()
                ));
            }
        };
        let (id, socket) = match (conn, spec.protocol) {
            (DataConn::Tcp { stream, socket }, Protocol::Tcp) => {
                stream::tcp::post_connect(&socket, spec).map_err(|e| e.to_string())?;
                (stream, DataSocket::Tcp(Arc::new(socket)))
            }
            (DataConn::UdpHello { stream, peer }, Protocol::Udp) => {
                if slots.get(stream as usize).is_some_and(Option::is_some) {
                    continue; // a repeated hello
                }
                let sock = udp_stream_socket(udp_local, peer, spec)?;
                (stream, DataSocket::Udp(Arc::new(sock)))
            }
            _ => return Err("data connection of the wrong protocol".into()),
        };
        match slots.get_mut(id as usize) {
            Some(slot @ None) => *slot = Some(socket),
            Some(Some(_)) => return Err(format!("stream {id} connected twice")),
            None => return Err(format!("stream {id} does not exist (the test has {count})")),
        }
    }
    Ok(server_plans(
        spec,
        slots.into_iter().map(|s| s.expect("every slot filled")),
    ))
}

fn udp_hello_loop(udp: &UdpSocket, registry: &Registry, shutdown: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !shutdown.load(Ordering::Relaxed) {
        let Ok((n, peer)) = udp.recv_from(&mut buf) else {
            continue;
        };
        if let Some(pre) = Preamble::decode(&buf[..n], UDP_MAGIC) {
            registry.deliver(
                pre.cookie,
                DataConn::UdpHello {
                    stream: pre.stream,
                    peer,
                },
            );
        }
    }
}
