#!/bin/sh
# ctest's entry to the Python tests: runs SCRIPT with an interpreter chosen when the test
# runs, not when CMake configured, so that a carried build on another machine (the GPU
# check's) uses that machine's Python:
#   $BNORM_PYTHON if set; else the first of CONFIGURED, python3 on PATH, /usr/bin/python3
#   that has torch, else the first that has numpy, else CONFIGURED (the test then skips).
#
#   run.sh CONFIGURED SCRIPT [ARGS...]
if [ $# -lt 2 ]; then
  echo "usage: run.sh CONFIGURED_PYTHON SCRIPT [ARGS...] (a Python test, not a gtest binary)" >&2
  exit 2
fi
configured=$1
shift
has() { "$1" -c "import importlib.util as u, sys; sys.exit(0 if u.find_spec('$2') else 1)" 2>/dev/null; }
py=${BNORM_PYTHON:-}
if [ -z "$py" ]; then
  for module in torch numpy; do
    for cand in "$configured" python3 /usr/bin/python3; do
      if command -v "$cand" >/dev/null 2>&1 && has "$cand" "$module"; then
        py=$cand
        break 2
      fi
    done
  done
fi
[ -n "$py" ] || py=$configured
command -v "$py" >/dev/null 2>&1 || py=python3
echo "python: $(command -v "$py") ($("$py" -c 'import sys; print(sys.version.split()[0])' 2>&1))"
exec "$py" "$@"
