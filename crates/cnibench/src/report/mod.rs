//! Reports: renderers that turn a [`RunSummary`] into bytes (pure; the caller writes them).
//!
//! - [`table`]: aligned terminal table;
//! - [`markdown`]: GitHub-flavoured Markdown with raw repetitions;
//! - [`csv`]: one row per point and metric, raw repetitions included;
//! - [`html`]: one self-contained page with inline SVG charts;
//! - [`figures`]: which charts a run gets (overview, sweeps, CPU, latency, repetitions);
//! - [`charts`]: the SVG chart primitives (plotters);
//! - [`reps`]: every repetition in run order, with percentiles and CPU split from raw JSON;
//! - [`compare`]: side-by-side runs with Welch's t-test;
//! - [`scaling`]: scale points as ratios to the smallest point of their sweep;
//! - [`iperf3`]: `iperf3 -J` documents turned into a run.
//!
//! Every output flags points that did not converge, failed or were interrupted, and shows
//! an unstable point (level shift, trend or two modes) by its two levels, not its mean.

pub mod charts;
pub mod compare;
pub mod csv;
pub mod figures;
pub mod html;
pub mod iperf3;
pub mod markdown;
pub mod reps;
pub mod scaling;
pub mod table;

use crate::metrics::{self, MetricInfo};
use crate::results::{Meta, PointSummary, Record, RunSummary};
use crate::scenario::ScenarioKind;
use crate::stats::stationarity::{Instability, InstabilityKind};

/// Every file `cnibench report` writes into a run directory, as (relative path, text):
/// `report.html`, `report.md`, `report.csv` and `charts/<id>.svg`. The repetitions come
/// from `records` when it has any, else from the summary's raw values (a run filed with
/// `summary.json` only).
pub fn files(meta: &Meta, run: &RunSummary, records: &[Record]) -> Vec<(String, String)> {
    let reps = if records.iter().any(|r| matches!(r, Record::Rep(_))) {
        reps::from_records(records)
    } else {
        reps::from_summary(run)
    };
    let figs = figures::figures(meta, run, &reps);
    let mut out = vec![
        ("report.html".to_string(), html::render(meta, run, &figs)),
        ("report.md".to_string(), markdown::render(meta, run, &figs)),
        ("report.csv".to_string(), csv::render(run)),
    ];
    out.extend(
        figs.into_iter()
            .map(|f| (format!("{}/{}.svg", markdown::CHARTS_DIR, f.id), f.svg)),
    );
    out
}

/// One point's headline figures, shared by the renderers.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The point.
    pub summary: &'a PointSummary,
    /// Primary metric.
    pub metric: MetricInfo,
    /// Mean of the primary metric as % of the matching baseline point.
    pub pct_baseline: Option<f64>,
    /// The CPU-cost metric and its mean, for stream workloads.
    pub cpu: Option<(MetricInfo, f64)>,
}

/// The baseline point matching `p`: a baseline point with the same workload.
pub fn baseline_for<'a>(run: &'a RunSummary, p: &PointSummary) -> Option<&'a PointSummary> {
    if p.point.kind == ScenarioKind::Baseline {
        return None;
    }
    run.points.iter().find(|b| {
        b.point.kind == ScenarioKind::Baseline
            && b.point.workload.kind() == p.point.workload.kind()
            && b.point.tool == p.point.tool
            && b.primary_summary().is_some()
    })
}

/// Rows of a run, in point order.
pub fn rows(run: &RunSummary) -> Vec<Row<'_>> {
    run.points
        .iter()
        .map(|p| {
            let metric = metrics::info(&p.primary);
            // A mean over two regimes, of the point or of its baseline, has no percentage.
            let pct_baseline = baseline_for(run, p).and_then(|b| {
                if p.is_unstable() || b.is_unstable() {
                    return None;
                }
                let base = b.primary_summary()?.stats.mean;
                let own = p.primary_summary()?.stats.mean;
                (base != 0.0).then(|| own / base * 100.0)
            });
            let cpu = metrics::cpu_metric(p.point.workload.kind())
                .and_then(|k| p.metrics.get(k).map(|m| (metrics::info(k), m.stats.mean)));
            Row {
                summary: p,
                metric,
                pct_baseline,
                cpu,
            }
        })
        .collect()
}

/// Escapes text for HTML and SVG (the charts and both HTML pages need it).
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Formats a value with about three significant digits.
pub fn num(x: f64) -> String {
    let a = x.abs();
    if !x.is_finite() {
        "-".into()
    } else if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 100.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a >= 0.01 || a == 0.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

/// The two levels of an unstable point in place of its mean: `0.246 -> 3.36` for a shift or
/// a trend (before and after, first and last), `0.246 | 3.36` for two modes.
pub fn levels(i: &Instability) -> String {
    let sep = match i.kind {
        InstabilityKind::Shift | InstabilityKind::Trend => "->",
        InstabilityKind::Bimodal => "|",
    };
    format!("{} {sep} {}", num(i.from), num(i.to))
}

/// Formats a ratio as a percentage with one decimal.
pub fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The coordinates of a point without the scenario prefix (`services=10,workload=tcp`).
pub fn coords(p: &PointSummary) -> String {
    p.point
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The traffic generators of a run's points, in first-use order (`netload, iperf3`).
pub fn tools_used(meta: &Meta) -> String {
    let mut tools: Vec<&str> = Vec::new();
    for p in &meta.points {
        if !tools.contains(&p.tool.as_str()) {
            tools.push(p.tool.as_str());
        }
    }
    tools.join(", ")
}

/// A one-line description of the run for headers.
pub fn header(meta: &Meta) -> String {
    format!(
        "run {} · suite {} · backend {} · tool {}{} · {} · {} ({} cores, kernel {})",
        meta.run_id,
        meta.suite,
        meta.backend,
        tools_used(meta),
        meta.label
            .as_ref()
            .map(|l| format!(" · label {l}"))
            .unwrap_or_default(),
        meta.created,
        meta.host.cpu_model,
        meta.host.cores,
        meta.host.kernel
    )
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! A fixed run for snapshot tests: the fake backend's numbers, fixed metadata.
    use std::collections::BTreeMap;

    use crate::backend::fake::FakeBackend;
    use crate::backend::{Backend, Cancel};
    use crate::results::{
        HostInfo, Meta, PointEnd, PointStatus, Record, RepRecord, RunSummary, summarize,
    };
    use crate::stats::StopRule;
    use crate::suite::{expand, file};

    /// A small suite with a baseline, a sweep, an http point, a not-applicable point; the
    /// last point fails.
    pub fn run(label: &str, seed: u64) -> (Meta, RunSummary) {
        let (meta, summary, _) = run_with_records(label, seed);
        (meta, summary)
    }

    /// [`run`] with its records (the fake's raw JSON included).
    pub fn run_with_records(label: &str, seed: u64) -> (Meta, RunSummary, Vec<Record>) {
        run_of_suite(label, seed, FIXTURE_SUITE)
    }

    /// The suite of [`run`].
    const FIXTURE_SUITE: &str = r#"
name = "fixture"
[defaults]
duration = "2s"
[[scenario]]
kind = "baseline"
workload = "tcp"
[[scenario]]
kind = "pod-to-service"
services = [1, 100, 10000]
placement = ["inter", "intra"]
[[scenario]]
kind = "http-replicas"
replicas = 2
services = 1
[[scenario]]
kind = "pod-to-pod-policies"
pods = 10
[[scenario]]
kind = "rr-latency"
"#;

    /// Runs `suite` (TOML) on the fake backend: 5 repetitions a point (the first a warm-up),
    /// policy points not applicable, the last point failing after 2.
    pub fn run_of_suite(label: &str, seed: u64, suite: &str) -> (Meta, RunSummary, Vec<Record>) {
        let suite = file::parse(suite, "fixture.toml").unwrap();
        let points = expand(&suite).unwrap();
        let meta = Meta {
            format_version: crate::results::FORMAT_VERSION,
            run_id: format!("20260101T000000Z-{label}"),
            created: "2026-01-01T00:00:00Z".into(),
            backend: "fake".into(),
            label: Some(label.into()),
            suite: "fixture".into(),
            host: HostInfo {
                hostname: "host".into(),
                kernel: "6.1.0".into(),
                cpu_model: "Test CPU".into(),
                cores: 8,
            },
            tools: BTreeMap::from([("cnibench".into(), "test".into())]),
            rule: StopRule::default(),
            warmup_reps: 1,
            warmup_s: None,
            points: points.clone(),
            command: vec!["cnibench".into(), "run".into()],
        };
        let mut fake = FakeBackend::new(seed);
        let mut records = Vec::new();
        let n = points.len();
        for (i, p) in points.iter().enumerate() {
            if p.kind == crate::scenario::ScenarioKind::PodToPodPolicies {
                records.push(Record::PointEnd(PointEnd {
                    point: p.id.clone(),
                    status: PointStatus::NotApplicable,
                    reps: 0,
                    note: Some("needs 10 filler pods (use the lab or kube backend)".into()),
                    setup_s: None,
                }));
                continue;
            }
            let reps = if i == n - 1 { 2 } else { 5 };
            for rep in 0..reps {
                let out = fake.run_rep(p, rep, &Cancel::default()).unwrap();
                records.push(Record::Rep(RepRecord {
                    point: p.id.clone(),
                    rep,
                    warmup: rep == 0,
                    started_unix_s: 0.0,
                    wall_s: 2.0,
                    metrics: out.metrics,
                    start: None,
                    raw: out.raw,
                }));
            }
            let status = if i == n - 1 {
                PointStatus::Failed
            } else if p.kind == crate::scenario::ScenarioKind::HttpReplicas {
                PointStatus::MaxReps
            } else {
                PointStatus::Converged
            };
            records.push(Record::PointEnd(PointEnd {
                point: p.id.clone(),
                status,
                reps: reps - 1,
                note: (status == PointStatus::Failed)
                    .then(|| "repetition 2 failed: injected".into()),
                setup_s: None,
            }));
        }
        let summary = summarize(&meta, &records, &[]);
        (meta, summary, records)
    }

    /// [`run`] with the http-replicas point replaced by issue 13's quick-suite shape: TTFB
    /// 0.22–0.43 ms for 8 repetitions, then 4.4–4.6 ms, and throughput 6.8 then 1.5 Gbit/s.
    pub fn unstable_run() -> (Meta, RunSummary) {
        let (meta, mut run) = self::run("cni-a", 1);
        let p = run
            .points
            .iter_mut()
            .find(|p| p.point.kind == crate::scenario::ScenarioKind::HttpReplicas)
            .unwrap();
        let ttfb = vec![
            0.31, 0.22, 0.43, 0.27, 0.25, 0.38, 0.29, 0.33, 4.5, 4.4, 4.6, 4.45,
        ];
        let gbps = vec![
            6.8, 6.7, 6.9, 6.85, 6.75, 6.8, 6.95, 6.7, 1.5, 1.52, 1.48, 1.51,
        ];
        let reps: Vec<u32> = (1..=12).collect();
        p.metrics.clear();
        for (key, raw) in [(p.primary.clone(), ttfb), ("throughput_gbps".into(), gbps)] {
            let unit = crate::metrics::info(&key).unit;
            let m = crate::results::MetricSummary::new(raw, &reps, unit).unwrap();
            p.metrics.insert(key, m);
        }
        (meta, run)
    }
}

/// A point the cluster did not enforce, through every output (one module that sees them
/// all: table, markdown, html and csv do not see each other).
#[cfg(test)]
mod not_enforced_tests {
    #[test]
    fn points_a_cluster_does_not_enforce_are_not_counted_as_measured_and_say_why() {
        let (meta, _, mut records) = super::fixtures::run_with_records("cni-a", 1);
        let evidence = "the CNI let a pod that no NetworkPolicy admits reach the server";
        for r in &mut records {
            if let crate::results::Record::PointEnd(e) = r
                && e.status == crate::results::PointStatus::NotApplicable
            {
                e.status = crate::results::PointStatus::NotEnforced;
                e.note = Some(evidence.into());
            }
        }
        let run = crate::results::summarize(&meta, &records, &[]);
        let text = super::table::footer(&run);
        let total = run.points.len();
        let ne = run
            .points
            .iter()
            .filter(|p| p.status == Some(crate::results::PointStatus::NotEnforced))
            .count();
        assert!(ne > 0);
        assert!(
            text.contains(&format!("of {} measured points", total - ne)),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "{ne} not measured: the cluster does not enforce what they test"
            )),
            "{text}"
        );
        let line = text
            .lines()
            .find(|l| l.contains("NOT ENFORCED"))
            .unwrap_or_else(|| panic!("no NOT ENFORCED line: {text}"));
        assert!(line.contains(evidence), "{line}");
        assert!(!text.contains("not applicable:"), "{text}");
        // Every output says it, with the evidence.
        let md = crate::report::markdown::render(&meta, &run, &[]);
        assert!(
            md.contains("**NOT ENFORCED**") && md.contains(evidence),
            "{md}"
        );
        let html = crate::report::html::render(&meta, &run, &[]);
        assert!(html.contains("NOT ENFORCED") && html.contains(evidence));
        assert!(crate::report::csv::render(&run).contains("not-enforced"));
    }
}

/// A run directory read back the ways `cnibench report` reads it: a gzipped log, or only
/// summary.json. Here rather than in results.rs because the fixture run is the report's.
#[cfg(test)]
mod run_dir_tests {
    use std::io::Write as _;
    use std::path::Path;

    use crate::results::{
        Meta, RESULTS, RESULTS_GZ, Record, ResultsError, RunDir, STORED_SUMMARY_WARNING,
    };

    /// The report fixture's run (the fake backend's records) written as a run directory.
    fn write_run(dir: &Path) -> (Meta, Vec<Record>) {
        let (meta, _, records) = super::fixtures::run_with_records("gz", 1);
        let (_, mut w) = RunDir::create(dir, &meta).unwrap();
        for r in &records {
            w.append(r).unwrap();
        }
        (meta, records)
    }

    #[test]
    fn gzip_log_reads_like_the_plain_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (meta, records) = write_run(tmp.path());
        let (_, plain) = RunDir::open(tmp.path()).unwrap();
        let text = std::fs::read(tmp.path().join(RESULTS)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&text).unwrap();
        std::fs::write(tmp.path().join(RESULTS_GZ), gz.finish().unwrap()).unwrap();
        std::fs::remove_file(tmp.path().join(RESULTS)).unwrap();
        let (_, packed) = RunDir::open(tmp.path()).unwrap();
        assert_eq!(packed.parsed, plain.parsed);
        assert_eq!(packed.parsed.records.len(), records.len());
        assert_eq!(packed.summary(), plain.summary());
        assert_eq!(packed.meta, meta);
        assert!(matches!(
            RunDir::resume(tmp.path()),
            Err(ResultsError::Compressed { .. })
        ));
        std::fs::write(tmp.path().join(RESULTS_GZ), b"not gzip").unwrap();
        let err = RunDir::open(tmp.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("results.jsonl.gz: not a readable gzip"),
            "{err}"
        );
    }

    #[test]
    fn without_a_log_the_summary_file_is_read_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let (meta, records) = write_run(tmp.path());
        let dir = RunDir {
            path: tmp.path().to_path_buf(),
        };
        let (_, from_log) = RunDir::open(tmp.path()).unwrap();
        let summary = from_log.summary();
        assert_eq!(summary.points.len(), meta.points.len());
        assert!(!records.is_empty());
        dir.write_summary(&summary).unwrap();
        std::fs::remove_file(tmp.path().join(RESULTS)).unwrap();
        let (_, loaded) = RunDir::open(tmp.path()).unwrap();
        assert!(loaded.parsed.records.is_empty());
        let read = loaded.summary();
        // Values survive the JSON round trip to the last bit or two; statuses and counts exactly.
        for (a, b) in read.points.iter().zip(&summary.points) {
            assert_eq!(
                (&a.point, a.status, a.metrics.len()),
                (&b.point, b.status, b.metrics.len())
            );
            for (k, m) in &a.metrics {
                let close = m
                    .raw
                    .iter()
                    .zip(&b.metrics[k].raw)
                    .all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs());
                assert!(close, "{k}");
            }
        }
        assert_eq!(read.warnings, [STORED_SUMMARY_WARNING]);
    }
}
