//! The one error type of the lab: every variant names what failed, and command failures
//! carry the exact command line and its stderr.

use std::io;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A field of a [`super::LabSpec`] or of a request is out of range.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field (or request) that is wrong.
        field: &'static str,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The lab needs CAP_NET_ADMIN.
    #[error(
        "the lab backend needs root (CAP_NET_ADMIN) to create network namespaces; run as root or use the loopback backend"
    )]
    NotRoot,
    /// A system tool could not be started at all.
    #[error(
        "cannot run `{command}` (is it installed? the lab needs iproute2, iptables and nftables): {source}"
    )]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A system tool ran and failed.
    #[error("`{command}` failed ({status}){line}: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status as printed by the OS.
        status: String,
        /// The batch line that failed, when the tool said which (`ip -batch` does).
        line: String,
        /// The tool's standard error, trimmed.
        stderr: String,
    },
    /// A tool's output could not be understood.
    #[error("cannot parse the output of `{command}`: {message}")]
    Parse {
        /// The command whose output was read.
        command: String,
        /// What was unexpected.
        message: String,
    },
    /// The kernel has no IPVS (and modules cannot be loaded here).
    #[error("this kernel has no IPVS; use --proxy iptables or nftables")]
    NoIpvs,
    /// IPVS exists but the lab does not program it.
    #[error("the lab does not implement the IPVS proxy yet; use --proxy iptables or nftables")]
    IpvsUnsupported,
    /// Entering a network namespace failed.
    #[error("cannot enter network namespace {netns}: {source}")]
    Setns {
        /// Namespace name (under /run/netns).
        netns: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A closure run inside a namespace panicked.
    #[error("the thread running inside network namespace {netns} panicked")]
    Panicked {
        /// Namespace name.
        netns: String,
    },
    /// A name does not refer to a pod or node of this lab.
    #[error("no {kind} named {name} in this lab")]
    Unknown {
        /// "pod", "node" or "service".
        kind: &'static str,
        /// The name asked for.
        name: String,
    },
    /// An address range of the plan is full.
    #[error("no free address left for {what} (range {range})")]
    Exhausted {
        /// What needed an address.
        what: &'static str,
        /// The range that is full.
        range: &'static str,
    },
}
