//! `netload idle`: the filler pod of scale scenarios (replaces a pause image).
//!
//! The process blocks SIGTERM, SIGINT and SIGHUP and waits for one of them with
//! `sigwait`: no runtime, no threads, no timers, so it costs a few hundred kilobytes of
//! memory and no CPU, and exits 0 as soon as it is told to stop.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use clap::Args;
use nix::sys::signal::{SigSet, Signal};

/// A flag raised by the first SIGINT or SIGTERM, so a measuring run can stop early and
/// still report what it measured; a second signal exits at once with status 130.
pub fn interrupt_flag() -> std::io::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the shutdown is armed by the flag the second handler sets.
        signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(flag)
}

/// Options of `netload idle` (none yet; kept as a struct so flags can be added).
#[derive(Debug, Clone, Default, Args)]
pub struct IdleArgs {}

/// Blocks until SIGTERM, SIGINT or SIGHUP arrives and returns the signal received.
///
/// Must be called before any other thread is started, so that no thread is left with the
/// signals unblocked (they would then take the default action: termination).
pub fn run(_args: &IdleArgs) -> nix::Result<Signal> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.thread_block()?;
    set.wait()
}
