#!/usr/bin/env python3
"""tools/bench_results.py (merge, combine, both tables) and tools/plot_bench.py on made-up
runs of bnorm-bench and pytorch_bn.py: groups, dtypes and layouts, the per-group sums and
ratios. The plot is drawn when this Python has matplotlib (skipped otherwise).

  python3 tools/test_bench_results.py
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_results as br  # noqa: E402

GPU = "NVIDIA H100 80GB HBM3"
COPY = 3000.0  # GB/s
SHAPES = {  # name: group
    "32x64x56x56_f16": "resnet50-f16",
    "32x256x56x56_f16": "resnet50-f16",
    "32x64x56x56_add_relu": "resnet50-fused",
    "128x6x24x24": "lenet",
}


def gb_row(name, ms, nbytes=None, label=None, error=None):
    """A Google Benchmark JSON row as bnorm-bench writes it."""
    full = name + "/iterations:1/manual_time"
    b = {"name": full, "run_name": full, "run_type": "iteration", "iterations": 1,
         "real_time": ms * 1e3, "cpu_time": 1.0, "time_unit": "us"}
    if error:
        b["error_occurred"] = True
        b["error_message"] = error
    else:
        gbps = nbytes / (ms * 1e-3) / 1e9
        b.update({"GB/s": gbps, "pct_floor": 100 * gbps / COPY, "iqr_pct": 1.0, "launches": 2})
    if label:
        b["label"] = label
    return b


def ops_of(shape):
    return ("forward_training", "backward") if shape.endswith("_add_relu") else br.OPS


# Times: bnorm's configurations 1.0 and 0.8 ms (x the shape's factor), default 0.9, cuDNN
# 1.2 and 1.6 (fused: refused), PyTorch 2.0 (native 3.0).
FACTOR = {"32x64x56x56_f16": 1.0, "32x256x56x56_f16": 4.0, "32x64x56x56_add_relu": 2.0, "128x6x24x24": 0.01}


def bench_json(shapes):
    rows = []
    for shape in shapes:
        f = FACTOR[shape]
        for op in ops_of(shape):
            nb = br.bytes_moved(op, shape)
            base = "%s/%s" % (op, shape)
            rows.append(gb_row("bnorm/%s/default" % base, 0.9 * f, nb, label="heuristic persistent:t512:v8:s4"))
            rows.append(gb_row("bnorm/%s/persistent:t512:v8:s4" % base, 1.0 * f, nb, label="heuristic"))
            rows.append(gb_row("bnorm/%s/two_pass_block:t256:v8:s1" % base, 0.8 * f, nb))
            if shape.endswith("_add_relu"):
                for mode in ("spatial", "spatial_persistent"):
                    rows.append(gb_row("cudnn/%s/%s" % (base, mode), 0, error="cuDNN refuses: %s: "
                                       "BN_ADD_ACTIVATION workspace query: CUDNN_STATUS_NOT_SUPPORTED" % mode))
            else:
                rows.append(gb_row("cudnn/%s/spatial" % base, 1.6 * f, nb, label="cuDNN 91900"))
                rows.append(gb_row("cudnn/%s/spatial_persistent" % base, 1.2 * f, nb, label="cuDNN 91900"))
    groups = "{" + ", ".join('"%s": "%s"' % (s, SHAPES[s]) for s in shapes) + "}"
    return {"context": {"gpu": GPU, "sm_count": "132", "cc": "9.0", "copy_bandwidth_gb_per_s": "%.1f" % COPY,
                        "cuda_driver": "13000", "cuda_runtime": "13000", "commit": "0123456789ab",
                        "cudnn": "91900 /usr/lib/libcudnn.so.9", "tuning_cache": "none", "configs": "all",
                        "shape_groups": groups},
            "benchmarks": rows}


def pytorch_json(shapes):
    rows = []
    for shape in shapes:
        p = br.parse_shape(shape)
        for op in ops_of(shape):
            for variant, ms in (("default", 2.0), ("native", 3.0)):
                ms *= FACTOR[shape]
                gbps = br.bytes_moved(op, shape) / (ms * 1e-3) / 1e9
                rows.append({"name": "pytorch/%s/%s/%s" % (op, shape, variant), "impl": "pytorch",
                             "variant": variant, "op": op, "shape": shape, "group": SHAPES[shape],
                             "dtype": p[4], "layout": p[5], "time_ms": ms, "gb_per_s": gbps,
                             "pct_floor": 100 * gbps / COPY})
    return {"context": {"gpu": GPU, "torch": "2.9.0", "copy_bandwidth_gb_per_s": COPY}, "rows": rows}


def run(*args):
    return subprocess.run([sys.executable, os.path.join(HERE, "bench_results.py")] + list(args), check=True,
                          capture_output=True, text=True).stdout


class Results(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.d = self.dir.name

    def tearDown(self):
        self.dir.cleanup()

    def write(self, name, obj):
        path = os.path.join(self.d, name)
        with open(path, "w") as f:
            json.dump(obj, f)
        return path

    def merged(self, shapes, tag=None):
        # One bnorm-bench file per shape, as gpu_check.sh runs it in chunks.
        benches = [self.write("bench-%d.json" % i, bench_json([s])) for i, s in enumerate(shapes)]
        pt = self.write("pytorch.json", pytorch_json(shapes))
        args = ["merge", "--bench"] + benches + ["--pytorch", pt, "--out-dir", self.d, "--date", "2026-11-23"]
        if tag:
            args += ["--tag", tag]
        path = run(*args).strip()
        with open(path) as f:
            return path, json.load(f)

    def test_merge_labels_rows(self):
        path, res = self.merged(list(SHAPES), tag="resnet50-f16_resnet50-fused")
        self.assertTrue(path.endswith("/2026-11-23-NVIDIA-H100-80GB-HBM3-resnet50-f16_resnet50-fused.json"), path)
        self.assertNotIn("shape_groups", res["context"])
        for r in res["rows"]:
            self.assertEqual(r["group"], SHAPES[r["shape"]], r)
            self.assertEqual(r["dtype"], "f16" if "_f16" in r["shape"] else "f32", r)
            self.assertEqual(r["layout"], "nchw", r)
        fused = [r for r in res["rows"] if r["shape"].endswith("_add_relu")]
        self.assertEqual({r["op"] for r in fused}, {"forward_training", "backward"})
        self.assertEqual(sum("error" in r for r in fused), 4)  # cuDNN refused, both modes, both ops

    def test_group_table(self):
        path, res = self.merged(list(SHAPES))
        out = run("table", path).splitlines()
        lines = [ln for ln in out[2:] if ln.split() and ln.split()[0] in br.OPS]
        # (op, group): resnet50-f16 x 3 ops, resnet50-fused x 2, lenet x 3.
        self.assertEqual(len(lines), 8, "\n".join(out))
        f16_bwd = next(ln for ln in lines if ln.startswith("backward") and "resnet50-f16" in ln)
        # bnorm best 0.8 + 3.2 ms, cuDNN best 1.2 + 4.8, PyTorch 2.0 + 8.0: ratios 1.50x, 2.50x.
        self.assertIn("1.50x", f16_bwd)
        self.assertIn("2.50x", f16_bwd)
        nbytes = br.bytes_moved("backward", "32x64x56x56_f16") + br.bytes_moved("backward", "32x256x56x56_f16")
        gbps = nbytes / 4.0e-3 / 1e9
        self.assertIn("%.0f" % gbps, f16_bwd)
        fused_fwd = next(ln for ln in lines if ln.startswith("forward_training") and "resnet50-fused" in ln)
        self.assertIn(" - ", fused_fwd)  # no cuDNN
        self.assertIn("2.50x", fused_fwd)  # PyTorch 4.0 ms over bnorm best 1.6 ms
        summary = br.summarize(res["rows"], COPY)
        a = next(x for x in summary if x["op"] == "backward" and x["group"] == "resnet50-f16")
        self.assertEqual(a["shapes"], 2)
        self.assertAlmostEqual(a["cols"]["best"]["pct"], 100 * gbps / COPY)
        self.assertAlmostEqual(a["vs_cudnn"], 1.5)
        self.assertIn("not supported: 4", out[-1])

    def test_shape_table(self):
        path, _ = self.merged(list(SHAPES))
        out = run("table", path, "--shapes").splitlines()
        lines = [ln for ln in out[2:] if ln.split() and ln.split()[0] in br.OPS]
        self.assertEqual(len(lines), 3 * 3 + 2, "\n".join(out))
        self.assertTrue(any("32x64x56x56_add_relu" in ln and "resnet50-fused" in ln for ln in lines))

    def test_combine(self):
        a, _ = self.merged(["32x64x56x56_f16", "32x256x56x56_f16"], tag="a")
        b, _ = self.merged(["32x64x56x56_add_relu", "128x6x24x24"], tag="b")
        out = os.path.join(self.d, "all.json")
        run("combine", a, b, "-o", out)
        with open(out) as f:
            res = json.load(f)
        self.assertEqual({r["group"] for r in res["rows"]}, {"resnet50-f16", "resnet50-fused", "lenet"})
        self.assertEqual(len(res["rows"]), len({r["name"] for r in res["rows"]}))
        # Of another GPU: refused.
        with open(b) as f:
            other = json.load(f)
        other["gpu"] = "NVIDIA H200"
        c = self.write("other.json", other)
        with self.assertRaises(subprocess.CalledProcessError):
            run("combine", a, c, "-o", out)

    def test_old_rows(self):
        # A results file from before groups, dtypes and layouts: guessed from the names.
        self.assertEqual(br.guess_group("256x64x112x112"), "resnet50")
        self.assertEqual(br.guess_group("32x64x56x56_bf16_nhwc"), "resnet50-nhwc-bf16")
        self.assertEqual(br.guess_group("32x64x56x56_f16_nhwc"), "resnet50-nhwc-f16")
        self.assertEqual(br.guess_group("32x64x56x56_add_relu"), "resnet50-fused")
        self.assertEqual(br.guess_group("128x6x24x24"), "other")
        r = br.label_row({"shape": "32x64x56x56_f16_nhwc", "op": "backward"})
        self.assertEqual((r["dtype"], r["layout"]), ("f16", "nhwc"))
        self.assertEqual(br.bytes_moved("backward", "32x64x56x56_add_relu"), 5 * 4 * 32 * 64 * 56 * 56)
        self.assertEqual(br.bytes_moved("forward_inference", "2x3x4x5_bf16"), 2 * 2 * 120)

    def test_plot(self):
        if importlib.util.find_spec("matplotlib") is None:
            self.skipTest("matplotlib is not installed for " + sys.executable)
        path, _ = self.merged(list(SHAPES))
        png = os.path.join(self.d, "out.png")
        subprocess.run([sys.executable, os.path.join(HERE, "plot_bench.py"), path, "-o", png], check=True,
                       capture_output=True, text=True)
        with open(png, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


if __name__ == "__main__":
    unittest.main()
