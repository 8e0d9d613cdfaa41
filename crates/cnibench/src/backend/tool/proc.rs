//! Started processes: a [`Proc`] guard whose output threads keep pipes from filling up,
//! bounded waits that honour Ctrl-C, and how to tell that a started server listens.
//!
//! Every tool a backend runs locally (netload, iperf3, directly or behind `ip netns exec`)
//! goes through here.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::backend::{BackendError, Cancel};
use crate::clock;

/// A started process whose output is collected by threads (no pipe can fill up).
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

impl Proc {
    /// Starts `binary ARGS` behind a command `prefix` (e.g. `ip netns exec NS`, which
    /// enters the namespace and execs the binary, so the child's pid is the tool's; an
    /// empty prefix runs it directly), named `name` in errors, with `run_id` in its
    /// environment as [`crate::child::RUN_ID_ENV`]. It dies with cnibench
    /// ([`crate::child::die_with_parent`]).
    pub(crate) fn spawn(
        prefix: &[String],
        run_id: Option<&str>,
        name: &str,
        binary: &Path,
        args: &[String],
        capture_stdout: bool,
    ) -> Result<Proc, BackendError> {
        let name = name.to_string();
        let mut command = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        if let Some(id) = run_id {
            command.env(crate::child::RUN_ID_ENV, id);
        }
        let mut child = crate::child::die_with_parent(&mut command)
            .args(args)
            .stdin(Stdio::null())
            .stdout(if capture_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BackendError::Spawn {
                tool: name.clone(),
                path: binary.display().to_string(),
                source,
            })?;
        let stdout = child.stdout.take().map(collect);
        let stderr = child.stderr.take().map(collect);
        Ok(Proc {
            name,
            child,
            stdout,
            stderr,
        })
    }

    /// Waits until `ready(pid)` says the server listens on `port`; fails when the server
    /// exits, the run is cancelled, or 10 s pass.
    pub(crate) fn wait_ready(
        &mut self,
        port: u16,
        cancel: &Cancel,
        mut ready: impl FnMut(u32) -> bool,
    ) -> Result<(), BackendError> {
        let deadline = clock::now() + Duration::from_secs(10);
        let pid = self.child.id();
        loop {
            if ready(pid) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let (_, err) = self.output();
                return Err(BackendError::Tool {
                    tool: self.name.clone(),
                    status: status.to_string(),
                    stderr: tail(&err),
                });
            }
            if cancel.is_cancelled() {
                return Err(BackendError::Cancelled);
            }
            if clock::now() >= deadline {
                return Err(BackendError::Timeout {
                    tool: format!("{} (listening on port {port})", self.name),
                    seconds: 10,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for exit within `limit`, polling `cancel`; kills the process on timeout or
    /// cancellation.
    pub(crate) fn wait(
        &mut self,
        limit: Duration,
        cancel: &Cancel,
    ) -> Result<ExitStatus, BackendError> {
        let deadline = clock::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|source| BackendError::Io {
                action: format!("cannot wait for {}", self.name),
                source,
            })? {
                return Ok(status);
            }
            if cancel.is_cancelled() {
                self.kill();
                return Err(BackendError::Cancelled);
            }
            if clock::now() >= deadline {
                self.kill();
                return Err(BackendError::Timeout {
                    tool: self.name.clone(),
                    seconds: limit.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn output(&mut self) -> (String, String) {
        let take = |h: Option<JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        (take(self.stdout.take()), take(self.stderr.take()))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// The version of `binary` as `binary --version` prints it: the part of its stdout that
/// `pick` chooses, or `unknown (<stderr>)` when it fails or prints nothing.
pub(crate) fn version(
    name: &str,
    binary: &Path,
    pick: impl Fn(&str) -> Option<&str>,
) -> Result<String, BackendError> {
    let mut p = Proc::spawn(&[], None, name, binary, &["--version".into()], true)?;
    let status = p.wait(Duration::from_secs(10), &Cancel::default())?;
    let (out, err) = p.output();
    Ok(match pick(&out) {
        Some(v) if status.success() && !v.trim().is_empty() => v.trim().to_string(),
        _ => format!("unknown ({})", tail(&err)),
    })
}

/// The last five non-empty lines of `s`, joined: what an error shows of a tool's stderr.
pub(crate) fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let start = lines.len().saturating_sub(5);
    let t = lines[start..].join(" | ");
    if t.is_empty() {
        "no output on stderr".into()
    } else {
        t
    }
}

/// The first non-empty line of `s` (clap's error line, without the usage text).
pub(crate) fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output on stderr")
        .to_string()
}

/// Whether `/proc/net/tcp{,6}` lists a socket in LISTEN state on `port`; `None` when the
/// tables cannot be read.
pub(crate) fn listening(port: u16) -> Option<bool> {
    let mut readable = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        if listening_in(&text, port) {
            return Some(true);
        }
    }
    readable.then_some(false)
}

/// Whether process `pid` sees a socket listening on `port` in its own network namespace
/// (`/proc/<pid>/net/tcp` is per namespace).
pub(crate) fn listening_pid(pid: u32, port: u16) -> bool {
    [
        format!("/proc/{pid}/net/tcp"),
        format!("/proc/{pid}/net/tcp6"),
    ]
    .iter()
    .filter_map(|t| std::fs::read_to_string(t).ok())
    .any(|t| listening_in(&t, port))
}

/// Parses one `/proc/net/tcp` table (pure, tested).
pub(crate) fn listening_in(table: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    crate::carryover::tcp_table(table).any(|(local, state)| {
        state == "0A" && local.rsplit_once(':').is_some_and(|(_, p)| p == want)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:2339 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 2 1 0 100 0 0 10 0\n";
        assert!(listening_in(table, 0x2339));
        assert!(!listening_in(table, 0x1F90), "established, not listening");
        assert!(!listening_in(table, 80));
    }
}
