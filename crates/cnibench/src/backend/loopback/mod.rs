//! Real netload processes on 127.0.0.1: no root, no cluster. A user's first minute and CI.
//!
//! Per repetition: pick a free port, start `netload server --once` on it, wait until the
//! kernel shows the port listening (bounded polling of `/proc/net/tcp`: connecting to
//! probe would spend the server's single session), run the client with `--json`, collect
//! its output and the server's exit. Points that need a second node, a service or cluster
//! objects cannot be reproduced on one loopback interface: they are reported as not
//! applicable, never approximated.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{
    Backend, BackendError, Cancel, Readiness, RepOutcome, rr_args, rr_server_args, stream_args,
};
use crate::carryover::StartState;
use crate::clock;
use crate::metrics;
use crate::scenario::{PathKind, Placement, Point, Tool, Workload};

/// Finds the netload binary: `explicit` (from `--netload` or `NETLOAD`), else next to the
/// running executable (also one directory up, for test binaries in `target/*/deps`).
pub fn locate_netload(explicit: Option<&Path>) -> Result<PathBuf, BackendError> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(BackendError::ToolMissing {
                tool: "netload".into(),
                detail: format!(
                    "{} does not exist or is not a file (from --netload or NETLOAD)",
                    p.display()
                ),
            })
        };
    }
    let exe = std::env::current_exe().map_err(|source| BackendError::Io {
        action: "cannot find the running executable".into(),
        source,
    })?;
    let mut tried = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join("netload");
        if candidate.is_file() {
            return Ok(candidate);
        }
        tried.push(candidate.display().to_string());
        dir = d.parent();
    }
    Err(BackendError::ToolMissing {
        tool: "netload".into(),
        detail: format!(
            "looked at {}; build it (`cargo build -p netload`), or pass --netload PATH or set NETLOAD",
            tried.join(", ")
        ),
    })
}

/// The loopback backend.
#[derive(Debug)]
pub struct LoopbackBackend {
    netload: PathBuf,
    version: String,
    support: BTreeMap<&'static str, Option<String>>,
    iperf3: Option<(PathBuf, String)>,
}

/// A started process whose output is collected by threads (no pipe can fill up).
pub(crate) struct Proc {
    pub(crate) name: String,
    pub(crate) child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Proc {
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
}

/// Waits for a netload client (nominal duration plus 30 s) and turns a failed exit into the
/// matching error; returns its stdout and stderr.
pub(crate) fn finish_client(
    client: &mut Proc,
    point: &Point,
    cancel: &Cancel,
) -> Result<(String, String), BackendError> {
    let limit = point.workload.nominal_duration() + Duration::from_secs(30);
    let status = client.wait(limit, cancel)?;
    let (out, err) = client.output();
    if status.success() {
        return Ok((out, err));
    }
    if unrecognized(&err) {
        return Err(BackendError::NotSupported {
            what: client.name.clone(),
            reason: format!(
                "not yet supported by this netload build ({})",
                first_line(&err)
            ),
        });
    }
    Err(BackendError::Tool {
        tool: client.name.clone(),
        status: status.to_string(),
        stderr: tail(&err),
    })
}

/// Parses a netload client's JSON output and extracts the point's metrics.
pub(crate) fn client_outcome(
    tool: &str,
    out: &str,
    err: &str,
    point: &Point,
) -> Result<RepOutcome, BackendError> {
    let raw: serde_json::Value =
        serde_json::from_str(out.trim()).map_err(|e| BackendError::Output {
            tool: tool.to_string(),
            message: if out.trim().is_empty() {
                format!("no JSON on stdout (stderr: {})", tail(err))
            } else {
                format!("invalid JSON: {e}")
            },
        })?;
    let metrics =
        metrics::extract(point.workload.kind(), &raw).map_err(|message| BackendError::Output {
            tool: tool.to_string(),
            message,
        })?;
    Ok(RepOutcome { metrics, raw })
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

impl Proc {
    fn spawn(netload: &Path, args: &[String], capture_stdout: bool) -> Result<Proc, BackendError> {
        Proc::spawn_in(&[], None, netload, args, capture_stdout)
    }

    /// Starts `netload ARGS` behind a command `prefix` (e.g. `ip netns exec NS`, which
    /// enters the namespace and execs netload, so the child's pid is netload's); an empty
    /// prefix runs netload directly. `run_id` goes into its environment as
    /// [`crate::child::RUN_ID_ENV`].
    pub(crate) fn spawn_in(
        prefix: &[String],
        run_id: Option<&str>,
        netload: &Path,
        args: &[String],
        capture_stdout: bool,
    ) -> Result<Proc, BackendError> {
        let name = format!("netload {}", args.first().map_or("", String::as_str));
        Proc::spawn_tool(prefix, run_id, &name, netload, args, capture_stdout)
    }

    /// Starts `binary ARGS` behind a command `prefix`, named `name` in errors, with `run_id`
    /// in its environment. It dies with cnibench ([`crate::child::die_with_parent`]).
    pub(crate) fn spawn_tool(
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

pub(crate) fn unrecognized(stderr: &str) -> bool {
    let s = stderr.to_lowercase();
    s.contains("unrecognized subcommand")
        || s.contains("unknown subcommand")
        || s.contains("invalid subcommand")
}

/// A port nobody listens on right now (the kernel's choice for an ephemeral bind).
fn free_port() -> Result<u16, BackendError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| BackendError::Io {
        action: "cannot find a free port on 127.0.0.1".into(),
        source,
    })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| BackendError::Io {
            action: "cannot read a bound address".into(),
            source,
        })
}

/// Whether `/proc/net/tcp{,6}` lists a socket in LISTEN state on `port`; `None` when the
/// tables cannot be read.
fn listening(port: u16) -> Option<bool> {
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

/// Parses one `/proc/net/tcp` table (pure, tested).
pub(crate) fn listening_in(table: &str, port: u16) -> bool {
    let want = format!("{port:04X}");
    crate::carryover::tcp_table(table).any(|(local, state)| {
        state == "0A" && local.rsplit_once(':').is_some_and(|(_, p)| p == want)
    })
}

/// Whether one host without a cluster can run `point` (independent of the netload build).
pub fn applicability(point: &Point) -> Readiness {
    let o = point.objects;
    let mut needs = Vec::new();
    if point.topology.placement == Placement::Inter && !point.topology.host_network {
        needs.push("two nodes".to_string());
    }
    if point.topology.path == PathKind::Service || o.services > 0 {
        needs.push(format!("{} service(s)", o.services.max(1)));
    }
    if o.filler_pods > 0 || o.policies > 0 {
        needs.push(format!(
            "{} filler pods and {} network policies",
            o.filler_pods, o.policies
        ));
    }
    if o.replicas > 1 {
        needs.push(format!("{} server replicas", o.replicas));
    }
    if point.topology.mtu.is_some() {
        needs.push("an MTU setting".into());
    }
    if needs.is_empty() {
        Readiness::Ready
    } else {
        Readiness::NotApplicable(format!(
            "loopback has one host and no cluster; this point needs {} (use the lab or kube backend)",
            needs.join(", ")
        ))
    }
}

impl LoopbackBackend {
    /// A backend driving the netload binary at `netload` (see [`locate_netload`]).
    pub fn new(netload: PathBuf) -> Result<Self, BackendError> {
        let mut p = Proc::spawn(&netload, &["--version".into()], true)?;
        let status = p.wait(Duration::from_secs(10), &Cancel::default())?;
        let (out, err) = p.output();
        let version = if status.success() && !out.trim().is_empty() {
            out.trim().to_string()
        } else {
            format!("unknown ({})", tail(&err))
        };
        Ok(LoopbackBackend {
            netload,
            version,
            support: BTreeMap::new(),
            iperf3: None,
        })
    }

    /// Measures the points whose tool is iperf3 with this binary (see
    /// [`super::tool::iperf3::locate`]).
    #[must_use]
    pub fn with_iperf3(mut self, iperf3: (PathBuf, String)) -> Self {
        self.iperf3 = Some(iperf3);
        self
    }

    /// Whether this netload build has a subcommand; `Some(reason)` when it has not.
    fn unsupported(&mut self, sub: &'static str) -> Result<Option<String>, BackendError> {
        if let Some(known) = self.support.get(sub) {
            return Ok(known.clone());
        }
        let mut p = Proc::spawn(&self.netload, &[sub.into(), "--help".into()], true)?;
        let status = p.wait(Duration::from_secs(10), &Cancel::default())?;
        let (_, err) = p.output();
        let verdict = (!status.success() && unrecognized(&err)).then(|| {
            format!(
                "`netload {sub}` is not yet supported by this netload build ({})",
                first_line(&err)
            )
        });
        self.support.insert(sub, verdict.clone());
        Ok(verdict)
    }
}

impl Backend for LoopbackBackend {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn tools(&self) -> BTreeMap<String, String> {
        super::tool::iperf3::local_tools(&self.version, &self.netload, self.iperf3.as_ref())
    }

    fn rep_overhead(&self) -> Duration {
        Duration::from_millis(200)
    }

    fn applicability(&self, point: &Point) -> Readiness {
        match super::tool::iperf3::applicability(point) {
            Readiness::Ready => applicability(point),
            na @ Readiness::NotApplicable(_) => na,
        }
    }

    fn prepare(&mut self, point: &Point) -> Result<Readiness, BackendError> {
        if let r @ Readiness::NotApplicable(_) = self.applicability(point) {
            return Ok(r);
        }
        let sub = match point.workload {
            Workload::Stream(_) => return Ok(Readiness::Ready),
            Workload::Rr(_) => "rr",
            Workload::Http(_) => "http",
        };
        Ok(match self.unsupported(sub)? {
            Some(reason) => Readiness::NotApplicable(reason),
            None => Readiness::Ready,
        })
    }

    /// Both ends share the host's namespace: its `TIME_WAIT` sockets (every process's, so
    /// also those another program left) and its conntrack count where readable. Nothing is
    /// reset: the host is not ours.
    fn start_state(&mut self, _point: &Point) -> Result<Option<StartState>, BackendError> {
        let time_wait = crate::carryover::time_wait_sockets();
        Ok(Some(StartState {
            client_time_wait: time_wait,
            server_time_wait: time_wait,
            conntrack_entries: crate::carryover::conntrack_entries(),
            reset: Vec::new(),
        }))
    }

    fn run_rep(
        &mut self,
        point: &Point,
        _rep: u32,
        cancel: &Cancel,
    ) -> Result<RepOutcome, BackendError> {
        let port = free_port()?;
        let host = "127.0.0.1";
        if let (Tool::Iperf3, Workload::Stream(s)) = (point.tool, &point.workload) {
            let binary = &super::tool::iperf3::configured(self.iperf3.as_ref())?.0;
            let ends = super::tool::iperf3::Ends {
                binary,
                server_prefix: &[],
                client_prefix: &[],
                bind: host,
                host,
                port,
                run_id: None,
            };
            return super::tool::iperf3::run_rep(&ends, s, point, cancel, |_| {
                listening(port).unwrap_or(false)
            });
        }
        let (server_args, client_args) = match &point.workload {
            Workload::Stream(s) => {
                let mut args: Vec<String> = vec![
                    "server".into(),
                    "--bind".into(),
                    host.into(),
                    "--port".into(),
                    port.to_string(),
                ];
                if super::serves_one_test(s) {
                    args.push("--once".into());
                }
                (args, stream_args(s, host, port))
            }
            Workload::Rr(r) => (rr_server_args(host, port), rr_args(r, host, port)),
            Workload::Http(_) => {
                return Err(BackendError::NotSupported {
                    what: "http".into(),
                    reason: "the loopback backend has no replicas to serve HTTP".into(),
                });
            }
        };
        let mut server = Proc::spawn(&self.netload, &server_args, false)?;
        server.wait_ready(port, cancel, |_| match listening(port) {
            Some(found) => found,
            // No /proc: fall back to a connect probe (may cost a --once session).
            None => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        })?;
        let mut client = Proc::spawn(&self.netload, &client_args, true)?;
        let (out, err) = finish_client(&mut client, point, cancel)?;
        // A stream server exits after its one test; give it a moment. The rr responder
        // serves until stopped. Either way the `Proc` guard kills what is left.
        if matches!(&point.workload, Workload::Stream(s) if super::serves_one_test(s)) {
            let _ = server.wait(Duration::from_secs(5), cancel);
        }
        client_outcome(&client.name, &out, &err, point)
    }

    fn teardown(&mut self, _point: &Point) -> Result<(), BackendError> {
        // Each repetition's processes are owned by `Proc` guards, killed on drop.
        Ok(())
    }
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

    #[test]
    fn missing_binary_is_a_clear_error() {
        let err = locate_netload(Some(Path::new("/nonexistent/netload")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("netload binary not found") && err.contains("/nonexistent/netload"),
            "{err}"
        );
    }
}
