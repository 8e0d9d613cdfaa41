//! `netload schema`: the JSON Schema of the documents `--json` prints.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};

use crate::ndr::RateSearchReport;
use crate::probe::ProbeReport;
use crate::report::StreamReport;

/// Flags of `netload schema`.
#[derive(Args)]
pub struct SchemaArgs {
    /// Which document.
    #[arg(value_enum, default_value_t = SchemaKind::Stream)]
    kind: SchemaKind,
}

/// The documents with a schema.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// `netload tcp|udp --json`.
    Stream,
    /// `netload udp --find-rate --json`.
    RateSearch,
    /// `netload probe --json`.
    Probe,
}

/// `netload schema`: prints the schema, pretty JSON.
pub fn run(args: &SchemaArgs) -> Result<ExitCode> {
    let schema = match args.kind {
        SchemaKind::Stream => schemars::schema_for!(StreamReport),
        SchemaKind::RateSearch => schemars::schema_for!(RateSearchReport),
        SchemaKind::Probe => schemars::schema_for!(ProbeReport),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).expect("schema serialises")
    );
    Ok(ExitCode::SUCCESS)
}
