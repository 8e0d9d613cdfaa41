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
//! - [`driver`]: the async core: reconcile, readiness, exec, teardown, `clean`;
//! - [`estimate`]: API requests and seconds per point, for `cnibench plan`;
//! - [`adapter`]: the [`crate::backend::Backend`] implementation over the driver.

pub mod adapter;
pub mod cluster;
pub mod driver;
pub mod estimate;
pub mod objects;
pub mod preflight;
pub mod rbac;
pub mod reconcile;
pub mod render;
pub mod sample;
