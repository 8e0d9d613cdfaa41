//! `netload server`: the stream server, plus the rr responder and, with `--http`, the HTTP
//! server, all living as long as it does.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::http::{HttpServerArgs, http_server_config};
use super::positive_seconds;
use crate::control::DEFAULT_PORT;
use crate::server::{Server, ServerConfig};
use crate::spec::Limits;
use crate::{http, rr, signals};

/// Flags of `netload server`.
#[derive(Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Port (TCP for control and data, UDP for UDP streams).
    #[arg(short, long, default_value_t = DEFAULT_PORT)]
    port: u16,
    /// Serve one test, then exit.
    #[arg(long)]
    once: bool,
    /// Longest test (warm-up included) a client may ask for, seconds.
    #[arg(long, default_value_t = 3600.0, value_parser = positive_seconds)]
    max_duration: f64,
    /// Most parallel streams per direction a client may ask for.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_parallel: u32,
    /// Tests running at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    max_sessions: u32,
    /// Port of the request/response responder for `netload rr` (TCP and UDP); 0 = off.
    /// Without this flag the responder tries port 9202 and is skipped, with a warning, when
    /// that port is taken.
    #[arg(long)]
    rr_port: Option<u16>,
    /// Also serve iperf3 3.x clients (`iperf3 -c HOST -p PORT`) on this port, TCP and UDP;
    /// 5201 when given without a value.
    #[arg(long, num_args = 0..=1, default_missing_value = "5201")]
    iperf3_port: Option<u16>,
    /// HTTP server options (`--http PORT` turns it on).
    #[command(flatten)]
    http: HttpServerArgs,
}

/// `netload server`: serves until SIGINT or SIGTERM (or, with `--once`, one test).
pub fn run(args: &ServerArgs) -> Result<ExitCode> {
    let config = ServerConfig {
        bind: SocketAddr::new(args.bind, args.port),
        limits: Limits {
            max_duration_s: args.max_duration,
            max_parallel: args.max_parallel,
        },
        max_sessions: args.max_sessions as usize,
        once: args.once,
        iperf3_port: args.iperf3_port,
        ..ServerConfig::default()
    };
    let server = Server::bind(config)
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    // The responder and the HTTP server live as long as the stream server.
    let _rr = match args.rr_port {
        Some(0) => None,
        Some(port) => Some(
            rr::serve(
                SocketAddr::new(args.bind, port),
                rr::RrServerConfig::default(),
            )
            .with_context(|| format!("cannot start the rr responder on port {port}"))?,
        ),
        None => {
            let addr = SocketAddr::new(args.bind, rr::DEFAULT_RR_PORT);
            rr::serve(addr, rr::RrServerConfig::default())
                .inspect_err(|e| eprintln!("netload server: no rr responder on {addr}: {e}"))
                .ok()
        }
    };
    let _http = args
        .http
        .http
        .map(|port| {
            let config = http_server_config(&args.http).map_err(anyhow::Error::msg)?;
            http::server::HttpServer::bind(SocketAddr::new(args.http.http_bind, port), config)
                .with_context(|| format!("cannot start the HTTP server on port {port}"))
        })
        .transpose()?;
    signals::raise_on_stop(&server.shutdown_flag()).context("installing signal handlers")?;
    eprintln!("netload server listening on {}", server.local_addr()?);
    if let Some(addr) = server.iperf3_addr() {
        eprintln!("netload server: iperf3 clients served on {addr}");
    }
    server.run().context("server failed")?;
    Ok(ExitCode::SUCCESS)
}
