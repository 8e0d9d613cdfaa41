#!/usr/bin/env bash
# Installs (as root, with apt-get) or names the system tools the main job and the tests need:
# iproute2, iptables, nftables and iperf3. Prints nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
require_tools "$@"
