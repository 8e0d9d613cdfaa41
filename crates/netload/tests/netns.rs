//! Root tier: the stream engine between two network namespaces joined by a veth pair
//! (198.18.0.0/15 only). Namespaces are removed by a guard, also when a test fails.

mod root;

use netload::bench::{self, BenchCase};
use netload::spec::{Direction, Protocol, TestSpec, Zerocopy};
use root::require_root;

fn case(name: &'static str, protocol: Protocol, f: impl FnOnce(&mut TestSpec)) -> BenchCase {
    let mut spec = TestSpec::new(protocol);
    spec.duration_s = 0.6;
    spec.interval_s = 0.2;
    f(&mut spec);
    BenchCase { name, spec }
}

#[test]
fn netns_streams_over_veth() {
    if !require_root() {
        return;
    }
    let cases = [
        case("tcp", Protocol::Tcp, |_| {}),
        case("tcp-reverse-P2", Protocol::Tcp, |s| {
            s.direction = Direction::Reverse;
            s.parallel = 2;
        }),
        case("tcp-bidir", Protocol::Tcp, |s| {
            s.direction = Direction::Bidir;
        }),
        case("tcp-sendfile", Protocol::Tcp, |s| {
            s.zerocopy = Zerocopy::Sendfile;
        }),
        case("tcp-msg", Protocol::Tcp, |s| s.zerocopy = Zerocopy::Msg),
        case("tcp-mss", Protocol::Tcp, |s| s.mss = Some(1200)),
        case("udp", Protocol::Udp, |s| s.udp_rate_bps = 200_000_000),
        case("udp-reverse", Protocol::Udp, |s| {
            s.direction = Direction::Reverse;
            s.udp_rate_bps = 100_000_000;
        }),
    ];
    let results = bench::run(&cases, true, 1500, &mut |_| {}).expect("veth path builds");
    for r in &results {
        let report = r
            .outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("{}: {e}", r.name));
        for f in &report.flows {
            assert!(f.receiver_bytes > 0, "{}: {f:?}", r.name);
            if report.spec.protocol == Protocol::Tcp {
                assert_eq!(f.sender_bytes, f.receiver_bytes, "{}", r.name);
            }
        }
        // A 1500-byte MTU path: TCP segments are at most 1460 bytes.
        if let Some(mss) = report
            .client
            .mss
            .filter(|_| report.spec.protocol == Protocol::Tcp)
        {
            assert!(mss <= 1460, "{}: mss {mss}", r.name);
        }
    }
    let mss = results.iter().find(|r| r.name == "tcp-mss").unwrap();
    assert!(mss.outcome.as_ref().unwrap().client.mss.unwrap() <= 1200);
    // The guard removed both namespaces.
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let me = format!("nlb-{}-", std::process::id());
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&me),
        "namespaces left behind"
    );
}

/// TIME_WAIT sockets in namespace `ns`, counted by `ss` (the count an operator would see).
fn time_wait_sockets(ns: &str) -> usize {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-Htan", "state", "time-wait"])
        .output()
        .expect("ss runs (iproute2)");
    assert!(out.status.success(), "ss failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn crr_spec(close: netload::rr::CloseBy) -> netload::rr::RrSpec {
    netload::rr::RrSpec {
        host: netload::netns::ADDR_B.to_string(),
        port: 9202,
        mode: netload::rr::RrMode::TcpCrr,
        request_size: 1,
        response_size: 1,
        duration_s: 2.0,
        parallel: 4,
        rate: None,
        interval_s: 0.0,
        timeout_s: 2.0,
        close,
        client_affinity: Vec::new(),
        server_affinity: Vec::new(),
        busy_poll: false,
    }
}

/// Connections per transaction over a veth between two namespaces (regression: the client
/// closed first, so every transaction left a TIME_WAIT socket on it for 60 s; after about
/// 14k of them `connect` spent milliseconds looking for a free port and tcp-crr measured the
/// port allocator). With the responder closing first, 60k connections leave the client's
/// port range as empty as they found it. The client-first run at the end shows the count
/// this test would see without that: one TIME_WAIT socket per connection.
#[test]
fn netns_tcp_crr_leaves_no_time_wait_on_the_client() {
    use netload::rr::{self, CloseBy, RrServerConfig};
    if !require_root() {
        return;
    }
    let pair = netload::netns::VethPair::create(1500).expect("veth pair");
    let server_addr = std::net::SocketAddr::from((netload::netns::ADDR_B, 9202));
    let server = netload::netns::VethPair::run_in(&pair.b, move || {
        rr::serve(server_addr, RrServerConfig::default())
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap()
    .expect("responder binds in namespace b");

    let connections: u64 = 60_000;
    let mut done = 0u64;
    // Bounded: at most 60 runs of 2 s, far more than 60k connections need even in a
    // debug build.
    for _ in 0..60 {
        let report =
            netload::netns::VethPair::run_in(&pair.a, || rr::execute(&crr_spec(CloseBy::Server)))
                .unwrap()
                .join()
                .unwrap()
                .unwrap()
                .expect("tcp-crr run");
        assert!(
            report.errors.is_empty(),
            "connect or transaction errors: {:?}",
            report.errors
        );
        done += report.transactions;
        if done >= connections {
            break;
        }
    }
    assert!(done >= connections, "only {done} connections in 60 runs");
    let client_tw = time_wait_sockets(&pair.a);
    // The responder holds them instead, where they take no ephemeral port.
    let server_tw = time_wait_sockets(&pair.b);
    assert!(
        client_tw <= 16,
        "{client_tw} TIME_WAIT sockets on the client after {done} connections"
    );
    // The responder holds them instead, one per 4-tuple: a client port that comes round
    // again finds its old TIME_WAIT socket there and replaces it (a SYN with newer
    // timestamps is accepted in TIME_WAIT), so the count is bounded by the ports the
    // client cycled through (~14k of Linux's default range), not by the connections.
    assert!(
        server_tw >= 1_000,
        "the responder should hold the TIME_WAIT sockets: {server_tw} after {done}"
    );

    // Control: the client closing first leaves one TIME_WAIT socket per connection.
    let mut spec = crr_spec(CloseBy::Client);
    spec.duration_s = 0.5;
    let report = netload::netns::VethPair::run_in(&pair.a, move || rr::execute(&spec))
        .unwrap()
        .join()
        .unwrap()
        .unwrap()
        .expect("client-first tcp-crr run");
    let after = time_wait_sockets(&pair.a);
    assert!(
        (after - client_tw) as u64 >= report.transactions * 9 / 10,
        "client-first close: {} transactions, TIME_WAIT {client_tw} -> {after}",
        report.transactions
    );
    server.shutdown();
}

/// HTTP without keep-alive has the same mechanism as tcp-crr: the client asks for
/// `Connection: close` and waits for the server's close, so its port range stays empty.
#[test]
fn netns_http_new_connection_leaves_no_time_wait_on_the_client() {
    use netload::http::HttpSpec;
    use netload::http::server::{HttpServer, ServerConfig};
    use netload::spec::CloseBy;
    if !require_root() {
        return;
    }
    let pair = netload::netns::VethPair::create(1500).expect("veth pair");
    let addr = std::net::SocketAddr::from((netload::netns::ADDR_B, 8080));
    let server = netload::netns::VethPair::run_in(&pair.b, move || {
        let mut config = ServerConfig::new("tw");
        config.body_size = 100;
        config.threads = 1;
        HttpServer::bind(addr, config)
    })
    .unwrap()
    .join()
    .unwrap()
    .unwrap()
    .expect("http server binds in namespace b");
    let spec = |close, requests| HttpSpec {
        urls: vec![format!("http://{addr}/")],
        concurrency: 4,
        requests: Some(requests),
        duration_s: None,
        rate: None,
        new_connection: true,
        close,
        timeout_s: 5.0,
        threads: 2,
    };
    let run = |s: HttpSpec| {
        netload::netns::VethPair::run_in(&pair.a, move || netload::http::client::execute(&s))
            .unwrap()
            .join()
            .unwrap()
            .unwrap()
            .expect("http run")
    };
    let r = run(spec(CloseBy::Server, 10_000));
    assert_eq!(r.totals.ok, 10_000, "{:?}", r.errors);
    assert_eq!(r.totals.connections, 10_000);
    let client_tw = time_wait_sockets(&pair.a);
    assert!(
        client_tw <= 16,
        "{client_tw} TIME_WAIT sockets on the client after 10000 requests"
    );
    // Control: closing from the client leaves one TIME_WAIT socket per request.
    let r = run(spec(CloseBy::Client, 1_000));
    assert_eq!(r.totals.ok, 1_000, "{:?}", r.errors);
    let after = time_wait_sockets(&pair.a);
    assert!(
        after - client_tw >= 900,
        "client-first close: TIME_WAIT {client_tw} -> {after}"
    );
    drop(server);
}
