//! Self-checks: the counters that prove a path carried a probe (DNAT rules, VXLAN device,
//! policy chains), interface MTU and TCP connect probes. Parsers are pure and unit tested;
//! [`super::Lab`] has the methods that read the kernel.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use super::LabError;

/// Packet and byte counter of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    /// Chain holding the rule.
    pub chain: String,
    /// Packets that matched.
    pub packets: u64,
    /// Bytes that matched.
    pub bytes: u64,
    /// The rule (iptables text without counters) or its verdict (`accept`, `drop`, `dnat`) for nft.
    pub rule: String,
}

/// Parses `iptables -v -S CHAIN` output: every `-A CHAIN … -c PACKETS BYTES …` line (the
/// rule text without its counters). Listing one chain this way takes milliseconds where
/// `iptables-save` of a nat table with 10 000 services takes seconds.
pub fn parse_iptables_chain_counters(text: &str) -> Vec<RuleCounter> {
    text.lines()
        .filter_map(|line| {
            let rule = line.strip_prefix("-A ")?;
            let (chain, rest) = rule.split_once(' ').unwrap_or((rule, ""));
            // `-c` as its own word (not inside `--comment` or `--ctstate`).
            let padded = format!(" {rest}");
            let (before, after) = padded.split_once(" -c ")?;
            let before = before.trim_start();
            let before = if before.is_empty() {
                String::new()
            } else {
                format!("{before} ")
            };
            let mut fields = after.splitn(3, ' ');
            let packets = fields.next()?.parse().ok()?;
            let bytes = fields.next()?.parse().ok()?;
            Some(RuleCounter {
                chain: chain.to_owned(),
                packets,
                bytes,
                rule: format!("{before}{}", fields.next().unwrap_or("")),
            })
        })
        .collect()
}

/// Parses `nft -j list …` output: every rule with a `counter` statement.
pub fn parse_nft_counters(json: &str) -> Result<Vec<RuleCounter>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = v
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("no `nftables` array")?;
    let mut out = Vec::new();
    for item in items {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let chain = rule.get("chain").and_then(Value::as_str).unwrap_or("");
        let Some(expr) = rule.get("expr").and_then(Value::as_array) else {
            continue;
        };
        let Some(counter) = expr.iter().find_map(|e| e.get("counter")) else {
            continue;
        };
        let verdict = expr
            .iter()
            .find_map(|e| {
                ["accept", "drop", "dnat", "jump", "goto"]
                    .into_iter()
                    .find(|k| e.get(*k).is_some())
            })
            .unwrap_or("");
        out.push(RuleCounter {
            chain: chain.to_owned(),
            packets: counter.get("packets").and_then(Value::as_u64).unwrap_or(0),
            bytes: counter.get("bytes").and_then(Value::as_u64).unwrap_or(0),
            rule: verdict.to_owned(),
        });
    }
    Ok(out)
}

/// MTU and traffic counters of one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// MTU in bytes.
    pub mtu: u32,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
}

/// Parses `ip -j -s link show dev X`.
pub fn parse_link_stats(json: &str) -> Result<LinkStats, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let link = v
        .as_array()
        .and_then(|a| a.first())
        .ok_or("no link in the output")?;
    let stats = link.get("stats64").or_else(|| link.get("stats"));
    let get = |dir: &str, key: &str| {
        stats
            .and_then(|s| s.get(dir))
            .and_then(|d| d.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(LinkStats {
        mtu: link
            .get("mtu")
            .and_then(Value::as_u64)
            .ok_or("link without mtu")? as u32,
        rx_packets: get("rx", "packets"),
        rx_bytes: get("rx", "bytes"),
        tx_packets: get("tx", "packets"),
        tx_bytes: get("tx", "bytes"),
    })
}

/// Packets a pod's policies accepted and dropped (new connections only: established
/// traffic is accepted before the policy chains).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyCounters {
    /// Packets accepted by an allow rule.
    pub accepted: u64,
    /// Packets dropped by the default deny.
    pub dropped: u64,
}

/// What a TCP connect attempt met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The handshake completed: the path is open.
    Connected,
    /// Refused (RST): reachable, nothing listening.
    Refused,
    /// No answer before the timeout: dropped on the way (what a policy does).
    TimedOut,
    /// Unreachable or another error.
    Failed,
}

impl ProbeOutcome {
    /// Whether the connection was silently dropped, as a default-deny policy does.
    pub fn is_dropped(self) -> bool {
        self == ProbeOutcome::TimedOut
    }
}

/// Tries one TCP connect to `addr` from the calling thread's namespace.
pub fn connect_probe(addr: SocketAddr, timeout: Duration) -> ProbeOutcome {
    match TcpStream::connect_timeout(&addr, timeout) {
        Ok(_) => ProbeOutcome::Connected,
        Err(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => ProbeOutcome::Refused,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ProbeOutcome::TimedOut,
            _ => ProbeOutcome::Failed,
        },
    }
}

pub(crate) fn parse_err(command: &str, message: impl Into<String>) -> LabError {
    LabError::Parse {
        command: command.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_chain_listed_with_counters() {
        // `iptables -t nat -v -S SEP-1` of iptables 1.8.9 (nf_tables).
        let text = "-N SEP-1\n-A SEP-1 -s 198.18.0.2/32 -c 3 180 -j MARK --set-xmark 0x4000/0x4000\n-A SEP-1 -p tcp -m comment --comment x -c 7 420 -j DNAT --to-destination 198.18.1.1:5201\n";
        let c = parse_iptables_chain_counters(text);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[1].chain.as_str(), c[1].packets, c[1].bytes),
            ("SEP-1", 7, 420)
        );
        assert!(
            c[1].rule.contains("-j DNAT --to-destination"),
            "{}",
            c[1].rule
        );
        assert!(!c[1].rule.contains("-c 7"), "{}", c[1].rule);
        assert!(parse_iptables_chain_counters("-N SEP-1\n").is_empty());
        let bare = parse_iptables_chain_counters(
            "-A P -m conntrack --ctstate ESTABLISHED -c 1 2 -j ACCEPT\n-A P -c 5 300 -j DROP\n",
        );
        assert_eq!(bare[0].rule, "-m conntrack --ctstate ESTABLISHED -j ACCEPT");
        assert_eq!((bare[1].rule.as_str(), bare[1].packets), ("-j DROP", 5));
    }

    #[test]
    fn nft_counters_parse() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"chain": {"family": "ip", "table": "cnb_svc", "name": "sep_a_0"}}, {"rule": {"family": "ip", "table": "cnb_svc", "chain": "sep_a_0", "handle": 7, "expr": [{"counter": {"packets": 4, "bytes": 240}}, {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"dnat": {"addr": "198.18.32.2", "port": 80}}]}}, {"rule": {"chain": "x", "expr": [{"accept": null}]}}]}"#;
        let c = parse_nft_counters(json).unwrap();
        assert_eq!(
            c,
            vec![RuleCounter {
                chain: "sep_a_0".into(),
                packets: 4,
                bytes: 240,
                rule: "dnat".into()
            }]
        );
        assert!(parse_nft_counters("[]").is_err());
    }

    #[test]
    fn link_stats_parse() {
        let json = r#"[{"ifindex":5,"ifname":"vxlan0","mtu":1450,"stats64":{"rx":{"bytes":100,"packets":2},"tx":{"bytes":300,"packets":3}}}]"#;
        let s = parse_link_stats(json).unwrap();
        assert_eq!(s.mtu, 1450);
        assert_eq!((s.rx_packets, s.tx_packets, s.tx_bytes), (2, 3, 300));
        assert!(parse_link_stats("[]").is_err());
    }
}
