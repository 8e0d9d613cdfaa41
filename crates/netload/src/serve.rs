//! What netload's own stream server ([`crate::server`]) and its iperf3 server
//! ([`crate::iperf3::server`]) share: their settings, the count of tests running across both
//! protocols, bounded accepting, phase-timed reads, and setting up the server's data sockets.
//!
//! It sits below both servers so neither has to import the other for these.

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use crate::clock;
use crate::control;
use crate::spec::{Limits, TestSpec};
use crate::stream::{self, DataSocket, End, StreamPlan};

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (TCP and UDP).
    pub bind: SocketAddr,
    /// What tests may ask for.
    pub limits: Limits,
    /// Tests running at once.
    pub max_sessions: usize,
    /// Connections in their first phase (hello or preamble) at once.
    pub max_pending: usize,
    /// Timeout of each protocol phase (hello, setup, stream connection, start).
    pub phase_timeout: Duration,
    /// Exit after the first test that got past setup.
    pub once: bool,
    /// Also serve iperf3 3.x clients on this port (TCP and UDP), same address.
    pub iperf3_port: Option<u16>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), control::DEFAULT_PORT),
            limits: Limits::default(),
            max_sessions: 8,
            max_pending: 64,
            phase_timeout: Duration::from_secs(10),
            once: false,
            iperf3_port: None,
        }
    }
}

/// Tests running at once, of either protocol: both servers take their slots from one count,
/// so `max_sessions` bounds them together.
#[derive(Debug, Default)]
pub(crate) struct SessionSlots(AtomicUsize);

impl SessionSlots {
    /// Takes a slot unless `max` are taken already.
    pub(crate) fn try_take(&self, max: usize) -> bool {
        if self.0.fetch_add(1, Ordering::AcqRel) >= max {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back a slot taken with [`SessionSlots::try_take`].
    pub(crate) fn release(&self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Frees a pending-connection slot once the first phase is over.
pub(crate) struct PendingSlot<'a>(pub(crate) Option<&'a AtomicUsize>);

impl PendingSlot<'_> {
    /// Gives the slot back (once).
    pub(crate) fn release(&mut self) {
        if let Some(p) = self.0.take() {
            p.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for PendingSlot<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

/// Reads from a socket with a deadline for the whole phase, not per `read` call, so a peer
/// dribbling one byte at a time cannot hold a thread beyond the phase timeout.
pub(crate) struct PhaseReader<'a> {
    socket: &'a TcpStream,
    deadline: std::time::Instant,
}

impl<'a> PhaseReader<'a> {
    /// A reader whose reads all end by `timeout` from now.
    pub(crate) fn new(socket: &'a TcpStream, timeout: Duration) -> Self {
        PhaseReader {
            socket,
            deadline: clock::now() + timeout,
        }
    }
}

impl Read for PhaseReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(clock::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "phase timed out"));
        }
        self.socket.set_read_timeout(Some(left))?;
        let mut s = self.socket;
        s.read(buf)
    }
}

/// A UDP socket bound to `addr` with `SO_REUSEPORT`, so connected per-stream sockets can
/// share the port of the one that receives hellos.
pub(crate) fn reuse_port_udp(addr: SocketAddr) -> io::Result<Socket> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM,
        Some(SockProtocol::UDP),
    )?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// A TCP listener on `addr` and a UDP socket on the same port number (`SO_REUSEPORT`, so
/// sockets connected to one client can share the port), read with a 100 ms timeout so a
/// loop over it sees its shutdown flag.
pub(crate) fn bind_tcp_and_udp(
    addr: SocketAddr,
    backlog: i32,
) -> io::Result<(TcpListener, UdpSocket)> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(SockProtocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    let listener: TcpListener = sock.into();
    let udp: UdpSocket = reuse_port_udp(listener.local_addr()?)?.into();
    udp.set_read_timeout(Some(Duration::from_millis(100)))?;
    Ok((listener, udp))
}

/// Waits up to 100 ms for a connection, so the caller's loop sees its shutdown flag
/// promptly. `Ok(None)` when none came or accepting failed (logged, after a short pause so
/// a persistent failure such as EMFILE does not spin); `Err` when the listener is unusable.
pub(crate) fn poll_accept(
    listener: &TcpListener,
    who: &str,
) -> io::Result<Option<(TcpStream, SocketAddr)>> {
    let mut fds = [nix::poll::PollFd::new(
        listener.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)) {
        Ok(0) | Err(nix::errno::Errno::EINTR) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.into()),
    }
    match listener.accept() {
        Ok(c) => Ok(Some(c)),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(None),
        Err(e) => {
            eprintln!("{who}: accept failed: {e}");
            thread::sleep(Duration::from_millis(10));
            Ok(None)
        }
    }
}

/// A UDP data socket on the server's port, connected to the client's stream socket `peer`
/// (a connected socket takes that peer's datagrams from the shared port) and configured.
pub(crate) fn udp_stream_socket(
    local: SocketAddr,
    peer: SocketAddr,
    spec: &TestSpec,
) -> Result<UdpSocket, String> {
    let sock = reuse_port_udp(local).map_err(|e| format!("UDP stream socket: {e}"))?;
    sock.connect(&peer.into())
        .map_err(|e| format!("UDP stream socket: {e}"))?;
    let sock: UdpSocket = sock.into();
    stream::udp::configure(&sock, spec).map_err(|e| e.to_string())?;
    Ok(sock)
}

/// The server's plans for its data sockets in stream order: it receives where the client
/// sends, and the other way round.
pub(crate) fn server_plans(
    spec: &TestSpec,
    sockets: impl IntoIterator<Item = DataSocket>,
) -> Vec<StreamPlan> {
    sockets
        .into_iter()
        .enumerate()
        .map(|(i, socket)| StreamPlan::for_end(spec, End::Server, i as u32, socket))
        .collect()
}
