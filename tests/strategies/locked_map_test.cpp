// Tests of safemap::LockedMap (include/safemap/locked_map.hpp): the model test against
// std::unordered_map, the concurrency checks of tests/support/lock_suite.hpp, writer progress
// under constant readers, the re-entrancy rules for callbacks, stats and value lifetimes.
#include "safemap/locked_map.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <latch>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>

#include "safemap/concurrent.hpp"
#include "support/counted.hpp"
#include "support/lock_suite.hpp"
#include "support/misuse_guard.hpp"
#include "support/mutable_visit_suite.hpp"

namespace {

using safemap::LockedMap;
namespace lk = safemap_test::lock;

static_assert(safemap::concurrent_map<LockedMap<int, int>>);
static_assert(safemap::concurrent_map<LockedMap<std::string, std::string>>);
static_assert(safemap::concurrent_map<LockedMap<int, safemap_test::counted<>>>);

template <class K = int, class V = long>
auto make_locked() {
  return std::make_unique<LockedMap<K, V>>();
}

// --- model ------------------------------------------------------------------------------------

TEST(LockedMapModel, RandomOperationsOnIntKeysMatchUnorderedMap) {
  LockedMap<int, int> m;
  lk::model_test(m, 0x10c4ed01, 200'000);
}

TEST(LockedMapModel, RandomOperationsOnStringKeysMatchUnorderedMap) {
  LockedMap<std::string, std::string> m;
  lk::model_test(m, 0x10c4ed02, 200'000);
}

// --- basics -----------------------------------------------------------------------------------

TEST(LockedMapBasics, StringKeyedMapTakesStringViewAndCStringLookups) {
  LockedMap<std::string, int> m;
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

TEST(LockedMapBasics, StatsReportSizeTableAndVersion) {
  LockedMap<int, int> m(100);
  for (int i = 0; i < 100; ++i) m.store(i, i);
  m.erase(0);
  const safemap::LockedMapStats s = m.stats();
  EXPECT_EQ(s.size, 99u);
  EXPECT_EQ(s.table.size, 99u);
  EXPECT_GE(s.table.buckets * 13 / 2, 99u);
  EXPECT_EQ(s.version, 101u);
  EXPECT_EQ(s.version, m.version());
  EXPECT_EQ(s.contended_acquisitions, 0u) << "a single thread never waits for the lock";
}

TEST(LockedMapBasics, ContendedAcquisitionIsCountedWhenAWriterWaits) {
  LockedMap<int, int> m;
  m.store(1, 1);
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

TEST(LockedMapBasics, VersionMovesOnlyOnChanges) {
  LockedMap<int, int> m;
  EXPECT_EQ(m.version(), 0u);
  m.clear();
  EXPECT_FALSE(m.erase(1));
  EXPECT_FALSE(m.compare_and_swap(1, 0, 1));
  EXPECT_EQ(m.compute(1, [](std::optional<int>) { return std::optional<int>(); }), std::nullopt);
  EXPECT_EQ(m.version(), 0u) << "nothing changed";
  m.store(1, 1);
  m.store(1, 1);
  EXPECT_EQ(m.version(), 2u) << "an overwrite is a change even with an equal value";
  EXPECT_TRUE(m.load_or_store(1, 5).second);
  EXPECT_EQ(m.version(), 2u);
  m.clear();
  EXPECT_EQ(m.version(), 3u);
}

TEST(LockedMapCompute, ThrowingFunctionLeavesMapUnchangedAndUnlocked) {
  LockedMap<int, int> m;
  m.store(1, 1);
  EXPECT_THROW(
      m.compute(1,
                [](std::optional<int>) -> std::optional<int> { throw std::runtime_error("boom"); }),
      std::runtime_error);
  EXPECT_EQ(m.load(1), 1);
  EXPECT_EQ(m.version(), 1u);
  std::thread([&] { m.store(2, 2); }).join();  // the lock was released
  EXPECT_EQ(m.size(), 2u);
}

// --- failures mid-operation (hasher, copies and moves that throw) -----------------------------

using fault_map = LockedMap<int, lk::fault_value, lk::fault_hash>;

TEST(LockedMapFaults, MergeIsAllOrNothingWhenTheHasherOrAMoveThrows) {
  using M = fault_map;
  for (std::uint64_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    lk::merge_is_all_or_nothing_under_faults<M>([] { return std::make_unique<M>(); }, seed);
  }
}

TEST(LockedMapFaults, ThrowsLeaveNoLockBehindAndCountersExact) {
  using M = fault_map;
  for (std::uint64_t seed : {11u, 12u, 13u}) {
    SCOPED_TRACE(seed);
    lk::throws_leave_no_lock_behind<M>([] { return std::make_unique<M>(); }, seed, false);
  }
}

// Issue 9 item 6 on every shard (see the LockedMap test of the same name).
TEST(ShardedMapFaults, TableStillGrowsAfterThrowsDuringIteration) {
  using M = fault_map;
  for (std::uint64_t seed : {11u, 12u, 13u}) {
    SCOPED_TRACE(seed);
    lk::throws_leave_no_lock_behind<M>([] { return std::make_unique<M>(); }, seed, true);
  }
}

// --- values -----------------------------------------------------------------------------------

TEST(LockedMapValues, EveryValueIsDestroyedExactlyOnce) {
  struct tag {};
  using value = safemap_test::counted<tag>;
  auto& c = value::counters();
  c.reset();
  {
    LockedMap<int, value> m;
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
        << "only the map's and the snapshot's values are alive";
    m.clear();
    EXPECT_EQ(c.live.load(), static_cast<long>(snap.size()));
    for (int i = 0; i < 30; ++i) m.store(i, value(i));
  }
  EXPECT_EQ(c.live.load(), 0) << "values leaked";
  EXPECT_EQ(c.bad_destroys.load(), 0) << "a value was destroyed twice";
}

// --- concurrency ------------------------------------------------------------------------------

TEST(LockedMapConcurrency, ComputeCountersFromEightThreadsEndExact) {
  lk::compute_counters_end_exact<LockedMap<int, long>>(make_locked<>);
}

TEST(LockedMapConcurrency, LoadOrStoreHasExactlyOneWinnerPerKey) {
  lk::load_or_store_has_one_winner_per_key<LockedMap<int, long>>(make_locked<>);
}

TEST(LockedMapConcurrency, CompareAndSwapChainsAreExact) {
  lk::compare_and_swap_chains_are_exact<LockedMap<int, long>>(make_locked<>);
}

TEST(LockedMapConcurrency, SnapshotAndRangeArePointInTimeWhileWritersSweep) {
  lk::snapshots_are_point_in_time<LockedMap<int, long>>(make_locked<>,
                                                        /*range_point_in_time=*/true);
}

TEST(LockedMapConcurrency, RangeDuringWritesSeesEachKeyOnceAndOnlyStoredValues) {
  lk::range_during_writes_sees_each_key_once_and_only_stored_values<LockedMap<int, long>>(
      make_locked<>);
}

TEST(LockedMapConcurrency, MillionOperationStressKeepsSizeVersionAndValuesConsistent) {
  lk::stress_all_operations<LockedMap<int, lk::stress_value>>(make_locked<int, lk::stress_value>);
}

TEST(LockedMapConcurrency, WriterCompletesWhileReadersLoadAndRangeContinuously) {
  LockedMap<int, long> m;
  for (int i = 0; i < 1000; ++i) m.store(i, i);
  lk::writer_completes_under_reader_stream(
      [&](int t, long i) {
        (void)m.load(static_cast<int>((i * 7 + t) % 1000));
        long sum = 0;
        m.range([&](const int&, const long& v) { sum += v; });
        if (sum == -1) ADD_FAILURE();  // keep the walk from being optimized away
      },
      [&](int i) { m.store(10'000 + i, i); });
  EXPECT_EQ(m.size(), 1200u);
}

// --- re-entrancy ------------------------------------------------------------------------------

TEST(LockedMapReentrancy, RangeCallbackMayCallEveryReadMethod) {
  LockedMap<int, long> m;
  for (int i = 0; i < 10; ++i) m.store(i, i);
  int entries = 0;
  m.range([&](const int& k, const long& v) {
    ++entries;
    EXPECT_EQ(m.load(k), v);
    EXPECT_TRUE(m.contains(k));
    EXPECT_TRUE(m.cvisit(k, [&](const long& w) { EXPECT_EQ(w, v); }));
    EXPECT_EQ(m.size(), 10u);
    EXPECT_EQ(m.version(), 10u);
    EXPECT_EQ(m.stats().size, 10u);
    EXPECT_EQ(m.snapshot().size(), 10u);
    int nested = 0;
    m.range([&](const int&, const long&) { ++nested; });
    EXPECT_EQ(nested, 10);
  });
  EXPECT_EQ(entries, 10);
}

TEST(LockedMapReentrancy, VisitAndComputeCallbacksMayReadTheMap) {
  LockedMap<int, long> m;
  m.store(1, 1);
  m.store(2, 2);
  EXPECT_TRUE(m.cvisit(1, [&](const long&) {
    EXPECT_EQ(m.load(2), 2);
    EXPECT_TRUE(m.cvisit(2, [](const long& v) { EXPECT_EQ(v, 2); }));
  }));
  const auto r = m.compute(1, [&](std::optional<long> cur) -> std::optional<long> {
    EXPECT_EQ(m.load(1), cur) << "reads inside compute see the state before it";
    EXPECT_EQ(m.snapshot().size(), 2u);
    long sum = 0;
    m.range([&](const int&, const long& v) { sum += v; });
    return *cur + sum;
  });
  EXPECT_EQ(r, 4);
  EXPECT_EQ(m.load(1), 4);
}

TEST(LockedMapReentrancy, EveryWriteFromARangeCallbackIsReportedAndTheMapStaysUsable) {
  safemap_test::scoped_misuse_handler handler(&safemap_test::throw_misuse);
  using M = LockedMap<int, long>;
  for (const auto& [name, write] : lk::write_calls<M>()) {
    SCOPED_TRACE(name);
    M m;
    m.store(1, 1);
    m.range([&](const int&, const long&) {
      EXPECT_TRUE(lk::reported_as_reentrant([&] { write(m); }));
    });
    EXPECT_EQ(m.load(1), 1) << "the refused write changed nothing";
    EXPECT_EQ(m.version(), 1u);
    // The exception may also leave the callback: range unwinds and releases the lock.
    EXPECT_TRUE(
        lk::reported_as_reentrant([&] { m.range([&](const int&, const long&) { write(m); }); }));
    std::thread([&] { m.store(2, 2); }).join();
    write(m);  // outside any callback the same call works
  }
}

TEST(LockedMapReentrancy, WritesFromVisitAndComputeCallbacksAreReported) {
  safemap_test::scoped_misuse_handler handler(&safemap_test::throw_misuse);
  using M = LockedMap<int, long>;
  for (const auto& [name, write] : lk::write_calls<M>()) {
    SCOPED_TRACE(name);
    M m;
    m.store(1, 1);
    m.cvisit(1, [&](const long&) { EXPECT_TRUE(lk::reported_as_reentrant([&] { write(m); })); });
    EXPECT_TRUE(lk::reported_as_reentrant([&] {
      m.compute(1, [&](std::optional<long> cur) {
        write(m);
        return cur;
      });
    }));
    EXPECT_EQ(m.load(1), 1);
    EXPECT_EQ(m.version(), 1u);
    std::thread([&] { m.store(2, 2); }).join();
  }
}

TEST(LockedMapReentrancy, HandlerThatReturnsStillSeesTheReportAndTheWriteIsRefused) {
  auto& record = safemap_test::misuse_record::instance();
  record.reset();
  safemap_test::scoped_misuse_handler handler(&safemap_test::record_misuse);
  LockedMap<int, long> m;
  m.store(1, 1);
  m.range([&](const int&, const long&) {
    EXPECT_TRUE(lk::reported_as_reentrant([&] { m.store(1, 2); }));
  });
  EXPECT_EQ(record.of(safemap::misuse_kind::reentrant_call), 1);
  EXPECT_EQ(m.load(1), 1);
}

TEST(LockedMapReentrancy, AnotherMapMayBeWrittenFromACallback) {
  LockedMap<int, long> a;
  LockedMap<int, long> b;
  a.store(1, 1);
  a.range([&](const int& k, const long& v) { b.store(k, v * 10); });
  a.compute(1, [&](std::optional<long> cur) {
    b.compute(1, [&](std::optional<long> x) { return std::optional<long>(*x + *cur); });
    return cur;
  });
  EXPECT_EQ(b.load(1), 11);
}

}  // namespace

// --- visitation that changes values in place (tests/support/mutable_visit_suite.hpp) ------------

namespace safemap_test::mutable_visit {
using locked_visit_types = ::testing::Types<safemap::LockedMap<int, long>>;
INSTANTIATE_TYPED_TEST_SUITE_P(Locked, MutableVisitTest, locked_visit_types);
}  // namespace safemap_test::mutable_visit
