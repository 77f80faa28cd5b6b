#!/usr/bin/env bash
# The GPU check: one command, one call on the device machine (DESIGN.md, "The GPU
# protocol"), about 6 1/2 minutes (380 s) of a 15-minute lease, leaving time for a rerun.
#
#   here:    tools/gpu_pack.sh --data            build (the ci preset: Release, sm_90) and pack
#   device:  bash tools/gpu_check.sh             carry [".carry", ".data"], timeout_s 420
#
# With no arguments every phase runs, in this order (their priority); each gets a budget
# from the time left (tools/gpu_check_lib.sh: its weight's share of what is left among the
# phases still to come, at most its cap), is stopped cleanly when that ends (what it did
# is kept, and the summary says "CUT"), and leaves the rest to the phases after it:
#   info           nvidia-smi; bnorm-bench --print_device: GPU, driver, SMs, copy bandwidth B
#   test           ctest, every label but host: the fast tests, then the >2^31 ones (GpuLarge) alone
#   bench          the headline: bnorm's dispatched choice, cuDNN and PyTorch, forward training,
#                  inference and backward on ResNet-50 (N = 32, 256) and LeNet shapes, fp32 NCHW
#   lenet          bnorm-lenet, 10 epochs on the GPU, then tools/lenet/pytorch_lenet.py likewise
#   sanitize       compute-sanitizer memcheck and racecheck on the library's gpu test programs
#                  (bnorm_gpu_tests, bnorm_gpu_toolbox_tests), small filter
#   bench-more     the headline's columns for the fp16/bf16, NHWC and fused groups
#   sanitize-more  initcheck and synccheck on those; all four on the other gpu test programs
#                  (the LeNet harness's, DLPack's, NCCL's) and on bnorm-tune --check_only
#   tune           bnorm-tune over resnet50,lenet,odd with whatever is left (a cut keeps the
#                  entries done: the cache is rewritten after each)
# Phases named on the command line run alone, in the order above (a rerun of what a first
# call missed); "extra" names the last three, "all" every one. info always runs.
#
# Under $OUT (at most 8 files come back; these are 6, flat, named ready to commit to
# bench/results/), <prefix> = <UTC date>-<the GPU's name as CUDA reports it, slugged>:
#   <prefix>-check.txt    the summary: commit, GPU, driver, B, each phase's budget and time,
#                         each test binary and tool with its result, the headline tables
#                         (rewritten after every phase: a call cut short keeps what ran)
#   <prefix>-log.txt      every command's output, appended as it runs
#   <prefix>.json, .png   the benchmark results (tools/bench_results.py's format) and plot
#   <prefix>-tuning.json  the tuning cache, when tune ran
#   <prefix>-raw.tar.xz   the raw files: bench and PyTorch JSONs, ctest's JUnit files,
#                         LeNet CSVs, the tuner's report, the device facts
# A call with phases named adds them to <prefix> (<prefix>-bench-more_tune-check.txt).
# The last lines printed are the summary.
#
# Environment: OUT (./out), BNORM_CHECK_BUDGET (seconds in all, 380), BNORM_CHECK_RESERVE
# (the wrap-up's part of it, 20), BNORM_CHECK_WORK (scratch, /tmp/bnorm-check),
# BNORM_CHECK_BUILD (a build tree to use instead of the carried one; "device" builds one
# here with tools/gpu_build_here.sh), BNORM_PYTHON (the Python that imports torch; else
# the first of python3, /opt/torch/.venv/bin/python3, /usr/bin/python3 that does),
# BNORM_CTEST_JOBS, BNORM_CHECK_CTEST_FILTER (a ctest -R regex for the fast tests),
# BNORM_SANITIZE_FILTER, BNORM_SANITIZE_SHAPES, BNORM_BENCH_TARGET_MS (20),
# BNORM_BENCH_CHUNK (shapes per bnorm-bench run, 6), BNORM_CHECK_SCALE (percent: the
# phases' caps, minimums and inner reserves, 100),
# BNORM_HEADLINE_GROUPS (resnet50,lenet), BNORM_MORE_GROUPS, BNORM_TUNE_GROUPS,
# BNORM_TUNING_CACHE (a cache for the default rows), BNORM_CUDNN_PATH.
# BNORM_CHECK_STANDINS: a folder of stand-ins for bnorm-bench, bnorm-tune, bnorm-lenet,
# pytorch_bn.py and pytorch_lenet.py (tools/gpu_check_sim.sh; the GPU name then says so).
# shellcheck disable=SC2317  # the phases are called indirectly, as phase_$name
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
# shellcheck source=tools/gpu_check_lib.sh
source "$root/tools/gpu_check_lib.sh"

OUT=${OUT:-$root/out}
W=${BNORM_CHECK_WORK:-/tmp/bnorm-check}
STANDINS=${BNORM_CHECK_STANDINS:-}
TARGET_MS=${BNORM_BENCH_TARGET_MS:-20}
HEADLINE_GROUPS=${BNORM_HEADLINE_GROUPS:-resnet50,lenet}
MORE_GROUPS=${BNORM_MORE_GROUPS:-resnet50-f16,resnet50-bf16,resnet50-nhwc,resnet50-nhwc-f16,resnet50-fused}
TUNE_GROUPS=${BNORM_TUNE_GROUPS:-resnet50,lenet,odd}
LARGE_TESTS='GpuLarge\.'
# Every fixture test and two small shapes of the every-configuration suites (each index
# path: scalar and vector, one and many CTAs per channel); not the >2^31 tests or the
# repeat-for-bitwise ones (the same launches again). A sanitizer multiplies a kernel's
# time by 10-100.
SANITIZE_FILTER=${BNORM_SANITIZE_FILTER:-'Gpu.*:GpuEdges.*:GpuToolbox.*:GpuDlPack.*:SyncNccl.*:Agreement.*:BnOnOff/*:Suite/GpuShapes.*/3x5x7x9_*:Suite/GpuShapes.*/128x16x8x8_*:-*Repeat*'}
SANITIZE_SHAPES=${BNORM_SANITIZE_SHAPES:-3x5x7x9,2x1x1x1,16x6x8x8,128x84,4096x3x1x1,2x4096x1x1,16x16x8x8_f16_nhwc,2x4096x1x1_bf16}
# The headline's rows: the dispatched choice and cuDNN, not every configuration.
HEADLINE_FILTER='^(bnorm/[^/]+/[^/]+/default|cudnn/)'

# ---- the phases (tools/gpu_check_lib.sh, gc_check_phases) ------------------------------
# BNORM_CHECK_SCALE (percent, 100) scales their caps and minimums and the few reserves
# inside the phases: tools/gpu_check_sim.sh runs the whole check in a fraction of the time.
SCALE=${BNORM_CHECK_SCALE:-100}
sc() { gc_scaled "$1" "$SCALE"; }
gc_check_phases "$SCALE"

want=()
for a in "$@"; do
  case $a in
    all) want+=("${GC_ORDER[@]}") ;;
    extra) want+=(bench-more sanitize-more tune) ;;
    -h | --help) sed -n '2,60p' "$0"; exit 0 ;;
    *)
      if [[ -n ${GC_WEIGHT[$a]:-} ]]; then want+=("$a"); else
        echo "gpu_check: unknown phase '$a' (${GC_ORDER[*]} extra all)" >&2
        exit 2
      fi ;;
  esac
done
# A call of some phases names its files after them; one of every phase does not.
tag=""
if ((${#want[@]})); then
  n=0
  for p in "${GC_ORDER[@]}"; do
    [[ $p != info && " ${want[*]} " == *" $p "* ]] && tag+=${tag:+_}$p && n=$((n + 1))
  done
  ((n == ${#GC_ORDER[@]} - 1)) && tag=""
  gc_want info "${want[@]}"
else
  gc_want "${GC_ORDER[@]}"
fi
gc_budget_init "${BNORM_CHECK_BUDGET:-380}" "${BNORM_CHECK_RESERVE:-20}"

# ---- output: the log and the summary ---------------------------------------------------
rm -rf "$W" && mkdir -p "$W/raw" "$OUT"
LOG=$W/log.txt  # moved under $OUT once the GPU's name gives the prefix
: >"$LOG"
DATE=$(date -u +%Y-%m-%d)
PREFIX=""
summary=()    # one line per step: ok / FAIL / CUT / skip / WARN
phases=()     # one line per phase: budget, time, outcome
facts=()      # the header's lines
failed=0
sim=""
[[ -n $STANDINS ]] && sim="SIMULATED with the stand-ins of $STANDINS: nothing here was measured on a GPU"
note() { summary+=("$*"); }
bad() { summary+=("FAIL  $*"); failed=1; }
cutnote() { summary+=("CUT   $*"); }
say() { echo "[gpu_check +$(gc_elapsed)s] $*"; echo "[gpu_check +$(gc_elapsed)s] $*" >>"$LOG"; }
# The output of the commands since mark was taken (a step's own lines of the log).
mark() { stat -c %s "$LOG"; }
since() { tail -c +$(($1 + 1)) "$LOG"; }

write_check() {
  [[ -n $PREFIX ]] || return 0
  local f=$OUT/$PREFIX-check.txt
  {
    echo "# GPU check, $DATE, ${gpu_name:-no GPU}"
    [[ -n $sim ]] && echo "$sim"
    echo
    printf '%s\n' "${facts[@]}"
    echo
    echo "## Phases (budget $GC_TOTAL s in all, $GC_RESERVE s of it for the wrap-up; +$(gc_elapsed) s so far)"
    printf '%s\n' "${phases[@]}"
    echo
    echo "## Results"
    printf '%s\n' "${summary[@]}"
    for t in groups headline lenet; do
      if [[ -s $W/$t.txt ]]; then echo; cat "$W/$t.txt"; fi
    done
  } >"$f.tmp"
  mv "$f.tmp" "$f"
}

# tool NAME DEFAULT: a stand-in of that name if BNORM_CHECK_STANDINS has one.
tool() {
  if [[ -n $STANDINS && -x $STANDINS/$1 ]]; then echo "$STANDINS/$1"; else echo "$2"; fi
}

# ---- the build and the environment (B, PY_TORCH, PY, cuDNN) -----------------------------
# shellcheck source=tools/gpu_check_env.sh
source "$root/tools/gpu_check_env.sh"

have_gpu=0
nvidia-smi -L >/dev/null 2>&1 && have_gpu=1

# ---- info ------------------------------------------------------------------------------
phase_info() {
  local t=$1 rc
  gpu_name=""
  if ((have_gpu)); then
    nvidia-smi >>"$LOG" 2>&1
    smi=$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
          --format=csv,noheader 2>/dev/null | head -1)
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
    gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
    facts+=("nvidia-smi: $smi")
  fi
  local bench
  bench=$(tool bnorm-bench "$B/bench/bnorm-bench")
  gc_limit "$t" "$bench" --print_device >"$W/raw/device.json" 2>>"$LOG"
  rc=$?
  cat "$W/raw/device.json" >>"$LOG"
  if ((rc == 0)); then
    eval "$("$PY" tools/gpu_check_report.py device "$W/raw/device.json")"  # gpu_name, sm_count, copy_gbps, device_line
    facts+=("device: $device_line")
    note "ok    info: $device_line"
  elif ((have_gpu)); then
    bad "info: bnorm-bench --print_device exit $rc (log)"
  else
    note "skip  info: no GPU (nvidia-smi absent or failing): the GPU steps are skipped"
  fi
  PREFIX="$DATE-$(gc_slug "${gpu_name:-no-gpu}")${tag:+-$tag}"
  mv "$LOG" "$OUT/$PREFIX-log.txt" && LOG=$OUT/$PREFIX-log.txt
}

# ---- test --------------------------------------------------------------------------------
# Tests labelled host need what only the packing machine has (Debian's mpirun, the
# Fashion-MNIST package, the install tree): CI runs them there.
phase_test() {
  local t=$1 end=$(($(gc_now) + $1)) jobs rc m fast_t
  if ! command -v ctest >/dev/null; then bad "test: no ctest on this machine"; return; fi
  jobs=${BNORM_CTEST_JOBS:-$(($(nproc) > 12 ? 12 : $(nproc)))}
  (cd "$B" && ctest -LE host --show-only=json-v1 2>>"$LOG") >"$W/raw/tests.json"
  local -a filter=()
  [[ -n ${BNORM_CHECK_CTEST_FILTER:-} ]] && filter=(-R "$BNORM_CHECK_CTEST_FILTER")
  # The >2^31-element tests take tens of GB each: one at a time, after the others,
  # which get all but their share (theirs grows by what the others leave).
  fast_t=$((t - $(gc_share "$t" 1 4 "$(sc 90)")))
  say "test: ctest -LE host -j $jobs, then $LARGE_TESTS alone ($t s; $fast_t s for the first)"
  m=$(mark)
  # BNORM_REQUIRE_CUDA: the Python package's CUDA tests fail, not skip, where their torch
  # or bnorm sees no GPU (python/tests/run.sh).
  (cd "$B" && gc_limit "$fast_t" env BNORM_REQUIRE_CUDA=1 ctest -LE host -E "$LARGE_TESTS" "${filter[@]}" -j "$jobs" --timeout 120 \
     --output-on-failure --no-tests=ignore --output-junit "$W/raw/ctest.xml") >>"$LOG" 2>&1
  rc=$?
  since "$m" >"$W/ctest-fast.out"
  m=$(mark)
  (cd "$B" && gc_limit $((end - $(gc_now))) ctest -LE host -R "$LARGE_TESTS" -j 1 --timeout 200 \
     --output-on-failure --no-tests=ignore --output-junit "$W/raw/ctest-large.xml") >>"$LOG" 2>&1
  local rc2=$?
  since "$m" >"$W/ctest-large.out"
  local line
  while IFS= read -r line; do
    summary+=("$line")
    [[ $line == FAIL* ]] && failed=1
  done < <("$PY" tools/gpu_check_report.py ctest --tests "$W/raw/tests.json" --label "test" \
             --filter "${BNORM_CHECK_CTEST_FILTER:-}" --large "$LARGE_TESTS" --part "fast=$W/ctest-fast.out:$rc" --part "large=$W/ctest-large.out:$rc2")
}

# ---- bench -------------------------------------------------------------------------------
# bench_groups NAME GROUPS SECONDS: bnorm-bench (the default and cuDNN rows) a few shapes
# per run, so a cut loses only the run in flight, then pytorch_bn.py on the same shapes
# (it rewrites its file after every shape); merged into $W/results-NAME.json.
bench_groups() {
  local name=$1 groups=$2 t=$3 end=$(($(gc_now) + $3)) bench pt rc suite=$W/raw/suite-$1.json
  bench=$(tool bnorm-bench "$B/bench/bnorm-bench")
  if ! gc_limit "$(sc 30)" "$bench" --groups="$groups" --print_suite >"$suite" 2>>"$LOG"; then
    bad "$name: bnorm-bench --groups=$groups --print_suite failed (log)"
    return 1
  fi
  local shapes chunks=() chunk="" n=0 s
  # Smallest tensors first: a cut loses the fewest shapes, and the LeNet ones (launch-
  # bound, a few milliseconds each) are never the ones lost.
  mapfile -t shapes < <("$PY" -c '
import json, sys
elem = {"f32": 4, "f16": 2, "bf16": 2}
suite = json.load(open(sys.argv[1]))
for s in sorted(suite, key=lambda s: elem.get(s.get("dtype", "f32"), 4) * s["n"] * s["c"] * s["h"] * s["w"]):
    print(s["name"])' "$suite")
  for s in "${shapes[@]}"; do
    chunk+=${chunk:+,}$s
    n=$((n + 1))
    if ((n == ${BNORM_BENCH_CHUNK:-6})); then chunks+=("$chunk"); chunk=""; n=0; fi
  done
  [[ -n $chunk ]] && chunks+=("$chunk")
  # bnorm and cuDNN first (55% of the budget less the merge's part), then PyTorch.
  local merge_t bnorm_t
  merge_t=$(sc 10)
  bnorm_t=$(((t - merge_t) * 55 / 100))
  local bnorm_end=$(($(gc_now) + bnorm_t)) jsons=() i=0 measured=0 out was_cut=0
  say "$name: groups $groups: ${#shapes[@]} shapes in ${#chunks[@]} bnorm-bench runs, then PyTorch ($t s)"
  for chunk in "${chunks[@]}"; do
    out=$(printf '%s/raw/bench-%s-%02d.json' "$W" "$name" "$i")
    i=$((i + 1))
    gc_limit $((bnorm_end - $(gc_now))) "$bench" --bnorm_shapes="$chunk" --benchmark_filter="$HEADLINE_FILTER" \
      --bnorm_target_ms="$TARGET_MS" --benchmark_out="$out" --benchmark_out_format=json >>"$LOG" 2>&1
    rc=$?
    if ((rc == 0)) && [[ -s $out ]]; then
      jsons+=("$out")
      measured=$((measured + $(tr ',' '\n' <<<"$chunk" | wc -l)))
    elif gc_was_cut "$rc"; then
      rm -f "$out"  # half written
      was_cut=1
      break
    else
      bad "$name: bnorm-bench on $chunk: exit $rc (log)"
    fi
  done
  ((was_cut)) && cutnote "$name: bnorm-bench: $measured of ${#shapes[@]} shapes measured in its $bnorm_t s"
  if ((${#jsons[@]} == 0)); then
    ((was_cut)) || bad "$name: no bnorm-bench results"
    return 1
  fi
  local bw
  bw=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["context"].get("copy_bandwidth_gb_per_s", 0))' "${jsons[0]}")
  pt=$W/raw/pytorch-$name.json
  if [[ -z $PY_TORCH ]]; then
    bad "$name: no Python with torch: no PyTorch peer"
  else
    say "$name: PyTorch peer ($((end - merge_t - $(gc_now))) s)"
    PYTHONUNBUFFERED=1 gc_limit $((end - merge_t - $(gc_now))) "$PY_TORCH" "$(tool pytorch_bn.py bench/peers/pytorch_bn.py)" \
      --out "$pt" --suite "$suite" --copy-gbps "$bw" --target-ms "$TARGET_MS" >>"$LOG" 2>&1
    rc=$?
    if gc_was_cut "$rc"; then
      cutnote "$name: pytorch_bn.py: $("$PY" tools/gpu_check_report.py count-rows "$pt") rows measured in its budget"
    elif ((rc != 0)); then
      bad "$name: pytorch_bn.py exit $rc (log)"
    fi
  fi
  local args=(merge --bench "${jsons[@]}" --out-dir "$W" --date "$DATE" --tag "$name")
  [[ -s $pt ]] && args+=(--pytorch "$pt")
  [[ -n ${driver:-} ]] && args+=(--driver "$driver")
  local res
  if ! res=$("$PY" tools/bench_results.py "${args[@]}" 2>>"$LOG"); then
    bad "$name: merging the results failed (log)"
    return 1
  fi
  mv "$res" "$W/results-$name.json"
  note "ok    $name: $("$PY" tools/gpu_check_report.py count-rows "$W/results-$name.json") rows ($groups)"
}

# Every results file so far as $OUT/<prefix>.json, its plot and the tables.
publish_results() {
  local files=() f
  for f in "$W"/results-bench.json "$W"/results-bench-more.json; do [[ -f $f ]] && files+=("$f"); done
  ((${#files[@]})) || return 0
  local res=$OUT/$PREFIX.json
  "$PY" tools/bench_results.py combine "${files[@]}" -o "$res" >/dev/null 2>>"$LOG" || { bad "results: combine failed (log)"; return; }
  {
    { echo "## Per op and group (tools/bench_results.py table: the check times bnorm's default only, so 'bnorm best' is the default)"
      "$PY" tools/bench_results.py table "$res" || echo "table failed"; } >"$W/groups.txt"
    "$PY" tools/gpu_check_report.py headline --groups "$HEADLINE_GROUPS" "$res" >"$W/headline.txt" || : >"$W/headline.txt"
    cat "$W/groups.txt" "$W/headline.txt"
  } >>"$LOG" 2>&1
  [[ -s $W/headline.txt ]] || bad "results: the headline table failed (log)"
  if ! gc_limit "$(sc 60)" "$PY" tools/plot_bench.py "$res" -o "$OUT/$PREFIX.png" >>"$LOG" 2>&1; then
    bad "results: the plot failed (log)"
  fi
}

phase_bench() {
  bench_groups bench "$HEADLINE_GROUPS" "$1" && publish_results
}

phase_bench_more() {
  bench_groups bench-more "$MORE_GROUPS" "$1" && publish_results
}

# ---- lenet -------------------------------------------------------------------------------
# BN-LeNet, ten epochs at the CPU runs' settings (tools/lenet/RESULTS.md), then the same
# network in PyTorch eager on the same GPU. The data travel beside the build:
# tools/gpu_pack.sh --data copies the IDX files to .data/ (carry it too).
phase_lenet() {
  local t=$1 end=$(($(gc_now) + $1)) data=${BNORM_LENET_DATA:-$root/.data/fashion-mnist} rc m
  if [[ ! -f $data/train-images-idx3-ubyte.gz ]]; then
    bad "lenet: no Fashion-MNIST under $data (tools/gpu_pack.sh --data, carry .data)"
    return
  fi
  say "lenet: bnorm-lenet --device cuda --epochs 10 ($((t / 2)) s)"
  m=$(mark)
  gc_limit $((t / 2)) "$(tool bnorm-lenet "$B/tools/lenet/bnorm-lenet")" --device cuda --epochs 10 --data "$data" \
    --csv "$W/raw/lenet-bnorm.csv" >>"$LOG" 2>&1
  rc=$?
  since "$m" >"$W/lenet-bnorm.out"
  local rc_b=$rc
  if [[ -z $PY_TORCH ]]; then
    bad "lenet: no Python with torch: no PyTorch run"
  else
    say "lenet: pytorch_lenet.py --device cuda --epochs 10 ($((end - $(gc_now))) s)"
    m=$(mark)
    PYTHONUNBUFFERED=1 gc_limit $((end - $(gc_now))) "$PY_TORCH" "$(tool pytorch_lenet.py tools/lenet/pytorch_lenet.py)" \
      --device cuda --epochs 10 --data "$data" --csv "$W/raw/lenet-pytorch.csv" >>"$LOG" 2>&1
    rc=$?
    since "$m" >"$W/lenet-pytorch.out"
  fi
  local line
  while IFS= read -r line; do
    summary+=("$line")
    [[ $line == FAIL* ]] && failed=1
  done < <("$PY" tools/gpu_check_report.py lenet --table "$W/lenet.txt" \
             --run "bnorm-lenet=$W/lenet-bnorm.out:$rc_b" ${PY_TORCH:+--run "pytorch_lenet.py=$W/lenet-pytorch.out:$rc"})
}

# ---- sanitize ------------------------------------------------------------------------------
# sanitize_runs NAME SECONDS TOOL:WEIGHT:COMMAND...: each run under compute-sanitizer with
# its weight's share of the time left among the runs to come, at least a minimum (a
# quick run leaves its time to the others; the last ones are not run when too little is
# left). The weight is the program's number of gpu tests: the one of hundreds is the one
# that needs the time.
sanitize_runs() {
  local name=$1 t=$2 end=$(($(gc_now) + $2)) cs
  shift 2
  cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
  if [[ -z $cs ]]; then bad "$name: compute-sanitizer not found"; return; fi
  local run tool w prog per rc m extra rest=0 prog_name
  for run in "$@"; do w=${run#*:}; rest=$((rest + ${w%%:*})); done
  say "$name: $# runs in $t s"
  for run in "$@"; do
    tool=${run%%:*}
    w=${run#*:}
    prog=${w#*:}
    w=${w%%:*}
    prog_name=$(basename "${prog%% *}")
    per=$(gc_share $((end - $(gc_now))) "$w" "$rest" 0)
    rest=$((rest - w))
    if ((end - $(gc_now) < $(sc 10))); then
      cutnote "$name: $tool $prog_name: not run, out of time"
      continue
    fi
    ((per < $(sc 10))) && per=$(sc 10)
    extra=()
    [[ $tool == memcheck ]] && extra=(--leak-check full)
    echo "=== $tool: $prog (at most $per s)" >>"$LOG"
    m=$(mark)
    # shellcheck disable=SC2086  # prog is a command line
    gc_limit "$per" "$cs" --tool "$tool" --error-exitcode 99 "${extra[@]}" $prog >>"$LOG" 2>&1
    rc=$?
    summary+=("$(since "$m" | "$PY" tools/gpu_check_report.py sanitize --tool "$tool" --program "$prog_name" \
                 --rc "$rc" --seconds "$per")")
    [[ ${summary[-1]} == FAIL* ]] && failed=1
  done
}

# "TESTS PROGRAM" per gpu-labelled test program, the fewest tests first.
gpu_test_programs() {
  "$PY" tools/gpu_check_report.py programs --counts --label gpu "$W/raw/tests.json" 2>>"$LOG"
}

# The library's own test programs first (memcheck and racecheck in the priority phase);
# the other gpu programs (the harness's, DLPack's, NCCL's) and the tuner's sweep after.
LIBRARY_TEST_PROGRAMS='^(bnorm_gpu_tests|bnorm_gpu_toolbox_tests)$'

# sanitize_list TOOLS LIBRARY|OTHERS: the runs, as sanitize_runs takes them.
sanitize_list() {
  local tools=$1 which=$2 tool w p
  [[ -s $W/raw/tests.json ]] || (cd "$B" && ctest -LE host --show-only=json-v1 2>>"$LOG") >"$W/raw/tests.json"
  for tool in $tools; do
    while read -r w p; do
      if { [[ $(basename "$p") =~ $LIBRARY_TEST_PROGRAMS ]] && [[ $which == library ]]; } ||
         { [[ ! $(basename "$p") =~ $LIBRARY_TEST_PROGRAMS ]] && [[ $which == others ]]; }; then
        echo "$tool:$((w < 20 ? 20 : w)):$p --gtest_filter=$SANITIZE_FILTER"
      fi
    done < <(gpu_test_programs)
  done
}

phase_sanitize() {
  local runs
  mapfile -t runs < <(sanitize_list "memcheck racecheck" library)
  sanitize_runs sanitize "$1" "${runs[@]}"
}

phase_sanitize_more() {
  local runs tool
  mapfile -t runs < <(sanitize_list "initcheck synccheck" library; sanitize_list "memcheck racecheck initcheck synccheck" others)
  # The tuner's sweep: every configuration of a few small shapes.
  for tool in memcheck racecheck initcheck synccheck; do
    runs+=("$tool:40:$(tool bnorm-tune "$B/bench/bnorm-tune") --check_only --shapes=$SANITIZE_SHAPES")
  done
  sanitize_runs sanitize-more "$1" "${runs[@]}"
}

# ---- tune ------------------------------------------------------------------------------------
phase_tune() {
  local t=$1 rc cache=$W/tuning.json m
  say "tune: bnorm-tune over $TUNE_GROUPS ($t s)"
  m=$(mark)
  gc_limit "$t" "$(tool bnorm-tune "$B/bench/bnorm-tune")" --fresh --groups="$TUNE_GROUPS" --out="$cache" \
    --report="$W/raw/tune_report.json" >>"$LOG" 2>&1
  rc=$?
  [[ -s $cache ]] && cp "$cache" "$OUT/$PREFIX-tuning.json"
  local entries
  entries=$("$PY" tools/gpu_check_report.py count-entries "$cache")
  # A configuration outside tolerance is a library bug, cut or not.
  if since "$m" | grep -q REJECTED; then
    bad "tune: configurations REJECTED (log); $entries entries"
  elif gc_was_cut "$rc"; then
    cutnote "tune: stopped on its budget; the cache keeps the $entries entries done"
  elif ((rc != 0)); then
    bad "tune: exit $rc (log); $entries entries"
  else
    note "ok    tune: $entries entries ($TUNE_GROUPS)"
  fi
}

# ---- run -------------------------------------------------------------------------------------
for p in "${GC_ORDER[@]}"; do
  gc_wanted "$p" || continue
  t=$(gc_budget "$p")
  t0=$(gc_now)
  n_summary=${#summary[@]}
  if ((t == 0)); then
    status="not run: out of time"
    cutnote "$p: not run, out of time (a call of its own: bash tools/gpu_check.sh $p)"
  elif [[ -z $B ]]; then
    status="skipped"
    note "skip  $p: no build"
  elif [[ $p != info && $p != test ]] && ((!have_gpu)); then
    status="skipped"
    note "skip  $p: no GPU"
  else
    say "phase $p: budget $t s ($(gc_left) s left)"
    "phase_${p//-/_}" "$t"
    status=ok
    for line in "${summary[@]:n_summary}"; do
      case $line in FAIL*) status=FAIL ;; CUT*) [[ $status != FAIL ]] && status=CUT ;; skip*) [[ $status == ok ]] && status=skipped ;; esac
    done
  fi
  phases+=("$(printf '%-14s %4s s of %4s s  %s' "$p" $(($(gc_now) - t0)) "$t" "$status")")
  write_check
done

# ---- wrap-up -----------------------------------------------------------------------------------
if [[ -z $PREFIX ]]; then  # info was not run: name the files anyway
  PREFIX="$DATE-no-gpu${tag:+-$tag}"
  mv "$LOG" "$OUT/$PREFIX-log.txt" && LOG=$OUT/$PREFIX-log.txt
fi
if compgen -G "$W/raw/*" >/dev/null; then
  tar -C "$W/raw" -cJf "$OUT/$PREFIX-raw.tar.xz" . 2>>"$LOG" || bad "wrap-up: the raw archive failed"
fi
if ! problems=$(gc_check_out "$OUT"); then
  bad "wrap-up: \$OUT would not all come back: $(echo "$problems" | tr '\n' ';')"
fi
phases+=("$(printf '%-14s %4s s in all' "total" "$(gc_elapsed)")")
write_check
echo
echo "==== gpu_check: $OUT/$PREFIX-check.txt (its per-shape table left out here)"
sed '/^## Per shape/,/^vs: /d' "$OUT/$PREFIX-check.txt"
echo
echo "(under $OUT: $(cd "$OUT" && for f in *; do printf '%s (%s bytes)  ' "$f" "$(stat -c %s "$f")"; done))"
exit $failed
