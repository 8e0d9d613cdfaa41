//! The Kubernetes backend's building blocks (kube-rs, k8s-openapi):
//!
//! - [`objects`]: the typed objects of a point, built by pure functions;
//! - [`rbac`]: the permissions a run needs (preflight reviews, `manifests/rbac.yaml`);
//! - [`render`]: `cnibench render`, the objects as YAML files;
//! - [`sample`]: which points `cnibench render --sample` writes (what manifests/ holds);
//! - [`reconcile`]: what changes between consecutive points (shared by the backend and
//!   its request-count model);
//! - [`cluster`]: API requests with retries and bounded concurrency, watches, exec;
//! - [`preflight`]: reachability, RBAC, nodes, CNI and kube-proxy detection;
//! - [`backend`]: the [`crate::backend::Backend`] implementation and `clean`.

pub mod backend;
pub mod cluster;
pub mod objects;
pub mod preflight;
pub mod rbac;
pub mod reconcile;
pub mod render;
pub mod sample;
