// bench/redis_bench.cpp - RedisMap's cost per call against the same commands sent without it.
//
// SAFEMAP_BENCH_REDIS_PORT names a loopback redis-server (scripts/bench-redis starts one and
// runs redis-benchmark beside this binary, so the ratios come from one run on one server):
//   BM_RedisMap_load / BM_hiredis_hget      one HGET round trip, through RedisMap / bare hiredis
//   BM_RedisMap_store / BM_hiredis_hset     RedisMap's store is a script (HSET + INCR of the
//                                           version, atomically); bare HSET is the floor
//   BM_RedisMap_load_many/N                 N keys per call, pipelined HMGET (items/s)
// Every benchmark uses one connection, one thread: latency, not server throughput.
#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "safemap/redis_map.hpp"

namespace {

safemap::redis_options server() {
  safemap::redis_options o;
  const char* p = std::getenv("SAFEMAP_BENCH_REDIS_PORT");
  o.port = p != nullptr ? std::atoi(p) : 6379;
  o.pool_size = 1;
  return o;
}

constexpr std::uint64_t k_keys = 10000;

safemap::RedisMap<std::uint64_t, std::uint64_t>& filled_map() {
  static safemap::RedisMap<std::uint64_t, std::uint64_t> m = [] {
    safemap::RedisMap<std::uint64_t, std::uint64_t> m("safemap-redis-bench", server());
    m.clear();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> e;
    for (std::uint64_t k = 0; k < k_keys; ++k) e.emplace_back(k, k);
    m.store_many(e);
    return m;
  }();
  return m;
}

void BM_RedisMap_load(benchmark::State& state) {
  auto& m = filled_map();
  std::uint64_t k = 0, sum = 0;
  for (auto _ : state) {
    sum += *m.load(k);
    k = (k + 1) % k_keys;
  }
  benchmark::DoNotOptimize(sum);
}
BENCHMARK(BM_RedisMap_load)->UseRealTime();

void BM_RedisMap_store(benchmark::State& state) {
  auto& m = filled_map();
  std::uint64_t k = 0;
  for (auto _ : state) {
    m.store(k, k);
    k = (k + 1) % k_keys;
  }
}
BENCHMARK(BM_RedisMap_store)->UseRealTime();

void BM_RedisMap_load_many(benchmark::State& state) {
  auto& m = filled_map();
  const auto n = static_cast<std::uint64_t>(state.range(0));
  std::vector<std::uint64_t> keys;
  for (std::uint64_t k = 0; k < n; ++k) keys.push_back(k % k_keys);
  std::uint64_t sum = 0;
  for (auto _ : state) {
    for (const auto& v : m.load_many(keys)) sum += *v;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * n));
}
BENCHMARK(BM_RedisMap_load_many)->Arg(16)->Arg(1000)->UseRealTime();

// The floor: the same HGET/HSET through bare hiredis on one connection.
redisContext* bare() {
  static redisContext* c = redisConnect("127.0.0.1", server().port);
  return c;
}

void BM_hiredis_hget(benchmark::State& state) {
  filled_map();
  std::uint64_t k = 0, sum = 0;
  for (auto _ : state) {
    const std::string f = std::to_string(k);
    auto* r =
        static_cast<redisReply*>(redisCommand(bare(), "HGET safemap-redis-bench %s", f.c_str()));
    sum += r->len;
    freeReplyObject(r);
    k = (k + 1) % k_keys;
  }
  benchmark::DoNotOptimize(sum);
}
BENCHMARK(BM_hiredis_hget)->UseRealTime();

void BM_hiredis_hset(benchmark::State& state) {
  filled_map();
  std::uint64_t k = 0;
  for (auto _ : state) {
    const std::string f = std::to_string(k);
    freeReplyObject(redisCommand(bare(), "HSET safemap-redis-bench %s %s", f.c_str(), f.c_str()));
    k = (k + 1) % k_keys;
  }
}
BENCHMARK(BM_hiredis_hset)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
