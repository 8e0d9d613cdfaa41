//! Driving the tools the backends run: started processes and their output (`proc`),
//! netload's and iperf3's command lines and results ([`netload`], [`iperf3`]), and the
//! local tools of a backend that starts processes on this host ([`LocalTools`]). Backends
//! import this module; it imports none of them.

pub mod iperf3;
pub mod netload;
pub(crate) mod proc;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::backend::BackendError;
use crate::scenario::StreamWorkload;

/// The tools of a backend that starts processes on this host (loopback, lab): netload, and
/// iperf3 when a point is measured with it.
#[derive(Debug, Clone)]
pub struct LocalTools {
    /// The netload binary.
    pub netload: PathBuf,
    /// Its `--version` line.
    pub netload_version: String,
    /// The iperf3 binary and its version line (see [`iperf3::locate`]).
    pub iperf3: Option<(PathBuf, String)>,
}

impl LocalTools {
    /// The netload binary at `netload` (see [`netload::locate`]); asks for its version.
    pub fn new(netload: PathBuf) -> Result<Self, BackendError> {
        let netload_version = netload::version(&netload)?;
        Ok(LocalTools {
            netload,
            netload_version,
            iperf3: None,
        })
    }

    /// The tools for `meta.json`: netload's version and path, and iperf3's when there is one.
    pub fn meta(&self) -> BTreeMap<String, String> {
        let mut tools = BTreeMap::from([
            ("netload".to_string(), self.netload_version.clone()),
            (
                "netload_path".to_string(),
                self.netload.display().to_string(),
            ),
        ]);
        if let Some((path, version)) = &self.iperf3 {
            tools.insert("iperf3".into(), version.clone());
            tools.insert("iperf3_path".into(), path.display().to_string());
        }
        tools
    }

    /// The iperf3 binary, or the error for a point that needs it when there is none.
    pub fn iperf3(&self) -> Result<&Path, BackendError> {
        self.iperf3
            .as_ref()
            .map(|(path, _)| path.as_path())
            .ok_or_else(|| BackendError::ToolMissing {
                tool: "iperf3".into(),
                detail: "this backend was started without iperf3 (a point asks for tool=iperf3)"
                    .into(),
            })
    }
}

/// The client and server cores a stream's threads are pinned to, `None` for the
/// scheduler.
pub fn stream_cores(s: &StreamWorkload) -> Option<(u16, u16)> {
    s.affinity.map(|a| a.cores(last_allowed_core()))
}

/// The highest-numbered core this process may run on (0 if that cannot be read): the
/// core [`crate::scenario::Affinity::SameCore`] means.
pub fn last_allowed_core() -> u16 {
    let Ok(set) = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) else {
        return 0;
    };
    (0..nix::sched::CpuSet::count().min(usize::from(u16::MAX)))
        .rev()
        .find(|&c| set.is_set(c).unwrap_or(false))
        .map_or(0, |c| c as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_allowed_core_is_one_this_process_may_use() {
        let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
        let last = usize::from(last_allowed_core());
        assert!(set.is_set(last).unwrap());
        assert!((last + 1..nix::sched::CpuSet::count()).all(|c| !set.is_set(c).unwrap()));
    }
}
