"""Shared helpers of the benches/ comparison scripts (stdlib only).

What lives here is what every side-by-side script needs the same way: child processes that
never outlive the harness, signal handling that turns Ctrl-C into an orderly cleanup,
/proc/stat and listening-socket probes, medians with their spread, Markdown cells and
tables, Debian package installation, the setup description and writing the report.
Tool-specific parsing and the rows of a comparison stay in each script.
"""

from __future__ import annotations

import contextlib
import ctypes
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


def write_report(out: Optional[str], doc: str, data: dict[str, Any], log: Callable[[str], None] = log) -> None:
    """Prints the Markdown report; with `out`, also writes it and `data` as JSON next to it.

    A bare file name goes under benches/runs/.
    """
    sys.stdout.write(doc)
    sys.stdout.flush()
    if not out:
        return
    path = Path(out)
    if path.parent == Path("."):
        path = RUNS_DIR / path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc)
    path.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    log("wrote %s and %s" % (path, path.with_suffix(".json")))
