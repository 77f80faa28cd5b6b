#!/usr/bin/env bash
# tools/gpu_check_lib.sh: the budget arithmetic on gpu_check.sh's own phase table with a
# clock the test moves (a full run where every phase uses all it gets, one where they
# finish early, a phase that overruns its cut, a rerun of two phases, a budget too small
# for some), the time limit on a real process group, the GPU name as a file name (as
# tools/bench_results.py makes it) and the check of what $OUT would give back.
#   bash tools/test_gpu_check_lib.sh        (ctest gpu_check_budget)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/gpu_check_lib.sh
source "$root/tools/gpu_check_lib.sh"

fails=0
eq() {  # eq WHAT GOT WANT
  if [[ $2 == "$3" ]]; then echo "ok    $1: $2"; else echo "FAIL  $1: got '$2', want '$3'"; fails=$((fails + 1)); fi
}
is() {  # is WHAT COMMAND...
  if "${@:2}"; then echo "ok    $1"; else echo "FAIL  $1"; fails=$((fails + 1)); fi
}

CLOCK=0
gc_now() { echo "$CLOCK"; }

# ---- gc_share --------------------------------------------------------------------------
eq "share of what is left" "$(gc_share 360 35 105 200)" 120
eq "share at its cap" "$(gc_share 1000 35 105 200)" 200
eq "the last phase takes all" "$(gc_share 77 5 5 0)" 77
eq "the last phase, capped" "$(gc_share 77 5 5 30)" 30
eq "nothing left" "$(gc_share 0 35 105 200)" 0

# plan TOTAL RESERVE USE PHASE...: runs the phases in the table's order on the fake
# clock, each using USE% of its budget (USE=over: its budget and 5 s more, what a kill
# after the grace period costs); prints "phase=budget" for each and the end time.
plan() {
  local total=$1 reserve=$2 use=$3 p b out=""
  shift 3
  gc_check_phases 100
  GC_WANTED=()
  gc_want "$@"
  CLOCK=0
  gc_budget_init "$total" "$reserve"
  for p in "${GC_ORDER[@]}"; do
    gc_wanted "$p" || continue
    b=$(gc_budget "$p")
    out+="$p=$b "
    case $use in
      over) ((b > 0)) && CLOCK=$((CLOCK + b + 5)) ;;
      *) CLOCK=$((CLOCK + b * use / 100)) ;;
    esac
  done
  echo "${out}end=$CLOCK"
}
all=(info test bench lenet sanitize bench-more sanitize-more tune)

# Every phase uses all its budget (info its 20 s cap): each gets its share of what is
# left (test 340 * 35/105 = 113, ...); sanitize-more's 36 * 6/11 = 19 is under its
# minimum of 20, so it is not run and tune, the last, takes the 36 s; the phases end at
# the budget less the wrap-up's reserve.
eq "a full run, every phase cut" "$(plan 380 20 100 "${all[@]}")" \
   "info=20 test=113 bench=71 lenet=39 sanitize=55 bench-more=26 sanitize-more=0 tune=36 end=360"
# They finish at 60% of their budgets: the time they leave flows on to the later ones.
eq "a full run, every phase early" "$(plan 380 20 60 "${all[@]}")" \
   "info=20 test=116 bench=87 lenet=56 sanitize=91 bench-more=58 sanitize-more=57 tune=72 end=331"
# Each phase costs 5 s more than its budget (the kill's grace): the later ones shrink,
# the one under its minimum is not run, and the run ends 5 s into the wrap-up's reserve.
eq "every phase overruns its cut by 5 s" "$(plan 380 20 over "${all[@]}")" \
   "info=20 test=111 bench=68 lenet=36 sanitize=49 bench-more=21 sanitize-more=0 tune=25 end=365"
# A rerun of two phases: bench at its cap, tune the rest.
eq "a rerun of bench and tune" "$(plan 380 20 100 info bench tune)" "info=20 bench=150 tune=190 end=360"
# Too small a budget: info runs, the phases under their minimum are not (0), tune takes
# what is left.
eq "a budget of 60 s" "$(plan 60 20 100 "${all[@]}")" \
   "info=20 test=0 bench=0 lenet=0 sanitize=0 bench-more=0 sanitize-more=0 tune=20 end=40"
gc_check_phases 15
eq "the table scaled to 15%: test's cap and minimum" "${GC_CAP[test]} ${GC_MIN[test]}" "30 3"
eq "a scaled minimum is at least 1 s" "${GC_MIN[info]}" 1
gc_budget_init 380 20
CLOCK=500
eq "left after the budget" "$(gc_left)" 0

# ---- gc_limit: a real process group, cut on time --------------------------------------
gc_now() { echo "$SECONDS"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS
gc_limit 1 bash -c "(sleep 2; touch '$tmp/late') & wait"
rc=$?
eq "a command over its limit is cut" "$rc" 124
is "cut within 3 s" test $((SECONDS - t0)) -le 3
sleep 2
is "its children are stopped too (no late write)" test ! -e "$tmp/late"
gc_limit 5 true
eq "a command within its limit" "$?" 0
gc_limit 5 false
eq "a failing command keeps its status" "$?" 1
gc_limit 0 touch "$tmp/ran"
eq "no time: nothing runs" "$?" 124
is "no time: it did not run" test ! -e "$tmp/ran"
is "124 and 137 are cuts, 1 is not" bash -c "source '$root/tools/gpu_check_lib.sh'; gc_was_cut 124 && gc_was_cut 137 && ! gc_was_cut 1"

# ---- gc_slug: as tools/bench_results.py names the results file -------------------------
for name in "NVIDIA H200" "NVIDIA H100 80GB HBM3" "NVIDIA H200 (stand-in)" " odd//name: ok_1.0 " "(()"; do
  want=$(cd "$root/tools" && python3 -c 'import sys, bench_results; print(bench_results.safe(sys.argv[1]))' "$name")
  eq "slug of '$name'" "$(gc_slug "$name")" "$want"
done

# ---- gc_check_out -----------------------------------------------------------------------
out=$tmp/out
mkdir -p "$out/a/b"
for f in 2026-12-03-NVIDIA-H200-check.txt x.json y.png z.tar.xz a/one.txt a/b/two.txt; do echo x >"$out/$f"; done
is "six files, two folders deep: all come back" gc_check_out "$out"
for i in 1 2 3; do echo x >"$out/extra$i"; done
is "nine files: refused" bash -c "source '$root/tools/gpu_check_lib.sh'; ! gc_check_out '$out' >/dev/null"
rm "$out"/extra*
mkdir -p "$out/a/b/c" && echo x >"$out/a/b/c/deep.txt" && rm "$out/a/b/two.txt"
is "three folders deep: refused" bash -c "source '$root/tools/gpu_check_lib.sh'; gc_check_out '$out' | grep -q 'too deep'"
rm -r "$out/a/b/c"
echo x >"$out/a b.txt"
is "a space in a name: refused" bash -c "source '$root/tools/gpu_check_lib.sh'; gc_check_out '$out' | grep -q 'name outside'"
rm "$out/a b.txt"
truncate -s 17M "$out/x.json"
is "a file over 16 MiB: refused" bash -c "source '$root/tools/gpu_check_lib.sh'; gc_check_out '$out' | grep -q 'over 16 MiB'"
: >"$out/x.json"
ln -s x.json "$out/link"
is "a link: refused" bash -c "source '$root/tools/gpu_check_lib.sh'; gc_check_out '$out' | grep -q 'not a plain file'"
rm "$out/link"
is "and back to what comes back" gc_check_out "$out"

echo "$fails failed"
((fails == 0))
