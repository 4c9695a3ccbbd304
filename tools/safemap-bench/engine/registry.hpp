// engine/registry.hpp - the maps safemap-bench knows, each a type-erased entry built from an
// adapter type (engine/runner.hpp describes adapters).
//
// Every map is compiled in its own translation unit (maps_*.cpp) and only when its headers
// were found at build time; a map that was not found still has an entry in missing_maps with
// the reason, so --list and the report can say why it is absent.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "heap.hpp"
#include "runner.hpp"
#include "safemap/reclaim.hpp"
#include "workloads.hpp"

namespace safemap_bench {

struct map_entry {
  std::string name;         // as given to --maps and written in the CSV
  std::string label;        // short column heading of the table
  std::string family;       // "safemap" or "peer"
  std::string description;  // one line for --list
  bool string_keys = true;  // can run the string-key workloads
  bool range_safe_with_writers = true;
  bool concurrent_erase = true;  // false: erasing workloads run with one thread only
  bool copies_on_write = false;  // each write copies the map (quadratic on growing workloads)
  bool uses_rcu = false;         // frees through RCU: wait for a grace period after each run
  std::function<repeat_result(const workload&, const workload_plan&, unsigned, const run_options&)>
      run;
  std::function<double(std::size_t)> memory_per_entry;

  // Why this map does not run workload w with `threads` threads (nullopt: it does).
  std::optional<std::string> unsupported(const workload& w, unsigned threads, bool fixed_ops) const;
};

struct missing_map {
  std::string name;
  std::string why;
};

struct map_registry {
  std::vector<map_entry> maps;
  std::vector<missing_map> missing;
};

// Every map compiled in, in report order (safemap's first), and those that were not.
map_registry& registry();

// Bytes malloc holds per entry after filling a fresh A with n integer keys on this thread
// (every retired object freed first).
template <class A>
double measure_memory_per_entry(std::size_t n) {
  std::vector<std::pair<typename A::key_type, value_t>> entries;
  entries.reserve(n);
  for (std::size_t k = 0; k < n; ++k) {
    if constexpr (std::is_same_v<typename A::key_type, std::string>) {
      entries.emplace_back(string_key(k), k + 1);
    } else {
      entries.emplace_back(u64_key(k), k + 1);
    }
  }
  safemap::rcu::barrier();
  const std::size_t before = malloc_bytes_in_use();
  auto map = std::make_unique<A>();
  map->fill(entries);
  safemap::rcu::barrier();
  const std::size_t after = malloc_bytes_in_use();
  map.reset();
  safemap::rcu::barrier();
  return (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(n);
}

// Runs workload w with the adapter for its key type (AStr = void: no string keys).
template <class A64, class AStr>
repeat_result dispatch_run(const workload& w, const workload_plan& p, unsigned t,
                           const run_options& o) {
  using wk = workload_kind;
  repeat_result r;
  switch (w.kind) {
#define SAFEMAP_BENCH_CASE(kind)          \
  case wk::kind:                          \
    r = run_once<wk::kind, A64>(p, t, o); \
    break;
    SAFEMAP_BENCH_CASE(load_mostly_hits)
    SAFEMAP_BENCH_CASE(load_mostly_misses)
    SAFEMAP_BENCH_CASE(load_or_store_balanced)
    SAFEMAP_BENCH_CASE(load_or_store_unique)
    SAFEMAP_BENCH_CASE(load_or_store_collision)
    SAFEMAP_BENCH_CASE(load_and_delete_balanced)
    SAFEMAP_BENCH_CASE(load_and_delete_unique)
    SAFEMAP_BENCH_CASE(load_and_delete_collision)
    SAFEMAP_BENCH_CASE(range)
    SAFEMAP_BENCH_CASE(adversarial_alloc)
    SAFEMAP_BENCH_CASE(adversarial_delete)
    SAFEMAP_BENCH_CASE(delete_collision)
    SAFEMAP_BENCH_CASE(swap_collision)
    SAFEMAP_BENCH_CASE(serialize_json)
    SAFEMAP_BENCH_CASE(cas_collision)
#undef SAFEMAP_BENCH_CASE
    case wk::mix:
      if constexpr (!std::is_void_v<AStr>) {
        if (w.string_keys) {
          r = run_once<wk::mix, AStr>(p, t, o);
          break;
        }
      }
      r = run_once<wk::mix, A64>(p, t, o);
      break;
  }
  return r;
}

// uses_rcu: the map frees through RCU (safemap::rcu, liburcu's call_rcu); after each run the
// registry waits until everything it retired is freed, so one run's garbage is not freed
// during the next run's clock (a grace period costs about a millisecond; maps without RCU
// skip it).
template <class A64, class AStr>
map_entry make_map_entry(std::string name, std::string label, std::string family,
                         std::string description, bool uses_rcu) {
  map_entry e;
  e.name = std::move(name);
  e.label = std::move(label);
  e.family = std::move(family);
  e.description = std::move(description);
  e.string_keys = !std::is_void_v<AStr>;
  e.uses_rcu = uses_rcu;
  if (uses_rcu) {
    e.run = [](const workload& w, const workload_plan& p, unsigned t, const run_options& o) {
      repeat_result r = dispatch_run<A64, AStr>(w, p, t, o);
      safemap::rcu::barrier();
      return r;
    };
  } else {
    e.run = &dispatch_run<A64, AStr>;
  }
  e.memory_per_entry = &measure_memory_per_entry<A64>;
  return e;
}

}  // namespace safemap_bench
