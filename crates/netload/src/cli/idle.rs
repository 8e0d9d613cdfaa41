//! `netload idle`: the filler pod of scale scenarios.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Args;

/// Options of `netload idle` (none yet; kept as a struct so flags can be added).
#[derive(Debug, Clone, Default, Args)]
pub struct IdleArgs {}

/// `netload idle`: sleeps until SIGTERM, SIGINT or SIGHUP, then exits 0.
pub fn run(_args: &IdleArgs) -> Result<ExitCode> {
    crate::idle::wait_for_stop()
        .map(|_| ExitCode::SUCCESS)
        .context("waiting for a signal")
}
