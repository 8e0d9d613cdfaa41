//! Every repetition of a run in run order, for the charts (pure): warm-ups included and
//! marked, with what the summary statistics do not keep: the latency percentiles and the
//! node CPU split (user, system, softirq) of each end, read from the tools' raw JSON.
//!
//! A run read from `summary.json` alone has no raw JSON; [`from_summary`] then gives the
//! measured values only, and the charts that need more are left out with a note.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::metrics::{self, CurvePoint, Metrics};
use crate::results::{Record, RunSummary};

/// One repetition as the charts see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rep {
    /// A warm-up (drawn, never counted).
    pub warmup: bool,
    /// Extracted metrics.
    pub metrics: Metrics,
    /// Latency percentiles of the repetition, in the unit of the point's primary metric.
    pub latency: Option<Percentiles>,
    /// Node CPU per Gbit of both ends.
    pub cpu: Option<CpuSplit>,
    /// Loss against offered rate, when the repetition searched for a UDP no-drop rate.
    pub loss_curve: Option<Vec<CurvePoint>>,
}

/// Percentiles of one repetition's latency histogram, `(quantile, value)` in ascending
/// quantile order; quantile 0 is the minimum and 1 the maximum.
#[derive(Debug, Clone, PartialEq)]
pub struct Percentiles(pub Vec<(f64, f64)>);

/// The quantiles netload's `LatencySummary` records, with their field names.
pub const QUANTILES: [(f64, &str); 6] = [
    (0.0, "min_us"),
    (0.5, "p50_us"),
    (0.9, "p90_us"),
    (0.99, "p99_us"),
    (0.999, "p99_9_us"),
    (1.0, "max_us"),
];

/// Node CPU seconds of one end per Gbit that end moved, by state. The parts add up to the
/// `*_cpu_s_per_gbit` metrics (netload's node busy time over the end's bytes).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EndCpu {
    /// User and nice.
    pub user: f64,
    /// Kernel outside interrupts.
    pub system: f64,
    /// Soft and hard interrupts: where the network stack, and so the datapath, runs.
    pub softirq: f64,
    /// Stolen by the hypervisor.
    pub steal: f64,
}

impl EndCpu {
    /// The parts in stacking order, with their names.
    pub fn parts(&self) -> [(&'static str, f64); 4] {
        [
            ("user", self.user),
            ("system", self.system),
            ("softirq + irq", self.softirq),
            ("steal", self.steal),
        ]
    }

    /// Sum of the parts.
    pub fn total(&self) -> f64 {
        self.user + self.system + self.softirq + self.steal
    }
}

/// CPU split of both ends of a stream repetition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSplit {
    /// The client's node.
    pub client: EndCpu,
    /// The server's node.
    pub server: EndCpu,
}

/// Repetitions by point id, each in run order.
pub type Reps = BTreeMap<String, Vec<Rep>>;

/// The repetitions of a run's records (warm-ups included).
pub fn from_records(records: &[Record]) -> Reps {
    let mut out = Reps::new();
    for rec in records {
        if let Record::Rep(r) = rec {
            out.entry(r.point.clone()).or_default().push(Rep {
                warmup: r.warmup,
                metrics: r.metrics.clone(),
                latency: latency(&r.raw),
                cpu: cpu(&r.raw),
                loss_curve: metrics::loss_curve(&r.raw),
            });
        }
    }
    out
}

/// The measured repetitions as far as `summary.json` keeps them: values only.
pub fn from_summary(run: &RunSummary) -> Reps {
    let mut out = Reps::new();
    for p in &run.points {
        let n = p.metrics.values().map(|m| m.raw.len()).max().unwrap_or(0);
        let reps = (0..n)
            .map(|i| Rep {
                warmup: false,
                metrics: p
                    .metrics
                    .iter()
                    .filter_map(|(k, m)| m.raw.get(i).map(|v| (k.clone(), *v)))
                    .collect(),
                latency: None,
                cpu: None,
                loss_curve: None,
            })
            .collect::<Vec<_>>();
        if !reps.is_empty() {
            out.insert(p.point.id.clone(), reps);
        }
    }
    out
}

/// Latency percentiles of a netload `rr` document (`latency`, µs) or an `http` one
/// (`totals.ttfb`, turned into ms like the TTFB metrics).
fn latency(raw: &Value) -> Option<Percentiles> {
    let (node, scale) = if let Some(l) = raw.get("latency") {
        (l, 1.0)
    } else {
        (raw.pointer("/totals/ttfb")?, 1e-3)
    };
    let values: Vec<(f64, f64)> = QUANTILES
        .iter()
        .filter_map(|(q, field)| node.get(*field)?.as_f64().map(|v| (*q, v * scale)))
        .collect();
    // A median and one tail percentile at least, or there is no distribution to draw.
    (values.iter().filter(|(q, _)| *q > 0.0 && *q < 1.0).count() >= 2)
        .then_some(Percentiles(values))
}

/// Node CPU split of both ends of a netload stream document.
fn cpu(raw: &Value) -> Option<CpuSplit> {
    let end = |side: &str| -> Option<EndCpu> {
        let node = raw.pointer(&format!("/{side}/cpu/node"))?;
        let bytes = raw.pointer(&format!("/{side}/bytes"))?.as_f64()?;
        let gbit = bytes * 8.0 / 1e9;
        if gbit <= 0.0 {
            return None;
        }
        let f = |k: &str| node.get(k).and_then(Value::as_f64).unwrap_or(0.0) / gbit;
        Some(EndCpu {
            user: f("user") + f("nice"),
            system: f("system"),
            softirq: f("softirq") + f("irq"),
            steal: f("steal"),
        })
    };
    Some(CpuSplit {
        client: end("client")?,
        server: end("server")?,
    })
}

/// Median of each quantile over repetitions (the percentiles of one "typical"
/// repetition); `None` without any.
pub fn median_percentiles<'a>(
    reps: impl IntoIterator<Item = &'a Percentiles>,
) -> Option<Percentiles> {
    let mut by_q: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for p in reps {
        for (q, v) in &p.0 {
            by_q.entry(q.to_bits()).or_default().push(*v);
        }
    }
    let mut out: Vec<(f64, f64)> = by_q
        .into_iter()
        .map(|(q, vs)| (f64::from_bits(q), crate::stats::median(&vs)))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    (!out.is_empty()).then_some(Percentiles(out))
}

/// Mean CPU split over the measured repetitions that have one.
pub fn mean_cpu<'a>(reps: impl IntoIterator<Item = &'a Rep>) -> Option<CpuSplit> {
    let splits: Vec<CpuSplit> = reps
        .into_iter()
        .filter(|r| !r.warmup)
        .filter_map(|r| r.cpu)
        .collect();
    if splits.is_empty() {
        return None;
    }
    let n = splits.len() as f64;
    let avg = |f: fn(&CpuSplit) -> EndCpu| {
        let mut e = EndCpu::default();
        for s in &splits {
            let x = f(s);
            e.user += x.user / n;
            e.system += x.system / n;
            e.softirq += x.softirq / n;
            e.steal += x.steal / n;
        }
        e
    };
    Some(CpuSplit {
        client: avg(|s| s.client),
        server: avg(|s| s.server),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rr_and_http_percentiles_and_stream_cpu_come_from_raw_json() {
        let rr =
            json!({"latency": {"min_us": 10.0, "p50_us": 20.0, "p90_us": 30.0, "p99_us": 50.0}});
        assert_eq!(
            latency(&rr).unwrap().0,
            [(0.0, 10.0), (0.5, 20.0), (0.9, 30.0), (0.99, 50.0)]
        );
        let http = json!({"totals": {"ttfb": {"p50_us": 1500.0, "p99_us": 4000.0}}});
        assert_eq!(latency(&http).unwrap().0, [(0.5, 1.5), (0.99, 4.0)]);
        assert_eq!(latency(&json!({"latency": {"p50_us": 1.0}})), None);
        // 1.25e9 bytes = 10 Gbit per end.
        let side = |softirq: f64| {
            json!({"bytes": 1_250_000_000u64, "cpu": {"node": {"user": 1.0, "nice": 1.0,
                "system": 3.0, "softirq": softirq, "irq": 1.0, "idle": 50.0, "steal": 0.0}}})
        };
        let s = cpu(&json!({"client": side(2.0), "server": side(4.0)})).unwrap();
        for (got, want) in [
            (s.client.user, 0.2),
            (s.client.system, 0.3),
            (s.client.softirq, 0.3),
        ] {
            assert!((got - want).abs() < 1e-12, "{got} != {want}");
        }
        assert!((s.server.total() - 1.0).abs() < 1e-12);
        assert_eq!(cpu(&json!({"client": side(1.0)})), None);
    }

    #[test]
    fn medians_are_taken_per_quantile() {
        let a = Percentiles(vec![(0.5, 1.0), (0.99, 10.0)]);
        let b = Percentiles(vec![(0.5, 3.0), (0.99, 30.0)]);
        let c = Percentiles(vec![(0.5, 2.0), (0.99, 90.0)]);
        assert_eq!(
            median_percentiles([&a, &b, &c]).unwrap().0,
            [(0.5, 2.0), (0.99, 30.0)]
        );
        assert_eq!(median_percentiles([]), None);
    }
}
