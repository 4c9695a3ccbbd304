// bench/json_bench.cpp - write_json / from_json throughput and allocations per call, against
// nlohmann::json building and dumping (and parsing) the same data in the same run.
//
//   build/release/bench/safemap_json_bench --benchmark_min_time=0.2
//
// Counters: bytes_per_second (MB/s of JSON text) and allocs/call (global operator new calls
// per iteration, counted by this binary). safemap's write_json is measured in steady state:
// the output string is reused with enough capacity, as in a service that serializes
// repeatedly. nlohmann has no way to serialize a map without first building its DOM, so its
// "build+dump" is the comparable number; "dump" alone (DOM prebuilt) is shown too.
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <random>
#include <string>
#include <unordered_map>

#include "safemap/json.hpp"

#if __has_include(<nlohmann/json.hpp>)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#include <nlohmann/json.hpp>
#pragma GCC diagnostic pop
#define SAFEMAP_BENCH_HAVE_NLOHMANN 1
#endif

// The replacement operator new/delete below are malloc/free based on purpose; GCC's
// -Wmismatched-new-delete cannot see that they replace the global ones.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

namespace {
std::atomic<std::uint64_t> g_allocs{0};
}  // namespace

void* operator new(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

using u64_map = safemap::Map<std::uint64_t, std::uint64_t>;
using str_map = safemap::Map<std::string, std::string>;

std::string random_string(std::mt19937_64& rng, std::size_t len) {
  static constexpr char alphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::string s(len, ' ');
  for (auto& c : s) c = alphabet[rng() % (sizeof alphabet - 1)];
  return s;
}

const u64_map& u64_data(std::size_t n) {
  static std::unordered_map<std::size_t, u64_map> cache;
  auto [it, fresh] = cache.try_emplace(n);
  if (fresh) {
    std::mt19937_64 rng(42);
    while (it->second.size() < n) it->second.insert_or_assign(rng(), rng());
  }
  return it->second;
}

const str_map& str_data(std::size_t n) {
  static std::unordered_map<std::size_t, str_map> cache;
  auto [it, fresh] = cache.try_emplace(n);
  if (fresh) {
    std::mt19937_64 rng(7);
    while (it->second.size() < n) {
      it->second.insert_or_assign(random_string(rng, 16 + rng() % 9), random_string(rng, 16));
    }
  }
  return it->second;
}

template <class M>
const M& data(std::size_t n) {
  if constexpr (std::is_same_v<M, u64_map>) {
    return u64_data(n);
  } else {
    return str_data(n);
  }
}

template <class M>
void BM_safemap_write_json(benchmark::State& state) {
  const M& m = data<M>(static_cast<std::size_t>(state.range(0)));
  std::string out;
  safemap::write_json(m, out);  // warm-up: capacity and per-thread scratch
  std::uint64_t allocs = 0;
  std::size_t bytes = 0;
  for (auto _ : state) {
    out.clear();
    const std::uint64_t a0 = g_allocs.load(std::memory_order_relaxed);
    safemap::write_json(m, out);
    allocs += g_allocs.load(std::memory_order_relaxed) - a0;  // the call only, not the harness
    bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["allocs/call"] =
      static_cast<double>(allocs) / static_cast<double>(state.iterations());
  state.counters["checksum"] = static_cast<double>(out.size());
}

template <class M>
void BM_safemap_from_json(benchmark::State& state) {
  const std::string text = safemap::to_json(data<M>(static_cast<std::size_t>(state.range(0))));
  const std::uint64_t a0 = g_allocs.load();
  std::size_t n = 0;
  for (auto _ : state) {
    M m = safemap::from_json<M>(text);
    n = m.size();
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(text.size() * state.iterations()));
  state.counters["allocs/call"] =
      static_cast<double>(g_allocs.load() - a0) / static_cast<double>(state.iterations());
  state.counters["checksum"] = static_cast<double>(n);
}

#ifdef SAFEMAP_BENCH_HAVE_NLOHMANN
template <class M>
nlohmann::json build_dom(const M& m) {
  nlohmann::json j = nlohmann::json::object();
  m.for_each([&](const auto& k, const auto& v) {
    if constexpr (std::is_same_v<M, u64_map>) {
      j[std::to_string(k)] = v;
    } else {
      j[k] = v;
    }
  });
  return j;
}

template <class M>
void BM_nlohmann_build_and_dump(benchmark::State& state) {
  const M& m = data<M>(static_cast<std::size_t>(state.range(0)));
  const std::uint64_t a0 = g_allocs.load();
  std::size_t bytes = 0;
  for (auto _ : state) {
    const std::string out = build_dom(m).dump();
    bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["allocs/call"] =
      static_cast<double>(g_allocs.load() - a0) / static_cast<double>(state.iterations());
}

template <class M>
void BM_nlohmann_dump(benchmark::State& state) {
  const nlohmann::json dom = build_dom(data<M>(static_cast<std::size_t>(state.range(0))));
  const std::uint64_t a0 = g_allocs.load();
  std::size_t bytes = 0;
  for (auto _ : state) {
    const std::string out = dom.dump();
    bytes += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(bytes));
  state.counters["allocs/call"] =
      static_cast<double>(g_allocs.load() - a0) / static_cast<double>(state.iterations());
}

template <class M>
void BM_nlohmann_parse(benchmark::State& state) {
  const std::string text = safemap::to_json(data<M>(static_cast<std::size_t>(state.range(0))));
  const std::uint64_t a0 = g_allocs.load();
  for (auto _ : state) {
    nlohmann::json j = nlohmann::json::parse(text);
    benchmark::DoNotOptimize(j.size());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(text.size() * state.iterations()));
  state.counters["allocs/call"] =
      static_cast<double>(g_allocs.load() - a0) / static_cast<double>(state.iterations());
}
#endif

#define SAFEMAP_JSON_BENCH(fn)                                                                  \
  BENCHMARK_TEMPLATE(fn, u64_map)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond); \
  BENCHMARK_TEMPLATE(fn, str_map)->Arg(100'000)->Arg(1'000'000)->Unit(benchmark::kMillisecond)

SAFEMAP_JSON_BENCH(BM_safemap_write_json);
SAFEMAP_JSON_BENCH(BM_safemap_from_json);
#ifdef SAFEMAP_BENCH_HAVE_NLOHMANN
SAFEMAP_JSON_BENCH(BM_nlohmann_build_and_dump);
SAFEMAP_JSON_BENCH(BM_nlohmann_dump);
SAFEMAP_JSON_BENCH(BM_nlohmann_parse);
#endif

}  // namespace

BENCHMARK_MAIN();
