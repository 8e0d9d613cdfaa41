//! `netload probe HOST`: waits until a TCP port answers (`--want open`) or stops answering
//! (`--want closed`); what an orchestrator asks of a datapath before measuring it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{print_report, usage_error};
use crate::probe::{self, ProbeSpec, Want};

/// Flags of `netload probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// Host or address to connect to.
    pub host: String,
    /// TCP port.
    #[arg(short = 'p', long)]
    pub port: u16,
    /// The answer to wait for: a connection (`open`), or `--closed-streak` failed
    /// connections in a row (`closed`).
    #[arg(long, value_enum, default_value = "open")]
    pub want: Want,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    pub within: f64,
    /// One attempt's connect timeout, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub connect_timeout: f64,
    /// Pause between attempts, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 0.2)]
    pub interval: f64,
    /// Failed connections in a row that count as closed.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub closed_streak: u32,
    /// Print the JSON report (every attempt) instead of one line.
    #[arg(long)]
    pub json: bool,
}

fn invalid(e: probe::ProbeSpecError) -> ! {
    usage_error(clap::error::ErrorKind::ValueValidation, e)
}

fn seconds(flag: &str, s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or_else(|_| {
        usage_error(
            clap::error::ErrorKind::ValueValidation,
            format!("{flag} {s}: not a number of seconds"),
        )
    })
}

/// `netload probe`: exit 0 when the wanted answer came, 3 when the deadline passed first.
pub fn run(args: &ProbeArgs) -> Result<ExitCode> {
    let mut spec = ProbeSpec::new(&args.host, args.port, args.want).unwrap_or_else(|e| invalid(e));
    spec.within = seconds("--within", args.within);
    spec.connect_timeout = seconds("--connect-timeout", args.connect_timeout);
    spec.interval = seconds("--interval", args.interval);
    spec.closed_streak = args.closed_streak;
    if let Err(e) = spec.validate() {
        invalid(e)
    }
    let report = probe::run(&spec);
    print_report(args.json, &report, |r| format!("{}\n", r.summary()))?;
    Ok(if report.reached {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
