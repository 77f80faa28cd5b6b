#!/usr/bin/env python3
"""tools/gpu_check_report.py on the outputs it reads, as the device's programs print them:
ctest's lines (parameterized names, every status, a run cut short), compute-sanitizer's
summaries (clean, errors, cut), the LeNet runs' lines (done, cut, failed), the device
facts, and the headline table of a small results file.

  python3 tools/test_gpu_check_report.py        (ctest gpu_check_report)
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gpu_check_report as rep  # noqa: E402

SCRIPT = os.path.join(HERE, "gpu_check_report.py")


def run(*args, stdin=""):
    return subprocess.run([sys.executable, SCRIPT] + list(args), input=stdin, capture_output=True, text=True,
                          check=True).stdout.splitlines()


def test_entry(name, exe, label):
    return {"name": name, "command": [exe, "--gtest_filter=" + name],
            "properties": [{"name": "LABELS", "value": [label]}]}


class Ctest(unittest.TestCase):
    LINES = """Test project /x/build
  1/6 Test  #1: Gpu.Query ..............................***Skipped   0.01 sec
  2/6 Test  #2: Suite/GpuShapes.Fwd/3x5x7x9_f32_nchw  # GetParam() = (3x5x7x9, f32) ....   Passed    0.52 sec
  3/6 Test  #3: Gpu.Crash ..............................***Exception: SegFault  0.20 sec
  4/6 Test  #4: c_api_test .............................   Passed    0.01 sec
  5/6 Test  #5: Gpu.Slow ...............................***Timeout 120.01 sec
"""

    def setUp(self):
        self.dir = tempfile.mkdtemp()
        tests = [test_entry("Gpu.Query", "/b/tests/bnorm_gpu_tests", "gpu"),
                 test_entry("Suite/GpuShapes.Fwd/3x5x7x9_f32_nchw  # GetParam() = (3x5x7x9, f32)",
                            "/b/tests/bnorm_gpu_tests", "gpu"),
                 test_entry("Gpu.Crash", "/b/tests/bnorm_gpu_tests", "gpu"),
                 {"name": "c_api_test", "command": ["/b/tests/c_api_test"],
                  "properties": [{"name": "LABELS", "value": ["cpu"]}]},
                 test_entry("Gpu.Slow", "/b/tests/bnorm_gpu_tests", "gpu"),
                 test_entry("Gpu.Never", "/b/tests/bnorm_gpu_tests", "gpu"),
                 {"name": "bench_lists_suite", "command": ["/usr/bin/cmake", "-P", "x.cmake"],
                  "properties": [{"name": "LABELS", "value": ["cpu"]}]},
                 test_entry("GpuLarge.Big", "/b/tests/bnorm_gpu_tests", "gpu")]
        self.tests = os.path.join(self.dir, "tests.json")
        with open(self.tests, "w") as f:
            json.dump({"tests": tests}, f)
        self.out = os.path.join(self.dir, "fast.out")
        with open(self.out, "w") as f:
            f.write(self.LINES)

    def test_every_status(self):
        got = rep.parse_ctest(self.LINES)
        self.assertEqual(got["Gpu.Query"], "Skipped")
        self.assertEqual(got["Suite/GpuShapes.Fwd/3x5x7x9_f32_nchw  # GetParam() = (3x5x7x9, f32)"], "Passed")
        self.assertEqual(got["Gpu.Crash"], "Exception")
        self.assertEqual(got["Gpu.Slow"], "Timeout")
        self.assertEqual(rep.parse_ctest("  9/9 Test  #9: a_name_longer_than_the_column   Passed    1.00 sec"),
                         {"a_name_longer_than_the_column": "Passed"})

    def test_per_program_and_the_cut(self):
        lines = run("ctest", "--tests", self.tests, "--large", r"GpuLarge\.", "--part", "fast=%s:124" % self.out)
        self.assertIn("CUT   test: ctest (fast) stopped on its budget after 5 tests", lines)
        self.assertIn("FAIL  test: bnorm_gpu_tests: 1 passed, 2 failed, 1 skipped", lines)
        self.assertIn("ok    test: c_api_test: 1 passed, 0 failed, 0 skipped", lines)
        self.assertIn("FAIL  test: 5 tests: 2 passed, 2 failed, 1 skipped, 3 of 8 not run", lines)
        self.assertIn("FAIL  test: Gpu.Crash (Exception)", lines)

    def test_a_filter_counts_only_its_tests(self):
        with open(self.out, "w") as f:
            f.write("  1/1 Test  #4: c_api_test .......   Passed    0.01 sec\n")
        lines = run("ctest", "--tests", self.tests, "--filter", "^c_api_test$", "--part", "fast=%s:0" % self.out)
        self.assertEqual(lines[-1], "ok    test: 1 tests: 1 passed, 0 failed, 0 skipped")

    def test_gpu_programs(self):
        self.assertEqual(run("programs", "--label", "gpu", self.tests), ["/b/tests/bnorm_gpu_tests"])
        self.assertEqual(run("programs", "--counts", "--label", "gpu", self.tests), ["6 /b/tests/bnorm_gpu_tests"])


class Sanitize(unittest.TestCase):
    CLEAN = "[ RUN      ] Gpu.A\n[       OK ] Gpu.A (5 ms)\n[  SKIPPED ] Gpu.B (0 ms)\n========= ERROR SUMMARY: 0 errors\n"

    def line(self, rc, text, seconds=30):
        return run("sanitize", "--tool", "memcheck", "--program", "t", "--rc", str(rc), "--seconds", str(seconds),
                   stdin=text)[0]

    def test_outcomes(self):
        self.assertEqual(self.line(0, self.CLEAN), "ok    sanitize: memcheck t: 2 tests, 0 errors")
        self.assertEqual(self.line(99, "========= Invalid __global__ read\n========= ERROR SUMMARY: 3 errors\n"),
                         "FAIL  sanitize: memcheck t: 3 errors reported (log)")
        self.assertEqual(self.line(124, "[       OK ] Gpu.A (5 ms)\n"),
                         "CUT   sanitize: memcheck t: stopped after its 30 s, 1 tests, no error so far")
        self.assertEqual(self.line(1, "[  FAILED  ] Gpu.A (5 ms)\n========= ERROR SUMMARY: 0 errors\n"),
                         "FAIL  sanitize: memcheck t: 1 tests failed under the sanitizer (log)")


class Lenet(unittest.TestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp()
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def test_done_cut_failed(self):
        epochs = "".join("epoch %2d/10  loss 0.5000  train_acc 0.8000  test_acc 0.8%d00  img/s   %d  sec    1.00\n"
                         % (e, e % 10, 50000 + e) for e in range(1, 11))
        done = self.write(epochs + "final: test_acc=0.8803 loss=0.2894 seconds=12.3 device=cuda\n")
        cut = self.write(epochs.split("epoch  4")[0])
        table = os.path.join(tempfile.mkdtemp(), "lenet.txt")
        lines = run("lenet", "--table", table, "--run", "bnorm-lenet=%s:0" % done, "--run", "pytorch=%s:124" % cut,
                    "--run", "other=%s:1" % cut)
        self.assertEqual(lines[0], "ok    lenet: bnorm-lenet: test accuracy 0.8803 after 10 epochs, 12.3 s, "
                                   "50006 images/s (median epoch), device cuda")
        self.assertEqual(lines[1], "CUT   lenet: pytorch: stopped on its budget after 3 epochs (test accuracy 0.8300)")
        self.assertEqual(lines[2], "FAIL  lenet: other: exit 1 after 3 epochs (log)")
        with open(table) as f:
            self.assertIn("bnorm-lenet             10      12.3        50006    0.8803", f.read())


class DeviceAndHeadline(unittest.TestCase):
    def test_device_assignments(self):
        d = {"gpu": "NVIDIA H200", "cc": "9.0", "sm_count": 132, "global_bytes": 150e9, "l2_bytes": 62914560,
             "cuda_driver": 13000, "cuda_runtime": 13000, "copy_bandwidth_gb_per_s": 4312.5, "copy_bytes": 1 << 30}
        fd, path = tempfile.mkstemp()
        with os.fdopen(fd, "w") as f:
            json.dump(d, f)
        out = subprocess.run(["bash", "-c", 'eval "$(%s %s device %s)"; echo "$gpu_name|$sm_count|$copy_gbps"'
                              % (sys.executable, SCRIPT, path)], capture_output=True, text=True, check=True).stdout
        self.assertEqual(out.strip(), "NVIDIA H200|132|4312.5")

    def test_headline(self):
        rows = []
        for impl, variant, ms in (("bnorm", "default", 1.0), ("cudnn", "spatial", 2.0), ("pytorch", "default", 4.0)):
            rows.append({"name": "%s/backward/32x64x56x56/%s" % (impl, variant), "impl": impl, "variant": variant,
                         "op": "backward", "shape": "32x64x56x56", "group": "resnet50", "time_ms": ms,
                         "gb_per_s": 77.07 / ms, "pct_floor": 100 * 77.07 / ms / 4300, "label": "heuristic p:t512"})
        rows.append(dict(rows[0], name="bnorm/backward/32x64x56x56_f16/default", shape="32x64x56x56_f16",
                         group="resnet50-f16"))
        fd, path = tempfile.mkstemp()
        with os.fdopen(fd, "w") as f:
            json.dump({"copy_bandwidth_gb_per_s": 4300.0, "rows": rows}, f)
        lines = run("headline", "--groups", "resnet50", path)
        body = [ln for ln in lines if ln.startswith("backward")]
        self.assertEqual(len(body), 1)  # the f16 group is left out
        self.assertIn("heuristic p:t512", body[0])
        self.assertTrue(body[0].endswith(" 2.00x"), body[0])  # bnorm 1 ms, the faster peer 2 ms


if __name__ == "__main__":
    unittest.main()
