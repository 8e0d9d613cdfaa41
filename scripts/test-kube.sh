#!/usr/bin/env bash
# The kube backend's end-to-end tests against a real control plane (tier kube_real,
# crates/cnibench/tests/kube_real.rs). Not part of `bash scripts/test.sh`: building the
# control plane takes minutes the first time (cached after that, see
# scripts/control-plane.sh), and the scale test takes minutes every time.
#
#   bash scripts/test-kube.sh            # every kube_real test except the scale one
#   bash scripts/test-kube.sh --scale    # only the scale test: 10k Services, 20k policies,
#                                        # --concurrency 8, 32, 128; prints the table
#
# Starts the control plane in a temporary folder, runs the tests one at a time (they
# share its two nodes), and stops it whatever happens. Needs Go (the build), openssl,
# curl and python3 (installed when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

scale=0
case "${1:-}" in
  --scale) scale=1 ;;
  "") ;;
  *) echo "usage: test-kube.sh [--scale]" >&2; exit 2 ;;
esac

bash scripts/control-plane.sh build >/dev/null
state=$(mktemp -d "${TMPDIR:-/tmp}/cnibench-control-plane.XXXXXX")
rmdir "$state"
trap 'bash scripts/control-plane.sh stop "$state"' EXIT
envfile=$(bash scripts/control-plane.sh start "$state")
set -a
# shellcheck disable=SC1090 # written by control-plane.sh start
source "$envfile"
set +a
echo "control plane: $CNIBENCH_API_URL (state in $state)" >&2

if [ "$scale" = 1 ]; then
  export CNIBENCH_SCALE_REPORT=${CNIBENCH_SCALE_REPORT:-target/kube-scale.md}
  cargo test -p cnibench --locked --test kube_real -- --ignored --exact \
    kube_real_scale_services_and_policies --nocapture --test-threads 1
  echo "table: $CNIBENCH_SCALE_REPORT" >&2
else
  cargo test -p cnibench --locked --test kube_real -- --ignored --skip kube_real_scale \
    --test-threads 1
fi
