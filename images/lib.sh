# shellcheck shell=bash disable=SC2034
# Shared by build-oci.sh and check-image.sh (sourced, not run). Its tables are read there, so
# the "appears unused" check (SC2034) is off for this file.

# The image's platforms, in the order of its index. The first is the one a client gets when it
# does not choose, and the one this (amd64) machine runs natively.
NETLOAD_PLATFORMS=(amd64 arm64)
# OCI architecture -> Rust target. Both link glibc statically (crt-static).
declare -A PLATFORM_TRIPLE=([amd64]=x86_64-unknown-linux-gnu [arm64]=aarch64-unknown-linux-gnu)
# OCI variant: arm64 images conventionally say v8 (containerd and Docker match arm64 to
# arm64/v8); amd64 has none.
declare -A PLATFORM_VARIANT=([amd64]='' [arm64]=v8)
# What `readelf --file-header` prints as Machine for a binary of that architecture.
declare -A PLATFORM_ELF_MACHINE=([amd64]='Advanced Micro Devices X86-64' [arm64]=AArch64)

# static_elf FILE: fail unless FILE is an ELF executable with no program interpreter (PT_INTERP)
# and no shared-library dependency (DT_NEEDED). A static-pie binary still has a dynamic section
# for its own relocations, so "has a dynamic section" is not the test.
static_elf() {
  local file=$1 headers dynamic
  headers=$(readelf --program-headers --wide "$file") || { echo "error: $file is not an ELF file" >&2; return 1; }
  dynamic=$(readelf --dynamic --wide "$file")
  if grep -q 'INTERP' <<<"$headers"; then
    echo "error: $file is dynamically linked (has a program interpreter): $(grep -o 'interpreter: [^]]*' <<<"$headers")" >&2
    return 1
  fi
  if grep -q '(NEEDED)' <<<"$dynamic"; then
    echo "error: $file needs shared libraries: $(grep '(NEEDED)' <<<"$dynamic" | grep -o '\[.*\]' | tr '\n' ' ')" >&2
    return 1
  fi
}

# elf_machine FILE ARCH: fail unless FILE is an ELF binary for the OCI architecture ARCH, so a
# binary from the wrong target directory cannot end up in another platform's manifest.
elf_machine() {
  local file=$1 arch=$2 header machine wanted
  wanted=${PLATFORM_ELF_MACHINE[$arch]:-}
  [ -n "$wanted" ] || { echo "error: no ELF machine known for architecture '$arch'" >&2; return 1; }
  header=$(readelf --file-header --wide "$file") || { echo "error: $file is not an ELF file" >&2; return 1; }
  machine=$(sed -n 's/^ *Machine: *//p' <<<"$header")
  if [ "$machine" != "$wanted" ]; then
    echo "error: $file is built for '$machine', not for $arch ('$wanted')" >&2
    return 1
  fi
}

# dockerfile_labels DOCKERFILE: the key="value" pairs of its LABEL instruction (one LABEL,
# continued with backslashes, values without quotes inside) as a JSON object, so the Dockerfile
# is the one place the image's labels are written.
dockerfile_labels() {
  awk '/^LABEL /{on=1} on{print} on && !/\\$/{on=0}' "$1" |
    grep -oE '[A-Za-z0-9_.-]+="[^"]*"' |
    jq -Rn '[inputs | capture("^(?<key>[^=]+)=\"(?<value>.*)\"$")] | from_entries |
            if length == 0 then error("no LABEL key=\"value\" pairs found") else . end'
}
