#!/usr/bin/env python3
"""A results file of tools/gpu_check.sh (bench/results/<date>-<gpu>.json) as a PNG.

One panel per op; per shape, bars in GB/s: bnorm's best configuration, bnorm's default
choice, cuDNN's best mode and PyTorch (its default path), with the floor, the measured
device copy bandwidth, as a line: a bar at the line moves the op's bytes at copy speed.

  python3 tools/plot_bench.py RESULTS.json [-o RESULTS.png]
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display on the device machine or in CI
import matplotlib.pyplot as plt  # noqa: E402

OPS = ("forward_training", "forward_inference", "backward")
SERIES = (
    # label, impl, which variants count, colour
    ("bnorm best", "bnorm", lambda v: v != "default", "#1f77b4"),
    ("bnorm default", "bnorm", lambda v: v == "default", "#9ecae1"),
    ("cuDNN (best mode)", "cudnn", lambda v: True, "#2ca02c"),
    ("PyTorch", "pytorch", lambda v: v == "default", "#d62728"),
)


def best_gbps(rows, impl, keep):
    vals = [r["gb_per_s"] for r in rows
            if r.get("impl") == impl and keep(r.get("variant", "")) and r.get("gb_per_s")]
    return max(vals) if vals else None


def nbytes(shape):
    n, c, h, w = (int(v) for v in shape.split("x"))
    return 4 * n * c * h * w


def draw(ax, op_rows, present, floor, log):
    width = 0.8 / len(SERIES)
    for i, (label, impl, keep, colour) in enumerate(SERIES):
        xs, ys = [], []
        for j, s in enumerate(present):
            v = best_gbps([r for r in op_rows if r["shape"] == s], impl, keep)
            if v is not None:
                xs.append(j + (i - (len(SERIES) - 1) / 2) * width)
                ys.append(v)
        ax.bar(xs, ys, width, label=label, color=colour)
    if floor:
        ax.axhline(floor, color="black", linestyle="--", linewidth=1,
                   label="floor: copy bandwidth %.0f GB/s" % floor)
    if log:
        ax.set_yscale("log")
    ax.set_xticks(range(len(present)))
    ax.set_xticklabels(present, rotation=60, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(present) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def plot(res, out):
    rows = res["rows"]
    floor = res.get("copy_bandwidth_gb_per_s")
    shapes = []
    for r in rows:  # first-seen order: the suite's
        if r["shape"] not in shapes:
            shapes.append(r["shape"])
    ops = [op for op in OPS if any(r["op"] == op for r in rows)]
    if not ops or not shapes:
        raise SystemExit("plot_bench.py: no rows to plot")
    # Tensors under 4 MiB are launch-bound: their GB/s are orders of magnitude lower,
    # so they get their own panel on a log scale (as bnorm-bench's launch_bound()).
    big = [s for s in shapes if nbytes(s) >= 4 << 20]
    small = [s for s in shapes if nbytes(s) < 4 << 20]
    cols = [c for c in (big, small) if c]
    fig, axes = plt.subplots(len(ops), len(cols), squeeze=False,
                             figsize=(max(10, 0.5 * len(shapes) + 4), 3.8 * len(ops)),
                             gridspec_kw={"width_ratios": [max(len(c), 3) for c in cols]})
    for r_i, op in enumerate(ops):
        op_rows = [r for r in rows if r["op"] == op]
        for c_i, col in enumerate(cols):
            present = [s for s in col if any(r["shape"] == s for r in op_rows)]
            ax = axes[r_i, c_i]
            draw(ax, op_rows, present, floor, log=col is small)
            title = op.replace("_", " ") + (" (launch-bound shapes, log scale)" if col is small else "")
            ax.set_title(title, fontsize=10)
            if c_i == 0:
                ax.set_ylabel("GB/s (bytes the op must move)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.suptitle("bnorm vs cuDNN vs PyTorch on %s (%s, commit %s)"
                 % (res.get("gpu", "?"), res.get("date", "?"), res.get("commit", "?")))
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9,
               bbox_to_anchor=(0.5, 0.965), frameon=False)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("-o", "--out", help="PNG to write (default: RESULTS with .png)")
    args = ap.parse_args()
    with open(args.results) as f:
        res = json.load(f)
    out = args.out or os.path.splitext(args.results)[0] + ".png"
    plot(res, out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
