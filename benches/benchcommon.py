"""Helpers shared by the benchmark harnesses in benches/ (stdlib only).

Parsers of iperf3 -J and netload --json documents, /proc readers, child-process
management that never leaves a server behind, statistics, table cells, setup description,
and iperf3 installation. Tested through test_stream_vs_iperf3.py and test_iperf3_matrix.py.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RUNS_DIR = BENCH_DIR / "runs"


class ParseError(Exception):
    pass


def _num(d: Any, *keys: str) -> float:
    cur = d
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            raise ParseError("missing field " + ".".join(keys))
        cur = cur[k]
    if not isinstance(cur, (int, float)) or isinstance(cur, bool):
        raise ParseError("field %s is not a number: %r" % (".".join(keys), cur))
    return float(cur)


def parse_iperf3(doc: dict[str, Any], proto: str) -> dict[str, Any]:
    """Receiver goodput, CPU and loss from an `iperf3 -c ... -J` document (3.12 layout).

    TCP: ``end.sum_received`` is the server's (receiver's) count.
    UDP: ``end.sum`` is the sender's view carrying the receiver-reported ``lost_percent``;
    3.12 also has ``end.sum_received`` whose bytes are the receiver's, over the sender's
    duration. Goodput = ``sum_received.bits_per_second`` when present, otherwise
    ``sum.bits_per_second * (1 - lost_percent/100)``; both agree within 0.02% in 3.12.
    CPU: ``cpu_utilization_percent.host_total`` (client) and ``remote_total`` (server) are
    percent of one core over the test, so CPU seconds = percent/100 * duration.
    """
    if not isinstance(doc, dict):
        raise ParseError("not a JSON object")
    if doc.get("error"):
        raise ParseError("iperf3: " + str(doc["error"]))
    end = doc.get("end")
    if not isinstance(end, dict) or not end:
        raise ParseError("no end section")
    out: dict[str, Any] = {}
    if proto == "tcp":
        recv = end.get("sum_received")
        bps = _num(recv, "bits_per_second")
        seconds = _num(recv, "seconds")
        gbit = _num(recv, "bytes") * 8 / 1e9
        mss = doc.get("start", {}).get("tcp_mss") or doc.get("start", {}).get("tcp_mss_default")
        out["mss"] = int(mss) if isinstance(mss, (int, float)) else None
        out["loss_percent"] = None
    else:
        s = end.get("sum")
        loss = _num(s, "lost_percent")
        seconds = _num(s, "seconds")
        recv = end.get("sum_received")
        if isinstance(recv, dict) and "bits_per_second" in recv:
            bps = _num(recv, "bits_per_second")
            gbit = _num(recv, "bytes") * 8 / 1e9
        else:
            bps = _num(s, "bits_per_second") * (1 - loss / 100)
            gbit = bps * seconds / 1e9
        out["loss_percent"] = loss
        out["mss"] = None
    cpu = end.get("cpu_utilization_percent")
    host = _num(cpu, "host_total")
    remote = _num(cpu, "remote_total")
    out["gbps"] = bps / 1e9
    out["gbit"] = gbit
    out["cpu_client_s"] = host / 100 * seconds
    out["cpu_server_s"] = remote / 100 * seconds
    out["cpu_s"] = out["cpu_client_s"] + out["cpu_server_s"]
    out["cpu_s_per_gbit"] = out["cpu_s"] / gbit if gbit > 0 else None
    out["tool_softirq_s"] = None
    return out


def parse_netload(doc: dict[str, Any], proto: str) -> dict[str, Any]:
    """Receiver goodput, CPU, loss and MSS from a `netload tcp|udp --json` StreamReport.

    Goodput = sum of ``flows[].receiver_bits_per_second`` (the receiver's count is
    authoritative); CPU = ``client.cpu.process_{user,system}_s`` + ``server.cpu`` likewise;
    node softirq = ``client.cpu.node.softirq`` (node-wide, so it covers both ends when they
    share the host, as they do here).
    """
    if not isinstance(doc, dict):
        raise ParseError("not a JSON object")
    flows = doc.get("flows")
    if not isinstance(flows, list) or not flows:
        raise ParseError("no flows")
    bps = sum(_num(f, "receiver_bits_per_second") for f in flows)
    out: dict[str, Any] = {"gbps": bps / 1e9}
    if all(isinstance(f.get("receiver_bytes"), (int, float)) for f in flows):
        out["gbit"] = sum(f["receiver_bytes"] for f in flows) * 8 / 1e9
    else:
        out["gbit"] = bps * _num(doc, "client", "duration_s") / 1e9

    def side_cpu(side: str) -> float:
        return _num(doc, side, "cpu", "process_user_s") + _num(doc, side, "cpu", "process_system_s")

    out["cpu_client_s"] = side_cpu("client")
    out["cpu_server_s"] = side_cpu("server")
    out["cpu_s"] = out["cpu_client_s"] + out["cpu_server_s"]
    out["cpu_s_per_gbit"] = out["cpu_s"] / out["gbit"] if out["gbit"] > 0 else None
    try:
        out["tool_softirq_s"] = _num(doc, "client", "cpu", "node", "softirq")
    except ParseError:
        out["tool_softirq_s"] = None
    if proto == "udp":
        sent = sum(f.get("packets_sent") or 0 for f in flows)
        lost = sum(f.get("lost") or 0 for f in flows)
        if sent > 0:
            out["loss_percent"] = 100.0 * lost / sent
        else:
            lp = [f.get("loss_percent") for f in flows if f.get("loss_percent") is not None]
            out["loss_percent"] = max(lp) if lp else None
        out["mss"] = None
    else:
        out["loss_percent"] = None
        mss = doc.get("client", {}).get("mss")
        out["mss"] = int(mss) if isinstance(mss, (int, float)) else None
    return out


STAT_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def read_proc_stat() -> dict[str, float]:
    tck = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        parts = f.readline().split()
    assert parts[0] == "cpu"
    vals = [int(x) for x in parts[1 : 1 + len(STAT_FIELDS)]]
    return {k: v / tck for k, v in zip(STAT_FIELDS, vals)}


def stat_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    d = {k: round(b[k] - a[k], 3) for k in STAT_FIELDS}
    d["busy"] = round(sum(d[k] for k in STAT_FIELDS if k not in ("idle", "iowait")), 3)
    return d


def tcp_listening(pid: int, port: int) -> bool:
    """Whether the network namespace of `pid` has a TCP socket listening on `port`.

    Reads /proc/PID/net/tcp{,6}, which show the sockets of PID's network namespace. This is
    used instead of a test connect because iperf3 -s -1 treats any connection as its one
    test and exits when the probe closes (netload --once may do the same).
    """
    for name in ("tcp", "tcp6"):
        try:
            with open("/proc/%d/net/%s" % (pid, name)) as f:
                next(f, None)
                for line in f:
                    cols = line.split()
                    if len(cols) > 3 and cols[3] == "0A":
                        if int(cols[1].rsplit(":", 1)[1], 16) == port:
                            return True
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return False
    return False


class Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted("signal %d" % signum)


_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> Callable[[], None]:
    """preexec_fn: the kernel SIGKILLs the child if the harness dies, even by kill -9."""
    libc = ctypes.CDLL(None, use_errno=True)

    def setup() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the harness died before prctl took effect
            os._exit(1)

    return setup


class Procs:
    """Every child process we start, so cleanup can kill them (by their own group id).

    Children get their own session (Ctrl-C in the terminal reaches only the harness, which
    then cleans up in order) and PR_SET_PDEATHSIG, so no server outlives a killed harness.
    """

    def __init__(self) -> None:
        self.live: dict[int, subprocess.Popen[bytes]] = {}
        self.preexec = _die_with_parent(os.getpid())

    def start(self, argv: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, start_new_session=True, preexec_fn=self.preexec, **kw)
        self.live[p.pid] = p
        return p

    def kill(self, p: subprocess.Popen[bytes], grace: float = 0.0) -> bool:
        """Wait up to `grace` s, then TERM/KILL the group. True if it exited on its own."""
        if p.poll() is None and grace > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=grace)
        own = p.poll() is not None
        if not own:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, sig)
                try:
                    p.wait(timeout=2)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.live.pop(p.pid, None)
        return own

    def kill_all(self) -> None:
        for p in list(self.live.values()):
            self.kill(p)


def _tail(text: str, n: int = 300) -> str:
    text = " ".join(text.strip().split())
    return text if len(text) <= n else "…" + text[-n:]


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def summary(values: list[float]) -> Optional[dict[str, float]]:
    if not values:
        return None
    v = sorted(values)
    s = {"n": len(v), "median": statistics.median(v), "min": v[0], "max": v[-1]}
    if len(v) >= 2:
        q1, _, q3 = statistics.quantiles(v, n=4, method="inclusive")
        s["iqr"] = q3 - q1
    else:
        s["iqr"] = 0.0
    return s


def fmt(x: Optional[float], nd: int = 2) -> str:
    return "—" if x is None else ("%.*f" % (nd, x))


def fmt_spread(s: Optional[dict[str, float]], total: int, nd: int = 2) -> str:
    if s is None:
        return "—"
    cell = "%s (%s–%s, IQR %s)" % (fmt(s["median"], nd), fmt(s["min"], nd), fmt(s["max"], nd), fmt(s["iqr"], nd))
    if s["n"] < total:
        cell += " n=%d/%d" % (s["n"], total)
    return cell


def tool_version(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unavailable (%s)" % e
    text = (r.stdout or r.stderr).strip().splitlines()
    if r.returncode != 0:
        return "unavailable (exit %d: %s)" % (r.returncode, text[0] if text else "")
    return text[0] if text else "unknown"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_rev() -> str:
    r = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if r.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain"], capture_output=True, text=True)
    return r.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def node_busy_sample(secs: float = 1.0) -> tuple[float, str]:
    """Share of all cores busy over `secs` (before the benchmark starts), and /proc/loadavg."""
    a = read_proc_stat()
    time.sleep(secs)
    d = stat_delta(a, read_proc_stat())
    total = d["busy"] + d["idle"] + d["iowait"]
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return (100.0 * d["busy"] / total if total > 0 else 0.0), load


def ensure_iperf3(path: Optional[str], log: Callable[[str], None]) -> str:
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit("error: --iperf3 %s is not an executable file" % path)
        return path
    found = shutil.which("iperf3")
    if found:
        return found
    if os.geteuid() != 0:
        sys.exit("error: iperf3 is not installed; install Debian's package: sudo apt-get install -y iperf3 "
                 "(or run this script as root and it installs it)")
    log("iperf3 missing: running apt-get install -y iperf3")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "iperf3"]
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env)
        if subprocess.run(cmd, env=env).returncode != 0:
            sys.exit("error: apt-get install -y iperf3 failed; install iperf3 and retry")
    found = shutil.which("iperf3")
    if not found:
        sys.exit("error: iperf3 still not on PATH after apt-get install")
    return found


def out_paths(out: str) -> tuple[Path, Path]:
    """The Markdown and JSON paths of `--out FILE`: a bare file name goes under benches/runs/."""
    p = Path(out)
    if p.parent == Path("."):
        p = RUNS_DIR / p
    return p, p.with_suffix(".json")


def start_server(procs: "Procs", argv: list[str], port: int, out: Any,
                 ready_timeout_s: float) -> tuple[Optional["subprocess.Popen[bytes]"], Optional[str]]:
    """Starts a server with its output going to the file `out` and waits until it listens on
    TCP `port`. Returns the process (None if it did not start) and why it is not ready, if so."""
    try:
        server = procs.start(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    except OSError as e:
        return None, "server did not start: %s" % e
    deadline = time.monotonic() + ready_timeout_s
    while not tcp_listening(server.pid, port):
        if server.poll() is not None:
            out.seek(0)
            return server, "server exited %s: %s" % (server.returncode, _tail(out.read().decode(errors="replace")))
        if time.monotonic() > deadline:
            return server, "server not listening on port %d after %gs" % (port, ready_timeout_s)
        time.sleep(0.02)
    return server, None


@dataclass
class ClientRun:
    """A client process run to its end: its JSON document, or why there is none."""

    doc: Any = None
    error: Optional[str] = None
    wall_s: Optional[float] = None


def run_client(procs: "Procs", argv: list[str], timeout_s: float) -> ClientRun:
    """Runs a client that prints one JSON document; a non-zero exit, no JSON, or iperf3's
    in-document `error` becomes `error` (iperf3 -J exits 0 on some server errors)."""
    res = ClientRun()
    t0 = time.monotonic()
    try:
        client = procs.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as e:
        res.error = "client did not start: %s" % e
        return res
    try:
        out, err = client.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        res.error = "client timed out after %gs" % timeout_s
        return res
    finally:
        procs.kill(client)
    res.wall_s = round(time.monotonic() - t0, 3)
    text = out.decode(errors="replace")
    with contextlib.suppress(ValueError):
        res.doc = json.loads(text)
    if client.returncode != 0 or res.doc is None:
        msg = res.doc.get("error") if isinstance(res.doc, dict) else None
        msg = msg or _tail(err.decode(errors="replace")) or _tail(text) or "no output"
        res.error = "exit %d: %s" % (client.returncode, msg)
    return res


class PortPool:
    """Ports from [lo, hi] in turn, skipping any a process in this network namespace listens on
    (other benchmarks may share the machine)."""

    def __init__(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.next = lo

    def take(self, loopback: bool = True) -> int:
        for _ in range(self.hi - self.lo + 1):
            port = self.next
            self.next = self.lo if self.next >= self.hi else self.next + 1
            if not loopback or not tcp_listening(os.getpid(), port):
                return port
        raise RuntimeError("no free port in %d-%d" % (self.lo, self.hi))
