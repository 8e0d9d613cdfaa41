//! State one repetition leaves for the next: what a repetition starts from.
//!
//! Connection-per-transaction traffic leaves kernel state behind that outlives the
//! processes: `TIME_WAIT` sockets (60 s, on whichever end closed first) and connection
//! tracking entries (120 s in `TIME_WAIT`, per network namespace). A client whose port
//! range fills with `TIME_WAIT` sockets spends milliseconds per `connect` looking for a free
//! port, and a full conntrack table drops new connections' SYNs: from then on a repetition
//! measures its predecessors, not the datapath. Each repetition therefore records
//! [`StartState`], and the runner waits out (or the backend resets) what would carry over.
//!
//! The parsing is pure; [`time_wait_sockets`] and [`conntrack_entries`] read `/proc` of the
//! calling thread's network namespace (`/proc/thread-self`, so a thread that entered a
//! namespace with `setns` reads that namespace's tables).

use serde::{Deserialize, Serialize};

/// What a repetition started from. Fields a backend cannot observe are `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartState {
    /// TCP sockets in `TIME_WAIT` in the client's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_time_wait: Option<u64>,
    /// TCP sockets in `TIME_WAIT` in the server's network namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_time_wait: Option<u64>,
    /// Connection-tracking entries, summed over the namespaces the datapath tracks
    /// connections in (the lab's nodes), right before the repetition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conntrack_entries: Option<u64>,
    /// What was reset or waited out before the repetition, one line each (e.g.
    /// "conntrack: 24107 entries flushed in 2 node namespaces").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reset: Vec<String>,
}

impl StartState {
    /// One line for logs and tables, e.g. `client TIME_WAIT 0, server TIME_WAIT 13497,
    /// conntrack 0`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(n) = self.client_time_wait {
            parts.push(format!("client TIME_WAIT {n}"));
        }
        if let Some(n) = self.server_time_wait {
            parts.push(format!("server TIME_WAIT {n}"));
        }
        if let Some(n) = self.conntrack_entries {
            parts.push(format!("conntrack {n}"));
        }
        if parts.is_empty() {
            "not observable".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// `TIME_WAIT` in the `st` column of `/proc/net/tcp` (include/net/tcp_states.h).
const TCP_TIME_WAIT: &str = "06";

/// The sockets of a `/proc/net/tcp` or `/proc/net/tcp6` table (a header line, then one
/// socket per line): each one's local address (`HEXADDR:HEXPORT`) and state (hex, as in
/// include/net/tcp_states.h).
pub fn tcp_table(table: &str) -> impl Iterator<Item = (&str, &str)> {
    table.lines().skip(1).map(|line| {
        let mut fields = line.split_whitespace();
        let local = fields.nth(1).unwrap_or_default();
        let state = fields.nth(1).unwrap_or_default();
        (local, state)
    })
}

/// Counts sockets in `TIME_WAIT` in the text of a `/proc/net/tcp` table.
pub fn count_time_wait(proc_net_tcp: &str) -> u64 {
    tcp_table(proc_net_tcp)
        .filter(|&(_, state)| state == TCP_TIME_WAIT)
        .count() as u64
}

/// TCP sockets (v4 and v6) in `TIME_WAIT` in the calling thread's namespace; `None` when
/// `/proc` cannot be read.
pub fn time_wait_sockets() -> Option<u64> {
    let v4 = std::fs::read_to_string("/proc/thread-self/net/tcp").ok()?;
    // A kernel without IPv6 has no tcp6 table; that is zero sockets, not unknown.
    let v6 = std::fs::read_to_string("/proc/thread-self/net/tcp6").unwrap_or_default();
    Some(count_time_wait(&v4) + count_time_wait(&v6))
}

/// Connection-tracking entries of the calling thread's namespace; `None` where the
/// namespace tracks nothing (no `nf_conntrack` there) or the count is not readable.
pub fn conntrack_entries() -> Option<u64> {
    // Net sysctls belong to the namespace of the thread that opens them.
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Above this many client `TIME_WAIT` sockets the runner waits before a repetition. A
/// quarter of Linux's default ephemeral range (32768–60999): below it `connect` finds a
/// free port at once; the slowdown of the issue that introduced this check started near
/// half the range.
pub const CLIENT_TIME_WAIT_LIMIT: u64 = 7_000;

/// Longest wait for client `TIME_WAIT` sockets to expire: their 60 s lifetime
/// (`TCP_TIMEWAIT_LEN`, fixed in the kernel) plus slack.
pub const TIME_WAIT_EXPIRY_S: u64 = 65;

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0200A8C6:9C40 0100A8C6:2402 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000
   2: 0200A8C6:9C42 0100A8C6:2402 06 00000000:00000000 03:000016A8 00000000     0        0 0 3 0000000000000000
   3: 0200A8C6:9C44 0100A8C6:2402 01 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn time_wait_sockets_are_counted_by_state_column() {
        assert_eq!(count_time_wait(SAMPLE), 2);
        // The header alone, or nothing: no sockets.
        assert_eq!(count_time_wait(SAMPLE.lines().next().unwrap()), 0);
        assert_eq!(count_time_wait(""), 0);
    }

    #[test]
    fn own_namespace_is_readable() {
        // Every Linux test machine has /proc; the count itself depends on the machine.
        assert!(time_wait_sockets().is_some());
    }

    #[test]
    fn start_state_describes_what_it_saw() {
        let s = StartState {
            client_time_wait: Some(0),
            server_time_wait: Some(13_497),
            conntrack_entries: None,
            reset: Vec::new(),
        };
        assert_eq!(s.describe(), "client TIME_WAIT 0, server TIME_WAIT 13497");
        assert_eq!(StartState::default().describe(), "not observable");
        // Old records without the fields read back as unobserved.
        let back: StartState = serde_json::from_str("{}").unwrap();
        assert_eq!(back, StartState::default());
    }
}
