#!/usr/bin/env python3
"""The CPU backend against PyTorch CPU in one run: bnorm-bench-cpu (the fast path and, as
"before", its float64 oracle) and bench/peers/pytorch_bn.py --device cpu on the same
shapes, threads and measured memory bandwidth, merged into one results file and a table.

  tools/cpu_bench.py run [--build build/ci] [--groups lenet,odd,resnet50] [--shapes S,...]
                         [--threads 2] [--target-ms 200] [--rounds 1] [--python /usr/bin/python3]
                         [--out-dir bench/results] [--date YYYY-MM-DD]
      Runs both, writes <out-dir>/<date>-cpu-<cpu>.json and prints the table (markdown).
      With --rounds R, bnorm and PyTorch take turns R times (the float64 oracle in the
      first round only) and each row is the round at its median time (the lower of the
      two middle ones), its times of every round kept as "rounds_ms": on a shared
      machine whose memory speed drifts over minutes, one pass of each, minutes apart,
      compares two different machines.
  tools/cpu_bench.py table RESULTS.json [--op train_step]
      The table of a results file: per shape and op, bnorm's fast path, its float64
      oracle (the CPU backend before the fast path), PyTorch, in ms; bnorm's GB/s and %
      of the memory-bandwidth floor (the bytes the op must move: forward 2S, backward
      3S, a training step 5S); and PyTorch's time over bnorm's. Then the geometric mean
      of that ratio per op.

The results file (format "bnorm-cpu-bench-results", version 1): {"format", "version",
"date", "commit", "cpu", "threads", "isa", "memory_bandwidth_gb_per_s", "torch",
"rounds" (1 when absent), "context", "rows": [{"name", "impl" (bnorm|pytorch), "variant" (cpu_fast|cpu_reference|
cpu), "op", "shape", "group", "time_ms", "gb_per_s", "pct_floor", "threads", and with
--rounds "rounds_ms"}]}.
Only the standard library (PyTorch runs in the peer's own process).
"""
import argparse
import datetime
import json
import math
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = ("forward_training", "forward_inference", "backward", "train_step")
UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
SUFFIX = re.compile(r"(/iterations:\d+)?(/manual_time)?$")


def slug(s):
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "cpu"


def bnorm_rows(bench, groups_of):
    rows = []
    for b in bench.get("benchmarks", []):
        name = SUFFIX.sub("", b["name"])
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "cpu":
            continue
        _, op, shape, variant = parts
        row = {"name": "bnorm/%s/%s/%s" % (op, shape, variant), "impl": "bnorm", "variant": variant, "op": op,
               "shape": shape, "group": groups_of.get(shape, "user")}
        if b.get("error_occurred"):
            row["error"] = b.get("error_message", "error")
        else:
            row["time_ms"] = b["real_time"] * UNIT_MS[b.get("time_unit", "ms")]
            row["gb_per_s"] = b.get("GB/s", 0.0)
            row["pct_floor"] = b.get("pct_floor")
            row["threads"] = int(b.get("threads", 1))
        rows.append(row)
    return rows


def commit_here():
    """The checkout's commit (with -dirty for uncommitted changes): a build's own record
    is its configure time's, which may be older than the sources it was rebuilt from."""
    try:
        c = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                           check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return c + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def median_rows(rounds):
    """One row per name from rounds of rows (lists in one order): the round's row at the
    median time (the lower middle one), with every round's time as rounds_ms. Rows that
    failed in a round are left out of its times; a name that never timed keeps its
    first row."""
    by, order = {}, []
    for rows in rounds:
        for r in rows:
            if r["name"] not in by:
                by[r["name"]] = []
                order.append(r["name"])
            by[r["name"]].append(r)
    out = []
    for name in order:
        timed = sorted((r for r in by[name] if "time_ms" in r), key=lambda r: r["time_ms"])
        if not timed:
            out.append(by[name][0])
            continue
        row = dict(timed[(len(timed) - 1) // 2])
        if len(rounds) > 1:
            row["rounds_ms"] = [r["time_ms"] for r in by[name] if "time_ms" in r]
        out.append(row)
    return out


def run(args):
    binary = os.path.join(args.build, "bench", "bnorm-bench-cpu")
    if not os.access(binary, os.X_OK):
        sys.exit("cpu_bench.py: %s not built (cmake --build %s --target bnorm-bench-cpu)" % (binary, args.build))
    sel = ["--bnorm_shapes=" + args.shapes] if args.shapes else ["--groups=" + args.groups]
    threads = ["--threads=%d" % args.threads] if args.threads else []
    with tempfile.TemporaryDirectory() as tmp:
        suite = os.path.join(tmp, "suite.json")
        with open(suite, "w") as f:
            subprocess.run([binary] + sel + ["--print_suite"], check=True, stdout=f)
        with open(suite) as f:
            groups_of = {s["name"]: s["group"] for s in json.load(f)}
        env = dict(os.environ)
        commit = commit_here()
        if commit and "BNORM_COMMIT" not in env:
            env["BNORM_COMMIT"] = commit
        bnorm_rounds, torch_rounds, torch_version = [], [], None
        for k in range(max(1, args.rounds)):
            if args.rounds > 1:
                print("cpu_bench.py: round %d of %d" % (k + 1, args.rounds), file=sys.stderr)
            out = os.path.join(tmp, "bnorm.json")
            ref = [] if k == 0 else ["--reference=off"]
            subprocess.run([binary] + sel + threads + ref + ["--target_ms=%g" % args.target_ms,
                                                            "--benchmark_out=" + out, "--benchmark_out_format=json"],
                           check=True, stdout=sys.stderr, env=env)
            with open(out) as f:
                bench = json.load(f)
            if k == 0:
                ctx = bench.get("context", {})
                bw = float(ctx.get("memory_bandwidth_gb_per_s", 0))
                nthreads = int(ctx.get("cpu_threads", args.threads or 1))
            bnorm_rounds.append(bnorm_rows(bench, groups_of))
            peer = os.path.join(tmp, "pytorch.json")
            penv = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(nthreads))
            rc = subprocess.run([args.python, os.path.join(ROOT, "bench", "peers", "pytorch_bn.py"), "--device",
                                 "cpu", "--threads", str(nthreads), "--suite", suite, "--copy-gbps", str(bw),
                                 "--target-ms", "%g" % args.target_ms, "--out", peer], env=penv).returncode
            if rc == 0:
                with open(peer) as f:
                    p = json.load(f)
                torch_rounds.append(p.get("rows", []))
                torch_version = p.get("context", {}).get("torch")
            else:
                print("cpu_bench.py: pytorch_bn.py failed (exit %d): no PyTorch rows this round" % rc,
                      file=sys.stderr)
    date = args.date or datetime.date.today().isoformat()
    res = {"format": "bnorm-cpu-bench-results", "version": 1, "date": date, "commit": ctx.get("commit"),
           "cpu": ctx.get("cpu"), "threads": nthreads, "isa": ctx.get("cpu_isa"), "memory_bandwidth_gb_per_s": bw,
           "torch": torch_version, "rounds": max(1, args.rounds), "context": ctx,
           "rows": median_rows(bnorm_rounds) + median_rows(torch_rounds)}
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "%s-cpu-%s.json" % (date, slug(ctx.get("cpu", "cpu"))))
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")
    print(path, file=sys.stderr)
    print(render(res, None))
    return 0


def fmt_ms(v):
    if v is None:
        return "-"
    return "%.3f" % v if v < 10 else "%.1f" % v


def render(res, only_op):
    rows = res["rows"]
    by = {}
    for r in rows:
        if "time_ms" in r:
            by[(r["op"], r["shape"], r["impl"], r["variant"])] = r
    shapes = []
    for r in rows:
        if r["impl"] == "bnorm" and r["shape"] not in shapes:
            shapes.append(r["shape"])
    out = ["CPU: %s, %s threads, %s loops, memory bandwidth %.1f GB/s; torch %s; commit %s; %s; %s"
           % (res.get("cpu"), res.get("threads"), res.get("isa"), res.get("memory_bandwidth_gb_per_s", 0),
              res.get("torch"), res.get("commit"), res.get("date"),
              "median of %d alternated rounds" % res["rounds"] if res.get("rounds", 1) > 1 else "one round"), ""]
    geo = {}
    for op in OPS:
        if only_op and op != only_op:
            continue
        lines = []
        for s in shapes:
            f = by.get((op, s, "bnorm", "cpu_fast"))
            if not f:
                continue
            ref = by.get((op, s, "bnorm", "cpu_reference"))
            t = by.get((op, s, "pytorch", "cpu"))
            ratio = t["time_ms"] / f["time_ms"] if t else None
            if ratio:
                geo.setdefault(op, []).append(ratio)
            lines.append("| %s | %s | %s | %s | %.1f | %.0f%% | %s |"
                         % (s, fmt_ms(f["time_ms"]), fmt_ms(ref["time_ms"]) if ref else "-",
                            fmt_ms(t["time_ms"]) if t else "-", f["gb_per_s"], f["pct_floor"] or 0,
                            "%.2fx" % ratio if ratio else "-"))
        if not lines:
            continue
        out += ["%s (ms)" % op, "",
                "| shape | bnorm | bnorm float64 (before) | PyTorch | bnorm GB/s | of floor | PyTorch / bnorm |",
                "| --- | --- | --- | --- | --- | --- | --- |"] + lines + [""]
    for op, rs in geo.items():
        g = math.exp(sum(math.log(r) for r in rs) / len(rs))
        out.append("%s: bnorm %.2fx faster than PyTorch (geomean over %d shapes; slowest %.2fx)"
                   % (op, g, len(rs), min(rs)))
    return "\n".join(out)


def table(args):
    with open(args.results) as f:
        res = json.load(f)
    print(render(res, args.op))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--build", default=os.path.join(ROOT, "build", "ci"))
    r.add_argument("--groups", default="lenet,odd,resnet50")
    r.add_argument("--shapes", default="")
    r.add_argument("--threads", type=int, default=0)
    r.add_argument("--target-ms", type=float, default=200.0)
    r.add_argument("--rounds", type=int, default=1)
    r.add_argument("--python", default="/usr/bin/python3")
    r.add_argument("--out-dir", default=os.path.join(ROOT, "bench", "results"))
    r.add_argument("--date")
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("--op", choices=OPS)
    args = ap.parse_args()
    return run(args) if args.cmd == "run" else table(args)


if __name__ == "__main__":
    sys.exit(main())
