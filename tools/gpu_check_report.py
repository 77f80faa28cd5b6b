#!/usr/bin/env python3
"""The parts of tools/gpu_check.sh that read outputs: what each step printed, turned into
the summary lines and tables of <date>-<gpu>-check.txt. Only the standard library (the
device's Python and this machine's alike). Each subcommand prints lines for the summary,
each starting with ok / FAIL / CUT / skip.

  device DEVICE.json                    shell assignments from bnorm-bench --print_device
  ctest --tests TESTS.json [--filter RE] [--large RE] --part NAME=OUTPUT:RC ...
                                        per test program: passed, failed, skipped, not run
                                        (TESTS.json: ctest --show-only=json-v1)
  programs --label gpu [--counts] TESTS.json   the programs of the tests with that label
  sanitize --tool T --program P --rc RC --seconds S   (the run's output on stdin)
  lenet --table OUT.txt --run NAME=OUTPUT:RC ...      final accuracy, seconds, images/s
  headline RESULTS.json [--groups G,...] per op and shape: bnorm's default, cuDNN, PyTorch
  count-rows FILE / count-entries FILE  rows of a results (or PyTorch) file / tuning-cache entries
"""
import argparse
import json
import os
import re
import shlex
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_results as br  # noqa: E402

CUT_RCS = (124, 137)
# "  3/718 Test  #12: Gpu.Foo ......   Passed    0.52 sec", "***Skipped", "***Failed",
# "***Timeout", "***Exception: SegFault", "***Not Run"; a value-parameterized test's
# name goes on with "  # GetParam() = ...".
_STATUS = r"(?:\*\*\*)?(Passed|Skipped|Failed|Not Run|Timeout|Exception|[A-Z][A-Za-z]*)\b.*?\s+[\d.]+ sec\s*$"
CTEST_LINES = (re.compile(r"^\s*\d+/\d+ Test\s+#\d+: (.+?) \.+\s*" + _STATUS),
               # a name too long for ctest's column has no dots after it
               re.compile(r"^\s*\d+/\d+ Test\s+#\d+: (.+?)\s+(?:\*\*\*)?(Passed|Skipped|Failed|Not Run|Timeout|Exception)"
                          r"\b.*?\s+[\d.]+ sec\s*$"))
SCRIPT_RUNNERS = {"cmake", "ctest", "python", "python3", "bash", "sh", "env"}


def load_tests(path):
    try:
        with open(path) as f:
            return json.load(f).get("tests", [])
    except (OSError, ValueError):
        return []


def labels(test):
    for p in test.get("properties", []):
        if p.get("name") == "LABELS":
            return p.get("value") or []
    return []


def program(test):
    """The program a ctest test runs (a gtest binary), or the test's own name when it is
    a script run by cmake, python or a shell."""
    cmd = test.get("command") or []
    if not cmd:
        return test.get("name", "?")
    exe = os.path.basename(cmd[0])
    if re.sub(r"[0-9.]+$", "", exe) in SCRIPT_RUNNERS or exe.endswith((".sh", ".py")):
        return test.get("name", exe)
    return exe


def cmd_device(args):
    with open(args.json) as f:
        d = json.load(f)
    name = d.get("gpu") or ""
    line = "%s, cc %s, %s SMs, %.0f GB memory, L2 %.0f MB, driver API %s, runtime %s; copy bandwidth B = %.1f GB/s " \
           "(device-to-device copy of %.0f MiB, bytes read + written, median of 10)" % (
               name, d.get("cc"), d.get("sm_count"), d.get("global_bytes", 0) / 1e9, d.get("l2_bytes", 0) / 1e6,
               d.get("cuda_driver"), d.get("cuda_runtime"), d.get("copy_bandwidth_gb_per_s", 0),
               d.get("copy_bytes", 0) / 1048576)
    for k, v in (("gpu_name", name), ("sm_count", d.get("sm_count", "")),
                 ("copy_gbps", d.get("copy_bandwidth_gb_per_s", "")), ("device_line", line)):
        print("%s=%s" % (k, shlex.quote(str(v))))
    return 0


def cmd_programs(args):
    count = {}  # program -> its tests of the label, in first-seen order
    for t in load_tests(args.tests):
        cmd = t.get("command") or []
        if args.label in labels(t) and cmd and program(t) == os.path.basename(cmd[0]):
            count[cmd[0]] = count.get(cmd[0], 0) + 1
    if args.counts:  # the fewest tests first
        print("\n".join("%d %s" % (n, p) for p, n in sorted(count.items(), key=lambda kv: kv[1])))
    else:
        print("\n".join(count))
    return 0


def parse_ctest(text):
    """{test name: status} from ctest's console output; status Passed, Skipped, Failed, ..."""
    out = {}
    for line in text.splitlines():
        m = CTEST_LINES[0].match(line) or CTEST_LINES[1].match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def cmd_ctest(args):
    tests = load_tests(args.tests)
    prog_of = {t["name"]: program(t) for t in tests if "name" in t}
    order = []
    for t in tests:
        if prog_of.get(t.get("name")) not in order:
            order.append(prog_of.get(t.get("name")))
    counts = {}  # program -> {passed, failed, skipped}
    failed_names = []
    lines = []
    for part in args.part:
        name, rest = part.split("=", 1)
        path, rc = rest.rsplit(":", 1)
        rc = int(rc)
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        results = parse_ctest(text)
        for test, status in results.items():
            c = counts.setdefault(prog_of.get(test, test), {"passed": 0, "failed": 0, "skipped": 0})
            if status == "Passed":
                c["passed"] += 1
            elif status == "Skipped":
                c["skipped"] += 1
            else:
                c["failed"] += 1
                failed_names.append("%s (%s)" % (test, status))
        n_fail = sum(1 for s in results.values() if s not in ("Passed", "Skipped"))
        if rc in CUT_RCS:
            lines.append("CUT   %s: ctest (%s) stopped on its budget after %d tests" % (args.label, name, len(results)))
        elif rc != 0 and n_fail == 0:
            lines.append("FAIL  %s: ctest (%s) exit %d after %d tests (log)" % (args.label, name, rc, len(results)))
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for prog in order + [p for p in counts if p not in order]:
        c = counts.get(prog)
        if c is None:
            continue
        for k in total:
            total[k] += c[k]
        lines.append("%s  %s: %s: %d passed, %d failed, %d skipped" % (
            "FAIL" if c["failed"] else "ok  ", args.label, prog, c["passed"], c["failed"], c["skipped"]))
    ran = sum(total.values())
    # The tests asked for: those of the filter (ctest -R, a search) and the large ones.
    expected = [t for t in tests if not args.filter or re.search(args.filter, t.get("name", ""))
                or (args.large and re.search(args.large, t.get("name", "")))]
    not_run = max(0, len(expected) - ran)
    lines.append("%s  %s: %d tests: %d passed, %d failed, %d skipped%s" % (
        "FAIL" if total["failed"] else ("CUT " if not_run else "ok  "), args.label, ran, total["passed"],
        total["failed"], total["skipped"], ", %d of %d not run" % (not_run, len(expected)) if not_run else ""))
    for n in failed_names[:20]:
        lines.append("FAIL  %s: %s" % (args.label, n))
    if len(failed_names) > 20:
        lines.append("FAIL  %s: ... and %d more failed (log)" % (args.label, len(failed_names) - 20))
    print("\n".join(lines))
    return 0


def cmd_sanitize(args):
    text = sys.stdin.read()
    summ = re.findall(r"ERROR SUMMARY: (\d+) error", text) or re.findall(r"RACECHECK SUMMARY: (\d+) hazard", text)
    errors = sum(int(n) for n in summ)
    done = len(re.findall(r"^\[ +(?:OK|SKIPPED|FAILED) +\] \S+ \(", text, re.M))
    gtest_failed = len(re.findall(r"^\[  FAILED  \] \S+ \(", text, re.M))
    what = "%s %s" % (args.tool, args.program)
    tests = "%d tests" % done if done else "ran"
    if args.rc == 0:
        print("ok    sanitize: %s: %s, %d errors" % (what, tests, errors))
    elif args.rc == 99 or errors:
        print("FAIL  sanitize: %s: %d errors reported (log)" % (what, errors))
    elif args.rc in CUT_RCS:
        print("CUT   sanitize: %s: stopped after its %d s, %s, no error so far" % (what, args.seconds, tests))
    elif gtest_failed:
        print("FAIL  sanitize: %s: %d tests failed under the sanitizer (log)" % (what, gtest_failed))
    else:
        print("FAIL  sanitize: %s: exit %d (log)" % (what, args.rc))
    return 0


def cmd_lenet(args):
    lines, table = [], ["## LeNet (10 epochs, batch 128, lr 0.1, on the GPU)",
                        "%-18s %7s %9s %12s %9s" % ("run", "epochs", "seconds", "images/s", "test acc")]
    for run in args.run:
        name, rest = run.split("=", 1)
        path, rc = rest.rsplit(":", 1)
        rc = int(rc)
        try:
            with open(path, errors="replace") as f:
                text = f.read()
        except OSError:
            text = ""
        epochs = re.findall(r"^epoch\s+(\d+)/\d+\s+loss (\S+)\s+train_acc (\S+)\s+test_acc (\S+)\s+img/s\s+(\S+)", text, re.M)
        final = re.search(r"^final: test_acc=(\S+) loss=(\S+) seconds=(\S+) device=(\S+)", text, re.M)
        ips = statistics.median(float(e[4]) for e in epochs) if epochs else 0.0
        if final and rc == 0:
            lines.append("ok    lenet: %s: test accuracy %s after %d epochs, %s s, %.0f images/s (median epoch), device %s"
                         % (name, final.group(1), len(epochs), final.group(3), ips, final.group(4)))
            table.append("%-18s %7d %9s %12.0f %9s" % (name, len(epochs), final.group(3), ips, final.group(1)))
        elif rc in CUT_RCS:
            last = epochs[-1][3] if epochs else "-"
            lines.append("CUT   lenet: %s: stopped on its budget after %d epochs (test accuracy %s)" % (name, len(epochs), last))
            table.append("%-18s %7s %9s %12.0f %9s" % (name, "%d cut" % len(epochs), "-", ips, last))
        else:
            lines.append("FAIL  lenet: %s: exit %d after %d epochs (log)" % (name, rc, len(epochs)))
    if args.table:
        with open(args.table, "w") as f:
            f.write("\n".join(table) + "\n")
    print("\n".join(lines))
    return 0


def cmd_headline(args):
    with open(args.results) as f:
        res = json.load(f)
    rows = [br.label_row(r) for r in res.get("rows", [])]
    if args.groups:
        rows = [r for r in rows if br.group_label(r) in args.groups.split(",")]
    bw = res.get("copy_bandwidth_gb_per_s") or 0
    groups, order = br.by_op_shape(rows)
    fmt = "%-17s %-20s %-8s %12s  %-34s %12s %12s %6s"
    print("## Per shape: GB/s and %% of the floor (2S/B forward, 3S/B backward; B = %.0f GB/s)" % bw)
    print(fmt % ("op", "shape", "group", "bnorm default", "(chosen: why spec)", "cuDNN best", "PyTorch", "vs"))

    def col(r):
        return "%5.0f %4.0f%%" % (r["gb_per_s"], r.get("pct_floor") or 0) if r else "    -"
    for k in order:
        g = groups[k]
        d, c, t = br.pick_default(g), br.pick_cudnn(g), br.pick_torch(g)
        peer = max([x["gb_per_s"] for x in (c, t) if x] or [0])
        why = (d.get("label") or "-") if d else "-"
        print(fmt % (k[0], k[1], br.group_label(g[0])[:8], col(d), why[:34], col(c), col(t),
                     "%5.2fx" % (d["gb_per_s"] / peer) if d and peer else "    -"))
    print("vs: bnorm's default over the faster peer (> 1: bnorm faster). Rows not supported: %d, with errors: %d"
          % br.error_counts(rows))
    return 0


def cmd_count_rows(args):
    try:
        with open(args.file) as f:
            print(len(json.load(f).get("rows", [])))
    except (OSError, ValueError):
        print(0)
    return 0


def cmd_count_entries(args):
    try:
        with open(args.file) as f:
            print(len(json.load(f).get("entries", [])))
    except (OSError, ValueError):
        print(0)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("device")
    s.add_argument("json")
    s = sub.add_parser("ctest")
    s.add_argument("--tests", required=True)
    s.add_argument("--label", default="test")
    s.add_argument("--part", action="append", default=[])
    s.add_argument("--filter", default="", help="the fast run's ctest -R regex, if any")
    s.add_argument("--large", default="", help="the large run's ctest -R regex")
    s = sub.add_parser("programs")
    s.add_argument("--label", default="gpu")
    s.add_argument("--counts", action="store_true", help="'TESTS PROGRAM' lines, the fewest tests first")
    s.add_argument("tests")
    s = sub.add_parser("sanitize")
    s.add_argument("--tool", required=True)
    s.add_argument("--program", required=True)
    s.add_argument("--rc", type=int, required=True)
    s.add_argument("--seconds", type=int, default=0)
    s = sub.add_parser("lenet")
    s.add_argument("--table")
    s.add_argument("--run", action="append", default=[])
    s = sub.add_parser("headline")
    s.add_argument("results")
    s.add_argument("--groups", help="only these groups (comma-separated)")
    s = sub.add_parser("count-rows")
    s.add_argument("file")
    s = sub.add_parser("count-entries")
    s.add_argument("file")
    args = ap.parse_args()
    return {"device": cmd_device, "ctest": cmd_ctest, "programs": cmd_programs, "sanitize": cmd_sanitize,
            "lenet": cmd_lenet, "headline": cmd_headline, "count-rows": cmd_count_rows,
            "count-entries": cmd_count_entries}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
