//! The async core of the kube backend, testable against a mocked API server: [`Driver`]
//! reconciles the run's namespace to each point's objects, waits for readiness, execs
//! repetitions in the client pod and deletes what the run created; [`clean`] removes what
//! killed runs left.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, DeleteParams, ListParams};
use ::kube::runtime::wait::conditions;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;

use super::cluster::{
    self, ExecOutput, InFlight, KubeError, SharedExec, Tuning, apply, apply_all, bounded,
    delete_all, delete_and_wait,
};
use super::objects::{
    self, CLIENT, CONTROL_PORT, HTTP_PORT, NETLOAD, OUTSIDER, PointObjects, ROLE_LABEL, RR_PORT,
    RUN_LABEL, ServiceMode, Settings,
};
use super::preflight::ClusterInfo;
use super::reconcile::{self, Change, Level};
use crate::backend::tool::netload::{http_args, rr_args, stream_args};
use crate::backend::tool::proc::tail;
use crate::backend::{Cancel, NoProgress, Readiness, SetupProgress, Step};
use crate::scenario::{PathKind, Placement, Point, Tool, Workload};
use netload::probe::{ProbeReport, Want};

/// A prepared point: where the client sends its traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The server's address as the client dials it (pod, node or ClusterIP).
    pub dest: String,
    /// Objects created.
    pub objects: usize,
    /// What the datapath checks saw before the first repetition.
    pub datapath: DatapathCheck,
}

/// What the datapath checks of [`Driver::prepare`] saw: the client's probe of the
/// measured address, and on points with policies the outsider's.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DatapathCheck {
    /// `netload probe`'s line for the client (the address answered).
    pub client: String,
    /// Whether the policies turned the outsider away, with its probe's line; `None`
    /// without policies.
    pub policies: Option<Enforcement>,
}

/// Whether a CNI enforces a point's policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforcement {
    /// The outsider's connections failed (its probe's line).
    Enforced(String),
    /// The outsider got through until the deadline (its probe's line): the point is
    /// not measured, since it would measure a datapath without policies.
    NotEnforced(String),
}

impl DatapathCheck {
    /// The checks as JSON, recorded with every repetition.
    pub fn to_json(&self) -> serde_json::Value {
        let policies = match &self.policies {
            None => serde_json::Value::Null,
            Some(Enforcement::Enforced(line)) => {
                serde_json::json!({"enforced": true, "outsider_probe": line})
            }
            Some(Enforcement::NotEnforced(line)) => {
                serde_json::json!({"enforced": false, "outsider_probe": line})
            }
        };
        serde_json::json!({"client_probe": self.client, "policies": policies})
    }
}

/// The port the client's first connection of `point` goes to.
pub fn workload_port(point: &Point) -> u16 {
    match point.workload {
        Workload::Stream(_) => CONTROL_PORT,
        Workload::Rr(_) => RR_PORT,
        Workload::Http(_) => HTTP_PORT,
    }
}

/// The `netload probe` command waiting up to `within` for `dest:port` to be `want`.
pub fn probe_command(dest: &str, port: u16, want: Want, within: Duration) -> Vec<String> {
    [
        NETLOAD,
        "probe",
        dest,
        "--port",
        &port.to_string(),
        "--want",
        want.as_str(),
        "--within",
        &within.as_secs().max(1).to_string(),
        "--json",
    ]
    .map(String::from)
    .to_vec()
}

/// The async core of the backend (testable against a mocked API server).
pub struct Driver {
    /// The API client.
    pub client: Client,
    /// How commands run in the client pod.
    pub exec: SharedExec,
    /// Kubernetes-safe run id.
    pub run: String,
    /// The netload image.
    pub image: String,
    /// Filler service flavour.
    pub service_mode: ServiceMode,
    /// What the preflight found (nodes first of all).
    pub info: ClusterInfo,
    /// Concurrency, retries, timeouts.
    pub tuning: Tuning,
    /// Ctrl-C.
    pub cancel: Cancel,
    /// Report setup steps to the [`SetupProgress`] the calls are given (tests switch it
    /// off).
    pub progress: bool,
    /// Create requests in flight (the maximum is kept for tests).
    pub in_flight: Arc<InFlight>,
    /// What the run's namespace holds after the last prepared point; `None` when it is
    /// gone or its state is unknown (a prepare that did not finish).
    pub held: Mutex<Option<Held>>,
}

/// What the run's namespace holds between points.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// The objects, as [`reconcile`] counts them.
    pub level: Level,
    /// The measured Service as the API server answered its create (its ClusterIP).
    pub measured: Option<Service>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("run", &self.run)
            .field("image", &self.image)
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The netload command exec'd in the client pod for one repetition against `dest`.
pub fn exec_command(point: &Point, dest: &str) -> Vec<String> {
    let args = match &point.workload {
        Workload::Stream(s) => stream_args(s, dest, CONTROL_PORT),
        Workload::Rr(r) => rr_args(r, dest, RR_PORT),
        Workload::Http(h) => http_args(h, &format!("http://{dest}:{HTTP_PORT}/")),
    };
    std::iter::once(NETLOAD.to_string()).chain(args).collect()
}

/// Ready at `want` replicas: the controller saw the latest spec (a scale patch), `want`
/// replicas are ready and no more than `want` are left (a scale-down is done; pods
/// already terminating are not counted by the controller).
fn deployment_ready(want: i32) -> impl Fn(Option<&Deployment>) -> bool {
    move |d| {
        d.is_some_and(|d| {
            let s = d.status.as_ref();
            let observed = s.and_then(|s| s.observed_generation).unwrap_or(0)
                >= d.metadata.generation.unwrap_or(0);
            let ready = s.and_then(|s| s.ready_replicas).unwrap_or(0);
            let total = s.and_then(|s| s.replicas).unwrap_or(0);
            observed && ready >= want && total <= want
        })
    }
}

fn pod_ready(p: Option<&Pod>) -> bool {
    p.and_then(|p| p.status.as_ref())
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waiting reasons after which a container does not start without someone fixing
/// something (the kubelet retries, but the same image or command fails again).
pub const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// Why `p` will not become ready, if its status says so: a container waiting for one of
/// [`FATAL_WAITING`], one that ended with "exec format error" (an image for another
/// architecture), or the pod Failed.
pub fn pod_failure(p: &Pod) -> Option<String> {
    let status = p.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some(format!(
            "pod Failed: {} {}",
            status.reason.as_deref().unwrap_or_default(),
            status.message.as_deref().unwrap_or_default()
        ));
    }
    let statuses = status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten();
    for cs in statuses {
        let now_and_before = [cs.state.as_ref(), cs.last_state.as_ref()];
        for t in now_and_before
            .iter()
            .flatten()
            .filter_map(|s| s.terminated.as_ref())
        {
            let message = t.message.as_deref().unwrap_or_default();
            if message.contains("exec format error") {
                return Some(format!(
                    "container {}: exec format error (the image is built for another architecture than the node's): {message}",
                    cs.name
                ));
            }
        }
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.as_deref().unwrap_or_default();
            if FATAL_WAITING.contains(&reason) {
                return Some(format!(
                    "container {} {reason}: {}",
                    cs.name,
                    w.message.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    None
}

/// One line on where `p` stands: node, phase, the conditions not True, waiting reasons.
pub fn pod_summary(p: &Pod) -> String {
    let name = p.metadata.name.as_deref().unwrap_or("?");
    let node = p
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("none");
    let status = p.status.clone().unwrap_or_default();
    let mut parts = vec![format!(
        "pod {name} (node {node}): {}",
        status.phase.as_deref().unwrap_or("no phase")
    )];
    for c in status
        .conditions
        .iter()
        .flatten()
        .filter(|c| c.status != "True")
    {
        parts.push(format!(
            "{}={} {} {}",
            c.type_,
            c.status,
            c.reason.as_deref().unwrap_or_default(),
            c.message.as_deref().unwrap_or_default()
        ));
    }
    for cs in status.container_statuses.iter().flatten() {
        if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            parts.push(format!(
                "container {} waiting: {}",
                cs.name,
                w.reason.as_deref().unwrap_or_default()
            ));
        }
    }
    parts.join(", ").trim().to_string()
}

/// Watches the pods matching `selector` until one cannot start ([`pod_failure`]), and
/// returns that failure; meanwhile `last` holds every pod's [`pod_summary`]. Runs until
/// the readiness wait it races ends (that wait is bounded).
async fn watch_pod_failures(
    api: Api<Pod>,
    selector: String,
    last: &Mutex<BTreeMap<String, String>>,
) -> KubeError {
    use ::kube::runtime::{WatchStreamExt, watcher};
    let stream = watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    while let Some(event) = futures::StreamExt::next(&mut stream).await {
        // A failed watch is retried by the backoff; readiness is watched elsewhere.
        let Ok(pod) = event else { continue };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut seen = last.lock().unwrap_or_else(PoisonError::into_inner);
        if pod.metadata.deletion_timestamp.is_some() {
            seen.remove(&name);
            continue;
        }
        seen.insert(name.clone(), pod_summary(&pod));
        if let Some(reason) = pod_failure(&pod) {
            return KubeError::PodFailed {
                pod: name,
                node: pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.clone())
                    .unwrap_or_else(|| "none (not scheduled)".into()),
                reason,
            };
        }
    }
    futures::future::pending().await
}

impl Driver {
    /// The builders' settings for this run.
    /// Placement selects on the nodes' `kubernetes.io/hostname` labels.
    pub fn settings(&self) -> Settings {
        let label = |i: usize| {
            self.info
                .hostnames
                .get(i)
                .or_else(|| self.info.nodes.get(i))
                .cloned()
        };
        let server = label(0).unwrap_or_default();
        Settings {
            run: self.run.clone(),
            image: self.image.clone(),
            client_node: label(1).unwrap_or_else(|| server.clone()),
            server_node: server,
            service_mode: self.service_mode,
            tolerations: self.info.tolerations.clone(),
            namespace: self.info.given_namespace.as_ref().map(|g| g.name.clone()),
        }
    }

    /// The run's namespace: the given one (`--namespace`) or its own.
    pub fn namespace(&self) -> String {
        match &self.info.given_namespace {
            Some(g) => g.name.clone(),
            None => objects::namespace_name(&self.run),
        }
    }

    /// Whether the cluster can run `point` (tool, nodes, pod capacity), without API calls.
    pub fn applicability(&self, point: &Point) -> Readiness {
        if let r @ Readiness::NotApplicable(_) = tool_applicability(point) {
            return r;
        }
        if point.topology.placement == Placement::Inter && self.info.nodes.len() < 2 {
            return Readiness::NotApplicable(format!(
                "inter-node placement needs two schedulable workers; found {} ({})",
                self.info.nodes.len(),
                self.info.nodes.join(", ")
            ));
        }
        if point.topology.host_network && point.topology.path == PathKind::Service {
            return Readiness::NotApplicable("the baseline has no service path".into());
        }
        if let Some(g) = &self.info.given_namespace {
            let level = g.pod_security.as_deref();
            if point.topology.host_network && matches!(level, Some("restricted" | "baseline")) {
                return Readiness::NotApplicable(format!(
                    "host-network pods need Pod Security 'privileged'; namespace {} \
                     (--namespace) enforces '{}'",
                    g.name,
                    level.unwrap_or_default()
                ));
            }
        }
        if point.objects.policies == 1 {
            return Readiness::NotApplicable(
                "policies=1 is the default deny alone, which denies the client too; \
                 a point with policies needs at least 2 (the deny and one allow)"
                    .into(),
            );
        }
        if let Some(mtu) = point.topology.mtu {
            return Readiness::NotApplicable(format!(
                "mtu={mtu}: on a cluster the CNI sets the pod MTU; configure it there and label the run"
            ));
        }
        let replicas = u64::from(point.objects.replicas.max(1));
        let server_cap = self.info.pod_capacity.first().copied().unwrap_or(0);
        if replicas + 1 > server_cap {
            return Readiness::NotApplicable(format!(
                "{replicas} server replicas and the client on node {} exceed its {server_cap} allocatable pods",
                self.info.nodes.first().map_or("?", String::as_str)
            ));
        }
        let total: u64 = self.info.pod_capacity.iter().sum();
        let want = u64::from(point.objects.filler_pods) + replicas + 1;
        if want > total {
            return Readiness::NotApplicable(format!(
                "{want} pods exceed the {total} allocatable pods of nodes {} (kubelet maxPods); \
                 raise maxPods or name more capacity with --nodes",
                self.info.nodes.join(", ")
            ));
        }
        Readiness::Ready
    }

    /// A setup step reported to `steps` (see [`Driver::progress`]).
    fn step(&self, steps: &dyn SetupProgress, len: Option<u64>, what: &str) -> Box<dyn Step> {
        if self.progress {
            steps.step(len, what)
        } else {
            NoProgress.step(len, what)
        }
    }

    /// Brings the namespace from `held` to `o` (see the module doc); returns what it
    /// holds then.
    async fn reconcile(
        &self,
        held: Held,
        point: &Point,
        o: &PointObjects,
        steps: &dyn SetupProgress,
    ) -> Result<Held, KubeError> {
        let ns = self.namespace();
        let t = &self.tuning;
        let want = Level::of(&self.settings(), point);
        let Held {
            level: have,
            mut measured,
        } = held;
        let bar = self.step(
            steps,
            Some(reconcile::requests(&have, &want, self.service_mode)),
            "reconciling objects",
        );
        match reconcile::namespace_change(have.namespace.as_ref(), want.namespace.as_ref()) {
            Change::Create => {
                // `discover` saw no namespace of this name: it is created here.
                let nss: Api<Namespace> = Api::all(self.client.clone());
                apply(&nss, &o.namespace, t, None).await?;
            }
            Change::Keep | Change::Absent => {}
            _ => cluster::patch_namespace(&self.client, &ns, &o.namespace, t).await?,
        }
        bar.inc(1);
        let deploys: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let svcs: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        // Foreground: a replaced Deployment is gone with its pods before the new one
        // exists, so no old pod answers for the new point.
        let fg = DeleteParams::foreground();
        for (name, have_d, want_d) in [
            (objects::SERVER, have.server.as_ref(), Some(&o.server)),
            (objects::FILLER, have.fillers.as_ref(), o.fillers.as_ref()),
        ] {
            match reconcile::deployment_change(have_d, want_d) {
                Change::Keep | Change::Absent => {}
                Change::Scale(n) => cluster::scale(&deploys, name, n, t).await?,
                Change::Delete => delete_and_wait(&deploys, name, &fg, t).await?,
                c @ (Change::Create | Change::Replace) => {
                    if c == Change::Replace {
                        delete_and_wait(&deploys, name, &fg, t).await?;
                    }
                    if let Some(d) = want_d {
                        apply(&deploys, d, t, None).await?;
                    }
                }
            }
            bar.inc(1);
        }
        for (name, have_p, want_p) in [
            (CLIENT, have.client.as_ref(), Some(&o.client)),
            (OUTSIDER, have.outsider.as_ref(), o.outsider.as_ref()),
        ] {
            let change = reconcile::pod_change(have_p, want_p);
            if matches!(change, Change::Replace | Change::Delete) {
                delete_and_wait(&pods, name, &fg, t).await?;
            }
            if let (Change::Replace | Change::Create, Some(p)) = (change, want_p) {
                apply(&pods, p, t, None).await?;
            }
            bar.inc(1);
        }
        match (have.measured, o.measured_service()) {
            (false, Some(m)) => {
                // The answer holds the ClusterIP (also for a retried apply).
                measured = Some(apply(&svcs, m, t, None).await?);
                bar.inc(1);
            }
            (true, None) => {
                let names = [objects::SERVER.to_string()];
                delete_all::<Service>(&self.client, &ns, &names, t, &*bar).await?;
                measured = None;
            }
            _ => {}
        }
        let (c, fl, cancel) = (&self.client, &self.in_flight, &self.cancel);
        let (from, to) = (have.filler_services, want.filler_services);
        if to > from {
            // `services` is the measured one, then filler k at index k.
            let fillers = &o.services[(1 + from as usize).min(o.services.len())..];
            apply_all::<Service>(c, &ns, fillers, t, cancel, &*bar, fl).await?;
            let slices = &o.endpoint_slices[(from as usize).min(o.endpoint_slices.len())..];
            apply_all::<EndpointSlice>(c, &ns, slices, t, cancel, &*bar, fl).await?;
        } else if to < from {
            let names: Vec<String> = (to + 1..=from).map(objects::filler_service_name).collect();
            delete_all::<Service>(c, &ns, &names, t, &*bar).await?;
            if self.service_mode == ServiceMode::EndpointSlice {
                delete_all::<EndpointSlice>(c, &ns, &names, t, &*bar).await?;
            }
        }
        let (from, to) = (have.policies, want.policies);
        if to > from {
            let new = &o.policies[(from as usize).min(o.policies.len())..];
            apply_all::<NetworkPolicy>(c, &ns, new, t, cancel, &*bar, fl).await?;
        } else if to < from {
            let names: Vec<String> = (to..from).map(objects::policy_name).collect();
            delete_all::<NetworkPolicy>(c, &ns, &names, t, &*bar).await?;
        }
        bar.finish();
        Ok(Held {
            level: want,
            measured,
        })
    }

    /// Waits (watching) until the server replicas, the client, the outsider and the
    /// fillers are ready;
    /// meanwhile a watch of the run's pods ends the wait as soon as one of them cannot
    /// start ([`pod_failure`]: a missing image, the wrong architecture, a crash loop),
    /// and keeps each pod's last state in `last` for a timeout's message.
    async fn await_ready(
        &self,
        o: &PointObjects,
        last: &Mutex<BTreeMap<String, String>>,
    ) -> Result<Option<Pod>, KubeError> {
        let ns = self.namespace();
        let deploys: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        // Boxed, each: watch futures are large, and a debug build's poll frames copy them.
        let server = Box::pin(cluster::await_ready(
            deploys.clone(),
            objects::SERVER,
            deployment_ready(o.server_replicas()),
        ));
        let client = Box::pin(cluster::await_ready(pods.clone(), CLIENT, pod_ready));
        let outsider = Box::pin(async {
            match &o.outsider {
                Some(_) => cluster::await_ready(pods.clone(), OUTSIDER, pod_ready)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        });
        let fillers = Box::pin(async {
            match &o.fillers {
                Some(f) => {
                    let want = f.spec.replicas.unwrap_or(0);
                    cluster::await_ready(deploys.clone(), objects::FILLER, deployment_ready(want))
                        .await
                        .map(Some)
                }
                None => Ok(None),
            }
        });
        let failures = Box::pin(watch_pod_failures(
            pods.clone(),
            format!("{RUN_LABEL}={}", self.run),
            last,
        ));
        tokio::select! {
            r = async { futures::try_join!(server, client, outsider, fillers) } => {
                let (_, client, _, _) = r?;
                Ok(Some(client))
            }
            e = failures => Err(e),
        }
    }

    /// The run's own namespace if it exists and is this run's; `None` if there is none
    /// (one being deleted is awaited gone first); an error if another owner's.
    async fn discover_own_namespace(&self, ns: &str) -> Result<Option<Namespace>, KubeError> {
        let t = &self.tuning;
        let nss: Api<Namespace> = Api::all(self.client.clone());
        let (r, _) = cluster::retry(t, || nss.get_opt(ns)).await;
        let Some(found) = r.map_err(|source| KubeError::Api {
            action: format!("get namespace {ns}"),
            source,
        })?
        else {
            return Ok(None);
        };
        if let Some(uid) = found
            .metadata
            .uid
            .clone()
            .filter(|_| found.metadata.deletion_timestamp.is_some())
        {
            let gone = async {
                ::kube::runtime::wait::await_condition(
                    nss.clone(),
                    ns,
                    conditions::is_deleted(&uid),
                )
                .await
                .map(|_| ())
                .map_err(|e| KubeError::Exec {
                    pod: format!("Namespace {ns}"),
                    message: format!("watch failed: {e}"),
                })
            };
            bounded(
                &format!("deletion of namespace {ns}"),
                t.delete_timeout,
                &self.cancel,
                gone,
            )
            .await?;
            return Ok(None);
        }
        let labels = found.metadata.labels.clone().unwrap_or_default();
        if labels.get(RUN_LABEL) != Some(&self.run)
            || labels.get(objects::MANAGED_BY).map(String::as_str) != Some(objects::MANAGER)
        {
            return Err(KubeError::AlreadyExists {
                what: format!("namespace {ns}"),
                hint: " and was not created by this cnibench run; pick another run id (--label) or delete it".into(),
            });
        }
        Ok(Some(found))
    }

    /// In a given namespace (`--namespace`): an error if it holds cnibench objects of
    /// another run, whose names this run's would collide with (`server`, `svc-00001`...).
    async fn refuse_other_runs(&self, ns: &str) -> Result<(), KubeError> {
        let (c, t) = (&self.client, &self.tuning);
        let sel = format!(
            "{}={},{RUN_LABEL}!={}",
            objects::MANAGED_BY,
            objects::MANAGER,
            self.run
        );
        let mut found = list_names::<Deployment>(c, ns, &sel, t).await?;
        found.extend(list_names::<Pod>(c, ns, &sel, t).await?);
        found.extend(list_names::<Service>(c, ns, &sel, t).await?);
        found.extend(list_names::<NetworkPolicy>(c, ns, &sel, t).await?);
        if found.is_empty() {
            return Ok(());
        }
        let shown: Vec<&str> = found.iter().take(5).map(String::as_str).collect();
        Err(KubeError::AlreadyExists {
            what: format!(
                "cnibench objects of another run in namespace {ns} ({}{})",
                shown.join(", "),
                if found.len() > shown.len() {
                    ", ..."
                } else {
                    ""
                }
            ),
            hint: format!(
                "; a namespace holds one run at a time: wait for that run, or remove them with \
                 `cnibench clean --backend kube --namespace {ns} --all`"
            ),
        })
    }

    /// What the run's namespace holds when this process does not know: at the first
    /// point, and after a point whose state was lost. No namespace: nothing. One being
    /// deleted (an earlier teardown): awaited gone, then nothing. One of another owner:
    /// an error. This run's (a crashed process of the same run, now `--resume`d): taken
    /// over — its server, client, outsider and fillers are replaced (their spec is unknown), the
    /// measured Service kept, and the numbered fillers and policies counted; those beyond
    /// the first gap (an interrupted bulk create leaves gaps) are deleted, so what is kept
    /// is exactly `1..=n` and the reconcile creates only what is missing.
    pub async fn discover(&self, steps: &dyn SetupProgress) -> Result<Held, KubeError> {
        let t = &self.tuning;
        let ns = self.namespace();
        let namespace = if self.info.given_namespace.is_some() {
            self.refuse_other_runs(&ns).await?;
            None
        } else {
            match self.discover_own_namespace(&ns).await? {
                Some(found) => Some(found),
                None => return Ok(Held::default()),
            }
        };
        let deploys: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let svcs: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        let get_err = |what: &str| {
            let action = format!("get {what} in namespace {ns}");
            move |source| KubeError::Api { action, source }
        };
        // A spec that matches nothing: the reconcile replaces what exists.
        let unknown_deploy = |d: Option<Deployment>| d.map(|_| Deployment::default());
        let (server, _) = cluster::retry(t, || deploys.get_opt(objects::SERVER)).await;
        let server = unknown_deploy(server.map_err(get_err("the server Deployment"))?);
        let (fillers, _) = cluster::retry(t, || deploys.get_opt(objects::FILLER)).await;
        let fillers = unknown_deploy(fillers.map_err(get_err("the filler Deployment"))?);
        let (client, _) = cluster::retry(t, || pods.get_opt(CLIENT)).await;
        let client = client
            .map_err(get_err("the client pod"))?
            .map(|_| Pod::default());
        let (outsider, _) = cluster::retry(t, || pods.get_opt(OUTSIDER)).await;
        let outsider = outsider
            .map_err(get_err("the outsider pod"))?
            .map(|_| Pod::default());
        let (measured, _) = cluster::retry(t, || svcs.get_opt(objects::SERVER)).await;
        let measured = measured.map_err(get_err("the measured Service"))?;

        let fillers_sel = format!("{RUN_LABEL}={},{ROLE_LABEL}=filler", self.run);
        let svc_names = list_names::<Service>(&self.client, &ns, &fillers_sel, t).await?;
        let mut numbers: Vec<BTreeSet<u32>> = vec![numbered(&svc_names, "svc-")];
        let slice_names = if self.service_mode == ServiceMode::EndpointSlice {
            let names = list_names::<EndpointSlice>(&self.client, &ns, &fillers_sel, t).await?;
            numbers.push(numbered(&names, "svc-"));
            names
        } else {
            Vec::new()
        };
        let services = contiguous(&numbers, 1);
        let policy_names =
            list_names::<NetworkPolicy>(&self.client, &ns, &format!("{RUN_LABEL}={}", self.run), t)
                .await?;
        let mut policy_numbers = numbered(&policy_names, "allow-");
        if policy_names.iter().any(|n| n == &objects::policy_name(0)) {
            policy_numbers.insert(0);
        }
        let policies = contiguous(&[policy_numbers], 0);
        let beyond = |names: &[String], keep: &dyn Fn(&str) -> bool| -> Vec<String> {
            names.iter().filter(|n| !keep(n)).cloned().collect()
        };
        let kept_service = |n: &str| (1..=services).any(|k| objects::filler_service_name(k) == n);
        let bar = self.step(steps, Some(0), "taking over the namespace");
        delete_all::<Service>(
            &self.client,
            &ns,
            &beyond(&svc_names, &kept_service),
            t,
            &*bar,
        )
        .await?;
        delete_all::<EndpointSlice>(
            &self.client,
            &ns,
            &beyond(&slice_names, &kept_service),
            t,
            &*bar,
        )
        .await?;
        let kept_policy = |n: &str| (0..policies).any(|i| objects::policy_name(i) == n);
        delete_all::<NetworkPolicy>(
            &self.client,
            &ns,
            &beyond(&policy_names, &kept_policy),
            t,
            &*bar,
        )
        .await?;
        bar.finish();
        Ok(Held {
            level: Level {
                namespace,
                server,
                client,
                outsider,
                fillers,
                measured: measured.is_some(),
                filler_services: services,
                policies,
            },
            measured,
        })
    }

    /// Reconciles the namespace to the point's objects, waits until they are ready, then
    /// checks the datapath ([`DatapathCheck`]: the client reaches the server; on a point
    /// with policies, the outsider does not). Until the pods are ready, [`Driver::held`]
    /// is `None`: a failure, Ctrl-C or a readiness timeout leaves the state unknown, and
    /// [`Driver::end_point`] deletes everything.
    pub async fn prepare(
        &self,
        point: &Point,
        steps: &dyn SetupProgress,
    ) -> Result<Prepared, KubeError> {
        let s = self.settings();
        let o = objects::point_objects(&s, point);
        let t = &self.tuning;
        let pods_total = o.server_replicas()
            + o.fillers
                .as_ref()
                .and_then(|f| f.spec.replicas)
                .unwrap_or(0);
        let held = match self.take_held() {
            Some(h) => h,
            None => Box::pin(self.discover(steps)).await?,
        };
        let held = tokio::select! {
            // Boxed: the futures of a point are large (stack space in debug builds).
            r = Box::pin(self.reconcile(held, point, &o, steps)) => r?,
            () = cluster::cancelled(&self.cancel) => return Err(KubeError::Cancelled),
        };
        let measured = held.measured.clone();
        let limit = t.ready_timeout + t.ready_per_pod * pods_total.unsigned_abs();
        let bar = self.step(steps, None, "waiting for pods");
        let what = format!(
            "readiness of {} server replica(s), the client{}",
            o.server_replicas(),
            if o.fillers.is_some() {
                " and the fillers"
            } else {
                ""
            }
        );
        let last = Mutex::new(BTreeMap::new());
        let r = Box::pin(bounded(
            &what,
            limit,
            &self.cancel,
            self.await_ready(&o, &last),
        ))
        .await;
        bar.finish();
        match r {
            Err(KubeError::Timeout { what, seconds, .. }) => {
                let seen = last.lock().unwrap_or_else(PoisonError::into_inner);
                let detail = if seen.is_empty() {
                    "; no pod of the run was seen".to_string()
                } else {
                    format!(
                        "; last seen: {}",
                        seen.values().cloned().collect::<Vec<_>>().join("; ")
                    )
                };
                return Err(KubeError::Timeout {
                    what,
                    seconds,
                    detail,
                });
            }
            r => r?,
        };
        let dest = match (point.topology.path, measured) {
            (PathKind::Service, Some(svc)) => svc
                .spec
                .and_then(|s| s.cluster_ip)
                .filter(|ip| !ip.is_empty() && ip != "None")
                .ok_or_else(|| {
                    KubeError::Preflight("the server Service has no ClusterIP".into())
                })?,
            (PathKind::Service, None) => {
                return Err(KubeError::Preflight(
                    "the server Service was created but its answer was lost; no ClusterIP".into(),
                ));
            }
            (PathKind::Direct, _) => self.server_ip().await?,
        };
        // The objects are there and ready whatever the datapath checks find: kept for
        // the next point.
        *self.held.lock().unwrap_or_else(PoisonError::into_inner) = Some(held);
        let datapath = self.check_datapath(point, &o, &dest).await?;
        Ok(Prepared {
            dest,
            objects: o.count(),
            datapath,
        })
    }

    /// Runs `netload probe` in `pod` (bounded, Ctrl-C aware) and reads its report.
    async fn probe(
        &self,
        pod: &str,
        dest: &str,
        port: u16,
        want: Want,
    ) -> Result<ProbeReport, KubeError> {
        let within = self.tuning.datapath_timeout;
        let cmd = probe_command(dest, port, want, within);
        let ns = self.namespace();
        let out = bounded(
            &format!("netload probe in pod {pod}"),
            within + Duration::from_secs(30),
            &self.cancel,
            self.exec.exec(&ns, pod, cmd),
        )
        .await?;
        serde_json::from_str(&out.stdout).map_err(|e| KubeError::Exec {
            pod: pod.into(),
            message: format!(
                "netload probe printed no report ({e}; {}): {}",
                out.status,
                tail(&out.stderr)
            ),
        })
    }

    /// Before the first repetition: the client's connections to `dest` must succeed
    /// (an error if they never do), then, on a point with policies, the outsider's must
    /// fail ([`Enforcement`]). Both wait up to [`Tuning::datapath_timeout`], since a
    /// CNI programs Services and policies after the objects exist.
    async fn check_datapath(
        &self,
        point: &Point,
        o: &PointObjects,
        dest: &str,
    ) -> Result<DatapathCheck, KubeError> {
        let port = workload_port(point);
        let client = self.probe(CLIENT, dest, port, Want::Open).await?;
        if !client.reached {
            return Err(KubeError::Datapath {
                what: format!("the client's connections to {dest}:{port}"),
                probe: client.summary(),
            });
        }
        let policies = if o.outsider.is_some() {
            // The control port: the allow policies admit the client there for every
            // workload, so only the policies tell the two pods apart.
            let r = self
                .probe(OUTSIDER, dest, CONTROL_PORT, Want::Closed)
                .await?;
            Some(if r.reached {
                Enforcement::Enforced(r.summary())
            } else {
                Enforcement::NotEnforced(r.summary())
            })
        } else {
            None
        };
        Ok(DatapathCheck {
            client: client.summary(),
            policies,
        })
    }

    async fn server_ip(&self) -> Result<String, KubeError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace());
        let lp =
            ListParams::default().labels(&format!("{RUN_LABEL}={},{ROLE_LABEL}=server", self.run));
        let (r, _) = cluster::retry(&self.tuning, || pods.list(&lp)).await;
        let list = r.map_err(|source| KubeError::Api {
            action: "list the server pods".into(),
            source,
        })?;
        list.items
            .iter()
            .filter(|p| pod_ready(Some(p)) && p.metadata.deletion_timestamp.is_none())
            .find_map(|p| p.status.as_ref().and_then(|s| s.pod_ip.clone()))
            .ok_or_else(|| KubeError::Preflight("no ready server pod has an IP".into()))
    }

    /// Runs one repetition: execs the client in the client pod.
    pub async fn run_rep(
        &self,
        point: &Point,
        prepared: &Prepared,
        cancel: &Cancel,
    ) -> Result<ExecOutput, KubeError> {
        let cmd = exec_command(point, &prepared.dest);
        let ns = self.namespace();
        let limit = point.workload.nominal_duration() + Duration::from_secs(60);
        bounded(
            "the netload client",
            limit,
            cancel,
            self.exec.exec(&ns, CLIENT, cmd),
        )
        .await
    }

    fn take_held(&self) -> Option<Held> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Whether the namespace may hold objects of this run that a teardown must delete.
    pub fn holds(&self) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// After a point: keeps the namespace for the next point when its state is known (the
    /// prepare finished) and Ctrl-C was not pressed; else [`Driver::teardown`].
    pub async fn end_point(&self, steps: &dyn SetupProgress) -> Result<(), KubeError> {
        if self.holds() && !self.cancel.is_cancelled() {
            return Ok(());
        }
        self.teardown(steps).await
    }

    /// Deletes the filler services (Services have no `deletecollection`: the namespace
    /// controller would delete them one by one at the controller-manager's client rate,
    /// 20/s by default, so 10k take 8 minutes; here they go at this client's concurrency),
    /// then the namespace, and waits until it is gone. In a given namespace
    /// (`--namespace`), which is not cnibench's to delete, every object labelled with the
    /// run goes instead ([`delete_labelled`]).
    pub async fn teardown(&self, steps: &dyn SetupProgress) -> Result<(), KubeError> {
        self.take_held();
        let ns = self.namespace();
        if self.info.given_namespace.is_some() {
            let bar = self.step(steps, None, "deleting the run's objects");
            let sel = format!("{RUN_LABEL}={}", self.run);
            let r = delete_labelled(&self.client, &ns, &sel, &self.tuning, &*bar).await;
            bar.finish();
            return r.map(|_| ());
        }
        let sel = format!("{RUN_LABEL}={},{ROLE_LABEL}=filler", self.run);
        let bar = self.step(steps, None, "deleting the namespace");
        let r = delete_namespace_and_fillers(&self.client, &ns, &sel, &self.tuning, &*bar).await;
        bar.finish();
        r
    }
}

/// Deletes the filler Services of namespace `ns` (label selector `sel`) at this client's
/// concurrency, then the namespace, and waits until it is gone. The Services go first
/// because the namespace controller is slow at them: on the test control plane (1.37, a
/// loaded 2-core machine) its collection delete of 3 000 Services timed out again and
/// again and had removed 600 after 16 minutes; older servers have no `deletecollection`
/// for Services at all, and the controller deletes them one by one at its 20 requests/s.
pub async fn delete_namespace_and_fillers(
    client: &Client,
    ns: &str,
    sel: &str,
    t: &Tuning,
    bar: &dyn Step,
) -> Result<(), KubeError> {
    let names = match list_names::<Service>(client, ns, sel, t).await {
        Ok(n) => n,
        // No namespace, nothing to walk.
        Err(KubeError::Api {
            source: ::kube::Error::Api(s),
            ..
        }) if s.code == 404 => Vec::new(),
        Err(e) => return Err(e),
    };
    if !names.is_empty() {
        bar.set_message(format!("deleting {} services in {ns}", names.len()));
        cluster::delete_all::<Service>(client, ns, &names, t, bar).await?;
    }
    cluster::delete_namespace(client, ns, t, bar).await
}

/// Deletes every object of the kinds cnibench creates in namespace `ns` that matches
/// label selector `sel`, for a namespace that is not cnibench's to delete (`--namespace`):
/// policies, EndpointSlices and Services at this client's concurrency, then the
/// Deployments (foreground: awaited gone with their pods) and the bare pods (client,
/// outsider), awaited gone. Returns how many objects it deleted.
pub async fn delete_labelled(
    client: &Client,
    ns: &str,
    sel: &str,
    t: &Tuning,
    bar: &dyn Step,
) -> Result<usize, KubeError> {
    let policies = list_names::<NetworkPolicy>(client, ns, sel, t).await?;
    let slices = list_names::<EndpointSlice>(client, ns, sel, t).await?;
    let services = list_names::<Service>(client, ns, sel, t).await?;
    bar.set_message(format!(
        "deleting {} policies, {} EndpointSlices, {} services in {ns}",
        policies.len(),
        slices.len(),
        services.len()
    ));
    cluster::delete_all::<NetworkPolicy>(client, ns, &policies, t, bar).await?;
    cluster::delete_all::<EndpointSlice>(client, ns, &slices, t, bar).await?;
    cluster::delete_all::<Service>(client, ns, &services, t, bar).await?;
    let deploys = delete_each_awaited::<Deployment>(client, ns, sel, t, bar).await?;
    // Listed after the Deployments are gone: what is left are the bare pods.
    let pods = delete_each_awaited::<Pod>(client, ns, sel, t, bar).await?;
    Ok(policies.len() + slices.len() + services.len() + deploys + pods)
}

/// Deletes the `K`s in `ns` matching `sel` one after another, each with foreground
/// propagation and awaited gone with its dependents; returns how many there were.
async fn delete_each_awaited<K>(
    client: &Client,
    ns: &str,
    sel: &str,
    t: &Tuning,
    bar: &dyn Step,
) -> Result<usize, KubeError>
where
    K: ::kube::Resource<DynamicType = (), Scope = ::kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let names = list_names::<K>(client, ns, sel, t).await?;
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let fg = DeleteParams::foreground();
    for name in &names {
        bar.set_message(format!("deleting {} {name} in {ns}", K::kind(&())));
        delete_and_wait(&api, name, &fg, t).await?;
    }
    Ok(names.len())
}

/// Names of the `K`s in `ns` matching label selector `sel`.
async fn list_names<K>(
    client: &Client,
    ns: &str,
    sel: &str,
    t: &Tuning,
) -> Result<Vec<String>, KubeError>
where
    K: ::kube::Resource<DynamicType = (), Scope = ::kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(sel);
    let (r, _) = cluster::retry(t, || api.list_metadata(&lp)).await;
    Ok(r.map_err(|source| KubeError::Api {
        action: format!("list {} labelled {sel} in {ns}", K::plural(&())),
        source,
    })?
    .items
    .into_iter()
    .filter_map(|m| m.metadata.name)
    .collect())
}

/// The numbers of the names `prefix` + digits (`svc-00042` → 42).
fn numbered(names: &[String], prefix: &str) -> BTreeSet<u32> {
    names
        .iter()
        .filter_map(|n| n.strip_prefix(prefix)?.parse().ok())
        .collect()
}

/// How many consecutive numbers from `first` are in every set: `first..first + n`.
fn contiguous(sets: &[BTreeSet<u32>], first: u32) -> u32 {
    let mut n = 0;
    // Bounded by the smallest set: a number beyond its size cannot be in it.
    let most = sets.iter().map(BTreeSet::len).min().unwrap_or(0) as u32;
    while n < most && sets.iter().all(|s| s.contains(&(first + n))) {
        n += 1;
    }
    n
}

fn clean_selector(run_id: Option<&str>) -> String {
    let sel = format!("{}={}", objects::MANAGED_BY, objects::MANAGER);
    match run_id {
        Some(id) => format!("{sel},{RUN_LABEL}={}", objects::kube_run_id(id)),
        None => sel,
    }
}

/// In namespace `ns`, created beforehand (`--namespace`): deletes the cnibench objects
/// (`run`: only that run's) and keeps the namespace; returns how many objects went.
pub async fn clean_in(
    client: &Client,
    run_id: Option<&str>,
    ns: &str,
    t: &Tuning,
    steps: &dyn SetupProgress,
) -> Result<usize, KubeError> {
    let bar = steps.step(None, "deleting cnibench objects");
    let r = delete_labelled(client, ns, &clean_selector(run_id), t, &*bar).await;
    bar.finish();
    r
}

/// Deletes every namespace cnibench left (`run`: only that run's, by its cnibench run id);
/// returns their names.
pub async fn clean(
    client: &Client,
    run_id: Option<&str>,
    t: &Tuning,
    steps: &dyn SetupProgress,
) -> Result<Vec<String>, KubeError> {
    let sel = clean_selector(run_id);
    let api: Api<Namespace> = Api::all(client.clone());
    let lp = ListParams::default().labels(&sel);
    let (r, _) = cluster::retry(t, || api.list(&lp)).await;
    let list = r.map_err(|source| KubeError::Api {
        action: format!("list namespaces labelled {sel}"),
        source,
    })?;
    let names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    let bar = steps.step(Some(names.len() as u64), "deleting namespaces");
    // Namespaces in parallel, each one's filler Services at the client's concurrency
    // (see `delete_namespace_and_fillers`), the rest left to the namespace controller.
    let r = futures::stream::iter(&names)
        .map(|n| {
            let bar = &*bar;
            async move {
                let sel = format!("{ROLE_LABEL}=filler");
                delete_namespace_and_fillers(client, n, &sel, t, &NoProgress).await?;
                bar.inc(1);
                Ok::<_, KubeError>(())
            }
        })
        .buffer_unordered(t.concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await;
    bar.finish();
    r?;
    Ok(names)
}

/// Whether the kube backend can run `point`'s tool: the image holds netload only.
pub fn tool_applicability(point: &Point) -> Readiness {
    if point.tool == Tool::Netload {
        Readiness::Ready
    } else {
        Readiness::NotApplicable(format!(
            "tool={}: the kube backend runs only netload (the image holds nothing else)",
            point.tool
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{expand, presets};

    #[test]
    fn exec_commands_per_workload() {
        let points = expand(&presets::load("thesis").unwrap()).unwrap();
        let find = |p: &str| points.iter().find(|x| x.id.starts_with(p)).unwrap();
        assert_eq!(
            exec_command(find("pod-to-pod/placement=inter,workload=udp"), "10.0.0.5").join(" "),
            "/netload udp 10.0.0.5 --port 9201 -t 4 --omit 1 -P 1 --find-rate 0.1 --trial-time 0.5 --confirm 1 --search-budget 16 --json"
        );
        assert_eq!(
            exec_command(find("rr-latency/path=service"), "10.96.0.1").join(" "),
            "/netload rr 10.96.0.1 --port 9202 --mode tcp-rr -t 4 --size 1 --json"
        );
        let http = exec_command(find("http-replicas/"), "10.96.0.2").join(" ");
        assert!(
            http.starts_with("/netload http http://10.96.0.2:8080/ -c "),
            "{http}"
        );
    }
}
