//! Loopback tests of `netload rr` and its responder: every mode, open loop, a missing
//! responder, a responder that survives garbage. Only 127.0.0.1; bounded in time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use netload::clock;
use netload::http::ErrorKind;
use netload::rr::{
    CloseBy, RrMode, RrReport, RrServer, RrServerConfig, RrSpec, execute, render_table,
};

fn responder() -> RrServer {
    // Port 0 picks a free TCP port; UDP binds the same number. Retry in the rare case the
    // UDP port is taken.
    for _ in 0..10 {
        if let Ok(s) = RrServer::bind("127.0.0.1:0".parse().unwrap(), RrServerConfig::default()) {
            return s;
        }
    }
    panic!("no free port for the responder");
}

fn spec(addr: SocketAddr, mode: RrMode) -> RrSpec {
    RrSpec {
        host: addr.ip().to_string(),
        port: addr.port(),
        mode,
        request_size: 64,
        response_size: 256,
        duration_s: 0.5,
        parallel: 2,
        rate: None,
        interval_s: 0.25,
        timeout_s: 1.0,
        close: CloseBy::Server,
        client_affinity: Vec::new(),
        server_affinity: Vec::new(),
        busy_poll: false,
    }
}

fn check(r: &RrReport) {
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // How many fit in 0.5 s depends on the machine's load (25 under a parallel build on
    // 2 cores); the report's consistency does not.
    assert!(r.transactions > 0, "{}", r.transactions);
    assert_eq!(r.latency.count, r.transactions);
    assert!(r.latency.p50_us > 0.0 && r.latency.p50_us <= r.latency.p99_us);
    assert_eq!(r.intervals.len(), 2, "{:?}", r.intervals);
    let sum: u64 = r.intervals.iter().map(|i| i.transactions).sum();
    assert_eq!(sum, r.transactions);
    assert!(r.transactions_per_second > 0.0);
    assert!(render_table(r).contains("round trip"));
    // The responder answered a CPU session: both ends' CPU is in the report.
    let server = r.server_cpu.as_ref().expect("responder CPU");
    assert!(server.window_s > 0.0 && server.node.cores > 0);
    let back: RrReport = serde_json::from_str(&serde_json::to_string(r).unwrap()).unwrap();
    assert_eq!(back.schema_version, 1);
}

#[test]
fn rr_loopback_tcp_rr() {
    let srv = responder();
    check(&execute(&spec(srv.local_addr(), RrMode::TcpRr)).unwrap());
}

#[test]
fn rr_loopback_tcp_crr() {
    let srv = responder();
    check(&execute(&spec(srv.local_addr(), RrMode::TcpCrr)).unwrap());
}

#[test]
fn rr_loopback_udp_rr() {
    let srv = responder();
    check(&execute(&spec(srv.local_addr(), RrMode::UdpRr)).unwrap());
}

#[test]
fn rr_loopback_busy_poll_and_affinity() {
    let srv = responder();
    let mut s = spec(srv.local_addr(), RrMode::TcpRr);
    s.busy_poll = true;
    s.parallel = 1;
    s.client_affinity = vec![0];
    check(&execute(&s).unwrap());
    s.mode = RrMode::UdpRr;
    check(&execute(&s).unwrap());
}

#[test]
fn rr_loopback_open_loop_keeps_its_rate() {
    let srv = responder();
    let mut s = spec(srv.local_addr(), RrMode::TcpRr);
    s.rate = Some(400.0);
    let r = execute(&s).unwrap();
    // 400/s for 0.5 s over two connections: 200 transactions scheduled.
    assert!((190..=202).contains(&r.transactions), "{}", r.transactions);
    assert!(r.errors.is_empty());
}

#[test]
fn rr_missing_responder_counts_errors_and_ends_on_time() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    for mode in [RrMode::TcpRr, RrMode::TcpCrr, RrMode::UdpRr] {
        let mut s = spec(dead, mode);
        s.timeout_s = 0.1;
        s.duration_s = 0.3;
        let t0 = clock::now();
        let r = execute(&s).unwrap();
        assert!(clock::now() - t0 < Duration::from_secs(2));
        assert_eq!(r.transactions, 0);
        let failures: u64 = r.errors.values().sum();
        assert!(failures > 0, "{mode:?}");
        assert!(
            r.errors.contains_key(&ErrorKind::Refused)
                || r.errors.contains_key(&ErrorKind::Timeout),
            "{mode:?}: {:?}",
            r.errors
        );
    }
}

#[test]
fn rr_responder_survives_garbage_and_serves_on() {
    let srv = responder();
    let addr = srv.local_addr();
    // Bad magic, then an absurd size, then a half hello and silence: each gets closed.
    for bad in [
        &b"GET / HTTP/1.1\r\n"[..],
        &netload::rr::hello(1, u32::MAX)[..],
        &b"NLRR"[..],
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let _ = s.write_all(bad);
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf);
    }
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = udp.send_to(b"junk", addr);
    let _ = udp.send_to(&[0u8; 2000], addr);
    check(&execute(&spec(addr, RrMode::TcpRr)).unwrap());
    check(&execute(&spec(addr, RrMode::UdpRr)).unwrap());
    srv.shutdown();
}

#[test]
fn rr_cli_stops_early_on_sigint_and_still_reports() {
    use std::process::{Command, Stdio};
    let srv = responder();
    let child = Command::new(env!("CARGO_BIN_EXE_netload"))
        .args(["rr", "127.0.0.1", "--json", "-t", "30", "-p"])
        .arg(srv.local_addr().port().to_string())
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
    let r: RrReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r.transactions > 0);
    assert!(r.duration_s < 5.0);
}

#[test]
fn rr_open_loop_shows_a_stall_in_the_tail() {
    // A responder that answers at once except transaction 20, which it holds for 300 ms.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Bounded: the CPU session (refused by closing it) and the test connection.
        for _ in 0..2 {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut hello = [0u8; netload::rr::HELLO_LEN];
            if s.read_exact(&mut hello).is_err() || hello[..4] == netload::rr::CPU_MAGIC {
                continue;
            }
            let mut b = [0u8; 1];
            for n in 0..100_000 {
                if s.read_exact(&mut b).is_err() {
                    return;
                }
                if n == 20 {
                    std::thread::sleep(Duration::from_millis(300));
                }
                if s.write_all(&b).is_err() {
                    return;
                }
            }
        }
    });
    let mut s = spec(addr, RrMode::TcpRr);
    s.request_size = 1;
    s.response_size = 1;
    s.parallel = 1;
    s.duration_s = 1.0;
    s.interval_s = 0.0;
    s.rate = Some(500.0);
    let r = execute(&s).unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    // ~150 transactions were due during the stall: measured from their intended send
    // times they waited up to 300 ms, far more than 10% of the 500.
    assert!(r.transactions >= 480, "{}", r.transactions);
    assert!(r.latency.p90_us > 50_000.0, "{:?}", r.latency);
    assert!(r.latency.max_us > 250_000.0);
    assert_eq!(r.send_lag.unwrap().count, r.transactions);
    assert!(r.server_cpu.is_none(), "this responder has no CPU sessions");
}
