#!/usr/bin/env python3
"""Where the spread of lab stream points comes from: one lab point, several settings,
N repetitions each, every repetition kept.

Each variant is one `cnibench run --backend lab` of a one-point suite with exactly N
measured repetitions (min = max = N, so the stopping rule does not cut a noisy variant
short) and the settings of the variant (`--set KEY=VALUE`, `--warmup-time`). Variants run
one after another in rounds (variant 1..k, then again), so slow drift of the machine
(thermal, steal, a neighbour) spreads over all variants instead of biasing the last.

Per variant the table shows: repetitions, mean, CoV, min..max, the repetitions the
stopping rule would have needed to meet a ±2.5% CI (3 at least; '-' = never within N),
the median TCP retransmits per repetition, the median node steal per repetition, how
many client stream threads ran on more than one core, and the median involuntary
context switches of the sender thread.

After the variants of each round, a CPU floor: the same number of windows of the same
length of a spin loop pinned to the last core, no network at all. Its CoV is what the
machine itself varies by; no lab setting can make a CPU-bound stream steadier than that.

Usage (root, release build):
  python3 benches/lab_repeatability.py --reps 10 --rounds 1 --out benches/runs/lab-repeatability-DATE
  python3 benches/lab_repeatability.py --variant 'pinned 0/1=affinity=0/1' --variant 'free='
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402

DEFAULT_VARIANTS = [
    "scheduler (default)=",
    "one core=affinity=same",
    "client 0 / server 1=affinity=0/1",
    "client 1 / server 0=affinity=1/0",
    "4 MiB buffers=window=4MiB",
    "no omit=omit=0s",
    "2 s omit=omit=2s",
]

SUITE = """name = "repeatability"
description = "one stream point, for benches/lab_repeatability.py"
[defaults]
duration = "{duration}"
omit = "1s"
[[scenario]]
kind = "{kind}"
{placement}workload = "{workload}"
"""

T95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306,
       10: 2.262, 11: 2.228, 12: 2.201, 13: 2.179, 14: 2.160, 15: 2.145, 16: 2.131,
       17: 2.120, 18: 2.110, 19: 2.101, 20: 2.093, 21: 2.086}


def reps_to_converge(values: list[float], target: float = 0.025, min_reps: int = 3) -> int | None:
    """First n >= min_reps at which the 95% CI half-width of the mean of values[:n] is
    within `target` of the mean (the stopping rule of cnibench, replayed)."""
    for n in range(max(2, min_reps), len(values) + 1):
        xs = values[:n]
        mean = statistics.fmean(xs)
        if mean == 0:
            continue
        half = T95.get(n, 1.96) * statistics.stdev(xs) / n ** 0.5
        if half / abs(mean) <= target:
            return n
    return None


def cov(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.fmean(values) if len(values) > 1 else 0.0


def parse_variant(text: str) -> tuple[str, list[str]]:
    """`label=KEY=V;KEY=V` -> (label, ['KEY=V', ...]); an empty setting list is allowed."""
    label, _, settings = text.partition("=")
    sets = [s for s in settings.split(";") if s]
    return label, sets


def run_variant(cnibench: str, suite_file: Path, sets: list[str], reps: int, out: Path,
                extra: list[str]) -> Path:
    cmd = [cnibench, "run", "--backend", "lab", "--suite", str(suite_file), "--out", str(out),
           "--min-reps", str(reps), "--max-reps", str(reps), "--time-budget", "30m"]
    for s in sets:
        cmd += ["--set", s]
    cmd += extra
    benchlib.log(" ".join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def repetitions(run_dir: Path) -> list[dict]:
    reps = []
    for line in (run_dir / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "rep" and not rec.get("warmup"):
            reps.append(rec)
    return reps


def cpu_floor(windows: int, seconds: float) -> list[float]:
    """Millions of spin-loop iterations per second in each window, on the last core."""
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
    try:
        rates = []
        for _ in range(windows):
            n, start = 0, time.perf_counter()
            end = start + seconds
            while True:
                for _ in range(10_000):
                    n += 1
                now = time.perf_counter()
                if now > end:
                    break
            rates.append(n / (now - start) / 1e6)
        return rates
    finally:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def describe(reps: list[dict]) -> dict:
    values = [r["metrics"]["throughput_gbps"] for r in reps if "throughput_gbps" in r["metrics"]]
    steal, migrated, invol = [], 0, []
    retransmits = [r["metrics"]["retransmits"] for r in reps if "retransmits" in r["metrics"]]
    for r in reps:
        raw = r.get("raw", {})
        client = raw.get("client", {})
        node = client.get("cpu", {}).get("node", {})
        if node:
            steal.append(node.get("steal", 0.0))
        for s in client.get("streams", []):
            placement = s.get("placement")
            if not placement:
                continue
            if len(placement.get("cores_seen", [])) > 1:
                migrated += 1
            if s.get("role") == "send":
                invol.append(placement.get("involuntary_switches", 0))
        for s in raw.get("server", {}).get("streams", []):
            placement = s.get("placement")
            if placement and s.get("role") == "send":
                invol.append(placement.get("involuntary_switches", 0))
    return {
        "values": values,
        "n": len(values),
        "mean": statistics.fmean(values) if values else 0.0,
        "cov": cov(values),
        "min": min(values, default=0.0),
        "max": max(values, default=0.0),
        "reps_to_converge": reps_to_converge(values),
        "retransmits": statistics.median(retransmits) if retransmits else None,
        "steal_s": statistics.median(steal) if steal else None,
        "migrated_threads": migrated,
        "sender_involuntary": statistics.median(invol) if invol else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cnibench", default=str(benchlib.REPO_ROOT / "target/release/cnibench"))
    ap.add_argument("--kind", default="pod-to-pod")
    ap.add_argument("--placement", default="inter")
    ap.add_argument("--workload", default="tcp")
    ap.add_argument("--duration", default="4s")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--variant", action="append", help="LABEL=KEY=V;KEY=V (repeatable)")
    ap.add_argument("--out", help="directory for report.md, data.json and the run directories")
    ap.add_argument("extra", nargs="*", help="more cnibench run arguments, after --")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("error: the lab backend needs root (network namespaces)", file=sys.stderr)
        return 1
    if not Path(a.cnibench).is_file():
        print(f"error: {a.cnibench} missing: cargo build --release", file=sys.stderr)
        return 1
    variants = [parse_variant(v) for v in (a.variant or DEFAULT_VARIANTS)]
    out = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="lab-repeatability-"))
    out.mkdir(parents=True, exist_ok=True)
    suite_file = out / "suite.toml"
    suite_file.write_text(SUITE.format(
        duration=a.duration, kind=a.kind, workload=a.workload,
        placement=f'placement = "{a.placement}"\n' if a.kind != "baseline" else ""))
    load_before = os.getloadavg()
    collected: dict[str, list[dict]] = {label: [] for label, _ in variants}
    floor: list[float] = []
    seconds = float(a.duration.rstrip("s"))
    for round_no in range(a.rounds):
        for i, (label, sets) in enumerate(variants):
            run_dir = out / "runs" / f"r{round_no}-v{i}"
            run_variant(a.cnibench, suite_file, sets, a.reps, run_dir, a.extra)
            collected[label] += repetitions(run_dir)
        benchlib.log(f"CPU floor: {a.reps} spin windows of {seconds:g} s")
        floor += cpu_floor(a.reps, seconds)
    rows, data = [], {}
    for label, sets in variants:
        d = describe(collected[label])
        data[label] = {"settings": sets, **d}
        rows.append([
            label, "`" + (" ".join(f"--set {s}" for s in sets) or "(defaults)") + "`",
            str(d["n"]), f'{d["mean"]:.3f}', f'{d["cov"] * 100:.2f}%',
            f'{d["min"]:.3f}..{d["max"]:.3f}',
            str(d["reps_to_converge"] or "-"),
            "-" if d["retransmits"] is None else f'{d["retransmits"]:.0f}',
            "-" if d["steal_s"] is None else f'{d["steal_s"]:.3f}',
            str(d["migrated_threads"]),
            "-" if d["sender_involuntary"] is None else f'{d["sender_involuntary"]:.0f}',
        ])
    data["CPU floor"] = {"values": floor, "cov": cov(floor)}
    rows.append(["CPU floor (spin loop, no network)", "`-`", str(len(floor)),
                 f"{statistics.fmean(floor):.1f} Mops/s", f"{cov(floor) * 100:.2f}%",
                 f"{min(floor):.1f}..{max(floor):.1f}", str(reps_to_converge(floor) or "-"),
                 "-", "-", "-", "-"])
    header = ["variant", "settings", "n", "mean Gbit/s", "CoV", "min..max",
              "reps to ±2.5%", "retransmits/rep", "steal s/rep", "client threads on >1 core", "sender invol. switches"]
    text = [f"# lab stream repeatability: {a.kind} {a.placement} {a.workload}, {a.duration} repetitions", "",
            f"- command: `python3 benches/lab_repeatability.py {' '.join(sys.argv[1:])}`",
            f"- {a.reps} repetitions per variant per round, {a.rounds} round(s), variants interleaved by round",
            f"- load average before: {' '.join(f'{x:.2f}' for x in load_before)}; after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            f"- machine: {benchlib.cpu_model()}, {os.cpu_count()} cores, kernel {os.uname().release}; git {benchlib.git_rev()}",
            "", benchlib.markdown_table(header, rows),
            "", "Every repetition (Gbit/s, in run order):", ""]
    for label, _ in variants:
        text.append(f"- {label}: " + ", ".join(f"{v:.3f}" for v in data[label]["values"]))
    text.append("- CPU floor (Mops/s): " + ", ".join(f"{v:.1f}" for v in floor))
    report = "\n".join(text) + "\n"
    (out / "report.md").write_text(report)
    (out / "data.json").write_text(json.dumps(data, indent=1))
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
