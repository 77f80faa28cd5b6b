#!/usr/bin/env bash
# The main job: builds bnorm (Release) and trains BN-LeNet on Fashion-MNIST for ten
# epochs at learning rate 1.0, on the GPU when a CUDA handle can be created, else on the
# CPU. Arguments go to bnorm-lenet after ours, so they win: --lr 0.1, --no-bn, --epochs 3,
# --device cpu, --csv FILE (see tools/lenet/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/deps.sh
export PATH="/usr/local/cuda/bin:$PATH"
# Kernels for this machine's GPU only (the release preset builds 80 and 90); sm_90 when
# there is no GPU, as the run is then on the CPU anyway.
arch=90
if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then arch=native; fi
cmake --preset release -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
cmake --build --preset release --target bnorm-lenet
exec build/release/tools/lenet/bnorm-lenet --lr 1.0 "$@"
