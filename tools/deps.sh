#!/usr/bin/env bash
# Installs the Debian packages bnorm builds, tests and trains with (the CUDA toolkit is
# expected at /usr/local/cuda). Does nothing when all are present; needs root otherwise.
set -euo pipefail
pkgs=(cmake ninja-build g++ clang libclang-rt-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev
      libopenblas-dev zlib1g-dev dataset-fashion-mnist python3 python3-matplotlib python3-numpy
      libdlpack-dev openmpi-bin libopenmpi-dev)
# Wanted, not required: the test against_pytorch skips without it.
optional=(python3-torch)
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
for p in "${optional[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && continue
  echo "deps: installing $p (optional)"
  export DEBIAN_FRONTEND=noninteractive
  [ ${#missing[@]} -gt 0 ] || apt-get update -qq || true
  apt-get install -y -qq --no-install-recommends "$p" > /dev/null || echo "deps: $p not installed; its tests will skip"
done
if ! command -v nvcc > /dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  echo "deps: nvcc is at /usr/local/cuda/bin (add it to PATH)"
fi
