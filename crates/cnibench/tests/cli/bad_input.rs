//! Bad input gets a clear error, and nothing measured is lost.

use crate::util::{cnibench, ends, fake_run, records, run};

#[test]
fn missing_netload_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &[
            "run",
            "--backend",
            "loopback",
            "--netload",
            "/nonexistent/netload",
            "--out",
            "x",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr
            .contains("netload binary not found: /nonexistent/netload"),
        "{r:?}"
    );
    assert!(
        !tmp.path().join("x").exists(),
        "no run directory for a run that cannot start"
    );
    let out = cnibench()
        .current_dir(tmp.path())
        .env("NETLOAD", "/nope/netload")
        .args(["run", "--backend", "loopback"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nope/netload"));
}

#[test]
fn unwritable_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("file"), "").unwrap();
    let r = run(
        tmp.path(),
        &["run", "--backend", "fake", "--out", "file/run"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("cannot create run directory file/run"),
        "{r:?}"
    );
    // An existing run is never overwritten.
    fake_run(tmp.path(), "done", 1, &[]);
    let r = run(tmp.path(), &["run", "--backend", "fake", "--out", "done"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("already holds a run"), "{r:?}");
}

#[test]
fn backend_failing_mid_point_keeps_measurements() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &[
            "run",
            "--backend",
            "fake",
            "--out",
            "f",
            "--fake-fail",
            "pod-to-service@2",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("1 point(s) failed"), "{r:?}");
    assert!(r.stdout.contains("FAILED"), "{r:?}");
    let dir = tmp.path().join("f");
    let e = ends(&dir);
    assert_eq!(e.len(), 6, "the run goes on after a failed point: {e:?}");
    assert!(
        e.iter()
            .any(|(p, s)| p.starts_with("pod-to-service") && s == "failed")
    );
    let kept = records(&dir)
        .into_iter()
        .filter(|r| {
            r["type"] == "rep" && r["point"].as_str().unwrap().starts_with("pod-to-service")
        })
        .count();
    assert_eq!(kept, 2, "warm-up and first repetition are kept");
    // The point is retried by --resume; the others are not rerun.
    let r = run(tmp.path(), &["run", "--resume", "f", "--backend", "fake"]);
    assert_eq!(r.code, 0, "{r:?}");
    let e = ends(&dir);
    assert_eq!(e.last().unwrap().1, "converged", "{e:?}");
}

#[test]
fn run_dir_from_another_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fake_run(tmp.path(), "old", 1, &[]);
    let meta = std::fs::read_to_string(dir.join("meta.json")).unwrap();
    std::fs::write(
        dir.join("meta.json"),
        meta.replace("\"format_version\": 1", "\"format_version\": 99"),
    )
    .unwrap();
    for args in [
        vec!["report", "old"],
        vec!["run", "--resume", "old", "--backend", "fake"],
        vec!["compare", "old", "old"],
    ] {
        let r = run(tmp.path(), &args);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stderr.contains("run-directory format 99") && r.stderr.contains("reads format 1"),
            "{r:?}"
        );
    }
    let r = run(tmp.path(), &["report", "."]);
    assert!(r.stderr.contains("not a cnibench run directory"), "{r:?}");
}

#[test]
fn bad_suite_files_name_file_line_field_and_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("bad.toml"),
        "name = \"bad\"\n\n[[scenario]]\nkind = \"pod-to-service\"\nplacement = [\"inter\", \"sideways\"]\n",
    )
    .unwrap();
    let r = run(
        tmp.path(),
        &["plan", "--suite", "bad.toml", "--backend", "fake"],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains(
            "bad.toml:5:13: placement: unknown placement `sideways` (allowed: inter, intra)"
        ),
        "{r:?}"
    );
    let r = run(
        tmp.path(),
        &["plan", "--suite", "nosuch", "--backend", "fake"],
    );
    assert!(
        r.stderr.contains("cannot read suite file nosuch") && r.stderr.contains("thesis, quick"),
        "{r:?}"
    );
    let r = run(
        tmp.path(),
        &["plan", "--backend", "fake", "--set", "mtu=100"],
    );
    assert!(
        r.stderr.contains(
            "--set mtu=100: mtu: 100 is out of range (allowed: an integer from 576 to 9216)"
        ),
        "{r:?}"
    );
    let r = run(
        tmp.path(),
        &["plan", "--backend", "fake", "--only", "pod-to-pods"],
    );
    assert!(r.stderr.contains("no scenario `pod-to-pods`"), "{r:?}");
}

#[test]
fn time_budget_stops_a_point_and_flags_it() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &[
            "run",
            "--backend",
            "fake",
            "--out",
            "tb",
            "--only",
            "baseline",
            "--time-budget",
            "0.5",
            "--fake-delay-ms",
            "200",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("NOT CONVERGED (time budget)"), "{r:?}");
    assert_eq!(ends(&tmp.path().join("tb"))[0].1, "time-budget");
}

#[test]
fn bad_stopping_rule_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &["run", "--backend", "fake", "--ci-target", "0"],
    );
    assert!(r.code != 0 && r.stderr.contains("--ci-target"), "{r:?}");
    let r = run(
        tmp.path(),
        &[
            "run",
            "--backend",
            "fake",
            "--min-reps",
            "5",
            "--max-reps",
            "3",
        ],
    );
    assert!(
        r.code != 0 && r.stderr.contains("need 2 <= min-reps <= max-reps"),
        "{r:?}"
    );
    let r = run(
        tmp.path(),
        &["run", "--backend", "fake", "--time-budget", "soon"],
    );
    assert!(r.code != 0 && r.stderr.contains("--time-budget"), "{r:?}");
    assert!(
        std::fs::read_dir(tmp.path()).unwrap().next().is_none(),
        "nothing created"
    );
}

#[test]
fn kube_without_a_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let kc = tmp.path().join("kubeconfig");
    std::fs::write(&kc, "this: [is not a kubeconfig").unwrap();
    for kubeconfig in ["/nonexistent/kubeconfig", kc.to_str().unwrap()] {
        let r = run(
            tmp.path(),
            &[
                "run",
                "--backend",
                "kube",
                "--kubeconfig",
                kubeconfig,
                "--out",
                "x",
            ],
        );
        assert_eq!(r.code, 1, "{r:?}");
        assert!(r.stderr.contains("kube backend: kubeconfig:"), "{r:?}");
        assert!(r.stderr.contains(kubeconfig), "{r:?}");
        assert!(
            !tmp.path().join("x").exists(),
            "no run directory without a cluster"
        );
    }
    let r = run(
        tmp.path(),
        &[
            "clean",
            "--backend",
            "kube",
            "--all",
            "--kubeconfig",
            "/nonexistent/kc",
        ],
    );
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("kube clean"), "{r:?}");
    // Lab node counts and kube node names share --nodes; the lab says which it wants.
    let r = run(tmp.path(), &["plan", "--backend", "lab", "--nodes", "a,b"]);
    assert!(
        r.stdout.contains("node names are for --backend kube")
            || r.stderr.contains("node names are for --backend kube"),
        "{r:?}"
    );
}

#[test]
fn render_writes_the_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &[
            "render",
            "--suite",
            "quick",
            "--out",
            "m",
            "--image",
            "reg/netload:9",
            "--service-mode",
            "selector",
        ],
    );
    assert_eq!(r.code, 0, "{r:?}");
    let point = std::fs::read_dir(tmp.path().join("m/quick"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("pod-to-service"))
        .unwrap();
    let text = std::fs::read_to_string(point).unwrap();
    assert!(text.contains("image: reg/netload:9"), "{text}");
    assert!(text.contains("service mode selector"), "{text}");
    let svcs = std::fs::read_to_string(tmp.path().join("m/quick/scale/services-9.yaml")).unwrap();
    assert!(
        !svcs.contains("EndpointSlice"),
        "selector mode writes no slices"
    );
    assert!(tmp.path().join("m/rbac.yaml").is_file());
}

#[test]
fn render_sample_says_which_points_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &["render", "--suite", "thesis", "--sample", "--out", "m"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains(
            "sample: http-replicas/placement=inter,replicas=100,services=10000 (largest 100 server replicas, 10000 services)"
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("(8 of 60 points"), "{}", r.stderr);
    // The largest points come without their bulk: those scale files are the full render's.
    assert!(
        !tmp.path()
            .join("m/thesis/scale/services-9999.yaml")
            .exists()
    );
    assert!(tmp.path().join("m/thesis/scale/services-99.yaml").is_file());
}
