"""Shared helpers of the benches/ comparison scripts (stdlib only).

What lives here is what every side-by-side script needs the same way: child processes that
never outlive the harness, signal handling that turns Ctrl-C into an orderly cleanup,
/proc/stat and listening-socket probes, medians with their spread, Markdown cells and
tables, Debian package installation, the setup description and writing the report; and
the parsers of the two stream tools' JSON (`iperf3 -J`, `netload tcp|udp --json`) that
stream_vs_iperf3.py and iperf3_matrix.py both read. Parsing of the other peers' output and
the rows of a comparison stay in each script. Tested by test_benchlib.py.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime as _dt
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RUNS_DIR = BENCH_DIR / "runs"


def log(msg: str) -> None:
    """Progress line on stderr (the report goes to stdout)."""
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# Parsing tools' output
# --------------------------------------------------------------------------------------


class ParseError(Exception):
    """A tool's output lacks what the harness reads from it (the message says what)."""


def num_field(d: Any, *keys: str) -> float:
    """The number at `d[k1][k2]...`; ParseError naming the dotted path otherwise."""
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
        bps = num_field(recv, "bits_per_second")
        seconds = num_field(recv, "seconds")
        gbit = num_field(recv, "bytes") * 8 / 1e9
        mss = doc.get("start", {}).get("tcp_mss") or doc.get("start", {}).get("tcp_mss_default")
        out["mss"] = int(mss) if isinstance(mss, (int, float)) else None
        out["loss_percent"] = None
    else:
        s = end.get("sum")
        loss = num_field(s, "lost_percent")
        seconds = num_field(s, "seconds")
        recv = end.get("sum_received")
        if isinstance(recv, dict) and "bits_per_second" in recv:
            bps = num_field(recv, "bits_per_second")
            gbit = num_field(recv, "bytes") * 8 / 1e9
        else:
            bps = num_field(s, "bits_per_second") * (1 - loss / 100)
            gbit = bps * seconds / 1e9
        out["loss_percent"] = loss
        out["mss"] = None
    cpu = end.get("cpu_utilization_percent")
    host = num_field(cpu, "host_total")
    remote = num_field(cpu, "remote_total")
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
    bps = sum(num_field(f, "receiver_bits_per_second") for f in flows)
    out: dict[str, Any] = {"gbps": bps / 1e9}
    if all(isinstance(f.get("receiver_bytes"), (int, float)) for f in flows):
        out["gbit"] = sum(f["receiver_bytes"] for f in flows) * 8 / 1e9
    else:
        out["gbit"] = bps * num_field(doc, "client", "duration_s") / 1e9

    def side_cpu(side: str) -> float:
        return num_field(doc, side, "cpu", "process_user_s") + num_field(doc, side, "cpu", "process_system_s")

    out["cpu_client_s"] = side_cpu("client")
    out["cpu_server_s"] = side_cpu("server")
    out["cpu_s"] = out["cpu_client_s"] + out["cpu_server_s"]
    out["cpu_s_per_gbit"] = out["cpu_s"] / out["gbit"] if out["gbit"] > 0 else None
    try:
        out["tool_softirq_s"] = num_field(doc, "client", "cpu", "node", "softirq")
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


# --------------------------------------------------------------------------------------
# The no-drop-rate search, for tools that have none of their own
# --------------------------------------------------------------------------------------

# The same constants and steps as netload's crates/netload/src/ndr.rs, so that a tool
# searched here (iperf3 -u -b RATE) and `netload udp --find-rate` end at equal loss by the
# same rule. Keep the two in step; test_benchlib.py runs the same simulated knees.
NDR_FLOOR_BPS = 1e6
NDR_FIRST_GUESS = 0.95
NDR_SENDER_SHORTFALL = 0.97


@dataclass
class NdrConfig:
    """Bounds of one search (netload's `SearchConfig`): loss target in percent, resolution
    as a fraction, confirmation trials, trial cap, budget and expected trial walls in s."""

    loss_percent: float = 0.1
    resolution: float = 0.02
    confirmations: int = 2
    max_trials: int = 24
    budget_s: float = 60.0
    trial_wall_s: float = 1.0
    confirm_wall_s: float = 2.0


@dataclass
class NdrObservation:
    """What one trial measured: offered (0 = unlimited), sent and received bit/s, loss %."""

    offered_bps: float
    sent_bps: float
    received_bps: float
    loss_percent: float


class RateSearch:
    """netload's `RateSearch` state machine: `next(elapsed_s)` returns ("run", offered_bps,
    purpose) or ("done", conclusion dict); `record(purpose, obs)` after each trial.
    Purposes: probe (unlimited), bracket (halving until a pass), bisect (geometric midpoint
    of highest pass and lowest failure), confirm (the highest pass again; one failure
    refutes it)."""

    def __init__(self, cfg: NdrConfig) -> None:
        self.cfg = cfg
        self.trials: list[tuple[str, NdrObservation, bool]] = []
        self.lo: Optional[tuple[float, float]] = None  # (offered asked for, rate certified)
        self.hi: Optional[float] = None
        self.ceiling: Optional[float] = None  # lowest offered rate the sender fell short of
        self.guess = 0.0
        self.confirming: Optional[int] = None
        self.exhausted_floor = False

    def passes(self, obs: NdrObservation) -> bool:
        return obs.loss_percent == obs.loss_percent and obs.loss_percent <= self.cfg.loss_percent

    def next(self, elapsed_s: float) -> tuple:
        step = self._wanted()
        if step[0] != "run":
            return step
        wall = self.cfg.confirm_wall_s if step[2] == "confirm" else self.cfg.trial_wall_s
        if len(self.trials) >= self.cfg.max_trials or elapsed_s + wall > self.cfg.budget_s:
            return ("done", self._conclude("budget-exhausted"))
        return step

    def _wanted(self) -> tuple:
        if not self.trials:
            return ("run", 0.0, "probe")
        if self.exhausted_floor:
            return ("done", self._conclude("no-passing-rate"))
        if self.lo is None:
            return ("run", self.guess, "bracket")
        lo_offered, lo_rate = self.lo
        if self.confirming is not None:
            if self.confirming >= self.cfg.confirmations:
                sender_bound = self.ceiling is not None and (self.hi is None or self.ceiling < self.hi)
                return ("done", self._conclude("sender-limited" if lo_offered == 0.0 or sender_bound else "confirmed"))
            return ("run", lo_offered, "confirm")
        bounds = [b for b in (self.hi, self.ceiling) if b is not None]
        upper = min(bounds) if bounds else None
        if upper is not None and upper / lo_rate - 1.0 > self.cfg.resolution:
            return ("run", (upper * lo_rate) ** 0.5, "bisect")
        self.confirming = 0
        return self._wanted()

    def record(self, purpose: str, obs: NdrObservation) -> None:
        ok = self.passes(obs)
        self.trials.append((purpose, obs, ok))
        short = obs.offered_bps > 0.0 and obs.sent_bps < obs.offered_bps * NDR_SENDER_SHORTFALL
        if short:
            self.ceiling = obs.offered_bps if self.ceiling is None else min(self.ceiling, obs.offered_bps)
        if obs.offered_bps == 0.0:
            certified = obs.sent_bps
        elif short:
            certified = max(obs.sent_bps, NDR_FLOOR_BPS)
        else:
            certified = obs.offered_bps
        failed_at = max(obs.sent_bps, NDR_FLOOR_BPS) if obs.offered_bps == 0.0 or short else obs.offered_bps
        if purpose == "probe":
            if ok:
                self.lo = (0.0, certified)
                self.confirming = 0
            else:
                self.hi = failed_at
                self.guess = min(obs.received_bps, failed_at) * NDR_FIRST_GUESS
                self._check_floor()
        elif purpose in ("bracket", "bisect"):
            if ok:
                if self.lo is None or certified > self.lo[1]:
                    self.lo = (obs.offered_bps, certified)
            else:
                self._fail_at(failed_at)
        elif ok:  # confirm
            self.confirming = (self.confirming or 0) + 1
        else:
            self.confirming = None
            refuted = self.lo[1] if self.lo else failed_at
            self.lo = None
            self._fail_at(refuted)
            limit = refuted / (1.0 + self.cfg.resolution)
            # Only paced trials: an unlimited one certifies no rate below the refuted one.
            cands = [(o.offered_bps, min(o.offered_bps, o.sent_bps)) for p, o, k in self.trials
                     if k and o.offered_bps > 0 and min(o.offered_bps, o.sent_bps) <= limit]
            self.lo = max(cands, key=lambda c: c[1]) if cands else None
            if self.lo is None:
                self.guess = refuted * max(1.0 - 4.0 * self.cfg.resolution, 0.5)
                self._check_floor()

    def _fail_at(self, rate: float) -> None:
        self.hi = rate if self.hi is None else min(self.hi, rate)
        if self.lo is None:
            self.guess = rate / 2.0
            self._check_floor()

    def _check_floor(self) -> None:
        if self.lo is None and self.guess < NDR_FLOOR_BPS:
            self.exhausted_floor = True

    def _conclude(self, status: str) -> dict[str, Any]:
        if self.lo is None:
            if status == "budget-exhausted" and self.trials:
                status = "no-passing-rate"
            return {"status": status, "rate_bps": None, "trial": None, "lowest_failure_bps": self.hi}
        lo_offered, lo_rate = self.lo
        at = sorted((i for i, (_, o, k) in enumerate(self.trials) if k and o.offered_bps == lo_offered),
                    key=lambda i: self.trials[i][1].received_bps)
        return {"status": status, "rate_bps": lo_rate, "trial": at[(len(at) - 1) // 2] if at else None,
                "lowest_failure_bps": self.hi}


# --------------------------------------------------------------------------------------
# Statistics and Markdown cells
# --------------------------------------------------------------------------------------


def summary(values: list[float]) -> Optional[dict[str, float]]:
    """n, median, min, max and interquartile range (inclusive quartiles); None if empty."""
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


def fmt_spread(s: Optional[dict[str, float]], total: int, nd: int = 2, iqr: bool = True) -> str:
    """`median (min–max[, IQR q])`, plus `n=k/N` when fewer than `total` runs succeeded."""
    if s is None:
        return "—"
    inner = "%s–%s" % (fmt(s["min"], nd), fmt(s["max"], nd))
    if iqr:
        inner += ", IQR %s" % fmt(s["iqr"], nd)
    cell = "%s (%s)" % (fmt(s["median"], nd), inner)
    if s["n"] < total:
        cell += " n=%d/%d" % (s["n"], total)
    return cell


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _tail(text: str, n: int = 300) -> str:
    text = " ".join(text.strip().split())
    return text if len(text) <= n else "…" + text[-n:]


def md_cell(text: Any) -> str:
    """A value safe inside a Markdown table cell (pipes escaped, newlines folded)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if len(r) != len(header):
            raise ValueError("row has %d cells, header %d" % (len(r), len(header)))
        lines.append("| " + " | ".join(md_cell(c) for c in r) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# /proc helpers
# --------------------------------------------------------------------------------------

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


class PortPool:
    """Ports from [lo, hi] in turn, skipping any a process in this network namespace listens on
    (other benchmarks may share the machine). `taken` replaces that check (tests)."""

    def __init__(self, lo: int, hi: int, taken: Optional[Callable[[int], bool]] = None) -> None:
        self.lo, self.hi = lo, hi
        self.next = lo
        self.taken = taken or (lambda port: tcp_listening(os.getpid(), port))

    def take(self, check: bool = True) -> int:
        """The next port; `check=False` skips the listener check (a fresh namespace has none)."""
        for _ in range(self.hi - self.lo + 1):
            port = self.next
            self.next = self.lo if self.next >= self.hi else self.next + 1
            if not check or not self.taken(port):
                return port
        raise RuntimeError("no free port in %d-%d" % (self.lo, self.hi))


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


# --------------------------------------------------------------------------------------
# Processes and signals
# --------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


def _raise_interrupted(signum: int, _frame: Any) -> None:
    raise Interrupted("signal %d" % signum)


GUARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def install_interrupt_handlers() -> dict[int, Any]:
    """SIGINT/SIGTERM/SIGHUP raise `Interrupted`; returns the old handlers.

    SIGINT explicitly too: a shell without job control starts background jobs with SIGINT
    ignored, and Python then never installs its KeyboardInterrupt handler.
    """
    return {s: signal.signal(s, _raise_interrupted) for s in GUARDED_SIGNALS}


def ignore_interrupts() -> None:
    """Lets cleanup finish: further signals are ignored until the handlers are restored."""
    for s in GUARDED_SIGNALS:
        signal.signal(s, signal.SIG_IGN)


def restore_handlers(old: dict[int, Any]) -> None:
    for s, h in old.items():
        signal.signal(s, h)


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


def sh(argv: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (shlex.join(argv), r.returncode, r.stderr.strip()))
    return r


def start_server(procs: Procs, argv: list[str], port: int, out: Any,
                 ready_timeout_s: float) -> tuple[Optional[subprocess.Popen[bytes]], Optional[str]]:
    """Starts a server with its output going to the file `out` and waits until it listens on
    TCP `port`. Returns the process (None if it did not start) and why it is not ready, if so.

    For a server that lives as long as one measurement (the caller kills it, and reads `out`);
    `server_guard` is the form for servers that live through a whole script.
    """
    try:
        server = procs.start(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    except OSError as e:
        return None, "server did not start: %s" % e
    why = wait_listening(server, port, ready_timeout_s)
    if why and server.poll() is not None:
        out.seek(0)
        return server, "server exited %s: %s" % (server.returncode, _tail(out.read().decode(errors="replace")))
    return server, ("server " + why) if why else None


class ClientTimeout(RuntimeError):
    """A client did not finish within its time limit (it has been killed)."""


def run_capture(procs: Procs, argv: list[str], timeout: float) -> tuple[int, str, str]:
    """Runs a client to its end: exit status, stdout and stderr. Killed and ClientTimeout
    after `timeout` s; OSError if it does not start."""
    p = procs.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        procs.kill(p)
        p.communicate()  # the group is dead: this only collects and closes the pipes
        raise ClientTimeout("timed out after %gs: %s" % (timeout, shlex.join(argv))) from None
    finally:
        procs.kill(p)
    return p.returncode, out.decode(errors="replace"), err.decode(errors="replace")


@dataclass
class ClientRun:
    """A client process run to its end: its JSON document, or why there is none."""

    doc: Any = None
    error: Optional[str] = None
    wall_s: Optional[float] = None


def run_client(procs: Procs, argv: list[str], timeout_s: float) -> ClientRun:
    """Runs a client that prints one JSON document; a non-zero exit, no JSON, or iperf3's
    in-document `error` becomes `error` (iperf3 -J exits 0 on some server errors)."""
    res = ClientRun()
    t0 = time.monotonic()
    try:
        rc, text, err = run_capture(procs, argv, timeout_s)
    except OSError as e:
        res.error = "client did not start: %s" % e
        return res
    except ClientTimeout:
        res.error = "client timed out after %gs" % timeout_s
        return res
    res.wall_s = round(time.monotonic() - t0, 3)
    with contextlib.suppress(ValueError):
        res.doc = json.loads(text)
    if rc != 0 or res.doc is None:
        msg = res.doc.get("error") if isinstance(res.doc, dict) else None
        msg = msg or _tail(err) or _tail(text) or "no output"
        res.error = "exit %d: %s" % (rc, msg)
    return res


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> Optional[str]:
    """Polls (bounded) until `proc`'s namespace listens on `port`; None, or why not."""
    deadline = time.monotonic() + timeout
    while not tcp_listening(proc.pid, port):
        if proc.poll() is not None:
            return "exited %s before listening on port %d" % (proc.returncode, port)
        if time.monotonic() > deadline:
            return "not listening on port %d after %gs" % (port, timeout)
        time.sleep(0.02)
    return None


@contextlib.contextmanager
def server_guard(procs: Procs, argv: list[str], port: int, timeout: float = 5.0,
                 **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
    """Starts a server, waits until it listens on `port`, and always kills it afterwards."""
    p = procs.start(argv, stdin=subprocess.DEVNULL, **kw)
    try:
        why = wait_listening(p, port, timeout)
        if why:
            raise RuntimeError("%s: %s" % (shlex.join(argv), why))
        yield p
    finally:
        procs.kill(p)


# --------------------------------------------------------------------------------------
# Packages and setup description
# --------------------------------------------------------------------------------------


def ensure_tools(tools: dict[str, str], log: Callable[[str], None] = log) -> dict[str, str]:
    """Path of every executable in `tools` (name -> Debian package), installing missing ones.

    As root, missing packages are installed with apt-get (after an `apt-get update` when the
    first attempt fails); otherwise the script exits with the command to run.
    """
    missing = {name: pkg for name, pkg in tools.items() if not _which(name)}
    if missing:
        pkgs = sorted(set(missing.values()))
        if os.geteuid() != 0:
            sys.exit("error: missing %s; install Debian's package(s): sudo apt-get install -y %s "
                     "(or run this script as root and it installs them)"
                     % (", ".join(sorted(missing)), " ".join(pkgs)))
        log("missing %s: running apt-get install -y %s" % (", ".join(sorted(missing)), " ".join(pkgs)))
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        cmd = ["apt-get", "install", "-y", "--no-install-recommends", *pkgs]
        if subprocess.run(cmd, env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env)
            if subprocess.run(cmd, env=env).returncode != 0:
                sys.exit("error: %s failed; install %s and retry" % (shlex.join(cmd), " ".join(pkgs)))
    out = {}
    for name in tools:
        found = _which(name)
        if not found:
            sys.exit("error: %s still not found after apt-get install %s" % (name, tools[name]))
        out[name] = found
    return out


def _which(name: str) -> Optional[str]:
    # nginx lives in /usr/sbin, which a non-login root shell may not have on PATH.
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def ensure_iperf3(path: Optional[str], log: Callable[[str], None] = log) -> str:
    """`--iperf3 PATH` if it is executable (exits otherwise), else iperf3 from PATH or Debian."""
    if path:
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            sys.exit("error: --iperf3 %s is not an executable file" % path)
        return path
    return ensure_tools({"iperf3": "iperf3"}, log)["iperf3"]


def tool_version(argv: list[str], any_exit: bool = False) -> str:
    """First line of a tool's version output; `any_exit` for tools (wrk) whose -v exits 1."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "unavailable (%s)" % e
    text = (r.stdout or r.stderr).strip().splitlines()
    if r.returncode != 0 and not (any_exit and text):
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


def start_sample(log: Callable[[str], None] = log) -> tuple[str, tuple[float, str]]:
    """UTC start time and `node_busy_sample()`, with a warning when the node is already busy."""
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    idle = node_busy_sample()
    if idle[0] > 10:
        log("warning: the node is already %.0f%% busy (loadavg %s); figures will be disturbed" % idle)
    return started, idle


def select_rows(ap: argparse.ArgumentParser, spec: str, rows: Sequence[Any]) -> list[Any]:
    """The rows (objects with `.num`) named by `--rows 1,3`; `ap.error` (exit 2) otherwise."""
    try:
        nums = {int(x) for x in spec.split(",") if x.strip()}
    except ValueError:
        ap.error("--rows: expected comma-separated numbers 1-%d" % len(rows))
    if not nums or nums - {r.num for r in rows}:
        ap.error("--rows: allowed 1-%d, got %s" % (len(rows), spec))
    return [r for r in rows if r.num in nums]


def host_lines(started: str, idle: tuple[float, str]) -> list[str]:
    """The setup lines every report starts with: date, node load, kernel, CPU, repo, command."""
    uname = os.uname()
    return [
        "- date (UTC): %s" % started,
        "- node busy before start: %.1f%% of all cores over 1 s; loadavg %s (other load disturbs every figure)" % idle,
        "- kernel: %s %s %s" % (uname.sysname, uname.release, uname.version),
        "- CPU: %s; nproc %d" % (cpu_model(), os.cpu_count() or 0),
        "- repo: %s; harness: `%s`" % (git_rev(), shlex.join([sys.executable, *sys.argv])),
    ]


def out_paths(out: str) -> tuple[Path, Path]:
    """The Markdown and JSON paths of `--out FILE`: a bare file name goes under benches/runs/."""
    p = Path(out)
    if p.parent == Path("."):
        p = RUNS_DIR / p
    return p, p.with_suffix(".json")


def write_report(out: Optional[str], doc: str, data: dict[str, Any], log: Callable[[str], None] = log) -> None:
    """Prints the Markdown report; with `out`, also writes it and `data` as JSON next to it
    (paths from `out_paths`)."""
    sys.stdout.write(doc)
    sys.stdout.flush()
    if not out:
        return
    md, js = out_paths(out)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(doc)
    js.write_text(json.dumps(data, indent=1) + "\n")
    log("wrote %s and %s" % (md, js))
