//! The run directory: `meta.json`, `results.jsonl` (appended and flushed after every
//! repetition, with netload's raw JSON embedded), `summary.json`; loading and resuming.
//!
//! Parsing and summarizing records are pure ([`parse_records`], [`summarize`]); only
//! [`RunDir`] and [`RunWriter`] touch the file system. A torn last line (a crash during a
//! write) is reported as a warning and, on resume, cut off before appending.
//!
//! A run filed for others (benches/runs/) may carry `results.jsonl.gz` (gzip) instead of
//! `results.jsonl`; reading is transparent, so a report rendered from the filed files equals
//! the one written at the end of the run. A directory with neither (filed before the
//! repetitions were kept) is read from its `summary.json`, with a warning saying what that
//! loses (warm-ups and the tools' raw output).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::carryover::StartState;
use crate::metrics::{self, Metrics};
use crate::scenario::Point;
use crate::stats::stationarity::{self, Instability};
use crate::stats::{self, StopRule, Summary};

/// Version of the run-directory format; a run written by another version is refused with
/// a clear error instead of being misread.
pub const FORMAT_VERSION: u32 = 1;

/// `meta.json`: everything needed to interpret (and resume) a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Run id (also the default directory name).
    pub run_id: String,
    /// Creation time, RFC 3339 UTC.
    pub created: String,
    /// Backend name (`fake`, `loopback`, `lab`, `kube`, `iperf3-import`).
    pub backend: String,
    /// User label, e.g. the CNI name and version.
    pub label: Option<String>,
    /// Suite name.
    pub suite: String,
    /// The machine cnibench ran on.
    pub host: HostInfo,
    /// Tool versions (cnibench, netload, ...).
    pub tools: BTreeMap<String, String>,
    /// The stopping rule in force.
    pub rule: StopRule,
    /// Warm-up repetitions per point (discarded).
    pub warmup_reps: u32,
    /// Length cap of a warm-up repetition, seconds; absent: as long as a measured one
    /// (runs written before the cap existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_s: Option<f64>,
    /// The expanded points, in order (so `--resume` needs no suite file).
    pub points: Vec<Point>,
    /// The command line that started the run (for reproducing it).
    #[serde(default)]
    pub command: Vec<String>,
}

/// Facts about the host cnibench ran on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Kernel release (`uname -r`).
    pub kernel: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Online CPU cores.
    pub cores: u32,
}

/// How a point ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PointStatus {
    /// The CI target was met.
    Converged,
    /// Max repetitions reached without meeting the CI target.
    MaxReps,
    /// The time budget ran out before the CI target was met.
    TimeBudget,
    /// The backend cannot run this point (recorded, not faked).
    NotApplicable,
    /// The cluster ignores what the point is about (its policies are not enforced): not
    /// measured, since that would time a datapath without them.
    NotEnforced,
    /// The backend failed; measured repetitions are kept.
    Failed,
    /// Interrupted by the user (Ctrl-C).
    Interrupted,
}

impl PointStatus {
    /// Whether `--resume` may skip the point.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PointStatus::Converged
                | PointStatus::MaxReps
                | PointStatus::TimeBudget
                | PointStatus::NotApplicable
                | PointStatus::NotEnforced
        )
    }

    /// Short text for tables and flags.
    pub fn as_str(self) -> &'static str {
        match self {
            PointStatus::Converged => "converged",
            PointStatus::MaxReps => "NOT CONVERGED (max reps)",
            PointStatus::TimeBudget => "NOT CONVERGED (time budget)",
            PointStatus::NotApplicable => "not applicable",
            PointStatus::NotEnforced => "NOT ENFORCED",
            PointStatus::Failed => "FAILED",
            PointStatus::Interrupted => "INTERRUPTED",
        }
    }
}

/// One repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepRecord {
    /// Point id.
    pub point: String,
    /// Index among this point's repetitions, warm-ups included, from 0.
    pub rep: u32,
    /// A warm-up repetition (excluded from statistics).
    pub warmup: bool,
    /// Start, seconds since the Unix epoch.
    pub started_unix_s: f64,
    /// Wall time of the repetition, seconds.
    pub wall_s: f64,
    /// Extracted metrics.
    pub metrics: Metrics,
    /// What the repetition started from (state earlier traffic left, and what was reset
    /// or waited out); absent where the backend cannot observe it, and in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartState>,
    /// The tool's raw JSON, untouched.
    pub raw: serde_json::Value,
}

/// The end of a point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointEnd {
    /// Point id.
    pub point: String,
    /// How it ended.
    pub status: PointStatus,
    /// Measured repetitions of the point so far (warm-ups excluded).
    pub reps: u32,
    /// Why (not applicable, failed, how far from the CI target), or teardown problems.
    pub note: Option<String>,
    /// Wall time of the backend's `prepare` (building the point's environment and its
    /// self-checks), seconds; absent in runs written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_s: Option<f64>,
}

/// One line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    /// A repetition.
    Rep(RepRecord),
    /// A point ended.
    PointEnd(PointEnd),
}

/// Errors of the run directory.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The directory has no `meta.json`.
    #[error("{path} is not a cnibench run directory (no meta.json)")]
    NotARun {
        /// The directory.
        path: PathBuf,
    },
    /// The directory already holds a run.
    #[error("{path} already holds a run (meta.json exists); use --resume {path} or another --out")]
    Exists {
        /// The directory.
        path: PathBuf,
    },
    /// Written by another format version.
    #[error(
        "{path} was written by run-directory format {found} (cnibench {writer}); this cnibench reads format {FORMAT_VERSION}: read it with the cnibench that wrote it"
    )]
    Version {
        /// The directory.
        path: PathBuf,
        /// Format found (`none` when `meta.json` has no version).
        found: String,
        /// The cnibench version that wrote it, if recorded.
        writer: String,
    },
    /// `--resume` of a run whose repetitions are only compressed.
    #[error(
        "{path} holds results.jsonl.gz but no results.jsonl: a filed run is read-only; decompress it first (gunzip -k {path}/results.jsonl.gz) to continue it"
    )]
    Compressed {
        /// The directory.
        path: PathBuf,
    },
    /// `results.jsonl.gz` is not valid gzip.
    #[error("{path}: not a readable gzip file: {source}")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `summary.json` (read when there are no repetitions) does not parse.
    #[error("{path}: invalid summary.json: {source}")]
    Summary {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// `meta.json` does not parse.
    #[error("{path}: invalid meta.json: {source}")]
    Meta {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError {
    let path = path.to_path_buf();
    move |source| ResultsError::Io {
        action,
        path,
        source,
    }
}

/// Records parsed from `results.jsonl` text.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// Valid records in order.
    pub records: Vec<Record>,
    /// Lines that could not be read, with line numbers.
    pub warnings: Vec<String>,
    /// Byte length of the prefix that ends with the last complete, valid line.
    pub valid_len: usize,
    /// The last valid record lacks its newline (appending must add one first).
    pub missing_newline: bool,
}

/// Parses `results.jsonl`. A bad last line without a newline is a torn write; other bad
/// lines are corrupt; both become warnings, never errors.
pub fn parse_records(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut offset = 0;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (i, line) in lines.iter().enumerate() {
        let complete = line.ends_with('\n');
        let body = line.trim_end();
        offset += line.len();
        if body.is_empty() {
            if complete {
                out.valid_len = offset;
            }
            continue;
        }
        match serde_json::from_str::<Record>(body) {
            Ok(rec) => {
                // A whole record without its newline lost only the newline: keep it.
                out.records.push(rec);
                out.valid_len = offset;
                out.missing_newline = !complete;
            }
            Err(_) if !complete && i == lines.len() - 1 => out.warnings.push(format!(
                "results.jsonl line {}: truncated last line ({} bytes, no newline) ignored: the run was cut off while writing",
                i + 1,
                line.len()
            )),
            Err(e) => {
                out.warnings.push(format!("results.jsonl line {}: corrupt record ignored: {e}", i + 1));
                out.valid_len = offset;
            }
        }
    }
    out
}

/// Statistics of one metric of a point, with every raw value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// Descriptive statistics.
    pub stats: Summary,
    /// Every measured repetition's value, in order.
    pub raw: Vec<f64>,
    /// The values are not stationary (level shift, trend or two modes): `stats` averages
    /// regimes and must not be quoted alone. Absent when stationary or not assessed, and
    /// in summaries written before the check existed (it is recomputed from `raw` whenever
    /// a run is summarized again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unstable: Option<Instability>,
}

impl MetricSummary {
    /// Statistics of `raw` with its stationarity verdict; `reps` are the recorded
    /// repetition numbers of the values (for [`Instability::rep`]), `unit` the metric's.
    /// `None` for no values.
    pub fn new(raw: Vec<f64>, reps: &[u32], unit: &str) -> Option<MetricSummary> {
        let stats = stats::summarize(&raw)?;
        let unstable = stationarity::detect(&raw).map(|mut i| {
            i.rep = i.index.and_then(|k| reps.get(k).copied());
            i.reason = i.describe(unit);
            i
        });
        Some(MetricSummary {
            stats,
            raw,
            unstable,
        })
    }
}

/// What a run measured at one point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointSummary {
    /// The point.
    pub point: Point,
    /// How it ended; `None` when it never ended (crash or still running).
    pub status: Option<PointStatus>,
    /// Reason or problem.
    pub note: Option<String>,
    /// Key of the primary metric.
    pub primary: String,
    /// Warm-up repetitions run.
    pub warmups: u32,
    /// Seconds the backend took to prepare the point (see [`PointEnd::setup_s`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup_s: Option<f64>,
    /// Per metric statistics over measured repetitions.
    pub metrics: BTreeMap<String, MetricSummary>,
}

impl PointSummary {
    /// The primary metric's statistics, if any repetition was measured.
    pub fn primary_summary(&self) -> Option<&MetricSummary> {
        self.metrics.get(&self.primary)
    }

    /// The primary metric's stationarity verdict: `Some` when its repetitions show a level
    /// shift, a trend or two modes, so its mean averages regimes (see
    /// [`crate::stats::stationarity`]). Levels, the repetition and the reason are in it.
    pub fn instability(&self) -> Option<&Instability> {
        self.primary_summary()?.unstable.as_ref()
    }

    /// Whether the primary metric is not stationary.
    pub fn is_unstable(&self) -> bool {
        self.instability().is_some()
    }

    /// Why the point is unstable, naming the metric: `TTFB p50: level shift at repetition
    /// 10 of 12: 0.246 ms -> 3.36 ms (x13.7)`.
    pub fn unstable_reason(&self) -> Option<String> {
        self.instability()
            .map(|i| format!("{}: {}", metrics::info(&self.primary).label, i.reason))
    }

    /// The point's CI target was met on a stationary series. An unstable point recorded
    /// as converged (runs written before the check) does not count.
    pub fn converged(&self) -> bool {
        self.status == Some(PointStatus::Converged) && !self.is_unstable()
    }

    /// Whether a reader must look at this point: it did not converge, is unstable, failed,
    /// was interrupted or never ended. Not-applicable points are expected, not alarming.
    pub fn needs_attention(&self) -> bool {
        self.is_unstable()
            || !matches!(
                self.status,
                Some(PointStatus::Converged | PointStatus::NotApplicable)
            )
    }

    /// Whether the backend declined the point.
    pub fn not_applicable(&self) -> bool {
        self.status == Some(PointStatus::NotApplicable)
    }

    /// A flag for every output: empty when the point converged. `UNSTABLE` wins over "not
    /// converged" (it says why), not over a failure or an interruption.
    pub fn flag(&self) -> &'static str {
        match self.status {
            Some(
                s @ (PointStatus::Failed
                | PointStatus::Interrupted
                | PointStatus::NotApplicable
                | PointStatus::NotEnforced),
            ) => s.as_str(),
            _ if self.is_unstable() => UNSTABLE,
            Some(s) => match s {
                PointStatus::Converged => "",
                other => other.as_str(),
            },
            None if self.metrics.is_empty() && self.warmups == 0 => "NOT RUN",
            None => "INCOMPLETE",
        }
    }
}

/// The flag of a point whose repetitions are not stationary.
pub const UNSTABLE: &str = "UNSTABLE";

/// `summary.json`: the statistics of a whole run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Backend.
    pub backend: String,
    /// User label.
    pub label: Option<String>,
    /// Suite name.
    pub suite: String,
    /// Points in suite order.
    pub points: Vec<PointSummary>,
    /// Problems found while reading the run.
    pub warnings: Vec<String>,
}

impl RunSummary {
    /// One line: how many measured points converged, how many are unstable, how many
    /// were not applicable or not enforced.
    pub fn verdict(&self) -> String {
        let na = self.points.iter().filter(|p| p.not_applicable()).count();
        let not_enforced = self
            .points
            .iter()
            .filter(|p| p.status == Some(PointStatus::NotEnforced))
            .count();
        let measured = self.points.len() - na - not_enforced;
        let converged = self.points.iter().filter(|p| p.converged()).count();
        let unstable = self.points.iter().filter(|p| p.is_unstable()).count();
        let attention = self.points.iter().filter(|p| p.needs_attention()).count();
        let mut v = format!("{converged} of {measured} measured points converged");
        if unstable > 0 {
            let _ = write!(
                v,
                "; {unstable} unstable (level shift, trend or two modes: not averaged)"
            );
        }
        if na > 0 {
            let _ = write!(v, "; {na} not applicable on this backend");
        }
        if not_enforced > 0 {
            let _ = write!(
                v,
                "; {not_enforced} not measured: the cluster does not enforce what they test"
            );
        }
        if attention > 0 {
            let _ = write!(v, "; {attention} need attention");
        }
        v
    }

    /// A short name for tables: the label, else the run id.
    pub fn name(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.run_id)
    }
}

/// One metric's measured values and their recorded repetition numbers.
type Series = (Vec<f64>, Vec<u32>);

/// Summarizes records against the run's points (pure).
pub fn summarize(meta: &Meta, records: &[Record], warnings: &[String]) -> RunSummary {
    let mut points: Vec<PointSummary> = meta
        .points
        .iter()
        .map(|p| PointSummary {
            point: p.clone(),
            status: None,
            note: None,
            primary: metrics::primary_of(&p.workload).to_string(),
            warmups: 0,
            setup_s: None,
            metrics: BTreeMap::new(),
        })
        .collect();
    let index: BTreeMap<&str, usize> = meta
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    // Per point and metric: the measured values and their recorded repetition numbers.
    let mut values: Vec<BTreeMap<String, Series>> = vec![BTreeMap::new(); points.len()];
    let mut unknown = Vec::new();
    for rec in records {
        let id = match rec {
            Record::Rep(r) => &r.point,
            Record::PointEnd(e) => &e.point,
        };
        let Some(&i) = index.get(id.as_str()) else {
            if !unknown.contains(id) {
                unknown.push(id.clone());
            }
            continue;
        };
        match rec {
            Record::Rep(r) if r.warmup => points[i].warmups += 1,
            Record::Rep(r) => {
                for (k, v) in &r.metrics {
                    let (vals, reps) = values[i].entry(k.clone()).or_default();
                    vals.push(*v);
                    reps.push(r.rep);
                }
            }
            Record::PointEnd(e) => {
                points[i].status = Some(e.status);
                points[i].note.clone_from(&e.note);
                points[i].setup_s = e.setup_s.or(points[i].setup_s);
            }
        }
    }
    for (p, vals) in points.iter_mut().zip(values) {
        for (k, (raw, reps)) in vals {
            let unit = metrics::info(&k).unit;
            if let Some(m) = MetricSummary::new(raw, &reps, unit) {
                p.metrics.insert(k, m);
            }
        }
    }
    let mut warnings = warnings.to_vec();
    for id in unknown {
        warnings.push(format!(
            "results.jsonl has records of point `{id}`, which is not in meta.json; ignored"
        ));
    }
    RunSummary {
        run_id: meta.run_id.clone(),
        backend: meta.backend.clone(),
        label: meta.label.clone(),
        suite: meta.suite.clone(),
        points,
        warnings,
    }
}

/// Ids of the points `--resume` may skip: their last end record is final.
pub fn finished_points(records: &[Record]) -> BTreeMap<String, PointStatus> {
    let mut last = BTreeMap::new();
    for rec in records {
        if let Record::PointEnd(e) = rec {
            last.insert(e.point.clone(), e.status);
        }
    }
    last.retain(|_, s: &mut PointStatus| s.is_final());
    last
}

/// A run loaded from disk.
#[derive(Debug, Clone)]
pub struct LoadedRun {
    /// The directory.
    pub dir: PathBuf,
    /// `meta.json`.
    pub meta: Meta,
    /// Parsed `results.jsonl` (or `results.jsonl.gz`).
    pub parsed: Parsed,
    /// `summary.json`, read only when the directory has no repetition log at all.
    pub stored_summary: Option<RunSummary>,
}

impl LoadedRun {
    /// The run's statistics: from the repetitions, or from `summary.json` when the
    /// directory has none (with a warning of what is missing).
    pub fn summary(&self) -> RunSummary {
        match &self.stored_summary {
            Some(stored) => {
                let mut s = stored.clone();
                s.warnings.push(STORED_SUMMARY_WARNING.into());
                s
            }
            None => summarize(&self.meta, &self.parsed.records, &self.parsed.warnings),
        }
    }
}

/// Said by every report of a run read from `summary.json` alone.
pub const STORED_SUMMARY_WARNING: &str = "no results.jsonl: read from summary.json, which has every measured value but not the warm-ups or the tools' raw output (latency percentiles, CPU split); the run was filed before its repetitions were kept";

/// A run directory on disk.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The directory.
    pub path: PathBuf,
}

/// Name of the metadata file.
pub const META: &str = "meta.json";
/// Name of the repetition log.
pub const RESULTS: &str = "results.jsonl";
/// Name of the gzip-compressed repetition log of a filed run.
pub const RESULTS_GZ: &str = "results.jsonl.gz";
/// Name of the summary file.
pub const SUMMARY: &str = "summary.json";

impl RunDir {
    /// Creates the directory (and parents), writes `meta.json` and opens `results.jsonl`.
    /// Refuses a directory that already holds a run.
    pub fn create(path: &Path, meta: &Meta) -> Result<(RunDir, RunWriter), ResultsError> {
        std::fs::create_dir_all(path).map_err(io("cannot create run directory", path))?;
        let meta_path = path.join(META);
        if meta_path.exists() {
            return Err(ResultsError::Exists {
                path: path.to_path_buf(),
            });
        }
        let json = serde_json::to_string_pretty(meta).expect("meta serializes");
        std::fs::write(&meta_path, json + "\n").map_err(io("cannot write", &meta_path))?;
        let dir = RunDir {
            path: path.to_path_buf(),
        };
        let writer = RunWriter::open(&path.join(RESULTS), None)?;
        Ok((dir, writer))
    }

    /// Opens an existing run for reading.
    pub fn open(path: &Path) -> Result<(RunDir, LoadedRun), ResultsError> {
        let meta_path = path.join(META);
        if !meta_path.exists() {
            return Err(ResultsError::NotARun {
                path: path.to_path_buf(),
            });
        }
        let text = std::fs::read_to_string(&meta_path).map_err(io("cannot read", &meta_path))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|source| ResultsError::Meta {
                path: meta_path.clone(),
                source,
            })?;
        let found = value
            .get("format_version")
            .and_then(serde_json::Value::as_u64);
        if found != Some(u64::from(FORMAT_VERSION)) {
            let writer = value
                .pointer("/tools/cnibench")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown version")
                .to_string();
            return Err(ResultsError::Version {
                path: path.to_path_buf(),
                found: found.map_or("none".into(), |v| v.to_string()),
                writer,
            });
        }
        let meta: Meta = serde_json::from_value(value).map_err(|source| ResultsError::Meta {
            path: meta_path,
            source,
        })?;
        let (text, stored_summary) = match read_results(path)? {
            Some(text) => (text, None),
            None => (String::new(), read_stored_summary(path)?),
        };
        let parsed = parse_records(&text);
        let dir = RunDir {
            path: path.to_path_buf(),
        };
        Ok((
            dir.clone(),
            LoadedRun {
                dir: dir.path,
                meta,
                parsed,
                stored_summary,
            },
        ))
    }

    /// Opens an existing run to continue it: cuts a torn last line off `results.jsonl`
    /// (it was reported by [`RunDir::open`]'s warnings) and opens it for appending.
    pub fn resume(path: &Path) -> Result<(RunDir, LoadedRun, RunWriter), ResultsError> {
        if !path.join(RESULTS).exists() && path.join(RESULTS_GZ).exists() {
            return Err(ResultsError::Compressed {
                path: path.to_path_buf(),
            });
        }
        let (dir, loaded) = Self::open(path)?;
        let mut writer =
            RunWriter::open(&path.join(RESULTS), Some(loaded.parsed.valid_len as u64))?;
        if loaded.parsed.missing_newline {
            writer
                .file
                .write_all(b"\n")
                .map_err(io("cannot append to", &writer.path))?;
        }
        Ok((dir, loaded, writer))
    }

    /// Writes `summary.json` (atomically: temp file then rename).
    pub fn write_summary(&self, summary: &RunSummary) -> Result<PathBuf, ResultsError> {
        let path = self.path.join(SUMMARY);
        let tmp = self.path.join(".summary.json.tmp");
        let json = serde_json::to_string_pretty(summary).expect("summary serializes");
        std::fs::write(&tmp, json + "\n").map_err(io("cannot write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("cannot rename into", &path))?;
        Ok(path)
    }
}

/// The text of the run's repetition log: `results.jsonl`, else `results.jsonl.gz`
/// decompressed; `None` when there is neither. Invalid UTF-8 is replaced, so that the
/// line parser reports the damaged line instead of the whole file failing.
fn read_results(dir: &Path) -> Result<Option<String>, ResultsError> {
    let plain = dir.join(RESULTS);
    match std::fs::read(&plain) {
        Ok(bytes) => return Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot read", &plain)(e)),
    }
    let gz = dir.join(RESULTS_GZ);
    let file = match std::fs::File::open(&gz) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot read", &gz)(e)),
    };
    let mut bytes = Vec::new();
    // Multi-member: `gzip` of concatenated parts is still one log.
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(file), &mut bytes)
        .map_err(|source| ResultsError::Gzip { path: gz, source })?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// `summary.json` of a directory without a repetition log; `None` when it has none either
/// (a run that has not measured anything yet).
fn read_stored_summary(dir: &Path) -> Result<Option<RunSummary>, ResultsError> {
    let path = dir.join(SUMMARY);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot read", &path)(e)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| ResultsError::Summary { path, source })
}

/// Appends records to `results.jsonl`, flushing and syncing each one.
#[derive(Debug)]
pub struct RunWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl RunWriter {
    fn open(path: &Path, truncate_to: Option<u64>) -> Result<Self, ResultsError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io("cannot open for appending", path))?;
        if let Some(len) = truncate_to {
            let current = file.metadata().map_err(io("cannot stat", path))?.len();
            if current > len {
                file.set_len(len)
                    .map_err(io("cannot cut the torn last line of", path))?;
            }
        }
        Ok(RunWriter {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one record as a line and makes it durable before returning.
    pub fn append(&mut self, record: &Record) -> Result<(), ResultsError> {
        let mut line = serde_json::to_string(record).expect("records serialize");
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .map_err(io("cannot append to", &self.path))?;
        self.file.flush().map_err(io("cannot flush", &self.path))?;
        self.file
            .sync_data()
            .map_err(io("cannot sync", &self.path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(point: &str, status: PointStatus) -> Record {
        Record::PointEnd(PointEnd {
            point: point.into(),
            status,
            reps: 3,
            note: None,
            setup_s: None,
        })
    }

    #[test]
    fn torn_last_line_is_a_warning() {
        let good = serde_json::to_string(&end("a", PointStatus::Converged)).unwrap();
        let text = format!("{good}\n{{\"type\":\"rep\",\"poi");
        let parsed = parse_records(&text);
        assert_eq!(parsed.records.len(), 1);
        assert_eq!(parsed.valid_len, good.len() + 1);
        assert!(
            parsed.warnings[0].contains("line 2: truncated"),
            "{:?}",
            parsed.warnings
        );
    }

    #[test]
    fn corrupt_middle_line_is_skipped() {
        let good = serde_json::to_string(&end("a", PointStatus::Converged)).unwrap();
        let text = format!("{good}\nnot json\n{good}\n");
        let parsed = parse_records(&text);
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(parsed.valid_len, text.len());
        assert!(parsed.warnings[0].contains("line 2: corrupt"));
    }

    /// summary.json files written before the stationarity check still load; re-summarizing
    /// their values gives them the verdict.
    #[test]
    fn old_metric_summaries_load_and_get_the_verdict() {
        let raw = [291.839, 4788.223, 4747.263];
        let old = serde_json::json!({
            "stats": stats::summarize(&raw).unwrap(),
            "raw": raw,
        });
        let m: MetricSummary = serde_json::from_value(old).unwrap();
        assert_eq!(m.unstable, None);
        let again = MetricSummary::new(m.raw, &[1, 2, 3], "µs").unwrap();
        let i = again
            .unstable
            .as_ref()
            .expect("the thesis run's tcp-crr shape");
        assert_eq!((i.index, i.rep), (Some(1), Some(2)));
        assert!(
            i.reason.contains("292 µs -> 4768 µs (x16.3)"),
            "{}",
            i.reason
        );
        // And the new field round-trips.
        let json = serde_json::to_string(&again).unwrap();
        assert_eq!(serde_json::from_str::<MetricSummary>(&json).unwrap(), again);
    }

    #[test]
    fn only_final_ends_count_as_finished() {
        let recs = vec![
            end("a", PointStatus::Failed),
            end("b", PointStatus::Converged),
            end("c", PointStatus::Interrupted),
            end("a", PointStatus::MaxReps),
        ];
        let done = finished_points(&recs);
        assert_eq!(done.keys().collect::<Vec<_>>(), ["a", "b"]);
    }
}
