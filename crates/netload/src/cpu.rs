//! CPU accounting over a measured window: this process (getrusage) and the whole node
//! (`/proc/stat`), so softirq time, where the network stack and a CNI's datapath mostly
//! run, is seen as well as the process's own.

use std::time::Instant;

use crate::clock;
use crate::report::{CpuReport, NodeCpu};

/// Kernel clock ticks per second of `/proc/stat` (USER_HZ). Linux fixes it at 100 on every
/// architecture for user-space ABI stability (see `man 5 proc`, "/proc/stat").
pub const USER_HZ: f64 = 100.0;

/// Counters of the aggregate `cpu` line of `/proc/stat`, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProcStatTicks {
    /// user, nice, system, idle, iowait, irq, softirq, steal.
    pub fields: [u64; 8],
    /// Lines named `cpuN`.
    pub cores: u32,
}

/// Parses `/proc/stat` text; `None` when the aggregate line is missing or malformed.
pub fn parse_proc_stat(text: &str) -> Option<ProcStatTicks> {
    let mut ticks = ProcStatTicks::default();
    let mut found = false;
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        match words.next() {
            Some("cpu") => {
                for (slot, word) in ticks.fields.iter_mut().zip(words.by_ref()) {
                    *slot = word.parse().ok()?;
                }
                found = true;
            }
            Some(name) if name.starts_with("cpu") => ticks.cores += 1,
            _ => {}
        }
    }
    found.then_some(ticks)
}

/// One reading of both clocks of CPU time.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    at: Instant,
    user_s: f64,
    system_s: f64,
    node: Option<ProcStatTicks>,
}

impl CpuSample {
    /// Reads getrusage(RUSAGE_SELF) and `/proc/stat` now.
    pub fn take() -> Self {
        let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
        let (user_s, system_s) = usage.map_or((0.0, 0.0), |u| {
            (timeval_s(u.user_time()), timeval_s(u.system_time()))
        });
        let node = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_proc_stat(&t));
        CpuSample {
            at: clock::now(),
            user_s,
            system_s,
            node,
        }
    }
}

fn timeval_s(tv: nix::sys::time::TimeVal) -> f64 {
    tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6
}

/// CPU used between two samples, with per-GB figures for `bytes` moved.
pub fn window(start: &CpuSample, end: &CpuSample, bytes: u64) -> CpuReport {
    let node = match (start.node, end.node) {
        (Some(a), Some(b)) => node_delta(&a, &b),
        _ => NodeCpu::default(),
    };
    let process_user_s = (end.user_s - start.user_s).max(0.0);
    let process_system_s = (end.system_s - start.system_s).max(0.0);
    let gb = bytes as f64 / 1e9;
    let per_gb = |secs: f64| (bytes > 0).then(|| secs / gb);
    CpuReport {
        window_s: end.at.saturating_duration_since(start.at).as_secs_f64(),
        process_user_s,
        process_system_s,
        process_s_per_gb: per_gb(process_user_s + process_system_s),
        node,
        node_busy_s_per_gb: per_gb(node.busy()),
    }
}

/// Seconds spent in each state between two `/proc/stat` readings.
pub fn node_delta(start: &ProcStatTicks, end: &ProcStatTicks) -> NodeCpu {
    let d = |i: usize| end.fields[i].saturating_sub(start.fields[i]) as f64 / USER_HZ;
    NodeCpu {
        cores: end.cores,
        user: d(0),
        nice: d(1),
        system: d(2),
        idle: d(3),
        iowait: d(4),
        irq: d(5),
        softirq: d(6),
        steal: d(7),
    }
}

/// The core a task last ran on: field 39 (`processor`) of `/proc/<pid>/task/<tid>/stat`.
/// The command name (field 2) may hold spaces and parentheses, so fields are counted from
/// the last `)`.
pub fn parse_stat_processor(stat: &str) -> Option<usize> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; `processor` is field 39.
    after_name.split_whitespace().nth(39 - 3)?.parse().ok()
}

/// Voluntary and involuntary context switches from the text of `/proc/.../status`.
pub fn parse_status_switches(status: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    Some((
        field("voluntary_ctxt_switches:")?,
        field("nonvoluntary_ctxt_switches:")?,
    ))
}

/// The core thread `tid` of this process is on now (or last ran on).
pub fn thread_core(tid: i32) -> Option<usize> {
    parse_stat_processor(&std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?)
}

/// The calling thread's context switches so far (voluntary, involuntary).
pub fn own_switches() -> Option<(u64, u64)> {
    parse_status_switches(&std::fs::read_to_string("/proc/thread-self/status").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 5 200 1000 10 3 40 0 0 0\ncpu0 50 2 100 500 5 1 20 0 0 0\ncpu1 50 3 100 500 5 2 20 0 0 0\nintr 1 2 3\n";

    #[test]
    fn parses_aggregate_line_and_counts_cores() {
        let t = parse_proc_stat(STAT).unwrap();
        assert_eq!(t.fields, [100, 5, 200, 1000, 10, 3, 40, 0]);
        assert_eq!(t.cores, 2);
        assert_eq!(parse_proc_stat("intr 1\n"), None);
        assert_eq!(parse_proc_stat("cpu 1 x 3\n"), None);
    }

    #[test]
    fn delta_is_in_seconds_and_never_negative() {
        let a = parse_proc_stat(STAT).unwrap();
        let mut b = a;
        b.fields[6] += 250; // softirq
        b.fields[3] += 100; // idle
        let d = node_delta(&a, &b);
        assert!((d.softirq - 2.5).abs() < 1e-9);
        assert!((d.idle - 1.0).abs() < 1e-9);
        assert!((d.busy() - 2.5).abs() < 1e-9);
        let back = node_delta(&b, &a);
        assert!(back.softirq.abs() < f64::EPSILON);
    }

    #[test]
    fn real_sample_window_is_consistent() {
        let a = CpuSample::take();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = CpuSample::take();
        let r = window(&a, &b, 1_000_000_000);
        assert!(r.process_user_s >= 0.0 && r.process_system_s >= 0.0);
        assert!(r.window_s > 0.0);
        assert!(r.node.cores >= 1);
        assert!(r.process_s_per_gb.is_some());
        assert_eq!(window(&a, &b, 0).process_s_per_gb, None);
    }

    #[test]
    fn thread_stat_and_status_fields() {
        // A command name with spaces and a parenthesis must not shift the fields.
        let stat = "4242 (stream 0) x) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 20 0 3 0 100 2000 300 \
            18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat_processor(stat), Some(1));
        assert_eq!(parse_stat_processor("garbage"), None);
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_status_switches(status), Some((12, 3)));
        assert_eq!(parse_status_switches("Name: x\n"), None);
        // This thread, read for real.
        assert!(own_switches().is_some());
        assert!(thread_core(nix::unistd::gettid().as_raw()).is_some());
    }
}
