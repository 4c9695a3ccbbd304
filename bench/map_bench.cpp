// bench/map_bench.cpp - safemap::Map against std::unordered_map, absl::flat_hash_map and
// boost::unordered_flat_map, single-threaded, in one run.
//
// Benchmarks are named <op>/<key>/<map>/<N>:
//   op   insert      fill a fresh map with N keys, no reserve (the timed part includes every
//                    growth; the maps are destroyed outside it)
//        lookup_hit  find each of the N keys once, in random order, summing the values
//        lookup_miss find N absent keys
//        find_many_hit, find_many_miss
//                    lookup_hit / lookup_miss in batches of 256 keys: safemap::Map::find_many
//                    (prefetched, overlapped lookups); the peers, which have no batched
//                    lookup, a loop of find over the same batch
//        erase       erase all N keys of a freshly filled map, in random order
//        iterate     walk the whole map once, summing the values
//        copy        copy-construct a filled map (what CowMap does to publish a write; the
//                    copies are destroyed outside the timed part)
//   key  u64 (uint64 -> uint64) or str (16-24 character std::string -> uint64)
//   N    1e3, 1e5, 1e6; insert/u64 also 1e7 (one fill per repetition: it takes seconds)
// items_per_second counts key operations (bench/compare.py turns it into ns per operation). Small N
// is batched (several maps per timed iteration) so each timed iteration does at least 1e5
// operations and the cost of pausing the timer around setup is negligible. Every
// lookup/erase/iterate result is checked (a wrong count stops the benchmark with an error) and
// summed into `checksum`, which must be equal across the maps of one row: a wrong result cannot
// look fast.
//
// How to run and read the results: docs/benchmarks.md (bench/compare.py makes the tables).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "peers.hpp"
#include "safemap/map.hpp"

namespace {

using namespace safemap_bench;

template <class K>
const key_set<K>& keys_for(std::size_t n) {
  static std::map<std::size_t, std::unique_ptr<key_set<K>>> cache;
  auto& slot = cache[n];
  if (!slot) slot = std::make_unique<key_set<K>>(n);
  return *slot;
}

// Each timed iteration touches at least this many keys (several maps when N is small).
constexpr std::size_t min_ops_per_iteration = 100'000;

std::size_t batch_for(std::size_t n) {
  return std::max<std::size_t>(1, min_ops_per_iteration / n);
}

template <class M>
void fill(M& m, const std::vector<typename M::key_type>& keys) {
  for (std::size_t i = 0; i < keys.size(); ++i) m.try_emplace(keys[i], value_t(i + 1));
}

// Sum of the values 1..n: what a full walk or n hits must add up to.
value_t expected_sum(std::size_t n) {
  return value_t(n) * value_t(n + 1) / 2;
}

void finish(benchmark::State& st, std::size_t ops_per_iteration, value_t checksum) {
  const auto items = static_cast<std::int64_t>(ops_per_iteration) * st.iterations();
  st.SetItemsProcessed(items);
  st.counters["checksum"] = static_cast<double>(checksum % 1'000'000'007);
}

template <class M>
struct insert_bench {
  static void run(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto& ks = keys_for<typename M::key_type>(n);
    const std::size_t batch = batch_for(n);
    std::vector<M> maps;
    for (auto _ : st) {
      st.PauseTiming();
      maps.clear();  // the previous iteration's maps die outside the timed part
      settle_heap();
      maps.resize(batch);
      st.ResumeTiming();
      for (M& m : maps) fill(m, ks.keys);
      clobber();
    }
    std::size_t size = 0;
    for (const M& m : maps) size += m.size();
    if (size != batch * n) st.SkipWithError("insert: wrong size");
    finish(st, batch * n, size);
  }
};

template <class M>
struct lookup_hit_bench {
  static void run(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto& ks = keys_for<typename M::key_type>(n);
    M m;
    fill(m, ks.keys);
    value_t sum = 0;
    for (auto _ : st) {
      sum = 0;
      for (const auto& k : ks.shuffled) {
        const value_t* v = lookup(m, k);
        if (v != nullptr) sum += *v;
      }
      escape(sum);
    }
    if (sum != expected_sum(n)) st.SkipWithError("lookup_hit: wrong sum");
    finish(st, n, sum);
  }
};

template <class M>
struct lookup_miss_bench {
  static void run(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto& ks = keys_for<typename M::key_type>(n);
    M m;
    fill(m, ks.keys);
    std::size_t found = 0;
    for (auto _ : st) {
      found = 0;
      for (const auto& k : ks.misses) found += lookup(m, k) != nullptr;
      escape(found);
    }
    if (found != 0) st.SkipWithError("lookup_miss: found an absent key");
    finish(st, n, found);
  }
};

// Looks up keys into out (same length): safemap's find_many, or a loop of the peer's find.
template <class M, class K>
void lookup_batch(const M& m, std::span<const K> keys, std::span<const value_t*> out) {
  if constexpr (requires { m.find_many(keys, out); }) {
    m.find_many(keys, out);
  } else {
    for (std::size_t i = 0; i < keys.size(); ++i) out[i] = lookup(m, keys[i]);
  }
}

// find_many_hit (Hit) and find_many_miss: every key of the shuffled (or absent) set, looked up
// 256 at a time, the results then read like lookup_hit's.
template <class M, bool Hit>
struct find_many_bench {
  static constexpr std::size_t batch = 256;
  static void run(benchmark::State& st) {
    using K = typename M::key_type;
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto& ks = keys_for<K>(n);
    const std::vector<K>& probe = Hit ? ks.shuffled : ks.misses;
    M m;
    fill(m, ks.keys);
    const value_t* out[batch];
    value_t sum = 0;
    std::size_t found = 0;
    for (auto _ : st) {
      sum = 0;
      found = 0;
      for (std::size_t b = 0; b < probe.size(); b += batch) {
        const std::size_t len = std::min(batch, probe.size() - b);
        lookup_batch(m, std::span<const K>(probe.data() + b, len),
                     std::span<const value_t*>(out, len));
        for (std::size_t i = 0; i < len; ++i) {
          if (out[i] != nullptr) {
            sum += *out[i];
            ++found;
          }
        }
      }
      escape(sum);
    }
    if (found != (Hit ? n : 0) || sum != (Hit ? expected_sum(n) : 0)) {
      st.SkipWithError("find_many: wrong result");
    }
    finish(st, n, sum + found);
  }
};
template <class M>
using find_many_hit_bench = find_many_bench<M, true>;
template <class M>
using find_many_miss_bench = find_many_bench<M, false>;

template <class M>
struct erase_bench {
  static void run(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto& ks = keys_for<typename M::key_type>(n);
    const std::size_t batch = batch_for(n);
    std::vector<M> maps;
    std::size_t erased = 0;
    for (auto _ : st) {
      st.PauseTiming();
      maps.clear();
      settle_heap();
      maps.resize(batch);
      for (M& m : maps) fill(m, ks.keys);
      st.ResumeTiming();
      erased = 0;
      for (M& m : maps) {
        for (const auto& k : ks.shuffled) erased += m.erase(k);
      }
      escape(erased);
    }
    if (erased != batch * n) st.SkipWithError("erase: wrong count");
    finish(st, batch * n, erased);
  }
};

template <class M>
struct iterate_bench {
  static void run(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto& ks = keys_for<typename M::key_type>(n);
    M m;
    fill(m, ks.keys);
    value_t sum = 0;
    for (auto _ : st) {
      sum = 0;
      for (const auto& [k, v] : m) sum += v;
      escape(sum);
    }
    if (sum != expected_sum(n)) st.SkipWithError("iterate: wrong sum");
    finish(st, n, sum);
  }
};

template <class M>
struct copy_bench {
  static void run(benchmark::State& st) {
    const auto n = static_cast<std::size_t>(st.range(0));
    const auto& ks = keys_for<typename M::key_type>(n);
    const std::size_t batch = batch_for(n);
    M m;
    fill(m, ks.keys);
    std::vector<M> copies;
    copies.reserve(batch);
    for (auto _ : st) {
      st.PauseTiming();
      copies.clear();  // the previous iteration's copies die outside the timed part
      settle_heap();
      st.ResumeTiming();
      for (std::size_t i = 0; i < batch; ++i) copies.emplace_back(m);
      clobber();
    }
    std::size_t size = 0;
    for (const M& c : copies) size += c.size();
    if (size != batch * n) st.SkipWithError("copy: wrong size");
    finish(st, batch * n, size);
  }
};

template <template <class> class Bench, class M>
void add(const std::string& op, const char* key, const char* map, std::int64_t n) {
  // settle_heap() after run() returns: its maps are destroyed by then, and their deferred
  // frees must not be charged to whichever benchmark runs next.
  auto* b =
      benchmark::RegisterBenchmark((op + "/" + key + "/" + map).c_str(), [](benchmark::State& st) {
        Bench<M>::run(st);
        settle_heap();
      });
  b->Arg(n)->Unit(n >= 1'000'000 ? benchmark::kMillisecond : benchmark::kMicrosecond);
  if (n >= 10'000'000) b->Iterations(1);  // one fill takes seconds; repetitions give the spread
}

// All maps of one (op, key, N) are registered next to each other, so they run close in time.
template <template <class> class Bench, class K>
void add_op(const std::string& op, const char* key, const std::vector<std::int64_t>& sizes) {
  for (const std::int64_t n : sizes) {
    add<Bench, safemap::Map<K, value_t>>(op, key, "safemap", n);
#if SAFEMAP_BENCH_HAVE_ABSL
    add<Bench, absl_map<K>>(op, key, "absl", n);
#endif
#if SAFEMAP_BENCH_HAVE_BOOST
    add<Bench, boost_map<K>>(op, key, "boost", n);
#endif
    add<Bench, std_map<K>>(op, key, "std", n);
  }
}

template <class K>
void add_all(const char* key, bool with_1e7_insert) {
  std::vector<std::int64_t> sizes = {1'000, 100'000, 1'000'000};
  std::vector<std::int64_t> insert_sizes = sizes;
  if (with_1e7_insert) insert_sizes.push_back(10'000'000);
  add_op<insert_bench, K>("insert", key, insert_sizes);
  add_op<lookup_hit_bench, K>("lookup_hit", key, sizes);
  add_op<lookup_miss_bench, K>("lookup_miss", key, sizes);
  add_op<find_many_hit_bench, K>("find_many_hit", key, sizes);
  add_op<find_many_miss_bench, K>("find_many_miss", key, sizes);
  add_op<erase_bench, K>("erase", key, sizes);
  add_op<iterate_bench, K>("iterate", key, sizes);
  add_op<copy_bench, K>("copy", key, sizes);
}

}  // namespace

int main(int argc, char** argv) {
  add_all<std::uint64_t>("u64", true);
  add_all<std::string>("str", false);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
