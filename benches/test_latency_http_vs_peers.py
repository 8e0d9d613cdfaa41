#!/usr/bin/env python3
"""Unit tests of the pure parts of latency_http_vs_peers.py (benchlib has test_benchlib.py).

Run: python3 -m unittest benches/test_latency_http_vs_peers.py   (no root, no network, < 1 s)
The fixtures are real output of Debian's sockperf 3.7, wrk 4.1.0 and curl 7.88 on this
machine (ANSI colours kept where sockperf prints them), and netload's --json, trimmed.
"""

import contextlib
import copy
import io
import os
import sys
import unittest
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
import latency_http_vs_peers as h  # noqa: E402

SOCKPERF = """sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m
sockperf[CLIENT] send on:sockperf: using recvfrom() to block on socket(s)

[ 0] IP = 127.0.0.1       PORT = 19390 # TCP
sockperf: Warmup stage (sending a few dummy messages)...
sockperf: Starting test...
sockperf: Test end (interrupted by timer)
sockperf: Test ended
sockperf: [Total Run] RunTime=1.000 sec; Warm up time=400 msec; SentMessages=38439; ReceivedMessages=38438
sockperf: ========= Printing statistics for Server No: 0
sockperf: [Valid Duration] RunTime=0.552 sec; SentMessages=18200; ReceivedMessages=18200
sockperf: \x1b[2;35m====> avg-latency=15.137 (std-dev=104.443)\x1b[0m
sockperf: # dropped messages = 0; # duplicated messages = 0; # out-of-order messages = 0
sockperf: Summary: Latency is 15.137 usec
sockperf: \x1b[2;35mTotal 18200 observations\x1b[0m; each percentile contains 182.00 observations
sockperf: ---> <MAX> observation = 3595.872
sockperf: ---> percentile 99.999 = 3595.872
sockperf: ---> percentile 99.990 = 3474.932
sockperf: ---> percentile 99.900 = 1931.805
sockperf: ---> percentile 99.000 =   28.618
sockperf: ---> percentile 90.000 =   10.900
sockperf: ---> percentile 75.000 =   10.399
sockperf: ---> percentile 50.000 =   10.198
sockperf: ---> percentile 25.000 =    9.888
sockperf: ---> <MIN> observation =    9.457
"""

SOCKPERF_REFUSED = """sockperf: \x1b[2;35m== version #3.7-no.git == \x1b[0m
sockperf: ERROR: Can`t connect socket (errno=111 Connection refused)
"""

WRK = """Running 1s test @ http://127.0.0.1:19350/bytes/64
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.53ms    2.37ms  17.82ms   87.04%
    Req/Sec     7.28k     1.70k    9.37k    76.19%
  15232 requests in 1.10s, 2.95MB read
Requests/sec:  13815.52
Transfer/sec:      2.67MB
"""

WRK_ERRORS = """Running 2s test @ http://127.0.0.1:19303/small.bin
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   612.00us  101.50us   2.10ms   90.00%
    Req/Sec    20.00k     1.00k   22.00k    70.00%
  80000 requests in 2.00s, 20.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  40000.00
Transfer/sec:     10.00MB
"""

CURL = "200 10000000 0.000196 0.000412 0.008812\n"

NETLOAD_RR = {
    "schema_version": 1,
    "spec": {"mode": "tcp-rr", "busy_poll": True},
    "transactions": 35000,
    "latency": {"count": 35000, "p50_us": 33.6, "p99_us": 260.6},
    "errors": {"timeout": 2},
}

NETLOAD_HTTP = {
    "schema_version": 1,
    "spec": {"new_connection": True},
    "totals": {
        "requests": 5, "ok": 5, "errors": 0, "requests_per_second": 452.16, "connections": 5,
        "connect": {"p50_us": 137.855}, "ttfb": {"p50_us": 229.375}, "total": {"p50_us": 230.271},
    },
    "errors": {},
}


class SockperfParse(unittest.TestCase):
    def test_percentiles_are_one_way_as_printed(self):
        p = h.parse_sockperf(SOCKPERF)
        self.assertEqual((p["p50"], p["p99"], p["p99_9"]), (10.198, 28.618, 1931.805))
        self.assertEqual((p["min"], p["max"], p["avg"]), (9.457, 3595.872, 15.137))
        self.assertEqual(p["observations"], 18200)

    def test_error_is_named(self):
        with self.assertRaisesRegex(benchlib.ParseError, "Connection refused"):
            h.parse_sockperf(SOCKPERF_REFUSED)
        with self.assertRaisesRegex(benchlib.ParseError, "no percentile"):
            h.parse_sockperf("")


class WrkParse(unittest.TestCase):
    def test_clean_run(self):
        w = h.parse_wrk(WRK)
        self.assertEqual(w["rps"], 13815.52)
        self.assertEqual((w["requests"], w["duration_s"], w["errors"]), (15232, 1.10, 0))
        self.assertAlmostEqual(w["latency_avg_us"], 1530.0)
        self.assertAlmostEqual(w["latency_max_us"], 17820.0)

    def test_socket_errors_and_non_2xx_are_counted(self):
        w = h.parse_wrk(WRK_ERRORS)
        self.assertEqual(w["errors"], 3 + 1 + 5)
        self.assertAlmostEqual(w["latency_avg_us"], 612.0)

    def test_no_summary(self):
        with self.assertRaisesRegex(benchlib.ParseError, "unable to connect"):
            h.parse_wrk("unable to connect to 127.0.0.1:19399 Connection refused\n")


class CurlParse(unittest.TestCase):
    def test_seconds_become_microseconds(self):
        c = h.parse_curl(CURL, 10_000_000)
        self.assertAlmostEqual(c["connect_us"], 196.0)
        self.assertAlmostEqual(c["ttfb_us"], 412.0)
        self.assertAlmostEqual(c["total_us"], 8812.0)

    def test_short_body_and_bad_status(self):
        with self.assertRaisesRegex(benchlib.ParseError, "1000 of 10000000"):
            h.parse_curl("200 1000 0.1 0.2 0.3", 10_000_000)
        with self.assertRaisesRegex(benchlib.ParseError, "HTTP status 404"):
            h.parse_curl("404 20 0.1 0.2 0.3")
        for bad in ("", "000 0 0.000000", "200 x 0.1 0.2 0.3"):
            with self.assertRaises(benchlib.ParseError):
                h.parse_curl(bad)

    def test_lines_drop_the_warm_up_and_check_the_count(self):
        out = "200 10000000 0.9 0.9 0.9\n" + CURL * 3
        got = h.parse_curl_lines(out, 3, 10_000_000)
        self.assertEqual([g["ttfb_us"] for g in got], [412.0] * 3)
        with self.assertRaisesRegex(benchlib.ParseError, "expected 4 curl -w lines"):
            h.parse_curl_lines(CURL * 3, 3)

    def test_format_matches_parser(self):
        # The -w format must print exactly the five fields parse_curl reads, one line each.
        self.assertEqual(h.CURL_FORMAT.count("%{"), 5)
        self.assertTrue(h.CURL_FORMAT.endswith("\\n"))


class NetloadParse(unittest.TestCase):
    def test_rr(self):
        p = h.parse_netload_rr(NETLOAD_RR)
        self.assertEqual((p["p50"], p["p99"], p["errors"], p["busy_poll"]), (33.6, 260.6, 2.0, 1.0))

    def test_rr_without_transactions(self):
        d = copy.deepcopy(NETLOAD_RR)
        d["transactions"] = 0
        with self.assertRaisesRegex(benchlib.ParseError, "no transaction"):
            h.parse_netload_rr(d)

    def test_http(self):
        p = h.parse_netload_http(NETLOAD_HTTP)
        self.assertEqual((p["ttfb_us"], p["connect_us"], p["total_us"], p["rps"]), (229.375, 137.855, 230.271, 452.16))

    def test_http_failures(self):
        d = copy.deepcopy(NETLOAD_HTTP)
        d["totals"]["ok"] = 0
        d["errors"] = {"connect-refused": {"count": 5}}
        with self.assertRaisesRegex(benchlib.ParseError, "connect-refused"):
            h.parse_netload_http(d)
        with self.assertRaisesRegex(benchlib.ParseError, "totals.ttfb"):
            d = copy.deepcopy(NETLOAD_HTTP)
            del d["totals"]["ttfb"]
            h.parse_netload_http(d)


class Verdicts(unittest.TestCase):
    def test_le_ge_within(self):
        le, ge, within = h.Target("le", 1.1, ""), h.Target("ge", 1.0, ""), h.Target("within", 0.10, "")
        self.assertEqual(h.verdict(le, 1.1), "met")
        self.assertEqual(h.verdict(le, 1.11), "missed")
        self.assertEqual(h.verdict(ge, 0.99), "missed")
        self.assertEqual(h.verdict(ge, 1.0), "met")
        self.assertEqual(h.verdict(within, 0.91), "met")
        self.assertEqual(h.verdict(within, 1.09), "met")
        self.assertEqual(h.verdict(within, 1.12), "missed")
        self.assertEqual(h.verdict(within, 0.85), "missed")
        self.assertEqual(h.verdict(le, None), "—")
        with self.assertRaises(ValueError):
            h.verdict(h.Target("eq", 1.0, ""), 1.0)

    def test_rows_carry_the_issue_targets(self):
        by = {r.num: r for r in h.ROWS}
        self.assertEqual((by[1].target.op, by[1].target.bound), ("le", 1.1))
        self.assertEqual((by[4].target.op, by[4].target.bound), ("within", 0.10))
        self.assertEqual((by[6].target.op, by[6].target.bound), ("le", 1.0))
        self.assertEqual((by[7].target.op, by[7].target.bound), ("ge", 1.0))
        self.assertTrue(by[3].busy_poll and not by[1].busy_poll)
        self.assertEqual(by[2].placement, "same")

    def test_ratio_and_table(self):
        row = h.ROWS[0]
        rs = [h.RunResult(1, i, t, "x", 0, "cmd", ok=True, value=v, p99=v * 3)
              for i, (t, v) in enumerate([("a", 100.0), ("a", 120.0), ("a", 110.0), ("b", 100.0), ("b", 90.0)])]
        rs.append(h.RunResult(1, 9, "b", "2×sockperf", 1, "cmd", error="sockperf exit 1: refused"))
        sa, sb, ratio = h.row_ratio(rs, row)
        self.assertEqual((sa["median"], sb["median"]), (110.0, 95.0))
        self.assertAlmostEqual(ratio, 110.0 / 95.0)
        table = h.render_table(rs, [row], 3)
        self.assertIn("1.16×", table)
        self.assertIn("missed", table)
        self.assertIn("95.0 (90.0–100.0) n=2/3", table)
        self.assertIn("2×sockperf failed 1/3: sockperf exit 1: refused", table)

    def test_rps_rows_show_client_cpu_per_request(self):
        row = h.ROWS[6]
        rs = [h.RunResult(7, 0, "a", "netload http", 0, "c", ok=True, value=30000.0, samples=60000, client_cpu_s=0.9),
              h.RunResult(7, 0, "b", "wrk", 1, "c", ok=True, value=25000.0, samples=50000, client_cpu_s=1.0)]
        table = h.render_table(rs, [row], 1)
        self.assertIn("client CPU µs/request: 15.00 / 20.00", table)
        self.assertIn("1.20×", table)
        self.assertIn("met", table)


class Commands(unittest.TestCase):
    def setup(self):
        return h.Setup("nl", {"sockperf": "sp", "curl": "curl", "wrk": "wrk", "nginx": "nginx"}, "0", "1", 2.0, 4,
                       64, 2, 64, {"rr": 19300, "sockperf": 19301, "http": 19302, "nginx": 19303})

    def test_same_placement_for_both_tools(self):
        s = self.setup()
        for row in h.ROWS:
            a, b = h.client_commands(row, "a", s)[0], h.client_commands(row, "b", s)[0]
            self.assertEqual(a[:3], b[:3], row.name)  # taskset -c CPUS
        self.assertEqual(h.client_commands(h.ROWS[1], "a", s)[0][:3], ["taskset", "-c", "0"])

    def test_rr_and_http_commands(self):
        s = self.setup()
        rr = " ".join(h.client_commands(h.ROWS[2], "a", s)[0])
        self.assertIn("--mode tcp-rr --size 14", rr)
        self.assertIn("--busy-poll --json", rr)
        self.assertIn("-m 14", " ".join(h.client_commands(h.ROWS[0], "b", s)[0]))
        ttfb = h.client_commands(h.ROWS[3], "a", s)
        self.assertEqual(len(ttfb), 1)
        self.assertIn("--new-connection", ttfb[0])
        curl = h.client_commands(h.ROWS[3], "b", s)
        self.assertEqual(len(curl), 1)
        self.assertEqual(curl[0].count("http://127.0.0.1:19302/"), 5)  # 4 samples + 1 warm-up
        self.assertIn("Connection: close", curl[0])
        total = h.client_commands(h.ROWS[5], "a", s)
        self.assertTrue(total[0][-1].endswith(":19302/") and h.client_commands(h.ROWS[5], "b", s)[0][-1].endswith("/big.bin"))
        self.assertEqual(h.client_commands(h.ROWS[6], "b", s)[0][3:], ["wrk", "-t2", "-c64", "-d2s", "http://127.0.0.1:19302/bytes/64"])
        self.assertIn("-c 64 --threads 2 -t 2", " ".join(h.client_commands(h.ROWS[7], "a", s)[0]))

    def test_cpu_list(self):
        self.assertEqual(h.cpu_list("0"), [0])
        self.assertEqual(h.cpu_list("0,2-3"), [0, 2, 3])
        for bad in ("", "a", "3-1", "0,,1"):
            with self.assertRaises(ValueError):
                h.cpu_list(bad)

    def test_nginx_conf_is_private(self):
        conf = h.nginx_conf(Path("/tmp/x"), 19303, 1)
        for needle in ("pid /tmp/x/nginx.pid", "error_log /tmp/x/error.log", "client_body_temp_path /tmp/x/tmp/body",
                       "listen 127.0.0.1:19303", "sendfile on", "daemon off", "root /tmp/x/www"):
            self.assertIn(needle, conf)
        self.assertNotIn("/var/", conf)

    def test_args(self):
        a = h.parse_args(["--self-test", "--rows", "1,7"])
        self.assertEqual((a.runs, a.time, a.ttfb_requests, [r.num for r in a.rows]), (1, 1.0, 3, [1, 7]))
        for bad in (["--rows", "9"], ["--runs", "0"], ["--server-cpus", "x"], ["--threads", "8", "--connections", "4"]):
            with self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
                h.parse_args(bad)


if __name__ == "__main__":
    unittest.main()
