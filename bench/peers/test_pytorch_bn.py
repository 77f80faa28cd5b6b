#!/usr/bin/env python3
"""The pure-Python parts of pytorch_bn.py, without PyTorch: its copy of the suite (against
bnorm-bench --print_suite when BNORM_BENCH names the binary), names, bytes, rotating sets,
group selection, and main() up to the missing GPU with a stand-in torch module.

  BNORM_BENCH=build/ci/bench/bnorm-bench python3 bench/peers/test_pytorch_bn.py
"""
import json
import os
import subprocess
import sys
import tempfile
import types
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_bn as pb  # noqa: E402


class Suite(unittest.TestCase):
    def test_matches_bnorm_bench(self):
        bench = os.environ.get("BNORM_BENCH")
        if not bench:
            self.skipTest("BNORM_BENCH not set")
        out = subprocess.run([bench, "--print_suite"], check=True, capture_output=True, text=True).stdout
        printed = [pb.normalize(s) for s in json.loads(out)]
        self.assertEqual(printed, pb.builtin_suite())
        # --groups narrows what bnorm-bench prints: the same as select_groups here.
        out = subprocess.run([bench, "--groups=resnet50-nhwc-f16,odd", "--print_suite"], check=True,
                             capture_output=True, text=True).stdout
        self.assertEqual([pb.normalize(s) for s in json.loads(out)],
                         pb.select_groups(pb.builtin_suite(), "resnet50-nhwc-f16,odd"))

    def test_groups(self):
        suite = pb.builtin_suite()
        count = {}
        for s in suite:
            count[s["group"]] = count.get(s["group"], 0) + 1
        self.assertEqual(count, {"resnet50": 18, "lenet": 4, "odd": 4, "resnet50-f16": 18, "resnet50-bf16": 18,
                                 "resnet50-nhwc": 18, "resnet50-nhwc-f16": 9, "resnet50-fused": 9})
        for s in suite:
            g = s["group"]
            self.assertEqual(s["dtype"], "f16" if "-f16" in g else "bf16" if "-bf16" in g else "f32", s)
            self.assertEqual(s["layout"], "nhwc" if "-nhwc" in g else "nchw", s)
            self.assertEqual(s["fused"], g.endswith("-fused"), s)
        # The F32 NCHW suite keeps its names.
        self.assertEqual([s["name"] for s in suite[:2]], ["32x64x112x112", "32x64x56x56"])

    def test_select_groups(self):
        suite = pb.builtin_suite()
        self.assertEqual(pb.select_groups(suite, "all"), suite)
        fused = pb.select_groups(suite, "resnet50-fused")
        self.assertEqual(len(fused), 9)
        self.assertTrue(all(s["name"].endswith("_add_relu") for s in fused))
        with self.assertRaises(ValueError):
            pb.select_groups(suite, "resnet50,nope")

    def test_old_suite_format(self):
        # bnorm-bench before dtypes and layouts printed dims and a group only.
        s = pb.normalize({"n": 32, "c": 64, "h": 56, "w": 56, "group": "resnet50"})
        self.assertEqual((s["dtype"], s["layout"], s["fused"], s["name"]), ("f32", "nchw", False, "32x64x56x56"))
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump([{"n": 2, "c": 3, "h": 1, "w": 1, "group": "odd"}], f)
        try:
            self.assertEqual(pb.load_suite(f.name)[0]["name"], "2x3x1x1")
        finally:
            os.unlink(f.name)

    def test_bad_entries(self):
        with self.assertRaises(ValueError):
            pb.normalize({"n": 1, "c": 2, "h": 3, "w": 4, "dtype": "f64"})
        with self.assertRaises(ValueError):
            pb.normalize({"n": 1, "c": 2, "h": 3, "w": 4, "layout": "chwn"})
        with self.assertRaises(ValueError):  # a name that does not say what the entry is
            pb.normalize({"n": 1, "c": 2, "h": 3, "w": 4, "dtype": "f16", "name": "1x2x3x4"})


class Naming(unittest.TestCase):
    def test_names(self):
        base = {"n": 32, "c": 64, "h": 56, "w": 56}
        self.assertEqual(pb.shape_name(base), "32x64x56x56")
        self.assertEqual(pb.shape_name(dict(base, dtype="f16")), "32x64x56x56_f16")
        self.assertEqual(pb.shape_name(dict(base, dtype="bf16", layout="nhwc")), "32x64x56x56_bf16_nhwc")
        self.assertEqual(pb.shape_name(dict(base, layout="nhwc")), "32x64x56x56_nhwc")
        self.assertEqual(pb.shape_name(dict(base, fused=True)), "32x64x56x56_add_relu")

    def test_rows(self):
        s = pb.normalize({"n": 32, "c": 64, "h": 56, "w": 56, "group": "resnet50-nhwc-f16", "dtype": "f16",
                          "layout": "nhwc"})
        r = pb.row_for("backward", s, "native")
        self.assertEqual(r, {"name": "pytorch/backward/32x64x56x56_f16_nhwc/native", "impl": "pytorch",
                             "variant": "native", "op": "backward", "shape": "32x64x56x56_f16_nhwc",
                             "group": "resnet50-nhwc-f16", "dtype": "f16", "layout": "nhwc"})


class Bytes(unittest.TestCase):
    def test_bytes_moved(self):
        s = {"n": 32, "c": 64, "h": 56, "w": 56}
        S = 32 * 64 * 56 * 56
        self.assertEqual(pb.bytes_moved("forward_training", s), 2 * 4 * S)
        self.assertEqual(pb.bytes_moved("forward_inference", s), 2 * 4 * S)
        self.assertEqual(pb.bytes_moved("backward", s), 3 * 4 * S)
        # 16-bit: the stored bytes halve.
        self.assertEqual(pb.bytes_moved("backward", dict(s, dtype="f16")), 3 * 2 * S)
        self.assertEqual(pb.bytes_moved("forward_training", dict(s, dtype="bf16", layout="nhwc")), 2 * 2 * S)
        # Fused: x and z in, y out; x, y, dy in, dx and dz out.
        self.assertEqual(pb.bytes_moved("forward_training", dict(s, fused=True)), 3 * 4 * S)
        self.assertEqual(pb.bytes_moved("backward", dict(s, fused=True)), 5 * 4 * S)

    def test_applies(self):
        self.assertTrue(pb.applies("forward_inference", {"n": 2, "c": 1, "h": 1, "w": 1}))
        self.assertFalse(pb.applies("backward", {"n": 1, "c": 8, "h": 1, "w": 1}))
        fused = {"n": 32, "c": 64, "h": 56, "w": 56, "fused": True}
        self.assertFalse(pb.applies("forward_inference", fused))
        self.assertTrue(pb.applies("forward_training", fused))
        self.assertTrue(pb.applies("backward", fused))

    def test_rotating_sets(self):
        l2 = 50 << 20
        s = {"n": 32, "c": 512, "h": 7, "w": 7}  # 3.2 MB in f32
        f32 = pb.rotating_sets(s, l2)
        self.assertEqual(f32, -(-2 * l2 // (2 * (4 * 32 * 512 * 49))))
        self.assertEqual(pb.rotating_sets(dict(s, dtype="f16"), l2), -(-2 * l2 // (2 * (2 * 32 * 512 * 49))))
        self.assertEqual(pb.rotating_sets({"n": 256, "c": 64, "h": 112, "w": 112}, l2), 1)
        self.assertEqual(pb.rotating_sets({"n": 2, "c": 1, "h": 1, "w": 1}, l2), pb.MAX_SETS)
        # Sets 256 bytes apart, as bnorm-bench lays them out.
        self.assertEqual(pb.set_stride({"n": 3, "c": 5, "h": 7, "w": 9}), 960)  # 945 values, 64 floats per 256 bytes
        self.assertEqual(pb.set_stride({"n": 3, "c": 5, "h": 7, "w": 9, "dtype": "f16"}), 1024)  # 128 halves per 256 bytes


class MainWithoutGpu(unittest.TestCase):
    """main() parses, loads and selects the suite, then finds no GPU in a stand-in torch."""

    def run_main(self, argv):
        fake = types.ModuleType("torch")
        fake.cuda = types.SimpleNamespace(is_available=lambda: False)
        fake.nn = types.ModuleType("torch.nn")
        fake.nn.functional = types.ModuleType("torch.nn.functional")
        saved = {k: sys.modules.get(k) for k in ("torch", "torch.nn", "torch.nn.functional")}
        sys.modules.update({"torch": fake, "torch.nn": fake.nn, "torch.nn.functional": fake.nn.functional})
        old_argv = sys.argv
        sys.argv = ["pytorch_bn.py"] + argv
        try:
            return pb.main()
        finally:
            sys.argv = old_argv
            for k, v in saved.items():
                if v is None:
                    sys.modules.pop(k, None)
                else:
                    sys.modules[k] = v

    def test_no_gpu(self):
        with tempfile.TemporaryDirectory() as d:
            suite = os.path.join(d, "suite.json")
            with open(suite, "w") as f:
                json.dump(pb.builtin_suite(), f)
            out = os.path.join(d, "out.json")
            self.assertEqual(self.run_main(["--out", out, "--suite", suite, "--groups", "resnet50-bf16"]), 0)
            with open(out) as f:
                self.assertEqual(json.load(f)["rows"], [])

    def test_unknown_group(self):
        with tempfile.TemporaryDirectory() as d:
            with self.assertRaises(SystemExit):
                sys.stderr, old = open(os.devnull, "w"), sys.stderr
                try:
                    self.run_main(["--out", os.path.join(d, "o.json"), "--groups", "resnet50-f32"])
                finally:
                    sys.stderr.close()
                    sys.stderr = old


if __name__ == "__main__":
    unittest.main()
