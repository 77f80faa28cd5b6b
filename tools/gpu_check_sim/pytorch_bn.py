#!/usr/bin/env python3
"""Stand-in for bench/peers/pytorch_bn.py (tools/gpu_check_sim.sh): its rows (default and
native per shape and op of --suite) with times from a bandwidth model,
BNORM_SIM_TORCH_ROW_SECONDS per row, the file rewritten after every shape as the real
one does."""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simlib  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--out", required=True)
ap.add_argument("--suite", required=True)
ap.add_argument("--copy-gbps", type=float, default=simlib.COPY_GBPS)
ap.add_argument("--target-ms", type=float, default=20)
args = ap.parse_args()
pause = float(os.environ.get("BNORM_SIM_TORCH_ROW_SECONDS", "0.01"))
context = {"gpu": simlib.GPU, "sm_count": 132, "torch": "stand-in", "cudnn": "stand-in",
           "copy_bandwidth_gb_per_s": args.copy_gbps}
rows = []
for s in json.load(open(args.suite)):
    for op in simlib.ops(s):
        for variant, eff in (("default", 0.45), ("native", 0.4)):
            time.sleep(pause)
            ms = simlib.model_ms(op, s, eff)
            gbps = simlib.nbytes(op, s) / (ms * 1e-3) / 1e9
            rows.append({"name": "pytorch/%s/%s/%s" % (op, s["name"], variant), "impl": "pytorch", "variant": variant,
                         "op": op, "shape": s["name"], "group": s["group"], "dtype": s["dtype"], "layout": s["layout"],
                         "time_ms": ms, "gb_per_s": gbps, "pct_floor": 100 * gbps / args.copy_gbps})
    with open(args.out + ".tmp", "w") as f:
        json.dump({"context": context, "rows": rows}, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    print("pytorch_bn.py (stand-in): %s done" % s["name"], file=sys.stderr, flush=True)
