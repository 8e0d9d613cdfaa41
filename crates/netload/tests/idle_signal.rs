//! `netload idle` exits 0 promptly on SIGTERM and SIGINT.

use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Whether `pid` sleeps in sigwait (the kernel unblocks the awaited signals for the
/// duration of the wait, so `SigBlk` cannot tell; the wait channel can).
fn in_sigwait(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("sigtimedwait"))
}

fn stops_on(sig: Signal) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_netload"))
        .arg("idle")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn netload idle");
    let pid = child.id();
    // Wait (bounded) until it waits for the signal, so the signal cannot kill it by default.
    for _ in 0..200 {
        if in_sigwait(pid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "idle exited before the signal"
    );
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    assert!(rss_kb < 16 * 1024, "idle uses {rss_kb} kB");
    kill(Pid::from_raw(pid as i32), sig).unwrap();
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status:?}");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    panic!("netload idle did not exit within 1 s of {sig}");
}

#[test]
fn idle_exits_zero_on_sigterm() {
    stops_on(Signal::SIGTERM);
}

#[test]
fn idle_exits_zero_on_sigint() {
    stops_on(Signal::SIGINT);
}
