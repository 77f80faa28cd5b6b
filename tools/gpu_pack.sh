#!/usr/bin/env bash
# Builds bnorm for the device machine here and packs what tools/gpu_check.sh needs into
# .carry/ (git-ignored), to be carried along with the working tree:
#
#   tools/gpu_pack.sh [--data]             # here: Release build for sm_90, then pack
#   (device) bash tools/gpu_check.sh ...   # with .carry carried; see bench/README.md
#
# .carry/pack.tar.xz, unpacked by gpu_check.sh into a scratch folder on the device:
#   build/  the build tree, pruned to what runs: executables, shared libraries and
#           ctest's files (no objects); gpu_check.sh rewrites its absolute paths
#   lib/    shared libraries the binaries need that the device image lacks (Google
#           Benchmark, OpenBLAS and its Fortran runtime, ...), found by ldd; the CUDA
#           toolkit's own (cuBLAS, ...) stay: the device has the same toolkit
#   cmake/  GoogleTestAddTests.cmake of this CMake: ctest re-discovers the gtest cases
#           on the device with it, where the GPU decides what a binary lists
# .carry/meta.env  commit, source and build paths here, and a hash of the sources
# Compressed because CUDA binaries and OpenBLAS shrink 4-5x and the limit is tight.
#
# Environment: BNORM_PACK_BUILD (build dir, default build-gpu), BNORM_PACK_JOBS,
# BNORM_PACK_LIMIT_MB (default 60: the device takes 64 MiB with the working tree).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${BNORM_PACK_BUILD:-$root/build-gpu}
carry=$root/.carry
limit_mb=${BNORM_PACK_LIMIT_MB:-60}
jobs=${BNORM_PACK_JOBS:-$(nproc)}

# --data: also copy Fashion-MNIST's IDX files (30 MB) to .data/ for gpu_check.sh's lenet
# phase; carry [".carry", ".data"].
if [[ ${1:-} == --data ]]; then
  mkdir -p "$root/.data/fashion-mnist"
  cp /usr/share/datasets/fashion-mnist/*.gz "$root/.data/fashion-mnist/"
  limit_mb=$((limit_mb - 31))
fi

# The sources a carried build was made from; gpu_check.sh recomputes it on the device
# and warns when the tree there differs (a stale build would test old code).
source_hash() {
  (cd "$1" && find CMakeLists.txt cmake include host kernels bench tests tools \
     -type f \( -name '*.cpp' -o -name '*.hpp' -o -name '*.cu' -o -name '*.cuh' -o -name '*.h' \
                -o -name '*.c' -o -name '*.txt' -o -name '*.cmake' -o -name '*.in' -o -name '*.map' \) \
     2>/dev/null | LC_ALL=C sort | xargs sha1sum | sha1sum | cut -c1-16)
}

echo "== configure and build: $build (Release, sm_90)"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DBNORM_BUILD_TESTS=ON -DBNORM_BUILD_BENCH=ON -DBNORM_BUILD_TOOLS=ON >/dev/null
cmake --build "$build" -j"$jobs"
[[ -x $build/bench/bnorm-bench ]] || { echo "gpu_pack: bnorm-bench was not built (Google Benchmark missing?)" >&2; exit 1; }

echo "== pack: $carry"
rm -rf "$carry"
stage=$carry/stage
mkdir -p "$stage/build" "$stage/lib" "$stage/cmake"

is_elf() { [[ $(head -c4 "$1" 2>/dev/null | od -An -c | tr -d ' \n') == '177ELF' ]]; }

# Executables and shared libraries (symbolic links kept), and every ctest file. Objects,
# archives and CMake's own scratch (CMakeFiles) stay behind.
elves=()
while IFS= read -r -d '' f; do
  rel=${f#"$build"/}
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

# The gtest discovery script of this CMake (its path is written in the _include files).
module=$(grep -ho 'include("[^"]*GoogleTestAddTests.cmake")' -r "$build" --include='*_include*.cmake' \
         | head -1 | sed 's/include("\(.*\)")/\1/') || true
if [[ -n $module && -f $module ]]; then
  cp "$module" "$stage/cmake/"
fi

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

raw_kb=$(du -sk "$stage" | cut -f1)
# One xz stream with a dictionary larger than the whole stage: the library, the tuner,
# the bench and the unit tests each hold the same kernels (36 MiB a copy), and only a
# window that spans them all stores those once (31 MiB with xz's default 8 MiB window and
# threads, 14 MiB so). Compression needs about 3 GiB of memory, unpacking 256 MiB.
XZ_OPT="--lzma2=preset=6,dict=256MiB" tar -C "$stage" -cJf "$carry/pack.tar.xz" build lib cmake
size_kb=$(du -sk "$carry/pack.tar.xz" | cut -f1)
libs="${!copied[*]}"
echo "packed: ${#elves[@]} binaries, libraries: ${libs:-none}"
echo "size: $((size_kb / 1024)) MiB compressed ($((raw_kb / 1024)) MiB unpacked) of $limit_mb allowed"
if ((size_kb > limit_mb * 1024)); then
  echo "gpu_pack: .carry is over ${limit_mb} MiB: the device takes 64 MiB with the working tree" >&2
  (cd "$stage" && find . -type f -size +1M -exec du -k {} + | sort -rn | head -10) >&2
  exit 1
fi
rm -rf "$stage"
echo "run on the device with carry [\".carry\"] (and \".data\" for lenet): bash tools/gpu_check.sh test lenet; then the sanitize and tune/bench calls of tools/gpu_check.sh's header"
