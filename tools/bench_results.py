#!/usr/bin/env python3
"""Merges one GPU run into bench/results/<date>-<gpu>.json and prints its short table.

  bench_results.py merge --bench bench.json [more.json ...] [--pytorch pytorch.json]
                         [--tune report.json] [--driver VERSION] [--out-dir bench/results]
                         [--date YYYY-MM-DD] [--tag TAG]
      bench.json: bnorm-bench --benchmark_out=bench.json --benchmark_out_format=json; several
      files (a few shapes each, as tools/gpu_check.sh runs it) are concatenated in order,
      the context taken from the first
      pytorch.json: bench/peers/pytorch_bn.py --out pytorch.json
      report.json: bnorm-tune --report=report.json (its verdict counts are kept)
      TAG: appended to the file name, <date>-<gpu>-<TAG>.json (gpu_check.sh: the groups
      of a run that measured only some)
      Prints the path written.
  bench_results.py combine A.json B.json ... -o OUT.json
      Results files of the same GPU (several device calls, each some groups) as one: rows
      concatenated (a later file's row replaces an earlier one of the same name), the
      first file's header.
  bench_results.py table RESULTS.json [--shapes]
      One line per op and group: the group's bytes over its summed times (each shape at
      bnorm's best configuration, bnorm's default, cuDNN's best mode, PyTorch's default)
      in GB/s and % of the copy-bandwidth floor, and bnorm best against each peer (their
      summed time over bnorm's, on the shapes both ran). --shapes: one line per op and
      shape instead, with the configuration and why the default was chosen.

The results file (format "bnorm-bench-results", version 1):
  {"format", "version", "date", "commit", "gpu", "sm_count", "cc", "driver",
   "cuda_runtime", "copy_bandwidth_gb_per_s", "cudnn", "torch", "tuning_cache",
   "context": {everything bnorm-bench recorded}, "tune": {...} or absent,
   "rows": [{"name", "impl" (bnorm|cudnn|pytorch), "variant", "op", "shape", "group",
             "dtype" (f32|f16|bf16), "layout" (nchw|nhwc), "time_ms", "gb_per_s",
             "pct_floor", "launches", "graph_us", "iqr_pct", "label", "error"}]}
  (absent keys: not measured). A shape's name carries what is not F32, NCHW, plain:
  32x64x56x56_f16_nhwc; an _add_relu shape's rows are the fused relu(bn(x) + z) forward
  training and its backward. Rows of older files, without group, dtype and layout, get
  them from the shape's name when read.
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
SHAPE = re.compile(r"^(\d+)x(\d+)x(\d+)x(\d+)(_f16|_bf16)?(_nhwc)?(_add_relu)?$")
ELEM_BYTES = {"f32": 4, "f16": 2, "bf16": 2}
# (C, H) of ResNet-50's batch norms (bench/common/suite.cpp), for files that name no group.
RESNET50 = {(64, 112), (64, 56), (256, 56), (128, 28), (512, 28), (256, 14), (1024, 14), (512, 7),
            (2048, 7)}


def parse_shape(name):
    """'32x64x56x56_f16_nhwc' -> (n, c, h, w, dtype, layout, fused), or None."""
    m = SHAPE.match(name or "")
    if not m:
        return None
    n, c, h, w = (int(v) for v in m.group(1, 2, 3, 4))
    dtype = m.group(5)[1:] if m.group(5) else "f32"
    layout = "nhwc" if m.group(6) else "nchw"
    return n, c, h, w, dtype, layout, bool(m.group(7))


def shape_bytes(name):
    """S, the stored bytes of x; 0 if the name is not a shape."""
    p = parse_shape(name)
    return ELEM_BYTES[p[4]] * p[0] * p[1] * p[2] * p[3] if p else 0


def bytes_moved(op, name):
    """What the op must move, as bnorm-bench counts it: forward 2S, backward 3S; fused
    (_add_relu) forward 3S, backward 5S."""
    p = parse_shape(name)
    fused = bool(p and p[6])
    if op == "backward":
        return shape_bytes(name) * (5 if fused else 3)
    return shape_bytes(name) * (3 if fused else 2)


def guess_group(name):
    """The suite's group of a shape named so, for rows that carry none: resnet50 (its
    dims), then -nhwc, -f16 / -bf16, -fused as the suite names its groups; else
    'other' with the same suffixes."""
    p = parse_shape(name)
    if not p:
        return "other"
    n, c, h, w, dtype, layout, fused = p
    base = "resnet50" if (c, h) in RESNET50 and h == w and n in (32, 256) else "other"
    return base + ("-nhwc" if layout == "nhwc" else "") + ("" if dtype == "f32" else "-" + dtype) + \
        ("-fused" if fused else "")


def label_row(row, groups=None):
    """Fills group, dtype and layout of a row from its shape (groups: shape -> group,
    as bnorm-bench records it in its context) when absent."""
    p = parse_shape(row.get("shape"))
    if p:
        row.setdefault("dtype", p[4])
        row.setdefault("layout", p[5])
    if not row.get("group"):
        row["group"] = (groups or {}).get(row.get("shape")) or guess_group(row.get("shape"))
    return row


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


def context_groups(ctx):
    """bnorm-bench's shape_groups context entry: {shape name: group}."""
    try:
        return json.loads(ctx.get("shape_groups") or "{}")
    except ValueError:
        return {}


def merge(args):
    ctx, rows = {}, []
    for path in args.bench:
        with open(path) as f:
            bench = json.load(f)
        if not ctx.get("gpu"):
            ctx = dict(bench.get("context", {}))
        groups = context_groups(bench.get("context", {}))
        rows += [label_row(r, groups) for r in bench_rows(bench)]
    ctx.pop("shape_groups", None)  # each row has its group now
    torch_ctx = {}
    if args.pytorch:
        with open(args.pytorch) as f:
            pt = json.load(f)
        torch_ctx = pt.get("context", {})
        for r in pt.get("rows", []):
            rows.append(label_row(dict(r)))
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
    path = "%s/%s-%s%s.json" % (args.out_dir.rstrip("/"), date, safe(gpu), "-" + safe(args.tag) if args.tag else "")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(path)
    return 0


def best(rows, impl, variant_filter=None):
    ok = [r for r in rows if r["impl"] == impl and "gb_per_s" in r and r["gb_per_s"]
          and (variant_filter is None or variant_filter(r["variant"]))]
    return max(ok, key=lambda r: r["gb_per_s"]) if ok else None


# What each column of the tables takes per (op, shape): the row picked among its rows.
def pick_bnorm_best(g):
    return best(g, "bnorm", lambda v: v != "default") or best(g, "bnorm")


def pick_default(g):
    return best(g, "bnorm", lambda v: v == "default")


def pick_cudnn(g):
    return best(g, "cudnn")


def pick_torch(g):
    return best(g, "pytorch", lambda v: v == "default") or best(g, "pytorch")


def group_label(r):
    g = r.get("group") or "other"
    if g == "user":  # shapes outside the suite: at least keep dtypes and layouts apart
        g = "user-%s-%s" % (r.get("dtype", "f32"), r.get("layout", "nchw"))
    return g


def by_op_shape(rows):
    """{(op, shape): [rows]} in first-seen order, ops in OPS order."""
    groups, order = {}, []
    for r in rows:
        k = (r["op"], r["shape"])
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(r)
    seen = {k: i for i, k in enumerate(order)}
    order.sort(key=lambda k: (OPS.index(k[0]) if k[0] in OPS else 9, seen[k]))
    return groups, order


def header(res):
    return "%s  %s  commit %s  copy %.0f GB/s  cuDNN %s  torch %s" % (
        res.get("date"), res.get("gpu"), res.get("commit"), res.get("copy_bandwidth_gb_per_s") or 0,
        (res.get("cudnn") or "-").split(" ")[0], res.get("torch") or "-")


def summarize(rows, copy_gbps):
    """One dict per (op, group): for each column, the group's GB/s (bytes over summed
    time) and % of floor over the shapes it ran, and bnorm best over each peer (the
    peer's summed time over bnorm's on the shapes both ran)."""
    groups, order = by_op_shape(rows)
    out, index = [], {}
    picks = (("best", pick_bnorm_best), ("default", pick_default), ("cudnn", pick_cudnn), ("torch", pick_torch))
    for k in order:
        g = groups[k]
        key = (k[0], group_label(g[0]))
        if key not in index:
            index[key] = len(out)
            out.append({"op": key[0], "group": key[1], "shapes": 0,
                        "cols": {name: {"bytes": 0.0, "ms": 0.0, "n": 0} for name, _ in picks},
                        "vs": {"cudnn": [0.0, 0.0, 0], "torch": [0.0, 0.0, 0]}})
        agg = out[index[key]]
        agg["shapes"] += 1
        nbytes = bytes_moved(k[0], k[1])
        picked = {}
        for name, pick in picks:
            r = pick(g)
            if r and r.get("time_ms"):
                picked[name] = r
                c = agg["cols"][name]
                c["bytes"] += nbytes
                c["ms"] += r["time_ms"]
                c["n"] += 1
        for peer in ("cudnn", "torch"):
            if "best" in picked and peer in picked:
                v = agg["vs"][peer]
                v[0] += picked[peer]["time_ms"]
                v[1] += picked["best"]["time_ms"]
                v[2] += 1
    for agg in out:
        for c in agg["cols"].values():
            c["gbps"] = c["bytes"] / (c["ms"] * 1e-3) / 1e9 if c["ms"] else None
            c["pct"] = 100.0 * c["gbps"] / copy_gbps if c["gbps"] and copy_gbps else None
        for peer, v in agg["vs"].items():
            agg["vs_" + peer] = v[0] / v[1] if v[1] else None
    return out


def error_counts(rows):
    """(not supported, other errors): a configuration the call does not support or a
    call cuDNN refuses is a skipped row, not a failure."""
    unsupported = sum(1 for r in rows if "error" in r and ("does not support this call" in r["error"]
                                                           or "cuDNN refuses" in r["error"]))
    return unsupported, sum(1 for r in rows if "error" in r) - unsupported


def table_groups(res):
    rows = res["rows"]
    for r in rows:
        label_row(r)
    bw = res.get("copy_bandwidth_gb_per_s") or 0
    print(header(res))
    fmt = "%-17s %-19s %3s  %13s %7s %13s %13s %7s  %7s %7s"
    print(fmt % ("op", "group", "n", "bnorm best", "default", "cuDNN best", "PyTorch", "floor", "/cuDNN", "/torch"))

    def col(c, n, pct=True):
        if not c["gbps"]:
            return "-"
        s = "%.0f" % c["gbps"] + (" %3.0f%%" % c["pct"] if pct and c["pct"] is not None else "")
        return s + ("*" if c["n"] < n else "")

    def ratio(v):
        return "%6.2fx" % v if v else "      -"
    for a in summarize(rows, bw):
        n = a["shapes"]
        print(fmt % (a["op"], a["group"][:19], n, col(a["cols"]["best"], n), col(a["cols"]["default"], n, False),
                     col(a["cols"]["cudnn"], n), col(a["cols"]["torch"], n), "%.0f" % bw if bw else "-",
                     ratio(a["vs_cudnn"]), ratio(a["vs_torch"])))
    print("GB/s: the group's bytes (what each op must move) over its summed times, with %% of the floor "
          "(the copy bandwidth); * = not every shape ran. /cuDNN, /torch: the peer's summed time over "
          "bnorm best's, on the shapes both ran (> 1: bnorm faster). Rows not supported: %d, with errors: %d"
          % error_counts(rows))
    return 0


def table_shapes(res):
    rows = res["rows"]
    for r in rows:
        label_row(r)
    print(header(res))
    groups, order = by_op_shape(rows)
    fmt = "%-17s %-24s %-17s %7s %5s %-27s %7s %-9s %7s %7s %6s"
    print(fmt % ("op", "shape", "group", "best", "%flr", "bnorm best config", "default", "(why)", "cuDNN",
                 "torch", "vs"))
    for k in order:
        g = groups[k]
        b = best(g, "bnorm", lambda v: v != "default")
        d = pick_default(g)
        c = pick_cudnn(g)
        t = pick_torch(g)
        peer = max([x["gb_per_s"] for x in (c, t) if x] or [0])

        def gb(x):
            return "%7.0f" % x["gb_per_s"] if x else "      -"
        why = d["label"].split(" ")[0] if d and d.get("label") else "-"
        print(fmt % (k[0], k[1], group_label(g[0])[:17], gb(b), "%5.0f" % b["pct_floor"] if b else "    -",
                     (b["variant"] if b else "-")[:27], gb(d), why[:9], gb(c), gb(t),
                     "%5.2fx" % (b["gb_per_s"] / peer) if b and peer else "    -"))
    print("GB/s over the bytes each op must move; %%flr = %% of the copy-bandwidth floor; "
          "vs = bnorm best / best peer. Rows not supported: %d, with errors: %d" % error_counts(rows))
    return 0


def table(args):
    with open(args.results) as f:
        res = json.load(f)
    return table_shapes(res) if args.shapes else table_groups(res)


def combine(args):
    out, rows, index = None, [], {}
    for path in args.results:
        with open(path) as f:
            res = json.load(f)
        if res.get("format") != "bnorm-bench-results":
            raise SystemExit("bench_results.py: %s is not a results file" % path)
        if out is None:
            out = {k: v for k, v in res.items() if k != "rows"}
        elif res.get("gpu") != out.get("gpu"):
            raise SystemExit("bench_results.py: %s is of %s, not %s" % (path, res.get("gpu"), out.get("gpu")))
        for r in res.get("rows", []):
            r = label_row(dict(r))
            if r.get("name") in index:
                rows[index[r["name"]]] = r
            else:
                index[r.get("name")] = len(rows)
                rows.append(r)
    out["rows"] = rows
    out["combined_from"] = list(args.results)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(args.out)
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
    m.add_argument("--tag", help="appended to the file name")
    c = sub.add_parser("combine")
    c.add_argument("results", nargs="+")
    c.add_argument("-o", "--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("results")
    t.add_argument("--shapes", action="store_true", help="one line per op and shape")
    args = ap.parse_args()
    return {"merge": merge, "combine": combine, "table": table}[args.cmd](args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # | head
        sys.exit(0)
