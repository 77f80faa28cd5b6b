#!/usr/bin/env python3
"""A results file of tools/gpu_check.sh (bench/results/<date>-<gpu>.json) as a PNG.

One row of panels per group of the suite (resnet50, resnet50-f16, ..., lenet, odd: so
per dtype, layout and fused or not), one column per op; per shape, bars in GB/s: bnorm's
best configuration, bnorm's default choice, cuDNN's best mode and PyTorch (its default
path), with the floor, the measured device copy bandwidth, as a line: a bar at the line
moves the op's bytes at copy speed. Launch-bound groups (lenet, odd) on a log scale.

  python3 tools/plot_bench.py RESULTS.json [-o RESULTS.png] [--groups a,b]
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display on the device machine or in CI
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_results import group_label, label_row  # noqa: E402

OPS = ("forward_training", "forward_inference", "backward")
SERIES = (
    # label, impl, which variants count, colour
    ("bnorm best", "bnorm", lambda v: v != "default", "#1f77b4"),
    ("bnorm default", "bnorm", lambda v: v == "default", "#9ecae1"),
    ("cuDNN (best mode)", "cudnn", lambda v: True, "#2ca02c"),
    ("PyTorch", "pytorch", lambda v: v == "default", "#d62728"),
)
LAUNCH_BOUND = ("lenet", "odd")  # as bnorm-bench's launch_bound(): GB/s orders of magnitude lower


def best_gbps(rows, impl, keep):
    vals = [r["gb_per_s"] for r in rows
            if r.get("impl") == impl and keep(r.get("variant", "")) and r.get("gb_per_s")]
    return max(vals) if vals else None


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
    ax.set_xticklabels(present, rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(present) - 0.4)
    ax.grid(axis="y", alpha=0.3)


def plot(res, out, only_groups=None):
    rows = [label_row(dict(r)) for r in res["rows"]]
    floor = res.get("copy_bandwidth_gb_per_s")
    groups = []
    for r in rows:  # first-seen order: the suite's
        g = group_label(r)
        if g not in groups and (not only_groups or g in only_groups):
            groups.append(g)
    ops = [op for op in OPS if any(r["op"] == op and group_label(r) in groups for r in rows)]
    if not ops or not groups:
        raise SystemExit("plot_bench.py: no rows to plot")
    shapes_of = {}
    for g in groups:
        shapes_of[g] = []
        for r in rows:
            if group_label(r) == g and r["shape"] not in shapes_of[g]:
                shapes_of[g].append(r["shape"])
    widest = max(len(v) for v in shapes_of.values())
    fig, axes = plt.subplots(len(groups), len(ops), squeeze=False,
                             figsize=(len(ops) * max(5.0, 0.32 * widest + 2), 3.6 * len(groups) + 0.8))
    for g_i, g in enumerate(groups):
        for o_i, op in enumerate(ops):
            ax = axes[g_i, o_i]
            op_rows = [r for r in rows if r["op"] == op and group_label(r) == g]
            present = [s for s in shapes_of[g] if any(r["shape"] == s for r in op_rows)]
            if not present:  # a fused group has no inference rows
                ax.set_axis_off()
                ax.set_title("%s: %s (no rows)" % (g, op.replace("_", " ")), fontsize=9)
                continue
            log = g in LAUNCH_BOUND
            draw(ax, op_rows, present, floor, log)
            ax.set_title("%s: %s%s" % (g, op.replace("_", " "), " (log scale)" if log else ""), fontsize=9)
            if o_i == 0:
                ax.set_ylabel("GB/s (bytes the op must move)", fontsize=8)
    handles, labels = [], []
    for ax in axes.flat:
        h, lab = ax.get_legend_handles_labels()
        if len(h) > len(handles):
            handles, labels = h, lab
    # Title and legend in the top 0.8 inch, whatever the figure's height.
    inch = 1.0 / fig.get_figheight()
    fig.suptitle("bnorm vs cuDNN vs PyTorch on %s (%s, commit %s)"
                 % (res.get("gpu", "?"), res.get("date", "?"), res.get("commit", "?")), y=1 - 0.15 * inch,
                 va="top")
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.8 * inch))
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9,
               bbox_to_anchor=(0.5, 1 - 0.45 * inch), frameon=False)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results")
    ap.add_argument("-o", "--out", help="PNG to write (default: RESULTS with .png)")
    ap.add_argument("--groups", help="only these groups (comma-separated)")
    args = ap.parse_args()
    with open(args.results) as f:
        res = json.load(f)
    out = args.out or os.path.splitext(args.results)[0] + ".png"
    plot(res, out, args.groups.split(",") if args.groups else None)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
