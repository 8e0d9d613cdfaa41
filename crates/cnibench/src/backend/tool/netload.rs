//! netload as the backends run it: finding the binary and its version, the command
//! lines of each workload (client and server), and a client's exit and JSON output turned
//! into a repetition.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::proc::{self, Proc, first_line, tail};
use super::stream_cores;
use crate::backend::{BackendError, Cancel, RepOutcome};
use crate::metrics;
use crate::scenario::{
    Direction, HttpWorkload, Point, RateSearch, RrMode, RrWorkload, StreamWorkload,
};

/// Finds the netload binary: `explicit` (from `--netload` or `NETLOAD`), else next to the
/// running executable (also one directory up, for test binaries in `target/*/deps`).
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, BackendError> {
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

/// The version line of the netload binary at `netload`.
pub(crate) fn version(netload: &Path) -> Result<String, BackendError> {
    proc::version("netload --version", netload, |out: &str| Some(out))
}

/// Starts `netload ARGS` behind a command `prefix` (see [`Proc::spawn`]), named after its
/// subcommand in errors.
pub(crate) fn spawn(
    prefix: &[String],
    run_id: Option<&str>,
    netload: &Path,
    args: &[String],
    capture_stdout: bool,
) -> Result<Proc, BackendError> {
    let name = format!("netload {}", args.first().map_or("", String::as_str));
    Proc::spawn(prefix, run_id, &name, netload, args, capture_stdout)
}

/// Whether the netload build at `netload` has subcommand `sub`; `Some(reason)` when it
/// has not (an older build).
pub(crate) fn unsupported(netload: &Path, sub: &str) -> Result<Option<String>, BackendError> {
    let mut p = spawn(&[], None, netload, &[sub.into(), "--help".into()], true)?;
    let status = p.wait(Duration::from_secs(10), &Cancel::default())?;
    let (_, err) = p.output();
    Ok((!status.success() && unrecognized(&err)).then(|| {
        format!(
            "`netload {sub}` is not yet supported by this netload build ({})",
            first_line(&err)
        )
    }))
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

/// Whether clap's stderr says the subcommand does not exist.
fn unrecognized(stderr: &str) -> bool {
    let s = stderr.to_lowercase();
    s.contains("unrecognized subcommand")
        || s.contains("unknown subcommand")
        || s.contains("invalid subcommand")
}

/// Command-line arguments of `netload tcp|udp HOST ... --json` for a stream workload.
pub fn stream_args(s: &StreamWorkload, host: &str, port: u16) -> Vec<String> {
    let mut a: Vec<String> = vec![
        if s.udp { "udp" } else { "tcp" }.into(),
        host.into(),
        "--port".into(),
        port.to_string(),
        "-t".into(),
        s.duration.0.to_string(),
        "--omit".into(),
        s.omit.0.to_string(),
        "-P".into(),
        s.streams.to_string(),
    ];
    match s.direction {
        Direction::Forward => {}
        Direction::Reverse => a.push("-R".into()),
        Direction::Bidir => a.push("--bidir".into()),
    }
    if let Some(l) = s.length {
        a.extend(["-l".into(), l.0.to_string()]);
    }
    if let Some(m) = s.mss {
        a.extend(["--mss".into(), m.to_string()]);
    }
    if s.nodelay {
        a.push("--nodelay".into());
    }
    if s.zerocopy != crate::scenario::Zerocopy::None {
        a.extend(["--zerocopy".into(), s.zerocopy.as_str().into()]);
    }
    if let Some((client, server)) = stream_cores(s) {
        a.extend(["--affinity".into(), format!("{client}/{server}")]);
    }
    if let Some(w) = s.window {
        a.extend(["-w".into(), w.0.to_string()]);
    }
    if let Some(search) = s.find_rate.filter(|_| s.udp) {
        // One repetition is one search: short trials to find the knee, then confirmations
        // of the workload's own duration (`-t`) at the rate found; `--omit` warms up every
        // trial.
        a.extend([
            "--find-rate".into(),
            search.loss_percent.to_string(),
            "--trial-time".into(),
            RateSearch::trial(s.duration).0.to_string(),
            "--confirm".into(),
            RateSearch::CONFIRMATIONS.to_string(),
            "--search-budget".into(),
            RateSearch::budget(s.duration).as_secs_f64().to_string(),
        ]);
    } else if s.udp {
        // netload's UDP default is 1G; always say what the suite asked for (0 = unlimited).
        a.extend(["--rate".into(), s.rate.0.to_string()]);
    }
    a.push("--json".into());
    a
}

/// Command-line arguments of `netload server` measuring stream workload `s` on
/// `bind:port`: `--once` when it serves one test (see [`serves_one_test`]), and with
/// `rr_port_off` no request/response responder beside it (`--rr-port 0`: where ports
/// are fixed, the responder has its own server).
pub fn stream_server_args(
    s: &StreamWorkload,
    bind: &str,
    port: u16,
    rr_port_off: bool,
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "server".into(),
        "--bind".into(),
        bind.into(),
        "--port".into(),
        port.to_string(),
    ];
    if rr_port_off {
        args.extend(["--rr-port".into(), "0".into()]);
    }
    if serves_one_test(s) {
        args.push("--once".into());
    }
    args
}

/// Whether the stream server of `s` serves exactly one test (`netload server --once`): not
/// when the client searches for a no-drop rate, which runs one test per trial (the server
/// is then stopped by its guard once the client is done).
pub fn serves_one_test(s: &StreamWorkload) -> bool {
    !(s.udp && s.find_rate.is_some())
}

/// Command-line arguments of `netload rr HOST ... --json` for a request/response workload
/// (its responder is `netload rr-server`, see [`rr_server_args`]).
pub fn rr_args(r: &RrWorkload, host: &str, port: u16) -> Vec<String> {
    let mode = match r.mode {
        RrMode::TcpRr => "tcp-rr",
        RrMode::TcpCrr => "tcp-crr",
        RrMode::UdpRr => "udp-rr",
    };
    vec![
        "rr".into(),
        host.into(),
        "--port".into(),
        port.to_string(),
        "--mode".into(),
        mode.into(),
        "-t".into(),
        r.duration.0.to_string(),
        "--size".into(),
        r.size.0.to_string(),
        "--json".into(),
    ]
}

/// Command-line arguments of `netload http URL ... --json` for an HTTP workload. Every
/// request opens a new connection (`--new-connection`), as the thesis's curl did: service
/// balancers pin a connection to one backend, so keep-alive would measure one replica of R.
pub fn http_args(h: &HttpWorkload, url: &str) -> Vec<String> {
    vec![
        "http".into(),
        url.into(),
        "-c".into(),
        h.concurrency.to_string(),
        "-t".into(),
        h.duration.0.to_string(),
        "--new-connection".into(),
        "--json".into(),
    ]
}

/// Command-line arguments of the request/response responder.
pub fn rr_server_args(bind: &str, port: u16) -> Vec<String> {
    vec![
        "rr-server".into(),
        "--bind".into(),
        bind.into(),
        "--port".into(),
        port.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tool::last_allowed_core;
    use crate::scenario::{Affinity, BitsPerSec, Bytes, Seconds};

    #[test]
    fn stream_arguments() {
        let s = StreamWorkload {
            udp: false,
            duration: Seconds(2.0),
            omit: Seconds(0.5),
            streams: 4,
            length: Some(Bytes(65536)),
            mss: Some(1400),
            rate: BitsPerSec(0),
            direction: Direction::Reverse,
            nodelay: true,
            zerocopy: crate::scenario::Zerocopy::Sendfile,
            affinity: None,
            window: None,
            find_rate: None,
        };
        assert_eq!(
            stream_args(&s, "127.0.0.1", 9201).join(" "),
            "tcp 127.0.0.1 --port 9201 -t 2 --omit 0.5 -P 4 -R -l 65536 --mss 1400 --nodelay --zerocopy sendfile --json"
        );
        let pinned = StreamWorkload {
            affinity: Some(Affinity::Cores(0, 1)),
            window: Some(Bytes(4 << 20)),
            ..s.clone()
        };
        assert!(
            stream_args(&pinned, "h", 1)
                .join(" ")
                .ends_with("--affinity 0/1 -w 4194304 --json")
        );
        let last = last_allowed_core();
        let same = StreamWorkload {
            affinity: Some(Affinity::SameCore),
            ..s.clone()
        };
        assert!(
            stream_args(&same, "h", 1)
                .join(" ")
                .ends_with(&format!("--affinity {last}/{last} --json"))
        );
        assert!(!stream_args(&s, "h", 1).contains(&"--affinity".to_string()));
    }

    #[test]
    fn udp_without_a_rate_searches_for_the_no_drop_rate() {
        let mut s = StreamWorkload {
            udp: true,
            duration: Seconds(4.0),
            omit: Seconds(1.0),
            streams: 2,
            length: Some(Bytes(64)),
            mss: None,
            rate: BitsPerSec(0),
            direction: Direction::Forward,
            nodelay: false,
            zerocopy: crate::scenario::Zerocopy::None,
            affinity: None,
            window: None,
            find_rate: Some(RateSearch { loss_percent: 1.0 }),
        };
        assert_eq!(
            stream_args(&s, "198.18.0.2", 9201).join(" "),
            "udp 198.18.0.2 --port 9201 -t 4 --omit 1 -P 2 -l 64 --find-rate 1 --trial-time 0.5 --confirm 1 --search-budget 16 --json"
        );
        s.find_rate = None;
        s.rate = BitsPerSec(500_000_000);
        assert!(
            stream_args(&s, "h", 1)
                .join(" ")
                .contains("--rate 500000000 --json")
        );
    }

    #[test]
    fn a_stream_server_serves_one_test_unless_the_client_searches_a_rate() {
        let mut s = StreamWorkload {
            udp: true,
            duration: Seconds(4.0),
            omit: Seconds(1.0),
            streams: 1,
            length: None,
            mss: None,
            rate: BitsPerSec(0),
            direction: Direction::Forward,
            nodelay: false,
            zerocopy: crate::scenario::Zerocopy::None,
            affinity: None,
            window: None,
            find_rate: None,
        };
        assert_eq!(
            stream_server_args(&s, "198.18.32.3", 5201, true).join(" "),
            "server --bind 198.18.32.3 --port 5201 --rr-port 0 --once"
        );
        s.find_rate = Some(RateSearch { loss_percent: 1.0 });
        assert_eq!(
            stream_server_args(&s, "127.0.0.1", 9, false).join(" "),
            "server --bind 127.0.0.1 --port 9"
        );
    }

    #[test]
    fn http_arguments_open_a_connection_per_request() {
        let h = HttpWorkload {
            file_size: Bytes(1_000_000),
            duration: Seconds(2.0),
            concurrency: 4,
        };
        assert_eq!(
            http_args(&h, "http://198.18.0.9:8080/").join(" "),
            "http http://198.18.0.9:8080/ -c 4 -t 2 --new-connection --json"
        );
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let err = locate(Some(Path::new("/nonexistent/netload")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("netload binary not found") && err.contains("/nonexistent/netload"),
            "{err}"
        );
    }
}
