//! Root tier: `netload server`, `rr-server`, `http-server` and `idle` stop on SIGTERM after
//! the address or the link they are bound to is deleted (what happens to a lab pod's
//! servers when a killed run's namespaces are cleaned). Each runs inside a namespace of a
//! veth pair the test creates (198.18.0.0/15 only), removed by the pair's guard; the
//! process is killed by its own guard when an assertion fails.

mod root;

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use netload::netns::{ADDR_A, VethPair};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use root::require_root;

/// Kills the child on drop so a failing assertion leaves no process behind.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Longest a stop may take: the servers poll their stop flag every 100-200 ms and give
/// open HTTP responses 1.5 s; anything near this bound is a hang, not a slow stop.
const STOP_BOUND: Duration = Duration::from_secs(5);

/// What the test takes away from under the running process.
#[derive(Debug, Clone, Copy)]
enum Break {
    /// `ip addr del` of the bound address (the link stays up).
    Address,
    /// `ip link del` of the veth (its peer goes too, and every address on it).
    Link,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether process `pid` sees a TCP socket listening on `port` in its own namespace
/// (`/proc/<pid>/net/tcp`; `st` 0A is LISTEN).
fn listens(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")) else {
        return false;
    };
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() > 3
            && f[3] == "0A"
            && f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
                == Some(port)
    })
}

/// Whether process `pid` sleeps in sigwait (how `idle` waits for its signal).
fn in_sigwait(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("sigtimedwait"))
}

/// Starts `netload ARGS` inside namespace A of a fresh pair, waits until it is ready
/// (listening on every port of `ports`, or in sigwait when there is none), optionally
/// holds a TCP connection to `ports[0]` from namespace B, takes away what `brk` says, sends
/// SIGTERM and asserts that the process exits 0 within [`STOP_BOUND`].
fn stops_after(brk: Break, args: &[&str], ports: &[u16], connect: bool) {
    let pair = VethPair::create(1500).expect("veth pair");
    let mut child = Child(
        Command::new("ip")
            .args(["netns", "exec", &pair.a, env!("CARGO_BIN_EXE_netload")])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn netload in the namespace"),
    );
    // `ip netns exec` execs netload, so the child's pid is netload's.
    let pid = child.0.id();
    let ready = |pid| {
        if ports.is_empty() {
            in_sigwait(pid)
        } else {
            ports.iter().all(|&p| listens(pid, p))
        }
    };
    let deadline = netload::clock::now() + Duration::from_secs(10);
    while !ready(pid) {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "netload {args:?} exited before it was ready"
        );
        assert!(
            netload::clock::now() < deadline,
            "netload {args:?} not ready in 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // An open connection puts the server in another state than idle accepting: a thread
    // reading a request (or a hello) that will never come.
    let _held: Option<TcpStream> = connect.then(|| {
        let to = SocketAddr::from((ADDR_A, ports[0]));
        VethPair::run_in(&pair.b, move || {
            TcpStream::connect_timeout(&to, Duration::from_secs(2))
        })
        .unwrap()
        .join()
        .unwrap()
        .unwrap()
        .expect("connect from namespace B")
    });
    match brk {
        Break::Address => ip(&[
            "-n",
            &pair.a,
            "addr",
            "del",
            &format!("{ADDR_A}/30"),
            "dev",
            "veth0",
        ]),
        Break::Link => ip(&["-n", &pair.a, "link", "del", "veth0"]),
    }
    let start = netload::clock::now();
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            netload::clock::now() - start < STOP_BOUND,
            "netload {args:?} still running {STOP_BOUND:?} after SIGTERM ({brk:?} deleted)"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(
        status.success(),
        "netload {args:?} after {brk:?} deletion: {status}"
    );
}

fn a() -> String {
    ADDR_A.to_string()
}

#[test]
fn netns_server_stops_on_sigterm_after_its_address_or_link_is_deleted() {
    if !require_root() {
        return;
    }
    let bind = a();
    // Without --rr-port the server also runs its rr responder on the default port.
    let args = ["server", "--bind", &bind, "--port", "5201"];
    let ports = [5201, netload::rr::DEFAULT_RR_PORT];
    for brk in [Break::Address, Break::Link] {
        stops_after(brk, &args, &ports, true);
    }
}

#[test]
fn netns_rr_server_stops_on_sigterm_after_its_address_or_link_is_deleted() {
    if !require_root() {
        return;
    }
    let bind = a();
    let args = ["rr-server", "--bind", &bind, "--port", "9202"];
    for brk in [Break::Address, Break::Link] {
        stops_after(brk, &args, &[9202], true);
    }
}

#[test]
fn netns_http_server_stops_on_sigterm_after_its_address_or_link_is_deleted() {
    if !require_root() {
        return;
    }
    let bind = a();
    let args = [
        "http-server",
        "--http",
        "8080",
        "--http-bind",
        &bind,
        "--body-size",
        "1KiB",
    ];
    for brk in [Break::Address, Break::Link] {
        stops_after(brk, &args, &[8080], true);
    }
}

#[test]
fn netns_idle_stops_on_sigterm_after_its_namespace_loses_its_link() {
    if !require_root() {
        return;
    }
    for brk in [Break::Address, Break::Link] {
        stops_after(brk, &["idle"], &[], false);
    }
}
