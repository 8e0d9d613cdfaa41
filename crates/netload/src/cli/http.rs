//! `netload http URL...` (the TTFB client) and `netload http-server` (the server with
//! generated bodies, also run by `netload server --http PORT`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use super::{parse_byte_size, print_report};
use crate::http::client::{ClientError, execute_until, render_table, validate};
use crate::http::server::{HttpServer, ServerConfig, default_threads, hostname};
use crate::http::{self, HttpSpec};
use crate::signals;
use crate::spec::CloseBy;

/// Flags of `netload http`.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Target URLs (`http://HOST[:PORT][/PATH]`), requested in turn.
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Concurrent workers, each with at most one request in flight.
    #[arg(short = 'c', long, value_name = "N", default_value_t = 1)]
    pub concurrency: u32,
    /// Total number of requests (default: run for `--time`).
    #[arg(short = 'n', long, value_name = "N", conflicts_with = "time")]
    pub requests: Option<u64>,
    /// Run for this many seconds (default 10 when `-n` is not given).
    #[arg(short = 't', long, value_name = "SECS")]
    pub time: Option<f64>,
    /// Open loop: send this many requests per second in total, measuring latency from each
    /// request's intended send time.
    #[arg(long, value_name = "TPS")]
    pub rate: Option<f64>,
    /// Open a new TCP connection for every request (no keep-alive).
    #[arg(long)]
    pub new_connection: bool,
    /// With --new-connection: which end closes each connection first. `server` (default)
    /// sends `Connection: close` and waits for the server's close, so the client keeps no
    /// TIME_WAIT socket and a long run does not exhaust its ports; `client` closes first,
    /// as curl does; `reset` aborts with an RST.
    #[arg(long, value_enum, default_value = "server")]
    pub close: CloseBy,
    /// Per-request timeout (connect, headers and body), seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub timeout: f64,
    /// OS threads, each running a single-threaded runtime with its share of the workers
    /// (default: the smaller of the CPU count and `-c`).
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Print the versioned JSON report instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl HttpArgs {
    /// The validated spec these flags ask for.
    pub fn spec(&self) -> Result<HttpSpec, ClientError> {
        let duration_s = match (self.requests, self.time) {
            (None, None) => Some(10.0),
            (_, t) => t,
        };
        let threads = self.threads.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
            (cpus as u32).min(self.concurrency).max(1)
        });
        let spec = HttpSpec {
            urls: self.urls.clone(),
            concurrency: self.concurrency,
            requests: self.requests,
            duration_s,
            rate: self.rate,
            new_connection: self.new_connection,
            close: self.close,
            timeout_s: self.timeout,
            threads,
        };
        validate(&spec)?;
        Ok(spec)
    }
}

/// Flags of the HTTP server, named so that they can be flattened into `netload server`.
#[derive(Debug, Clone, Args)]
pub struct HttpServerArgs {
    /// Serve HTTP on this TCP port.
    #[arg(long = "http", value_name = "PORT")]
    pub http: Option<u16>,
    /// Address the HTTP listener binds to.
    #[arg(long, value_name = "ADDR", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub http_bind: IpAddr,
    /// Body size served on `/` (K/M/G are binary multiples).
    #[arg(long, visible_alias = "file-size", value_name = "BYTES", default_value = "10MiB", value_parser = parse_byte_size)]
    pub body_size: u64,
    /// Largest N accepted on `/bytes/N`.
    #[arg(long, value_name = "BYTES", default_value = "1GiB", value_parser = parse_byte_size)]
    pub max_body_size: u64,
    /// Name of this replica in the `x-netload-replica` header (default: the hostname,
    /// which is the pod name on Kubernetes).
    #[arg(long, env = http::REPLICA_ENV, value_name = "NAME")]
    pub replica: Option<String>,
    /// Most open HTTP connections; further ones wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub http_max_connections: usize,
    /// Seconds a client has to send a complete request head; also the keep-alive idle timeout.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub http_header_timeout: f64,
    /// Seconds a response write may make no progress (a client that stopped reading)
    /// before the connection is dropped.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub http_write_timeout: f64,
    /// Largest request head (start line and headers) accepted, bytes; larger gets a 431.
    #[arg(long, value_name = "BYTES", default_value = "16K", value_parser = parse_byte_size)]
    pub http_max_header_size: u64,
    /// Requests served per connection before it is closed (0 = unlimited).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub http_max_requests_per_connection: u64,
    /// Size of the shared body chunk handed to hyper per frame.
    #[arg(long, value_name = "BYTES", default_value = "256K", value_parser = parse_byte_size)]
    pub http_chunk_size: u64,
    /// OS threads, each with a single-threaded runtime accepting on the shared listener
    /// (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub http_threads: Option<usize>,
}

/// Server settings from the command line; the replica falls back to the hostname.
pub fn http_server_config(args: &HttpServerArgs) -> Result<ServerConfig, String> {
    if !(args.http_header_timeout.is_finite() && args.http_header_timeout > 0.0) {
        return Err("--http-header-timeout must be a positive number of seconds".into());
    }
    if !(args.http_write_timeout.is_finite() && args.http_write_timeout > 0.0) {
        return Err("--http-write-timeout must be a positive number of seconds".into());
    }
    let config = ServerConfig {
        body_size: args.body_size,
        max_body_size: args.max_body_size,
        replica: args.replica.clone().unwrap_or_else(hostname),
        max_connections: args.http_max_connections,
        header_timeout: Duration::from_secs_f64(args.http_header_timeout),
        write_timeout: Duration::from_secs_f64(args.http_write_timeout),
        max_header_size: usize::try_from(args.http_max_header_size).unwrap_or(usize::MAX),
        max_requests_per_connection: args.http_max_requests_per_connection,
        chunk_size: usize::try_from(args.http_chunk_size).unwrap_or(usize::MAX),
        threads: args.http_threads.unwrap_or_else(default_threads),
    };
    config.validate()?;
    Ok(config)
}

/// `netload http`: runs the test and prints the table (or JSON with `--json`). The report
/// is printed whatever happened; the result is an error when no request succeeded, so the
/// exit status tells a script that the target was never reached.
pub fn run(args: &HttpArgs) -> Result<ExitCode> {
    let spec = args.spec()?;
    let report = execute_until(&spec, &signals::interrupt_flag()?)?;
    print_report(args.json, &report, render_table)?;
    if report.totals.ok == 0 {
        let first = report
            .errors
            .iter()
            .next()
            .map_or_else(String::new, |(k, e)| {
                format!(": {} ({})", e.example, k.as_str())
            });
        anyhow::bail!("no request succeeded{first}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `netload http-server`: serves until SIGINT or SIGTERM.
pub fn run_server(args: &HttpServerArgs) -> Result<ExitCode> {
    let port = args.http.context("--http PORT is required")?;
    let config = http_server_config(args).map_err(anyhow::Error::msg)?;
    let replica = config.replica.clone();
    let addr = SocketAddr::new(args.http_bind, port);
    // Block the stop signals before any runtime thread exists: threads inherit the mask,
    // so the signal stays pending for the sigwait below instead of killing the process.
    let signals = signals::stop_signals();
    signals.thread_block().context("blocking signals")?;
    let server = HttpServer::bind(addr, config).with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "netload http server on {} (replica {replica})",
        server.local_addr()
    );
    let _ = signals.wait();
    server.shutdown();
    Ok(ExitCode::SUCCESS)
}
