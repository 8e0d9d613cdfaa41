//! The permissions a kube run needs: one list, used by the preflight (one
//! SelfSubjectAccessReview each) and rendered as `manifests/rbac.yaml`.

use std::collections::BTreeMap;

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::objects::{MANAGED_BY, MANAGER};

/// Where a permission applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Cluster-scoped resource (nodes, namespaces).
    Cluster,
    /// In the run's namespace.
    Run,
    /// In kube-system (CNI and kube-proxy detection).
    KubeSystem,
}

/// One verb on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// API group ("" for core).
    pub group: &'static str,
    /// Resource (plural).
    pub resource: &'static str,
    /// Subresource, e.g. `exec`.
    pub subresource: Option<&'static str>,
    /// Verb.
    pub verb: &'static str,
    /// Where.
    pub scope: Scope,
}

impl Permission {
    const fn new(
        group: &'static str,
        resource: &'static str,
        verb: &'static str,
        scope: Scope,
    ) -> Self {
        Permission {
            group,
            resource,
            subresource: None,
            verb,
            scope,
        }
    }

    /// `resource[/sub]`, as an RBAC rule names it.
    pub fn resource_path(&self) -> String {
        match self.subresource {
            Some(s) => format!("{}/{s}", self.resource),
            None => self.resource.to_string(),
        }
    }

    /// `verb resource.group[/sub]` as a reader would type it for `kubectl auth can-i`.
    pub fn describe(&self) -> String {
        let mut r = self.resource.to_string();
        if !self.group.is_empty() {
            r = format!("{r}.{}", self.group);
        }
        if let Some(s) = self.subresource {
            r = format!("{r}/{s}");
        }
        r = format!("{} {r}", self.verb);
        match self.scope {
            Scope::Cluster => r,
            Scope::Run => format!("{r} (in the run's namespace)"),
            Scope::KubeSystem => format!("{r} (in kube-system)"),
        }
    }
}

/// Everything a run does, one verb at a time.
pub const PERMISSIONS: &[Permission] = &[
    Permission::new("", "nodes", "list", Scope::Cluster),
    Permission::new("", "namespaces", "create", Scope::Cluster),
    Permission::new("", "namespaces", "delete", Scope::Cluster),
    Permission::new("", "namespaces", "get", Scope::Cluster),
    Permission::new("", "namespaces", "list", Scope::Cluster),
    Permission::new("", "namespaces", "watch", Scope::Cluster),
    Permission::new("", "namespaces", "patch", Scope::Cluster),
    Permission::new("", "pods", "get", Scope::Run),
    Permission::new("", "pods", "list", Scope::Run),
    Permission::new("", "pods", "watch", Scope::Run),
    Permission::new("", "pods", "create", Scope::Run),
    Permission::new("", "pods", "patch", Scope::Run),
    Permission::new("", "pods", "delete", Scope::Run),
    Permission {
        group: "",
        resource: "pods",
        subresource: Some("exec"),
        verb: "create",
        scope: Scope::Run,
    },
    Permission {
        group: "",
        resource: "pods",
        subresource: Some("exec"),
        verb: "get",
        scope: Scope::Run,
    },
    Permission::new("", "services", "create", Scope::Run),
    Permission::new("", "services", "get", Scope::Run),
    Permission::new("", "services", "list", Scope::Run),
    Permission::new("", "services", "patch", Scope::Run),
    Permission::new("", "services", "delete", Scope::Run),
    Permission::new("apps", "deployments", "create", Scope::Run),
    Permission::new("apps", "deployments", "get", Scope::Run),
    Permission::new("apps", "deployments", "list", Scope::Run),
    Permission::new("apps", "deployments", "watch", Scope::Run),
    Permission::new("apps", "deployments", "patch", Scope::Run),
    Permission::new("apps", "deployments", "delete", Scope::Run),
    Permission::new("discovery.k8s.io", "endpointslices", "create", Scope::Run),
    Permission::new("discovery.k8s.io", "endpointslices", "list", Scope::Run),
    Permission::new("discovery.k8s.io", "endpointslices", "patch", Scope::Run),
    Permission::new("discovery.k8s.io", "endpointslices", "delete", Scope::Run),
    Permission::new("networking.k8s.io", "networkpolicies", "create", Scope::Run),
    Permission::new("networking.k8s.io", "networkpolicies", "list", Scope::Run),
    Permission::new("networking.k8s.io", "networkpolicies", "patch", Scope::Run),
    Permission::new("networking.k8s.io", "networkpolicies", "delete", Scope::Run),
    Permission::new("apps", "daemonsets", "list", Scope::KubeSystem),
    Permission::new("", "configmaps", "get", Scope::KubeSystem),
];

/// Reading the pre-created namespace itself (`--namespace`): its Pod Security level. A
/// RoleBinding in that namespace can grant it (RBAC treats a namespace's own name as the
/// namespace of the request).
pub const GIVEN_NAMESPACE_GET: Permission = Permission::new("", "namespaces", "get", Scope::Run);

/// What a run needs: [`PERMISSIONS`]; in a namespace created beforehand (`given`), none
/// of the cluster-wide namespace verbs, only [`GIVEN_NAMESPACE_GET`] in it.
pub fn needed(given: bool) -> Vec<Permission> {
    if !given {
        return PERMISSIONS.to_vec();
    }
    PERMISSIONS
        .iter()
        .filter(|p| !(p.resource == "namespaces" && p.scope == Scope::Cluster))
        .copied()
        .chain([GIVEN_NAMESPACE_GET])
        .collect()
}

/// The SelfSubjectAccessReview asking for `p` (`namespace` is the run's).
pub fn review(p: &Permission, namespace: &str) -> SelfSubjectAccessReview {
    SelfSubjectAccessReview {
        metadata: ObjectMeta::default(),
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                group: Some(p.group.into()),
                resource: Some(p.resource.into()),
                subresource: p.subresource.map(Into::into),
                verb: Some(p.verb.into()),
                namespace: match p.scope {
                    Scope::Cluster => None,
                    Scope::Run => Some(namespace.into()),
                    Scope::KubeSystem => Some("kube-system".into()),
                },
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        status: None,
    }
}

/// Name of the rendered ClusterRole and its binding.
pub const ROLE_NAME: &str = "cnibench";

fn role_meta() -> ObjectMeta {
    ObjectMeta {
        name: Some(ROLE_NAME.into()),
        labels: Some(BTreeMap::from([(
            MANAGED_BY.to_string(),
            MANAGER.to_string(),
        )])),
        ..ObjectMeta::default()
    }
}

/// The ClusterRole granting [`PERMISSIONS`] (one rule per group and resource). Cluster-wide
/// because the run's namespace does not exist before the run creates it.
pub fn cluster_role() -> ClusterRole {
    let mut rules: BTreeMap<(&str, String), Vec<String>> = BTreeMap::new();
    for p in PERMISSIONS {
        let verbs = rules.entry((p.group, p.resource_path())).or_default();
        if !verbs.iter().any(|v| v == p.verb) {
            verbs.push(p.verb.into());
        }
    }
    ClusterRole {
        metadata: role_meta(),
        rules: Some(
            rules
                .into_iter()
                .map(|((group, resource), mut verbs)| {
                    verbs.sort();
                    PolicyRule {
                        api_groups: Some(vec![group.into()]),
                        resources: Some(vec![resource]),
                        verbs,
                        ..PolicyRule::default()
                    }
                })
                .collect(),
        ),
        ..ClusterRole::default()
    }
}

/// A binding of [`cluster_role`] to user `user`.
pub fn cluster_role_binding(user: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: role_meta(),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: ROLE_NAME.into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "User".into(),
            name: user.into(),
            namespace: None,
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_covers_every_permission() {
        let role = cluster_role();
        let rules = role.rules.unwrap();
        for p in PERMISSIONS {
            let res = p.resource_path();
            assert!(
                rules
                    .iter()
                    .any(|r| r.api_groups.as_ref().unwrap()[0] == p.group
                        && r.resources.as_ref().unwrap()[0] == res
                        && r.verbs.iter().any(|v| v == p.verb)),
                "{}",
                p.describe()
            );
        }
    }

    #[test]
    fn descriptions_name_verb_and_resource() {
        let exec = PERMISSIONS
            .iter()
            .find(|p| p.subresource.is_some())
            .unwrap();
        assert_eq!(exec.describe(), "create pods/exec (in the run's namespace)");
        let d = PERMISSIONS
            .iter()
            .find(|p| p.resource == "deployments")
            .unwrap();
        assert_eq!(
            d.describe(),
            "create deployments.apps (in the run's namespace)"
        );
        let r = review(exec, "cnibench-x");
        let a = r.spec.resource_attributes.unwrap();
        assert_eq!(a.namespace.as_deref(), Some("cnibench-x"));
        assert_eq!(a.subresource.as_deref(), Some("exec"));
    }
}
