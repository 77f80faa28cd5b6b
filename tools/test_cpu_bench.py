#!/usr/bin/env python3
"""tools/cpu_bench.py's merge of alternated rounds and its table, on made-up rows."""
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_bench  # noqa: E402


def row(name, ms, gbps=None, **extra):
    r = {"name": name, "impl": "bnorm", "variant": "cpu_fast", "op": "forward_inference", "shape": "1x2x3x4",
         "time_ms": ms, "gb_per_s": gbps if gbps is not None else 10.0 / ms, "pct_floor": 50.0}
    r.update(extra)
    return r


class MedianRows(unittest.TestCase):
    def test_one_round_is_unchanged(self):
        rows = [row("a", 2.0), row("b", 3.0)]
        self.assertEqual(cpu_bench.median_rows([rows]), rows)
        self.assertNotIn("rounds_ms", cpu_bench.median_rows([rows])[0])

    def test_median_round_and_its_own_bandwidth(self):
        rounds = [[row("a", 5.0), row("b", 1.0)], [row("a", 1.0), row("b", 2.0)], [row("a", 3.0), row("b", 9.0)]]
        got = cpu_bench.median_rows(rounds)
        self.assertEqual([r["name"] for r in got], ["a", "b"])
        self.assertEqual(got[0]["time_ms"], 3.0)
        self.assertAlmostEqual(got[0]["gb_per_s"], 10.0 / 3.0)
        self.assertEqual(got[0]["rounds_ms"], [5.0, 1.0, 3.0])
        self.assertEqual(got[1]["time_ms"], 2.0)

    def test_even_rounds_take_the_lower_middle(self):
        got = cpu_bench.median_rows([[row("a", 4.0)], [row("a", 1.0)], [row("a", 3.0)], [row("a", 2.0)]])
        self.assertEqual(got[0]["time_ms"], 2.0)

    def test_failed_rounds_and_rows_only_in_some_rounds(self):
        failed = {"name": "a", "impl": "bnorm", "variant": "cpu_fast", "op": "forward_inference",
                  "shape": "1x2x3x4", "error": "bad"}
        got = cpu_bench.median_rows([[failed], [row("a", 7.0), row("ref", 40.0)], [row("a", 5.0)]])
        self.assertEqual([r["name"] for r in got], ["a", "ref"])
        self.assertEqual(got[0]["rounds_ms"], [7.0, 5.0])
        self.assertEqual(got[0]["time_ms"], 5.0)
        self.assertEqual(got[1]["time_ms"], 40.0)
        only_failed = cpu_bench.median_rows([[failed], [failed]])
        self.assertEqual(only_failed, [failed])

    def test_table_names_the_rounds(self):
        res = {"rows": [row("a", 2.0), dict(row("p", 3.0), impl="pytorch", variant="cpu", name="p")],
               "rounds": 5, "cpu": "x"}
        text = cpu_bench.render(res, None)
        self.assertIn("median of 5 alternated rounds", text)
        self.assertIn("| 1x2x3x4 | 2.000 | - | 3.000 |", text)
        self.assertIn("1.50x", text)


if __name__ == "__main__":
    unittest.main()
