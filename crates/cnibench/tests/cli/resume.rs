//! Resume after a simulated crash and after Ctrl-C.

use std::io::Write;
use std::time::Duration;

use crate::util::{cnibench, ends, fake_run, records, run};

#[test]
fn resume_after_crash_with_torn_last_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fake_run(tmp.path(), "crash", 3, &[]);
    let text = std::fs::read_to_string(dir.join("results.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Keep everything up to the end of the second point, then half a line.
    let second_end = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"type\":\"point-end\""))
        .nth(1)
        .unwrap()
        .0;
    let mut cut = lines[..=second_end + 2].join("\n");
    cut.push('\n');
    cut.push_str(&lines[second_end + 3][..40]);
    std::fs::write(dir.join("results.jsonl"), &cut).unwrap();
    let before = records_before(&cut);

    let r = run(tmp.path(), &["report", "crash", "--format", "table"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("truncated last line"), "{r:?}");
    assert!(r.stdout.contains("INCOMPLETE"), "{r:?}");

    let r = run(
        tmp.path(),
        &["run", "--resume", "crash", "--backend", "fake"],
    );
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("truncated last line"), "{r:?}");
    assert!(r.stderr.contains("done before --resume"), "{r:?}");
    let e = ends(&dir);
    assert_eq!(e.len(), 6, "{e:?}");
    let after = records(&dir);
    assert_eq!(
        &after[..before],
        &records_of(&cut)[..],
        "nothing recorded before the crash changed"
    );
    // Finished points were not measured again.
    let first = &e[0].0;
    assert_eq!(
        after
            .iter()
            .filter(|r| r["point"] == first.as_str() && r["type"] == "point-end")
            .count(),
        1
    );
}

fn records_of(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn records_before(text: &str) -> usize {
    records_of(text).len()
}

#[test]
fn ctrl_c_tears_down_saves_and_exits_nonzero() {
    let tmp = tempfile::tempdir().unwrap();
    let child = cnibench()
        .current_dir(tmp.path())
        .args([
            "run",
            "--backend",
            "fake",
            "--out",
            "int",
            "--fake-delay-ms",
            "150",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until some repetitions are on disk, then interrupt.
    let results = tmp.path().join("int/results.jsonl");
    for _ in 0..200 {
        if std::fs::read_to_string(&results).is_ok_and(|t| t.lines().count() >= 3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("continue with: cnibench run --resume int"),
        "{stderr}"
    );
    assert!(
        stderr.contains("interrupted: kept ")
            && stderr.contains(" measured repetitions in int/results.jsonl"),
        "{stderr}"
    );
    let dir = tmp.path().join("int");
    assert!(dir.join("summary.json").is_file());
    let e = ends(&dir);
    assert_eq!(e.last().unwrap().1, "interrupted", "{e:?}");
    let measured = records(&dir).iter().filter(|r| r["type"] == "rep").count();
    assert!(measured >= 3);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("results.jsonl"))
        .unwrap();
    f.flush().unwrap();
    let r = run(tmp.path(), &["run", "--resume", "int", "--backend", "fake"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        ends(&dir)
            .iter()
            .filter(|(_, s)| s != "interrupted")
            .count(),
        6
    );
}
