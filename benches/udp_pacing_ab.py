#!/usr/bin/env python3
"""Paced UDP sending, two netload builds side by side (issue 17's pacing change).

Runs `netload udp 127.0.0.1 --rate R -l LEN -t 3 --omit 0.5 -i 0.1 --json` with build A and
build B alternately against one `netload server` (build B's), and prints per run what the
sender achieved, the loss, the largest 100 ms interval (a burst above the offered rate
shows here) and the coefficient of variation of the intervals. Loopback only, no root.
Stdlib only; the server is killed on exit (benchlib.Procs / server_guard).

    python3 benches/udp_pacing_ab.py --a OLD/netload --b target/release/netload --rate 15G
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import PortPool, Procs, run_capture, server_guard  # noqa: E402


def one(procs: Procs, netload: str, port: int, rate: str, length: int) -> tuple[float, float, float, float]:
    """Sent Gbit/s, loss %, largest 100 ms interval Gbit/s, CoV of the intervals."""
    rc, out, err = run_capture(procs, [netload, "udp", "127.0.0.1", "-p", str(port), "-l", str(length),
                                       "--rate", rate, "-t", "3", "--omit", "0.5", "-i", "0.1", "--json"], 60)
    if rc != 0:
        raise RuntimeError("netload exited %d: %s" % (rc, err.strip()[-200:]))
    r = json.loads(out)
    f = r["flows"][0]
    ivs = [iv["bits_per_second"] for iv in r["client"]["intervals"]]
    return (f["sender_bits_per_second"] / 1e9, f["loss_percent"], max(ivs) / 1e9,
            statistics.pstdev(ivs) / statistics.mean(ivs))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="netload build A (e.g. before the change)")
    ap.add_argument("--b", required=True, help="netload build B (its server is used for both)")
    ap.add_argument("--rate", default="15G")
    ap.add_argument("--length", type=int, default=1400)
    ap.add_argument("--runs", type=int, default=4)
    args = ap.parse_args()
    procs = Procs()
    port = PortPool(19500, 19599).take()
    builds = {"A": args.a, "B": args.b}
    res: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in builds}
    try:
        with server_guard(procs, [args.b, "server", "--port", str(port)], port):
            for i in range(args.runs):
                for k in (("A", "B") if i % 2 == 0 else ("B", "A")):
                    res[k].append(one(procs, builds[k], port, args.rate, args.length))
    finally:
        procs.kill_all()
    print("# --rate %s -l %d, -t 3 --omit 0.5, loopback, %d runs alternating" % (args.rate, args.length, args.runs))
    for k, v in res.items():
        print("%s (%s): sent Gbit/s %s; loss %% %s; largest 100 ms interval Gbit/s %s; interval CoV %s" % (
            k, builds[k], [round(x[0], 2) for x in v], [round(x[1], 3) for x in v],
            [round(x[2], 2) for x in v], [round(x[3], 3) for x in v]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
