#!/usr/bin/env bash
# Build the netload container image as an OCI archive without Docker:
#   bash images/build-oci.sh [OUT.tar]        (default target/image/netload-oci.tar)
# The same image as images/Dockerfile: a static netload at /netload, images/rootfs/etc, nothing
# else; ENTRYPOINT ["/netload"], USER 65532:65532 and the Dockerfile's LABELs. Every byte is
# deterministic (fixed mtime, owner 0:0, sorted entries, gzip -n, SOURCE_DATE_EPOCH or 0 as the
# creation time), so two builds of the same binary give the same digest.
# Prints the manifest digest on stdout; progress goes to stderr.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/target/image/netload-oci.tar}
case $out in /*) ;; *) out=$PWD/$out ;; esac

for tool in cargo tar gzip sha256sum readelf jq; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: build-oci.sh needs '$tool' on PATH" >&2; exit 1; }
done

# --target puts the static build in target/x86_64-unknown-linux-gnu/, away from target/release,
# and keeps RUSTFLAGS off build scripts and proc-macros: the normal build cache stays valid.
triple=x86_64-unknown-linux-gnu
echo "build-oci: cargo build --release -p netload --target $triple (crt-static)" >&2
(cd "$repo" && RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --release --locked -p netload --target "$triple" >&2)
bin=$repo/target/$triple/release/netload

# static_elf FILE: no program interpreter and no shared-library dependencies. Shared with
# check-image.sh, which asks the same of the binary inside the unpacked image.
source "$repo/images/lib.sh"
static_elf "$bin"

version=$("$bin" --version | awk '{print $2}')
[ -n "$version" ] || { echo "error: '$bin --version' printed no version" >&2; exit 1; }
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

# Root filesystem: modes set explicitly so the umask of whoever builds does not leak in.
root=$work/rootfs
mkdir -p "$root/etc"
install -m 0755 "$bin" "$root/netload"
for f in "$repo"/images/rootfs/etc/*; do install -m 0644 "$f" "$root/etc/"; done
chmod 0755 "$root/etc"
reproducible_tar() { # reproducible_tar OUT DIR ENTRY...: entries in the order given, sorted below
  local out=$1 dir=$2; shift 2
  tar --create --file "$out" --format=gnu --directory "$dir" --sort=name --mtime="@$epoch" \
    --owner=0 --group=0 --numeric-owner "$@"
}
reproducible_tar "$work/layer.tar" "$root" etc netload
gzip -n -9 <"$work/layer.tar" >"$work/layer.tar.gz"

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
diff_id=$(sha "$work/layer.tar")
layer=$(add_blob "$work/layer.tar.gz")
layer_size=$(size "$work/layer.tar.gz")

jq -cn --arg created "$created" --arg diff_id "sha256:$diff_id" --argjson labels "$labels" '{
  created: $created, architecture: "amd64", os: "linux",
  config: {User: "65532:65532", Entrypoint: ["/netload"], Labels: $labels},
  rootfs: {type: "layers", diff_ids: [$diff_id]},
  history: [{created: $created, created_by: "images/build-oci.sh: static /netload, images/rootfs/etc"}]
}' >"$work/config.json"
config=$(add_blob "$work/config.json")

jq -cn --arg config "sha256:$config" --argjson config_size "$(size "$work/config.json")" \
  --arg layer "sha256:$layer" --argjson layer_size "$layer_size" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
  config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $config, size: $config_size},
  layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $layer, size: $layer_size}]
}' >"$work/manifest.json"
manifest=$(add_blob "$work/manifest.json")

jq -cn --arg manifest "sha256:$manifest" --argjson size "$(size "$work/manifest.json")" --arg tag "$version" '{
  schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
  manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $manifest, size: $size,
               annotations: {"org.opencontainers.image.ref.name": $tag}}]
}' >"$work/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

chmod -R u=rwX,go=rX "$work/layout"
mkdir -p "$(dirname "$out")"
reproducible_tar "$work/image.tar" "$work/layout" blobs index.json oci-layout
mv "$work/image.tar" "$out"
echo "build-oci: $out (tag $version, layer $((layer_size / 1024)) KiB)" >&2
echo "sha256:$manifest"
