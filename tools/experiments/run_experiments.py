#!/usr/bin/env python3
"""The seed's four batch-norm experiments, each writing a CSV and a PNG into --out.

  bn           BN-LeNet and the same network without BN: training loss and test
               accuracy per epoch (bn_vs_nobn.csv, .png)
  lr           final loss and test accuracy per learning rate, with and without BN;
               diverged runs are marked (lr_sweep.csv, .png)
  momentum     bnorm_forward_training's running mean and variance on a stream of
               batches with a step, for momenta 0.01, 0.1, 0.5, 0.9, checked against
               their expected values (momentum.csv, momentum_summary.csv, .png)
  activations  histograms of the first BN layer's input and output in the trained
               BN-LeNet (activations.csv, .png)
  all          the four in turn

The LeNet experiments run bnorm-lenet (on the CPU or the GPU: --device); momentum calls
libbnorm.so's CPU backend through ctypes. Both are found in build/{ci,release,debug}
unless given. Seeds are fixed: a CPU run is reproducible.

  python3 tools/experiments/run_experiments.py all --out DIR [--train-limit N] [--epochs N]
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import report  # noqa: E402
import running_stats  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BUILDS = ("build/ci", "build/release", "build/debug", "build")

EPOCH_COLUMNS = ["net", "epoch", "loss", "train_acc", "test_acc", "seconds"]
LR_COLUMNS = ["net", "lr", "epoch", "loss", "train_acc", "test_acc", "status"]
ACT_COLUMNS = ["channel", "gamma", "beta", "running_mean", "running_var", "input_mean",
               "input_sd", "normalized_mean", "normalized_sd", "output_mean", "output_sd"]
NETS = (("bn", "BN", "C0", []), ("no_bn", "no BN", "C3", ["--no-bn"]))  # key, label, colour, flags
CHANCE = 0.1  # ten balanced classes
# A run diverged when its loss went non-finite or ended above where training starts: the
# untrained network predicts about uniformly, loss ln 10 = 2.303 (measured 2.353 with BN,
# 2.359 without, seed 42), and networks stuck at chance ended at 2.303 to 2.342 (README).
# 10% above ln 10 is out of that range; diverged runs sit far beyond it (40 at lr 100).
DIVERGED_LOSS = 1.1 * math.log(10)


def find_built(given, relative):
    if given:
        return given
    for b in BUILDS:
        path = os.path.join(REPO, b, relative)
        if os.path.exists(path):
            return path
    sys.exit("run_experiments.py: no %s in %s: build bnorm first (cmake --preset ci && "
             "cmake --build --preset ci) or name it" % (relative, ", ".join(BUILDS)))


def train(args, key, flags, lr, tmp, extra=()):
    """Runs bnorm-lenet; returns its per-epoch rows (dicts of floats)."""
    csv_path = os.path.join(tmp, "%s_lr%g.csv" % (key, lr))
    cmd = [find_built(args.lenet, "tools/lenet/bnorm-lenet"), "--device", args.device,
           "--epochs", str(args.epochs), "--seed", str(args.seed), "--lr", repr(lr),
           "--csv", csv_path] + flags + list(extra)
    for opt, value in (("--train-limit", args.train_limit), ("--test-limit", args.test_limit),
                       ("--data", args.data)):
        if value:
            cmd += [opt, str(value)]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return report.read_csv(csv_path)


# ---- 1. BN vs no BN ------------------------------------------------------------------

def exp_bn(args, tmp):
    rows = []
    for key, _, _, flags in NETS:
        rows += [dict(r, net=key) for r in train(args, key, flags, args.lr, tmp)]
    report.write_csv(os.path.join(args.out, "bn_vs_nobn.csv"), EPOCH_COLUMNS, rows)
    title = "BN-LeNet vs no BN, Fashion-MNIST, lr %g (%s)" % (args.lr, subset(args))
    with report.panels(os.path.join(args.out, "bn_vs_nobn.png"), title, ncols=2) as axes:
        loss_ax, acc_ax = axes[0]
        for key, label, colour, _ in NETS:
            mine = [r for r in rows if r["net"] == key]
            epochs = [r["epoch"] for r in mine]
            loss_ax.plot(epochs, [r["loss"] for r in mine], "o-", color=colour, label=label)
            acc_ax.plot(epochs, [r["test_acc"] for r in mine], "o-", color=colour, label=label)
        acc_ax.axhline(CHANCE, color="gray", ls=":", label="chance")
        loss_ax.set(ylabel="mean training loss", title="training loss")
        acc_ax.set(ylabel="test accuracy", title="test accuracy", ylim=(0, 1))
        for ax in axes[0]:
            report.epoch_axis(ax)
    for key, _, _, _ in NETS:
        last = [r for r in rows if r["net"] == key][-1]
        print("bn: %-5s final loss %.4f test_acc %.4f" % (key, last["loss"], last["test_acc"]))


# ---- 2. learning-rate sensitivity ------------------------------------------------------

def status(runs):
    """'diverged', 'at chance' or 'ok' for one run's per-epoch rows."""
    losses = [r["loss"] for r in runs]
    if not all(report.finite(x) for x in losses) or losses[-1] > DIVERGED_LOSS:
        return "diverged"
    return "at chance" if runs[-1]["test_acc"] < 2 * CHANCE else "ok"


def plot_lr(path, rows, title):
    """Final loss and test accuracy per rate, and every run's loss per epoch. A diverged
    run's point is a red X, at its loss where finite, else on the top edge, labelled."""
    with report.panels(path, title, ncols=3) as axes:
        loss_ax, acc_ax, curve_ax = axes[0]
        for key, label, colour, _ in NETS:
            mine = [r for r in rows if r["net"] == key]
            lrs = sorted({r["lr"] for r in mine})
            finals = [[r for r in mine if r["lr"] == lr][-1] for lr in lrs]
            for ax, col in ((loss_ax, "loss"), (acc_ax, "test_acc")):
                ok = [(f["lr"], f[col]) for f in finals
                      if f["status"] != "diverged" and report.finite(f[col])]
                if ok:
                    ax.plot(*zip(*ok), "o-", color=colour, label=label)
                for f in finals:
                    if f["status"] != "diverged":
                        continue
                    shown = report.finite(f[col])
                    y, transform = ((f[col], ax.transData) if shown
                                    else (0.95, ax.get_xaxis_transform()))
                    ax.plot(f["lr"], y, "X", color="red", ms=10, mec=colour, transform=transform)
                    ax.annotate("%s diverged%s" % (label, "" if shown else ": loss %s" % f[col]),
                                (f["lr"], y), xycoords=transform, textcoords="offset points",
                                xytext=(-8, 8 if key == "bn" else -14), ha="right", fontsize=7,
                                color="red")
            for lr in lrs:
                run = [r for r in mine if r["lr"] == lr]
                curve_ax.plot([r["epoch"] for r in run], [r["loss"] for r in run],
                              "-" if key == "bn" else "--", marker=".",
                              color="C%d" % (lrs.index(lr) % 10),
                              label="lr %g" % lr if key == "bn" else None)
        loss_ax.plot([], [], "X", color="red", label="diverged")
        loss_ax.axhline(math.log(10), color="gray", ls=":", label="ln 10 (uniform guess)")
        acc_ax.axhline(CHANCE, color="gray", ls=":", label="chance")
        for ax in (loss_ax, acc_ax):
            ax.set_xscale("log")
            ax.set_xlabel("learning rate")
        loss_ax.set(yscale="log", ylabel="final training loss", title="final loss")
        acc_ax.set(ylabel="final test accuracy", title="final test accuracy", ylim=(0, 1))
        curve_ax.set(yscale="log", ylabel="training loss",
                     title="loss per epoch (solid BN, dashed no BN)")
        report.epoch_axis(curve_ax)


def exp_lr(args, tmp):
    rows = []
    for key, _, _, flags in NETS:
        for lr in args.lrs:
            runs = train(args, key, flags, lr, tmp)
            verdict = status(runs)
            rows += [dict(r, net=key, lr=lr, status=verdict) for r in runs]
            print("lr: %-5s lr %-6g final loss %.4f test_acc %.4f %s"
                  % (key, lr, runs[-1]["loss"], runs[-1]["test_acc"], verdict))
    report.write_csv(os.path.join(args.out, "lr_sweep.csv"), LR_COLUMNS, rows)
    plot_lr(os.path.join(args.out, "lr_sweep.png"), rows,
            "Learning-rate sensitivity, %d epochs (%s)" % (args.epochs, subset(args)))


# ---- 3. momentum and running statistics ---------------------------------------------

def exp_momentum(args, tmp):
    summary = running_stats.run(find_built(args.lib, "libbnorm.so"), args.out,
                                batches=args.batches, step_at=args.step_at,
                                replicates=args.replicates, seed=args.seed)
    for s in summary:
        print("momentum %-4g: 95%% of the step after %d batches (predicted %d); tracking "
              "max %.1f / %.1f SE (mean / var); spread %.3f / %.3f of predicted; steady var "
              "%.4f (expected %.4f, biased would be %.4f)%s"
              % (s["momentum"], s["k95_observed"], s["k95_predicted"], s["max_z_mean"],
                 s["max_z_var"], s["spread_ratio_mean"], s["spread_ratio_var"],
                 s["steady_avg_var"], s["steady_expected_var"], s["biased_var_would_be"],
                 "" if s["passed"] else "  FAILED"))
    if not all(s["passed"] for s in summary):
        sys.exit("momentum: the running statistics do not behave as expected (see above)")


# ---- 4. activation distributions ----------------------------------------------------

def load_dump(directory):
    """The first BN layer's dump (tools/lenet/activation_dump.hpp): (meta, input, output),
    the arrays shaped (n, c, h*w)."""
    with open(os.path.join(directory, "bn1.json")) as f:
        meta = json.load(f)
    shape = (meta["n"], meta["c"], meta["h"] * meta["w"])
    arrays = []
    for name in (meta["input"], meta["output"]):
        a = np.fromfile(os.path.join(directory, name), dtype="<f4")
        if a.size != np.prod(shape) or not np.all(np.isfinite(a)):
            sys.exit("activations: %s: %d values (want %d), finite: %s"
                     % (name, a.size, np.prod(shape), np.all(np.isfinite(a))))
        arrays.append(a.reshape(shape))
    return meta, arrays[0], arrays[1]


def exp_activations(args, tmp):
    dump = os.path.join(tmp, "dump")
    train(args, "bn", [], args.lr, tmp, extra=["--dump-activations", dump])
    meta, x, y = load_dump(dump)
    per_channel = lambda k: np.array(meta[k], dtype=np.float64)[None, :, None]  # noqa: E731
    xhat = (x - per_channel("running_mean")) / np.sqrt(per_channel("running_var") + meta["eps"])
    # In evaluation mode the output is gamma * xhat + beta exactly, up to float32 rounding.
    err = np.max(np.abs(y - (per_channel("gamma") * xhat + per_channel("beta"))) / (1 + np.abs(y)))
    if err > 1e-5:
        sys.exit("activations: the output is not BN's map of the input (error %.2g)" % err)
    rows = [dict(channel=c, gamma=meta["gamma"][c], beta=meta["beta"][c],
                 running_mean=meta["running_mean"][c], running_var=meta["running_var"][c],
                 input_mean=float(x[:, c].mean()), input_sd=float(x[:, c].std()),
                 normalized_mean=float(xhat[:, c].mean()), normalized_sd=float(xhat[:, c].std()),
                 output_mean=float(y[:, c].mean()), output_sd=float(y[:, c].std()))
            for c in range(meta["c"])]
    report.write_csv(os.path.join(args.out, "activations.csv"), ACT_COLUMNS, rows)

    title = ("%s (the first BN, after conv1) on %d test images, trained %d epochs at lr %g (%s)"
             % (meta["layer"], meta["n"], args.epochs, args.lr, subset(args)))
    panels = ((x, "input (conv1's output)"),
              (xhat, "normalized: (x - running mean) / sqrt(running var + eps)"),
              (y, "output: gamma * normalized + beta (into the sigmoid)"))
    with report.panels(os.path.join(args.out, "activations.png"), title, ncols=3) as axes:
        for ax, (values, what) in zip(axes[0], panels):
            for c in range(meta["c"]):
                ax.hist(values[:, c].ravel(), bins=80, histtype="step", density=True,
                        label="channel %d" % c)
            # log: the background pixels (one value per channel) make spikes that would
            # flatten everything else on a linear scale
            ax.set(title=what, xlabel="value", ylabel="density", yscale="log")
            ax.title.set_fontsize(9)
        z = np.linspace(-4, 4, 200)
        axes[0][1].plot(z, np.exp(-z * z / 2) / math.sqrt(2 * math.pi), "k--", lw=1,
                        label="N(0, 1)")
    for r in rows:
        print("activations: channel %d input %.3f +- %.3f, normalized %.3f +- %.3f, output "
              "%.3f +- %.3f" % (r["channel"], r["input_mean"], r["input_sd"],
                                 r["normalized_mean"], r["normalized_sd"], r["output_mean"],
                                 r["output_sd"]))


# ---- the command line ------------------------------------------------------------------

EXPERIMENTS = {"bn": exp_bn, "lr": exp_lr, "momentum": exp_momentum,
               "activations": exp_activations}


def subset(args):
    train_part = ("%d training images" % args.train_limit if args.train_limit
                  else "all 60000 training images")
    test_part = "%d test" % args.test_limit if args.test_limit else "10000 test"
    return "%s, %s" % (train_part, test_part)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment", choices=list(EXPERIMENTS) + ["all"])
    p.add_argument("--out", default=os.path.join(REPO, "out", "experiments"),
                   help="directory of the CSVs and PNGs (default out/experiments)")
    lenet = p.add_argument_group("LeNet experiments (bn, lr, activations)")
    lenet.add_argument("--lenet", help="the bnorm-lenet binary (default: found in build/)")
    lenet.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    lenet.add_argument("--data", help="Fashion-MNIST directory (default: bnorm-lenet's)")
    lenet.add_argument("--epochs", type=int, default=10)
    lenet.add_argument("--train-limit", type=int, help="the first N training images only")
    lenet.add_argument("--test-limit", type=int, help="the first N test images only")
    lenet.add_argument("--lr", type=float, default=0.1, help="bn and activations (default 0.1)")
    lenet.add_argument("--lrs", default="0.001,0.01,0.1,1,10,100",
                       type=lambda s: [float(v) for v in s.split(",")],
                       help="the lr sweep's rates (default 0.001,0.01,0.1,1,10,100)")
    stream = p.add_argument_group("momentum")
    stream.add_argument("--lib", help="libbnorm.so (default: found in build/)")
    stream.add_argument("--batches", type=int, default=600)
    stream.add_argument("--step-at", type=int, default=200, help="the batch of the step")
    stream.add_argument("--replicates", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args(argv)
    if not (running_stats.SPREAD_WINDOW < args.batches - args.step_at and args.step_at >= 2):
        p.error("--step-at must leave more than %d batches after it" % running_stats.SPREAD_WINDOW)
    return args


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    names = list(EXPERIMENTS) if args.experiment == "all" else [args.experiment]
    with tempfile.TemporaryDirectory(prefix="bnorm-experiments-") as tmp:
        for name in names:
            EXPERIMENTS[name](args, tmp)
    print("wrote %s" % ", ".join(sorted(os.listdir(args.out))))


if __name__ == "__main__":
    main()
