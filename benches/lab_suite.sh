#!/usr/bin/env bash
# Runs a cnibench suite on the lab backend with the release build and files the result under
# benches/runs/lab-<suite>-<UTC date>/: the run directory as `cnibench report` reads it
# (meta.json, results.jsonl with every raw repetition, gzip-compressed as results.jsonl.gz
# when over 1 MiB, summary.json, report.{html,md,csv}, charts/), plan.txt and a setup.md
# with the machine, the wall time, the load before the start and the setup time of every
# point (with the lab's phase breakdown: services, policies, filler pods, checks).
# `cnibench report` on the filed directory renders the same report as the run wrote.
# Screenshots of the report: scripts/report-browser.sh <filed dir> <filed dir>/screenshots
#
# Besides the main run (first mode of --modes), a setup pass per further proxy/policy mode
# runs the suite's scale scenarios (pod-to-service, pod-to-pod-policies) with 1 s repetitions
# (2 reps, no warm-up): their throughput is not a result, their setup time per point is.
#
# Usage (root):
#   benches/lab_suite.sh --suite quick                 # proves the harness (~3 min)
#   benches/lab_suite.sh --suite thesis                # the full table (see `cnibench plan`)
# Options: --suite NAME|FILE (default quick), --modes iptables,nftables (proxy and policy
# mode pairs; default both), --no-setup-pass, --out DIR (default benches/runs/lab-<suite>-<date>),
# -- ARGS... passes ARGS to the main `cnibench run` (e.g. --profile vxlan).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh

suite=quick
modes=iptables,nftables
setup_pass=1
out=
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --suite) suite=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --no-setup-pass) setup_pass=0; shift ;;
    --out) out=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n "2,18p" "$0"; exit 0 ;;
    *) echo "error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then
  echo "error: the lab backend needs root (network namespaces)" >&2
  exit 1
fi
IFS=, read -r -a mode_list <<<"$modes"
for m in "${mode_list[@]}"; do
  case "$m" in iptables|nftables) ;; *) echo "error: --modes: unknown mode '$m' (iptables, nftables)" >&2; exit 2 ;; esac
done
for tool in ip iptables nft iperf3; do
  command -v "$tool" >/dev/null 2>&1 || install_package "${NETLOAD_PACKAGES[$tool]}"
done

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }

stamp=$(date -u +%Y%m%d-%H%M)
name=$(basename "$suite" .toml)
out=${out:-benches/runs/lab-$name-$stamp}
if [ -e "$out" ]; then
  echo "error: $out exists; pass another --out" >&2
  exit 1
fi
# The run directories are written under results/ (git-ignored) and filed when they end.
work=results/lab-suite-$name-$stamp
mkdir -p "$work"

# file_run SRC DST: a run directory as filed: everything `cnibench report` reads and wrote,
# the repetition log compressed when large (cnibench reads results.jsonl.gz transparently).
file_run() {
  local src=$1 dst=$2
  mkdir -p "$dst"
  cp "$src/meta.json" "$src/summary.json" "$src"/report.* "$dst/"
  [ -d "$src/charts" ] && cp -r "$src/charts" "$dst/"
  if [ "$(stat -c %s "$src/results.jsonl")" -gt 1048576 ]; then
    gzip -9 -n -c "$src/results.jsonl" >"$dst/results.jsonl.gz"
  else
    cp "$src/results.jsonl" "$dst/"
  fi
}

# The revision the binaries are built from (not the one at the end of a long run).
git_rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates Cargo.toml Cargo.lock || echo '-dirty')"
echo "==> cargo build --release -p cnibench -p netload" >&2
build_start=$(date +%s.%N)
cargo build --release --locked -p cnibench -p netload >&2
build_s=$(elapsed "$build_start")
cnibench=target/release/cnibench

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mkdir -p "$out"
"$cnibench" plan --suite "$suite" --backend lab >"$out/plan.txt"

first=${mode_list[0]}
echo "==> cnibench run --backend lab --suite $suite (proxy and policies: $first)" >&2
run_start=$(date +%s.%N)
status=0
"$cnibench" run --backend lab --suite "$suite" --proxy "$first" --policy-mode "$first" \
  --label "lab-$name-$first" --out "$work/main" "${extra[@]}" >"$work/main.table" || status=$?
wall_s=$(elapsed "$run_start")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
file_run "$work/main" "$out"

passes=("$work/main")
pass_walls=("$wall_s")
if [ "$setup_pass" -eq 1 ]; then
  for m in "${mode_list[@]:1}"; do
    scale=()
    for s in pod-to-service pod-to-pod-policies; do
      # Only the scale scenarios the suite has.
      if "$cnibench" plan --suite "$suite" --only "$s" --backend lab >/dev/null 2>&1; then
        scale+=("$s")
      fi
    done
    [ ${#scale[@]} -gt 0 ] || break
    only=$(IFS=,; echo "${scale[*]}")
    echo "==> setup pass: --proxy $m --policy-mode $m --only $only" >&2
    t=$(date +%s.%N)
    "$cnibench" run --backend lab --suite "$suite" --only "$only" --proxy "$m" --policy-mode "$m" \
      --set workload=tcp --set duration=1s --set omit=0s --min-reps 2 --max-reps 2 --warmup 0 \
      --label "setup-pass-$m" --out "$work/setup-$m" >/dev/null || status=$?
    passes+=("$work/setup-$m")
    pass_walls+=("$(elapsed "$t")")
    file_run "$work/setup-$m" "$out/setup-pass-$m"
  done
fi

export LS_SUITE="$suite" LS_MODES="$modes${extra[*]:+ -- ${extra[*]}}" LS_STATUS="$status" LS_OUT="$out" \
  LS_GIT="$git_rev" \
  LS_MACHINE="$(hostname), $cpu_model, $(nproc) cores (nproc), kernel $(uname -r)" \
  LS_LOAD_BEFORE="$load_before" LS_LOAD_AFTER="$load_after" LS_BUILD_S="$build_s"
python3 - "${#passes[@]}" "${passes[@]}" "${pass_walls[@]}" <<'PY'
import json, os, sys
env = os.environ
n = int(sys.argv[1])
passes, walls = sys.argv[2:2 + n], sys.argv[2 + n:2 + 2 * n]
out = []
w = out.append
w(f"# cnibench lab suite `{env['LS_SUITE']}`\n")
w(f"- command: `benches/lab_suite.sh --suite {env['LS_SUITE']} --modes {env['LS_MODES']}` (release build)")
w(f"- git: `{env['LS_GIT']}`")
w(f"- machine: {env['LS_MACHINE']}")
w(f"- load average before: {env['LS_LOAD_BEFORE']}; after the main run: {env['LS_LOAD_AFTER']}")
w(f"- release build: {float(env['LS_BUILD_S']):.1f} s (before the runs, not in the wall times)")
w(f"- main run wall time: {float(walls[0]):.1f} s (cnibench exit status {env['LS_STATUS']})")
plan = open(env["LS_OUT"] + "/plan.txt").read().strip().splitlines()[-1]
w(f"- `cnibench plan` said: {plan}")
for p, t in zip(passes[1:], walls[1:]):
    w(f"- setup pass `{p.rsplit('/', 1)[-1]}`: {float(t):.1f} s")
w("")
w("Setup time = the backend's prepare per point: building the point's lab (nodes, pods, filler")
w("pods, services, policies) and its self-checks; phases in seconds from `cnibench_lab.setup_s`.\n")
w("| pass | proxy/policies | point | status | setup s | lab up | pods | filler pods | services | policies | self-checks |")
w("|---|---|---|---|---|---|---|---|---|---|---|")
for p in passes:
    meta = json.load(open(p + "/meta.json"))
    mode = f"{meta['tools'].get('lab_proxy', '?')}/{meta['tools'].get('lab_policy_mode', '?')}"
    phases, ends = {}, {}
    for line in open(p + "/results.jsonl"):
        r = json.loads(line)
        if r["type"] == "rep":
            phases.setdefault(r["point"], r["raw"].get("cnibench_lab", {}).get("setup_s", {}))
        else:
            ends[r["point"]] = r
    for pt in meta["points"]:
        e = ends.get(pt["id"], {})
        ph = phases.get(pt["id"], {})
        cells = [f"{ph[k]:.2f}" if k in ph else "-"
                 for k in ["lab_up", "pods", "filler_pods", "services", "policies", "self_checks"]]
        setup = f"{e['setup_s']:.2f}" if e.get("setup_s") is not None else "-"
        w(f"| {p.rsplit('/', 1)[-1]} | {mode} | `{pt['id']}` | {e.get('status', 'not run')} | {setup} | "
          + " | ".join(cells) + " |")
w("")
open(env["LS_OUT"] + "/setup.md", "w").write("\n".join(out) + "\n")
PY
cat "$work/main.table"
echo "filed under $out (the run directory, plan.txt, setup.md); work directories in $work" >&2
echo "screenshots: scripts/report-browser.sh $out $out/screenshots" >&2
exit "$status"
