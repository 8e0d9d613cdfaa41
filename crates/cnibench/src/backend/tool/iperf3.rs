//! iperf3 as the alternative stream tool of the loopback and lab backends (`--tool iperf3`):
//! the pure mapping of a [`StreamWorkload`] onto iperf3's flags, which points iperf3
//! cannot measure (and why), finding the binary, and turning `iperf3 -J` output into a
//! repetition with the same metrics as netload's ([`metrics::from_iperf3`]).
//!
//! The server is `iperf3 -s -1` (one test, then exit), like `netload server --once`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::proc::{self, Proc, tail};
use crate::backend::{BackendError, Cancel, Readiness, RepOutcome};
use crate::metrics;
use crate::scenario::{Direction, Point, StreamWorkload, Tool, Workload, Zerocopy};

/// Whole seconds of `what`, or why iperf3 cannot take the value (`-t` and `-O` are
/// integers in iperf3 3.x; a rounded value would measure something else than asked).
fn whole_seconds(what: &str, s: f64) -> Result<u64, String> {
    if s >= 0.0 && s.fract() == 0.0 && s <= 86_400.0 {
        Ok(s as u64)
    } else {
        Err(format!(
            "iperf3 takes whole seconds for {what}, the point asks for {s} s"
        ))
    }
}

/// Client arguments (`iperf3 -c HOST ... -J`) for a stream workload; `Err` names the
/// option iperf3 has no equivalent for. Both tools get the same meaning: `-P` parallel
/// streams, `-t` measured seconds after `-O` omitted ones, `-l` bytes per write or UDP
/// payload, `-M` MSS, `-N` no Nagle, `-Z` zero-copy (sendfile, as netload's
/// `--zerocopy sendfile`), `-u -b` UDP with a per-stream target rate (0 = unlimited in
/// both), `-R` reverse, `--bidir` both directions, `-A C,S` affinity, `-w` socket buffers.
pub fn client_args(s: &StreamWorkload, host: &str, port: u16) -> Result<Vec<String>, String> {
    let mut a: Vec<String> = vec![
        "-c".into(),
        host.into(),
        "-p".into(),
        port.to_string(),
        "-t".into(),
        whole_seconds("the duration (-t)", s.duration.0)?.to_string(),
        "-O".into(),
        whole_seconds("the omitted warm-up (-O)", s.omit.0)?.to_string(),
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
    if let Some((client, server)) = super::stream_cores(s) {
        a.extend(["-A".into(), format!("{client},{server}")]);
    }
    if let Some(w) = s.window {
        a.extend(["-w".into(), w.0.to_string()]);
    }
    if s.udp {
        a.extend(["-u".into(), "-b".into(), s.rate.0.to_string()]);
    } else {
        if let Some(m) = s.mss {
            a.extend(["-M".into(), m.to_string()]);
        }
        if s.nodelay {
            a.push("-N".into());
        }
        match s.zerocopy {
            Zerocopy::None => {}
            Zerocopy::Sendfile => a.push("-Z".into()),
            Zerocopy::Msg => {
                return Err(
                    "iperf3 has no MSG_ZEROCOPY sender (its -Z is sendfile; use zerocopy=sendfile)"
                        .into(),
                );
            }
        }
    }
    a.push("-J".into());
    Ok(a)
}

/// Server arguments: one test on `bind:port`, then exit.
pub fn server_args(bind: &str, port: u16) -> Vec<String> {
    vec![
        "-s".into(),
        "-1".into(),
        "-B".into(),
        bind.into(),
        "-p".into(),
        port.to_string(),
    ]
}

/// Whether `point`'s tool can measure its workload at all (any backend): iperf3 has no
/// request/response or HTTP mode, and some stream options have no iperf3 equivalent.
pub fn applicability(point: &Point) -> Readiness {
    match (point.tool, &point.workload) {
        (Tool::Netload, _) => Readiness::Ready,
        (Tool::Iperf3, Workload::Stream(s)) => match client_args(s, "x", 1) {
            Ok(_) => Readiness::Ready,
            Err(why) => Readiness::NotApplicable(why),
        },
        (Tool::Iperf3, Workload::Rr(_)) => Readiness::NotApplicable(
            "iperf3 has no request/response mode (tcp-rr, tcp-crr, udp-rr): measured with netload only"
                .into(),
        ),
        (Tool::Iperf3, Workload::Http(_)) => Readiness::NotApplicable(
            "iperf3 has no HTTP client or server: measured with netload only".into(),
        ),
    }
}

/// Whether any of `points` is measured with iperf3 (then the binary must be found before
/// the run starts).
pub fn needed(points: &[Point]) -> bool {
    points.iter().any(|p| p.tool == Tool::Iperf3)
}

/// The iperf3 binary and its version line: `explicit` (`--iperf3` / `IPERF3`), else
/// `iperf3` on `PATH`.
pub fn locate(explicit: Option<&Path>) -> Result<(PathBuf, String), BackendError> {
    let path = match explicit {
        Some(p) if p.is_file() => p.to_path_buf(),
        Some(p) => {
            return Err(BackendError::ToolMissing {
                tool: "iperf3".into(),
                detail: format!(
                    "{} does not exist or is not a file (from --iperf3 or IPERF3)",
                    p.display()
                ),
            });
        }
        None => std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join("iperf3"))
            .find(|p| p.is_file())
            .ok_or_else(|| BackendError::ToolMissing {
                tool: "iperf3".into(),
                detail: "not on PATH; install it (`apt-get install iperf3`, as scripts/deps.sh does) or pass --iperf3 PATH".into(),
            })?,
    };
    let version = proc::version("iperf3", &path, |out| out.lines().next())?;
    Ok((path, version))
}

/// Where one iperf3 repetition runs: the binary, the command prefixes that put server
/// and client in their places (`ip netns exec NS`, or nothing on loopback), the server's
/// bind address, the address the client measures, and the port.
pub(crate) struct Ends<'a> {
    /// The iperf3 binary.
    pub binary: &'a Path,
    /// Prefix of the server command.
    pub server_prefix: &'a [String],
    /// Prefix of the client command.
    pub client_prefix: &'a [String],
    /// Server bind address.
    pub bind: &'a str,
    /// Address the client connects to (a pod, node or service address).
    pub host: &'a str,
    /// Server port.
    pub port: u16,
    /// The cnibench run id, put into both processes' environment.
    pub run_id: Option<&'a str>,
}

/// One repetition: `iperf3 -s -1` at the server end, ready when `listening(pid)` says so,
/// then the client with `-J`; the server's `Proc` guard kills it if it is still there.
pub(crate) fn run_rep(
    ends: &Ends<'_>,
    s: &StreamWorkload,
    point: &Point,
    cancel: &Cancel,
    listening: impl FnMut(u32) -> bool,
) -> Result<RepOutcome, BackendError> {
    let client_args =
        client_args(s, ends.host, ends.port).map_err(|reason| BackendError::NotSupported {
            what: format!("{} with iperf3", point.id),
            reason,
        })?;
    let mut server = Proc::spawn(
        ends.server_prefix,
        ends.run_id,
        "iperf3 server",
        ends.binary,
        &server_args(ends.bind, ends.port),
        false,
    )?;
    server.wait_ready(ends.port, cancel, listening)?;
    let mut client = Proc::spawn(
        ends.client_prefix,
        ends.run_id,
        "iperf3 client",
        ends.binary,
        &client_args,
        true,
    )?;
    let outcome = finish_client(&mut client, point, cancel)?;
    let _ = server.wait(Duration::from_secs(5), cancel);
    Ok(outcome)
}

/// Waits for an iperf3 client and turns its `-J` output into a repetition. iperf3 prints
/// a JSON document with an `error` field when it fails; that error is the message.
pub(crate) fn finish_client(
    client: &mut Proc,
    point: &Point,
    cancel: &Cancel,
) -> Result<RepOutcome, BackendError> {
    let limit = point.workload.nominal_duration() + Duration::from_secs(30);
    let status = client.wait(limit, cancel)?;
    let (out, err) = client.output();
    let raw: Option<serde_json::Value> = serde_json::from_str(out.trim()).ok();
    let failure = |message: String| BackendError::Tool {
        tool: client.name.clone(),
        status: status.to_string(),
        stderr: message,
    };
    let Some(raw) = raw else {
        return Err(if status.success() {
            BackendError::Output {
                tool: client.name.clone(),
                message: format!("no JSON on stdout (stderr: {})", tail(&err)),
            }
        } else {
            failure(tail(&err))
        });
    };
    match metrics::from_iperf3(&raw) {
        Ok(metrics) if status.success() => Ok(RepOutcome { metrics, raw }),
        Ok(_) => Err(failure(tail(&err))),
        Err(message) if status.success() => Err(BackendError::Output {
            tool: client.name.clone(),
            message,
        }),
        Err(message) => Err(failure(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{BitsPerSec, Bytes, Seconds};

    fn tcp() -> StreamWorkload {
        StreamWorkload {
            udp: false,
            duration: Seconds(10.0),
            omit: Seconds(1.0),
            streams: 1,
            length: None,
            mss: None,
            rate: BitsPerSec(0),
            direction: Direction::Forward,
            nodelay: false,
            zerocopy: Zerocopy::None,
            affinity: None,
            window: None,
            find_rate: None,
        }
    }

    fn args(s: &StreamWorkload) -> String {
        client_args(s, "198.18.0.2", 5201).unwrap().join(" ")
    }

    #[test]
    fn tcp_options_map_one_to_one() {
        assert_eq!(args(&tcp()), "-c 198.18.0.2 -p 5201 -t 10 -O 1 -P 1 -J");
        let s = StreamWorkload {
            streams: 4,
            mss: Some(1400),
            nodelay: true,
            zerocopy: Zerocopy::Sendfile,
            length: Some(Bytes(131_072)),
            direction: Direction::Reverse,
            ..tcp()
        };
        assert_eq!(
            args(&s),
            "-c 198.18.0.2 -p 5201 -t 10 -O 1 -P 4 -R -l 131072 -M 1400 -N -Z -J"
        );
        let bidir = StreamWorkload {
            direction: Direction::Bidir,
            ..tcp()
        };
        assert!(args(&bidir).contains(" --bidir "));
    }

    #[test]
    fn udp_maps_rate_and_payload() {
        let s = StreamWorkload {
            udp: true,
            rate: BitsPerSec(500_000_000),
            length: Some(Bytes(1400)),
            // TCP-only options never reach iperf3's UDP mode.
            mss: Some(1000),
            nodelay: true,
            ..tcp()
        };
        assert_eq!(
            args(&s),
            "-c 198.18.0.2 -p 5201 -t 10 -O 1 -P 1 -l 1400 -u -b 500000000 -J"
        );
        let unlimited = StreamWorkload { udp: true, ..tcp() };
        assert!(
            args(&unlimited).ends_with(" -u -b 0 -J"),
            "{}",
            args(&unlimited)
        );
    }

    #[test]
    fn what_iperf3_cannot_do_is_said() {
        let msg = StreamWorkload {
            zerocopy: Zerocopy::Msg,
            ..tcp()
        };
        assert!(
            client_args(&msg, "h", 1)
                .unwrap_err()
                .contains("MSG_ZEROCOPY")
        );
        let frac = StreamWorkload {
            duration: Seconds(2.5),
            ..tcp()
        };
        let err = client_args(&frac, "h", 1).unwrap_err();
        assert!(
            err.contains("whole seconds") && err.contains("2.5"),
            "{err}"
        );
        let points = crate::suite::expand(
            &crate::suite::file::parse(
                "[[scenario]]\nkind = \"rr-latency\"\ntool = \"iperf3\"\n[[scenario]]\nkind = \"http-replicas\"\ntool = \"iperf3\"\n",
                "t.toml",
            )
            .unwrap(),
        )
        .unwrap();
        for (p, word) in points.iter().zip(["request/response", "HTTP"]) {
            match applicability(p) {
                Readiness::NotApplicable(why) => assert!(why.contains(word), "{why}"),
                other => panic!("{} with iperf3 is not applicable: {other:?}", p.id),
            }
        }
    }

    #[test]
    fn server_runs_one_test() {
        assert_eq!(
            server_args("198.18.0.2", 5201).join(" "),
            "-s -1 -B 198.18.0.2 -p 5201"
        );
    }
}
