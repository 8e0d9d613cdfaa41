//! SIGINT and SIGTERM, handled the same way by every subcommand: a measuring client raises a
//! flag and still reports what it measured, a server blocks them and waits for one.
//!
//! `netload idle` waits for its own, larger set ([`crate::idle::wait_for_stop`]).

use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use nix::sys::signal::{SigSet, Signal};
use signal_hook::consts::{SIGINT, SIGTERM};

/// A flag raised by the first SIGINT or SIGTERM, so a measuring run can stop early and
/// still report what it measured; a second signal exits at once with status 130.
pub fn interrupt_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Order matters: the shutdown is armed by the flag the second handler sets.
        signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&flag))?;
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// Raises `flag` on every SIGINT or SIGTERM, for a server loop that polls it.
pub fn raise_on_stop(flag: &Arc<AtomicBool>) -> io::Result<()> {
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(flag))?;
    }
    Ok(())
}

/// SIGINT and SIGTERM, the signals that stop a server.
pub fn stop_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set
}
