//! The I/O edge: runs planned [`Step`]s with iproute2, iptables-restore and nft, and runs
//! closures on threads inside a namespace.

use std::fs::File;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use super::LabError;
use super::plan::{Plan, Step};

/// Directory where iproute2 keeps named network namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Most tool processes run at once within one phase.
const MAX_PARALLEL: usize = 8;

/// Runs `program args` with `input` on stdin; returns stdout. Errors name the command,
/// its status, the failing batch line when the tool reports one, and stderr. The tool dies
/// with cnibench ([`crate::child::die_with_parent`]).
pub fn run_tool(
    program: &str,
    args: &[&str],
    input: Option<&str>,
    shown: &str,
) -> Result<String, LabError> {
    let mut child = crate::child::die_with_parent(&mut Command::new(program))
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| LabError::Spawn {
            command: shown.to_owned(),
            source,
        })?;
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // A tool that dies early closes its stdin; its stderr explains why.
        let _ = stdin.write_all(text.as_bytes());
    }
    let out = child.wait_with_output().map_err(|source| LabError::Spawn {
        command: shown.to_owned(),
        source,
    })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    Err(LabError::Command {
        command: shown.to_owned(),
        status: out.status.to_string(),
        line: failed_line(&stderr, input.unwrap_or_default()),
        stderr: truncate(&stderr, 2000),
    })
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `ip -batch` says "Command failed -:N"; iptables-restore "line N failed"; nft
/// "/dev/stdin:N:…". Returns ` at line N: <text>` or an empty string.
pub fn failed_line(stderr: &str, input: &str) -> String {
    let n = stderr
        .split("Command failed -:")
        .nth(1)
        .or_else(|| stderr.split("line ").nth(1))
        .or_else(|| stderr.split("/dev/stdin:").nth(1))
        .and_then(|rest| {
            rest.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<usize>()
                .ok()
        });
    match n.and_then(|n| input.lines().nth(n.checked_sub(1)?).map(|l| (n, l))) {
        Some((n, l)) => format!(" at line {n}: {}", truncate(l, 300)),
        None => String::new(),
    }
}

/// Runs one step.
pub fn run_step(step: &Step) -> Result<(), LabError> {
    let shown = step.command();
    let input = step.input();
    match step {
        Step::Ip { netns, force, .. } => {
            let mut args: Vec<&str> = Vec::new();
            if let Some(n) = netns {
                args.extend(["-n", n]);
            }
            if *force {
                args.push("-force");
            }
            args.extend(["-batch", "-"]);
            run_tool("ip", &args, Some(&input), &shown).map(drop)
        }
        Step::Bridge { netns, .. } => run_tool(
            "bridge",
            &["-n", netns, "-batch", "-"],
            Some(&input),
            &shown,
        )
        .map(drop),
        Step::Sysctl { netns, settings } => {
            let kv: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let mut args = vec!["netns", "exec", netns, "sysctl", "-qw"];
            args.extend(kv.iter().map(String::as_str));
            run_tool("ip", &args, None, &shown).map(drop)
        }
        Step::IptablesRestore { netns, noflush, .. } => {
            let mut args = vec!["netns", "exec", netns, "iptables-restore"];
            if *noflush {
                args.push("--noflush");
            }
            run_tool("ip", &args, Some(&input), &shown).map(drop)
        }
        Step::Nft { netns, .. } => run_tool(
            "ip",
            &["netns", "exec", netns, "nft", "-f", "-"],
            Some(&input),
            &shown,
        )
        .map(drop),
    }
}

/// Runs a plan: phases in order, the steps of a phase in parallel (at most 8 at once).
/// Stops at the first phase with a failure and returns its first error.
pub fn run_plan(plan: &Plan) -> Result<(), LabError> {
    for phase in &plan.phases {
        for chunk in phase.chunks(MAX_PARALLEL) {
            if let [only] = chunk {
                run_step(only)?;
                continue;
            }
            let results: Vec<Result<(), LabError>> = thread::scope(|s| {
                let handles: Vec<_> = chunk.iter().map(|st| s.spawn(|| run_step(st))).collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("step thread does not panic"))
                    .collect()
            });
            results.into_iter().collect::<Result<Vec<()>, _>>()?;
        }
    }
    Ok(())
}

/// Runs `program args` inside `netns` (with `ip netns exec`) and returns stdout.
pub fn output_in(netns: &str, program: &str, args: &[&str]) -> Result<String, LabError> {
    let mut full = vec!["netns", "exec", netns, program];
    full.extend_from_slice(args);
    let shown = format!("ip {}", full.join(" "));
    run_tool("ip", &full, None, &shown)
}

/// Ids of the processes whose network namespace is `netns` (`ip netns pids`).
pub fn pids_in(netns: &str) -> Result<Vec<i32>, LabError> {
    let out = run_tool(
        "ip",
        &["netns", "pids", netns],
        None,
        &format!("ip netns pids {netns}"),
    )?;
    Ok(out
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// A closure running on a thread inside a network namespace.
#[derive(Debug)]
pub struct NetnsThread<T> {
    netns: String,
    handle: thread::JoinHandle<Option<T>>,
}

impl<T> NetnsThread<T> {
    /// Waits for the closure and returns its value.
    pub fn join(self) -> Result<T, LabError> {
        match self.handle.join() {
            Ok(Some(v)) => Ok(v),
            // `None` only when setns failed, which `spawn_in` already reported.
            Ok(None) | Err(_) => Err(LabError::Panicked { netns: self.netns }),
        }
    }

    /// Whether the closure has returned.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }
}

/// Starts `f` on a new thread that has entered network namespace `netns` (a name under
/// /run/netns) with `setns`; threads `f` spawns are in that namespace too, and sockets it
/// opens stay there wherever they are used later. Returns once the thread is inside.
pub fn spawn_in<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<NetnsThread<T>, LabError> {
    let path = format!("{NETNS_DIR}/{netns}");
    let setns_err = |source| LabError::Setns {
        netns: netns.to_owned(),
        source,
    };
    let file = File::open(&path).map_err(setns_err)?;
    let (tx, rx) = mpsc::channel();
    let handle = thread::Builder::new()
        .name(format!("in-{netns}"))
        .spawn(move || {
            match nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET) {
                Ok(()) => {
                    let _ = tx.send(Ok(()));
                }
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::from(e)));
                    // Never run `f` outside the namespace.
                    return None;
                }
            }
            Some(f())
        })
        .map_err(setns_err)?;
    match rx.recv() {
        Ok(Ok(())) => Ok(NetnsThread {
            netns: netns.to_owned(),
            handle,
        }),
        Ok(Err(e)) => Err(setns_err(e)),
        Err(_) => Err(LabError::Panicked {
            netns: netns.to_owned(),
        }),
    }
}

/// Runs `f` inside `netns` and waits for its result.
pub fn run_in<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LabError> {
    spawn_in(netns, f)?.join()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_batch_lines_are_named() {
        let input = "link set lo up\nlink add x type nope\n";
        assert_eq!(
            failed_line("Error: Unknown device type.\nCommand failed -:2", input),
            " at line 2: link add x type nope"
        );
        assert_eq!(
            failed_line("iptables-restore: line 1 failed", "*nat\n"),
            " at line 1: *nat"
        );
        assert_eq!(
            failed_line("/dev/stdin:2:3-7: Error: syntax error", input),
            " at line 2: link add x type nope"
        );
        assert_eq!(failed_line("something else", input), "");
    }

    #[test]
    fn failing_tools_report_command_and_stderr() {
        let e = run_tool("sh", &["-c", "echo oops >&2; exit 3"], None, "sh -c oops")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`sh -c oops` failed"), "{e}");
        assert!(e.contains("oops"), "{e}");
        let e = run_tool("/nonexistent/tool", &[], None, "tool").unwrap_err();
        assert!(matches!(e, LabError::Spawn { .. }), "{e}");
    }
}
