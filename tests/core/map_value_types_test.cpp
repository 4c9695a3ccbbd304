// safemap::Map with demanding key and value types: move-only keys and values, instance
// counting (no leak, no double destruction, no stray copies), and constructors that throw
// (the strong guarantee of a single insert, through growths, with both relocation paths).
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>

#include "safemap/map.hpp"
#include "support/counted.hpp"
#include "support/reference_model.hpp"
#include "support/throwing.hpp"

namespace safemap_test {
namespace {

// --- move-only types
// -------------------------------------------------------------------------------

TEST(MapValueTypes, UniquePtrValuesSurviveGrowthsErasesAndMoves) {
  safemap::Map<int, std::unique_ptr<int>> m;
  for (int i = 0; i < 5000; ++i) {
    auto [p, inserted] = m.try_emplace(i, std::make_unique<int>(i));
    ASSERT_TRUE(inserted);
    ASSERT_EQ(**p, i);
  }
  for (int i = 0; i < 5000; i += 3) m.insert_or_assign(i, std::make_unique<int>(-i));
  for (int i = 1; i < 5000; i += 3) ASSERT_EQ(m.erase(i), 1u);
  m[100000] = std::make_unique<int>(7);
  safemap::Map<int, std::unique_ptr<int>> moved(std::move(m));
  for (int i = 0; i < 5000; ++i) {
    const std::unique_ptr<int>* p = moved.find(i);
    if (i % 3 == 1) {
      ASSERT_EQ(p, nullptr);
    } else {
      ASSERT_NE(p, nullptr);
      ASSERT_EQ(**p, i % 3 == 0 ? -i : i);
    }
  }
  int sum = 0;
  for (auto& [k, v] : moved) sum += v ? 1 : 0;
  EXPECT_EQ(sum, static_cast<int>(moved.size()));
}

TEST(MapValueTypes, MoveOnlyKeysAreInsertedFoundAndErased) {
  using key = move_only<int>;
  safemap::Map<key, move_only<std::string>, value_hash> m;
  for (int i = 0; i < 3000; ++i) {
    auto [v, inserted] = m.try_emplace(key(i), "v" + std::to_string(i));
    ASSERT_TRUE(inserted);
  }
  EXPECT_FALSE(m.try_emplace(key(5), "again").second);
  EXPECT_TRUE(m.insert_or_assign(key(3000), move_only<std::string>("x")));
  EXPECT_FALSE(m.insert_or_assign(key(3000), move_only<std::string>("y")));
  EXPECT_EQ(m.at(key(3000)).value(), "y");
  m[key(3001)];
  EXPECT_EQ(m.at(key(3001)).value(), "");
  for (int i = 0; i < 3000; i += 2) ASSERT_EQ(m.erase(key(i)), 1u);
  for (int i = 0; i < 3000; ++i) {
    const auto* v = m.find(key(i));
    if (i % 2 == 0) {
      ASSERT_EQ(v, nullptr);
    } else {
      ASSERT_NE(v, nullptr);
      ASSERT_EQ(v->value(), "v" + std::to_string(i));
    }
  }
}

// --- instance counting ---------------------------------------------------------------------------

struct lifecycle_tag {};
using lc = counted<lifecycle_tag>;

TEST(MapValueTypes, InstanceCountMatchesSizeAndReturnsToZero) {
  lc::counters().reset();
  {
    safemap::Map<lc, lc, value_hash> m;
    test_rng rng(5);
    for (int round = 0; round < 40000; ++round) {
      const int k = static_cast<int>(rng.below(6000));
      switch (rng.below(5)) {
        case 0:
          m.insert_or_assign(k, k);
          break;
        case 1:
          m.try_emplace(k, k);
          break;
        case 2:
          m[k] = k;
          break;
        default:
          m.erase(k);
      }
      // Keys and values: exactly two live instances per entry between operations.
      ASSERT_EQ(lc::counters().live, 2 * static_cast<long>(m.size())) << "round " << round;
    }
    {
      safemap::Map<lc, lc, value_hash> copy(m);
      ASSERT_EQ(lc::counters().live, 4 * static_cast<long>(m.size()));
      safemap::Map<lc, lc, value_hash> moved(std::move(copy));
      ASSERT_EQ(lc::counters().live, 4 * static_cast<long>(m.size()));
      moved = m;
      moved.clear();
      ASSERT_EQ(lc::counters().live, 2 * static_cast<long>(m.size()));
    }
    for (auto it = m.begin(); it != m.end(); ++it) m.erase(it->first);  // erase during iteration
    EXPECT_TRUE(m.empty());
    EXPECT_EQ(lc::counters().live, 0);
    for (int i = 0; i < 1000; ++i) m.try_emplace(i, i);
  }
  EXPECT_EQ(lc::counters().live, 0) << "leaked instances";
  EXPECT_EQ(lc::counters().bad_destroys, 0) << "instances destroyed twice";
}

// clear() under a live iterator keeps every bucket and the growth state (the walk may stand on
// any bucket) and destroys the entries in place, visiting the chains of both arrays: the old
// array's unevacuated buckets and the new array's evacuated ones. Each entry must be destroyed
// exactly once, wherever it lives.
TEST(MapValueTypes, ClearUnderAnIteratorMidGrowthDestroysEachEntryOfBothArraysOnce) {
  lc::counters().reset();
  {
    safemap::Map<lc, lc, value_hash> m;
    int next = insert_until_growing(m, 0, 64);
    // Let the growth evacuate part of the old array, so that both arrays hold entries.
    while (m.stats().evacuated * 4 < m.stats().old_buckets) {
      m.insert_or_assign(next, next);
      ++next;
    }
    const safemap::MapStats before = m.stats();
    ASSERT_TRUE(before.growing);
    ASSERT_GT(before.evacuated, 0u);
    ASSERT_LT(before.evacuated, before.old_buckets);
    ASSERT_EQ(lc::counters().live, 2 * static_cast<long>(m.size()));
    {
      const auto it = m.begin();  // pins the table: clear keeps both arrays
      m.clear();
      EXPECT_EQ(lc::counters().live, 0) << "entries left alive by clear";
      EXPECT_EQ(lc::counters().bad_destroys, 0) << "entries destroyed twice by clear";
      EXPECT_TRUE(m.stats().growing) << "clear under an iterator dropped the growth";
      EXPECT_EQ(m.size(), 0u);
    }
    for (int i = 0; i < next; ++i) m.try_emplace(i, -i);
    ASSERT_EQ(lc::counters().live, 2 * static_cast<long>(next));
    for (int i = 0; i < next; ++i) ASSERT_EQ(m.at(i), lc(-i)) << i;
  }
  EXPECT_EQ(lc::counters().live, 0) << "leaked instances";
  EXPECT_EQ(lc::counters().bad_destroys, 0) << "instances destroyed twice";
}

TEST(MapValueTypes, GrowthRelocatesByMovingWhenMovesAreNoexcept) {
  lc::counters().reset();
  {
    safemap::Map<int, lc> m;
    for (int i = 0; i < 20000; ++i) m.try_emplace(i, i);
    EXPECT_EQ(lc::counters().copies, 0) << "copied a nothrow-movable value";
    EXPECT_EQ(lc::counters().value_constructed, 20000);
  }
  EXPECT_EQ(lc::counters().live, 0);
  EXPECT_EQ(lc::counters().bad_destroys, 0);
}

// --- throwing constructors -----------------------------------------------------------------------

// Runs random single-entry operations with fault injection on and checks after every
// operation that threw that the map still equals the reference (strong guarantee), and after
// every one that did not that it did what the reference did.
template <class K, class V>
void run_with_faults(std::uint64_t seed, int rounds, int key_space) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  fault_injector::local().configure(seed, 7);
  safemap::Map<K, V, value_hash> m;
  std::unordered_map<int, int> ref;  // key value -> mapped value
  auto check = [&](int round) -> testing::AssertionResult {
    if (m.size() != ref.size()) {
      return testing::AssertionFailure() << "size " << m.size() << " vs " << ref.size();
    }
    std::size_t visited = 0;
    for (const auto& [k, v] : m) {
      ++visited;
      auto r = ref.find(k.value());
      if (r == ref.end() || r->second != v.value()) {
        return testing::AssertionFailure() << "round " << round << ": key " << k.value();
      }
    }
    if (visited != ref.size()) return testing::AssertionFailure() << "visited " << visited;
    for (const auto& [k, v] : ref) {
      const V* found = m.find(K(k));
      if (found == nullptr || found->value() != v) {
        return testing::AssertionFailure() << "round " << round << ": find(" << k << ")";
      }
    }
    return testing::AssertionSuccess();
  };
  test_rng rng(seed);
  int faults = 0;
  bool saw_growth_fault = false;
  for (int round = 0; round < rounds; ++round) {
    const int k = static_cast<int>(rng.below(static_cast<std::uint64_t>(key_space)));
    const int v = round;
    const unsigned op = static_cast<unsigned>(rng.below(40));
    const bool growing_before = m.stats().growing;
    if (rng.chance(1, 1500)) {  // start over, so the map grows again and again
      m = safemap::Map<K, V, value_hash>();
      ref.clear();
    }
    try {
      fault_scope faults_on;
      if (op < 12) {
        if (m.insert_or_assign(K(k), V(v))) {
          ref.emplace(k, v);
        } else {
          ref[k] = v;
        }
      } else if (op < 20) {
        if (m.try_emplace(K(k), v).second) ref.emplace(k, v);
      } else if (op < 24) {
        m[K(k)] = V(v);
        ref[k] = v;
      } else if (op < 34) {
        const std::size_t erased = m.erase(K(k));  // before touching ref: it may throw
        ASSERT_EQ(erased, ref.erase(k));
      } else if (op < 35) {
        safemap::Map<K, V, value_hash> copy(m);  // copying may throw too
        ASSERT_EQ(copy.size(), m.size());
      } else if (op < 36) {
        m.reserve(m.size() + static_cast<std::size_t>(rng.below(64)));
      } else {
        const V* found = m.find(K(k));
        ASSERT_EQ(found != nullptr, ref.count(k) == 1);
      }
    } catch (const injected_fault&) {
      ++faults;
      saw_growth_fault = saw_growth_fault || growing_before || m.stats().growing;
      ASSERT_TRUE(check(round)) << "after an exception in op " << op;
      continue;
    }
    if (round % 64 == 0) {
      ASSERT_TRUE(check(round)) << "op " << op;
    }
  }
  EXPECT_GT(faults, rounds / 50) << "fault injection did not fire";
  EXPECT_TRUE(saw_growth_fault) << "no exception happened during a growth";
  ASSERT_TRUE(check(rounds));
  ASSERT_TRUE(stats_consistent(m));
}

struct ctor_key_tag {};
struct ctor_value_tag {};
struct copy_key_tag {};
struct copy_value_tag {};

TEST(MapValueTypes, ThrowingValueConstructorWithNoexceptMoveKeepsTheStrongGuarantee) {
  using V = throwing_ctor_value<ctor_value_tag>;
  V::counters().reset();
  for (std::uint64_t seed : {1u, 2u}) run_with_faults<counted<ctor_key_tag>, V>(seed, 15000, 1000);
  EXPECT_EQ(V::counters().live, 0);
  EXPECT_EQ(V::counters().bad_destroys, 0);
  EXPECT_EQ(counted<ctor_key_tag>::counters().live, 0);
}

TEST(MapValueTypes, ThrowingCopyWithoutNoexceptMoveKeepsTheStrongGuaranteeThroughGrowths) {
  using V = throwing_copy_value<copy_value_tag>;
  V::counters().reset();
  for (std::uint64_t seed : {4u, 5u}) run_with_faults<counted<copy_key_tag>, V>(seed, 15000, 1000);
  EXPECT_EQ(V::counters().live, 0);
  EXPECT_EQ(V::counters().bad_destroys, 0);
}

TEST(MapValueTypes, ThrowingKeyAndValueCopiesKeepTheStrongGuaranteeThroughGrowths) {
  using K = throwing_copy_value<copy_key_tag>;
  using V = throwing_copy_value<copy_value_tag>;
  K::counters().reset();
  V::counters().reset();
  for (std::uint64_t seed : {7u}) run_with_faults<K, V>(seed, 15000, 1000);
  EXPECT_EQ(K::counters().live, 0);
  EXPECT_EQ(V::counters().live, 0);
  EXPECT_EQ(K::counters().bad_destroys + V::counters().bad_destroys, 0);
}

TEST(MapValueTypes, ThrowingKeyConstructorLeavesTheMapUnchanged) {
  using K = throwing_ctor_value<ctor_key_tag>;
  K::counters().reset();
  {
    safemap::Map<K, int, value_hash> m;
    for (int i = 0; i < 100; ++i) m.insert_or_assign(K(i), i);
    fault_injector::local().configure(9, 1);  // every fault point throws
    const K key(1000);
    {
      fault_scope on;
      // try_emplace takes K by value: copying key throws before the map is entered; the
      // map must be untouched and the key not inserted.
      EXPECT_THROW(m.try_emplace(key, 1), injected_fault);
      EXPECT_THROW(m[key], injected_fault);
    }
    EXPECT_EQ(m.size(), 100u);
    EXPECT_FALSE(m.contains(K(1000)));
  }
  EXPECT_EQ(K::counters().live, 0);
}

}  // namespace
}  // namespace safemap_test
