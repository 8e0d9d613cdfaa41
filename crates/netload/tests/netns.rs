//! Root tier: the stream engine between two network namespaces joined by a veth pair
//! (198.18.0.0/15 only). Namespaces are removed by a guard, also when a test fails.

use netload::bench::{self, BenchCase};
use netload::spec::{Direction, Protocol, TestSpec, Zerocopy};

fn require_root() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("NETLOAD_SKIP_ROOT_TESTS").is_some(),
        "network-namespace tests need root; set NETLOAD_SKIP_ROOT_TESTS=1 to skip them knowingly"
    );
    false
}

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
