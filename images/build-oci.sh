#!/usr/bin/env bash
# Build the netload container image as an OCI archive without Docker:
#   bash images/build-oci.sh [OUT.tar]        (default target/image/netload-oci.tar)
# The same image as images/Dockerfile, for linux/amd64 and linux/arm64: a static netload at
# /netload, images/rootfs/etc, nothing else; ENTRYPOINT ["/netload"], USER 65532:65532 and the
# Dockerfile's LABELs. index.json names one image index (tagged with netload's version) that
# holds one manifest per platform, so clients pick theirs. Every byte is deterministic (fixed
# mtime, owner 0:0, sorted entries, gzip -n, SOURCE_DATE_EPOCH or 0 as the creation time), so
# two builds of the same binaries give the same digests.
# Cross-builds arm64 from an x86_64 host with Debian's aarch64 gcc as the linker; installs it
# and the Rust target when missing (scripts/lib/deps.sh).
# Prints the image index digest on stdout; progress goes to stderr.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/target/image/netload-oci.tar}
case $out in /*) ;; *) out=$PWD/$out ;; esac

for tool in cargo rustc tar gzip sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: build-oci.sh needs '$tool' on PATH" >&2; exit 1; }
done
# The linker and the Rust targets below are named for an x86_64 host; and the version check
# runs the amd64 binary.
[ "$(uname -m)" = x86_64 ] || { echo "error: build-oci.sh cross-builds from an x86_64 host, this is $(uname -m)" >&2; exit 1; }
source "$repo/scripts/lib/deps.sh"
source "$repo/images/lib.sh"
require_tools jq readelf
require_aarch64_linker
targets=()
for arch in "${NETLOAD_PLATFORMS[@]}"; do
  require_rust_target "${PLATFORM_TRIPLE[$arch]}"
  targets+=(--target "${PLATFORM_TRIPLE[$arch]}")
done

# --target puts each static build in target/<triple>/, away from target/release, and keeps
# RUSTFLAGS off build scripts and proc-macros: the normal build cache stays valid. One cargo
# run for both targets lets the two single-threaded LTO links overlap on two cores.
echo "build-oci: cargo build --release -p netload ${targets[*]} (crt-static)" >&2
(cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static' \
  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="$AARCH64_LINKER" \
  cargo build --release --locked -p netload "${targets[@]}" >&2)

declare -A bins
for arch in "${NETLOAD_PLATFORMS[@]}"; do
  bins[$arch]=$repo/target/${PLATFORM_TRIPLE[$arch]}/release/netload
  # No program interpreter, no shared library, and the machine of its platform (lib.sh); the
  # same checks check-image.sh makes on the binaries inside the unpacked image.
  static_elf "${bins[$arch]}"
  elf_machine "${bins[$arch]}" "$arch"
done

version=$("${bins[amd64]}" --version | awk '{print $2}')
[ -n "$version" ] || { echo "error: '${bins[amd64]} --version' printed no version" >&2; exit 1; }
labels=$(dockerfile_labels "$repo/images/Dockerfile")
label_version=$(jq -r '."org.opencontainers.image.version" // empty' <<<"$labels")
if [ "$label_version" != "$version" ]; then
  echo "error: images/Dockerfile labels version '$label_version' but netload is $version: update the LABEL" >&2
  exit 1
fi

epoch=${SOURCE_DATE_EPOCH:-0}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

reproducible_tar() { # reproducible_tar OUT DIR ENTRY...: entries in the order given, sorted below
  local out=$1 dir=$2; shift 2
  tar --create --file "$out" --format=gnu --directory "$dir" --sort=name --mtime="@$epoch" \
    --owner=0 --group=0 --numeric-owner "$@"
}
blobs=$work/layout/blobs/sha256
mkdir -p "$blobs"
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
add_blob() { # add_blob FILE: store it under its digest, print the digest
  local d
  d=$(sha "$1")
  cp "$1" "$blobs/$d"
  echo "$d"
}

# image_manifest ARCH: the layer, config and manifest of one platform as blobs; prints the
# manifest's descriptor (with its platform) for the index.
image_manifest() {
  local arch=$1 dir=$work/$1 root diff_id layer layer_size config manifest platform
  # Root filesystem: modes set explicitly so the umask of whoever builds does not leak in.
  root=$dir/rootfs
  mkdir -p "$root/etc"
  install -m 0755 "${bins[$arch]}" "$root/netload"
  for f in "$repo"/images/rootfs/etc/*; do install -m 0644 "$f" "$root/etc/"; done
  chmod 0755 "$root/etc"
  reproducible_tar "$dir/layer.tar" "$root" etc netload
  gzip -n -9 <"$dir/layer.tar" >"$dir/layer.tar.gz"
  diff_id=$(sha "$dir/layer.tar")
  layer=$(add_blob "$dir/layer.tar.gz")
  layer_size=$(size "$dir/layer.tar.gz")

  # The platform as the image spec writes it, variant only where there is one; the config
  # repeats it (architecture, os, variant), which is what `docker inspect` and skopeo report.
  platform=$(jq -cn --arg arch "$arch" --arg variant "${PLATFORM_VARIANT[$arch]}" \
    '{architecture: $arch, os: "linux"} + (if $variant == "" then {} else {variant: $variant} end)')
  jq -cn --arg created "$created" --arg diff_id "sha256:$diff_id" --argjson labels "$labels" \
    --argjson platform "$platform" --arg triple "${PLATFORM_TRIPLE[$arch]}" '{created: $created} + $platform + {
    config: {User: "65532:65532", Entrypoint: ["/netload"], Labels: $labels},
    rootfs: {type: "layers", diff_ids: [$diff_id]},
    history: [{created: $created, created_by: "images/build-oci.sh: static /netload (\($triple)), images/rootfs/etc"}]
  }' >"$dir/config.json"
  config=$(add_blob "$dir/config.json")

  jq -cn --arg config "sha256:$config" --argjson config_size "$(size "$dir/config.json")" \
    --arg layer "sha256:$layer" --argjson layer_size "$layer_size" '{
    schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $config, size: $config_size},
    layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $layer, size: $layer_size}]
  }' >"$dir/manifest.json"
  manifest=$(add_blob "$dir/manifest.json")
  echo "build-oci: $arch manifest sha256:$manifest (layer $((layer_size / 1024)) KiB)" >&2
  jq -cn --arg digest "sha256:$manifest" --argjson size "$(size "$dir/manifest.json")" --argjson platform "$platform" \
    '{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $digest, size: $size, platform: $platform}'
}

descriptors=()
for arch in "${NETLOAD_PLATFORMS[@]}"; do
  descriptors+=("$(image_manifest "$arch")")
done

# The image index a registry would hold under the tag. index.json points to it rather than
# listing the two manifests itself under one tag: skopeo would take the first of them whatever
# platform it was asked for, and umoci refuses such a tag as ambiguous.
printf '%s\n' "${descriptors[@]}" | jq -cs '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: .
}' >"$work/index.json"
index=$(add_blob "$work/index.json")
jq -cn --arg index "sha256:$index" --argjson size "$(size "$work/index.json")" --arg tag "$version" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [{mediaType: "application/vnd.oci.image.index.v1+json", digest: $index, size: $size,
               annotations: {"org.opencontainers.image.ref.name": $tag}}]
}' >"$work/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

chmod -R u=rwX,go=rX "$work/layout"
mkdir -p "$(dirname "$out")"
reproducible_tar "$work/image.tar" "$work/layout" blobs index.json oci-layout
mv "$work/image.tar" "$out"
echo "build-oci: $out (tag $version, ${NETLOAD_PLATFORMS[*]})" >&2
echo "sha256:$index"
