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
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use ::kube::api::{Api, AttachParams, DeleteParams, Patch, PatchParams, PostParams};
use ::kube::runtime::wait::{Condition, await_condition, conditions};
use ::kube::{Client, Resource, ResourceExt};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::backend::{Cancel, Step};

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
    /// A pod of the point cannot start (missing image, wrong architecture, crash loop).
    #[error("pod {pod} on node {node} cannot start: {reason}")]
    PodFailed {
        /// The pod.
        pod: String,
        /// Its node.
        node: String,
        /// The reason from its status.
        reason: String,
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
    /// The measured address never answered the client (`netload probe`'s account).
    #[error("the datapath is not ready: {what}: {probe}")]
    Datapath {
        /// What was probed.
        what: String,
        /// What the probe saw.
        probe: String,
    },
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
    /// First backoff; doubled per attempt up to 8 s (a server's Retry-After wins).
    pub backoff: Duration,
    /// Retries a bulk operation may spend in all, whatever its size.
    pub retry_budget_base: u64,
    /// Further retries per 100 objects of a bulk operation: the budget grows with the
    /// scale, so one transient failure among 20 000 objects is retried, while a server
    /// that refuses everything ends the operation after a bounded number of tries.
    pub retry_budget_per_100: u64,
    /// Time for a point's objects to become ready, plus [`Tuning::ready_per_pod`] per pod.
    pub ready_timeout: Duration,
    /// Extra readiness time per pod (filler and replica pods).
    pub ready_per_pod: Duration,
    /// Time for a namespace to be gone after its delete.
    pub delete_timeout: Duration,
    /// Time for the datapath to be ready once the pods are: the measured address to
    /// answer the client (a Service VIP is programmed after its endpoints are ready;
    /// kube-proxy's iptables sync of 10 000 Services takes tens of seconds), and the
    /// policies to turn the outsider away (they are programmed asynchronously too).
    pub datapath_timeout: Duration,
    /// Retries seen (shared by the clones of this value: one run, one count).
    pub retries: Arc<RetryStats>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            concurrency: 32,
            attempts: 10,
            backoff: Duration::from_millis(250),
            retry_budget_base: 50,
            retry_budget_per_100: 10,
            ready_timeout: Duration::from_secs(300),
            ready_per_pod: Duration::from_millis(100),
            delete_timeout: Duration::from_secs(900),
            datapath_timeout: Duration::from_secs(120),
            retries: Arc::default(),
        }
    }
}

/// The longest Retry-After honoured: a server asking for more is waited on this long
/// and asked again (the attempts stay bounded).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

impl Tuning {
    fn backoff(&self, attempt: u32) -> Duration {
        (self.backoff * 2u32.saturating_pow(attempt.saturating_sub(1).min(16)))
            .min(Duration::from_secs(8))
    }

    /// The retry budget of a bulk operation over `objects` objects.
    pub fn budget(&self, objects: usize) -> Budget {
        Budget::new(self.retry_budget_base + objects as u64 * self.retry_budget_per_100 / 100)
    }
}

/// Counts of the failures that were retried, per cause (shared through [`Tuning`]).
#[derive(Debug, Default)]
pub struct RetryStats {
    /// HTTP 429 (API Priority and Fairness or max-inflight said "too many requests").
    pub throttled: AtomicU64,
    /// HTTP 5xx and connection errors.
    pub other: AtomicU64,
}

/// Counters are not settings: two [`Tuning`]s are equal whatever they counted.
impl PartialEq for RetryStats {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl RetryStats {
    fn record(&self, e: &::kube::Error) {
        match e {
            ::kube::Error::Api(s) if s.code == 429 => &self.throttled,
            _ => &self.other,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// `(429s, other retried failures)` so far, and resets both.
    pub fn take(&self) -> (u64, u64) {
        (
            self.throttled.swap(0, Ordering::Relaxed),
            self.other.swap(0, Ordering::Relaxed),
        )
    }

    /// `(429s, other retried failures)` so far.
    pub fn get(&self) -> (u64, u64) {
        (
            self.throttled.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed),
        )
    }
}

/// Retries left to one bulk operation, shared by its requests.
#[derive(Debug)]
pub struct Budget {
    size: u64,
    left: AtomicU64,
}

impl Budget {
    /// A budget of `size` retries.
    pub fn new(size: u64) -> Self {
        Budget {
            size,
            left: AtomicU64::new(size),
        }
    }

    /// Takes one retry; false when none is left.
    fn take(&self) -> bool {
        self.left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| l.checked_sub(1))
            .is_ok()
    }

    /// Whether every retry was spent.
    pub fn spent(&self) -> bool {
        self.left.load(Ordering::SeqCst) == 0
    }
}

/// How long the server asked to wait before the next attempt (`Retry-After`, which
/// [`RetryAfterLayer`] carries into the error's `details.retryAfterSeconds`).
pub fn retry_after(e: &::kube::Error) -> Option<Duration> {
    match e {
        ::kube::Error::Api(s) => s
            .details
            .as_ref()
            .map(|d| d.retry_after_seconds)
            .filter(|&n| n > 0)
            .map(|n| Duration::from_secs(u64::from(n)).min(MAX_RETRY_AFTER)),
        _ => None,
    }
}

/// Whether a failed request may succeed when sent again.
pub fn retryable(e: &::kube::Error) -> bool {
    match e {
        ::kube::Error::Api(s) => {
            s.code == 429
                || s.code >= 500
                // A pod applied right after its namespace: the ServiceAccount admission
                // refuses it until the controller-manager created the namespace's
                // `default` account (moments later).
                || (s.code == 403 && s.message.contains("error looking up service account"))
        }
        ::kube::Error::HyperError(_) | ::kube::Error::Service(_) => true,
        _ => false,
    }
}

fn api_err(action: impl Into<String>) -> impl FnOnce(::kube::Error) -> KubeError {
    let action = action.into();
    move |source| KubeError::Api { action, source }
}

/// A layer of the kube client that keeps a 429's `Retry-After` header: kube-rs turns an
/// error response into its body's `Status` and drops the headers, and the API server's
/// throttling answers (API Priority and Fairness, max-inflight) name the wait only in the
/// header, with a plain-text body. This layer writes it into the body's Status as
/// `details.retryAfterSeconds`, where [`retry_after`] finds it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetryAfterLayer;

impl<S> tower::Layer<S> for RetryAfterLayer {
    type Service = RetryAfterService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RetryAfterService { inner }
    }
}

/// The service of [`RetryAfterLayer`].
#[derive(Debug, Clone)]
pub struct RetryAfterService<S> {
    inner: S,
}

type ClientResponse = http::Response<Box<::kube::client::DynBody>>;

impl<S> tower::Service<http::Request<::kube::client::Body>> for RetryAfterService<S>
where
    S: tower::Service<
            http::Request<::kube::client::Body>,
            Response = ClientResponse,
            Error = tower::BoxError,
        >,
    S::Future: Send + 'static,
{
    type Response = ClientResponse;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<ClientResponse, tower::BoxError>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<::kube::client::Body>) -> Self::Future {
        use http_body_util::BodyExt;
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await?;
            let seconds = (res.status() == http::StatusCode::TOO_MANY_REQUESTS)
                .then(|| res.headers().get(http::header::RETRY_AFTER))
                .flatten()
                .and_then(|v| v.to_str().ok()?.trim().parse::<u32>().ok());
            let Some(seconds) = seconds else {
                return Ok(res);
            };
            let (mut parts, body) = res.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let body = with_retry_after(&bytes, seconds);
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let body = http_body_util::Full::new(bytes::Bytes::from(body))
                .map_err(|never| -> tower::BoxError { match never {} });
            Ok(http::Response::from_parts(parts, Box::new(body) as Box<_>))
        })
    }
}

/// A 429 body with `details.retryAfterSeconds` set to `seconds`: the body's Status when
/// it is one (kept otherwise), else a Status made from its text.
pub fn with_retry_after(body: &[u8], seconds: u32) -> Vec<u8> {
    let mut status: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": String::from_utf8_lossy(body).trim(),
            "reason": "TooManyRequests",
            "code": 429,
        }),
    };
    if let Some(o) = status.as_object_mut() {
        let details = o.entry("details").or_insert_with(|| serde_json::json!({}));
        if let Some(d) = details.as_object_mut() {
            d.insert("retryAfterSeconds".into(), seconds.into());
        }
    }
    serde_json::to_vec(&status).unwrap_or_else(|_| body.to_vec())
}

/// Runs `f` until it succeeds, fails for good, or `t.attempts` are spent. Returns the
/// result and the number of attempts made.
pub async fn retry<T, F, Fut>(t: &Tuning, f: F) -> (Result<T, ::kube::Error>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    retry_within(t, None, f).await
}

/// [`retry`], each retry also taken from `budget` (a bulk operation's): once it is
/// spent, the failure is final. The wait is the server's Retry-After when it sent one,
/// else exponential backoff.
pub async fn retry_within<T, F, Fut>(
    t: &Tuning,
    budget: Option<&Budget>,
    mut f: F,
) -> (Result<T, ::kube::Error>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ::kube::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            // Only the last attempt's error is reported: transient 429s under load are
            // expected and not worth a line each at 10k objects (they are counted).
            Err(e) if retryable(&e) && attempt < t.attempts && budget.is_none_or(Budget::take) => {
                t.retries.record(&e);
                let wait = retry_after(&e).unwrap_or_else(|| t.backoff(attempt));
                tokio::time::sleep(wait).await;
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

/// The field manager of every object cnibench writes (server-side apply).
pub const FIELD_MANAGER: &str = "cnibench";

/// Creates or updates `obj` through `api` with server-side apply (field manager
/// [`FIELD_MANAGER`], conflicts forced: cnibench owns its objects), retrying; returns
/// what the server stored. Applying twice is harmless, so a retried request whose first
/// answer was lost, a resumed run and a re-run never meet a 409.
pub async fn apply<K>(
    api: &Api<K>,
    obj: &K,
    t: &Tuning,
    budget: Option<&Budget>,
) -> Result<K, KubeError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug,
{
    let name = obj.meta().name.clone().unwrap_or_default();
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(obj);
    let (r, _) = retry_within(t, budget, || api.patch(&name, &pp, &patch)).await;
    r.map_err(|e| {
        let action = format!("apply {}", kind_name(obj));
        match budget {
            Some(b) if b.spent() => api_err(format!(
                "{action} (the retry budget of this bulk operation, {} retries, is spent)",
                b.size
            ))(e),
            _ => api_err(action)(e),
        }
    })
}

/// Creates `obj` through `api` (a plain POST, retrying): for objects whose name the
/// server generates or that must not exist yet. A 409 after a retry means an earlier
/// attempt landed; a first-attempt 409 is [`KubeError::AlreadyExists`].
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

/// The most requests seen in flight at once by [`apply_all`] (for tests and the log).
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

/// Applies every object of `objs` in `namespace` ([`apply`]), at most `t.concurrency`
/// at once, sharing one retry budget sized to `objs` ([`Tuning::budget`]), stopping at
/// the first failure or at Ctrl-C (no new request starts once it is seen).
pub async fn apply_all<K>(
    client: &Client,
    namespace: &str,
    objs: &[K],
    t: &Tuning,
    cancel: &Cancel,
    bar: &dyn Step,
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
    let budget = t.budget(objs.len());
    bounded_each(objs, t.concurrency, |obj| {
        let (api, budget) = (&api, &budget);
        async move {
            if cancel.is_cancelled() {
                return Err(KubeError::Cancelled);
            }
            in_flight.enter();
            let r = apply(api, obj, t, Some(budget)).await;
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
    bar: &dyn Step,
) -> Result<(), KubeError>
where
    K: Resource<DynamicType = (), Scope = ::kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let dp = DeleteParams::background();
    let budget = t.budget(names.len());
    bounded_each(names, t.concurrency, |name| {
        let (api, dp, budget) = (&api, &dp, &budget);
        async move {
            let (r, _) = retry_within(t, Some(budget), || api.delete(name, dp)).await;
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
    bar: &dyn Step,
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
    fn retry_after_reaches_the_status() {
        let plain = with_retry_after(b"Too many requests, please try again later.\n", 3);
        let s: ::kube::core::Status = serde_json::from_slice(&plain).unwrap();
        assert_eq!(s.code, 429);
        assert_eq!(s.message, "Too many requests, please try again later.");
        let e = ::kube::Error::Api(Box::new(s));
        assert_eq!(retry_after(&e), Some(Duration::from_secs(3)));
        let json = with_retry_after(br#"{"kind":"Status","code":429,"message":"slow down"}"#, 90);
        let s: ::kube::core::Status = serde_json::from_slice(&json).unwrap();
        assert_eq!(s.message, "slow down");
        // Capped: a server asking for minutes is asked again sooner.
        assert_eq!(
            retry_after(&::kube::Error::Api(Box::new(s))),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn the_budget_is_shared_and_grows_with_the_scale() {
        let t = Tuning::default();
        assert_eq!(t.budget(0).size, 50);
        assert_eq!(t.budget(20_000).size, 2_050);
        let b = Budget::new(2);
        assert!(b.take() && b.take());
        assert!(!b.take() && b.spent());
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_when_the_budget_is_spent() {
        let t = Tuning::default();
        let throttled = || {
            ::kube::Error::Api(Box::new(::kube::core::Status {
                code: 429,
                ..Default::default()
            }))
        };
        let budget = Budget::new(3);
        let (r, attempts) =
            retry_within(&t, Some(&budget), || async { Err::<(), _>(throttled()) }).await;
        assert!(r.is_err());
        // The first attempt and the 3 retries of the budget, not the 10 attempts.
        assert_eq!(attempts, 4);
        assert_eq!(t.retries.get(), (3, 0));
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
        let sa = ::kube::Error::Api(Box::new(::kube::core::Status {
            code: 403,
            message: "pods \"client\" is forbidden: error looking up service account ns/default: serviceaccount \"default\" not found".into(),
            ..Default::default()
        }));
        assert!(retryable(&sa));
        assert!(!retryable(&status(409)));
    }
}
