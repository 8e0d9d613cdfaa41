//! Helpers shared by the CLI tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `cnibench` binary under test.
pub fn cnibench() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cnibench"));
    c.env_remove("NETLOAD");
    c
}

/// Stopping-rule flags of the short end-to-end runs: exactly two measured repetitions, no
/// warm-up.
pub const TWO_REPS: [&str; 6] = ["--min-reps", "2", "--max-reps", "2", "--warmup", "0"];

/// Result of one invocation.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs cnibench with `args` in `dir`.
pub fn run(dir: &Path, args: &[&str]) -> Run {
    cnibench()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("cnibench runs")
        .into()
}

/// Runs a quick fake suite into `dir/name` and asserts success.
pub fn fake_run(dir: &Path, name: &str, seed: u64, extra: &[&str]) -> PathBuf {
    let seed = seed.to_string();
    let mut args = vec![
        "run",
        "--backend",
        "fake",
        "--suite",
        "quick",
        "--out",
        name,
        "--label",
        name,
        "--seed",
        &seed,
    ];
    args.extend(extra);
    let r = run(dir, &args);
    assert_eq!(r.code, 0, "{r:?}");
    dir.join(name)
}

/// The lines of a run's results.jsonl as JSON values.
pub fn records(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The point-end records as `(point, status)`.
pub fn ends(run_dir: &Path) -> Vec<(String, String)> {
    records(run_dir)
        .into_iter()
        .filter(|r| r["type"] == "point-end")
        .map(|r| {
            (
                r["point"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Filters for volatile values in terminal output (run ids, dates, host facts).
pub fn filters() -> Vec<(&'static str, &'static str)> {
    vec![(r"(?m)^run \S+ · .*$", "[run header]")]
}
