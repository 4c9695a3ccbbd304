// bench/misuse_overhead.hpp - the misuse-detector benchmarks, compiled twice into one binary.
//
// misuse_overhead_bench.cpp includes this with the detector (safemap::checked::Map),
// misuse_overhead_unchecked.cpp with SAFEMAP_NO_MISUSE_CHECKS (safemap::unchecked::Map). Each
// registers the same four benchmarks under its own variant name:
//   misuse/<op>/<checked|unchecked>/100000, op = lookup_hit, insert, erase, iterate
// on safemap::Map<uint64_t, uint64_t>, so the cost of the checks is the ratio of the two
// lines of each op, measured in the same process and run.
//
// Everything below is in an unnamed namespace: each translation unit gets its own copy, so
// the two definitions (which name different Map types) cannot violate the ODR.
#pragma once

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_support.hpp"
#include "safemap/map.hpp"

namespace {

namespace misuse_bench {

using safemap_bench::clobber;
using safemap_bench::escape;
using map_type = safemap::Map<std::uint64_t, std::uint64_t>;

constexpr std::size_t n = 100'000;

struct keys {
  std::vector<std::uint64_t> inserted = safemap_bench::make_u64_keys(n);
  std::vector<std::uint64_t> shuffled = safemap_bench::key_set<std::uint64_t>(n).shuffled;
};

const keys& the_keys() {
  static const keys k;
  return k;
}

void fill(map_type& m) {
  const auto& k = the_keys().inserted;
  for (std::size_t i = 0; i < k.size(); ++i) m.try_emplace(k[i], i + 1);
}

void finish(benchmark::State& st) {
  st.SetItemsProcessed(static_cast<std::int64_t>(n) * st.iterations());
}

void lookup_hit(benchmark::State& st) {
  map_type m;
  fill(m);
  std::uint64_t sum = 0;
  for (auto _ : st) {
    sum = 0;
    for (const std::uint64_t k : the_keys().shuffled) {
      if (const std::uint64_t* v = m.find(k)) sum += *v;
    }
    escape(sum);
  }
  if (sum != std::uint64_t{n} * (n + 1) / 2) st.SkipWithError("wrong sum");
  finish(st);
}

void insert(benchmark::State& st) {
  map_type m;
  for (auto _ : st) {
    st.PauseTiming();
    { map_type dead = std::move(m); }  // destroyed outside the timed part
    safemap_bench::settle_heap();
    m = map_type();
    st.ResumeTiming();
    fill(m);
    clobber();
  }
  if (m.size() != n) st.SkipWithError("wrong size");
  finish(st);
}

void erase(benchmark::State& st) {
  map_type m;
  std::size_t erased = 0;
  for (auto _ : st) {
    st.PauseTiming();
    m = map_type();
    safemap_bench::settle_heap();
    fill(m);
    st.ResumeTiming();
    erased = 0;
    for (const std::uint64_t k : the_keys().shuffled) erased += m.erase(k);
    escape(erased);
  }
  if (erased != n) st.SkipWithError("wrong count");
  finish(st);
}

void iterate(benchmark::State& st) {
  map_type m;
  fill(m);
  std::uint64_t sum = 0;
  for (auto _ : st) {
    sum = 0;
    for (const auto& [k, v] : m) sum += v;
    escape(sum);
  }
  if (sum != std::uint64_t{n} * (n + 1) / 2) st.SkipWithError("wrong sum");
  finish(st);
}

int register_all(const char* variant) {
  const std::string suffix = std::string("/") + variant;
  const std::pair<const char*, void (*)(benchmark::State&)> ops[] = {
      {"misuse/lookup_hit", &lookup_hit},
      {"misuse/insert", &insert},
      {"misuse/erase", &erase},
      {"misuse/iterate", &iterate},
  };
  for (const auto& [name, fn] : ops) {
    // settle_heap() once run() has destroyed its maps (see bench_support.hpp).
    benchmark::RegisterBenchmark((name + suffix).c_str(),
                                 [fn = fn](benchmark::State& st) {
                                   fn(st);
                                   safemap_bench::settle_heap();
                                 })
        ->Arg(static_cast<std::int64_t>(n))
        ->Unit(benchmark::kMicrosecond);
  }
  return 0;
}

}  // namespace misuse_bench

}  // namespace
