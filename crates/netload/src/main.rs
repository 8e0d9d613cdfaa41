//! `netload` command line (temporary wiring of the HTTP, request/response and idle modes;
//! merged into the stream engine's CLI later).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use netload::{http, idle, rr};

/// Self-contained network load generator and sink.
#[derive(Debug, Parser)]
#[command(name = "netload", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sleep until SIGTERM/SIGINT (filler pod).
    Idle(idle::IdleArgs),
    /// HTTP/1.1 GETs: connect time, TTFB, total time, per-replica counts.
    Http(http::client::HttpArgs),
    /// Serve generated HTTP bodies (`--http PORT`).
    HttpServer(http::server::HttpServerArgs),
    /// Request/response latency (tcp-rr, tcp-crr, udp-rr).
    Rr(rr::RrArgs),
    /// Responder for `netload rr`.
    RrServer(rr::RrServerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Idle(args) => idle::run(&args)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("waiting for a signal: {e}")),
        Command::Http(args) => http::client::run(&args).map(|_| ()),
        Command::HttpServer(args) => http::server::run(&args),
        Command::Rr(args) => rr::run(&args).map(|_| ()),
        Command::RrServer(args) => rr::run_server(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netload: {e:#}");
            ExitCode::FAILURE
        }
    }
}
