#!/usr/bin/env bash
# Installs the Debian packages bnorm builds, tests and trains with (the CUDA toolkit is
# expected at /usr/local/cuda). Does nothing when all are present; needs root otherwise.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libclang-rt-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev
      libopenblas-dev zlib1g-dev dataset-fashion-mnist python3 python3-matplotlib python3-numpy
      libdlpack-dev openmpi-bin libopenmpi-dev python3-torch)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "deps: nvcc is at /usr/local/cuda/bin (add it to PATH)"
fi
