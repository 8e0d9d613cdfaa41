//! Why a command failed: the library's own errors passed through as they are, and what a
//! command adds to them (which flag, which file, which step). `main` prints the chain
//! once; [`chain`] writes it where a command reports an error without failing.

use std::path::PathBuf;

use crate::backend::BackendError;
use crate::backend::kube::cluster::KubeError;
use crate::backend::lab::LabError;
use crate::report::iperf3::ImportError;
use crate::results::ResultsError;
use crate::suite::SuiteError;

/// The error of a command.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// A flag, or a setting a run recorded, is out of range; the message names it and
    /// what is allowed.
    #[error("{0}")]
    Invalid(String),
    /// The suite: its file, an override, the expansion.
    #[error(transparent)]
    Suite(#[from] SuiteError),
    /// The run directory.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// A backend, or a tool it needs.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The lab: leftovers, recorded options.
    #[error(transparent)]
    Lab(#[from] LabError),
    /// The cluster, outside a run (`clean`).
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// `iperf3 -J` files that cannot be imported.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// The kube backend could not be built (connection, preflight).
    #[error("kube backend")]
    KubeBackend(#[source] KubeError),
    /// `clean --backend kube` failed.
    #[error("kube clean")]
    KubeClean(#[source] KubeError),
    /// A signal handler could not be installed.
    #[error("cannot install the {signal} handler")]
    Signal {
        /// Which: `Ctrl-C` or `SIGTERM`.
        signal: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A new run's directory could not be created.
    #[error("cannot start a run in {}", path.display())]
    Start {
        /// The run directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: ResultsError,
    },
    /// A repetition could not be recorded; the run stopped there.
    #[error("results could not be written; the run stopped")]
    Record(#[source] ResultsError),
    /// A file operation failed.
    #[error("{action} {}", path.display())]
    File {
        /// What was done: `cannot write`, `cannot read`...
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file that should hold JSON does not.
    #[error("{} is not JSON", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
}

/// The result of a command.
pub type Result<T, E = AppError> = std::result::Result<T, E>;

impl AppError {
    /// A [`AppError::File`] for `action` on `path`.
    pub(crate) fn file(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> AppError {
        let path = path.into();
        move |source| AppError::File {
            action,
            path,
            source,
        }
    }
}

/// `e` and its sources, each after `: ` (how `main` prints an error).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
