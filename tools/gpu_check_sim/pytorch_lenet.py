#!/usr/bin/env python3
"""Stand-in for tools/lenet/pytorch_lenet.py (tools/gpu_check_sim.sh): its output lines,
one epoch every BNORM_SIM_LENET_EPOCH_SECONDS, made up (no training happens)."""
import argparse
import os
import time

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--device", default="cuda")
ap.add_argument("--data")
ap.add_argument("--csv")
args = ap.parse_args()
pause = float(os.environ.get("BNORM_SIM_LENET_EPOCH_SECONDS", "0.05"))
print("pytorch-lenet: stand-in, nothing is trained | epochs=%d batch=128 lr=0.1" % args.epochs, flush=True)
start = time.time()
for e in range(1, args.epochs + 1):
    time.sleep(pause)
    print("epoch %2d/%d  loss %.4f  train_acc %.4f  test_acc %.4f  img/s %8.0f  sec %7.2f"
          % (e, args.epochs, 1.0 / e, 0.5, 0.5, 60000 / pause, pause), flush=True)
print("final: test_acc=0.5000 loss=%.4f seconds=%.1f device=%s" % (1.0 / args.epochs, time.time() - start, args.device))
