// tests/strategies/sync_map_test.cpp - SyncMap (Go's sync.Map algorithm), beyond the
// conformance suite: every path of the algorithm driven on purpose and observed through
// stats(), a model-based test against reference_map, concurrency, reclamation and
// re-entrancy.
//
//  - model: random sequences of every operation (int and std::string keys, small key spaces
//    so promotions, dirty copies, expunges and un-expunges happen all the time), each result
//    and the version compared with reference_map (tests/support/concurrent_maps.hpp);
//  - paths: promotion by misses, dirty_locked expunging deleted entries, un-expunge,
//    load_and_delete and compare_and_delete of dirty-only keys, range promoting, compute's
//    slow paths, clear, the strong guarantee of dirty_locked;
//  - concurrency (8 threads started on a latch, more than the cores): compute counters,
//    one load_or_store winner per key, compare_and_swap chains, range during writes, a mixed
//    stress of 1,000,000 operations;
//  - reclamation: instance-counted keys and values, each destroyed exactly once;
//  - re-entrancy: range, visit and compute callbacks calling the same map.
#include "safemap/sync_map.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "safemap/concurrent.hpp"
#include "safemap/reclaim.hpp"
#include "support/concurrent_maps.hpp"
#include "support/counted.hpp"
#include "support/reference_model.hpp"
#include "support/throwing.hpp"

namespace {

// Value types that take each of load's two copy paths: small, trivially copyable and
// assignable values are copied out inside the guard and wrapped after it; the others are
// returned from inside the guard.
struct two_words {  // copied out (16 bytes, trivially copyable)
  std::uint64_t a;
  std::uint64_t b;
  bool operator==(const two_words&) const = default;
};
struct fixed_id {  // trivially copyable, not assignable (const member): returned in the guard
  const std::uint32_t id;
  bool operator==(const fixed_id&) const = default;
};
struct no_default {  // trivially copyable, no default constructor: returned in the guard
  explicit no_default(int x) : v(x) {}
  int v;
  bool operator==(const no_default&) const = default;
};

using namespace safemap_test;
using safemap::SyncMap;

constexpr unsigned k_threads = 8;

static_assert(safemap::concurrent_map<SyncMap<int, int>>);
static_assert(safemap::concurrent_map<SyncMap<std::string, std::string>>);
static_assert(safemap::concurrent_map<SyncMap<long, counted<struct concept_tag>>>);

// Stores keys [from, to) as new keys (each lands in the dirty map) with value key * 10.
template <class M>
void store_range(M& m, int from, int to) {
  for (int k = from; k < to; ++k) m.store(k, k * 10);
}

// Loads keys absent from both maps until an amended read map is promoted (each such load
// is a miss). make_key(i) gives the i-th absent key.
template <class M, class MakeKey>
void promote_by_misses(M& m, MakeKey make_key) {
  if (!m.stats().amended) return;  // nothing to promote: such loads would not miss
  const auto before = m.stats().promotions;
  for (int i = 0; m.stats().promotions == before; ++i) {
    ASSERT_LT(i, 1 << 20) << "no promotion";
    (void)m.load(make_key(i));
  }
}
template <class M>
void promote_by_misses(M& m) {
  promote_by_misses(m, [](int i) { return -1 - i; });
}

// ---- the model ------------------------------------------------------------------------------

template <class K>
void run_model(std::uint64_t seed, std::size_t ops, std::uint64_t key_space,
               std::function<K(std::uint64_t)> make_key) {
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  SyncMap<K, int> m;
  reference_map<K, int> ref;
  op_generator<K, int> gen(seed, key_space, make_key, [](int v) { return v; });
  std::uint64_t last_version = m.version();
  for (std::size_t i = 0; i < ops; ++i) {
    const auto op = gen.next();
    const std::uint64_t ref_before = ref.version();
    const auto got = apply_op(m, op);
    const auto want = apply_op(ref, op);
    ASSERT_EQ(got, want) << "op " << i << ": " << op;
    ASSERT_EQ(m.size(), ref.size()) << "op " << i << ": " << op;
    // Every successful mutation adds exactly one, reads and failed writes nothing; clear of a
    // map whose entries are all deleted may add one where the reference adds none.
    const std::uint64_t v = m.version();
    const std::uint64_t delta = v - last_version;
    ASSERT_GE(v, last_version) << "op " << i << ": " << op;
    if (op.kind == op_kind::clear) {
      ASSERT_GE(delta, ref.version() - ref_before) << "op " << i << ": " << op;
    } else {
      ASSERT_EQ(delta, ref.version() - ref_before) << "op " << i << ": " << op;
    }
    last_version = v;
    if (i % 4096 == 0) {
      const auto s = m.stats();
      ASSERT_EQ(s.size, ref.size());
      ASSERT_GE(s.read.size + s.dirty_size, ref.size());  // every value is in some entry
      ASSERT_TRUE(!s.amended || s.has_dirty);             // R2
      ASSERT_TRUE(s.has_dirty || s.dirty_size == 0);
    }
  }
  // Every path of the algorithm was taken.
  const auto s = m.stats();
  EXPECT_GT(s.promotions, 0u);
  EXPECT_GT(s.dirty_copies, 0u);
  EXPECT_GT(s.expunged, 0u);
  EXPECT_GT(s.unexpunged, 0u);
  EXPECT_GT(s.read_misses, 0u);
  EXPECT_GT(s.entries_retired, 0u);
  EXPECT_EQ(sorted_entries(m.snapshot()), sorted_entries(ref.snapshot()));
}

TEST(SyncMapModel, RandomOperationsMatchTheReferenceWithIntKeys) {
  for (std::uint64_t seed : {1u, 2u, 3u, 4u}) {
    run_model<int>(seed, 60'000, 8 + 8 * seed, [](std::uint64_t k) { return static_cast<int>(k); });
  }
}

TEST(SyncMapModel, RandomOperationsMatchTheReferenceWithStringKeys) {
  for (std::uint64_t seed : {11u, 12u, 13u, 14u}) {
    run_model<std::string>(seed, 60'000, 8 + 4 * (seed - 10), [](std::uint64_t k) {
      return "key-" + std::to_string(k) + std::string(k % 3 * 10, 'x');  // some beyond SSO
    });
  }
}

// ---- the paths of the algorithm --------------------------------------------------------------

// Both copy paths of load, on a read-map key, a dirty-only key (the amended slow path, which
// counts a miss) and an absent key.
template <class V, class Make>
void check_load_paths(Make make) {
  SyncMap<int, V> m;
  m.store(1, make(1));
  ASSERT_EQ(m.load(1), make(1));  // dirty-only: a miss, then promoted (dirty size 1)
  m.store(2, make(2));            // a new key: read is amended again
  EXPECT_EQ(m.load(1), make(1));  // read-map hit
  const auto before = m.stats().read_misses;
  EXPECT_EQ(m.load(2), make(2));  // dirty-only hit through the slow path
  EXPECT_EQ(m.stats().read_misses, before + 1);
  EXPECT_EQ(m.load(3), std::nullopt);
  EXPECT_TRUE(m.contains(2));
  EXPECT_FALSE(m.contains(3));
  EXPECT_TRUE(m.erase(1));
  EXPECT_EQ(m.load(1), std::nullopt);  // deleted entry of the read map
}

TEST(SyncMapPaths, LoadReturnsValuesOfEveryKindThroughEveryPath) {
  check_load_paths<two_words>([](int i) { return two_words{std::uint64_t(i), ~std::uint64_t(i)}; });
  check_load_paths<fixed_id>([](int i) { return fixed_id{std::uint32_t(i)}; });
  check_load_paths<no_default>([](int i) { return no_default(i); });
  check_load_paths<std::string>([](int i) { return std::string(40, char('a' + i)); });
}

TEST(SyncMapPaths, NewKeysGoToTheDirtyMapAndMarkReadAmended) {
  SyncMap<int, int> m;
  store_range(m, 0, 10);
  const auto s = m.stats();
  EXPECT_TRUE(s.has_dirty);
  EXPECT_TRUE(s.amended);
  EXPECT_EQ(s.dirty_size, 10u);
  EXPECT_EQ(s.read.size, 0u);
  EXPECT_EQ(s.dirty_copies, 1u);  // the first new key built the (empty) dirty map
  EXPECT_EQ(m.size(), 10u);
}

TEST(SyncMapPaths, MissesReachingDirtySizePromoteAndLaterLoadsHitTheReadMap) {
  SyncMap<int, int> m;
  store_range(m, 0, 10);
  // Nine misses on present keys: not yet (misses < len(dirty)).
  for (int k = 0; k < 9; ++k) EXPECT_EQ(m.load(k), k * 10);
  auto s = m.stats();
  EXPECT_EQ(s.promotions, 0u);
  EXPECT_EQ(s.misses, 9u);
  EXPECT_EQ(s.pending_misses, 9u);
  EXPECT_EQ(s.read_misses, 9u);
  // The tenth promotes: dirty becomes read, O(1), and there is no dirty map any more.
  EXPECT_EQ(m.load(9), 90);
  s = m.stats();
  EXPECT_EQ(s.promotions, 1u);
  EXPECT_FALSE(s.has_dirty);
  EXPECT_FALSE(s.amended);
  EXPECT_EQ(s.read.size, 10u);
  EXPECT_EQ(s.pending_misses, 0u);
  // Now every load (hits and misses alike) is served by the read map without a miss.
  for (int k = 0; k < 20; ++k)
    EXPECT_EQ(m.load(k), k < 10 ? std::optional<int>(k * 10) : std::nullopt);
  for (int k = 0; k < 10; ++k) EXPECT_TRUE(m.contains(k));
  const auto after = m.stats();
  EXPECT_EQ(after.misses, s.misses);
  EXPECT_EQ(after.read_misses, s.read_misses);
  EXPECT_EQ(after.promotions, 1u);
}

// load_many takes the path load takes for each key: a key missing from an amended read map
// counts a miss, the miss that reaches the dirty map's size promotes it (inside the batch), and
// keys after the promotion are served without a miss.
TEST(SyncMapPaths, LoadManyCountsMissesAsLoadDoesAndPromotesInsideABatch) {
  SyncMap<int, int> m;
  store_range(m, 0, 10);
  std::vector<int> first = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<std::optional<int>> out(first.size());
  EXPECT_EQ(m.load_many(std::span<const int>(first), std::span<std::optional<int>>(out)), 9u);
  for (std::size_t i = 0; i < first.size(); ++i) EXPECT_EQ(out[i], first[i] * 10);
  auto s = m.stats();
  EXPECT_EQ(s.promotions, 0u);
  EXPECT_EQ(s.misses, 9u);
  EXPECT_EQ(s.read_misses, 9u);
  // Key 9's miss is the tenth: it promotes; 10 and 11 are then absent from a read map that is
  // no longer amended, which is not a miss.
  EXPECT_EQ(m.load_many(std::vector<int>{9, 10, 11}),
            (std::vector<std::optional<int>>{90, std::nullopt, std::nullopt}));
  s = m.stats();
  EXPECT_EQ(s.promotions, 1u);
  EXPECT_FALSE(s.amended);
  EXPECT_EQ(s.misses, 10u);
  EXPECT_EQ(s.read_misses, 10u);
  // Everything from the read map now, in batches longer than one group.
  std::vector<int> all(200);
  for (int k = 0; k < 200; ++k) all[static_cast<std::size_t>(k)] = k % 20;
  const auto values = m.load_many(all);
  for (std::size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(values[i], all[i] < 10 ? std::optional<int>(all[i] * 10) : std::nullopt);
  }
  const auto after = m.stats();
  EXPECT_EQ(after.misses, s.misses);
  EXPECT_EQ(after.read_misses, s.read_misses);
  // A deleted key of the read map reads as absent.
  m.erase(3);
  EXPECT_EQ(m.load_many(std::vector<int>{2, 3, 4}),
            (std::vector<std::optional<int>>{20, std::nullopt, 40}));
}

TEST(SyncMapPaths, OverwritingKeysOfTheReadMapTakesNoLock) {
  SyncMap<int, int> m;
  store_range(m, 0, 10);
  promote_by_misses(m);
  const auto before = m.stats();
  for (int k = 0; k < 10; ++k) {
    m.store(k, 1);
    EXPECT_EQ(m.swap(k, 2), 1);
    EXPECT_TRUE(m.compare_and_swap(k, 2, 3));
    EXPECT_EQ(m.load_or_store(k, 9), std::make_pair(3, true));
    EXPECT_EQ(m.compute(k, [](std::optional<int> v) { return std::optional<int>(*v + 1); }), 4);
  }
  const auto after = m.stats();
  EXPECT_EQ(after.misses, before.misses);
  EXPECT_EQ(after.dirty_copies, before.dirty_copies);
  EXPECT_FALSE(after.has_dirty);  // nothing needed the dirty map
  for (int k = 0; k < 10; ++k) EXPECT_EQ(m.load(k), 4);
}

TEST(SyncMapPaths, DeleteThenNewKeyExpungesTheDeletedEntryInDirtyLocked) {
  SyncMap<int, int> m;
  store_range(m, 0, 10);
  promote_by_misses(m);
  EXPECT_TRUE(m.erase(3));  // read-map entry -> nil, lock-free
  EXPECT_TRUE(m.load_and_delete(4).has_value());
  auto s = m.stats();
  EXPECT_EQ(s.expunged, 0u);
  EXPECT_EQ(s.read.size, 10u);  // deleted entries stay in the read map
  m.store(100, 1000);           // first new key: dirty_locked copies read, expunging 3 and 4
  s = m.stats();
  EXPECT_EQ(s.dirty_copies, 2u);
  EXPECT_EQ(s.expunged, 2u);
  EXPECT_EQ(s.dirty_size, 9u);  // 8 live read entries + the new key
  EXPECT_FALSE(m.contains(3));
  EXPECT_FALSE(m.load(4).has_value());
  EXPECT_EQ(m.size(), 9u);
  // The next promotion drops the expunged entries (they are in neither map) and retires them.
  const auto retired = s.entries_retired;
  promote_by_misses(m);
  s = m.stats();
  EXPECT_EQ(s.entries_retired, retired + 2);
  EXPECT_EQ(s.read.size, 9u);
}

TEST(SyncMapPaths, StoreToAnExpungedKeyUnexpungesItBackIntoDirty) {
  SyncMap<int, int> m;
  store_range(m, 0, 10);
  promote_by_misses(m);
  m.erase(3);
  m.erase(5);
  m.store(100, 1000);  // expunges 3 and 5
  ASSERT_EQ(m.stats().expunged, 2u);
  const auto dirty_before = m.stats().dirty_size;
  m.store(3, 33);  // expunged -> nil, back into dirty, then the value
  EXPECT_EQ(m.load_or_store(5, 55), std::make_pair(55, false));  // the same through load_or_store
  auto s = m.stats();
  EXPECT_EQ(s.unexpunged, 2u);
  EXPECT_EQ(s.dirty_size, dirty_before + 2);
  EXPECT_EQ(m.load(3), 33);
  EXPECT_EQ(m.load(5), 55);
  EXPECT_EQ(m.size(), 11u);  // 0..9 and 100
  // After the next promotion the un-expunged entries are ordinary read entries again.
  promote_by_misses(m);
  EXPECT_EQ(m.load(3), 33);
  EXPECT_EQ(m.load(5), 55);
  EXPECT_EQ(m.stats().read.size, 11u);
}

TEST(SyncMapPaths, SwapAndComputeOnAnExpungedKeyUnexpungeIt) {
  SyncMap<int, int> m;
  store_range(m, 0, 4);
  promote_by_misses(m);
  m.erase(1);
  m.erase(2);
  m.store(100, 1);  // expunges 1 and 2
  ASSERT_EQ(m.stats().expunged, 2u);
  EXPECT_EQ(m.swap(1, 11), std::nullopt);
  EXPECT_EQ(
      m.compute(2, [](std::optional<int> v) { return std::optional<int>(v.value_or(20) + 2); }),
      22);
  EXPECT_EQ(m.stats().unexpunged, 2u);
  EXPECT_EQ(m.load(1), 11);
  EXPECT_EQ(m.load(2), 22);
  EXPECT_EQ(m.size(), 5u);
}

TEST(SyncMapPaths, LoadAndDeleteOfADirtyOnlyKeyRemovesAndRetiresItsEntry) {
  SyncMap<int, int> m;
  store_range(m, 0, 10);
  promote_by_misses(m);
  m.store(50, 500);  // dirty-only
  auto s = m.stats();
  ASSERT_EQ(s.dirty_size, 11u);
  const auto retired = s.entries_retired;
  const auto misses = s.misses;
  EXPECT_EQ(m.load_and_delete(50), 500);
  s = m.stats();
  EXPECT_EQ(s.dirty_size, 10u);
  EXPECT_EQ(s.entries_retired, retired + 1);
  EXPECT_EQ(s.misses, misses + 1);  // Go counts a miss on this path
  EXPECT_FALSE(m.contains(50));
  EXPECT_EQ(m.load_and_delete(50), std::nullopt);
  EXPECT_FALSE(m.erase(50));
  EXPECT_EQ(m.size(), 10u);
  // A dirty-only key that was deleted (nil) before: removed without a value.
  m.store(60, 600);
  EXPECT_TRUE(m.compare_and_delete(60, 600));  // leaves a nil entry in dirty
  EXPECT_FALSE(m.erase(60));
  EXPECT_FALSE(m.contains(60));
  m.store(60, 601);  // a new entry again
  EXPECT_EQ(m.load(60), 601);
}

TEST(SyncMapPaths, CompareAndDeleteOnADirtyEntryComparesBeforeDeleting) {
  SyncMap<int, int> m;
  store_range(m, 0, 100);  // dirty-only; enough keys that these misses do not promote
  m.store(1, 10);
  const auto misses = m.stats().misses;
  EXPECT_FALSE(m.compare_and_delete(1, 11));
  EXPECT_EQ(m.load(1), 10);
  EXPECT_TRUE(m.compare_and_delete(1, 10));
  EXPECT_FALSE(m.contains(1));
  EXPECT_FALSE(m.compare_and_delete(1, 10));
  EXPECT_FALSE(m.compare_and_delete(2, 10));  // present with another value
  const auto s = m.stats();
  EXPECT_EQ(s.misses, misses + 6);  // every lookup that searched the dirty map
  EXPECT_EQ(s.promotions, 0u);
  EXPECT_EQ(s.dirty_size, 100u);  // compare_and_delete leaves a nil entry in dirty (Go)
  EXPECT_EQ(m.size(), 99u);
}

TEST(SyncMapPaths, CompareAndSwapOnADirtyEntryCountsAMiss) {
  SyncMap<int, int> m;
  store_range(m, 0, 100);
  const auto misses = m.stats().misses;
  EXPECT_FALSE(m.compare_and_swap(7, 1, 2));
  EXPECT_TRUE(m.compare_and_swap(7, 70, 71));
  EXPECT_FALSE(m.compare_and_swap(1000, 0, 1));  // absent from both maps: no miss
  EXPECT_EQ(m.stats().misses, misses + 2);
  EXPECT_EQ(m.load(7), 71);
  EXPECT_EQ(m.load_or_store(8, 0), std::make_pair(80, true));  // dirty hit: a miss too
  EXPECT_EQ(m.stats().misses, misses + 4);
}

TEST(SyncMapPaths, RangePromotesAnAmendedDirtyMapFirst) {
  SyncMap<int, int> m;
  store_range(m, 0, 10);
  promote_by_misses(m);
  store_range(m, 10, 15);  // amended again
  ASSERT_TRUE(m.stats().amended);
  const auto promotions = m.stats().promotions;
  std::map<int, int> seen;
  m.range([&](const int& k, const int& v) { seen[k] = v; });
  const auto s = m.stats();
  EXPECT_EQ(s.promotions, promotions + 1);
  EXPECT_FALSE(s.amended);
  EXPECT_FALSE(s.has_dirty);
  EXPECT_EQ(seen.size(), 15u);
  for (const auto& [k, v] : seen) EXPECT_EQ(v, k * 10);
  // Not amended: range walks the read map without promoting.
  m.range([](const int&, const int&) {});
  EXPECT_EQ(m.stats().promotions, promotions + 1);
}

TEST(SyncMapPaths, RangeSkipsDeletedEntriesAndStopsOnFalse) {
  SyncMap<int, int> m;
  store_range(m, 0, 20);
  for (int k = 0; k < 20; k += 2) m.erase(k);
  std::vector<int> keys;
  m.range([&](const int& k, const int&) { keys.push_back(k); });
  std::sort(keys.begin(), keys.end());
  ASSERT_EQ(keys.size(), 10u);
  for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(keys[i], static_cast<int>(2 * i + 1));
  int calls = 0;
  m.range([&](const int&, const int&) { return ++calls < 3; });
  EXPECT_EQ(calls, 3);
}

TEST(SyncMapPaths, ComputeInsertsUpdatesAndErasesThroughEveryPath) {
  SyncMap<int, int> m;
  auto add = [](int d) {
    return [d](std::optional<int> v) { return std::optional<int>(v.value_or(0) + d); };
  };
  auto erase = [](std::optional<int>) { return std::optional<int>(); };
  // Absent everywhere, map never amended: f(nullopt) -> nullopt returns without locking.
  EXPECT_EQ(m.compute(1, erase), std::nullopt);
  EXPECT_EQ(m.stats().dirty_copies, 0u);
  // Absent: inserted through the mutex path.
  EXPECT_EQ(m.compute(1, add(5)), 5);
  // Absent while amended: f(nullopt) -> nullopt, nothing stored.
  EXPECT_EQ(m.compute(2, erase), std::nullopt);
  EXPECT_FALSE(m.contains(2));
  // Dirty-only entry: found under mu_ (a miss, which promotes the one-key dirty map), updated
  // by CAS outside it.
  EXPECT_EQ(m.compute(1, add(1)), 6);
  EXPECT_EQ(m.stats().promotions, 1u);
  // Read-map entry: lock-free CAS.
  EXPECT_EQ(m.compute(1, add(1)), 7);
  EXPECT_EQ(m.compute(1, erase), std::nullopt);  // live -> nil
  EXPECT_FALSE(m.contains(1));
  EXPECT_EQ(m.compute(1, erase), std::nullopt);  // nil stays nil, nothing written
  EXPECT_EQ(m.compute(1, add(3)), 3);            // nil -> live
  EXPECT_EQ(m.size(), 1u);
  // A dirty entry deleted to nil (compare_and_delete leaves it in dirty), computed back.
  m.store(9, 90);
  EXPECT_TRUE(m.compare_and_delete(9, 90));
  EXPECT_EQ(m.compute(9, add(1)), 1);
  EXPECT_EQ(m.size(), 2u);
}

TEST(SyncMapPaths, ClearRemovesEverythingAndTheMapStaysUsable) {
  SyncMap<int, int> m;
  store_range(m, 0, 10);
  promote_by_misses(m);
  m.erase(2);
  store_range(m, 10, 20);  // dirty has read's live entries and new ones; 2 is expunged
  const auto v = m.version();
  m.clear();
  EXPECT_GT(m.version(), v);
  EXPECT_EQ(m.size(), 0u);
  for (int k = 0; k < 20; ++k) EXPECT_FALSE(m.contains(k)) << k;
  auto s = m.stats();
  EXPECT_FALSE(s.has_dirty);
  EXPECT_FALSE(s.amended);
  EXPECT_EQ(s.read.size, 0u);
  // Clearing an empty map changes nothing.
  const auto v2 = m.version();
  m.clear();
  EXPECT_EQ(m.version(), v2);
  // Usable afterwards through every path.
  store_range(m, 0, 5);
  promote_by_misses(m);
  m.erase(0);
  m.store(7, 70);
  EXPECT_EQ(m.size(), 5u);
  EXPECT_EQ(m.load(7), 70);
  EXPECT_EQ(m.load(0), std::nullopt);
  m.clear();
  EXPECT_EQ(m.size(), 0u);
}

TEST(SyncMapPaths, VersionGrowsOnSuccessfulMutationsOnly) {
  SyncMap<int, int> m;
  std::uint64_t v = m.version();
  auto grew = [&](bool expect) {
    const std::uint64_t now = m.version();
    const bool g = now > v;
    v = now;
    return g == expect;
  };
  m.store(1, 1);
  EXPECT_TRUE(grew(true));
  (void)m.load(1);
  (void)m.contains(2);
  m.range([](const int&, const int&) {});
  (void)m.snapshot();
  promote_by_misses(m);  // a promotion changes the representation, not the contents
  EXPECT_TRUE(grew(false));
  EXPECT_EQ(m.load_or_store(1, 5).second, true);
  EXPECT_TRUE(grew(false));
  EXPECT_EQ(m.load_or_store(2, 5).second, false);
  EXPECT_TRUE(grew(true));
  EXPECT_FALSE(m.compare_and_swap(1, 9, 10));
  EXPECT_TRUE(grew(false));
  EXPECT_TRUE(m.compare_and_swap(1, 1, 10));
  EXPECT_TRUE(grew(true));
  EXPECT_FALSE(m.compare_and_delete(1, 9));
  EXPECT_TRUE(grew(false));
  EXPECT_TRUE(m.compare_and_delete(1, 10));
  EXPECT_TRUE(grew(true));
  EXPECT_FALSE(m.erase(1));
  EXPECT_TRUE(grew(false));
  EXPECT_EQ(m.swap(1, 3), std::nullopt);
  EXPECT_TRUE(grew(true));
  EXPECT_TRUE(m.erase(1));
  EXPECT_TRUE(grew(true));
  m.clear();
  EXPECT_TRUE(grew(true));
}

TEST(SyncMapPaths, StringKeysAcceptStringViewAndCharPointerLookups) {
  SyncMap<std::string, int> m;
  m.store("alpha", 1);
  m.store(std::string(40, 'b'), 2);
  const std::string_view sv = "alpha";
  const char* cp = "alpha";
  EXPECT_EQ(m.load(sv), 1);
  EXPECT_EQ(m.load(cp), 1);
  EXPECT_EQ(m.load("alpha"), 1);
  EXPECT_TRUE(m.contains(std::string_view(std::string(40, 'b'))));
  EXPECT_TRUE(m.visit(sv, [](const int& v) { EXPECT_EQ(v, 1); }));
  EXPECT_TRUE(m.compare_and_swap(sv, 1, 5));
  promote_by_misses(m, [](int i) { return "absent-" + std::to_string(i); });
  EXPECT_EQ(m.load(cp), 5);
  EXPECT_TRUE(m.compare_and_swap("alpha", 5, 6));
  EXPECT_FALSE(m.compare_and_delete(sv, 5));
  EXPECT_EQ(m.load_and_delete(sv), 6);
  EXPECT_FALSE(m.erase("alpha"));
  m.store("gamma", 3);  // dirty-only, then removed by a string_view
  EXPECT_TRUE(m.erase(std::string_view("gamma")));
  EXPECT_EQ(m.size(), 1u);
}

TEST(SyncMapPaths, VisitCallsFOnTheBoxedValueInPlace) {
  SyncMap<int, std::vector<int>> m;
  m.store(1, std::vector<int>(100, 7));
  const int* first = nullptr;
  EXPECT_TRUE(m.visit(1, [&](const std::vector<int>& v) { first = v.data(); }));
  const int* again = nullptr;
  EXPECT_TRUE(m.visit(1, [&](const std::vector<int>& v) { again = v.data(); }));
  EXPECT_EQ(first, again);  // the same stored object, not a copy
  EXPECT_FALSE(m.visit(2, [](const std::vector<int>&) { ADD_FAILURE(); }));
}

TEST(SyncMapPaths, SnapshotIsAnIndependentCopy) {
  SyncMap<int, int> m;
  store_range(m, 0, 50);
  promote_by_misses(m);
  store_range(m, 50, 60);
  auto snap = m.snapshot();
  m.store(1, -1);
  m.erase(2);
  ASSERT_EQ(snap.size(), 60u);
  for (int k = 0; k < 60; ++k) EXPECT_EQ(snap.at(k), k * 10);
}

// dirty_locked copies keys; when a copy throws, the entries it expunged are restored and no
// dirty map is left half-built.
struct dirty_copy_tag {};
using throwing_key = throwing_ctor_value<dirty_copy_tag>;

TEST(SyncMapPaths, DirtyLockedThatThrowsLeavesTheMapUnchanged) {
  counted<dirty_copy_tag>::counters().reset();
  {
    SyncMap<throwing_key, int, value_hash> m;
    for (int k = 0; k < 8; ++k) m.store(throwing_key(k), k);
    promote_by_misses(m, [](int i) { return throwing_key(100 + i); });
    ASSERT_EQ(m.stats().promotions, 1u);
    m.erase(throwing_key(3));  // nil in the read map
    throwing_key key50(50);
    fault_injector::local().configure(7, 1);  // every fault point throws
    {
      fault_scope faults;
      // The new key is moved in (no throw); copying read's keys into dirty throws.
      EXPECT_THROW(m.store(std::move(key50), 1), injected_fault);
    }
    auto s = m.stats();
    EXPECT_FALSE(s.has_dirty);
    EXPECT_EQ(s.dirty_copies, 1u);  // only the first, successful one
    EXPECT_EQ(m.size(), 7u);
    EXPECT_FALSE(m.contains(throwing_key(50)));
    EXPECT_FALSE(m.contains(throwing_key(3)));
    for (int k = 0; k < 8; ++k) {
      if (k != 3) {
        EXPECT_EQ(m.load(throwing_key(k)), k);
      }
    }
    // The entry of key 3 was restored to nil, not left expunged: a lock-free store works.
    m.store(throwing_key(3), 33);
    EXPECT_EQ(m.stats().dirty_copies, 1u);
    EXPECT_EQ(m.load(throwing_key(3)), 33);
    m.store(throwing_key(50), 5);  // now the copy succeeds
    s = m.stats();
    EXPECT_TRUE(s.has_dirty);
    EXPECT_EQ(s.dirty_copies, 2u);
    EXPECT_EQ(m.size(), 9u);
  }
  safemap::rcu::barrier();
  EXPECT_EQ(counted<dirty_copy_tag>::counters().live, 0);
  EXPECT_EQ(counted<dirty_copy_tag>::counters().bad_destroys, 0);
}

TEST(SyncMapPaths, ComputeWhoseFunctionThrowsChangesNothing) {
  SyncMap<int, int> m;
  m.store(1, 1);
  auto boom = [](std::optional<int>) -> std::optional<int> { throw std::runtime_error("f"); };
  EXPECT_THROW(m.compute(1, boom), std::runtime_error);  // dirty entry
  EXPECT_THROW(m.compute(2, boom), std::runtime_error);  // absent
  promote_by_misses(m);
  EXPECT_THROW(m.compute(1, boom), std::runtime_error);  // read entry
  EXPECT_EQ(m.load(1), 1);
  EXPECT_FALSE(m.contains(2));
  EXPECT_EQ(m.size(), 1u);
}

// ---- concurrency ------------------------------------------------------------------------------

TEST(SyncMapConcurrency, ComputeCountersFromEightThreadsEndExact) {
  SyncMap<int, long> m;
  constexpr int keys = 16;
  const int per_thread = static_cast<int>(scaled(40'000, 4));
  run_threads(k_threads, [&](unsigned t) {
    for (int i = 0; i < per_thread; ++i) {
      const int k = static_cast<int>((i + t) % keys);
      m.compute(k, [](std::optional<long> v) { return std::optional<long>(v.value_or(0) + 1); });
    }
  });
  long total = 0;
  for (int k = 0; k < keys; ++k) {
    const auto v = m.load(k);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(*v, static_cast<long>(k_threads) * per_thread / keys) << k;
    total += *v;
  }
  EXPECT_EQ(total, static_cast<long>(k_threads) * per_thread);
  EXPECT_EQ(m.size(), static_cast<std::size_t>(keys));
}

TEST(SyncMapConcurrency, LoadOrStoreHasExactlyOneWinnerPerKeyAndLosersSeeItsValue) {
  SyncMap<int, int> m;
  const int keys = static_cast<int>(scaled(20'000, 4));
  std::vector<std::atomic<int>> winners(static_cast<std::size_t>(keys));
  std::vector<std::vector<int>> seen(k_threads, std::vector<int>(static_cast<std::size_t>(keys)));
  run_threads(k_threads, [&](unsigned t) {
    for (int k = 0; k < keys; ++k) {
      const auto [v, loaded] = m.load_or_store(k, static_cast<int>(t) * 1'000'000 + k);
      if (!loaded) winners[static_cast<std::size_t>(k)].fetch_add(1);
      seen[t][static_cast<std::size_t>(k)] = v;
    }
  });
  for (int k = 0; k < keys; ++k) {
    ASSERT_EQ(winners[static_cast<std::size_t>(k)].load(), 1) << k;
    const auto final_value = m.load(k);
    ASSERT_TRUE(final_value.has_value());
    EXPECT_EQ(*final_value % 1'000'000, k);
    for (unsigned t = 0; t < k_threads; ++t) {
      ASSERT_EQ(seen[t][static_cast<std::size_t>(k)], *final_value)
          << "thread " << t << " key " << k;
    }
  }
  EXPECT_EQ(m.size(), static_cast<std::size_t>(keys));
}

TEST(SyncMapConcurrency, CompareAndSwapChainsEndExact) {
  SyncMap<int, long> m;
  constexpr int keys = 4;
  for (int k = 0; k < keys; ++k) m.store(k, 0);
  const int per_thread = static_cast<int>(scaled(20'000, 4));
  std::atomic<long> failures{0};
  run_threads(k_threads, [&](unsigned t) {
    for (int i = 0; i < per_thread; ++i) {
      const int k = static_cast<int>((i + t) % keys);
      for (;;) {
        const long cur = *m.load(k);
        if (m.compare_and_swap(k, cur, cur + 1)) break;
        failures.fetch_add(1, std::memory_order_relaxed);
      }
    }
  });
  long total = 0;
  for (int k = 0; k < keys; ++k) total += *m.load(k);
  EXPECT_EQ(total, static_cast<long>(k_threads) * per_thread);
}

TEST(SyncMapConcurrency, RangeDuringWritesSeesEachKeyAtMostOnceWithItsOwnValues) {
  SyncMap<int, long> m;
  constexpr int keys = 256;
  constexpr long stride = 1'000'000;  // value = key + stride * generation
  const int writes = static_cast<int>(scaled(40'000, 4));
  std::atomic<int> writers_done{0};
  std::atomic<long> ranges{0};
  constexpr unsigned writers = k_threads / 2;
  run_threads(k_threads, [&](unsigned t) {
    if (t < writers) {
      test_rng rng(t + 1);
      for (int i = 0; i < writes; ++i) {
        const int k = static_cast<int>(rng.below(keys));
        const long v = k + stride * (i + 1);
        switch (rng.below(5)) {
          case 0:
            m.erase(k);
            break;
          case 1:
            m.compute(k, [v](std::optional<long>) { return std::optional<long>(v); });
            break;
          case 2:
            (void)m.swap(k, v);
            break;
          default: {
            const int shift = static_cast<int>(rng.below(2)) * keys;  // some keys beyond
            m.store(k + shift, v + shift);
          }
        }
      }
      writers_done.fetch_add(1);
    } else {
      std::vector<int> seen(2 * keys);
      do {
        std::fill(seen.begin(), seen.end(), 0);
        m.range([&](const int& k, const long& v) {
          EXPECT_GE(k, 0);
          EXPECT_LT(k, 2 * keys);
          EXPECT_EQ(++seen[static_cast<std::size_t>(k)], 1) << "key " << k << " seen twice";
          EXPECT_EQ(v % stride, k) << "key " << k << " has a value never stored for it: " << v;
        });
        ranges.fetch_add(1);
      } while (writers_done.load() < static_cast<int>(writers));
    }
  });
  EXPECT_GT(ranges.load(), 0);
}

// Every operation from 8 threads on a small key space; the map's own accounting must agree
// with itself at the end, and version must never go backwards.
TEST(SyncMapConcurrency, MixedStressOfAMillionOperationsKeepsTheMapConsistent) {
  SyncMap<int, int> m;
  constexpr std::size_t total_ops = 1'000'000;
  constexpr std::size_t per_thread = total_ops / k_threads;
  constexpr int keys = 512;
  std::atomic<std::size_t> done{0};
  run_threads(k_threads, [&](unsigned t) {
    test_rng rng(1000 + t);
    std::uint64_t last_version = 0;
    std::size_t ops = 0;
    for (std::size_t i = 0; i < per_thread; ++i, ++ops) {
      const int k = static_cast<int>(rng.below(t % 2 == 0 ? keys : keys / 8));
      const int v = static_cast<int>(rng.below(16));
      switch (rng.below(20)) {
        case 0:
          (void)m.load(k);
          break;
        case 1:
          (void)m.contains(k);
          break;
        case 2:
          m.visit(k, [](const int& x) { EXPECT_GE(x, 0); });
          break;
        case 3:
          m.store(k, v);
          break;
        case 4:
          (void)m.load_or_store(k, v);
          break;
        case 5:
          (void)m.load_and_delete(k);
          break;
        case 6:
          m.erase(k);
          break;
        case 7:
          (void)m.swap(k, v);
          break;
        case 8:
          m.compare_and_swap(k, v, (v + 1) % 16);
          break;
        case 9:
          m.compare_and_delete(k, v);
          break;
        case 10:
          m.compute(k, [v](std::optional<int> cur) -> std::optional<int> {
            if (cur && *cur == v) return std::nullopt;
            return (cur.value_or(0) + 1) % 16;
          });
          break;
        case 11:
          if (rng.below(64) == 0) {
            int n = 0;
            m.range([&](const int&, const int& x) {
              EXPECT_LT(x, 16);
              return ++n < 64;
            });
          } else {
            (void)m.load(k + keys);  // a miss
          }
          break;
        case 12:
          if (rng.below(2000) == 0) m.clear();
          break;
        case 13:
          if (rng.below(500) == 0) {
            EXPECT_LE(m.snapshot().size(), static_cast<std::size_t>(keys));
          }
          break;
        default: {
          (void)m.load(k);
          const std::uint64_t now = m.version();
          EXPECT_GE(now, last_version);
          last_version = now;
        }
      }
    }
    done.fetch_add(ops);
  });
  EXPECT_EQ(done.load(), total_ops);
  std::size_t counted_entries = 0;
  m.range([&](const int&, const int&) { ++counted_entries; });
  EXPECT_EQ(m.size(), counted_entries);
  EXPECT_EQ(m.snapshot().size(), counted_entries);
  const auto s = m.stats();
  EXPECT_EQ(s.size, counted_entries);
  EXPECT_GT(s.promotions, 0u);
  EXPECT_GT(s.expunged, 0u);
}

// ---- reclamation ------------------------------------------------------------------------------

struct churn_key_tag {};
struct churn_value_tag {};

TEST(SyncMapReclamation, EveryKeyAndValueIsDestroyedExactlyOnceAfterChurn) {
  using key = counted<churn_key_tag>;
  using value = counted<churn_value_tag>;
  auto& kc = key::counters();
  auto& vc = value::counters();
  kc.reset();
  vc.reset();
  {
    SyncMap<key, value, value_hash> m;
    const int per_thread = static_cast<int>(scaled(30'000, 4));
    run_threads(k_threads, [&](unsigned t) {
      test_rng rng(77 + t);
      for (int i = 0; i < per_thread; ++i) {
        const int k = static_cast<int>(rng.below(64));
        const int v = static_cast<int>(rng.below(8));
        switch (rng.below(10)) {
          case 0:
            (void)m.swap(key(k), value(v));
            break;
          case 1:
            m.erase(key(k));
            break;
          case 2:
            (void)m.load_and_delete(key(k));
            break;
          case 3:
            m.compare_and_swap(key(k), value(v), value(v + 1));
            break;
          case 4:
            m.compare_and_delete(key(k), value(v));
            break;
          case 5:
            m.compute(key(k), [v](std::optional<value> cur) -> std::optional<value> {
              if (cur && cur->value() == v) return std::nullopt;
              return value(v);
            });
            break;
          case 6:
            (void)m.load_or_store(key(k), value(v));
            break;
          case 7:
            if (rng.below(500) == 0) {
              m.clear();
            } else {
              (void)m.load(key(k + 64));
            }
            break;
          case 8:
            m.range([](const key&, const value& x) { EXPECT_TRUE(x.alive()); });
            break;
          default:
            m.store(key(k), value(v));
        }
      }
    });
    // Quiescent: after the grace periods, exactly the values in the map are alive.
    safemap::rcu::barrier();
    EXPECT_EQ(vc.live.load(), static_cast<long>(m.size()));
    EXPECT_EQ(vc.bad_destroys.load(), 0);
  }
  safemap::rcu::barrier();
  EXPECT_EQ(vc.live.load(), 0);
  EXPECT_EQ(kc.live.load(), 0);
  EXPECT_EQ(vc.bad_destroys.load(), 0);
  EXPECT_EQ(kc.bad_destroys.load(), 0);
}

struct dtor_value_tag {};

TEST(SyncMapReclamation, DestructorFreesValuesInBothMapsOnce) {
  using value = counted<dtor_value_tag>;
  auto& vc = value::counters();
  vc.reset();
  {
    SyncMap<int, value> m;
    for (int k = 0; k < 32; ++k) m.store(k, value(k));
    promote_by_misses(m);
    for (int k = 0; k < 32; k += 4) m.erase(k);
    for (int k = 32; k < 40; ++k) m.store(k, value(k));  // dirty: read's live + new; expunged
    m.store(0, value(0));                                // un-expunged
    m.store(50, value(50));
    EXPECT_TRUE(m.compare_and_delete(50, value(50)));  // a nil dirty-only entry
    ASSERT_TRUE(m.stats().has_dirty);
    safemap::rcu::barrier();
    EXPECT_EQ(vc.live.load(), static_cast<long>(m.size()));
  }
  safemap::rcu::barrier();
  EXPECT_EQ(vc.live.load(), 0);
  EXPECT_EQ(vc.bad_destroys.load(), 0);
}

// ---- re-entrancy ------------------------------------------------------------------------------

TEST(SyncMapReentrancy, RangeCallbackMayCallEveryMethodOfTheSameMap) {
  SyncMap<int, int> m;
  store_range(m, 0, 20);
  int calls = 0;
  m.range([&](const int& k, const int& v) {
    ++calls;
    EXPECT_EQ(m.load(k), v);
    m.store(k + 100, v);  // new keys: dirty_locked, amended, while the walk goes on
    m.erase(k + 100);
    m.store(k, v + 1);
    EXPECT_EQ(m.compute(k, [](std::optional<int> x) { return std::optional<int>(*x + 1); }), v + 2);
    EXPECT_EQ(m.load_or_store(k + 200, 1).second, false);
    EXPECT_EQ(m.load_and_delete(k + 200), 1);
    EXPECT_TRUE(m.compare_and_swap(k, v + 2, v));
    int inner = 0;
    m.range([&](const int&, const int&) { ++inner; });  // promotes the amended dirty map
    EXPECT_GE(inner, 20);
    (void)m.snapshot();
    (void)m.stats();
  });
  EXPECT_EQ(calls, 20);
  EXPECT_EQ(m.size(), 20u);
  for (int k = 0; k < 20; ++k) EXPECT_EQ(m.load(k), k * 10);
  // Clearing from inside range ends the walk's view of the old entries without harm.
  int seen = 0;
  m.range([&](const int&, const int&) {
    ++seen;
    m.clear();
  });
  EXPECT_GE(seen, 1);
  EXPECT_EQ(m.size(), 0u);
}

TEST(SyncMapReentrancy, VisitAndComputeCallbacksMayCallTheSameMap) {
  SyncMap<int, int> m;
  m.store(1, 10);
  EXPECT_TRUE(m.visit(1, [&](const int& v) {
    m.store(2, v);
    m.store(1, v + 1);  // replaces the box; v stays valid until visit returns
    EXPECT_EQ(v, 10);
  }));
  EXPECT_EQ(m.load(1), 11);
  // compute's f reads other keys of the map and stores on the absent path (f is called
  // before mu_ is taken there).
  EXPECT_EQ(m.compute(3,
                      [&](std::optional<int> cur) {
                        m.store(4, 40);
                        return std::optional<int>(cur.value_or(0) + *m.load(2));
                      }),
            10);
  EXPECT_EQ(
      m.compute(1, [&](std::optional<int> cur) { return std::optional<int>(*cur + *m.load(4)); }),
      51);
  EXPECT_EQ(m.load(4), 40);
}

}  // namespace
