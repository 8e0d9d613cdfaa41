#!/usr/bin/env bash
# Check the netload OCI archive built by images/build-oci.sh, with tools that are not ours:
#   bash images/check-image.sh [ARCHIVE]        (default target/image/netload-oci.tar)
# - skopeo reads it: one image index tagged with the version, one manifest per platform
#   (linux/amd64, linux/arm64/v8) in that order; for each platform, chosen as a client on that
#   platform would choose it: config architecture/os/variant, one layer, Entrypoint
#   ["/netload"], User 65532:65532, the Dockerfile's labels;
# - umoci unpacks each platform's manifest: the root filesystem holds exactly /netload,
#   /etc/hosts, /etc/nsswitch.conf, owned by 0:0, and /netload is static and an ELF binary for
#   that platform's machine (readelf -h);
# - as root: `chroot --userspec=65532:65532 ROOTFS /netload --version` runs (arm64 under
#   qemu-aarch64-static, copied into its root) and prints the version label, and in a network
#   namespace of its own each image's netload resolves and reaches "localhost" through the
#   image's /etc/hosts and a short Service name through resolv.conf's search list and a DNS
#   server (images/tiny-dns.py), as a pod does. Not root: those run under
#   NETLOAD_SKIP_ROOT_TESTS=1 only as a knowing skip, otherwise they are an error.
# Installs the Debian packages it needs when missing (scripts/lib/deps.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
archive=${1:-$repo/target/image/netload-oci.tar}
source "$repo/scripts/lib/deps.sh"
source "$repo/images/lib.sh"

command -v tar >/dev/null 2>&1 || { echo "error: check-image.sh needs 'tar' on PATH" >&2; exit 1; }
require_tools skopeo umoci readelf jq python3
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

# platform_json ARCH: the platform object build-oci.sh must have written for ARCH.
platform_json() {
  jq -cn --arg arch "$1" --arg variant "${PLATFORM_VARIANT[$1]}" \
    '{architecture: $arch, os: "linux"} + (if $variant == "" then {} else {variant: $variant} end)'
}

# skopeo: what a registry client sees. Without a tag it takes the layout's one image, the index.
index=$(skopeo inspect --raw "oci-archive:$archive") || fail "skopeo cannot read its index"
expect "index media type" "$(jq -r .mediaType <<<"$index")" application/vnd.oci.image.index.v1+json
expect "index platforms" "$(jq -c '[.manifests[].platform]' <<<"$index")" \
  "$(for arch in "${NETLOAD_PLATFORMS[@]}"; do platform_json "$arch"; done | jq -cs .)"
labels=$(dockerfile_labels "$repo/images/Dockerfile" | jq -cS .)
version=$(jq -r '."org.opencontainers.image.version"' <<<"$labels")
declare -A manifest_digest
for arch in "${NETLOAD_PLATFORMS[@]}"; do
  # What a client on ARCH pulls: skopeo picks the manifest from the index by platform.
  choose=(--override-os linux --override-arch "$arch")
  [ -z "${PLATFORM_VARIANT[$arch]}" ] || choose+=(--override-variant "${PLATFORM_VARIANT[$arch]}")
  inspect=$(skopeo "${choose[@]}" inspect "oci-archive:$archive") || fail "skopeo cannot inspect the $arch image"
  config=$(skopeo "${choose[@]}" inspect --config "oci-archive:$archive") || fail "skopeo cannot read the $arch config"
  expect "$arch config platform" "$(jq -c '{architecture, os} + (if .variant then {variant} else {} end)' <<<"$config")" \
    "$(platform_json "$arch")"
  expect "$arch layer count" "$(jq '.Layers | length' <<<"$inspect")" 1
  expect "$arch entrypoint" "$(jq -c .config.Entrypoint <<<"$config")" '["/netload"]'
  expect "$arch user" "$(jq -r .config.User <<<"$config")" 65532:65532
  expect "$arch labels" "$(jq -cS .Labels <<<"$inspect")" "$labels"
  manifest_digest[$arch]=$(jq -r --argjson p "$(platform_json "$arch")" '.manifests[] | select(.platform == $p) | .digest' <<<"$index")
done

# The layout itself: index.json names the index above, once, under the version as its tag.
mkdir "$work/layout"
tar --extract --file "$archive" --directory "$work/layout"
for blob in "$work"/layout/blobs/sha256/*; do
  expect "digest of blob ${blob##*/}" "$(sha256sum "$blob" | cut -d' ' -f1)" "${blob##*/}"
done
expect "index.json entries" "$(jq -c '[.manifests[].mediaType]' "$work/layout/index.json")" \
  '["application/vnd.oci.image.index.v1+json"]'
entry=$(jq -r '.manifests[0].digest | ltrimstr("sha256:")' "$work/layout/index.json")
expect "the index that index.json names" "$(jq -cS . "$work/layout/blobs/sha256/$entry")" "$(jq -cS . <<<"$index")"
expect "tag" "$(jq -r '.manifests[0].annotations."org.opencontainers.image.ref.name"' "$work/layout/index.json")" "$version"

# umoci: what a container runtime unpacks. umoci 0.4 cannot choose a platform (the tag names
# two manifests through the index: "tag is ambiguous"), so this copy of the layout also tags
# each platform's manifest, as a runtime resolves the index to its own platform first.
jq --argjson index "$index" '.manifests += [$index.manifests[]
  | .annotations = {"org.opencontainers.image.ref.name": ("check-" + .platform.architecture)}]' \
  "$work/layout/index.json" >"$work/index.json"
mv "$work/index.json" "$work/layout/index.json"
rootless=()
[ "$root" -eq 1 ] || rootless=(--rootless)
owner=0:0
[ "$root" -eq 1 ] || owner="$(id -u):$(id -g)" # --rootless maps 0:0 to us
wanted=$(printf '%s\n' "etc 755 $owner" "etc/hosts 644 $owner" "etc/nsswitch.conf 644 $owner" "netload 755 $owner")
declare -A rootfs
for arch in "${NETLOAD_PLATFORMS[@]}"; do
  umoci unpack "${rootless[@]}" --image "$work/layout:check-$arch" "$work/bundle-$arch" >/dev/null ||
    fail "umoci cannot unpack the $arch image (${manifest_digest[$arch]})"
  rootfs[$arch]=$work/bundle-$arch/rootfs
  files=$(cd "${rootfs[$arch]}" && find . -mindepth 1 -printf '%P %m %U:%G\n' | sort)
  expect "$arch root filesystem (path mode owner)" "$files" "$wanted"
  static_elf "${rootfs[$arch]}/netload" || fail "the $arch image's /netload is not static"
  elf_machine "${rootfs[$arch]}/netload" "$arch" || fail "the $arch image's /netload is for another machine"
done

if [ "$root" -eq 0 ]; then
  echo "check-image: skipped chroot, emulation and name resolution checks (NETLOAD_SKIP_ROOT_TESTS=1, not root)" >&2
  echo "check-image: $archive ok (version $version, ${NETLOAD_PLATFORMS[*]}, without the root checks)"
  exit 0
fi

require_tools qemu-aarch64-static
# How each image's netload is started as the image's own user, in the image's own root: no
# loader, no libraries, no /proc needed. This machine is amd64; arm64 runs under qemu's user
# mode emulator, itself static, put into that root so that the guest's file lookups
# (/etc/hosts, resolv.conf) still see only the image. No binfmt_misc registration is needed.
install -m 0755 "$(command -v qemu-aarch64-static)" "${rootfs[arm64]}/qemu-aarch64-static"
runner() { # runner ARCH: the command line that starts /netload of ARCH's image, one word a line
  case $1 in
    amd64) printf '%s\n' chroot --userspec=65532:65532 "${rootfs[amd64]}" /netload ;;
    arm64) printf '%s\n' chroot --userspec=65532:65532 "${rootfs[arm64]}" /qemu-aarch64-static /netload ;;
    *) fail "no way to run a $1 binary here" ;;
  esac
}
for arch in "${NETLOAD_PLATFORMS[@]}"; do
  mapfile -t cmd < <(runner "$arch")
  # A binary that does not start fails here with its message ("exec format error", or
  # qemu's), not only a wrong version.
  expect "$arch: /netload --version" "$("${cmd[@]}" --version 2>&1)" "netload $version"
done

# Name resolution as in a pod: kubelet mounts /etc/hosts and /etc/resolv.conf; the image brings
# /etc/nsswitch.conf. Static glibc must resolve with its built-in files and dns services, on
# both platforms. The server and the readiness probe are the amd64 image's netload, run
# natively; the client under test is ARCH's image's, run as its user in its root.
resolves_like_a_pod() { # resolves_like_a_pod ARCH
  local arch=$1 logs=$work/ns-$1 cmd
  mkdir "$logs"
  mapfile -t cmd < <(runner "$arch")
  cat >"${rootfs[$arch]}/etc/resolv.conf" <<'EOF'
search cnibench.svc.cluster.local svc.cluster.local cluster.local
nameserver 127.0.0.1
options ndots:5
EOF
  # In a fresh network namespace: only its loopback, no port clashes, nothing left behind.
  # The script is single-quoted on purpose: it gets its paths and the client as arguments.
  # shellcheck disable=SC2016
  timeout 60 unshare --net bash -euo pipefail -c '
    repo=$1 logs=$2 native=$3; shift 3
    ip link set lo up
    python3 "$repo/images/tiny-dns.py" 127.0.0.1 53 svc.cluster.local 127.0.0.1 2>"$logs/dns.log" &
    dns=$!
    "$native" server --bind 127.0.0.1 >"$logs/server.log" 2>&1 &
    server=$!
    trap "kill $dns $server 2>/dev/null || true" EXIT
    for _ in $(seq 50); do
      grep -q ready "$logs/dns.log" 2>/dev/null && "$native" tcp 127.0.0.1 -t 0.1 >/dev/null 2>&1 && break
      sleep 0.1
    done
    for host in localhost netload-server; do
      if ! out=$("$@" tcp "$host" -t 0.2 2>&1); then
        echo "error: image netload could not reach $host:" >&2
        echo "$out" >&2
        cat "$logs/dns.log" >&2
        exit 1
      fi
    done
    # /etc/hosts, not the search list (tiny-dns answers every *.svc.cluster.local name), must
    # have answered for localhost.
    if grep -q "tiny-dns: localhost" "$logs/dns.log"; then
      echo "error: localhost was looked up in DNS, not answered by /etc/hosts:" >&2
      cat "$logs/dns.log" >&2
      exit 1
    fi
    grep -q "netload-server.cnibench.svc.cluster.local type 1 -> rcode 0" "$logs/dns.log" || {
      echo "error: netload-server resolved, but not through the DNS search list:" >&2
      cat "$logs/dns.log" >&2
      exit 1
    }
  ' resolves "$repo" "$logs" "${rootfs[amd64]}/netload" "${cmd[@]}" || fail "name resolution inside the $arch image failed"
}
for arch in "${NETLOAD_PLATFORMS[@]}"; do
  resolves_like_a_pod "$arch"
done
echo "check-image: $archive ok (version $version, ${NETLOAD_PLATFORMS[*]}; chroot as 65532:65532 runs, arm64 under qemu; localhost via /etc/hosts and a Service name via DNS resolve)"
