#!/usr/bin/env bash
# Validate Kubernetes manifests against the Kubernetes OpenAPI schemas, offline:
#   bash scripts/validate-manifests.sh [DIR|FILE...]        (default: manifests/)
# Every *.yaml / *.yml under each DIR (recursively), every document in each file, and every item
# of a `kind: List`, must have a schema and match it strictly (unknown fields are errors).
# The checker is kubernetes-validate from PyPI (pinned in scripts/lib/kubernetes-validate.txt,
# schemas bundled), installed into a venv at target/venv-kv on first use.
# Kubernetes version: $KUBERNETES_VERSION if set, else the v1_NN feature k8s-openapi resolves to
# in this workspace (the types the kube backend renders from), else 1.37 — what k8s-openapi
# 0.29's `latest` means and the newest schema kubernetes-validate 1.37.0 bundles.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=$repo/target/venv-kv
requirements=$repo/scripts/lib/kubernetes-validate.txt

inputs=("$@")
[ ${#inputs[@]} -gt 0 ] || inputs=("$repo/manifests")
files=()
for input in "${inputs[@]}"; do
  if [ -d "$input" ]; then
    mapfile -t found < <(find "$input" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
    [ ${#found[@]} -gt 0 ] || { echo "error: no *.yaml or *.yml file under $input" >&2; exit 1; }
    files+=("${found[@]}")
  elif [ -f "$input" ]; then
    files+=("$input")
  else
    echo "error: $input is neither a directory nor a file" >&2
    exit 1
  fi
done

# The venv is rebuilt when the pinned requirements change (the stamp holds a copy of them).
if ! cmp -s "$requirements" "$venv/requirements.stamp" 2>/dev/null; then
  echo "validate-manifests: installing kubernetes-validate into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" || { echo "error: python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" >&2 || {
    echo "error: pip install -r $requirements failed" >&2
    exit 1
  }
  cp "$requirements" "$venv/requirements.stamp"
fi

version=${KUBERNETES_VERSION:-}
if [ -z "$version" ]; then
  feature=$(cd "$repo" && cargo metadata --locked --format-version 1 2>/dev/null |
    jq -r '.resolve.nodes[] | select(.id | test("k8s-openapi")) | .features[] | select(test("^v1_[0-9]+$"))' |
    sort -t_ -k2 -n | tail -n 1) || feature=
  if [ -n "$feature" ]; then
    version=${feature#v}
    version=${version/_/.}
  else
    version=1.37
    echo "validate-manifests: k8s-openapi is not in this workspace; validating against Kubernetes $version" >&2
  fi
fi

"$venv/bin/python" "$repo/scripts/lib/validate_manifests.py" --kubernetes-version "$version" --strict "${files[@]}"
