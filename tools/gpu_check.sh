#!/usr/bin/env bash
# The one command for the device machine (DESIGN.md, "The GPU protocol").
#
#   here:    tools/gpu_pack.sh                       build (Release, sm_90) into .carry/
#   device:  bash tools/gpu_check.sh PHASE...        with .carry carried
#
# Phases, in this order whatever the order given (lenet after bench):
#   test      ctest, every label but host, with the GPU                -> $OUT/test.log
#   sanitize  compute-sanitizer (BNORM_SANITIZE_TOOLS, default memcheck racecheck
#             initcheck synccheck) on every gpu-labelled test binary, filtered to the
#             small shapes (BNORM_SANITIZE_FILTER), and on bnorm-tune --check_only (all
#             configurations of a few small shapes)                     -> $OUT/sanitize.log
#   tune      bnorm-tune over the groups of BNORM_TUNE_GROUPS, else those of the bench
#             (fused shapes are not tuned: they use their plain op's entries) -> $OUT/tune.log,
#             $OUT/bnorm_tuning.json (the cache), $OUT/tune_report.json
#   bench     bnorm-bench (bnorm + cuDNN) over the groups of BNORM_BENCH_GROUPS, a few
#             shapes per run, then bench/peers/pytorch_bn.py on the same shapes, merged into
#             bench/results/<date>-<gpu>[-<groups>].json with its PNG -> $OUT/bench.log,
#             $OUT/<date>-<gpu>[-<groups>].json and .png
#   all       all four (may not fit one 10-minute call: later phases get what is left)
# A tune before bench in the same call makes the bench's "default" rows use the new
# cache; in a call of its own, bench uses BNORM_TUNING_CACHE if the caller sets it (a
# cache committed from an earlier run, say). Each call fits the device's 10 minutes:
# the phases share BNORM_CHECK_BUDGET seconds (default 560) and a phase cut short says
# so. The calls that fit (bench/README.md, "The GPU check"):
#   bash tools/gpu_check.sh test lenet
#   BNORM_SANITIZE_TOOLS="memcheck racecheck" bash tools/gpu_check.sh sanitize
#   BNORM_SANITIZE_TOOLS="initcheck synccheck" bash tools/gpu_check.sh sanitize
#   bash tools/gpu_check.sh tune bench        # the F32 NCHW groups: resnet50, lenet, odd
#   BNORM_BENCH_GROUPS=resnet50-f16,resnet50-bf16 bash tools/gpu_check.sh bench
#   BNORM_BENCH_GROUPS=resnet50-nhwc,resnet50-nhwc-f16,resnet50-fused bash tools/gpu_check.sh bench
# At most 8 files are written under $OUT (what the device returns). The last lines
# printed are the summary and the short results table.
#
# Environment: OUT (default ./out), PYTHON (python3), BNORM_CHECK_BUDGET,
# BNORM_CHECK_WORK (scratch, default /tmp/bnorm-check), BNORM_CTEST_JOBS (4),
# BNORM_SANITIZE_TOOLS, BNORM_SANITIZE_FILTER (a gtest filter for the sanitizer runs;
# '*' for every test), BNORM_SANITIZE_SHAPES,
# BNORM_TUNE_GROUPS, BNORM_TUNE_ARGS, BNORM_BENCH_ARGS (extra arguments), BNORM_BENCH_CHUNK (shapes per
# bnorm-bench run, 3), BNORM_BENCH_GROUPS (suite groups of the bench phase, comma-separated,
# default resnet50,lenet,odd; "all" for every group), BNORM_BENCH_CONFIGS (all, or top: the
# heuristic's and the tuning cache's three per shape and op), BNORM_BENCH_TARGET_MS (device
# time per row, 20), BNORM_CUDNN_PATH.
# Without a GPU (nvidia-smi absent) the GPU steps are skipped; for testing the script
# here, BNORM_CHECK_BENCH_JSON / BNORM_CHECK_PYTORCH_JSON stand in for the outputs of
# bnorm-bench and pytorch_bn.py.
set -uo pipefail
# shellcheck disable=SC2317  # the phases are called indirectly, as phase_$name

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1
OUT=${OUT:-$root/out}
W=${BNORM_CHECK_WORK:-/tmp/bnorm-check}
PY=${PYTHON:-python3}
BUDGET=${BNORM_CHECK_BUDGET:-560}
# The suite groups of tune and bench unless BNORM_BENCH_GROUPS (or BNORM_TUNE_GROUPS)
# says otherwise: the F32 NCHW ones; the others take calls of their own.
BENCH_GROUPS_DEFAULT=resnet50,lenet,odd
mkdir -p "$OUT"

summary=()
failed=0
note() { summary+=("$*"); }
bad() { summary+=("FAIL  $*"); failed=1; }
say() { echo "[gpu_check +$((SECONDS))s] $*"; }
left() { echo $((BUDGET - SECONDS)); }
# Seconds a phase may use: its cap, within what is left less a reserve for the wrap-up.
phase_time() { local cap=$1 l=$(($(left) - 15)); echo $((l < cap ? l : cap)); }

# ---- phases asked for --------------------------------------------------------------
want=()
for a in "$@"; do
  case $a in
    all) want+=(test sanitize tune bench lenet) ;;
    test | sanitize | tune | bench | lenet) want+=("$a") ;;
    -h | --help) sed -n '2,45p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown phase '$a' (test sanitize tune bench all)" >&2; exit 2 ;;
  esac
done
((${#want[@]})) || want=(test sanitize tune bench)
wants() { [[ " ${want[*]} " == *" $1 "* ]]; }

# ---- the carried build ---------------------------------------------------------------
if [[ ! -f .carry/meta.env || ! -f .carry/pack.tar.xz ]]; then
  echo "gpu_check: no carried build: run tools/gpu_pack.sh first and carry .carry" >&2
  exit 2
fi
# shellcheck source=/dev/null
source .carry/meta.env
rm -rf "$W" && mkdir -p "$W"
if ! tar -C "$W" -xJf .carry/pack.tar.xz 2>/dev/null; then
  "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    .carry/pack.tar.xz "$W" || { echo "gpu_check: cannot unpack .carry/pack.tar.xz" >&2; exit 2; }
fi
B=$W/build
# ctest's files name the build and source folders of the packing machine, its cmake and
# its gtest discovery script: point them here. Editing the _include files makes ctest
# re-discover the gtest cases on this machine, where the GPU is.
dev_cmake=$(command -v cmake || true)
sed_args=(-e "s#${BNORM_PACK_BUILD}#${B}#g" -e "s#${BNORM_PACK_SRC}#${root}#g")
[[ -n ${BNORM_PACK_GTEST_MODULE:-} ]] && sed_args+=(-e "s#${BNORM_PACK_GTEST_MODULE}#${W}/cmake/GoogleTestAddTests.cmake#g")
[[ -n $dev_cmake && -n ${BNORM_PACK_CMAKE:-} ]] && sed_args+=(-e "s#\"${BNORM_PACK_CMAKE}\"#\"${dev_cmake}\"#g")
find "$B" -name '*.cmake' -print0 | xargs -0 -r sed -i "${sed_args[@]}"

# The same hash gpu_pack.sh took: a different one means these sources are not the ones
# the carried build was made from.
src_hash=$(find CMakeLists.txt cmake include host kernels bench tests tools -type f \
             \( -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h' \
                -o -name '*.c' -o -name '*.txt' -o -name '*.cmake' -o -name '*.in' -o -name '*.map' \) \
             2>/dev/null | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -c1-16)
stale=""
[[ $src_hash != "${BNORM_PACK_SOURCES:-}" ]] && stale="STALE BUILD: the sources differ from those packed (re-run tools/gpu_pack.sh)"

export BNORM_COMMIT=${BNORM_PACK_COMMIT:-unknown}
cuda_libs=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
  [[ -d $d ]] && cuda_libs+=":$d"
done
export LD_LIBRARY_PATH="$W/lib:$B${cuda_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# cuDNN: where PyTorch loads it from, else a search of the usual places.
if [[ -z ${BNORM_CUDNN_PATH:-} ]]; then
  BNORM_CUDNN_PATH=$("$PY" - 2>/dev/null <<'EOF'
import torch
torch.backends.cudnn.version()
for line in open("/proc/self/maps"):
    path = line.split()[-1]
    if path.endswith("/libcudnn.so.9"):
        print(path)
        break
EOF
  )
  [[ -z $BNORM_CUDNN_PATH ]] && BNORM_CUDNN_PATH=$(find /opt /usr/local /usr/lib -name 'libcudnn.so.9' 2>/dev/null | head -1)
fi
export BNORM_CUDNN_PATH

have_gpu=0
nvidia-smi -L >/dev/null 2>&1 && have_gpu=1
gpu_line="no GPU (nvidia-smi absent or failing): GPU steps are skipped"
driver=""
if ((have_gpu)); then
  nvidia-smi
  gpu_line=$(nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw \
             --format=csv,noheader 2>/dev/null | head -1)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1)
fi
header="commit $BNORM_COMMIT (packed $BNORM_PACK_DATE) | $gpu_line | cuDNN ${BNORM_CUDNN_PATH:-not found}"
say "$header"
[[ -n $stale ]] && { say "$stale"; note "WARN  $stale"; }

missing=$(find "$B" -type f -perm -u+x -print0 | xargs -0 -r -n1 ldd 2>/dev/null | grep 'not found' | sort -u)
[[ -n $missing ]] && { say "libraries not found: $missing"; note "WARN  libraries not found: $(echo "$missing" | tr '\n' ' ')"; }

# ---- test -------------------------------------------------------------------------------
phase_test() {
  local log=$OUT/test.log t
  t=$(phase_time 300)
  # Tests labelled host need what only the packing machine has (Debian's mpirun, the
  # Fashion-MNIST package, the install tree, matplotlib): CI runs them there.
  say "test: ctest, every label but host ($t s)"
  echo "$header" >"$log"
  if ! command -v ctest >/dev/null; then
    bad "test: no ctest on this machine"
    return
  fi
  (cd "$B" && timeout "$t" ctest --output-on-failure -j "${BNORM_CTEST_JOBS:-4}" --timeout 240 -LE host) >>"$log" 2>&1
  local rc=$? line skipped
  line=$(grep -E '^[0-9]+% tests passed' "$log" | tail -1)
  skipped=$(grep -c '(Skipped)' "$log")
  if ((rc == 124)); then
    bad "test: ctest timed out after $t s ($line)"
  elif ((rc != 0)); then
    bad "test: $line; $skipped skipped (see test.log)"
  else
    note "ok    test: $line; $skipped skipped"
  fi
}

# ---- sanitize -----------------------------------------------------------------------------
# A sanitizer multiplies a kernel's time by 10-100: the default filter keeps every test
# of the fixtures and two small shapes of the every-configuration suites (each of their
# index paths: scalar and vector, one and many CTAs per channel), and leaves out the
# >2^31-element tests and the repeat-for-bitwise ones (the same launches again).
SANITIZE_FILTER_DEFAULT='Gpu.*:GpuEdges.*:GpuToolbox.*:SyncNccl.*:Agreement.*:BnOnOff/*:Suite/GpuShapes.*/3x5x7x9_*:Suite/GpuShapes.*/128x16x8x8_*:-*Repeat*'

phase_sanitize() {
  local log=$OUT/sanitize.log t cs
  t=$(phase_time 540)
  echo "$header" >"$log"
  if ((!have_gpu)); then
    note "skip  sanitize: no GPU"
    return
  fi
  cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
  if [[ -z $cs ]]; then
    bad "sanitize: compute-sanitizer not found"
    return
  fi
  # Every gpu-labelled test binary (ctest knows the labels), and the tuner's sweep.
  local bins
  bins=$(cd "$B" && ctest -L gpu --show-only=json-v1 2>/dev/null | "$PY" -c '
import json, sys
seen = []
for t in json.load(sys.stdin).get("tests", []):
    cmd = t.get("command") or []
    if cmd and cmd[0] not in seen:
        seen.append(cmd[0])
print("\n".join(seen))')
  local filter=${BNORM_SANITIZE_FILTER:-$SANITIZE_FILTER_DEFAULT}
  local -a names=() cmds=() tools
  read -r -a tools <<<"${BNORM_SANITIZE_TOOLS:-memcheck racecheck initcheck synccheck}"
  local b
  while IFS= read -r b; do
    [[ -n $b ]] || continue
    names+=("$(basename "$b")")
    cmds+=("$b --gtest_filter=$filter")
  done <<<"$bins"
  names+=("bnorm-tune")
  cmds+=("$B/bench/bnorm-tune --check_only --shapes=${BNORM_SANITIZE_SHAPES:-3x5x7x9,2x1x1x1,16x6x8x8,128x84,4096x3x1x1,2x4096x1x1,16x16x8x8_f16_nhwc,2x4096x1x1_bf16}")
  local runs=$((${#cmds[@]} * ${#tools[@]})) done_runs=0 end=$((SECONDS + t)) per
  say "sanitize: ${#cmds[@]} program(s) x ${#tools[@]} tool(s) (${tools[*]}) in $t s; filter $filter"
  local tool i rc extra
  for tool in "${tools[@]}"; do
    extra=()
    [[ $tool == memcheck ]] && extra=(--leak-check full)
    for i in "${!cmds[@]}"; do
      # What is left shared by the runs still to come: a quick run leaves its time to them.
      per=$(((end - SECONDS) / (runs - done_runs)))
      done_runs=$((done_runs + 1))
      if ((per < 10 || $(left) < 30)); then
        bad "sanitize: $tool ${names[$i]}: not run, out of time"
        continue
      fi
      echo "=== $tool: ${cmds[$i]} (at most $per s)" >>"$log"
      # shellcheck disable=SC2086
      timeout "$per" "$cs" --tool "$tool" --error-exitcode 99 "${extra[@]}" ${cmds[$i]} >>"$log" 2>&1
      rc=$?
      case $rc in
        0) note "ok    sanitize: $tool ${names[$i]}" ;;
        99) bad "sanitize: $tool ${names[$i]}: errors found (sanitize.log)" ;;
        124) bad "sanitize: $tool ${names[$i]}: timed out after $per s" ;;
        *) bad "sanitize: $tool ${names[$i]}: exit $rc (sanitize.log)" ;;
      esac
    done
  done
}

# ---- tune -----------------------------------------------------------------------------------
phase_tune() {
  local log=$OUT/tune.log t
  t=$(phase_time 300)
  echo "$header" >"$log"
  if ((!have_gpu)); then
    note "skip  tune: no GPU"
    return
  fi
  local groups=${BNORM_TUNE_GROUPS:-${BNORM_BENCH_GROUPS:-$BENCH_GROUPS_DEFAULT}}
  say "tune: bnorm-tune over the groups $groups ($t s)"
  # shellcheck disable=SC2086
  timeout "$t" "$B/bench/bnorm-tune" --fresh --groups="$groups" --out="$OUT/bnorm_tuning.json" \
    --report="$OUT/tune_report.json" ${BNORM_TUNE_ARGS:-} >>"$log" 2>&1
  local rc=$? last
  last=$(grep '^bnorm-tune: .*rejected' "$log" | tail -1)
  if ((rc == 124)); then
    bad "tune: timed out after $t s; the cache keeps the entries done ($(grep -c winner "$log") winners)"
  elif ((rc != 0)); then
    bad "tune: exit $rc (tune.log)"
  elif [[ -z $last ]]; then
    bad "tune: no cache written: $(tail -1 "$log")"
  elif grep -q 'REJECTED' "$log"; then
    bad "tune: ${last#bnorm-tune: }"
  else
    note "ok    tune: ${last#bnorm-tune: }"
  fi
}

# ---- bench ----------------------------------------------------------------------------------
phase_bench() {
  local log=$OUT/bench.log t t0=$SECONDS
  t=$(phase_time 480)
  echo "$header" >"$log"
  local bench=$B/bench/bnorm-bench jsons=() pt=""
  local groups=${BNORM_BENCH_GROUPS:-$BENCH_GROUPS_DEFAULT} configs=${BNORM_BENCH_CONFIGS:-all}
  local target=${BNORM_BENCH_TARGET_MS:-20} tag=""
  # A run of other groups than the default one is named after them: several calls'
  # results sit side by side (tools/bench_results.py combine joins them).
  [[ $groups != "$BENCH_GROUPS_DEFAULT" ]] && tag=${groups//,/_}
  if ! "$bench" --groups="$groups" --print_suite >"$W/suite.json" 2>>"$log"; then
    bad "bench: bnorm-bench --groups=$groups --print_suite failed (bench.log)"
    return
  fi
  echo "groups $groups, configurations $configs, $target ms per row" >>"$log"
  if [[ -n ${BNORM_CHECK_BENCH_JSON:-} ]]; then
    jsons=("$BNORM_CHECK_BENCH_JSON")
    pt=${BNORM_CHECK_PYTORCH_JSON:-}
    note "test  bench: results from BNORM_CHECK_BENCH_JSON, not measured"
  elif ((!have_gpu)); then
    note "skip  bench: no GPU"
    return
  else
    "$bench" --probe_cudnn >>"$log" 2>&1
    if [[ -f $OUT/bnorm_tuning.json ]]; then
      export BNORM_TUNING_CACHE=$OUT/bnorm_tuning.json
      echo "default rows use the tuning cache $BNORM_TUNING_CACHE" >>"$log"
    fi
    # A few shapes per run (BNORM_BENCH_CHUNK, 3): a run cut short loses only its own
    # shapes, and start-up (copy bandwidth, cuDNN's libraries) is paid a few times only.
    # PyTorch gets the last 90 s.
    local shapes chunks=() chunk="" n_in=0 i=0 done_n=0 rc s
    mapfile -t shapes < <("$PY" -c 'import json,sys; [print(s["name"]) for s in json.load(open(sys.argv[1]))]' "$W/suite.json")
    for s in "${shapes[@]}"; do
      chunk+=${chunk:+,}$s
      n_in=$((n_in + 1))
      if ((n_in == ${BNORM_BENCH_CHUNK:-3})); then
        chunks+=("$chunk")
        chunk=""
        n_in=0
      fi
    done
    [[ -n $chunk ]] && chunks+=("$chunk")
    say "bench: groups $groups: ${#shapes[@]} shapes in ${#chunks[@]} runs, configurations $configs, $target ms per row ($t s, PyTorch included)"
    for chunk in "${chunks[@]}"; do
      local rest=$((t - (SECONDS - t0) - 90))
      if ((rest < 10)); then
        bad "bench: out of time after $done_n of ${#chunks[@]} runs (run bench alone)"
        break
      fi
      local out_json
      out_json=$(printf '%s/bench-%03d.json' "$W" "$i")
      # shellcheck disable=SC2086
      timeout "$rest" "$bench" --bnorm_shapes="$chunk" --configs="$configs" --bnorm_target_ms="$target" \
        --benchmark_out="$out_json" --benchmark_out_format=json ${BNORM_BENCH_ARGS:-} >>"$log" 2>&1
      rc=$?
      if ((rc == 0)) && [[ -s $out_json ]]; then
        jsons+=("$out_json")
        done_n=$((done_n + 1))
      elif ((rc == 0)); then
        bad "bench: bnorm-bench on $chunk wrote no results: $(tail -1 "$log")"
      else
        bad "bench: bnorm-bench on $chunk: exit $rc (bench.log)"
      fi
      i=$((i + 1))
      say "bench: $done_n of ${#chunks[@]} runs done"
    done
    ((${#jsons[@]})) || { bad "bench: no results"; return; }
    local bw
    bw=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["context"].get("copy_bandwidth_gb_per_s", 0))' "${jsons[0]}")
    local pt_time=$((t - (SECONDS - t0) - 10))
    if ((pt_time > 20)); then
      say "bench: PyTorch peer ($pt_time s)"
      PYTHONUNBUFFERED=1 timeout "$pt_time" "$PY" bench/peers/pytorch_bn.py --out "$W/pytorch.json" \
        --suite "$W/suite.json" --copy-gbps "$bw" --target-ms "$target" >>"$log" 2>&1
      rc=$?
      if ((rc == 0)); then pt=$W/pytorch.json; else bad "bench: pytorch_bn.py exit $rc (bench.log)"; fi
    else
      bad "bench: no time left for the PyTorch peer"
    fi
  fi
  mkdir -p bench/results
  local args=(merge --bench "${jsons[@]}" --out-dir bench/results)
  [[ -n $tag ]] && args+=(--tag "$tag")
  [[ -n $pt && -f $pt ]] && args+=(--pytorch "$pt")
  [[ -f $OUT/tune_report.json ]] && args+=(--tune "$OUT/tune_report.json")
  [[ -n $driver ]] && args+=(--driver "$driver")
  local res
  if ! res=$("$PY" tools/bench_results.py "${args[@]}" 2>>"$log"); then
    bad "bench: merging the results failed (bench.log)"
    return
  fi
  cp "$res" "$OUT/"
  if "$PY" tools/plot_bench.py "$res" -o "${res%.json}.png" >>"$log" 2>&1; then
    cp "${res%.json}.png" "$OUT/"
  else
    bad "bench: the plot failed (bench.log)"
  fi
  "$PY" tools/bench_results.py table "$res" >"$W/table.txt" 2>>"$log"
  cat "$W/table.txt" >>"$log"
  local errors
  errors=$("$PY" -c 'import json,sys; print(sum("error" in r for r in json.load(open(sys.argv[1]))["rows"]))' "$res")
  note "ok    bench: $(basename "$res"): $(grep -c . "$W/table.txt") table lines, $errors rows with errors"
}

# ---- lenet ---------------------------------------------------------------------------------
# BN-LeNet for ten epochs on the GPU at the CPU runs' settings (tools/lenet/RESULTS.md),
# then the same network in PyTorch eager on the same GPU: the end-to-end check of issue 8
# and the peer of issue 9. The data travel beside the build: tools/gpu_pack.sh --data
# copies the IDX files to .data/ (carry it too).
phase_lenet() {
  local log=$OUT/lenet.log t data=${BNORM_LENET_DATA:-$root/.data/fashion-mnist}
  t=$(phase_time 300)
  echo "$header" >"$log"
  if ((!have_gpu)); then
    note "skip  lenet: no GPU"
    return
  fi
  if [[ ! -f $data/train-images-idx3-ubyte.gz ]]; then
    bad "lenet: no Fashion-MNIST under $data (tools/gpu_pack.sh --data, carry .data)"
    return
  fi
  local start=$SECONDS rc line
  for lr in 0.1 1.0; do
    say "lenet: bnorm-lenet --device cuda --lr $lr"
    timeout $((t / 3)) "$B/tools/lenet/bnorm-lenet" --device cuda --lr "$lr" --data "$data" >>"$log" 2>&1
    rc=$?
    line=$(grep '^final:' "$log" | tail -1)
    ((rc == 0)) && note "ok    lenet (bnorm, lr $lr): $line" || bad "lenet (bnorm, lr $lr): exit $rc"
  done
  say "lenet: pytorch_lenet.py --device cuda"
  timeout $((t - (SECONDS - start))) "$PY" tools/lenet/pytorch_lenet.py --device cuda --data "$data" >>"$log" 2>&1
  rc=$?
  line=$(grep '^final:' "$log" | tail -1)
  ((rc == 0)) && note "ok    lenet (PyTorch, lr 0.1): $line" || bad "lenet (PyTorch): exit $rc"
}

for p in test sanitize tune bench lenet; do
  wants "$p" || continue
  if (($(left) < 45)); then
    bad "$p: not run, out of time (give it its own call)"
    continue
  fi
  "phase_$p"
done

echo
echo "==== gpu_check: $header"
printf '%s\n' "${summary[@]}"
echo "(logs and results under $OUT: $(cd "$OUT" && ls | tr '\n' ' '))"
if [[ -f $W/table.txt ]]; then
  echo
  cat "$W/table.txt"
fi
exit $failed
