#!/usr/bin/env bash
# The GPU checks of a change, run on a machine with a CUDA device from binaries built elsewhere: the CUDA test
# binaries, compute-sanitizer on chosen test cases and bench_cuda filters, each step under its own time limit, with
# logs and JSON written to OUT. Meant for short sessions on a GPU machine: one command runs them all, and a step that
# hangs or runs long is stopped without losing the ones after it.
#
#   bench/cuda/device_checks.sh BIN OUT STEP...
#
# BIN holds the binaries (test_cuda_*, bench_cuda, dp_run, chunked_timeline), plain or xz-compressed (NAME.xz is
# unpacked next to it), and any shared library they need that the machine lacks (libbenchmark). Steps:
#   tests[:SECONDS]                           every test_cuda_* binary in BIN
#   test:NAME[:CASES[:SECONDS]]               one test binary; CASES is doctest's -tc filter (default: all; no ':'
#                                             in it: test names have one, match it with *)
#   memcheck|racecheck|synccheck:NAME:CASES[:SECONDS]
#                                             compute-sanitizer --tool ... on those cases of one test binary
#   timelines[:SECONDS]                       every chunked_timeline* in BIN (the default build's and variants
#                                             from timeline_variant.sh, e.g. chunked_timeline_soa), one log each
#   alternate:FILTER:ROUNDS[:SECONDS[:MIN_TIME]]
#                                             every bench_cuda* in BIN (bench_cuda, bench_cuda_soa, ...) in turn,
#                                             ROUNDS times, so that builds compare side by side on one machine;
#                                             JSON to OUT/alternate_NAME_ROUND.json; SECONDS per run
#   bench:FILTER[:SECONDS[:MIN_TIME]]         bench_cuda --benchmark_filter=FILTER, JSON to OUT/bench_N.json;
#                                             MIN_TIME is --benchmark_min_time in seconds of measured time (default:
#                                             Google Benchmark's 0.5; the decode filter takes ~4 minutes at that,
#                                             20 s at 0.05)
#   ncu:FILTER[:SECONDS]                      one iteration of each bench_cuda benchmark FILTER matches under Nsight
#                                             Compute (kernels of the library only, clocks not locked): per kernel its
#                                             time, instructions, issue and memory throughput, warp stall reasons and
#                                             where they are sampled (SourceCounters; build with -lineinfo for lines)
#                                             (the first 24 launches: 3 warm-up calls and the timed one),
#                                             to OUT/ncu_N.log
#   ncusource:FILTER:KERNEL[:SECONDS]         the third launch of the kernels whose names match the regex KERNEL in
#                                             the bench_cuda benchmarks FILTER matches, under Nsight Compute with
#                                             source counters: OUT/ncusource_N.txt (every section's details) and
#                                             OUT/ncusource_N_sass.csv.gz (stall samples, instructions and sectors
#                                             per SASS instruction; build with -lineinfo to read them against the
#                                             source)
# SECONDS defaults to 120. The exit status is the number of steps that failed or ran out of time; OUT/summary.txt
# lists each step with its status and wall time. A device call brings back only a few files from $OUT: give OUT as a
# folder under it and pack that folder at the end (tar czf "$OUT/checks.tgz" -C "$OUT" checks).
set -u
if [ $# -lt 3 ]; then
  sed -n '2,40p' "$0" >&2
  exit 64
fi
bin=$(cd "$1" && pwd)
out=$2
shift 2
mkdir -p "$out"
for packed in "$bin"/*.xz; do
  [ -e "$packed" ] || continue
  [ -e "${packed%.xz}" ] || xz -dkT0 "$packed"
  chmod +x "${packed%.xz}" 2>/dev/null || true
done
export LD_LIBRARY_PATH="$bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

failed=0
bench_runs=0
ncu_runs=0
source_runs=0
# run NAME SECONDS COMMAND...: runs the command under a limit, its output in OUT/NAME.log, and records the outcome.
run() {
  local name=$1 seconds=$2
  shift 2
  local start=$SECONDS status
  timeout --kill-after=10 "$seconds" "$@" >"$out/$name.log" 2>&1
  status=$?
  local outcome="ok"
  if [ $status -eq 124 ] || [ $status -eq 137 ]; then
    outcome="timed out after ${seconds}s"
  elif [ $status -ne 0 ]; then
    outcome="failed (exit $status)"
  fi
  [ "$outcome" = ok ] || failed=$((failed + 1))
  printf '%-40s %-24s %4ds\n' "$name" "$outcome" $((SECONDS - start)) | tee -a "$out/summary.txt"
  tail -n 3 "$out/$name.log"
}
# run_each PREFIX SECONDS: every unpacked binary in BIN whose name starts with PREFIX, one run each.
run_each() {
  local binary
  for binary in "$bin/$1"*; do
    case $binary in *.xz) continue ;; esac
    [ -e "$binary" ] || continue  # none there: the pattern itself
    run "$(basename "$binary")" "$2" "$binary"
  done
}

for step in "$@"; do
  IFS=: read -r kind a b c d <<<"$step"
  case $kind in
    tests)
      run_each test_cuda_ "${a:-120}"
      ;;
    test)
      run "$a${b:+_filtered}" "${c:-120}" "$bin/$a" ${b:+"-tc=$b"}
      ;;
    memcheck | racecheck | synccheck)
      run "${kind}_$a" "${c:-120}" compute-sanitizer --tool "$kind" --error-exitcode 1 "$bin/$a" "-tc=$b"
      ;;
    ncu)
      ncu_runs=$((ncu_runs + 1))
      run "ncu_$ncu_runs" "${b:-120}" ncu --clock-control none --launch-count 24 \
        --kernel-name "regex:chunked|split|reverse|gradient" \
        --section SpeedOfLight --section WarpStateStats --section LaunchStats --section Occupancy \
        --section SourceCounters \
        --metrics sm__inst_executed.sum,smsp__issue_active.avg.pct_of_peak_sustained_active \
        "$bin/bench_cuda" "--benchmark_filter=$a" --benchmark_min_time=0
      ;;
    ncusource)
      source_runs=$((source_runs + 1))
      report="$out/ncusource_$source_runs"
      run "ncusource_$source_runs" "${c:-120}" ncu --clock-control none --kernel-name "regex:$b" --launch-skip 2 \
        --launch-count 1 --section SpeedOfLight --section WarpStateStats --section SourceCounters \
        --import-source yes -f -o "$report" "$bin/bench_cuda" "--benchmark_filter=$a" --benchmark_min_time=0
      if [ -f "$report.ncu-rep" ]; then
        ncu -i "$report.ncu-rep" --page details --print-details all >"$report.txt" 2>&1
        ncu -i "$report.ncu-rep" --page source --csv --print-source sass 2>&1 | gzip -9 >"${report}_sass.csv.gz"
        rm -f "$report.ncu-rep"  # large, and the two files above hold what it is read for
      fi
      ;;
    timelines)
      run_each chunked_timeline "${a:-120}"
      ;;
    alternate)
      for ((round = 1; round <= ${b:-2}; ++round)); do
        for binary in "$bin"/bench_cuda*; do
          case $binary in *.xz) continue ;; esac
          [ -e "$binary" ] || continue
          name="alternate_$(basename "$binary")_$round"
          run "$name" "${c:-120}" "$binary" "--benchmark_filter=$a" "--benchmark_out=$out/$name.json" \
            --benchmark_out_format=json ${d:+"--benchmark_min_time=$d"}
        done
      done
      ;;
    bench)
      bench_runs=$((bench_runs + 1))
      run "bench_$bench_runs" "${b:-120}" "$bin/bench_cuda" "--benchmark_filter=$a" \
        "--benchmark_out=$out/bench_$bench_runs.json" --benchmark_out_format=json ${c:+"--benchmark_min_time=$c"}
      ;;
    *)
      echo "device_checks: unknown step '$step'" | tee -a "$out/summary.txt"
      failed=$((failed + 1))
      ;;
  esac
done
exit $failed
