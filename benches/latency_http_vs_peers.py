#!/usr/bin/env python3
"""Latency and HTTP side by side on loopback: netload vs sockperf, curl, nginx and wrk.

Rows (see benches/README.md for every definition):
  1-3  tcp-rr round trip: `netload rr` vs Debian's `sockperf ping-pong --tcp` (whose one-way
       figure, half the round trip, is doubled), cross-core, same-core, and netload
       --busy-poll vs sockperf's default.
  4-6  10 MB body: netload's TTFB vs curl's `time_starttransfer` against the netload HTTP
       server and against nginx (a private nginx-light instance), and the total time of
       the netload server vs nginx as curl measures it.
  7-8  small-body requests/s: `netload http` vs `wrk`, same connections and threads, against
       the netload server and against nginx.

Servers (netload rr-server, sockperf server, netload http-server, nginx) start once, pinned
with taskset, and are stopped by guards even on Ctrl-C or an error; nginx runs from a
private temporary directory (config, pid, logs, temp paths, the generated bodies) that is
removed afterwards. Each run visits every row; within a row the tools alternate (even run:
netload first). 127.0.0.1 only, ports 19300-19399.

Stdlib only; shared helpers in benchlib.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (  # noqa: E402
    REPO_ROOT,
    Interrupted,
    ParseError,
    PortPool,
    Procs,
    _short,
    _tail,
    children_cpu_s,
    ensure_tools,
    fmt,
    fmt_spread,
    host_lines,
    ignore_interrupts,
    install_interrupt_handlers,
    log,
    markdown_table,
    num_field,
    restore_handlers,
    run_capture,
    select_rows,
    server_guard,
    start_sample,
    summary,
    tool_version,
    write_report,
)

PORT_MIN, PORT_MAX = 19300, 19399
HOST = "127.0.0.1"
BIG_BODY = 10_000_000  # "10 MB": decimal, the same file size for both servers
CLIENT_SLACK_S = 30.0
# Debian packages of the peer tools (executable -> package).
PEER_TOOLS = {"sockperf": "sockperf", "nginx": "nginx-light", "wrk": "wrk", "curl": "curl"}


# --------------------------------------------------------------------------------------
# Rows and targets
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A bound on ratio = A / B: `le` (A ≤ bound×B), `ge`, or `within` (|ratio − 1| ≤ bound)."""

    op: str
    bound: float
    text: str


@dataclass(frozen=True)
class Row:
    num: int
    name: str
    kind: str  # "rr" | "ttfb" | "total" | "rps"
    a: str  # label of side A (netload's measurement or netload's server)
    b: str  # label of side B (the peer)
    unit: str
    target: Target
    server: str = ""  # "netload" | "nginx" (HTTP rows)
    placement: str = "cross"  # "cross" | "same" (rr rows)
    busy_poll: bool = False


ROWS: tuple[Row, ...] = (
    Row(1, "tcp-rr round trip, cross-core", "rr", "netload rr", "2×sockperf", "µs",
        Target("le", 1.1, "p50 ≤ 1.1× 2×sockperf")),
    Row(2, "tcp-rr round trip, same core", "rr", "netload rr", "2×sockperf", "µs",
        Target("le", 1.1, "p50 ≤ 1.1× 2×sockperf"), placement="same"),
    Row(3, "tcp-rr --busy-poll vs sockperf default, cross-core", "rr", "netload rr --busy-poll", "2×sockperf", "µs",
        Target("le", 0.8, "p50 ≤ 0.8× (clearly better)"), busy_poll=True),
    Row(4, "TTFB 10 MB, netload server", "ttfb", "netload http", "curl", "µs",
        Target("within", 0.10, "agree within ±10%"), server="netload"),
    Row(5, "TTFB 10 MB, nginx", "ttfb", "netload http", "curl", "µs",
        Target("within", 0.10, "agree within ±10%"), server="nginx"),
    Row(6, "10 MB total time (curl): netload server vs nginx", "total", "netload server", "nginx", "µs",
        Target("le", 1.0, "≤ 1.0× nginx")),
    Row(7, "small body req/s, netload server", "rps", "netload http", "wrk", "req/s",
        Target("ge", 1.0, "≥ 1.0× wrk"), server="netload"),
    Row(8, "small body req/s, nginx", "rps", "netload http", "wrk", "req/s",
        Target("ge", 1.0, "≥ 1.0× wrk"), server="nginx"),
)


def verdict(target: Target, ratio: Optional[float]) -> str:
    """`met` / `missed` of a ratio against its target; `—` when the ratio is unknown."""
    if ratio is None:
        return "—"
    if target.op == "le":
        ok = ratio <= target.bound
    elif target.op == "ge":
        ok = ratio >= target.bound
    elif target.op == "within":
        ok = abs(ratio - 1.0) <= target.bound
    else:
        raise ValueError("unknown target op %r" % target.op)
    return "met" if ok else "missed"


# --------------------------------------------------------------------------------------
# Parsers (pure; tested in test_latency_http_vs_peers.py)
# --------------------------------------------------------------------------------------


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def parse_sockperf(text: str) -> dict[str, float]:
    """One-way latency percentiles (µs) of `sockperf ping-pong` output, and the count.

    sockperf prints half the measured round trip ("---> percentile 50.000 = 10.198"), over
    the run minus its warm-up ("[Valid Duration]"). Keys: p50, p99, p99_9, max, min, avg,
    observations (all one-way).
    """
    text = _ANSI.sub("", text)
    out: dict[str, float] = {}
    for m in re.finditer(r"--->\s+percentile\s+([0-9.]+)\s*=\s*([0-9.]+)", text):
        key = {"50.000": "p50", "99.000": "p99", "99.900": "p99_9", "90.000": "p90"}.get(m.group(1))
        if key:
            out[key] = float(m.group(2))
    for key, pattern in (("max", r"<MAX> observation\s*=\s*([0-9.]+)"), ("min", r"<MIN> observation\s*=\s*([0-9.]+)"),
                         ("avg", r"avg-latency=([0-9.]+)"), ("observations", r"Total (\d+) observations")):
        m = re.search(pattern, text)
        if m:
            out[key] = float(m.group(1))
    if "p50" not in out or "p99" not in out:
        err = re.search(r"sockperf: (ERROR[^\n]*)", text)
        raise ParseError(err.group(1) if err else "no percentile lines in sockperf output")
    return out


_WRK_UNITS = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}
_TIME_UNITS = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def parse_wrk(text: str) -> dict[str, float]:
    """Requests/s, request count and failure counts of a `wrk` run.

    Failures: the socket errors line (connect, read, write, timeout) and "Non-2xx or 3xx
    responses"; wrk counts those in Requests/sec, so the harness reports them beside it.
    Latency avg/max (µs) from the "Latency" thread-stats line, when present.
    """
    m = re.search(r"Requests/sec:\s*([0-9.]+)", text)
    if not m:
        first = text.strip().splitlines()[:1]
        raise ParseError("no Requests/sec in wrk output" + (": " + first[0] if first else ""))
    out = {"rps": float(m.group(1))}
    m = re.search(r"(\d+) requests in ([0-9.]+)(ms|s|m)", text)
    if m:
        out["requests"] = float(m.group(1))
        out["duration_s"] = float(m.group(2)) * {"ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    errors = 0.0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(float(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += float(m.group(1))
    out["errors"] = errors
    m = re.search(r"Latency\s+([0-9.]+)(ns|us|ms|s|m)\s+[0-9.]+\w+\s+([0-9.]+)(ns|us|ms|s|m)", text)
    if m:
        out["latency_avg_us"] = float(m.group(1)) * _TIME_UNITS[m.group(2)]
        out["latency_max_us"] = float(m.group(3)) * _TIME_UNITS[m.group(4)]
    return out


CURL_FORMAT = "%{http_code} %{size_download} %{time_connect} %{time_starttransfer} %{time_total}\\n"


def parse_curl(text: str, expect_bytes: Optional[int] = None) -> dict[str, float]:
    """One `curl -w CURL_FORMAT` line: connect, TTFB and total in µs (curl prints seconds).

    curl's times all run from the start of the transfer (name lookup and connect
    included): time_starttransfer is when the first response byte arrived.
    """
    line = text.strip().splitlines()[-1] if text.strip() else ""
    parts = line.split()
    if len(parts) != 5:
        raise ParseError("unexpected curl -w output %r" % _short(line, 80))
    try:
        code, size = int(parts[0]), int(float(parts[1]))
        connect, ttfb, total = (float(x) * 1e6 for x in parts[2:])
    except ValueError:
        raise ParseError("unexpected curl -w output %r" % _short(line, 80)) from None
    if not 200 <= code < 300:
        raise ParseError("HTTP status %d" % code)
    if expect_bytes is not None and size != expect_bytes:
        raise ParseError("%d of %d body bytes" % (size, expect_bytes))
    return {"connect_us": connect, "ttfb_us": ttfb, "total_us": total}


def parse_curl_lines(text: str, n: int, expect_bytes: Optional[int] = None) -> list[dict[str, float]]:
    """The n measured transfers of a `curl_argv` run: every line parsed, the warm-up dropped."""
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != n + 1:
        raise ParseError("expected %d curl -w lines (1 warm-up + %d), got %d" % (n + 1, n, len(lines)))
    return [parse_curl(line, expect_bytes) for line in lines[1:]]


def parse_netload_rr(doc: Any) -> dict[str, float]:
    """Round-trip p50/p99 (µs), transactions and busy-poll flag of `netload rr --json`."""
    if not isinstance(doc, dict):
        raise ParseError("not a JSON object")
    if num_field(doc, "transactions") <= 0:
        raise ParseError("no transaction completed")
    spec = doc.get("spec") or {}
    return {
        "p50": num_field(doc, "latency", "p50_us"),
        "p99": num_field(doc, "latency", "p99_us"),
        "transactions": num_field(doc, "transactions"),
        "errors": float(sum(v for v in (doc.get("errors") or {}).values() if isinstance(v, (int, float)))),
        "busy_poll": 1.0 if spec.get("busy_poll") else 0.0,
    }


def parse_netload_http(doc: Any) -> dict[str, float]:
    """Totals of `netload http --json`: req/s, errors, and connect/TTFB/total p50 (µs)."""
    if not isinstance(doc, dict):
        raise ParseError("not a JSON object")
    if num_field(doc, "totals", "ok") <= 0:
        errs = doc.get("errors") or {}
        raise ParseError("no successful request (%s)" % ", ".join(sorted(errs)) if errs else "no successful request")
    return {
        "rps": num_field(doc, "totals", "requests_per_second"),
        "requests": num_field(doc, "totals", "requests"),
        "errors": num_field(doc, "totals", "errors"),
        "connect_us": num_field(doc, "totals", "connect", "p50_us") if num_field(doc, "totals", "connections") > 0 else 0.0,
        "ttfb_us": num_field(doc, "totals", "ttfb", "p50_us"),
        "total_us": num_field(doc, "totals", "total", "p50_us"),
    }


# --------------------------------------------------------------------------------------
# nginx with a private configuration
# --------------------------------------------------------------------------------------


def nginx_conf(root: Path, port: int, workers: int) -> str:
    """A self-contained nginx.conf: every path inside `root`, sendfile on, keep-alive unbounded."""
    r = str(root)
    return """daemon off;
master_process on;
worker_processes %(workers)d;
pid %(r)s/nginx.pid;
error_log %(r)s/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path %(r)s/tmp/body;
    proxy_temp_path %(r)s/tmp/proxy;
    fastcgi_temp_path %(r)s/tmp/fastcgi;
    uwsgi_temp_path %(r)s/tmp/uwsgi;
    scgi_temp_path %(r)s/tmp/scgi;
    server {
        listen 127.0.0.1:%(port)d reuseport;
        root %(r)s/www;
    }
}
""" % {"r": r, "port": port, "workers": workers}


@contextlib.contextmanager
def nginx_server(procs: Procs, nginx: str, port: int, cpus: str, small: int) -> Iterator[tuple[list[str], str]]:
    """A private nginx on 127.0.0.1:`port` serving /big.bin (BIG_BODY) and /small.bin.

    Yields (argv, temp dir). The directory is world-readable (nginx's workers run as
    nobody when started by root) and removed afterwards, whatever happened.
    """
    root = Path(tempfile.mkdtemp(prefix="nlbench-nginx-"))
    try:
        (root / "www").mkdir()
        (root / "tmp").mkdir()
        with open(root / "www" / "big.bin", "wb") as f:
            chunk = bytes(range(256)) * 4096  # 1 MiB
            left = BIG_BODY
            while left > 0:
                f.write(chunk[: min(left, len(chunk))])
                left -= min(left, len(chunk))
        (root / "www" / "small.bin").write_bytes(b"n" * small)
        for p in (root, root / "www", root / "tmp"):
            p.chmod(0o755)
        for p in (root / "www" / "big.bin", root / "www" / "small.bin"):
            p.chmod(0o644)
        conf = root / "nginx.conf"
        conf.write_text(nginx_conf(root, port, len(cpu_list(cpus))))
        argv = pin(cpus, [nginx, "-p", str(root), "-c", str(conf), "-e", str(root / "error.log")])
        with server_guard(procs, argv, port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
            yield argv, str(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------


def cpu_list(spec: str) -> list[int]:
    """`0`, `0,1`, `0-3` -> cores; a clear ValueError otherwise."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if re.fullmatch(r"\d+", part):
            out.append(int(part))
        elif re.fullmatch(r"\d+-\d+", part):
            a, b = (int(x) for x in part.split("-"))
            if b < a:
                raise ValueError("bad CPU range %r" % part)
            out.extend(range(a, b + 1))
        else:
            raise ValueError("bad CPU list %r (use e.g. 0 or 0,1 or 0-1)" % spec)
    return out


def pin(cpus: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpus, *argv]


@dataclass
class Setup:
    netload: str
    tools: dict[str, str]
    server_cpus: str
    client_cpus: str
    secs: float
    ttfb_requests: int
    connections: int
    threads: int
    small: int
    ports: dict[str, int] = field(default_factory=dict)


def client_commands(row: Row, tool: str, s: Setup) -> list[list[str]]:
    """The client command(s) of one measurement of `tool` ("a" or "b") in `row`.

    TTFB/total rows: both tools open a new connection per request (netload with
    --new-connection, curl through `Connection: close`, see `curl_argv`).
    """
    t = "%g" % s.secs
    if row.kind == "rr":
        cpus = s.client_cpus if row.placement == "cross" else s.server_cpus
        if tool == "a":
            argv = [s.netload, "rr", HOST, "-p", str(s.ports["rr"]), "--mode", "tcp-rr", "--size", "14",
                    "-t", t, "-i", "0", "--json"]
            if row.busy_poll:
                argv.insert(-1, "--busy-poll")
        else:
            # sockperf's default message is 14 bytes; netload gets --size 14 to match.
            argv = [s.tools["sockperf"], "ping-pong", "--tcp", "-i", HOST, "-p", str(s.ports["sockperf"]),
                    "-t", t, "-m", "14"]
        return [pin(cpus, argv)]
    if row.kind in ("ttfb", "total"):
        server = row.server if row.kind == "ttfb" else ("netload" if tool == "a" else "nginx")
        url = big_url(server, s)
        if row.kind == "ttfb" and tool == "a":
            return [pin(s.client_cpus, [s.netload, "http", url, "-c", "1", "--threads", "1", "-n",
                                        str(s.ttfb_requests), "--new-connection", "--json"])]
        return [pin(s.client_cpus, curl_argv(s.tools["curl"], url, s.ttfb_requests))]
    url = small_url(row.server, s)
    if tool == "a":
        return [pin(s.client_cpus, [s.netload, "http", url, "-c", str(s.connections), "--threads", str(s.threads),
                                    "-t", t, "--json"])]
    return [pin(s.client_cpus, [s.tools["wrk"], "-t%d" % s.threads, "-c%d" % s.connections, "-d%ss" % t, url])]


def curl_argv(curl: str, url: str, n: int) -> list[str]:
    """One curl process fetching `url` n + 1 times, each on a new connection.

    `Connection: close` makes the server close after each answer, so curl connects anew for
    the next transfer, as netload's --new-connection does. The first transfer is a warm-up
    (dropped by `parse_curl_lines`): a fresh process pays for lazy symbol binding, first
    page faults and buffer allocation inside its first timings, which netload pays once per
    run, not per request.
    """
    argv = [curl, "-s", "-H", "Connection: close", "-w", CURL_FORMAT]
    for _ in range(n + 1):
        argv += ["-o", "/dev/null", url]
    return argv


def big_url(server: str, s: Setup) -> str:
    if server == "netload":
        return "http://%s:%d/" % (HOST, s.ports["http"])
    return "http://%s:%d/big.bin" % (HOST, s.ports["nginx"])


def small_url(server: str, s: Setup) -> str:
    if server == "netload":
        return "http://%s:%d/bytes/%d" % (HOST, s.ports["http"], s.small)
    return "http://%s:%d/small.bin" % (HOST, s.ports["nginx"])


def server_commands(s: Setup) -> dict[str, list[str]]:
    return {
        "rr": pin(s.server_cpus, [s.netload, "rr-server", "--bind", HOST, "-p", str(s.ports["rr"])]),
        "sockperf": pin(s.server_cpus, [s.tools["sockperf"], "server", "--tcp", "-i", HOST, "-p", str(s.ports["sockperf"])]),
        "http": pin(s.server_cpus, [s.netload, "http-server", "--http", str(s.ports["http"]), "--http-bind", HOST,
                                    "--body-size", str(BIG_BODY), "--http-threads", str(len(cpu_list(s.server_cpus))),
                                    "--replica", "nlbench"]),
    }


# --------------------------------------------------------------------------------------
# Running one measurement
# --------------------------------------------------------------------------------------


@dataclass
class RunResult:
    row: int
    run: int
    tool: str  # "a" | "b"
    label: str
    order: int
    command: str
    ok: bool = False
    error: Optional[str] = None
    value: Optional[float] = None  # the row's figure: p50 µs, TTFB/total µs, req/s
    p99: Optional[float] = None  # rr rows: round-trip p99 µs
    connect_us: Optional[float] = None  # ttfb rows: connect p50 (both tools' own)
    total_us: Optional[float] = None  # ttfb/total rows: total time p50
    errors: Optional[float] = None  # failed requests/transactions the tool reported
    samples: int = 0
    client_cpu_s: Optional[float] = None  # getrusage of the reaped client process(es)
    wall_s: Optional[float] = None
    note: Optional[str] = None


def measure(procs: Procs, row: Row, tool: str, run: int, order: int, s: Setup) -> RunResult:
    cmds = client_commands(row, tool, s)
    res = RunResult(row.num, run, tool, row.a if tool == "a" else row.b, order, shlex.join(cmds[0]))
    c0, t0 = children_cpu_s(), time.monotonic()
    try:
        _measure(procs, row, tool, s, cmds, res)
        res.ok = True
    except (ParseError, RuntimeError, OSError) as e:
        res.error = str(e)
    res.client_cpu_s = round(children_cpu_s() - c0, 4)
    res.wall_s = round(time.monotonic() - t0, 3)
    return res


def _measure(procs: Procs, row: Row, tool: str, s: Setup, cmds: list[list[str]], res: RunResult) -> None:
    timeout = s.secs + CLIENT_SLACK_S
    if row.kind == "total" or (row.kind == "ttfb" and tool == "b"):
        # curl: medians of its own per-transfer times, warm-up dropped.
        rc, out, err = run_capture(procs, cmds[0], timeout + s.ttfb_requests)
        if rc != 0:
            raise RuntimeError("curl exit %d: %s" % (rc, _tail(err) or _tail(out) or "no output"))
        samples = parse_curl_lines(out, s.ttfb_requests, BIG_BODY)
        res.samples = len(samples)
        med = lambda k: summary([x[k] for x in samples])["median"]  # noqa: E731
        res.connect_us, res.total_us = med("connect_us"), med("total_us")
        res.value = med("ttfb_us") if row.kind == "ttfb" else res.total_us
        res.errors = 0.0
        return
    rc, out, err = run_capture(procs, cmds[0], timeout)
    if row.kind == "rr" and tool == "b":
        if rc != 0:
            raise RuntimeError("sockperf exit %d: %s" % (rc, _tail(err + out)))
        p = parse_sockperf(out + err)
        # sockperf prints one-way (RTT/2): doubled so both columns are round trips.
        res.value, res.p99, res.samples = 2 * p["p50"], 2 * p["p99"], int(p.get("observations", 0))
        res.errors = 0.0
        return
    if row.kind == "rps" and tool == "b":
        if rc != 0:
            raise RuntimeError("wrk exit %d: %s" % (rc, _tail(err) or _tail(out)))
        w = parse_wrk(out)
        res.value, res.errors, res.samples = w["rps"], w["errors"], int(w.get("requests", 0))
        if w["errors"]:
            res.note = "wrk counted %d failed requests in its req/s" % w["errors"]
        return
    doc: Any = None
    with contextlib.suppress(ValueError):
        doc = json.loads(out)
    if doc is None:
        raise RuntimeError("netload exit %d: %s" % (rc, _tail(err) or _tail(out) or "no output"))
    if row.kind == "rr":
        p = parse_netload_rr(doc)
        if bool(p["busy_poll"]) != row.busy_poll:
            raise ParseError("report says busy_poll=%s, row asked %s" % (bool(p["busy_poll"]), row.busy_poll))
        res.value, res.p99, res.errors, res.samples = p["p50"], p["p99"], p["errors"], int(p["transactions"])
        return
    h = parse_netload_http(doc)
    res.errors, res.samples = h["errors"], int(h["requests"])
    if row.kind == "ttfb":
        res.value, res.connect_us, res.total_us = h["ttfb_us"], h["connect_us"], h["total_us"]
    else:
        res.value = h["rps"]
    if rc != 0:
        res.note = "netload exit %d: %s" % (rc, _tail(err, 120))


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def row_ratio(results: list[RunResult], row: Row) -> tuple[Optional[dict[str, float]], Optional[dict[str, float]], Optional[float]]:
    """Summaries of A and B over the runs, and the ratio of their medians (A / B)."""
    va = [r.value for r in results if r.row == row.num and r.tool == "a" and r.ok and r.value is not None]
    vb = [r.value for r in results if r.row == row.num and r.tool == "b" and r.ok and r.value is not None]
    sa, sb = summary(va), summary(vb)
    ratio = sa["median"] / sb["median"] if sa and sb and sb["median"] > 0 else None
    return sa, sb, ratio


def _med_attr(rs: list[RunResult], attr: str) -> Optional[float]:
    s = summary([getattr(r, attr) for r in rs if r.ok and getattr(r, attr) is not None])
    return s["median"] if s else None


def render_table(results: list[RunResult], rows: list[Row], runs: int) -> str:
    body = []
    for row in rows:
        mine = [r for r in results if r.row == row.num]
        if not mine:
            continue
        sa, sb, ratio = row_ratio(results, row)
        nd = 0 if row.kind == "rps" else 1
        by = {t: [r for r in mine if r.tool == t] for t in ("a", "b")}
        notes = []
        if row.kind == "rr":
            notes.append("p99 µs: %s / %s" % (fmt(_med_attr(by["a"], "p99"), 1), fmt(_med_attr(by["b"], "p99"), 1)))
        if row.kind == "ttfb":
            notes.append("connect p50 µs: %s / %s; total µs: %s / %s" % (
                fmt(_med_attr(by["a"], "connect_us"), 1), fmt(_med_attr(by["b"], "connect_us"), 1),
                fmt(_med_attr(by["a"], "total_us"), 0), fmt(_med_attr(by["b"], "total_us"), 0)))
        if row.kind == "rps":
            # Client CPU per request: the client's cost, which load on the machine disturbs
            # less than req/s.
            per = {t: summary([r.client_cpu_s / r.samples * 1e6 for r in by[t]
                               if r.ok and r.client_cpu_s is not None and r.samples]) for t in by}
            notes.append("client CPU µs/request: %s / %s" % (
                fmt(per["a"]["median"] if per["a"] else None), fmt(per["b"]["median"] if per["b"] else None)))
        errs = {t: sum(r.errors or 0 for r in by[t] if r.ok) for t in by}
        if any(errs.values()):
            notes.append("failed requests: %d / %d" % (errs["a"], errs["b"]))
        for t in by:
            bad = [r.error for r in by[t] if not r.ok]
            if bad:
                notes.append("%s failed %d/%d: %s" % (row.a if t == "a" else row.b, len(bad), len(by[t]), _short(bad[0])))
        body.append([
            row.num, row.name, row.a, fmt_spread(sa, runs, nd, iqr=False), row.b, fmt_spread(sb, runs, nd, iqr=False),
            row.unit, fmt(ratio) + ("×" if ratio is not None else ""), row.target.text, verdict(row.target, ratio),
            "; ".join(notes),
        ])
    return markdown_table(
        ["#", "row", "A", "A median (min–max)", "B", "B median (min–max)", "unit", "ratio A/B", "target", "verdict",
         "notes (A / B)"], body)


def render_raw(results: list[RunResult]) -> str:
    return markdown_table(
        ["row", "run", "tool", "order", "value", "p99 µs", "connect µs", "total µs", "samples", "errors",
         "client CPU s", "wall s", "error / note"],
        [[r.row, r.run, r.label, r.order, fmt(r.value, 1), fmt(r.p99, 1), fmt(r.connect_us, 1), fmt(r.total_us, 0),
          r.samples, fmt(r.errors, 0), fmt(r.client_cpu_s, 3), fmt(r.wall_s, 2), r.error or r.note or ""]
         for r in results])


def render_setup(args: argparse.Namespace, s: Setup, started: str, idle: tuple[float, str],
                 servers: dict[str, str], results: list[RunResult]) -> str:
    lines = host_lines(started, idle) + [
        "- netload: `%s` — %s" % (s.netload, tool_version([s.netload, "--version"])),
        "- sockperf: %s; nginx: %s; wrk: %s; curl: %s" % (
            tool_version([s.tools["sockperf"], "--version"]), tool_version([s.tools["nginx"], "-v"]),
            _short(tool_version([s.tools["wrk"], "-v"], any_exit=True), 60), _short(tool_version([s.tools["curl"], "--version"]), 40)),
        "- runs: %d; %gs per rr/req-per-s measurement; %d requests per TTFB measurement; each run visits every "
        "row, tools alternate per run (even run: A first)" % (args.runs, s.secs, s.ttfb_requests),
        "- CPU placement (taskset): servers on CPU %s; clients on CPU %s (cross-core rows and HTTP rows); "
        "same-core row: client on CPU %s too. Both tools of a row get the same placement."
        % (s.server_cpus, s.client_cpus, s.server_cpus),
        "- HTTP: %d connections, %d client threads for both netload and wrk; small body %d B; big body %d B; "
        "netload http-server and nginx each with %d worker thread(s)/process(es)"
        % (s.connections, s.threads, s.small, BIG_BODY, len(cpu_list(s.server_cpus))),
        "",
        "Servers (started once, stopped at the end):",
        "",
    ]
    lines += ["- %s: `%s`" % (k, v) for k, v in servers.items()]
    lines += ["", "Client commands (first run of each row and tool):", ""]
    seen = set()
    for r in results:
        if (r.row, r.tool) in seen:
            continue
        seen.add((r.row, r.tool))
        lines.append("- row %d %s: `%s`" % (r.row, r.label, r.command))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="netload vs sockperf / curl / nginx / wrk on loopback, alternately.")
    ap.add_argument("--runs", type=int, default=5, help="runs per tool and row (default 5)")
    ap.add_argument("--time", type=float, default=5.0, help="seconds per rr and req/s measurement (default 5)")
    ap.add_argument("--ttfb-requests", type=int, default=20,
                    help="requests per TTFB measurement, each on a new connection (default 20)")
    ap.add_argument("--connections", type=int, default=64, help="HTTP connections for rows 7-8 (default 64)")
    ap.add_argument("--threads", type=int, default=2, help="client threads for rows 7-8, both tools (default 2)")
    ap.add_argument("--small-body", type=int, default=64, help="small body bytes for rows 7-8 (default 64)")
    ap.add_argument("--server-cpus", default="0", help="taskset CPU list of every server (default 0)")
    ap.add_argument("--client-cpus", default="1", help="taskset CPU list of clients on cross-core rows (default 1)")
    ap.add_argument("--netload", default=str(REPO_ROOT / "target" / "release" / "netload"),
                    help="netload binary (default: target/release/netload in the repo)")
    ap.add_argument("--rows", default=",".join(str(r.num) for r in ROWS), help="comma list of rows (default all)")
    ap.add_argument("--out", default=None,
                    help="also write the Markdown report to FILE (a bare name goes under benches/runs/) and the raw "
                         "data next to it as .json")
    ap.add_argument("--self-test", action="store_true",
                    help="1 run, 1 s, 3 TTFB requests per row: checks the plumbing; exit 1 if any measurement failed")
    args = ap.parse_args(argv)
    if args.self_test:
        args.runs, args.time, args.ttfb_requests = 1, 1.0, 3
    if args.runs < 1:
        ap.error("--runs must be ≥ 1")
    if not 0.5 <= args.time <= 3600:
        ap.error("--time must be between 0.5 and 3600 seconds")
    if not 1 <= args.ttfb_requests <= 10_000:
        ap.error("--ttfb-requests must be between 1 and 10000")
    if not 1 <= args.threads <= args.connections <= 10_000:
        ap.error("need 1 ≤ --threads ≤ --connections ≤ 10000")
    if not 1 <= args.small_body <= 1 << 20:
        ap.error("--small-body must be between 1 and 1048576 bytes")
    for flag in ("server_cpus", "client_cpus"):
        try:
            cores = cpu_list(getattr(args, flag))
        except ValueError as e:
            ap.error("--%s: %s" % (flag.replace("_", "-"), e))
        n = os.cpu_count() or 1
        if any(c >= n for c in cores):
            ap.error("--%s: this machine has CPUs 0-%d" % (flag.replace("_", "-"), n - 1))
    args.rows = select_rows(ap, args.rows, ROWS)
    return args


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if not os.access(args.netload, os.X_OK):
        sys.exit("error: netload binary %s not found or not executable (build it: cargo build --release -p netload)"
                 % args.netload)
    if not shutil.which("taskset"):
        sys.exit("error: taskset (util-linux) is missing")
    tools = ensure_tools(PEER_TOOLS, log)
    started, idle = start_sample()
    ports = PortPool(PORT_MIN, PORT_MAX)
    s = Setup(args.netload, tools, args.server_cpus, args.client_cpus, args.time, args.ttfb_requests,
              args.connections, args.threads, args.small_body,
              {name: ports.take() for name in ("rr", "sockperf", "http", "nginx")})
    kinds = {r.kind for r in args.rows}
    need = {"rr", "sockperf"} if "rr" in kinds else set()
    if {"ttfb", "total", "rps"} & kinds:
        need.add("http")
    need_nginx = any(r.server == "nginx" or r.kind == "total" for r in args.rows)
    procs = Procs()
    results: list[RunResult] = []
    servers: dict[str, str] = {}
    old = install_interrupt_handlers()
    interrupted = failed = False
    try:
        with contextlib.ExitStack() as stack:
            for name, argv_ in server_commands(s).items():
                if name in need:
                    stack.enter_context(server_guard(procs, argv_, s.ports[name], stdout=subprocess.DEVNULL,
                                                     stderr=subprocess.DEVNULL))
                    servers[name] = shlex.join(argv_)
            if need_nginx:
                argv_, root = stack.enter_context(nginx_server(procs, tools["nginx"], s.ports["nginx"],
                                                               s.server_cpus, s.small))
                servers["nginx"] = "%s (config, pid, logs, temp paths and bodies in %s, removed afterwards)" % (
                    shlex.join(argv_), root)
            log("servers up: %s" % ", ".join("%s:%d" % (k, s.ports[k]) for k in servers))
            for run in range(args.runs):
                for row in args.rows:
                    order = ("a", "b") if run % 2 == 0 else ("b", "a")
                    for i, tool in enumerate(order):
                        r = measure(procs, row, tool, run, i, s)
                        results.append(r)
                        log("run %d/%d row %d %s: %s" % (run + 1, args.runs, row.num, r.label,
                                                       "%.1f %s" % (r.value, row.unit) if r.ok else "ERROR " + str(r.error)))
    except (KeyboardInterrupt, Interrupted) as e:
        interrupted = True
        log("interrupted (%s): cleaning up; partial results follow" % e.__class__.__name__)
    except RuntimeError as e:
        # A server that did not come up: report what was measured so far (nothing, usually).
        log("error: %s" % e)
        failed = True
    finally:
        ignore_interrupts()
        procs.kill_all()
        restore_handlers(old)

    title = "# netload vs sockperf, curl, nginx, wrk — latency and HTTP on loopback%s" % (
        " (self-test)" if args.self_test else "")
    doc = "\n\n".join([
        title,
        "Median of %d run(s) per tool and row (min–max over runs), tools alternating. rr rows are round trips "
        "(sockperf's one-way figure doubled); TTFB rows compare two measurements of the same requests' kind, each "
        "on a new connection; ratio = A/B. See benches/README.md." % args.runs,
        render_table(results, args.rows, args.runs),
        "## Every run",
        render_raw(results),
        "## Setup",
        render_setup(args, s, started, idle, servers, results),
    ]) + "\n"
    write_report(args.out, doc, {"started_utc": started, "args": {k: v for k, v in vars(args).items() if k != "rows"},
                                 "rows": [asdict(r) for r in args.rows], "servers": servers,
                                 "results": [asdict(r) for r in results]}, log)
    if interrupted:
        return 130
    if failed:
        return 1
    if args.self_test:
        bad = [r for r in results if not r.ok]
        log("self-test: %d/%d measurements ok" % (len(results) - len(bad), len(results)))
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
