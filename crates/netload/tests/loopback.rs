//! Loopback end-to-end tests of the stream engine: a real server and client in this
//! process, on 127.0.0.1, each test bounded to a few seconds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use netload::client::{ClientOptions, TestOutcome, run_stream_test};
use netload::report::{FlowDirection, StreamReport, StreamRole};
use netload::server::{Server, ServerConfig, ServerHandle};
use netload::spec::{Direction, Protocol, TestSpec, Zerocopy};

fn server() -> ServerHandle {
    let config = ServerConfig {
        bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        phase_timeout: Duration::from_secs(3),
        ..ServerConfig::default()
    };
    Server::bind(config).unwrap().spawn().unwrap()
}

fn spec(protocol: Protocol, f: impl FnOnce(&mut TestSpec)) -> TestSpec {
    let mut s = TestSpec::new(protocol);
    s.duration_s = 0.6;
    s.interval_s = 0.2;
    f(&mut s);
    s
}

fn run(server: &ServerHandle, spec: TestSpec) -> TestOutcome {
    let opts = ClientOptions::new("127.0.0.1", server.addr.port(), spec);
    let mut intervals = 0;
    let outcome = run_stream_test(&opts, &mut |_| intervals += 1).expect("test runs");
    assert!(
        outcome.errors.is_empty(),
        "stream errors: {:?}",
        outcome.errors
    );
    if outcome.report.spec.interval_s > 0.0 {
        assert!(intervals >= 2, "live intervals reported: {intervals}");
    }
    outcome
}

/// TCP moves every written byte: with no warm-up, receiver and sender counts are equal.
fn assert_tcp_exact(report: &StreamReport) {
    for f in &report.flows {
        assert!(f.receiver_bytes > 0, "{f:?}");
        assert_eq!(f.sender_bytes, f.receiver_bytes, "{f:?}");
        assert!(f.receiver_bits_per_second > 0.0);
    }
}

#[test]
fn tcp_forward_reports_both_sides() {
    let srv = server();
    let out = run(&srv, spec(Protocol::Tcp, |_| {}));
    let r = &out.report;
    assert_tcp_exact(r);
    assert_eq!(r.flows.len(), 1);
    assert_eq!(r.flows[0].direction, FlowDirection::ClientToServer);
    assert_eq!(r.client.sent_bytes, r.flows[0].sender_bytes);
    assert_eq!(r.server.received_bytes, r.flows[0].receiver_bytes);
    assert!(r.client.retransmits.is_some());
    assert!(r.client.mss.unwrap() > 0);
    // Intervals add up to the total.
    let summed: u64 = r.server.intervals.iter().map(|i| i.received_bytes).sum();
    assert_eq!(summed, r.server.received_bytes);
    // CPU accounting is present on both ends.
    for side in [&r.client, &r.server] {
        assert!(side.cpu.window_s > 0.0);
        assert!(side.cpu.process_user_s + side.cpu.process_system_s > 0.0);
        assert!(side.cpu.node.cores >= 1);
        assert!(side.settings.send_buffer.unwrap() > 0);
    }
    let json = serde_json::to_value(r).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert!(json["client"]["cpu"]["node"]["softirq"].is_number());
}

#[test]
fn tcp_reverse_bidir_and_parallel() {
    let srv = server();
    let r = run(
        &srv,
        spec(Protocol::Tcp, |s| s.direction = Direction::Reverse),
    )
    .report;
    assert_tcp_exact(&r);
    assert_eq!(r.flows[0].direction, FlowDirection::ServerToClient);
    assert!(r.client.sent_bytes == 0 && r.client.received_bytes > 0);

    let r = run(
        &srv,
        spec(Protocol::Tcp, |s| {
            s.direction = Direction::Bidir;
            s.parallel = 2;
        }),
    )
    .report;
    assert_tcp_exact(&r);
    assert_eq!(r.flows.len(), 2);
    assert_eq!(r.client.streams.len(), 4);
    let sends = r
        .client
        .streams
        .iter()
        .filter(|s| s.role == StreamRole::Send)
        .count();
    assert_eq!(sends, 2);
}

#[test]
fn tcp_warmup_is_not_counted() {
    let srv = server();
    let r = run(&srv, spec(Protocol::Tcp, |s| s.omit_s = 0.3)).report;
    // Measured window excludes the warm-up: about 0.6 s, not 0.9 s.
    assert!(r.server.duration_s < 0.8, "{}", r.server.duration_s);
    assert!(r.server.intervals.first().unwrap().start_s.abs() < 1e-9);
    // Each end opens its window when its own sampler wakes after the warm-up; on a starved
    // machine one wakes later and its window is shorter. The counts must agree up to what
    // moved in that difference (at the measured rate), plus 5 %: counting warm-up bytes at
    // one end only would exceed it.
    let f = &r.flows[0];
    let late_s = (r.client.duration_s - r.server.duration_s).abs();
    let allowed = 0.05 * f.receiver_bytes as f64 + f.receiver_bits_per_second / 8.0 * late_s;
    let diff = f.sender_bytes.abs_diff(f.receiver_bytes) as f64;
    assert!(
        diff <= allowed,
        "{f:?}: windows client {} s, server {} s",
        r.client.duration_s,
        r.server.duration_s
    );
}

#[test]
fn tcp_zerocopy_sendfile_and_msg() {
    let srv = server();
    let r = run(
        &srv,
        spec(Protocol::Tcp, |s| s.zerocopy = Zerocopy::Sendfile),
    )
    .report;
    assert_tcp_exact(&r);
    assert_eq!(r.client.settings.zerocopy, "sendfile");

    let r = run(&srv, spec(Protocol::Tcp, |s| s.zerocopy = Zerocopy::Msg)).report;
    assert_tcp_exact(&r);
    let z = r.client.streams[0].zerocopy.expect("zerocopy stats");
    assert!(z.sends > 0);
    assert_eq!(z.completed, z.sends, "{z:?}");
    // Loopback always copies, and the report says so.
    assert_eq!(z.copied, z.completed);
    assert!(
        r.warnings.iter().any(|w| w.contains("copied")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn tcp_rx_discard_counts_without_copying() {
    let srv = server();
    let r = run(&srv, spec(Protocol::Tcp, |s| s.rx_discard = true)).report;
    assert_tcp_exact(&r);
    assert!(r.server.settings.rx_discard);
    assert!(r.warnings.iter().any(|w| w.contains("MSG_TRUNC")));
}

#[test]
fn tcp_mss_is_set_and_read_back() {
    let srv = server();
    let r = run(
        &srv,
        spec(Protocol::Tcp, |s| {
            s.mss = Some(1000);
            s.nodelay = true;
        }),
    )
    .report;
    assert_tcp_exact(&r);
    let mss = r.client.mss.unwrap();
    assert!((900..=1000).contains(&mss), "effective mss {mss}");
    assert!(r.client.settings.mss_sockopt.unwrap() <= 1000);
    assert_eq!(r.client.settings.nodelay, Some(true));
    // Segments really are that small: the receiver's estimate agrees.
    let rcv_mss = r.server.streams[0].tcp.unwrap().rcv_mss;
    assert!(rcv_mss <= 1000, "receiver saw {rcv_mss}-byte segments");
}

#[test]
fn udp_paced_forward_accounts_every_datagram() {
    let srv = server();
    let r = run(&srv, spec(Protocol::Udp, |s| s.udp_rate_bps = 50_000_000)).report;
    let f = &r.flows[0];
    let sent = f.packets_sent.unwrap();
    let lost = f.lost.unwrap();
    let received = r.server.streams[0].udp.unwrap().packets;
    assert!(sent > 1000, "{f:?}");
    assert_eq!(
        sent,
        received - r.server.streams[0].udp.unwrap().duplicates + lost
    );
    // 50 Mbit/s for 0.6 s is about 3.75 MB; pacing keeps the sender within 10%.
    let expected = 50e6 * 0.6 / 8.0;
    let ratio = f.sender_bytes as f64 / expected;
    assert!(
        (0.9..1.1).contains(&ratio),
        "sender moved {} bytes, expected {expected}",
        f.sender_bytes
    );
    assert!(f.jitter_ms.is_some());
    assert!(r.server.intervals.iter().all(|i| i.packets.is_some()));
}

#[test]
fn udp_reverse_without_offload_and_bidir() {
    let srv = server();
    let r = run(
        &srv,
        spec(Protocol::Udp, |s| {
            s.direction = Direction::Reverse;
            s.udp_gso = false;
            s.udp_batch = false;
            s.udp_rate_bps = 20_000_000;
        }),
    )
    .report;
    assert_eq!(r.flows[0].direction, FlowDirection::ServerToClient);
    assert!(r.client.received_bytes > 0);
    assert_eq!(r.server.settings.udp_gso_segment, None);
    assert_eq!(r.server.settings.udp_batch, Some(1));

    let r = run(
        &srv,
        spec(Protocol::Udp, |s| {
            s.direction = Direction::Bidir;
            s.udp_rate_bps = 20_000_000;
        }),
    )
    .report;
    assert_eq!(r.flows.len(), 2);
    assert!(
        r.flows
            .iter()
            .all(|f| f.receiver_bytes > 0 && f.loss_percent.unwrap() < 50.0)
    );
}

#[test]
fn udp_gso_batches_and_still_counts_each_datagram() {
    let srv = server();
    let r = run(&srv, spec(Protocol::Udp, |s| s.udp_rate_bps = 0)).report;
    let f = &r.flows[0];
    let sent = f.packets_sent.unwrap();
    assert!(sent > 10_000, "{f:?}");
    assert!(f.lost.unwrap() <= sent);
    if let Some(seg) = r.client.settings.udp_gso_segment {
        assert_eq!(seg, 1400);
    }
}

#[test]
fn server_refuses_specs_beyond_its_limits() {
    let config = ServerConfig {
        bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        limits: netload::spec::Limits {
            max_duration_s: 1.0,
            max_parallel: 1,
        },
        ..ServerConfig::default()
    };
    let srv = Server::bind(config).unwrap().spawn().unwrap();
    let s = spec(Protocol::Tcp, |s| s.parallel = 2);
    let err = run_stream_test(
        &ClientOptions::new("127.0.0.1", srv.addr.port(), s),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("--parallel"), "{err}");
}

#[test]
fn connection_refused_is_a_clear_error() {
    // Bind then drop to get a port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = run_stream_test(
        &ClientOptions::new("127.0.0.1", port, spec(Protocol::Tcp, |_| {})),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}
