//! A deterministic backend: seeded noise around a simple model of how topology and objects
//! cost throughput and latency. No privileges, no processes; the same seed gives the same
//! run. Stream results are complete netload `StreamReport` documents, so the same
//! extraction code runs as with real netload.

use std::collections::BTreeMap;
use std::time::Duration;

use netload::report::{CpuReport, FlowDirection, NodeCpu, SideReport};
use netload::spec::{Protocol, TestSpec};
use serde_json::json;

use super::{Backend, BackendError, Cancel, Readiness, RepOutcome};
use crate::metrics;
use crate::scenario::{PathKind, Placement, Point, RrMode, Tool, Workload};

/// Where the fake backend should fail, for tests of failure handling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailAt {
    /// A substring of the point id.
    pub point: String,
    /// Repetition index (warm-up is 0).
    pub rep: u32,
}

impl std::str::FromStr for FailAt {
    type Err = String;

    /// Parses `POINT_SUBSTRING@REP`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (point, rep) = s
            .rsplit_once('@')
            .ok_or_else(|| format!("expected POINT@REP, got `{s}`"))?;
        let rep = rep
            .parse()
            .map_err(|_| format!("bad repetition in `{s}`"))?;
        Ok(FailAt {
            point: point.into(),
            rep,
        })
    }
}

/// The fake backend.
#[derive(Debug, Clone)]
pub struct FakeBackend {
    /// Seed of the noise.
    pub seed: u64,
    /// Injected failure.
    pub fail: Option<FailAt>,
    /// Real time each repetition takes (0 = instant); cancellable.
    pub delay: Duration,
    /// Scale of the noise (1 = the default spread of about 1 % on throughput; a loaded
    /// machine is more like 5..20).
    pub noise: f64,
}

impl FakeBackend {
    /// A fake with `seed`, no failures and no delay.
    pub fn new(seed: u64) -> Self {
        FakeBackend {
            seed,
            fail: None,
            delay: Duration::ZERO,
            noise: 1.0,
        }
    }
}

/// FNV-1a, a stable hash (std's hasher may change between Rust releases).
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `SplitMix64` (Steele, Lea, Flood 2014): a tiny, well-mixed generator.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Approximately standard normal: Irwin–Hall sum of 12 uniforms minus 6.
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

fn log_cost(n: u32, per_decade: f64) -> f64 {
    1.0 + per_decade * f64::from(n + 1).log10()
}

impl FakeBackend {
    fn rng(&self, point: &Point, rep: u32) -> SplitMix {
        SplitMix(self.seed ^ fnv1a(point.id.as_bytes()) ^ u64::from(rep).wrapping_mul(0x9e37_79b9))
    }

    /// Multiplicative slowdown of the datapath for this point (1 = baseline).
    fn slowdown(point: &Point) -> f64 {
        let o = point.objects;
        let mut s = log_cost(o.services, 0.03) * log_cost(o.policies, 0.04);
        if !point.topology.host_network {
            s *= 1.06; // veth + bridge or overlay
        }
        if point.topology.path == PathKind::Service {
            s *= 1.03; // NAT
        }
        s
    }

    // `..Default::default()` on complete literals keeps this compiling when netload adds
    // fields to its report types.
    #[allow(clippy::needless_update)]
    fn stream(
        &self,
        point: &Point,
        s: &crate::scenario::StreamWorkload,
        rng: &mut SplitMix,
    ) -> serde_json::Value {
        let base_gbps = match (point.topology.placement, s.udp) {
            (Placement::Inter, false) => 9.4,
            (Placement::Intra, false) => 28.0,
            (Placement::Inter, true) => 3.1,
            (Placement::Intra, true) => 4.2,
        };
        let noise = (1.0 + 0.012 * self.noise * rng.normal()).max(0.05);
        let gbps = base_gbps * f64::from(s.streams).powf(0.15) / Self::slowdown(point) * noise;
        if point.tool == Tool::Iperf3 {
            return Self::iperf3_doc(s, gbps, rng);
        }
        if s.udp
            && let Some(search) = s.find_rate
        {
            return Self::search_doc(point, s, search.loss_percent, gbps, rng);
        }
        let packets = s
            .udp
            .then_some((gbps * 1e9 / 8.0 * s.duration.0) as u64 / 1400);
        let lost = packets.map(|p| (p as f64 * 0.001 * rng.uniform()) as u64);
        Self::stream_doc(
            point,
            s,
            s.duration.0,
            gbps,
            lost.unwrap_or(0),
            s.rate.0,
            rng,
        )
    }

    /// A `netload udp --find-rate` document: netload's own search run over a path that
    /// carries `knee_gbps` without loss and loses the excess above it, with a little noise,
    /// from a sender that reaches twice that.
    fn search_doc(
        point: &Point,
        s: &crate::scenario::StreamWorkload,
        loss_target: f64,
        knee_gbps: f64,
        rng: &mut SplitMix,
    ) -> serde_json::Value {
        use netload::ndr::{RateSearch, RateSearchReport, SearchConfig, Step, Trial};
        let short_trial_s = crate::scenario::RateSearch::trial(s.duration).0;
        let mut config = SearchConfig::new(short_trial_s + s.omit.0, s.duration.0 + s.omit.0);
        config.loss_percent = loss_target;
        let mut search = RateSearch::new(config);
        let mut trials: Vec<Trial> = Vec::new();
        let mut elapsed = 0.0;
        let result = loop {
            let (offered_bps, purpose) = match search.next(Duration::from_secs_f64(elapsed)) {
                Step::Done(c) => break c,
                Step::Run {
                    offered_bps,
                    purpose,
                } => (offered_bps, purpose),
            };
            let duration = if purpose == netload::ndr::Purpose::Confirm {
                s.duration.0
            } else {
                short_trial_s
            };
            let sent_gbps = if offered_bps == 0.0 {
                2.0 * knee_gbps
            } else {
                offered_bps / 1e9
            };
            let excess = (sent_gbps - knee_gbps).max(0.0) / sent_gbps;
            let loss_share = (excess + 0.0005 * rng.uniform()).min(1.0);
            let packets = (sent_gbps * 1e9 / 8.0 * duration) as u64 / 1400;
            let lost = (packets as f64 * loss_share) as u64;
            let doc = Self::stream_doc(
                point,
                s,
                duration,
                sent_gbps,
                lost,
                (offered_bps / f64::from(s.streams)) as u64,
                rng,
            );
            let report = serde_json::from_value(doc).expect("the fake builds netload's schema");
            let t = Trial::from_report(
                trials.len(),
                purpose,
                offered_bps,
                report,
                duration + s.omit.0,
                loss_target,
            );
            search.record(purpose, t.observation());
            trials.push(t);
            elapsed += duration + s.omit.0;
        };
        let report = RateSearchReport {
            kind: netload::ndr::RATE_SEARCH_KIND.into(),
            schema_version: netload::ndr::RATE_SEARCH_SCHEMA_VERSION,
            netload_version: "fake".into(),
            config,
            trial_s: short_trial_s,
            confirm_s: s.duration.0,
            warmup_s: s.omit.0,
            trials,
            result,
            elapsed_s: elapsed,
            warnings: Vec::new(),
        };
        serde_json::to_value(report).expect("a rate search report serialises")
    }

    /// A netload stream report of `duration` seconds at `gbps` sent, `lost` datagrams
    /// (of 1400 bytes) lost on the way for UDP, `rate_bps` asked for per stream.
    #[allow(clippy::too_many_arguments, clippy::needless_update)]
    fn stream_doc(
        point: &Point,
        s: &crate::scenario::StreamWorkload,
        duration: f64,
        sent_gbps: f64,
        lost: u64,
        rate_bps: u64,
        rng: &mut SplitMix,
    ) -> serde_json::Value {
        let packets = s
            .udp
            .then_some((sent_gbps * 1e9 / 8.0 * duration) as u64 / 1400);
        let lost = packets.map(|p| lost.min(p));
        let received_share = match (packets, lost) {
            (Some(p), Some(l)) if p > 0 => 1.0 - l as f64 / p as f64,
            _ => 1.0,
        };
        let gbps = sent_gbps * received_share;
        let bytes = (gbps * 1e9 / 8.0 * duration) as u64;
        let cpu_s_per_gb = 0.9 * Self::slowdown(point) * (1.0 + 0.02 * rng.normal());
        let side = |busy_s_per_gb: f64, softirq_share: f64| {
            let busy = busy_s_per_gb * bytes as f64 / 1e9;
            SideReport {
                bytes,
                bits_per_second: gbps * 1e9,
                sent_bytes: bytes,
                received_bytes: bytes,
                duration_s: duration,
                cpu: CpuReport {
                    window_s: duration,
                    process_user_s: busy * 0.1,
                    process_system_s: busy * 0.4,
                    process_s_per_gb: Some(busy_s_per_gb * 0.5),
                    node: NodeCpu {
                        cores: 8,
                        user: busy * 0.15,
                        system: busy * (0.85 - softirq_share),
                        softirq: busy * softirq_share,
                        idle: 8.0 * duration - busy,
                        ..NodeCpu::default()
                    },
                    node_busy_s_per_gb: Some(busy_s_per_gb),
                    ..CpuReport::default()
                },
                ..SideReport::default()
            }
        };
        // Built through netload's own constructor and `Default`s, and assembled as JSON,
        // so fields netload adds later (with serde defaults) do not break the fake.
        let mut spec = TestSpec::new(if s.udp { Protocol::Udp } else { Protocol::Tcp });
        spec.direction = s.direction;
        spec.duration_s = duration;
        spec.omit_s = s.omit.0;
        spec.parallel = s.streams;
        if let Some(l) = s.length {
            spec.length = l.0 as u32;
        }
        spec.mss = s.mss;
        spec.udp_rate_bps = rate_bps;
        let bps = gbps * 1e9;
        let flow = json!({
            "direction": FlowDirection::ClientToServer,
            "sender_bytes": (sent_gbps * 1e9 / 8.0 * duration) as u64,
            "receiver_bytes": bytes,
            "sender_bits_per_second": sent_gbps * 1e9,
            "receiver_bits_per_second": bps,
            "retransmits": (!s.udp).then(|| (rng.uniform() * 20.0) as u64),
            "packets_sent": packets,
            "lost": lost,
            "loss_percent": packets.zip(lost).map(|(p, l)| l as f64 * 100.0 / p.max(1) as f64),
            "jitter_ms": s.udp.then(|| 0.01 + 0.005 * rng.uniform()),
        });
        json!({
            "schema_version": netload::report::SCHEMA_VERSION,
            "netload_version": "fake",
            "started_unix_s": 0.0,
            "spec": spec,
            "client": side(cpu_s_per_gb * 0.8, 0.2),
            "server": side(cpu_s_per_gb, 0.45),
            "flows": [flow],
            "warnings": [],
        })
    }
}

impl FakeBackend {
    /// An `iperf3 -J` client document of a stream at `gbps` (the fields cnibench reads).
    fn iperf3_doc(
        s: &crate::scenario::StreamWorkload,
        gbps: f64,
        rng: &mut SplitMix,
    ) -> serde_json::Value {
        let bps = gbps * 1e9;
        let d = s.duration.0;
        let mut sum = |sender: bool| {
            json!({"seconds": d, "bytes": (bps * d / 8.0) as u64, "bits_per_second": bps,
                   "sender": sender, "retransmits": (!s.udp).then(|| (rng.uniform() * 20.0) as u64),
                   "jitter_ms": 0.012, "lost_percent": 0.05})
        };
        let (sent, received) = (sum(true), sum(false));
        json!({
            "start": {"version": "iperf 3.12 (fake)", "test_start": {
                "protocol": if s.udp { "UDP" } else { "TCP" }, "num_streams": s.streams,
                "duration": d, "omit": s.omit.0,
                "reverse": i32::from(s.direction == crate::scenario::Direction::Reverse)}},
            "end": {"sum_sent": sent, "sum_received": received,
                    "cpu_utilization_percent": {"host_total": 35.0, "remote_total": 48.0}},
        })
    }
}

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn tools(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("netload".to_string(), "fake".to_string())])
    }

    fn applicability(&self, point: &Point) -> Readiness {
        super::tool::iperf3::applicability(point)
    }

    fn prepare(&mut self, point: &Point) -> Result<Readiness, BackendError> {
        Ok(self.applicability(point))
    }

    fn run_rep(
        &mut self,
        point: &Point,
        rep: u32,
        cancel: &Cancel,
    ) -> Result<RepOutcome, BackendError> {
        if let Some(f) = &self.fail
            && point.id.contains(&f.point)
            && rep == f.rep
        {
            return Err(BackendError::Injected {
                point: point.id.clone(),
                rep,
            });
        }
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        while waited < self.delay {
            if cancel.is_cancelled() {
                return Err(BackendError::Cancelled);
            }
            std::thread::sleep(step);
            waited += step;
        }
        let mut rng = self.rng(point, rep);
        let slow = Self::slowdown(point);
        let raw = match &point.workload {
            Workload::Stream(s) => self.stream(point, s, &mut rng),
            Workload::Rr(r) => {
                let base_us = match point.topology.placement {
                    Placement::Inter => 32.0,
                    Placement::Intra => 14.0,
                } * if r.mode == RrMode::TcpCrr { 3.5 } else { 1.0 };
                let p50 = base_us * slow * (1.0 + 0.025 * self.noise * rng.normal()).max(0.05);
                // The layout of netload's `RrReport`.
                json!({
                    "schema_version": 1,
                    "netload_version": "fake",
                    "transactions_per_second": 1e6 / p50,
                    "latency": {"min_us": p50 * 0.6, "p50_us": p50, "p90_us": p50 * 1.4,
                        "p99_us": p50 * 2.6, "p99_9_us": p50 * 4.1, "max_us": p50 * 7.0},
                })
            }
            Workload::Http(h) => {
                let ttfb = (0.8 + 0.02 * f64::from(point.objects.replicas))
                    * slow
                    * (1.0 + 0.06 * self.noise * rng.normal()).max(0.05);
                let secs = h.file_size.0 as f64 * 8.0 / 9e9 + ttfb / 1000.0;
                // The layout of netload's `HttpReport` (latencies in microseconds).
                json!({
                    "schema_version": 1,
                    "netload_version": "fake",
                    "totals": {
                        "requests_per_second": f64::from(h.concurrency) / secs,
                        "goodput_bits_per_second": h.file_size.0 as f64 * 8.0 / secs,
                        "ttfb": {"min_us": ttfb * 0.5e3, "p50_us": ttfb * 1e3, "p90_us": ttfb * 1.8e3,
                            "p99_us": ttfb * 3e3, "p99_9_us": ttfb * 4.5e3, "max_us": ttfb * 8e3},
                    },
                    "replica_fairness": 1.0 - 0.01 * rng.uniform(),
                })
            }
        };
        let extracted = if point.tool == Tool::Iperf3 {
            metrics::from_iperf3(&raw)
        } else {
            metrics::extract(point.workload.kind(), &raw)
        };
        let metrics = extracted.map_err(|message| BackendError::Output {
            tool: "fake".into(),
            message,
        })?;
        Ok(RepOutcome { metrics, raw })
    }

    fn teardown(&mut self, _point: &Point) -> Result<(), BackendError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{expand, presets};

    #[test]
    fn same_seed_same_numbers_and_every_quick_point_runs() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let mut a = FakeBackend::new(7);
        let mut b = FakeBackend::new(7);
        let cancel = Cancel::default();
        for p in &points {
            let x = a.run_rep(p, 1, &cancel).unwrap();
            let y = b.run_rep(p, 1, &cancel).unwrap();
            assert_eq!(x, y);
            assert!(x.metrics.contains_key(metrics::primary_of(&p.workload)));
        }
    }

    #[test]
    fn injected_failure() {
        let points = expand(&presets::load("quick").unwrap()).unwrap();
        let mut f = FakeBackend::new(1);
        f.fail = Some("baseline@2".parse().unwrap());
        let cancel = Cancel::default();
        assert!(f.run_rep(&points[0], 1, &cancel).is_ok());
        assert!(matches!(
            f.run_rep(&points[0], 2, &cancel),
            Err(BackendError::Injected { .. })
        ));
    }
}

/// The metrics of the fake's UDP documents (netload's own rate search over a simulated
/// knee): here, not in `metrics`, so that `metrics` does not depend on a backend.
#[cfg(test)]
mod metrics_tests {
    use netload::ndr::RateSearchReport;
    use serde_json::{Value, json};

    use crate::metrics::{
        LOSS, NDR_GOODPUT, NDR_MPPS, SEARCH_TRIALS, SERVER_CPU, THROUGHPUT, extract, loss_curve,
        primary_of,
    };
    use crate::scenario::{Workload, WorkloadKind};

    /// The first UDP point of the thesis suite and a repetition of it from the fake backend,
    /// whose UDP documents are netload's own search over a simulated knee.
    fn udp_search_rep() -> (crate::scenario::Point, Value) {
        use crate::backend::{Backend, Cancel, fake::FakeBackend};
        let points = crate::suite::expand(&crate::suite::presets::load("thesis").unwrap()).unwrap();
        let p = points
            .into_iter()
            .find(|p| p.workload.kind() == WorkloadKind::Udp)
            .expect("the thesis suite has a UDP point");
        let rep = FakeBackend::new(3)
            .run_rep(&p, 1, &Cancel::default())
            .unwrap();
        (p, rep.raw)
    }

    #[test]
    fn udp_points_lead_with_no_drop_goodput_and_old_runs_keep_throughput() {
        let (p, raw) = udp_search_rep();
        assert_eq!(primary_of(&p.workload), NDR_GOODPUT);
        let m = extract(WorkloadKind::Udp, &raw).unwrap();
        assert!(m[NDR_GOODPUT] > 0.0);
        assert!(!m.contains_key(THROUGHPUT), "{m:?}");
        assert!(m[LOSS] <= 0.1, "loss at the no-drop rate: {}", m[LOSS]);
        assert!(m.contains_key(SERVER_CPU) && m.contains_key(NDR_MPPS));
        assert!(m[SEARCH_TRIALS] >= 3.0);
        // The no-drop goodput is that of the trial the search picked.
        let report: RateSearchReport = serde_json::from_value(raw.clone()).unwrap();
        assert!((m[NDR_GOODPUT] - report.goodput_bps().unwrap() / 1e9).abs() < 1e-12);
        // A UDP point of a run written before the search existed: no `find_rate`, a plain
        // stream report, throughput as the primary metric.
        let mut old = p.clone();
        if let Workload::Stream(s) = &mut old.workload {
            s.find_rate = None;
        }
        assert_eq!(primary_of(&old.workload), THROUGHPUT);
        let plain = report.trials[0].report.clone();
        let m = extract(WorkloadKind::Udp, &serde_json::to_value(plain).unwrap()).unwrap();
        assert!(m.contains_key(THROUGHPUT) && !m.contains_key(NDR_GOODPUT));
    }

    #[test]
    fn the_loss_curve_of_a_repetition_is_sorted_and_absent_without_a_search() {
        let (_, raw) = udp_search_rep();
        let curve = loss_curve(&raw).unwrap();
        let report: RateSearchReport = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(curve.len(), report.trials.len());
        assert!(
            curve
                .windows(2)
                .all(|w| w[0].offered_gbps <= w[1].offered_gbps)
        );
        // The probe ran unlimited and overloaded the simulated path: the top of the curve.
        let top = curve.last().unwrap();
        assert!(!top.pass && top.loss_percent > 1.0, "{top:?}");
        assert!(curve.iter().any(|c| c.confirmation && c.pass));
        assert!(loss_curve(&json!({"flows": []})).is_none());
        let plain = serde_json::to_value(&report.trials[0].report).unwrap();
        assert!(loss_curve(&plain).is_none());
    }

    #[test]
    fn a_search_without_a_passing_rate_is_an_error_naming_it() {
        let (_, raw) = udp_search_rep();
        let mut report: RateSearchReport = serde_json::from_value(raw).unwrap();
        report.result.trial = None;
        report.result.rate_bps = None;
        report.result.status = netload::ndr::SearchStatus::NoPassingRate;
        let err = extract(WorkloadKind::Udp, &serde_json::to_value(report).unwrap()).unwrap_err();
        assert!(err.contains("found no rate"), "{err}");
    }
}
