//! The Kubernetes objects of one point, built by pure functions (no I/O, no clock).
//!
//! One namespace per run, `cnibench-<run>`, holds a point's objects while it runs (the
//! backend keeps it for the whole run and reconciles it to each point's objects, see
//! [`super::reconcile`]). Everything carries [`MANAGED_BY`] and [`RUN_LABEL`].
//!
//! - **server**: a Deployment of `netload server` (control and data on
//!   [`CONTROL_PORT`], request/response on [`RR_PORT`], HTTP on [`HTTP_PORT`] for HTTP
//!   points), `replicas` pods, a TCP readiness probe on the control port;
//! - **client**: a long-lived pod running `netload idle`; each repetition is exec'd in it;
//! - placement by required node affinity on `kubernetes.io/hostname`; the baseline runs
//!   both with `hostNetwork: true` (its namespace is labelled Pod Security `privileged`,
//!   every other point's `restricted`, which the pods satisfy);
//! - **fillers**: one Deployment of `filler_pods` `netload idle` pods (one create instead
//!   of N: the ReplicaSet controller makes the pods);
//! - **policies**: a default deny of ingress, then allow policies that select the server
//!   and admit the client, each with its own `198.19.x.y/32` peer so that a CNI has as many
//!   distinct rules to program as policies exist;
//! - **services**: the measured `server` Service (selector on the server pods, every port),
//!   then `services - 1` fillers: with [`ServiceMode::Selector`] they select the server
//!   pods (the EndpointSlice controller makes their slices); with
//!   [`ServiceMode::EndpointSlice`] they are selectorless, each with an EndpointSlice we
//!   write whose one endpoint is an address of 198.18.0.0/16 (RFC 2544 benchmarking range,
//!   never routed: the rules exist, no traffic goes there).
//!
//! Pods pass Pod Security "restricted": non-root 65532, read-only root filesystem, no
//! privilege escalation, every capability dropped, RuntimeDefault seccomp, no service
//! account token, and no service links (10k services would otherwise put 10k sets of
//! variables into every pod's environment).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, Namespace,
    NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, ObjectFieldSelector,
    Pod, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecurityContext, Service, ServicePort, ServiceSpec, TCPSocketAction, Toleration,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::scenario::{PathKind, Placement, Point, Workload};

/// Label every object carries: `app.kubernetes.io/managed-by`.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGER: &str = "cnibench";
/// Label naming the run (its Kubernetes-safe form, see [`kube_run_id`]).
pub const RUN_LABEL: &str = "cnibench.io/run";
/// Label naming an object's role: server, client, filler.
pub const ROLE_LABEL: &str = "cnibench.io/role";
/// Annotation on the namespace naming the point it holds.
pub const POINT_ANNOTATION: &str = "cnibench.io/point";
/// The node label placement uses.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The Pod Security level label: set on the run's own namespace, read on a given one.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";
/// netload's control (and stream data) port.
pub const CONTROL_PORT: u16 = netload::control::DEFAULT_PORT;
/// netload's request/response responder port.
pub const RR_PORT: u16 = 9202;
/// Port of the HTTP server on HTTP points.
pub const HTTP_PORT: u16 = 8080;
/// Path of the binary in the image.
pub const NETLOAD: &str = "/netload";
/// Name of the server Deployment and of the measured Service.
pub const SERVER: &str = "server";
/// Name of the client pod.
pub const CLIENT: &str = "client";
/// The outsider pod of policy points: a client that no policy admits (see [`outsider`]).
pub const OUTSIDER: &str = "outsider";
/// Name of the filler Deployment.
pub const FILLER: &str = "filler";
/// The user and group of every container (distroless "nonroot").
pub const NONROOT: i64 = 65532;

/// How filler services get their endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ServiceMode {
    /// Filler services select the server pods; the cluster's EndpointSlice controller
    /// writes their slices, at its own client rate and after cnibench considers the point
    /// ready.
    Selector,
    /// Selectorless filler services, each with an EndpointSlice cnibench writes itself
    /// before measuring (the default: the datapath state is complete when measuring
    /// starts, at this client's rate).
    #[default]
    #[value(name = "endpointslice")]
    EndpointSlice,
}

impl ServiceMode {
    /// Name on the command line and in `meta.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceMode::Selector => "selector",
            ServiceMode::EndpointSlice => "endpointslice",
        }
    }
}

/// Run-wide inputs of the builders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Kubernetes-safe run id ([`kube_run_id`]).
    pub run: String,
    /// The netload image.
    pub image: String,
    /// The `kubernetes.io/hostname` label of the server's node (and an intra-node
    /// client's): what placement selects on.
    pub server_node: String,
    /// The `kubernetes.io/hostname` label of an inter-node client's node.
    pub client_node: String,
    /// Filler service flavour.
    pub service_mode: ServiceMode,
    /// Taint keys every pod tolerates (NoSchedule): the control-plane taint when a
    /// single-node cluster (kind, k3s) runs the points on its control-plane node.
    pub tolerations: Vec<String>,
    /// A namespace created beforehand (`--namespace`), which cnibench neither creates,
    /// labels nor deletes; `None`: the run's own ([`namespace_name`]).
    pub namespace: Option<String>,
}

impl Settings {
    /// The namespace the point's objects go into.
    pub fn namespace(&self) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| namespace_name(&self.run))
    }
}

/// The default image: `ghcr.io/cnibench/netload:<cnibench version>`.
pub fn default_image() -> String {
    format!("ghcr.io/cnibench/netload:{}", env!("CARGO_PKG_VERSION"))
}

/// A run id as a DNS label part and label value: lower case, `[a-z0-9-]`, at most 54
/// characters (so `cnibench-<id>` fits a namespace name); longer ids keep their start and
/// a hash of the whole.
pub fn kube_run_id(run_id: &str) -> String {
    let mut s: String = run_id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.len() > 54 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in run_id.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        s = format!("{}-{:012x}", &s[..41], h >> 16);
    }
    let s = s.trim_matches('-').to_string();
    if s.is_empty() { "run".into() } else { s }
}

/// The namespace of a run.
pub fn namespace_name(run: &str) -> String {
    format!("cnibench-{run}")
}

/// Every object of one point, in creation order.
#[derive(Debug, Clone, PartialEq)]
pub struct PointObjects {
    /// The run's namespace.
    pub namespace: Namespace,
    /// The server Deployment.
    pub server: Deployment,
    /// The client pod.
    pub client: Pod,
    /// The outsider pod, on points with policies.
    pub outsider: Option<Pod>,
    /// The filler pods' Deployment, if the point has filler pods.
    pub fillers: Option<Deployment>,
    /// The measured service first (when there is one), then the fillers.
    pub services: Vec<Service>,
    /// EndpointSlices of selectorless filler services.
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Default deny first, then the allow policies.
    pub policies: Vec<NetworkPolicy>,
}

impl PointObjects {
    /// Number of objects (one create each).
    pub fn count(&self) -> usize {
        3 + usize::from(self.outsider.is_some())
            + usize::from(self.fillers.is_some())
            + self.services.len()
            + self.endpoint_slices.len()
            + self.policies.len()
    }

    /// The measured service, if the point goes through one.
    pub fn measured_service(&self) -> Option<&Service> {
        self.services
            .first()
            .filter(|s| s.metadata.name.as_deref() == Some(SERVER))
    }

    /// The server's replica count.
    pub fn server_replicas(&self) -> i32 {
        self.server.spec.replicas.unwrap_or(1)
    }
}

fn labels(run: &str, role: Option<&str>) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (RUN_LABEL.to_string(), run.to_string()),
    ]);
    if let Some(r) = role {
        l.insert(ROLE_LABEL.into(), r.into());
    }
    l
}

fn meta(s: &Settings, name: &str, role: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(s.namespace()),
        labels: Some(labels(&s.run, role)),
        ..ObjectMeta::default()
    }
}

fn role_selector(run: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (RUN_LABEL.to_string(), run.to_string()),
        (ROLE_LABEL.to_string(), role.to_string()),
    ])
}

/// The namespace of a point: labelled, Pod Security `restricted` (or `privileged` for
/// host-network points), the point id in an annotation.
pub fn namespace(s: &Settings, point: &Point) -> Namespace {
    let mut l = labels(&s.run, None);
    let level = if point.topology.host_network {
        "privileged"
    } else {
        "restricted"
    };
    l.insert(POD_SECURITY_ENFORCE.into(), level.into());
    Namespace {
        metadata: ObjectMeta {
            name: Some(namespace_name(&s.run)),
            labels: Some(l),
            annotations: Some(BTreeMap::from([(
                POINT_ANNOTATION.to_string(),
                point.id.clone(),
            )])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.into())
}

fn container(
    s: &Settings,
    args: Vec<String>,
    requests: (&str, &str),
    ports: &[(&str, u16, &str)],
) -> Container {
    Container {
        name: "netload".into(),
        image: Some(s.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec![NETLOAD.into()]),
        args: Some(args),
        ports: (!ports.is_empty()).then(|| {
            ports
                .iter()
                .map(|(name, port, proto)| ContainerPort {
                    name: Some((*name).into()),
                    container_port: i32::from(*port),
                    protocol: Some((*proto).into()),
                    ..ContainerPort::default()
                })
                .collect()
        }),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), quantity(requests.0)),
                ("memory".to_string(), quantity(requests.1)),
            ])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT),
            run_as_group: Some(NONROOT),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..SecurityContext::default()
        }),
        ..Container::default()
    }
}

fn pod_spec(
    s: &Settings,
    containers: Vec<Container>,
    node: Option<&str>,
    host_network: bool,
) -> PodSpec {
    PodSpec {
        tolerations: (!s.tolerations.is_empty()).then(|| {
            s.tolerations
                .iter()
                .map(|key| Toleration {
                    key: Some(key.clone()),
                    operator: Some("Exists".into()),
                    effect: Some("NoSchedule".into()),
                    ..Toleration::default()
                })
                .collect()
        }),
        containers,
        host_network: host_network.then_some(true),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(2),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NONROOT),
            run_as_group: Some(NONROOT),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        affinity: node.map(|n| Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![n.to_string()]),
                        }]),
                        ..NodeSelectorTerm::default()
                    }],
                }),
                ..NodeAffinity::default()
            }),
            ..Affinity::default()
        }),
        ..PodSpec::default()
    }
}

fn deployment(s: &Settings, name: &str, role: &str, replicas: i32, spec: PodSpec) -> Deployment {
    Deployment {
        metadata: meta(s, name, Some(role)),
        spec: DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(role_selector(&s.run, role)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&s.run, Some(role))),
                    ..ObjectMeta::default()
                }),
                spec: Some(spec),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// The netload server's arguments for a point.
pub fn server_args(point: &Point) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "server".into(),
        "--port".into(),
        CONTROL_PORT.to_string(),
        "--rr-port".into(),
        RR_PORT.to_string(),
    ];
    if let Workload::Http(h) = &point.workload {
        a.extend([
            "--http".into(),
            HTTP_PORT.to_string(),
            "--body-size".into(),
            h.file_size.0.to_string(),
        ]);
    }
    a
}

/// The server Deployment: `replicas` pods of `netload server` on the server node.
pub fn server(s: &Settings, point: &Point) -> Deployment {
    let mut c = container(
        s,
        server_args(point),
        ("100m", "64Mi"),
        &[
            ("control", CONTROL_PORT, "TCP"),
            ("data-udp", CONTROL_PORT, "UDP"),
            ("rr", RR_PORT, "TCP"),
            ("rr-udp", RR_PORT, "UDP"),
            ("http", HTTP_PORT, "TCP"),
        ],
    );
    // The replica names itself (x-netload-replica) after its pod.
    c.env = Some(vec![EnvVar {
        name: netload::http::REPLICA_ENV.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }]);
    c.readiness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(i32::from(CONTROL_PORT)),
            ..TCPSocketAction::default()
        }),
        period_seconds: Some(1),
        failure_threshold: Some(3),
        ..Probe::default()
    });
    let spec = pod_spec(
        s,
        vec![c],
        Some(&s.server_node),
        point.topology.host_network,
    );
    deployment(
        s,
        SERVER,
        "server",
        point.objects.replicas.max(1) as i32,
        spec,
    )
}

/// The client pod: `netload idle`, on the client node (the server's for intra-node).
pub fn client(s: &Settings, point: &Point) -> Pod {
    let node = match point.topology.placement {
        Placement::Inter => &s.client_node,
        Placement::Intra => &s.server_node,
    };
    Pod {
        metadata: meta(s, CLIENT, Some("client")),
        spec: Some(pod_spec(
            s,
            vec![container(s, vec!["idle".into()], ("100m", "64Mi"), &[])],
            Some(node),
            point.topology.host_network,
        )),
        ..Pod::default()
    }
}

/// The outsider pod of a point with policies: the client's twin (idle, on its node) with
/// a role no policy admits. Before measuring, it must fail to reach the server where the
/// client succeeds, or the CNI does not enforce the policies (the driver checks).
/// Host-network points have none: NetworkPolicy does not apply to host-network pods.
pub fn outsider(s: &Settings, point: &Point) -> Option<Pod> {
    (point.objects.policies > 0 && !point.topology.host_network).then(|| {
        let mut pod = client(s, point);
        pod.metadata = meta(s, OUTSIDER, Some(OUTSIDER));
        pod
    })
}

/// The filler Deployment (`count` idle pods, anywhere), or `None` for zero.
pub fn fillers(s: &Settings, count: u32) -> Option<Deployment> {
    (count > 0).then(|| {
        let spec = pod_spec(
            s,
            vec![container(s, vec!["idle".into()], ("1m", "8Mi"), &[])],
            None,
            false,
        );
        deployment(s, FILLER, "filler", count as i32, spec)
    })
}

fn service_port(name: &str, port: u16, proto: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: i32::from(port),
        protocol: Some(proto.into()),
        target_port: Some(IntOrString::Int(i32::from(port))),
        ..ServicePort::default()
    }
}

/// The measured service: every server port, selecting the server pods.
pub fn measured_service(s: &Settings) -> Service {
    Service {
        metadata: meta(s, SERVER, Some("server")),
        spec: Some(ServiceSpec {
            selector: Some(role_selector(&s.run, "server")),
            ports: Some(vec![
                service_port("control", CONTROL_PORT, "TCP"),
                service_port("data-udp", CONTROL_PORT, "UDP"),
                service_port("rr", RR_PORT, "TCP"),
                service_port("rr-udp", RR_PORT, "UDP"),
                service_port("http", HTTP_PORT, "TCP"),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Name of filler service `k` (1-based).
pub fn filler_service_name(k: u32) -> String {
    format!("svc-{k:05}")
}

/// The endpoint address of selectorless filler service `k`: 198.18.0.0 + k.
pub fn filler_endpoint(k: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + k)
}

/// Filler service `k` (1-based) and, for [`ServiceMode::EndpointSlice`], its slice.
pub fn filler_service(s: &Settings, k: u32) -> (Service, Option<EndpointSlice>) {
    let name = filler_service_name(k);
    let selector =
        (s.service_mode == ServiceMode::Selector).then(|| role_selector(&s.run, "server"));
    let svc = Service {
        metadata: meta(s, &name, Some("filler")),
        spec: Some(ServiceSpec {
            selector,
            ports: Some(vec![service_port("tcp", CONTROL_PORT, "TCP")]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let slice = (s.service_mode == ServiceMode::EndpointSlice).then(|| {
        let mut m = meta(s, &name, Some("filler"));
        if let Some(l) = m.labels.as_mut() {
            l.insert("kubernetes.io/service-name".into(), name.clone());
            l.insert(
                "endpointslice.kubernetes.io/managed-by".into(),
                "cnibench.io".into(),
            );
        }
        EndpointSlice {
            metadata: m,
            address_type: "IPv4".into(),
            endpoints: Some(vec![Endpoint {
                addresses: vec![filler_endpoint(k).to_string()],
                ..Endpoint::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("tcp".into()),
                port: Some(i32::from(CONTROL_PORT)),
                protocol: Some("TCP".into()),
                ..EndpointPort::default()
            }]),
        }
    });
    (svc, slice)
}

/// Number of services a point has: its `services`, at least one on the service path.
pub fn service_count(point: &Point) -> u32 {
    if point.topology.path == PathKind::Service {
        point.objects.services.max(1)
    } else {
        point.objects.services
    }
}

/// Name of policy `i` of a point: 0 is the default deny, `i ≥ 1` allow policy `i`.
pub fn policy_name(i: u32) -> String {
    if i == 0 {
        "default-deny".into()
    } else {
        format!("allow-{i:05}")
    }
}

/// The default-deny policy: no ingress to any pod of the namespace unless allowed.
pub fn default_deny(s: &Settings) -> NetworkPolicy {
    NetworkPolicy {
        metadata: meta(s, &policy_name(0), None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector::default()),
            policy_types: Some(vec!["Ingress".into()]),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// Allow policy `i` (1-based): the server admits the client (and one unused
/// 198.19.0.0/16 address, so every policy is a distinct rule) on every port the server
/// listens on (control and stream data, request/response, HTTP).
pub fn allow_policy(s: &Settings, i: u32) -> NetworkPolicy {
    let peer_ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 0, 0)) + i);
    let port = |p: u16, proto: &str| NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(p))),
        protocol: Some(proto.into()),
        ..NetworkPolicyPort::default()
    };
    NetworkPolicy {
        metadata: meta(s, &policy_name(i), None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(role_selector(&s.run, "server")),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![
                    NetworkPolicyPeer {
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(role_selector(&s.run, "client")),
                            ..LabelSelector::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    },
                    NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: format!("{peer_ip}/32"),
                            ..IPBlock::default()
                        }),
                        ..NetworkPolicyPeer::default()
                    },
                ]),
                ports: Some(vec![
                    port(CONTROL_PORT, "TCP"),
                    port(CONTROL_PORT, "UDP"),
                    port(RR_PORT, "TCP"),
                    port(RR_PORT, "UDP"),
                    port(HTTP_PORT, "TCP"),
                ]),
            }]),
            ..NetworkPolicySpec::default()
        }),
    }
}

/// The point's policies: none, or a default deny and `policies - 1` allows (so the total
/// is the point's `policies`).
pub fn policies(s: &Settings, count: u32) -> Vec<NetworkPolicy> {
    if count == 0 {
        return Vec::new();
    }
    std::iter::once(default_deny(s))
        .chain((1..count).map(|i| allow_policy(s, i)))
        .collect()
}

/// Every object of a point.
pub fn point_objects(s: &Settings, point: &Point) -> PointObjects {
    let services = service_count(point);
    let mut svcs = Vec::with_capacity(services as usize);
    let mut slices = Vec::new();
    if services > 0 {
        svcs.push(measured_service(s));
        for k in 1..services {
            let (svc, slice) = filler_service(s, k);
            svcs.push(svc);
            slices.extend(slice);
        }
    }
    PointObjects {
        namespace: namespace(s, point),
        server: server(s, point),
        client: client(s, point),
        outsider: outsider(s, point),
        fillers: fillers(s, point.objects.filler_pods),
        services: svcs,
        endpoint_slices: slices,
        policies: policies(s, point.objects.policies),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::{expand, presets};

    pub(crate) fn settings() -> Settings {
        Settings {
            run: "render".into(),
            image: "ghcr.io/cnibench/netload:0.1.0".into(),
            server_node: "worker-1".into(),
            client_node: "worker-2".into(),
            service_mode: ServiceMode::Selector,
            tolerations: Vec::new(),
            namespace: None,
        }
    }

    fn point(prefix: &str) -> Point {
        expand(&presets::load("thesis").unwrap())
            .unwrap()
            .into_iter()
            .find(|p| p.id.starts_with(prefix))
            .unwrap_or_else(|| panic!("no point {prefix}"))
    }

    fn yaml<T: serde::Serialize>(v: &T) -> String {
        serde_saphyr::to_string(v).unwrap()
    }

    #[test]
    fn run_ids_become_dns_labels() {
        assert_eq!(
            kube_run_id("20261125T083100Z-quick"),
            "20261125t083100z-quick"
        );
        assert_eq!(kube_run_id("a_b.C"), "a-b-c");
        let long = kube_run_id(&"x".repeat(100));
        assert!(long.len() <= 54, "{long}");
        assert_ne!(long, kube_run_id(&"x".repeat(99)));
        assert_eq!(kube_run_id("--"), "run");
    }

    #[test]
    fn inter_node_pod_to_pod_objects() {
        let p = point("pod-to-pod/placement=inter");
        let o = point_objects(&settings(), &p);
        assert_eq!(o.count(), 3);
        assert!(o.measured_service().is_none());
        insta::assert_snapshot!("namespace", yaml(&o.namespace));
        insta::assert_snapshot!("server", yaml(&o.server));
        insta::assert_snapshot!("client_inter", yaml(&o.client));
    }

    #[test]
    fn intra_node_client_sits_on_the_server_node() {
        let p = point("pod-to-pod/placement=intra");
        let c = yaml(&client(&settings(), &p));
        assert!(c.contains("worker-1") && !c.contains("worker-2"), "{c}");
    }

    #[test]
    fn baseline_uses_host_network_and_a_privileged_namespace() {
        let p = point("baseline/");
        let o = point_objects(&settings(), &p);
        assert!(yaml(&o.server).contains("hostNetwork: true"));
        assert!(yaml(&o.client).contains("hostNetwork: true"));
        assert!(yaml(&o.namespace).contains("enforce: privileged"));
    }

    #[test]
    fn http_replicas_serve_the_body_size() {
        let p = point("http-replicas/");
        let o = point_objects(&settings(), &p);
        assert_eq!(o.server_replicas(), p.objects.replicas as i32);
        insta::assert_snapshot!("server_http", yaml(&o.server));
        assert_eq!(
            o.measured_service().unwrap().metadata.name.as_deref(),
            Some("server")
        );
    }

    #[test]
    fn scale_objects() {
        let s = settings();
        insta::assert_snapshot!("fillers", yaml(&fillers(&s, 1000).unwrap()));
        assert!(fillers(&s, 0).is_none());
        insta::assert_snapshot!("measured_service", yaml(&measured_service(&s)));
        insta::assert_snapshot!("filler_service_selector", yaml(&filler_service(&s, 7).0));
        assert!(filler_service(&s, 7).1.is_none());
        let es = Settings {
            service_mode: ServiceMode::EndpointSlice,
            ..settings()
        };
        let (svc, slice) = filler_service(&es, 7);
        insta::assert_snapshot!("filler_service_selectorless", yaml(&svc));
        insta::assert_snapshot!("filler_endpointslice", yaml(&slice.unwrap()));
        insta::assert_snapshot!("default_deny", yaml(&default_deny(&s)));
        insta::assert_snapshot!("allow_policy", yaml(&allow_policy(&s, 3)));
        assert_eq!(filler_endpoint(10_000).to_string(), "198.18.39.16");
    }

    #[test]
    fn counts_follow_the_point() {
        let p = point("pod-to-pod-policies/placement=inter,pods=1000,");
        let o = point_objects(&settings(), &p);
        assert_eq!(o.policies.len(), 2000);
        assert!(o.fillers.is_some());
        let p = point("pod-to-service/placement=inter,services=10000,");
        let o = point_objects(&settings(), &p);
        assert_eq!(o.services.len(), 10_000);
        assert!(o.endpoint_slices.is_empty());
        let names: std::collections::BTreeSet<_> =
            o.services.iter().map(|s| s.metadata.name.clone()).collect();
        assert_eq!(names.len(), 10_000);
    }
}
