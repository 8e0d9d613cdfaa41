//! What the run's namespace holds at a point, and what changes from one point to the next.
//!
//! The backend keeps the namespace for the whole run; per point it reconciles what the
//! namespace holds ([`Level`]) to what the point wants: the server Deployment, client pod
//! and filler Deployment are kept when identical, scaled with a patch when only their
//! replica count differs, replaced otherwise; the measured Service, filler Services (and
//! their EndpointSlices) and policies are counted, and only the difference is created or
//! deleted (their names are numbered, their specs a pure function of the number). The
//! request-count model behind `cnibench plan` ([`requests`]) is computed from the same
//! [`Level`]s and [`Change`]s as the backend's requests.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};

use super::objects::{self, ServiceMode, Settings};
use crate::scenario::Point;

/// The objects the namespace holds at one point (this process is its only writer, so
/// what it created is what is there).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Level {
    /// The namespace as last created or patched (`None`: it does not exist).
    pub namespace: Option<Namespace>,
    /// The server Deployment.
    pub server: Option<Deployment>,
    /// The client pod.
    pub client: Option<Pod>,
    /// The outsider pod (points with policies).
    pub outsider: Option<Pod>,
    /// The filler Deployment.
    pub fillers: Option<Deployment>,
    /// Whether the measured Service exists.
    pub measured: bool,
    /// Filler Services `1..=n` (with their EndpointSlices in endpointslice mode).
    pub filler_services: u32,
    /// Policies `0..n` ([`objects::policy_name`]).
    pub policies: u32,
}

impl Level {
    /// What `point` wants in the namespace.
    pub fn of(s: &Settings, point: &Point) -> Level {
        let services = objects::service_count(point);
        Level {
            // A given namespace (`--namespace`) is not cnibench's: never created or patched.
            namespace: s.namespace.is_none().then(|| objects::namespace(s, point)),
            server: Some(objects::server(s, point)),
            client: Some(objects::client(s, point)),
            outsider: objects::outsider(s, point),
            fillers: objects::fillers(s, point.objects.filler_pods),
            measured: services > 0,
            filler_services: services.saturating_sub(1),
            policies: point.objects.policies,
        }
    }
}

/// What happens to one object between two points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Identical: nothing to send.
    Keep,
    /// Missing: one create.
    Create,
    /// Only the replica count differs: one patch to this count.
    Scale(i32),
    /// Different: delete, wait until gone, create.
    Replace,
    /// Not wanted any more: delete, wait until gone.
    Delete,
    /// Neither there nor wanted.
    Absent,
}

impl Change {
    /// Requests this change sends (the waits are watches, not counted).
    pub fn requests(self) -> u64 {
        match self {
            Change::Keep | Change::Absent => 0,
            Change::Create | Change::Scale(_) | Change::Delete => 1,
            Change::Replace => 2,
        }
    }
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1)
}

/// The change from `held` to `want`, `differ` deciding when both exist and differ.
fn change<T: PartialEq>(
    held: Option<&T>,
    want: Option<&T>,
    differ: impl FnOnce(&T, &T) -> Change,
) -> Change {
    match (held, want) {
        (None, None) => Change::Absent,
        (None, Some(_)) => Change::Create,
        (Some(_), None) => Change::Delete,
        (Some(h), Some(w)) if h == w => Change::Keep,
        (Some(h), Some(w)) => differ(h, w),
    }
}

/// How a Deployment goes from `held` to `want`.
pub fn deployment_change(held: Option<&Deployment>, want: Option<&Deployment>) -> Change {
    change(held, want, |h, w| {
        let mut scaled = h.clone();
        scaled.spec.replicas = w.spec.replicas;
        if scaled == *w {
            Change::Scale(replicas(w))
        } else {
            Change::Replace
        }
    })
}

/// How a pod goes from `held` to `want` (pods cannot be changed in place).
pub fn pod_change(held: Option<&Pod>, want: Option<&Pod>) -> Change {
    change(held, want, |_, _| Change::Replace)
}

/// How the namespace goes from `held` to `want`: created once, then patched when its
/// labels (Pod Security level) or annotation (the point it holds) differ (a patch, shown
/// as `Scale(0)`: one request, no replica count).
pub fn namespace_change(held: Option<&Namespace>, want: Option<&Namespace>) -> Change {
    change(held, want, |_, _| Change::Scale(0))
}

/// Create and delete requests to go from `held` to `want` (`mode`: whether filler
/// Services come with an EndpointSlice each). Reads and watches are left out: a handful
/// per point.
pub fn requests(held: &Level, want: &Level, mode: ServiceMode) -> u64 {
    let services = u64::from(held.filler_services.abs_diff(want.filler_services));
    let slices = if mode == ServiceMode::EndpointSlice {
        services
    } else {
        0
    };
    namespace_change(held.namespace.as_ref(), want.namespace.as_ref()).requests()
        + deployment_change(held.server.as_ref(), want.server.as_ref()).requests()
        + pod_change(held.client.as_ref(), want.client.as_ref()).requests()
        + pod_change(held.outsider.as_ref(), want.outsider.as_ref()).requests()
        + deployment_change(held.fillers.as_ref(), want.fillers.as_ref()).requests()
        + u64::from(held.measured != want.measured)
        + services
        + slices
        + u64::from(held.policies.abs_diff(want.policies))
}

/// Requests of the end of the run from `held`: the filler Services (Services have no
/// `deletecollection`; the namespace controller would delete 10 000 at its 20/s) and the
/// namespace, which takes everything else with it.
pub fn finish_requests(held: &Level) -> u64 {
    u64::from(held.filler_services) + u64::from(held.namespace.is_some())
}

fn deployment_pods(d: Option<&Deployment>) -> u64 {
    d.map_or(0, |d| u64::from(replicas(d).unsigned_abs()))
}

/// Pods started plus pods stopped to go from `held` to `want` (server replicas, the
/// client, the outsider, fillers).
pub fn pods_changed(held: &Level, want: &Level) -> u64 {
    let deploy = |h: Option<&Deployment>, w: Option<&Deployment>| {
        let (hn, wn) = (deployment_pods(h), deployment_pods(w));
        match deployment_change(h, w) {
            Change::Keep | Change::Absent => 0,
            Change::Scale(_) => hn.abs_diff(wn),
            Change::Create | Change::Replace | Change::Delete => hn + wn,
        }
    };
    let pod = |h: Option<&Pod>, w: Option<&Pod>| match pod_change(h, w) {
        Change::Replace => 2,
        Change::Create | Change::Delete => 1,
        _ => 0,
    };
    deploy(held.server.as_ref(), want.server.as_ref())
        + deploy(held.fillers.as_ref(), want.fillers.as_ref())
        + pod(held.client.as_ref(), want.client.as_ref())
        + pod(held.outsider.as_ref(), want.outsider.as_ref())
}

/// Whether the server or the client pod is (re)started going from `held` to `want`.
pub fn restarts_pair(held: &Level, want: &Level) -> bool {
    !matches!(
        deployment_change(held.server.as_ref(), want.server.as_ref()),
        Change::Keep | Change::Scale(_)
    ) || pod_change(held.client.as_ref(), want.client.as_ref()) != Change::Keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{expand, presets};

    fn settings() -> Settings {
        Settings {
            run: "r".into(),
            image: "img".into(),
            server_node: "a".into(),
            client_node: "b".into(),
            service_mode: ServiceMode::EndpointSlice,
            tolerations: Vec::new(),
            namespace: None,
        }
    }

    fn level(prefix: &str) -> Level {
        let p = expand(&presets::load("thesis").unwrap())
            .unwrap()
            .into_iter()
            .find(|p| p.id.starts_with(prefix))
            .unwrap_or_else(|| panic!("no point {prefix}"));
        Level::of(&settings(), &p)
    }

    #[test]
    fn same_pair_other_services_sends_only_the_difference() {
        let a = level("pod-to-service/placement=inter,services=10,workload=tcp");
        let b = level("pod-to-service/placement=inter,services=100,workload=udp");
        assert_eq!(
            deployment_change(a.server.as_ref(), b.server.as_ref()),
            Change::Keep
        );
        assert_eq!(
            pod_change(a.client.as_ref(), b.client.as_ref()),
            Change::Keep
        );
        // The namespace patch (point annotation) + 90 services + 90 slices.
        assert_eq!(requests(&a, &b, ServiceMode::EndpointSlice), 181);
        assert_eq!(requests(&b, &a, ServiceMode::Selector), 91);
        assert!(!restarts_pair(&a, &b));
        assert_eq!(pods_changed(&a, &b), 0);
    }

    #[test]
    fn placement_replaces_the_client_and_replicas_scale_the_server() {
        let inter = level("pod-to-service/placement=inter,services=1,workload=tcp");
        let intra = level("pod-to-service/placement=intra,services=1,workload=tcp");
        assert_eq!(
            pod_change(inter.client.as_ref(), intra.client.as_ref()),
            Change::Replace
        );
        assert!(restarts_pair(&inter, &intra));
        let r10 = level("http-replicas/placement=inter,replicas=10,services=100");
        let r50 = level("http-replicas/placement=inter,replicas=50,services=100");
        assert_eq!(
            deployment_change(r10.server.as_ref(), r50.server.as_ref()),
            Change::Scale(50)
        );
        assert_eq!(pods_changed(&r10, &r50), 40);
        // From nothing: namespace, server, client, measured service.
        assert_eq!(
            requests(&Level::default(), &inter, ServiceMode::Selector),
            4
        );
        // The end of the run: the namespace delete takes the rest.
        assert_eq!(finish_requests(&inter), 1);
        assert_eq!(
            finish_requests(&level(
                "http-replicas/placement=inter,replicas=10,services=10000"
            )),
            10_000
        );
        assert_eq!(finish_requests(&Level::default()), 0);
    }
}
