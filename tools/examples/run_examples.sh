#!/usr/bin/env bash
# Installs the built package into a scratch prefix, builds tools/examples against it as
# an outside project (find_package(bnorm)), and runs every example (each checks itself
# and exits non-zero when wrong).
set -euo pipefail
build_dir=$1
src_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$src_dir" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/cfg.log"
cmake --build "$work/build" > "$work/build.log"
for example in residual_block lstm_step; do
  echo "== $example"
  "$work/build/$example"
done
