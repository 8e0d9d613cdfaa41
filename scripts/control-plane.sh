#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for the kube backend's end-to-end tests
# (crates/cnibench/tests/kube_real.rs, run by scripts/test-kube.sh).
#
#   bash scripts/control-plane.sh build          # build once, print the binaries' folder
#   bash scripts/control-plane.sh start DIR      # start in DIR (must not exist), print its env file
#   bash scripts/control-plane.sh stop DIR       # stop it, remove DIR
#
# build: kube-apiserver, kube-controller-manager, kube-scheduler (the upstream commands of
# k8s.io/kubernetes, one release) and an embedded etcd, from the Go module proxy
# (scripts/control-plane/go.mod), into ~/.cache/cnibench/control-plane/<hash of go.sum and
# the mains> (CNIBENCH_CACHE moves ~/.cache/cnibench). A second build with the same
# sources is a no-op. Go is needed for this only.
#
# start: generates a CA, serving and client certificates and the service-account key
# (openssl), starts the four on 127.0.0.1 on free high ports, waits until the API server
# is ready, applies manifests/rbac.yaml (the ClusterRole cnibench ships, bound to user
# `cnibench`) and writes DIR/admin.kubeconfig (system:masters) and DIR/cnibench.kubeconfig
# (user cnibench: nothing but that ClusterRole). DIR/env holds the paths and ports.
#
# There is no kubelet: pods are scheduled to Node objects that the tests create, and never
# run. The tests play the kubelet (they write pod status). The node lifecycle controller is
# off, since no kubelet renews node leases; pods/exec has no kubelet to reach.
#
# stop: ends the processes started by `start` (their pids from DIR/pids, checked against
# the cached binaries), waits for them, removes DIR. Nothing else is left behind.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
src="$here/control-plane"
cache_root="${CNIBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cnibench}/control-plane"
binaries=(kube-apiserver kube-controller-manager kube-scheduler etcd)
source "$here/lib/deps.sh"

die() { echo "control-plane: $*" >&2; exit 1; }

# The cache key: everything that decides the binaries' bytes.
cache_dir() {
  local key
  key=$(cd "$src" && cat go.mod go.sum ./*/main.go | sha256sum | cut -c1-16)
  echo "$cache_root/$key"
}

cmd_build() {
  local dir
  dir=$(cache_dir)
  if [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ] \
    && [ -x "$dir/kube-controller-manager" ] && [ -x "$dir/kube-scheduler" ]; then
    echo "$dir"
    return
  fi
  command -v go >/dev/null || die "go is not installed; the control plane is built from Go modules (apt-get install golang-go, or Go from go.dev)"
  mkdir -p "$cache_root"
  local tmp
  tmp=$(mktemp -d "$cache_root/.build.XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this build's folder
  trap "rm -rf '$tmp'" EXIT
  local start=$SECONDS
  echo "control-plane: building ${binaries[*]} (Kubernetes $(sed -n 's/^\tk8s.io\/kubernetes \(v[^ ]*\)$/\1/p' "$src/go.mod"), etcd embedded) into $dir; this takes a while once" >&2
  # -mod=readonly: go.sum is committed and must already hold every module.
  (cd "$src" && CGO_ENABLED=0 nice -n 10 go build -mod=readonly -trimpath -ldflags='-s -w' \
    -o "$tmp/" ./kube-apiserver ./kube-controller-manager ./kube-scheduler ./etcd) >&2
  # Renamed into place whole, so an interrupted build never looks finished.
  rm -rf "$dir"
  mv "$tmp" "$dir"
  trap - EXIT
  echo "control-plane: built in $((SECONDS - start)) s, $(du -sh "$dir" | cut -f1)" >&2
  echo "$dir"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Key and certificate signed by the CA: NAME CN ORG EKU [SAN].
issue() {
  local d=$1 name=$2 cn=$3 org=$4 eku=$5 san=${6:-}
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$name.key" 2>/dev/null
  local subj="/CN=$cn"
  [ -n "$org" ] && subj="/O=$org$subj"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$eku"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$d/$name.ext"
  openssl req -new -key "$d/$name.key" -subj "$subj" -out "$d/$name.csr" 2>/dev/null
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 7 -sha256 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
  rm "$d/$name.csr" "$d/$name.ext"
}

kubeconfig() {
  local out=$1 user=$2 pki=$3 url=$4
  cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cnibench-test
  cluster:
    server: $url
    certificate-authority: $pki/ca.crt
users:
- name: $user
  user:
    client-certificate: $pki/$user.crt
    client-key: $pki/$user.key
contexts:
- name: $user@cnibench-test
  context:
    cluster: cnibench-test
    user: $user
current-context: $user@cnibench-test
EOF
}

# Starts NAME with ARGS in the background, its output in DIR/logs/NAME.log, its pid in
# DIR/pids.
launch() {
  local d=$1 bin=$2 name=$3
  shift 3
  "$bin/$name" "$@" </dev/null >"$d/logs/$name.log" 2>&1 &
  echo "$name $!" >>"$d/pids"
}

cmd_start() {
  local d=${1:?usage: control-plane.sh start DIR}
  [ -e "$d" ] && die "$d exists; stop the control plane there first (control-plane.sh stop $d) or pick another folder"
  require_tools openssl curl python3
  local bin
  bin=$(cmd_build)
  mkdir -p "$d"/{pki,logs,etcd}
  d=$(cd "$d" && pwd)
  local pki=$d/pki
  # If anything below fails (an error or a `die`), what was started goes again.
  # shellcheck disable=SC2064 # expand now: the folder of this start
  trap "cmd_stop '$d' >/dev/null 2>&1 || true" EXIT

  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=cnibench-test-ca" -days 7 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$pki/ca.crt" 2>/dev/null
  # 198.18.128.1: the first address of the service range below (the `kubernetes` Service).
  issue "$pki" apiserver kube-apiserver "" serverAuth \
    "IP:127.0.0.1,IP:198.18.128.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc"
  issue "$pki" admin admin system:masters clientAuth
  issue "$pki" cnibench cnibench "" clientAuth
  issue "$pki" kube-controller-manager system:kube-controller-manager "" clientAuth
  issue "$pki" kube-scheduler system:kube-scheduler "" clientAuth
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/sa.key" 2>/dev/null
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null

  local etcd_port etcd_peer api_port
  etcd_port=$(free_port)
  etcd_peer=$(free_port)
  api_port=$(free_port)
  local url="https://127.0.0.1:$api_port"
  for u in admin cnibench kube-controller-manager kube-scheduler; do
    kubeconfig "$d/$u.kubeconfig" "$u" "$pki" "$url"
  done

  launch "$d" "$bin" etcd --data-dir "$d/etcd" \
    --listen-client-url "http://127.0.0.1:$etcd_port" --listen-peer-url "http://127.0.0.1:$etcd_peer"
  # Service addresses from the RFC 2544 benchmarking range, like the lab's: no test ever
  # dials them (there is no kube-proxy), and nothing outside this machine can be meant.
  # No endpoint reconciler: it refuses a loopback address for the `kubernetes` Service,
  # which nothing here uses.
  launch "$d" "$bin" kube-apiserver \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 198.18.128.0/17 \
    --kubelet-preferred-address-types InternalIP \
    --endpoint-reconciler-type none \
    --allow-privileged \
    --profiling=false
  local i
  for i in $(seq 1 240); do
    if curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
      "$url/readyz" >/dev/null 2>&1; then
      break
    fi
    kill -0 "$(awk '$1=="kube-apiserver"{print $2}' "$d/pids")" 2>/dev/null || {
      tail -20 "$d/logs/kube-apiserver.log" >&2
      die "kube-apiserver exited (log: $d/logs/kube-apiserver.log)"
    }
    [ "$i" = 240 ] && die "kube-apiserver not ready within 120 s (log: $d/logs/kube-apiserver.log)"
    sleep 0.5
  done
  # No serving ports (--secure-port 0): nothing scrapes them here.
  launch "$d" "$bin" kube-controller-manager \
    --kubeconfig "$d/kube-controller-manager.kubeconfig" \
    --secure-port 0 --leader-elect=false \
    --controllers '*,-node-lifecycle-controller' \
    --use-service-account-credentials \
    --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
    --service-cluster-ip-range 198.18.128.0/17
  launch "$d" "$bin" kube-scheduler \
    --kubeconfig "$d/kube-scheduler.kubeconfig" --secure-port 0 --leader-elect=false

  apply_rbac "$d" "$url"
  cat >"$d/env" <<EOF
CNIBENCH_CONTROL_PLANE=$d
CNIBENCH_ADMIN_KUBECONFIG=$d/admin.kubeconfig
CNIBENCH_USER_KUBECONFIG=$d/cnibench.kubeconfig
CNIBENCH_API_URL=$url
CNIBENCH_ETCD_URL=http://127.0.0.1:$etcd_port
EOF
  trap - EXIT
  echo "$d/env"
}

# manifests/rbac.yaml through the API as admin (no kubectl here: curl with the YAML
# converted to JSON by python3, which the validator already needs).
apply_rbac() {
  local d=$1 url=$2 pki=$1/pki
  python3 -c 'import yaml' 2>/dev/null || install_package python3-yaml
  python3 - "$root/manifests/rbac.yaml" >"$d/rbac.jsonl" <<'EOF'
import json, sys
import yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc:
        print(json.dumps(doc))
EOF
  local kind body path
  while IFS= read -r body; do
    kind=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["kind"])' "$body")
    case $kind in
      ClusterRole) path=/apis/rbac.authorization.k8s.io/v1/clusterroles ;;
      ClusterRoleBinding) path=/apis/rbac.authorization.k8s.io/v1/clusterrolebindings ;;
      *) die "manifests/rbac.yaml: unexpected kind $kind" ;;
    esac
    local i
    for i in $(seq 1 60); do
      if curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
        -H 'Content-Type: application/json' -X POST -d "$body" "$url$path" >/dev/null; then
        break
      fi
      [ "$i" = 60 ] && die "could not create the $kind of manifests/rbac.yaml"
      sleep 0.5
    done
  done <"$d/rbac.jsonl"
  rm "$d/rbac.jsonl"
}

cmd_stop() {
  local d=${1:?usage: control-plane.sh stop DIR}
  [ -d "$d" ] || { echo "control-plane: $d does not exist; nothing to stop" >&2; return 0; }
  local name pid i
  if [ -f "$d/pids" ]; then
    # The controllers first, etcd last: the API server needs etcd until it stops.
    for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
      pid=$(awk -v n="$name" '$1==n{print $2}' "$d/pids")
      [ -n "$pid" ] || continue
      # Only a process running one of the cached binaries is ours: a reused pid is not.
      case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
        "$cache_root"/*/"$name") ;;
        *) continue ;;
      esac
      kill -TERM "$pid" 2>/dev/null || continue
      for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        [ "$i" = 100 ] && kill -KILL "$pid" 2>/dev/null
        sleep 0.1
      done
    done
  fi
  rm -rf "$d"
}

case "${1:-}" in
  build) cmd_build ;;
  start) cmd_start "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  *)
    echo "usage: control-plane.sh build | start DIR | stop DIR" >&2
    exit 2
    ;;
esac
