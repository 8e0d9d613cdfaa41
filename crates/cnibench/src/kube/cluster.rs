//! Talking to the API server: creates with retries and bounded concurrency, readiness and
//! deletion awaited with watches, exec behind the [`Exec`] trait.
//!
//! Every wait is a watch (`kube::runtime::wait::await_condition`) raced against a timeout
//! and the Ctrl-C flag; nothing polls the API on a timer. Retries (HTTP 429 and 5xx,
//! connection errors) back off exponentially for a bounded number of attempts. A 409 on a
//! retried create means an earlier attempt landed (its response was lost): that is success.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ::kube::api::{Api, AttachParams, DeleteParams, Patch, PatchParams, PostParams};
use ::kube::runtime::wait::{Condition, await_condition, conditions};
use ::kube::{Client, Resource, ResourceExt};
use futures::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::Cancel;

/// Failures of the kube backend.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// An API request failed (after retries, where retrying made sense).
    #[error("{action}: {source}")]
    Api {
        /// What was being done.
        action: String,
        /// The cause.
        #[source]
        source: ::kube::Error,
    },
    /// An object that must be new already exists.
    #[error("{what} already exists{hint}")]
    AlreadyExists {
        /// The object.
        what: String,
        /// How to get rid of it.
        hint: String,
    },
    /// The credentials lack permissions the run needs.
    #[error(
        "missing permissions: {}; grant them (manifests/rbac.yaml has a ClusterRole with all of them)",
        .0.join(", ")
    )]
    Forbidden(Vec<String>),
    /// Something did not happen in time.
    #[error("{what}: not done within {seconds} s{detail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The limit.
        seconds: u64,
        /// What was seen last.
        detail: String,
    },
    /// Ctrl-C.
    #[error("cancelled")]
    Cancelled,
    /// The kubeconfig could not be loaded.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// The cluster cannot run the suite (nodes, ...).
    #[error("preflight: {0}")]
    Preflight(String),
    /// An exec into a pod failed to run (not: the command exited non-zero).
    #[error("exec in pod {pod}: {message}")]
    Exec {
        /// The pod.
        pod: String,
        /// What went wrong.
        message: String,
    },
}

/// Concurrency, retry and timeout settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Most create requests in flight at once.
    pub concurrency: usize,
    /// Attempts per request (first included) on 429, 5xx and connection errors.
    pub attempts: u32,
    /// First backoff; doubled per attempt up to 8 s.
    pub backoff: Duration,
    /// Time for a point's objects to become ready, plus [`Tuning::ready_per_pod`] per pod.
    pub ready_timeout: Duration,
    /// Extra readiness time per pod (filler and replica pods).
    pub ready_per_pod: Duration,
    /// Time for a namespace to be gone after its delete.
    pub delete_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            concurrency: 32,
            attempts: 6,
            backoff: Duration::from_millis(250),
            ready_timeout: Duration::from_secs(300),
            ready_per_pod: Duration::from_millis(100),
            delete_timeout: Duration::from_secs(900),
        }
    }
}

impl Tuning {
    fn backoff(&self, attempt: u32) -> Duration {
        (self.backoff * 2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
            .min(Duration::from_secs(8))
    }
}

/// Whether a failed request may succeed when sent again.
pub fn retryable(e: &::kube::Error) -> bool {
    match e {
        ::kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) => true,
        _ => false,
    }
}

fn api_err(action: impl Into<String>) -> impl FnOnce(::kube::Error) -> KubeError {
    let action = action.into();
    move |source| KubeError::Api { action, source }
}

/// Runs `f` until it succeeds, fails for good, or `t.attempts` are spent. Returns the
/// result and the number of attempts made.
pub async fn retry<T, F, Fut>(t: &Tuning, mut f: F) -> (Result<T, ::kube::Error>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            // Only the last attempt's error is reported: transient 429s under load are
            // expected and not worth a line each at 10k objects.
            Err(e) if retryable(&e) && attempt < t.attempts => {
                tokio::time::sleep(t.backoff(attempt)).await;
            }
            r => return (r, attempt),
        }
    }
}

fn kind_name<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!(
        "{} {}",
        K::kind(&()),
        obj.meta().name.as_deref().unwrap_or("?")
    )
}

/// Creates `obj` through `api`, retrying; returns what the server stored.
pub async fn create<K>(api: &Api<K>, obj: &K, t: &Tuning) -> Result<Option<K>, KubeError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let pp = PostParams::default();
    let (r, attempts) = retry(t, || api.create(&pp, obj)).await;
    match r {
        Ok(k) => Ok(Some(k)),
        // An earlier attempt landed and only its answer was lost.
        Err(::kube::Error::Api(s)) if s.code == 409 && attempts > 1 => Ok(None),
        Err(::kube::Error::Api(s)) if s.code == 409 => Err(KubeError::AlreadyExists {
            what: kind_name(obj),
            hint: String::new(),
        }),
        Err(e) => Err(api_err(format!("create {}", kind_name(obj)))(e)),
    }
}

/// The most requests seen in flight at once by [`create_all`] (for tests and the log).
#[derive(Debug, Default)]
pub struct InFlight {
    now: AtomicUsize,
    /// The maximum observed.
    pub max: AtomicUsize,
}

impl InFlight {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `f` on every item, at most `concurrency` at once, stopping at the first error.
async fn bounded_each<'a, T, F, Fut>(
    items: &'a [T],
    concurrency: usize,
    f: F,
) -> Result<(), KubeError>
where
    F: Fn(&'a T) -> Fut,
    Fut: Future<Output = Result<(), KubeError>>,
{
    futures::stream::iter(items)
        .map(f)
        .buffer_unordered(concurrency.max(1))
        .try_for_each(|()| futures::future::ready(Ok(())))
        .await
}

/// Creates every object of `objs` in `namespace`, at most `t.concurrency` at once,
/// stopping at the first failure or at Ctrl-C (no new request starts once it is seen).
pub async fn create_all<K>(
    client: &Client,
    namespace: &str,
    objs: &[K],
    t: &Tuning,
    cancel: &Cancel,
    bar: &ProgressBar,
    in_flight: &InFlight,
) -> Result<(), KubeError>
where
    K: Resource<DynamicType = (), Scope = ::kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    bounded_each(objs, t.concurrency, |obj| {
        let api = &api;
        async move {
            if cancel.is_cancelled() {
                return Err(KubeError::Cancelled);
            }
            in_flight.enter();
            let r = create(api, obj, t).await;
            in_flight.leave();
            r.map(|_| bar.inc(1))
        }
    })
    .await
}

/// Deletes the named objects of kind `K` in `namespace`, at most `t.concurrency` at once
/// (a 404 counts as deleted).
pub async fn delete_all<K>(
    client: &Client,
    namespace: &str,
    names: &[String],
    t: &Tuning,
    bar: &ProgressBar,
) -> Result<(), KubeError>
where
    K: Resource<DynamicType = (), Scope = ::kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let dp = DeleteParams::background();
    bounded_each(names, t.concurrency, |name| {
        let (api, dp) = (&api, &dp);
        async move {
            let (r, _) = retry(t, || api.delete(name, dp)).await;
            match r {
                Ok(_) => {}
                Err(::kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(api_err(format!("delete {} {name}", K::kind(&())))(e)),
            }
            bar.inc(1);
            Ok(())
        }
    })
    .await
}

/// Resolves when `cancel` is set (checked every 100 ms: the flag is an atomic that a
/// signal handler sets, there is nothing to watch).
pub async fn cancelled(cancel: &Cancel) {
    while !cancel.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `fut` with a time limit and Ctrl-C.
pub async fn bounded<T>(
    what: &str,
    limit: Duration,
    cancel: &Cancel,
    fut: impl Future<Output = Result<T, KubeError>>,
) -> Result<T, KubeError> {
    tokio::select! {
        r = tokio::time::timeout(limit, fut) => r.unwrap_or_else(|_| Err(KubeError::Timeout {
            what: what.into(),
            seconds: limit.as_secs(),
            detail: String::new(),
        })),
        () = cancelled(cancel) => Err(KubeError::Cancelled),
    }
}

/// Waits (watching) until the named object satisfies `cond`; returns it.
pub async fn await_ready<K>(
    api: Api<K>,
    name: &str,
    cond: impl Condition<K>,
) -> Result<K, KubeError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let what = format!("{} {name}", K::kind(&()));
    match await_condition(api, name, cond).await {
        Ok(Some(k)) => Ok(k),
        Ok(None) => Err(KubeError::Preflight(format!(
            "{what} disappeared while awaited"
        ))),
        Err(e) => Err(KubeError::Exec {
            pod: what,
            message: format!("watch failed: {e}"),
        }),
    }
}

/// Deletes namespace `name` (if it exists) and waits until it is gone; `bar` ticks while
/// waiting.
pub async fn delete_namespace(
    client: &Client,
    name: &str,
    t: &Tuning,
    bar: &ProgressBar,
) -> Result<(), KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    bar.set_message(format!("deleting namespace {name}"));
    delete_and_wait(&api, name, &DeleteParams::background(), t).await
}

/// Deletes `name` through `api` with `dp` (a 404 counts as deleted) and waits, watching,
/// until it is gone (with foreground propagation: until its dependents are gone too).
pub async fn delete_and_wait<K>(
    api: &Api<K>,
    name: &str,
    dp: &DeleteParams,
    t: &Tuning,
) -> Result<(), KubeError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let kind = K::kind(&());
    let (r, _) = retry(t, || api.delete(name, dp)).await;
    let uid = match r {
        Ok(either) => either.left().and_then(|o| o.uid()),
        Err(::kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(e) => return Err(api_err(format!("delete {kind} {name}"))(e)),
    };
    let gone = async {
        match &uid {
            Some(uid) => await_condition(api.clone(), name, conditions::is_deleted(uid)).await,
            None => await_condition(api.clone(), name, |o: Option<&K>| o.is_none()).await,
        }
        .map(|_| ())
        .map_err(|e| KubeError::Exec {
            pod: format!("{kind} {name}"),
            message: format!("watch failed: {e}"),
        })
    };
    // Deletion is awaited even after Ctrl-C: leaving is what Ctrl-C asked for. Boxed: a
    // watch's future is large.
    Box::pin(bounded(
        &format!("deletion of {kind} {name}"),
        t.delete_timeout,
        &Cancel::default(),
        gone,
    ))
    .await
}

/// Sets `name`'s `spec.replicas` to `replicas` (a merge patch, retried).
pub async fn scale(
    api: &Api<Deployment>,
    name: &str,
    replicas: i32,
    t: &Tuning,
) -> Result<(), KubeError> {
    let patch = Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}}));
    let pp = PatchParams::default();
    let (r, _) = retry(t, || api.patch(name, &pp, &patch)).await;
    r.map(|_| ())
        .map_err(api_err(format!("scale Deployment {name} to {replicas}")))
}

/// Sets namespace `ns`'s labels and annotations to `want`'s (a merge patch, retried).
pub async fn patch_namespace(
    client: &Client,
    ns: &str,
    want: &Namespace,
    t: &Tuning,
) -> Result<(), KubeError> {
    let api: Api<Namespace> = Api::all(client.clone());
    let patch = Patch::Merge(serde_json::json!({"metadata": {
        "labels": want.metadata.labels,
        "annotations": want.metadata.annotations,
    }}));
    let pp = PatchParams::default();
    let (r, _) = retry(t, || api.patch(ns, &pp, &patch)).await;
    r.map(|_| ())
        .map_err(api_err(format!("patch namespace {ns}")))
}

/// What an exec'd command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// True when the command exited 0.
    pub success: bool,
    /// The API server's account of the exit (e.g. `NonZeroExitCode: ... 1`).
    pub status: String,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A boxed future, as trait objects return them.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs a command in a pod's container. The real implementation ([`KubeExec`]) speaks the
/// exec subresource over a WebSocket upgrade, which a tower-test mock cannot serve; tests
/// substitute this trait.
pub trait Exec: Send + Sync {
    /// Runs `command` in container `netload` of `pod` in `namespace`.
    fn exec<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        command: Vec<String>,
    ) -> BoxFuture<'a, Result<ExecOutput, KubeError>>;
}

/// [`Exec`] through the API server's `pods/exec`.
#[derive(Clone)]
pub struct KubeExec {
    /// The client.
    pub client: Client,
}

impl Exec for KubeExec {
    fn exec<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        command: Vec<String>,
    ) -> BoxFuture<'a, Result<ExecOutput, KubeError>> {
        Box::pin(async move {
            use tokio::io::AsyncReadExt;
            let err = |message: String| KubeError::Exec {
                pod: pod.into(),
                message,
            };
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let ap = AttachParams::default()
                .container("netload")
                .stdin(false)
                .stdout(true)
                .stderr(true);
            let mut p = api
                .exec(pod, command, &ap)
                .await
                .map_err(|e| err(e.to_string()))?;
            let mut out_r = p.stdout().ok_or_else(|| err("no stdout".into()))?;
            let mut err_r = p.stderr().ok_or_else(|| err("no stderr".into()))?;
            let status = p.take_status().ok_or_else(|| err("no status".into()))?;
            let (mut out, mut errb) = (Vec::new(), Vec::new());
            let (a, b) = tokio::join!(out_r.read_to_end(&mut out), err_r.read_to_end(&mut errb));
            a.and(b).map_err(|e| err(e.to_string()))?;
            let status = status.await;
            p.join().await.map_err(|e| err(e.to_string()))?;
            let success = status
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some_and(|s| s == "Success");
            Ok(ExecOutput {
                success,
                status: status.map_or_else(
                    || "no status".into(),
                    |s| {
                        format!(
                            "{}: {}",
                            s.reason.unwrap_or_default(),
                            s.message.unwrap_or_default()
                        )
                    },
                ),
                stdout: String::from_utf8_lossy(&out).into_owned(),
                stderr: String::from_utf8_lossy(&errb).into_owned(),
            })
        })
    }
}

/// A shareable [`Exec`].
pub type SharedExec = Arc<dyn Exec>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let t = Tuning::default();
        assert_eq!(t.backoff(1), Duration::from_millis(250));
        assert_eq!(t.backoff(2), Duration::from_millis(500));
        assert_eq!(t.backoff(30), Duration::from_secs(8));
    }

    #[test]
    fn what_is_retried() {
        let status = |code| {
            ::kube::Error::Api(Box::new(::kube::core::Status {
                code,
                ..Default::default()
            }))
        };
        assert!(retryable(&status(429)));
        assert!(retryable(&status(503)));
        assert!(!retryable(&status(403)));
        assert!(!retryable(&status(409)));
    }
}
