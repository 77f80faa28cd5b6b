#!/usr/bin/env python3
"""tools/experiments on a tiny subset (8 s on 2 cores): `run_experiments.py all`
must succeed (the momentum checks included), and each CSV must have the expected columns
and finite values, and each PNG must be written. The one documented exception: in
lr_sweep.csv a row of a run marked "diverged" may hold a non-finite loss or accuracy.
The sweep includes lr 100, which diverges, so the tiny run draws the divergence marks;
plot_lr is also drawn from made-up runs with NaN losses.

  python3 tools/experiments/test_experiments.py --lenet BNORM_LENET --lib LIBBNORM
Exit status 77 (ctest: skipped) when this Python lacks numpy or matplotlib.
"""
import argparse
import math
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    import numpy  # noqa: F401
    import matplotlib  # noqa: F401
except ImportError as e:
    print("skipped: %s (Debian: python3-numpy, python3-matplotlib; tools/deps.sh)" % e)
    sys.exit(77)
import report  # noqa: E402
import run_experiments  # noqa: E402

# Written out here rather than taken from the driver: a changed column is a choice.
EXPECTED = {
    "bn_vs_nobn.csv": ["net", "epoch", "loss", "train_acc", "test_acc", "seconds"],
    "lr_sweep.csv": ["net", "lr", "epoch", "loss", "train_acc", "test_acc", "status"],
    "momentum.csv": ["momentum", "batch", "true_mean", "true_var", "run_mean", "run_var",
                     "avg_run_mean", "avg_run_var", "expected_mean", "expected_var",
                     "sd_run_mean", "sd_run_var", "expected_sd_mean", "expected_sd_var"],
    "momentum_summary.csv": ["momentum", "k95_predicted", "k95_observed", "max_z_mean",
                             "max_z_var", "spread_ratio_mean", "spread_ratio_var",
                             "steady_avg_var", "steady_expected_var", "biased_var_would_be",
                             "passed"],
    "activations.csv": ["channel", "gamma", "beta", "running_mean", "running_var",
                        "input_mean", "input_sd", "normalized_mean", "normalized_sd",
                        "output_mean", "output_sd"],
}
TEXT_COLUMNS = {"net", "status"}
PNGS = ["bn_vs_nobn.png", "lr_sweep.png", "momentum.png", "activations.png"]
MAY_BE_NONFINITE_WHEN_DIVERGED = {"loss", "train_acc", "test_acc"}
TRAIN, TEST, EPOCHS = 512, 256, 2
LRS = [0.1, 100.0]
BATCHES, STEP_AT, REPLICATES = 150, 40, 300

ARGS = None


def assert_png(case, path):
    case.assertTrue(os.path.exists(path), path)
    with open(path, "rb") as f:
        case.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n", path)
    case.assertGreater(os.path.getsize(path), 10000, path)  # a drawn figure, not a blank


class TinyRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="bnorm-experiments-test-")
        cls.out = cls.tmp.name
        cmd = [sys.executable, os.path.join(HERE, "run_experiments.py"), "all",
               "--out", cls.out, "--lenet", ARGS.lenet, "--lib", ARGS.lib, "--device", "cpu",
               "--train-limit", str(TRAIN), "--test-limit", str(TEST), "--epochs", str(EPOCHS),
               "--lrs", ",".join(map(str, LRS)), "--batches", str(BATCHES),
               "--step-at", str(STEP_AT), "--replicates", str(REPLICATES)]
        cls.result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True)
        print(cls.result.stdout[-3000:])

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def rows(self, name):
        path = os.path.join(self.out, name)
        with open(path) as f:
            self.assertEqual(f.readline().strip().split(","), EXPECTED[name], name)
        return report.read_csv(path)

    def test_succeeds(self):
        self.assertEqual(self.result.returncode, 0, self.result.stdout[-3000:])

    def test_csvs_have_the_columns_and_finite_values(self):
        for name in EXPECTED:
            rows = self.rows(name)
            self.assertTrue(rows, name)
            for i, row in enumerate(rows):
                for col, v in row.items():
                    if col in TEXT_COLUMNS:
                        continue
                    if row.get("status") == "diverged" and col in MAY_BE_NONFINITE_WHEN_DIVERGED:
                        self.assertIsInstance(v, float, "%s row %d %s" % (name, i, col))
                        continue
                    self.assertTrue(report.finite(v), "%s row %d: %s = %r" % (name, i, col, v))

    def test_row_counts(self):
        self.assertEqual(len(self.rows("bn_vs_nobn.csv")), 2 * EPOCHS)
        self.assertEqual(len(self.rows("lr_sweep.csv")), 2 * len(LRS) * EPOCHS)
        self.assertEqual(len(self.rows("momentum.csv")), 4 * (BATCHES + 1))
        self.assertEqual(len(self.rows("activations.csv")), 6)  # conv1's channels

    def test_lr_100_diverges_and_is_marked(self):
        final = {(r["net"], r["lr"]): r["status"] for r in self.rows("lr_sweep.csv")}
        self.assertEqual(final[("bn", 100.0)], "diverged")
        self.assertEqual(final[("no_bn", 100.0)], "diverged")
        self.assertNotEqual(final[("bn", 0.1)], "diverged")

    def test_momentum_checks_pass(self):
        summary = self.rows("momentum_summary.csv")
        self.assertEqual([s["momentum"] for s in summary], [0.01, 0.1, 0.5, 0.9])
        self.assertTrue(all(s["passed"] == 1 for s in summary), summary)

    def test_activations_output_is_gamma_beta_of_normalized(self):
        # Per channel, in evaluation mode: output = gamma * normalized + beta.
        for r in self.rows("activations.csv"):
            self.assertAlmostEqual(r["output_mean"], r["gamma"] * r["normalized_mean"] + r["beta"],
                                   delta=1e-4 * (1 + abs(r["output_mean"])), msg=r)
            self.assertAlmostEqual(r["output_sd"], abs(r["gamma"]) * r["normalized_sd"],
                                   delta=1e-4 * (1 + r["output_sd"]), msg=r)

    def test_pngs_written(self):
        for name in PNGS:
            assert_png(self, os.path.join(self.out, name))


class Divergence(unittest.TestCase):
    def test_status(self):
        run = lambda losses, acc: [dict(loss=x, test_acc=acc) for x in losses]  # noqa: E731
        self.assertEqual(run_experiments.status(run([2.0, 1.0], 0.7)), "ok")
        self.assertEqual(run_experiments.status(run([2.35, 2.33], 0.1)), "at chance")
        self.assertEqual(run_experiments.status(run([2.0, math.nan], 0.1)), "diverged")
        self.assertEqual(run_experiments.status(run([math.inf, 1.0], 0.7)), "diverged")
        self.assertEqual(run_experiments.status(run([37.0, 30.0], 0.1)), "diverged")

    def test_plot_with_nan_losses(self):
        rows = []
        for net, losses in (("bn", {0.1: [1.0, 0.5], 10.0: [5.0, math.nan]}),
                            ("no_bn", {0.1: [2.3, 2.2], 10.0: [math.inf, math.nan]})):
            for lr, curve in losses.items():
                verdict = run_experiments.status([dict(loss=x, test_acc=0.5) for x in curve])
                rows += [dict(net=net, lr=lr, epoch=e + 1, loss=x, train_acc=0.5,
                              test_acc=math.nan if not math.isfinite(x) else 0.5,
                              status=verdict) for e, x in enumerate(curve)]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "lr.png")
            run_experiments.plot_lr(path, rows, "made-up runs")
            assert_png(self, path)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--lenet", required=True)
    p.add_argument("--lib", required=True)
    ARGS, rest = p.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
