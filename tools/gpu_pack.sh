#!/usr/bin/env bash
# Builds bnorm for the device machine here and packs what tools/gpu_check.sh needs into
# .carry/ (git-ignored), to be carried along with the working tree:
#
#   tools/gpu_pack.sh --data               # here: the ci preset's build, packed; the dataset
#   (device) bash tools/gpu_check.sh       # carry [".carry", ".data"]; see bench/README.md
#   tools/gpu_pack.sh --source-hash        # the hash of the sources (gpu_check.sh's stale check)
#
# The build is the ci preset's (Release, sm_90, -lineinfo: sanitizer reports name source
# lines) in build/ci, so CI's and this machine's compiler cache serve it. Its binaries
# need glibc 2.34 and the C++ runtime of GCC 12 (the script prints what they ask for).
#
# .carry/pack.tar.xz, unpacked by gpu_check.sh into a scratch folder on the device:
#   build/   the build tree, pruned to what runs: executables, shared libraries and
#            ctest's files (no objects); gpu_check.sh rewrites its absolute paths
#   lib/     shared libraries the binaries need that the device image lacks (Google
#            Benchmark, OpenBLAS and its Fortran runtime, ...), found by ldd; the CUDA
#            toolkit's own (cuBLAS, ...) stay: the device has the same toolkit
#   compat/  this machine's C++ runtime (libstdc++, libgcc_s), used there only if the
#            image's is older than the build needs
#   cmake/   GoogleTestAddTests.cmake of this CMake: ctest re-discovers the gtest cases
#            on the device with it, where the GPU decides what a binary lists
#   deps/    for building there when the binaries do not run (tools/gpu_build_here.sh):
#            GoogleTest's sources (Debian's /usr/src/googletest), and Google Benchmark,
#            nlohmann-json and zlib as headers, libraries and CMake files (sys/)
# .carry/meta.env  commit, source and build paths here, and the hash of the sources
# Compressed because CUDA binaries and OpenBLAS shrink 4-5x and the limit is tight: the
# device takes 64 MiB with the working tree and .data (checked at the end).
#
# Environment: BNORM_PACK_BUILD (build dir, default build/ci), BNORM_PACK_JOBS.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The sources a carried build was made from; gpu_check.sh recomputes it on the device
# and warns when the tree there differs (a stale build would test old code).
source_hash() {
  (cd "$1" && find CMakeLists.txt cmake include host kernels bench tests tools \
     -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h' \
                -o -name '*.c' -o -name '*.txt' -o -name '*.cmake' -o -name '*.in' -o -name '*.map' \) \
     2>/dev/null | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -c1-16)
}
if [[ ${1:-} == --source-hash ]]; then
  source_hash "$root"
  exit 0
fi

build=${BNORM_PACK_BUILD:-$root/build/ci}
carry=$root/.carry
limit_mb=64
jobs=${BNORM_PACK_JOBS:-$(nproc)}

# --data: also copy Fashion-MNIST's IDX files (30 MB) to .data/ for gpu_check.sh's lenet
# phase; carry [".carry", ".data"].
if [[ ${1:-} == --data ]]; then
  mkdir -p "$root/.data/fashion-mnist"
  cp /usr/share/datasets/fashion-mnist/*.gz "$root/.data/fashion-mnist/"
fi

echo "== configure and build: $build (the ci preset's settings)"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DCMAKE_CUDA_FLAGS=-lineinfo -DBNORM_BUILD_TESTS=ON -DBNORM_BUILD_BENCH=ON -DBNORM_BUILD_TOOLS=ON >/dev/null
cmake --build "$build" -j"$jobs"
[[ -x $build/bench/bnorm-bench ]] || { echo "gpu_pack: bnorm-bench was not built (Google Benchmark missing?)" >&2; exit 1; }

echo "== pack: $carry"
rm -rf "$carry"
stage=$carry/stage
mkdir -p "$stage/build" "$stage/lib" "$stage/cmake" "$stage/compat" "$stage/deps"

is_elf() { [[ $(head -c4 "$1" 2>/dev/null | od -An -c | tr -d ' \n') == '177ELF' ]]; }

# Programs only host-labelled tests run (test_sync_mpi: mpirun and OpenMPI are Debian's)
# stay behind: the device runs every label but host, and their libraries would be
# carried for nothing (OpenMPI's libevent alone asks for glibc 2.36).
declare -A host_only=()
while IFS= read -r f; do [[ -n $f ]] && host_only[$f]=1; done < <(
  cd "$build" && ctest --show-only=json-v1 2>/dev/null | python3 -c '
import json, sys
tests = json.load(sys.stdin).get("tests", [])
def labels(t):
    return next((p["value"] for p in t.get("properties", []) if p["name"] == "LABELS"), [])
def files(host):  # every program or file of the build a test names, mpiexec'"'"'s too
    return {a for t in tests if ("host" in labels(t)) == host for a in t.get("command") or []
            if a.startswith(sys.argv[1] + "/")}
print("\n".join(sorted(files(True) - files(False))))' "$build")

# Executables and shared libraries (symbolic links kept), and every ctest file. Objects,
# archives and CMake's own scratch (CMakeFiles) stay behind.
elves=()
while IFS= read -r -d '' f; do
  rel=${f#"$build"/}
  [[ -n ${host_only[$f]:-} ]] && continue
  case $rel in
    CTestTestfile.cmake | */CTestTestfile.cmake | *_include.cmake | *_include-*.cmake) ;;
    *.so | *.so.*) ;;
    *) [[ -x $f && ! -L $f ]] && is_elf "$f" || continue ;;
  esac
  mkdir -p "$stage/build/$(dirname "$rel")"
  cp -a "$f" "$stage/build/$rel"
  [[ ! -L $f ]] && is_elf "$f" && elves+=("$f")
done < <(find "$build" -path "$build/CMakeFiles" -prune -o -path '*/CMakeFiles/*' -prune -o \
              \( -type f -o -type l \) -print0)

# Runtime libraries the device lacks: whatever ldd resolves here beyond the C and C++
# runtimes every Linux image has, the CUDA driver and toolkit, and bnorm itself.
base='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libstdc\+\+|libgcc_s|libcuda\.so|libbnorm)'
declare -A copied=()
for f in "${elves[@]}"; do
  while read -r name arrow path _; do
    [[ $arrow == "=>" && -n $path && -f $path ]] || continue
    [[ $name =~ $base ]] && continue
    [[ $(readlink -f "$path") == /usr/local/cuda* ]] && continue
    [[ -n ${copied[$name]:-} ]] && continue
    cp -L "$path" "$stage/lib/$name"
    copied[$name]=$path
  done < <(ldd "$f" 2>/dev/null)
done
for name in libstdc++.so.6 libgcc_s.so.1; do
  path=$(ldconfig -p | awk -v n="$name" '$1 == n && /x86-64/ && !p {print $NF; p = 1}')
  [[ -n $path ]] && cp -L "$path" "$stage/compat/$name"
done

# The gtest discovery script of this CMake (its path is written in the _include files).
module=$(grep -ho 'include("[^"]*GoogleTestAddTests.cmake")' -r "$build" --include='*_include*.cmake' \
         | head -1 | sed 's/include("\(.*\)")/\1/') || true
if [[ -n $module && -f $module ]]; then
  cp "$module" "$stage/cmake/"
fi

# What building on the device needs beyond its nvcc, CMake and ninja: Debian's files,
# laid out as under /usr so that their CMake files find them from wherever they are.
sys=$stage/deps/sys
multi=lib/x86_64-linux-gnu
mkdir -p "$sys/include" "$sys/$multi/cmake" "$sys/share/cmake"
[[ -d /usr/src/googletest ]] && cp -a /usr/src/googletest "$stage/deps/googletest"
cp -a /usr/include/benchmark /usr/include/nlohmann /usr/include/zlib.h /usr/include/zconf.h "$sys/include/"
[[ -f /usr/include/x86_64-linux-gnu/zconf.h ]] && cp /usr/include/x86_64-linux-gnu/zconf.h "$sys/include/"
cp -a /usr/$multi/libbenchmark.so* /usr/$multi/libbenchmark_main.a /usr/$multi/libz.a "$sys/$multi/"
cp -a /usr/$multi/cmake/benchmark "$sys/$multi/cmake/"
cp -a /usr/share/cmake/nlohmann_json "$sys/share/cmake/"

commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null) ]] && commit="$commit-dirty"
cmake_cmd=$(grep -m1 '^CMAKE_COMMAND:INTERNAL=' "$build/CMakeCache.txt" | cut -d= -f2-)
cat >"$carry/meta.env" <<EOF
# Written by tools/gpu_pack.sh; read by tools/gpu_check.sh.
BNORM_PACK_SRC='$root'
BNORM_PACK_BUILD='$build'
BNORM_PACK_CMAKE='$cmake_cmd'
BNORM_PACK_GTEST_MODULE='$module'
BNORM_PACK_COMMIT='$commit'
BNORM_PACK_DATE='$(date -u +%Y-%m-%dT%H:%M:%SZ)'
BNORM_PACK_SOURCES='$(source_hash "$root")'
EOF

# What the binaries ask of the C library and the C++ runtime: the device image must have
# at least these, or gpu_check.sh builds there.
glibc=$(for f in "${elves[@]}" "$stage"/lib/*; do objdump -T "$f" 2>/dev/null; done \
        | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
glibcxx=$(for f in "${elves[@]}" "$stage"/lib/*; do objdump -T "$f" 2>/dev/null; done \
          | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1)

raw_kb=$(du -sk "$stage" | cut -f1)
# One xz stream with a dictionary larger than the whole stage: the library, the tuner,
# the bench and the unit tests each hold the same kernels (36 MiB a copy), and only a
# window that spans them all stores those once (31 MiB with xz's default 8 MiB window and
# threads, 14 MiB so). Compression needs about 3 GiB of memory, unpacking 256 MiB.
XZ_OPT="--lzma2=preset=6,dict=256MiB" tar -C "$stage" -cJf "$carry/pack.tar.xz" build lib compat cmake deps
rm -rf "$stage"
libs="${!copied[*]}"
echo "packed: ${#elves[@]} binaries, libraries: ${libs:-none}; they need $glibc and $glibcxx at most"
echo "pack: $(($(stat -c %s "$carry/pack.tar.xz") / 1024)) KiB compressed ($((raw_kb / 1024)) MiB unpacked)"

# What travels: the working tree (tracked and untracked files git does not ignore), and
# the carried .carry and .data.
tree_b=$(cd "$root" && git ls-files -co --exclude-standard -z | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
carry_b=$(du -sb "$carry" | cut -f1)
data_b=0
[[ -d $root/.data ]] && data_b=$(du -sb "$root/.data" | cut -f1)
total_b=$((tree_b + carry_b + data_b))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }
echo "travels: tree $(mib "$tree_b") + .carry $(mib "$carry_b") + .data $(mib "$data_b") = $(mib "$total_b") of $limit_mb MiB"
if ((total_b > limit_mb * 1048576)); then
  echo "gpu_pack: over the device's $limit_mb MiB" >&2
  exit 1
fi
echo "on the device, with carry [\".carry\", \".data\"] and timeout_s 420: bash tools/gpu_check.sh"
