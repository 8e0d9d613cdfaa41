//! `netload` command line: parses arguments and calls the library, one function per
//! subcommand ([`netload::cli`] holds the flags and those functions).

use std::process::ExitCode;

use clap::Parser;
use netload::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Server(args) => cli::server::run(&args),
        Command::Tcp(args) => cli::stream::tcp(&args),
        Command::Udp(args) => cli::stream::udp(&args),
        Command::Bench(args) => cli::bench::run(&args),
        Command::Rr(args) => cli::rr::run(&args),
        Command::Http(args) => cli::http::run(&args),
        Command::Idle(args) => cli::idle::run(&args),
        Command::Probe(args) => cli::probe::run(&args),
        Command::RrServer(args) => cli::rr::run_server(&args),
        Command::HttpServer(args) => cli::http::run_server(&args),
        Command::Schema(args) => cli::schema::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("netload: {e:#}");
            ExitCode::FAILURE
        }
    }
}
