// tests/support/mutable_visit_suite.hpp - what only the maps that can change a value in place do:
// LockedMap and ShardedMap hand visit, visit_all and insert_or_visit/emplace_or_visit callbacks
// a V& under the exclusive lock of the key's shard (docs/design.md §4, "Visitation, bulk erase
// and moves"). Typed tests (TYPED_TEST_SUITE_P MutableVisitTest) over a map type M<int, long>
// with a default constructor; locked_map_test.cpp and sharded_map_test.cpp instantiate it.
//
//  - the calls: values change in place, version() grows, f is not called for absent keys, and
//    emplace_or_visit builds no value for a present key;
//  - the locks: cvisit (and const visit, const visit_all) on a non-const map is a read under the
//    shared lock (two threads are inside cvisit callbacks at once); from inside a mutating
//    callback reads work and writes are reported as misuse_kind::reentrant_call;
//  - a throwing callback: its changes so far stay, the version counts them, no lock stays held;
//  - concurrency: increments through visit, insert_or_visit and visit_all from more threads than
//    the machine has cores end exact (a lost update or a data race - TSan - fails).
// Every test that could hang runs under a watchdog.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "safemap/misuse.hpp"
#include "support/concurrent_maps.hpp"
#include "support/counted.hpp"
#include "support/misuse_guard.hpp"
#include "support/watchdog.hpp"

namespace safemap_test::mutable_visit {

template <class M>
class MutableVisitTest : public ::testing::Test {};

TYPED_TEST_SUITE_P(MutableVisitTest);

// call() must be refused with a misuse_error of kind reentrant_call.
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

TYPED_TEST_P(MutableVisitTest, VisitOnANonConstMapChangesTheValueInPlace) {
  TypeParam m;
  m.store(1, 10);
  const std::uint64_t before = m.version();
  EXPECT_TRUE(m.visit(1, [](long& v) { v += 5; }));
  EXPECT_EQ(m.load(1), 15);
  EXPECT_GT(m.version(), before) << "a visit that may change the value is a write";
  EXPECT_FALSE(m.visit(2, [](long&) { ADD_FAILURE() << "f called for an absent key"; }));
  EXPECT_EQ(m.size(), 1u);

  // Heterogeneous lookup reaches the same V&.
  rebind_map_t<TypeParam, std::string, long> s;
  s.store("alpha", 1);
  EXPECT_TRUE(s.visit(std::string_view("alpha"), [](long& v) { v = 7; }));
  EXPECT_TRUE(s.visit("alpha", [](long& v) { v *= 2; }));
  EXPECT_EQ(s.load("alpha"), 14);
}

TYPED_TEST_P(MutableVisitTest, VisitAllOnANonConstMapChangesEveryValue) {
  TypeParam m;
  const std::uint64_t empty_version = m.version();
  EXPECT_EQ(m.visit_all([](const int&, long&) { ADD_FAILURE(); }), 0u);
  EXPECT_EQ(m.version(), empty_version) << "visit_all on an empty map changes nothing";
  for (int k = 0; k < 50; ++k) m.store(k, k);
  const std::uint64_t before = m.version();
  EXPECT_EQ(m.visit_all([](const int& k, long& v) { v += 1000L * k; }), 50u);
  for (int k = 0; k < 50; ++k) EXPECT_EQ(m.load(k), 1001L * k) << "key " << k;
  EXPECT_GT(m.version(), before);
  EXPECT_EQ(m.size(), 50u);
}

TYPED_TEST_P(MutableVisitTest, InsertOrVisitChangesTheExistingValueInTheSameStep) {
  TypeParam m;
  auto increment = [](long& v) { ++v; };
  EXPECT_TRUE(m.insert_or_visit(1, 1L, increment));
  EXPECT_EQ(m.load(1), 1);
  const std::uint64_t before = m.version();
  EXPECT_FALSE(m.insert_or_visit(1, 1L, increment));
  EXPECT_EQ(m.load(1), 2);
  EXPECT_GT(m.version(), before);
  EXPECT_FALSE(m.emplace_or_visit(1, 100L, [](long& v) { v *= 10; }));
  EXPECT_EQ(m.load(1), 20);
  EXPECT_TRUE(m.emplace_or_visit(2, 5L, increment));
  EXPECT_EQ(m.load(2), 5);
}

TYPED_TEST_P(MutableVisitTest, EmplaceOrVisitBuildsNoValueWhenTheKeyIsPresent) {
  struct emplace_tag {};
  using value = counted<emplace_tag>;
  rebind_map_t<TypeParam, int, value> m;
  EXPECT_TRUE(m.emplace_or_visit(1, 7, [](value&) { ADD_FAILURE(); }));
  const long built = value::counters().value_constructed.load();
  const long constructed = value::counters().constructed.load();
  EXPECT_FALSE(m.emplace_or_visit(1, 8, [](value& v) { v = value(v.value() + 1); }));
  // The callback's own temporary is the only value built.
  EXPECT_EQ(value::counters().value_constructed.load(), built + 1)
      << "emplace_or_visit built a value for a present key";
  EXPECT_LE(value::counters().constructed.load(), constructed + 1);
  EXPECT_TRUE(m.visit(1, [](value& v) { EXPECT_EQ(v.value(), 8); }));
}

TYPED_TEST_P(MutableVisitTest, CvisitOnANonConstMapIsASharedRead) {
  // Thread A, inside a cvisit callback, waits for thread B's cvisit of the same key to finish.
  // Under a shared lock B gets in; had cvisit taken the exclusive lock, B would wait for A and
  // A's bounded wait would fail the test (the watchdog covers a hang anyway).
  watchdog dog("two cvisit callbacks at once");
  TypeParam m;
  m.store(1, 10);
  auto both_inside = [&](auto&& read) {
    std::atomic<bool> a_inside{false};
    std::atomic<bool> b_done{false};
    bool b_seen_in_time = false;
    std::thread a([&] {
      read([&] {
        a_inside.store(true);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (!b_done.load() && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::yield();
        }
        b_seen_in_time = b_done.load();
      });
    });
    while (!a_inside.load()) std::this_thread::yield();
    read([] {});
    b_done.store(true);
    a.join();
    return b_seen_in_time;
  };
  EXPECT_TRUE(both_inside([&](auto&& inside) { m.cvisit(1, [&](const long&) { inside(); }); }));
  EXPECT_TRUE(both_inside(
      [&](auto&& inside) { std::as_const(m).visit(1, [&](const long&) { inside(); }); }));
  EXPECT_TRUE(both_inside(
      [&](auto&& inside) { m.cvisit_all([&](const int&, const long&) { inside(); }); }));
}

TYPED_TEST_P(MutableVisitTest, ReadsFromAMutatingCallbackWorkAndWritesAreReported) {
  watchdog dog("re-entrant mutating callbacks");
  scoped_misuse_handler handler(&throw_misuse);
  TypeParam m;
  m.store(1, 10);
  m.store(2, 20);
  EXPECT_TRUE(m.visit(1, [&](long& v) {
    v = 11;
    EXPECT_EQ(m.load(1), 11) << "a read from f sees f's change";
    EXPECT_TRUE(m.cvisit(1, [](const long& w) { EXPECT_EQ(w, 11); }));
    EXPECT_TRUE(reported_as_reentrant([&] { m.store(1, 12); }));
    EXPECT_TRUE(reported_as_reentrant([&] { m.visit(1, [](long&) {}); }));
    EXPECT_TRUE(
        reported_as_reentrant([&] { m.erase_if([](const int&, const long&) { return true; }); }));
  }));
  EXPECT_TRUE(m.cvisit(1, [&](const long&) {
    EXPECT_TRUE(reported_as_reentrant([&] { m.visit(1, [](long& v) { v = 0; }); }))
        << "a mutating visit from a read callback must be refused (the lock cannot upgrade)";
    EXPECT_TRUE(reported_as_reentrant([&] { m.insert_or_visit(3, 3L, [](long&) {}); }));
  }));
  m.visit_all([&](const int& k, long&) {
    EXPECT_TRUE(reported_as_reentrant([&] { m.store(k + 100, 0L); }));
  });
  EXPECT_FALSE(m.insert_or_visit(
      2, 0L, [&](long&) { EXPECT_TRUE(reported_as_reentrant([&] { m.erase(2); })); }));
  EXPECT_EQ(m.load(1), 11);
  EXPECT_EQ(m.load(2), 20);
  EXPECT_EQ(m.size(), 2u) << "refused writes must not have happened";
  m.store(3, 30);  // nothing stayed held
  EXPECT_EQ(m.load(3), 30);
}

TYPED_TEST_P(MutableVisitTest, AThrowingCallbackKeepsItsChangesAndReleasesTheLock) {
  watchdog dog("calls after a throwing mutating callback");
  struct boom {};
  TypeParam m;
  for (int k = 0; k < 10; ++k) m.store(k, k);
  std::uint64_t before = m.version();
  EXPECT_THROW(m.visit(1,
                       [](long& v) {
                         v = 99;
                         throw boom{};
                       }),
               boom);
  EXPECT_EQ(m.load(1), 99) << "what f changed before throwing stays";
  EXPECT_GT(m.version(), before) << "and counts as a change";
  before = m.version();
  EXPECT_THROW(m.insert_or_visit(2, 0L,
                                 [](long& v) {
                                   v = 98;
                                   throw boom{};
                                 }),
               boom);
  EXPECT_EQ(m.load(2), 98);
  EXPECT_GT(m.version(), before);
  int seen = 0;
  EXPECT_THROW(m.visit_all([&](const int&, long& v) {
    v += 1000;
    if (++seen == 4) throw boom{};
  }),
               boom);
  long changed = 0;
  m.cvisit_all([&](const int&, const long& v) { changed += v >= 1000 ? 1 : 0; });
  EXPECT_EQ(changed, 4);
  // erase_if: entries removed before pred threw stay removed; size() agrees with the table.
  int calls = 0;
  EXPECT_THROW(m.erase_if([&](const int&, const long&) -> bool {
    if (++calls == 5) throw boom{};
    return true;
  }),
               boom);
  EXPECT_EQ(m.size(), 6u);
  EXPECT_EQ(m.snapshot().size(), 6u);
  // Nothing is held: another thread's write completes.
  std::thread([&] { m.store(100, 100); }).join();
  EXPECT_EQ(m.load(100), 100);
  EXPECT_EQ(m.size(), 7u);
}

TYPED_TEST_P(MutableVisitTest, ConcurrentMutatingIncrementsEndExact) {
  watchdog dog("concurrent mutating visits");
  // More threads than cores, so threads are preempted inside callbacks.
  const unsigned threads = std::max(8u, 2 * std::thread::hardware_concurrency() + 1);
  const int keys = 8;
  const int per_thread = static_cast<int>(scaled(20'000, 10));
  const int sweeps = 5;  // visit_all calls per thread (per_thread is a multiple)
  TypeParam m;
  for (int k = 0; k < keys; ++k) m.store(k, 0L);
  run_threads(threads, [&](unsigned t) {
    for (int i = 0; i < per_thread; ++i) {
      const int k = static_cast<int>((t + static_cast<unsigned>(i)) % keys);
      // A plain read-then-write increment, sometimes yielding in between to widen the window
      // a lost update needs: exact only if every visit is exclusive.
      EXPECT_TRUE(m.visit(k, [](long& v) {
        const long seen = v;
        if (seen % 16 == 0) std::this_thread::yield();
        v = seen + 1;
      }));
      // Keys [keys, 2 keys) are created by the first insert_or_visit, incremented by the rest.
      m.insert_or_visit(keys + k, 1L, [](long& v) { ++v; });
      // Every key of the first half, once per sweep.
      if (i % (per_thread / sweeps) == 0) {
        m.visit_all([&](const int& key, long& v) { v += key < keys ? 1 : 0; });
      }
      if (i % 64 == 0) {  // readers alongside, under the shared lock
        m.cvisit(k, [](const long& v) { EXPECT_GE(v, 0); });
      }
    }
  });
  long visited = 0;
  long inserted = 0;
  std::size_t n =
      m.cvisit_all([&](const int& k, const long& v) { (k < keys ? visited : inserted) += v; });
  EXPECT_EQ(n, static_cast<std::size_t>(2 * keys));
  const long increments = static_cast<long>(threads) * per_thread;
  EXPECT_EQ(visited, increments + static_cast<long>(threads) * sweeps * keys);
  EXPECT_EQ(inserted, increments);
}

REGISTER_TYPED_TEST_SUITE_P(MutableVisitTest, VisitOnANonConstMapChangesTheValueInPlace,
                            VisitAllOnANonConstMapChangesEveryValue,
                            InsertOrVisitChangesTheExistingValueInTheSameStep,
                            EmplaceOrVisitBuildsNoValueWhenTheKeyIsPresent,
                            CvisitOnANonConstMapIsASharedRead,
                            ReadsFromAMutatingCallbackWorkAndWritesAreReported,
                            AThrowingCallbackKeepsItsChangesAndReleasesTheLock,
                            ConcurrentMutatingIncrementsEndExact);

}  // namespace safemap_test::mutable_visit
