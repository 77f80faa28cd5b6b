#!/usr/bin/env python3
"""BN-LeNet on Fashion-MNIST in PyTorch eager: the peer of bnorm-lenet.

The same network, initialization (PyTorch's defaults, which bnorm-lenet copies), data
preparation, training loop (plain SGD on full shuffled batches), precise-BN evaluation
and output lines as tools/lenet, so the two can be compared line by line. The data are
read from the same IDX gzip files and preloaded to the device; the loop never touches
host memory except to print. TF32 is off unless --tf32: bnorm-lenet's GEMMs are FP32.

    python3 tools/lenet/pytorch_lenet.py --epochs 10 [--no-bn] [--lr 1.0] [--device cuda]
"""
import argparse
import csv
import gzip
import os
import struct
import sys
import time

import torch
from torch import nn

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """Returns (dims, bytes) of an unsigned-byte IDX gzip file, or exits with a message."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        sys.exit(f"error: {path}: {e}")
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        sys.exit(f"error: {path}: bad magic")
    if data[2] != 0x08:
        sys.exit(f"error: {path}: element type 0x{data[2]:02x} is not supported")
    ndims = data[3]
    header = 4 + 4 * ndims
    if ndims < 1 or len(data) < header:
        sys.exit(f"error: {path}: truncated header")
    dims = struct.unpack(f">{ndims}I", data[4:header])
    count = 1
    for d in dims:
        count *= d
    if len(data) - header != count:
        sys.exit(f"error: {path}: {len(data) - header} value bytes, the header says {count}")
    return dims, data[header:]


def load_split(data_dir, prefix, limit, device):
    """Normalized images (N, 1, 28, 28) and labels (N) on `device`."""
    image_path = f"{data_dir}/{prefix}-images-idx3-ubyte.gz"
    label_path = f"{data_dir}/{prefix}-labels-idx1-ubyte.gz"
    image_dims, images = read_idx(image_path)
    label_dims, labels = read_idx(label_path)
    if len(image_dims) != 3 or image_dims[1:] != (28, 28):
        sys.exit(f"error: {image_path}: dimensions {image_dims}; expected N x 28 x 28")
    if len(label_dims) != 1 or label_dims[0] != image_dims[0]:
        sys.exit(f"error: {label_path}: count mismatch with {image_path}")
    n = image_dims[0] if not limit else min(limit, image_dims[0])
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8)[: n * 784]
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8)[:n]
    if int(y.max()) >= 10:
        sys.exit(f"error: {label_path}: label out of range")
    x = ((x.float() / 255.0 - 0.5) / 0.5).reshape(n, 1, 28, 28)
    return x.to(device), y.long().to(device)


def bn_lenet(batch_norm):
    """conv 1->6 5x5, BN, sigmoid, avgpool; conv 6->16 5x5, BN, sigmoid, avgpool;
    linear 256->120, BN, sigmoid; linear 120->84, BN, sigmoid; linear 84->10.
    Without BN the convs and hidden linears get biases instead (BN cancels a bias)."""
    bias = not batch_norm

    def bn(layer):
        return [layer] if batch_norm else []

    return nn.Sequential(
        nn.Conv2d(1, 6, 5, bias=bias), *bn(nn.BatchNorm2d(6)), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5, bias=bias), *bn(nn.BatchNorm2d(16)), nn.Sigmoid(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(256, 120, bias=bias), *bn(nn.BatchNorm1d(120)), nn.Sigmoid(),
        nn.Linear(120, 84, bias=bias), *bn(nn.BatchNorm1d(84)), nn.Sigmoid(),
        nn.Linear(84, 10))


@torch.no_grad()
def recalibrate(net, x, order, batch, batches):
    """Precise BN, as bnorm-lenet's --precise-bn: running statistics := the plain average
    of the batch statistics of the first `batches` batches of this epoch's order."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or batches <= 0:
        return
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: the k-th batch enters with weight 1/k
    net.train()
    for b in range(batches):
        net(x[order[b * batch:(b + 1) * batch]])
    for m in bns:
        m.momentum = 0.1


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-bn", action="store_true")
    p.add_argument("--precise-bn", type=int, default=0)
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--csv", default="")
    p.add_argument("--device", default="cuda")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--tf32", action="store_true", help="allow TF32 in convolutions and GEMMs")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (default: every core, as bnorm-lenet's OpenBLAS and bnorm use)")
    args = p.parse_args()
    # Some builds (Debian's) default to one thread: the CPU peer gets the cores bnorm does.
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))

    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    device = torch.device(args.device)
    torch.manual_seed(args.seed)

    train_x, train_y = load_split(args.data, "train", args.train_limit, device)
    test_x, test_y = load_split(args.data, "t10k", args.test_limit, device)
    batches = train_x.shape[0] // args.batch  # full batches only, as bnorm-lenet
    if batches == 0:
        sys.exit(f"error: {train_x.shape[0]} training images make no full batch of {args.batch}")
    trained = batches * args.batch
    net = bn_lenet(not args.no_bn).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    precise = 0 if args.no_bn else args.precise_bn
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"pytorch-lenet: {device.type}, {name}, torch {torch.__version__} | "
          f"bn={'off' if args.no_bn else 'on'} precise_bn={precise} epochs={args.epochs} "
          f"batch={args.batch} lr={args.lr:g} seed={args.seed} "
          f"train={train_x.shape[0]} test={test_x.shape[0]}", flush=True)

    rows = []

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(train_x.shape[0], device=device, generator=gen)
        net.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        for b in range(batches):
            idx = order[b * args.batch:(b + 1) * args.batch]
            x, y = train_x[idx], train_y[idx]
            logits = net(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach().double() * args.batch
            correct += (logits.argmax(1) == y).sum()
        sync()
        train_seconds = time.perf_counter() - t0

        recalibrate(net, train_x, order, args.batch, min(precise, batches))
        net.eval()
        test_correct = torch.zeros((), dtype=torch.int64, device=device)
        with torch.no_grad():
            for b in range(0, test_x.shape[0], args.batch):
                logits = net(test_x[b:b + args.batch])
                test_correct += (logits.argmax(1) == test_y[b:b + args.batch]).sum()
        test_acc = test_correct.item() / test_x.shape[0]  # synchronizes
        seconds = time.perf_counter() - t0
        loss_mean = loss_sum.item() / trained
        train_acc = correct.item() / trained
        ips = trained / train_seconds
        print(f"epoch {epoch:2d}/{args.epochs}  loss {loss_mean:.4f}  train_acc {train_acc:.4f}  "
              f"test_acc {test_acc:.4f}  img/s {ips:8.0f}  sec {seconds:7.2f}", flush=True)
        rows.append((epoch, loss_mean, train_acc, test_acc, ips, seconds))
    total = time.perf_counter() - start

    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if bns:
        shown = min(5, bns[0].num_features)
        for what, t in (("gamma", bns[0].weight), ("beta", bns[0].bias)):
            print(f"bn1 {what}[0:{shown}]: " + " ".join(f"{v:.4f}" for v in t[:shown].tolist()))
    else:
        print("bn1: none (--no-bn)")
    last = rows[-1]
    print(f"final: test_acc={last[3]:.4f} loss={last[1]:.4f} seconds={total:.1f} "
          f"device={device.type}")

    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "loss", "train_acc", "test_acc", "images_per_s", "seconds"])
            for r in rows:
                w.writerow([r[0], f"{r[1]:.6f}", f"{r[2]:.6f}", f"{r[3]:.6f}", f"{r[4]:.1f}",
                            f"{r[5]:.3f}"])


if __name__ == "__main__":
    main()
