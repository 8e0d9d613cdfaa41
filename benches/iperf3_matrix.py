#!/usr/bin/env python3
"""iperf3 interoperability matrix: {iperf3, netload} sender x {iperf3, netload} receiver.

On loopback, for TCP and UDP, every cell is a forward test (the client sends):

- iperf3 -> iperf3:   `iperf3 -s -1 -p P`                 ; `iperf3 -c H -p P -J`
- iperf3 -> netload:  `netload server --iperf3-port P --once` ; `iperf3 -c H -p P -J`
- netload -> iperf3:  `iperf3 -s -1 -p P`                 ; `netload tcp|udp H --peer iperf3 -p P --json`
- netload -> netload: `netload server -p P --once`          ; `netload tcp|udp H -p P --json`

Each run starts a fresh server, runs the client, parses its JSON (the receiver's count of
the server side) and kills the server. Runs alternate: run 0 goes through the cells in
order, run 1 in reverse, and so on. Per cell: median receiver goodput over the runs with
min-max, CPU seconds per Gbit (each tool's own figures: netload's getrusage; iperf3's
cpu_util percentages), and UDP loss. Writes a Markdown table to stdout and, with --out,
the table and the raw runs as FILE and FILE.json (a bare name goes under benches/runs/).

Stdlib only; helpers shared with the other benches/ scripts live in benchlib.py.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from dataclasses import asdict, dataclass
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (  # noqa: E402
    REPO_ROOT,
    Interrupted,
    ParseError,
    PortPool,
    Procs,
    ensure_iperf3,
    fmt,
    fmt_spread,
    host_lines,
    ignore_interrupts,
    install_interrupt_handlers,
    log,
    parse_iperf3,
    parse_netload,
    restore_handlers,
    run_client,
    start_sample,
    start_server,
    summary,
    tool_version,
    write_report,
)

TOOLS = ("iperf3", "netload")
PROTOS = ("tcp", "udp")
SERVER_READY_TIMEOUT_S = 5.0
SERVER_EXIT_GRACE_S = 2.0
CLIENT_SLACK_S = 30.0
PORT_MIN, PORT_MAX = 19400, 19499  # apart from stream_vs_iperf3's and latency_http_vs_peers'


@dataclass(frozen=True)
class Cell:
    """One cell of the matrix."""

    proto: str
    sender: str  # the client tool
    receiver: str  # the server tool


def cells(protos: tuple[str, ...] = PROTOS) -> list[Cell]:
    return [Cell(p, s, r) for p in protos for s in TOOLS for r in TOOLS]


def run_order(all_cells: list[Cell], run: int) -> list[Cell]:
    """Cells in the order run `run` goes through them: forward on even runs, reversed on odd."""
    return list(all_cells) if run % 2 == 0 else list(reversed(all_cells))


def commands(cell: Cell, host: str, port: int, aux_port: int, secs: int, netload: str, iperf3: str,
             udp_rate: str, udp_len: int) -> tuple[list[str], list[str]]:
    """Server and client argv of one cell. `aux_port` is netload's own port when the netload
    server only serves the iperf3 port in this cell."""
    t = str(secs)
    if cell.receiver == "iperf3":
        server = [iperf3, "-s", "-1", "-p", str(port)]
    elif cell.sender == "iperf3":
        server = [netload, "server", "--bind", host, "-p", str(aux_port), "--rr-port", "0",
                  "--iperf3-port", str(port), "--once"]
    else:
        server = [netload, "server", "--bind", host, "-p", str(port), "--rr-port", "0", "--once"]
    if cell.sender == "iperf3":
        client = [iperf3, "-c", host, "-p", str(port), "-t", t, "-J"]
        if cell.proto == "udp":
            client += ["-u", "-b", udp_rate, "-l", str(udp_len)]
    else:
        client = [netload, cell.proto, host, "-p", str(port), "-t", t, "--json"]
        if cell.receiver == "iperf3":
            client += ["--peer", "iperf3"]
        if cell.proto == "udp":
            client += ["--rate", udp_rate, "-l", str(udp_len)]
    return server, client


def parse_client(doc: Any, cell: Cell) -> dict[str, Any]:
    """Receiver goodput, CPU and loss of a cell from its client's JSON document."""
    return (parse_iperf3 if cell.sender == "iperf3" else parse_netload)(doc, cell.proto)


@dataclass
class RunResult:
    proto: str
    sender: str
    receiver: str
    run: int
    command: str
    server_command: str
    ok: bool = False
    error: Optional[str] = None
    gbps: Optional[float] = None
    gbit: Optional[float] = None
    cpu_s_per_gbit: Optional[float] = None
    loss_percent: Optional[float] = None
    wall_s: Optional[float] = None


def run_cell(procs: Procs, cell: Cell, run: int, port: int, aux_port: int, args: argparse.Namespace) -> RunResult:
    server_argv, client_argv = commands(cell, "127.0.0.1", port, aux_port, args.time, args.netload, args.iperf3,
                                        args.udp_rate, args.udp_len)
    res = RunResult(cell.proto, cell.sender, cell.receiver, run, shlex.join(client_argv), shlex.join(server_argv))
    with tempfile.TemporaryFile() as srv_out:
        server, res.error = start_server(procs, server_argv, port, srv_out, SERVER_READY_TIMEOUT_S)
        if server is None:
            return res
        try:
            if res.error:
                return res
            client = run_client(procs, client_argv, args.time + CLIENT_SLACK_S)
            res.wall_s = client.wall_s
            if client.error:
                res.error = client.error
                return res
            doc = client.doc
            try:
                parsed = parse_client(doc, cell)
            except ParseError as e:
                res.error = "unexpected JSON: %s" % e
                return res
            for k in ("gbps", "gbit", "cpu_s_per_gbit", "loss_percent"):
                setattr(res, k, parsed.get(k))
            res.ok = True
            return res
        finally:
            procs.kill(server, grace=SERVER_EXIT_GRACE_S)


def render_matrix(results: list[RunResult], protos: tuple[str, ...], runs: int) -> str:
    """One table per protocol: sender rows x receiver columns; each cell holds the median
    receiver Gbit/s with its min-max and IQR, CPU s/Gbit and (UDP) loss, or the errors."""
    out = []
    for proto in protos:
        out.append("### %s\n" % proto.upper())
        out.append("| sender \\ receiver | %s |" % " | ".join(TOOLS))
        out.append("|---|%s|" % "|".join("---" for _ in TOOLS))
        for sender in TOOLS:
            row = []
            for receiver in TOOLS:
                rs = [r for r in results if (r.proto, r.sender, r.receiver) == (proto, sender, receiver)]
                ok = [r for r in rs if r.ok]
                cell = "%s Gbit/s" % fmt_spread(summary([r.gbps for r in ok if r.gbps is not None]), runs)
                cpu = summary([r.cpu_s_per_gbit for r in ok if r.cpu_s_per_gbit is not None])
                cell += "; CPU %s s/Gbit" % fmt(cpu["median"] if cpu else None, 3)
                if proto == "udp":
                    loss = summary([r.loss_percent for r in ok if r.loss_percent is not None])
                    cell += "; loss %s%%" % fmt(loss["median"] if loss else None, 3)
                errors = [r.error for r in rs if not r.ok]
                if errors:
                    cell += "; failed %d/%d: %s" % (len(errors), len(rs), (errors[0] or "").replace("|", "\\|")[:120])
                row.append(cell)
            out.append("| **%s** | %s |" % (sender, " | ".join(row)))
        out.append("")
    return "\n".join(out)


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="iperf3/netload sender x receiver matrix on loopback, TCP and UDP.")
    ap.add_argument("--runs", type=int, default=5, help="runs per cell (default 5)")
    ap.add_argument("--time", type=int, default=5, help="whole seconds per run (iperf3 takes whole seconds; default 5)")
    ap.add_argument("--netload", default=str(REPO_ROOT / "target" / "release" / "netload"),
                    help="netload binary (default: target/release/netload in the repo)")
    ap.add_argument("--iperf3", default=None, help="iperf3 binary (default: iperf3 on PATH, installed if root)")
    ap.add_argument("--protos", default="tcp,udp", help="comma list of tcp,udp (default both)")
    ap.add_argument("--udp-rate", default="1G", help="UDP target rate per stream, both tools (default 1G)")
    ap.add_argument("--udp-len", type=int, default=1400, help="UDP payload bytes (default 1400)")
    ap.add_argument("--out", default=None, help="also write the report to FILE and the raw runs to FILE.json "
                                                "(a bare name goes under benches/runs/)")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if not 1 <= args.time <= 3600:
        ap.error("--time must be 1-3600 whole seconds")
    protos = tuple(p.strip() for p in args.protos.split(",") if p.strip())
    if not protos or any(p not in PROTOS for p in protos):
        ap.error("--protos: allowed tcp, udp; got %r" % args.protos)
    args.protos = protos
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    args.iperf3 = ensure_iperf3(args.iperf3, log)
    if not os.access(args.netload, os.X_OK):
        log("warning: %s is not executable; netload cells will fail (cargo build --release -p netload)" % args.netload)
    started, busy = start_sample()
    procs = Procs()
    results: list[RunResult] = []
    all_cells = cells(args.protos)
    ports = PortPool(PORT_MIN, PORT_MAX)
    old = install_interrupt_handlers()
    interrupted = False
    try:
        for run in range(args.runs):
            for cell in run_order(all_cells, run):
                port, aux = ports.take(), ports.take()
                r = run_cell(procs, cell, run, port, aux, args)
                results.append(r)
                what = "%s %s->%s run %d/%d" % (cell.proto, cell.sender, cell.receiver, run + 1, args.runs)
                log("%s: %s" % (what, "%.2f Gbit/s" % r.gbps if r.ok and r.gbps is not None else "ERROR %s" % r.error))
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = True
        log("interrupted (%s): partial results follow" % e.__class__.__name__)
    finally:
        ignore_interrupts()
        procs.kill_all()
        restore_handlers(old)
    setup = host_lines(started, busy) + [
        "- netload: `%s` — %s" % (args.netload, tool_version([args.netload, "--version"])),
        "- iperf3: `%s` — %s" % (args.iperf3, tool_version([args.iperf3, "--version"])),
        "- %d run(s) of %d s per cell, cells alternate direction per run; UDP %s B at %s per stream"
        % (args.runs, args.time, args.udp_len, args.udp_rate),
    ]
    seen: set[tuple[str, str, str]] = set()
    for r in results:
        if (r.proto, r.sender, r.receiver) not in seen:
            seen.add((r.proto, r.sender, r.receiver))
            setup.append("- %s %s->%s: `%s` ; `%s`" % (r.proto, r.sender, r.receiver, r.server_command, r.command))
    doc = "\n\n".join([
        "# iperf3 interoperability matrix (loopback)",
        "Receiver goodput (the server side's own count), median (min–max, IQR) over the runs; CPU s/Gbit is "
        "client + server process CPU per Gbit received as each client reports it (netload: getrusage; iperf3: "
        "its cpu_util percentages, also for the netload server it talks to).",
        render_matrix(results, args.protos, args.runs),
        "## Setup",
        "\n".join(setup),
    ]) + "\n"
    write_report(args.out, doc, {"started_utc": started, "runs": args.runs, "time_s": args.time,
                                 "results": [asdict(r) for r in results]}, log)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
