//! The kube backend: every point in the run's namespace on a real cluster.
//!
//! The namespace lives for the whole run. Per point, [`Driver::prepare`] reconciles it to
//! the point's objects ([`super::objects`], [`super::reconcile`]): the first point creates
//! the namespace; every point then creates what is missing and deletes what is surplus
//! (bulk objects with bounded concurrency), keeps the server and client when their specs
//! are identical, scales Deployments whose replica count alone differs with a patch and
//! replaces the others; then it watches until the server replicas, the client pod and the
//! fillers are ready. Each repetition execs the netload client in the client pod and
//! parses its `--json` like the other backends. [`Driver::end_point`] keeps the objects
//! for the next point, unless the point's state is unknown (a failed or cancelled
//! prepare, a readiness timeout) or Ctrl-C was pressed: then, and at the end of the run
//! ([`KubeBackend::finish`], also on drop), [`Driver::teardown`] deletes the namespace
//! and waits until it is gone.
//!
//! [`KubeBackend`] wraps the async [`Driver`] in its own tokio runtime for the synchronous
//! [`Backend`] trait.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::kube::config::{KubeConfigOptions, Kubeconfig};
use ::kube::{Client, Config};

use super::cluster::{self, KubeError, KubeExec, Tuning};
use super::driver::{Driver, Enforcement, Prepared};
use super::estimate::{finish_estimate, setup_estimate};
use super::objects::{self, ServiceMode};
use super::preflight;
use crate::backend::tool::netload::client_outcome;
use crate::backend::tool::proc::tail;
use crate::backend::{
    Backend, BackendError, Cancel, NoProgress, Readiness, RepOutcome, SetupProgress,
};
use crate::scenario::{Placement, Point};

/// The run-wide choices of `cnibench run --backend kube`.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeOptions {
    /// Kubeconfig file (default: `KUBECONFIG`, `~/.kube/config`, in-cluster).
    pub kubeconfig: Option<PathBuf>,
    /// Context of the kubeconfig (default: its current context).
    pub context: Option<String>,
    /// The netload image.
    pub image: String,
    /// Filler service flavour.
    pub service_mode: ServiceMode,
    /// Nodes to use (server first); empty: chosen by the preflight.
    pub nodes: Vec<String>,
    /// A namespace created beforehand to run in (`--namespace`); `None`: the run creates
    /// its own, `cnibench-<run id>`.
    pub namespace: Option<String>,
    /// Concurrency, retries, timeouts.
    pub tuning: Tuning,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            kubeconfig: None,
            context: None,
            image: objects::default_image(),
            service_mode: ServiceMode::default(),
            nodes: Vec::new(),
            namespace: None,
            tuning: Tuning::default(),
        }
    }
}

/// A client from the kubeconfig (`path` or the usual places, `context` or the current
/// one; in a pod, its service account). Returns the client and the context's name.
pub async fn connect(
    path: Option<&Path>,
    context: Option<&str>,
) -> Result<(Client, String), KubeError> {
    let opts = KubeConfigOptions {
        context: context.map(Into::into),
        ..KubeConfigOptions::default()
    };
    let (config, current) = match path {
        Some(p) => {
            let kc = Kubeconfig::read_from(p)
                .map_err(|e| KubeError::Config(format!("{}: {e}", p.display())))?;
            let current = kc.current_context.clone();
            (Config::from_custom_kubeconfig(kc, &opts).await, current)
        }
        None if context.is_some() => (Config::from_kubeconfig(&opts).await, None),
        None => {
            return connect_inferred().await;
        }
    };
    let config = config.map_err(|e| KubeError::Config(e.to_string()))?;
    // The context's name, as kubectl shows it (meta.json `kube_context`).
    let name = context
        .map(ToString::to_string)
        .or(current)
        .unwrap_or_else(|| config.cluster_url.to_string());
    Ok((client_of(config)?, name))
}

/// A client for `config` whose 429s keep their Retry-After ([`cluster::RetryAfterLayer`]).
pub fn client_of(config: Config) -> Result<Client, KubeError> {
    Ok(::kube::client::ClientBuilder::try_from(config)
        .map_err(|e| KubeError::Config(e.to_string()))?
        .with_layer(&cluster::RetryAfterLayer)
        .build())
}

async fn connect_inferred() -> Result<(Client, String), KubeError> {
    let config = Config::infer().await.map_err(|e| {
        KubeError::Config(format!(
            "no cluster found: neither KUBECONFIG nor ~/.kube/config nor a pod's service account \
             ({e}); name a kubeconfig with --kubeconfig"
        ))
    })?;
    // Config::infer reads the kubeconfig first and falls back to the pod's account.
    let name = Kubeconfig::read()
        .ok()
        .and_then(|k| k.current_context)
        .unwrap_or_else(|| format!("in-cluster ({})", config.cluster_url));
    Ok((client_of(config)?, name))
}

fn backend_err(e: KubeError) -> BackendError {
    match e {
        KubeError::Cancelled => BackendError::Cancelled,
        e => BackendError::Kube(e.to_string()),
    }
}

/// The kube backend ([`Backend`] over [`Driver`]).
pub struct KubeBackend {
    rt: tokio::runtime::Runtime,
    driver: Driver,
    context: String,
    state: Option<Prepared>,
    /// Objects may exist in the cluster (set before reconciling, cleared by a teardown).
    dirty: bool,
    /// Where the run loop shows setup steps.
    steps: Arc<dyn SetupProgress>,
}

impl Drop for KubeBackend {
    /// The end of the run (the namespace outlives its points) and a guard for paths that
    /// skip `teardown`: the namespace is deleted before the process ends.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl std::fmt::Debug for KubeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeBackend")
            .field("driver", &self.driver)
            .field("prepared", &self.state)
            .finish_non_exhaustive()
    }
}

/// A runtime for the backend's async work (two workers: the exec streams and the watches
/// are I/O-bound).
pub fn runtime() -> Result<tokio::runtime::Runtime, KubeError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| KubeError::Config(format!("cannot start the async runtime: {e}")))
}

impl KubeBackend {
    /// Connects with `opts`, runs the preflight and returns the backend for cnibench run
    /// `run_id`; `cancel` is the run's Ctrl-C flag.
    pub fn connect(opts: &KubeOptions, run_id: &str, cancel: Cancel) -> Result<Self, KubeError> {
        let rt = runtime()?;
        let run = objects::kube_run_id(run_id);
        let (driver, context) = rt.block_on(async {
            let (client, context) =
                connect(opts.kubeconfig.as_deref(), opts.context.as_deref()).await?;
            let ns = opts
                .namespace
                .clone()
                .unwrap_or_else(|| objects::namespace_name(&run));
            let given = opts.namespace.is_some();
            let info = preflight::preflight(&client, &ns, given, &opts.nodes, &opts.tuning).await?;
            let driver = Driver {
                exec: Arc::new(KubeExec {
                    client: client.clone(),
                }),
                client,
                run,
                image: opts.image.clone(),
                service_mode: opts.service_mode,
                info,
                tuning: opts.tuning.clone(),
                cancel,
                progress: true,
                in_flight: Arc::default(),
                held: Mutex::default(),
            };
            Ok::<_, KubeError>((driver, context))
        })?;
        Ok(KubeBackend::with_driver(rt, driver, context))
    }

    /// A backend over an existing driver (tests build one on a mocked client).
    pub fn with_driver(rt: tokio::runtime::Runtime, driver: Driver, context: String) -> Self {
        KubeBackend {
            rt,
            driver,
            context,
            state: None,
            dirty: false,
            steps: Arc::new(NoProgress),
        }
    }

    /// The backend's runtime (tests run a mocked API server on it).
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// The driver.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// Ends the run: deletes the namespace and what it holds (also done on drop).
    pub fn finish(&mut self) -> Result<(), BackendError> {
        self.state = None;
        if self.dirty {
            self.rt
                .block_on(Box::pin(self.driver.teardown(&*self.steps)))
                .map_err(backend_err)?;
            self.dirty = false;
        }
        Ok(())
    }
}

impl Backend for KubeBackend {
    fn name(&self) -> &'static str {
        "kube"
    }

    fn tools(&self) -> BTreeMap<String, String> {
        let d = &self.driver;
        let mut t = d.info.to_tools();
        t.insert("kube_context".into(), self.context.clone());
        t.insert("kube_image".into(), d.image.clone());
        t.insert("kube_namespace".into(), d.namespace());
        t.insert("kube_service_mode".into(), d.service_mode.as_str().into());
        t.insert("kube_concurrency".into(), d.tuning.concurrency.to_string());
        t.insert("netload".into(), format!("image {}", d.image));
        t
    }

    fn setup_estimate(&self, previous: Option<&Point>, point: &Point) -> Duration {
        setup_estimate(previous, point, self.driver.service_mode)
    }

    fn finish_estimate(&self, last: Option<&Point>) -> Duration {
        finish_estimate(last, self.driver.service_mode)
    }

    fn rep_overhead(&self) -> Duration {
        // One exec: a WebSocket upgrade through the API server and kubelet.
        Duration::from_millis(300)
    }

    fn applicability(&self, point: &Point) -> Readiness {
        self.driver.applicability(point)
    }

    fn prepare(&mut self, point: &Point) -> Result<Readiness, BackendError> {
        self.state = None;
        if let r @ Readiness::NotApplicable(_) = self.applicability(point) {
            return Ok(r);
        }
        self.dirty = true;
        let p = self
            .rt
            .block_on(Box::pin(self.driver.prepare(point, &*self.steps)))
            .map_err(backend_err)?;
        if let Some(Enforcement::NotEnforced(probe)) = &p.datapath.policies {
            return Ok(Readiness::NotEnforced(format!(
                "the CNI let a pod that no NetworkPolicy admits reach the server ({probe}); \
                 measuring would time a datapath without policies"
            )));
        }
        self.state = Some(p);
        Ok(Readiness::Ready)
    }

    fn run_rep(
        &mut self,
        point: &Point,
        _rep: u32,
        cancel: &Cancel,
    ) -> Result<RepOutcome, BackendError> {
        let Some(p) = &self.state else {
            return Err(BackendError::NotSupported {
                what: point.id.clone(),
                reason: "the point was not prepared".into(),
            });
        };
        let out = self
            .rt
            .block_on(self.driver.run_rep(point, p, cancel))
            .map_err(backend_err)?;
        let tool = "netload (exec in the client pod)";
        if !out.success {
            return Err(BackendError::Tool {
                tool: tool.into(),
                status: out.status,
                stderr: tail(&out.stderr),
            });
        }
        let RepOutcome { metrics, mut raw } =
            client_outcome(tool, &out.stdout, &out.stderr, point)?;
        if let Some(obj) = raw.as_object_mut() {
            let nodes = &self.driver.info.nodes;
            let server = nodes.first().cloned().unwrap_or_default();
            let client = match (point.topology.placement, nodes.get(1)) {
                (Placement::Inter, Some(c)) => c.clone(),
                _ => server.clone(),
            };
            obj.insert(
                "cnibench_kube".into(),
                serde_json::json!({
                    "namespace": self.driver.namespace(),
                    "server_node": server,
                    "client_node": client,
                    "dest": p.dest,
                    "objects": p.objects,
                    "datapath": p.datapath.to_json(),
                }),
            );
        }
        Ok(RepOutcome { metrics, raw })
    }

    /// Keeps the objects for the next point (see [`Driver::end_point`]); the namespace
    /// goes at [`KubeBackend::finish`].
    fn teardown(&mut self, _point: &Point) -> Result<(), BackendError> {
        self.state = None;
        self.rt
            .block_on(Box::pin(self.driver.end_point(&*self.steps)))
            .map_err(backend_err)?;
        self.dirty = self.driver.holds();
        Ok(())
    }

    fn set_setup_progress(&mut self, progress: Arc<dyn SetupProgress>) {
        self.steps = progress;
    }
}
