// engine/runner.hpp - runs one workload on one map adapter with N threads, once.
//
// A map adapter (adapters/*.hpp) wraps one map behind the calls the workloads make, with
// value type std::uint64_t:
//   bool load(const K&, V& out) const            found?
//   bool load_or_store(const K&, V v, V& actual) true if the key was there (actual = its
//                                                value), false if v was stored (actual = v)
//   bool load_and_delete(const K&, V& out)       removed?
//   void store(const K&, V)
//   bool erase(const K&)
//   bool swap(const K&, V v, V& previous)        true if there was a previous value
//   bool compare_and_swap(const K&, V expected, V desired)
//   void range(F f) const                        f(const K&, V) -> bool (false stops)
//   void serialize(std::string& out) const       the map as JSON, sorted keys
//   void fill(const std::vector<std::pair<K, V>>&)  setup in bulk
//
// # How a run is timed
// The map is built and set up (Go's setup, priming included) on the calling thread. Worker
// threads then allocate everything they need (latency reservoir, scratch buffers), count down
// a `prepared` latch and wait on a `go` latch; the calling thread reads the heap counters and
// the clock and opens `go`, so all threads start together. Each thread runs its ops in blocks
// of 64 (checking the clock against its deadline, or its op budget, between blocks) and times
// the first op of a block whenever its reservoir asks (engine/stats.hpp). ns/op is Go's: wall
// time from the start to the last thread's end, divided by the ops of all threads. For maps
// that free through RCU the registry then waits until everything retired is freed, outside
// the clock (registry.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "heap.hpp"
#include "results.hpp"
#include "stats.hpp"
#include "workloads.hpp"

namespace safemap_bench {

struct run_options {
  std::chrono::nanoseconds duration = std::chrono::milliseconds(60);
  std::uint64_t ops_per_thread = 0;  // > 0: a fixed op count instead of a duration
  std::size_t sample_capacity = 1 << 14;
  std::uint64_t sample_interval = 64;
  std::uint64_t clock_overhead_ns = 0;  // subtracted from every latency sample
};

using value_t = std::uint64_t;

// The ops a thread runs before its next look at the clock, given that the last `ops` took
// `took_ns`: as many as fit max_ns at that pace, between 1 and max_len. A slow block (a
// preemption, a CowMap copy) shortens only the next block; fast ones grow it back.
constexpr std::uint64_t next_block_len(std::uint64_t ops, std::int64_t took_ns,
                                       std::uint64_t max_len, std::int64_t max_ns) noexcept {
  if (ops == 0 || took_ns <= 0) return max_len;
  const auto fit = static_cast<std::uint64_t>(
      static_cast<double>(max_ns) * static_cast<double>(ops) / static_cast<double>(took_ns));
  return fit < 1 ? 1 : fit > max_len ? max_len : fit;
}

using bench_clock = std::chrono::steady_clock;

namespace ops {

// Adds a found value (v + 1) if it is the one expected, the poison otherwise.
inline std::uint64_t found(value_t v, value_t want) noexcept {
  return v == want ? v + 1 : impossible;
}

template <class K>
std::vector<std::pair<K, value_t>> iota_entries(std::uint64_t n) {
  std::vector<std::pair<K, value_t>> e;
  e.reserve(n);
  for (std::uint64_t k = 0; k < n; ++k) e.emplace_back(k, k);
  return e;
}

// Go's setup for the *-balanced and load-mostly-* workloads: LoadOrStore(i, i) for i < n,
// then Load(i % n) for i < 2n to reach the steady state (SyncMap promotes its dirty map).
template <class A>
void go_setup_hits(A& m, std::uint64_t n) {
  value_t v = 0;
  for (std::uint64_t k = 0; k < n; ++k) m.load_or_store(k, k, v);
  for (std::uint64_t k = 0; k < 2 * n; ++k) m.load(k % n, v);
}

struct state {
  std::uint64_t checksum = 0;
  std::uint64_t stores = 0;             // adversarial-alloc
  std::uint64_t loads_since_store = 0;  // adversarial-alloc
  std::string buffer;                   // serialize-json
};

template <class A>
void setup(A& m, const workload_plan& p) {
  using K = typename A::key_type;
  using wk = workload_kind;
  if constexpr (std::is_same_v<K, std::string>) {
    // Only the string mixes run with string keys.
    std::vector<std::pair<K, value_t>> e;
    e.reserve(p.keys);
    for (std::size_t k = 0; k < p.keys; ++k) e.emplace_back(p.str_keys[k], k + 1);
    m.fill(e);
  } else {
    value_t v = 0;
    switch (p.w->kind) {
      case wk::load_mostly_hits:
        go_setup_hits(m, go_mostly_period - 1);
        break;
      case wk::load_mostly_misses:
        go_setup_hits(m, 1);
        break;
      case wk::load_or_store_balanced:
      case wk::load_and_delete_balanced:
        go_setup_hits(m, go_balanced_hits);
        break;
      case wk::load_or_store_collision:
      case wk::load_and_delete_collision:
      case wk::delete_collision:
      case wk::swap_collision:
      case wk::cas_collision:
        m.load_or_store(0, 0, v);
        break;
      case wk::range:
      case wk::adversarial_delete:
        m.fill(iota_entries<K>(go_map_size));
        break;
      case wk::load_or_store_unique:
      case wk::load_and_delete_unique:
      case wk::adversarial_alloc:
        break;
      case wk::mix:
      case wk::serialize_json: {
        std::vector<std::pair<K, value_t>> e;
        e.reserve(p.keys);
        for (std::size_t k = 0; k < p.keys; ++k) e.emplace_back(p.u64_keys[k], k + 1);
        m.fill(e);
        break;
      }
    }
  }
}

template <class A>
const typename A::key_type& mix_key(const workload_plan& p, std::uint32_t k) {
  if constexpr (std::is_same_v<typename A::key_type, std::string>) {
    return p.str_keys[k];
  } else {
    return p.u64_keys[k];
  }
}

// One op of workload kind W (see workloads.hpp for what each does and adds to the checksum).
template <workload_kind W, class A>
inline void op(A& m, state& s, const workload_plan& p, std::uint64_t i) {
  using wk = workload_kind;
  value_t v = 0;
  if constexpr (W == wk::load_mostly_hits || W == wk::load_mostly_misses) {
    const std::uint64_t k = i % go_mostly_period;
    if (m.load(k, v)) s.checksum += found(v, k);
  } else if constexpr (W == wk::load_or_store_balanced) {
    const std::uint64_t j = i % go_balanced_period;
    if (j < go_balanced_hits) {
      s.checksum += m.load_or_store(j, i, v) ? found(v, j) : impossible;
    } else {
      s.checksum += !m.load_or_store(i, i, v) && v == i ? 1 : impossible;
    }
  } else if constexpr (W == wk::load_or_store_unique) {
    s.checksum += !m.load_or_store(i, i, v) && v == i ? 1 : impossible;
  } else if constexpr (W == wk::load_or_store_collision) {
    s.checksum += m.load_or_store(0, 0, v) ? found(v, 0) : impossible;
  } else if constexpr (W == wk::load_and_delete_balanced) {
    const std::uint64_t j = i % go_balanced_period;
    if (j < go_balanced_hits) {
      if (m.load_and_delete(j, v)) s.checksum += found(v, j);
    } else if (m.load_and_delete(i, v)) {
      s.checksum += impossible;
    }
  } else if constexpr (W == wk::load_and_delete_unique) {
    if (m.load_and_delete(i, v)) s.checksum += impossible;
  } else if constexpr (W == wk::load_and_delete_collision) {
    if (m.load_and_delete(0, v)) {
      s.checksum += found(v, 0);
      m.store(0, 0);
    }
  } else if constexpr (W == wk::range) {
    std::uint64_t sum = 0;
    m.range([&](const auto&, value_t x) {
      sum += x + 1;
      return true;
    });
    s.checksum += sum;
  } else if constexpr (W == wk::adversarial_alloc) {
    if (m.load(i, v)) s.checksum += impossible;
    if (++s.loads_since_store > s.stores) {
      s.checksum += !m.load_or_store(i, s.stores, v) && v == s.stores ? 1 : impossible;
      s.loads_since_store = 0;
      ++s.stores;
    }
  } else if constexpr (W == wk::adversarial_delete) {
    if (m.load(i, v)) s.checksum += v + 1;
    if (i % go_map_size == 0) {
      std::uint64_t first = 0;
      bool any = false;
      m.range([&](std::uint64_t k, value_t) {
        first = k;
        any = true;
        return false;
      });
      if (any) m.erase(first);
      m.store(i, i);
    }
  } else if constexpr (W == wk::delete_collision) {
    if (m.erase(0)) s.checksum += 1;
  } else if constexpr (W == wk::swap_collision) {
    s.checksum += m.swap(0, 0, v) ? found(v, 0) : impossible;
  } else if constexpr (W == wk::cas_collision) {
    if (m.compare_and_swap(0, 0, 42)) {
      s.checksum += 1;
      if (m.compare_and_swap(0, 42, 0)) s.checksum += 1;
    }
  } else if constexpr (W == wk::mix) {
    const mix_op o = p.ops[i & p.mask()];
    const std::uint32_t k = key_index(o);
    if (is_write(o)) {
      m.store(mix_key<A>(p, k), k + 1);
    } else {
      s.checksum += m.load(mix_key<A>(p, k), v) ? found(v, k + 1) : impossible;
    }
  } else if constexpr (W == wk::serialize_json) {
    if (i % serialize_every == 0) {
      s.buffer.clear();
      m.serialize(s.buffer);
      s.checksum += s.buffer.size();
    } else {
      const std::uint64_t k = i % serialize_keys;
      m.store(p.u64_keys[k], k + 1);
    }
  }
}

}  // namespace ops

// Runs workload kind W on a fresh adapter A once.
template <workload_kind W, class A>
repeat_result run_once(const workload_plan& plan, unsigned threads, const run_options& opt) {
  struct slot {
    std::uint64_t ops = 0;
    std::uint64_t checksum = 0;
    bench_clock::time_point end{};
    std::vector<std::uint64_t> samples;
  };
  auto map = std::make_unique<A>();
  ops::setup(*map, plan);

  std::vector<slot> slots(threads);
  for (slot& s : slots) s.samples.reserve(opt.sample_capacity);  // no allocation after the start
  std::latch prepared(threads);
  std::latch go(1);
  bench_clock::time_point start{};  // written before `go` opens, read after
  const bool fixed = opt.ops_per_thread > 0;

  auto body = [&](unsigned t) {
    sample_reservoir reservoir(opt.sample_capacity, opt.sample_interval);
    ops::state st;
    if constexpr (W == workload_kind::serialize_json) st.buffer.reserve(2 * plan.json_length + 64);
    A& m = *map;
    std::uint64_t i = plan.start(t);
    std::uint64_t n = 0;
    // Ops between two looks at the clock: 64 keeps the look (26 ns on the bench VM) off the
    // profile of a 2 ns op. Each look also sizes the next block from the last one's time per op,
    // so that a block takes at most max_block_ns: a run overshoots its duration by about that
    // much, not by 64 slow ops (a CowMap write copying a big map takes milliseconds). The size
    // follows the ops, not one op: a rule that dropped it to 1 for good after one sampled op over
    // 20 us let a single preemption put a clock read on every later op of that thread, and the
    // 2-4 ns rows (one hot key, deletes) read 3-7x slower in the runs where that happened.
    constexpr std::uint64_t max_block_len = 64;
    constexpr std::int64_t max_block_ns = 1'000'000;
    std::uint64_t block_len = max_block_len;
    prepared.count_down();
    go.wait();
    // Each thread stops itself at the deadline: no wake-up of another thread is needed, so a
    // busy machine delaying the calling thread does not stretch the run.
    const bench_clock::time_point deadline = start + opt.duration;
    bench_clock::time_point block_start = bench_clock::now();
    std::uint64_t block_ops = 0;  // ops of the block that started at block_start
    for (;;) {
      if (fixed) {
        if (n >= opt.ops_per_thread) break;
      } else if (n > 0) {
        // n > 0: every thread completes at least one block, so a thread the machine delayed
        // past the deadline still reports a time per op (a run of 0 ops has none).
        const bench_clock::time_point now = bench_clock::now();
        if (now >= deadline) break;
        const std::int64_t took =
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - block_start).count();
        block_len = next_block_len(block_ops, took, max_block_len, max_block_ns);
        block_start = now;
      }
      std::uint64_t block =
          fixed ? std::min<std::uint64_t>(block_len, opt.ops_per_thread - n) : block_len;
      block_ops = block;
      if (reservoir.wants(n)) {
        const auto a = bench_clock::now();
        ops::op<W>(m, st, plan, i);
        const auto b = bench_clock::now();
        const auto ns = static_cast<std::uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
        reservoir.add(ns > opt.clock_overhead_ns ? ns - opt.clock_overhead_ns : 0);
        ++i;
        ++n;
        --block;
      }
      for (; block > 0; --block, ++i, ++n) ops::op<W>(m, st, plan, i);
    }
    slot& s = slots[t];
    s.end = bench_clock::now();
    s.ops = n;
    s.checksum = st.checksum;
    s.samples.assign(reservoir.samples().begin(), reservoir.samples().end());
  };

  std::vector<std::thread> workers;
  workers.reserve(threads);
  for (unsigned t = 0; t < threads; ++t) workers.emplace_back(body, t);
  prepared.wait();
  const heap_totals_t h0 = heap_totals();
  start = bench_clock::now();
  go.count_down();
  for (auto& w : workers) w.join();
  const heap_totals_t h1 = heap_totals();

  repeat_result r;
  bench_clock::time_point end = start;
  for (unsigned t = 0; t < threads; ++t) {
    const slot& s = slots[t];
    end = std::max(end, s.end);
    r.ops += s.ops;
    r.checksum += s.checksum;
    r.threads.push_back({plan.start(t), s.ops});
    r.samples.insert(r.samples.end(), s.samples.begin(), s.samples.end());
  }
  r.wall_ns = static_cast<double>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(end - start).count());
  r.heap.allocations = h1.allocations - h0.allocations;
  r.heap.bytes = h1.bytes - h0.bytes;
  r.heap.deallocations = h1.deallocations - h0.deallocations;
  return r;
}

}  // namespace safemap_bench
