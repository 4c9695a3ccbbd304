// tests/support/lock_suite.hpp - test bodies shared by the lock-based concurrent maps
// (LockedMap, ShardedMap): written once, instantiated per map and configuration by
// tests/strategies/locked_map_test.cpp and sharded_map_test.cpp.
//
//  - run_threads(n, fn): n threads that start together on a std::latch, joined on return.
//  - key_maker<K>, value_maker<V>: small, deterministic key and value spaces for int and
//    std::string (a third of the string keys exceed the small-string buffer).
//  - model_test(m, seed, ops): random sequences of every operation of the concurrent_map API
//    applied to m and to a std::unordered_map, every result compared, version() checked to
//    grow exactly on the calls that change the map.
//  - the concurrency checks (compute counters, load_or_store winners, compare_and_swap chains,
//    point-in-time snapshots, range during writes, a counted-value stress, writer progress
//    under a stream of readers). Each takes a factory so a ShardedMap can be built with a
//    chosen shard count.
//  - failures mid-operation (fault_hash, throwing_copy_value from support/throwing.hpp):
//    merge is all or nothing; after any injected throw no lock is left held (another thread
//    can still write, under a watchdog), the counters agree with the table, and the table
//    still grows (no iteration pin left behind).
//  - the bodies both map tests run as they are: transparent lookups, contention counting, a
//    throwing compute, value lifetimes, load_or_store of one key from 8 threads (stores once),
//    and the re-entrancy rules that are the same on both (writes from visit and compute
//    reported, a handler that returns, another map written from a callback).
// Failures name the seed and the operation, so a randomized failure can be replayed.
//
// Concurrency: the helpers start and join their own threads; call them from the test thread.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "safemap/concurrent.hpp"
#include "safemap/misuse.hpp"
#include "support/counted.hpp"
#include "support/misuse_guard.hpp"
#include "support/reference_model.hpp"
#include "support/throwing.hpp"
#include "support/watchdog.hpp"

namespace safemap_test::lock {

// Runs fn(i) for i in [0, n) on n threads released together by a latch; joins them all.
template <class Fn>
void run_threads(int n, Fn fn) {
  std::latch start(n);
  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&start, &fn, i] {
      start.arrive_and_wait();
      fn(i);
    });
  }
  for (auto& t : threads) t.join();
}

template <class K>
struct key_maker;
template <>
struct key_maker<int> {
  static int make(std::uint64_t i) { return static_cast<int>(i); }
};
template <>
struct key_maker<std::string> {
  static std::string make(std::uint64_t i) {
    return i % 3 == 0 ? "a-key-long-enough-to-live-on-the-heap-" + std::to_string(i)
                      : "k" + std::to_string(i);
  }
};

template <class V>
struct value_maker;
template <>
struct value_maker<int> {
  static int make(std::uint64_t i) { return static_cast<int>(i); }
  static int bump(int v) { return v + 1; }
};
template <>
struct value_maker<std::string> {
  static std::string make(std::uint64_t i) { return "v" + std::to_string(i); }
  static std::string bump(const std::string& v) { return v.size() < 24 ? v + "+" : "v"; }
};

// Calls fn with the key itself or, for std::string keys, sometimes with a std::string_view or
// a const char* (heterogeneous lookup).
template <class K, class Fn>
decltype(auto) with_lookup_key(test_rng& rng, const K& key, Fn&& fn) {
  if constexpr (std::is_same_v<K, std::string>) {
    switch (rng.below(3)) {
      case 0:
        return fn(key);
      case 1:
        return fn(std::string_view(key));
      default:
        return fn(key.c_str());
    }
  } else {
    return fn(key);
  }
}

// Random operations on m (empty on entry) and on a std::unordered_map, compared after each
// call. Keys come from a space of key_space keys and values from value_space values, small
// enough that compare_and_swap and compare_and_delete succeed often.
template <class M>
void model_test(M& m, std::uint64_t seed, int ops, std::uint64_t key_space = 48,
                std::uint64_t value_space = 6) {
  using K = typename M::key_type;
  using V = typename M::mapped_type;
  std::unordered_map<K, V> ref;
  std::vector<K> keys;  // built once: the loop below only copies
  std::vector<V> values;
  for (std::uint64_t i = 0; i < key_space; ++i) keys.push_back(key_maker<K>::make(i));
  for (std::uint64_t i = 0; i < value_space; ++i) values.push_back(value_maker<V>::make(i));
  std::unordered_map<K, std::size_t> key_index;  // lets range checks run without allocating
  for (std::size_t i = 0; i < keys.size(); ++i) key_index.emplace(keys[i], i);
  test_rng rng(seed);
  std::uint64_t last_version = m.version();
  const char* op_name = "";
  int step = 0;
  auto where = [&] {
    return testing::Message() << "seed " << seed << ", step " << step << " (" << op_name << ")";
  };

  for (step = 0; step < ops; ++step) {
    const K& key = keys[rng.below(key_space)];
    const V& val = values[rng.below(value_space)];
    const auto it = ref.find(key);
    const bool present = it != ref.end();
    const std::optional<V> before = present ? std::optional<V>(it->second) : std::nullopt;
    bool mutated = false;
    const std::uint64_t op = rng.below(1000);

    if (op < 110) {
      op_name = "load";
      const std::optional<V> got =
          with_lookup_key(rng, key, [&](const auto& q) { return m.load(q); });
      ASSERT_EQ(got, before) << where();
    } else if (op < 170) {
      op_name = "contains";
      ASSERT_EQ(with_lookup_key(rng, key, [&](const auto& q) { return m.contains(q); }), present)
          << where();
    } else if (op < 230) {
      op_name = "visit";
      int calls = 0;
      std::optional<V> seen;
      const bool found = with_lookup_key(rng, key, [&](const auto& q) {
        return std::as_const(m).visit(q, [&](const V& v) {
          ++calls;
          seen = v;
        });
      });
      ASSERT_EQ(found, present) << where();
      ASSERT_EQ(calls, present ? 1 : 0) << where();
      ASSERT_EQ(seen, before) << where();
    } else if (op < 350) {
      op_name = "store";
      m.store(key, val);
      ref.insert_or_assign(key, val);
      mutated = true;
    } else if (op < 430) {
      op_name = "load_or_store";
      const auto [got, loaded] = m.load_or_store(key, val);
      ASSERT_EQ(loaded, present) << where();
      ASSERT_EQ(got, present ? *before : val) << where();
      if (!present) ref.emplace(key, val);
      mutated = !present;
    } else if (op < 490) {
      op_name = "load_and_delete";
      const std::optional<V> got =
          with_lookup_key(rng, key, [&](const auto& q) { return m.load_and_delete(q); });
      ASSERT_EQ(got, before) << where();
      ref.erase(key);
      mutated = present;
    } else if (op < 550) {
      op_name = "erase";
      ASSERT_EQ(with_lookup_key(rng, key, [&](const auto& q) { return m.erase(q); }), present)
          << where();
      ref.erase(key);
      mutated = present;
    } else if (op < 630) {
      op_name = "swap";
      ASSERT_EQ(m.swap(key, val), before) << where();
      ref.insert_or_assign(key, val);
      mutated = true;
    } else if (op < 730) {
      op_name = "compare_and_swap";
      const V expected = present && rng.chance(1, 2) ? *before : values[rng.below(value_space)];
      const bool want = present && *before == expected;
      ASSERT_EQ(with_lookup_key(
                    rng, key, [&](const auto& q) { return m.compare_and_swap(q, expected, val); }),
                want)
          << where();
      if (want) ref.insert_or_assign(key, val);
      mutated = want;
    } else if (op < 790) {
      op_name = "compare_and_delete";
      const V expected = present && rng.chance(1, 2) ? *before : values[rng.below(value_space)];
      const bool want = present && *before == expected;
      ASSERT_EQ(with_lookup_key(rng, key,
                                [&](const auto& q) { return m.compare_and_delete(q, expected); }),
                want)
          << where();
      if (want) ref.erase(key);
      mutated = want;
    } else if (op < 930) {
      op_name = "compute";
      const std::uint64_t kind = rng.below(4);
      int calls = 0;
      std::optional<V> passed;
      const std::optional<V> result = m.compute(key, [&](std::optional<V> cur) -> std::optional<V> {
        ++calls;
        passed = cur;
        switch (kind) {
          case 0:
            return std::nullopt;  // erase (or nothing when absent)
          case 1:
            return val;  // set
          case 2:        // update only if present
            return cur ? std::optional<V>(value_maker<V>::bump(*cur)) : std::nullopt;
          default:  // insert only if absent
            return cur ? cur : std::optional<V>(val);
        }
      });
      ASSERT_EQ(calls, 1) << where();
      ASSERT_EQ(passed, before) << where();
      std::optional<V> want;
      switch (kind) {
        case 0:
          break;
        case 1:
          want = val;
          break;
        case 2:
          if (before) want = value_maker<V>::bump(*before);
          break;
        default:
          want = before ? before : std::optional<V>(val);
      }
      ASSERT_EQ(result, want) << where();
      if (want) {
        ref.insert_or_assign(key, *want);
      } else {
        ref.erase(key);
      }
      mutated = want.has_value() || present;
    } else if (op < 950) {
      op_name = "range";
      std::vector<char> seen(keys.size(), 0);
      std::size_t visited = 0;
      bool duplicate = false;
      bool unknown = false;
      auto record = [&](const K& k, const V& v) {
        ++visited;
        const auto idx = key_index.find(k);
        const auto r = ref.find(k);
        unknown = unknown || idx == key_index.end() || r == ref.end() || !(r->second == v);
        if (idx != key_index.end()) duplicate = duplicate || seen[idx->second]++ != 0;
      };
      if (rng.chance(1, 2)) {
        m.range(record);  // void callback: visits everything
        ASSERT_EQ(visited, ref.size()) << where();
      } else {
        const std::size_t limit = 1 + rng.below(ref.size() + 1);
        m.range([&](const K& k, const V& v) {
          record(k, v);
          return visited < limit;
        });
        ASSERT_EQ(visited, std::min(limit, ref.size())) << where();
      }
      // No duplicates, nothing unknown and the right count: exactly the reference's entries.
      ASSERT_FALSE(duplicate) << where();
      ASSERT_FALSE(unknown) << where() << ": range saw an entry the reference does not hold";
    } else if (op < 980) {
      op_name = "size";
      ASSERT_EQ(m.size(), ref.size()) << where();
    } else if (op < 990) {
      op_name = "snapshot";
      const auto snap = m.snapshot();
      ASSERT_TRUE(same_contents(snap, ref)) << where();
    } else if (op < 998) {
      op_name = "version";
      ASSERT_EQ(m.version(), last_version) << where();
    } else {
      op_name = "clear";
      m.clear();
      mutated = !ref.empty();
      ref.clear();
    }

    const std::uint64_t v = m.version();
    if (mutated) {
      ASSERT_GT(v, last_version) << where() << ": a change must advance version()";
    } else {
      ASSERT_EQ(v, last_version) << where() << ": version() moved without a change";
    }
    last_version = v;
  }
  op_name = "final";
  ASSERT_EQ(m.size(), ref.size()) << where();
  ASSERT_TRUE(same_contents(m.snapshot(), ref)) << where();
}

// --- re-entrancy ------------------------------------------------------------------------------

// Every write call of the API, on an int -> long map (key 1 exists in the tests that use it).
template <class M>
std::vector<std::pair<const char*, std::function<void(M&)>>> write_calls() {
  return {
      {"store", [](M& m) { m.store(1, 10L); }},
      {"load_or_store", [](M& m) { m.load_or_store(1000, 10L); }},
      {"load_and_delete", [](M& m) { m.load_and_delete(1); }},
      {"erase", [](M& m) { m.erase(1); }},
      {"swap", [](M& m) { m.swap(1, 10L); }},
      {"compare_and_swap", [](M& m) { m.compare_and_swap(1, 1L, 10L); }},
      {"compare_and_delete", [](M& m) { m.compare_and_delete(1, 1L); }},
      {"compute",
       [](M& m) { m.compute(1, [](std::optional<long>) { return std::optional<long>(10L); }); }},
      {"clear", [](M& m) { m.clear(); }},
      {"merge",
       [](M& m) {
         typename M::map_type entries;
         entries.insert_or_assign(1000, 10L);
         m.merge(std::move(entries));
       }},
      {"erase_if", [](M& m) { m.erase_if([](const int& k, const long&) { return k == 1; }); }},
      {"visit", [](M& m) { m.visit(1, [](long& v) { v = 10; }); }},
      {"visit_all", [](M& m) { m.visit_all([](const int&, long& v) { v = 10; }); }},
      {"insert_or_visit", [](M& m) { m.insert_or_visit(1, 10L, [](long& v) { v = 10; }); }},
      {"emplace_or_visit", [](M& m) { m.emplace_or_visit(1, 10L, [](long& v) { v = 10; }); }},
  };
}

// call() must be refused with a misuse_error of kind reentrant_call (the handler in force
// throws it, or report_reentrant_write does after a handler that returned).
template <class Call>
testing::AssertionResult reported_as_reentrant(Call&& call) {
  try {
    call();
  } catch (const safemap::misuse_error& e) {
    if (e.kind == safemap::misuse_kind::reentrant_call) return testing::AssertionSuccess();
    return testing::AssertionFailure() << "reported as another kind: " << e.what();
  }
  return testing::AssertionFailure() << "not reported";
}

// --- concurrency checks ------------------------------------------------------------------------

inline constexpr int k_threads = 8;  // more threads than the test machines' cores

// compute() increments from k_threads threads: every increment lands, f runs once per call.
template <class M, class Make>
void compute_counters_end_exact(Make make, int per_thread = 4000, int keys = 16) {
  auto m = make();
  std::atomic<long> calls{0};
  run_threads(k_threads, [&](int t) {
    for (int i = 0; i < per_thread; ++i) {
      m->compute((t + i) % keys, [&](std::optional<long> cur) -> std::optional<long> {
        calls.fetch_add(1, std::memory_order_relaxed);
        return cur.value_or(0) + 1;
      });
    }
  });
  ASSERT_EQ(calls.load(), long{k_threads} * per_thread) << "f must run exactly once per call";
  long total = 0;
  for (int k = 0; k < keys; ++k) {
    const std::optional<long> v = m->load(k);
    ASSERT_TRUE(v.has_value()) << "key " << k;
    EXPECT_EQ(*v, long{k_threads} * per_thread / keys) << "key " << k;
    total += v.value_or(0);
  }
  EXPECT_EQ(total, long{k_threads} * per_thread);
  EXPECT_EQ(m->version(), static_cast<std::uint64_t>(k_threads) * per_thread);
}

// load_or_store() from k_threads threads on the same keys: exactly one caller per key stores,
// every other one gets the winner's value.
template <class M, class Make>
void load_or_store_has_one_winner_per_key(Make make, int keys = 2000) {
  auto m = make();
  struct outcome {
    long value;
    bool loaded;
  };
  std::vector<std::vector<outcome>> seen(k_threads, std::vector<outcome>(keys));
  run_threads(k_threads, [&](int t) {
    for (int i = 0; i < keys; ++i) {
      const int k = (i + t * 7) % keys;  // different starting points, same keys
      auto [v, loaded] = m->load_or_store(k, long{t} * 1'000'000 + k);
      seen[t][k] = {v, loaded};
    }
  });
  for (int k = 0; k < keys; ++k) {
    int winners = 0;
    long winner_value = -1;
    for (int t = 0; t < k_threads; ++t) {
      if (!seen[t][k].loaded) {
        ++winners;
        winner_value = seen[t][k].value;
        EXPECT_EQ(winner_value, long{t} * 1'000'000 + k) << "a winner gets its own value back";
      }
    }
    ASSERT_EQ(winners, 1) << "key " << k;
    for (int t = 0; t < k_threads; ++t) {
      ASSERT_EQ(seen[t][k].value, winner_value) << "key " << k << " thread " << t;
    }
    ASSERT_EQ(m->load(k), winner_value) << "key " << k;
  }
  EXPECT_EQ(m->size(), static_cast<std::size_t>(keys));
  EXPECT_EQ(m->version(), static_cast<std::uint64_t>(keys));
}

// compare_and_swap(v, v + 1) loops from k_threads threads: the successful transitions of a key
// are exactly 0 -> 1 -> ... -> final, each taken by one thread.
template <class M, class Make>
void compare_and_swap_chains_are_exact(Make make, int attempts = 3000, int keys = 4) {
  auto m = make();
  for (int k = 0; k < keys; ++k) m->store(k, 0L);
  std::vector<std::vector<std::vector<long>>> taken(
      k_threads, std::vector<std::vector<long>>(keys));  // [thread][key] -> from-values
  run_threads(k_threads, [&](int t) {
    for (int i = 0; i < attempts; ++i) {
      const int k = (t + i) % keys;
      const long v = m->load(k).value_or(-1);
      if (m->compare_and_swap(k, v, v + 1)) taken[t][k].push_back(v);
    }
  });
  long successes = 0;
  for (int k = 0; k < keys; ++k) {
    std::vector<long> all;
    for (int t = 0; t < k_threads; ++t)
      all.insert(all.end(), taken[t][k].begin(), taken[t][k].end());
    std::sort(all.begin(), all.end());
    const long final_value = m->load(k).value_or(-1);
    ASSERT_EQ(static_cast<long>(all.size()), final_value) << "key " << k;
    for (long i = 0; i < final_value; ++i) {
      ASSERT_EQ(all[static_cast<std::size_t>(i)], i)
          << "key " << k << ": transition taken twice or lost";
    }
    successes += final_value;
  }
  EXPECT_GT(successes, 0);
  EXPECT_EQ(m->version(), static_cast<std::uint64_t>(keys + successes));
}

// Writers sweep their own group of keys in index order, storing generation g to each key of
// the group, then g + 1, ... A point-in-time view of a group therefore shows a prefix of keys
// at some g and the rest at g - 1: generations never increase along the group and differ by at
// most one. A view assembled at several instants breaks that (it can see a later key at g
// after an earlier one at g - 1). Values encode key and generation: key * 1'000'000 + g.
struct sweep_checker {
  static constexpr int k_group = 16;
  static long encode(int key, long gen) { return long{key} * 1'000'000 + gen; }

  // view: key -> value for every key of every group; returns the first problem.
  static testing::AssertionResult point_in_time(const std::unordered_map<int, long>& view,
                                                int groups) {
    if (view.size() != static_cast<std::size_t>(groups * k_group)) {
      return testing::AssertionFailure() << "view has " << view.size() << " keys";
    }
    for (int g = 0; g < groups; ++g) {
      long prev = -1;
      long first = -1;
      for (int j = 0; j < k_group; ++j) {
        const int key = g * k_group + j;
        const auto it = view.find(key);
        if (it == view.end()) return testing::AssertionFailure() << "key " << key << " missing";
        const long v = it->second;
        if (v / 1'000'000 != key) {
          return testing::AssertionFailure() << "key " << key << " holds " << v;
        }
        const long gen = v % 1'000'000;
        if (j == 0) first = gen;
        if (j > 0 && gen > prev) {
          return testing::AssertionFailure()
                 << "group " << g << ": key " << key << " at generation " << gen
                 << " after an earlier key at " << prev << " (not one point in time)";
        }
        if (first - gen > 1) {
          return testing::AssertionFailure()
                 << "group " << g << " spans generations " << gen << ".." << first;
        }
        prev = gen;
      }
    }
    return testing::AssertionSuccess();
  }
};

// Snapshots (and ranges, where range_point_in_time) taken while writers sweep are one point in
// time. check_views: how many views the reader takes.
template <class M, class Make>
void snapshots_are_point_in_time(Make make, bool range_point_in_time, int check_views = 300) {
  constexpr int writers = 4;
  auto m = make();
  for (int key = 0; key < writers * sweep_checker::k_group; ++key) {
    m->store(key, sweep_checker::encode(key, 0));
  }
  std::atomic<bool> done{false};
  std::atomic<int> bad{0};
  std::vector<std::atomic<long>> sweeps(writers);
  // Views are taken until there are check_views of them and every writer has swept a few
  // times, so they overlap with writing however the threads are scheduled.
  auto writers_warmed_up = [&] {
    return std::all_of(sweeps.begin(), sweeps.end(), [](const auto& n) { return n.load() >= 10; });
  };
  run_threads(writers + 2, [&](int t) {
    if (t < writers) {
      for (long gen = 1; gen < 1'000'000 && !done.load(std::memory_order_relaxed); ++gen) {
        for (int j = 0; j < sweep_checker::k_group; ++j) {
          const int key = t * sweep_checker::k_group + j;
          m->store(key, sweep_checker::encode(key, gen));
        }
        sweeps[t].store(gen);
      }
    } else if (t == writers) {
      for (int i = 0; i < check_views || !writers_warmed_up(); ++i) {
        const auto snap = m->snapshot();
        const std::unordered_map<int, long> view(snap.begin(), snap.end());
        const auto r = sweep_checker::point_in_time(view, writers);
        if (!r) {
          ADD_FAILURE() << "snapshot " << i << ": " << r.message();
          ++bad;
          break;
        }
      }
      done = true;
    } else {
      for (int i = 0; !done.load(std::memory_order_relaxed); ++i) {
        std::unordered_map<int, long> view;
        bool duplicate = false;
        m->range([&](const int& k, const long& v) { duplicate |= !view.emplace(k, v).second; });
        if (duplicate) {
          ADD_FAILURE() << "range " << i << " visited a key twice";
          ++bad;
          break;
        }
        if (range_point_in_time) {
          const auto r = sweep_checker::point_in_time(view, writers);
          if (!r) {
            ADD_FAILURE() << "range " << i << ": " << r.message();
            ++bad;
            break;
          }
        }
      }
    }
  });
  EXPECT_EQ(bad.load(), 0);
}

// A range running while writers store and erase: each key at most once, and every value seen
// is one a writer stored for that key (key * 1'000'000 + writer * 100'000 + sequence).
template <class M, class Make>
void range_during_writes_sees_each_key_once_and_only_stored_values(Make make,
                                                                   long ops_per_writer = 20'000) {
  constexpr int writers = 4;
  constexpr int keys = 256;
  auto m = make();
  std::atomic<int> writing{writers};
  std::vector<std::atomic<long>> last_seq(writers);
  long ranges = 0;
  run_threads(writers + 1, [&](int t) {
    if (t < writers) {
      test_rng rng(0x5eed0000 + static_cast<std::uint64_t>(t));
      for (long seq = 0; seq < ops_per_writer; ++seq) {
        const int key = static_cast<int>(rng.below(keys));
        if (rng.chance(1, 3)) {
          m->erase(key);
        } else {
          m->store(key, long{key} * 1'000'000 + t * 100'000 + seq);
        }
        last_seq[t].store(seq, std::memory_order_release);
      }
      --writing;
      return;
    }
    // Ranges run back to back for as long as any writer writes.
    while (writing.load() > 0) {
      std::unordered_set<int> seen;
      m->range([&](const int& k, const long& v) {
        if (!seen.insert(k).second)
          ADD_FAILURE() << "range " << ranges << ": key " << k << " twice";
        const long w = (v % 1'000'000) / 100'000;
        const long seq = v % 100'000;
        if (v / 1'000'000 != k || w >= writers ||
            seq > last_seq[w].load(std::memory_order_acquire) + 1) {
          ADD_FAILURE() << "range " << ranges << ": key " << k << " holds " << v
                        << ", never stored";
        }
      });
      ++ranges;
    }
  });
  testing::Test::RecordProperty("ranges_during_writes", std::to_string(ranges));
}

// A value type for the stress test: counts its instances (counted.hpp).
struct stress_tag {};
using stress_value = counted<stress_tag>;

// k_threads threads run total_ops random operations of every kind on a small key space; the
// map must end consistent: size() == what range and snapshot see, the counted values alive are
// exactly the map's (none leaked, none destroyed twice), version() >= the changes made.
template <class M, class Make>
void stress_all_operations(Make make, long total_ops = 1'000'000, int keys = 512) {
  auto& counters = stress_value::counters();
  counters.reset();
  {
    auto m = make();
    std::atomic<std::uint64_t> changes{0};
    const long per_thread = total_ops / k_threads;
    run_threads(k_threads, [&](int t) {
      test_rng rng(0xabcdef00 + static_cast<std::uint64_t>(t));
      std::uint64_t mine = 0;
      for (long i = 0; i < per_thread; ++i) {
        const int key = static_cast<int>(rng.below(keys));
        const int val = static_cast<int>(rng.below(4));
        const std::uint64_t op = rng.below(1000);
        if (op < 250) {
          if (auto v = m->load(key)) {
            if (!v->alive()) ADD_FAILURE() << "load returned a dead value";
          }
        } else if (op < 330) {
          std::as_const(*m).visit(key, [](const stress_value& v) {
            if (!v.alive()) ADD_FAILURE() << "visit saw a dead value";
          });
        } else if (op < 450) {
          m->store(key, stress_value(val));
          ++mine;
        } else if (op < 520) {
          mine += m->load_or_store(key, stress_value(val)).second ? 0 : 1;
        } else if (op < 590) {
          mine += m->load_and_delete(key).has_value() ? 1 : 0;
        } else if (op < 650) {
          mine += m->erase(key) ? 1 : 0;
        } else if (op < 720) {
          m->swap(key, stress_value(val));
          ++mine;
        } else if (op < 800) {
          mine += m->compare_and_swap(key, stress_value(val), stress_value(val + 1)) ? 1 : 0;
        } else if (op < 850) {
          mine += m->compare_and_delete(key, stress_value(val)) ? 1 : 0;
        } else if (op < 980) {
          // Always a change: counts up to 3, then erases.
          m->compute(key, [](std::optional<stress_value> cur) -> std::optional<stress_value> {
            if (cur && cur->value() >= 3) return std::nullopt;
            return stress_value(cur ? cur->value() + 1 : 0);
          });
          ++mine;
        } else if (op < 990) {
          std::size_t n = 0;
          m->range([&](const int&, const stress_value& v) {
            if (!v.alive()) ADD_FAILURE() << "range saw a dead value";
            return ++n < 64;
          });
        } else if (op < 999) {
          if (m->size() > static_cast<std::size_t>(keys)) ADD_FAILURE() << "size over key space";
        } else {
          const auto snap = m->snapshot();
          if (snap.size() > static_cast<std::size_t>(keys)) ADD_FAILURE() << "snapshot too big";
        }
      }
      changes.fetch_add(mine);
    });
    std::size_t ranged = 0;
    m->range([&](const int&, const stress_value&) { ++ranged; });
    EXPECT_EQ(m->size(), ranged);
    EXPECT_EQ(m->snapshot().size(), ranged);
    EXPECT_EQ(counters.live.load(), static_cast<long>(ranged))
        << "values alive besides the map's own";
    EXPECT_GE(m->version(), changes.load());
  }
  EXPECT_EQ(counters.live.load(), 0) << "values leaked";
  EXPECT_EQ(counters.bad_destroys.load(), 0) << "values destroyed twice";
}

// Writer progress under a stream of readers (the lock prefers writers). `readers` threads loop
// on read() continuously and stop only once the writer is done; the writer does `stores`
// stores once every reader is looping. If readers could starve the writer, the readers would
// loop forever: each gives up after reader_iteration_bound iterations instead (so the test
// fails rather than hangs). A working lock needs 4 to 35 iterations per reader per store
// (measured on the LockedMap and ShardedMap tests); the bound allows 5000. With a
// reader-preferring lock swapped in, the LockedMap test hits it (measured: it fails).
template <class Read, class Write>
void writer_completes_under_reader_stream(Read read, Write write, int readers = 6, int stores = 200,
                                          long reader_iteration_bound = 1'000'000) {
  std::atomic<int> looping{0};
  std::atomic<bool> writer_done{false};
  std::atomic<int> gave_up{0};
  std::atomic<long> reader_iterations{0};
  run_threads(readers + 1, [&](int t) {
    if (t == readers) {
      while (looping.load() < readers) std::this_thread::yield();
      for (int i = 0; i < stores; ++i) write(i);
      writer_done = true;
      return;
    }
    long i = 0;
    bool counted_in = false;
    while (!writer_done.load(std::memory_order_relaxed)) {
      read(t, i);
      if (!counted_in) {
        counted_in = true;
        ++looping;
      }
      if (++i == reader_iteration_bound) {
        ++gave_up;
        break;
      }
    }
    reader_iterations += i;
  });
  EXPECT_EQ(gave_up.load(), 0) << "readers ran " << reader_iteration_bound
                               << " iterations each while the writer waited";
  EXPECT_TRUE(writer_done.load());
  // Informative: how much reading the writer had to get through.
  testing::Test::RecordProperty("reader_iterations", std::to_string(reader_iterations.load()));
}

// --- failures mid-operation ---------------------------------------------------------------------

// An int hasher that is a fault point: throws injected_fault while a fault_scope is active
// (see support/throwing.hpp). Not noexcept, so the maps take their copying merge path.
struct fault_hash {
  std::size_t operator()(int k) const {
    fault_point();
    return std::hash<int>{}(k);
  }
};
using fault_value = throwing_copy_value<struct lock_suite_fault_tag>;

// The map's contents as a std::map<int, int>, read outside any fault scope.
template <class M>
std::map<int, int> contents_of(const M& m) {
  std::map<int, int> out;
  m.range([&](const int& k, const fault_value& v) { out.emplace(k, v.value()); });
  return out;
}

// Runs fn on another thread and fails (then aborts: the thread cannot be joined) if it does
// not finish within a generous bound: a lock left held would make it wait forever.
template <class Fn>
void finishes_on_another_thread(const char* what, Fn fn) {
  auto done = std::async(std::launch::async, fn);
  if (done.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
    ADD_FAILURE() << what << ": did not finish, a lock was left held";
    std::fflush(nullptr);
    std::abort();
  }
  done.get();
}

// merge() with a hasher and value moves that throw at random: after every call the map holds
// either the whole batch or none of it (compared with a model), and version() moves only when
// the batch went in. M: a map of int -> fault_value with fault_hash.
template <class M, class Make>
void merge_is_all_or_nothing_under_faults(Make make, std::uint64_t seed, int rounds = 400) {
  std::unique_ptr<M> m = make();
  std::map<int, int> model;
  // One fault point in 64: a merge into a one-shard map copies the table (the hasher and the
  // moves may throw), ~60 fault points, so at 1 in 24 only 24-26 of 400 merges went in and
  // the "applied" bound (20) failed in 3-4 runs of 40; at 1 in 64 it is ~120 applied and ~280
  // thrown, and 176 / 224 with 16 shards.
  fault_injector::local().configure(seed, 64);
  int threw = 0;
  int applied = 0;
  std::uint64_t x = seed | 1;
  for (int r = 0; r < rounds; ++r) {
    typename M::map_type batch;
    std::vector<std::pair<int, int>> plain;
    const int n = 1 + static_cast<int>(x % 12);
    for (int j = 0; j < n; ++j) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      const int k = static_cast<int>(x % 64);
      const int v = r * 100 + j;
      batch.insert_or_assign(k, fault_value(v));
      plain.emplace_back(k, v);
    }
    const std::uint64_t version_before = m->version();
    bool failed = false;
    {
      fault_scope faults;
      try {
        m->merge(std::move(batch));
      } catch (const injected_fault&) {
        failed = true;
      }
    }
    if (failed) {
      ++threw;
      ASSERT_EQ(m->version(), version_before) << "round " << r << ": a failed merge counted";
    } else {
      ++applied;
      for (const auto& [k, v] : plain) model[k] = v;
      ASSERT_GT(m->version(), version_before) << "round " << r;
    }
    ASSERT_EQ(contents_of(*m), model)
        << "round " << r << (failed ? ": part of a failed batch" : ": the batch") << " is in";
    ASSERT_EQ(m->size(), model.size()) << "round " << r;
  }
  EXPECT_GT(threw, rounds / 20) << "too few injected failures to test anything";
  EXPECT_GT(applied, rounds / 20);
}

// Every call of the API with a hasher, copies and moves that throw at random; afterwards no
// lock is held (another thread writes and snapshots, under a bound) and size() agrees with the
// table. With check_growth, also that the table still grows normally: an iteration pin left
// behind by a throw (inside Map's iterator) stops its growth, overflow chains instead of
// buckets.
template <class M, class Make>
void throws_leave_no_lock_behind(Make make, std::uint64_t seed, bool check_growth, int ops = 6000) {
  std::unique_ptr<M> m = make();
  fault_injector::local().configure(seed, 10);
  std::uint64_t x = seed | 1;
  long thrown = 0;
  for (int i = 0; i < ops; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    const int k = static_cast<int>((x >> 8) % 256);
    const int op = static_cast<int>(x % 14);
    fault_scope faults;
    try {
      switch (op) {
        case 0:
          m->store(k, fault_value(i));
          break;
        case 1:
          (void)m->load(k);
          break;
        case 2:
          (void)m->load_or_store(k, fault_value(i));
          break;
        case 3:
          (void)m->load_and_delete(k);
          break;
        case 4:
          (void)m->erase(k);
          break;
        case 5:
          (void)m->swap(k, fault_value(i));
          break;
        case 6:
          (void)m->compare_and_swap(k, fault_value(k), fault_value(i));
          break;
        case 7:
          (void)m->compare_and_delete(k, fault_value(k));
          break;
        case 8:
          (void)m->compute(k, [&](std::optional<fault_value> cur) -> std::optional<fault_value> {
            fault_point();
            if (cur) return std::nullopt;
            return fault_value(i);
          });
          break;
        case 9:
          (void)std::as_const(*m).visit(k, [](const fault_value& v) { fault_value copy(v); });
          break;
        case 10:
          m->range([](const int&, const fault_value& v) { fault_value copy(v); });
          break;
        case 11:
          (void)m->snapshot();
          break;
        case 12: {
          typename M::map_type batch;
          {
            fault_injector::local().set_enabled(false);
            for (int j = 0; j < 4; ++j) batch.insert_or_assign(k + j, fault_value(j));
            fault_injector::local().set_enabled(true);
          }
          m->merge(std::move(batch));
          break;
        }
        default:
          (void)m->contains(k);
          break;
      }
    } catch (const injected_fault&) {
      ++thrown;
    }
  }
  EXPECT_GT(thrown, ops / 20);
  // Counters agree with the table (no failed write bumped or skipped them).
  const auto before = contents_of(*m);
  EXPECT_EQ(m->size(), before.size());
  // No lock left held, shared or exclusive: another thread writes and reads every shard.
  finishes_on_another_thread("a write after the injected failures", [&] {
    for (int k = 0; k < 256; ++k) m->store(k, fault_value(k));
    const auto snap = m->snapshot();
    for (int k = 0; k < 256; ++k) {
      const fault_value* v = snap.find(k);
      EXPECT_TRUE(v != nullptr && v->value() == k) << "key " << k;
    }
  });
  if (!check_growth) return;
  // The table(s) still grow: 50,000 inserts need buckets, not overflow chains.
  for (int k = 1000; k < 51'000; ++k) m->store(k, fault_value(k));
  const auto st = m->stats();
  EXPECT_EQ(st.size, m->size());
  EXPECT_GE(st.size, 50'256u);
  EXPECT_LT(st.table.overflow_buckets, st.table.buckets / 4 + 64)
      << "the table stopped growing (buckets " << st.table.buckets << ", overflow "
      << st.table.overflow_buckets << "): an iteration pin was left behind";
}

// --- bodies the LockedMap and ShardedMap tests share -------------------------------------------
// Each runs on a map the test builds (a ShardedMap with the shard count the test chooses).

// The concurrent_map contract holds for the key and value types these suites use.
template <template <class...> class M>
inline constexpr bool models_concurrent_map =
    safemap::concurrent_map<M<int, int>>&& safemap::concurrent_map<M<std::string, std::string>>&&
        safemap::concurrent_map<M<int, counted<>>>;

// An int hasher that takes tens of microseconds (a dependent chain the optimizer cannot fold):
// it widens the window in which two threads look a key up under the shared lock at the same
// time, which a race between two load_or_store misses needs. Measured on the loaded 2-core
// machine with a broken load_or_store (a miss stored without looking again): with a hash of a
// few nanoseconds 1000 rounds caught it in 1 run of 3, with this one in 6 of 8 (2000 rounds:
// 8 of 8, but up to 15 s at load 13, so the tests use 1000; both maps run it).
struct slow_hash {
  std::size_t operator()(int k) const noexcept {
    std::uint64_t h = static_cast<std::uint64_t>(k);
    for (int i = 0; i < 20000; ++i) {
      h = h * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(i);
      asm volatile("" : "+r"(h));
    }
    return static_cast<std::size_t>(h ^ (h >> 29));
  }
};

// Rounds for load_or_store_of_one_key_stores_once: ThreadSanitizer runs it ~10x slower.
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr int one_key_rounds = 200;
#else
inline constexpr int one_key_rounds = 1000;
#endif

// load_or_store of one key from k_threads threads released together, `rounds` times (a new
// key each round): exactly one caller stores (loaded == false, its own value back), every
// other caller gets the stored value, and the map holds it once. With a load_or_store that
// reads first under the shared lock, this is the race between two misses: both see no key,
// both queue for the exclusive lock, and the second must find the first one's value there.
// Under a watchdog: a lost wake-up between the two locks would hang instead of failing.
template <class M, class Make>
void load_or_store_of_one_key_stores_once(Make make, int rounds) {
  watchdog guard("load_or_store of one key from 8 threads");
  auto m = make();
  struct outcome {
    long value;
    bool loaded;
  };
  std::vector<std::vector<outcome>> seen(static_cast<std::size_t>(rounds),
                                         std::vector<outcome>(k_threads));
  std::barrier<> round_start(k_threads);
  run_threads(k_threads, [&](int t) {
    for (int r = 0; r < rounds; ++r) {
      round_start.arrive_and_wait();
      auto [v, loaded] = m->load_or_store(r, long{t} * 1'000'000 + r);
      seen[static_cast<std::size_t>(r)][static_cast<std::size_t>(t)] = {v, loaded};
    }
  });
  for (int r = 0; r < rounds; ++r) {
    const auto& round = seen[static_cast<std::size_t>(r)];
    int winners = 0;
    long stored = -1;
    for (int t = 0; t < k_threads; ++t) {
      if (round[static_cast<std::size_t>(t)].loaded) continue;
      ++winners;
      stored = round[static_cast<std::size_t>(t)].value;
      EXPECT_EQ(stored, long{t} * 1'000'000 + r) << "the storer gets its own value back";
    }
    ASSERT_EQ(winners, 1) << "round " << r;
    for (int t = 0; t < k_threads; ++t) {
      ASSERT_EQ(round[static_cast<std::size_t>(t)].value, stored)
          << "round " << r << " thread " << t;
    }
    ASSERT_EQ(m->load(r), stored) << "round " << r;
  }
  EXPECT_EQ(m->size(), static_cast<std::size_t>(rounds));
  EXPECT_EQ(m->version(), static_cast<std::uint64_t>(rounds)) << "one store per key, no more";
}

// load_or_store, erase and load_and_delete take one of two paths, chosen by a per-shard guess
// of whether the call will change nothing (detail::shard::predict_noops): a look under the
// shared lock first, or straight to the exclusive lock. This drives every call of the three
// down both paths, with both outcomes, on one key (so on one shard whatever the shard
// count), and checks each result, size() and version() (which grows exactly on changes).
template <class M>
void noop_prediction_never_changes_a_result(M& m) {
  std::uint64_t version = m.version();
  auto expect_version = [&](std::uint64_t changes, const char* step) {
    version += changes;
    EXPECT_EQ(m.version(), version) << step;
  };
  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass);
    if (pass == 1) {
      // Each pass ends with the hints where a fresh map has them ("look first" for
      // load_or_store, "lock at once" for deletes); flip both, so this pass starts the
      // other way round: a storing load_or_store, then an erase that finds nothing.
      EXPECT_EQ(m.load_or_store(1, 30), std::make_pair(30L, false));
      EXPECT_TRUE(m.erase(1));
      EXPECT_FALSE(m.erase(1));
      expect_version(2, "the flips: one store, one erase");
    }
    // deletes of an absent key, then of a present one, each twice in a row
    EXPECT_FALSE(m.erase(1));
    EXPECT_FALSE(m.erase(1));
    EXPECT_EQ(m.load_and_delete(1), std::nullopt);
    expect_version(0, "deletes of an absent key change nothing");
    m.store(1, 10);
    EXPECT_TRUE(m.erase(1)) << "an erase guessed to find nothing still erases";
    m.store(1, 11);
    EXPECT_TRUE(m.erase(1));
    m.store(1, 12);
    EXPECT_EQ(m.load_and_delete(1), 12);
    EXPECT_EQ(m.load_and_delete(1), std::nullopt);
    m.store(1, 13);
    EXPECT_EQ(m.load_and_delete(1), 13) << "a load_and_delete guessed to find nothing";
    EXPECT_FALSE(m.contains(1));
    expect_version(8, "each store and each successful delete");
    // load_or_store: stores, then loads, then stores again
    EXPECT_EQ(m.load_or_store(1, 20), std::make_pair(20L, false));
    EXPECT_EQ(m.load_or_store(1, 21), std::make_pair(20L, true));
    EXPECT_EQ(m.load_or_store(1, 22), std::make_pair(20L, true));
    EXPECT_TRUE(m.erase(1));
    EXPECT_EQ(m.load_or_store(1, 23), std::make_pair(23L, false))
        << "a load_or_store guessed to find its key still stores";
    EXPECT_TRUE(m.erase(1));
    EXPECT_EQ(m.load_or_store(1, 24), std::make_pair(24L, false));
    EXPECT_EQ(m.load_or_store(1, 25), std::make_pair(24L, true))
        << "a load_or_store guessed to store still loads";
    expect_version(5, "three stores and two erases");
    EXPECT_EQ(m.size(), 1u);
    EXPECT_TRUE(m.erase(1));
    expect_version(1, "the last erase");
    EXPECT_EQ(m.size(), 0u);
  }
}

// An int hasher that throws on the n-th call from now on this thread (countdown = n; 0: never).
struct countdown_hash {
  static inline thread_local int countdown = 0;
  static inline thread_local int calls = 0;  // every call on this thread, thrown or not
  std::size_t operator()(int k) const {
    ++calls;
    if (countdown > 0 && --countdown == 0) throw injected_fault();
    return std::hash<int>{}(k);
  }
};

// load_and_delete hashes its key once or more (ShardedMap to route, then the table's probe).
// Whichever hash throws, the call fails as a whole: the key keeps its value (a std::string, whose moved-from
// state would show), size() and version() do not move, and the lock is free again. M has int
// keys, std::string values and countdown_hash.
template <class M>
void load_and_delete_that_throws_keeps_the_value(M& m) {
  const std::string value(40, 'v');  // longer than the small-string buffer
  int threw = 0;
  for (int n = 1; n <= 8; ++n) {
    SCOPED_TRACE(n);
    m.store(1, value);
    const std::uint64_t version = m.version();
    countdown_hash::countdown = n;
    std::optional<std::string> got;
    bool thrown = false;
    try {
      got = m.load_and_delete(1);
    } catch (const injected_fault&) {
      thrown = true;
    }
    countdown_hash::countdown = 0;
    if (thrown) {
      ++threw;
      EXPECT_EQ(m.load(1), value) << "the failed load_and_delete lost the value";
      EXPECT_EQ(m.size(), 1u);
      EXPECT_EQ(m.version(), version);
    } else {
      EXPECT_EQ(got, value);
      EXPECT_FALSE(m.contains(1));
      EXPECT_EQ(m.version(), version + 1);
    }
    std::thread([&] { m.store(2, "x"); }).join();  // the lock was released
    EXPECT_TRUE(m.erase(2));
  }
  EXPECT_GE(threw, 1) << "no hash of the key threw: the test tested nothing";
}

// compare_and_delete compares and erases in one probe: it hashes its key as often as an erase of
// a present key does (a find followed by an erase hashed twice as often), whether it deletes or
// the value differs; a comparison of the entry's value that throws leaves the entry, size(),
// version() and the lock as they were. M has int keys, compare_value values and countdown_hash.
struct compare_value {
  int v = 0;
  static inline thread_local bool throw_on_compare = false;
  friend bool operator==(const compare_value& a, const compare_value& b) {
    if (throw_on_compare) throw injected_fault();
    return a.v == b.v;
  }
};

template <class M>
void compare_and_delete_is_one_probe(M& m) {
  auto hashes = [](auto&& call) {
    countdown_hash::calls = 0;
    call();
    return countdown_hash::calls;
  };
  m.store(1, compare_value{1});
  const int erase_hashes = hashes([&] { EXPECT_TRUE(m.erase(1)); });
  ASSERT_GE(erase_hashes, 1);
  m.store(1, compare_value{1});
  EXPECT_EQ(hashes([&] { EXPECT_FALSE(m.compare_and_delete(1, compare_value{2})); }), erase_hashes)
      << "a compare_and_delete whose value differs";
  EXPECT_EQ(hashes([&] { EXPECT_TRUE(m.compare_and_delete(1, compare_value{1})); }), erase_hashes)
      << "a compare_and_delete that deletes";
  EXPECT_FALSE(m.contains(1));

  m.store(1, compare_value{7});
  const std::uint64_t version = m.version();
  compare_value::throw_on_compare = true;
  EXPECT_THROW((void)m.compare_and_delete(1, compare_value{7}), injected_fault);
  compare_value::throw_on_compare = false;
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(m.version(), version);
  const std::optional<compare_value> kept = m.load(1);
  ASSERT_TRUE(kept.has_value()) << "the throwing comparison erased the entry";
  EXPECT_EQ(kept->v, 7);
  std::thread([&] { m.store(2, compare_value{2}); }).join();  // the lock was released
  EXPECT_TRUE(m.compare_and_delete(1, compare_value{7}));
  EXPECT_EQ(m.size(), 1u);
}

// A growth in progress finishes under nothing but deletes of absent keys, as it does in Go
// (mapdelete evacuates before it looks): the no-op guess must not route those deletes around
// the exclusive lock while the table has work pending. stats_of(m) returns the table's
// MapStats.
template <class M, class Stats>
void noop_deletes_finish_a_growth(M& m, Stats stats_of) {
  // A growth of at least 64 old buckets: one write evacuates at most two of them.
  int k = 0;
  while (!stats_of(m).growing || stats_of(m).old_buckets < 64) {
    m.store(k++, 1);
    ASSERT_LT(k, 1'000'000) << "no growth started";
  }
  for (int i = 0; i < 200'000 && stats_of(m).growing; ++i) {
    EXPECT_FALSE(m.erase(-1 - (i % 7)));
  }
  EXPECT_FALSE(stats_of(m).growing) << "deletes of absent keys left the growth unfinished";
  EXPECT_EQ(m.size(), static_cast<std::size_t>(k));
}

// Deletes racing one store, `rounds` times (a new key each round): thread 0 stores the key
// while the k_threads threads (half calling load_and_delete, half erase) delete it until it
// is gone. Exactly one delete succeeds per round (load_and_delete returns the stored value),
// the others change nothing; at the end the map is empty and version() counts one store and
// one delete per round. The early deletes find nothing (guessing that the next ones will not
// either, so they look under the shared lock first) and the late one finds the key: both
// paths race the store. Under a watchdog: a lost wake-up between the two locks would hang.
template <class M, class Make>
void racing_deletes_delete_each_stored_key_once(Make make, int rounds) {
  watchdog guard("deletes racing a store, 8 threads");
  auto m = make();
  std::vector<std::atomic<int>> deleted(static_cast<std::size_t>(rounds));
  std::vector<std::atomic<bool>> stored(static_cast<std::size_t>(rounds));
  std::barrier<> round_start(k_threads);
  run_threads(k_threads, [&](int t) {
    for (int r = 0; r < rounds; ++r) {
      const auto ri = static_cast<std::size_t>(r);
      round_start.arrive_and_wait();
      if (t == 0) {
        m->store(r, long{r} + 1'000);
        stored[ri].store(true);
      }
      for (;;) {
        const bool was_stored = stored[ri].load();  // before the delete: no round is skipped
        bool got = false;
        if (t % 2 == 0) {
          if (const std::optional<long> v = m->load_and_delete(r)) {
            EXPECT_EQ(*v, long{r} + 1'000) << "round " << r;
            got = true;
          }
        } else {
          got = m->erase(r);
        }
        if (got) deleted[ri].fetch_add(1);
        if (got || (was_stored && deleted[ri].load() > 0)) break;
      }
    }
  });
  for (int r = 0; r < rounds; ++r) {
    ASSERT_EQ(deleted[static_cast<std::size_t>(r)].load(), 1) << "round " << r;
  }
  EXPECT_EQ(m->size(), 0u);
  EXPECT_EQ(m->version(), 2 * static_cast<std::uint64_t>(rounds));
}

// Transparent lookups: a std::string-keyed map takes std::string_view and const char* keys
// in every call that takes a lookup key.
template <class M>
void string_keys_take_string_view_and_c_string_lookups(M& m) {
  m.store("alpha", 1);
  m.store(std::string("beta"), 2);
  const std::string_view alpha = "alpha";
  EXPECT_EQ(m.load(alpha), 1);
  EXPECT_EQ(m.load("beta"), 2);
  EXPECT_TRUE(m.contains(alpha));
  EXPECT_TRUE(m.cvisit("beta", [](const int& v) { EXPECT_EQ(v, 2); }));
  EXPECT_TRUE(m.compare_and_swap(alpha, 1, 11));
  EXPECT_FALSE(m.compare_and_delete("beta", 3));
  EXPECT_TRUE(m.compare_and_delete("beta", 2));
  EXPECT_EQ(m.load_and_delete(alpha), 11);
  EXPECT_FALSE(m.erase("alpha"));
  EXPECT_EQ(m.size(), 0u);
}

// A writer that has to wait for key 1's lock (a reader holds it in a cvisit callback) is
// counted in stats().contended_acquisitions. m must allow stats() from a callback (LockedMap,
// a one-shard ShardedMap) and hold key 1.
template <class M>
void contended_acquisition_is_counted_when_a_writer_waits(M& m) {
  std::latch reader_inside(1);
  std::thread writer([&] {
    reader_inside.wait();
    m.store(2, 2);  // must wait: the reader below holds the lock
  });
  m.cvisit(1, [&](const int&) {
    reader_inside.count_down();
    // stats() from the callback reads without relocking; the writer's failed first try
    // is counted before it blocks.
    while (m.stats().contended_acquisitions == 0) std::this_thread::yield();
  });
  writer.join();
  EXPECT_GE(m.stats().contended_acquisitions, 1u);
  EXPECT_EQ(m.load(2), 2);
}

// compute whose function throws: nothing changes, and key 1's lock is released (another
// thread writes the key).
template <class M>
void throwing_compute_leaves_map_unchanged_and_unlocked(M& m) {
  m.store(1, 1);
  EXPECT_THROW(
      m.compute(1,
                [](std::optional<int>) -> std::optional<int> { throw std::runtime_error("boom"); }),
      std::runtime_error);
  EXPECT_EQ(m.load(1), 1);
  EXPECT_EQ(m.version(), 1u);
  std::thread([&] { m.store(1, 2); }).join();
  EXPECT_EQ(m.load(1), 2);
  EXPECT_EQ(m.size(), 1u);
}

// Every kind of call that creates, copies, moves or destroys a value, then snapshot, range and
// clear: every value is destroyed exactly once and none outlives the map (or the snapshot).
// M's mapped_type is a counted<Tag> of the test's own.
template <class M, class Make>
void every_value_is_destroyed_exactly_once(Make make) {
  using value = typename M::mapped_type;
  auto& c = value::counters();
  c.reset();
  {
    auto map = make();
    M& m = *map;
    for (int i = 0; i < 200; ++i) m.store(i, value(i));
    for (int i = 0; i < 200; i += 2) m.swap(i, value(-i));
    for (int i = 0; i < 50; ++i) m.load_or_store(i, value(1));
    for (int i = 0; i < 50; ++i) m.load_and_delete(i);
    for (int i = 50; i < 60; ++i) m.erase(i);
    for (int i = 60; i < 80; ++i) m.compare_and_swap(i, value(i), value(i + 1));
    for (int i = 80; i < 100; ++i) m.compare_and_delete(i, value(i));
    for (int i = 100; i < 140; ++i) {
      m.compute(i, [](std::optional<value> cur) -> std::optional<value> {
        if (cur && cur->value() % 3 == 0) return std::nullopt;
        return value(cur ? cur->value() + 1 : 0);
      });
    }
    EXPECT_THROW(m.compute(150,
                           [](std::optional<value>) -> std::optional<value> {
                             throw std::runtime_error("boom");
                           }),
                 std::runtime_error);
    auto snap = m.snapshot();
    m.range([](const int&, const value& v) { EXPECT_TRUE(v.alive()); });
    EXPECT_EQ(c.live.load(), static_cast<long>(m.size() + snap.size()))
        << "only the map's and the snapshot's values are alive (no copy kept by range)";
    m.clear();
    EXPECT_EQ(c.live.load(), static_cast<long>(snap.size()));
    for (int i = 0; i < 30; ++i) m.store(i, value(i));
  }
  EXPECT_EQ(c.live.load(), 0) << "values leaked";
  EXPECT_EQ(c.bad_destroys.load(), 0) << "a value was destroyed twice";
}

// Every write call from inside a cvisit callback and a compute function on key 1 is reported
// as reentrant_call and refused; afterwards the key's lock is free (another thread writes)
// and the same call works outside any callback. The handler in force must throw.
template <class M, class Make>
void writes_from_visit_and_compute_are_reported(Make make) {
  for (const auto& [name, write] : write_calls<M>()) {
    SCOPED_TRACE(name);
    auto map = make();
    M& m = *map;
    m.store(1, 1);
    m.cvisit(1, [&](const long&) { EXPECT_TRUE(reported_as_reentrant([&] { write(m); })); });
    EXPECT_TRUE(reported_as_reentrant([&] {
      m.compute(1, [&](std::optional<long> cur) {
        write(m);
        return cur;
      });
    }));
    EXPECT_EQ(m.load(1), 1) << "the refused writes changed nothing";
    EXPECT_EQ(m.version(), 1u);
    std::thread([&] { m.store(1, 5); }).join();  // every lock was released
    write(m);
  }
}

// read_view and snapshot from outside any callback walk the shards under locks they took
// themselves, without Map's pin (map_access::for_each_locked): a write that got through to a
// shard mid-walk could grow its table under the walk. So every write call from the view's
// body, and from the walk's callback, must be reported as reentrant_call and change nothing;
// reads from the body work; the walk and the snapshot see every entry once; and afterwards
// every lock is free and every shard's table grows again (a pin left behind would stop its
// growth: inserts would go on into overflow buckets at the same size). This checks what an
// unpinned walk relies on, not which walk ran (the pin is not observable from outside). A
// refusal that broke would deadlock on the shard's lock: the watchdog fails the test then.
// The handler in force must throw.
template <class M, class Make>
void read_view_and_snapshot_see_everything_and_refuse_writes(Make make) {
  constexpr int n = 300;
  watchdog dog("read_view and snapshot with refused writes");
  for (const auto& [name, write] : write_calls<M>()) {
    SCOPED_TRACE(name);
    auto map = make();
    M& m = *map;
    for (int k = 0; k < n; ++k) m.store(k, k * 2L);
    const auto version = m.version();
    const unsigned log2_buckets = m.stats().table.log2_buckets;
    std::vector<int> visits(n, 0);
    bool foreign = false;
    m.read_view([&](auto&& walk) {
      EXPECT_EQ(m.load(7), 14) << "a read from the view's body";
      EXPECT_TRUE(reported_as_reentrant([&] { write(m); })) << "from the body";
      walk([&](const int& k, const long& v) {
        if (k < 0 || k >= n || v != k * 2L) {
          foreign = true;
          return;
        }
        ++visits[static_cast<std::size_t>(k)];
        if (k == 5) {
          EXPECT_TRUE(reported_as_reentrant([&] { write(m); })) << "from the walk";
        }
      });
    });
    EXPECT_FALSE(foreign) << "the walk saw an entry that was never stored";
    EXPECT_EQ(std::count(visits.begin(), visits.end(), 1), n) << "every entry exactly once";
    EXPECT_EQ(m.version(), version) << "the refused writes changed nothing";
    const auto snap = m.snapshot();
    EXPECT_EQ(snap.size(), static_cast<std::size_t>(n));
    for (int k = 0; k < n; ++k) {
      const long* v = snap.find(k);
      ASSERT_NE(v, nullptr) << k;
      EXPECT_EQ(*v, k * 2L);
    }
    std::thread([&] {  // every lock is free, and the shards grow (no pin was left behind)
      for (int k = n; k < 20 * n; ++k) m.store(k, 1L);
    })
        .join();
    EXPECT_EQ(m.size(), static_cast<std::size_t>(20 * n));
    // 20x the entries: 4 doublings at the same load (stats().table.log2_buckets is the
    // largest shard's B); a table that could not grow would keep its B.
    EXPECT_GE(m.stats().table.log2_buckets, log2_buckets + 3) << "a shard's table did not grow";
    write(m);  // outside any callback the same call works
  }
}

// A handler that returns instead of throwing: the report is still seen once, and the write
// from the callback is refused all the same (report_reentrant_write throws after it).
template <class M>
void handler_that_returns_still_sees_the_report_and_the_write_is_refused(M& m) {
  auto& record = misuse_record::instance();
  record.reset();
  scoped_misuse_handler handler(&record_misuse);
  m.store(1, 1);
  m.cvisit(1, [&](const long&) { EXPECT_TRUE(reported_as_reentrant([&] { m.store(1, 2); })); });
  EXPECT_EQ(record.of(safemap::misuse_kind::reentrant_call), 1);
  EXPECT_EQ(m.load(1), 1);
}

// Another map may be written from a range, cvisit or compute callback of a (different) map.
template <class M>
void another_map_may_be_written_from_a_callback(M& a, M& b) {
  a.store(1, 1);
  a.range([&](const int& k, const long& v) { b.store(k + 1, v * 100); });
  a.cvisit(1, [&](const long& v) { b.store(1, v * 10); });
  a.compute(1, [&](std::optional<long> cur) {
    b.compute(1, [&](std::optional<long> x) { return std::optional<long>(*x + *cur); });
    return cur;
  });
  EXPECT_EQ(b.load(1), 11);
  EXPECT_EQ(b.load(2), 100);
}

}  // namespace safemap_test::lock
