//! The loopback backend: against a stand-in netload (a Python script speaking the CLI
//! contract: server listens, client connects and prints a stream report), and against the
//! real netload when its stream engine is built.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::util::{TWO_REPS, cnibench, ends, records, run};

const STUB: &str = r#"#!/usr/bin/env python3
import os, socket, sys
args = sys.argv[1:]
if args[:1] == ["--version"]:
    print("netload 0.0.0-stub"); sys.exit(0)
def port():
    return int(args[args.index("--port") + 1])
if args[0] == "server":
    assert "--once" in args
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port())); s.listen(1)
    c, _ = s.accept(); c.recv(16); c.close(); sys.exit(0)
if args[0] in ("tcp", "udp"):
    c = socket.create_connection(("127.0.0.1", port())); c.sendall(b"hello"); c.close()
    sys.stdout.write(open(os.environ["STUB_REPORT"]).read()); sys.exit(0)
sys.stderr.write("error: unrecognized subcommand '%s'\n" % args[0]); sys.exit(2)
"#;

fn python() -> bool {
    std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A real netload stream report, as the fake backend writes it.
fn report_json(dir: &Path) -> PathBuf {
    use cnibench::backend::{Backend, Cancel, fake::FakeBackend};
    let points =
        cnibench::suite::expand(&cnibench::suite::presets::load("quick").unwrap()).unwrap();
    let out = FakeBackend::new(5)
        .run_rep(&points[0], 0, &Cancel::default())
        .unwrap();
    let path = dir.join("report.json");
    std::fs::write(&path, serde_json::to_string(&out.raw).unwrap()).unwrap();
    path
}

#[test]
fn loopback_with_stand_in_netload() {
    if !python() {
        eprintln!("skipped: python3 is needed for the stand-in netload");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let stub = tmp.path().join("netload");
    std::fs::write(&stub, STUB).unwrap();
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let report = report_json(tmp.path());
    let out = cnibench()
        .current_dir(tmp.path())
        .env("NETLOAD", &stub)
        .env("STUB_REPORT", &report)
        .args([
            "run",
            "--backend",
            "loopback",
            "--out",
            "lo",
            "--label",
            "loopback",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let dir = tmp.path().join("lo");
    let e = ends(&dir);
    let status = |prefix: &str| {
        e.iter()
            .find(|(p, _)| p.starts_with(prefix))
            .unwrap()
            .1
            .clone()
    };
    assert_eq!(status("baseline"), "converged", "{e:?}");
    assert_eq!(status("pod-to-pod/"), "converged", "{e:?}");
    assert_eq!(status("pod-to-service"), "not-applicable");
    assert_eq!(status("rr-latency"), "not-applicable");
    let notes: Vec<String> = records(&dir)
        .iter()
        .filter_map(|r| r["note"].as_str().map(String::from))
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("`netload rr` is not yet supported")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("10 service(s)")),
        "{notes:?}"
    );
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert!(meta.contains("netload 0.0.0-stub"));
}

/// The real netload, when the workspace has built one with the stream engine.
#[test]
fn loopback_with_real_netload() {
    let netload = Path::new(env!("CARGO_BIN_EXE_cnibench")).with_file_name("netload");
    let works = netload.is_file()
        && std::process::Command::new(&netload)
            .args(["server", "--help"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--once"));
    if !works {
        eprintln!(
            "skipped: no netload with `server --once` at {}",
            netload.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &[
            "run",
            "--backend",
            "loopback",
            "--netload",
            netload.to_str().unwrap(),
            "--out",
            "real",
            "--only",
            "baseline,pod-to-pod,rr-latency",
            "--set",
            "duration=1",
            "--max-reps",
            "4",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let dir = tmp.path().join("real");
    let e = ends(&dir);
    let measured = |s: &str| s == "converged" || s == "max-reps" || s == "time-budget";
    for prefix in ["baseline/", "pod-to-pod/"] {
        assert!(
            e.iter().any(|(p, s)| p.starts_with(prefix) && measured(s)),
            "{e:?}"
        );
    }
    // rr runs where netload has it and is recorded as not yet supported where it has not.
    assert!(
        e.iter()
            .any(|(p, s)| p.starts_with("rr-latency") && (measured(s) || s == "not-applicable")),
        "{e:?}"
    );
    assert!(dir.join("report.html").is_file());
    let raw = &records(&dir)[0]["raw"];
    assert!(
        raw["flows"][0]["receiver_bits_per_second"]
            .as_f64()
            .unwrap()
            > 0.0,
        "{raw}"
    );
}

/// `--tool netload,iperf3` on loopback with the system's iperf3 (scripts/deps.sh installs
/// it): one stream point measured by both tools, in one run and one report.
#[test]
fn loopback_iperf3_next_to_netload() {
    let netload = Path::new(env!("CARGO_BIN_EXE_cnibench")).with_file_name("netload");
    assert!(
        netload.is_file(),
        "build netload first: {}",
        netload.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &[
            "run",
            "--backend",
            "loopback",
            "--netload",
            netload.to_str().unwrap(),
            "--out",
            "both",
            "--only",
            "baseline,rr-latency",
            "--tool",
            "netload,iperf3",
            "--set",
            "duration=1",
        ]
        .iter()
        .chain(&TWO_REPS)
        .copied()
        .collect::<Vec<_>>(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let dir = tmp.path().join("both");
    let e = ends(&dir);
    let status = |id: &str| {
        e.iter()
            .find(|(p, _)| p == id)
            .map_or_else(|| panic!("no point {id}: {e:?}"), |(_, s)| s.clone())
    };
    for id in [
        "baseline/tool=netload,workload=tcp",
        "baseline/tool=iperf3,workload=tcp",
    ] {
        assert!(
            ["converged", "max-reps"].contains(&status(id).as_str()),
            "{id}: {e:?}"
        );
    }
    assert_eq!(
        status("rr-latency/path=direct,placement=intra,tool=iperf3,workload=tcp-rr"),
        "not-applicable"
    );
    let recs = records(&dir);
    let iperf = recs
        .iter()
        .find(|r| r["type"] == "rep" && r["point"] == "baseline/tool=iperf3,workload=tcp")
        .unwrap();
    assert!(
        iperf["raw"]["start"]["version"]
            .as_str()
            .unwrap()
            .starts_with("iperf"),
        "the raw iperf3 -J document is kept: {iperf}"
    );
    assert!(iperf["metrics"]["throughput_gbps"].as_f64().unwrap() > 0.0);
    assert!(iperf["metrics"]["client_process_cpu_s_per_gbit"].is_number());
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert!(meta.contains("\"iperf3\": \"iperf 3"), "{meta}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("measured with: netload, iperf3"), "{md}");
    assert!(md.contains("iperf3 has no request/response mode"), "{md}");
}
