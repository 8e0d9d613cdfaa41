#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (`.ci/run` calls this script).
# Installs the system packages the tests need when they are missing, then runs
# fmt, clippy, every test tier (unit, loopback, network namespaces as root), the container image
# for amd64 and arm64 (built twice, checked with skopeo/umoci/chroot/qemu), the manifest
# validator (on the full thesis render and on manifests/) and the docs build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

require_tools "${!NETLOAD_PACKAGES[@]}"
require_nextest

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (nextest, profile ci)"
cargo nextest run --workspace --locked --profile ci --no-tests=fail

step "container image: static amd64 and arm64 builds, one OCI archive twice (same bytes), skopeo + umoci + chroot (arm64 under qemu) checks"
image=target/image/netload-oci.tar
bash images/build-oci.sh "$image" >/dev/null
# Another umask must not change a byte: modes and owners are set, never inherited.
(umask 077 && bash images/build-oci.sh target/image/netload-oci-rebuild.tar >/dev/null)
cmp "$image" target/image/netload-oci-rebuild.tar || {
  echo "error: two builds of the image differ: images/build-oci.sh is not deterministic" >&2
  exit 1
}
rm target/image/netload-oci-rebuild.tar
bash images/check-image.sh "$image"

step "manifest validator: good samples pass, each bad sample fails with its expected message"
bash scripts/validate-manifests.sh scripts/testdata/manifests/good
for bad in scripts/testdata/manifests/bad/*.yaml; do
  expected=$(sed -n '1s/^# expect: //p' "$bad")
  if out=$(bash scripts/validate-manifests.sh "$bad" 2>&1); then
    echo "error: scripts/validate-manifests.sh accepted $bad" >&2
    exit 1
  fi
  if ! { grep -qF "error: $bad: " <<<"$out" && grep -qF -- "$expected" <<<"$out"; }; then
    echo "error: $bad failed, but not naming the file and '$expected':" >&2
    echo "$out" >&2
    exit 1
  fi
done

# manifests/ holds only a sample (render --sample); the full thesis render is validated
# from a temporary folder so that every object cnibench can apply is checked, not only
# the committed ones.
step "manifests: the full thesis render and the committed sample validate against the Kubernetes OpenAPI schemas (strict)"
full=$(mktemp -d "${TMPDIR:-/tmp}/cnibench-manifests.XXXXXX")
trap 'rm -rf "$full"' EXIT
cargo run --locked --quiet -p cnibench -- render --suite thesis --out "$full"
bash scripts/validate-manifests.sh "$full"
bash scripts/validate-manifests.sh manifests

step "benchmark harness unit tests (python)"
python3 -m unittest discover -s benches -p 'test_*.py'

step "doc tests"
cargo test --workspace --locked --doc

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked

step "all checks passed"
