//! Human-readable output: live interval lines and the end-of-test summary. Pure functions
//! returning strings.

use std::fmt::Write as _;

use crate::report::{EffectiveSettings, FlowDirection, Interval, SideReport, StreamReport};
use crate::spec::{Direction, Protocol, TestSpec};

/// `12.34 Gbit/s` style rate.
pub fn rate(bps: f64) -> String {
    let (v, unit) = if bps >= 1e9 {
        (bps / 1e9, "Gbit/s")
    } else if bps >= 1e6 {
        (bps / 1e6, "Mbit/s")
    } else if bps >= 1e3 {
        (bps / 1e3, "kbit/s")
    } else {
        (bps, "bit/s")
    };
    format!("{v:.2} {unit}")
}

/// `1.23 GB` style size (decimal units, as rates).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1e9 {
        format!("{:.2} GB", n / 1e9)
    } else if n >= 1e6 {
        format!("{:.2} MB", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.2} kB", n / 1e3)
    } else {
        format!("{n} B")
    }
}

/// One line of CPU figures: the process's getrusage and the node's /proc/stat split.
pub fn cpu_line(label: &str, c: &crate::report::CpuReport) -> String {
    format!(
        "cpu ({label}): process user {:.2} s, system {:.2} s; node user {:.2} s, system {:.2} s, softirq {:.2} s, irq {:.2} s over {:.2} s",
        c.process_user_s,
        c.process_system_s,
        c.node.user,
        c.node.system,
        c.node.softirq,
        c.node.irq,
        c.window_s
    )
}

/// Header printed before live interval lines.
pub fn interval_header(spec: &TestSpec) -> String {
    let extra = match spec.protocol {
        Protocol::Tcp => "   retr     rtt   cwnd",
        Protocol::Udp => "    packets    lost",
    };
    format!(
        "{:<17} {:>10} {:>10} {:>14}{extra}",
        "interval (s)", "sent", "received", "rate"
    )
}

/// One live interval line, from the client's point of view.
pub fn interval_line(i: &Interval) -> String {
    let mut line = format!(
        "{:>6.2} - {:>6.2}   {:>10} {:>10} {:>14}",
        i.start_s,
        i.end_s,
        bytes(i.sent_bytes),
        bytes(i.received_bytes),
        rate(i.bits_per_second)
    );
    if let Some(r) = i.retransmits {
        let _ = write!(line, " {r:>6}");
    } else if i.rtt_us.is_some() {
        line.push_str("      -");
    }
    if let Some(rtt) = i.rtt_us {
        let _ = write!(line, " {rtt:>5}µs");
    }
    if let Some(c) = i.cwnd {
        let _ = write!(line, " {c:>6}");
    }
    if let (Some(p), Some(l)) = (i.packets, i.lost) {
        let _ = write!(line, " {p:>10} {l:>7}");
    }
    line
}

fn direction_name(d: FlowDirection) -> &'static str {
    match d {
        FlowDirection::ClientToServer => "client → server",
        FlowDirection::ServerToClient => "server → client",
    }
}

/// The end-of-test summary: flows, CPU of both ends, settings in force, warnings.
pub fn summary(report: &StreamReport, server: &str) -> String {
    let spec = &report.spec;
    let mut out = String::new();
    let mode = match (spec.protocol, spec.zerocopy.as_str()) {
        (Protocol::Udp, _) if spec.udp_rate_bps > 0 => {
            format!("rate {} per stream", rate(spec.udp_rate_bps as f64))
        }
        (Protocol::Udp, _) => "unlimited rate".to_string(),
        (Protocol::Tcp, "none") => "copy".to_string(),
        (Protocol::Tcp, z) => format!("zerocopy {z}"),
    };
    let dir = match spec.direction {
        Direction::Forward => "",
        Direction::Reverse => ", reverse",
        Direction::Bidir => ", bidirectional",
    };
    let _ = writeln!(
        out,
        "\nnetload {} {server}: {} stream(s){dir}, {} s measured after {} s warm-up, {} B writes, {mode}{}",
        spec.protocol,
        spec.parallel,
        spec.duration_s,
        spec.omit_s,
        spec.length,
        if spec.rx_discard {
            ", receiver discards (MSG_TRUNC)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "\n{:<17} {:>14} {:>26} {:>10}{}",
        "flow",
        "sender",
        "receiver (authoritative)",
        match spec.protocol {
            Protocol::Tcp => "retrans",
            Protocol::Udp => "lost",
        },
        match spec.protocol {
            Protocol::Tcp => "",
            Protocol::Udp => "     jitter",
        }
    );
    for f in &report.flows {
        let recv = format!(
            "{} ({})",
            rate(f.receiver_bits_per_second),
            bytes(f.receiver_bytes)
        );
        let extra = match spec.protocol {
            Protocol::Tcp => f.retransmits.map_or_else(|| "-".into(), |r| r.to_string()),
            Protocol::Udp => format!(
                "{} ({:.3}%)",
                f.lost.unwrap_or(0),
                f.loss_percent.unwrap_or(0.0)
            ),
        };
        let jitter = f
            .jitter_ms
            .map_or(String::new(), |j| format!(" {j:>8.3} ms"));
        let _ = writeln!(
            out,
            "{:<17} {:>14} {:>26} {:>10}{jitter}",
            direction_name(f.direction),
            rate(f.sender_bits_per_second),
            recv,
            extra
        );
    }
    let _ = writeln!(
        out,
        "\n{:<8} {:>8} {:>8} {:>9} | node (all cores): {:>6} {:>7} {:>8} {:>6} {:>7} {:>9}",
        "cpu", "user s", "sys s", "s/GB", "user", "system", "softirq", "irq", "idle", "busy s/GB"
    );
    let server_name = if report.server_peer.is_some() {
        "server*"
    } else {
        "server"
    };
    for (name, side) in [("client", &report.client), (server_name, &report.server)] {
        let c = &side.cpu;
        let _ = writeln!(
            out,
            "{name:<8} {:>8.3} {:>8.3} {:>9} | {:>24.2} {:>7.2} {:>8.2} {:>6.2} {:>7.2} {:>9}",
            c.process_user_s,
            c.process_system_s,
            c.process_s_per_gb.map_or("-".into(), |v| format!("{v:.3}")),
            c.node.user,
            c.node.system,
            c.node.softirq,
            c.node.irq,
            c.node.idle,
            c.node_busy_s_per_gb
                .map_or("-".into(), |v| format!("{v:.3}")),
        );
    }
    if let Some(peer) = &report.server_peer {
        let _ = writeln!(out, "* server: {peer}");
    }
    let _ = writeln!(out, "\nsettings in force:");
    for (name, side) in [("client", &report.client), ("server", &report.server)] {
        let _ = writeln!(out, "  {name}: {}", settings_line(side, &side.settings));
    }
    if !report.warnings.is_empty() {
        let _ = writeln!(out, "\nwarnings:");
        for w in &report.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    out
}

fn settings_line(side: &SideReport, s: &EffectiveSettings) -> String {
    let mut parts = Vec::new();
    if let Some(mss) = side.mss {
        parts.push(format!("mss {mss} (tcpi_snd_mss)"));
    }
    if let Some(m) = s.mss_sockopt {
        parts.push(format!("TCP_MAXSEG {m}"));
    }
    if let Some(b) = s.send_buffer {
        parts.push(format!("sndbuf {b}"));
    }
    if let Some(b) = s.receive_buffer {
        parts.push(format!("rcvbuf {b}"));
    }
    if let Some(cc) = &s.congestion {
        parts.push(format!("cc {cc}"));
    }
    if let Some(n) = s.nodelay {
        parts.push(format!("nodelay {}", if n { "on" } else { "off" }));
    }
    if !s.zerocopy.is_empty() {
        parts.push(format!("zerocopy {}", s.zerocopy));
    }
    if let Some(g) = s.udp_gso_segment {
        parts.push(format!("gso {g} B"));
    }
    if let Some(g) = s.udp_gro {
        parts.push(format!("gro {}", if g { "on" } else { "off" }));
    }
    if let Some(b) = s.udp_batch {
        parts.push(format!("batch {b}"));
    }
    if !s.affinity.is_empty() {
        parts.push(format!("cores {:?}", s.affinity));
    }
    parts.join(", ")
}

/// What a rate search will do, printed before its first trial.
pub fn rate_search_plan(opts: &crate::ndr::SearchOptions, spec: &TestSpec) -> String {
    let c = &opts.config;
    format!(
        "finding the highest rate with loss <= {}% ({} B datagrams, {} stream(s), GSO/GRO {}): \
         trials of {} s after {} s warm-up, {} confirmation(s) of {} s, resolution {}%, \
         at most {} trials or {} s\n{:>3}  {:<8} {:>14} {:>14} {:>14} {:>9} {:>11} {:>12}  verdict\n",
        c.loss_percent,
        spec.length,
        spec.stream_count(),
        if spec.udp_gso { "on" } else { "off" },
        opts.trial_s,
        opts.warmup_s,
        c.confirmations,
        opts.confirm_s,
        c.resolution * 100.0,
        c.max_trials,
        c.budget_s,
        "#",
        "purpose",
        "offered",
        "sent",
        "received",
        "loss",
        "sock drops",
        "cpu cli/srv",
    )
}

/// One trial of a rate search as a line of the loss curve.
pub fn rate_search_trial(t: &crate::ndr::Trial) -> String {
    let purpose = match t.purpose {
        crate::ndr::Purpose::Probe => "probe",
        crate::ndr::Purpose::Bracket => "bracket",
        crate::ndr::Purpose::Bisect => "bisect",
        crate::ndr::Purpose::Confirm => "confirm",
    };
    let offered = if t.offered_bps == 0.0 {
        "unlimited".to_string()
    } else {
        rate(t.offered_bps)
    };
    format!(
        "{:>3}  {:<8} {:>14} {:>14} {:>14} {:>8.3}% {:>11} {:>5.0}%/{:>4.0}%  {}",
        t.index,
        purpose,
        offered,
        rate(t.sent_bps),
        rate(t.received_bps),
        t.loss_percent,
        t.socket_drops.map_or("-".to_string(), |d| d.to_string()),
        t.client_cpu_percent,
        t.server_cpu_percent,
        if t.pass { "pass" } else { "FAIL" },
    )
}

/// The answer of a rate search.
pub fn rate_search_summary(r: &crate::ndr::RateSearchReport) -> String {
    let mut out = String::new();
    let c = &r.result;
    let _ = writeln!(
        out,
        "search: {} trials in {:.1} s, {}",
        r.trials.len(),
        r.elapsed_s,
        c.status.as_str()
    );
    match (c.rate_bps, r.at_rate()) {
        (Some(bps), Some(t)) => {
            let confirmed = r
                .trials
                .iter()
                .filter(|x| x.purpose == crate::ndr::Purpose::Confirm && x.pass)
                .filter(|x| x.offered_bps.to_bits() == t.offered_bps.to_bits())
                .count();
            let _ = writeln!(
                out,
                "no-drop rate (loss <= {}%): {} offered; goodput {} at {:.3}% loss ({} datagrams of {} lost, {} in the receiver's socket queue); {} confirmation(s) passed",
                r.config.loss_percent,
                rate(bps),
                rate(t.received_bps),
                t.loss_percent,
                t.lost,
                t.packets_sent,
                t.socket_drops.map_or("?".to_string(), |d| d.to_string()),
                confirmed,
            );
            let _ = writeln!(out, "{}", cpu_line("client", &t.report.client.cpu));
            let _ = writeln!(out, "{}", cpu_line("server", &t.report.server.cpu));
        }
        _ => {
            let _ = writeln!(
                out,
                "no rate passed (loss <= {}%){}",
                r.config.loss_percent,
                c.lowest_failure_bps
                    .map_or(String::new(), |h| format!("; lowest failure {}", rate(h)))
            );
        }
    }
    if let Some(h) = c.lowest_failure_bps
        && c.rate_bps.is_some()
    {
        let _ = writeln!(out, "lowest failing rate: {}", rate(h));
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_scale() {
        assert_eq!(rate(18.5e9), "18.50 Gbit/s");
        assert_eq!(rate(999.0), "999.00 bit/s");
        assert_eq!(bytes(2_500_000), "2.50 MB");
        assert_eq!(bytes(12), "12 B");
    }

    #[test]
    fn interval_line_shows_tcp_columns() {
        let i = Interval {
            start_s: 0.0,
            end_s: 1.0,
            sent_bytes: 2_000_000_000,
            received_bytes: 0,
            bits_per_second: 16e9,
            retransmits: Some(3),
            rtt_us: Some(42),
            cwnd: Some(512),
            packets: None,
            lost: None,
        };
        let line = interval_line(&i);
        assert!(line.contains("16.00 Gbit/s"), "{line}");
        assert!(line.contains("42µs"), "{line}");
        assert!(line.contains(" 3 "), "{line}");
    }
}
