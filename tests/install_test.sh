#!/usr/bin/env bash
# Installs the built package into a scratch prefix, then configures, builds and runs an
# outside project against it with find_package(bnorm CONFIG REQUIRED), and imports the
# installed Python package (any python3: it needs only the standard library), which must
# find the installed libbnorm.so by itself.
set -euo pipefail
build_dir=$1
src_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$src_dir/install_consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/cfg.log"
cmake --build "$work/build" > "$work/build.log"
"$work/build/consumer"

init=$(find "$work/prefix" -path '*/bnorm/__init__.py' | head -1)
if [[ -z $init ]]; then
  echo "install_test: the Python package was not installed" >&2
  exit 1
fi
py=${BNORM_PYTHON:-python3}
if ! command -v "$py" > /dev/null; then
  echo "install_test: no $py: the installed Python package is not imported"
  exit 0
fi
site=$(dirname "$(dirname "$init")")
(cd "$work" && env -u BNORM_LIBRARY PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 "$py" - "$work/prefix" <<'PY'
import os, sys
import bnorm
prefix = os.path.realpath(sys.argv[1])
assert os.path.realpath(bnorm.__file__).startswith(prefix), bnorm.__file__
assert bnorm.library_found == "in the install prefix", bnorm.library_found
assert os.path.realpath(bnorm.library_path).startswith(prefix), bnorm.library_path
with bnorm.Handle("cpu") as h:
    assert h.get_backend() == bnorm.Backend.CPU
print(f"python: bnorm {bnorm.__version__} imported from {os.path.dirname(bnorm.__file__)}, library {bnorm.library_path}")
PY
)
