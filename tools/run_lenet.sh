#!/usr/bin/env bash
# The main job: builds bnorm (Release) and trains BN-LeNet on Fashion-MNIST for ten
# epochs, on the GPU when a CUDA handle can be created, else on the CPU. Arguments go to
# bnorm-lenet, e.g. --no-bn, --epochs 3, --device cpu, --csv FILE (see
# tools/lenet/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/deps.sh
export PATH="/usr/local/cuda/bin:$PATH"
cmake --preset release >/dev/null
cmake --build --preset release --target bnorm-lenet
exec build/release/tools/lenet/bnorm-lenet "$@"
