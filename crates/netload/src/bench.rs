//! `netload bench`: microbenchmarks netload against itself on one host, with an in-process
//! server, on loopback or (as root, `--netns`) across a veth pair between two namespaces.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::client::{self, ClientError, ClientOptions};
use crate::netns::{self, VethPair};
use crate::render;
use crate::report::StreamReport;
use crate::server::{Server, ServerConfig};
use crate::spec::{Protocol, TestSpec, Zerocopy};

/// A named test of the benchmark.
#[derive(Debug, Clone)]
pub struct BenchCase {
    /// Short name, usable with `--only`.
    pub name: &'static str,
    /// What runs.
    pub spec: TestSpec,
}

/// The standard cases: the modes a user compares first.
pub fn standard_cases(duration_s: f64) -> Vec<BenchCase> {
    let tcp = |f: &dyn Fn(&mut TestSpec)| {
        let mut s = TestSpec::new(Protocol::Tcp);
        s.duration_s = duration_s;
        s.omit_s = 0.5;
        f(&mut s);
        s
    };
    let udp = |f: &dyn Fn(&mut TestSpec)| {
        let mut s = TestSpec::new(Protocol::Udp);
        s.duration_s = duration_s;
        s.omit_s = 0.5;
        f(&mut s);
        s
    };
    vec![
        BenchCase {
            name: "tcp",
            spec: tcp(&|_| {}),
        },
        BenchCase {
            name: "tcp-P2",
            spec: tcp(&|s| s.parallel = 2),
        },
        BenchCase {
            name: "tcp-sendfile",
            spec: tcp(&|s| s.zerocopy = Zerocopy::Sendfile),
        },
        BenchCase {
            name: "tcp-sendfile-discard",
            spec: tcp(&|s| {
                s.zerocopy = Zerocopy::Sendfile;
                s.rx_discard = true;
            }),
        },
        BenchCase {
            name: "tcp-msg-zerocopy",
            spec: tcp(&|s| s.zerocopy = Zerocopy::Msg),
        },
        BenchCase {
            name: "tcp-mss1448",
            spec: tcp(&|s| s.mss = Some(1448)),
        },
        BenchCase {
            name: "udp-1400-offload",
            spec: udp(&|_| {}),
        },
        BenchCase {
            name: "udp-1400-batch",
            spec: udp(&|s| s.udp_gso = false),
        },
        BenchCase {
            name: "udp-1400-plain",
            spec: udp(&|s| {
                s.udp_gso = false;
                s.udp_batch = false;
            }),
        },
    ]
}

/// Result of one case.
#[derive(Debug)]
pub struct BenchResult {
    /// Case name.
    pub name: &'static str,
    /// The report, or why the case failed.
    pub outcome: Result<StreamReport, String>,
}

/// Why the bench could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Namespaces or veth could not be created.
    #[error("cannot build the veth path (needs root / CAP_NET_ADMIN and iproute2): {0}")]
    Netns(#[source] std::io::Error),
    /// The in-process server could not start.
    #[error("cannot start the in-process server: {0}")]
    Server(#[source] std::io::Error),
}

/// Runs `cases` on loopback, or across a veth pair (MTU `mtu`) when `netns` is set;
/// `progress` is told when each case starts.
pub fn run(
    cases: &[BenchCase],
    use_netns: bool,
    mtu: u32,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<BenchResult>, BenchError> {
    if use_netns {
        netns::remove_stale();
        let pair = VethPair::create(mtu).map_err(BenchError::Netns)?;
        let server_addr = SocketAddr::new(IpAddr::V4(netns::ADDR_B), crate::control::DEFAULT_PORT);
        let (tx, rx) = std::sync::mpsc::channel();
        let server_thread = VethPair::run_in(&pair.b, move || {
            let config = ServerConfig {
                bind: server_addr,
                ..ServerConfig::default()
            };
            match Server::bind(config) {
                Ok(server) => {
                    let stop = server.shutdown_flag();
                    let _ = tx.send(Ok(stop));
                    server.run()
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    Ok(())
                }
            }
        })
        .map_err(BenchError::Netns)?;
        let stop = rx
            .recv()
            .map_err(|_| BenchError::Server(std::io::Error::other("server thread died")))?
            .map_err(BenchError::Server)?;
        let mut results = Vec::new();
        for case in cases {
            progress(case.name);
            let spec = case.spec.clone();
            let host = netns::ADDR_B.to_string();
            let outcome =
                VethPair::run_in(&pair.a, move || run_case(&host, server_addr.port(), spec))
                    .map_err(BenchError::Netns)?
                    .join()
                    .map_err(|_| {
                        BenchError::Netns(std::io::Error::other("client thread panicked"))
                    })?
                    .map_err(BenchError::Netns)?;
            results.push(BenchResult {
                name: case.name,
                outcome,
            });
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = server_thread.join();
        drop(pair);
        Ok(results)
    } else {
        let config = ServerConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            ..ServerConfig::default()
        };
        let server = Server::bind(config)
            .map_err(BenchError::Server)?
            .spawn()
            .map_err(BenchError::Server)?;
        let port = server.addr.port();
        let results = cases
            .iter()
            .map(|case| {
                progress(case.name);
                BenchResult {
                    name: case.name,
                    outcome: run_case("127.0.0.1", port, case.spec.clone()),
                }
            })
            .collect();
        server.stop();
        Ok(results)
    }
}

fn run_case(host: &str, port: u16, spec: TestSpec) -> Result<StreamReport, String> {
    let mut opts = ClientOptions::new(host, port, spec);
    opts.phase_timeout = Duration::from_secs(10);
    match client::run_stream_test(&opts, &mut |_| {}) {
        Ok(outcome) if outcome.errors.is_empty() => Ok(outcome.report),
        Ok(outcome) => Err(outcome.errors.join("; ")),
        Err(e) => Err(error_chain(&e)),
    }
}

fn error_chain(e: &ClientError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let _ = write!(s, ": {inner}");
        src = inner.source();
    }
    s
}

/// Markdown table of the results, with CPU per Gbit/s on both ends.
pub fn markdown(results: &[BenchResult], path: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# netload bench ({path})\n");
    let _ = writeln!(
        out,
        "| case | receiver Gbit/s | sender Gbit/s | retrans / loss | process CPU per Gbit/s (both ends) | node softirq share | effective settings |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---|");
    for r in results {
        match &r.outcome {
            Ok(rep) => {
                let recv: f64 = rep.flows.iter().map(|f| f.receiver_bits_per_second).sum();
                let send: f64 = rep.flows.iter().map(|f| f.sender_bits_per_second).sum();
                let loss = rep
                    .flows
                    .iter()
                    .map(|f| match (f.retransmits, f.loss_percent) {
                        (_, Some(l)) => format!("{l:.2}% lost"),
                        (Some(r), None) => format!("{r} retr"),
                        _ => "-".into(),
                    });
                let gbit_s = recv / 1e9;
                // Client and server run in this one process, so either side's getrusage
                // figure is the cost of both ends.
                let c = &rep.client.cpu;
                let per_gbit = if gbit_s > 0.0 && c.window_s > 0.0 {
                    format!(
                        "{:.3}",
                        (c.process_user_s + c.process_system_s) / c.window_s / gbit_s
                    )
                } else {
                    "-".into()
                };
                let node_total = c.node.busy() + c.node.idle + c.node.iowait;
                let softirq_share = if node_total > 0.0 {
                    format!("{:.0}%", c.node.softirq * 100.0 / node_total)
                } else {
                    "-".into()
                };
                let settings = format!(
                    "mss {}, zerocopy {}, gso {}, gro {}",
                    rep.client.mss.map_or("-".into(), |m| m.to_string()),
                    rep.client.settings.zerocopy,
                    rep.client
                        .settings
                        .udp_gso_segment
                        .or(rep.server.settings.udp_gso_segment)
                        .map_or("off".into(), |g| g.to_string()),
                    rep.server
                        .settings
                        .udp_gro
                        .or(rep.client.settings.udp_gro)
                        .map_or("-".into(), |g| g.to_string()),
                );
                let _ = writeln!(
                    out,
                    "| {} | {:.2} | {:.2} | {} | {per_gbit} | {softirq_share} | {settings} |",
                    r.name,
                    recv / 1e9,
                    send / 1e9,
                    loss.collect::<Vec<_>>().join(", "),
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "| {} | failed: {} | | | | | |",
                    r.name,
                    e.replace('|', "/")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\nProcess CPU per Gbit/s: CPU seconds per second of test (getrusage, client and server together) per Gbit/s of receiver goodput; lower is better.\nNode softirq share: softirq time over all of this host's CPU time in the window (/proc/stat), where the network stack runs."
    );
    out
}

/// Plain-text summary lines for the terminal.
pub fn terminal(results: &[BenchResult]) -> String {
    let mut out = String::new();
    for r in results {
        match &r.outcome {
            Ok(rep) => {
                let recv: f64 = rep.flows.iter().map(|f| f.receiver_bits_per_second).sum();
                let _ = writeln!(out, "{:<22} {:>16}", r.name, render::rate(recv));
            }
            Err(e) => {
                let _ = writeln!(out, "{:<22} failed: {e}", r.name);
            }
        }
    }
    out
}
