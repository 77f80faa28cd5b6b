#!/usr/bin/env bash
# Installs the built package into a scratch prefix, then configures, builds and runs an
# outside project against it with find_package(bnorm CONFIG REQUIRED).
set -euo pipefail
build_dir=$1
src_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$src_dir/install_consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/cfg.log"
cmake --build "$work/build" > "$work/build.log"
"$work/build/consumer"
