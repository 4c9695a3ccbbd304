// Go's iteration semantics for safemap::Map (map.hpp "# Iteration"): erasing and inserting
// through the iterating thread never breaks the walk; every entry present for the whole
// iteration is visited exactly once, entries inserted or erased during it at most once; and
// while an iterator is live the table does not start or advance a growth (so nothing moves
// under it), which resumes once the iterator reaches end() or is destroyed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "safemap/map.hpp"
#include "support/degenerate_hash.hpp"
#include "support/reference_model.hpp"

namespace safemap_test {
namespace {

enum class start_state { quiet, growing, same_size_growing };

const char* name_of(start_state s) {
  switch (s) {
    case start_state::quiet:
      return "quiet";
    case start_state::growing:
      return "growing";
    case start_state::same_size_growing:
      return "same-size-growing";
  }
  return "?";
}

// One map plus its reference, and a supply of keys never used before.
template <class M>
struct fixture {
  M m;
  std::unordered_map<std::uint64_t, std::uint64_t> ref;
  std::vector<std::uint64_t> keys;  // every key of this round, present or not
  std::uint64_t fresh = 1;

  std::uint64_t insert_fresh(std::uint64_t value) {
    const std::uint64_t k = fresh++ * 0x9e3779b97f4a7c15ULL;  // spread, never repeated
    EXPECT_TRUE(m.insert_or_assign(k, value));
    ref[k] = value;
    keys.push_back(k);
    return k;
  }
  void erase(std::uint64_t k) { EXPECT_EQ(m.erase(k), ref.erase(k)); }
};

// Brings f to the requested state with about n entries. Returns false when the state could
// not be reached (tiny tables finish a growth within the insert that starts it).
template <class M>
bool prepare(fixture<M>& f, test_rng& rng, std::size_t n, start_state state) {
  for (std::size_t i = 0; i < n; ++i) f.insert_fresh(rng.next());
  while (f.m.stats().growing) f.m.erase(0);  // finish a growth in progress: start known
  switch (state) {
    case start_state::quiet:
      return true;
    case start_state::growing:
      for (int i = 0; i < 100000 && !f.m.stats().growing; ++i) f.insert_fresh(rng.next());
      return f.m.stats().growing;
    case start_state::same_size_growing:
      // Churn at constant size near full load until a same-size growth is under way.
      for (int i = 0; i < 200000; ++i) {
        const auto s = f.m.stats();
        if (s.growing && s.same_size_grow) return true;
        if (s.growing) {  // a doubling: let it finish
          f.m.erase(0);
          continue;
        }
        const std::size_t full = std::max<std::size_t>(s.buckets, 8) * 64 / 10;
        if (f.ref.size() < full || f.keys.empty()) {
          f.insert_fresh(rng.next());
        } else {
          const std::size_t j = rng.below(f.keys.size());
          f.erase(f.keys[j]);
          f.keys[j] = f.keys.back();
          f.keys.pop_back();
        }
      }
      return false;
  }
  return false;
}

// How an iteration walks the map: an iterator from begin() to end(), or Map::for_each (its
// own loop, map_iterator::walk, with the same semantics).
enum class walk_kind { iterator, for_each };

// One iteration over f.m with random same-thread mutations, checked against f.ref.
template <class M>
void iterate_with_mutations(fixture<M>& f, test_rng& rng, const std::string& where, walk_kind how) {
  const auto shape = f.m.stats();
  std::unordered_set<std::uint64_t> initial;
  for (const auto& kv : f.ref) initial.insert(kv.first);
  std::unordered_set<std::uint64_t> erased_during;
  std::unordered_map<std::uint64_t, int> visits;
  const unsigned mutate_one_in = 1 + static_cast<unsigned>(rng.below(4));

  // One visit: the entry (k, v) the walk stands on.
  const auto visit = [&](const std::uint64_t k, std::uint64_t& v) {
    auto r = f.ref.find(k);
    ASSERT_NE(r, f.ref.end()) << "visited key " << k << " which is not in the map, " << where;
    ASSERT_EQ(v, r->second) << "value of key " << k << ", " << where;
    ASSERT_EQ(++visits[k], 1) << "visited key " << k << " twice, " << where;
    if (!rng.chance(1, mutate_one_in)) return;

    switch (rng.below(7)) {
      case 0:  // erase the current entry
        ASSERT_EQ(f.m.erase(k), 1u) << where;
        f.ref.erase(k);
        erased_during.insert(k);
        break;
      case 1:
      case 2: {  // erase some other entry, visited or not
        const std::uint64_t victim = f.keys[rng.below(f.keys.size())];
        if (f.ref.count(victim) != 0) erased_during.insert(victim);
        f.erase(victim);
        break;
      }
      case 3:
      case 4: {  // insert fresh entries (may or may not be visited)
        const int n = 1 + static_cast<int>(rng.below(4));
        for (int i = 0; i < n; ++i) f.insert_fresh(rng.next());
        break;
      }
      case 5:  // write through the iterator (the callback's reference)
        v = rng.next();
        f.ref[k] = v;
        break;
      default: {  // overwrite another entry through the map
        const std::uint64_t other = f.keys[rng.below(f.keys.size())];
        if (f.ref.count(other) != 0) {
          const std::uint64_t v = rng.next();
          ASSERT_FALSE(f.m.insert_or_assign(other, v)) << where;
          f.ref[other] = v;
        }
      }
    }
    // Nothing moves while the iterator is live.
    const auto now = f.m.stats();
    ASSERT_EQ(now.log2_buckets, shape.log2_buckets) << "B changed during iteration, " << where;
    ASSERT_EQ(now.growing, shape.growing) << "growth state changed during iteration, " << where;
    ASSERT_EQ(now.same_size_grow, shape.same_size_grow) << where;
    ASSERT_EQ(now.evacuated, shape.evacuated) << "evacuated during iteration, " << where;
  };
  if (how == walk_kind::iterator) {
    for (auto it = f.m.begin(); it != f.m.end() && !testing::Test::HasFatalFailure(); ++it) {
      visit(it->first, it->second);
    }
  } else {
    f.m.for_each([&](const std::uint64_t& k, std::uint64_t& v) {
      visit(k, v);
      return !testing::Test::HasFatalFailure();
    });
  }
  if (testing::Test::HasFatalFailure()) return;

  for (std::uint64_t k : initial) {
    if (erased_during.count(k) == 0) {
      ASSERT_EQ(visits[k], 1) << "key " << k << " present throughout was visited " << visits[k]
                              << " times, " << where;
    }
  }
  ASSERT_TRUE(same_contents(f.m, f.ref)) << "after the iteration, " << where;
}

struct iteration_case {
  const char* name;
  start_state state;
  int rounds;
  std::size_t max_size;
  bool constant_hash;
};

void PrintTo(const iteration_case& c, std::ostream* os) {
  *os << c.name;
}

class MapIterationWithMutation : public testing::TestWithParam<iteration_case> {};

template <class M>
void run_case(const iteration_case& c, std::uint64_t seed, walk_kind how) {
  test_rng rng(seed);
  int reached = 0;
  for (int round = 0; round < c.rounds; ++round) {
    const std::string where = std::string(name_of(c.state)) + " round " + std::to_string(round) +
                              " (seed " + std::to_string(seed) + ")";
    fixture<M> f;
    const std::size_t n = static_cast<std::size_t>(rng.below(c.max_size + 1));
    if (!prepare(f, rng, n, c.state)) continue;
    ++reached;
    const auto shape = f.m.stats();
    if (c.state != start_state::quiet) {
      ASSERT_TRUE(shape.growing) << where;
    }
    ASSERT_NO_FATAL_FAILURE(iterate_with_mutations(f, rng, where, how));
    // The growth resumes and completes once the iterator is gone. (Key 0 is never a fresh
    // key; an insert and an erase are two writes even when the map is empty.)
    for (int i = 0; f.m.stats().growing; ++i) {
      ASSERT_LT(i, 1 << 20) << "growth never finished, " << where;
      f.m.insert_or_assign(0, 0);
      f.m.erase(0);
    }
    ASSERT_TRUE(same_contents(f.m, f.ref)) << "after the growth, " << where;
    ASSERT_TRUE(stats_consistent(f.m)) << where;
  }
  EXPECT_GE(reached, c.rounds / 2) << "could not reach the start state often enough";
}

void run_case(const iteration_case& c, walk_kind how) {
  if (c.constant_hash) {
    run_case<safemap::Map<std::uint64_t, std::uint64_t, constant_hash>>(c, 100, how);
  } else {
    run_case<safemap::Map<std::uint64_t, std::uint64_t>>(c, 200, how);
  }
}

TEST_P(MapIterationWithMutation, EntriesPresentThroughoutAreVisitedExactlyOnce) {
  run_case(GetParam(), walk_kind::iterator);
}

TEST_P(MapIterationWithMutation, ForEachVisitsEntriesPresentThroughoutExactlyOnce) {
  run_case(GetParam(), walk_kind::for_each);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MapIterationWithMutation,
    testing::Values(
        iteration_case{"Quiet", start_state::quiet, 150, 1500, false},
        iteration_case{"DuringGrowth", start_state::growing, 100, 1500, false},
        iteration_case{"DuringSameSizeGrowth", start_state::same_size_growing, 60, 400, false},
        iteration_case{"ConstantHashQuiet", start_state::quiet, 200, 150, true},
        iteration_case{"ConstantHashDuringGrowth", start_state::growing, 200, 150, true}),
    [](const testing::TestParamInfo<iteration_case>& info) { return info.param.name; });

// --- pinning
// ---------------------------------------------------------------------------------------

using int_map = safemap::Map<int, int>;

// Fills m with 0..n-1 up to exactly the doubling threshold of its current table, so the next
// insert of a new key would start a growth.
int fill_to_threshold(int_map& m) {
  int n = 0;
  for (;;) {
    m.insert_or_assign(n, n);
    ++n;
    while (m.stats().growing) m.erase(-1);
    const auto s = m.stats();
    if (s.log2_buckets >= 4 && 2 * (s.size + 1) > 13 * s.buckets) return n;
  }
}

TEST(MapIterationPinning, InsertsDuringIterationDoNotStartGrowthUntilTheIteratorEnds) {
  int_map m;
  int n = fill_to_threshold(m);
  const auto before = m.stats();
  auto it = m.begin();
  const int first = it->first;
  const int extra = 5 * n;
  for (int i = 0; i < extra; ++i) {
    m.insert_or_assign(n, n);
    ++n;
    const auto s = m.stats();
    ASSERT_EQ(s.log2_buckets, before.log2_buckets) << "grew under a live iterator";
    ASSERT_FALSE(s.growing) << "grew under a live iterator";
  }
  EXPECT_GT(m.stats().overflow_buckets, before.overflow_buckets) << "chains should absorb them";
  EXPECT_EQ(it->first, first);  // the entry under the iterator did not move
  EXPECT_EQ(it->second, first);
  std::size_t visited = 1;
  for (++it; it != m.end(); ++it) ++visited;
  EXPECT_GE(visited, before.size);
  // The pin is released: the next insert starts the postponed growth.
  m.insert_or_assign(n, n);
  ++n;
  EXPECT_TRUE(m.stats().growing || m.stats().log2_buckets > before.log2_buckets);
  while (m.stats().growing || 2 * m.size() > 13 * m.stats().buckets) {
    m.insert_or_assign(n, n);
    ++n;
  }
  for (int i = 0; i < n; ++i) ASSERT_EQ(m.at(i), i);
  EXPECT_TRUE(stats_consistent(m));
}

TEST(MapIterationPinning, DestroyingAnUnfinishedIteratorReleasesThePin) {
  int_map m;
  int n = fill_to_threshold(m);
  const unsigned B = m.stats().log2_buckets;
  {
    auto it = m.begin();
    ++it;
    m.insert_or_assign(n, n);
    ++n;
    EXPECT_EQ(m.stats().log2_buckets, B);
  }
  m.insert_or_assign(n, n);
  EXPECT_GT(m.stats().log2_buckets, B);
}

TEST(MapIterationPinning, EveryCopyOfAnIteratorPinsUntilItEnds) {
  int_map m;
  int n = fill_to_threshold(m);
  const unsigned B = m.stats().log2_buckets;
  auto it = m.begin();
  auto copy = it;
  int_map::const_iterator as_const = it;
  while (it != m.end()) ++it;  // the original reaches end; the copies still pin
  m.insert_or_assign(n, n);
  ++n;
  EXPECT_EQ(m.stats().log2_buckets, B);
  while (copy != m.end()) ++copy;
  m.insert_or_assign(n, n);
  ++n;
  EXPECT_EQ(m.stats().log2_buckets, B) << "the const_iterator copy still pins";
  auto moved = std::move(as_const);
  moved = m.cend();  // assigning end releases it
  m.insert_or_assign(n, n);
  EXPECT_GT(m.stats().log2_buckets, B);
}

// Map::for_each pins the map as an iterator does: inserts from its callback go into chains,
// and the postponed growth starts once for_each returns, whether it ran to the end, was
// stopped, or its callback threw.
TEST(MapIterationPinning, ForEachPinsUntilItReturnsOrThrows) {
  for (int ending = 0; ending < 3; ++ending) {
    int_map m;
    int n = fill_to_threshold(m);
    const auto before = m.stats();
    const int extra = 3 * n;
    int calls = 0;
    const auto body = [&](const int&, int&) {
      if (calls++ == 0) {
        for (int i = 0; i < extra; ++i) {
          m.insert_or_assign(n, n);
          ++n;
          const auto s = m.stats();
          EXPECT_EQ(s.log2_buckets, before.log2_buckets)
              << "grew inside for_each, ending " << ending;
          EXPECT_FALSE(s.growing) << "grew inside for_each, ending " << ending;
        }
      }
      if (ending == 1) return false;  // stop at the first entry
      if (ending == 2) throw std::runtime_error("callback failed");
      return true;
    };
    if (ending == 2) {
      EXPECT_THROW(m.for_each(body), std::runtime_error);
    } else {
      m.for_each(body);
    }
    EXPECT_EQ(calls == 1, ending != 0) << "ending " << ending;
    EXPECT_GE(calls, ending == 0 ? static_cast<int>(before.size) : 1);
    m.insert_or_assign(n, n);  // the pin is gone: this insert starts the growth
    ++n;
    EXPECT_TRUE(m.stats().growing || m.stats().log2_buckets > before.log2_buckets)
        << "ending " << ending;
    for (int i = 0; i < n; ++i) ASSERT_EQ(m.at(i), i) << "ending " << ending;
  }
}

// Each walk starts at a random bucket and slot offset, as Go's does: callers cannot come to
// depend on an order. (Two walks of 4096 entries agree on their first key with probability
// about 1/512 each; 64 walks all agreeing means the start is not random.)
TEST(MapIterationOrder, EveryWalkStartsSomewhereElse) {
  int_map m;
  for (int i = 0; i < 4096; ++i) m.insert_or_assign(i, i);
  const auto first_of_for_each = [&] {
    int first = -1;
    m.for_each([&](const int& k, int&) {
      first = k;
      return false;
    });
    return first;
  };
  const int for_each_first = first_of_for_each();
  const int begin_first = m.begin()->first;
  bool for_each_moved = false;
  bool begin_moved = false;
  for (int i = 0; i < 64; ++i) {
    for_each_moved = for_each_moved || first_of_for_each() != for_each_first;
    begin_moved = begin_moved || m.begin()->first != begin_first;
  }
  EXPECT_TRUE(for_each_moved);
  EXPECT_TRUE(begin_moved);
}

TEST(MapIterationPinning, ReserveDuringIterationIsANoOp) {
  int_map m;
  for (int i = 0; i < 100; ++i) m.insert_or_assign(i, i);
  const auto before = m.stats();
  auto it = m.begin();
  m.reserve(100000);
  EXPECT_EQ(m.stats().log2_buckets, before.log2_buckets);
  std::unordered_set<int> seen;
  for (; it != m.end(); ++it) EXPECT_TRUE(seen.insert(it->first).second);
  EXPECT_EQ(seen.size(), 100u);
  m.reserve(100000);
  EXPECT_GT(m.stats().log2_buckets, before.log2_buckets);
}

// --- clear and emptying during iteration
// -------------------------------------------------------------

TEST(MapIterationClear, ClearDuringIterationEndsTheWalkSafely) {
  test_rng rng(31);
  for (int round = 0; round < 200; ++round) {
    int_map m;
    const int n = 1 + static_cast<int>(rng.below(3000));
    for (int i = 0; i < n; ++i) m.insert_or_assign(i, i);
    const bool growing = m.stats().growing;
    const int clear_at = static_cast<int>(rng.below(static_cast<std::uint64_t>(n)));
    std::unordered_set<int> after_clear;  // keys inserted after the clear
    int visited = 0;
    bool cleared = false;
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (cleared) {
        ASSERT_EQ(after_clear.count(it->first), 1u)
            << "visited " << it->first << " after clear, round " << round;
        ASSERT_EQ(it->second, -it->first);
      }
      if (visited++ == clear_at) {
        m.clear();
        cleared = true;
        EXPECT_EQ(m.stats().growing, growing) << "clear moved the table under an iterator";
        for (int k = n; k < n + 50; ++k) {
          m.insert_or_assign(k, -k);
          after_clear.insert(k);
        }
      }
    }
    ASSERT_TRUE(cleared);
    ASSERT_EQ(m.size(), 50u);
    for (int k = n; k < n + 50; ++k) ASSERT_EQ(m.at(k), -k);
    for (int k = 0; k < n; ++k) ASSERT_FALSE(m.contains(k));
    ASSERT_TRUE(stats_consistent(m));
  }
}

TEST(MapIterationClear, EmptyingTheMapDuringIterationThenInsertingIsSafe) {
  // Erasing the last entry reseeds the hasher (as Go does); entries inserted afterwards are
  // placed with the new seed while the walk goes on.
  int_map m;
  for (int i = 0; i < 500; ++i) m.insert_or_assign(i, i);
  const auto seed = m.hash_function().seed();
  bool emptied = false;
  int visited_after = 0;
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (emptied) {
      ASSERT_GE(it->first, 1000) << "visited an erased key";
      ++visited_after;
      continue;
    }
    for (int k = 0; k < 500; ++k) m.erase(k);  // the current entry too
    EXPECT_TRUE(m.empty());
    EXPECT_NE(m.hash_function().seed(), seed);
    for (int k = 1000; k < 1300; ++k) m.insert_or_assign(k, k);
    emptied = true;
  }
  EXPECT_TRUE(emptied);
  EXPECT_LE(visited_after, 300);
  EXPECT_EQ(m.size(), 300u);
  for (int k = 1000; k < 1300; ++k) ASSERT_EQ(m.at(k), k);
}

TEST(MapIterationClear, ForEachMayEraseAndInsertThroughTheMap) {
  int_map m;
  std::unordered_map<int, int> ref;
  for (int i = 0; i < 2000; ++i) {
    m.insert_or_assign(i, i);
    ref[i] = i;
  }
  int next = 2000;
  std::unordered_map<int, int> visits;
  m.for_each([&](const int& k, int& v) {
    ++visits[k];
    if (k % 3 == 0) {
      m.erase(k);
      ref.erase(k);
    } else {
      v = -v;
      ref[k] = v;
    }
    if (k % 7 == 0) {
      m.insert_or_assign(next, next);
      ref[next] = next;
      ++next;
    }
  });
  for (int i = 0; i < 2000; ++i) ASSERT_EQ(visits[i], 1) << i;
  ASSERT_TRUE(same_contents(m, ref));
}

// --- concurrent readers --------------------------------------------------------------------------

TEST(MapIterationReaders, ManyThreadsMayIterateAndLookUpAConstMapAtOnce) {
  int_map m;
  for (int i = 0; i < 5000; ++i) m.insert_or_assign(i, i * 2);
  insert_until_growing(m, 5000, 64);  // readers must also cope with a growth in progress
  const int_map& cm = m;
  const std::size_t size = cm.size();
  std::vector<std::thread> readers;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&cm, &failures, size, t] {
      for (int rep = 0; rep < 3; ++rep) {
        std::size_t n = 0;
        for (const auto& [k, v] : cm) {
          ++n;
          if (k < 5000 && v != 2 * k) ++failures[t];
        }
        if (n != size) ++failures[t];
        for (int i = 0; i < 5000; ++i) {
          const int* v = cm.find(i);
          if (v == nullptr || *v != 2 * i) ++failures[t];
        }
      }
    });
  }
  for (auto& r : readers) r.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(failures[t], 0) << "reader " << t;
}

// The walk of the concurrent maps that keep a Map unchanged while they walk it (an immutable
// snapshot, a locked shard): map_access::for_each_unsynchronized visits each entry exactly
// once, quiet or mid-growth (the old buckets' entries split by hash, as the iterator does),
// stops when asked, and changes nothing (no growth step, no pin left behind).
TEST(MapIterationUnsynchronized, VisitsEveryEntryOnceAndChangesNothing) {
  using access = safemap::detail::map_access;
  for (const start_state state :
       {start_state::quiet, start_state::growing, start_state::same_size_growing}) {
    test_rng rng(7 + static_cast<int>(state));
    const std::size_t n = state == start_state::same_size_growing ? 300 : 3000;
    fixture<safemap::Map<std::uint64_t, std::uint64_t>> f;
    for (int attempt = 0; attempt < 20 && !prepare(f, rng, n, state); ++attempt) f = {};
    ASSERT_TRUE(state == start_state::quiet || f.m.stats().growing) << name_of(state);
    const auto before = f.m.stats();
    const auto& cm = f.m;
    std::unordered_map<std::uint64_t, int> visits;
    access::for_each_unsynchronized(cm, [&](const std::uint64_t& k, const std::uint64_t& v) {
      ++visits[k];
      EXPECT_EQ(v, f.ref.at(k)) << name_of(state);
    });
    ASSERT_EQ(visits.size(), f.ref.size()) << name_of(state);
    for (const auto& [k, n] : visits) ASSERT_EQ(n, 1) << "key " << k << ", " << name_of(state);
    int calls = 0;
    access::for_each_unsynchronized(
        cm, [&](const std::uint64_t&, const std::uint64_t&) { return ++calls < 5; });
    EXPECT_EQ(calls, 5) << name_of(state);
    const auto after = f.m.stats();
    EXPECT_EQ(after.growing, before.growing) << name_of(state);
    EXPECT_EQ(after.evacuated, before.evacuated) << name_of(state);
    // No pin was left: the growth goes on (or the next one starts) with the next writes.
    std::uint64_t k = 1;
    for (int i = 0; i < 100000 && f.m.stats().growing; ++i) f.insert_fresh(k++);
    EXPECT_FALSE(f.m.stats().growing) << name_of(state);
    EXPECT_TRUE(same_contents(f.m, f.ref)) << name_of(state);
  }
}

}  // namespace
}  // namespace safemap_test
