//! `cnibench import-iperf3`: `iperf3 -J` documents (one per repetition) become a run that
//! `report` and `compare` accept, so old iperf3 numbers can stand next to netload's.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::metrics;
use crate::results::{HostInfo, Meta, PointEnd, PointStatus, Record, RepRecord};
use crate::scenario::{
    BitsPerSec, Direction, Objects, PathKind, Placement, Point, ScenarioKind, Seconds,
    StreamWorkload, Tool, Topology, Workload, Zerocopy,
};
use crate::stats::{Decision, StopRule};

/// Why an iperf3 document cannot be imported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {problem}")]
pub struct ImportError {
    /// File name.
    pub source_name: String,
    /// What is wrong.
    pub problem: String,
}

fn f(v: &Value, path: &str) -> Option<f64> {
    v.pointer(path).and_then(Value::as_f64)
}

/// Builds a run from documents `(file name, JSON)`; every document is one measured
/// repetition of the point `name`.
pub fn import(
    docs: &[(String, Value)],
    name: &str,
    run_id: &str,
    created: &str,
    label: Option<String>,
    host: HostInfo,
) -> Result<(Meta, Vec<Record>), ImportError> {
    let first = &docs
        .first()
        .ok_or_else(|| ImportError {
            source_name: "import-iperf3".into(),
            problem: "no files given".into(),
        })?
        .1;
    let udp = first
        .pointer("/start/test_start/protocol")
        .and_then(Value::as_str)
        == Some("UDP");
    let reverse = first
        .pointer("/start/test_start/reverse")
        .and_then(Value::as_i64)
        == Some(1);
    let streams = first
        .pointer("/start/test_start/num_streams")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let duration = f(first, "/start/test_start/duration").unwrap_or(0.0);
    let omit = f(first, "/start/test_start/omit").unwrap_or(0.0);
    let scenario = name.split('/').next().unwrap_or(name).to_string();
    let kind = ScenarioKind::parse(&scenario).unwrap_or(ScenarioKind::PodToPod);
    let point = Point {
        id: name.to_string(),
        scenario,
        kind,
        topology: Topology {
            placement: Placement::Inter,
            host_network: kind == ScenarioKind::Baseline,
            path: PathKind::Direct,
            mtu: None,
        },
        objects: Objects::default(),
        workload: Workload::Stream(StreamWorkload {
            udp,
            duration: Seconds(duration),
            omit: Seconds(omit),
            streams: streams as u32,
            length: None,
            mss: None,
            rate: BitsPerSec(0),
            direction: if reverse {
                Direction::Reverse
            } else {
                Direction::Forward
            },
            nodelay: false,
            zerocopy: Zerocopy::None,
            affinity: None,
            window: None,
            find_rate: None,
        }),
        tool: Tool::Iperf3,
        params: BTreeMap::from([("tool".to_string(), "iperf3".to_string())]),
    };
    let version = first
        .pointer("/start/version")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_string();
    let mut records = Vec::new();
    let mut values = Vec::new();
    for (i, (source_name, doc)) in docs.iter().enumerate() {
        let m = metrics::from_iperf3(doc).map_err(|problem| ImportError {
            source_name: source_name.clone(),
            problem,
        })?;
        values.push(m[metrics::THROUGHPUT]);
        records.push(Record::Rep(RepRecord {
            point: point.id.clone(),
            rep: i as u32,
            warmup: false,
            started_unix_s: f(doc, "/start/timestamp/timesecs").unwrap_or(0.0),
            wall_s: duration + omit,
            metrics: m,
            start: None,
            raw: doc.clone(),
        }));
    }
    let rule = StopRule::default();
    let status = match rule.decide(
        &values,
        std::time::Duration::ZERO,
        std::time::Duration::ZERO,
    ) {
        Decision::Converged => PointStatus::Converged,
        _ => PointStatus::MaxReps,
    };
    records.push(Record::PointEnd(PointEnd {
        point: point.id.clone(),
        status,
        reps: values.len() as u32,
        note: (status != PointStatus::Converged).then(|| {
            format!(
                "imported {} iperf3 repetitions; the 95% CI target is not met",
                values.len()
            )
        }),
        setup_s: None,
    }));
    let meta = Meta {
        format_version: crate::results::FORMAT_VERSION,
        run_id: run_id.into(),
        created: created.into(),
        backend: "iperf3-import".into(),
        label,
        suite: "iperf3-import".into(),
        host,
        tools: BTreeMap::from([
            ("iperf3".to_string(), version),
            (
                "cnibench".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
        ]),
        rule,
        warmup_reps: 0,
        warmup_s: None,
        points: vec![point],
        command: Vec::new(),
    };
    Ok((meta, records))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(bps: f64) -> Value {
        json!({
            "start": {"version": "iperf 3.12", "timestamp": {"timesecs": 1_700_000_000},
                      "test_start": {"protocol": "TCP", "num_streams": 1, "duration": 10, "omit": 0, "reverse": 0}},
            "end": {"sum_sent": {"bits_per_second": bps * 1.01, "retransmits": 12, "seconds": 10.0},
                    "sum_received": {"bits_per_second": bps, "seconds": 10.0},
                    "cpu_utilization_percent": {"host_total": 40.0, "remote_total": 60.0}}
        })
    }

    #[test]
    fn imports_tcp_documents() {
        let docs: Vec<(String, Value)> = [9.40e9, 9.41e9, 9.39e9]
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("{i}.json"), doc(*b)))
            .collect();
        let (meta, records) = import(
            &docs,
            "baseline/workload=tcp",
            "r",
            "t",
            None,
            HostInfo::default(),
        )
        .unwrap();
        assert_eq!(meta.points[0].kind, ScenarioKind::Baseline);
        let summary = crate::results::summarize(&meta, &records, &[]);
        let p = &summary.points[0];
        assert_eq!(p.status, Some(PointStatus::Converged));
        assert!((p.metrics[metrics::THROUGHPUT].stats.mean - 9.40).abs() < 1e-9);
        // 0.4 * 10 s / 94 Gbit
        assert!((p.metrics[metrics::CLIENT_PROCESS_CPU].stats.mean - 4.0 / 94.0).abs() < 1e-3);
    }

    #[test]
    fn rejects_non_iperf3_json() {
        let err = import(
            &[("x.json".into(), json!({"hello": 1}))],
            "a",
            "r",
            "t",
            None,
            HostInfo::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("x.json: no end.sum_received"),
            "{err}"
        );
        let err = metrics::from_iperf3(&json!({"error": "unable to connect"})).unwrap_err();
        assert!(err.contains("unable to connect"));
    }
}
