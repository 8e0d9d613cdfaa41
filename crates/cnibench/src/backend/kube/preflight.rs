//! Before anything is created: the API server answers, the credentials may do everything
//! a run does (one SelfSubjectAccessReview per permission of [`super::rbac`]), two
//! schedulable workers exist (or the ones `--nodes` names), and which CNI and kube-proxy
//! mode the cluster runs (recorded in `meta.json`).

use std::collections::BTreeMap;

use ::kube::Client;
use ::kube::api::{Api, ListParams, PostParams};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};

use super::cluster::{KubeError, Tuning, retry};
use super::{objects, rbac};

/// What the preflight found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterInfo {
    /// API server version (`gitVersion`).
    pub server_version: String,
    /// The Kubernetes distribution, as far as it shows ([`distribution`]).
    pub distribution: String,
    /// The server node and, if there is a second one, the client node.
    pub nodes: Vec<String>,
    /// Their `kubernetes.io/hostname` labels, which placement selects on (not always
    /// the node name: EKS and some kubeadm clusters name nodes otherwise).
    pub hostnames: Vec<String>,
    /// Taint keys the pods tolerate ([`tolerations`]).
    pub tolerations: Vec<String>,
    /// Allocatable pods per chosen node.
    pub pod_capacity: Vec<u64>,
    /// Detected CNI (`unknown` if no known DaemonSet).
    pub cni: String,
    /// Image of the CNI's DaemonSet (its tag is usually the version).
    pub cni_image: String,
    /// kube-proxy mode, or `none/replaced` without a kube-proxy DaemonSet.
    pub proxy_mode: String,
    /// The namespace created beforehand the run goes into (`--namespace`); `None`: the
    /// run creates its own.
    pub given_namespace: Option<GivenNamespace>,
}

impl ClusterInfo {
    /// As `meta.json` tool entries (`kube_*`).
    pub fn to_tools(&self) -> BTreeMap<String, String> {
        let mut tools = BTreeMap::from([
            ("kube_server_version".into(), self.server_version.clone()),
            ("kube_distribution".into(), self.distribution.clone()),
            ("kube_nodes".into(), self.nodes.join(",")),
            ("kube_node_hostnames".into(), self.hostnames.join(",")),
            ("kube_cni".into(), self.cni.clone()),
            ("kube_cni_image".into(), self.cni_image.clone()),
            ("kube_proxy_mode".into(), self.proxy_mode.clone()),
        ]);
        if let Some(g) = &self.given_namespace {
            tools.insert("kube_namespace_given".into(), "true".into());
            tools.insert(
                "kube_namespace_pod_security".into(),
                g.pod_security.clone().unwrap_or_else(|| "unset".into()),
            );
        }
        tools
    }
}

/// Known CNI DaemonSets in kube-system: name prefix → CNI.
pub const CNI_DAEMONSETS: &[(&str, &str)] = &[
    ("calico-node", "calico"),
    ("cilium", "cilium"),
    ("kube-flannel-ds", "flannel"),
    ("kube-flannel", "flannel"),
    ("antrea-agent", "antrea"),
    ("weave-net", "weave"),
    ("kube-router", "kube-router"),
    ("ovnkube-node", "ovn-kubernetes"),
    ("kube-ovn-cni", "kube-ovn"),
    ("canal", "canal"),
    ("aws-node", "aws-vpc-cni"),
    ("azure-cni", "azure-cni"),
    ("kindnet", "kindnet"),
];

/// The CNI among `daemonsets` (name, first container image): `(cni, image)`.
pub fn detect_cni(daemonsets: &[(String, String)]) -> (String, String) {
    // Exact names first: `cilium-envoy` must not stand in for `cilium`'s image.
    for exact in [true, false] {
        for (prefix, cni) in CNI_DAEMONSETS {
            if let Some((_, image)) = daemonsets.iter().find(|(name, _)| {
                name == prefix || (!exact && name.starts_with(&format!("{prefix}-")))
            }) {
                return ((*cni).to_string(), image.clone());
            }
        }
    }
    ("unknown".into(), String::new())
}

/// kube-proxy's mode from its `config.conf` (a KubeProxyConfiguration in YAML): the
/// top-level `mode:`; empty means the platform default, iptables on Linux.
pub fn proxy_mode(config_conf: &str) -> String {
    let mode = config_conf
        .lines()
        .find_map(|l| l.strip_prefix("mode:"))
        .map(|m| m.trim().trim_matches(['"', '\'']).to_string())
        .unwrap_or_default();
    if mode.is_empty() {
        "iptables (default)".into()
    } else {
        mode
    }
}

/// Distributions whose CNI or kube-proxy do not run as the usual DaemonSets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distribution {
    /// k3s (version `v1.x.y+k3s1`, nodes of instance type `k3s`).
    K3s,
    /// Amazon EKS (version `v1.x.y-eks-...`).
    Eks,
    /// Anything else.
    Other,
}

impl Distribution {
    /// As recorded in `meta.json` (`kube_distribution`).
    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::K3s => "k3s",
            Distribution::Eks => "eks",
            Distribution::Other => "unknown (not k3s or EKS by version and node labels)",
        }
    }
}

/// The distribution from the server's `gitVersion` and the nodes' labels.
pub fn distribution(git_version: &str, nodes: &[Node]) -> Distribution {
    let label = |key: &str, value: &str| {
        nodes.iter().any(|n| {
            n.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(key))
                .is_some_and(|v| v == value)
        })
    };
    if git_version.contains("+k3s") || label("node.kubernetes.io/instance-type", "k3s") {
        Distribution::K3s
    } else if git_version.contains("-eks-")
        || nodes.iter().any(|n| {
            n.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("eks.amazonaws.com/nodegroup"))
        })
    {
        Distribution::Eks
    } else {
        Distribution::Other
    }
}

/// Taint keys of a control-plane node that a single-node cluster's pods tolerate.
pub const CONTROL_PLANE_TAINTS: &[&str] = &[
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// A node as the choice needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// Name.
    pub name: String,
    /// Its `kubernetes.io/hostname` label (the name when the label is missing).
    pub hostname: String,
    /// Ready condition true.
    pub ready: bool,
    /// Cordoned.
    pub unschedulable: bool,
    /// Has a NoSchedule or NoExecute taint.
    pub tainted: bool,
    /// Its NoSchedule/NoExecute taints are only the control-plane role's NoSchedule
    /// (what kind and kubeadm put on a control-plane node): tolerable.
    pub only_control_plane_taint: bool,
    /// Carries a control-plane or master role label.
    pub control_plane: bool,
    /// Allocatable pods.
    pub pods: u64,
}

impl NodeFacts {
    /// Extracts the facts from a Node.
    pub fn of(n: &Node) -> Self {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let spec = n.spec.clone().unwrap_or_default();
        let status = n.status.clone().unwrap_or_default();
        let name = n.metadata.name.clone().unwrap_or_default();
        NodeFacts {
            hostname: labels
                .get(super::objects::HOSTNAME_LABEL)
                .cloned()
                .unwrap_or_else(|| name.clone()),
            name,
            ready: status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            unschedulable: spec.unschedulable.unwrap_or(false),
            tainted: spec
                .taints
                .clone()
                .unwrap_or_default()
                .iter()
                .any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute"),
            only_control_plane_taint: spec
                .taints
                .unwrap_or_default()
                .iter()
                .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
                .all(|t| {
                    t.effect == "NoSchedule" && CONTROL_PLANE_TAINTS.contains(&t.key.as_str())
                }),
            control_plane: labels.contains_key("node-role.kubernetes.io/control-plane")
                || labels.contains_key("node-role.kubernetes.io/master"),
            pods: status
                .allocatable
                .and_then(|a| a.get("pods").and_then(|q| q.0.parse().ok()))
                .unwrap_or(0),
        }
    }

    fn schedulable(&self) -> bool {
        self.ready && !self.unschedulable && !self.tainted && !self.control_plane
    }
}

/// Picks the nodes: `wanted` (from `--nodes`, each must exist, be Ready and not
/// cordoned), or the first two schedulable workers by name. At least one is required;
/// with one, inter-node points are not applicable.
pub fn choose_nodes(nodes: &[NodeFacts], wanted: &[String]) -> Result<Vec<NodeFacts>, KubeError> {
    if !wanted.is_empty() {
        return wanted
            .iter()
            .map(|w| {
                let n = nodes.iter().find(|n| &n.name == w).ok_or_else(|| {
                    KubeError::Preflight(format!(
                        "--nodes: no node {w} (nodes: {})",
                        nodes
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
                if !n.ready || n.unschedulable {
                    return Err(KubeError::Preflight(format!(
                        "--nodes: node {w} is {}",
                        if n.ready { "cordoned" } else { "not Ready" }
                    )));
                }
                Ok(n.clone())
            })
            .collect();
    }
    let mut ok: Vec<&NodeFacts> = nodes.iter().filter(|n| n.schedulable()).collect();
    ok.sort_by(|a, b| a.name.cmp(&b.name));
    if ok.is_empty() {
        // A single-node cluster (kind, k3s, minikube): its control-plane node runs the
        // intra-node points (pods tolerate its taint); inter-node ones are not applicable.
        let mut cp: Vec<&NodeFacts> = nodes
            .iter()
            .filter(|n| {
                n.ready && !n.unschedulable && n.control_plane && n.only_control_plane_taint
            })
            .collect();
        cp.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(n) = cp.first() {
            return Ok(vec![(*n).clone()]);
        }
        return Err(KubeError::Preflight(format!(
            "no schedulable worker (Ready, not cordoned, no NoSchedule/NoExecute taint, not control-plane) and no Ready control-plane node with only its role's taint among {} nodes; name them with --nodes A,B",
            nodes.len()
        )));
    }
    Ok(ok.into_iter().take(2).cloned().collect())
}

/// The taints pods must tolerate on `chosen`: the control-plane ones, when a chosen node
/// is a control-plane node (single-node clusters, or `--nodes` naming one).
pub fn tolerations(chosen: &[NodeFacts]) -> Vec<String> {
    if chosen.iter().any(|n| n.control_plane) {
        CONTROL_PLANE_TAINTS
            .iter()
            .map(ToString::to_string)
            .collect()
    } else {
        Vec::new()
    }
}

/// Asks one SelfSubjectAccessReview per permission ([`rbac::needed`]; `given`: the
/// namespace was created beforehand); every missing one is named.
pub async fn check_rbac(
    client: &Client,
    namespace: &str,
    given: bool,
    t: &Tuning,
) -> Result<(), KubeError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for p in &rbac::needed(given) {
        let review = rbac::review(p, namespace);
        let pp = PostParams::default();
        let (r, _) = retry(t, || api.create(&pp, &review)).await;
        let r = r.map_err(|source| KubeError::Api {
            action: format!("SelfSubjectAccessReview for {}", p.describe()),
            source,
        })?;
        if !r.status.is_some_and(|s| s.allowed) {
            missing.push(p.describe());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(KubeError::Forbidden(missing))
    }
}

/// A namespace created beforehand (`--namespace`) as the preflight found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GivenNamespace {
    /// Its name.
    pub name: String,
    /// Its `pod-security.kubernetes.io/enforce` label (`None`: not set, the cluster's
    /// default applies).
    pub pod_security: Option<String>,
}

/// The given namespace (`--namespace`): it must exist; its Pod Security level decides
/// whether host-network points can run in it.
async fn given_namespace(
    client: &Client,
    name: &str,
    t: &Tuning,
) -> Result<GivenNamespace, KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let (r, _) = retry(t, || api.get_opt(name)).await;
    let found = r.map_err(|source| KubeError::Api {
        action: format!("get namespace {name} (--namespace)"),
        source,
    })?;
    let ns = found.ok_or_else(|| {
        KubeError::Preflight(format!(
            "namespace {name} does not exist: --namespace takes a namespace created beforehand \
             (kubectl create namespace {name}); without --namespace cnibench creates its own"
        ))
    })?;
    if ns.metadata.deletion_timestamp.is_some() {
        return Err(KubeError::Preflight(format!(
            "namespace {name} (--namespace) is being deleted"
        )));
    }
    Ok(GivenNamespace {
        name: name.into(),
        pod_security: ns
            .metadata
            .labels
            .and_then(|l| l.get(objects::POD_SECURITY_ENFORCE).cloned()),
    })
}

/// The whole preflight: version, permissions, the given namespace (`given`: it was
/// created beforehand, `--namespace`), nodes, CNI and kube-proxy.
pub async fn preflight(
    client: &Client,
    namespace: &str,
    given: bool,
    wanted_nodes: &[String],
    t: &Tuning,
) -> Result<ClusterInfo, KubeError> {
    let (v, _) = retry(t, || client.apiserver_version()).await;
    let version = v.map_err(|source| KubeError::Api {
        action: "cannot reach the API server (GET /version)".into(),
        source,
    })?;
    check_rbac(client, namespace, given, t).await?;
    let given_namespace = if given {
        Some(given_namespace(client, namespace, t).await?)
    } else {
        None
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let all = ListParams::default();
    let (r, _) = retry(t, || nodes.list(&all)).await;
    let list = r.map_err(|source| KubeError::Api {
        action: "list nodes".into(),
        source,
    })?;
    let facts: Vec<NodeFacts> = list.items.iter().map(NodeFacts::of).collect();
    let chosen = choose_nodes(&facts, wanted_nodes)?;

    let ds: Api<DaemonSet> = Api::namespaced(client.clone(), "kube-system");
    let (r, _) = retry(t, || ds.list(&all)).await;
    let dss = r.map_err(|source| KubeError::Api {
        action: "list DaemonSets in kube-system".into(),
        source,
    })?;
    let named: Vec<(String, String)> = dss
        .items
        .iter()
        .map(|d| {
            let image = d
                .spec
                .template
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            (d.metadata.name.clone().unwrap_or_default(), image)
        })
        .collect();
    let distribution = distribution(&version.git_version, &list.items);
    let (mut cni, cni_image) = detect_cni(&named);
    if cni == "unknown" {
        cni = match distribution {
            // k3s runs flannel inside its own process unless started with
            // --flannel-backend=none (then a CNI DaemonSet would have been found).
            Distribution::K3s => "flannel (embedded in k3s)".into(),
            _ => format!(
                "unknown (no known CNI DaemonSet in kube-system among: {})",
                if named.is_empty() {
                    "none".to_string()
                } else {
                    named
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        };
    }
    let proxy = if distribution == Distribution::K3s
        && !named.iter().any(|(n, _)| n == "kube-proxy")
    {
        // k3s embeds kube-proxy in its agent, in its default mode (iptables) unless
        // configured otherwise in k3s's own config, which the API does not show.
        "iptables (embedded in k3s; unknown if k3s sets --kube-proxy-arg proxy-mode)".into()
    } else if named.iter().any(|(n, _)| n == "kube-proxy") {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
        let (r, _) = retry(t, || cms.get_opt("kube-proxy")).await;
        match r {
            Ok(Some(cm)) => cm
                .data
                .and_then(|d| d.get("config.conf").map(|c| proxy_mode(c)))
                .unwrap_or_else(|| "unknown (ConfigMap kube-system/kube-proxy has no config.conf)".into()),
            // EKS keeps it in kube-proxy-config (key `config`), which the ClusterRole
            // does not grant: named, not guessed.
            Ok(None) if distribution == Distribution::Eks => {
                "unknown (EKS keeps kube-proxy's mode in ConfigMap kube-system/kube-proxy-config; iptables unless changed)".into()
            }
            Ok(None) => "unknown (no ConfigMap kube-system/kube-proxy)".into(),
            Err(source) => {
                return Err(KubeError::Api {
                    action: "get ConfigMap kube-system/kube-proxy".into(),
                    source,
                });
            }
        }
    } else {
        "none/replaced".into()
    };
    Ok(ClusterInfo {
        distribution: distribution.as_str().into(),
        server_version: version.git_version,
        nodes: chosen.iter().map(|n| n.name.clone()).collect(),
        hostnames: chosen.iter().map(|n| n.hostname.clone()).collect(),
        tolerations: tolerations(&chosen),
        pod_capacity: chosen.iter().map(|n| n.pods).collect(),
        cni,
        cni_image,
        proxy_mode: proxy,
        given_namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            hostname: name.into(),
            ready: true,
            unschedulable: false,
            tainted: false,
            only_control_plane_taint: true,
            control_plane: false,
            pods: 110,
        }
    }

    #[test]
    fn workers_are_chosen_automatically() {
        let mut cp = node("a-cp");
        cp.control_plane = true;
        let mut tainted = node("b-tainted");
        tainted.tainted = true;
        let mut down = node("c-down");
        down.ready = false;
        let nodes = [cp, tainted, down, node("w2"), node("w1"), node("w3")];
        let chosen = choose_nodes(&nodes, &[]).unwrap();
        let names: Vec<_> = chosen.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["w1", "w2"]);
        // Tainted as a worker, cordoned, down: none qualifies, not even the control plane
        // (it carries another taint here).
        let mut nodes3 = nodes[..3].to_vec();
        nodes3[0].only_control_plane_taint = false;
        let e = choose_nodes(&nodes3, &[]).unwrap_err().to_string();
        assert!(e.contains("no schedulable worker"), "{e}");
        // A single-node cluster: its control-plane node, with the toleration.
        let chosen = choose_nodes(&nodes[..3], &[]).unwrap();
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].name, "a-cp");
        assert_eq!(tolerations(&chosen), CONTROL_PLANE_TAINTS);
    }

    #[test]
    fn nodes_can_be_named() {
        let nodes = [node("w1"), node("w2")];
        let chosen = choose_nodes(&nodes, &["w2".into(), "w1".into()]).unwrap();
        assert_eq!(chosen[0].name, "w2");
        let e = choose_nodes(&nodes, &["nope".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no node nope") && e.contains("w1, w2"), "{e}");
    }

    #[test]
    fn k3s_and_eks_are_recognised() {
        let node = |labels: serde_json::Value| -> Node {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "n", "labels": labels}}))
                .unwrap()
        };
        assert_eq!(distribution("v1.31.4+k3s1", &[]), Distribution::K3s);
        assert_eq!(
            distribution(
                "v1.31.4",
                &[node(
                    serde_json::json!({"node.kubernetes.io/instance-type": "k3s"})
                )]
            ),
            Distribution::K3s
        );
        assert_eq!(distribution("v1.30.8-eks-2d5f260", &[]), Distribution::Eks);
        assert_eq!(
            distribution("v1.37.2", &[node(serde_json::json!({}))]),
            Distribution::Other
        );
    }

    #[test]
    fn cni_and_proxy_are_recognised() {
        let ds = |n: &str, i: &str| (n.to_string(), i.to_string());
        assert_eq!(
            detect_cni(&[
                ds("kube-proxy", "kp:1"),
                ds("calico-node", "calico/node:v3.28")
            ]),
            ("calico".into(), "calico/node:v3.28".into())
        );
        assert_eq!(
            detect_cni(&[ds("cilium-envoy", "e"), ds("cilium", "c:1")]),
            ("cilium".into(), "c:1".into())
        );
        assert_eq!(detect_cni(&[ds("kube-router-x", "r")]).0, "kube-router");
        assert_eq!(detect_cni(&[ds("kube-flannel-ds", "f")]).0, "flannel");
        assert_eq!(detect_cni(&[ds("something", "x")]).0, "unknown");
        assert_eq!(proxy_mode("apiVersion: x\nmode: \"ipvs\"\n"), "ipvs");
        assert_eq!(proxy_mode("mode: nftables"), "nftables");
        assert_eq!(
            proxy_mode("mode: \"\"\nipvs:\n  scheduler: rr\n"),
            "iptables (default)"
        );
    }
}
