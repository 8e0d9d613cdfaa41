# Shared by the scripts: make sure the system tools the project needs are present,
# installing Debian packages when we are root and they are missing.

# tool -> Debian package providing it
declare -A NETLOAD_PACKAGES=(
  [ip]=iproute2
  [iperf3]=iperf3
  [iptables]=iptables
  [nft]=nftables
  # The test command's image steps (images/build-oci.sh, images/check-image.sh) only.
  [jq]=jq
  [readelf]=binutils
  [skopeo]=skopeo
  [umoci]=umoci
)
# What the main job needs; the test command asks for every tool above.
NETLOAD_MAIN_TOOLS=(ip iperf3 iptables nft)

apt_updated=0
install_package() {
  local pkg=$1
  if [ "$(id -u)" -ne 0 ]; then
    echo "error: '$pkg' is missing and installing it needs root: run 'apt-get install -y $pkg' as root" >&2
    exit 1
  fi
  if [ "$apt_updated" -eq 0 ]; then
    echo "installing system packages: apt-get update" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || {
      echo "error: apt-get update failed; install $pkg by hand" >&2
      exit 1
    }
    apt_updated=1
  fi
  echo "installing $pkg" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null || {
    echo "error: apt-get install $pkg failed; install it by hand" >&2
    exit 1
  }
}

# require_tools [tool...]: every tool given (default: the main job's) must be on PATH afterwards.
require_tools() {
  local tools=("$@")
  [ ${#tools[@]} -gt 0 ] || tools=("${NETLOAD_MAIN_TOOLS[@]}")
  for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || install_package "${NETLOAD_PACKAGES[$tool]}"
    command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool still missing after installing ${NETLOAD_PACKAGES[$tool]}" >&2; exit 1; }
  done
  command -v cargo-nextest >/dev/null 2>&1 || cargo nextest --version >/dev/null 2>&1 || {
    echo "error: cargo-nextest is missing: run 'cargo install cargo-nextest --locked'" >&2
    exit 1
  }
}
