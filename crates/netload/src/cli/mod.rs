//! The `netload` command line: every subcommand's flags (clap derive) and the function that
//! runs it, printing to stdout/stderr and returning the process exit code.
//!
//! `main.rs` only parses [`Cli`] and calls one `run` here per [`Command`]; the measuring
//! code below this module takes validated specs and never sees a flag.
//!
//! Exit codes: 0 success; 1 an error (printed once by `main`); 2 a usage error (clap's, also
//! for a spec that fails validation); 3 a test that ran but failed (a stream error, no
//! passing rate, a failed bench case); 130 interrupted by SIGINT/SIGTERM.
//!
//! Layout:
//! - [`server`]: `netload server`, with the rr responder and HTTP server it also runs;
//! - [`stream`]: `netload tcp` and `netload udp` (with `--find-rate`), against netload or
//!   iperf3;
//! - [`rr`]: `netload rr` and `netload rr-server`; [`http`]: `netload http` and
//!   `netload http-server`;
//! - [`mod@bench`]: `netload bench`; [`idle`]: `netload idle`; [`probe`]: `netload probe`;
//!   [`schema`]: `netload schema`.

pub mod bench;
pub mod http;
pub mod idle;
pub mod probe;
pub mod rr;
pub mod schema;
pub mod server;
pub mod stream;

use clap::{CommandFactory, Parser, Subcommand};

/// Network load generator and sink: TCP/UDP streams with CPU accounting.
#[derive(Parser)]
#[command(name = "netload", version, about)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, each with its flags.
#[derive(Subcommand)]
pub enum Command {
    /// Serve tests (control and data on one TCP port, UDP on the same port number).
    Server(server::ServerArgs),
    /// TCP stream throughput test against a netload server.
    Tcp(stream::TcpArgs),
    /// UDP stream throughput test against a netload server.
    Udp(stream::UdpArgs),
    /// Microbenchmark netload on this host: in-process server, loopback or a veth pair.
    Bench(bench::BenchArgs),
    /// Request/response latency: tcp-rr, tcp-crr (connect per transaction), udp-rr.
    Rr(rr::RrArgs),
    /// HTTP/1.1 GETs against one or more URLs: connect time, TTFB, per-replica counts.
    Http(http::HttpArgs),
    /// Sleep until SIGTERM/SIGINT: the filler pod of scale scenarios.
    Idle(idle::IdleArgs),
    /// Wait until a TCP port answers (or, `--want closed`, stops answering).
    Probe(probe::ProbeArgs),
    /// Only the request/response responder (`netload server` also runs one on `--rr-port`).
    RrServer(rr::RrServerArgs),
    /// Only the HTTP server (`netload server --http PORT` also runs one).
    HttpServer(http::HttpServerArgs),
    /// Print the JSON Schema of `--json` stream reports (or of `udp --find-rate --json`).
    Schema(schema::SchemaArgs),
}

/// Prints a report as pretty JSON or as the given table.
pub(crate) fn print_report<T: serde::Serialize>(
    json: bool,
    report: &T,
    table: impl FnOnce(&T) -> String,
) -> serde_json::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", table(report));
    }
    Ok(())
}

/// Exits with clap's usage error (status 2) for a value that parsed but is not allowed.
pub(crate) fn usage_error(kind: clap::error::ErrorKind, message: impl std::fmt::Display) -> ! {
    Cli::command().error(kind, message).exit()
}

pub(crate) fn positive_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number of seconds")),
    }
}

pub(crate) fn non_negative_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not zero or a positive number of seconds")),
    }
}

pub(crate) fn loss_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..100.0).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a loss percentage from 0 to below 100"
        )),
    }
}

pub(crate) fn resolution_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 50.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a resolution in percent above 0 and at most 50"
        )),
    }
}

pub(crate) fn parse_byte_size(s: &str) -> Result<u64, String> {
    s.parse::<crate::spec::ByteSize>().map(|b| b.0)
}
