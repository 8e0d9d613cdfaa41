//! The responder: one thread per TCP connection (`tcp-rr`, `tcp-crr` and CPU sessions),
//! one for UDP, each polling a stop flag between short blocking calls.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::wire::{HELLO_LEN, MAX_UDP_MESSAGE, cpu_hello, parse_hello, parse_udp_request};
use crate::clock;
use crate::cpu::{self, CpuSample};

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
                    let _ = crate::sys::pin_current_thread(c);
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

/// Longest CPU session (a run of `--time` at most a day, plus slack).
const CPU_SESSION_LIMIT: Duration = Duration::from_secs(90_000);

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
