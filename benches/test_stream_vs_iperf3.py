#!/usr/bin/env python3
"""Unit tests of the pure parts of stream_vs_iperf3.py (commands, verdicts, arguments) and of
benchlib's stream parsers and statistics, which it uses.

Run: python3 -m unittest benches/test_stream_vs_iperf3.py   (no root, no network, < 1 s)
The fixtures are trimmed from real iperf3 3.12 -J and netload --json output on this machine.
"""

import contextlib
import copy
import io
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as b  # noqa: E402
import stream_vs_iperf3 as h  # noqa: E402

IPERF3_TCP = {
    "start": {"version": "iperf 3.12", "tcp_mss_default": 32768},
    "end": {
        "sum_sent": {"seconds": 1.00014, "bytes": 1769472000, "bits_per_second": 14153794468.774372, "retransmits": 0, "sender": True},
        "sum_received": {"seconds": 1.00019, "bytes": 1763180544, "bits_per_second": 14102764826.682932, "sender": True},
        "cpu_utilization_percent": {"host_total": 23.514602867117343, "remote_total": 72.28552489899732},
    },
}

IPERF3_UDP = {
    "start": {"version": "iperf 3.12"},
    "end": {
        "sum": {"seconds": 1.000232, "bytes": 128646000, "bits_per_second": 1029075383.2155107, "lost_packets": 55534,
                "packets": 91890, "lost_percent": 60.4353030797693, "sender": True},
        "sum_sent": {"seconds": 1.00009, "bytes": 128646000, "bits_per_second": 1029075383.2155107, "lost_percent": 0, "sender": True},
        "sum_received": {"seconds": 1.000232, "bytes": 50898400, "bits_per_second": 407092754.4809604, "lost_packets": 55534,
                         "packets": 91890, "lost_percent": 60.4353030797693, "sender": False},
        "cpu_utilization_percent": {"host_total": 42.50505676057674, "remote_total": 20.763531555885244},
    },
}

NETLOAD_TCP = {
    "schema_version": 1,
    "flows": [{"direction": "client-to-server", "sender_bytes": 2063597568, "receiver_bytes": 2063597568,
               "sender_bits_per_second": 16504990140.0, "receiver_bits_per_second": 16305378899.256676,
               "retransmits": 29, "packets_sent": None, "lost": None, "loss_percent": None, "jitter_ms": None}],
    "client": {"duration_s": 1.0, "mss": 65483,
               "cpu": {"process_user_s": 0.009956, "process_system_s": 0.586365, "node": {"softirq": 0.23}}},
    "server": {"duration_s": 1.0,
               "cpu": {"process_user_s": 0.008198, "process_system_s": 0.813744, "node": {"softirq": 0.23}}},
    "warnings": [],
}


def netload_udp():
    d = copy.deepcopy(NETLOAD_TCP)
    d["client"]["mss"] = None
    d["flows"] = [
        {"direction": "client-to-server", "sender_bytes": 1400 * 1000, "receiver_bytes": 1400 * 990,
         "receiver_bits_per_second": 11.0e9, "packets_sent": 1000, "lost": 10, "loss_percent": 1.0},
        {"direction": "server-to-client", "sender_bytes": 1400 * 1000, "receiver_bytes": 1400 * 1000,
         "receiver_bits_per_second": 1.0e9, "packets_sent": 1000, "lost": 0, "loss_percent": 0.0},
    ]
    return d


class Iperf3Parse(unittest.TestCase):
    def test_tcp_uses_receiver_sum_and_both_cpus(self):
        p = b.parse_iperf3(IPERF3_TCP, "tcp")
        self.assertAlmostEqual(p["gbps"], 14.102764826682932)
        self.assertAlmostEqual(p["gbit"], 1763180544 * 8 / 1e9)
        self.assertAlmostEqual(p["cpu_s"], (23.514602867117343 + 72.28552489899732) / 100 * 1.00019)
        self.assertAlmostEqual(p["cpu_s_per_gbit"], p["cpu_s"] / p["gbit"])
        self.assertEqual(p["mss"], 32768)
        self.assertIsNone(p["loss_percent"])

    def test_udp_goodput_is_receiver_bytes(self):
        p = b.parse_iperf3(IPERF3_UDP, "udp")
        self.assertAlmostEqual(p["gbps"], 0.4070927544809604)
        self.assertAlmostEqual(p["loss_percent"], 60.4353030797693)

    def test_udp_without_sum_received_falls_back_to_sender_times_loss(self):
        d = copy.deepcopy(IPERF3_UDP)
        del d["end"]["sum_received"]
        p = b.parse_iperf3(d, "udp")
        # Both ways agree on 3.12 output to 0.02% (sum and sum_sent use slightly different durations).
        self.assertAlmostEqual(p["gbps"], 0.4070927544809604, delta=0.4070927544809604 * 2e-4)

    def test_error_document(self):
        with self.assertRaisesRegex(b.ParseError, "unable to connect"):
            b.parse_iperf3({"start": {}, "end": {}, "error": "unable to connect to server: Connection refused"}, "tcp")

    def test_missing_fields(self):
        with self.assertRaisesRegex(b.ParseError, "no end"):
            b.parse_iperf3({"start": {}}, "tcp")
        d = copy.deepcopy(IPERF3_TCP)
        del d["end"]["cpu_utilization_percent"]
        with self.assertRaisesRegex(b.ParseError, "host_total"):
            b.parse_iperf3(d, "tcp")


class NetloadParse(unittest.TestCase):
    def test_tcp(self):
        p = b.parse_netload(NETLOAD_TCP, "tcp")
        self.assertAlmostEqual(p["gbps"], 16.305378899256676)
        self.assertAlmostEqual(p["cpu_s"], 0.009956 + 0.586365 + 0.008198 + 0.813744)
        self.assertAlmostEqual(p["cpu_s_per_gbit"], p["cpu_s"] / (2063597568 * 8 / 1e9))
        self.assertEqual(p["mss"], 65483)
        self.assertEqual(p["tool_softirq_s"], 0.23)
        self.assertIsNone(p["loss_percent"])

    def test_udp_sums_flows_and_weights_loss(self):
        p = b.parse_netload(netload_udp(), "udp")
        self.assertAlmostEqual(p["gbps"], 12.0)
        self.assertAlmostEqual(p["loss_percent"], 0.5)
        self.assertIsNone(p["mss"])

    def test_receiver_bytes_missing_uses_duration(self):
        d = copy.deepcopy(NETLOAD_TCP)
        del d["flows"][0]["receiver_bytes"]
        p = b.parse_netload(d, "tcp")
        self.assertAlmostEqual(p["gbit"], 16.305378899256676)

    def test_bad_documents(self):
        for bad in ([], {}, {"flows": []}, {"flows": [{"receiver_bits_per_second": "x"}]}):
            with self.assertRaises(b.ParseError):
                b.parse_netload(bad, "tcp")
        d = copy.deepcopy(NETLOAD_TCP)
        del d["server"]["cpu"]
        with self.assertRaisesRegex(b.ParseError, "server.cpu"):
            b.parse_netload(d, "tcp")


class Stats(unittest.TestCase):
    def test_summary(self):
        s = b.summary([5.0, 1.0, 3.0, 2.0, 4.0])
        self.assertEqual((s["n"], s["median"], s["min"], s["max"], s["iqr"]), (5, 3.0, 1.0, 5.0, 2.0))
        self.assertEqual(b.summary([7.0])["iqr"], 0.0)
        self.assertIsNone(b.summary([]))

    def test_fmt_spread_marks_missing_runs(self):
        self.assertEqual(b.fmt_spread(b.summary([1.0, 3.0]), 5), "2.00 (1.00–3.00, IQR 1.00) n=2/5")

    def test_verdict(self):
        row1, row6 = h.ROWS[0], h.ROWS[5]
        self.assertEqual(h.verdict(row1, 1.2, 0.9, None), "met")
        self.assertEqual(h.verdict(row1, 1.2, 1.1, None), "missed (CPU)")
        self.assertEqual(h.verdict(row1, 1.0, 0.9, None), "missed (ratio)")
        self.assertEqual(h.verdict(row6, 25.0, None, 0.5), "met")
        self.assertEqual(h.verdict(row6, 25.0, None, 3.0), "missed (loss)")
        self.assertEqual(h.verdict(row6, None, None, None), "—")


class Commands(unittest.TestCase):
    def test_rows_match_the_brief(self):
        got = {}
        for row in h.ROWS:
            for tool in h.TOOLS:
                srv, cli = h.commands(tool, row, "H", 19200, 5, "netload", "iperf3")
                got[(row.num, tool)] = " ".join(cli)
                if tool == "netload":
                    self.assertEqual(srv, ["netload", "server", "--port", "19200", "--once"])
                else:
                    self.assertEqual(srv, ["iperf3", "-s", "-1", "-p", "19200"])
        self.assertEqual(got[(1, "netload")], "netload tcp H --port 19200 -t 5 --json")
        self.assertEqual(got[(1, "iperf3")], "iperf3 -c H -p 19200 -t 5 -J")
        self.assertEqual(got[(2, "iperf3")], "iperf3 -c H -p 19200 -t 5 -P 2 -J")
        self.assertEqual(got[(3, "iperf3")], "iperf3 -c H -p 19200 -t 5 -Z -J")
        self.assertEqual(got[(4, "netload")], "netload tcp H --port 19200 -t 5 --zerocopy sendfile --rx-discard --json")
        self.assertEqual(got[(4, "iperf3")], got[(1, "iperf3")])
        self.assertEqual(got[(5, "iperf3")], "iperf3 -c H -p 19200 -t 5 -M 1448 -J")
        self.assertEqual(got[(6, "netload")], "netload udp H --port 19200 -t 5 -l 1400 --rate 0 --json")
        self.assertEqual(got[(6, "iperf3")], "iperf3 -c H -p 19200 -t 5 -u -l 1400 -b 0 -J")
        self.assertEqual(got[(7, "netload")], "netload udp H --port 19200 -t 5 -l 1400 --rate 0 --no-offload --json")
        self.assertEqual(got[(7, "iperf3")], got[(6, "iperf3")])

    def test_no_offload_flag_substitution(self):
        _, cli = h.commands("netload", h.ROWS[6], "H", 1, 1, "netload", "iperf3", no_offload="--no-gso")
        self.assertIn("--no-gso", cli)
        self.assertNotIn("--no-offload", cli)

    def test_namespace_names(self):
        self.assertTrue(h.NS_RE.match("nlbench-123-c"))
        self.assertTrue(h.NS_RE.match("nlbench-123-s"))
        self.assertFalse(h.NS_RE.match("nlbench-abc-c"))
        self.assertFalse(h.NS_RE.match("other-123-c"))

    def test_args(self):
        a = h.parse_args(["--self-test"])
        self.assertEqual((a.runs, a.time, len(a.rows)), (1, 1.0, 12))
        a = h.parse_args(["--rows", "6,7", "--paths", "loopback"])
        self.assertEqual([r.num for r in a.rows], [6, 7])
        self.assertEqual(a.paths, ["loopback"])
        for bad in (["--rows", "13"], ["--paths", "wifi"], ["--runs", "0"]):
            with self.assertRaises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
                h.parse_args(bad)



def iperf3_udp_trial(offered, sent, loss):
    """An `iperf3 -u -J` document trimmed to what the search reads."""
    got = sent * (1 - loss / 100)
    return {"start": {}, "end": {
        "sum": {"seconds": 1.0, "bits_per_second": sent, "lost_percent": loss},
        "sum_sent": {"seconds": 1.0, "bits_per_second": sent},
        "sum_received": {"seconds": 1.0, "bytes": got / 8, "bits_per_second": got},
        "cpu_utilization_percent": {"host_total": 50.0, "remote_total": 30.0}}}


class NoDropRows(unittest.TestCase):
    def test_search_commands(self):
        row8 = h.ROWS[7]
        srv, cli = h.search_commands("netload", row8, "H", 19201, "netload", "iperf3")
        self.assertEqual(srv, ["netload", "server", "--port", "19201"])
        self.assertEqual(" ".join(cli), "netload udp H --port 19201 -l 1400 --find-rate 1 --trial-time 1 -t 2 "
                                        "--omit 0 --search-budget 90 --json")
        srv, cli = h.search_commands("iperf3", row8, "H", 19201, "netload", "iperf3")
        self.assertEqual(srv, ["iperf3", "-s", "-p", "19201"])
        self.assertEqual(" ".join(cli + h.iperf3_trial_args(2.5e9, "confirm")),
                         "iperf3 -c H -p 19201 -u -l 1400 -O 0 -J -b 2500000000 -t 2")
        self.assertEqual(h.iperf3_trial_args(0.0, "probe"), ["-b", "0", "-t", "1"])
        _, cli = h.search_commands("netload", h.ROWS[9], "H", 1, "netload", "iperf3", no_offload="--no-gso")
        self.assertIn("--no-gso", cli)

    def test_iperf3_search_finds_the_knee_at_the_same_rule(self):
        knee = 1.2e9

        def trial(offered, purpose):
            sent = 3e9 if offered == 0 else offered
            loss = 0.0 if sent <= knee else (sent - knee) / sent * 100
            return iperf3_udp_trial(offered, sent, loss), None

        t = [0.0]

        def clock():
            t[0] += 1.0
            return t[0]

        out = h.search_iperf3(trial, h.search_config(1.0), 1400, clock=clock, pause=lambda: None)
        self.assertEqual(out["search_status"], "confirmed")
        self.assertLessEqual(out["offered_gbps"], knee * 1.01 / 1e9)
        self.assertGreaterEqual(out["offered_gbps"], knee / 1.02 / 1e9)
        self.assertAlmostEqual(out["mpps"], out["gbps"] * 1e9 / 8 / 1400 / 1e6)
        self.assertLessEqual(out["loss_percent"], 1.0)
        self.assertEqual(out["curve"][0][3], "probe")
        with self.assertRaisesRegex(b.ParseError, "trial 0"):
            h.search_iperf3(lambda o, p: (None, "exit 1: boom"), h.search_config(1.0), 1400)

    def test_netload_search_document(self):
        trial = {"offered_bps": 9e9, "sent_bps": 9e9, "received_bps": 8.96e9, "loss_percent": 0.4,
                 "pass": True, "purpose": "confirm", "report": netload_udp()}
        probe = dict(trial, offered_bps=0.0, sent_bps=20e9, loss_percent=40.0, **{"pass": False, "purpose": "probe"})
        doc = {"kind": "udp-rate-search", "trials": [probe, trial],
               "result": {"status": "confirmed", "rate_bps": 9e9, "trial": 1},
               "warnings": ["unsteady sender: its rate varied 22.11-44.34 Gbit/s"]}
        out = h.netload_search_result(doc, 1400)
        self.assertEqual(out["warnings"], ["unsteady sender: its rate varied 22.11-44.34 Gbit/s"])
        r = h.RunResult(path="veth", row=9, run=0, tool="netload", order=0, command="", server_command="",
                        ok=True, search_status="sender-limited", curve=out["curve"], warnings=out["warnings"])
        self.assertIn("  - netload warned: unsteady sender: its rate varied 22.11-44.34 Gbit/s",
                      h.render_curves([r]))
        self.assertEqual((out["search_status"], out["search_trials"], out["offered_gbps"]), ("confirmed", 2, 9.0))
        self.assertAlmostEqual(out["mpps"], 8.96e9 / 8 / 1400 / 1e6)
        self.assertEqual(out["curve"][0][:3], (20.0, 40.0, False))
        self.assertAlmostEqual(out["gbps"], 12.0)  # from the trial's own report
        doc["result"] = {"status": "no-passing-rate", "rate_bps": None, "trial": None}
        with self.assertRaisesRegex(b.ParseError, "no rate passed"):
            h.netload_search_result(doc, 1400)
        with self.assertRaises(b.ParseError):
            h.netload_search_result({"flows": []}, 1400)

if __name__ == "__main__":
    unittest.main()
