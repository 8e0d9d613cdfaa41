//! `netload rr HOST` (request/response latency) and `netload rr-server` (the responder).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use super::print_report;
use crate::rr::{
    CloseBy, DEFAULT_RR_PORT, RrMode, RrServer, RrServerConfig, RrSizes, RrSpec, RrSpecError,
    UDP_REQ_HEADER, UDP_RESP_HEADER, execute_until, render_table,
};
use crate::{signals, spec};

/// Flags of `netload rr`.
#[derive(Debug, Clone, Args)]
pub struct RrArgs {
    /// Host running `netload rr-server`.
    pub host: String,
    /// Responder port.
    #[arg(short = 'p', long, default_value_t = DEFAULT_RR_PORT)]
    pub port: u16,
    /// Transaction kind.
    #[arg(long, value_enum, default_value = "tcp-rr")]
    pub mode: RrMode,
    /// Request and response sizes, `REQ[/RESP]` bytes (K/M suffixes allowed).
    /// Default: 1/1 for TCP modes (as netperf), the smallest datagrams that hold the
    /// sequence header for udp-rr.
    #[arg(long, value_name = "REQ[/RESP]")]
    pub size: Option<RrSizes>,
    /// Measured duration, seconds.
    #[arg(short = 't', long, value_name = "SECS", default_value_t = 10.0)]
    pub time: f64,
    /// Parallel connections (one thread each).
    #[arg(short = 'P', long, value_name = "N", default_value_t = 1)]
    pub parallel: u32,
    /// Open loop: transactions per second in total, latency from the intended send time.
    #[arg(long, value_name = "TPS")]
    pub rate: Option<f64>,
    /// Interval report period, seconds (0 = totals only).
    #[arg(short = 'i', long, value_name = "SECS", default_value_t = 1.0)]
    pub interval: f64,
    /// A transaction not answered within this many seconds is a timeout.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub timeout: f64,
    /// tcp-crr: which end closes each connection first. `server` (default) leaves no
    /// TIME_WAIT socket on the client, so a long run does not exhaust its ports.
    #[arg(long, value_enum, default_value = "server")]
    pub close: CloseBy,
    /// Pin client threads (and, later via the control protocol, server threads):
    /// `C1,C2[/S1,S2]`.
    #[arg(long, value_name = "CORES")]
    pub affinity: Option<String>,
    /// Spin on non-blocking sockets instead of sleeping in the kernel while waiting for a
    /// response (lower latency, one busy core per thread).
    #[arg(long)]
    pub busy_poll: bool,
    /// Print the versioned JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl RrArgs {
    /// The validated spec these flags ask for.
    pub fn spec(&self) -> Result<RrSpec, RrSpecError> {
        let (client_affinity, server_affinity) = match &self.affinity {
            Some(a) => spec::parse_affinity(a).map_err(|problem| RrSpecError {
                flag: "--affinity",
                problem,
            })?,
            None => (Vec::new(), Vec::new()),
        };
        let (request_size, response_size) = match (&self.size, self.mode) {
            (Some(s), _) => (s.request, s.response),
            (None, RrMode::UdpRr) => (UDP_REQ_HEADER as u32, UDP_RESP_HEADER as u32),
            (None, RrMode::TcpRr | RrMode::TcpCrr) => (1, 1),
        };
        let spec = RrSpec {
            host: self.host.clone(),
            port: self.port,
            mode: self.mode,
            request_size,
            response_size,
            duration_s: self.time,
            parallel: self.parallel,
            rate: self.rate,
            interval_s: self.interval,
            timeout_s: self.timeout,
            close: self.close,
            client_affinity,
            server_affinity,
            busy_poll: self.busy_poll,
        };
        spec.validate()?;
        Ok(spec)
    }
}

/// Flags of `netload rr-server`.
#[derive(Debug, Clone, Args)]
pub struct RrServerArgs {
    /// Address to bind (TCP and UDP).
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind: IpAddr,
    /// Port (TCP and UDP).
    #[arg(short = 'p', long, default_value_t = DEFAULT_RR_PORT)]
    pub port: u16,
    /// Most concurrent TCP connections.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Pin connection threads to these cores (cycled).
    #[arg(long, value_name = "CORES")]
    pub affinity: Option<String>,
}

/// `netload rr`: runs the test and prints the table (or JSON with `--json`); an error when
/// no transaction completed, so the exit status tells a script the responder was never
/// reached.
pub fn run(args: &RrArgs) -> Result<ExitCode> {
    let spec = args.spec()?;
    let report = execute_until(&spec, &signals::interrupt_flag()?)?;
    print_report(args.json, &report, render_table)?;
    if report.transactions == 0 {
        let kinds: Vec<&str> = report.errors.keys().map(|k| k.as_str()).collect();
        anyhow::bail!(
            "no transaction completed with {}:{} (errors: {})",
            spec.host,
            spec.port,
            kinds.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `netload rr-server`: serves until SIGINT or SIGTERM.
pub fn run_server(args: &RrServerArgs) -> Result<ExitCode> {
    let affinity = match &args.affinity {
        Some(a) => spec::parse_core_list(a).map_err(anyhow::Error::msg)?,
        None => Vec::new(),
    };
    let signals = signals::stop_signals();
    signals.thread_block().context("blocking signals")?;
    let addr = SocketAddr::new(args.bind, args.port);
    let server = RrServer::bind(
        addr,
        RrServerConfig {
            max_connections: args.max_connections.max(1),
            affinity,
            ..RrServerConfig::default()
        },
    )
    .with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "netload rr responder on {} (tcp and udp)",
        server.local_addr()
    );
    let _ = signals.wait();
    server.shutdown();
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> RrArgs {
        RrArgs {
            host: "127.0.0.1".into(),
            port: 1,
            mode: RrMode::UdpRr,
            size: None,
            time: 1.0,
            parallel: 1,
            rate: None,
            interval: 1.0,
            timeout: 1.0,
            close: CloseBy::Server,
            affinity: Some("0/1".into()),
            busy_poll: false,
            json: false,
        }
    }

    #[test]
    fn default_sizes_fit_the_mode() {
        let s = args().spec().unwrap();
        assert_eq!((s.request_size, s.response_size), (16, 8));
        let mut tcp = args();
        tcp.mode = RrMode::TcpCrr;
        let s = tcp.spec().unwrap();
        assert_eq!((s.request_size, s.response_size), (1, 1));
    }

    #[test]
    fn spec_validation_names_the_flag() {
        let s = args().spec().unwrap();
        assert_eq!(s.client_affinity, vec![0]);
        assert_eq!(s.server_affinity, vec![1]);
        let flag = |f: &dyn Fn(&mut RrArgs)| {
            let mut a = args();
            f(&mut a);
            a.spec().unwrap_err().flag
        };
        assert_eq!(
            flag(&|a| a.size = Some(RrSizes {
                request: 8,
                response: 8
            })),
            "--size"
        );
        assert_eq!(flag(&|a| a.parallel = 0), "--parallel");
        assert_eq!(flag(&|a| a.rate = Some(0.0)), "--rate");
        assert_eq!(flag(&|a| a.interval = 0.001), "--interval");
        assert_eq!(flag(&|a| a.time = -1.0), "--time");
        assert_eq!(flag(&|a| a.affinity = Some("x".into())), "--affinity");
    }
}
