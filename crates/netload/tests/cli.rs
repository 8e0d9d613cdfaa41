//! The `netload` binary as a user meets it: flag errors, connection errors, the server
//! process, `--json` and the published schema.

mod common;

use common::{Child, free_port, spawn_server, wait_listening};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn netload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netload"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("netload runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn bad_flags_name_the_flag_and_the_allowed_range() {
    let o = netload(&["tcp", "127.0.0.1", "-P", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--parallel"), "{}", stderr(&o));
    assert!(stderr(&o).contains("1..=128"), "{}", stderr(&o));

    let o = netload(&["tcp", "127.0.0.1", "--time=-3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--time"), "{}", stderr(&o));

    let o = netload(&["udp", "127.0.0.1", "-l", "70000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--length"), "{}", stderr(&o));

    let o = netload(&["tcp", "127.0.0.1", "--mss", "10"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--mss"), "{}", stderr(&o));

    let o = netload(&["tcp", "127.0.0.1", "--zerocopy", "magic"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("sendfile"), "{}", stderr(&o));

    let o = netload(&["tcp", "127.0.0.1", "-R", "--bidir"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn refused_connection_is_one_clear_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = netload(&["tcp", "127.0.0.1", "-p", &port.to_string(), "-t", "1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("cannot connect") && err.contains("refused"),
        "{err}"
    );
}

#[test]
fn server_once_serves_one_json_test_then_exits() {
    let port = free_port();
    let mut server = spawn_server(port, &["--once"]);
    let o = netload(&[
        "tcp",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "0.5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(doc["schema_version"], 1);
    for side in ["client", "server"] {
        for key in [
            "bytes",
            "bits_per_second",
            "intervals",
            "retransmits",
            "mss",
        ] {
            assert!(!doc[side][key].is_null(), "{side}.{key} missing");
        }
        for key in ["process_user_s", "process_system_s"] {
            assert!(doc[side]["cpu"][key].is_number(), "{side}.cpu.{key}");
        }
        for key in ["user", "system", "softirq", "irq", "idle", "nice", "steal"] {
            assert!(
                doc[side]["cpu"]["node"][key].is_number(),
                "{side}.cpu.node.{key}"
            );
        }
    }
    // --once: the server exits by itself after the test.
    for _ in 0..100 {
        if server.0.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server --once did not exit after its test");
}

#[test]
fn json_stream_emits_intervals_then_the_report() {
    let port = free_port();
    let _server = spawn_server(port, &[]);
    let o = netload(&[
        "udp",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        "0.6",
        "-i",
        "0.2",
        "-b",
        "10M",
        "--json-stream",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert!(lines.len() >= 3);
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["event"] == "interval")
    );
    let end = lines.last().unwrap();
    assert_eq!(end["event"], "end");
    assert!(end["report"]["server"]["jitter_ms"].is_number());
    assert!(end["report"]["flows"][0]["lost"].is_number());
}

#[test]
fn published_schema_matches_the_code() {
    check_schema(&["schema"], "stream-report.schema.json");
    check_schema(&["schema", "rate-search"], "rate-search.schema.json");
    check_schema(&["schema", "probe"], "probe.schema.json");
}

#[test]
fn probe_exits_0_on_the_wanted_answer_and_3_at_the_deadline() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let open = netload(&["probe", "127.0.0.1", "-p", &port, "--within", "2", "--json"]);
    assert!(open.status.success(), "{}", stderr(&open));
    let doc: serde_json::Value = serde_json::from_slice(&open.stdout).unwrap();
    assert_eq!(doc["schema"], "netload.probe/1");
    assert_eq!(doc["reached"], true);
    assert_eq!(doc["attempts"][0]["outcome"], "connected");
    let still_open = netload(&[
        "probe",
        "127.0.0.1",
        "-p",
        &port,
        "--want",
        "closed",
        "--within",
        "0.3",
    ]);
    assert_eq!(still_open.status.code(), Some(3), "{}", stderr(&still_open));
    let line = String::from_utf8_lossy(&still_open.stdout);
    assert!(line.contains("was not closed"), "{line}");
    drop(listener);
    let closed = netload(&["probe", "127.0.0.1", "-p", &port, "--want", "closed"]);
    assert!(closed.status.success(), "{}", stderr(&closed));
    let bad = netload(&["probe", "127.0.0.1", "-p", &port, "--within=-1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("--within -1"), "{}", stderr(&bad));
}

fn check_schema(args: &[&str], file: &str) {
    let o = netload(args);
    assert!(o.status.success());
    let path = format!("{}/schema/{file}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &o.stdout).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == o.stdout,
        "{path} is out of date: run `UPDATE_SCHEMA=1 cargo test -p netload --test cli` and commit it"
    );
}

#[test]
fn interrupt_stops_both_ends_and_keeps_what_was_measured() {
    let port = free_port();
    let _server = spawn_server(port, &[]);
    let client = Child(
        Command::new(env!("CARGO_BIN_EXE_netload"))
            .args([
                "tcp",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                "30",
                "-R",
                "--json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(800));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(client.0.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let mut client = client;
    let mut status = None;
    for _ in 0..250 {
        if let Some(s) = client.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = status.expect("client stopped within 5 s of SIGINT, not after its 30 s");
    assert_eq!(status.code(), Some(130));
    let mut out = String::new();
    std::io::Read::read_to_string(client.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&out).expect("the partial report is printed");
    assert_eq!(doc["interrupted"], true);
    assert!(doc["flows"][0]["receiver_bytes"].as_u64().unwrap() > 0);
    assert!(doc["client"]["duration_s"].as_f64().unwrap() < 5.0);
}

#[test]
fn one_server_process_serves_streams_rr_and_http() {
    let port = free_port();
    let rr_port = free_port();
    let http_port = free_port();
    let _server = Child(
        Command::new(env!("CARGO_BIN_EXE_netload"))
            .args(["server", "--bind", "127.0.0.1", "-p", &port.to_string()])
            .args([
                "--rr-port",
                &rr_port.to_string(),
                "--http",
                &http_port.to_string(),
            ])
            .args(["--body-size", "64K", "--replica", "r1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_listening(port);
    wait_listening(rr_port);
    wait_listening(http_port);
    for mode in ["tcp-rr", "tcp-crr", "udp-rr"] {
        let o = netload(&[
            "rr",
            "127.0.0.1",
            "-p",
            &rr_port.to_string(),
            "--mode",
            mode,
            "-t",
            "0.3",
            "--json",
        ]);
        assert!(o.status.success(), "{mode}: {}", stderr(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(doc["transactions"].as_u64().unwrap() > 0, "{mode}");
    }
    let url = format!("http://127.0.0.1:{http_port}/");
    let o = netload(&["http", &url, "-n", "20", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["replicas"][0]["replica"], "r1", "{doc}");
}

#[test]
fn find_rate_keeps_every_trial_with_gso_off_and_parallel_streams() {
    let port = free_port();
    let _server = spawn_server(port, &[]);
    for extra in [&[][..], &["--no-gso", "-P", "2"][..]] {
        let mut args = vec!["udp", "127.0.0.1", "-p"];
        let p = port.to_string();
        args.push(&p);
        args.extend([
            "--find-rate",
            "1",
            "--trial-time",
            "0.2",
            "-t",
            "0.3",
            "--omit",
            "0.05",
            "--search-budget",
            "6",
            "--json",
        ]);
        args.extend(extra);
        let o = netload(&args);
        // 3 = no rate passed within the budget: still a complete document.
        assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
        assert_eq!(doc["kind"], "udp-rate-search");
        let trials = doc["trials"].as_array().unwrap();
        assert!(!trials.is_empty() && trials.len() <= 24);
        assert_eq!(trials[0]["purpose"], "probe");
        assert_eq!(trials[0]["offered_bps"], 0.0);
        let streams = if extra.is_empty() { 1 } else { 2 };
        for t in trials {
            let report = &t["report"];
            assert_eq!(report["spec"]["parallel"], streams);
            assert_eq!(report["spec"]["udp_gso"], extra.is_empty());
            // Offered is the per-stream rate times the streams.
            let per_stream = report["spec"]["udp_rate_bps"].as_f64().unwrap();
            assert!(
                (t["offered_bps"].as_f64().unwrap() - per_stream * f64::from(streams)).abs() < 1.0
            );
            // Each receiving stream says what its socket queue dropped.
            let rx = report["server"]["streams"].as_array().unwrap();
            assert!(
                rx.iter().all(|s| s["udp"]["socket_drops"].is_u64()),
                "{rx:?}"
            );
        }
        if let Some(i) = doc["result"]["trial"].as_u64() {
            let t = &trials[i as usize];
            assert_eq!(t["pass"], true);
            assert!(t["loss_percent"].as_f64().unwrap() <= 1.0);
        }
        assert!(doc["elapsed_s"].as_f64().unwrap() < 6.0 + 5.0);
    }
}
