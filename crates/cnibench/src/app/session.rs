//! A run ready for the run loop, new ([`super::run`]) or resumed ([`super::resume`]).

use super::{AppError, Result};
use crate::backend::{Backend, Cancel};
use crate::results::{Meta, Record, RunDir, RunWriter};
use crate::runner::{self, Observer, RunConfig, RunOutcome};

/// A run ready for the run loop: its directory, what it records, the records of an
/// earlier invocation (resume) and the backend its points run on.
pub struct Session {
    /// The run directory.
    pub dir: RunDir,
    /// The run's `meta.json`.
    pub meta: Meta,
    /// Records of the invocations before this one (empty for a new run).
    pub prior: Vec<Record>,
    /// Appends to `results.jsonl`.
    pub writer: RunWriter,
    /// Where the points run.
    pub backend: Box<dyn Backend>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("dir", &self.dir.path)
            .field("backend", &self.backend.name())
            .field("prior", &self.prior.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Runs the points not finished yet under the observer `observer`.
    pub fn execute(&mut self, cancel: &Cancel, observer: &mut dyn Observer) -> Result<RunOutcome> {
        let config = RunConfig {
            rule: self.meta.rule,
            warmup_reps: self.meta.warmup_reps,
            warmup_s: self.meta.warmup_s,
        };
        runner::run(
            self.backend.as_mut(),
            &self.meta.points,
            &self.prior,
            &mut self.writer,
            &config,
            cancel,
            observer,
        )
        .map_err(AppError::Record)
    }
}
