#!/bin/sh
# bench/run_all.sh - build the benchmarks in Release and run the whole suite the way
# docs/benchmarks.md reports it. Results (JSON, text, tables) go to bench-results/<date>/.
#
#   bench/run_all.sh [build-dir]        default build dir: build/release
#   QUICK=1 bench/run_all.sh            1 repetition, growth tail at 1e6, no waiting: a smoke
#                                       run (~5 min)
#   WAIT_S=0 bench/run_all.sh           do not wait for a quiet machine
#
# The suite takes ~15 minutes on 2 cores. Timings are only as good as the machine is quiet:
# before each part the script waits (up to WAIT_S seconds, default 300) for the 1-minute load
# average to drop below 0.5.
set -eu

cd "$(dirname "$0")/.."
build=${1:-build/release}
out=bench-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target safemap_map_bench safemap_growth_tail safemap_misuse_overhead_bench

if [ "${QUICK:-0}" = 1 ]; then
  reps=1 tail_n=1e6 tail_reps=1 wait_s=${WAIT_S:-0}
else
  reps=3 tail_n=1e7 tail_reps=3 wait_s=${WAIT_S:-300}
fi

wait_quiet() {
  i=0
  while [ "$i" -lt "$wait_s" ] && awk '{ exit !($1 >= 0.5) }' /proc/loadavg; do
    sleep 5
    i=$((i + 5))
  done
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

flags="--benchmark_report_aggregates_only=true --benchmark_enable_random_interleaving=true"

wait_quiet
# shellcheck disable=SC2086
"$build/bench/safemap_map_bench" $flags --benchmark_min_time=0.1 --benchmark_repetitions=$reps \
  --benchmark_out="$out/map_bench.json" --benchmark_out_format=json | tee "$out/map_bench.txt"

# shellcheck disable=SC2086
"$build/bench/safemap_map_bench" $flags --benchmark_min_time=0.1 --benchmark_repetitions=$((reps * 3)) \
  --benchmark_filter='^(insert|lookup_hit|lookup_miss)/u64/.*/1000000$' \
  --benchmark_out="$out/targets.json" --benchmark_out_format=json | tee "$out/targets.txt"

wait_quiet
# shellcheck disable=SC2086
"$build/bench/safemap_misuse_overhead_bench" $flags --benchmark_min_time=0.2 \
  --benchmark_repetitions=$((reps * 3)) \
  --benchmark_out="$out/misuse_bench.json" --benchmark_out_format=json | tee "$out/misuse_bench.txt"

wait_quiet
"$build/bench/safemap_growth_tail" --n="$tail_n" --reps="$tail_reps" | tee "$out/growth_tail.md"

git hash-object include/safemap/map.hpp >"$out/map_hpp.blob"
python3 bench/compare.py "$out/map_bench.json" "$out/targets.json" "$out/misuse_bench.json" |
  tee "$out/tables.md"
echo "results in $out"
