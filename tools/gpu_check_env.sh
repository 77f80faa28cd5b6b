# shellcheck shell=bash
# The build and the environment of a GPU check on the device machine, sourced by
# tools/gpu_check.sh (which defines W, LOG, STANDINS, facts, note, bad, say and the
# budget functions): the carried build unpacked and its paths rewritten (or a given
# build tree), the stale-build check, the library path, the Python that imports torch,
# cuDNN, and the fallbacks when the carried binaries do not start here (a library found
# elsewhere on the image, the carried C++ runtime, a build here). Sets B (the build
# tree), PY_TORCH, PY (matplotlib's), BNORM_COMMIT and BNORM_CUDNN_PATH.

# ---- the build ---------------------------------------------------------------------------
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
B=""
if [[ -n ${BNORM_CHECK_BUILD:-} && ${BNORM_CHECK_BUILD} != device ]]; then
  B=$(cd "$BNORM_CHECK_BUILD" && pwd) || { echo "gpu_check: no build tree $BNORM_CHECK_BUILD" >&2; exit 2; }
  facts+=("build: $B (given), commit $commit")
else
  if [[ ! -f .carry/meta.env || ! -f .carry/pack.tar.xz ]]; then
    echo "gpu_check: no carried build: run tools/gpu_pack.sh first and carry .carry (or set BNORM_CHECK_BUILD)" >&2
    exit 2
  fi
  # shellcheck source=/dev/null
  source .carry/meta.env
  if ! tar -C "$W" -xJf .carry/pack.tar.xz 2>>"$LOG"; then
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
      .carry/pack.tar.xz "$W" || { echo "gpu_check: cannot unpack .carry/pack.tar.xz" >&2; exit 2; }
  fi
  B=$W/build
  # ctest's files name the packing machine's build and source folders, its cmake and its
  # gtest discovery script: point them here. Editing the _include files makes ctest
  # re-discover the gtest cases on this machine, where the GPU decides what they list.
  dev_cmake=$(command -v cmake || true)
  sed_args=(-e "s#${BNORM_PACK_BUILD}#${B}#g" -e "s#${BNORM_PACK_SRC}#${root}#g")
  [[ -n ${BNORM_PACK_GTEST_MODULE:-} ]] && sed_args+=(-e "s#${BNORM_PACK_GTEST_MODULE}#${W}/cmake/GoogleTestAddTests.cmake#g")
  [[ -n $dev_cmake && -n ${BNORM_PACK_CMAKE:-} ]] && sed_args+=(-e "s#\"${BNORM_PACK_CMAKE}\"#\"${dev_cmake}\"#g")
  find "$B" -name '*.cmake' -print0 | xargs -0 -r sed -i "${sed_args[@]}"
  commit=${BNORM_PACK_COMMIT:-unknown}
  facts+=("build: carried, commit $commit, packed $BNORM_PACK_DATE")
  # The hash gpu_pack.sh took: another means these sources are not the ones packed.
  if [[ $(bash tools/gpu_pack.sh --source-hash) != "${BNORM_PACK_SOURCES:-}" ]]; then
    facts+=("WARNING: STALE BUILD: the sources here differ from those packed (re-run tools/gpu_pack.sh)")
    note "WARN  stale build: the sources differ from those packed"
  fi
fi
export BNORM_COMMIT=$commit

cuda_libs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -d $d ]] && cuda_libs+=":$d"
done
[[ -n $B ]] && export LD_LIBRARY_PATH="$W/lib:$B${cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# The Python that imports torch (the peers, the Python package's tests); the plots and
# the merge need only the standard library and matplotlib, which it has on the device.
PY_TORCH=""
for py in ${BNORM_PYTHON:-} python3 /opt/torch/.venv/bin/python3 /usr/bin/python3; do
  command -v "$py" >/dev/null 2>&1 || continue
  if v=$("$py" -c 'import torch; print(torch.__version__, "CUDA" if torch.cuda.is_available() else "no CUDA")' 2>/dev/null); then
    PY_TORCH=$(command -v "$py")
    torch_line="$v"
    break
  fi
done
if [[ -n $PY_TORCH ]]; then
  export BNORM_PYTHON=$PY_TORCH
  facts+=("python: $PY_TORCH, torch $torch_line (BNORM_PYTHON for the tests)")
elif [[ -n $STANDINS ]]; then
  PY_TORCH=$(command -v python3)  # the stand-ins of the PyTorch scripts need no torch
  facts+=("python: $PY_TORCH runs the stand-ins of the PyTorch scripts (no torch)")
else
  facts+=("python: none imports torch (the PyTorch peers fail)")
fi
# The merge and the tables need the standard library, the plot matplotlib.
PY=""
for py in "$PY_TORCH" python3 /usr/bin/python3; do
  [[ -n $py ]] && "$py" -c 'import matplotlib' 2>/dev/null && { PY=$(command -v "$py"); break; }
done
[[ -z $PY ]] && PY=$(command -v python3) && facts+=("python: no matplotlib: no plot")

# cuDNN: where PyTorch loads it from, else a search of the usual places.
if [[ -z ${BNORM_CUDNN_PATH:-} && -n $PY_TORCH ]]; then
  BNORM_CUDNN_PATH=$("$PY_TORCH" - 2>/dev/null <<'EOF'
import torch
torch.backends.cudnn.version()
for line in open("/proc/self/maps"):
    path = line.split()[-1]
    if path.endswith("/libcudnn.so.9"):
        print(path)
        break
EOF
  )
fi
[[ -z ${BNORM_CUDNN_PATH:-} ]] && BNORM_CUDNN_PATH=$(find /opt /usr/local /usr/lib -name 'libcudnn.so.9' 2>/dev/null | head -1)
export BNORM_CUDNN_PATH
facts+=("cuDNN: ${BNORM_CUDNN_PATH:-not found}")

# The carried binaries on this image: a library missing here is looked for where this
# image keeps CUDA's and PyTorch's; a C++ runtime too old takes the carried one
# (compat/); a C library too old leaves building here (tools/gpu_build_here.sh).
runs_here() {
  local out="" b
  for b in "bench/bnorm-bench --print_suite" "bench/bnorm-tune --list" "tests/bnorm_gpu_tests --gtest_list_tests" \
           "tools/lenet/bnorm-lenet --help"; do
    [[ -x $B/${b%% *} ]] || continue
    # shellcheck disable=SC2086  # b is a command line
    out+=$("$B"/$b 2>&1 >/dev/null | grep -E 'error while loading shared libraries|version .* not found')
  done
  [[ -z $out ]] && return 0
  echo "$out" >>"$LOG"
  return 1
}
if [[ -n $B ]]; then
  missing=$(find "$B" -type f -perm -u+x -print0 | xargs -0 -r -n1 ldd 2>/dev/null | awk '/not found/ {print $1}' | sort -u)
  for lib in $missing; do
    dir=$(find /usr/local /opt /usr/lib "${PY_TORCH%/bin/*}" -name "$lib" -print -quit 2>/dev/null)
    if [[ -n $dir ]]; then
      LD_LIBRARY_PATH="$LD_LIBRARY_PATH:${dir%/*}"
      note "WARN  $lib: not on the library path, found in ${dir%/*}"
    else
      note "WARN  $lib: not found on this machine"
    fi
  done
  if ! runs_here && grep -q 'GLIBCXX_\|CXXABI_' "$LOG" && [[ -d $W/compat ]]; then
    export LD_LIBRARY_PATH="$W/compat:$LD_LIBRARY_PATH"
    note "WARN  the C++ runtime here is older than the build's: using the carried one"
  fi
fi
if [[ ${BNORM_CHECK_BUILD:-} == device ]] || { [[ -n $B ]] && ! runs_here; }; then
  say "the carried binaries do not run here: building with tools/gpu_build_here.sh"
  t=$(gc_share "$(gc_left)" 1 2 300)
  if gc_limit "$t" bash tools/gpu_build_here.sh "$root/build/device" "$W" >>"$LOG" 2>&1; then
    B=$root/build/device
    export LD_LIBRARY_PATH="$B${cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
    export BNORM_COMMIT=$commit
    facts+=("build: made here in $(gc_elapsed) s (tools/gpu_build_here.sh), commit $commit")
  else
    bad "build here: failed or out of time after $(gc_elapsed) s (log)"
  fi
fi
