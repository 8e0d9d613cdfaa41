//! Loopback tests of the HTTP server and client: end to end, per-replica counting behind
//! one address (`SO_REUSEPORT`), open loop against a stalling server (coordinated
//! omission), and hostile or broken peers. Only 127.0.0.1; every test is bounded in time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use netload::clock;
use netload::http::client::{execute, render_table};
use netload::http::server::{HttpServer, ServerConfig};
use netload::http::{ErrorKind, HttpReport, HttpSpec};

fn spec(urls: &[String]) -> HttpSpec {
    HttpSpec {
        urls: urls.to_vec(),
        concurrency: 1,
        requests: Some(10),
        duration_s: None,
        rate: None,
        new_connection: false,
        close: netload::spec::CloseBy::Server,
        timeout_s: 2.0,
        threads: 2,
    }
}

fn server(replica: &str, body: u64) -> HttpServer {
    let mut c = ServerConfig::new(replica);
    c.body_size = body;
    c.threads = 1;
    HttpServer::bind("127.0.0.1:0".parse().unwrap(), c).unwrap()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

fn errors(r: &HttpReport, k: ErrorKind) -> u64 {
    r.errors.get(&k).map_or(0, |e| e.count)
}

/// A fake peer: every accepted connection is handed to `behave` on its own thread.
/// Stops accepting when dropped; `behave` must bound its own time.
struct FakePeer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
}

impl FakePeer {
    fn start(behave: fn(TcpStream, u64)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), accepted.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let i = n.fetch_add(1, Ordering::SeqCst);
                        std::thread::spawn(move || behave(stream, i));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        FakePeer {
            addr,
            stop,
            accepted,
        }
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads one request head (bounded: 64 KiB or 5 s); false on EOF or error.
fn read_head(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while head.len() < 65_536 {
        match s.read(&mut b) {
            Ok(1) => {
                head.push(b[0]);
                if head.ends_with(b"\r\n\r\n") {
                    return true;
                }
            }
            _ => return false,
        }
    }
    false
}

#[test]
fn http_loopback_keepalive_counts_bytes_and_latency() {
    let srv = server("e2e", 1 << 20);
    let mut s = spec(&[url(srv.local_addr(), "/")]);
    s.requests = Some(40);
    s.concurrency = 4;
    let r = execute(&s).unwrap();
    assert_eq!(r.totals.ok, 40, "{r:#?}");
    assert_eq!(r.totals.errors, 0);
    assert_eq!(r.totals.body_bytes, 40 << 20);
    assert!(r.totals.connections <= 4 && r.totals.connections >= 1);
    assert_eq!(r.totals.ttfb.count, 40);
    assert!(r.totals.total.p50_us >= r.totals.ttfb.p50_us);
    assert!(r.totals.goodput_bits_per_second > 0.0);
    assert_eq!(r.replicas.len(), 1);
    assert_eq!(r.replicas[0].replica, "e2e");
    assert!((r.replicas[0].share - 1.0).abs() < 1e-9);
    assert_eq!(r.replica_fairness, Some(1.0));
    assert!(r.cpu.node.cores > 0);
    // The JSON document round-trips and is versioned.
    let json = serde_json::to_string(&r).unwrap();
    let back: HttpReport = serde_json::from_str(&json).unwrap();
    assert_eq!(back.schema_version, 1);
    assert!(render_table(&r).contains("ttfb"));
    assert_eq!(srv.stats().requests.load(Ordering::Relaxed), 40);
}

#[test]
fn http_loopback_new_connection_and_bytes_path() {
    let srv = server("nc", 10);
    let mut s = spec(&[url(srv.local_addr(), "/bytes/12345")]);
    s.requests = Some(20);
    s.new_connection = true;
    let r = execute(&s).unwrap();
    assert_eq!(r.totals.ok, 20);
    assert_eq!(r.totals.connections, 20);
    assert_eq!(r.totals.connect.count, 20);
    assert_eq!(r.totals.body_bytes, 20 * 12_345);
}

#[test]
fn http_loopback_time_bounded_and_open_loop() {
    let srv = server("t", 1000);
    let mut s = spec(&[url(srv.local_addr(), "/")]);
    s.requests = None;
    s.duration_s = Some(0.5);
    s.concurrency = 2;
    let t0 = clock::now();
    let r = execute(&s).unwrap();
    assert!(clock::now() - t0 < Duration::from_secs(3));
    assert!(r.totals.ok > 10);
    assert!(r.totals.duration_s >= 0.45 && r.totals.duration_s < 2.5);

    s.rate = Some(200.0);
    let r = execute(&s).unwrap();
    // 200 req/s for 0.5 s: 100 scheduled, all sent on time on loopback.
    assert!((95..=101).contains(&r.totals.ok), "{}", r.totals.ok);
}

#[test]
fn http_loopback_replicas_behind_one_port_are_counted_separately() {
    use socket2::{Domain, Socket, Type};
    let mut listeners = Vec::new();
    let mut port = 0;
    for _ in 0..3 {
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.set_reuse_port(true).unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        sock.bind(&addr.into()).unwrap();
        sock.listen(128).unwrap();
        let l: TcpListener = sock.into();
        port = l.local_addr().unwrap().port();
        listeners.push(l);
    }
    let servers: Vec<HttpServer> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let mut c = ServerConfig::new(format!("replica-{i}"));
            c.body_size = 100;
            c.threads = 1;
            HttpServer::start(l, c).unwrap()
        })
        .collect();
    let mut s = spec(&[format!("http://127.0.0.1:{port}/")]);
    s.requests = Some(300);
    s.concurrency = 4;
    s.new_connection = true;
    let r = execute(&s).unwrap();
    assert_eq!(r.totals.ok, 300, "{:?}", r.errors);
    assert_eq!(r.replicas.len(), 3, "{:?}", r.replicas);
    let sum: u64 = r.replicas.iter().map(|x| x.requests).sum();
    assert_eq!(sum, 300);
    for (i, rep) in r.replicas.iter().enumerate() {
        assert_eq!(rep.replica, format!("replica-{i}"));
        assert!(rep.requests > 0);
        assert_eq!(rep.ttfb.count, rep.requests);
        // Each server saw exactly the requests attributed to it.
        assert_eq!(
            servers[i].stats().requests.load(Ordering::Relaxed),
            rep.requests
        );
    }
    let j = r.replica_fairness.unwrap();
    assert!(j > 1.0 / 3.0 && j <= 1.0);
}

/// Answers keep-alive requests at once, except request number 10 of the connection,
/// which it holds for 500 ms.
fn stall_once(mut s: TcpStream, _: u64) {
    let mut n = 0;
    while n < 100_000 && read_head(&mut s) {
        n += 1;
        if n == 10 {
            std::thread::sleep(Duration::from_millis(500));
        }
        let resp = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-netload-replica: stall\r\n\r\nok";
        if s.write_all(resp).is_err() {
            return;
        }
    }
}

#[test]
fn http_open_loop_shows_a_stall_in_the_tail() {
    let peer = FakePeer::start(stall_once);
    let mut s = spec(&[url(peer.addr, "/")]);
    s.requests = None;
    s.duration_s = Some(1.0);
    s.rate = Some(200.0);
    let open = execute(&s).unwrap();
    // ~100 requests were due during the 500 ms stall; measured from their intended send
    // times, they wait up to 500 ms: far more than 10% of the samples are slow.
    assert!(open.totals.ok >= 190, "{}", open.totals.ok);
    assert!(
        open.totals.ttfb.p90_us > 100_000.0,
        "{:?}",
        open.totals.ttfb
    );
    assert!(open.totals.ttfb.max_us > 400_000.0);
    // The backlog behind the stall is the client's send lag, reported apart.
    let lag = open
        .totals
        .send_lag
        .expect("open loop reports its send lag");
    assert_eq!(lag.count, open.totals.requests);
    assert!(lag.max_us > 300_000.0, "{lag:?}");

    // The same stall in closed loop hides behind one slow sample.
    let mut s = s.clone();
    s.rate = None;
    s.requests = Some(200);
    s.duration_s = None;
    let closed = execute(&s).unwrap();
    assert!(closed.totals.ttfb.max_us > 400_000.0);
    assert!(
        closed.totals.ttfb.p90_us < 50_000.0,
        "{:?}",
        closed.totals.ttfb
    );
    assert!(closed.totals.send_lag.is_none());
}

fn run_against(behave: fn(TcpStream, u64), requests: u64, timeout_s: f64) -> HttpReport {
    let peer = FakePeer::start(behave);
    let mut s = spec(&[url(peer.addr, "/")]);
    s.requests = Some(requests);
    s.timeout_s = timeout_s;
    let t0 = clock::now();
    let r = execute(&s).unwrap();
    let bound = Duration::from_secs_f64(timeout_s * requests as f64 + 2.0);
    assert!(
        clock::now() - t0 < bound,
        "run took longer than its timeouts"
    );
    assert_eq!(r.totals.requests, requests);
    assert!(peer.accepted.load(Ordering::SeqCst) >= 1);
    r
}

#[test]
fn http_bad_peer_not_http() {
    fn garbage(mut s: TcpStream, _: u64) {
        let _ = read_head(&mut s);
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\nthis is not http\r\n\r\n");
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = run_against(garbage, 3, 1.0);
    assert_eq!(errors(&r, ErrorKind::NotHttp), 3, "{:?}", r.errors);
}

#[test]
fn http_bad_peer_closes_before_answering() {
    fn close(mut s: TcpStream, _: u64) {
        let _ = read_head(&mut s);
    }
    let r = run_against(close, 3, 1.0);
    assert_eq!(errors(&r, ErrorKind::Reset), 3, "{:?}", r.errors);
}

#[test]
fn http_bad_peer_stalls_before_headers() {
    fn stall(mut s: TcpStream, _: u64) {
        let _ = read_head(&mut s);
        std::thread::sleep(Duration::from_secs(3));
    }
    let r = run_against(stall, 2, 0.3);
    assert_eq!(errors(&r, ErrorKind::Timeout), 2, "{:?}", r.errors);
}

#[test]
fn http_bad_peer_stalls_mid_body() {
    fn stall(mut s: TcpStream, _: u64) {
        let _ = read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789");
        std::thread::sleep(Duration::from_secs(3));
    }
    let r = run_against(stall, 2, 0.3);
    assert_eq!(errors(&r, ErrorKind::Timeout), 2, "{:?}", r.errors);
}

#[test]
fn http_bad_peer_closes_mid_body() {
    fn short(mut s: TcpStream, _: u64) {
        let _ = read_head(&mut s);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789");
    }
    let r = run_against(short, 3, 1.0);
    assert_eq!(errors(&r, ErrorKind::ShortBody), 3, "{:?}", r.errors);
}

#[test]
fn http_bad_peer_oversized_response_head() {
    fn huge(mut s: TcpStream, _: u64) {
        let _ = read_head(&mut s);
        let mut resp = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        resp.extend(std::iter::repeat_n(b'a', 1 << 20));
        resp.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
        let _ = s.write_all(&resp);
    }
    let r = run_against(huge, 2, 1.0);
    assert_eq!(errors(&r, ErrorKind::NotHttp), 2, "{:?}", r.errors);
}

#[test]
fn http_unreachable_replica_among_healthy_ones_is_counted() {
    let a = server("a", 100);
    let b = server("b", 100);
    // A port with nothing listening: bind, note the port, close.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let urls = [
        url(a.local_addr(), "/"),
        url(dead, "/"),
        url(b.local_addr(), "/"),
    ];
    let mut s = spec(&urls);
    s.requests = Some(30);
    s.concurrency = 3;
    let r = execute(&s).unwrap();
    assert_eq!(r.totals.ok, 20, "{:?}", r.errors);
    assert_eq!(errors(&r, ErrorKind::Refused), 10);
    assert_eq!(r.replicas.len(), 2);
    assert_eq!(r.replicas[0].requests, 10);
    assert_eq!(r.replica_fairness, Some(1.0));
}

#[test]
fn http_non_2xx_is_counted_and_keeps_the_connection() {
    let srv = server("x", 100);
    let mut c = spec(&[url(srv.local_addr(), "/bytes/99999999999")]);
    c.requests = Some(5);
    let r = execute(&c).unwrap();
    assert_eq!(errors(&r, ErrorKind::Non2xx), 5);
    assert_eq!(r.totals.connections, 1);
}

#[test]
fn http_server_rejects_oversized_headers_and_keeps_serving() {
    let srv = server("big", 10);
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut req = b"GET / HTTP/1.1\r\nhost: x\r\nx-big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 64 << 10));
    req.extend_from_slice(b"\r\n\r\n");
    let _ = s.write_all(&req);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    let r = execute(&spec(&[url(srv.local_addr(), "/")])).unwrap();
    assert_eq!(r.totals.ok, 10);
}

#[test]
fn http_server_drops_slow_header_senders() {
    let mut c = ServerConfig::new("slow");
    c.header_timeout = Duration::from_millis(200);
    c.threads = 1;
    let srv = HttpServer::bind("127.0.0.1:0".parse().unwrap(), c).unwrap();
    let mut s = TcpStream::connect(srv.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n").unwrap();
    let t0 = clock::now();
    let mut buf = [0u8; 256];
    // The server closes (maybe after a 408); either way the read ends well before 3 s.
    let _ = s.read(&mut buf);
    assert!(clock::now() - t0 < Duration::from_secs(2));
    let r = execute(&spec(&[url(srv.local_addr(), "/bytes/10")])).unwrap();
    assert_eq!(r.totals.ok, 10);
}

#[test]
fn http_server_bounds_connections_and_requests_per_connection() {
    let mut c = ServerConfig::new("bounded");
    c.max_connections = 2;
    c.max_requests_per_connection = 2;
    c.threads = 1;
    let srv = HttpServer::bind("127.0.0.1:0".parse().unwrap(), c).unwrap();
    // Requests per connection: 6 requests need 3 connections, and reconnecting after the
    // server's `connection: close` is not an error.
    let mut s = spec(&[url(srv.local_addr(), "/bytes/10")]);
    s.requests = Some(6);
    let r = execute(&s).unwrap();
    assert_eq!(r.totals.ok, 6, "{:?}", r.errors);
    assert_eq!(r.totals.connections, 3);
    // Two idle connections hold both slots: a third client waits in the backlog and times out.
    let hold1 = TcpStream::connect(srv.local_addr()).unwrap();
    let hold2 = TcpStream::connect(srv.local_addr()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.requests = Some(1);
    s.timeout_s = 0.3;
    let r = execute(&s).unwrap();
    assert_eq!(errors(&r, ErrorKind::Timeout), 1, "{:?}", r.errors);
    drop((hold1, hold2));
    std::thread::sleep(Duration::from_millis(100));
    s.timeout_s = 2.0;
    let r = execute(&s).unwrap();
    assert_eq!(r.totals.ok, 1, "{:?}", r.errors);
}

#[test]
fn http_cli_stops_early_on_sigint_and_still_reports() {
    use std::process::{Command, Stdio};
    let srv = server("cli", 1000);
    let child = Command::new(env!("CARGO_BIN_EXE_netload"))
        .args(["http", "--json", "-t", "30", "-c", "2"])
        .arg(url(srv.local_addr(), "/"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let t0 = clock::now();
    let out = child.wait_with_output().unwrap();
    assert!(clock::now() - t0 < Duration::from_secs(3));
    assert!(out.status.success(), "{:?}", out.status);
    let r: HttpReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r.totals.ok > 0);
    assert_eq!(r.totals.errors, 0);
    assert_eq!(r.replicas[0].replica, "cli");
}

#[test]
fn http_server_drops_clients_that_stop_reading() {
    let mut c = ServerConfig::new("writer");
    c.max_connections = 1;
    c.write_timeout = Duration::from_millis(300);
    c.threads = 1;
    let srv = HttpServer::bind("127.0.0.1:0".parse().unwrap(), c).unwrap();
    // Asks for 1 GiB and never reads: the only connection slot is held until the
    // server's write deadline frees it.
    let mut stuck = TcpStream::connect(srv.local_addr()).unwrap();
    stuck
        .write_all(b"GET /bytes/1073741824 HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = clock::now();
    let mut s = spec(&[url(srv.local_addr(), "/bytes/10")]);
    s.requests = Some(1);
    s.timeout_s = 5.0;
    let r = execute(&s).unwrap();
    assert_eq!(r.totals.ok, 1, "{:?}", r.errors);
    assert!(clock::now() - t0 < Duration::from_secs(3));
    assert!(srv.stats().connection_errors.load(Ordering::Relaxed) >= 1);
    drop(stuck);
}

#[test]
fn http_many_workers_share_their_thread_recorder() {
    // Regression: every worker once owned ~1 MB of histograms (-c 2000 took 1.6 GB).
    let srv = server("many", 100);
    let mut s = spec(&[url(srv.local_addr(), "/")]);
    s.concurrency = 300;
    s.requests = Some(600);
    let before = peak_rss_kb();
    let r = execute(&s).unwrap();
    assert_eq!(r.totals.ok, 600, "{:?}", r.errors);
    assert!(r.totals.connections <= 300);
    let grown = peak_rss_kb().saturating_sub(before);
    assert!(grown < 100 * 1024, "peak RSS grew by {grown} kB");
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn http_cli_exits_nonzero_when_nothing_succeeded_but_still_reports() {
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_netload"))
        .args(["http", "--json", "-n", "3", "--timeout", "1"])
        .arg(url(dead, "/"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let r: HttpReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(errors(&r, ErrorKind::Refused), 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no request succeeded"), "{stderr}");
}

/// Sends the first byte of its answer at once and the rest of the head 300 ms later.
fn first_byte_then_pause(mut s: TcpStream, _: u64) {
    while read_head(&mut s) {
        if s.write_all(b"H").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
        if s.write_all(b"TTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .is_err()
        {
            return;
        }
    }
}

#[test]
fn http_ttfb_ends_at_the_first_response_byte_not_at_the_parsed_head() {
    // curl's time_starttransfer is "first byte received"; netload's TTFB must be the same
    // moment, or the two disagree whenever the head arrives in pieces (or the client is
    // busy). The 300 ms gap makes the two definitions differ by far more than any jitter.
    let r = run_against(first_byte_then_pause, 2, 2.0);
    assert_eq!(r.totals.ok, 2, "{:?}", r.errors);
    assert!(r.totals.ttfb.max_us < 150_000.0, "{:?}", r.totals.ttfb);
    assert!(r.totals.total.min_us >= 290_000.0, "{:?}", r.totals.total);
}
