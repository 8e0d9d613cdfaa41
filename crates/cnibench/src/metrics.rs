//! Metric catalogue and extraction of metrics from netload's JSON (pure).
//!
//! Stream results are deserialized into netload's own schema types
//! ([`netload::report::StreamReport`]); request/response and HTTP results, whose schema
//! is not settled yet, are read defensively from a [`serde_json::Value`]: a missing field
//! leaves its metric out instead of failing the repetition, unless it is the primary one.

use std::collections::BTreeMap;

use netload::ndr::{Purpose, RATE_SEARCH_KIND, RateSearchReport};
use netload::report::StreamReport;
use serde::Serialize;
use serde_json::Value;

use crate::scenario::{Workload, WorkloadKind};

/// Metric values of one repetition, by metric key.
pub type Metrics = BTreeMap<String, f64>;

/// What a metric is and how to show it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricInfo {
    /// Key in `results.jsonl`.
    pub key: &'static str,
    /// Column header.
    pub label: &'static str,
    /// Unit shown after values.
    pub unit: &'static str,
    /// Whether larger values are better (for deltas and "% of baseline").
    pub higher_is_better: bool,
}

/// Receiver-measured goodput summed over directions, Gbit/s.
pub const THROUGHPUT: &str = "throughput_gbps";
/// UDP goodput at the no-drop rate (the highest offered rate whose loss met the target of
/// the point's rate search), Gbit/s; the loss and CPU metrics of such a repetition are
/// those of the same trial.
pub const NDR_GOODPUT: &str = "ndr_goodput_gbps";
/// Datagrams per second received at the no-drop rate, millions.
pub const NDR_MPPS: &str = "ndr_mpps";
/// Trials the rate search took.
pub const SEARCH_TRIALS: &str = "search_trials";
/// Client node busy CPU seconds per Gbit moved.
pub const CLIENT_CPU: &str = "client_cpu_s_per_gbit";
/// Server node busy CPU seconds per Gbit moved.
pub const SERVER_CPU: &str = "server_cpu_s_per_gbit";
/// Server node softirq seconds per Gbit moved (where the datapath burns CPU).
pub const SERVER_SOFTIRQ: &str = "server_softirq_s_per_gbit";
/// Client process CPU seconds per Gbit.
pub const CLIENT_PROCESS_CPU: &str = "client_process_cpu_s_per_gbit";
/// Server process CPU seconds per Gbit.
pub const SERVER_PROCESS_CPU: &str = "server_process_cpu_s_per_gbit";
/// TCP retransmits over all flows.
pub const RETRANSMITS: &str = "retransmits";
/// UDP datagrams lost, percent of sent.
pub const LOSS: &str = "loss_percent";
/// UDP receiver jitter, ms.
pub const JITTER: &str = "jitter_ms";
/// Request/response transactions per second.
pub const TPS: &str = "transactions_per_second";
/// Request/response latency, median, µs.
pub const LATENCY_P50: &str = "latency_p50_us";
/// Request/response latency, 99th percentile, µs.
pub const LATENCY_P99: &str = "latency_p99_us";
/// HTTP time to first byte, median, ms.
pub const TTFB_P50: &str = "ttfb_p50_ms";
/// HTTP time to first byte, 99th percentile, ms.
pub const TTFB_P99: &str = "ttfb_p99_ms";
/// HTTP requests per second.
pub const RPS: &str = "requests_per_second";

/// Every metric cnibench knows, in display order.
pub const CATALOGUE: &[MetricInfo] = &[
    MetricInfo {
        key: THROUGHPUT,
        label: "throughput",
        unit: "Gbit/s",
        higher_is_better: true,
    },
    MetricInfo {
        key: NDR_GOODPUT,
        label: "no-drop goodput",
        unit: "Gbit/s",
        higher_is_better: true,
    },
    MetricInfo {
        key: NDR_MPPS,
        label: "no-drop packets",
        unit: "Mpps",
        higher_is_better: true,
    },
    MetricInfo {
        key: LATENCY_P50,
        label: "latency p50",
        unit: "µs",
        higher_is_better: false,
    },
    MetricInfo {
        key: LATENCY_P99,
        label: "latency p99",
        unit: "µs",
        higher_is_better: false,
    },
    MetricInfo {
        key: TPS,
        label: "transactions",
        unit: "/s",
        higher_is_better: true,
    },
    MetricInfo {
        key: TTFB_P50,
        label: "TTFB p50",
        unit: "ms",
        higher_is_better: false,
    },
    MetricInfo {
        key: TTFB_P99,
        label: "TTFB p99",
        unit: "ms",
        higher_is_better: false,
    },
    MetricInfo {
        key: RPS,
        label: "requests",
        unit: "/s",
        higher_is_better: true,
    },
    MetricInfo {
        key: CLIENT_CPU,
        label: "client CPU",
        unit: "s/Gbit",
        higher_is_better: false,
    },
    MetricInfo {
        key: SERVER_CPU,
        label: "server CPU",
        unit: "s/Gbit",
        higher_is_better: false,
    },
    MetricInfo {
        key: SERVER_SOFTIRQ,
        label: "server softirq",
        unit: "s/Gbit",
        higher_is_better: false,
    },
    MetricInfo {
        key: CLIENT_PROCESS_CPU,
        label: "client process CPU",
        unit: "s/Gbit",
        higher_is_better: false,
    },
    MetricInfo {
        key: SERVER_PROCESS_CPU,
        label: "server process CPU",
        unit: "s/Gbit",
        higher_is_better: false,
    },
    MetricInfo {
        key: RETRANSMITS,
        label: "retransmits",
        unit: "",
        higher_is_better: false,
    },
    MetricInfo {
        key: LOSS,
        label: "loss",
        unit: "%",
        higher_is_better: false,
    },
    MetricInfo {
        key: FAIRNESS,
        label: "replica fairness",
        unit: "",
        higher_is_better: true,
    },
    MetricInfo {
        key: JITTER,
        label: "jitter",
        unit: "ms",
        higher_is_better: false,
    },
    MetricInfo {
        key: SEARCH_TRIALS,
        label: "search trials",
        unit: "",
        higher_is_better: false,
    },
];

/// The catalogue entry of `key`; unknown keys get a neutral entry.
pub fn info(key: &str) -> MetricInfo {
    CATALOGUE
        .iter()
        .copied()
        .find(|m| m.key == key)
        .unwrap_or(MetricInfo {
            key: "unknown",
            label: "metric",
            unit: "",
            higher_is_better: true,
        })
}

/// The metric the stopping rule watches and reports lead with.
pub fn primary(workload: WorkloadKind) -> &'static str {
    match workload {
        WorkloadKind::Tcp | WorkloadKind::Udp => THROUGHPUT,
        WorkloadKind::TcpRr | WorkloadKind::TcpCrr | WorkloadKind::UdpRr => LATENCY_P50,
        WorkloadKind::Http => TTFB_P50,
    }
}

/// The primary metric of a point's workload: as [`primary`], except that a UDP workload
/// that searches for its no-drop rate leads with [`NDR_GOODPUT`] (UDP points of runs
/// written before the search existed have no search and keep [`THROUGHPUT`]).
pub fn primary_of(workload: &Workload) -> &'static str {
    match workload {
        Workload::Stream(s) if s.udp && s.find_rate.is_some() => NDR_GOODPUT,
        other => primary(other.kind()),
    }
}

/// The CPU-cost metric shown next to the primary one, if the workload has one.
pub fn cpu_metric(workload: WorkloadKind) -> Option<&'static str> {
    workload.is_stream().then_some(SERVER_CPU)
}

/// Metrics of a stream test.
pub fn from_stream(report: &StreamReport) -> Metrics {
    let mut m = Metrics::new();
    let bps = report.receiver_bits_per_second();
    m.insert(THROUGHPUT.into(), bps / 1e9);
    // netload reports seconds per GB (1e9 bytes = 8 Gbit).
    let per_gbit = |v: Option<f64>| v.map(|s| s / 8.0);
    let mut put = |k: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            m.insert(k.into(), v);
        }
    };
    put(CLIENT_CPU, per_gbit(report.client.cpu.node_busy_s_per_gb));
    put(SERVER_CPU, per_gbit(report.server.cpu.node_busy_s_per_gb));
    put(
        CLIENT_PROCESS_CPU,
        per_gbit(report.client.cpu.process_s_per_gb),
    );
    put(
        SERVER_PROCESS_CPU,
        per_gbit(report.server.cpu.process_s_per_gb),
    );
    let server_gbit = report.server.bytes as f64 * 8.0 / 1e9;
    put(
        SERVER_SOFTIRQ,
        (server_gbit > 0.0).then(|| report.server.cpu.node.softirq / server_gbit),
    );
    let retrans: Vec<u64> = report.flows.iter().filter_map(|f| f.retransmits).collect();
    put(
        RETRANSMITS,
        (!retrans.is_empty()).then(|| retrans.iter().sum::<u64>() as f64),
    );
    let sent: u64 = report.flows.iter().filter_map(|f| f.packets_sent).sum();
    let lost: Vec<u64> = report.flows.iter().filter_map(|f| f.lost).collect();
    put(
        LOSS,
        (!lost.is_empty() && sent > 0)
            .then(|| lost.iter().sum::<u64>() as f64 * 100.0 / sent as f64),
    );
    let jitter: Vec<f64> = report.flows.iter().filter_map(|f| f.jitter_ms).collect();
    put(
        JITTER,
        (!jitter.is_empty()).then(|| jitter.iter().sum::<f64>() / jitter.len() as f64),
    );
    m
}

/// Metrics of a no-drop-rate search (`netload udp --find-rate --json`): the no-drop goodput
/// and packet rate, and every stream metric (loss, jitter, CPU per Gbit) of the trial that
/// represents the rate. Its goodput is [`NDR_GOODPUT`], never [`THROUGHPUT`], so it is not
/// mistaken for an unlimited-rate figure of an older run.
pub fn from_rate_search(report: &RateSearchReport) -> Result<Metrics, String> {
    let trial = report.at_rate().ok_or_else(|| {
        format!(
            "the rate search found no rate with loss <= {}% ({}, {} trials)",
            report.config.loss_percent,
            report.result.status.as_str(),
            report.trials.len()
        )
    })?;
    let mut m = from_stream(&trial.report);
    m.remove(THROUGHPUT);
    m.insert(NDR_GOODPUT.into(), trial.received_bps / 1e9);
    let window = trial
        .report
        .client
        .duration_s
        .max(trial.report.server.duration_s);
    let received = trial.packets_sent.saturating_sub(trial.lost);
    if window > 0.0 {
        m.insert(NDR_MPPS.into(), received as f64 / window / 1e6);
    }
    m.insert(SEARCH_TRIALS.into(), report.trials.len() as f64);
    Ok(m)
}

/// One trial of a point's loss curve (see [`loss_curve`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    /// Offered rate, Gbit/s (an unlimited probe: what its senders sent).
    pub offered_gbps: f64,
    /// Goodput the receivers got, Gbit/s.
    pub received_gbps: f64,
    /// Loss, percent of datagrams sent.
    pub loss_percent: f64,
    /// Whether the loss met the search's target.
    pub pass: bool,
    /// A confirmation trial of the final rate.
    pub confirmation: bool,
}

/// The loss-against-offered-rate curve of one repetition of a UDP point, from the raw JSON
/// stored with it, sorted by offered rate; `None` when the repetition did not search
/// (TCP, older runs, iperf3). Pure: for charts.
pub fn loss_curve(raw: &Value) -> Option<Vec<CurvePoint>> {
    if raw.get("kind").and_then(Value::as_str) != Some(RATE_SEARCH_KIND) {
        return None;
    }
    let report: RateSearchReport = serde_json::from_value(raw.clone()).ok()?;
    let mut curve: Vec<CurvePoint> = report
        .trials
        .iter()
        .zip(report.curve())
        .map(|(t, (offered, loss))| CurvePoint {
            offered_gbps: offered / 1e9,
            received_gbps: t.received_bps / 1e9,
            loss_percent: loss,
            pass: t.pass,
            confirmation: t.purpose == Purpose::Confirm,
        })
        .collect();
    curve.sort_by(|a, b| a.offered_gbps.total_cmp(&b.offered_gbps));
    Some(curve)
}

/// Looks up a number by dotted path (`latency.p50_us`), also under a `client` object.
fn number(v: &Value, path: &str) -> Option<f64> {
    let find = |root: &Value| {
        path.split('.')
            .try_fold(root, |node, part| node.get(part))
            .and_then(Value::as_f64)
    };
    find(v).or_else(|| v.get("client").and_then(find))
}

/// The first of `paths` that holds a number, times `scale`.
fn first(v: &Value, paths: &[(&str, f64)]) -> Option<f64> {
    paths
        .iter()
        .find_map(|(p, scale)| number(v, p).map(|x| x * scale))
}

/// HTTP replica fairness (Jain's index, 1 = perfectly even).
pub const FAIRNESS: &str = "replica_fairness";

/// Metrics of a request/response test (`netload rr --json`), read defensively: netload's
/// `latency.p50_us` layout first, then the `latency_us.p50` spelling.
pub fn from_rr(v: &Value) -> Metrics {
    let mut m = Metrics::new();
    for (key, paths) in [
        (TPS, &[("transactions_per_second", 1.0)][..]),
        (
            LATENCY_P50,
            &[("latency.p50_us", 1.0), ("latency_us.p50", 1.0)][..],
        ),
        (
            LATENCY_P99,
            &[("latency.p99_us", 1.0), ("latency_us.p99", 1.0)][..],
        ),
    ] {
        if let Some(x) = first(v, paths) {
            m.insert(key.into(), x);
        }
    }
    m
}

/// Metrics of an HTTP test (`netload http --json`), read defensively: netload's
/// `totals.ttfb.p50_us` layout first, then flat `ttfb_ms.p50` spellings.
pub fn from_http(v: &Value) -> Metrics {
    let mut m = Metrics::new();
    for (key, paths) in [
        (
            TTFB_P50,
            &[("totals.ttfb.p50_us", 1e-3), ("ttfb_ms.p50", 1.0)][..],
        ),
        (
            TTFB_P99,
            &[("totals.ttfb.p99_us", 1e-3), ("ttfb_ms.p99", 1.0)][..],
        ),
        (
            RPS,
            &[
                ("totals.requests_per_second", 1.0),
                ("requests_per_second", 1.0),
            ][..],
        ),
        (
            THROUGHPUT,
            &[
                ("totals.goodput_bits_per_second", 1e-9),
                ("bits_per_second", 1e-9),
            ][..],
        ),
        (FAIRNESS, &[("replica_fairness", 1.0)][..]),
    ] {
        if let Some(x) = first(v, paths) {
            m.insert(key.into(), x);
        }
    }
    m
}

/// Metrics of one `iperf3 -J` document (client side), in the units netload's metrics use,
/// so both tools' repetitions land in the same columns: throughput from the receiver's
/// sums (both directions with `--bidir`), retransmits from the sender's, UDP loss and
/// jitter as the receiver saw them, and iperf3's process CPU (`cpu_utilization_percent`,
/// user + system as % of the test duration; `host` is the client, `remote` the server)
/// as seconds per Gbit. iperf3 does not sample node CPU, so node CPU and softirq stay empty.
pub fn from_iperf3(doc: &Value) -> Result<Metrics, String> {
    let f = |path: &str| doc.pointer(path).and_then(Value::as_f64);
    if let Some(e) = doc.get("error").and_then(Value::as_str) {
        return Err(format!("iperf3 reported an error: {e}"));
    }
    let udp = doc
        .pointer("/start/test_start/protocol")
        .and_then(Value::as_str)
        == Some("UDP");
    let forward = f("/end/sum_received/bits_per_second")
        .or_else(|| f("/end/sum/bits_per_second"))
        .ok_or("no end.sum_received.bits_per_second: not an `iperf3 -J` result")?;
    let bps = forward + f("/end/sum_received_bidir_reverse/bits_per_second").unwrap_or(0.0);
    let mut m = Metrics::new();
    m.insert(THROUGHPUT.into(), bps / 1e9);
    let duration = f("/end/sum_received/seconds").or_else(|| f("/end/sum/seconds"));
    let gbit = duration.map(|d| bps * d / 1e9).filter(|g| *g > 0.0);
    if let (Some(g), Some(d)) = (gbit, duration) {
        if let Some(h) = f("/end/cpu_utilization_percent/host_total") {
            m.insert(CLIENT_PROCESS_CPU.into(), h / 100.0 * d / g);
        }
        if let Some(r) = f("/end/cpu_utilization_percent/remote_total") {
            m.insert(SERVER_PROCESS_CPU.into(), r / 100.0 * d / g);
        }
    }
    if !udp && let Some(r) = f("/end/sum_sent/retransmits") {
        let reverse = f("/end/sum_sent_bidir_reverse/retransmits").unwrap_or(0.0);
        m.insert(RETRANSMITS.into(), r + reverse);
    }
    if udp {
        if let Some(l) = f("/end/sum_received/lost_percent").or_else(|| f("/end/sum/lost_percent"))
        {
            m.insert(LOSS.into(), l);
        }
        if let Some(j) = f("/end/sum_received/jitter_ms").or_else(|| f("/end/sum/jitter_ms")) {
            m.insert(JITTER.into(), j);
        }
    }
    Ok(m)
}

/// Extracts metrics from a netload JSON document of `workload`; the error names what is
/// missing or malformed.
pub fn extract(workload: WorkloadKind, raw: &Value) -> Result<Metrics, String> {
    if raw.get("interrupted").and_then(Value::as_bool) == Some(true) {
        return Err("netload stopped early (interrupted): the repetition is incomplete".into());
    }
    let search = raw.get("kind").and_then(Value::as_str) == Some(RATE_SEARCH_KIND);
    let metrics = if workload == WorkloadKind::Udp && search {
        let report: RateSearchReport = serde_json::from_value(raw.clone())
            .map_err(|e| format!("not a netload rate search report: {e}"))?;
        if report.schema_version != netload::ndr::RATE_SEARCH_SCHEMA_VERSION {
            return Err(format!(
                "netload rate search schema version {} (this cnibench reads {})",
                report.schema_version,
                netload::ndr::RATE_SEARCH_SCHEMA_VERSION
            ));
        }
        if report.result.status == netload::ndr::SearchStatus::Interrupted {
            return Err("netload stopped early (interrupted): the repetition is incomplete".into());
        }
        from_rate_search(&report)?
    } else if workload.is_stream() {
        let report: StreamReport = serde_json::from_value(raw.clone())
            .map_err(|e| format!("not a netload stream report: {e}"))?;
        if report.schema_version != netload::report::SCHEMA_VERSION {
            return Err(format!(
                "netload stream report schema version {} (this cnibench reads {})",
                report.schema_version,
                netload::report::SCHEMA_VERSION
            ));
        }
        from_stream(&report)
    } else if workload.is_rr() {
        from_rr(raw)
    } else {
        from_http(raw)
    };
    let primary = if search {
        NDR_GOODPUT
    } else {
        primary(workload)
    };
    if metrics.contains_key(primary) {
        Ok(metrics)
    } else {
        Err(format!("netload's JSON has no value for {primary}"))
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rr_and_http_are_read_defensively() {
        let rr = json!({"transactions_per_second": 20000.0, "latency_us": {"p50": 48.0}});
        let m = from_rr(&rr);
        assert_eq!(m[TPS], 20000.0);
        assert_eq!(m[LATENCY_P50], 48.0);
        assert!(!m.contains_key(LATENCY_P99));
        // netload's RrReport layout.
        let rr =
            json!({"transactions_per_second": 1.0, "latency": {"p50_us": 30.0, "p99_us": 90.0}});
        assert_eq!(from_rr(&rr)[LATENCY_P99], 90.0);
        // netload's HttpReport layout: microseconds in, milliseconds out.
        let http = json!({"totals": {"ttfb": {"p50_us": 1500.0, "p99_us": 4000.0},
            "requests_per_second": 50.0, "goodput_bits_per_second": 4e9}, "replica_fairness": 0.98});
        let m = from_http(&http);
        assert_eq!(
            (m[TTFB_P50], m[TTFB_P99], m[THROUGHPUT], m[FAIRNESS]),
            (1.5, 4.0, 4.0, 0.98)
        );
        let http = json!({"client": {"ttfb_ms": {"p50": 1.5, "p99": 4.0}, "bits_per_second": 2e9}});
        let m = from_http(&http);
        assert_eq!(m[TTFB_P50], 1.5);
        assert_eq!(m[THROUGHPUT], 2.0);
        assert!(
            extract(WorkloadKind::TcpRr, &json!({"foo": 1}))
                .unwrap_err()
                .contains(LATENCY_P50)
        );
    }

    #[test]
    fn interrupted_documents_are_not_measurements() {
        let err = extract(
            WorkloadKind::TcpRr,
            &json!({"interrupted": true, "latency": {"p50_us": 1.0}}),
        );
        assert!(err.unwrap_err().contains("interrupted"));
    }

    #[test]
    fn iperf3_udp_and_bidir_documents() {
        // Trimmed from iperf 3.12 -J output (loopback, 1 s).
        let udp = json!({"start": {"test_start": {"protocol": "UDP"}},
            "end": {"sum": {"bits_per_second": 1.0e8, "seconds": 1.0, "jitter_ms": 0.5, "lost_percent": 9.0},
                    "sum_received": {"bits_per_second": 1.0e8, "seconds": 1.0, "jitter_ms": 0.01, "lost_percent": 2.0},
                    "cpu_utilization_percent": {"host_total": 5.0, "remote_total": 1.0}}});
        let m = from_iperf3(&udp).unwrap();
        assert_eq!((m[THROUGHPUT], m[LOSS], m[JITTER]), (0.1, 2.0, 0.01));
        // 5 % of 1 s over 0.1 Gbit.
        assert!((m[CLIENT_PROCESS_CPU] - 0.5).abs() < 1e-9);
        assert!(!m.contains_key(RETRANSMITS) && !m.contains_key(SERVER_CPU));
        let bidir = json!({"start": {"test_start": {"protocol": "TCP"}},
            "end": {"sum_sent": {"retransmits": 3}, "sum_received": {"bits_per_second": 2e9, "seconds": 1.0},
                    "sum_sent_bidir_reverse": {"retransmits": 4},
                    "sum_received_bidir_reverse": {"bits_per_second": 1e9, "seconds": 1.0}}});
        let m = from_iperf3(&bidir).unwrap();
        assert_eq!((m[THROUGHPUT], m[RETRANSMITS]), (3.0, 7.0));
    }

    #[test]
    fn stream_json_that_is_not_a_report_is_an_error() {
        let err = extract(WorkloadKind::Tcp, &json!({"bits": 1})).unwrap_err();
        assert!(err.contains("not a netload stream report"), "{err}");
    }
}
