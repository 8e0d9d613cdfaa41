//! `netload bench`: the local microbenchmark, on loopback or between two namespaces.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

use super::positive_seconds;
use crate::bench;

/// Flags of `netload bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Run between two network namespaces joined by a veth pair (root) instead of loopback.
    #[arg(long)]
    netns: bool,
    /// MTU of the veth pair.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(1280..=65535))]
    mtu: u32,
    /// Seconds per case.
    #[arg(short = 't', long = "time", default_value_t = 3.0, value_parser = positive_seconds)]
    time: f64,
    /// Run only these cases (comma separated); see `--list`.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// List the cases and exit.
    #[arg(long)]
    list: bool,
    /// Write a Markdown report here.
    #[arg(long)]
    report: Option<std::path::PathBuf>,
    /// Write every case's JSON report here (one JSON array).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

/// `netload bench`: runs the cases, prints the table and writes the reports asked for;
/// status 3 when a case failed.
pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    let all = bench::standard_cases(args.time);
    if args.list {
        for c in &all {
            println!("{}", c.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cases: Vec<_> = if args.only.is_empty() {
        all
    } else {
        for name in &args.only {
            if !all.iter().any(|c| c.name == name) {
                let known: Vec<_> = all.iter().map(|c| c.name).collect();
                super::usage_error(
                    clap::error::ErrorKind::InvalidValue,
                    format!(
                        "unknown case {name:?} for --only (known: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        all.into_iter()
            .filter(|c| args.only.iter().any(|n| n == c.name))
            .collect()
    };
    let path = if args.netns {
        format!("veth pair between two network namespaces, MTU {}", args.mtu)
    } else {
        "loopback".to_string()
    };
    eprintln!(
        "netload bench on {path}: {} cases of {} s",
        cases.len(),
        args.time
    );
    let results = bench::run(&cases, args.netns, args.mtu, &mut |name| {
        eprintln!("  running {name}");
    })?;
    print!("{}", bench::terminal(&results));
    if let Some(p) = &args.report {
        std::fs::write(p, bench::markdown(&results, &path))
            .with_context(|| format!("writing {}", p.display()))?;
        eprintln!("report written to {}", p.display());
    }
    if let Some(p) = &args.json {
        let docs: Vec<_> = results
            .iter()
            .map(|r| match &r.outcome {
                Ok(rep) => serde_json::json!({ "case": r.name, "report": rep }),
                Err(e) => serde_json::json!({ "case": r.name, "error": e }),
            })
            .collect();
        std::fs::write(p, serde_json::to_string_pretty(&docs)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    let failed = results.iter().filter(|r| r.outcome.is_err()).count();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
