#!/usr/bin/env python3
"""Unit tests of benchlib.py's tables, report writing, port choice and process helpers.

Run: python3 -m unittest benches/test_benchlib.py   (no root; the process tests start
short-lived python3 children and a listener on 127.0.0.1; < 2 s)
The stream parsers are tested in test_stream_vs_iperf3.py with its real-output fixtures.
"""

import contextlib
import io
import os
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402

PY = sys.executable


class Tables(unittest.TestCase):
    def test_markdown_table_escapes_and_checks_width(self):
        t = benchlib.markdown_table(["a", "b"], [[1, "x|y\nz"]])
        self.assertEqual(t.splitlines(), ["| a | b |", "|---|---|", "| 1 | x\\|y z |"])
        with self.assertRaises(ValueError):
            benchlib.markdown_table(["a"], [[1, 2]])

    def test_fmt_spread_without_iqr(self):
        self.assertEqual(benchlib.fmt_spread(benchlib.summary([1.0, 3.0]), 2, 1, iqr=False), "2.0 (1.0–3.0)")


class Report(unittest.TestCase):
    def test_out_paths(self):
        md, js = benchlib.out_paths("r.md")
        self.assertEqual((md, js), (benchlib.RUNS_DIR / "r.md", benchlib.RUNS_DIR / "r.json"))
        self.assertEqual(benchlib.out_paths("/tmp/x/y.md"), (Path("/tmp/x/y.md"), Path("/tmp/x/y.json")))

    def test_write_report_puts_bare_names_under_runs(self):
        with tempfile.TemporaryDirectory() as d:
            old = benchlib.RUNS_DIR
            benchlib.RUNS_DIR = Path(d)
            try:
                with contextlib.redirect_stdout(io.StringIO()) as out:
                    benchlib.write_report("r.md", "# x\n", {"k": 1}, log=lambda _m: None)
            finally:
                benchlib.RUNS_DIR = old
            self.assertEqual(out.getvalue(), "# x\n")
            self.assertEqual((Path(d) / "r.md").read_text(), "# x\n")
            self.assertIn('"k": 1', (Path(d) / "r.json").read_text())


class Ports(unittest.TestCase):
    def test_port_pool_skips_taken_and_wraps(self):
        taken = {19300, 19302}
        pool = benchlib.PortPool(19300, 19303, taken=lambda p: p in taken)
        self.assertEqual([pool.take(), pool.take()], [19301, 19303])
        self.assertEqual(pool.take(), 19301)  # wrapped around, 19300 still taken
        self.assertEqual(pool.take(check=False), 19302)
        with self.assertRaisesRegex(RuntimeError, "no free port in 1-2"):
            benchlib.PortPool(1, 2, taken=lambda p: True).take()


class Processes(unittest.TestCase):
    def setUp(self):
        self.procs = benchlib.Procs()
        self.addCleanup(self.procs.kill_all)

    def test_run_client_reads_json_and_errors(self):
        ok = benchlib.run_client(self.procs, [PY, "-c", "print('{\"a\": 1}')"], 10)
        self.assertEqual((ok.doc, ok.error), ({"a": 1}, None))
        self.assertIsNotNone(ok.wall_s)
        # iperf3 -J puts its error inside the document and may exit non-zero.
        bad = benchlib.run_client(self.procs, [PY, "-c", "print('{\"error\": \"boom\"}'); exit(1)"], 10)
        self.assertEqual(bad.error, "exit 1: boom")
        none = benchlib.run_client(self.procs, [PY, "-c", "import sys; sys.stderr.write('no json')"], 10)
        self.assertEqual(none.error, "exit 0: no json")
        slow = benchlib.run_client(self.procs, [PY, "-c", "import time; time.sleep(30)"], 0.3)
        self.assertEqual(slow.error, "client timed out after 0.3s")
        self.assertEqual(self.procs.live, {})
        gone = benchlib.run_client(self.procs, ["/nonexistent/client"], 1)
        self.assertTrue(gone.error.startswith("client did not start"), gone.error)

    def test_start_server_waits_for_listener_or_says_why(self):
        port = benchlib.PortPool(19590, 19599).take()
        listen = ("import socket, time; s = socket.socket(); s.bind(('127.0.0.1', %d)); s.listen(); "
                  "time.sleep(30)" % port)
        with tempfile.TemporaryFile() as out:
            p, why = benchlib.start_server(self.procs, [PY, "-c", listen], port, out, 5)
            self.assertIsNone(why)
            self.assertTrue(benchlib.tcp_listening(p.pid, port))
            self.assertFalse(self.procs.kill(p))
        with tempfile.TemporaryFile() as out:
            p, why = benchlib.start_server(self.procs, [PY, "-c", "print('bad flag'); exit(3)"], port, out, 5)
            self.assertEqual(why, "server exited 3: bad flag")
        with tempfile.TemporaryFile() as out:
            p, why = benchlib.start_server(self.procs, [PY, "-c", "import time; time.sleep(30)"], port, out, 0.2)
            self.assertEqual(why, "server not listening on port %d after 0.2s" % port)
            self.procs.kill(p)
        with tempfile.TemporaryFile() as out:
            p, why = benchlib.start_server(self.procs, ["/nonexistent/server"], port, out, 1)
            self.assertIsNone(p)
            self.assertTrue(why.startswith("server did not start"), why)



def simulate(cfg, ceiling, loss, paced=None):
    """Runs benchlib.RateSearch against `loss(sent_bps, trial_index)` (percent) from a sender
    that tops out at `ceiling` (at `paced` when pacing); returns the conclusion and the
    (purpose, offered, loss) log."""
    paced = ceiling if paced is None else paced
    s = benchlib.RateSearch(cfg)
    elapsed, log = 0.0, []
    for i in range(1000):
        step = s.next(elapsed)
        if step[0] == "done":
            return step[1], log
        _, offered, purpose = step
        sent = ceiling if offered == 0.0 else min(offered, paced)
        lp = min(max(loss(sent, i), 0.0), 100.0)
        s.record(purpose, benchlib.NdrObservation(offered, sent, sent * (1 - lp / 100), lp))
        log.append((purpose, offered, lp))
        elapsed += cfg.confirm_wall_s if purpose == "confirm" else cfg.trial_wall_s
    raise AssertionError("search did not end")


def knee(k):
    return lambda r, _i: 0.0 if r <= k else (r - k) / r * 100


class RateSearchMirrorsNetload(unittest.TestCase):
    """The cases of crates/netload/src/ndr.rs's tests, so both searches stay the same."""

    def cfg(self, **kw):
        return benchlib.NdrConfig(budget_s=1e9, **kw)

    def test_clean_knee_within_resolution_and_confirmed(self):
        c, log = simulate(self.cfg(), 40e9, knee(10e9))
        self.assertEqual(c["status"], "confirmed")
        self.assertLessEqual(c["rate_bps"], 10e9)
        self.assertGreaterEqual(c["rate_bps"], 10e9 / 1.02)
        self.assertEqual(log[0][0], "probe")
        self.assertEqual(sum(1 for p in log if p[0] == "confirm"), 2)
        self.assertLessEqual(len(log), 12)

    def test_sender_limited(self):
        c, log = simulate(self.cfg(), 5e9, knee(10e9))
        self.assertEqual((c["status"], c["rate_bps"], len(log)), ("sender-limited", 5e9, 3))

    def test_lucky_pass_is_refuted(self):
        lucky = [1]

        def loss(r, i):
            if r > 10e9 and i > 0 and lucky[0]:
                lucky[0] -= 1
                return 0.0
            return 5.0 if r > 10e9 else 0.0

        c, log = simulate(self.cfg(), 40e9, loss)
        self.assertEqual(c["status"], "confirmed")
        self.assertLessEqual(c["rate_bps"], 10e9)
        self.assertTrue(any(p[0] == "confirm" and p[2] > 0 for p in log))

    def test_refuted_sender_limited_rate_is_searched_with_paced_trials(self):
        c, log = simulate(self.cfg(), 20e9, lambda r, i: 0.0 if i == 0 else knee(10e9)(r, i))
        self.assertEqual(log[1][0], "confirm")
        self.assertTrue(all(p[1] > 0 for p in log[2:]), log)
        self.assertEqual(c["status"], "confirmed")
        self.assertLessEqual(c["rate_bps"], 10e9)
        self.assertGreaterEqual(c["rate_bps"], 10e9 / 1.02)

    def test_paced_shortfall_bounds_the_search(self):
        c, log = simulate(self.cfg(), 20e9, knee(10e9), paced=6e9)
        self.assertEqual(c["status"], "sender-limited", log)
        # A sender within 3% of its rate counts as having offered it.
        self.assertLessEqual(c["rate_bps"], 6e9 / benchlib.NDR_SENDER_SHORTFALL)
        self.assertGreaterEqual(c["rate_bps"], 6e9 / 1.02)
        self.assertLessEqual(len(log), 16)

    def test_budget_and_floor(self):
        c, log = simulate(self.cfg(max_trials=4), 40e9, knee(10e9))
        self.assertEqual((len(log), c["status"]), (4, "budget-exhausted"))
        c, log = simulate(benchlib.NdrConfig(budget_s=3.5), 40e9, knee(10e9))
        self.assertEqual((len(log), c["status"]), (3, "budget-exhausted"))
        c, log = simulate(self.cfg(), 40e9, lambda r, i: 50.0)
        self.assertEqual((c["status"], c["rate_bps"]), ("no-passing-rate", None))
        self.assertLessEqual(len(log), 24)

if __name__ == "__main__":
    unittest.main()
