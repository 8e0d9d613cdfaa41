//! The kube backend's time model for `cnibench plan`: API requests per point from the
//! same reconcile plan the driver follows ([`super::reconcile`]), turned into seconds at
//! an assumed client and pod rate.

use std::time::Duration;

use super::objects::{self, ServiceMode, Settings};
use super::reconcile::{self, Level};
use crate::scenario::Point;

/// Requests per second this client is assumed to get through for creates and deletes
/// (32 in flight at about 160 ms each on a loaded API server; an idle one does several
/// times more). The paper estimate in docs/kube.md uses the same figure.
pub const CLIENT_RATE: u64 = 200;
/// Pods per second the cluster is assumed to start and to stop: the ReplicaSet and
/// namespace controllers' client rate (kube-controller-manager `--kube-api-qps`, 20).
pub const POD_RATE: u64 = 20;
/// Fixed part of a point whose server or client pod is (re)started: old pods gone, new
/// ones scheduled, started (image present) and ready.
pub const POINT_FIXED: Duration = Duration::from_secs(10);
/// Fixed part of a point that keeps the server and client: the namespace patch, the
/// readiness watches and the server's address.
pub const POINT_REUSED: Duration = Duration::from_secs(1);
/// The client's probe of the measured address before the first repetition: one exec
/// (a WebSocket through the API server and kubelet) and a connection.
pub const CLIENT_PROBE: Duration = Duration::from_secs(1);
/// The outsider's probe on a point with policies: three failed connections in a row
/// (`netload probe --want closed`), each a 1 s connect timeout and a 0.2 s pause when the
/// policies drop; a CNI that rejects answers at once.
pub const OUTSIDER_PROBE: Duration = Duration::from_millis(3_600);
/// Fixed part of the end of the run: the namespace controller empties and removes it.
pub const FINISH_FIXED: Duration = Duration::from_secs(10);

/// The settings the model builds objects with (only their equality matters).
fn model_settings(mode: ServiceMode) -> Settings {
    Settings {
        run: "plan".into(),
        image: objects::default_image(),
        server_node: "worker-1".into(),
        client_node: "worker-2".into(),
        service_mode: mode,
        tolerations: Vec::new(),
        namespace: None,
    }
}

fn model_levels(previous: Option<&Point>, point: &Point, mode: ServiceMode) -> (Level, Level) {
    let s = model_settings(mode);
    (
        previous.map(|p| Level::of(&s, p)).unwrap_or_default(),
        Level::of(&s, point),
    )
}

/// Creates, deletes and patches cnibench sends to prepare `point` after `previous` (the
/// point run before it in the same namespace; `None` for the first): only the
/// difference ([`reconcile::requests`]). The readiness watches (a list each, three at
/// most) and reads are left out: they are a handful per point.
pub fn api_requests(previous: Option<&Point>, point: &Point, mode: ServiceMode) -> u64 {
    let (from, to) = model_levels(previous, point, mode);
    reconcile::requests(&from, &to, mode)
}

/// Expected preparation time of `point` after `previous` (for `cnibench plan`):
/// [`api_requests`] at [`CLIENT_RATE`], pods started and stopped at [`POD_RATE`], plus
/// [`POINT_FIXED`] when the server or client is (re)started, else [`POINT_REUSED`], plus
/// the datapath probes ([`CLIENT_PROBE`], [`OUTSIDER_PROBE`] on points with policies).
pub fn setup_estimate(previous: Option<&Point>, point: &Point, mode: ServiceMode) -> Duration {
    let (from, to) = model_levels(previous, point, mode);
    let requests = reconcile::requests(&from, &to, mode);
    let pods = reconcile::pods_changed(&from, &to);
    let fixed = if reconcile::restarts_pair(&from, &to) {
        POINT_FIXED
    } else {
        POINT_REUSED
    };
    let probes = if to.outsider.is_some() {
        CLIENT_PROBE + OUTSIDER_PROBE
    } else {
        CLIENT_PROBE
    };
    Duration::from_millis(requests * 1000 / CLIENT_RATE + pods * 1000 / POD_RATE) + fixed + probes
}

/// Expected time of the end of the run after `last`: [`reconcile::finish_requests`] at
/// [`CLIENT_RATE`], its pods stopped at [`POD_RATE`], plus [`FINISH_FIXED`].
pub fn finish_estimate(last: Option<&Point>, mode: ServiceMode) -> Duration {
    let Some(last) = last else {
        return Duration::ZERO;
    };
    let (_, held) = model_levels(None, last, mode);
    let requests = reconcile::finish_requests(&held);
    let pods = reconcile::pods_changed(&held, &Level::default());
    Duration::from_millis(requests * 1000 / CLIENT_RATE + pods * 1000 / POD_RATE) + FINISH_FIXED
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::suite::{expand, presets};

    /// The paper estimate of docs/kube.md, from the code's own request count over the
    /// thesis points in their order (each reconciled from the one before).
    #[test]
    fn thesis_requests_and_setup() {
        let points = expand(&presets::load("thesis").unwrap()).unwrap();
        let mode = ServiceMode::EndpointSlice;
        // Per scenario: requests, pods started and stopped, points restarting the pair,
        // setup time (a transition counts for the point it prepares).
        let mut per_scenario: BTreeMap<&str, (u64, u64, u64, u64)> = BTreeMap::new();
        let mut previous: Option<&Point> = None;
        for p in &points {
            let (from, to) = model_levels(previous, p, mode);
            let e = per_scenario.entry(p.scenario.as_str()).or_default();
            e.0 += reconcile::requests(&from, &to, mode);
            e.1 += reconcile::pods_changed(&from, &to);
            e.2 += u64::from(reconcile::restarts_pair(&from, &to));
            e.3 += setup_estimate(previous, p, mode).as_millis() as u64;
            previous = Some(p);
        }
        let table: Vec<_> = per_scenario.into_iter().collect();
        assert_eq!(
            table,
            [
                ("baseline", (4, 2, 1, 13_120)),
                ("http-replicas", (40_031, 643, 1, 273_305)),
                ("pod-to-pod", (14, 10, 4, 44_570)),
                ("pod-to-pod-policies", (20_009, 10_003, 1, 631_595)),
                ("pod-to-service", (40_089, 10_059, 29, 1_024_395)),
                ("rr-latency", (20_010, 103, 2, 131_200)),
            ]
        );
        let setup: u64 = table.iter().map(|(_, e)| e.3).sum();
        assert_eq!(setup, 2_118_185);
        // The last point (rr-latency, one service) leaves the namespace delete.
        assert_eq!(
            finish_estimate(previous, mode),
            Duration::from_millis(10_105)
        );
        let total = |mode| {
            let mut prev = None;
            let mut n = 0;
            for p in &points {
                n += api_requests(prev, p, mode);
                prev = Some(p);
            }
            n
        };
        assert_eq!(total(ServiceMode::EndpointSlice), 120_157);
        assert_eq!(total(ServiceMode::Selector), 80_161);
        let find = |prefix: &str| {
            points
                .iter()
                .position(|p| p.id.starts_with(prefix))
                .unwrap()
        };
        let i = find("pod-to-service/placement=inter,services=10000,workload=tcp");
        assert_eq!(
            points[i - 1].id,
            "pod-to-service/placement=intra,services=1000,workload=tcp-crr"
        );
        // The namespace patch, 9 000 services and slices more, the client moved back to
        // the other node (delete and create).
        assert_eq!(api_requests(Some(&points[i - 1]), &points[i], mode), 18_003);
        // The same point from nothing: namespace, server, client, 10 000 services, 9 999
        // slices.
        assert_eq!(api_requests(None, &points[i], mode), 20_002);
        // The next point (same level, intra) sends the patch and moves the client.
        assert_eq!(api_requests(Some(&points[i]), &points[i + 1], mode), 3);
    }
}
