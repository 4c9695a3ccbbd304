// tests/support/conformance_suite.hpp - the one conformance suite of the concurrent maps.
//
// Written once as typed tests (TYPED_TEST_SUITE_P ConformanceTest) over any concurrent map with
// docs/design.md §4's API; a test binary instantiates it for its maps:
//   INSTANTIATE_TYPED_TEST_SUITE_P(InProcess, ConformanceTest, concurrent_map_types, map_names);
//   INSTANTIATE_TYPED_TEST_SUITE_P(InProcess, ValueLifetimeTest, concurrent_map_types, map_names);
// tests/strategies/conformance_test.cpp runs it on the in-process maps (LockedMap, ShardedMap,
// SyncMap, TrieMap, CowMap); tests/redis/redis_conformance_test.cpp on RedisMap. Where
// docs/design.md §4 lets the strategies differ (range consistency, a write from a range
// callback, the version after a failed write, how often compute calls f), the test asks
// map_traits<M>, whose values come from each map's header.
//
//  - the table: each call's return values exactly as docs/design.md §4's table says;
//  - model: long random sequences of every operation, compared with reference_map call by call
//    (int and std::string keys), versions included;
//  - concurrency (8 threads started on a latch, however many cores): exact counters through
//    compute, one load_or_store winner per key, exact compare_and_swap chains, range during
//    writes, a mixed stress of every operation, and (ValueLifetimeTest, for maps that hold
//    value objects) instance counting that proves each value is destroyed exactly once;
//  - re-entrancy: a range callback may read the same map; a write from it works or is
//    reported as misuse_kind::reentrant_call, as the map documents; it never hangs.
//  - visitation, bulk erase and moves: cvisit, visit_all, erase_if, insert_or_visit (one
//    inserter per key under contention), emplace_or_visit, move construction and assignment,
//    callbacks that throw (the map stays whole, nothing stays held) or re-enter the map.
//
// What a map's traits may add for a map that is not an in-process object (all optional; an
// in-process map's traits need none of them):
//  - static M make(): how a test gets a fresh, empty map (default: M{} - a RedisMap needs a
//    server and a name no other test uses);
//  - static constexpr std::size_t work_divisor: the model and concurrency tests divide their
//    operation counts by it (default 1; a RedisMap call is a network round trip, so it runs
//    ~1/100 of the operations);
//  - static constexpr bool move_empties_source: false when the moved-from object still names
//    the same data (a RedisMap handle); the move test then checks only that it stays usable;
//  - static constexpr bool holds_value_objects: false when the map keeps values as text, so
//    there is no C++ object per stored value to count (default true). The instance-counting
//    test lives in a suite of its own (ValueLifetimeTest, at the end of this file) that a
//    binary instantiates only for maps that hold value objects; visit's "no copy" check becomes
//    a plain value check.
// Under sanitizers (safemap_test::scaled) the model and counting tests run fewer operations so
// the TSan binary stays near a minute; the in-process maps' stress test keeps its 1e6
// operations everywhere.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <ranges>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "safemap/concurrent.hpp"
#include "safemap/misuse.hpp"
#include "safemap/reclaim.hpp"
#include "support/concurrent_maps.hpp"
#include "support/counted.hpp"
#include "support/misuse_guard.hpp"
#include "support/reference_model.hpp"
#include "support/watchdog.hpp"

namespace safemap_test {

// A fresh, empty map of type M (map_traits<M>::make() when the map needs arguments).
template <class M>
M make_map() {
  if constexpr (requires { map_traits<M>::make(); }) {
    return map_traits<M>::make();
  } else {
    return M();  // a prvalue: works for maps that can be neither copied nor moved
  }
}

// n scaled for the build (safemap_test::scaled(n, sanitizer_divisor)) and for the map
// (map_traits<M>::work_divisor), at least 1.
template <class M>
constexpr std::size_t work_size(std::size_t n, std::size_t sanitizer_divisor) {
  std::size_t divisor = 1;
  if constexpr (requires { map_traits<M>::work_divisor; }) divisor = map_traits<M>::work_divisor;
  return std::max<std::size_t>(1, scaled(n, sanitizer_divisor) / divisor);
}

// Whether each stored value is a C++ object of the map's (false for a map that keeps text).
template <class M>
constexpr bool holds_value_objects() {
  if constexpr (requires { map_traits<M>::holds_value_objects; }) {
    return map_traits<M>::holds_value_objects;
  } else {
    return true;
  }
}

}  // namespace safemap_test

namespace safemap_test::conformance {

using namespace safemap_test;

inline constexpr unsigned k_threads = 8;

template <class M>
class ConformanceTest : public ::testing::Test {};

TYPED_TEST_SUITE_P(ConformanceTest);

// ---- the API ------------------------------------------------------------------------------------

TYPED_TEST_P(ConformanceTest, SatisfiesConcurrentMapConcept) {
  static_assert(safemap::concurrent_map<TypeParam>);
  static_assert(safemap::concurrent_map<rebind_map_t<TypeParam, std::string, std::string>>);
  if constexpr (holds_value_objects<TypeParam>()) {
    static_assert(
        safemap::concurrent_map<rebind_map_t<TypeParam, int, counted<struct concept_tag>>>);
  }
}

TYPED_TEST_P(ConformanceTest, NewMapIsEmpty) {
  auto m = make_map<TypeParam>();
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.load(1), std::nullopt);
  EXPECT_FALSE(m.contains(1));
  EXPECT_TRUE(m.snapshot().empty());
  int calls = 0;
  m.range([&](const int&, const int&) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TYPED_TEST_P(ConformanceTest, LoadReturnsTheStoredValueOrNullopt) {
  auto m = make_map<TypeParam>();
  m.store(1, 10);
  EXPECT_EQ(m.load(1), 10);
  EXPECT_EQ(m.load(2), std::nullopt);
  EXPECT_TRUE(m.contains(1));
  EXPECT_FALSE(m.contains(2));
}

TYPED_TEST_P(ConformanceTest, StoreInsertsOrOverwrites) {
  auto m = make_map<TypeParam>();
  m.store(1, 10);
  m.store(1, 11);
  m.store(2, 20);
  EXPECT_EQ(m.load(1), 11);
  EXPECT_EQ(m.load(2), 20);
  EXPECT_EQ(m.size(), 2u);
}

TYPED_TEST_P(ConformanceTest, LoadOrStoreReturnsExistingAndTrueOrStoresAndReturnsFalse) {
  auto m = make_map<TypeParam>();
  EXPECT_EQ(m.load_or_store(1, 10), std::make_pair(10, false));
  EXPECT_EQ(m.load(1), 10);
  EXPECT_EQ(m.load_or_store(1, 99), std::make_pair(10, true));
  EXPECT_EQ(m.load(1), 10) << "a load_or_store hit must not overwrite";
  EXPECT_EQ(m.size(), 1u);
}

TYPED_TEST_P(ConformanceTest, LoadAndDeleteRemovesAndReturnsTheRemovedValue) {
  auto m = make_map<TypeParam>();
  m.store(1, 10);
  EXPECT_EQ(m.load_and_delete(1), 10);
  EXPECT_FALSE(m.contains(1));
  EXPECT_EQ(m.load_and_delete(1), std::nullopt);
  EXPECT_EQ(m.size(), 0u);
}

TYPED_TEST_P(ConformanceTest, EraseReturnsWhetherSomethingWasRemoved) {
  auto m = make_map<TypeParam>();
  m.store(1, 10);
  EXPECT_TRUE(m.erase(1));
  EXPECT_FALSE(m.erase(1));
  EXPECT_FALSE(m.erase(2));
  EXPECT_EQ(m.size(), 0u);
}

TYPED_TEST_P(ConformanceTest, SwapStoresAndReturnsThePreviousValue) {
  auto m = make_map<TypeParam>();
  EXPECT_EQ(m.swap(1, 10), std::nullopt);
  EXPECT_EQ(m.load(1), 10);
  EXPECT_EQ(m.swap(1, 11), 10);
  EXPECT_EQ(m.load(1), 11);
  EXPECT_EQ(m.size(), 1u);
}

TYPED_TEST_P(ConformanceTest, CompareAndSwapSucceedsOnlyIfPresentAndEqual) {
  auto m = make_map<TypeParam>();
  EXPECT_FALSE(m.compare_and_swap(1, 10, 11)) << "absent key";
  EXPECT_FALSE(m.contains(1)) << "a failed compare_and_swap must not insert";
  m.store(1, 10);
  EXPECT_FALSE(m.compare_and_swap(1, 9, 11));
  EXPECT_EQ(m.load(1), 10);
  EXPECT_TRUE(m.compare_and_swap(1, 10, 11));
  EXPECT_EQ(m.load(1), 11);
}

TYPED_TEST_P(ConformanceTest, CompareAndDeleteSucceedsOnlyIfPresentAndEqual) {
  auto m = make_map<TypeParam>();
  EXPECT_FALSE(m.compare_and_delete(1, 10));
  m.store(1, 10);
  EXPECT_FALSE(m.compare_and_delete(1, 9));
  EXPECT_EQ(m.load(1), 10);
  EXPECT_TRUE(m.compare_and_delete(1, 10));
  EXPECT_FALSE(m.contains(1));
  EXPECT_FALSE(m.compare_and_delete(1, 10));
}

TYPED_TEST_P(ConformanceTest, ComputeSeesTheCurrentStateAndReturnsTheNewOne) {
  auto m = make_map<TypeParam>();
  std::optional<int> seen = 42;
  EXPECT_EQ(m.compute(1,
                      [&](std::optional<int> cur) -> std::optional<int> {
                        seen = cur;
                        return 10;
                      }),
            10);
  EXPECT_EQ(seen, std::nullopt);
  EXPECT_EQ(m.load(1), 10);
  EXPECT_EQ(m.compute(1,
                      [&](std::optional<int> cur) -> std::optional<int> {
                        seen = cur;
                        return *cur + 1;
                      }),
            11);
  EXPECT_EQ(seen, 10);
  EXPECT_EQ(m.load(1), 11);
}

TYPED_TEST_P(ConformanceTest, ComputeReturningNulloptErases) {
  auto m = make_map<TypeParam>();
  m.store(1, 10);
  EXPECT_EQ(m.compute(1, [](std::optional<int>) -> std::optional<int> { return std::nullopt; }),
            std::nullopt);
  EXPECT_FALSE(m.contains(1));
  EXPECT_EQ(m.compute(2, [](std::optional<int>) -> std::optional<int> { return std::nullopt; }),
            std::nullopt)
      << "nullopt for an absent key leaves it absent";
  EXPECT_FALSE(m.contains(2));
  EXPECT_EQ(m.size(), 0u);
}

TYPED_TEST_P(ConformanceTest, VisitCallsFOnTheStoredValueInPlaceWithoutACopy) {
  if constexpr (holds_value_objects<TypeParam>()) {
    struct visit_tag {};
    using value = counted<visit_tag>;
    auto m = make_map<rebind_map_t<TypeParam, int, value>>();
    m.store(1, value(10));
    const long copies = value::counters().copies.load();
    int seen = 0;
    EXPECT_TRUE(m.visit(1, [&](const value& v) { seen = v.value(); }));
    EXPECT_EQ(seen, 10);
    EXPECT_EQ(value::counters().copies.load(), copies) << "visit copied the value";
    EXPECT_FALSE(m.visit(2, [&](const value&) { ADD_FAILURE() << "f called for an absent key"; }));
  } else {
    // The map keeps text, not objects: visit decodes one value per call and there is no stored
    // object to copy or not. What remains checkable: f sees the stored value, once, and is not
    // called for an absent key.
    auto m = make_map<TypeParam>();
    m.store(1, 10);
    int seen = 0;
    int calls = 0;
    EXPECT_TRUE(m.visit(1, [&](const int& v) {
      seen = v;
      ++calls;
    }));
    EXPECT_EQ(seen, 10);
    EXPECT_EQ(calls, 1);
    EXPECT_FALSE(m.visit(2, [&](const int&) { ADD_FAILURE() << "f called for an absent key"; }));
  }
}

TYPED_TEST_P(ConformanceTest, RangeVisitsEveryEntryOnceAndStopsWhenFReturnsFalse) {
  auto m = make_map<TypeParam>();
  for (int k = 0; k < 100; ++k) m.store(k, k * 10);
  std::map<int, int> seen;
  m.range([&](const int& k, const int& v) {
    EXPECT_TRUE(seen.emplace(k, v).second) << "key " << k << " visited twice";
  });
  ASSERT_EQ(seen.size(), 100u);
  for (const auto& [k, v] : seen) EXPECT_EQ(v, k * 10);

  int calls = 0;
  m.range([&](const int&, const int&) { return ++calls < 7; });
  EXPECT_EQ(calls, 7) << "range must stop when f returns false";
}

TYPED_TEST_P(ConformanceTest, SizeIsExactAndClearRemovesEverything) {
  auto m = make_map<TypeParam>();
  for (int k = 0; k < 1000; ++k) m.store(k, k);
  EXPECT_EQ(m.size(), 1000u);
  for (int k = 0; k < 1000; k += 2) m.erase(k);
  EXPECT_EQ(m.size(), 500u);
  m.clear();
  EXPECT_EQ(m.size(), 0u);
  EXPECT_FALSE(m.contains(1));
  m.store(1, 1);
  EXPECT_EQ(m.size(), 1u) << "the map works after clear";
}

TYPED_TEST_P(ConformanceTest, SnapshotIsAnIndependentCopy) {
  auto m = make_map<TypeParam>();
  for (int k = 0; k < 50; ++k) m.store(k, k);
  auto snap = m.snapshot();
  static_assert(std::is_same_v<decltype(snap), safemap::Map<int, int, typename TypeParam::hasher,
                                                            typename TypeParam::key_equal>>);
  m.store(0, 100);
  m.erase(1);
  m.store(50, 50);
  ASSERT_EQ(snap.size(), 50u);
  for (int k = 0; k < 50; ++k) {
    ASSERT_NE(snap.find(k), nullptr);
    EXPECT_EQ(*snap.find(k), k);
  }
  snap.insert_or_assign(7, 700);
  EXPECT_EQ(m.load(7), 7) << "writing the snapshot must not touch the map";
}

TYPED_TEST_P(ConformanceTest, VersionGrowsOnEverySuccessfulMutation) {
  auto m = make_map<TypeParam>();
  std::uint64_t v = m.version();
  auto grew = [&](const char* what) {
    const std::uint64_t now = m.version();
    EXPECT_GE(now, v + 1) << what << " did not advance the version";
    v = now;
  };
  m.store(1, 10);
  grew("store");
  m.store(1, 11);
  grew("store (overwrite)");
  m.load_or_store(2, 20);
  grew("load_or_store (stored)");
  m.swap(3, 30);
  grew("swap (inserted)");
  m.swap(3, 31);
  grew("swap (replaced)");
  m.compare_and_swap(1, 11, 12);
  grew("compare_and_swap");
  m.compute(1, [](std::optional<int> c) -> std::optional<int> { return *c + 1; });
  grew("compute (assign)");
  m.compute(4, [](std::optional<int>) -> std::optional<int> { return 40; });
  grew("compute (insert)");
  m.compute(4, [](std::optional<int>) -> std::optional<int> { return std::nullopt; });
  grew("compute (erase)");
  m.erase(3);
  grew("erase");
  m.load_and_delete(2);
  grew("load_and_delete");
  m.compare_and_delete(1, 13);
  grew("compare_and_delete");
  m.store(5, 50);
  grew("store");
  m.clear();
  grew("clear");
}

TYPED_TEST_P(ConformanceTest, VersionNeverDecreasesAndFailedWritesKeepItWhereDocumented) {
  auto m = make_map<TypeParam>();
  m.store(1, 10);
  std::uint64_t v = m.version();
  auto check = [&](const char* what) {
    const std::uint64_t now = m.version();
    EXPECT_GE(now, v) << what << " moved the version backwards";
    if constexpr (map_traits<TypeParam>::failed_writes_keep_version) {
      EXPECT_EQ(now, v) << what << " changed nothing but advanced the version";
    }
    v = now;
  };
  m.erase(2);
  check("erase of an absent key");
  m.load_and_delete(2);
  check("load_and_delete of an absent key");
  m.load_or_store(1, 99);
  check("load_or_store hit");
  m.compare_and_swap(1, 9, 11);
  check("failed compare_and_swap");
  m.compare_and_swap(2, 9, 11);
  check("compare_and_swap of an absent key");
  m.compare_and_delete(1, 9);
  check("failed compare_and_delete");
  m.compute(2, [](std::optional<int>) -> std::optional<int> { return std::nullopt; });
  check("compute returning nullopt for an absent key");
  (void)m.load(1);
  (void)m.size();
  (void)m.snapshot();
  m.range([](const int&, const int&) {});
  check("reads");
}

TYPED_TEST_P(ConformanceTest, StringKeysAcceptStringViewAndLiteralLookups) {
  auto m = make_map<rebind_map_t<TypeParam, std::string, int>>();
  m.store("alpha", 1);
  m.store(std::string("beta"), 2);
  m.store("gamma", 3);
  m.store("delta", 4);
  const std::string_view alpha = "alpha";
  EXPECT_EQ(m.load(alpha), 1);
  EXPECT_EQ(m.load("beta"), 2);
  EXPECT_TRUE(m.contains(std::string_view("gamma")));
  EXPECT_FALSE(m.contains("omega"));
  int seen = 0;
  EXPECT_TRUE(m.visit(std::string_view("beta"), [&](const int& v) { seen = v; }));
  EXPECT_EQ(seen, 2);
  EXPECT_TRUE(m.compare_and_swap(std::string_view("alpha"), 1, 10));
  EXPECT_EQ(m.load("alpha"), 10);
  EXPECT_TRUE(m.compare_and_delete(std::string_view("alpha"), 10));
  EXPECT_TRUE(m.erase(std::string_view("beta")));
  EXPECT_EQ(m.load_and_delete("gamma"), 3);
  EXPECT_EQ(m.size(), 1u);
  EXPECT_EQ(m.load(std::string("delta")), 4);
}

// ---- model-based randomized test
// --------------------------------------------------------------------

// Applies random operations of every kind to m and to reference_map, comparing every result,
// and checks versions: every mutation the reference counts must advance m's version.
template <class M, class K>
void check_against_reference(std::uint64_t seed, std::size_t ops, std::uint64_t key_space,
                             std::function<K(std::uint64_t)> make_key) {
  using V = typename M::mapped_type;
  auto m = make_map<M>();
  reference_map<K, V> ref;
  op_generator<K, V> gen(seed, key_space, std::move(make_key), [](int v) { return V(v); });
  std::size_t mutations = 0;
  for (std::size_t i = 0; i < ops; ++i) {
    const map_op<K, V> op = gen.next();
    const std::uint64_t version_before = m.version();
    const std::uint64_t ref_version_before = ref.version();
    const op_result<K, V> got = apply_op(m, op);
    const op_result<K, V> want = apply_op(ref, op);
    ASSERT_EQ(got, want) << "op #" << i << " " << op << " (seed " << seed << ")";
    const std::uint64_t version_after = m.version();
    if (ref.version() != ref_version_before) {
      ++mutations;
      ASSERT_GT(version_after, version_before)
          << "op #" << i << " " << op << " mutated the map without advancing version()";
    } else if constexpr (map_traits<M>::failed_writes_keep_version) {
      ASSERT_EQ(version_after, version_before)
          << "op #" << i << " " << op << " changed nothing but advanced version()";
    } else {
      ASSERT_GE(version_after, version_before) << "op #" << i << " " << op;
    }
    if (i % 4096 == 0) {
      ASSERT_EQ(m.size(), ref.size()) << "after op #" << i;
    }
  }
  EXPECT_EQ(sorted_entries(m.snapshot()), sorted_entries(ref.snapshot()));
  EXPECT_GT(mutations, ops / 4) << "the generator should mutate often";
}

// Per key type: 200k operations in an optimized build; a quarter under sanitizers, where the
// concurrency tests (the 1e6-operation stress above all) are what the instrumentation is for.
// A remote map runs fewer (work_size).
template <class M>
constexpr std::size_t model_ops() {
  return work_size<M>(200'000, 4);
}

TYPED_TEST_P(ConformanceTest, RandomOperationsMatchTheReferenceModelWithIntKeys) {
  for (std::uint64_t seed : {1u, 2u}) {
    SCOPED_TRACE(seed);
    check_against_reference<TypeParam, int>(seed, model_ops<TypeParam>() / 2, seed == 1 ? 16 : 64,
                                            [](std::uint64_t k) { return static_cast<int>(k); });
  }
}

TYPED_TEST_P(ConformanceTest, RandomOperationsMatchTheReferenceModelWithStringKeys) {
  using M = rebind_map_t<TypeParam, std::string, int>;
  for (std::uint64_t seed : {3u, 4u}) {
    SCOPED_TRACE(seed);
    check_against_reference<M, std::string>(
        seed, model_ops<TypeParam>() / 2, seed == 3 ? 16 : 64, [](std::uint64_t k) {
          // Long enough to defeat the small-string buffer.
          return "key-" + std::to_string(k) + std::string(k % 3 == 0 ? 24 : 0, 'x');
        });
  }
}

// ---- concurrency
// ------------------------------------------------------------------------------------

TYPED_TEST_P(ConformanceTest, ConcurrentComputeIncrementsEndExact) {
  auto m = make_map<TypeParam>();
  constexpr int keys = 16;
  // A multiple of keys, so every key gets the same number of increments from each thread.
  const int per_thread = static_cast<int>(work_size<TypeParam>(20'000, 4)) / keys * keys;
  std::atomic<long> calls{0};
  run_threads(k_threads, [&](unsigned t) {
    long my_calls = 0;
    for (int i = 0; i < per_thread; ++i) {
      const int k = static_cast<int>((static_cast<unsigned>(i) + t) % keys);
      m.compute(k, [&my_calls](std::optional<int> cur) -> std::optional<int> {
        ++my_calls;
        return cur.value_or(0) + 1;
      });
    }
    calls += my_calls;
  });
  if constexpr (map_traits<TypeParam>::compute_calls_f_once) {
    EXPECT_EQ(calls.load(), static_cast<long>(k_threads) * per_thread) << "f called more than once";
  } else {
    EXPECT_GE(calls.load(), static_cast<long>(k_threads) * per_thread);
  }
  long total = 0;
  for (int k = 0; k < keys; ++k) {
    const std::optional<int> v = m.load(k);
    ASSERT_TRUE(v.has_value()) << "key " << k;
    EXPECT_EQ(*v, static_cast<int>(k_threads) * per_thread / keys) << "key " << k;
    total += *v;
  }
  EXPECT_EQ(total, static_cast<long>(k_threads) * per_thread);
}

TYPED_TEST_P(ConformanceTest, ConcurrentLoadOrStoreHasExactlyOneWinnerPerKey) {
  auto m = make_map<TypeParam>();
  const int keys = static_cast<int>(work_size<TypeParam>(5'000, 5));
  // results[t][k] = {value returned, loaded}
  std::vector<std::vector<std::pair<int, bool>>> results(k_threads);
  run_threads(k_threads, [&](unsigned t) {
    auto& mine = results[t];
    mine.reserve(static_cast<std::size_t>(keys));
    for (int k = 0; k < keys; ++k) {
      // Threads walk the keys in different orders so every key is contended.
      const int key = (t % 2 == 0) ? k : keys - 1 - k;
      mine.push_back(m.load_or_store(key, key * 100 + static_cast<int>(t)));
    }
  });
  for (int k = 0; k < keys; ++k) {
    const std::optional<int> final_value = m.load(k);
    ASSERT_TRUE(final_value.has_value());
    int winners = 0;
    for (unsigned t = 0; t < k_threads; ++t) {
      const int idx = (t % 2 == 0) ? k : keys - 1 - k;
      const auto& [value, loaded] = results[t][static_cast<std::size_t>(idx)];
      if (!loaded) {
        ++winners;
        EXPECT_EQ(value, k * 100 + static_cast<int>(t)) << "a winner gets its own value back";
      }
      EXPECT_EQ(value, *final_value) << "key " << k << ", thread " << t;
    }
    EXPECT_EQ(winners, 1) << "key " << k;
  }
}

TYPED_TEST_P(ConformanceTest, ConcurrentCompareAndSwapChainsAreExact) {
  auto m = make_map<TypeParam>();
  constexpr int keys = 4;
  for (int k = 0; k < keys; ++k) m.store(k, 0);
  const int per_thread = static_cast<int>(work_size<TypeParam>(10'000, 4)) / keys * keys;
  std::atomic<long> failures{0};
  run_threads(k_threads, [&](unsigned t) {
    long failed = 0;
    for (int i = 0; i < per_thread; ++i) {
      const int k = static_cast<int>((static_cast<unsigned>(i) + t) % keys);
      for (;;) {
        const int cur = *m.load(k);
        if (m.compare_and_swap(k, cur, cur + 1)) break;
        ++failed;
      }
    }
    failures += failed;
  });
  long total = 0;
  for (int k = 0; k < keys; ++k) {
    EXPECT_EQ(*m.load(k), static_cast<int>(k_threads) * per_thread / keys);
    total += *m.load(k);
  }
  EXPECT_EQ(total, static_cast<long>(k_threads) * per_thread);
  ::testing::Test::RecordProperty("cas_retries", static_cast<int>(failures.load()));
}

// Values encode their key: value % 1000 == key. A value seen for a key that does not encode it
// was never stored for that key (a torn or misdirected read).
constexpr int encode(int key, int seq) {
  return key + 1000 * (seq % 1'000'000);
}
constexpr int key_of(int value) {
  return value % 1000;
}

// A writer thread's part of the read-during-writes tests: `writes` random erases, swaps and
// stores of keys below `keys`, every stored value encoding its key (seeded by the thread).
template <class M>
void churn_writes(M& m, unsigned thread, int writes, int keys) {
  test_rng rng(thread);
  for (int i = 0; i < writes; ++i) {
    const int k = static_cast<int>(rng.below(static_cast<std::uint64_t>(keys)));
    switch (rng.below(4)) {
      case 0:
        m.erase(k);
        break;
      case 1:
        m.swap(k, encode(k, i));
        break;
      default:
        m.store(k, encode(k, i));
        break;
    }
  }
}

TYPED_TEST_P(ConformanceTest, RangeDuringWritesSeesEachKeyAtMostOnceWithItsOwnValues) {
  auto m = make_map<TypeParam>();
  constexpr int keys = 64;
  for (int k = 0; k < keys; k += 2) m.store(k, encode(k, 0));
  std::atomic<bool> stop{false};
  std::atomic<long> ranges{0};
  std::atomic<long> bad{0};
  const int writes = static_cast<int>(work_size<TypeParam>(20'000, 4));
  run_threads(k_threads, [&](unsigned t) {
    if (t < 2) {  // readers
      std::vector<int> seen(keys);
      while (!stop.load(std::memory_order_relaxed) || ranges.load() < 4) {
        std::fill(seen.begin(), seen.end(), 0);
        m.range([&](const int& k, const int& v) {
          if (k < 0 || k >= keys || key_of(v) != k || ++seen[static_cast<std::size_t>(k)] > 1) {
            ++bad;
          }
        });
        ++ranges;
      }
      return;
    }
    churn_writes(m, t, writes, keys);
    if (t == k_threads - 1) stop = true;
  });
  EXPECT_EQ(bad.load(), 0) << "range saw a key twice, or a value never stored for its key";
  EXPECT_GE(ranges.load(), 4);
}

// Every operation from 8 threads on a small key space, >= 1e6 operations in total; values
// encode their key. Afterwards size(), range() and snapshot() must agree.
TYPED_TEST_P(ConformanceTest, MixedOperationStressKeepsTheMapConsistent) {
  auto m = make_map<TypeParam>();
  constexpr int keys = 64;
  // 1e6 for the in-process maps in every build; a remote map runs fewer (work_size).
  const std::size_t total_ops = work_size<TypeParam>(1'000'000, 1) / k_threads * k_threads;
  const std::size_t per_thread = total_ops / k_threads;
  std::atomic<long> bad{0};
  std::atomic<long> ops_done{0};
  run_threads(k_threads, [&](unsigned t) {
    test_rng rng(1000 + t);
    long local_bad = 0;
    auto check = [&](const std::optional<int>& v, int k) {
      if (v && key_of(*v) != k) ++local_bad;
    };
    for (std::size_t i = 0; i < per_thread; ++i) {
      const int k = static_cast<int>(rng.below(keys));
      const int v = encode(k, static_cast<int>(i));
      switch (rng.below(16)) {
        case 0:
          check(m.load(k), k);
          break;
        case 1:
          (void)m.contains(k);
          break;
        case 2:
          m.visit(k, [&](const int& x) { check(x, k); });
          break;
        case 3:
          m.store(k, v);
          break;
        case 4: {
          auto [got, loaded] = m.load_or_store(k, v);
          if (key_of(got) != k || (!loaded && got != v)) ++local_bad;
          break;
        }
        case 5:
          check(m.load_and_delete(k), k);
          break;
        case 6:
          m.erase(k);
          break;
        case 7:
          check(m.swap(k, v), k);
          break;
        case 8: {
          const std::optional<int> cur = m.load(k);
          if (cur) m.compare_and_swap(k, *cur, v);
          break;
        }
        case 9: {
          const std::optional<int> cur = m.load(k);
          if (cur) m.compare_and_delete(k, *cur);
          break;
        }
        case 10:
        case 11:
          check(m.compute(k,
                          [k](std::optional<int> cur) -> std::optional<int> {
                            if (cur && key_of(*cur) == k && *cur > 500'000'000) return std::nullopt;
                            return cur ? *cur + 1000 : encode(k, 1);
                          }),
                k);
          break;
        case 12:
          if (rng.chance(1, 64)) {
            m.range([&](const int& rk, const int& rv) {
              if (key_of(rv) != rk) ++local_bad;
            });
          } else {
            (void)m.load(k);
          }
          break;
        case 13:
          if (rng.chance(1, 64)) {
            const auto snap = m.snapshot();
            for (const auto& [sk, sv] : snap) {
              if (key_of(sv) != sk) ++local_bad;
            }
          } else {
            (void)m.load(k);
          }
          break;
        case 14:
          if (rng.chance(1, 2048)) {
            m.clear();
          } else {
            (void)m.size();
          }
          break;
        default:
          (void)m.version();
          break;
      }
    }
    bad += local_bad;
    ops_done += static_cast<long>(per_thread);
  });
  EXPECT_EQ(bad.load(), 0) << "a value was seen under a key it was not stored for";
  EXPECT_GE(ops_done.load(), static_cast<long>(total_ops));
  // Quiescent: every view agrees.
  const auto snap = m.snapshot();
  std::size_t ranged = 0;
  m.range([&](const int& k, const int& v) {
    ++ranged;
    const int* s = snap.find(k);
    EXPECT_TRUE(s != nullptr && *s == v) << "key " << k;
  });
  EXPECT_EQ(m.size(), snap.size());
  EXPECT_EQ(ranged, snap.size());
  for (int k = 0; k < keys; ++k) {
    const int* s = snap.find(k);
    EXPECT_EQ(m.load(k), s ? std::optional<int>(*s) : std::nullopt) << "key " << k;
  }
}

template <class M>
struct churn_tag {};

// The body of EveryStoredValueIsDestroyedExactlyOnce, for maps that hold value objects.
template <class Base>
void churn_test() {
  using value = counted<churn_tag<Base>>;
  using M = rebind_map_t<Base, int, value>;
  safemap::rcu::barrier();  // values retired by earlier tests are not ours, but start clean
  value::counters().reset();
  {
    M m;
    constexpr int keys = 64;
    const std::size_t per_thread = scaled(40'000, 4);
    run_threads(k_threads, [&](unsigned t) {
      test_rng rng(77 + t);
      for (std::size_t i = 0; i < per_thread; ++i) {
        const int k = static_cast<int>(rng.below(keys));
        const int v = static_cast<int>(i);
        switch (rng.below(10)) {
          case 0:
            m.store(k, value(v));
            break;
          case 1:
          case 2:
            (void)m.swap(k, value(v));
            break;
          case 3:
            m.erase(k);
            break;
          case 4:
            (void)m.load_and_delete(k);
            break;
          case 5:
            (void)m.load_or_store(k, value(v));
            break;
          case 6:
            (void)m.compute(k, [v](std::optional<value> cur) -> std::optional<value> {
              if (cur && cur->value() % 2 == 0) return std::nullopt;
              return value(v);
            });
            break;
          case 7: {
            const std::optional<value> cur = m.load(k);
            if (cur) (void)m.compare_and_swap(k, *cur, value(v));
            break;
          }
          case 8: {
            const std::optional<value> cur = m.load(k);
            if (cur) (void)m.compare_and_delete(k, *cur);
            break;
          }
          default:
            if (rng.chance(1, 500)) {
              m.clear();
            } else {
              m.range([](const int&, const value& x) { return x.alive(); });
            }
            break;
        }
      }
    });
    EXPECT_EQ(value::counters().bad_destroys.load(), 0);
  }
  // Retired snapshots, entries and boxes are freed after a grace period: wait for it, outside
  // any read-side critical section.
  safemap::rcu::barrier();
  EXPECT_EQ(value::counters().live.load(), 0) << "values leaked";
  EXPECT_EQ(value::counters().bad_destroys.load(), 0) << "a value was destroyed twice";
  EXPECT_GT(value::counters().constructed.load(), 0);
}

// ---- re-entrancy
// ----------------------------------------------------------------------------------

// ---- batched lookups ---------------------------------------------------------------------------

TYPED_TEST_P(ConformanceTest, LoadManyGivesWhatLoadGivesForEveryKeyAndCountsTheFound) {
  auto m = make_map<TypeParam>();
  for (int k = 0; k < 300; k += 2) m.store(k, k * 3 + 1);
  // 0..399 and back down, with repeats: groups of 64 end inside the stored and absent ranges.
  std::vector<int> keys;
  for (int k = 0; k < 400; ++k) keys.push_back(k);
  for (int k = 399; k >= 0; k -= 7) keys.push_back(k);
  std::size_t expected_found = 0;
  for (const int k : keys) expected_found += k < 300 && k % 2 == 0;
  std::vector<std::optional<int>> out(keys.size(), std::optional<int>(-1));
  EXPECT_EQ(m.load_many(std::span<const int>(keys), std::span<std::optional<int>>(out)),
            expected_found);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const int k = keys[i];
    if (k < 300 && k % 2 == 0) {
      EXPECT_EQ(out[i], std::optional<int>(k * 3 + 1)) << "key " << k;
    } else {
      EXPECT_EQ(out[i], std::nullopt) << "key " << k << ": absent keys overwrite out with nullopt";
    }
  }
  // The range form: a vector (contiguous), a list and a view (key by key); the same answers.
  EXPECT_EQ(m.load_many(keys), out);
  const std::list<int> as_list(keys.begin(), keys.end());
  EXPECT_EQ(m.load_many(as_list), out);
  const auto doubled =
      m.load_many(std::views::iota(0, 10) | std::views::transform([](int k) { return k * 2; }));
  ASSERT_EQ(doubled.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(doubled[i], std::optional<int>(i * 6 + 1));
  // A batch of 2,500 keys: several of ShardedMap's 1,024-key groups and many groups of 64.
  std::vector<int> many(2'500);
  for (std::size_t i = 0; i < many.size(); ++i) many[i] = static_cast<int>((i * 7) % 400);
  const std::vector<std::optional<int>> many_out = m.load_many(many);
  ASSERT_EQ(many_out.size(), many.size());
  for (std::size_t i = 0; i < many.size(); ++i) {
    const int k = many[i];
    EXPECT_EQ(many_out[i], k < 300 && k % 2 == 0 ? std::optional<int>(k * 3 + 1) : std::nullopt)
        << "key " << k << " at " << i;
  }
  // No keys: nothing found, nothing written.
  EXPECT_EQ(m.load_many(std::span<const int>(), std::span<std::optional<int>>()), 0u);
  EXPECT_TRUE(m.load_many(std::vector<int>()).empty());
}

TYPED_TEST_P(ConformanceTest, LoadManyIntoAShortOutputThrowsLengthErrorAndWritesNothing) {
  auto m = make_map<TypeParam>();
  m.store(1, 10);
  const std::vector<int> keys = {1, 2, 3};
  std::vector<std::optional<int>> out(2, std::optional<int>(-5));
  EXPECT_THROW(m.load_many(std::span<const int>(keys), std::span<std::optional<int>>(out)),
               std::length_error);
  EXPECT_EQ(out, std::vector<std::optional<int>>(2, std::optional<int>(-5)));
  // A longer output is fine: the entries past the keys stay as they were.
  std::vector<std::optional<int>> longer(5, std::optional<int>(-5));
  EXPECT_EQ(m.load_many(std::span<const int>(keys), std::span<std::optional<int>>(longer)), 1u);
  EXPECT_EQ(longer, (std::vector<std::optional<int>>{10, std::nullopt, std::nullopt, -5, -5}));
}

// Readers load_many every key while writers store, swap and erase them; values encode their
// key, so a value read for the wrong key, or one never stored, shows. Each batch also checks
// that the count it returns is the number of values it wrote.
TYPED_TEST_P(ConformanceTest, LoadManyDuringWritesSeesOnlyValuesStoredForEachKey) {
  auto m = make_map<TypeParam>();
  constexpr int keys = 200;  // several groups of 64 per batch
  for (int k = 0; k < keys; k += 3) m.store(k, encode(k, 0));
  std::vector<int> all(keys);
  for (int k = 0; k < keys; ++k) all[static_cast<std::size_t>(k)] = k;
  std::atomic<bool> stop{false};
  std::atomic<long> batches{0};
  std::atomic<long> seen{0};
  std::atomic<long> bad{0};
  const int writes = static_cast<int>(work_size<TypeParam>(20'000, 4));
  run_threads(k_threads, [&](unsigned t) {
    if (t < 3) {  // readers
      std::vector<std::optional<int>> out(all.size());
      while (!stop.load(std::memory_order_relaxed) || batches.load() < 8) {
        const std::size_t n =
            m.load_many(std::span<const int>(all), std::span<std::optional<int>>(out));
        std::size_t present = 0;
        for (int k = 0; k < keys; ++k) {
          const std::optional<int>& v = out[static_cast<std::size_t>(k)];
          if (!v) continue;
          ++present;
          if (key_of(*v) != k) ++bad;
        }
        if (present != n) ++bad;
        seen += static_cast<long>(present);
        ++batches;
      }
      return;
    }
    churn_writes(m, t, writes, keys);
    if (t == k_threads - 1) stop = true;
  });
  EXPECT_EQ(bad.load(), 0) << "load_many returned a value never stored for its key, or a count "
                              "that does not match what it wrote";
  EXPECT_GE(batches.load(), 8);
  EXPECT_GT(seen.load(), 0);
}

TYPED_TEST_P(ConformanceTest, RangeCallbackCanLoadFromTheSameMap) {
  auto m = make_map<TypeParam>();
  for (int k = 0; k < 20; ++k) m.store(k, k * 2);
  int visited = 0;
  m.range([&](const int& k, const int& v) {
    EXPECT_EQ(m.load(k), v);
    EXPECT_TRUE(m.contains(k));
    EXPECT_EQ(m.size(), 20u);
    ++visited;
  });
  EXPECT_EQ(visited, 20);
}

TYPED_TEST_P(ConformanceTest, VisitCallbackCanLoadItsOwnKeyFromTheSameMap) {
  auto m = make_map<TypeParam>();
  m.store(1, 10);
  m.store(2, 20);
  EXPECT_TRUE(m.visit(1, [&](const int& v) {
    EXPECT_EQ(m.load(1), v);
    EXPECT_TRUE(m.contains(1));
    EXPECT_EQ(m.load_many(std::vector<int>{1, 1}), (std::vector<std::optional<int>>{v, v}));
  }));
  if constexpr (map_traits<TypeParam>::visit_may_read_any_key) {
    EXPECT_TRUE(m.visit(1, [&](const int& v) {
      EXPECT_EQ(m.load(2), v * 2);
      EXPECT_EQ(m.load_many(std::vector<int>{2, 3, 1}),
                (std::vector<std::optional<int>>{v * 2, std::nullopt, v}));
    }));
  }
}

TYPED_TEST_P(ConformanceTest, RangeCallbackStoreWorksOrIsReportedAsReentrantCall) {
  auto m = make_map<TypeParam>();
  for (int k = 0; k < 8; ++k) m.store(k, k);
  scoped_misuse_handler handler(&throw_misuse);
  if constexpr (map_traits<TypeParam>::write_from_range == range_write_policy::works) {
    m.range([&](const int& k, const int&) { m.store(k + 100, k); });
    for (int k = 0; k < 8; ++k) EXPECT_EQ(m.load(k + 100), k) << "store from range was lost";
    if constexpr (map_traits<TypeParam>::point_in_time_range) {
      // The walk is over one snapshot: entries stored during it are not visited.
      std::size_t visited = 0;
      m.range([&](const int& k, const int&) {
        ++visited;
        m.store(k + 1000, k);
      });
      EXPECT_EQ(visited, 16u);
    }
  } else {
    bool reported = false;
    try {
      m.range([&](const int& k, const int&) { m.store(k + 100, k); });
    } catch (const safemap::misuse_error& e) {
      reported = true;
      EXPECT_EQ(e.kind, safemap::misuse_kind::reentrant_call);
      EXPECT_STREQ(e.what(), safemap::misuse_message(safemap::misuse_kind::reentrant_call));
    }
    EXPECT_TRUE(reported) << "a store from a range callback must be reported";
    EXPECT_FALSE(m.contains(100)) << "the refused store must not have happened";
  }
  // Either way the map is usable afterwards: no lock was left held.
  m.store(-1, -1);
  EXPECT_EQ(m.load(-1), -1);
}

// ---- visitation, bulk erase and moves
// ------------------------------------------------------------ cvisit, visit_all, erase_if,
// insert_or_visit, emplace_or_visit and the move operations (docs/design.md §4, "Visitation, bulk
// erase and moves"). What only LockedMap and ShardedMap do (a visit that changes values in place)
// is in tests/support/mutable_visit_suite.hpp; that the other maps refuse such a visit at compile
// time, in tests/strategies/compile_fail.

// Whether a moved-from map is empty (false for a handle to remote data: RedisMap).
template <class M>
constexpr bool move_empties_source() {
  if constexpr (requires { map_traits<M>::move_empties_source; }) {
    return map_traits<M>::move_empties_source;
  } else {
    return true;
  }
}

TYPED_TEST_P(ConformanceTest, CvisitReadsTheStoredValueOnAConstOrNonConstMap) {
  auto m = make_map<TypeParam>();
  m.store(1, 10);
  const std::uint64_t before = m.version();
  int seen = 0;
  int calls = 0;
  EXPECT_TRUE(m.cvisit(1, [&](const int& v) {
    seen = v;
    ++calls;
  }));
  EXPECT_EQ(seen, 10);
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(m.cvisit(2, [&](const int&) { ADD_FAILURE() << "f called for an absent key"; }));
  const auto& cm = m;
  EXPECT_TRUE(cm.cvisit(1, [&](const int& v) { EXPECT_EQ(v, 10); }));
  EXPECT_TRUE(std::as_const(m).visit(1, [&](const int& v) { EXPECT_EQ(v, 10); }));
  EXPECT_EQ(m.version(), before) << "cvisit and const visit are reads";
  // A non-const visit with a const V& callback works on every map (a read where values are
  // immutable; a write on LockedMap and ShardedMap).
  EXPECT_TRUE(m.visit(1, [&](const int& v) { EXPECT_EQ(v, 10); }));
  EXPECT_EQ(m.load(1), 10);
}

TYPED_TEST_P(ConformanceTest, VisitAllCallsFOnEveryEntryOnceAndReturnsTheCount) {
  auto m = make_map<TypeParam>();
  EXPECT_EQ(std::as_const(m).visit_all([](const int&, const int&) { ADD_FAILURE(); }), 0u);
  for (int k = 0; k < 30; ++k) m.store(k, k * 3);
  const std::uint64_t before = m.version();
  auto check = [&](auto&& visit_all) {
    std::map<int, int> seen;
    const std::size_t n = visit_all([&](const int& k, const int& v) {
      EXPECT_TRUE(seen.emplace(k, v).second) << "key " << k << " visited twice";
    });
    EXPECT_EQ(n, 30u);
    ASSERT_EQ(seen.size(), 30u);
    for (const auto& [k, v] : seen) EXPECT_EQ(v, k * 3) << "key " << k;
  };
  check([&](auto f) { return std::as_const(m).visit_all(f); });
  check([&](auto f) { return m.cvisit_all(f); });
  EXPECT_EQ(m.version(), before) << "const visit_all and cvisit_all are reads";
  check([&](auto f) { return m.visit_all(f); });  // non-const, const callback: every map
}

TYPED_TEST_P(ConformanceTest, EraseIfRemovesExactlyTheEntriesThePredicateSelects) {
  auto m = make_map<TypeParam>();
  for (int k = 0; k < 20; ++k) m.store(k, k * 2);
  const std::uint64_t before = m.version();
  int calls = 0;
  const std::size_t removed = m.erase_if([&](const int& k, const int& v) {
    ++calls;
    EXPECT_EQ(v, k * 2) << "pred must see the key's own value";
    return k % 3 == 0;
  });
  EXPECT_EQ(removed, 7u);  // 0, 3, ..., 18
  EXPECT_EQ(calls, 20);
  EXPECT_EQ(m.size(), 13u);
  for (int k = 0; k < 20; ++k) {
    EXPECT_EQ(m.contains(k), k % 3 != 0) << "key " << k;
    if (k % 3 != 0) {
      EXPECT_EQ(m.load(k), k * 2) << "key " << k;
    }
  }
  EXPECT_GT(m.version(), before);
  const std::uint64_t after = m.version();
  EXPECT_EQ(m.erase_if([](const int&, const int&) { return false; }), 0u);
  EXPECT_EQ(m.size(), 13u);
  if constexpr (map_traits<TypeParam>::failed_writes_keep_version) {
    EXPECT_EQ(m.version(), after) << "an erase_if that removed nothing changed the version";
  }
  EXPECT_EQ(m.erase_if([](const int&, const int&) { return true; }), 13u);
  EXPECT_EQ(m.size(), 0u);
}

TYPED_TEST_P(ConformanceTest, InsertOrVisitInsertsIfAbsentElseCallsFOnTheExistingValueOnce) {
  auto m = make_map<TypeParam>();
  int calls = 0;
  EXPECT_TRUE(m.insert_or_visit(1, 10, [&](const int&) { ++calls; }));
  EXPECT_EQ(calls, 0) << "f called although the key was inserted";
  EXPECT_EQ(m.load(1), 10);
  int seen = 0;
  EXPECT_FALSE(m.insert_or_visit(1, 11, [&](const int& v) {
    seen = v;
    ++calls;
  }));
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen, 10);
  EXPECT_EQ(m.load(1), 10) << "the refused value must not be stored";
  EXPECT_EQ(m.size(), 1u);
}

TYPED_TEST_P(ConformanceTest, EmplaceOrVisitBuildsTheValueFromItsArgumentsWhenAbsent) {
  auto m = make_map<rebind_map_t<TypeParam, int, std::string>>();
  EXPECT_TRUE(m.emplace_or_visit(1, std::size_t{3}, 'x', [](const std::string&) {
    ADD_FAILURE() << "f called although the key was inserted";
  }));
  EXPECT_EQ(m.load(1), "xxx");
  std::string seen;
  EXPECT_FALSE(m.emplace_or_visit(1, std::size_t{2}, 'y', [&](const std::string& v) { seen = v; }));
  EXPECT_EQ(seen, "xxx");
  EXPECT_EQ(m.load(1), "xxx");
  EXPECT_TRUE(m.emplace_or_visit(2, [](const std::string&) { ADD_FAILURE(); }));
  EXPECT_EQ(m.load(2), "") << "no arguments: a value-initialized V";
  const std::string text = "copied";
  EXPECT_TRUE(m.emplace_or_visit(3, text, [](const std::string&) { ADD_FAILURE(); }));
  EXPECT_EQ(m.load(3), "copied");
  EXPECT_EQ(text, "copied") << "an lvalue argument must be copied, not moved from";
}

TYPED_TEST_P(ConformanceTest, ConcurrentInsertOrVisitHasExactlyOneInserterPerKey) {
  watchdog dog("concurrent insert_or_visit");
  auto m = make_map<TypeParam>();
  const int keys = static_cast<int>(work_size<TypeParam>(2'000, 5));
  std::vector<std::vector<char>> inserted(k_threads, std::vector<char>(keys, 0));
  std::atomic<long> visits{0};
  run_threads(k_threads, [&](unsigned t) {
    for (int k = 0; k < keys; ++k) {
      const int key = (t % 2 == 0) ? k : keys - 1 - k;
      inserted[t][static_cast<std::size_t>(key)] =
          m.insert_or_visit(key, key * 100 + static_cast<int>(t), [&](const int& v) {
            EXPECT_EQ(v / 100, key) << "f saw another key's value";
            visits.fetch_add(1, std::memory_order_relaxed);
          });
    }
  });
  for (int k = 0; k < keys; ++k) {
    int inserters = 0;
    unsigned winner = 0;
    for (unsigned t = 0; t < k_threads; ++t) {
      if (inserted[t][static_cast<std::size_t>(k)] != 0) {
        ++inserters;
        winner = t;
      }
    }
    ASSERT_EQ(inserters, 1) << "key " << k;
    EXPECT_EQ(m.load(k), k * 100 + static_cast<int>(winner)) << "the inserter's value is stored";
  }
  EXPECT_EQ(visits.load(), static_cast<long>(keys) * (k_threads - 1));
}

TYPED_TEST_P(ConformanceTest, MoveConstructionAndAssignmentTakeTheEntriesAndLeaveTheSourceUsable) {
  auto a = make_map<TypeParam>();
  a.store(1, 10);
  a.store(2, 20);
  const std::uint64_t version_a = a.version();
  TypeParam b(std::move(a));
  EXPECT_EQ(b.size(), 2u);
  EXPECT_EQ(b.load(1), 10);
  EXPECT_EQ(b.load(2), 20);
  if constexpr (move_empties_source<TypeParam>()) {
    EXPECT_EQ(a.size(), 0u);  // NOLINT(bugprone-use-after-move): moved-from maps are usable
    EXPECT_FALSE(a.contains(1));
    EXPECT_EQ(b.version(), version_a) << "the destination takes over the source's version";
    EXPECT_GT(a.version(), version_a) << "a watcher of the source must see a change";
  }
  a.store(3, 30);
  EXPECT_EQ(a.load(3), 30);
  if constexpr (move_empties_source<TypeParam>()) {
    EXPECT_FALSE(b.contains(3)) << "the two maps must be independent";
  }

  auto c = make_map<TypeParam>();
  c.store(99, 1);
  c = std::move(b);
  EXPECT_EQ(c.load(1), 10);
  EXPECT_EQ(c.load(2), 20);
  EXPECT_FALSE(c.contains(99)) << "the destination's previous entries must be gone";
  if constexpr (move_empties_source<TypeParam>()) {
    EXPECT_EQ(b.size(), 0u);  // NOLINT(bugprone-use-after-move)
  }
  b.store(4, 40);
  EXPECT_EQ(b.load(4), 40);
  c.store(5, 50);
  EXPECT_EQ(c.load(5), 50);
}

TYPED_TEST_P(ConformanceTest, AThrowingCallbackLeavesTheMapWholeAndNothingHeld) {
  watchdog dog("calls after a throwing callback");
  struct boom {};
  auto m = make_map<TypeParam>();
  for (int k = 0; k < 10; ++k) m.store(k, k);
  EXPECT_THROW(m.cvisit(1, [](const int&) { throw boom{}; }), boom);
  EXPECT_THROW(std::as_const(m).visit_all([](const int&, const int&) { throw boom{}; }), boom);
  EXPECT_THROW(m.insert_or_visit(1, 5, [](const int&) { throw boom{}; }), boom);
  EXPECT_THROW(m.emplace_or_visit(2, 5, [](const int&) { throw boom{}; }), boom);
  int calls = 0;
  EXPECT_THROW(m.erase_if([&](const int&, const int&) -> bool {
    if (++calls == 3) throw boom{};
    return false;
  }),
               boom);
  EXPECT_EQ(m.size(), 10u);
  for (int k = 0; k < 10; ++k) EXPECT_EQ(m.load(k), k) << "key " << k;
  // Nothing is held: writes and reads complete, on this thread and on another.
  m.store(100, 100);
  EXPECT_EQ(m.load(100), 100);
  std::thread([&] { m.store(101, 101); }).join();
  EXPECT_EQ(m.load(101), 101);
}

TYPED_TEST_P(ConformanceTest, VisitationCallbacksMayReadAndTheirWritesWorkOrAreReported) {
  watchdog dog("re-entrant visitation callbacks");
  auto m = make_map<TypeParam>();
  for (int k = 0; k < 8; ++k) m.store(k, k);
  scoped_misuse_handler handler(&throw_misuse);
  std::size_t n = std::as_const(m).visit_all([&](const int& k, const int& v) {
    EXPECT_EQ(m.load(k), v);
    EXPECT_TRUE(m.cvisit(k, [&](const int& w) { EXPECT_EQ(w, v); }));
  });
  EXPECT_EQ(n, 8u);
  EXPECT_EQ(m.erase_if([&](const int& k, const int& v) {
    EXPECT_EQ(m.load(k), v);
    return false;
  }),
            0u);
  if constexpr (map_traits<TypeParam>::write_from_bulk_callback == range_write_policy::works) {
    m.erase_if([&](const int& k, const int&) {
      if (k == 0) m.store(100, 100);
      return false;
    });
    EXPECT_EQ(m.load(100), 100) << "store from erase_if's predicate was lost";
    EXPECT_FALSE(m.insert_or_visit(1, 0, [&](const int&) { m.store(101, 101); }));
    EXPECT_EQ(m.load(101), 101) << "store from insert_or_visit's callback was lost";
    // erase_if removes a key only if it still holds the value pred saw: here pred itself
    // changes key 2 before answering "remove".
    const std::size_t removed = m.erase_if([&](const int& k, const int&) {
      if (k == 2) m.store(2, 200);
      return k >= 0 && k < 4;
    });
    EXPECT_EQ(removed, 3u);
    EXPECT_EQ(m.load(2), 200) << "a key whose value changed after pred saw it must stay";
    for (int k : {0, 1, 3}) EXPECT_FALSE(m.contains(k)) << "key " << k;
  } else {
    auto expect_reported = [&](auto&& call) {
      try {
        call();
        ADD_FAILURE() << "a write from the callback must be reported";
      } catch (const safemap::misuse_error& e) {
        EXPECT_EQ(e.kind, safemap::misuse_kind::reentrant_call);
      }
    };
    expect_reported([&] {
      m.erase_if([&](const int&, const int&) {
        m.store(100, 100);
        return false;
      });
    });
    expect_reported([&] { m.insert_or_visit(1, 0, [&](const int&) { m.store(101, 101); }); });
    EXPECT_FALSE(m.contains(100)) << "the refused store must not have happened";
    EXPECT_FALSE(m.contains(101)) << "the refused store must not have happened";
  }
  // Either way the map is usable afterwards: no lock was left held.
  m.store(-1, -1);
  EXPECT_EQ(m.load(-1), -1);
}

REGISTER_TYPED_TEST_SUITE_P(
    ConformanceTest, SatisfiesConcurrentMapConcept, NewMapIsEmpty,
    LoadReturnsTheStoredValueOrNullopt, StoreInsertsOrOverwrites,
    LoadOrStoreReturnsExistingAndTrueOrStoresAndReturnsFalse,
    LoadAndDeleteRemovesAndReturnsTheRemovedValue, EraseReturnsWhetherSomethingWasRemoved,
    SwapStoresAndReturnsThePreviousValue, CompareAndSwapSucceedsOnlyIfPresentAndEqual,
    CompareAndDeleteSucceedsOnlyIfPresentAndEqual, ComputeSeesTheCurrentStateAndReturnsTheNewOne,
    ComputeReturningNulloptErases, VisitCallsFOnTheStoredValueInPlaceWithoutACopy,
    RangeVisitsEveryEntryOnceAndStopsWhenFReturnsFalse, SizeIsExactAndClearRemovesEverything,
    SnapshotIsAnIndependentCopy, VersionGrowsOnEverySuccessfulMutation,
    VersionNeverDecreasesAndFailedWritesKeepItWhereDocumented,
    StringKeysAcceptStringViewAndLiteralLookups, RandomOperationsMatchTheReferenceModelWithIntKeys,
    RandomOperationsMatchTheReferenceModelWithStringKeys, ConcurrentComputeIncrementsEndExact,
    ConcurrentLoadOrStoreHasExactlyOneWinnerPerKey, ConcurrentCompareAndSwapChainsAreExact,
    RangeDuringWritesSeesEachKeyAtMostOnceWithItsOwnValues,
    MixedOperationStressKeepsTheMapConsistent, RangeCallbackCanLoadFromTheSameMap,
    VisitCallbackCanLoadItsOwnKeyFromTheSameMap, RangeCallbackStoreWorksOrIsReportedAsReentrantCall,
    LoadManyGivesWhatLoadGivesForEveryKeyAndCountsTheFound,
    LoadManyIntoAShortOutputThrowsLengthErrorAndWritesNothing,
    LoadManyDuringWritesSeesOnlyValuesStoredForEachKey,
    CvisitReadsTheStoredValueOnAConstOrNonConstMap,
    VisitAllCallsFOnEveryEntryOnceAndReturnsTheCount,
    EraseIfRemovesExactlyTheEntriesThePredicateSelects,
    InsertOrVisitInsertsIfAbsentElseCallsFOnTheExistingValueOnce,
    EmplaceOrVisitBuildsTheValueFromItsArgumentsWhenAbsent,
    ConcurrentInsertOrVisitHasExactlyOneInserterPerKey,
    MoveConstructionAndAssignmentTakeTheEntriesAndLeaveTheSourceUsable,
    AThrowingCallbackLeavesTheMapWholeAndNothingHeld,
    VisitationCallbacksMayReadAndTheirWritesWorkOrAreReported);

// ---- value lifetimes (maps that hold value objects) ----------------------------------------
// A suite of its own rather than a test of ConformanceTest that skips itself: a map that keeps
// values as text (RedisMap) has no instance to count, and instantiating a test there that can
// only report "skipped" would list a check that never ran. A binary instantiates it only for
// maps whose traits leave holds_value_objects true (the static_assert keeps it that way).

template <class M>
class ValueLifetimeTest : public ::testing::Test {
  static_assert(
      holds_value_objects<M>(),
      "ValueLifetimeTest counts value objects: instantiate it only for maps that hold them");
};

TYPED_TEST_SUITE_P(ValueLifetimeTest);

TYPED_TEST_P(ValueLifetimeTest, EveryStoredValueIsDestroyedExactlyOnce) {
  churn_test<TypeParam>();
}

// A value whose copy throws while this thread arms it and the value is the armed one.
struct copy_bomb {
  static inline thread_local int armed = -1;  // the value whose copy throws; -1: none
  int v = 0;
  copy_bomb() = default;
  explicit copy_bomb(int x) : v(x) {}
  copy_bomb(const copy_bomb& o) : v(o.v) {
    if (v == armed) throw std::runtime_error("copy_bomb");
  }
  copy_bomb& operator=(const copy_bomb& o) {
    if (o.v == armed) throw std::runtime_error("copy_bomb");
    v = o.v;
    return *this;
  }
  bool operator==(const copy_bomb& o) const { return v == o.v; }
};

// load_many whose value copy throws mid-batch: the exception comes out, every entry of out
// holds its previous content or its key's value (the one whose copy threw may be nullopt),
// and the map is whole with nothing held (a writer on another thread gets in; a hang fails
// through the watchdog).
TYPED_TEST_P(ValueLifetimeTest, LoadManyWhoseValueCopyThrowsLeavesTheMapWholeAndNothingHeld) {
  using M = rebind_map_t<TypeParam, int, copy_bomb>;
  auto m = make_map<M>();
  constexpr int keys = 300;
  for (int k = 0; k < keys; ++k) m.load_or_store(k, copy_bomb(k * 10));
  std::vector<int> batch(keys);
  for (int k = 0; k < keys; ++k) batch[static_cast<std::size_t>(k)] = (k * 37) % keys;
  std::vector<std::optional<copy_bomb>> out(batch.size(), copy_bomb(-5));
  copy_bomb::armed = 1'000;  // key 100's value
  EXPECT_THROW(m.load_many(std::span<const int>(batch), std::span<std::optional<copy_bomb>>(out)),
               std::runtime_error);
  copy_bomb::armed = -1;
  std::size_t written = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (!out[i].has_value()) {
      EXPECT_EQ(batch[i], 100) << "only the entry whose copy threw may be left empty";
      continue;
    }
    if (out[i]->v == -5) continue;
    EXPECT_EQ(out[i]->v, batch[i] * 10) << "key " << batch[i];
    ++written;
  }
  EXPECT_LT(written, batch.size()) << "the throw must have stopped the batch";
  watchdog dog("calls after a throwing load_many");
  std::thread writer([&] { m.load_or_store(keys, copy_bomb(keys * 10)); });
  writer.join();
  EXPECT_EQ(m.size(), static_cast<std::size_t>(keys) + 1);
  const auto again = m.load_many(batch);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    ASSERT_TRUE(again[i].has_value());
    EXPECT_EQ(again[i]->v, batch[i] * 10);
  }
}

REGISTER_TYPED_TEST_SUITE_P(ValueLifetimeTest, EveryStoredValueIsDestroyedExactlyOnce,
                            LoadManyWhoseValueCopyThrowsLeavesTheMapWholeAndNothingHeld);

}  // namespace safemap_test::conformance
