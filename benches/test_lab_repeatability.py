"""Unit tests of lab_repeatability.py's pure parts (the stopping-rule replay, parsing)."""

import unittest

import lab_repeatability as lr


class ReplayTest(unittest.TestCase):
    def test_tight_series_converges_at_min_reps(self):
        self.assertEqual(lr.reps_to_converge([10.0, 10.01, 9.99, 10.0]), 3)

    def test_noisy_series_needs_more_or_never(self):
        noisy = [10, 11, 9, 10.5, 9.5, 10.2, 9.8, 10.1, 9.9, 10.0]
        n = lr.reps_to_converge([float(x) for x in noisy])
        self.assertTrue(n is None or n > 5, n)
        self.assertIsNone(lr.reps_to_converge([1.0, 2.0, 1.0, 2.0]))

    def test_variant_parsing(self):
        self.assertEqual(lr.parse_variant("free="), ("free", []))
        self.assertEqual(lr.parse_variant("p=affinity=0/1;window=4MiB"),
                         ("p", ["affinity=0/1", "window=4MiB"]))


if __name__ == "__main__":
    unittest.main()
