#!/usr/bin/env bash
# tools/gpu_check.sh without a GPU: the whole run, every phase, against stand-ins
# (tools/gpu_check_sim/: nvidia-smi, compute-sanitizer, bnorm-bench, bnorm-tune,
# bnorm-lenet, pytorch_bn.py, pytorch_lenet.py) on a budget small enough that phases
# are cut, then checks what it left under $OUT.
#
#   tools/gpu_check_sim.sh                  the carried pack (tools/gpu_pack.sh --data first),
#                                           150 s, every cpu test (the test phase is cut)
#   tools/gpu_check_sim.sh --build DIR      a build tree instead, 90 s, a few tests (ctest
#                                           gpu_check_simulated runs this on the ci build)
#
# What is real: the script, its budgets and cuts, the carried build's unpacking and path
# rewriting (first form), ctest with the build's tests (the gpu ones skip here), the gtest
# binaries under the sanitizer stand-in, bnorm-bench's suite, bnorm-lenet (on the CPU, on
# a few images), the merge, tables and plot. What is made up: the GPU ("NVIDIA H200
# (stand-in)"), the benchmark and tuning numbers (a bandwidth model) and the PyTorch
# runs, each taking set wall time per row so that the budgets bite, and one planted
# sanitizer error (racecheck on bnorm_gpu_toolbox_tests), which must fail the run.
# Checked: the exit status, every phase in the summary, the cuts of the headline bench
# and of the tuner (with the entries they kept), the planted error, the files (at most
# 8, 16 MiB, two folders deep, names the device returns) and the time taken.
#
# Environment: BNORM_SIM_DIR (scratch, default a new temporary folder, kept), and the
# stand-ins' BNORM_SIM_* pacing (see each stand-in).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/gpu_check_lib.sh
source "$root/tools/gpu_check_lib.sh"

build=""
if [[ ${1:-} == --build ]]; then
  build=$(cd "${2:?build dir}" && pwd) || exit 2
fi
dir=${BNORM_SIM_DIR:-$(mktemp -d /tmp/gpu-check-sim.XXXXXX)}
rm -rf "$dir/out" "$dir/work"
mkdir -p "$dir"
standins=$root/tools/gpu_check_sim
export PATH="$standins:$PATH"
export OUT=$dir/out BNORM_CHECK_WORK=$dir/work BNORM_CHECK_STANDINS=$standins
export BNORM_SIM_SANITIZER_ERROR=racecheck:bnorm_gpu_toolbox_tests
export BNORM_BENCH_CHUNK=3
if [[ -n $build ]]; then
  export BNORM_CHECK_BUILD=$build BNORM_SIM_REAL_BUILD=$build
  # The set-up counts against the budget as on the device; a cold start (torch imported
  # from a fresh disk cache: 7 s each) once took 45 s of 50 in CI's fresh clone. cuDNN
  # is not probed (the bench is a stand-in).
  export BNORM_CHECK_BUDGET=${BNORM_CHECK_BUDGET:-90} BNORM_CHECK_RESERVE=${BNORM_CHECK_RESERVE:-4}
  export BNORM_CUDNN_PATH=${BNORM_CUDNN_PATH:-"stand-in (not probed)"}
  export BNORM_CHECK_SCALE=${BNORM_CHECK_SCALE:-15}
  export BNORM_CHECK_CTEST_FILTER=${BNORM_CHECK_CTEST_FILTER:-'^(c_api_test|exported_symbols|Gpu\.Query.*)$'}
  export BNORM_LENET_DATA=${BNORM_LENET_DATA:-/usr/share/datasets/fashion-mnist} BNORM_SIM_LENET_TRAIN=256
  # The headline's bnorm-bench gets 11 s of its 22 and has 198 rows: at 0.05 s a row a fast
  # machine (CI's, once) finished all 22 shapes in time, so the rows take 20 s and it is
  # cut after a few runs however fast the machine.
  export BNORM_SIM_BENCH_ROW_SECONDS=${BNORM_SIM_BENCH_ROW_SECONDS:-0.1}
  # The tuner's 78 entries take 78 s, more than it can get however fast the set-up was
  # (warm, it is left 42 s: 0.4 s an entry was not cut).
  export BNORM_SIM_TUNE_ENTRY_SECONDS=${BNORM_SIM_TUNE_ENTRY_SECONDS:-1}
else
  [[ -f $root/.carry/pack.tar.xz ]] || { echo "gpu_check_sim: no .carry: run tools/gpu_pack.sh --data first" >&2; exit 2; }
  export BNORM_SIM_REAL_BUILD=$BNORM_CHECK_WORK/build  # unpacked there by gpu_check.sh
  export BNORM_CHECK_BUDGET=${BNORM_CHECK_BUDGET:-150} BNORM_CHECK_SCALE=${BNORM_CHECK_SCALE:-40}
  export BNORM_CHECK_RESERVE=${BNORM_CHECK_RESERVE:-8} BNORM_CTEST_JOBS=${BNORM_CTEST_JOBS:-2}
  # The headline's 198 rows take 40 s, its bnorm-bench share about 15.
  export BNORM_SIM_BENCH_ROW_SECONDS=${BNORM_SIM_BENCH_ROW_SECONDS:-0.2}
  # The tuner's 78 entries take 78 s, more than it gets.
  export BNORM_SIM_TUNE_ENTRY_SECONDS=${BNORM_SIM_TUNE_ENTRY_SECONDS:-1}
fi

echo "== gpu_check_sim: tools/gpu_check.sh, budget $BNORM_CHECK_BUDGET s, scale $BNORM_CHECK_SCALE%, in $dir"
start=$SECONDS
bash "$root/tools/gpu_check.sh" >"$dir/stdout.txt" 2>&1
rc=$?
took=$((SECONDS - start))
tail -n 80 "$dir/stdout.txt"

fails=0
check() {  # check WHAT COMMAND...: one line per check
  if "${@:2}"; then echo "ok    $1"; else echo "FAIL  $1"; fails=$((fails + 1)); fi
}
has() { grep -qE -- "$1" "$check_txt"; }
check_txt=$(find "$OUT" -maxdepth 1 -name "*-check.txt" 2>/dev/null | head -1)
prefix=${check_txt%-check.txt}
echo
echo "== gpu_check_sim: what it left"
(cd "$OUT" && for f in *; do printf '  %-56s %9s bytes\n' "$f" "$(stat -c %s "$f")"; done)
check "gpu_check exits 1 (the planted sanitizer error), got $rc" test "$rc" = 1
check "took $took s of a $BNORM_CHECK_BUDGET s budget (+10 s)" test "$took" -le $((BNORM_CHECK_BUDGET + 10))
check "the summary: $(basename "${check_txt:-none}")" test -s "${check_txt:-/nonexistent}"
check "the files are named after the stand-in GPU" test "$(basename "$prefix")" = "$(date -u +%Y-%m-%d)-NVIDIA-H200-stand-in"
check "\$OUT would come back whole (at most 8 files, 16 MiB, 2 folders, plain names)" gc_check_out "$OUT"
for f in -log.txt .json -tuning.json -raw.tar.xz; do
  check "$(basename "$prefix")$f" test -s "$prefix$f"
done
if "${PYTHON:-python3}" -c 'import matplotlib' 2>/dev/null || /usr/bin/python3 -c 'import matplotlib' 2>/dev/null; then
  check "$(basename "$prefix").png" test -s "$prefix.png"
fi
for p in info test bench lenet sanitize bench-more sanitize-more tune; do
  check "phase $p in the summary" has "^$p +[0-9]+ s of +[0-9]+ s  "
done
check "the summary says it is simulated" has "^SIMULATED"
check "the device facts: SMs and copy bandwidth" has "132 SMs.*copy bandwidth B = 4300.0 GB/s"
check "ctest's results per program" has "^ok +test: c_api_test: 1 passed"
check "the headline bench cut on its budget, what it measured kept" has "^CUT +bench: bnorm-bench: [1-9][0-9]* of 22 shapes measured"
check "the headline table" has "^forward_training +[0-9]+x"
check "the LeNet table (a run or its cut)" has "^bnorm-lenet +(10|[0-9]+ cut) "
check "the planted sanitizer error" has "^FAIL +sanitize: racecheck bnorm_gpu_toolbox_tests: 1 errors"
check "memcheck clean elsewhere" has "^ok +sanitize: memcheck bnorm_gpu_tests: "
check "the tuner cut on its budget, its entries kept" has "^CUT +tune: stopped on its budget; the cache keeps the [1-9][0-9]* entries done"
n=$(tar -tJf "$prefix-raw.tar.xz" 2>/dev/null | grep -c 'bench-bench-')
check "the raw archive holds the headline's bnorm-bench files ($n)" test "$n" -ge 1
echo "gpu_check_sim: $fails checks failed (outputs under $dir)"
((fails == 0))
