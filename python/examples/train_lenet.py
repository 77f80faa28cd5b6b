#!/usr/bin/env python3
"""Trains the seed's BN-LeNet on Fashion-MNIST with its batch norms swapped for bnorm's.

The network, data preparation and loop are tools/lenet/pytorch_lenet.py's (imported from
there, so it is the same model); the only change is one line,

    model.apply(bnorm.torch.convert)

after which every nn.BatchNorm1d/2d runs bnorm's forward and backward (CPU backend for
CPU tensors, CUDA backend for CUDA ones). --torch-bn trains the unswapped model for
comparison; --fold evaluates the trained model once more with every batch norm folded
into the convolution or linear layer before it (bnorm.torch.fold_sequential).

    PYTHONPATH=python BNORM_LIBRARY=build/ci/libbnorm.so \\
        /usr/bin/python3 python/examples/train_lenet.py --epochs 2 [--torch-bn] [--device cuda]
"""
import argparse
import os
import sys
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, os.pardir))                             # python/ (bnorm)
sys.path.insert(1, os.path.join(HERE, os.pardir, os.pardir, "tools", "lenet"))  # the seed's model

import bnorm.torch  # noqa: E402
from pytorch_lenet import DEFAULT_DATA, bn_lenet, load_split  # noqa: E402

try:
    from tqdm import tqdm
except ImportError:
    tqdm = None


class Progress:
    """tqdm when it is installed (Debian: python3-tqdm), else a one-line bar on stderr."""

    def __init__(self, total, desc, enabled):
        self.total, self.desc, self.n, self.enabled = total, desc, 0, enabled
        self.bar = tqdm(total=total, desc=desc, unit="batch", leave=False) if enabled and tqdm else None
        self.t0 = time.perf_counter()

    def update(self, loss):
        self.n += 1
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.bar.update(1)
        elif self.enabled and (self.n % 10 == 0 or self.n == self.total):
            done = self.n * 30 // self.total
            rate = self.n / max(time.perf_counter() - self.t0, 1e-9)
            sys.stderr.write(f"\r{self.desc} [{'#' * done}{'.' * (30 - done)}] {self.n}/{self.total} "
                             f"loss {loss:.4f} {rate:.1f} batch/s")
            sys.stderr.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


@torch.no_grad()
def accuracy(net, x, y, batch):
    net.eval()
    correct = 0
    for b in range(0, x.shape[0], batch):
        correct += (net(x[b:b + batch]).argmax(1) == y[b:b + batch]).sum().item()
    return correct / x.shape[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--train-limit", type=int, default=0)
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--torch-bn", action="store_true", help="keep torch's batch norm (the comparison run)")
    p.add_argument("--fold", action="store_true", help="also evaluate with batch norm folded into the layers")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    train_x, train_y = load_split(args.data, "train", args.train_limit, device)
    test_x, test_y = load_split(args.data, "t10k", args.test_limit, device)
    batches = train_x.shape[0] // args.batch
    if batches == 0:
        sys.exit(f"error: {train_x.shape[0]} training images make no full batch of {args.batch}")
    net = bn_lenet(True).to(device)
    if not args.torch_bn:
        net.apply(bnorm.torch.convert)
    opt = torch.optim.SGD(net.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed)
    bn_name = "torch.nn" if args.torch_bn else f"bnorm {bnorm.__version__} ({bnorm.library_path})"
    print(f"train_lenet: {device}, torch {torch.__version__}, batch norm: {bn_name} | epochs={args.epochs} "
          f"batch={args.batch} lr={args.lr:g} seed={args.seed} train={train_x.shape[0]} test={test_x.shape[0]}",
          flush=True)

    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(train_x.shape[0], device=device, generator=gen)
        net.train()
        loss_sum, correct = 0.0, 0
        bar = Progress(batches, f"epoch {epoch}/{args.epochs}", not args.no_progress)
        for b in range(batches):
            idx = order[b * args.batch:(b + 1) * args.batch]
            x, y = train_x[idx], train_y[idx]
            logits = net(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * args.batch
            correct += (logits.argmax(1) == y).sum().item()
            bar.update(loss.item())
        bar.close()
        train_seconds = time.perf_counter() - t0
        test_acc = accuracy(net, test_x, test_y, args.batch)
        trained = batches * args.batch
        print(f"epoch {epoch:2d}/{args.epochs}  loss {loss_sum / trained:.4f}  train_acc {correct / trained:.4f}  "
              f"test_acc {test_acc:.4f}  img/s {trained / train_seconds:8.0f}  sec {time.perf_counter() - t0:7.2f}",
              flush=True)
    total = time.perf_counter() - start
    print(f"final: test_acc={test_acc:.4f} seconds={total:.1f} device={device.type} "
          f"bn={'torch' if args.torch_bn else 'bnorm'}")
    if args.fold:
        bnorm.torch.fold_sequential(net.eval())
        left = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
        print(f"fold: test_acc={accuracy(net, test_x, test_y, args.batch):.4f} with batch norm folded into the "
              f"layers before it ({left} batch norms left), {test_acc:.4f} unfolded")


if __name__ == "__main__":
    main()
