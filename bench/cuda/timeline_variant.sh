#!/usr/bin/env bash
# Builds chunked_timeline again with extra compiler flags (typically -DDELTAPRODUCT_EXPERIMENTAL_...=1), so that a
# change behind a compile-time switch can be timed beside the default build in one device command. The timeline
# compiles its own forward kernels, so one variant takes ~30 s instead of the library's several minutes.
#
#   bench/cuda/timeline_variant.sh BUILD OUTPUT [FLAG...]
#
# BUILD: a configured build tree that has built chunked_timeline (its compile and link commands are reused);
# OUTPUT: the variant's executable.
# For example: bench/cuda/timeline_variant.sh build/gpu /tmp/tl_stmatrix -DDELTAPRODUCT_EXPERIMENTAL_STMATRIX_OUTPUT=1
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,11p' "$0" >&2
  exit 64
fi
build=$1
output=$(realpath -m "$2")
shift 2
commands=$(ninja -C "$build" -t commands chunked_timeline | grep -E 'chunked_timeline\.cu|-o bench/cuda/chunked_timeline ')
compile=$(grep -E -- '-c [^ ]*chunked_timeline\.cu' <<<"$commands" | tail -1)
link=$(grep -E -- '-o bench/cuda/chunked_timeline( |$)' <<<"$commands" | tail -1)
if [ -z "$compile" ] || [ -z "$link" ]; then
  echo "timeline_variant.sh: no chunked_timeline commands in $build (configure with CUDA, then build chunked_timeline)" >&2
  exit 1
fi
object="$output.o"
# The object's path replaced by OUTPUT.o, the dependency file dropped, the flags added before the source.
compile=$(sed -E -e "s# -MD -MT [^ ]+ -MF [^ ]+##" -e "s# -o [^ ]+\.o\$# -o $object#" <<<"$compile")
flags=""
[ $# -eq 0 ] || flags=$(printf ' %q' "$@")  # no flags: the default build's timeline, with this tree's headers
compile=${compile/ -x cu -c /$flags -x cu -c }
link=$(sed -E -e "s#^: && ##" -e "s# && :\$##" -e "s# [^ ]*chunked_timeline\.cu\.o # $object #" \
  -e "s# -o bench/cuda/chunked_timeline # -o $output #" <<<"$link")
(cd "$build" && eval "$compile" && eval "$link")
rm -f "$object"
echo "$output"
