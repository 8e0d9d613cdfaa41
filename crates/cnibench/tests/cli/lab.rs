//! The lab backend end to end through the binary (root): the quick suite's stream points,
//! a service point, a policy point with its deny probe, `--proxy ipvs`, and kill -9 followed
//! by `cnibench clean RUN_ID`. Names carry `netns_` so nextest runs them one at a time.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::util::{TWO_REPS, cnibench, ends, records, run};

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var_os("NETLOAD_SKIP_ROOT_TESTS").is_some(),
        "lab tests need root; set NETLOAD_SKIP_ROOT_TESTS=1 to skip them knowingly"
    );
    false
}

fn netload() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_cnibench")).with_file_name("netload")
}

/// Namespaces of the lab run of cnibench run `run_id`.
fn leftovers(run_dir: &Path) -> Vec<String> {
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("meta.json")).unwrap()).unwrap();
    let id = meta["tools"]["lab_run_id"].as_str().unwrap().to_string();
    lab_namespaces(&format!("cnb-{id}-"))
}

fn lab_namespaces(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the quick suite on the lab with short repetitions and `extra` flags.
fn lab_run(dir: &Path, name: &str, extra: &[&str]) -> super::util::Run {
    let nl = netload();
    let mut args = vec![
        "run",
        "--backend",
        "lab",
        "--suite",
        "quick",
        "--out",
        name,
        "--label",
        name,
        "--netload",
        nl.to_str().unwrap(),
        "--set",
        "duration=1s",
        "--min-reps",
        "2",
        "--max-reps",
        "3",
        "--warmup",
        "0",
    ];
    args.extend(extra);
    run(dir, &args)
}

#[test]
fn netns_lab_quick_stream_points_end_to_end() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let start = cnibench::clock::now();
    let r = lab_run(
        tmp.path(),
        "streams",
        &["--only", "baseline,pod-to-pod", "--profile", "vxlan"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        (cnibench::clock::now() - start) < Duration::from_secs(60),
        "{:?}",
        (cnibench::clock::now() - start)
    );
    let dir = tmp.path().join("streams");
    let e = ends(&dir);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter()
            .all(|(_, s)| s != "failed" && s != "not-applicable"),
        "{e:?}"
    );
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert!(meta.contains("\"lab_profile\": \"vxlan\""), "{meta}");
    assert!(meta.contains("\"backend\": \"lab\""), "{meta}");
    let reps: Vec<_> = records(&dir)
        .into_iter()
        .filter(|r| r["type"] == "rep")
        .collect();
    assert!(reps.len() >= 4);
    let pod = reps
        .iter()
        .find(|r| r["point"].as_str().unwrap().starts_with("pod-to-pod"))
        .unwrap();
    let checks = &pod["raw"]["cnibench_lab"];
    assert_eq!(checks["mtu_mss"]["pod_mtu"], 1450, "{checks}");
    assert_eq!(checks["mtu_mss"]["mss"], 1398, "{checks}");
    assert!(leftovers(&dir).is_empty());
    let rep = run(tmp.path(), &["report", "streams"]);
    assert_eq!(rep.code, 0, "{rep:?}");
}

#[test]
fn netns_lab_service_and_policy_points_record_their_checks() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = lab_run(
        tmp.path(),
        "svcpol",
        &[
            "--only",
            "pod-to-service,pod-to-pod-policies",
            "--proxy",
            "nftables",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let dir = tmp.path().join("svcpol");
    let e = ends(&dir);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e.iter()
            .all(|(_, s)| s != "failed" && s != "not-applicable"),
        "{e:?}"
    );
    let reps = records(&dir);
    let svc = reps
        .iter()
        .find(|r| r["type"] == "rep" && r["point"].as_str().unwrap().starts_with("pod-to-service"))
        .unwrap();
    let path = &svc["raw"]["cnibench_lab"]["path"];
    assert_eq!(path["counters"][0]["counter"], "Dnat", "{path}");
    assert_eq!(path["counters"][0]["rose"], true, "{path}");
    let pol = reps
        .iter()
        .find(|r| {
            r["type"] == "rep"
                && r["point"]
                    .as_str()
                    .unwrap()
                    .starts_with("pod-to-pod-policies")
        })
        .unwrap();
    let checks = &pol["raw"]["cnibench_lab"];
    assert_eq!(checks["deny_probe"]["outcome"], "TimedOut", "{checks}");
    assert!(leftovers(&dir).is_empty());
}

#[test]
fn netns_lab_ipvs_is_refused_up_front() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = lab_run(tmp.path(), "ipvs", &["--proxy", "ipvs"]);
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("IPVS"), "{r:?}");
    assert!(!tmp.path().join("ipvs").exists(), "nothing written");
}

#[test]
fn netns_lab_kill_9_then_clean_leaves_nothing() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let nl = netload();
    let mut child = cnibench()
        .current_dir(tmp.path())
        .args([
            "run",
            "--backend",
            "lab",
            "--suite",
            "quick",
            "--only",
            "pod-to-pod-policies",
            "--out",
            "killed",
            "--netload",
            nl.to_str().unwrap(),
            "--set",
            "duration=5s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the point's lab to exist, then kill -9 mid-point.
    let dir = tmp.path().join("killed");
    let deadline = cnibench::clock::now() + Duration::from_secs(20);
    loop {
        if dir.join("meta.json").is_file() && !leftovers(&dir).is_empty() {
            break;
        }
        assert!(cnibench::clock::now() < deadline, "the lab never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!leftovers(&dir).is_empty(), "kill -9 leaves the lab behind");
    // `clean RUN_ID`, not `--all`: other labs on this machine (other runs, other
    // engineers' tests) must survive; `--all` is the same code with a wider prefix.
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let run_id = meta["run_id"].as_str().unwrap();
    let r = run(tmp.path(), &["clean", run_id]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("removed"), "{r:?}");
    assert!(leftovers(&dir).is_empty(), "{r:?}");
}

/// Pids of the processes of cnibench run `run_id`: the run id in their environment (as
/// `CNIBENCH_RUN_ID`) or in their arguments. Zombies have neither, and run no more.
fn run_processes(run_id: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    let env = format!("CNIBENCH_RUN_ID={run_id}");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let read = |f: &str| std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
        let environ = read("environ");
        let cmdline = String::from_utf8_lossy(&read("cmdline")).replace('\0', " ");
        if environ.split(|&b| b == 0).any(|v| v == env.as_bytes()) || cmdline.contains(run_id) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Kills and reaps a child on drop, so a failing assertion leaves no process behind.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Cleans the run's lab (processes and namespaces) on drop, also when an assertion fails.
struct CleanOnDrop(Option<String>);

impl Drop for CleanOnDrop {
    fn drop(&mut self) {
        if let Some(id) = &self.0 {
            let _ = cnibench::backend::lab::adapter::clean(Some(id));
        }
    }
}

/// Waits (bounded) for `ready`, failing with `what`.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = cnibench::clock::now() + limit;
    while !ready() {
        assert!(cnibench::clock::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// kill -9 of cnibench while an HTTP point's replicas serve: every process of the run dies
/// with it (the parent-death signal), and `clean RUN_ID` ends what was started in the run's namespaces
/// afterwards (a `netload idle` that stops on SIGTERM, a process that ignores SIGTERM and
/// needs SIGKILL) before removing them. No process of the run remains.
#[test]
fn netns_lab_kill_9_mid_run_then_clean_leaves_no_process() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let nl = netload();
    // A label of this process: the run id is unique among concurrent runs on the host.
    let label = format!("k9procs{}", std::process::id());
    let mut guard = CleanOnDrop(None);
    let mut cnb = Reaped(
        cnibench()
            .current_dir(tmp.path())
            .args([
                "run",
                "--backend",
                "lab",
                "--suite",
                "quick",
                // HTTP replicas serve until their point ends, and nothing they do ends
                // them when cnibench goes (a repetition's client and `--once` server end
                // each other once the client's output pipe breaks): only the death
                // signal can.
                "--only",
                "http-replicas",
                "--set",
                "replicas=2",
                "--out",
                "killed",
                "--label",
                &label,
                "--netload",
                nl.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dir = tmp.path().join("killed");
    wait_for("meta.json", Duration::from_secs(20), || {
        dir.join("meta.json").is_file()
    });
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let run_id = meta["run_id"].as_str().unwrap().to_string();
    guard.0 = Some(run_id.clone());
    // Mid-run: both replicas serve.
    wait_for("both replicas run", Duration::from_secs(60), || {
        run_processes(&run_id)
            .iter()
            .filter(|(_, c)| c.contains("--replica"))
            .count()
            == 2
    });
    let seen = run_processes(&run_id);
    assert!(
        seen.iter().all(|(_, c)| c.contains("netload")),
        "only netload carries the run id: {seen:?}"
    );
    cnb.0.kill().unwrap();
    cnb.0.wait().unwrap();
    wait_for(
        "the run's processes die with cnibench",
        Duration::from_secs(5),
        || run_processes(&run_id).is_empty(),
    );
    let namespaces = leftovers(&dir);
    assert!(!namespaces.is_empty(), "kill -9 leaves the lab behind");
    // Processes that outlived their parent anyway: started by hand in a namespace of the
    // run, one that stops on SIGTERM and one that ignores it.
    let stray = |program: &[&str]| {
        Reaped(
            std::process::Command::new("ip")
                .args(["netns", "exec", &namespaces[0]])
                .args(program)
                .env("CNIBENCH_RUN_ID", &run_id)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let mut idle = stray(&[nl.to_str().unwrap(), "idle"]);
    let mut deaf = stray(&["sh", "-c", "trap '' TERM; exec sleep 60"]);
    let (idle_pid, deaf_pid) = (idle.0.id(), deaf.0.id());
    wait_for("idle waits for its signal", Duration::from_secs(5), || {
        std::fs::read_to_string(format!("/proc/{idle_pid}/wchan"))
            .is_ok_and(|w| w.contains("sigtimedwait"))
    });
    // Once the shell has exec'd sleep, TERM is ignored (SIG_IGN survives exec).
    wait_for("the shell execs sleep", Duration::from_secs(5), || {
        std::fs::read(format!("/proc/{deaf_pid}/cmdline")).is_ok_and(|c| c.starts_with(b"sleep"))
    });
    assert_eq!(run_processes(&run_id).len(), 2);

    let r = run(tmp.path(), &["clean", &run_id]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!("ended process {idle_pid} (")),
        "{r:?}"
    );
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with(&format!("ended process {deaf_pid} (sleep 60; SIGKILL"))),
        "{r:?}"
    );
    assert!(r.stdout.contains("removed"), "{r:?}");
    let idle_status = idle.0.wait().unwrap();
    assert!(
        idle_status.success(),
        "idle ended by TERM, exit 0: {idle_status:?}"
    );
    let deaf_status = deaf.0.wait().unwrap();
    assert_eq!(deaf_status.signal(), Some(9), "{deaf_status:?}");
    let left = run_processes(&run_id);
    assert!(left.is_empty(), "{left:?}");
    assert!(leftovers(&dir).is_empty(), "{r:?}");
}

/// http-replicas in the lab: requests through the service reach several replicas (netload
/// http's per-replica counts), and the service's DNAT counter rose during the self-check.
#[test]
fn netns_lab_http_replicas_spread_over_replicas() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let r = lab_run(
        tmp.path(),
        "http",
        &["--only", "http-replicas", "--set", "replicas=3"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let dir = tmp.path().join("http");
    let e = ends(&dir);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].1 == "converged" || e[0].1 == "max-reps", "{e:?}");
    let reps: Vec<serde_json::Value> = records(&dir)
        .into_iter()
        .filter(|r| r["type"] == "rep")
        .collect();
    assert!(reps.len() >= 2, "{reps:?}");
    for rep in &reps {
        let raw = &rep["raw"];
        let served: Vec<&str> = raw["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["requests"].as_u64().unwrap() > 0)
            .map(|r| r["replica"].as_str().unwrap())
            .collect();
        assert!(
            served.len() >= 2 && served.iter().all(|r| r.starts_with("server")),
            "requests spread over replicas: {}",
            raw["replicas"]
        );
        let path = &raw["cnibench_lab"]["path"];
        assert_eq!(path["counters"][0]["counter"], "Dnat", "{path}");
        assert_eq!(path["counters"][0]["rose"], true, "{path}");
    }
    assert!(leftovers(&dir).is_empty());
}

/// A tiny suite file: TCP and UDP through a service between two vxlan nodes, and an rr
/// point, measured by netload and iperf3 in one run.
const TINY_SUITE: &str = r#"
name = "tiny-tools"
[defaults]
duration = "1s"
omit = "0s"
[[scenario]]
kind = "pod-to-service"
services = 3
placement = "inter"
workload = ["tcp", "udp"]
rate = "100M"
[[scenario]]
kind = "rr-latency"
placement = "intra"
"#;

fn tiny_id(tool: &str, workload: &str) -> String {
    let rate = if workload == "udp" { "rate=100M," } else { "" };
    format!("pod-to-service/placement=inter,{rate}services=3,tool={tool},workload={workload}")
}

#[test]
fn netns_lab_iperf3_next_to_netload_end_to_end() {
    if !root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("tiny.toml"), TINY_SUITE).unwrap();
    let nl = netload();
    let r = run(
        tmp.path(),
        &[
            "run",
            "--backend",
            "lab",
            "--suite",
            "tiny.toml",
            "--tool",
            "netload,iperf3",
            "--profile",
            "vxlan",
            "--out",
            "tools",
            "--netload",
            nl.to_str().unwrap(),
        ]
        .iter()
        .chain(&TWO_REPS)
        .copied()
        .collect::<Vec<_>>(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let dir = tmp.path().join("tools");
    let e = ends(&dir);
    assert_eq!(e.len(), 6, "{e:?}");
    for w in ["tcp", "udp"] {
        for t in ["netload", "iperf3"] {
            let id = tiny_id(t, w);
            let s = &e
                .iter()
                .find(|(p, _)| *p == id)
                .unwrap_or_else(|| panic!("{id}: {e:?}"))
                .1;
            assert!(s == "converged" || s == "max-reps", "{id}: {e:?}");
        }
    }
    let recs = records(&dir);
    let rep = |tool: &str, w: &str| {
        recs.iter()
            .find(|r| r["type"] == "rep" && r["point"] == tiny_id(tool, w))
            .unwrap()
            .clone()
    };
    let udp = rep("iperf3", "udp");
    assert_eq!(
        udp["raw"]["start"]["test_start"]["protocol"], "UDP",
        "raw -J kept"
    );
    // iperf3's received rate is the metric (30% loss at 100M under a parallel build on 2
    // cores: the rate itself depends on the machine's load, its source does not).
    let received = udp["raw"]["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    let throughput = udp["metrics"]["throughput_gbps"].as_f64().unwrap();
    assert!(
        throughput > 0.0 && (throughput - received / 1e9).abs() < 1e-9,
        "{udp}"
    );
    assert!(udp["metrics"]["loss_percent"].is_number() && udp["metrics"]["jitter_ms"].is_number());
    let udp_check = &udp["raw"]["cnibench_lab"]["path_udp"];
    assert_eq!(udp_check["received"], true, "{udp_check}");
    assert_eq!(udp_check["counters"][0]["rose"], true, "{udp_check}");
    let tcp = rep("iperf3", "tcp");
    assert!(tcp["metrics"]["retransmits"].is_number(), "{tcp}");
    assert!(
        tcp["metrics"]["server_process_cpu_s_per_gbit"].is_number(),
        "{tcp}"
    );
    assert!(rep("netload", "udp")["metrics"]["loss_percent"].is_number());
    let na = e
        .iter()
        .find(|(p, _)| p.starts_with("rr-latency") && p.contains("tool=iperf3"))
        .unwrap();
    assert_eq!(na.1, "not-applicable", "{e:?}");
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    assert!(meta.contains("\"iperf3\": \"iperf 3"), "{meta}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("measured with: netload, iperf3"), "{md}");
    assert!(md.contains("iperf3 has no request/response mode"), "{md}");
    assert!(md.contains("## Setup time per point"), "{md}");
    let table = run(tmp.path(), &["report", "tools", "--format", "table"]);
    assert!(table.stdout.contains("tool=iperf3"), "{table:?}");
    assert!(leftovers(&dir).is_empty());
}
