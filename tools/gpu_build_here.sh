#!/usr/bin/env bash
# Builds bnorm on a machine without Debian's packages (the device image, when the carried
# binaries do not run there): its nvcc, CMake, ninja and C++ compiler, and the
# dependencies tools/gpu_pack.sh carries in the pack's deps/ (GoogleTest's sources, built
# first; Google Benchmark, nlohmann-json and zlib as Debian's headers and libraries).
#
#   bash tools/gpu_build_here.sh BUILD_DIR UNPACKED    # UNPACKED: where pack.tar.xz was unpacked
#   BNORM_BUILD_HERE_CONFIGURE_ONLY=1 ...              # configure only (the check here)
#   BNORM_BUILD_HERE_CMAKE_ARGS=...                    # more configure arguments; here,
#       -DCMAKE_IGNORE_PREFIX_PATH=/usr hides Debian's packages as the device lacks them
#
# The ci preset's settings (Release, sm_90, -lineinfo); OpenBLAS off (bnorm-lenet's CPU
# GEMMs become plain loops: the GPU run does not use them); zlib linked statically.
# tools/gpu_check.sh calls it with a time limit; on a warm machine BUILD_DIR (ignored by
# git) is kept for the next call, which then builds nothing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:?build dir}
unpacked=$(cd "${2:?where the pack was unpacked}" && pwd)
deps=$unpacked/deps
jobs=${BNORM_BUILD_JOBS:-$(nproc)}
[[ -d $deps/sys ]] || { echo "gpu_build_here: no $deps/sys (a pack of tools/gpu_pack.sh)" >&2; exit 2; }

gtest=$unpacked/gtest-prefix
if [[ ! -f $gtest/lib/cmake/GTest/GTestConfig.cmake && -d $deps/googletest ]]; then
  echo "== GoogleTest from its sources into $gtest"
  cmake -S "$deps/googletest" -B "$unpacked/gtest-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DCMAKE_INSTALL_PREFIX="$gtest" -DCMAKE_INSTALL_LIBDIR=lib -DBUILD_GMOCK=ON -DINSTALL_GTEST=ON >/dev/null
  cmake --build "$unpacked/gtest-build" -j"$jobs"
  cmake --install "$unpacked/gtest-build" >/dev/null
fi

echo "== configure: $build"
# shellcheck disable=SC2086  # BNORM_BUILD_HERE_CMAKE_ARGS: arguments
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCMAKE_CUDA_FLAGS=-lineinfo -DCMAKE_PREFIX_PATH="$gtest;$deps/sys" \
      -DZLIB_ROOT="$deps/sys" -DZLIB_USE_STATIC_LIBS=ON -DBNORM_LENET_OPENBLAS=OFF \
      -DBNORM_BUILD_TESTS=ON -DBNORM_BUILD_BENCH=ON -DBNORM_BUILD_TOOLS=ON ${BNORM_BUILD_HERE_CMAKE_ARGS:-}
# Where each dependency was found: from the pack, not from this machine.
grep -E '^(GTest_DIR|benchmark_DIR|nlohmann_json_DIR|ZLIB_LIBRARY_RELEASE|ZLIB_INCLUDE_DIR):' "$build/CMakeCache.txt"
[[ -n ${BNORM_BUILD_HERE_CONFIGURE_ONLY:-} ]] && exit 0

echo "== build: $jobs jobs"
cmake --build "$build" -j"$jobs"
[[ -x $build/bench/bnorm-bench ]] || { echo "gpu_build_here: bnorm-bench was not built" >&2; exit 1; }
