//! Two network namespaces joined by a veth pair, for `netload bench --netns` and tests.
//!
//! Created with iproute2 (`ip`), removed by [`VethPair`]'s `Drop` whatever happens, and
//! named `nlb-<pid>-<n>-{a,b}` so leftovers of a killed process can be recognised and
//! removed by [`remove_stale`]. Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking).

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Address of side A of the pair.
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Address of side B of the pair.
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PREFIX: &str = "nlb-";

/// Two namespaces `a` and `b` joined by veth, removed on drop.
#[derive(Debug)]
pub struct VethPair {
    /// Namespace holding [`ADDR_A`].
    pub a: String,
    /// Namespace holding [`ADDR_B`].
    pub b: String,
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        io::Error::new(e.kind(), format!("cannot run `ip` (install iproute2): {e}"))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl VethPair {
    /// Creates the pair with the given MTU. Needs CAP_NET_ADMIN.
    pub fn create(mtu: u32) -> io::Result<VethPair> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = format!("{PREFIX}{}-{n}", std::process::id());
        let pair = VethPair {
            a: format!("{base}-a"),
            b: format!("{base}-b"),
        };
        // From here on, Drop removes whatever part was created.
        ip(&["netns", "add", &pair.a])?;
        ip(&["netns", "add", &pair.b])?;
        let mtu = mtu.to_string();
        ip(&[
            "-n", &pair.a, "link", "add", "veth0", "mtu", &mtu, "type", "veth", "peer", "name",
            "veth0", "netns", &pair.b, "mtu", &mtu,
        ])?;
        for (ns, addr) in [(&pair.a, ADDR_A), (&pair.b, ADDR_B)] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/30"),
                "dev",
                "veth0",
            ])?;
            ip(&["-n", ns, "link", "set", "veth0", "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// Runs `f` on a new thread inside namespace `ns` (threads it spawns stay there too).
    pub fn run_in<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<std::thread::JoinHandle<io::Result<T>>> {
        let path = format!("/var/run/netns/{ns}");
        let file =
            File::open(&path).map_err(|e| io::Error::new(e.kind(), format!("{path}: {e}")))?;
        std::thread::Builder::new()
            .name(format!("in-{ns}"))
            .spawn(move || {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from)?;
                Ok(f())
            })
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, which deletes the peer.
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Removes `nlb-<pid>-*` namespaces whose process is gone; returns how many.
pub fn remove_stale() -> usize {
    let Ok(entries) = std::fs::read_dir("/var/run/netns") else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive && ip(&["netns", "del", &name]).is_ok() {
            removed += 1;
        }
    }
    removed
}
