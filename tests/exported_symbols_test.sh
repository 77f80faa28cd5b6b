#!/usr/bin/env bash
# Only the C API is exported from the shared library: every defined dynamic symbol starts
# with bnorm_ (the CUDA runtime and C++ internals stay hidden).
set -euo pipefail
lib=$1
syms=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^$')
bad=$(printf '%s\n' "$syms" | grep -v '^bnorm_' || true)
if [ -n "$bad" ]; then
  echo "symbols exported beyond the C API:"; printf '%s\n' "$bad" | head -20; exit 1
fi
count=$(printf '%s\n' "$syms" | wc -l)
[ "$count" -ge 10 ] || { echo "only $count symbols: is the API exported at all?"; exit 1; }
echo "exported: $count bnorm_* symbols"
