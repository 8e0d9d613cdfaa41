//! Built-in suites, written in the same TOML as user suite files (and parsed by the same
//! code), so `cnibench suite thesis > mine.toml` is a starting point for a custom suite.

use super::{Suite, SuiteError, file};

/// The full scenario table of DESIGN.md, as the thesis measured it.
pub const THESIS: &str = r#"# The full scenario table of the thesis (DESIGN.md). Hours there, minutes here.
# Repetitions measure 4 s after 1 s omitted: precision comes from the repetitions and the
# confidence-driven stopping rule, not from long runs (the thesis ran 10 s, 6 times, and
# averaged 4). For its exact durations: --set duration=10s.
name = "thesis"
description = "Full thesis table: baseline, pod-to-pod, policies, services, HTTP replicas, RR latency"

[defaults]
duration = "4s"
omit = "1s"

[[scenario]]
kind = "baseline"
workload = ["tcp", "udp"]

[[scenario]]
kind = "pod-to-pod"
placement = ["inter", "intra"]
workload = ["tcp", "udp"]

[[scenario]]
kind = "pod-to-pod-policies"
pods = [1000, 10000]
workload = ["tcp", "tcp-crr"]

[[scenario]]
kind = "pod-to-service"
services = [1, 10, 100, 1000, 10000]
placement = ["inter", "intra"]
workload = ["tcp", "udp", "tcp-crr"]

[[scenario]]
kind = "http-replicas"
replicas = [10, 20, 50, 100]
services = [1, 100, 1000, 10000]
file-size = "10MB"

[[scenario]]
kind = "rr-latency"
placement = ["inter", "intra"]
path = ["direct", "service"]
workload = "tcp-rr"
"#;

/// One small point per scenario with short repetitions: a first run and CI.
pub const QUICK: &str = r#"# One small point per scenario, 2-second repetitions: a first run and CI.
name = "quick"
description = "One small point per scenario, 2 s repetitions"

[defaults]
duration = "2s"
omit = "0s"

[[scenario]]
kind = "baseline"
workload = "tcp"

[[scenario]]
kind = "pod-to-pod"
placement = "intra"
workload = "tcp"

[[scenario]]
kind = "pod-to-pod-policies"
pods = 10
workload = "tcp"

[[scenario]]
kind = "pod-to-service"
services = 10
workload = "tcp"

[[scenario]]
kind = "http-replicas"
replicas = 2
services = 1
file-size = "1MB"

[[scenario]]
kind = "rr-latency"
placement = "intra"
workload = "tcp-rr"
"#;

/// Names of the built-in suites.
pub const NAMES: [&str; 2] = ["thesis", "quick"];

/// The TOML text of a built-in suite.
pub fn text(name: &str) -> Option<&'static str> {
    match name {
        "thesis" => Some(THESIS),
        "quick" => Some(QUICK),
        _ => None,
    }
}

/// Parses a built-in suite; `None` if there is no such name.
pub fn load(name: &str) -> Option<Suite> {
    text(name).map(|t| parse_builtin(name, t))
}

fn parse_builtin(name: &str, text: &str) -> Suite {
    let parsed: Result<Suite, SuiteError> = file::parse(text, &format!("built-in suite {name}"));
    parsed.expect("built-in suites are valid (tested)")
}
