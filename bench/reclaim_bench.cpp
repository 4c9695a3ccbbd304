// reclaim_bench.cpp - the cost of an empty rcu::read_guard (single thread), against liburcu's
// exported read_lock/read_unlock calls (what the guard did before its read side was inlined).
// Method and results: docs/benchmarks.md.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "safemap/cow_map.hpp"
#include "safemap/reclaim.hpp"

namespace {

void BM_EmptyReadGuard(benchmark::State& state) {
  { safemap::rcu::read_guard warm; }  // registers this thread
  for (auto _ : state) {
    safemap::rcu::read_guard guard;
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_EmptyReadGuard);

void BM_NestedReadGuard(benchmark::State& state) {
  safemap::rcu::read_guard outer;
  for (auto _ : state) {
    safemap::rcu::read_guard guard;
    benchmark::ClobberMemory();
  }
}
BENCHMARK(BM_NestedReadGuard);

#if !SAFEMAP_TSAN
void BM_UrcuExportedReadLockUnlock(benchmark::State& state) {
  { safemap::rcu::read_guard warm; }  // registers this thread
  for (auto _ : state) {
    ::urcu_memb_read_lock();
    benchmark::ClobberMemory();
    ::urcu_memb_read_unlock();
  }
}
BENCHMARK(BM_UrcuExportedReadLockUnlock);
#endif

void BM_CowMapLoadHit(benchmark::State& state) {
  safemap::CowMap<std::uint64_t, std::uint64_t> m;
  m.update([](auto& next) {
    for (std::uint64_t k = 0; k < 1024; ++k) next.insert_or_assign(k, k);
  });
  std::uint64_t k = 0;
  for (auto _ : state) benchmark::DoNotOptimize(m.load(k++ & 1023));
}
BENCHMARK(BM_CowMapLoadHit);

}  // namespace

BENCHMARK_MAIN();
