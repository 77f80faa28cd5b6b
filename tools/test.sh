#!/usr/bin/env bash
# Builds bnorm and runs every test: the README's test command, and what CI runs.
# On a machine without a GPU the `gpu` tests report skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/deps.sh
export PATH="/usr/local/cuda/bin:$PATH"
cmake --workflow --preset ci
