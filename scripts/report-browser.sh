#!/usr/bin/env bash
# Renders a run directory's report and loads it in headless Chromium (Debian's `chromium`,
# installed when missing): the DOM as the browser built it, its console log, and screenshots
# 1280 px wide: the top of the page (what a reader sees first) and the whole page.
#
# Usage: scripts/report-browser.sh RUN_DIR OUT_DIR
#   RUN_DIR  a cnibench run directory (meta.json + results.jsonl[.gz]); report.html, report.md,
#            report.csv and charts/ are (re)written there by `cnibench report`
#   OUT_DIR  receives dom.html, console.log, report-top.png and report-full.png
# Environment: CNIBENCH (default target/release/cnibench, else target/debug/cnibench);
# FULL_HEIGHT, the height of report-full.png in px (default 16000: headless Chromium shoots
# its window, not the page, so the window is made taller than the page).
#
# The screenshots filed under benches/runs/<run>/ come from this script:
#   scripts/report-browser.sh benches/runs/<run> benches/runs/<run>/screenshots
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/deps.sh
[ $# -eq 2 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
run_dir=$1
out=$2
require_tools chromium
cnibench=${CNIBENCH:-}
if [ -z "$cnibench" ]; then
  for c in target/release/cnibench target/debug/cnibench; do
    [ -x "$c" ] && { cnibench=$c; break; }
  done
fi
[ -n "$cnibench" ] || { echo "error: no cnibench binary: build it (cargo build -p cnibench) or set CNIBENCH" >&2; exit 1; }

"$cnibench" report "$run_dir" >/dev/null
mkdir -p "$out"
page="file://$(realpath "$run_dir")/report.html"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# A fresh profile and no background traffic: the page must load from the file alone.
browser() {
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" "$@"
}
browser --enable-logging=stderr --v=0 --dump-dom "$page" >"$out/dom.html" 2>"$out/console.log"
shot() {
  browser --window-size=1280,"$2" --screenshot="$out/report-$1.png" "$page" >/dev/null 2>&1
  [ -s "$out/report-$1.png" ] || { echo "error: chromium wrote no $out/report-$1.png" >&2; exit 1; }
}
shot top 1100
shot full "${FULL_HEIGHT:-16000}"
echo "wrote $out: dom.html, console.log, report-top.png, report-full.png" >&2
