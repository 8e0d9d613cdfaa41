# shellcheck shell=bash
# Shared by the scripts: make sure the system tools the project needs are present,
# installing Debian packages when we are root and they are missing.

# tool -> Debian package providing it
declare -A NETLOAD_PACKAGES=(
  [ip]=iproute2
  [iperf3]=iperf3
  [iptables]=iptables
  [nft]=nftables
  # The lab empties its own namespaces' conntrack tables between repetitions.
  [conntrack]=conntrack
  # The test command's image steps (images/build-oci.sh, images/check-image.sh) only.
  [jq]=jq
  [readelf]=binutils
  [skopeo]=skopeo
  [umoci]=umoci
  # Runs the arm64 image's netload on this amd64 machine (check-image.sh).
  [qemu-aarch64-static]=qemu-user-static
  # The browser test of the HTML report (scripts/report-browser.sh).
  [chromium]=chromium
  # scripts/control-plane.sh (the kube end-to-end tests) only.
  [openssl]=openssl
  [curl]=curl
  [python3]=python3
)
# What the main job needs; the test command asks for every tool above.
NETLOAD_MAIN_TOOLS=(ip iperf3 iptables nft conntrack)

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
}

# require_rust_target TRIPLE: the standard library for TRIPLE in the active toolchain, added
# with rustup when missing (its component servers are reachable, like crates.io). No version
# to pin: rustup installs the one that matches the toolchain.
require_rust_target() {
  local triple=$1 sysroot
  sysroot=$(rustc --print sysroot)
  [ -d "$sysroot/lib/rustlib/$triple/lib" ] && return 0
  command -v rustup >/dev/null 2>&1 || {
    echo "error: the Rust standard library for $triple is missing from $sysroot and there is no rustup to add it" >&2
    exit 1
  }
  echo "installing the Rust target $triple: rustup target add $triple" >&2
  rustup target add "$triple" >&2 || {
    echo "error: 'rustup target add $triple' failed; add it by hand" >&2
    exit 1
  }
}

# require_aarch64_linker: Debian's cross gcc and the aarch64 glibc it links against. The arm64
# netload links glibc statically like the amd64 one, from the same Debian glibc release, so both
# images resolve names the same way (images/README.md). A package from the Debian release
# rather than a separately downloaded toolchain (zig) keeps it one apt install like the rest.
AARCH64_LINKER=aarch64-linux-gnu-gcc
require_aarch64_linker() {
  command -v "$AARCH64_LINKER" >/dev/null 2>&1 || install_package gcc-aarch64-linux-gnu
  # gcc only recommends the C library, and install_package leaves recommends out.
  [ -f /usr/aarch64-linux-gnu/lib/libc.a ] || install_package libc6-dev-arm64-cross
  if ! command -v "$AARCH64_LINKER" >/dev/null 2>&1 || [ ! -f /usr/aarch64-linux-gnu/lib/libc.a ]; then
    echo "error: $AARCH64_LINKER or /usr/aarch64-linux-gnu/lib/libc.a still missing after installing gcc-aarch64-linux-gnu and libc6-dev-arm64-cross" >&2
    exit 1
  fi
}

# The test runner the test command uses (test groups keep the netns tests serial). Built
# from crates.io when missing: a fresh machine has only the Rust toolchain, and prebuilt
# binaries live outside the registries this project may reach.
NEXTEST_VERSION=0.9.151
require_nextest() {
  cargo nextest --version >/dev/null 2>&1 && return 0
  echo "installing cargo-nextest $NEXTEST_VERSION with 'cargo install --locked' (a few minutes, once)" >&2
  cargo install --locked --quiet "cargo-nextest@$NEXTEST_VERSION" >&2 || {
    echo "error: 'cargo install --locked cargo-nextest@$NEXTEST_VERSION' failed; install cargo-nextest by hand" >&2
    exit 1
  }
  cargo nextest --version >/dev/null 2>&1 || {
    echo "error: cargo-nextest still not runnable after installing it (is ~/.cargo/bin on PATH?)" >&2
    exit 1
  }
}
