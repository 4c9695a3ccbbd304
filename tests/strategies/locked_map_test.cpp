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

static_assert(lk::models_concurrent_map<LockedMap>);

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
  lk::string_keys_take_string_view_and_c_string_lookups(m);
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
  lk::contended_acquisition_is_counted_when_a_writer_waits(m);
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
  lk::throwing_compute_leaves_map_unchanged_and_unlocked(m);
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

// Issue 9 item 6: a throw during an iteration leaves no pin behind that stops the table growing.
TEST(LockedMapFaults, TableStillGrowsAfterThrowsDuringIteration) {
  using M = fault_map;
  for (std::uint64_t seed : {11u, 12u, 13u}) {
    SCOPED_TRACE(seed);
    lk::throws_leave_no_lock_behind<M>([] { return std::make_unique<M>(); }, seed, true);
  }
}

// --- values -----------------------------------------------------------------------------------

TEST(LockedMapValues, EveryValueIsDestroyedExactlyOnce) {
  struct tag {};
  using M = LockedMap<int, safemap_test::counted<tag>>;
  lk::every_value_is_destroyed_exactly_once<M>([] { return std::make_unique<M>(); });
}

// --- concurrency ------------------------------------------------------------------------------

TEST(LockedMapConcurrency, ComputeCountersFromEightThreadsEndExact) {
  lk::compute_counters_end_exact<LockedMap<int, long>>(make_locked<>);
}

TEST(LockedMapConcurrency, LoadOrStoreHasExactlyOneWinnerPerKey) {
  lk::load_or_store_has_one_winner_per_key<LockedMap<int, long>>(make_locked<>);
}

TEST(LockedMapConcurrency, LoadOrStoreOfOneKeyFromEightThreadsStoresOnce) {
  using M = LockedMap<int, long, lk::slow_hash>;
  lk::load_or_store_of_one_key_stores_once<M>([] { return std::make_unique<M>(); },
                                              lk::one_key_rounds);
}

TEST(LockedMapConcurrency, RacingDeletesDeleteEachStoredKeyOnce) {
  using M = LockedMap<int, long>;
  lk::racing_deletes_delete_each_stored_key_once<M>([] { return std::make_unique<M>(); },
                                                    lk::one_key_rounds);
}

TEST(LockedMapFailures, LoadAndDeleteThatThrowsKeepsTheValue) {
  LockedMap<int, std::string, lk::countdown_hash> m;
  lk::load_and_delete_that_throws_keeps_the_value(m);
}

TEST(LockedMapFailures, CompareAndDeleteIsOneProbeAndAThrowingComparisonKeepsTheEntry) {
  LockedMap<int, lk::compare_value, lk::countdown_hash> m;
  lk::compare_and_delete_is_one_probe(m);
}

TEST(LockedMapConcurrency, NoopDeletesFinishAGrowth) {
  LockedMap<int, long> m;
  lk::noop_deletes_finish_a_growth(m, [](const auto& x) { return x.stats().table; });
}

TEST(LockedMapConcurrency, NoopPredictionNeverChangesAResult) {
  LockedMap<int, long> m;
  lk::noop_prediction_never_changes_a_result(m);
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
  lk::writes_from_visit_and_compute_are_reported<LockedMap<int, long>>(make_locked<>);
}

TEST(LockedMapReentrancy, ReadViewAndSnapshotSeeEverythingAndRefuseWrites) {
  safemap_test::scoped_misuse_handler handler(&safemap_test::throw_misuse);
  lk::read_view_and_snapshot_see_everything_and_refuse_writes<LockedMap<int, long>>(make_locked<>);
}

TEST(LockedMapReentrancy, HandlerThatReturnsStillSeesTheReportAndTheWriteIsRefused) {
  LockedMap<int, long> m;
  lk::handler_that_returns_still_sees_the_report_and_the_write_is_refused(m);
}

TEST(LockedMapReentrancy, AnotherMapMayBeWrittenFromACallback) {
  LockedMap<int, long> a;
  LockedMap<int, long> b;
  lk::another_map_may_be_written_from_a_callback(a, b);
}

}  // namespace

// --- visitation that changes values in place (tests/support/mutable_visit_suite.hpp) ------------

namespace safemap_test::mutable_visit {
using locked_visit_types = ::testing::Types<safemap::LockedMap<int, long>>;
INSTANTIATE_TYPED_TEST_SUITE_P(Locked, MutableVisitTest, locked_visit_types);
}  // namespace safemap_test::mutable_visit
