#!/usr/bin/env bash
# Builds the binaries a device command times a change with, here (no GPU needed), into one folder for
# device_checks.sh: the default build's and those of builds with extra compiler flags (typically
# -DDELTAPRODUCT_EXPERIMENTAL_...=1), under suffixed names, xz-compressed, with the Google Benchmark library beside
# them. Carry the folder in the device call (it must stay under the call's carry limit: check the size printed).
#
#   bench/cuda/bundle_variants.sh BUNDLE SPEC...
#
# SPEC is one of
#   default:TARGETS                 TARGETS (comma-separated, e.g. bench_cuda,chunked_timeline) of build/gpu, a
#                                   configured CUDA build tree, under their own names
#   build:NAME:TARGETS:FLAGS        a build tree build/gpu_NAME configured as build/gpu with FLAGS (comma-separated)
#                                   added to CMAKE_CUDA_FLAGS; its TARGETS as TARGET_NAME (several minutes a tree)
#   timeline:NAME:FLAGS             chunked_timeline_NAME from timeline_variant.sh build/gpu (seconds)
# For example:
#   bench/cuda/bundle_variants.sh .devrun default:bench_cuda,chunked_timeline \
#     build:soa:bench_cuda,test_cuda_chunked_forward:-DDELTAPRODUCT_EXPERIMENTAL_SCALARS_ONE_AHEAD=1 \
#     timeline:vec:-DDELTAPRODUCT_EXPERIMENTAL_VECTOR_INVERSE_LOADS=1
# then, on the device: bench/cuda/device_checks.sh .devrun "$OUT/c" timelines:60 tests:200 'alternate:...:3:90'.
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,20p' "$0" >&2
  exit 64
fi
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bundle=$(realpath -m "$1")
shift
mkdir -p "$bundle"
default_tree="$root/build/gpu"
if [ ! -f "$default_tree/build.ninja" ]; then
  echo "bundle_variants.sh: configure $default_tree first (bench/cuda/README.md says how)" >&2
  exit 1
fi
cuda_flags=$(sed -n "s/^CMAKE_CUDA_FLAGS:[A-Z]*=//p" "$default_tree/CMakeCache.txt")
architectures=$(sed -n "s/^CMAKE_CUDA_ARCHITECTURES:[A-Z]*=//p" "$default_tree/CMakeCache.txt")

# add FILE NAME: FILE into the bundle as NAME.xz.
add() {
  xz -T0 -6 -c "$1" >"$bundle/$2.xz"
  echo "  $2.xz $(du -h "$bundle/$2.xz" | cut -f1)"
}
# find_target TREE TARGET: the path of TARGET's executable in TREE.
find_target() {
  local path
  path=$(find "$1/tests" "$1/bench" -type f -name "$2" -perm -u+x 2>/dev/null | head -1)
  [ -n "$path" ] || { echo "bundle_variants.sh: no executable $2 in $1" >&2; exit 1; }
  echo "$path"
}

for spec in "$@"; do
  IFS=: read -r kind a b c <<<"$spec"
  case $kind in
    default)
      ninja -C "$default_tree" ${a//,/ } >/dev/null
      for target in ${a//,/ }; do add "$(find_target "$default_tree" "$target")" "$target"; done
      ;;
    build)
      tree="$root/build/gpu_$a"
      cmake -S "$root" -B "$tree" -G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_ARCHITECTURES=$architectures" \
        "-DCMAKE_CUDA_FLAGS=$cuda_flags ${c//,/ }" >/dev/null
      ninja -C "$tree" ${b//,/ } >/dev/null
      for target in ${b//,/ }; do add "$(find_target "$tree" "$target")" "${target}_$a"; done
      ;;
    timeline)
      ninja -C "$default_tree" chunked_timeline >/dev/null
      "$here/timeline_variant.sh" "$default_tree" "$bundle/chunked_timeline_$a" ${b//,/ } >/dev/null
      add "$bundle/chunked_timeline_$a" "chunked_timeline_$a"
      rm -f "$bundle/chunked_timeline_$a"
      ;;
    *)
      echo "bundle_variants.sh: unknown spec '$spec'" >&2
      exit 64
      ;;
  esac
done
library=$(ldconfig -p | sed -n 's/.*libbenchmark\.so\.1debian .*=> //p' | head -1)
[ -z "$library" ] || cp -L "$library" "$bundle/"
echo "$bundle: $(du -sh "$bundle" | cut -f1) (a device call carries at most 64 MiB with the working tree)"
