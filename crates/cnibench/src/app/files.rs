//! The commands over run directories: `report` renders one, `compare` several,
//! `import-iperf3` files `iperf3 -J` output as one. Renderers return strings
//! ([`crate::report`]); this module writes them to files and stdout.

use std::path::{Path, PathBuf};

use super::args::Format;
use super::{AppError, Result};
use crate::results::{self, LoadedRun, Meta, RunDir, RunSummary};
use crate::{clock, host, report};

/// Writes report.md, report.csv, report.html and the charts into `dir`.
pub fn write_reports(dir: &Path, loaded: &LoadedRun, summary: &RunSummary) -> Result<()> {
    // Charts of an earlier rendering that this one no longer draws must not linger.
    let charts = dir.join(report::markdown::CHARTS_DIR);
    if charts.is_dir() {
        for entry in std::fs::read_dir(&charts).map_err(AppError::file("cannot list", &charts))? {
            let path = entry
                .map_err(AppError::file("cannot list", &charts))?
                .path();
            if path.extension().is_some_and(|e| e == "svg") {
                std::fs::remove_file(&path).map_err(AppError::file("cannot remove", &path))?;
            }
        }
    }
    for (name, text) in report::files(&loaded.meta, summary, &loaded.parsed.records) {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(AppError::file("cannot create", parent))?;
        }
        std::fs::write(&path, text).map_err(AppError::file("cannot write", &path))?;
    }
    Ok(())
}

/// The run in `path`, its warnings (a torn last line...) on stderr.
fn open_run(path: &Path) -> Result<LoadedRun> {
    let (_, loaded) = RunDir::open(path)?;
    for w in &loaded.parsed.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    Ok(loaded)
}

/// `cnibench report`: the table on stdout and the report files written into the run
/// directory, or (with a `format`) that one format on stdout.
pub fn report(run_dir: &Path, format: Option<Format>) -> Result<()> {
    let loaded = open_run(run_dir)?;
    let summary = loaded.summary();
    match format {
        None => {
            write_reports(run_dir, &loaded, &summary)?;
            print!("{}", report::table::render(&loaded.meta, &summary));
            eprintln!(
                "wrote report.html, report.md and report.csv in {}",
                run_dir.display()
            );
        }
        Some(Format::Table) => print!("{}", report::table::render(&loaded.meta, &summary)),
        Some(f @ (Format::Markdown | Format::Csv | Format::Html)) => {
            let name = match f {
                Format::Markdown => "report.md",
                Format::Csv => "report.csv",
                _ => "report.html",
            };
            let files = report::files(&loaded.meta, &summary, &loaded.parsed.records);
            let text = files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.as_str())
                .unwrap_or_default();
            print!("{text}");
        }
    }
    Ok(())
}

/// `cnibench compare`: `runs` point by point (the first is the reference) in `format` on
/// stdout, and as one HTML page into `html` when given.
pub fn compare(runs: &[PathBuf], format: Format, html: Option<&Path>) -> Result<()> {
    let loaded = runs
        .iter()
        .map(|p| open_run(p))
        .collect::<Result<Vec<_>>>()?;
    let runs: Vec<_> = loaded.iter().map(LoadedRun::summary).collect();
    let metas: Vec<Meta> = loaded.into_iter().map(|l| l.meta).collect();
    let lines = report::compare::compare(&runs);
    match format {
        Format::Table => print!("{}", report::compare::render_table(&runs, &lines)),
        Format::Markdown => print!("{}", report::compare::render_markdown(&runs, &lines)),
        Format::Csv => print!("{}", report::compare::render_csv(&runs, &lines)),
        Format::Html => print!("{}", report::compare::render_html(&runs, &metas, &lines)),
    }
    if let Some(path) = html {
        std::fs::write(path, report::compare::render_html(&runs, &metas, &lines))
            .map_err(AppError::file("cannot write", path))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// `cnibench import-iperf3`: `files` (one `iperf3 -J` repetition each) filed under point
/// `name` in a new run directory (`out`, default `results/<stamp>-iperf3`); returns it.
pub fn import_iperf3(
    files: &[PathBuf],
    name: &str,
    out: Option<PathBuf>,
    label: Option<String>,
) -> Result<PathBuf> {
    let docs = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).map_err(AppError::file("cannot read", f))?;
            let json = serde_json::from_str(&text).map_err(|source| AppError::Json {
                path: f.clone(),
                source,
            })?;
            Ok((f.display().to_string(), json))
        })
        .collect::<Result<Vec<_>>>()?;
    let run_id = super::run_id("iperf3", label.as_deref().or(Some("iperf3")));
    let created = clock::utc_rfc3339(clock::wall_time().as_secs());
    let (mut meta, records) =
        report::iperf3::import(&docs, name, &run_id, &created, label, host::host_info())?;
    meta.command = std::env::args().collect();
    let out = out.unwrap_or_else(|| Path::new("results").join(&run_id));
    let (dir, mut writer) = RunDir::create(&out, &meta)?;
    for r in &records {
        writer.append(r)?;
    }
    let summary = results::summarize(&meta, &records, &[]);
    dir.write_summary(&summary)?;
    Ok(dir.path)
}
