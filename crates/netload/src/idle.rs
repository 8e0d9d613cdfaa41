//! `netload idle`: the filler pod of scale scenarios (replaces a pause image).
//!
//! The process blocks SIGTERM, SIGINT and SIGHUP and waits for one of them with
//! `sigwait`: no runtime, no threads, no timers, so it costs a few hundred kilobytes of
//! memory and no CPU, and exits 0 as soon as it is told to stop.

use nix::sys::signal::{SigSet, Signal};

/// Blocks until SIGTERM, SIGINT or SIGHUP arrives and returns the signal received.
///
/// Must be called before any other thread is started, so that no thread is left with the
/// signals unblocked (they would then take the default action: termination).
pub fn wait_for_stop() -> nix::Result<Signal> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.thread_block()?;
    set.wait()
}
