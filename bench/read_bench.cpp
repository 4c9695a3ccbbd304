// read_bench.cpp - Go's LoadMostlyHits / LoadMostlyMisses, exactly as safemap-bench runs them,
// under Google Benchmark: repetitions, medians and one binary for every map, so the 2-thread
// read rows can be compared in one run without safemap-bench's whole suite around them.
//
// The access pattern is tools/safemap-bench's (engine/runner.hpp): the map is set up with Go's
// setup (LoadOrStore(i, i) for i < n, then Load(i % n) for i < 2n: SyncMap promotes its dirty
// map), n = 1023 for hits and 1 for misses; every thread then calls Load(i % 1024) for
// i = 0, 1, 2... (safemap-bench starts thread t at t << 40, which is 0 mod 1024) and adds
// found values to a checksum. The maps are driven through safemap-bench's own adapters
// (tools/safemap-bench/adapters), so each map is called exactly as the tool calls it.
//
// ns_op is Go's ns/op: wall time divided by the operations of all threads (Google Benchmark's
// own "Time" column is per thread). Run, for medians of 5:
//   build/release/bench/safemap_read_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true --benchmark_min_time=0.2   (one line)
//
// Fixed-count mode, for instruction and cache counts per lookup under cachegrind (this machine
// exposes no hardware counters to perf); run it twice with different counts and subtract:
//   valgrind --tool=cachegrind --cache-sim=yes --branch-sim=yes
//       build/release/bench/safemap_read_bench --fixed SyncMap hits 1000000   (one line)
//
// Method and results: docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "adapter_bench.hpp"
#include "safemap/cow_map.hpp"
#include "safemap/map.hpp"
#include "safemap/reclaim.hpp"
#include "safemap/sync_map.hpp"
#include "safemap/trie_map.hpp"

namespace {

using namespace safemap_bench::adapter_bench;
using safemap_bench::safemap_adapter;

constexpr u64 period = 1024;  // safemap-bench's go_mostly_period: hits + misses

enum class workload { hits, misses };

// Go's setup (safemap-bench's go_setup_hits).
template <class A>
void go_setup(A& m, workload w) {
  const u64 n = w == workload::hits ? period - 1 : 1;
  u64 v = 0;
  for (u64 k = 0; k < n; ++k) m.load_or_store(k, k, v);
  for (u64 k = 0; k < 2 * n; ++k) m.load(k % n, v);
}

// One thread's loop: safemap-bench's op<load_mostly_*>; the checksum keeps every load alive.
template <class A>
inline u64 run_ops(const A& m, u64 ops) {
  u64 checksum = 0;
  for (u64 i = 0; i < ops; ++i) {
    const u64 k = i % period;
    u64 v = 0;
    if (m.load(k, v)) checksum += v == k ? v + 1 : ~u64{0};
  }
  return checksum;
}

template <class A, workload W>
void BM_Load(benchmark::State& state) {
  std::unique_ptr<A>& m = shared_map<A>();
  if (state.thread_index() == 0) {
    m = std::make_unique<A>();
    go_setup(*m, W);
  }
  { safemap::rcu::read_guard warm; }  // registers this thread outside the clock
  u64 checksum = 0;
  u64 i = 0;
  // The first iteration waits for every thread (Google Benchmark's start barrier), so thread
  // 0's setup happens before any other thread reads the map.
  for (auto _ : state) {
    // 64 ops per iteration, as safemap-bench's blocks: the loop's own cost stays out.
    for (int j = 0; j < 64; ++j, ++i) {
      const u64 k = i % period;
      u64 v = 0;
      if (m->load(k, v)) checksum += v == k ? v + 1 : ~u64{0};
    }
  }
  benchmark::DoNotOptimize(checksum);
  const double ops = static_cast<double>(state.iterations()) * 64;
  // Summed over threads, divided by the wall time, inverted: Go's ns/op (shown in seconds).
  state.counters["ns_op"] =
      benchmark::Counter(ops, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  if (state.thread_index() == 0) m.reset();  // after the stop barrier: nobody reads it now
}

// The parts of a lookup on their own, single-threaded, to tell where the time goes.
template <workload W>
void BM_MapFind(benchmark::State& state) {
  safemap::Map<u64, u64> m;
  const u64 n = W == workload::hits ? period - 1 : 1;
  for (u64 k = 0; k < n; ++k) m.try_emplace(k, k);
  u64 checksum = 0;
  u64 i = 0;
  for (auto _ : state) {
    for (int j = 0; j < 64; ++j, ++i) {
      const u64 k = i % period;
      if (const u64* v = m.find(k)) checksum += *v + 1;
    }
  }
  benchmark::DoNotOptimize(checksum);
  state.counters["ns_op"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * 64,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}

#define READ_BENCH(A, name)                        \
  BENCHMARK_TEMPLATE(BM_Load, A, workload::hits)   \
      ->Name("LoadMostlyHits/" name)               \
      ->Threads(1)                                 \
      ->Threads(2)                                 \
      ->UseRealTime();                             \
  BENCHMARK_TEMPLATE(BM_Load, A, workload::misses) \
      ->Name("LoadMostlyMisses/" name)             \
      ->Threads(1)                                 \
      ->Threads(2)                                 \
      ->UseRealTime()

using sync_a = safemap_adapter<safemap::SyncMap<u64, u64>>;
using cow_a = safemap_adapter<safemap::CowMap<u64, u64>>;
using trie_a = safemap_adapter<safemap::TrieMap<u64, u64>>;
READ_BENCH(sync_a, "SyncMap");
READ_BENCH(cow_a, "CowMap");
READ_BENCH(trie_a, "TrieMap");
#if SAFEMAP_BENCH_HAVE_TBB
READ_BENCH(tbbu_a, "tbb-unordered");
READ_BENCH(tbb_a, "tbb-hash-map");
#endif
#if SAFEMAP_BENCH_HAVE_CUCKOO
READ_BENCH(cuckoo_a, "libcuckoo");
#endif
#if SAFEMAP_BENCH_HAVE_LFHT
READ_BENCH(lfht_a, "urcu-lfht");
#endif

BENCHMARK_TEMPLATE(BM_MapFind, workload::hits)->Name("MapFindOnly/hits");
BENCHMARK_TEMPLATE(BM_MapFind, workload::misses)->Name("MapFindOnly/misses");

template <class A>
int fixed(workload w, u64 ops) {
  A m;
  go_setup(m, w);
  const u64 checksum = run_ops(m, ops);
  std::printf("checksum %llu\n", static_cast<unsigned long long>(checksum));
  return 0;
}

// --fixed MAP hits|misses OPS: setup, then OPS loads on this thread, nothing else. MAP is a
// benchmark's map name, or Map for safemap::Map::find alone.
int fixed_main(const char* map, const char* wl, const char* count) {
  const workload w = std::strcmp(wl, "hits") == 0 ? workload::hits : workload::misses;
  const u64 ops = std::strtoull(count, nullptr, 10);
  const std::string name = map;
  if (name == "Map") {  // safemap::Map::find alone, no guard, no adapter
    safemap::Map<u64, u64> m;
    for (u64 k = 0; k < (w == workload::hits ? period - 1 : 1); ++k) m.try_emplace(k, k);
    u64 checksum = 0;
    for (u64 i = 0; i < ops; ++i) {
      if (const u64* v = m.find(i % period)) checksum += *v + 1;
    }
    std::printf("checksum %llu\n", static_cast<unsigned long long>(checksum));
    return 0;
  }
  if (name == "SyncMap") return fixed<sync_a>(w, ops);
  if (name == "CowMap") return fixed<cow_a>(w, ops);
  if (name == "TrieMap") return fixed<trie_a>(w, ops);
#if SAFEMAP_BENCH_HAVE_TBB
  if (name == "tbb-unordered") return fixed<tbbu_a>(w, ops);
  if (name == "tbb-hash-map") return fixed<tbb_a>(w, ops);
#endif
#if SAFEMAP_BENCH_HAVE_CUCKOO
  if (name == "libcuckoo") return fixed<cuckoo_a>(w, ops);
#endif
#if SAFEMAP_BENCH_HAVE_LFHT
  if (name == "urcu-lfht") return fixed<lfht_a>(w, ops);
#endif
  std::fprintf(stderr, "read_bench: unknown map %s\n", map);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::strcmp(argv[1], "--fixed") == 0)
    return fixed_main(argv[2], argv[3], argv[4]);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
