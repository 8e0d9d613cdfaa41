# shellcheck shell=bash
# Shared by build-oci.sh and check-image.sh (sourced, not run).

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

# dockerfile_labels DOCKERFILE: the key="value" pairs of its LABEL instruction (one LABEL,
# continued with backslashes, values without quotes inside) as a JSON object, so the Dockerfile
# is the one place the image's labels are written.
dockerfile_labels() {
  awk '/^LABEL /{on=1} on{print} on && !/\\$/{on=0}' "$1" |
    grep -oE '[A-Za-z0-9_.-]+="[^"]*"' |
    jq -Rn '[inputs | capture("^(?<key>[^=]+)=\"(?<value>.*)\"$")] | from_entries |
            if length == 0 then error("no LABEL key=\"value\" pairs found") else . end'
}
