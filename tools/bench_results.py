#!/usr/bin/env python3
"""Merges one GPU run into bench/results/<date>-<gpu>.json and prints its short table.

  bench_results.py merge --bench bench.json [more.json ...] [--pytorch pytorch.json]
                         [--tune report.json] [--driver VERSION] [--out-dir bench/results]
                         [--date YYYY-MM-DD]
      bench.json: bnorm-bench --benchmark_out=bench.json --benchmark_out_format=json; several
      files (one per shape, as tools/gpu_check.sh runs it) are concatenated in order, the
      context taken from the first
      pytorch.json: bench/peers/pytorch_bn.py --out pytorch.json
      report.json: bnorm-tune --report=report.json (its verdict counts are kept)
      Prints the path written.
  bench_results.py table RESULTS.json
      Per shape and op: bnorm's best configuration and its default, cuDNN's best mode and
      PyTorch, in GB/s and % of the floor.

The results file (format "bnorm-bench-results", version 1):
  {"format", "version", "date", "commit", "gpu", "sm_count", "cc", "driver",
   "cuda_runtime", "copy_bandwidth_gb_per_s", "cudnn", "torch", "tuning_cache",
   "context": {everything bnorm-bench recorded}, "tune": {...} or absent,
   "rows": [{"name", "impl" (bnorm|cudnn|pytorch), "variant", "op", "shape",
             "time_ms", "gb_per_s", "pct_floor", "launches", "graph_us", "iqr_pct",
             "label", "error"}]}   (absent keys: not measured)
Only the standard library: it runs on the device machine's Python and here alike.
"""
import argparse
import datetime
import json
import re
import sys

OPS = ("forward_training", "forward_inference", "backward")
UNIT_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
SUFFIX = re.compile(r"(/iterations:\d+)?(/repeats:\d+)?(/manual_time)?$")


def split_name(name):
    """'bnorm/backward/32x64x56x56/two_pass_block:t256:v4:s1/iterations:1/manual_time'
    -> ('bnorm/backward/32x64x56x56/two_pass_block:t256:v4:s1', impl, op, shape, variant)"""
    base = SUFFIX.sub("", name)
    parts = base.split("/", 3)
    if len(parts) != 4:
        return None
    return (base,) + tuple(parts)


def bench_rows(bench):
    """Rows of a Google Benchmark JSON; with repetitions, the median aggregate."""
    picked = {}
    for b in bench.get("benchmarks", []):
        parsed = split_name(b.get("run_name") or b["name"])
        if not parsed:
            continue
        base, impl, op, shape, variant = parsed
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        if base in picked and b.get("run_type") != "aggregate":
            continue  # a later repetition; the median aggregate replaces it if present
        row = {"name": base, "impl": impl, "variant": variant, "op": op, "shape": shape}
        if b.get("error_occurred"):
            row["error"] = b.get("error_message", "error")
        else:
            row["time_ms"] = b["real_time"] * UNIT_MS[b.get("time_unit", "ns")]
            row["gb_per_s"] = b.get("GB/s")
            row["pct_floor"] = b.get("pct_floor")
            for key in ("launches", "graph_us", "iqr_pct"):
                if key in b:
                    row[key] = b[key]
        if b.get("label"):
            row["label"] = b["label"]
        picked[base] = row
    return list(picked.values())


def safe(s):
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-") or "unknown-gpu"


def merge(args):
    ctx, rows = {}, []
    for path in args.bench:
        with open(path) as f:
            bench = json.load(f)
        if not ctx.get("gpu"):
            ctx = bench.get("context", {})
        rows += bench_rows(bench)
    torch_ctx = {}
    if args.pytorch:
        with open(args.pytorch) as f:
            pt = json.load(f)
        torch_ctx = pt.get("context", {})
        for r in pt.get("rows", []):
            r = dict(r)
            r.pop("group", None)
            rows.append(r)
    gpu = ctx.get("gpu") or torch_ctx.get("gpu") or "unknown GPU"
    date = args.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    bw = ctx.get("copy_bandwidth_gb_per_s")
    out = {
        "format": "bnorm-bench-results",
        "version": 1,
        "date": date,
        "commit": ctx.get("commit", "unknown"),
        "gpu": gpu,
        "sm_count": int(ctx["sm_count"]) if "sm_count" in ctx else None,
        "cc": ctx.get("cc"),
        "driver": args.driver or ctx.get("cuda_driver"),
        "cuda_runtime": ctx.get("cuda_runtime"),
        "copy_bandwidth_gb_per_s": float(bw) if bw else torch_ctx.get("copy_bandwidth_gb_per_s"),
        "cudnn": ctx.get("cudnn"),
        "torch": torch_ctx.get("torch"),
        "tuning_cache": ctx.get("tuning_cache"),
        "context": ctx,
        "rows": rows,
    }
    if torch_ctx:
        out["pytorch_context"] = torch_ctx
    if args.tune:
        with open(args.tune) as f:
            rep = json.load(f)
        verdicts = {}
        for res in rep.get("results", []):
            for c in res.get("configs", []):
                verdicts[c["verdict"]] = verdicts.get(c["verdict"], 0) + 1
        out["tune"] = {"rtol": rep.get("rtol"), "verdicts": verdicts,
                       "winners": [{"op": r["op"], "shape": r["shape"], "spec": r.get("winner"),
                                    "time_ms": r.get("winner_ms"), "heuristic": r.get("heuristic")}
                                   for r in rep.get("results", [])]}
    path = "%s/%s-%s.json" % (args.out_dir.rstrip("/"), date, safe(gpu))
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(path)
    return 0


def best(rows, impl, variant_filter=None):
    ok = [r for r in rows if r["impl"] == impl and "gb_per_s" in r and r["gb_per_s"]
          and (variant_filter is None or variant_filter(r["variant"]))]
    return max(ok, key=lambda r: r["gb_per_s"]) if ok else None


def table(args):
    with open(args.results) as f:
        res = json.load(f)
    rows = res["rows"]
    print("%s  %s  commit %s  copy %.0f GB/s  cuDNN %s  torch %s" % (
        res.get("date"), res.get("gpu"), res.get("commit"), res.get("copy_bandwidth_gb_per_s") or 0,
        (res.get("cudnn") or "-").split(" ")[0], res.get("torch") or "-"))
    groups = {}
    order = []
    for r in rows:
        k = (r["op"], r["shape"])
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(r)
    seen = {k: i for i, k in enumerate(order)}
    order.sort(key=lambda k: (OPS.index(k[0]) if k[0] in OPS else 9, seen[k]))
    fmt = "%-17s %-15s %7s %5s %-27s %7s %-9s %7s %7s %6s"
    print(fmt % ("op", "shape", "best", "%flr", "bnorm best config", "default", "(why)", "cuDNN", "torch",
                 "vs"))
    errors = sum(1 for r in rows if "error" in r)
    for k in order:
        g = groups[k]
        b = best(g, "bnorm", lambda v: v != "default")
        d = best(g, "bnorm", lambda v: v == "default")
        c = best(g, "cudnn")
        t = best(g, "pytorch", lambda v: v == "default") or best(g, "pytorch")
        peer = max([x["gb_per_s"] for x in (c, t) if x] or [0])

        def gb(x):
            return "%7.0f" % x["gb_per_s"] if x else "      -"
        why = d["label"].split(" ")[0] if d and d.get("label") else "-"
        print(fmt % (k[0], k[1], gb(b), "%5.0f" % b["pct_floor"] if b else "    -",
                     (b["variant"] if b else "-")[:27], gb(d), why[:9], gb(c), gb(t),
                     "%5.2fx" % (b["gb_per_s"] / peer) if b and peer else "    -"))
    print("GB/s over the bytes each op must move; %%flr = %% of the copy-bandwidth floor; "
          "vs = bnorm best / best peer. Rows with errors: %d" % errors)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge")
    m.add_argument("--bench", required=True, nargs="+")
    m.add_argument("--pytorch")
    m.add_argument("--tune")
    m.add_argument("--driver")
    m.add_argument("--out-dir", default="bench/results")
    m.add_argument("--date")
    t = sub.add_parser("table")
    t.add_argument("results")
    args = ap.parse_args()
    return merge(args) if args.cmd == "merge" else table(args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # | head
        sys.exit(0)
