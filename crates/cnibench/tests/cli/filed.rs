//! Runs filed under benches/runs/ re-render as they were written, and the HTML report of
//! one loads cleanly in headless Chromium (`fake_browser_*`: needs Debian's `chromium`,
//! which the test command installs).

use std::path::{Path, PathBuf};

use crate::util::{TWO_REPS, run};

/// benches/runs/ of the workspace.
fn runs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/runs")
}

/// The filed runs that carry their repetitions (the ones a report can be rendered from).
fn filed_runs() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(runs_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .flat_map(|p| {
            // A filed suite run may hold further passes as subdirectories.
            let mut dirs = vec![p.clone()];
            if let Ok(sub) = std::fs::read_dir(&p) {
                dirs.extend(sub.filter_map(|e| e.ok().map(|e| e.path())));
            }
            dirs
        })
        .filter(|p| {
            p.join("meta.json").is_file()
                && (p.join("results.jsonl").is_file() || p.join("results.jsonl.gz").is_file())
        })
        .collect();
    out.sort();
    out
}

/// Copies what `cnibench report` reads (meta.json, the repetition log) into `to`.
fn copy_inputs(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for f in ["meta.json", "results.jsonl", "results.jsonl.gz"] {
        if from.join(f).is_file() {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
    }
}

/// Every file under `dir` the report writes: report.{html,md,csv} and charts/*.svg.
fn rendered(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ["report.html", "report.md", "report.csv"]
        .iter()
        .map(|f| {
            (
                f.to_string(),
                std::fs::read_to_string(dir.join(f)).unwrap_or_default(),
            )
        })
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir.join("charts")) {
        let mut charts: Vec<(String, String)> = entries
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    format!("charts/{}", p.file_name().unwrap().to_string_lossy()),
                    std::fs::read_to_string(&p).unwrap(),
                )
            })
            .collect();
        charts.sort();
        out.extend(charts);
    }
    out
}

#[test]
fn fake_filed_runs_render_as_they_were_written() {
    let runs = filed_runs();
    assert!(
        !runs.is_empty(),
        "benches/runs/ has no run with its repetitions"
    );
    for filed in runs {
        let tmp = tempfile::tempdir().unwrap();
        copy_inputs(&filed, tmp.path());
        let r = run(tmp.path(), &["report", "."]);
        assert_eq!(r.code, 0, "{}: {r:?}", filed.display());
        let (want, got) = (rendered(&filed), rendered(tmp.path()));
        for ((name, a), (_, b)) in want.iter().zip(&got) {
            assert!(
                a == b,
                "{}/{name} differs from what its files render now; re-render it with `cnibench report {}`",
                filed.display(),
                filed.display()
            );
        }
        assert_eq!(
            want.iter().map(|f| &f.0).collect::<Vec<_>>(),
            got.iter().map(|f| &f.0).collect::<Vec<_>>(),
            "{}: the set of chart files differs",
            filed.display()
        );
    }
}

#[test]
fn fake_report_from_gzip_log_equals_the_one_written_by_the_run() {
    let tmp = tempfile::tempdir().unwrap();
    let r = run(
        tmp.path(),
        &[
            &["run", "--backend", "fake", "--suite", "quick", "--out", "a"][..],
            &TWO_REPS,
        ]
        .concat(),
    );
    assert_eq!(r.code, 0, "{r:?}");
    let a = tmp.path().join("a");
    let written = rendered(&a);
    let filed = tmp.path().join("filed");
    std::fs::create_dir_all(&filed).unwrap();
    std::fs::copy(a.join("meta.json"), filed.join("meta.json")).unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "gzip -9 -n -c {} > {}",
            a.join("results.jsonl").display(),
            filed.join("results.jsonl.gz").display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let r = run(tmp.path(), &["report", "filed"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(rendered(&filed), written);
    let r = run(tmp.path(), &["run", "--resume", "filed"]);
    assert!(r.stderr.contains("gunzip -k"), "{r:?}");
}

/// Reads `width` from a PNG's IHDR chunk.
fn png_width(path: &Path) -> u32 {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is not a PNG", path.display());
    u32::from_be_bytes(bytes[16..20].try_into().unwrap())
}

#[test]
fn fake_browser_loads_filed_report_without_errors() {
    if std::process::Command::new("chromium")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is missing: the test command (scripts/test.sh) installs it"
        );
        eprintln!("skipped: no chromium (apt-get install chromium, or run scripts/test.sh)");
        return;
    }
    let filed = filed_runs()
        .into_iter()
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("fake-thesis"))
        })
        .expect("benches/runs/fake-thesis-* is filed");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    copy_inputs(&filed, &dir);
    let out = tmp.path().join("out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/report-browser.sh");
    let o = std::process::Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .arg(&out)
        .env("CNIBENCH", env!("CARGO_BIN_EXE_cnibench"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let console = std::fs::read_to_string(out.join("console.log")).unwrap();
    let errors: Vec<&str> = console
        .lines()
        .filter(|l| l.contains(":CONSOLE(") || l.contains("Uncaught") || l.contains("net::ERR_"))
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
    // The DOM as Chromium built it: every chart is there, inline, and drew data.
    let dom = std::fs::read_to_string(out.join("dom.html")).unwrap();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let figures: Vec<&str> = dom.split("<figure").skip(1).collect();
    assert_eq!(figures.len(), html.matches("<figure").count());
    assert!(figures.len() > 50, "{} charts", figures.len());
    for f in &figures {
        let f = &f[..f.find("</figure>").unwrap()];
        let marks: usize = f
            .split("data-marks=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let id = f
            .split("id=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("?");
        assert!(marks > 0, "chart {id} has no data");
        assert!(
            f.contains("<svg") && !f.contains("chart error"),
            "chart {id} did not render"
        );
        let shapes = [
            "<circle",
            "<rect",
            "<polyline",
            "<polygon",
            "<path",
            "<line",
        ]
        .iter()
        .map(|s| f.matches(s).count())
        .sum::<usize>();
        assert!(
            shapes >= marks,
            "chart {id}: {shapes} shapes for {marks} data marks"
        );
    }
    for shot in ["top", "full"] {
        assert_eq!(
            png_width(&out.join(format!("report-{shot}.png"))),
            1280,
            "{shot}"
        );
    }
}
