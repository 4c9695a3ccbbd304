#!/bin/sh
# bench/run_all.sh - build the benchmarks in Release and run the whole suite the way
# docs/benchmarks.md reports it. Results (JSON, text, tables) go to bench-results/<date>/.
#
#   bench/run_all.sh [build-dir]        default build dir: build/release
#   QUICK=1 bench/run_all.sh            1 repetition, growth tail at 1e6: a smoke run (~2 min)
#
# The suite takes ~10 minutes on 2 cores. Timings are only as good as the machine is quiet:
# the script waits (up to 5 minutes) for the 1-minute load average to drop below 0.5.
set -eu

cd "$(dirname "$0")/.."
build=${1:-build/release}
out=bench-results/$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j2 --target safemap_map_bench safemap_growth_tail safemap_misuse_overhead_bench

if [ "${QUICK:-0}" = 1 ]; then
  reps=1 tail_n=1e6 tail_reps=1
else
  reps=3 tail_n=1e7 tail_reps=3
fi

wait_quiet() {
  i=0
  while [ "$i" -lt 60 ] && awk '{ exit !($1 >= 0.5) }' /proc/loadavg; do
    sleep 5
    i=$((i + 1))
  done
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

flags="--benchmark_min_time=0.1 --benchmark_report_aggregates_only=true --benchmark_enable_random_interleaving=true"

wait_quiet
# shellcheck disable=SC2086
"$build/bench/safemap_map_bench" $flags --benchmark_repetitions=$reps \
  --benchmark_out="$out/map_bench.json" --benchmark_out_format=json | tee "$out/map_bench.txt"

wait_quiet
# shellcheck disable=SC2086
"$build/bench/safemap_misuse_overhead_bench" $flags --benchmark_repetitions=$((reps * 3)) \
  --benchmark_out="$out/misuse_bench.json" --benchmark_out_format=json | tee "$out/misuse_bench.txt"

wait_quiet
"$build/bench/safemap_growth_tail" --n="$tail_n" --reps="$tail_reps" | tee "$out/growth_tail.md"

python3 bench/compare.py "$out/map_bench.json" "$out/misuse_bench.json" | tee "$out/tables.md"
echo "results in $out"
