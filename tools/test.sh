#!/usr/bin/env bash
# Builds bnorm and runs every test: the README's test command, and what CI runs.
# On a machine without a GPU the `gpu` tests report skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
./tools/deps.sh
export PATH="/usr/local/cuda/bin:$PATH"
cmake --workflow --preset ci
# The host code again under AddressSanitizer + UBSan, leaks being errors: every cpu test
# (the library's, the C test's, the harness's).
cmake --workflow --preset asan
# The libFuzzer targets (clang), ten seconds each from their committed seed corpora.
cmake --workflow --preset fuzz
