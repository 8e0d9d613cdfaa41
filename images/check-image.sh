#!/usr/bin/env bash
# Check the netload OCI archive built by images/build-oci.sh, with tools that are not ours:
#   bash images/check-image.sh [ARCHIVE]        (default target/image/netload-oci.tar)
# - skopeo reads it: amd64/linux, Entrypoint ["/netload"], User 65532:65532, the Dockerfile's labels;
# - umoci unpacks it: the root filesystem holds exactly /netload, /etc/hosts, /etc/nsswitch.conf,
#   owned by 0:0, and /netload is static;
# - as root: `chroot --userspec=65532:65532 ROOTFS /netload --version` runs, and in a network
#   namespace of its own the image's netload resolves and reaches "localhost" through the image's
#   /etc/hosts and a short Service name through resolv.conf's search list and a DNS server
#   (images/tiny-dns.py), as a pod does. Not root: those run under NETLOAD_SKIP_ROOT_TESTS=1 only
#   as a knowing skip, otherwise they are an error.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
archive=${1:-$repo/target/image/netload-oci.tar}
source "$repo/images/lib.sh"

for tool in skopeo umoci readelf tar jq python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: check-image.sh needs '$tool' on PATH" >&2; exit 1; }
done
[ -f "$archive" ] || { echo "error: no image archive at $archive (run images/build-oci.sh)" >&2; exit 1; }

fail() { echo "error: $archive: $*" >&2; exit 1; }
expect() { # expect WHAT ACTUAL WANTED
  [ "$2" = "$3" ] || fail "$1 is '$2', expected '$3'"
}

root=0
if [ "$(id -u)" -eq 0 ]; then
  root=1
elif [ "${NETLOAD_SKIP_ROOT_TESTS:-0}" != 1 ]; then
  fail "the chroot and network-namespace checks need root (or NETLOAD_SKIP_ROOT_TESTS=1 to skip them knowingly)"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# skopeo: what a registry client sees.
inspect=$(skopeo inspect "oci-archive:$archive") || fail "skopeo cannot inspect it"
config=$(skopeo inspect --config "oci-archive:$archive") || fail "skopeo cannot read its config"
expect "architecture" "$(jq -r .Architecture <<<"$inspect")" amd64
expect "os" "$(jq -r .Os <<<"$inspect")" linux
expect "layer count" "$(jq '.Layers | length' <<<"$inspect")" 1
expect "entrypoint" "$(jq -c .config.Entrypoint <<<"$config")" '["/netload"]'
expect "user" "$(jq -r .config.User <<<"$config")" 65532:65532
expect "labels" "$(jq -cS .Labels <<<"$inspect")" "$(dockerfile_labels "$repo/images/Dockerfile" | jq -cS .)"
version=$(jq -r '.Labels."org.opencontainers.image.version"' <<<"$inspect")

# umoci: what a container runtime unpacks.
mkdir "$work/layout"
tar --extract --file "$archive" --directory "$work/layout"
tag=$(jq -r '.manifests[0].annotations."org.opencontainers.image.ref.name"' "$work/layout/index.json")
expect "tag" "$tag" "$version"
rootless=()
[ "$root" -eq 1 ] || rootless=(--rootless)
umoci unpack "${rootless[@]}" --image "$work/layout:$tag" "$work/bundle" >/dev/null || fail "umoci cannot unpack it"
rootfs=$work/bundle/rootfs

files=$(cd "$rootfs" && find . -mindepth 1 -printf '%P %m %U:%G\n' | sort)
owner=0:0
[ "$root" -eq 1 ] || owner="$(id -u):$(id -g)" # --rootless maps 0:0 to us
wanted=$(printf '%s\n' "etc 755 $owner" "etc/hosts 644 $owner" "etc/nsswitch.conf 644 $owner" "netload 755 $owner")
expect "root filesystem (path mode owner)" "$files" "$wanted"
static_elf "$rootfs/netload" || fail "/netload is not static"

if [ "$root" -eq 0 ]; then
  echo "check-image: skipped chroot and name resolution checks (NETLOAD_SKIP_ROOT_TESTS=1, not root)" >&2
  echo "check-image: $archive ok (version $version, without the root checks)"
  exit 0
fi

# The image's own user, in the image's own root: no loader, no libraries, no /proc needed.
expect "chroot /netload --version" "$(chroot --userspec=65532:65532 "$rootfs" /netload --version)" "netload $version"

# Name resolution as in a pod: kubelet mounts /etc/hosts and /etc/resolv.conf; the image brings
# /etc/nsswitch.conf. Static glibc must resolve with its built-in files and dns services.
cat >"$rootfs/etc/resolv.conf" <<'EOF'
search cnibench.svc.cluster.local svc.cluster.local cluster.local
nameserver 127.0.0.1
options ndots:5
EOF
# In a fresh network namespace: only its loopback, no port clashes, nothing left behind.
export rootfs repo
timeout 60 unshare --net bash -euo pipefail -c '
  ip link set lo up
  python3 "$repo/images/tiny-dns.py" 127.0.0.1 53 svc.cluster.local 127.0.0.1 2>"$rootfs/../dns.log" &
  dns=$!
  "$rootfs/netload" server --bind 127.0.0.1 >"$rootfs/../server.log" 2>&1 &
  server=$!
  trap "kill $dns $server 2>/dev/null || true" EXIT
  for _ in $(seq 50); do
    grep -q ready "$rootfs/../dns.log" 2>/dev/null && "$rootfs/netload" tcp 127.0.0.1 -t 0.1 >/dev/null 2>&1 && break
    sleep 0.1
  done
  for host in localhost netload-server; do
    if ! out=$(chroot --userspec=65532:65532 "$rootfs" /netload tcp "$host" -t 0.2 2>&1); then
      echo "error: image netload could not reach $host:" >&2
      echo "$out" >&2
      cat "$rootfs/../dns.log" >&2
      exit 1
    fi
  done
  # /etc/hosts, not the search list (tiny-dns answers every *.svc.cluster.local name), must
  # have answered for localhost.
  if grep -q "tiny-dns: localhost" "$rootfs/../dns.log"; then
    echo "error: localhost was looked up in DNS, not answered by /etc/hosts:" >&2
    cat "$rootfs/../dns.log" >&2
    exit 1
  fi
  grep -q "netload-server.cnibench.svc.cluster.local type 1 -> rcode 0" "$rootfs/../dns.log" || {
    echo "error: netload-server resolved, but not through the DNS search list:" >&2
    cat "$rootfs/../dns.log" >&2
    exit 1
  }
' || fail "name resolution inside the image failed"
echo "check-image: $archive ok (version $version; chroot as 65532:65532 runs; localhost via /etc/hosts and a Service name via DNS resolve)"
