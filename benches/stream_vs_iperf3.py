#!/usr/bin/env python3
"""Side-by-side stream benchmark: netload vs Debian's iperf3, alternately, on the same path.

Paths: loopback (127.0.0.1) and a veth pair between two network namespaces that this
script creates (``nlbench-<pid>-c`` / ``nlbench-<pid>-s``, 198.18.0.1/30 <-> 198.18.0.2/30)
and always removes (finally + signal handlers; stale ones of dead runs are removed at start).

For every row, every run starts a fresh server of each tool, runs the client, parses its
JSON, and kills the server. Tools alternate (run 0: netload then iperf3, run 1: iperf3 then
netload, ...). A tool that fails is recorded as an error cell; the script carries on.

Stdlib only. See benches/README.md for what every figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (  # noqa: E402
    REPO_ROOT,
    Interrupted,
    NdrConfig,
    NdrObservation,
    ParseError,
    PortPool,
    RateSearch,
    Procs,
    _short,
    _tail,
    children_cpu_s,
    num_field,
    ensure_iperf3,
    fmt,
    fmt_spread,
    host_lines,
    ignore_interrupts,
    install_interrupt_handlers,
    log,
    parse_iperf3,
    parse_netload,
    read_proc_stat,
    restore_handlers,
    run_client,
    select_rows,
    sh,
    start_sample,
    start_server,
    stat_delta,
    summary,
    tool_version,
    write_report,
)

NS_PREFIX = "nlbench-"
NS_RE = re.compile(r"^nlbench-(\d+)-[cs]$")
VETH_CLIENT_ADDR = "198.18.0.1"
VETH_SERVER_ADDR = "198.18.0.2"
VETH_PREFIXLEN = 30
PORT_MIN, PORT_MAX = 19200, 19299
SERVER_READY_TIMEOUT_S = 5.0
SERVER_EXIT_GRACE_S = 2.0
CLIENT_SLACK_S = 30.0

TOOLS = ("netload", "iperf3")


# --------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One comparison: a netload client command and an iperf3 client command."""

    num: int
    name: str
    proto: str  # "tcp" | "udp"
    netload_args: tuple[str, ...]  # after `netload tcp|udp HOST --port P -t T`
    iperf3_args: tuple[str, ...]  # after `iperf3 -c HOST -p P -t T`
    target: str  # human-readable target from issue 3
    target_ratio: float  # netload/iperf3 receiver Gbit/s must be >= this
    max_cpu_ratio: Optional[float] = None  # netload/iperf3 CPU s/Gbit must be <= this
    max_loss_percent: Optional[float] = None  # netload loss must be <= this (UDP)
    # UDP at the no-drop rate: both tools searched for the highest offered rate with loss
    # <= this percent (netload --find-rate; iperf3 -b RATE by benchlib.RateSearch, the same
    # algorithm), and compared there. target_ratio 0 = figures reported, no target.
    search_loss: Optional[float] = None


ROWS: tuple[Row, ...] = (
    Row(1, "TCP 1 stream, copy", "tcp", (), (), "≥1.1×, CPU/Gbit ≤1.0×", 1.1, max_cpu_ratio=1.0),
    Row(2, "TCP 2 streams", "tcp", ("-P", "2"), ("-P", "2"), "≥1.1×", 1.1),
    Row(3, "TCP sendfile vs -Z", "tcp", ("--zerocopy", "sendfile"), ("-Z",), "≥1.1×", 1.1),
    Row(
        4,
        "TCP sendfile+rx-discard vs default",
        "tcp",
        ("--zerocopy", "sendfile", "--rx-discard"),
        (),
        "≥1.8×",
        1.8,
    ),
    Row(5, "TCP MSS 1448", "tcp", ("--mss", "1448"), ("-M", "1448"), "≥1.0×, MSS reported", 1.0),
    Row(
        6,
        "UDP 1400 B, GSO/GRO",
        "udp",
        ("-l", "1400", "--rate", "0"),
        ("-u", "-l", "1400", "-b", "0"),
        "≥20× at ≤1% loss",
        20.0,
        max_loss_percent=1.0,
    ),
    Row(
        7,
        "UDP 1400 B, mmsg batching only",
        "udp",
        ("-l", "1400", "--rate", "0", "--no-offload"),
        ("-u", "-l", "1400", "-b", "0"),
        "≥1.5× at ≤1% loss",
        1.5,
        max_loss_percent=1.0,
    ),
    Row(
        8,
        "UDP 1400 B at the no-drop rate (≤1% loss), GSO/GRO",
        "udp",
        ("-l", "1400"),
        ("-u", "-l", "1400"),
        "≥20× goodput at equal loss (≤1%)",
        20.0,
        max_loss_percent=1.0,
        search_loss=1.0,
    ),
    Row(
        9,
        "UDP 64 B at the no-drop rate (≤1% loss): packets/s",
        "udp",
        ("-l", "64"),
        ("-u", "-l", "64"),
        "pps reported",
        0.0,
        max_loss_percent=1.0,
        search_loss=1.0,
    ),
    Row(
        10,
        "UDP 1400 B at the no-drop rate (≤1% loss), batching only",
        "udp",
        ("-l", "1400", "--no-offload"),
        ("-u", "-l", "1400"),
        "reported",
        0.0,
        max_loss_percent=1.0,
        search_loss=1.0,
    ),
    # Rows 8-10 run each tool with its own receive buffer: netload asks for 32 MiB (forced
    # past rmem_max as root), iperf3 keeps the kernel default (~208 KiB). These two give
    # both the same request, which the kernel caps at net.core.rmem_max for both.
    Row(
        11,
        "UDP 1400 B at the no-drop rate (≤1% loss), both -w 4M",
        "udp",
        ("-l", "1400", "-w", "4M"),
        ("-u", "-l", "1400", "-w", "4M"),
        "≥20× goodput at equal loss and equal buffers",
        20.0,
        max_loss_percent=1.0,
        search_loss=1.0,
    ),
    Row(
        12,
        "UDP 64 B at the no-drop rate (≤1% loss), both -w 4M: packets/s",
        "udp",
        ("-l", "64", "-w", "4M"),
        ("-u", "-l", "64", "-w", "4M"),
        "pps reported",
        0.0,
        max_loss_percent=1.0,
        search_loss=1.0,
    ),
)

# Trials of the no-drop searches (rows with search_loss), the same for both tools. iperf3
# takes whole seconds for -t and -O, so these are whole seconds. No warm-up: iperf3 3.12
# miscounts UDP loss with -O (`-u -b 1G -t 1 -O 1` on loopback reported 163% lost, 99496
# of 60824 packets), so neither tool omits anything.
SEARCH_TRIAL_S = 1
SEARCH_CONFIRM_S = 2
SEARCH_WARMUP_S = 0
SEARCH_BUDGET_S = 90.0
SEARCH_PAUSE_S = 0.1
# Beyond warm-up and measured window, what a trial costs: set-up, netload's 0.5 s drain
# grace (iperf3 has its own end-of-test exchange), the pause.
SEARCH_TRIAL_OVERHEAD_S = 0.7


# --------------------------------------------------------------------------------------
# Results of one client run
# --------------------------------------------------------------------------------------


@dataclass
class RunResult:
    path: str
    row: int
    run: int
    tool: str
    order: int  # 0 = ran first in this run index, 1 = second
    command: str
    server_command: str = ""
    ok: bool = False
    error: Optional[str] = None
    gbps: Optional[float] = None  # receiver goodput, Gbit/s
    gbit: Optional[float] = None  # receiver Gbit transferred in the measured window
    cpu_s: Optional[float] = None  # client + server process CPU seconds (tool's own figure)
    cpu_client_s: Optional[float] = None
    cpu_server_s: Optional[float] = None
    cpu_s_per_gbit: Optional[float] = None
    loss_percent: Optional[float] = None  # UDP
    mss: Optional[int] = None  # TCP, as the tool reports it
    tool_softirq_s: Optional[float] = None  # netload's own node softirq (client side window)
    # CPU of client + server as the harness sees it (getrusage RUSAGE_CHILDREN delta over the
    # whole run, server start to server reaped): the same measurement for both tools.
    harness_cpu_s: Optional[float] = None
    harness_cpu_s_per_gbit: Optional[float] = None
    node: dict[str, float] = field(default_factory=dict)  # harness /proc/stat deltas, seconds
    wall_s: Optional[float] = None
    server_note: Optional[str] = None  # e.g. a once-server that exited non-zero or had to be killed
    # No-drop search rows: the rate found, packets/s received there, how the search went,
    # and its loss curve [(offered Gbit/s, loss %, pass, purpose)].
    offered_gbps: Optional[float] = None
    mpps: Optional[float] = None
    search_status: Optional[str] = None
    search_trials: Optional[int] = None
    curve: list[tuple[float, float, bool, str]] = field(default_factory=list)
    # What the tool itself warned about (netload's search: an unsteady sender, ...).
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Parsers, /proc readers, process management, statistics: benchlib.py
# --------------------------------------------------------------------------------------


def pid_is_harness(pid: int) -> bool:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().replace(b"\0", b" ")
    except OSError:
        return False
    return b"stream_vs_iperf3" in cmd


# --------------------------------------------------------------------------------------
# Process and namespace management
# --------------------------------------------------------------------------------------


def list_netns() -> list[str]:
    r = sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def delete_netns(name: str, log: Callable[[str], None]) -> None:
    # Kill what still runs inside (only servers/clients this harness started there).
    r = sh(["ip", "netns", "pids", name], check=False)
    for tok in r.stdout.split():
        with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
            os.kill(int(tok), signal.SIGKILL)
    r = sh(["ip", "netns", "del", name], check=False)
    if r.returncode != 0:
        log("warning: could not delete namespace %s: %s" % (name, r.stderr.strip()))


def remove_stale_namespaces(log: Callable[[str], None]) -> None:
    for name in list_netns():
        m = NS_RE.match(name)
        if not m:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or pid_is_harness(pid):
            continue
        log("removing stale namespace %s (pid %d is gone)" % (name, pid))
        delete_netns(name, log)


class Path_:
    """A place to run server and client: loopback, or two namespaces joined by veth."""

    def __init__(self, name: str, server_host: str, client_ns: Optional[str], server_ns: Optional[str]):
        self.name = name
        self.server_host = server_host
        self.client_ns = client_ns
        self.server_ns = server_ns

    def wrap(self, argv: list[str], side: str) -> list[str]:
        ns = self.client_ns if side == "client" else self.server_ns
        return ["ip", "netns", "exec", ns] + argv if ns else argv


@contextlib.contextmanager
def veth_path(log: Callable[[str], None]) -> Iterator[Path_]:
    pid = os.getpid()
    c, s = "%s%d-c" % (NS_PREFIX, pid), "%s%d-s" % (NS_PREFIX, pid)
    created: list[str] = []
    try:
        for ns in (c, s):
            sh(["ip", "netns", "add", ns])
            created.append(ns)
        sh(["ip", "link", "add", "veth0", "netns", c, "type", "veth", "peer", "name", "veth0", "netns", s])
        for ns, addr in ((c, VETH_CLIENT_ADDR), (s, VETH_SERVER_ADDR)):
            sh(["ip", "-n", ns, "addr", "add", "%s/%d" % (addr, VETH_PREFIXLEN), "dev", "veth0"])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            sh(["ip", "-n", ns, "link", "set", "veth0", "up"])
        # Wait (bounded) until both ends report carrier.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            states = [sh(["ip", "-n", ns, "-o", "link", "show", "veth0"], check=False).stdout for ns in (c, s)]
            if all("state UP" in st for st in states):
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("veth0 did not come up in %s/%s within 5s" % (c, s))
        log("veth path up: %s %s/%d <-> %s %s/%d" % (c, VETH_CLIENT_ADDR, VETH_PREFIXLEN, s, VETH_SERVER_ADDR, VETH_PREFIXLEN))
        yield Path_("veth", VETH_SERVER_ADDR, c, s)
    finally:
        for ns in created:
            delete_netns(ns, log)


# --------------------------------------------------------------------------------------
# Running one tool once
# --------------------------------------------------------------------------------------


def detect_no_offload_flag(netload: str) -> str:
    """The netload flag for "batching, but no UDP GSO/GRO" (row 7).

    The brief names it `--no-offload`; a netload build may call it `--no-gso` (batching stays
    on) instead. Use whichever `netload udp --help` lists; default `--no-offload`.
    """
    try:
        r = subprocess.run([netload, "udp", "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "--no-offload"
    text = r.stdout + r.stderr
    for flag in ("--no-offload", "--no-gso"):
        if re.search(re.escape(flag) + r"\b", text):
            return flag
    return "--no-offload"


def commands(
    tool: str, row: Row, host: str, port: int, secs: float, netload: str, iperf3: str, no_offload: str = "--no-offload"
) -> tuple[list[str], list[str]]:
    t = "%g" % secs
    if tool == "netload":
        server = [netload, "server", "--port", str(port), "--once"]
        extra = [no_offload if a == "--no-offload" else a for a in row.netload_args]
        client = [netload, row.proto, host, "--port", str(port), "-t", t, *extra, "--json"]
    else:
        server = [iperf3, "-s", "-1", "-p", str(port)]
        client = [iperf3, "-c", host, "-p", str(port), "-t", t, *row.iperf3_args, "-J"]
    return server, client


def search_config(loss: float) -> "NdrConfig":
    """The bounds both tools' searches run with (netload gets them as flags)."""
    return NdrConfig(
        loss_percent=loss,
        budget_s=SEARCH_BUDGET_S,
        trial_wall_s=SEARCH_WARMUP_S + SEARCH_TRIAL_S + SEARCH_TRIAL_OVERHEAD_S,
        confirm_wall_s=SEARCH_WARMUP_S + SEARCH_CONFIRM_S + SEARCH_TRIAL_OVERHEAD_S,
    )


def search_commands(tool: str, row: Row, host: str, port: int, netload: str, iperf3: str,
                    no_offload: str = "--no-offload") -> tuple[list[str], list[str]]:
    """Server and client of a no-drop row. netload's client runs the whole search; iperf3's
    is one trial, completed per trial with `-b RATE -t T` by `iperf3_trial_args`. Servers
    stay up for every trial of a search (no --once / -1)."""
    if tool == "netload":
        extra = [no_offload if a == "--no-offload" else a for a in row.netload_args]
        client = [netload, "udp", host, "--port", str(port), *extra,
                  "--find-rate", "%g" % row.search_loss, "--trial-time", str(SEARCH_TRIAL_S),
                  "-t", str(SEARCH_CONFIRM_S), "--omit", str(SEARCH_WARMUP_S),
                  "--search-budget", "%g" % SEARCH_BUDGET_S, "--json"]
        return [netload, "server", "--port", str(port)], client
    client = [iperf3, "-c", host, "-p", str(port), *row.iperf3_args, "-O", str(SEARCH_WARMUP_S), "-J"]
    return [iperf3, "-s", "-p", str(port)], client


def iperf3_trial_args(offered_bps: float, purpose: str) -> list[str]:
    """`-b` (0 = unlimited, as iperf3 reads it) and `-t` of one iperf3 search trial."""
    t = SEARCH_CONFIRM_S if purpose == "confirm" else SEARCH_TRIAL_S
    return ["-b", str(int(round(offered_bps))), "-t", str(t)]


def netload_search_result(doc: dict[str, Any], length: int) -> dict[str, Any]:
    """The RunResult fields of a `netload udp --find-rate --json` document: the trial that
    represents the no-drop rate, parsed like any netload UDP report, plus the search."""
    if not isinstance(doc, dict) or doc.get("kind") != "udp-rate-search":
        raise ParseError("not a netload rate search document")
    trials = doc.get("trials") or []
    res = doc.get("result") or {}
    out: dict[str, Any] = {
        "search_status": res.get("status"),
        "search_trials": len(trials),
        "curve": [((t["offered_bps"] or t["sent_bps"]) / 1e9, t["loss_percent"], t["pass"], t["purpose"])
                  for t in trials],
        "warnings": [str(w) for w in doc.get("warnings") or []],
    }
    i = res.get("trial")
    if i is None or not 0 <= i < len(trials):
        raise ParseError("no rate passed (%s)" % res.get("status"))
    at = trials[i]
    out.update(parse_netload(at["report"], "udp"))
    out["offered_gbps"] = num_field(res, "rate_bps") / 1e9
    out["mpps"] = num_field(at, "received_bps") / (8 * length) / 1e6
    return out


def search_iperf3(run_trial: Callable[[float, str], tuple[Optional[dict[str, Any]], Optional[str]]],
                  cfg: "NdrConfig", length: int, clock: Callable[[], float] = time.monotonic,
                  pause: Callable[[], None] = lambda: time.sleep(SEARCH_PAUSE_S)) -> dict[str, Any]:
    """Searches iperf3's no-drop rate with benchlib.RateSearch; `run_trial(offered, purpose)`
    runs one `iperf3 -J` client and returns its document (or an error). The RunResult fields
    of the trial that represents the rate, as netload_search_result gives them."""
    search = RateSearch(cfg)
    t0 = clock()
    parsed: list[dict[str, Any]] = []
    curve: list[tuple[float, float, bool, str]] = []
    while True:
        step = search.next(clock() - t0)
        if step[0] == "done":
            conclusion = step[1]
            break
        _, offered, purpose = step
        if parsed:
            pause()
        doc, err = run_trial(offered, purpose)
        if err:
            raise ParseError("trial %d (%s at %s bit/s): %s" % (len(parsed), purpose, int(offered), err))
        p = parse_iperf3(doc, "udp")
        end = doc["end"]
        sent = (end.get("sum_sent") or end.get("sum") or {}).get("bits_per_second", 0.0)
        obs = NdrObservation(offered, float(sent), p["gbps"] * 1e9, p["loss_percent"])
        search.record(purpose, obs)
        parsed.append(p)
        curve.append(((offered or obs.sent_bps) / 1e9, obs.loss_percent, search.passes(obs), purpose))
    out: dict[str, Any] = {"search_status": conclusion["status"], "search_trials": len(parsed), "curve": curve}
    i = conclusion["trial"]
    if i is None:
        raise ParseError("no rate passed (%s)" % conclusion["status"])
    out.update(parsed[i])
    out["offered_gbps"] = conclusion["rate_bps"] / 1e9
    out["mpps"] = parsed[i]["gbps"] * 1e9 / (8 * length) / 1e6
    return out


def run_search_once(procs: Procs, path: Path_, row: Row, run: int, order: int, tool: str, port: int,
                    netload: str, iperf3: str, no_offload: str = "--no-offload") -> RunResult:
    """One no-drop search of one tool with a server that lives through all its trials. The
    harness's own CPU and /proc/stat figures would cover the whole search, not the rate
    found, so they are left out: CPU/Gbit is each tool's figure for that trial."""
    server_argv, client_argv = search_commands(tool, row, path.server_host, port, netload, iperf3, no_offload)
    server_argv = path.wrap(server_argv, "server")
    client_argv = path.wrap(client_argv, "client")
    length = int(row.netload_args[row.netload_args.index("-l") + 1])
    res = RunResult(path.name, row.num, run, tool, order, shlex.join(client_argv), shlex.join(server_argv))
    with tempfile.TemporaryFile() as srv_out:
        server, res.error = start_server(procs, server_argv, port, srv_out, SERVER_READY_TIMEOUT_S)
        if server is None:
            return res
        t0 = time.monotonic()
        try:
            if res.error:
                return res
            if tool == "netload":
                client = run_client(procs, client_argv, SEARCH_BUDGET_S + CLIENT_SLACK_S)
                if client.error and not (isinstance(client.doc, dict) and client.doc.get("kind")):
                    res.error = client.error
                    return res
                parsed = netload_search_result(client.doc, length)
            else:
                def trial(offered: float, purpose: str) -> tuple[Optional[dict[str, Any]], Optional[str]]:
                    c = run_client(procs, client_argv + iperf3_trial_args(offered, purpose),
                                   SEARCH_CONFIRM_S + SEARCH_WARMUP_S + CLIENT_SLACK_S)
                    return c.doc, c.error
                parsed = search_iperf3(trial, search_config(row.search_loss), length)
            for k, v in parsed.items():
                setattr(res, k, v)
            res.ok = True
            return res
        except ParseError as e:
            res.error = str(e)
            return res
        finally:
            res.wall_s = round(time.monotonic() - t0, 2)
            procs.kill(server)


def run_once(*args: Any, **kw: Any) -> RunResult:
    """One client run with a fresh server; adds the harness's own CPU measurement."""
    c0 = children_cpu_s()
    res = _run_once(*args, **kw)
    # Every child of the run (client, server) has been reaped by now, so its CPU is counted.
    res.harness_cpu_s = round(children_cpu_s() - c0, 4)
    if res.ok and res.gbit:
        res.harness_cpu_s_per_gbit = res.harness_cpu_s / res.gbit
    return res


def _run_once(
    procs: Procs,
    path: Path_,
    row: Row,
    run: int,
    order: int,
    tool: str,
    secs: float,
    port: int,
    netload: str,
    iperf3: str,
    no_offload: str = "--no-offload",
) -> RunResult:
    server_argv, client_argv = commands(tool, row, path.server_host, port, secs, netload, iperf3, no_offload)
    server_argv = path.wrap(server_argv, "server")
    client_argv = path.wrap(client_argv, "client")
    res = RunResult(path.name, row.num, run, tool, order, shlex.join(client_argv), shlex.join(server_argv))
    with tempfile.TemporaryFile() as srv_out:
        server, res.error = start_server(procs, server_argv, port, srv_out, SERVER_READY_TIMEOUT_S)
        if server is None:
            return res
        try:
            if res.error:
                return res
            before = read_proc_stat()
            client = run_client(procs, client_argv, secs + CLIENT_SLACK_S)
            res.wall_s = client.wall_s
            if client.wall_s is not None:
                res.node = stat_delta(before, read_proc_stat())
            if client.error:
                res.error = client.error
                return res
            doc = client.doc
            try:
                parsed = (parse_netload if tool == "netload" else parse_iperf3)(doc, row.proto)
            except ParseError as e:
                res.error = "unexpected JSON: %s" % e
                return res
            for k, v in parsed.items():
                setattr(res, k, v)
            res.ok = True
            return res
        finally:
            if procs.kill(server, grace=SERVER_EXIT_GRACE_S):
                if server.returncode != 0 and res.ok:
                    srv_out.seek(0)
                    res.server_note = "server exited %d: %s" % (
                        server.returncode, _tail(srv_out.read().decode(errors="replace"), 160))
            elif res.ok:
                res.server_note = "server still running %gs after the test: killed" % SERVER_EXIT_GRACE_S


# --------------------------------------------------------------------------------------
# Statistics and table
# --------------------------------------------------------------------------------------


def _vals(rs: list[RunResult], attr: str) -> list[float]:
    return [getattr(r, attr) for r in rs if r.ok and getattr(r, attr) is not None]


def _med(rs: list[RunResult], attr: str) -> Optional[float]:
    v = _vals(rs, attr)
    return statistics.median(v) if v else None


def _per_gbit(rs: list[RunResult], key: str) -> list[float]:
    return [r.node[key] / r.gbit for r in rs if r.ok and r.gbit and key in r.node]


def verdict(row: Row, ratio: Optional[float], cpu_ratio: Optional[float], n_loss: Optional[float]) -> str:
    if ratio is None:
        return "—"
    if row.target_ratio <= 0:
        return "reported"
    ok = ratio >= row.target_ratio
    why = []
    if not ok:
        why.append("ratio")
    if row.max_cpu_ratio is not None and (cpu_ratio is None or cpu_ratio > row.max_cpu_ratio):
        ok = False
        why.append("CPU")
    if row.max_loss_percent is not None and (n_loss is None or n_loss > row.max_loss_percent):
        ok = False
        why.append("loss")
    return "met" if ok else "missed (%s)" % ", ".join(why)


def render_table(results: list[RunResult], rows: list[Row], paths: list[str], runs: int) -> str:
    lines = [
        "| # | row | path | netload Gbit/s median (min–max, IQR) | iperf3 Gbit/s median (min–max, IQR) "
        "| ratio n/i | CPU s/Gbit netload | CPU s/Gbit iperf3 | CPU ratio n/i "
        "| CPU s/Gbit n / i (harness) | node softirq s/Gbit n / i (harness) | netload own softirq s/Gbit "
        "| notes | target | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in paths:
        for row in rows:
            by = {t: [r for r in results if r.path == p and r.row == row.num and r.tool == t] for t in TOOLS}
            if not any(by.values()):
                continue
            g = {t: summary(_vals(by[t], "gbps")) for t in TOOLS}
            ratio = g["netload"]["median"] / g["iperf3"]["median"] if g["netload"] and g["iperf3"] and g["iperf3"]["median"] > 0 else None
            cpu = {t: _med(by[t], "cpu_s_per_gbit") for t in TOOLS}
            cpu_ratio = cpu["netload"] / cpu["iperf3"] if cpu["netload"] is not None and cpu["iperf3"] else None
            hcpu = {t: _med(by[t], "harness_cpu_s_per_gbit") for t in TOOLS}
            sirq = {t: (statistics.median(v) if (v := _per_gbit(by[t], "softirq")) else None) for t in TOOLS}
            own = [r.tool_softirq_s / r.gbit for r in by["netload"] if r.ok and r.tool_softirq_s is not None and r.gbit]
            notes = []
            loss = {t: _med(by[t], "loss_percent") for t in TOOLS}
            if row.proto == "udp":
                notes.append("loss n %s%% / i %s%%" % (fmt(loss["netload"], 3), fmt(loss["iperf3"], 3)))
            if row.num == 5:
                nm = sorted({r.mss for r in by["netload"] if r.ok and r.mss is not None})
                im = sorted({r.mss for r in by["iperf3"] if r.ok and r.mss is not None})
                notes.append("netload effective MSS %s; iperf3 tcp_mss (requested) %s" % (
                    "/".join(map(str, nm)) or "—", "/".join(map(str, im)) or "—"))
            for t in TOOLS:
                errs = [r.error for r in by[t] if not r.ok]
                if errs:
                    notes.append("%s failed %d/%d: %s" % (t, len(errs), len(by[t]), _short(errs[0]).replace("|", "\\|")))
            lines.append(
                "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s | %s |"
                % (
                    row.num,
                    row.name,
                    p,
                    fmt_spread(g["netload"], len(by["netload"])),
                    fmt_spread(g["iperf3"], len(by["iperf3"])),
                    fmt(ratio) + ("×" if ratio is not None else ""),
                    fmt(cpu["netload"], 3),
                    fmt(cpu["iperf3"], 3),
                    fmt(cpu_ratio) + ("×" if cpu_ratio is not None else ""),
                    fmt(hcpu["netload"], 3),
                    fmt(hcpu["iperf3"], 3),
                    fmt(sirq["netload"], 3),
                    fmt(sirq["iperf3"], 3),
                    fmt(statistics.median(own), 3) if own else "—",
                    "; ".join(notes) or "",
                    row.target,
                    verdict(row, ratio, cpu_ratio, loss["netload"]),
                )
            )
    return "\n".join(lines)


def render_search_table(results: list[RunResult], rows: list[Row], paths: list[str]) -> str:
    """The no-drop rows: what each tool's search found, per path (medians over runs, with
    min–max), packets per second there, CPU per Gbit there, and the spread of the search."""
    lines = [
        "| # | row | path | netload goodput Gbit/s | iperf3 goodput Gbit/s | ratio n/i "
        "| netload Mpps | iperf3 Mpps | pps ratio n/i | netload offered Gbit/s | iperf3 offered Gbit/s "
        "| loss % at the rate n / i | CPU s/Gbit n / i | trials n / i | status n / i | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in paths:
        for row in rows:
            if row.search_loss is None:
                continue
            by = {t: [r for r in results if r.path == p and r.row == row.num and r.tool == t] for t in TOOLS}
            if not any(by.values()):
                continue
            g = {t: summary(_vals(by[t], "gbps")) for t in TOOLS}
            pps = {t: summary(_vals(by[t], "mpps")) for t in TOOLS}

            def ratio(d: dict[str, Any]) -> Optional[float]:
                return d["netload"]["median"] / d["iperf3"]["median"] if d["netload"] and d["iperf3"] and d["iperf3"]["median"] > 0 else None

            r_g, r_p = ratio(g), ratio(pps)
            loss = {t: _med(by[t], "loss_percent") for t in TOOLS}
            cpu = {t: _med(by[t], "cpu_s_per_gbit") for t in TOOLS}
            trials = {t: _med(by[t], "search_trials") for t in TOOLS}
            status = {t: "/".join(sorted({r.search_status for r in by[t] if r.search_status})) or "—" for t in TOOLS}
            for t in TOOLS:
                errs = [r.error for r in by[t] if not r.ok]
                if errs:
                    status[t] += " (%s failed %d/%d: %s)" % (t, len(errs), len(by[t]), _short(errs[0], 80))
            lines.append("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s / %s | %s |" % (
                row.num, row.name, p,
                fmt_spread(g["netload"], len(by["netload"]), iqr=False),
                fmt_spread(g["iperf3"], len(by["iperf3"]), iqr=False),
                fmt(r_g) + ("×" if r_g is not None else ""),
                fmt_spread(pps["netload"], len(by["netload"]), 3, iqr=False),
                fmt_spread(pps["iperf3"], len(by["iperf3"]), 3, iqr=False),
                fmt(r_p) + ("×" if r_p is not None else ""),
                fmt(_med(by["netload"], "offered_gbps")), fmt(_med(by["iperf3"], "offered_gbps")),
                fmt(loss["netload"], 3), fmt(loss["iperf3"], 3),
                fmt(cpu["netload"], 3), fmt(cpu["iperf3"], 3),
                fmt(trials["netload"], 0), fmt(trials["iperf3"], 0),
                status["netload"], status["iperf3"],
                verdict(row, r_g, None, loss["netload"]),
            ))
    return "\n".join(lines)


def render_curves(results: list[RunResult]) -> str:
    """Every search's loss curve, one line per search: offered Gbit/s → loss %."""
    out = []
    for r in results:
        if not r.curve:
            continue
        pts = ", ".join("%.3g→%.3g%%%s" % (x, y, "" if ok else "✗") for x, y, ok, _ in sorted(r.curve))
        out.append("- %s row %d run %d %s (%s): %s" % (r.path, r.row, r.run, r.tool, r.search_status, pts))
        out.extend("  - %s warned: %s" % (r.tool, w) for w in r.warnings)
    return "\n".join(out) or "(no searches)"


def render_raw(results: list[RunResult]) -> str:
    lines = [
        "| path | row | run | tool | order | Gbit/s | CPU s (client+server) | CPU s/Gbit | harness CPU s | loss % | MSS "
        "| node busy s | node softirq s | wall s | error / server note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            "| %s | %d | %d | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |"
            % (
                r.path, r.row, r.run, r.tool, r.order,
                fmt(r.gbps), fmt(r.cpu_s, 3), fmt(r.cpu_s_per_gbit, 3), fmt(r.harness_cpu_s, 3), fmt(r.loss_percent, 3),
                r.mss if r.mss is not None else "—",
                fmt(r.node.get("busy"), 2), fmt(r.node.get("softirq"), 2), fmt(r.wall_s, 2),
                (r.error or r.server_note or "").replace("|", "\\|"),
            )
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Setup description
# --------------------------------------------------------------------------------------


def render_setup(args: argparse.Namespace, netload: str, iperf3: str, started: str, results: list[RunResult],
                 idle: tuple[float, str], no_offload: str) -> str:
    lines = host_lines(started, idle) + [
        "- netload: `%s` — %s" % (netload, tool_version([netload, "--version"])),
        "- iperf3: `%s` — %s" % (iperf3, tool_version([iperf3, "--version"])),
        "- runs per tool and row: %d; duration per run: %gs; order alternates per run (even run: netload first)"
        % (args.runs, args.time),
        "- veth path: namespaces `nlbench-<pid>-c` (%s/%d) and `nlbench-<pid>-s` (%s/%d), veth MTU 1500, default offloads"
        % (VETH_CLIENT_ADDR, VETH_PREFIXLEN, VETH_SERVER_ADDR, VETH_PREFIXLEN),
        "- row 7 netload flag for batching without GSO/GRO: `%s`" % no_offload,
        "- servers: `netload server --port P --once` / `iperf3 -s -1 -p P`, fresh per run (in the server namespace on veth), ports %d–%d"
        % (PORT_MIN, PORT_MAX),
        "",
        "Exact commands, server then client (first run of each row and path; only the port changes between runs):",
        "",
    ]
    seen = set()
    for r in results:
        key = (r.path, r.row, r.tool)
        if key in seen:
            continue
        seen.add(key)
        lines.append("- %s row %d %s: `%s` ; `%s`" % (r.path, r.row, r.tool, r.server_command, r.command))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="netload vs iperf3, alternately, on loopback and on a veth pair between namespaces.",
    )
    ap.add_argument("--runs", type=int, default=5, help="runs per tool and row (default 5)")
    ap.add_argument("--time", type=float, default=5.0, help="seconds per run (default 5)")
    ap.add_argument("--netload", default=str(REPO_ROOT / "target" / "release" / "netload"),
                    help="netload binary (default: target/release/netload in the repo)")
    ap.add_argument("--iperf3", default=None, help="iperf3 binary (default: iperf3 on PATH, installed if root)")
    ap.add_argument("--paths", default="loopback,veth", help="comma list of loopback,veth (default both)")
    ap.add_argument("--rows", default=",".join(str(r.num) for r in ROWS), help="comma list of row numbers (default all)")
    ap.add_argument("--out", default=None,
                    help="also write the Markdown report to FILE (a bare name goes under benches/runs/); "
                         "raw per-run data goes next to it as FILE with .json")
    ap.add_argument("--self-test", action="store_true",
                    help="1 run of 1 s per row and path to check the plumbing; exit 1 if iperf3 failed anywhere "
                         "or a namespace was left behind")
    args = ap.parse_args(argv)
    if args.self_test:
        args.runs, args.time = 1, 1.0
    if args.runs < 1:
        ap.error("--runs must be ≥ 1")
    if not 0.1 <= args.time <= 3600:
        ap.error("--time must be between 0.1 and 3600 seconds")
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    for p in args.paths:
        if p not in ("loopback", "veth"):
            ap.error("--paths: unknown path %r (allowed: loopback, veth)" % p)
    args.rows = select_rows(ap, args.rows, ROWS)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)

    if "veth" in args.paths and os.geteuid() != 0:
        if args.self_test or args.paths == ["loopback", "veth"]:
            log("not root: skipping the veth path (needs CAP_NET_ADMIN)")
            args.paths = [p for p in args.paths if p != "veth"]
        else:
            sys.exit("error: the veth path needs root (CAP_NET_ADMIN)")
    iperf3 = ensure_iperf3(args.iperf3, log)
    netload = args.netload
    if not os.access(netload, os.X_OK):
        log("warning: netload binary %s not found or not executable; its cells will show errors "
            "(build it with: cargo build --release -p netload)" % netload)

    no_offload = detect_no_offload_flag(netload)
    if no_offload != "--no-offload":
        log("netload names the no-GSO/GRO flag %s: row 7 uses it" % no_offload)
    started, idle = start_sample()
    procs = Procs()
    results: list[RunResult] = []
    ports = PortPool(PORT_MIN, PORT_MAX)
    old_handlers = install_interrupt_handlers()
    interrupted = False
    try:
        if os.geteuid() == 0:
            remove_stale_namespaces(log)
        for pname in args.paths:
            ctx = veth_path(log) if pname == "veth" else contextlib.nullcontext(Path_("loopback", "127.0.0.1", None, None))
            with ctx as path:
                for row in args.rows:
                    for run in range(args.runs):
                        order = TOOLS if run % 2 == 0 else TOOLS[::-1]
                        for i, tool in enumerate(order):
                            port = ports.take(path.name == "loopback")
                            if row.search_loss is not None:
                                r = run_search_once(procs, path, row, run, i, tool, port, netload, iperf3, no_offload)
                            else:
                                r = run_once(procs, path, row, run, i, tool, args.time, port, netload, iperf3, no_offload)
                            results.append(r)
                            if r.ok:
                                extra = " loss %.3f%%" % r.loss_percent if r.loss_percent is not None else ""
                                if r.search_status:
                                    extra += ", %.3f Mpps at %.2f Gbit/s offered, %s after %d trials" % (
                                        r.mpps, r.offered_gbps, r.search_status, r.search_trials)
                                log("%s row %d run %d/%d %s: %.2f Gbit/s, CPU %.3f s/Gbit%s" % (
                                    path.name, row.num, run + 1, args.runs, tool, r.gbps,
                                    r.cpu_s_per_gbit or float("nan"), extra))
                            else:
                                log("%s row %d run %d/%d %s: ERROR %s" % (path.name, row.num, run + 1, args.runs, tool, r.error))
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = True
        log("interrupted (%s): cleaning up; partial results follow" % (e.__class__.__name__))
    finally:
        ignore_interrupts()
        procs.kill_all()
        # veth_path's own finally has removed its namespaces; make sure nothing of ours is left.
        if os.geteuid() == 0:
            for name in list_netns():
                m = NS_RE.match(name)
                if m and int(m.group(1)) == os.getpid():
                    delete_netns(name, log)
        restore_handlers(old_handlers)

    title = "# netload vs iperf3 — stream throughput%s" % (" (self-test)" if args.self_test else "")
    doc = "\n\n".join([
        title,
        "Receiver goodput; median of %d run(s) of %gs per tool, tools alternating. "
        "CPU s/Gbit = process CPU seconds of client + server per Gbit received: each tool's own figure, and the "
        "harness's (getrusage of its reaped children, both tools alike). "
        "Node softirq per Gbit from the harness's /proc/stat deltas around each client run (both tools alike). "
        "See benches/README.md." % (args.runs, args.time),
        render_table(results, [r for r in args.rows if r.search_loss is None], args.paths, args.runs),
        "## At the no-drop rate (equal loss)",
        "Both tools searched for the highest offered rate with receiver loss ≤ the row's target, the same "
        "way (probe unlimited, bracket, bisect to 2%%, %d confirmations; netload: `--find-rate`, iperf3: "
        "`-b RATE` per trial from benchlib.RateSearch); trials of %ds (confirmations %ds) after %ds warm-up, "
        "budget %gs. Figures are those of the trial that represents the rate; CPU s/Gbit is each tool's own "
        "process CPU (client + server) in that trial." % (
            NdrConfig().confirmations, SEARCH_TRIAL_S, SEARCH_CONFIRM_S, SEARCH_WARMUP_S, SEARCH_BUDGET_S),
        render_search_table(results, args.rows, args.paths),
        "### Loss curves (offered Gbit/s → loss; ✗ = over the target)",
        render_curves(results),
        "## Every run",
        render_raw(results),
        "## Setup",
        render_setup(args, netload, iperf3, started, results, idle, no_offload),
    ]) + "\n"
    write_report(args.out, doc, {"started_utc": started, "runs": args.runs, "time_s": args.time,
                                 "results": [asdict(r) for r in results]}, log)

    leftover = [n for n in list_netns() if n.startswith(NS_PREFIX)] if os.geteuid() == 0 else []
    if leftover:
        log("ERROR: namespaces left behind: %s" % ", ".join(leftover))
    if interrupted:
        return 130
    if args.self_test:
        bad = [r for r in results if r.tool == "iperf3" and not r.ok]
        expected = len(args.paths) * len(args.rows)
        got = len({(r.path, r.row) for r in results if r.tool == "iperf3" and r.ok})
        n_ok = sum(1 for r in results if r.tool == "netload" and r.ok)
        log("self-test: iperf3 ok on %d/%d rows×paths, netload ok on %d/%d; namespaces left: %d"
            % (got, expected, n_ok, expected, len(leftover)))
        return 1 if bad or got < expected or leftover else 0
    return 1 if leftover else 0


if __name__ == "__main__":
    sys.exit(main())
