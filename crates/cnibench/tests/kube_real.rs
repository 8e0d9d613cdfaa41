//! Tier kube_real: the kube backend against a real control plane — kube-apiserver,
//! kube-controller-manager, kube-scheduler and etcd on loopback, started by
//! `scripts/control-plane.sh` — as the non-admin user `cnibench`, bound only to the
//! ClusterRole of `manifests/rbac.yaml`.
//!
//! Every test is `#[ignore]`d: the default test command has no control plane (its build
//! takes minutes). `bash scripts/test-kube.sh` builds and starts one and runs these one at
//! a time (they share its two nodes).
//!
//! **There is no kubelet**: the Node objects are created by the test, and the test plays
//! the kubelet ([`Kubelet`]) and the node lifecycle controller (off in the control plane,
//! since no kubelet renews node leases: the test lifts the API server's not-ready taint
//! from the nodes it created). It watches pods bound to its nodes and writes their status
//! through the status subresource (phase Running, a pod IP from 198.18.64.0/18 or the
//! node's address for host-network pods, every condition True), and it finishes the
//! deletion of pods that are terminating (grace period 0), as a kubelet does once the
//! containers stopped. Nothing ever runs in a pod, so `pods/exec` has no kubelet to reach:
//! the API server answers every exec with an error, each point's first exec (the client's
//! `netload probe` of the measured address, the last step of its preparation) fails with
//! it, and the point is recorded as failed. The tests check that it fails there, after
//! its objects were created and awaited, and that no measurement is recorded.
//!
//! Node addresses are 127.0.0.2 and 127.0.0.3 on port 10250, where nothing listens: the
//! API server's exec attempts stay on loopback. Service addresses come from
//! 198.18.128.0/17; nothing dials them (there is no kube-proxy).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

/// The two nodes: name, `kubernetes.io/hostname` label (deliberately not the name, as on
/// EKS and some kubeadm clusters), address.
const NODES: [(&str, &str, &str); 2] = [
    ("worker-1", "host-worker-1", "127.0.0.2"),
    ("worker-2", "host-worker-2", "127.0.0.3"),
];
const MANAGED: &str = "app.kubernetes.io/managed-by=cnibench";
/// Longest any `cnibench` command of these tests may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(600);

fn env_path(var: &str) -> PathBuf {
    let Some(path) = std::env::var_os(var) else {
        panic!(
            "{var} is not set: these tests need the test control plane; run `bash scripts/test-kube.sh`"
        )
    };
    PathBuf::from(path)
}

fn admin_kubeconfig() -> PathBuf {
    env_path("CNIBENCH_ADMIN_KUBECONFIG")
}

fn user_kubeconfig() -> PathBuf {
    env_path("CNIBENCH_USER_KUBECONFIG")
}

async fn client_of(path: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(path).unwrap();
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap();
    Client::try_from(config).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Creates the two Node objects if missing and writes their status as a kubelet would
/// (Ready, room for 110 pods): the scheduler places pods on them.
async fn ensure_nodes(admin: &Client) {
    let nodes: Api<Node> = Api::all(admin.clone());
    for (name, hostname, address) in NODES {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": hostname,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            }},
        }))
        .unwrap();
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => panic!("create node {name}: {e}"),
        }
        let capacity = json!({"cpu": "64", "memory": "256Gi", "pods": "110"});
        let status = json!({"status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "the test plays the kubelet"}],
            "addresses": [{"type": "InternalIP", "address": address},
                          {"type": "Hostname", "address": hostname}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "capacity": capacity,
            "allocatable": capacity,
            "nodeInfo": {"kubeletVersion": "v0.0.0-test", "containerRuntimeVersion": "none://",
                         "architecture": "amd64", "operatingSystem": "linux",
                         "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                         "osImage": "", "kubeProxyVersion": ""},
        }});
        nodes
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .unwrap_or_else(|e| panic!("status of node {name}: {e}"));
        // The API server taints a new node not-ready; the node lifecycle controller (off:
        // nothing renews node leases) would lift it once the node reports Ready.
        nodes
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taints": null}})),
            )
            .await
            .unwrap_or_else(|e| panic!("taints of node {name}: {e}"));
    }
}

/// What the kubelet does with a pod that was bound to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Running and Ready.
    Run,
    /// Its image cannot be pulled: the container waits with this reason and message.
    ImageFails(&'static str, &'static str),
}

/// The test's kubelet (see the module doc). Stops when dropped.
struct Kubelet {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn node_address(node: &str) -> Option<&'static str> {
    NODES.iter().find(|n| n.0 == node).map(|n| n.2)
}

impl Kubelet {
    /// Starts it on `rt`; `fate` decides per pod.
    fn start(rt: &tokio::runtime::Runtime, admin: Client, fate: fn(&Pod) -> Fate) -> Kubelet {
        let task = rt.spawn(async move {
            // Pods whose status it wrote, `namespace/name/uid`: written once each.
            let seen: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
            let next_ip = AtomicU32::new(0);
            let all: Api<Pod> = Api::all(admin.clone());
            let stream = watcher(all, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            futures::pin_mut!(stream);
            // Ends when the test drops the Kubelet (the task is aborted).
            while let Some(Ok(pod)) = stream.next().await {
                let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                    continue;
                };
                let Some(host_ip) = node_address(&node) else {
                    continue;
                };
                let ns = pod.namespace().unwrap_or_default();
                let name = pod.name_any();
                let api: Api<Pod> = Api::namespaced(admin.clone(), &ns);
                if pod.metadata.deletion_timestamp.is_some() {
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: pod.uid(),
                            resource_version: None,
                        }),
                        ..DeleteParams::default()
                    };
                    let _ = api.delete(&name, &dp).await;
                    continue;
                }
                let phase = pod.status.as_ref().and_then(|s| s.phase.clone());
                let fate = fate(&pod);
                // By uid: a replaced pod (the client moving nodes) keeps its name.
                let key = format!("{ns}/{name}/{}", pod.uid().unwrap_or_default());
                if seen.lock().unwrap().contains(&key) || phase.as_deref() == Some("Running") {
                    continue;
                }
                let host_network = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false);
                let ip = if host_network {
                    host_ip.to_string()
                } else {
                    let n = next_ip.fetch_add(1, Ordering::SeqCst) % 16_384;
                    format!("198.18.{}.{}", 64 + n / 256, n % 256)
                };
                let image = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.containers.first())
                    .and_then(|c| c.image.clone())
                    .unwrap_or_default();
                let containers: Vec<String> = pod
                    .spec
                    .as_ref()
                    .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                    .unwrap_or_default();
                let now = k8s_openapi::jiff::Timestamp::now().to_string();
                let status = match &fate {
                    Fate::Run => {
                        let conditions: Vec<Value> = [
                            "PodReadyToStartContainers",
                            "Initialized",
                            "ContainersReady",
                            "Ready",
                            "PodScheduled",
                        ]
                        .iter()
                        .map(|t| json!({"type": t, "status": "True", "lastTransitionTime": now}))
                        .collect();
                        let statuses: Vec<Value> = containers
                            .iter()
                            .map(|c| {
                                json!({"name": c, "ready": true, "started": true,
                                       "restartCount": 0, "image": image, "imageID": "",
                                       "state": {"running": {"startedAt": now}}})
                            })
                            .collect();
                        json!({"status": {
                            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                            "hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "startTime": now,
                            "conditions": conditions, "containerStatuses": statuses,
                        }})
                    }
                    Fate::ImageFails(reason, message) => {
                        let statuses: Vec<Value> = containers
                            .iter()
                            .map(|c| {
                                json!({"name": c, "ready": false, "started": false,
                                       "restartCount": 0, "image": image, "imageID": "",
                                       "state": {"waiting": {"reason": reason, "message": message}}})
                            })
                            .collect();
                        json!({"status": {
                            "phase": "Pending", "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                            "startTime": now,
                            "conditions": [
                                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                                {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
                                 "message": "containers with unready status: [netload]",
                                 "lastTransitionTime": now}],
                            "containerStatuses": statuses,
                        }})
                    }
                };
                // A conflict with the scheduler's or a controller's write is retried.
                for attempt in 1..=5 {
                    match api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                    {
                        Ok(_) => {
                            seen.lock().unwrap().insert(key.clone());
                            break;
                        }
                        Err(e) => {
                            eprintln!("kubelet (test): status of pod {key}, attempt {attempt}: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        });
        Kubelet { task }
    }
}

/// Objects labelled by cnibench anywhere in the cluster, as `Kind namespace/name`.
async fn leftovers(admin: &Client) -> Vec<String> {
    async fn of<K>(admin: &Client, out: &mut Vec<String>)
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(admin.clone());
        let list = api
            .list_metadata(&ListParams::default().labels(MANAGED))
            .await
            .unwrap();
        for m in list.items {
            out.push(format!(
                "{} {}/{}",
                K::kind(&()),
                m.metadata.namespace.unwrap_or_default(),
                m.metadata.name.unwrap_or_default()
            ));
        }
    }
    let mut out = Vec::new();
    of::<Namespace>(admin, &mut out).await;
    of::<Pod>(admin, &mut out).await;
    of::<Deployment>(admin, &mut out).await;
    of::<ReplicaSet>(admin, &mut out).await;
    of::<Service>(admin, &mut out).await;
    of::<EndpointSlice>(admin, &mut out).await;
    of::<NetworkPolicy>(admin, &mut out).await;
    out
}

/// Every object of cnibench seen while a watch ran: kind → `namespace/name`, and the
/// Pod Security levels its namespaces carried.
#[derive(Debug, Default)]
struct Seen {
    objects: BTreeMap<&'static str, BTreeSet<String>>,
    pod_security: BTreeSet<String>,
}

/// Watches every kind cnibench creates (label `MANAGED`) until dropped.
struct Recorder {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    seen: Arc<Mutex<Seen>>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Recorder {
    fn start(rt: &tokio::runtime::Runtime, admin: &Client) -> Recorder {
        fn watch<K>(
            rt: &tokio::runtime::Runtime,
            admin: &Client,
            seen: &Arc<Mutex<Seen>>,
        ) -> tokio::task::JoinHandle<()>
        where
            K: Resource<DynamicType = ()>
                + k8s_openapi::Resource
                + Clone
                + serde::de::DeserializeOwned
                + std::fmt::Debug
                + Send
                + 'static,
        {
            let api: Api<K> = Api::all(admin.clone());
            let seen = Arc::clone(seen);
            rt.spawn(async move {
                let stream = watcher(api, watcher::Config::default().labels(MANAGED))
                    .default_backoff()
                    .applied_objects();
                futures::pin_mut!(stream);
                // Ends when the Recorder is dropped (the task is aborted).
                while let Some(Ok(o)) = stream.next().await {
                    let mut s = seen.lock().unwrap();
                    if let Some(level) = o
                        .meta()
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("pod-security.kubernetes.io/enforce"))
                    {
                        s.pod_security.insert(level.clone());
                    }
                    s.objects.entry(K::KIND).or_default().insert(format!(
                        "{}/{}",
                        o.meta().namespace.clone().unwrap_or_default(),
                        o.meta().name.clone().unwrap_or_default()
                    ));
                }
            })
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let tasks = vec![
            watch::<Namespace>(rt, admin, &seen),
            watch::<Pod>(rt, admin, &seen),
            watch::<Deployment>(rt, admin, &seen),
            watch::<Service>(rt, admin, &seen),
            watch::<EndpointSlice>(rt, admin, &seen),
            watch::<NetworkPolicy>(rt, admin, &seen),
        ];
        Recorder { tasks, seen }
    }

    fn count(&self, kind: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .objects
            .get(kind)
            .map_or(0, BTreeSet::len)
    }
}

/// A `cnibench` child process, killed if the test ends before it does.
struct Cnibench(Child);

impl Drop for Cnibench {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Cnibench {
    fn spawn(args: &[&str], log: &Path) -> Cnibench {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cnibench"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Cnibench(child)
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.0.id());
    }

    /// Waits (bounded) for the exit status.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t0 = netload::clock::now();
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(
                t0.elapsed() < limit,
                "cnibench still running after {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Runs `cnibench ARGS` to its end; returns the exit code and its output.
fn cnibench(args: &[&str], dir: &Path, name: &str) -> (Option<i32>, String) {
    let log = dir.join(format!("{name}.log"));
    let mut c = Cnibench::spawn(args, &log);
    let status = c.wait(COMMAND_LIMIT);
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

/// Blocks until `cond` holds (checked every 200 ms) or `limit` passes.
fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = netload::clock::now();
    while !cond() {
        assert!(t0.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `point_end` records of a run directory.
fn point_ends(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("point-end"))
        .collect()
}

fn reps(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("type").and_then(Value::as_str) == Some("rep"))
        .count()
}

fn write_suite(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("suite.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Every object kind of the thesis suite, small: the host-network baseline (privileged
/// namespace), pod-to-pod both placements, policies with filler pods, services with
/// EndpointSlices, HTTP replicas, RR through a service.
const EVERY_KIND: &str = r#"
name = "e2e-every-kind"
[defaults]
duration = "1s"
omit = "0s"
[[scenario]]
kind = "baseline"
workload = "tcp"
[[scenario]]
kind = "pod-to-pod"
placement = ["inter", "intra"]
workload = "tcp"
[[scenario]]
kind = "pod-to-pod-policies"
pods = 20
workload = "tcp"
[[scenario]]
kind = "pod-to-service"
services = [1, 50]
placement = "inter"
workload = "tcp"
[[scenario]]
kind = "http-replicas"
replicas = 3
services = 10
file-size = "1MB"
[[scenario]]
kind = "rr-latency"
placement = "intra"
path = "service"
workload = "tcp-rr"
"#;

fn user() -> String {
    user_kubeconfig().display().to_string()
}

/// `cnibench run --backend kube` as user cnibench: `suite` into `out`, with `extra` flags
/// and an image no node can pull (nothing runs anyway); the exit code and the output.
fn run_as_user(dir: &Path, suite: &Path, out: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let user = user();
    let mut args = vec![
        "run",
        "--backend",
        "kube",
        "--kubeconfig",
        &user,
        "--suite",
        suite.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--image",
        "registry.invalid/netload:test",
    ];
    args.extend_from_slice(extra);
    cnibench(&args, dir, "run")
}

/// Asserts that every point of a run got through its objects and readiness and failed at
/// its first exec (the datapath probe), with the reason named; nothing measured.
fn assert_failed_at_exec(dir: &Path, log: &str) {
    assert!(
        dir.join("results.jsonl").exists(),
        "the run wrote no results:\n{log}"
    );
    let ends = point_ends(dir);
    assert!(!ends.is_empty(), "no point ended:\n{log}");
    for e in &ends {
        let note = e["note"].as_str().unwrap_or_default();
        let status = e["status"].as_str().unwrap_or_default();
        assert_eq!(status, "failed", "{e}\n{log}");
        assert!(
            note.contains("prepare failed")
                && note.contains("exec in pod client")
                && note.contains(":10250/exec/")
                && note.contains("connection refused"),
            "the point must fail at its first exec, after its objects are ready: {note}\n{log}"
        );
    }
    assert_eq!(reps(dir), 0, "nothing may be recorded as measured:\n{log}");
}

#[test]
#[ignore = "needs the test control plane: bash scripts/test-kube.sh"]
fn kube_real_run_creates_every_object_kind_as_the_cnibench_user() {
    let rt = runtime();
    let admin = rt.block_on(client_of(&admin_kubeconfig()));
    rt.block_on(ensure_nodes(&admin));
    let _kubelet = Kubelet::start(&rt, admin.clone(), |_| Fate::Run);
    let recorder = Recorder::start(&rt, &admin);
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path(), EVERY_KIND);
    let out = tmp.path().join("run");
    let (code, log) = run_as_user(tmp.path(), &suite, &out, &[]);
    assert_eq!(code, Some(1), "every point fails at exec:\n{log}");
    assert_failed_at_exec(&out, &log);
    assert_eq!(point_ends(&out).len(), 8, "{log}");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["tools"]["kube_nodes"], "worker-1,worker-2", "{meta}");
    // Objects as the real API server stored them: each kind, pods admitted by the
    // restricted (and, for the baseline, privileged) Pod Security level.
    let seen = recorder.seen.lock().unwrap();
    assert_eq!(
        seen.pod_security,
        BTreeSet::from(["privileged".to_string(), "restricted".to_string()]),
        "{seen:?}"
    );
    drop(seen);
    assert!(recorder.count("Namespace") >= 1);
    // server, client, 20 fillers, 3 HTTP replicas (some pods replaced between points).
    assert!(recorder.count("Pod") >= 25, "{}", recorder.count("Pod"));
    assert!(recorder.count("Deployment") >= 2);
    // The measured Service and 49 fillers, each with its slice.
    assert!(
        recorder.count("Service") >= 50,
        "{}",
        recorder.count("Service")
    );
    assert!(
        recorder.count("EndpointSlice") >= 49,
        "{}",
        recorder.count("EndpointSlice")
    );
    // 2 × 20 policies: default-deny and 39 allows.
    assert_eq!(recorder.count("NetworkPolicy"), 40);
    let left = rt.block_on(leftovers(&admin));
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// `--namespace`: a namespace an admin created (restricted, with an object of its own)
/// is used as it is: cnibench creates no namespace, never labels or deletes this one, the
/// host-network baseline is not applicable in it, every other point gets through its
/// objects and readiness, and at the end nothing labelled by cnibench is left while the
/// namespace and its own object stay.
#[test]
#[ignore = "needs the test control plane: bash scripts/test-kube.sh"]
fn kube_real_run_in_a_given_namespace_keeps_it_and_leaves_nothing_of_cnibench() {
    let rt = runtime();
    let admin = rt.block_on(client_of(&admin_kubeconfig()));
    rt.block_on(ensure_nodes(&admin));
    let _kubelet = Kubelet::start(&rt, admin.clone(), |_| Fate::Run);
    let recorder = Recorder::start(&rt, &admin);
    let name = "team-given";
    let nss: Api<Namespace> = Api::all(admin.clone());
    let labels = BTreeMap::from([(
        "pod-security.kubernetes.io/enforce".to_string(),
        "restricted".to_string(),
    )]);
    let theirs: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "theirs"},
        "spec": {"ports": [{"port": 80}]}
    }))
    .unwrap();
    let labels = rt.block_on(async {
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels),
                ..Default::default()
            },
            ..Namespace::default()
        };
        let created = nss.create(&PostParams::default(), &ns).await.unwrap();
        let svcs: Api<Service> = Api::namespaced(admin.clone(), name);
        svcs.create(&PostParams::default(), &theirs).await.unwrap();
        // As the API server stored them (it adds kubernetes.io/metadata.name).
        created.metadata.labels.unwrap_or_default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(tmp.path(), EVERY_KIND);
    let out = tmp.path().join("run");
    let (code, log) = run_as_user(tmp.path(), &suite, &out, &["--namespace", name]);
    assert_eq!(code, Some(1), "every point fails at exec:\n{log}");
    let ends = point_ends(&out);
    assert_eq!(ends.len(), 8, "{log}");
    let (baseline, others): (Vec<&Value>, Vec<&Value>) = ends
        .iter()
        .partition(|e| e["point"].as_str().unwrap().starts_with("baseline/"));
    assert_eq!(baseline[0]["status"], "not-applicable", "{log}");
    let why = baseline[0]["note"].as_str().unwrap();
    assert!(
        why.contains("namespace team-given (--namespace) enforces 'restricted'"),
        "{why}"
    );
    for e in others {
        let note = e["note"].as_str().unwrap_or_default();
        assert_eq!(e["status"], "failed", "{e}\n{log}");
        assert!(note.contains("exec in pod client"), "{note}\n{log}");
    }
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["tools"]["kube_namespace"], name, "{meta}");
    assert_eq!(meta["tools"]["kube_namespace_given"], "true", "{meta}");
    // Its objects went into the given namespace, and no namespace of its own was made.
    {
        let seen = recorder.seen.lock().unwrap();
        assert!(!seen.objects.contains_key("Namespace"), "{seen:?}");
        let pods = &seen.objects["Pod"];
        assert!(
            pods.iter().all(|p| p.starts_with("team-given/")),
            "{pods:?}"
        );
        assert!(pods.contains("team-given/outsider"), "{pods:?}");
        assert_eq!(seen.objects["NetworkPolicy"].len(), 40, "{seen:?}");
    }
    let left = rt.block_on(leftovers(&admin));
    assert!(left.is_empty(), "left behind: {left:?}");
    let (ns, their_service) = rt.block_on(async {
        let ns = nss.get(name).await.unwrap();
        let svcs: Api<Service> = Api::namespaced(admin.clone(), name);
        let theirs = svcs.get_opt("theirs").await.unwrap();
        nss.delete(name, &DeleteParams::default()).await.unwrap();
        (ns, theirs)
    });
    assert_eq!(
        ns.metadata.labels.unwrap_or_default(),
        labels,
        "labels changed"
    );
    assert!(ns.metadata.deletion_timestamp.is_none(), "being deleted");
    assert!(their_service.is_some(), "their Service went");
}

/// The real restricted profile admits cnibench's pods and rejects one that drops a
/// single restriction (so the label is enforced, not decoration).
#[test]
#[ignore = "needs the test control plane: bash scripts/test-kube.sh"]
fn kube_real_restricted_pod_security_admits_cnibench_pods_only() {
    use cnibench::backend::kube::objects;
    let rt = runtime();
    let user = rt.block_on(client_of(&user_kubeconfig()));
    let points =
        cnibench::suite::expand(&cnibench::suite::presets::load("quick").unwrap()).unwrap();
    let point = points.iter().find(|p| p.scenario == "pod-to-pod").unwrap();
    let settings = objects::Settings {
        run: "psa-check".into(),
        image: "registry.invalid/netload:test".into(),
        server_node: "host-worker-1".into(),
        client_node: "host-worker-2".into(),
        service_mode: objects::ServiceMode::EndpointSlice,
        tolerations: Vec::new(),
        namespace: None,
    };
    let ns = objects::namespace(&settings, point);
    let name = ns.name_any();
    let nss: Api<Namespace> = Api::all(user.clone());
    rt.block_on(async {
        nss.create(&PostParams::default(), &ns).await.unwrap();
        let pods: Api<Pod> = Api::namespaced(user.clone(), &name);
        let dry = PostParams {
            dry_run: true,
            ..PostParams::default()
        };
        // The ServiceAccount admission needs the namespace's default account, which the
        // controller-manager creates within moments.
        let client = objects::client(&settings, point);
        let mut admitted = None;
        for _ in 0..50 {
            match pods.create(&dry, &client).await {
                Ok(p) => {
                    admitted = Some(p);
                    break;
                }
                Err(kube::Error::Api(s)) if s.message.contains("serviceaccount") => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("the restricted profile rejected cnibench's client: {e}"),
            }
        }
        assert!(admitted.is_some(), "no default service account in {name}");
        let mut bad = client.clone();
        let c = &mut bad.spec.as_mut().unwrap().containers[0];
        c.security_context
            .as_mut()
            .unwrap()
            .allow_privilege_escalation = None;
        let e = pods.create(&dry, &bad).await.unwrap_err().to_string();
        assert!(
            e.contains("violates PodSecurity \"restricted:latest\"")
                && e.contains("allowPrivilegeEscalation"),
            "{e}"
        );
        nss.delete(&name, &DeleteParams::default()).await.unwrap();
    });
}

/// Ctrl-C while thousands of Services are being created: cnibench stops sending, tears
/// the namespace down; `cnibench clean` then finds nothing, and nothing labelled by
/// cnibench is left in the cluster.
#[test]
#[ignore = "needs the test control plane: bash scripts/test-kube.sh"]
fn kube_real_ctrl_c_mid_creation_then_clean_leaves_nothing() {
    let rt = runtime();
    let admin = rt.block_on(client_of(&admin_kubeconfig()));
    rt.block_on(ensure_nodes(&admin));
    let _kubelet = Kubelet::start(&rt, admin.clone(), |_| Fate::Run);
    let recorder = Recorder::start(&rt, &admin);
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(
        tmp.path(),
        r#"
name = "e2e-ctrl-c"
[[scenario]]
kind = "pod-to-service"
services = 3000
placement = "inter"
workload = "tcp"
"#,
    );
    let out = tmp.path().join("run");
    let log = tmp.path().join("run.log");
    let mut run = Cnibench::spawn(
        &[
            "run",
            "--backend",
            "kube",
            "--kubeconfig",
            &user(),
            "--suite",
            suite.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--image",
            "registry.invalid/netload:test",
        ],
        &log,
    );
    wait_until("200 services created", Duration::from_secs(120), || {
        recorder.count("Service") >= 200
    });
    run.signal("-INT");
    let status = run.wait(COMMAND_LIMIT);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(130), "{text}");
    assert!(
        recorder.count("Service") < 3000,
        "Ctrl-C came after the creation ended; the test proves nothing:\n{text}"
    );
    let (code, clean) = cnibench(
        &[
            "clean",
            "--backend",
            "kube",
            "--kubeconfig",
            &user(),
            "--all",
        ],
        tmp.path(),
        "clean",
    );
    assert_eq!(code, Some(0), "{clean}");
    let left = rt.block_on(leftovers(&admin));
    assert!(left.is_empty(), "left behind: {left:?}\n{text}\n{clean}");
}

/// kill -9 while a point's Services are being created leaves the namespace and part of
/// them; `--resume` takes the namespace over (no 409, no manual clean), brings it to each
/// remaining point's objects and finishes the run; nothing is left.
#[test]
#[ignore = "needs the test control plane: bash scripts/test-kube.sh"]
fn kube_real_crash_mid_run_then_resume_completes_without_clean() {
    let rt = runtime();
    let admin = rt.block_on(client_of(&admin_kubeconfig()));
    rt.block_on(ensure_nodes(&admin));
    let _kubelet = Kubelet::start(&rt, admin.clone(), |_| Fate::Run);
    let recorder = Recorder::start(&rt, &admin);
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(
        tmp.path(),
        r#"
name = "e2e-resume"
[defaults]
duration = "1s"
omit = "0s"
[[scenario]]
kind = "pod-to-service"
services = [2000, 20]
placement = "inter"
workload = "tcp"
"#,
    );
    let out = tmp.path().join("run");
    let log = tmp.path().join("run.log");
    let mut run = Cnibench::spawn(
        &[
            "run",
            "--backend",
            "kube",
            "--kubeconfig",
            &user(),
            "--suite",
            suite.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--image",
            "registry.invalid/netload:test",
        ],
        &log,
    );
    wait_until("300 services created", Duration::from_secs(120), || {
        recorder.count("Service") >= 300
    });
    run.signal("-KILL");
    run.wait(Duration::from_secs(10));
    let crashed = std::fs::read_to_string(&log).unwrap();
    let left = rt.block_on(leftovers(&admin));
    assert!(
        left.iter().any(|l| l.starts_with("Namespace ")),
        "the crash must leave the namespace for the test to mean anything: {crashed}"
    );
    let (code, resumed) = cnibench(
        &[
            "run",
            "--resume",
            out.to_str().unwrap(),
            "--backend",
            "kube",
            "--kubeconfig",
            &user(),
        ],
        tmp.path(),
        "resume",
    );
    assert_eq!(code, Some(1), "both points fail at exec:\n{resumed}");
    assert!(!resumed.contains("already exists"), "{resumed}");
    assert_failed_at_exec(&out, &resumed);
    assert_eq!(point_ends(&out).len(), 2, "{resumed}");
    let left = rt.block_on(leftovers(&admin));
    assert!(left.is_empty(), "left behind: {left:?}\n{resumed}");
}

/// The server's image cannot be pulled (the test's kubelet reports ErrImagePull, as a
/// kubelet does for a missing image): the point fails within seconds, naming the pod, its
/// node and the reason, instead of waiting out the 300 s readiness timeout.
#[test]
#[ignore = "needs the test control plane: bash scripts/test-kube.sh"]
fn kube_real_missing_image_fails_fast_naming_pod_node_and_reason() {
    let rt = runtime();
    let admin = rt.block_on(client_of(&admin_kubeconfig()));
    rt.block_on(ensure_nodes(&admin));
    let _kubelet = Kubelet::start(&rt, admin.clone(), |pod| {
        let role = pod.labels().get("cnibench.io/role").cloned();
        if role.as_deref() == Some("server") {
            Fate::ImageFails(
                "ErrImagePull",
                "failed to pull and unpack image \"registry.invalid/netload:test\": not found",
            )
        } else {
            Fate::Run
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let suite = write_suite(
        tmp.path(),
        r#"
name = "e2e-image"
[[scenario]]
kind = "pod-to-pod"
placement = "inter"
workload = "tcp"
"#,
    );
    let out = tmp.path().join("run");
    let t0 = netload::clock::now();
    let (code, log) = cnibench(
        &[
            "run",
            "--backend",
            "kube",
            "--kubeconfig",
            &user(),
            "--suite",
            suite.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--image",
            "registry.invalid/netload:test",
        ],
        tmp.path(),
        "run",
    );
    let took = t0.elapsed();
    assert_eq!(code, Some(1), "{log}");
    let ends = point_ends(&out);
    assert_eq!(ends.len(), 1, "{log}");
    let note = ends[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("prepare failed")
            && note.contains("pod server-")
            && note.contains("on node worker-1 cannot start")
            && note.contains("ErrImagePull")
            && note.contains("not found"),
        "{note}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}: {log}");
    let left = rt.block_on(leftovers(&admin));
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Used by the scale test: `n` objects per kind.
fn scale_sizes() -> (u32, u32) {
    let get = |v: &str, d: u32| {
        std::env::var(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    (
        get("CNIBENCH_SCALE_SERVICES", 10_000),
        get("CNIBENCH_SCALE_POLICIES", 20_000),
    )
}

/// 10 000 Services (with their EndpointSlices) and 20 000 NetworkPolicies created and
/// deleted as the cnibench user at several `--concurrency` values, through the backend's
/// own bulk functions; prints wall times and the 429s the API server answered.
#[test]
#[ignore = "needs the test control plane and minutes: bash scripts/test-kube.sh --scale"]
fn kube_real_scale_services_and_policies() {
    use cnibench::backend::Cancel;
    use cnibench::backend::kube::cluster::{self, InFlight, Tuning};
    use cnibench::backend::kube::objects;
    let rt = runtime();
    let user = rt.block_on(client_of(&user_kubeconfig()));
    let (n_services, n_policies) = scale_sizes();
    let levels: Vec<usize> = std::env::var("CNIBENCH_SCALE_CONCURRENCY")
        .unwrap_or_else(|_| "8,32,128".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let points =
        cnibench::suite::expand(&cnibench::suite::presets::load("quick").unwrap()).unwrap();
    let point = points.iter().find(|p| p.scenario == "pod-to-pod").unwrap();
    let mut report = String::from(
        "| concurrency | kind | objects | create s | create /s | delete s | delete /s | 429s | other retries |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut namespace_delete = None;
    for &concurrency in &levels {
        let settings = objects::Settings {
            run: format!("scale-{concurrency}"),
            image: "registry.invalid/netload:test".into(),
            server_node: "host-worker-1".into(),
            client_node: "host-worker-2".into(),
            service_mode: objects::ServiceMode::EndpointSlice,
            tolerations: Vec::new(),
            namespace: None,
        };
        let ns = objects::namespace(&settings, point);
        let ns_name = ns.name_any();
        let t = Tuning {
            concurrency,
            ..Tuning::default()
        };
        let cancel = Cancel::default();
        let bar = indicatif::ProgressBar::hidden();
        let fl = InFlight::default();
        let (svcs, slices): (Vec<Service>, Vec<EndpointSlice>) = (1..=n_services)
            .map(|k| {
                let (s, e) = objects::filler_service(&settings, k);
                (s, e.unwrap())
            })
            .unzip();
        let policies = objects::policies(&settings, n_policies);
        let names: Vec<String> = (1..=n_services).map(objects::filler_service_name).collect();
        let pnames: Vec<String> = (0..n_policies).map(objects::policy_name).collect();
        rt.block_on(async {
            let nss: Api<Namespace> = Api::all(user.clone());
            cluster::apply(&nss, &ns, &t, None).await.unwrap();
            let mut row = |kind: &str, n: usize, c: f64, d: f64| {
                let (throttled, other) = t.retries.take();
                let _ = writeln!(
                    report,
                    "| {concurrency} | {kind} | {n} | {c:.1} | {:.0} | {d:.1} | {:.0} | {throttled} | {other} |",
                    n as f64 / c,
                    n as f64 / d
                );
            };
            let t0 = netload::clock::now();
            cluster::apply_all(&user, &ns_name, &svcs, &t, &cancel, &bar, &fl)
                .await
                .unwrap();
            let c = t0.elapsed().as_secs_f64();
            let svc_api: Api<Service> = Api::namespaced(user.clone(), &ns_name);
            let listed = svc_api.list_metadata(&ListParams::default()).await.unwrap();
            assert_eq!(listed.items.len(), svcs.len());
            let t0 = netload::clock::now();
            cluster::delete_all::<Service>(&user, &ns_name, &names, &t, &bar)
                .await
                .unwrap();
            row("Service", svcs.len(), c, t0.elapsed().as_secs_f64());
            let t0 = netload::clock::now();
            cluster::apply_all(&user, &ns_name, &slices, &t, &cancel, &bar, &fl)
                .await
                .unwrap();
            let c = t0.elapsed().as_secs_f64();
            let t0 = netload::clock::now();
            cluster::delete_all::<EndpointSlice>(&user, &ns_name, &names, &t, &bar)
                .await
                .unwrap();
            row("EndpointSlice", slices.len(), c, t0.elapsed().as_secs_f64());
            let t0 = netload::clock::now();
            cluster::apply_all(&user, &ns_name, &policies, &t, &cancel, &bar, &fl)
                .await
                .unwrap();
            let c = t0.elapsed().as_secs_f64();
            let pol_api: Api<NetworkPolicy> = Api::namespaced(user.clone(), &ns_name);
            let listed = pol_api.list_metadata(&ListParams::default()).await.unwrap();
            assert_eq!(listed.items.len(), policies.len());
            let t0 = netload::clock::now();
            cluster::delete_all::<NetworkPolicy>(&user, &ns_name, &pnames, &t, &bar)
                .await
                .unwrap();
            row("NetworkPolicy", policies.len(), c, t0.elapsed().as_secs_f64());
            let left = svc_api.list_metadata(&ListParams::default()).await.unwrap();
            assert!(left.items.is_empty(), "services left in {ns_name}");
            // Off by default: on the loaded test machine the namespace controller's
            // collection delete of 3 000 Services timed out again and again (minutes).
            if namespace_delete.is_none() && std::env::var_os("CNIBENCH_SCALE_NAMESPACE_DELETE").is_some() {
                // Once: the Services left to the namespace controller (by collection).
                cluster::apply_all(&user, &ns_name, &svcs, &t, &cancel, &bar, &fl)
                    .await
                    .unwrap();
                t.retries.take();
                let t0 = netload::clock::now();
                cluster::delete_namespace(&user, &ns_name, &t, &bar).await.unwrap();
                namespace_delete = Some(t0.elapsed().as_secs_f64());
            } else {
                cluster::delete_namespace(&user, &ns_name, &t, &bar).await.unwrap();
            }
        });
    }
    if let Some(d) = namespace_delete {
        let _ = writeln!(
            report,
            "\nA namespace holding {n_services} Services, deleted (the namespace controller, by collection): gone after {d:.1} s."
        );
    }
    println!("{report}");
    if let Some(p) = std::env::var_os("CNIBENCH_SCALE_REPORT") {
        std::fs::write(p, &report).unwrap();
    }
}
