// tests/strategies/cow_map_test.cpp - what CowMap promises beyond the common API.
//
// The shared behaviour of every concurrent map is in conformance_test.cpp. Here:
//  - update(): f runs exactly once on one copy, one publication; readers never see half of it;
//    false or an exception publishes nothing; merge() and read_view() (used by json.hpp);
//  - writes that change nothing copy nothing (CowMapStats), successful writes copy once and
//    retire the old snapshot; retired snapshots are freed after the grace period;
//  - readers make no heap allocation (a counting global operator new in this binary);
//  - callbacks: range/visit callbacks may write the same map; compute/update callbacks may read
//    it but a write is reported as misuse_kind::reentrant_call;
//  - a write whose copy throws leaves the map unchanged (strong guarantee).
#include "safemap/cow_map.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <latch>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "safemap/misuse.hpp"
#include "safemap/reclaim.hpp"
#include "support/concurrent_maps.hpp"
#include "support/counted.hpp"
#include "support/misuse_guard.hpp"
#include "support/throwing.hpp"
#include "support/watchdog.hpp"

// ---- a counting global operator new
// --------------------------------------------------------------- Counts the allocations of the
// calling thread only, so other threads (liburcu's call_rcu worker, gtest) cannot disturb a
// measurement.
namespace {

// Value types that take each of load's two copy paths: small, trivially copyable and
// default-constructible values are copied out inside the guard and wrapped after it; the
// others are returned from inside the guard.
struct two_words {  // copied out (16 bytes, trivially copyable)
  std::uint64_t a;
  std::uint64_t b;
  bool operator==(const two_words&) const = default;
};
struct no_default {  // trivially copyable, no default constructor: returned in the guard
  explicit no_default(int x) : v(x) {}
  int v;
  bool operator==(const no_default&) const = default;
};
thread_local long tls_allocations = 0;
}  // namespace

// noinline: inlined into a caller, GCC would pair this malloc with the operator delete's free
// across the call and warn (-Wmismatched-new-delete) about a pairing that is in fact right.
[[gnu::noinline]] void* operator new(std::size_t n) {
  ++tls_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

namespace {

using namespace safemap_test;
using safemap::CowMap;

TEST(CowMapTest, NewMapHasVersionZeroAndAdoptsAnInitialMap) {
  CowMap<int, int> empty;
  EXPECT_EQ(empty.version(), 0u);
  safemap::Map<int, int> initial;
  for (int k = 0; k < 10; ++k) initial.insert_or_assign(k, k * k);
  CowMap<int, int> m(std::move(initial));
  EXPECT_EQ(m.version(), 0u);
  EXPECT_EQ(m.size(), 10u);
  EXPECT_EQ(m.load(3), 9);
  EXPECT_EQ(m.stats().copies, 0u);
}

TEST(CowMapTest, UpdateCallsFOnceOnOneCopyAndPublishesOnce) {
  CowMap<int, int> m;
  m.store(0, 0);
  const auto before = m.stats();
  int calls = 0;
  const bool published = m.update([&](safemap::Map<int, int>& map) {
    ++calls;
    for (int k = 0; k < 100; ++k) map.insert_or_assign(k, k + 1);
    map.erase(50);
  });
  EXPECT_TRUE(published);
  EXPECT_EQ(calls, 1);
  const auto after = m.stats();
  EXPECT_EQ(after.version, before.version + 1) << "one publication for all the changes";
  EXPECT_EQ(after.copies, before.copies + 1) << "one copy for all the changes";
  EXPECT_EQ(after.retired, before.retired + 1);
  EXPECT_EQ(m.size(), 99u);
  EXPECT_EQ(m.load(0), 1);
  EXPECT_FALSE(m.contains(50));
}

TEST(CowMapTest, UpdateReturningFalsePublishesNothing) {
  CowMap<int, int> m;
  m.store(1, 1);
  const auto before = m.stats();
  EXPECT_FALSE(m.update([](safemap::Map<int, int>& map) {
    map.insert_or_assign(2, 2);
    return false;
  }));
  EXPECT_EQ(m.version(), before.version);
  EXPECT_FALSE(m.contains(2));
  EXPECT_EQ(m.stats().retired, before.retired);
}

TEST(CowMapTest, UpdateOrComputeThatThrowsPublishesNothingAndReleasesTheWriterMutex) {
  CowMap<int, int> m;
  m.store(1, 1);
  const std::uint64_t v = m.version();
  EXPECT_THROW(m.update([](safemap::Map<int, int>& map) {
    map.insert_or_assign(2, 2);
    throw std::runtime_error("abandon");
  }),
               std::runtime_error);
  EXPECT_THROW(
      m.compute(
          1, [](std::optional<int>) -> std::optional<int> { throw std::runtime_error("abandon"); }),
      std::runtime_error);
  EXPECT_EQ(m.version(), v);
  EXPECT_FALSE(m.contains(2));
  EXPECT_EQ(m.load(1), 1);
  m.store(3, 3);  // would deadlock if the mutex had been left locked
  EXPECT_EQ(m.load(3), 3);
}

// A writer moves 64 keys from generation g to g + 1 in one update; readers check that every
// view they get (range, read, snapshot) has all 64 keys at one generation.
TEST(CowMapTest, ReadersNeverSeeAHalfAppliedUpdate) {
  CowMap<int, int> m;
  constexpr int keys = 64;
  m.update([](safemap::Map<int, int>& map) {
    for (int k = 0; k < keys; ++k) map.insert_or_assign(k, 0);
  });
  const int generations = static_cast<int>(scaled(3'000, 5));
  std::atomic<bool> done{false};
  std::atomic<long> torn{0};
  std::atomic<long> views{0};
  run_threads(4, [&](unsigned t) {
    if (t == 0) {
      for (int g = 1; g <= generations; ++g) {
        m.update([g](safemap::Map<int, int>& map) {
          for (int k = 0; k < keys; ++k) map.insert_or_assign(k, g);
        });
      }
      done = true;
      return;
    }
    int last = 0;
    std::uint64_t last_version = 0;
    while (!done.load()) {
      int first = -1;
      int count = 0;
      bool same = true;
      auto check = [&](const int&, const int& v) {
        if (first < 0) first = v;
        same = same && v == first;
        ++count;
      };
      switch (t) {
        case 1:
          m.range(check);
          break;
        case 2:
          m.read([&](const safemap::Map<int, int>& map) { map.for_each(check); });
          break;
        default:
          for (const auto& [k, v] : m.snapshot()) check(k, v);
          break;
      }
      if (!same || count != keys || first < last) ++torn;
      last = first;
      const std::uint64_t version = m.version();
      if (version < last_version) ++torn;
      last_version = version;
      ++views;
    }
  });
  EXPECT_EQ(torn.load(), 0) << "a reader saw a half-applied update or went back in time";
  EXPECT_EQ(m.version(), static_cast<std::uint64_t>(generations) + 1);
  EXPECT_GT(views.load(), 0);
}

TEST(CowMapTest, MergeStoresEveryEntryWithOneCopyAndOnePublication) {
  CowMap<int, int> m;
  m.store(1, 1);
  const auto before = m.stats();
  safemap::Map<int, int> entries;
  for (int k = 1; k <= 50; ++k) entries.insert_or_assign(k, k * 10);
  m.merge(std::move(entries));
  const auto after = m.stats();
  EXPECT_EQ(after.version, before.version + 1);
  EXPECT_EQ(after.copies, before.copies + 1);
  EXPECT_EQ(m.size(), 50u);
  EXPECT_EQ(m.load(1), 10) << "merge overwrites existing keys";
  m.merge(safemap::Map<int, int>());
  EXPECT_EQ(m.version(), after.version) << "merging nothing publishes nothing";
}

TEST(CowMapTest, ReadViewWalksOneSnapshotWithoutCopying) {
  CowMap<int, int> m;
  for (int k = 0; k < 20; ++k) m.store(k, k);
  const auto copies = m.stats().copies;
  int visited = 0;
  m.read_view([&](auto&& walk) {
    m.store(100, 100);  // publishes a new snapshot; the walk keeps its own
    walk([&](const int& k, const int& v) {
      EXPECT_EQ(k, v);
      ++visited;
    });
  });
  EXPECT_EQ(visited, 20);
  EXPECT_EQ(m.stats().copies, copies + 1) << "only the store copied";
}

TEST(CowMapTest, WritesThatChangeNothingCopyNothingAndPublishNothing) {
  CowMap<int, int> m;
  m.store(1, 10);
  const auto before = m.stats();
  EXPECT_FALSE(m.erase(2));
  EXPECT_EQ(m.load_and_delete(2), std::nullopt);
  EXPECT_EQ(m.load_or_store(1, 99), std::make_pair(10, true));
  EXPECT_FALSE(m.compare_and_swap(1, 9, 11));
  EXPECT_FALSE(m.compare_and_swap(2, 9, 11));
  EXPECT_FALSE(m.compare_and_delete(1, 9));
  EXPECT_FALSE(m.compare_and_delete(2, 9));
  EXPECT_EQ(m.compute(2, [](std::optional<int>) -> std::optional<int> { return std::nullopt; }),
            std::nullopt);
  const auto after = m.stats();
  EXPECT_EQ(after.copies, before.copies) << "a write that changed nothing copied the map";
  EXPECT_EQ(after.retired, before.retired);
  EXPECT_EQ(after.version, before.version);
  EXPECT_EQ(after.copies_avoided, before.copies_avoided + 8);

  CowMap<int, int> empty;
  empty.clear();
  EXPECT_EQ(empty.version(), 0u) << "clearing an empty map publishes nothing";
  EXPECT_EQ(empty.stats().copies_avoided, 1u);
}

TEST(CowMapTest, EverySuccessfulWriteCopiesOnceAndRetiresTheOldSnapshot) {
  CowMap<int, int> m;
  m.store(1, 10);                                                             // 1
  m.load_or_store(2, 20);                                                     // 2
  m.swap(1, 11);                                                              // 3
  m.compare_and_swap(1, 11, 12);                                              // 4
  m.compute(3, [](std::optional<int>) -> std::optional<int> { return 30; });  // 5
  m.erase(3);                                                                 // 6
  m.load_and_delete(2);                                                       // 7
  m.compare_and_delete(1, 12);                                                // 8
  const auto s = m.stats();
  EXPECT_EQ(s.copies, 8u);
  EXPECT_EQ(s.retired, 8u);
  EXPECT_EQ(s.version, 8u);
  EXPECT_EQ(s.copies_avoided, 0u);
  m.store(4, 40);
  m.clear();  // publishes an empty snapshot without copying
  EXPECT_EQ(m.stats().copies, 9u);
  EXPECT_EQ(m.stats().retired, 10u);
  EXPECT_EQ(m.version(), 10u);
}

TEST(CowMapTest, StatsDescribeTheCurrentSnapshot) {
  CowMap<int, int> m;
  m.update([](safemap::Map<int, int>& map) {
    for (int k = 0; k < 1000; ++k) map.insert_or_assign(k, k);
  });
  const auto s = m.stats();
  EXPECT_EQ(s.size, 1000u);
  EXPECT_EQ(s.map.size, 1000u);
  EXPECT_EQ(s.version, 1u);
  EXPECT_GE(s.map.buckets * 13 / 2, 1000u);
}

// Readers: an rcu read guard, one atomic load, a lookup in an immutable table. None of that
// may allocate (std::shared_ptr-style snapshots would not allocate either, but they bump a
// shared count; this checks the other half of the promise).
TEST(CowMapTest, ReadersMakeNoHeapAllocation) {
  CowMap<int, int> m;
  for (int k = 0; k < 100; ++k) m.store(k, k);
  CowMap<std::string, int> s;
  s.store("a-key-longer-than-the-small-string-buffer", 1);
  // Warm up: the first read-side critical section of a thread registers it with RCU.
  ASSERT_EQ(m.load(7), 7);
  ASSERT_EQ(s.load("a-key-longer-than-the-small-string-buffer"), 1);

  const long before = tls_allocations;
  long sum = 0;
  for (int i = 0; i < 100'000; ++i) sum += *m.load(i % 100);
  EXPECT_EQ(tls_allocations - before, 0) << "load allocated";

  const long before_others = tls_allocations;
  for (int i = 0; i < 1000; ++i) {
    sum += m.contains(i) ? 1 : 0;
    m.visit(i % 100, [&](const int& v) { sum += v; });
    sum += static_cast<long>(m.size() + m.version());
    sum += *s.load(std::string_view("a-key-longer-than-the-small-string-buffer"));
    m.range([&](const int&, const int& v) { sum += v; });
  }
  EXPECT_EQ(tls_allocations - before_others, 0)
      << "contains/visit/size/version/range or a string_view load allocated";
  EXPECT_GT(sum, 0);
}

TEST(CowMapTest, RangeAndVisitCallbacksCanWriteTheSameMap) {
  CowMap<int, int> m;
  for (int k = 0; k < 10; ++k) m.store(k, k);
  std::size_t visited = 0;
  m.range([&](const int& k, const int& v) {
    ++visited;
    m.store(k + 100, v);
    m.erase(k);
    m.compute(k + 200, [](std::optional<int>) -> std::optional<int> { return 1; });
    m.update([&](safemap::Map<int, int>& map) { map.insert_or_assign(k + 300, v); });
    EXPECT_EQ(v, k) << "the walk continues over its own snapshot";
  });
  EXPECT_EQ(visited, 10u) << "range is over one point-in-time snapshot";
  EXPECT_EQ(m.size(), 30u);
  EXPECT_TRUE(m.visit(100, [&](const int& v) {
    m.clear();
    EXPECT_EQ(v, 0) << "the visited value stays valid after the map moved on";
  }));
  EXPECT_EQ(m.size(), 0u);
}

TEST(CowMapTest, ComputeCallbackCanReadButItsWriteIsReportedAsReentrantCall) {
  CowMap<int, int> m;
  m.store(1, 10);
  m.store(2, 20);
  scoped_misuse_handler handler(&throw_misuse);
  EXPECT_EQ(m.compute(1,
                      [&](std::optional<int> cur) -> std::optional<int> {
                        EXPECT_EQ(m.load(2), 20);
                        EXPECT_EQ(m.load(1), 10) << "reads see the state before this write";
                        EXPECT_EQ(m.size(), 2u);
                        return *cur + *m.load(2);
                      }),
            30);
  const std::uint64_t v = m.version();
  try {
    m.compute(1, [&](std::optional<int> cur) -> std::optional<int> {
      m.store(3, 30);
      return cur;
    });
    ADD_FAILURE() << "a store from compute's f was not reported";
  } catch (const safemap::misuse_error& e) {
    EXPECT_EQ(e.kind, safemap::misuse_kind::reentrant_call);
  }
  EXPECT_EQ(m.version(), v) << "nothing was published";
  EXPECT_FALSE(m.contains(3));
  m.store(3, 30);  // the writer mutex was released
  EXPECT_EQ(m.load(3), 30);
}

TEST(CowMapTest, UpdateCallbackWriteIsReportedAsReentrantCall) {
  CowMap<int, int> m;
  scoped_misuse_handler handler(&throw_misuse);
  auto expect_reported = [&](auto&& write) {
    try {
      m.update([&](safemap::Map<int, int>& map) {
        map.insert_or_assign(9, 9);
        write();
      });
      ADD_FAILURE() << "a write from update's f was not reported";
    } catch (const safemap::misuse_error& e) {
      EXPECT_EQ(e.kind, safemap::misuse_kind::reentrant_call);
    }
  };
  expect_reported([&] { m.store(1, 1); });
  expect_reported([&] { m.erase(1); });
  expect_reported([&] { m.load_or_store(1, 1); });
  expect_reported([&] { m.clear(); });
  expect_reported([&] { m.update([](safemap::Map<int, int>&) {}); });
  expect_reported([&] { m.compute(1, [](std::optional<int> c) { return c; }); });
  EXPECT_EQ(m.version(), 0u);
  EXPECT_EQ(m.size(), 0u);
}

// A reader inside range holds a retired snapshot while a writer replaces it many times: the
// values it references must stay alive until its read guard ends.
TEST(CowMapTest, AReaderKeepsARetiredSnapshotAliveUntilItsGuardEnds) {
  struct alive_tag {};
  using value = counted<alive_tag>;
  CowMap<int, value> m;
  for (int k = 0; k < 32; ++k) m.store(k, value(k));
  std::latch reader_inside(1);
  std::latch writer_done(1);
  bool all_alive = true;
  std::thread reader([&] {
    bool first = true;
    m.range([&](const int& k, const value& v) {
      if (first) {
        first = false;
        reader_inside.count_down();
        writer_done.wait();
      }
      all_alive = all_alive && v.alive() && v.value() == k;
    });
  });
  reader_inside.wait();
  for (int i = 0; i < 200; ++i) m.store(i % 32, value(1000 + i));  // retires 200 snapshots
  m.clear();
  writer_done.count_down();
  reader.join();
  EXPECT_TRUE(all_alive) << "a value of a snapshot in use was destroyed";
}

TEST(CowMapTest, RetiredSnapshotsAreFreedAfterTheGracePeriod) {
  struct grace_tag {};
  using value = counted<grace_tag>;
  safemap::rcu::barrier();
  value::counters().reset();
  {
    CowMap<int, value> m;
    for (int i = 0; i < 2000; ++i) m.store(i % 50, value(i));
    safemap::rcu::barrier();
    EXPECT_EQ(value::counters().live.load(), 50) << "only the current snapshot's values live";
  }
  EXPECT_EQ(value::counters().live.load(), 0) << "the destructor frees the current snapshot";
  EXPECT_EQ(value::counters().bad_destroys.load(), 0);
}

// A 1 MB map with two writers copying it back to back and a reader looping: before the bound,
// replaced snapshots waiting for liburcu's worker reached 30-260 MB. Each write now counts the
// snapshot it retires and waits past rcu::retired_bytes_limit(), so what waits stays below the
// limit plus one snapshot per writing thread (two here), sampled after every write.
TEST(CowMapTest, TwoContinuousWritersKeepRetiredSnapshotsUnderTheBound) {
  safemap_test::watchdog dog("two writers under the retired-bytes bound");
  safemap::rcu::barrier();
  const std::size_t saved_limit = safemap::rcu::retired_bytes_limit();
  constexpr std::size_t limit = std::size_t{4} << 20;
  safemap::rcu::set_retired_bytes_limit(limit);
  CowMap<std::uint64_t, std::uint64_t> m;
  m.update([](auto& next) {
    for (std::uint64_t k = 0; k < 50'000; ++k) next.insert_or_assign(k, k);
  });
  const std::size_t table_bytes = m.stats().map.bytes;
  ASSERT_GE(table_bytes, std::size_t{1} << 20) << "the test wants a map of at least 1 MB";
  const std::size_t bound = limit + 2 * (table_bytes + 4096);  // 4096: the snapshot header

  std::atomic<std::size_t> peak{0};
  auto sample = [&] {
    const std::size_t now = safemap::rcu::retired_bytes();
    std::size_t seen = peak.load(std::memory_order_relaxed);
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {}
  };
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    std::uint64_t k = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      EXPECT_TRUE(m.contains(k++ % 50'000));
      sample();
    }
  });
  const std::size_t writes = safemap_test::scaled(150, 5);
  std::vector<std::thread> writers;
  for (std::uint64_t w = 0; w < 2; ++w) {
    writers.emplace_back([&, w] {
      for (std::size_t i = 0; i < writes; ++i) {
        m.store(w, i);
        sample();
      }
    });
  }
  for (auto& t : writers) t.join();
  stop.store(true);
  reader.join();
  safemap::rcu::set_retired_bytes_limit(saved_limit);
  EXPECT_LE(peak.load(), bound) << "retired snapshots peaked at " << peak.load() / 1024
                                << " KiB, bound " << bound / 1024 << " KiB";
  EXPECT_EQ(m.version(), 1 + 2 * writes);
  safemap::rcu::barrier();
  EXPECT_EQ(safemap::rcu::retired_bytes(), 0u) << "every retired snapshot's bytes are given back";
}

// A write from inside a range callback (inside a read guard) must not wait for a grace period,
// even past the limit: it would wait for itself.
TEST(CowMapTest, AWriteInsideARangeCallbackDoesNotWaitForItself) {
  safemap_test::watchdog dog("a write inside a range callback past the limit");
  safemap::rcu::barrier();
  const std::size_t saved_limit = safemap::rcu::retired_bytes_limit();
  safemap::rcu::set_retired_bytes_limit(0);  // every other write waits
  CowMap<int, int> m;
  for (int k = 0; k < 8; ++k) m.store(k, k);
  int seen = 0;
  m.range([&](const int& k, const int&) {
    m.store(k + 100, k);  // would hang here if the write waited for a grace period
    ++seen;
  });
  safemap::rcu::set_retired_bytes_limit(saved_limit);
  EXPECT_EQ(seen, 8);
  EXPECT_EQ(m.size(), 16u);
}

// Copies that throw halfway (throwing_copy_value) must leave the published snapshot as it was.
TEST(CowMapTest, AWriteWhoseCopyThrowsLeavesTheMapUnchanged) {
  struct throw_tag {};
  using value = throwing_copy_value<throw_tag>;
  safemap::rcu::barrier();
  value::counters().reset();
  {
    CowMap<int, value> m;
    for (int k = 0; k < 64; ++k) m.store(k, value(k));
    fault_injector::local().configure(12345, 40);
    int thrown = 0;
    for (int i = 0; i < 300; ++i) {
      const auto before = m.snapshot();
      const std::uint64_t version = m.version();
      try {
        fault_scope faults;
        switch (i % 4) {
          case 0:
            m.store(i % 80, value(i));
            break;
          case 1:
            m.erase(i % 64);
            break;
          case 2:
            m.swap(i % 80, value(i));
            break;
          default:
            m.compute(i % 64,
                      [i](std::optional<value>) -> std::optional<value> { return value(i); });
            break;
        }
      } catch (const injected_fault&) {
        ++thrown;
        EXPECT_EQ(m.version(), version);
        EXPECT_TRUE(m.snapshot() == before) << "a throwing write changed the map";
      }
    }
    EXPECT_GT(thrown, 0) << "the fault injector never fired";
  }
  safemap::rcu::barrier();
  EXPECT_EQ(value::counters().live.load(), 0);
  EXPECT_EQ(value::counters().bad_destroys.load(), 0);
}

// Both copy paths of load, on a present and an absent key, before and after a write.
template <class V, class Make>
void check_load_paths(Make make) {
  CowMap<int, V> m;
  m.store(1, make(1));
  EXPECT_EQ(m.load(1), make(1));
  EXPECT_EQ(m.load(2), std::nullopt);
  m.store(2, make(2));
  EXPECT_EQ(m.load(1), make(1));
  EXPECT_EQ(m.load(2), make(2));
  EXPECT_TRUE(m.contains(2));
  EXPECT_TRUE(m.erase(1));
  EXPECT_EQ(m.load(1), std::nullopt);
  EXPECT_FALSE(m.contains(1));
}

TEST(CowMapTest, LoadReturnsValuesOfEveryKind) {
  check_load_paths<two_words>([](int i) { return two_words{std::uint64_t(i), ~std::uint64_t(i)}; });
  check_load_paths<no_default>([](int i) { return no_default(i); });
  check_load_paths<std::string>([](int i) { return std::string(40, char('a' + i)); });
}

TEST(CowMapTest, HeterogeneousLookupBuildsNoKey) {
  CowMap<std::string, int> m;
  const std::string key(40, 'k');
  m.store(key, 1);
  // Warm-up: a thread's first read-side section registers it with the reclamation domain
  // (the TSan fallback allocates its per-thread record then); lookups after that must not.
  EXPECT_EQ(m.load(key), 1);
  const long before = tls_allocations;
  EXPECT_EQ(m.load(std::string_view(key)), 1);
  EXPECT_TRUE(m.contains(key.c_str()));
  EXPECT_EQ(tls_allocations - before, 0) << "a std::string was built for a lookup";
  EXPECT_FALSE(m.erase(std::string_view("absent")));
  EXPECT_EQ(m.load_and_delete(std::string_view(key)), 1);
}

// --- visitation, bulk erase and moves (cow_map.hpp's marked block) ------------------------------

TEST(CowMapVisitation, EraseIfPublishesOneSnapshotAndCopiesNothingWhenNothingMatches) {
  safemap::CowMap<int, int> m;
  m.update([](auto& next) {
    for (int k = 0; k < 100; ++k) next.insert_or_assign(k, k);
  });
  const std::uint64_t version = m.version();
  const std::uint64_t copies = m.stats().copies;
  EXPECT_EQ(m.erase_if([](const int& k, const int&) { return k % 2 == 0; }), 50u);
  EXPECT_EQ(m.version(), version + 1) << "all removals are one publication";
  EXPECT_EQ(m.stats().copies, copies + 1) << "all removals are one copy";
  EXPECT_EQ(m.erase_if([](const int&, const int&) { return false; }), 0u);
  EXPECT_EQ(m.version(), version + 1);
  EXPECT_EQ(m.stats().copies, copies + 1) << "nothing matched: nothing to copy";
}

TEST(CowMapVisitation, InsertOrVisitOfAPresentKeyCopiesNothingAndSeesTheValueInPlace) {
  using value = safemap_test::counted<struct cow_insert_or_visit_tag>;
  safemap::CowMap<int, value> m;
  EXPECT_TRUE(m.emplace_or_visit(1, 7, [](const value&) { ADD_FAILURE(); }));
  const std::uint64_t version = m.version();
  const std::uint64_t copies = m.stats().copies;
  const long built = value::counters().constructed.load();
  const value* first = nullptr;
  EXPECT_FALSE(m.emplace_or_visit(1, 8, [&](const value& v) { first = &v; }));
  const value* again = nullptr;
  EXPECT_FALSE(m.insert_or_visit(1, value(9), [&](const value& v) { again = &v; }));
  EXPECT_EQ(first, again) << "f must see the stored value, not a copy";
  EXPECT_EQ(m.version(), version);
  EXPECT_EQ(m.stats().copies, copies);
  // insert_or_visit's own argument (built and moved into the parameter) is all that was built.
  EXPECT_LE(value::counters().constructed.load(), built + 2);
  EXPECT_TRUE(m.visit(1, [](const value& v) { EXPECT_EQ(v.value(), 7); }));
}

}  // namespace
