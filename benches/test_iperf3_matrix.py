#!/usr/bin/env python3
"""Unit tests of the pure parts of iperf3_matrix.py (cells, order, commands, parsing, table).

Run: python3 -m unittest benches/test_iperf3_matrix.py   (no root, no network, < 1 s)
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
import iperf3_matrix as m  # noqa: E402
from test_stream_vs_iperf3 import IPERF3_TCP, NETLOAD_TCP  # noqa: E402


def args(**kw):
    base = dict(host="127.0.0.1", port=5201, aux_port=5202, secs=2, netload="nl", iperf3="ip3",
                udp_rate="1G", udp_len=1400)
    base.update(kw)
    return base


class CellsAndOrder(unittest.TestCase):
    def test_matrix_is_two_by_two_per_protocol(self):
        cs = m.cells()
        self.assertEqual(len(cs), 8)
        self.assertEqual(len(set(cs)), 8)
        self.assertEqual({(c.sender, c.receiver) for c in cs if c.proto == "udp"},
                         {(s, r) for s in m.TOOLS for r in m.TOOLS})

    def test_runs_alternate_direction(self):
        cs = m.cells(("tcp",))
        self.assertEqual(m.run_order(cs, 0), cs)
        self.assertEqual(m.run_order(cs, 1), cs[::-1])
        self.assertEqual(m.run_order(cs, 2), cs)


class Commands(unittest.TestCase):
    def cmd(self, proto, sender, receiver):
        return m.commands(m.Cell(proto, sender, receiver), **args())

    def test_iperf3_to_netload_uses_the_iperf3_port(self):
        server, client = self.cmd("tcp", "iperf3", "netload")
        self.assertEqual(server[:2], ["nl", "server"])
        self.assertIn("--iperf3-port", server)
        self.assertEqual(server[server.index("--iperf3-port") + 1], "5201")
        self.assertEqual(server[server.index("-p") + 1], "5202")
        self.assertIn("--once", server)
        self.assertEqual(client[:5], ["ip3", "-c", "127.0.0.1", "-p", "5201"])

    def test_netload_to_iperf3_says_peer_iperf3(self):
        server, client = self.cmd("udp", "netload", "iperf3")
        self.assertEqual(server, ["ip3", "-s", "-1", "-p", "5201"])
        self.assertEqual(client[:2], ["nl", "udp"])
        self.assertEqual(client[client.index("--peer") + 1], "iperf3")
        self.assertEqual(client[client.index("--rate") + 1], "1G")

    def test_same_tool_cells_use_their_own_protocol(self):
        server, client = self.cmd("udp", "iperf3", "iperf3")
        self.assertEqual(server[0], "ip3")
        self.assertIn("-u", client)
        self.assertEqual(client[client.index("-t") + 1], "2")
        server, client = self.cmd("tcp", "netload", "netload")
        self.assertNotIn("--iperf3-port", server)
        self.assertNotIn("--peer", client)


class ParseAndRender(unittest.TestCase):
    def test_parser_follows_the_sender(self):
        r = m.parse_client(IPERF3_TCP, m.Cell("tcp", "iperf3", "netload"))
        self.assertAlmostEqual(r["gbps"], 14.102764826682932, places=6)
        r = m.parse_client(NETLOAD_TCP, m.Cell("tcp", "netload", "iperf3"))
        self.assertGreater(r["gbps"], 0)
        with self.assertRaises(benchlib.ParseError):
            m.parse_client({"error": "boom"}, m.Cell("tcp", "iperf3", "iperf3"))

    def test_table_has_medians_spread_and_errors(self):
        res = [
            m.RunResult("tcp", "iperf3", "netload", i, "c", "s", ok=True, gbps=g, gbit=g, cpu_s_per_gbit=0.1)
            for i, g in enumerate([10.0, 12.0, 11.0])
        ]
        res.append(m.RunResult("tcp", "netload", "iperf3", 0, "c", "s", ok=False, error="exit 1: a|b"))
        table = m.render_matrix(res, ("tcp",), 3)
        self.assertIn("| **iperf3** |", table)
        self.assertIn("11.00 (10.00–12.00", table)
        self.assertIn("failed 1/1: exit 1: a\\|b", table)
        self.assertNotIn("loss", table)
        self.assertIn("loss", m.render_matrix([], ("udp",), 1))


if __name__ == "__main__":
    unittest.main()
