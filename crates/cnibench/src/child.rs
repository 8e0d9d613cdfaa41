//! Processes cnibench starts cannot outlive it, and the ones a killed run left are ended.
//!
//! Every process a backend starts (netload, iperf3, and the iproute2/iptables/nft helpers)
//! goes through [`die_with_parent`]: the kernel sends it SIGKILL when cnibench dies, also
//! by SIGKILL, when no handler or `Drop` of ours runs. [`RUN_ID_ENV`] in their environment
//! names the run they belong to. What still runs in a lab's namespaces after all (a process
//! started by hand, or by a cnibench without this) is ended by `cnibench clean` with
//! [`end`]: SIGTERM, a grace period, then SIGKILL.
//!
//! This is the one module of cnibench with `unsafe` code: [`std::os::unix::process::CommandExt::pre_exec`]
//! is the only place to make a syscall in the child between fork and exec.
#![allow(unsafe_code)]

use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::clock;

/// Environment variable holding the cnibench run id in every process a backend starts, so
/// the processes of a run can be found (`grep -l CNIBENCH_RUN_ID=ID /proc/*/environ`).
pub const RUN_ID_ENV: &str = "CNIBENCH_RUN_ID";

/// Poll period while waiting for processes to exit.
const POLL: Duration = Duration::from_millis(20);

/// Makes the process `command` starts get SIGKILL when its parent dies (PR_SET_PDEATHSIG).
///
/// SIGKILL, not SIGTERM: a child whose parent died has nobody to report to, and a stop it
/// could ignore or hang in is what left servers behind. The kernel sends the signal when
/// the *thread* that spawned the child exits, so spawn from a thread that lives as long as
/// the child should (the runner's thread; a helper's thread that waits for it).
pub fn die_with_parent(command: &mut Command) -> &mut Command {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec. It makes two syscalls,
    // prctl and getppid, both async-signal-safe, and neither allocates nor takes a lock
    // (the error is a raw errno), so it is sound after fork in a multithreaded process.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            // The parent may have died between fork and prctl; then no signal would come.
            if nix::unistd::getppid() != parent {
                return Err(Errno::ESRCH.into());
            }
            Ok(())
        })
    }
}

/// A process ended by [`end`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Process id.
    pub pid: i32,
    /// Its command line (arguments joined by spaces), or `?` when it was unreadable.
    pub command: String,
    /// Whether it needed SIGKILL (it was still running `grace` after SIGTERM).
    pub killed: bool,
}

/// Whether `pid` runs: it exists and is not a zombie (a zombie's program has ended; only
/// its parent's wait is missing).
fn running(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may contain any
    // byte, so look after the last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

fn command_line(pid: i32) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if args.is_empty() {
        "?".into()
    } else {
        args.join(" ")
    }
}

/// Waits until none of `pids` runs, at most `limit`; returns those still running.
fn wait_gone(pids: &[i32], limit: Duration) -> Vec<i32> {
    let deadline = clock::now() + limit;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| running(p)).collect();
        if left.is_empty() || clock::now() >= deadline {
            return left;
        }
        std::thread::sleep(POLL);
    }
}

/// Ends processes `pids`: SIGTERM to each, up to `grace` for them to exit, then SIGKILL to
/// those still running (and up to `grace` again for the kernel to take them). Returns the
/// processes that were running, in the order given; pids already gone are skipped.
pub fn end(pids: &[i32], grace: Duration) -> Vec<Ended> {
    let mut ended: Vec<Ended> = Vec::new();
    for &pid in pids {
        if pid <= 1 || !running(pid) || ended.iter().any(|e| e.pid == pid) {
            continue;
        }
        // Read before the signal: a process that has exited has no command line.
        let command = command_line(pid);
        // An error means it went in between, or is not ours to signal: nothing was ended.
        if kill(Pid::from_raw(pid), Signal::SIGTERM).is_ok() {
            ended.push(Ended {
                pid,
                command,
                killed: false,
            });
        }
    }
    let termed: Vec<i32> = ended.iter().map(|e| e.pid).collect();
    let stubborn = wait_gone(&termed, grace);
    for e in &mut ended {
        if stubborn.contains(&e.pid) && kill(Pid::from_raw(e.pid), Signal::SIGKILL).is_ok() {
            e.killed = true;
        }
    }
    if !stubborn.is_empty() {
        wait_gone(&stubborn, grace);
    }
    ended
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    /// A child of the test, reaped on drop.
    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn spawn(script: &str) -> Reaped {
        let child = die_with_parent(Command::new("sh").args(["-c", script]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Reaped(child)
    }

    #[test]
    fn children_die_with_the_thread_that_spawned_them() {
        use std::os::unix::process::ExitStatusExt as _;
        // The death signal follows the spawning thread, so a thread that exits stands in
        // for a cnibench killed by SIGKILL; without it this sleep would run for 30 s.
        let mut child = std::thread::spawn(|| spawn("exec sleep 30"))
            .join()
            .unwrap();
        let deadline = clock::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                clock::now() < deadline,
                "the child outlived its parent thread"
            );
            std::thread::sleep(POLL);
        };
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
    }

    #[test]
    fn term_then_kill_ends_even_what_ignores_term() {
        // The shell ignores TERM and so does the sleep it execs (SIG_IGN is inherited).
        let stubborn = spawn("trap '' TERM; exec sleep 30");
        let polite = spawn("exec sleep 30");
        let pids = [stubborn.0.id() as i32, polite.0.id() as i32];
        // Until the shell has run `trap`, a TERM would end it at once.
        let deadline = clock::now() + Duration::from_secs(5);
        while !command_line(pids[0]).starts_with("sleep") {
            assert!(clock::now() < deadline, "the shell never exec'd sleep");
            std::thread::sleep(POLL);
        }
        let ended = end(&pids, Duration::from_millis(300));
        assert_eq!(ended.len(), 2, "{ended:?}");
        assert_eq!(ended[0].command, "sleep 30");
        assert!(ended[0].killed, "{ended:?}");
        assert!(!ended[1].killed, "{ended:?}");
        assert!(pids.iter().all(|&p| !running(p)));
        // Already ended (zombies until reaped): nothing more to end.
        assert!(end(&pids, Duration::from_millis(100)).is_empty());
    }
}
