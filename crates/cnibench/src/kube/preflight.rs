//! Before anything is created: the API server answers, the credentials may do everything
//! a run does (one SelfSubjectAccessReview per permission of [`super::rbac`]), two
//! schedulable workers exist (or the ones `--nodes` names), and which CNI and kube-proxy
//! mode the cluster runs (recorded in `meta.json`).

use std::collections::BTreeMap;

use ::kube::Client;
use ::kube::api::{Api, ListParams, PostParams};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Node};

use super::cluster::{KubeError, Tuning, retry};
use super::rbac;

/// What the preflight found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterInfo {
    /// API server version (`gitVersion`).
    pub server_version: String,
    /// The server node and, if there is a second one, the client node.
    pub nodes: Vec<String>,
    /// Allocatable pods per chosen node.
    pub pod_capacity: Vec<u64>,
    /// Detected CNI (`unknown` if no known DaemonSet).
    pub cni: String,
    /// Image of the CNI's DaemonSet (its tag is usually the version).
    pub cni_image: String,
    /// kube-proxy mode, or `none/replaced` without a kube-proxy DaemonSet.
    pub proxy_mode: String,
}

impl ClusterInfo {
    /// As `meta.json` tool entries (`kube_*`).
    pub fn to_tools(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("kube_server_version".into(), self.server_version.clone()),
            ("kube_nodes".into(), self.nodes.join(",")),
            ("kube_cni".into(), self.cni.clone()),
            ("kube_cni_image".into(), self.cni_image.clone()),
            ("kube_proxy_mode".into(), self.proxy_mode.clone()),
        ])
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

/// A node as the choice needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// Name.
    pub name: String,
    /// Ready condition true.
    pub ready: bool,
    /// Cordoned.
    pub unschedulable: bool,
    /// Has a NoSchedule or NoExecute taint.
    pub tainted: bool,
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
        NodeFacts {
            name: n.metadata.name.clone().unwrap_or_default(),
            ready: status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True"),
            unschedulable: spec.unschedulable.unwrap_or(false),
            tainted: spec
                .taints
                .unwrap_or_default()
                .iter()
                .any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute"),
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
        return Err(KubeError::Preflight(format!(
            "no schedulable worker (Ready, not cordoned, no NoSchedule/NoExecute taint, not control-plane) among {} nodes; name them with --nodes A,B",
            nodes.len()
        )));
    }
    Ok(ok.into_iter().take(2).cloned().collect())
}

/// Asks one SelfSubjectAccessReview per permission; every missing one is named.
pub async fn check_rbac(client: &Client, namespace: &str, t: &Tuning) -> Result<(), KubeError> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let mut missing = Vec::new();
    for p in rbac::PERMISSIONS {
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

/// The whole preflight: version, permissions, nodes, CNI and kube-proxy.
pub async fn preflight(
    client: &Client,
    namespace: &str,
    wanted_nodes: &[String],
    t: &Tuning,
) -> Result<ClusterInfo, KubeError> {
    let (v, _) = retry(t, || client.apiserver_version()).await;
    let version = v.map_err(|source| KubeError::Api {
        action: "cannot reach the API server (GET /version)".into(),
        source,
    })?;
    check_rbac(client, namespace, t).await?;
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
    let (cni, cni_image) = detect_cni(&named);
    let proxy = if named.iter().any(|(n, _)| n == "kube-proxy") {
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
        let (r, _) = retry(t, || cms.get_opt("kube-proxy")).await;
        match r {
            Ok(Some(cm)) => cm
                .data
                .and_then(|d| d.get("config.conf").map(|c| proxy_mode(c)))
                .unwrap_or_else(|| "unknown (no config.conf)".into()),
            Ok(None) => "unknown (no kube-proxy ConfigMap)".into(),
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
        server_version: version.git_version,
        nodes: chosen.iter().map(|n| n.name.clone()).collect(),
        pod_capacity: chosen.iter().map(|n| n.pods).collect(),
        cni,
        cni_image,
        proxy_mode: proxy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            ready: true,
            unschedulable: false,
            tainted: false,
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
        let e = choose_nodes(&nodes[..3], &[]).unwrap_err().to_string();
        assert!(e.contains("no schedulable worker"), "{e}");
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
