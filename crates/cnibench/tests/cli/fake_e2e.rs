//! End to end on the fake backend: run → report → compare, plan and overrides.

use crate::util::{ends, fake_run, filters, records, run};

#[test]
fn fake_run_report_compare() {
    let tmp = tempfile::tempdir().unwrap();
    let a = fake_run(tmp.path(), "cni-a", 1, &[]);
    let b = fake_run(tmp.path(), "cni-b", 2, &[]);
    for f in [
        "meta.json",
        "results.jsonl",
        "summary.json",
        "report.html",
        "report.md",
        "report.csv",
    ] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["backend"], "fake");
    assert_eq!(meta["label"], "cni-a");
    assert_eq!(meta["suite"], "quick");
    assert!(meta["host"]["kernel"].is_string() && meta["tools"]["cnibench"].is_string());
    // One warm-up per point, flagged and kept with its raw JSON.
    let recs = records(&a);
    let warmups = recs
        .iter()
        .filter(|r| r["type"] == "rep" && r["warmup"] == true)
        .count();
    assert_eq!(warmups, 6);
    let raw = &recs[0]["raw"];
    assert_eq!(raw["schema_version"], 1, "netload's JSON is embedded");
    assert_eq!(ends(&a).len(), 6);
    // The charts are files too (the Markdown links them).
    let md = std::fs::read_to_string(a.join("report.md")).unwrap();
    assert!(
        md.contains("![Every point as % of its baseline](charts/overview.svg)"),
        "{md}"
    );
    assert!(a.join("charts/overview.svg").is_file());

    let r = run(tmp.path(), &["report", "cni-a", "--format", "table"]);
    assert_eq!(r.code, 0, "{r:?}");
    insta::with_settings!({filters => filters()}, {
        insta::assert_snapshot!("fake_quick_table", r.stdout);
    });
    let md = run(tmp.path(), &["report", "cni-a", "--format", "markdown"]);
    assert!(
        md.stdout.contains("## Raw repetitions") && md.stdout.contains("NOT CONVERGED"),
        "{md:?}"
    );
    let csv = run(tmp.path(), &["report", "cni-a", "--format", "csv"]);
    assert!(csv.stdout.starts_with("run,label,point,"), "{csv:?}");
    let html = run(tmp.path(), &["report", "cni-a", "--format", "html"]);
    assert!(
        html.stdout.contains("<svg") && html.stdout.contains("5 of 6 measured points converged"),
        "{}",
        &html.stdout[..500]
    );

    let c = run(
        tmp.path(),
        &["compare", a.to_str().unwrap(), b.to_str().unwrap()],
    );
    assert_eq!(c.code, 0, "{c:?}");
    assert!(
        c.stdout.contains("Δ vs cni-a") && c.stdout.contains("Welch"),
        "{c:?}"
    );
    let c = run(
        tmp.path(),
        &[
            "compare", "cni-a", "cni-b", "--format", "csv", "--html", "cmp.html",
        ],
    );
    assert!(c.stdout.lines().count() > 6, "{c:?}");
    let page = std::fs::read_to_string(tmp.path().join("cmp.html")).unwrap();
    assert!(
        page.contains("<h2>cni-b vs cni-a</h2>") && page.contains("<svg"),
        "{page}"
    );
}

#[test]
fn fake_progress_without_a_terminal_is_one_line_per_repetition() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &[
            &[
                "run",
                "--backend",
                "fake",
                "--out",
                "p",
                "--only",
                "baseline,rr-latency",
            ][..],
            &crate::util::TWO_REPS,
        ]
        .concat(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let reps: Vec<&str> = r.stderr.lines().filter(|l| l.starts_with('[')).collect();
    // Two points of two repetitions, no warm-up.
    assert_eq!(reps.len(), 4, "{r:?}");
    assert!(
        reps[0].starts_with("[1/2] baseline/workload=tcp rep 1: "),
        "{}",
        reps[0]
    );
    assert!(
        reps[0].contains("Gbit/s") && reps[0].contains("elapsed") && reps[0].contains("ETA"),
        "{}",
        reps[0]
    );
    assert!(
        reps[3].starts_with("[2/2] rr-latency/") && reps[3].contains("CI ±"),
        "{}",
        reps[3]
    );
}

#[test]
fn fake_plan_of_thesis_and_overrides() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &["plan", "--suite", "thesis", "--backend", "fake"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("pod-to-service/placement=intra,services=10000,workload=tcp-crr"),
        "{r:?}"
    );
    assert!(r.stdout.contains("estimated wall time"), "{r:?}");
    let r = run(
        tmp.path(),
        &[
            "plan",
            "--suite",
            "thesis",
            "--backend",
            "fake",
            "--only",
            "pod-to-service",
            "--set",
            "services=1,10",
            "--set",
            "workload=tcp",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("4 points (4 runnable)"), "{r:?}");
    let r = run(
        tmp.path(),
        &[
            "plan",
            "--suite",
            "quick",
            "--backend",
            "loopback",
            "--netload",
            "/bin/true",
        ],
    );
    assert!(
        r.stdout.contains("not applicable: loopback has one host"),
        "{r:?}"
    );
}

#[test]
fn fake_suite_file_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(tmp.path(), &["suite", "quick"]);
    std::fs::write(
        tmp.path().join("mine.toml"),
        r.stdout.replace("name = \"quick\"", "name = \"mine\""),
    )
    .unwrap();
    let r = run(
        tmp.path(),
        &[
            "run",
            "--backend",
            "fake",
            "--suite",
            "mine.toml",
            "--out",
            "m",
            "--skip",
            "http-replicas",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(ends(&tmp.path().join("m")).len(), 5);
}

#[test]
fn fake_import_iperf3_and_compare_with_netload_baseline() {
    let tmp = tempfile::tempdir().unwrap();
    let netload = fake_run(tmp.path(), "netload", 1, &["--only", "baseline"]);
    let doc = |bps: f64| {
        serde_json::json!({
            "start": {"version": "iperf 3.12", "timestamp": {"timesecs": 1_700_000_000},
                      "test_start": {"protocol": "TCP", "num_streams": 1, "duration": 10, "omit": 0, "reverse": 0}},
            "end": {"sum_sent": {"bits_per_second": bps, "retransmits": 3, "seconds": 10.0},
                    "sum_received": {"bits_per_second": bps, "seconds": 10.0},
                    "cpu_utilization_percent": {"host_total": 35.0, "remote_total": 55.0}}
        })
        .to_string()
    };
    for (i, bps) in [9.0e9, 9.05e9, 8.95e9].iter().enumerate() {
        std::fs::write(tmp.path().join(format!("i{i}.json")), doc(*bps)).unwrap();
    }
    let r = run(
        tmp.path(),
        &[
            "import-iperf3",
            "i0.json",
            "i1.json",
            "i2.json",
            "--as",
            "baseline/workload=tcp",
            "--out",
            "iperf",
            "--label",
            "iperf3",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let r = run(tmp.path(), &["report", "iperf", "--format", "table"]);
    assert!(
        r.stdout.contains("9.00 Gbit/s") && r.stdout.contains("1 of 1 measured points converged"),
        "{r:?}"
    );
    let c = run(tmp.path(), &["compare", "iperf", netload.to_str().unwrap()]);
    assert_eq!(c.code, 0, "{c:?}");
    assert!(
        c.stdout.contains("baseline/workload=tcp") && c.stdout.contains("Δ vs iperf3"),
        "{c:?}"
    );
    let r = run(tmp.path(), &["import-iperf3", "meta.json", "--as", "x"]);
    assert_ne!(r.code, 0);
    std::fs::write(
        tmp.path().join("bad.json"),
        "{\"error\": \"unable to connect to server\"}",
    )
    .unwrap();
    let r = run(tmp.path(), &["import-iperf3", "bad.json", "--as", "x"]);
    assert!(
        r.stderr
            .contains("bad.json: iperf3 reported an error: unable to connect"),
        "{r:?}"
    );
}

#[test]
fn fake_tool_sweep_and_noisy_points_stop_at_max_reps() {
    let tmp = tempfile::tempdir().unwrap();
    // Noise ten times the default: throughput points cannot reach ±2.5 % in 5 reps.
    let dir = fake_run(
        tmp.path(),
        "noisy",
        3,
        &[
            "--tool",
            "netload,iperf3",
            "--fake-noise",
            "10",
            "--max-reps",
            "5",
        ],
    );
    let e = ends(&dir);
    // 6 quick points, each with both tools.
    assert_eq!(e.len(), 12, "{e:?}");
    let recs = records(&dir);
    for (point, status) in &e {
        let measured = recs
            .iter()
            .filter(|r| r["type"] == "rep" && r["point"] == *point && r["warmup"] == false)
            .count();
        assert!(measured <= 5, "{point}: {measured} measured reps");
        if status == "max-reps" {
            assert_eq!(measured, 5, "{point}");
        }
    }
    let not_converged: Vec<&(String, String)> = e.iter().filter(|(_, s)| s == "max-reps").collect();
    assert!(!not_converged.is_empty(), "{e:?}");
    let na: Vec<&String> = e
        .iter()
        .filter(|(_, s)| s == "not-applicable")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(na.len(), 2, "iperf3 rr and http: {e:?}");
    assert!(na.iter().all(|p| p.contains("tool=iperf3")), "{na:?}");
    let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(md.contains("NOT CONVERGED (max reps)"), "{md}");
    assert!(
        md.contains("95% CI ±"),
        "the note says how far it got: {md}"
    );
    assert!(md.contains("measured with: netload, iperf3"), "{md}");
}
