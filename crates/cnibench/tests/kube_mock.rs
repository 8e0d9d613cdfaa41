//! The kube backend against a mocked API server (tower-test, as kube-rs tests itself):
//! every request's method, path, query and body is checked and answered as the API server
//! would. Exec (a WebSocket upgrade a mock cannot serve) goes through a fake [`Exec`].

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cnibench::backend::fake::FakeBackend;
use cnibench::backend::kube::adapter::KubeBackend;
use cnibench::backend::kube::cluster::{
    self, BoxFuture, Exec, ExecOutput, InFlight, KubeError, Tuning,
};
use cnibench::backend::kube::driver::Driver;
use cnibench::backend::kube::objects::ServiceMode;
use cnibench::backend::kube::preflight::{self, ClusterInfo};
use cnibench::backend::{Backend, Cancel, Readiness};
use cnibench::scenario::Point;
use cnibench::suite::{expand, presets};
use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

const NS: &str = "cnibench-t1";
/// A namespace created beforehand (`--namespace`).
const GIVEN: &str = "team-a";

type ApiHandle = Handle<Request<Body>, Response<Body>>;
type Responder = SendResponse<Response<Body>>;

/// One request as the mock saw it.
struct Seen {
    method: Method,
    path: String,
    query: String,
    body: Value,
    send: Responder,
}

/// The mock API server; the second field holds the pod-failure watches open (see
/// [`ApiServer::next`]).
struct ApiServer(ApiHandle, Vec<Responder>);

/// Whether `path?query` is the readiness wait's watch of every pod of run t1 (it looks
/// for pods that cannot start: tested on the real control plane, tests/kube_real.rs).
fn is_failure_watch(path: &str, query: &str) -> bool {
    [NS, GIVEN]
        .iter()
        .any(|ns| path == format!("/api/v1/namespaces/{ns}/pods"))
        && query.contains("labelSelector=cnibench.io%2Frun%3Dt1")
        && !query.contains("%2Ccnibench.io%2Frole")
        && !query.contains("fieldSelector")
        // A watcher's (its list pages, its watch), not a plain list of the run's pods.
        && (query.contains("limit=") || query.contains("watch=true"))
}

impl ApiServer {
    /// The next request, past the pod-failure watches: their list is answered empty and
    /// their watch held open (no pod ever fails here), so the scripts see only the
    /// requests they check.
    async fn next(&mut self) -> Seen {
        let (req, send) = loop {
            let (req, send) = tokio::time::timeout(Duration::from_secs(10), self.0.next_request())
                .await
                .expect("the backend sent no further request within 10 s")
                .expect("the client went away");
            let query = req.uri().query().unwrap_or("");
            if !is_failure_watch(req.uri().path(), query) {
                break (req, send);
            }
            if query.contains("watch=true") {
                self.1.push(send);
            } else {
                respond(send, 200, &list("PodList", "v1", &[]));
            }
        };
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Seen {
            method,
            path,
            query,
            body,
            send,
        }
    }

    /// The next request, which must be a server-side apply (PATCH, field manager
    /// cnibench, conflicts forced) of an object in collection `path`, named in the body.
    async fn expect_apply(&mut self, path: &str) -> Seen {
        let s = self.next().await;
        assert_eq!(
            s.method,
            Method::PATCH,
            "not an apply: {} {}",
            s.method,
            s.path
        );
        let (dir, name) = s.path.rsplit_once('/').unwrap();
        assert_eq!(dir, path, "apply of {name}");
        assert_eq!(s.body["metadata"]["name"], name, "{}", s.body);
        assert!(
            s.query.contains("fieldManager=cnibench") && s.query.contains("force=true"),
            "{}",
            s.query
        );
        s
    }

    /// The next request, which must be `method path`.
    async fn expect(&mut self, method: Method, path: &str) -> Seen {
        let s = self.next().await;
        assert_eq!(
            (&s.method, s.path.as_str()),
            (&method, path),
            "unexpected request (query {})",
            s.query
        );
        s
    }
}

fn respond(send: Responder, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason, "message": format!("{reason} (mock)")})
}

/// Answers a create by echoing the object, as the server stores it.
fn created(s: Seen, extra: impl FnOnce(&mut Value)) {
    let mut obj = s.body.clone();
    obj["metadata"]["uid"] = json!(format!("uid-{}", obj["metadata"]["name"].as_str().unwrap()));
    extra(&mut obj);
    respond(s.send, 201, &obj);
}

fn list(kind: &str, api_version: &str, items: &[Value]) -> Value {
    json!({"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "100"}, "items": items})
}

struct FakeExec {
    commands: Mutex<Vec<(String, String, Vec<String>)>>,
    point: Point,
    /// How the datapath answers `netload probe`: the client's connections succeed when
    /// `vip_answers`, the outsider's fail when `policies_enforced`.
    vip_answers: AtomicBool,
    policies_enforced: AtomicBool,
}

impl FakeExec {
    fn new(point: &Point) -> Self {
        FakeExec {
            commands: Mutex::default(),
            point: point.clone(),
            vip_answers: AtomicBool::new(true),
            policies_enforced: AtomicBool::new(true),
        }
    }

    /// The repetitions exec'd, past the datapath probes.
    fn reps(&self) -> Vec<(String, String, Vec<String>)> {
        let cmds = self.commands.lock().unwrap();
        cmds.iter().filter(|c| c.2[1] != "probe").cloned().collect()
    }

    /// The probes exec'd: (pod, target, want).
    fn probes(&self) -> Vec<(String, String, String)> {
        let cmds = self.commands.lock().unwrap();
        cmds.iter()
            .filter(|c| c.2[1] == "probe")
            .map(|(_, pod, cmd)| {
                let flag = |f: &str| cmd[cmd.iter().position(|a| a == f).unwrap() + 1].clone();
                (
                    pod.clone(),
                    format!("{}:{}", cmd[2], flag("--port")),
                    flag("--want"),
                )
            })
            .collect()
    }

    /// `netload probe`'s report: every attempt connected, or was refused.
    fn probe_report(cmd: &[String], connects: bool) -> String {
        let want = &cmd[cmd.iter().position(|a| a == "--want").unwrap() + 1];
        let outcome = if connects { "connected" } else { "refused" };
        let attempts: Vec<Value> = (0..3)
            .map(|i| json!({"at_s": 0.2 * f64::from(i), "outcome": outcome, "took_ms": 0.1}))
            .collect();
        let reached = (want == "open") == connects;
        json!({"schema": "netload.probe/1", "target": format!("{}:{}", cmd[2], cmd[4]),
               "want": want, "reached": reached, "elapsed_s": 0.4, "attempts": attempts})
        .to_string()
    }
}

impl Exec for FakeExec {
    fn exec<'a>(
        &'a self,
        namespace: &'a str,
        pod: &'a str,
        command: Vec<String>,
    ) -> BoxFuture<'a, Result<ExecOutput, KubeError>> {
        self.commands
            .lock()
            .unwrap()
            .push((namespace.into(), pod.into(), command.clone()));
        if command[1] == "probe" {
            let connects = if pod == "outsider" {
                !self.policies_enforced.load(Ordering::SeqCst)
            } else {
                self.vip_answers.load(Ordering::SeqCst)
            };
            let stdout = Self::probe_report(&command, connects);
            return Box::pin(async move {
                Ok(ExecOutput {
                    success: true,
                    status: "Success".into(),
                    stdout,
                    stderr: String::new(),
                })
            });
        }
        let raw = FakeBackend::new(1)
            .run_rep(&self.point, 0, &Cancel::default())
            .unwrap()
            .raw;
        Box::pin(async move {
            Ok(ExecOutput {
                success: true,
                status: "Success".into(),
                stdout: raw.to_string(),
                stderr: String::new(),
            })
        })
    }
}

fn point(prefix: &str) -> Point {
    expand(&presets::load("thesis").unwrap())
        .unwrap()
        .into_iter()
        .find(|p| p.id.starts_with(prefix))
        .unwrap_or_else(|| panic!("no point {prefix}"))
}

fn fast() -> Tuning {
    Tuning {
        concurrency: 32,
        attempts: 4,
        backoff: Duration::from_millis(1),
        ready_timeout: Duration::from_secs(5),
        ready_per_pod: Duration::ZERO,
        delete_timeout: Duration::from_secs(5),
        ..Tuning::default()
    }
}

fn driver(client: Client, exec: Arc<dyn Exec>, tuning: Tuning, cancel: Cancel) -> Driver {
    Driver {
        client,
        exec,
        run: "t1".into(),
        image: "img:1".into(),
        service_mode: ServiceMode::Selector,
        info: ClusterInfo {
            server_version: "v1.34.0".into(),
            nodes: vec!["w1".into(), "w2".into()],
            hostnames: vec!["w1".into(), "w2".into()],
            pod_capacity: vec![110, 110],
            cni: "calico".into(),
            cni_image: "calico/node:v3".into(),
            proxy_mode: "iptables".into(),
            ..ClusterInfo::default()
        },
        tuning,
        cancel,
        progress: false,
        in_flight: Arc::default(),
        held: Mutex::default(),
    }
}

/// A backend on a mocked client, with its own runtime; the mock's handle runs on it.
fn mocked(
    point: &Point,
    tuning: Tuning,
    cancel: Cancel,
) -> (KubeBackend, ApiServer, Arc<FakeExec>) {
    mocked_in(point, tuning, cancel, ServiceMode::Selector)
}

fn mocked_in(
    point: &Point,
    tuning: Tuning,
    cancel: Cancel,
    mode: ServiceMode,
) -> (KubeBackend, ApiServer, Arc<FakeExec>) {
    let rt = cnibench::backend::kube::adapter::runtime().unwrap();
    let (client, api) = {
        let _guard = rt.enter();
        mock_client()
    };
    let exec = Arc::new(FakeExec::new(point));
    let mut d = driver(client, exec.clone(), tuning, cancel);
    d.service_mode = mode;
    (KubeBackend::with_driver(rt, d, "mock".into()), api, exec)
}

fn ready_deployment(body: &Value, replicas: i64) -> Value {
    let mut d = body.clone();
    d["status"] =
        json!({"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas});
    d
}

fn ready_pod(body: &Value, ip: &str) -> Value {
    let mut p = body.clone();
    p["status"] = json!({"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]});
    p
}

/// Answers the teardown's list of filler services with `names`.
fn filler_list(send: Responder, names: &[String]) {
    let items: Vec<Value> = names
        .iter()
        .map(|n| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": n, "namespace": NS}}))
        .collect();
    respond(
        send,
        200,
        &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "items": items}),
    );
}

/// Serves the teardown: the filler services (`fillers`) deleted one by one, then the
/// namespace delete and the watch that sees it gone.
async fn serve_teardown(api: &mut ApiServer, fillers: &[String]) {
    let s = api
        .expect(Method::GET, &format!("/api/v1/namespaces/{NS}/services"))
        .await;
    assert!(
        s.query
            .contains("labelSelector=cnibench.io%2Frun%3Dt1%2Ccnibench.io%2Frole%3Dfiller"),
        "{}",
        s.query
    );
    filler_list(s.send, fillers);
    let mut deleted = Vec::new();
    for _ in fillers {
        let s = api.next().await;
        assert_eq!(s.method, Method::DELETE);
        let name = s.path.rsplit('/').next().unwrap().to_string();
        assert_eq!(s.path, format!("/api/v1/namespaces/{NS}/services/{name}"));
        respond(
            s.send,
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        );
        deleted.push(name);
    }
    deleted.sort();
    assert_eq!(deleted, fillers);
    let s = api
        .expect(Method::DELETE, &format!("/api/v1/namespaces/{NS}"))
        .await;
    assert_eq!(s.body["propagationPolicy"], "Background", "{}", s.body);
    respond(
        s.send,
        200,
        &json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NS, "uid": "uid-ns", "deletionTimestamp": "2026-11-25T00:00:00Z"}, "status": {"phase": "Terminating"}}),
    );
    let s = api.expect(Method::GET, "/api/v1/namespaces").await;
    assert!(
        s.query
            .contains(&format!("fieldSelector=metadata.name%3D{NS}")),
        "{}",
        s.query
    );
    respond(s.send, 200, &list("NamespaceList", "v1", &[]));
}

/// Serves the first look at the namespace: it does not exist.
async fn serve_no_namespace(api: &mut ApiServer) {
    let s = api
        .expect(Method::GET, &format!("/api/v1/namespaces/{NS}"))
        .await;
    respond(s.send, 404, &status(404, "NotFound"));
}

/// Serves the namespace lookup (none), the namespace, server and client applies; returns
/// the server and client bodies.
async fn serve_basic_creates(api: &mut ApiServer, replicas: i64) -> (Value, Value) {
    serve_no_namespace(api).await;
    let s = api.expect_apply("/api/v1/namespaces").await;
    assert_eq!(s.body["metadata"]["name"], NS);
    assert_eq!(
        s.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "cnibench"
    );
    assert_eq!(s.body["metadata"]["labels"]["cnibench.io/run"], "t1");
    created(s, |_| {});
    let s = api
        .expect_apply(&format!("/apis/apps/v1/namespaces/{NS}/deployments"))
        .await;
    assert_eq!(s.body["kind"], "Deployment");
    assert_eq!(s.body["metadata"]["name"], "server");
    assert_eq!(s.body["spec"]["replicas"], replicas);
    let c = &s.body["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "img:1");
    assert_eq!(c["readinessProbe"]["tcpSocket"]["port"], 9201);
    let server = s.body.clone();
    created(s, |_| {});
    let s = api
        .expect_apply(&format!("/api/v1/namespaces/{NS}/pods"))
        .await;
    assert_eq!(s.body["metadata"]["name"], "client");
    assert_eq!(s.body["spec"]["containers"][0]["args"], json!(["idle"]));
    let client = s.body.clone();
    created(s, |_| {});
    (server, client)
}

/// Serves the two readiness watches (in whichever order they come): each list answers
/// the object already ready.
async fn serve_ready(api: &mut ApiServer, server: &Value, client: &Value, replicas: i64) {
    for _ in 0..2 {
        let s = api.next().await;
        assert_eq!(s.method, Method::GET);
        if s.path.ends_with("/deployments") {
            assert_eq!(s.path, format!("/apis/apps/v1/namespaces/{NS}/deployments"));
            assert!(
                s.query.contains("fieldSelector=metadata.name%3Dserver"),
                "{}",
                s.query
            );
            respond(
                s.send,
                200,
                &list(
                    "DeploymentList",
                    "apps/v1",
                    &[ready_deployment(server, replicas)],
                ),
            );
        } else {
            assert_eq!(s.path, format!("/api/v1/namespaces/{NS}/pods"));
            assert!(
                s.query.contains("fieldSelector=metadata.name%3Dclient"),
                "{}",
                s.query
            );
            respond(
                s.send,
                200,
                &list("PodList", "v1", &[ready_pod(client, "10.0.1.9")]),
            );
        }
    }
}

fn join(backend: &KubeBackend, task: tokio::task::JoinHandle<()>) {
    backend.runtime().block_on(async {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("mock API server did not finish")
            .expect("mock API server assertions failed");
    });
}

/// A client whose requests the returned mock API server answers (inside a runtime).
fn mock_client() -> (Client, ApiServer) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(svc, "default"), ApiServer(handle, Vec::new()))
}

async fn serve_version(api: &mut ApiServer) {
    let s = api.expect(Method::GET, "/version").await;
    respond(
        s.send,
        200,
        &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.1", "gitCommit": "", "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "", "platform": "linux/amd64"}),
    );
}

/// Runs the mock API server's script on the backend's (multi-threaded) runtime, so it
/// answers while the test thread blocks in the backend's calls.
fn serve<F>(backend: &KubeBackend, script: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    backend.runtime().spawn(script)
}

#[test]
fn lifecycle_of_a_direct_point() {
    let p = point("pod-to-pod/placement=inter,workload=tcp");
    let (mut backend, mut api, exec) = mocked(&p, fast(), Cancel::default());
    let task = serve(&backend, async move {
        let (server, client) = serve_basic_creates(&mut api, 1).await;
        // Inter-node: the client on w2, the server on w1.
        let aff = |v: &Value| {
            v["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0].clone()
        };
        assert_eq!(aff(&server["spec"]["template"]["spec"]), "w1");
        assert_eq!(aff(&client["spec"]), "w2");
        serve_ready(&mut api, &server, &client, 1).await;
        // The direct path dials the server pod's IP.
        let s = api
            .expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods"))
            .await;
        assert!(
            s.query
                .contains("labelSelector=cnibench.io%2Frun%3Dt1%2Ccnibench.io%2Frole%3Dserver"),
            "{}",
            s.query
        );
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server-abc", "namespace": NS}});
        respond(
            s.send,
            200,
            &list("PodList", "v1", &[ready_pod(&pod, "10.0.0.5")]),
        );
        serve_teardown(&mut api, &[]).await;
    });
    assert_eq!(backend.prepare(&p).unwrap(), Readiness::Ready);
    let out = backend.run_rep(&p, 0, &Cancel::default()).unwrap();
    assert!(!out.metrics.is_empty());
    assert_eq!(out.raw["cnibench_kube"]["dest"], "10.0.0.5");
    assert_eq!(out.raw["cnibench_kube"]["client_node"], "w2");
    // Before the repetition, the client's probe of the address it measures (no
    // policies: no outsider).
    assert_eq!(
        exec.probes(),
        [("client".into(), "10.0.0.5:9201".into(), "open".into())]
    );
    assert_eq!(
        out.raw["cnibench_kube"]["datapath"]["policies"],
        Value::Null
    );
    assert!(
        out.raw["cnibench_kube"]["datapath"]["client_probe"]
            .as_str()
            .unwrap()
            .contains("10.0.0.5:9201 was open"),
        "{}",
        out.raw
    );
    {
        let cmds = exec.reps();
        assert_eq!(cmds.len(), 1);
        let (ns, pod, cmd) = &cmds[0];
        assert_eq!((ns.as_str(), pod.as_str()), (NS, "client"));
        assert_eq!(cmd[..4], ["/netload", "tcp", "10.0.0.5", "--port"]);
        assert_eq!(cmd.last().unwrap(), "--json");
    }
    // After the point the objects stay for the next one; the end of the run deletes them.
    backend.teardown(&p).unwrap();
    backend.finish().unwrap();
    join(&backend, task);
    let tools = backend.tools();
    assert_eq!(tools["kube_cni"], "calico");
    assert_eq!(tools["kube_namespace"], NS);
}

#[test]
fn lifecycle_of_a_service_point_with_fillers() {
    let p = point("pod-to-service/placement=intra,services=10,workload=udp");
    let (mut backend, mut api, exec) =
        mocked_in(&p, fast(), Cancel::default(), ServiceMode::EndpointSlice);
    let task = serve(&backend, async move {
        let (server, client) = serve_basic_creates(&mut api, 1).await;
        let s = api
            .expect_apply(&format!("/api/v1/namespaces/{NS}/services"))
            .await;
        assert_eq!(s.body["metadata"]["name"], "server");
        assert_eq!(s.body["spec"]["selector"]["cnibench.io/role"], "server");
        created(s, |o| o["spec"]["clusterIP"] = json!("10.96.0.10"));
        let mut names = Vec::new();
        for _ in 0..9 {
            let s = api
                .expect_apply(&format!("/api/v1/namespaces/{NS}/services"))
                .await;
            // Selectorless: the endpoints come from our slices.
            assert!(s.body["spec"].get("selector").is_none(), "{}", s.body);
            names.push(s.body["metadata"]["name"].as_str().unwrap().to_string());
            created(s, |_| {});
        }
        names.sort();
        assert_eq!(names.first().unwrap(), "svc-00001");
        assert_eq!(names.last().unwrap(), "svc-00009");
        let mut slices = Vec::new();
        for _ in 0..9 {
            let s = api
                .expect_apply(&format!(
                    "/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"
                ))
                .await;
            let name = s.body["metadata"]["name"].as_str().unwrap().to_string();
            assert_eq!(
                s.body["metadata"]["labels"]["kubernetes.io/service-name"],
                name.as_str()
            );
            assert!(
                s.body["endpoints"][0]["addresses"][0]
                    .as_str()
                    .unwrap()
                    .starts_with("198.18.0.")
            );
            slices.push(name);
            created(s, |_| {});
        }
        slices.sort();
        assert_eq!(slices, names);
        serve_ready(&mut api, &server, &client, 1).await;
        serve_teardown(&mut api, &names).await;
    });
    assert_eq!(backend.prepare(&p).unwrap(), Readiness::Ready);
    let out = backend.run_rep(&p, 0, &Cancel::default()).unwrap();
    assert_eq!(out.raw["cnibench_kube"]["dest"], "10.96.0.10");
    // Namespace, server, client, 10 services, 9 slices.
    assert_eq!(out.raw["cnibench_kube"]["objects"], 22);
    assert_eq!(exec.reps()[0].2[1..3], ["udp", "10.96.0.10"]);
    assert_eq!(
        exec.probes(),
        [("client".into(), "10.96.0.10:9201".into(), "open".into())]
    );
    backend.teardown(&p).unwrap();
    backend.finish().unwrap();
    join(&backend, task);
}

/// Serves `n` applies at `path` (any order); returns the applied names, sorted.
async fn serve_creates(api: &mut ApiServer, path: &str, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..n {
        let s = api.expect_apply(path).await;
        names.push(s.body["metadata"]["name"].as_str().unwrap().to_string());
        created(s, |_| {});
    }
    names.sort();
    names
}

/// Serves `n` deletes of objects under `path` (any order); returns their names, sorted.
async fn serve_deletes(api: &mut ApiServer, path: &str, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..n {
        let s = api.next().await;
        assert_eq!(s.method, Method::DELETE, "{}", s.path);
        let (dir, name) = s.path.rsplit_once('/').unwrap();
        assert_eq!(dir, path);
        names.push(name.to_string());
        respond(
            s.send,
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        );
    }
    names.sort();
    names
}

/// Serves the namespace patch that names the point it now holds.
async fn serve_namespace_patch(api: &mut ApiServer, point: &str, level: &str) {
    let s = api
        .expect(Method::PATCH, &format!("/api/v1/namespaces/{NS}"))
        .await;
    assert_eq!(
        s.body["metadata"]["annotations"]["cnibench.io/point"],
        point
    );
    assert_eq!(
        s.body["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        level
    );
    assert!(s.body.get("spec").is_none(), "{}", s.body);
    let ns =
        json!({"kind": "Namespace", "apiVersion": "v1", "metadata": s.body["metadata"].clone()});
    respond(s.send, 200, &ns);
}

/// Serves the applies (PATCH) or deletes (DELETE) of exactly the filler services `range`,
/// then of their EndpointSlices.
async fn serve_fillers(api: &mut ApiServer, method: Method, range: std::ops::RangeInclusive<u32>) {
    let want: Vec<String> = range.map(|k| format!("svc-{k:05}")).collect();
    for path in [
        format!("/api/v1/namespaces/{NS}/services"),
        format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices"),
    ] {
        let got = if method == Method::PATCH {
            serve_creates(api, &path, want.len()).await
        } else {
            serve_deletes(api, &path, want.len()).await
        };
        assert_eq!(got, want, "{method} {path}");
    }
}

/// Consecutive points keep the namespace, server, client and measured Service, and send
/// only the difference: S=10, then S=100 (90 services and slices created), then S=1 (99
/// of each deleted), then the same S with the client on the other node (the client pod
/// replaced: deleted, awaited gone, created); the end of the run deletes the namespace.
#[test]
fn consecutive_points_reconcile_the_difference() {
    let ids = [
        "pod-to-service/placement=inter,services=10,workload=tcp",
        "pod-to-service/placement=inter,services=100,workload=tcp",
        "pod-to-service/placement=inter,services=1,workload=tcp",
        "pod-to-service/placement=intra,services=1,workload=tcp",
    ];
    let points: Vec<Point> = ids.iter().map(|id| point(id)).collect();
    let (mut backend, mut api, exec) = mocked_in(
        &points[0],
        fast(),
        Cancel::default(),
        ServiceMode::EndpointSlice,
    );
    let finishing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let finish_seen = finishing.clone();
    let svcs = format!("/api/v1/namespaces/{NS}/services");
    let task = serve(&backend, async move {
        // S=10 from nothing.
        let (server, client) = serve_basic_creates(&mut api, 1).await;
        let s = api.expect_apply(&svcs).await;
        assert_eq!(s.body["metadata"]["name"], "server");
        created(s, |o| o["spec"]["clusterIP"] = json!("10.96.0.10"));
        serve_fillers(&mut api, Method::PATCH, 1..=9).await;
        serve_ready(&mut api, &server, &client, 1).await;
        // S=100: 90 services and their slices more, nothing else.
        serve_namespace_patch(&mut api, ids[1], "restricted").await;
        serve_fillers(&mut api, Method::PATCH, 10..=99).await;
        serve_ready(&mut api, &server, &client, 1).await;
        // S=1: the 99 filler services and slices go, the measured one stays.
        serve_namespace_patch(&mut api, ids[2], "restricted").await;
        serve_fillers(&mut api, Method::DELETE, 1..=99).await;
        serve_ready(&mut api, &server, &client, 1).await;
        // Intra-node: the client moves to the server's node.
        serve_namespace_patch(&mut api, ids[3], "restricted").await;
        let pods = format!("/api/v1/namespaces/{NS}/pods");
        let s = api.expect(Method::DELETE, &format!("{pods}/client")).await;
        assert_eq!(s.body["propagationPolicy"], "Foreground", "{}", s.body);
        let mut gone = client.clone();
        gone["metadata"]["uid"] = json!("uid-client");
        gone["metadata"]["deletionTimestamp"] = json!("2026-11-25T00:00:00Z");
        respond(s.send, 200, &gone);
        // The new client is created only once the old one is gone.
        let s = api.expect(Method::GET, &pods).await;
        assert!(
            s.query.contains("fieldSelector=metadata.name%3Dclient"),
            "{}",
            s.query
        );
        respond(s.send, 200, &list("PodList", "v1", &[]));
        let s = api.expect_apply(&pods).await;
        assert_eq!(s.body["metadata"]["name"], "client");
        let aff = &s.body["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0];
        assert_eq!(aff, "w1");
        let client = s.body.clone();
        created(s, |_| {});
        serve_ready(&mut api, &server, &client, 1).await;
        // Nothing between the points; the end of the run deletes the lot.
        let s = api.next().await;
        assert!(
            finish_seen.load(Ordering::SeqCst),
            "request before the end of the run: {} {}",
            s.method,
            s.path
        );
        assert_eq!(
            (s.method.clone(), s.path.as_str()),
            (Method::GET, svcs.as_str())
        );
        filler_list(s.send, &[]);
        let s = api
            .expect(Method::DELETE, &format!("/api/v1/namespaces/{NS}"))
            .await;
        respond(
            s.send,
            200,
            &json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NS, "uid": "uid-ns"}}),
        );
        let s = api.expect(Method::GET, "/api/v1/namespaces").await;
        respond(s.send, 200, &list("NamespaceList", "v1", &[]));
    });
    for (i, p) in points.iter().enumerate() {
        assert_eq!(backend.prepare(p).unwrap(), Readiness::Ready, "{}", p.id);
        let out = backend.run_rep(p, 0, &Cancel::default()).unwrap();
        // The measured Service is kept: its ClusterIP from the first point's create.
        assert_eq!(out.raw["cnibench_kube"]["dest"], "10.96.0.10", "{}", p.id);
        let node = if i == 3 { "w1" } else { "w2" };
        assert_eq!(out.raw["cnibench_kube"]["client_node"], node);
        backend.teardown(p).unwrap();
    }
    assert_eq!(exec.reps().len(), 4);
    // Every point probes the VIP before it measures.
    assert_eq!(exec.probes().len(), 4);
    finishing.store(true, Ordering::SeqCst);
    backend.finish().unwrap();
    join(&backend, task);
}

/// A replica count alone changes: the server is scaled with a patch, not replaced, and
/// readiness waits for the new count.
#[test]
fn replicas_scale_the_server_with_a_patch() {
    let a = point("http-replicas/placement=inter,replicas=10,services=1");
    let b = point("http-replicas/placement=inter,replicas=20,services=1");
    let (mut backend, mut api, _) = mocked(&a, fast(), Cancel::default());
    let (id_b, svcs) = (b.id.clone(), format!("/api/v1/namespaces/{NS}/services"));
    let task = serve(&backend, async move {
        let (server, client) = serve_basic_creates(&mut api, 10).await;
        let s = api.expect_apply(&svcs).await;
        created(s, |o| o["spec"]["clusterIP"] = json!("10.96.0.11"));
        serve_ready(&mut api, &server, &client, 10).await;
        serve_namespace_patch(&mut api, &id_b, "restricted").await;
        let s = api
            .expect(
                Method::PATCH,
                &format!("/apis/apps/v1/namespaces/{NS}/deployments/server"),
            )
            .await;
        assert_eq!(s.body, json!({"spec": {"replicas": 20}}));
        respond(s.send, 200, &ready_deployment(&server, 10));
        serve_ready(&mut api, &server, &client, 20).await;
        serve_teardown(&mut api, &[]).await;
    });
    backend.prepare(&a).unwrap();
    backend.teardown(&a).unwrap();
    backend.prepare(&b).unwrap();
    backend.teardown(&b).unwrap();
    backend.finish().unwrap();
    join(&backend, task);
}

#[test]
fn namespace_of_another_owner_is_not_taken_over() {
    let p = point("pod-to-pod/placement=inter,workload=tcp");
    let (mut backend, mut api, _) = mocked(&p, fast(), Cancel::default());
    let task = serve(&backend, async move {
        let s = api
            .expect(Method::GET, &format!("/api/v1/namespaces/{NS}"))
            .await;
        respond(
            s.send,
            200,
            &json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NS, "uid": "u", "labels": {"team": "other"}}}),
        );
        // The runner tears down after a failed prepare.
        serve_teardown(&mut api, &[]).await;
    });
    let e = backend.prepare(&p).unwrap_err().to_string();
    assert!(e.contains("namespace cnibench-t1 already exists"), "{e}");
    assert!(e.contains("not created by this cnibench run"), "{e}");
    backend.teardown(&p).unwrap();
    join(&backend, task);
}

/// A crashed process of the same run left its namespace with a gap in the filler
/// Services (an interrupted bulk create): the namespace is taken over, what lies beyond
/// the gap deleted, the missing ones applied; the server and client of unknown spec are
/// replaced; no 409, no manual clean.
#[test]
fn namespace_of_this_run_is_taken_over_after_a_crash() {
    let p = point("pod-to-service/placement=inter,services=10,workload=tcp");
    let (mut backend, mut api, _) =
        mocked_in(&p, fast(), Cancel::default(), ServiceMode::EndpointSlice);
    let task = serve(&backend, async move {
        let s = api
            .expect(Method::GET, &format!("/api/v1/namespaces/{NS}"))
            .await;
        respond(
            s.send,
            200,
            &json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NS, "uid": "u",
                "labels": {"app.kubernetes.io/managed-by": "cnibench", "cnibench.io/run": "t1"}}}),
        );
        let deploys = format!("/apis/apps/v1/namespaces/{NS}/deployments");
        let s = api.expect(Method::GET, &format!("{deploys}/server")).await;
        respond(
            s.send,
            200,
            &json!({"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": "server", "namespace": NS, "uid": "uid-old-server"}, "spec": {"selector": {}, "template": {}}}),
        );
        let s = api.expect(Method::GET, &format!("{deploys}/filler")).await;
        respond(s.send, 404, &status(404, "NotFound"));
        let pods = format!("/api/v1/namespaces/{NS}/pods");
        let s = api.expect(Method::GET, &format!("{pods}/client")).await;
        respond(s.send, 404, &status(404, "NotFound"));
        // An outsider left by a policy point before the crash: this point has no
        // policies, so it goes.
        let s = api.expect(Method::GET, &format!("{pods}/outsider")).await;
        respond(
            s.send,
            200,
            &json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "outsider", "namespace": NS, "uid": "uid-outsider"}}),
        );
        let svcs = format!("/api/v1/namespaces/{NS}/services");
        let s = api.expect(Method::GET, &format!("{svcs}/server")).await;
        respond(
            s.send,
            200,
            &json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "server", "namespace": NS}, "spec": {"clusterIP": "10.96.0.7"}}),
        );
        let meta_list = |names: &[&str]| {
            let items: Vec<Value> = names
                .iter()
                .map(|n| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": n, "namespace": NS}}))
                .collect();
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "items": items})
        };
        // Services 1, 2, 3 and 5 (4 never landed); slices 1 and 2.
        let s = api.expect(Method::GET, &svcs).await;
        respond(
            s.send,
            200,
            &meta_list(&["svc-00001", "svc-00002", "svc-00003", "svc-00005"]),
        );
        let slices = format!("/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices");
        let s = api.expect(Method::GET, &slices).await;
        respond(s.send, 200, &meta_list(&["svc-00001", "svc-00002"]));
        let s = api
            .expect(
                Method::GET,
                &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"),
            )
            .await;
        respond(s.send, 200, &meta_list(&[]));
        // Kept: 1 and 2 (services and slices); deleted: the services beyond.
        assert_eq!(
            serve_deletes(&mut api, &svcs, 2).await,
            ["svc-00003", "svc-00005"]
        );
        // Taken over: the namespace patched, the server of unknown spec replaced.
        let s = api
            .expect(Method::PATCH, &format!("/api/v1/namespaces/{NS}"))
            .await;
        let ns = json!({"kind": "Namespace", "apiVersion": "v1", "metadata": s.body["metadata"].clone()});
        respond(s.send, 200, &ns);
        let s = api
            .expect(Method::DELETE, &format!("{deploys}/server"))
            .await;
        respond(
            s.send,
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        );
        // Awaited gone before the new one is applied.
        let s = api.expect(Method::GET, &deploys).await;
        respond(s.send, 200, &list("DeploymentList", "apps/v1", &[]));
        let s = api.expect_apply(&deploys).await;
        let server = s.body.clone();
        created(s, |_| {});
        let s = api.expect_apply(&pods).await;
        let client = s.body.clone();
        created(s, |_| {});
        let s = api
            .expect(Method::DELETE, &format!("{pods}/outsider"))
            .await;
        assert_eq!(s.body["propagationPolicy"], "Foreground", "{}", s.body);
        respond(
            s.send,
            200,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        );
        let s = api.expect(Method::GET, &pods).await;
        assert!(
            s.query.contains("fieldSelector=metadata.name%3Doutsider"),
            "{}",
            s.query
        );
        respond(s.send, 200, &list("PodList", "v1", &[]));
        // Services 3..=9 and their slices; the measured one is kept.
        serve_fillers(&mut api, Method::PATCH, 3..=9).await;
        serve_ready(&mut api, &server, &client, 1).await;
        serve_teardown(&mut api, &[]).await;
    });
    assert_eq!(backend.prepare(&p).unwrap(), Readiness::Ready);
    backend.finish().unwrap();
    join(&backend, task);
}

#[test]
fn throttling_and_server_errors_are_retried() {
    let p = point("pod-to-pod/placement=inter,workload=tcp");
    let (mut backend, mut api, _) = mocked(&p, fast(), Cancel::default());
    let task = serve(&backend, async move {
        serve_no_namespace(&mut api).await;
        let s = api.expect_apply("/api/v1/namespaces").await;
        respond(s.send, 429, &status(429, "TooManyRequests"));
        let s = api.expect_apply("/api/v1/namespaces").await;
        respond(s.send, 500, &status(500, "InternalError"));
        let s = api.expect_apply("/api/v1/namespaces").await;
        created(s, |_| {});
        // The server apply's first answer is lost in a 503; applying again is harmless.
        let deploys = format!("/apis/apps/v1/namespaces/{NS}/deployments");
        let s = api.expect_apply(&deploys).await;
        respond(s.send, 503, &status(503, "ServiceUnavailable"));
        let s = api.expect_apply(&deploys).await;
        created(s, |_| {});
        // The client apply fails for good: every attempt (4) gets a 500.
        for _ in 0..4 {
            let s = api
                .expect_apply(&format!("/api/v1/namespaces/{NS}/pods"))
                .await;
            respond(s.send, 500, &status(500, "InternalError"));
        }
        serve_teardown(&mut api, &[]).await;
    });
    let e = backend.prepare(&p).unwrap_err().to_string();
    assert!(
        e.contains("apply Pod client") && e.contains("InternalError"),
        "{e}"
    );
    backend.teardown(&p).unwrap();
    join(&backend, task);
    // Two retries of the namespace (a 429 and a 500), one of the server, three of the
    // client.
    assert_eq!(backend.driver().tuning.retries.get(), (1, 5));
}

#[test]
fn readiness_timeout_leads_to_teardown() {
    let p = point("pod-to-pod/placement=inter,workload=tcp");
    let tuning = Tuning {
        ready_timeout: Duration::from_millis(300),
        ..fast()
    };
    let (mut backend, mut api, _) = mocked(&p, tuning, Cancel::default());
    let task = serve(&backend, async move {
        let (server, client) = serve_basic_creates(&mut api, 1).await;
        let mut held = Vec::new();
        let mut watched = 0;
        // The server never becomes ready: its list shows 0 ready replicas and its watch
        // stays silent; the client is ready.
        while watched < 3 {
            let s = api.next().await;
            assert_ne!(
                s.method,
                Method::DELETE,
                "teardown before the watches: {}",
                s.path
            );
            if s.path.ends_with("/deployments") && !s.query.contains("watch=true") {
                let mut d = server.clone();
                d["status"] = json!({"replicas": 1, "readyReplicas": 0});
                respond(s.send, 200, &list("DeploymentList", "apps/v1", &[d]));
            } else if s.path.ends_with("/deployments") {
                held.push(s.send);
            } else {
                respond(
                    s.send,
                    200,
                    &list("PodList", "v1", &[ready_pod(&client, "10.0.1.9")]),
                );
            }
            watched += 1;
        }
        serve_teardown(&mut api, &[]).await;
        drop(held);
    });
    let e = backend.prepare(&p).unwrap_err().to_string();
    assert!(
        e.contains("not done within 0 s") || e.contains("readiness"),
        "{e}"
    );
    assert!(e.contains("readiness of 1 server replica(s)"), "{e}");
    backend.teardown(&p).unwrap();
    join(&backend, task);
}

#[test]
fn ctrl_c_during_creation_leads_to_teardown() {
    let p = point("pod-to-service/placement=inter,services=100,workload=tcp");
    let cancel = Cancel::default();
    let tuning = Tuning {
        concurrency: 4,
        ..fast()
    };
    let (mut backend, mut api, _) = mocked(&p, tuning, cancel.clone());
    let creates = Arc::new(AtomicUsize::new(0));
    let served = creates.clone();
    let task = serve(&backend, async move {
        let creates = served;
        let _ = serve_basic_creates(&mut api, 1).await;
        loop {
            let s = api.next().await;
            if s.method == Method::GET {
                // Teardown: nothing to list here, the namespace takes the services.
                assert_eq!(s.path, format!("/api/v1/namespaces/{NS}/services"));
                filler_list(s.send, &[]);
                continue;
            }
            if s.method == Method::DELETE {
                // Ctrl-C: the namespace goes.
                assert_eq!(s.path, format!("/api/v1/namespaces/{NS}"));
                respond(
                    s.send,
                    200,
                    &json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": NS, "uid": "uid-ns"}}),
                );
                let s = api.expect(Method::GET, "/api/v1/namespaces").await;
                respond(s.send, 200, &list("NamespaceList", "v1", &[]));
                break;
            }
            assert_eq!(s.method, Method::PATCH);
            assert!(
                s.path
                    .starts_with(&format!("/api/v1/namespaces/{NS}/services/")),
                "{}",
                s.path
            );
            if creates.fetch_add(1, Ordering::SeqCst) + 1 == 10 {
                cancel.cancel();
            }
            created(s, |o| o["spec"]["clusterIP"] = json!("10.96.0.10"));
        }
    });
    let e = backend.prepare(&p).unwrap_err();
    assert!(
        matches!(e, cnibench::backend::BackendError::Cancelled),
        "{e}"
    );
    backend.teardown(&p).unwrap();
    join(&backend, task);
    let n = creates.load(Ordering::SeqCst);
    // At most the creates already in flight (concurrency 4) finish after the flag is seen.
    assert!(
        (10..=13).contains(&n),
        "{n} service creates after Ctrl-C at the 10th"
    );
}

#[tokio::test]
async fn ten_thousand_services_respect_the_concurrency() {
    let (client, mut api) = mock_client();
    let server = tokio::spawn(async move {
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..10_000 {
            let s = api
                .expect_apply(&format!("/api/v1/namespaces/{NS}/services"))
                .await;
            names.insert(s.body["metadata"]["name"].as_str().unwrap().to_string());
            created(s, |_| {});
        }
        names.len()
    });
    let s = cnibench::backend::kube::objects::Settings {
        run: "t1".into(),
        image: "img:1".into(),
        server_node: "w1".into(),
        client_node: "w2".into(),
        service_mode: ServiceMode::Selector,
        tolerations: Vec::new(),
        namespace: None,
    };
    let svcs: Vec<Service> = (1..=10_000)
        .map(|k| cnibench::backend::kube::objects::filler_service(&s, k).0)
        .collect();
    let in_flight = InFlight::default();
    let bar = indicatif::ProgressBar::hidden();
    let t = Tuning {
        concurrency: 32,
        ..fast()
    };
    cluster::apply_all(&client, NS, &svcs, &t, &Cancel::default(), &bar, &in_flight)
        .await
        .unwrap();
    assert_eq!(server.await.unwrap(), 10_000);
    assert_eq!(bar.position(), 10_000);
    // 32 start at once (buffer_unordered fills up before any answer), never more.
    assert_eq!(in_flight.max.load(Ordering::SeqCst), 32);
}

#[tokio::test]
async fn missing_permissions_are_named() {
    let (client, mut api) = mock_client();
    let server = tokio::spawn(async move {
        serve_version(&mut api).await;
        for p in cnibench::backend::kube::rbac::PERMISSIONS {
            let s = api
                .expect(
                    Method::POST,
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                )
                .await;
            let a = &s.body["spec"]["resourceAttributes"];
            assert_eq!(a["verb"], p.verb);
            assert_eq!(a["resource"], p.resource);
            let denied = p.resource == "pods" && a["subresource"] == "exec" && p.verb == "create"
                || p.resource == "networkpolicies";
            if p.resource == "pods" && p.verb == "create" && p.subresource.is_none() {
                assert_eq!(a["namespace"], NS);
            }
            let mut r = s.body.clone();
            r["status"] = json!({"allowed": !denied});
            respond(s.send, 201, &r);
        }
    });
    let e = preflight::preflight(&client, NS, false, &[], &fast())
        .await
        .unwrap_err()
        .to_string();
    server.await.unwrap();
    assert!(
        e.contains("create pods/exec (in the run's namespace)"),
        "{e}"
    );
    assert!(
        e.contains("create networkpolicies.networking.k8s.io"),
        "{e}"
    );
    assert!(!e.contains("create services"), "{e}");
    assert!(e.contains("manifests/rbac.yaml"), "{e}");
}

#[tokio::test]
async fn preflight_records_nodes_cni_and_proxy() {
    let (client, mut api) = mock_client();
    let server = tokio::spawn(async move {
        serve_version(&mut api).await;
        for _ in cnibench::backend::kube::rbac::PERMISSIONS {
            let s = api.next().await;
            let mut r = s.body.clone();
            r["status"] = json!({"allowed": true});
            respond(s.send, 201, &r);
        }
        let s = api.expect(Method::GET, "/api/v1/nodes").await;
        let node = |name: &str, cp: bool| {
            // The hostname label is not the name (as on EKS): placement uses the label.
            let mut labels = json!({"kubernetes.io/hostname": format!("host-{name}")});
            if cp {
                labels["node-role.kubernetes.io/control-plane"] = json!("");
            }
            json!({"metadata": {"name": name, "labels": labels}, "spec": {},
                   "status": {"allocatable": {"pods": "250"}, "conditions": [{"type": "Ready", "status": "True"}]}})
        };
        respond(
            s.send,
            200,
            &list(
                "NodeList",
                "v1",
                &[node("cp", true), node("b", false), node("a", false)],
            ),
        );
        let s = api
            .expect(
                Method::GET,
                "/apis/apps/v1/namespaces/kube-system/daemonsets",
            )
            .await;
        let ds = |name: &str, image: &str| json!({"metadata": {"name": name}, "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
        respond(
            s.send,
            200,
            &list(
                "DaemonSetList",
                "apps/v1",
                &[
                    ds("kube-proxy", "kp:v1.34"),
                    ds("cilium", "quay.io/cilium/cilium:v1.18.0"),
                ],
            ),
        );
        let s = api
            .expect(
                Method::GET,
                "/api/v1/namespaces/kube-system/configmaps/kube-proxy",
            )
            .await;
        respond(
            s.send,
            200,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kube-proxy"}, "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nmode: ipvs\n"}}),
        );
    });
    let info = preflight::preflight(&client, NS, false, &[], &fast())
        .await
        .unwrap();
    server.await.unwrap();
    assert_eq!(info.nodes, ["a", "b"]);
    assert_eq!(info.hostnames, ["host-a", "host-b"]);
    assert_eq!(info.pod_capacity, [250, 250]);
    assert_eq!(info.cni, "cilium");
    assert_eq!(info.cni_image, "quay.io/cilium/cilium:v1.18.0");
    assert_eq!(info.proxy_mode, "ipvs");
    assert_eq!(info.server_version, "v1.34.1");
}

#[test]
fn dropping_a_prepared_backend_tears_down() {
    let p = point("pod-to-pod/placement=inter,workload=tcp");
    let (mut backend, mut api, _) = mocked(&p, fast(), Cancel::default());
    let task = serve(&backend, async move {
        serve_no_namespace(&mut api).await;
        let s = api.expect_apply("/api/v1/namespaces").await;
        respond(s.send, 500, &status(400, "BadRequest"));
        serve_teardown(&mut api, &[]).await;
    });
    assert!(backend.prepare(&p).is_err());
    // No teardown call: the drop deletes the namespace.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    drop(backend);
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("mock API server did not finish")
            .expect("mock API server assertions failed");
    });
}

/// A policy point small enough to serve by hand: the thesis's inter-node tcp policy
/// point with 3 policies (default deny and two allows) and no filler pods.
fn small_policy_point() -> Point {
    let mut p = point("pod-to-pod-policies/placement=inter,pods=1000,");
    p.objects.policies = 3;
    p.objects.filler_pods = 0;
    p
}

/// Serves a [`small_policy_point`]'s creates and readiness: namespace, server, client,
/// outsider (the client's twin on its node, with a role no policy admits), the three
/// policies, the three readiness watches, and the server pod's address (10.0.0.5).
async fn serve_policy_point(api: &mut ApiServer) {
    let (server, client) = serve_basic_creates(api, 1).await;
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    let s = api.expect_apply(&pods).await;
    assert_eq!(s.body["metadata"]["name"], "outsider");
    assert_eq!(s.body["metadata"]["labels"]["cnibench.io/role"], "outsider");
    assert_eq!(s.body["spec"], client["spec"], "the client's twin");
    let outsider = s.body.clone();
    created(s, |_| {});
    let policies = serve_creates(
        api,
        &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"),
        3,
    )
    .await;
    assert_eq!(policies, ["allow-00001", "allow-00002", "default-deny"]);
    for _ in 0..3 {
        let s = api.next().await;
        assert_eq!(s.method, Method::GET);
        if s.path.ends_with("/deployments") {
            respond(
                s.send,
                200,
                &list("DeploymentList", "apps/v1", &[ready_deployment(&server, 1)]),
            );
        } else {
            assert_eq!(s.path, pods);
            let pod = if s.query.contains("metadata.name%3Doutsider") {
                &outsider
            } else {
                &client
            };
            respond(
                s.send,
                200,
                &list("PodList", "v1", &[ready_pod(pod, "10.0.1.9")]),
            );
        }
    }
    let s = api.expect(Method::GET, &pods).await;
    assert!(
        s.query.contains("cnibench.io%2Frole%3Dserver"),
        "{}",
        s.query
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server-abc", "namespace": NS}});
    respond(
        s.send,
        200,
        &list("PodList", "v1", &[ready_pod(&pod, "10.0.0.5")]),
    );
}

#[test]
fn enforced_policies_are_proven_before_the_point_is_measured() {
    let p = small_policy_point();
    let (mut backend, mut api, exec) = mocked(&p, fast(), Cancel::default());
    let task = serve(&backend, async move {
        serve_policy_point(&mut api).await;
        serve_teardown(&mut api, &[]).await;
    });
    assert_eq!(backend.prepare(&p).unwrap(), Readiness::Ready);
    // The client reaches the server on its workload's port; the outsider, on the port
    // the policies admit the client to, does not.
    assert_eq!(
        exec.probes(),
        [
            ("client".into(), "10.0.0.5:9201".into(), "open".into()),
            ("outsider".into(), "10.0.0.5:9201".into(), "closed".into()),
        ]
    );
    let out = backend.run_rep(&p, 0, &Cancel::default()).unwrap();
    let policies = &out.raw["cnibench_kube"]["datapath"]["policies"];
    assert_eq!(policies["enforced"], true, "{}", out.raw);
    assert!(
        policies["outsider_probe"]
            .as_str()
            .unwrap()
            .contains("was closed"),
        "{policies}"
    );
    assert_eq!(exec.reps().len(), 1);
    backend.teardown(&p).unwrap();
    backend.finish().unwrap();
    join(&backend, task);
}

#[test]
fn policies_a_cni_ignores_mark_the_point_not_enforced_and_nothing_is_measured() {
    let p = small_policy_point();
    let (mut backend, mut api, exec) = mocked(&p, fast(), Cancel::default());
    exec.policies_enforced.store(false, Ordering::SeqCst);
    let task = serve(&backend, async move {
        serve_policy_point(&mut api).await;
        serve_teardown(&mut api, &[]).await;
    });
    let Readiness::NotEnforced(why) = backend.prepare(&p).unwrap() else {
        panic!("a point whose policies are not enforced must not be measured");
    };
    assert!(
        why.starts_with("the CNI let a pod that no NetworkPolicy admits"),
        "{why}"
    );
    assert!(why.contains("10.0.0.5:9201 was not closed"), "{why}");
    assert!(why.contains("3 connected"), "{why}");
    // No repetition may run on it.
    assert!(backend.run_rep(&p, 0, &Cancel::default()).is_err());
    assert!(exec.reps().is_empty());
    backend.teardown(&p).unwrap();
    backend.finish().unwrap();
    join(&backend, task);
}

#[test]
fn a_service_address_that_never_answers_fails_the_point_with_the_probe_s_account() {
    let p = point("pod-to-pod/placement=inter,workload=tcp");
    let (mut backend, mut api, exec) = mocked(&p, fast(), Cancel::default());
    exec.vip_answers.store(false, Ordering::SeqCst);
    let task = serve(&backend, async move {
        let (server, client) = serve_basic_creates(&mut api, 1).await;
        serve_ready(&mut api, &server, &client, 1).await;
        let s = api
            .expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods"))
            .await;
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server-abc", "namespace": NS}});
        respond(
            s.send,
            200,
            &list("PodList", "v1", &[ready_pod(&pod, "10.0.0.5")]),
        );
        serve_teardown(&mut api, &[]).await;
    });
    let e = backend.prepare(&p).unwrap_err().to_string();
    assert!(e.contains("the datapath is not ready"), "{e}");
    assert!(
        e.contains("the client's connections to 10.0.0.5:9201"),
        "{e}"
    );
    assert!(e.contains("was not open") && e.contains("3 refused"), "{e}");
    assert!(exec.reps().is_empty());
    backend.teardown(&p).unwrap();
    backend.finish().unwrap();
    join(&backend, task);
}

#[tokio::test]
async fn a_given_namespace_must_exist_and_needs_no_namespace_permissions() {
    let (client, mut api) = mock_client();
    let server = tokio::spawn(async move {
        serve_version(&mut api).await;
        let needed = cnibench::backend::kube::rbac::needed(true);
        assert_eq!(
            needed.len(),
            cnibench::backend::kube::rbac::PERMISSIONS.len() - 5
        );
        for _ in &needed {
            let s = api
                .expect(
                    Method::POST,
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                )
                .await;
            let a = &s.body["spec"]["resourceAttributes"];
            if a["resource"] == "namespaces" {
                // Only reading it, and asked in it: a RoleBinding there can grant it.
                assert_eq!(
                    (&a["verb"], &a["namespace"]),
                    (&json!("get"), &json!(GIVEN))
                );
            }
            let mut r = s.body.clone();
            r["status"] = json!({"allowed": true});
            respond(s.send, 201, &r);
        }
        let s = api
            .expect(Method::GET, &format!("/api/v1/namespaces/{GIVEN}"))
            .await;
        respond(s.send, 404, &status(404, "NotFound"));
    });
    let e = preflight::preflight(&client, GIVEN, true, &[], &fast())
        .await
        .unwrap_err()
        .to_string();
    server.await.unwrap();
    assert!(e.contains("namespace team-a does not exist"), "{e}");
    assert!(e.contains("kubectl create namespace team-a"), "{e}");
}

/// A backend whose run goes into [`GIVEN`] (Pod Security `restricted`).
fn mocked_given(point: &Point) -> (KubeBackend, ApiServer, Arc<FakeExec>) {
    let rt = cnibench::backend::kube::adapter::runtime().unwrap();
    let (client, api) = {
        let _guard = rt.enter();
        mock_client()
    };
    let exec = Arc::new(FakeExec::new(point));
    let mut d = driver(client, exec.clone(), fast(), Cancel::default());
    d.info.given_namespace = Some(preflight::GivenNamespace {
        name: GIVEN.into(),
        pod_security: Some("restricted".into()),
    });
    (KubeBackend::with_driver(rt, d, "mock".into()), api, exec)
}

fn names_list(names: &[&str]) -> Value {
    let items: Vec<Value> = names
        .iter()
        .map(|n| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": n, "namespace": GIVEN}}))
        .collect();
    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "items": items})
}

/// Serves the look for other runs' objects in [`GIVEN`]: one list per kind whose names
/// collide, selecting cnibench's objects of any run but t1; `first` answers the first
/// (Deployments).
async fn serve_other_runs(api: &mut ApiServer, first: &[&str]) {
    for (i, path) in [
        format!("/apis/apps/v1/namespaces/{GIVEN}/deployments"),
        format!("/api/v1/namespaces/{GIVEN}/pods"),
        format!("/api/v1/namespaces/{GIVEN}/services"),
        format!("/apis/networking.k8s.io/v1/namespaces/{GIVEN}/networkpolicies"),
    ]
    .iter()
    .enumerate()
    {
        let s = api.expect(Method::GET, path).await;
        assert!(
            s.query.contains(
                "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcnibench%2Ccnibench.io%2Frun%21%3Dt1"
            ),
            "{}",
            s.query
        );
        respond(s.send, 200, &names_list(if i == 0 { first } else { &[] }));
    }
}

#[test]
fn a_given_namespace_is_used_as_it_is_and_only_the_run_s_objects_are_deleted() {
    let p = point("pod-to-pod/placement=inter,workload=tcp");
    let (mut backend, mut api, _) = mocked_given(&p);
    let finishing = Arc::new(AtomicBool::new(false));
    let finish_seen = finishing.clone();
    let task = serve(&backend, async move {
        serve_other_runs(&mut api, &[]).await;
        // Taking stock of this run's objects (a resumed run's): none.
        let deploys = format!("/apis/apps/v1/namespaces/{GIVEN}/deployments");
        let pods = format!("/api/v1/namespaces/{GIVEN}/pods");
        let svcs = format!("/api/v1/namespaces/{GIVEN}/services");
        let policies = format!("/apis/networking.k8s.io/v1/namespaces/{GIVEN}/networkpolicies");
        for path in [
            format!("{deploys}/server"),
            format!("{deploys}/filler"),
            format!("{pods}/client"),
            format!("{pods}/outsider"),
            format!("{svcs}/server"),
        ] {
            let s = api.expect(Method::GET, &path).await;
            respond(s.send, 404, &status(404, "NotFound"));
        }
        for path in [&svcs, &policies] {
            let s = api.expect(Method::GET, path).await;
            respond(s.send, 200, &names_list(&[]));
        }
        // No namespace request of any kind: straight to the objects, in team-a.
        let s = api.expect_apply(&deploys).await;
        assert_eq!(s.body["metadata"]["namespace"], GIVEN);
        let server = s.body.clone();
        created(s, |_| {});
        let s = api.expect_apply(&pods).await;
        assert_eq!(s.body["metadata"]["name"], "client");
        assert_eq!(s.body["metadata"]["namespace"], GIVEN);
        let client = s.body.clone();
        created(s, |_| {});
        for _ in 0..2 {
            let s = api.next().await;
            if s.path == deploys {
                respond(
                    s.send,
                    200,
                    &list("DeploymentList", "apps/v1", &[ready_deployment(&server, 1)]),
                );
            } else {
                assert_eq!(s.path, pods);
                respond(
                    s.send,
                    200,
                    &list("PodList", "v1", &[ready_pod(&client, "10.0.1.9")]),
                );
            }
        }
        let s = api.expect(Method::GET, &pods).await;
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "server-abc", "namespace": GIVEN}});
        respond(
            s.send,
            200,
            &list("PodList", "v1", &[ready_pod(&pod, "10.0.0.5")]),
        );
        // The end of the run: the run's labelled objects, kind by kind; the namespace
        // stays.
        let s = api.next().await;
        assert!(
            finish_seen.load(Ordering::SeqCst),
            "{} {}",
            s.method,
            s.path
        );
        assert_eq!(
            (s.method.clone(), s.path.as_str()),
            (Method::GET, policies.as_str())
        );
        assert!(
            s.query.contains("labelSelector=cnibench.io%2Frun%3Dt1"),
            "{}",
            s.query
        );
        respond(s.send, 200, &names_list(&[]));
        let s = api
            .expect(
                Method::GET,
                &format!("/apis/discovery.k8s.io/v1/namespaces/{GIVEN}/endpointslices"),
            )
            .await;
        respond(s.send, 200, &names_list(&[]));
        let s = api.expect(Method::GET, &svcs).await;
        respond(s.send, 200, &names_list(&[]));
        let s = api.expect(Method::GET, &deploys).await;
        respond(s.send, 200, &names_list(&["server"]));
        for (collection, name) in [(&deploys, "server"), (&pods, "client")] {
            let s = api
                .expect(Method::DELETE, &format!("{collection}/{name}"))
                .await;
            assert_eq!(s.body["propagationPolicy"], "Foreground", "{}", s.body);
            respond(
                s.send,
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            );
            // Awaited gone.
            let s = api.expect(Method::GET, collection).await;
            assert!(
                s.query.contains(&format!("metadata.name%3D{name}")),
                "{}",
                s.query
            );
            let kind = if name == "server" {
                "DeploymentList"
            } else {
                "PodList"
            };
            respond(s.send, 200, &list(kind, "v1", &[]));
            if name == "server" {
                // The bare pods, listed once the Deployment is gone.
                let s = api.expect(Method::GET, &pods).await;
                assert!(s.query.contains("cnibench.io%2Frun%3Dt1"), "{}", s.query);
                respond(s.send, 200, &names_list(&["client"]));
            }
        }
    });
    assert_eq!(backend.prepare(&p).unwrap(), Readiness::Ready);
    backend.teardown(&p).unwrap();
    assert_eq!(backend.tools()["kube_namespace"], GIVEN);
    assert_eq!(backend.tools()["kube_namespace_given"], "true");
    assert_eq!(backend.tools()["kube_namespace_pod_security"], "restricted");
    finishing.store(true, Ordering::SeqCst);
    backend.finish().unwrap();
    join(&backend, task);
}

#[test]
fn a_given_namespace_with_another_run_s_objects_is_refused() {
    let p = point("pod-to-pod/placement=inter,workload=tcp");
    let (mut backend, mut api, _) = mocked_given(&p);
    let task = serve(&backend, async move {
        serve_other_runs(&mut api, &["server"]).await;
    });
    let e = backend.prepare(&p).unwrap_err().to_string();
    assert!(
        e.contains("cnibench objects of another run in namespace team-a (server)"),
        "{e}"
    );
    assert!(
        e.contains("cnibench clean --backend kube --namespace team-a --all"),
        "{e}"
    );
    join(&backend, task);
}

#[test]
fn host_network_points_need_a_privileged_given_namespace() {
    let p = point("baseline/");
    assert!(p.topology.host_network);
    let (backend, _api, _) = mocked_given(&p);
    let Readiness::NotApplicable(why) = backend.applicability(&p) else {
        panic!("a restricted namespace cannot hold host-network pods");
    };
    assert!(
        why.contains("namespace team-a (--namespace) enforces 'restricted'"),
        "{why}"
    );
}

#[test]
fn one_policy_alone_is_the_default_deny_and_not_applicable() {
    let mut p = small_policy_point();
    p.objects.policies = 1;
    let (backend, _api, _) = mocked(&p, fast(), Cancel::default());
    let Readiness::NotApplicable(why) = backend.applicability(&p) else {
        panic!("policies=1 denies the client too");
    };
    assert!(
        why.contains("policies=1 is the default deny alone"),
        "{why}"
    );
    p.objects.policies = 2;
    assert_eq!(backend.applicability(&p), Readiness::Ready);
}
