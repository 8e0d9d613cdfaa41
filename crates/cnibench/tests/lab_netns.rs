//! Root tier: the lab backend's namespaces, datapaths, services and policies for real
//! (198.18.0.0/15 only, inside namespaces the tests create). Every test holds a `Lab`
//! guard, so namespaces go away also when an assertion fails; names carry `netns_` so
//! nextest runs them one at a time.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cnibench::backend::lab::{
    self, CleanScope, CounterDelta, Lab, LabError, LabSpec, PathCounter, PodSpec, Policy,
    PolicyMode, ProbeOutcome, Profile, Protocol, ProxyMode, ServicePort, ServiceSpec, Target,
};
use netload::client::{ClientOptions, run_stream_test};
use netload::server::{Server, ServerConfig, ServerHandle};
use netload::spec::TestSpec;

fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("NETLOAD_SKIP_ROOT_TESTS").is_some(),
        "lab tests need root; set NETLOAD_SKIP_ROOT_TESTS=1 to skip them knowingly"
    );
    false
}

/// A run id unique to this process and test.
fn run_id(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

fn spec(tag: &str, profile: Profile, proxy: ProxyMode, policy: PolicyMode) -> LabSpec {
    let mut s = LabSpec::new(run_id(tag));
    s.profile = profile;
    s.proxy = proxy;
    s.policy_mode = policy;
    s
}

fn elapsed(start: std::time::Instant) -> f64 {
    (netload::clock::now() - start).as_secs_f64()
}

fn start_server(lab: &Lab, pod: &str) -> ServerHandle {
    start_server_on(lab, pod, 0)
}

fn start_server_on(lab: &Lab, pod: &str, port: u16) -> ServerHandle {
    let ip = lab.pod(pod).unwrap().ip;
    lab.run_in(Target::Pod(pod), move || {
        Server::bind(ServerConfig {
            bind: SocketAddr::new(IpAddr::V4(ip), port),
            ..ServerConfig::default()
        })
        .and_then(Server::spawn)
    })
    .unwrap()
    .unwrap()
}

/// A short netload TCP stream from `client` to `addr`; returns receiver bytes.
fn stream(lab: &Lab, client: &str, addr: SocketAddr) -> u64 {
    stream_of(lab, client, addr, netload::spec::Protocol::Tcp)
}

fn stream_of(lab: &Lab, client: &str, addr: SocketAddr, proto: netload::spec::Protocol) -> u64 {
    let mut spec = TestSpec::new(proto);
    if proto == netload::spec::Protocol::Udp {
        spec.udp_rate_bps = 100_000_000;
    }
    spec.duration_s = 0.4;
    spec.omit_s = 0.0;
    spec.interval_s = 0.2;
    let mut opts = ClientOptions::new(addr.ip().to_string(), addr.port(), spec);
    opts.phase_timeout = Duration::from_secs(5);
    let outcome = lab
        .run_in(Target::Pod(client), move || {
            run_stream_test(&opts, &mut |_| {}).map_err(|e| e.to_string())
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("stream {client} -> {addr}: {e}"));
    assert!(outcome.errors.is_empty(), "{:?}", outcome.errors);
    outcome.report.flows.iter().map(|f| f.receiver_bytes).sum()
}

fn assert_gone(run: &str) {
    assert!(lab::list_namespaces(&CleanScope::Run(run.to_owned())).is_empty());
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        !list.contains(&format!("cnb-{run}-")),
        "left behind: {list}"
    );
}

fn topology_and_pod_to_pod(profile: Profile, tag: &str) {
    if !require_root() {
        return;
    }
    let spec = spec(tag, profile, ProxyMode::Iptables, PolicyMode::Iptables);
    let run = spec.run_id.clone();
    let t = netload::clock::now();
    let mut lab = Lab::up(&spec).unwrap();
    lab.add_pods(&[
        PodSpec::new("client", 0),
        PodSpec::new("local", 0),
        PodSpec::new("server", 1),
    ])
    .unwrap();
    println!("{profile}: lab with 3 pods up in {:.3} s", elapsed(t));

    let pod_mtu = spec.pod_mtu();
    for p in ["client", "local", "server"] {
        assert_eq!(lab.pod_mtu(p).unwrap(), pod_mtu, "{p}");
    }
    // IPv4 20 + TCP 20 bytes of headers + 12 of the timestamp option.
    assert_eq!(lab.effective_mss("client", "server").unwrap(), pod_mtu - 52);
    assert_eq!(lab.effective_mss("client", "local").unwrap(), pod_mtu - 52);

    // Baseline: node to node over the underlay.
    let probe = lab
        .connect_probe(
            Target::Node(0),
            SocketAddr::new(lab.node_ip(1).into(), 9),
            Duration::from_secs(1),
        )
        .unwrap();
    assert_eq!(probe, ProbeOutcome::Refused, "node 1 answers node 0");

    let inter = start_server(&lab, "server");
    let intra = start_server(&lab, "local");
    let vx_before = (profile == Profile::Vxlan).then(|| lab.vxlan_stats(0).unwrap());
    assert!(stream(&lab, "client", inter.addr) > 0, "inter-node stream");
    if let Some(before) = vx_before {
        let after = lab.vxlan_stats(0).unwrap();
        assert!(
            after.tx_packets > before.tx_packets + 100,
            "inter-node traffic went through vxlan0: {before:?} -> {after:?}"
        );
    }
    assert!(stream(&lab, "client", intra.addr) > 0, "intra-node stream");
    inter.stop();
    intra.stop();

    lab.down().unwrap();
    assert_gone(&run);
}

#[test]
fn netns_lab_routed_topology_and_pod_to_pod() {
    topology_and_pod_to_pod(Profile::Routed, "rt");
}

#[test]
fn netns_lab_vxlan_topology_and_pod_to_pod() {
    topology_and_pod_to_pod(Profile::Vxlan, "vx");
}

#[test]
fn netns_lab_three_nodes_reach_each_other() {
    if !require_root() {
        return;
    }
    for (tag, profile) in [("tr", Profile::Routed), ("tv", Profile::Vxlan)] {
        let mut s = spec(tag, profile, ProxyMode::Nftables, PolicyMode::Nftables);
        s.nodes = 3;
        s.mtu = 9000;
        let mut lab = Lab::up(&s).unwrap();
        let pods: Vec<String> = (0..3).map(|i| format!("p{i}")).collect();
        lab.add_pods(
            &pods
                .iter()
                .enumerate()
                .map(|(i, p)| PodSpec::new(p.clone(), i))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let listeners: Vec<TcpListener> = pods.iter().map(|p| listen(&lab, p, 7000)).collect();
        for from in &pods {
            for (to, l) in pods.iter().zip(&listeners) {
                let addr = l.local_addr().unwrap();
                let got = lab
                    .connect_probe(Target::Pod(from), addr, Duration::from_secs(1))
                    .unwrap();
                assert_eq!(got, ProbeOutcome::Connected, "{profile}: {from} -> {to}");
            }
        }
        assert_eq!(lab.pod_mtu("p2").unwrap(), s.pod_mtu());
        assert_eq!(lab.effective_mss("p2", "p0").unwrap(), s.pod_mtu() - 52);
    }
}

fn listen(lab: &Lab, pod: &str, port: u16) -> TcpListener {
    let ip = lab.pod(pod).unwrap().ip;
    let l = lab
        .run_in(Target::Pod(pod), move || {
            TcpListener::bind(SocketAddrV4::new(ip, port))
        })
        .unwrap()
        .unwrap();
    l.set_nonblocking(true).unwrap();
    l
}

fn drain(l: &TcpListener) -> usize {
    std::iter::from_fn(|| l.accept().ok()).count()
}

fn service_dnat(proxy: ProxyMode, tag: &str) {
    const N: usize = 60;
    if !require_root() {
        return;
    }
    let spec = spec(tag, Profile::Routed, proxy, PolicyMode::Iptables);
    let mut lab = Lab::up(&spec).unwrap();
    lab.add_pods(&[
        PodSpec::new("client", 0),
        PodSpec::new("ep0", 0),
        PodSpec::new("ep1", 1),
        PodSpec::new("ep2", 1),
    ])
    .unwrap();
    let eps = ["ep0", "ep1", "ep2"];
    let listeners: Vec<TcpListener> = eps.iter().map(|p| listen(&lab, p, 8080)).collect();
    // Some services before ours, so the match is not the first rule.
    let filler = lab.add_filler_pods(1, 1).unwrap()[0];
    let others: Vec<ServiceSpec> = (0..20)
        .map(|_| ServiceSpec::tcp(80, 80, vec![filler]))
        .collect();
    lab.add_services(&others).unwrap();
    let svc = lab
        .add_services(&[ServiceSpec::tcp(
            80,
            8080,
            eps.iter().map(|p| lab.pod(p).unwrap().ip).collect(),
        )])
        .unwrap()
        .remove(0);
    let before = lab.service_counters(&svc, svc.ports[0], 0).unwrap();
    let addr = SocketAddr::new(svc.ip.into(), 80);
    let connected = lab
        .run_in(Target::Pod("client"), move || {
            (0..N)
                .filter(|_| {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
                })
                .count()
        })
        .unwrap();
    assert_eq!(
        connected, N,
        "every connection to {addr} reached an endpoint"
    );
    let first: Vec<usize> = listeners.iter().map(drain).collect();
    assert!(
        first.iter().all(|&n| n > 0),
        "spread over endpoints: {first:?}"
    );
    // Hairpin: an endpoint reaching its own service (masqueraded, as kube-proxy does).
    let hairpin = lab
        .run_in(Target::Pod("ep0"), move || {
            (0..N)
                .filter(|_| {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
                })
                .count()
        })
        .unwrap();
    assert_eq!(hairpin, N, "hairpin connections from an endpoint");
    let second: Vec<usize> = listeners.iter().map(drain).collect();
    assert!(second[0] > 0, "ep0 reached itself: {second:?}");
    println!("{proxy}: connections per endpoint {first:?}, hairpin from ep0 {second:?}");
    assert_eq!(first.iter().chain(&second).sum::<usize>(), 2 * N);
    let after = lab.service_counters(&svc, svc.ports[0], 0).unwrap();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            a > b,
            "DNAT counter of endpoint {i} rose: {before:?} -> {after:?}"
        );
    }
    // The client's node did the DNAT; the other node saw no service traffic.
    assert_eq!(
        lab.service_counters(&svc, svc.ports[0], 1)
            .unwrap()
            .iter()
            .sum::<u64>(),
        0
    );

    lab.clear_services().unwrap();
    let probe = lab
        .connect_probe(Target::Pod("client"), addr, Duration::from_millis(300))
        .unwrap();
    assert_ne!(probe, ProbeOutcome::Connected, "service gone after clear");
}

#[test]
fn netns_lab_service_dnat_iptables() {
    service_dnat(ProxyMode::Iptables, "si");
}

#[test]
fn netns_lab_service_dnat_nftables() {
    service_dnat(ProxyMode::Nftables, "sn");
}

#[test]
fn netns_lab_netload_tcp_and_udp_through_a_service() {
    if !require_root() {
        return;
    }
    for (tag, proxy, profile) in [
        ("ui", ProxyMode::Iptables, Profile::Vxlan),
        ("un", ProxyMode::Nftables, Profile::Routed),
    ] {
        let mut lab = Lab::up(&spec(tag, profile, proxy, PolicyMode::Iptables)).unwrap();
        lab.add_pods(&[PodSpec::new("client", 0), PodSpec::new("server", 1)])
            .unwrap();
        let server = start_server_on(&lab, "server", 15201);
        let svc = lab
            .add_services(&[ServiceSpec {
                ports: vec![ServicePort::tcp(80, 15201), ServicePort::udp(80, 15201)],
                endpoints: vec![lab.pod("server").unwrap().ip],
            }])
            .unwrap()
            .remove(0);
        let addr = SocketAddr::new(svc.ip.into(), 80);
        let mut counters = vec![PathCounter::Dnat {
            service: svc.clone(),
            port: svc.ports[0],
            node: 0,
        }];
        if profile == Profile::Vxlan {
            counters.push(PathCounter::VxlanTx(0));
        }
        let (bytes, deltas) = lab
            .check_path(&counters, || {
                stream_of(&lab, "client", addr, netload::spec::Protocol::Tcp)
            })
            .unwrap();
        assert!(bytes > 0);
        assert!(deltas.iter().all(CounterDelta::rose), "{deltas:?}");
        assert!(stream_of(&lab, "client", addr, netload::spec::Protocol::Udp) > 0);
        for p in &svc.ports {
            let c = lab.service_counters(&svc, *p, 0).unwrap();
            assert!(c[0] > 0, "{proxy} {p:?}: {c:?}");
        }
        server.stop();
    }
}

fn policies(mode: PolicyMode, tag: &str) {
    if !require_root() {
        return;
    }
    let spec = spec(tag, Profile::Routed, ProxyMode::Iptables, mode);
    let mut lab = Lab::up(&spec).unwrap();
    lab.add_pods(&[
        PodSpec::new("client", 0),
        PodSpec::new("intruder", 0),
        PodSpec::new("server", 1),
        PodSpec::new("neighbour", 1),
    ])
    .unwrap();
    let server = start_server(&lab, "server");
    let port = server.addr.port();
    let server_ip = lab.pod("server").unwrap().ip;
    let client_ip = lab.pod("client").unwrap().ip;
    // Filler pods with their own policies, as in the pod-to-pod-policies scenario.
    let fillers: Vec<Ipv4Addr> = [0, 1]
        .iter()
        .flat_map(|&n| lab.add_filler_pods(n, 10).unwrap())
        .collect();
    let mut ps: Vec<Policy> = fillers
        .iter()
        .enumerate()
        .flat_map(|(i, &f)| {
            [1, 2].map(|d| Policy {
                target: f,
                from: fillers[(i + d) % fillers.len()],
                port: Some((Protocol::Tcp, 80)),
            })
        })
        .collect();
    ps.push(Policy {
        target: server_ip,
        from: client_ip,
        port: Some((Protocol::Tcp, port)),
    });
    lab.add_policies(&ps).unwrap();
    // Added in a second batch: the existing chain must keep its default deny.
    lab.add_policies(&[Policy {
        target: server_ip,
        from: lab.pod("neighbour").unwrap().ip,
        port: None,
    }])
    .unwrap();
    assert_eq!(lab.policy_count(), ps.len() + 1);

    let before = lab.policy_counters(server_ip).unwrap();
    let probe = lab
        .connect_probe(
            Target::Pod("intruder"),
            server.addr,
            Duration::from_millis(300),
        )
        .unwrap();
    assert_eq!(probe, ProbeOutcome::TimedOut, "intruder is dropped");
    let mid = lab.policy_counters(server_ip).unwrap();
    assert!(mid.dropped > before.dropped, "{before:?} -> {mid:?}");
    assert_eq!(
        lab.connect_probe(
            Target::Pod("neighbour"),
            server.addr,
            Duration::from_secs(1)
        )
        .unwrap(),
        ProbeOutcome::Connected
    );
    assert!(
        stream(&lab, "client", server.addr) > 0,
        "allowed pair streams"
    );
    let after = lab.policy_counters(server_ip).unwrap();
    assert!(after.accepted > mid.accepted, "{mid:?} -> {after:?}");

    lab.clear_policies().unwrap();
    assert_eq!(
        lab.connect_probe(Target::Pod("intruder"), server.addr, Duration::from_secs(1))
            .unwrap(),
        ProbeOutcome::Connected,
        "no policy, no isolation"
    );
    server.stop();
}

#[test]
fn netns_lab_policies_iptables() {
    policies(PolicyMode::Iptables, "pi");
}

#[test]
fn netns_lab_policies_nftables() {
    policies(PolicyMode::Nftables, "pn");
}

/// Scale objects: `services` services (one filler endpoint each), `fillers` filler pods
/// and two policies per filler; prints each phase's time.
fn scale(lab: &mut Lab, fillers: usize, services: usize) -> [f64; 4] {
    let nodes = lab.spec().nodes;
    let t = netload::clock::now();
    let mut ips = Vec::new();
    for n in 0..nodes {
        ips.extend(lab.add_filler_pods(n, fillers / nodes).unwrap());
    }
    let t_fill = elapsed(t);
    let specs: Vec<ServiceSpec> = (0..services)
        .map(|i| ServiceSpec::tcp(80, 8080, vec![ips[i % ips.len()]]))
        .collect();
    let t = netload::clock::now();
    lab.add_services(&specs).unwrap();
    let t_svc = elapsed(t);
    let ps: Vec<Policy> = ips
        .iter()
        .enumerate()
        .flat_map(|(i, &f)| {
            let ips = &ips;
            [1, 2].map(move |d| Policy {
                target: f,
                from: ips[(i + d) % ips.len()],
                port: Some((Protocol::Tcp, 8080)),
            })
        })
        .collect();
    let t = netload::clock::now();
    lab.add_policies(&ps).unwrap();
    let t_pol = elapsed(t);
    let t = netload::clock::now();
    lab.clear_services().unwrap();
    lab.clear_policies().unwrap();
    lab.clear_filler_pods().unwrap();
    let t_clear = elapsed(t);
    let s = lab.spec();
    println!(
        "proxy {} / policies {}: {fillers} filler pods {t_fill:.2} s, {services} services {t_svc:.2} s, {} policies {t_pol:.2} s, removing all {t_clear:.2} s",
        s.proxy,
        s.policy_mode,
        ps.len()
    );
    [t_fill, t_svc, t_pol, t_clear]
}

fn rule_lines(lab: &Lab, node: usize) -> usize {
    let ns = lab.netns(Target::Node(node)).unwrap();
    let ipt = lab::exec::output_in(&ns, "iptables-save", &[]).unwrap();
    let nft = lab::exec::output_in(&ns, "nft", &["list", "ruleset"]).unwrap();
    ipt.lines().filter(|l| l.starts_with("-A ")).count() + nft.lines().count()
}

#[test]
fn netns_lab_scale_1k_created_and_removed() {
    if !require_root() {
        return;
    }
    for (tag, proxy, policy) in [
        ("ki", ProxyMode::Iptables, PolicyMode::Iptables),
        ("kn", ProxyMode::Nftables, PolicyMode::Nftables),
    ] {
        let mut lab = Lab::up(&spec(tag, Profile::Routed, proxy, policy)).unwrap();
        let empty = rule_lines(&lab, 0);
        scale(&mut lab, 1000, 1000);
        assert_eq!(
            rule_lines(&lab, 0),
            empty,
            "{proxy}/{policy}: all rules removed"
        );
        assert!(lab.filler_pods().is_empty() && lab.services().is_empty());
        let ns = lab.netns(Target::Node(0)).unwrap();
        let routes = lab::exec::output_in(&ns, "ip", &["route", "show"]).unwrap();
        assert!(
            routes.lines().count() < 10,
            "filler routes removed: {routes}"
        );
    }
}

/// Setup times at full scale; run with
/// `cargo test --release -p cnibench --test lab_netns -- --ignored netns_scale_bench --nocapture`.
#[test]
#[ignore = "benchmark: 10k services and 20k policies per mode, about a minute"]
fn netns_scale_bench() {
    if !require_root() {
        return;
    }
    for (tag, proxy, policy) in [
        ("bi", ProxyMode::Iptables, PolicyMode::Iptables),
        ("bn", ProxyMode::Nftables, PolicyMode::Nftables),
    ] {
        let mut lab = Lab::up(&spec(tag, Profile::Routed, proxy, policy)).unwrap();
        scale(&mut lab, 10_000, 10_000);
    }
    // Real pods (namespaces), e.g. the 100 replicas of http-replicas.
    let t = netload::clock::now();
    let mut lab = Lab::up(&spec(
        "bp",
        Profile::Vxlan,
        ProxyMode::Nftables,
        PolicyMode::Nftables,
    ))
    .unwrap();
    let t_up = elapsed(t);
    let pods: Vec<PodSpec> = (0..100)
        .map(|i| PodSpec::new(format!("r{i}"), i % 2))
        .collect();
    let t = netload::clock::now();
    lab.add_pods(&pods).unwrap();
    let t_pods = elapsed(t);
    let t = netload::clock::now();
    lab.down().unwrap();
    println!(
        "lab up {t_up:.2} s, 100 pods with namespaces {t_pods:.2} s, teardown {:.2} s",
        elapsed(t)
    );
}

#[test]
fn lab_ipvs_is_refused_with_a_clear_message() {
    let mut s = LabSpec::new("ipvs");
    s.proxy = ProxyMode::Ipvs;
    let err = Lab::up(&s).unwrap_err();
    assert!(
        matches!(err, LabError::NoIpvs | LabError::IpvsUnsupported),
        "{err}"
    );
    assert!(err.to_string().contains("use --proxy iptables or nftables"));
    if !std::path::Path::new("/sys/module/ip_vs").exists() {
        assert!(
            lab::check_ipvs()
                .unwrap_err()
                .to_string()
                .contains("no IPVS")
        );
    }
}

const CHILD_ENV: &str = "CNB_LAB_KILL_CHILD_RUN";

/// Not a test by itself: the child process of `netns_lab_kill9_then_clean`, which builds
/// a lab, says READY and waits to be killed. Returns at once when run normally.
#[test]
fn netns_lab_kill9_child() {
    let Some(run) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let mut s = LabSpec::new(run.to_string_lossy());
    s.profile = Profile::Vxlan;
    s.proxy = ProxyMode::Nftables;
    let mut lab = Lab::up(&s).unwrap();
    lab.add_pods(&[PodSpec::new("a", 0), PodSpec::new("b", 1)])
        .unwrap();
    let f = lab.add_filler_pods(1, 5).unwrap();
    lab.add_services(&[ServiceSpec::tcp(80, 80, vec![f[0]])])
        .unwrap();
    lab.add_policies(&[Policy {
        target: f[1],
        from: f[2],
        port: None,
    }])
    .unwrap();
    println!("READY");
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn netns_lab_kill9_then_clean() {
    if !require_root() {
        return;
    }
    let run = run_id("kill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "netns_lab_kill9_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &run)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("READY") {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(30));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    // Whatever happened, clean up before asserting.
    let left = lab::list_namespaces(&CleanScope::Run(run.clone()));
    let removed = lab::clean(&CleanScope::Run(run.clone()))
        .unwrap()
        .namespaces;
    assert!(ready.is_ok(), "child never built its lab");
    assert_eq!(
        left.len(),
        5,
        "fabric, 2 nodes, 2 pods left by the killed run: {left:?}"
    );
    assert_eq!(removed, left);
    assert_gone(&run);
    // Cleaning again finds nothing.
    assert_eq!(
        lab::clean(&CleanScope::Run(run)).unwrap(),
        lab::Cleaned::default()
    );
}

/// UDP through a `ClusterIP`: datagrams to the service address reach the endpoint, the
/// endpoint's replies come back from the service address (conntrack undoes the DNAT), the
/// UDP port's DNAT counter rises and the TCP port's does not. Both proxies.
#[test]
fn netns_lab_udp_through_a_service_is_dnatted() {
    use std::net::UdpSocket;
    const N: usize = 20;
    if !require_root() {
        return;
    }
    for (tag, proxy) in [("di", ProxyMode::Iptables), ("dn", ProxyMode::Nftables)] {
        let mut lab = Lab::up(&spec(tag, Profile::Routed, proxy, PolicyMode::Iptables)).unwrap();
        lab.add_pods(&[PodSpec::new("client", 1), PodSpec::new("server", 0)])
            .unwrap();
        let server_ip = lab.pod("server").unwrap().ip;
        let svc = lab
            .add_services(&[ServiceSpec {
                ports: vec![ServicePort::tcp(53, 5353), ServicePort::udp(53, 5353)],
                endpoints: vec![server_ip],
            }])
            .unwrap()
            .remove(0);
        let (tcp_port, udp_port) = (svc.ports[0], svc.ports[1]);
        assert_eq!(udp_port.protocol, Protocol::Udp);
        let udp_before = lab.service_counters(&svc, udp_port, 1).unwrap();
        let tcp_before = lab.service_counters(&svc, tcp_port, 1).unwrap();
        // An echo server in the server pod: answers every datagram, at most N, for 5 s.
        let server = lab
            .spawn_in(Target::Pod("server"), move || {
                let s = UdpSocket::bind(SocketAddrV4::new(server_ip, 5353)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = [0u8; 64];
                let mut echoed = 0;
                while echoed < N {
                    let Ok((n, from)) = s.recv_from(&mut buf) else {
                        break;
                    };
                    s.send_to(&buf[..n], from).unwrap();
                    echoed += 1;
                }
                echoed
            })
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let svc_addr = SocketAddr::new(svc.ip.into(), 53);
        let replies: Vec<SocketAddr> = lab
            .run_in(Target::Pod("client"), move || {
                let c = UdpSocket::bind("0.0.0.0:0").unwrap();
                c.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut from = Vec::new();
                let mut buf = [0u8; 64];
                for i in 0..N {
                    c.send_to(format!("ping {i}").as_bytes(), svc_addr).unwrap();
                    if let Ok((_, src)) = c.recv_from(&mut buf) {
                        from.push(src);
                    }
                }
                from
            })
            .unwrap();
        let echoed = server.join().unwrap();
        assert_eq!(echoed, N, "{proxy}: every datagram reached the endpoint");
        assert_eq!(replies.len(), N, "{proxy}: every reply came back");
        assert!(
            replies.iter().all(|a| *a == svc_addr),
            "{proxy}: replies come from the service address: {replies:?}"
        );
        let udp_after = lab.service_counters(&svc, udp_port, 1).unwrap();
        let tcp_after = lab.service_counters(&svc, tcp_port, 1).unwrap();
        println!(
            "{proxy}: UDP DNAT {udp_before:?} -> {udp_after:?}, TCP {tcp_before:?} -> {tcp_after:?}"
        );
        assert!(
            udp_after[0] > udp_before[0],
            "{proxy}: the UDP DNAT rule counted: {udp_before:?} -> {udp_after:?}"
        );
        assert_eq!(tcp_after, tcp_before, "{proxy}: the TCP rule saw nothing");
        lab.down().unwrap();
    }
}
