# shellcheck shell=bash
# Time budgets and the files that come back, for tools/gpu_check.sh (sourced; tested by
# tools/test_gpu_check_lib.sh).
#
# The budget: GC_TOTAL seconds from gc_budget_init, of which GC_RESERVE are kept for the
# wrap-up (the summary, the raw archive). The phases run in priority order; each gets
# its weight's share of what is left among the phases still to run, at most its cap:
#
#   budget(p) = min(cap(p), left * weight(p) / (weight(p) + weights of the later phases))
#
# so time a phase does not use flows on to the later ones in proportion, a phase cut on
# its budget takes nothing from them, and the last phase gets all that is left. A phase
# whose budget is under its minimum is not run ("out of time"). Steps inside a phase
# share the phase's budget the same way (gc_share).
#
# The clock is gc_now (bash's SECONDS); a test redefines it.

gc_now() { echo "$SECONDS"; }

# gc_budget_init TOTAL RESERVE
gc_budget_init() {
  GC_TOTAL=$1
  GC_RESERVE=$2
  GC_T0=$(gc_now)
}

gc_elapsed() { echo $(($(gc_now) - GC_T0)); }

# Seconds left for phases (the wrap-up's reserve excluded), never negative.
gc_left() {
  local l=$((GC_TOTAL - GC_RESERVE - ($(gc_now) - GC_T0)))
  ((l < 0)) && l=0
  echo "$l"
}

# gc_share LEFT WEIGHT REST CAP: WEIGHT's share of LEFT seconds among REST (the sum of the
# weights still to run, WEIGHT included), at most CAP (0: no cap). A weight of 0 takes
# what it needs up to its cap, before the shares (a short phase that must run).
gc_share() {
  local left=$1 w=$2 rest=$3 cap=$4 s
  if ((w == 0 || rest <= 0 || w >= rest)); then s=$left; else s=$((left * w / rest)); fi
  ((cap > 0 && s > cap)) && s=$cap
  ((s < 0)) && s=0
  echo "$s"
}

# The phase table: gc_phase NAME WEIGHT CAP MIN, in priority order. A cap of 0: none.
declare -a GC_ORDER=()
declare -A GC_WEIGHT=() GC_CAP=() GC_MIN=()
gc_phase() {
  GC_ORDER+=("$1")
  GC_WEIGHT[$1]=$2
  GC_CAP[$1]=$3
  GC_MIN[$1]=$4
}

# The phases asked for (gc_want NAME...): a subset of GC_ORDER, run in GC_ORDER's order.
declare -A GC_WANTED=()
gc_want() {
  local p
  for p in "$@"; do GC_WANTED[$p]=1; done
}
gc_wanted() { [[ -n ${GC_WANTED[$1]:-} ]]; }

# The weights of NAME and of the wanted phases after it that have not run.
gc_rest_weight() {
  local name=$1 p seen=0 sum=0
  for p in "${GC_ORDER[@]}"; do
    [[ $p == "$name" ]] && seen=1
    ((seen)) && gc_wanted "$p" && sum=$((sum + GC_WEIGHT[$p]))
  done
  echo "$sum"
}

# gc_budget NAME: the seconds phase NAME gets now (0 if under its minimum).
gc_budget() {
  local name=$1 b
  b=$(gc_share "$(gc_left)" "${GC_WEIGHT[$name]}" "$(gc_rest_weight "$name")" "${GC_CAP[$name]}")
  ((b < GC_MIN[$name])) && b=0
  echo "$b"
}

# gc_limit SECONDS COMMAND...: runs COMMAND for at most SECONDS, then TERM, and KILL 5 s
# later; timeout signals the command's whole process group (ctest's tests, the
# sanitizer's target). Exit status: the command's, or 124 when it was cut (137 when it
# had to be killed). SECONDS <= 0 runs nothing and returns 124.
gc_limit() {
  local t=$1
  shift
  ((t > 0)) || return 124
  timeout -k 5 "$t" "$@"
}
gc_was_cut() { [[ $1 == 124 || $1 == 137 ]]; }

# A GPU name as a file name: what tools/bench_results.py's safe() makes of it (runs of
# characters outside [A-Za-z0-9._-] become one '-', none at either end).
gc_slug() {
  local s
  s=$(printf '%s' "$1" | LC_ALL=C sed -E 's/[^A-Za-z0-9._-]+/-/g; s/^-+//; s/-+$//')
  echo "${s:-unknown-gpu}"
}

# gc_check_out DIR [MAX_FILES] [MAX_BYTES]: what the device returns of $OUT — at most 8
# plain files of at most 16 MiB, no deeper than DIR/a/b/file, names of [A-Za-z0-9._-].
# Prints each problem; returns 1 if there is one.
gc_check_out() {
  local dir=$1 max_files=${2:-8} max_bytes=${3:-16777216} bad=0 n=0 f p rel part size
  while IFS= read -r -d '' f; do
    rel=${f#"$dir"/}
    if [[ -L $f || ! -f $f ]]; then
      echo "not a plain file: $rel"
      bad=1
      continue
    fi
    n=$((n + 1))
    IFS=/ read -r -a part <<<"$rel"
    if ((${#part[@]} > 3)); then
      echo "too deep (more than two folders): $rel"
      bad=1
    fi
    for p in "${part[@]}"; do
      if [[ ! $p =~ ^[A-Za-z0-9._-]+$ ]]; then
        echo "name outside [A-Za-z0-9._-]: $rel"
        bad=1
        break
      fi
    done
    size=$(stat -c %s "$dir/$rel")
    if ((size > max_bytes)); then
      echo "over $((max_bytes / 1048576)) MiB ($size bytes): $rel"
      bad=1
    fi
  done < <(find "$dir" -mindepth 1 \( -type f -o -type l -o -type p -o -type s \) -print0)
  if ((n > max_files)); then
    echo "$n files (at most $max_files come back)"
    bad=1
  fi
  return $bad
}

# gc_scaled SECONDS PERCENT: at least 1.
gc_scaled() {
  local v=$(($1 * $2 / 100))
  echo $((v < 1 ? 1 : v))
}

# The phases of tools/gpu_check.sh in priority order: weight, cap and minimum (seconds,
# scaled by PERCENT). The weights are each phase's share of a full run as expected on
# the H200 (bench/README.md, "The GPU check", has the reasoning); the caps what a phase
# can use at most, the minimums what it needs to show anything. info (a few seconds)
# comes before the shares; tune is last and has no cap: it takes whatever is left (a cut
# keeps its entries).
gc_check_phases() {
  local pct=${1:-100}
  GC_ORDER=()
  gc_phase info 0 "$(gc_scaled 20 "$pct")" "$(gc_scaled 3 "$pct")"
  gc_phase test 35 "$(gc_scaled 200 "$pct")" "$(gc_scaled 20 "$pct")"
  gc_phase bench 22 "$(gc_scaled 150 "$pct")" "$(gc_scaled 25 "$pct")"
  gc_phase lenet 12 "$(gc_scaled 120 "$pct")" "$(gc_scaled 20 "$pct")"
  gc_phase sanitize 17 "$(gc_scaled 150 "$pct")" "$(gc_scaled 20 "$pct")"
  gc_phase bench-more 8 "$(gc_scaled 120 "$pct")" "$(gc_scaled 20 "$pct")"
  gc_phase sanitize-more 6 "$(gc_scaled 120 "$pct")" "$(gc_scaled 20 "$pct")"
  gc_phase tune 5 0 "$(gc_scaled 10 "$pct")"
}
