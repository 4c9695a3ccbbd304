// batch_bench.cpp - batched lookups (load_many) against a loop of load, and against the peers'
// loops, on a map of N uint64 keys: N = 1e4 (in cache) and 1e6 (out of cache: a lookup is a
// cache and TLB miss).
//
// Every thread looks up all N keys, in a random order of its own, in batches of 256 (the size
// a caller that has keys in hand, a request's or a join's, would pass), and sums the values it
// finds; a wrong sum stops the benchmark with an error. Rows are named
//   <how>/<map>/<N>   how: load (a loop of load, what every map offers) or load_many
// ns_op is wall time divided by the lookups of all threads. Peers have no batched lookup, so
// their load row is the comparison for our load_many. Run, for medians of 5:
//   build/release/bench/safemap_batch_bench --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true                             (one line)
// Results: docs/benchmarks.md, "Eleventh pass".
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "adapter_bench.hpp"
#include "safemap/cow_map.hpp"
#include "safemap/locked_map.hpp"
#include "safemap/reclaim.hpp"
#include "safemap/sharded_map.hpp"
#include "safemap/sync_map.hpp"
#include "safemap/trie_map.hpp"

namespace {

using namespace safemap_bench::adapter_bench;
using safemap_bench::safemap_adapter;

constexpr std::size_t batch = 256;

// The keys (random, distinct with overwhelming odds; value = index + 1) and one shuffled probe
// order per thread.
struct key_set {
  std::vector<u64> keys;
  std::vector<std::vector<u64>> orders;
  explicit key_set(std::size_t n) {
    std::mt19937_64 rng(n);
    keys.resize(n);
    for (u64& k : keys) k = rng();
    for (int t = 0; t < 2; ++t) {
      orders.push_back(keys);
      std::shuffle(orders.back().begin(), orders.back().end(), rng);
    }
  }
  u64 sum() const {
    const u64 n = keys.size();
    return n * (n + 1) / 2;
  }
};

constexpr std::size_t small_n = 10'000;
constexpr std::size_t large_n = 1'000'000;

// Built before any benchmark runs (main): the threads of a row only read them.
const key_set& keys_for(std::size_t n) {
  static const key_set small(small_n), large(large_n);
  return n == small_n ? small : large;
}

template <class A, bool Many>
void BM_Batch(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  std::unique_ptr<A>& m = shared_map<A>();
  if (state.thread_index() == 0) {
    const key_set& ks = keys_for(n);
    m = std::make_unique<A>();
    std::vector<std::pair<u64, u64>> entries;
    entries.reserve(n);
    for (std::size_t i = 0; i < n; ++i) entries.emplace_back(ks.keys[i], i + 1);
    m->fill(entries);  // CowMap: one copy for the lot (a store each would copy n times)
    // One load of each key, as Go's setup does: SyncMap's misses promote its dirty map, so
    // the timed lookups read its read map.
    for (const u64 k : ks.keys) {
      u64 v = 0;
      m->load(k, v);
    }
  }
  { safemap::rcu::read_guard warm; }  // registers this thread outside the clock
  const std::vector<u64>& order =
      keys_for(n).orders[static_cast<std::size_t>(state.thread_index()) % 2];
  std::vector<std::optional<u64>> out(batch);
  u64 sum = 0;
  // The first iteration waits for every thread (Google Benchmark's start barrier), so thread
  // 0's setup happens before any other thread reads the map.
  for (auto _ : state) {
    sum = 0;
    for (std::size_t b = 0; b < n; b += batch) {
      const std::size_t len = std::min(batch, n - b);
      const std::span<const u64> keys(order.data() + b, len);
      if constexpr (Many) {
        m->map().load_many(keys, std::span<std::optional<u64>>(out.data(), len));
        for (std::size_t i = 0; i < len; ++i) sum += out[i].value_or(0);
      } else {
        for (const u64 k : keys) {
          u64 v = 0;
          if (m->load(k, v)) sum += v;
        }
      }
    }
    benchmark::DoNotOptimize(sum);
  }
  if (sum != keys_for(n).sum()) state.SkipWithError("wrong sum");
  state.counters["ns_op"] =
      benchmark::Counter(static_cast<double>(state.iterations()) * static_cast<double>(n),
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  if (state.thread_index() == 0) m.reset();  // after the stop barrier: nobody reads it now
}

#define BATCH_BENCH(how, many, A, name) \
  BENCHMARK_TEMPLATE(BM_Batch, A, many) \
      ->Name(how "/" name)              \
      ->Arg(small_n)                    \
      ->Arg(large_n)                    \
      ->Threads(1)                      \
      ->Threads(2)                      \
      ->UseRealTime()                   \
      ->Unit(benchmark::kMillisecond)

using locked_a = safemap_adapter<safemap::LockedMap<u64, u64>>;
using sharded_a = safemap_adapter<safemap::ShardedMap<u64, u64>>;
using cow_a = safemap_adapter<safemap::CowMap<u64, u64>>;
using sync_a = safemap_adapter<safemap::SyncMap<u64, u64>>;
using trie_a = safemap_adapter<safemap::TrieMap<u64, u64>>;
BATCH_BENCH("load", false, locked_a, "LockedMap");
BATCH_BENCH("load_many", true, locked_a, "LockedMap");
BATCH_BENCH("load", false, cow_a, "CowMap");
BATCH_BENCH("load_many", true, cow_a, "CowMap");
BATCH_BENCH("load", false, sync_a, "SyncMap");
BATCH_BENCH("load_many", true, sync_a, "SyncMap");
BATCH_BENCH("load", false, trie_a, "TrieMap");
BATCH_BENCH("load_many", true, trie_a, "TrieMap");
BATCH_BENCH("load", false, sharded_a, "ShardedMap");
BATCH_BENCH("load_many", true, sharded_a, "ShardedMap");
#if SAFEMAP_BENCH_HAVE_TBB
BATCH_BENCH("load", false, tbbu_a, "tbb-unordered");
BATCH_BENCH("load", false, tbb_a, "tbb-hash-map");
#endif
#if SAFEMAP_BENCH_HAVE_CUCKOO
BATCH_BENCH("load", false, cuckoo_a, "libcuckoo");
#endif
#if SAFEMAP_BENCH_HAVE_LFHT
BATCH_BENCH("load", false, lfht_a, "urcu-lfht");
#endif

}  // namespace

int main(int argc, char** argv) {
  keys_for(small_n);  // both key sets exist before the first row's threads start
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
