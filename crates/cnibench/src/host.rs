//! Facts about the machine, for `meta.json` (reads `/proc`; missing files give "unknown").

use crate::results::HostInfo;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The CPU model from `/proc/cpuinfo` text (pure).
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        matches!(k.trim(), "model name" | "Model" | "Hardware").then(|| v.trim().to_string())
    })
}

/// Host name, kernel release, CPU model and online cores of this machine.
pub fn host_info() -> HostInfo {
    let unknown = || "unknown".to_string();
    HostInfo {
        hostname: read("/proc/sys/kernel/hostname").unwrap_or_else(unknown),
        kernel: read("/proc/sys/kernel/osrelease").unwrap_or_else(unknown),
        cpu_model: read("/proc/cpuinfo")
            .as_deref()
            .and_then(cpu_model)
            .unwrap_or_else(unknown),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get() as u32),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_model_name() {
        let text =
            "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU\n";
        assert_eq!(
            super::cpu_model(text).as_deref(),
            Some("Intel(R) Xeon(R) CPU")
        );
    }
}
