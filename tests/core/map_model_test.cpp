// Model-based randomized tests of safemap::Map against std::unordered_map.
//
// Each run draws operations from a seeded generator in phases: "grow" phases are
// insert-heavy, "shrink" phases erase-heavy, "churn" phases balanced, each over a key space
// of its own size, so the map grows through many doublings, empties (and reseeds), and
// accumulates overflow chains from deletes. After every operation the result is compared with
// the reference; now and then the whole content (iteration and lookups), a copy, a moved
// round trip and the stats are compared too. Failures print the seed (SCOPED_TRACE) and the
// operation index, so a run can be replayed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "safemap/map.hpp"
#include "support/degenerate_hash.hpp"
#include "support/misuse_guard.hpp"
#include "support/reference_model.hpp"

namespace safemap_test {
namespace {

// A std::string-keyed map whose hasher and key_equal accept std::string_view.
template <class M>
concept transparent_string_map = std::is_same_v<typename M::key_type, std::string> && requires {
  typename M::hasher::is_transparent;
  typename M::key_equal::is_transparent;
};

struct model_options {
  std::uint64_t seed = 1;
  int ops = 100000;
  std::uint64_t max_space = 1 << 14;  // largest key space of a phase
  // Half of the writes go through detail::map_access's _unsynchronized writes (the locked
  // maps' writes: no writing bit), including the erases that hand back or test the value.
  bool unsynchronized_writes = false;
};

// What a run went through, so a test can show its phases reached the paths it is meant for.
struct model_coverage {
  int doublings = 0;
  int same_size_growths = 0;
  int emptied = 0;  // times an erase emptied the map (which reseeds it)
};

template <class M, class Ref, class KeyOf>
void run_model(M& m, const model_options& opt, KeyOf key_of, model_coverage& cov) {
  using K = typename M::key_type;
  using V = typename M::mapped_type;
  SCOPED_TRACE("model seed " + std::to_string(opt.seed));
  Ref ref;
  test_rng rng(opt.seed);
  int phase_left = 0;
  std::uint64_t space = 1;
  unsigned insert_weight = 1;
  unsigned erase_weight = 1;
  const char* phase = "";
  bool was_growing = false;
  bool continue_phase = false;
  std::vector<K> recycled;  // keys of the current recycle phase
  std::size_t recycle_window = 0;
  const std::uint64_t recycle_base = opt.max_space;
  std::uint64_t recycle_next = 0;
  int i = 0;
  auto where = [&] { return "op " + std::to_string(i) + " in a " + phase + " phase"; };

  for (i = 0; i < opt.ops; ++i) {
    if (phase_left-- <= 0) {
      ASSERT_TRUE(same_contents(m, ref)) << "end of phase before " << where();
      while (!recycled.empty()) {  // end of a recycle phase: drop its window
        ASSERT_EQ(m.erase(recycled.back()), 1u) << where();
        ref.erase(recycled.back());
        recycled.pop_back();
      }
      recycle_window = 0;
      insert_weight = erase_weight = 1;
      static constexpr std::uint64_t spaces[] = {16, 64, 512, 4096, 1 << 14, 1 << 16};
      do {
        space = spaces[rng.below(std::size(spaces))];
      } while (space > opt.max_space);
      if (rng.chance(1, 4)) {  // a fresh table (maps never shrink), so growth starts over
        m = M(0, m.hash_function());
        ref.clear();
        was_growing = false;
      }
      switch (rng.below(4)) {
        case 3: {
          // Constant size, fresh keys in, random ones out: erased slots leave overflow
          // buckets behind until a same-size growth compacts them. That happens soonest on a
          // small table near its full load (6.4 of 6.5 per bucket).
          phase = "recycle";
          const std::size_t target = static_cast<std::size_t>(6.4 * (8 << rng.below(4)));
          if (ref.size() + 16 > target) {
            m = M(0, m.hash_function());
            ref.clear();
            was_growing = false;
          }
          recycle_window = target - ref.size();
          phase_left = 8000;
          continue_phase = true;
          break;
        }
        case 0:
          phase = "grow";
          insert_weight = 9;
          erase_weight = 1;
          break;
        case 1:
          phase = "shrink";
          insert_weight = 1;
          erase_weight = 9;
          break;
        default:
          phase = "churn";
          insert_weight = 5;
          erase_weight = 5;
      }
      if (!continue_phase) phase_left = static_cast<int>(2 * space + rng.below(2 * space + 1000));
      continue_phase = false;
    }

    const K key = key_of(rng.below(space));
    const V value = static_cast<V>(rng.next());
    const unsigned total = insert_weight + erase_weight + 8;  // 8: reads
    const unsigned r = recycle_window != 0 ? 0 : static_cast<unsigned>(rng.below(total));
    if (recycle_window != 0) {
      // Keys above every phase's key space, never reused.
      const K fresh = key_of(recycle_base + recycle_next++);
      ASSERT_TRUE(m.insert_or_assign(fresh, value)) << where();
      ref.emplace(fresh, value);
      recycled.push_back(fresh);
      if (recycled.size() > recycle_window) {
        const std::size_t victim = rng.below(recycled.size());
        ASSERT_EQ(m.erase(recycled[victim]), 1u) << where();
        ref.erase(recycled[victim]);
        recycled[victim] = recycled.back();
        recycled.pop_back();
      }
      const K& probe = recycled[rng.below(recycled.size())];
      ASSERT_NE(m.find(probe), nullptr) << where();
      ASSERT_EQ(*m.find(probe), ref.at(probe)) << where();
    } else if (r < insert_weight && opt.unsynchronized_writes && rng.chance(1, 2)) {
      using access = safemap::detail::map_access;
      if (rng.chance(1, 2)) {
        const bool inserted = access::insert_or_assign_unsynchronized(m, K(key), V(value));
        ASSERT_EQ(inserted, ref.insert_or_assign(key, value).second) << where();
      } else {
        auto [p, inserted] = access::try_emplace_unsynchronized(m, K(key), value);
        auto [it, ref_inserted] = ref.try_emplace(key, value);
        ASSERT_EQ(inserted, ref_inserted) << where();
        ASSERT_EQ(*p, it->second) << where();
      }
    } else if (r < insert_weight + erase_weight && r >= insert_weight &&
               opt.unsynchronized_writes && rng.chance(1, 2)) {
      using access = safemap::detail::map_access;
      const auto it = ref.find(key);
      switch (rng.below(3)) {
        case 0:
          ASSERT_EQ(access::erase_unsynchronized(m, key), ref.erase(key)) << where();
          break;
        case 1: {
          const std::optional<V> taken = access::extract_value_unsynchronized(m, key);
          ASSERT_EQ(taken.has_value(), it != ref.end()) << where();
          if (taken) {
            ASSERT_EQ(*taken, it->second) << where();
            ref.erase(it);
          }
          break;
        }
        default: {
          // Erases only when the value is odd: both outcomes of the predicate.
          const bool odd = it != ref.end() && it->second % 2 == 1;
          ASSERT_EQ(
              access::erase_if_value_unsynchronized(m, key, [](const V& v) { return v % 2 == 1; }),
              odd ? 1u : 0u)
              << where();
          if (odd) ref.erase(it);
        }
      }
    } else if (r < insert_weight) {
      switch (rng.below(3)) {
        case 0: {
          const bool inserted = m.insert_or_assign(key, value);
          ASSERT_EQ(inserted, ref.insert_or_assign(key, value).second) << where();
          break;
        }
        case 1: {
          auto [p, inserted] = m.try_emplace(key, value);
          auto [it, ref_inserted] = ref.try_emplace(key, value);
          ASSERT_EQ(inserted, ref_inserted) << where();
          ASSERT_EQ(*p, it->second) << where();
          break;
        }
        default: {
          V& mine = m[key];
          V& theirs = ref[key];
          ASSERT_EQ(mine, theirs) << where();
          mine += value;
          theirs += value;
        }
      }
    } else if (r < insert_weight + erase_weight) {
      std::size_t erased = 0;
      if constexpr (transparent_string_map<M>) {
        erased = rng.chance(1, 2) ? m.erase(std::string_view(key)) : m.erase(key);
      } else {
        erased = m.erase(key);
      }
      ASSERT_EQ(erased, ref.erase(key)) << where();
    } else {
      const auto it = ref.find(key);
      const bool present = it != ref.end();
      switch (rng.below(5)) {
        case 0: {
          V* p = m.find(key);
          ASSERT_EQ(p != nullptr, present) << where();
          if (p != nullptr) {
            ASSERT_EQ(*p, it->second) << where();
            *p = value;  // writes through the pointer are seen later
            it->second = value;
          }
          break;
        }
        case 1: {
          const V* p = std::as_const(m).find(key);
          if constexpr (transparent_string_map<M>) {
            p = std::as_const(m).find(std::string_view(key));
          }
          ASSERT_EQ(p != nullptr, present) << where();
          if (p != nullptr) {
            ASSERT_EQ(*p, it->second) << where();
          }
          break;
        }
        case 2:
          ASSERT_EQ(m.contains(key), present) << where();
          break;
        default:
          try {
            const V& v = m.at(key);
            ASSERT_TRUE(present) << "at() found an absent key at " << where();
            ASSERT_EQ(v, it->second) << where();
          } catch (const std::out_of_range&) {
            ASSERT_FALSE(present) << "at() threw for a present key at " << where();
          }
      }
    }
    ASSERT_EQ(m.size(), ref.size()) << where();
    if (r < insert_weight + erase_weight) {  // a write: did it start a growth or empty the map?
      const auto s = m.stats();
      if (s.growing && !was_growing) ++(s.same_size_grow ? cov.same_size_growths : cov.doublings);
      was_growing = s.growing;
      if (s.size == 0 && r >= insert_weight) ++cov.emptied;
    }

    // Rare whole-map operations.
    if (rng.chance(1, 60000)) {
      m.clear();
      ref.clear();
      recycled.clear();
      was_growing = false;
    }
    if (rng.chance(1, 20000)) {
      M copy(m);
      ASSERT_TRUE(copy == m) << where();
      ASSERT_TRUE(same_contents(copy, ref)) << "copy at " << where();
      M assigned;
      assigned = copy;
      ASSERT_TRUE(same_contents(assigned, ref)) << "copy assignment at " << where();
    }
    if (rng.chance(1, 30000)) {
      M moved(std::move(m));
      ASSERT_TRUE(m.empty()) << where();  // NOLINT(bugprone-use-after-move)
      m = std::move(moved);
      ASSERT_TRUE(same_contents(m, ref)) << "move round trip at " << where();
    }
    if (rng.chance(1, 10000)) {
      ASSERT_TRUE(same_contents(m, ref)) << where();
    }
    if (rng.chance(1, 1000)) {
      ASSERT_TRUE(stats_consistent(m)) << where();
    }
  }
  ASSERT_TRUE(same_contents(m, ref)) << "at the end";
  ASSERT_TRUE(stats_consistent(m));
}

std::string seed_name(const testing::TestParamInfo<std::uint64_t>& info) {
  return "seed" + std::to_string(info.param);
}

// --- integer keys: 4 x 250,000 operations ------------------------------------------------------

class MapModelIntKeys : public testing::TestWithParam<std::uint64_t> {};

TEST_P(MapModelIntKeys, MatchesUnorderedMapOverGrowAndShrinkPhases) {
  safemap::Map<std::uint64_t, std::uint64_t> m;
  const model_options opt{GetParam(), 250000, 1 << 16};
  // Odd seeds use keys that differ only in their high bits (k << 40).
  const unsigned shift = GetParam() % 2 == 1 ? 40 : 0;
  model_coverage cov;
  run_model<decltype(m), std::unordered_map<std::uint64_t, std::uint64_t>>(
      m, opt, [shift](std::uint64_t k) { return k << shift; }, cov);
  EXPECT_GE(cov.doublings, 10);
  EXPECT_GE(cov.same_size_growths, 1);
  EXPECT_GE(cov.emptied, 1);
  RecordProperty("same_size_growths", cov.same_size_growths);
  std::printf("coverage: %d doublings, %d same-size growths, emptied %d times\n", cov.doublings,
              cov.same_size_growths, cov.emptied);
}

INSTANTIATE_TEST_SUITE_P(Seeds, MapModelIntKeys, testing::Values(1, 2, 3, 4), seed_name);

// The writes LockedMap and ShardedMap make under their exclusive lock skip the writing bit
// (detail::map_access). Mixed with the checked writes, they must give the same results and
// never leave the bit behind: a checked write after one that left it set would report
// "concurrent map writes", which throw_misuse turns into a failure here.
TEST(MapModelUnsynchronizedWrites, MatchUnorderedMapWhenMixedWithCheckedWrites) {
  scoped_misuse_handler handler(&throw_misuse);
  safemap::Map<std::uint64_t, std::uint64_t> m;
  model_options opt{5, 200000, 1 << 16};
  opt.unsynchronized_writes = true;
  model_coverage cov;
  run_model<decltype(m), std::unordered_map<std::uint64_t, std::uint64_t>>(
      m, opt, [](std::uint64_t k) { return k; }, cov);
  EXPECT_GE(cov.doublings, 5);
  EXPECT_GE(cov.emptied, 1);
}

// --- string keys -------------------------------------------------------------------------------

class MapModelStringKeys : public testing::TestWithParam<std::uint64_t> {};

TEST_P(MapModelStringKeys, MatchesUnorderedMapOverGrowAndShrinkPhases) {
  safemap::Map<std::string, std::uint32_t> m;
  const model_options opt{GetParam(), 150000, 1 << 14};
  model_coverage cov;
  run_model<decltype(m), std::unordered_map<std::string, std::uint32_t>>(
      m, opt,
      [](std::uint64_t k) {
        // Short keys and keys with a long shared prefix.
        return k % 2 == 0 ? std::to_string(k) : "a/long/shared/prefix/of/keys/" + std::to_string(k);
      },
      cov);
  EXPECT_GE(cov.doublings, 5);
}

INSTANTIATE_TEST_SUITE_P(Seeds, MapModelStringKeys, testing::Values(11, 12), seed_name);

// --- degenerate hashers: long chains, equal tophashes --------------------------------------------

TEST(MapModelDegenerateHash, ConstantHashMatchesUnorderedMap) {
  safemap::Map<std::uint64_t, std::uint64_t, constant_hash> m;
  const model_options opt{21, 100000, 512};
  model_coverage cov;
  run_model<decltype(m), std::unordered_map<std::uint64_t, std::uint64_t>>(
      m, opt, [](std::uint64_t k) { return k; }, cov);
  EXPECT_GE(cov.doublings, 3);
}

TEST(MapModelDegenerateHash, FewHashValuesMatchUnorderedMap) {
  safemap::Map<std::uint64_t, std::uint64_t, few_values_hash<16>> m;
  const model_options opt{22, 150000, 4096};
  model_coverage cov;
  run_model<decltype(m), std::unordered_map<std::uint64_t, std::uint64_t>>(
      m, opt, [](std::uint64_t k) { return k * 7919; }, cov);
  EXPECT_GE(cov.doublings, 3);
}

TEST(MapModelDegenerateHash, FewHashValuesWithStringKeysMatchUnorderedMap) {
  safemap::Map<std::string, std::uint64_t, few_values_hash<4>> m;
  const model_options opt{23, 60000, 512};
  model_coverage cov;
  run_model<decltype(m), std::unordered_map<std::string, std::uint64_t>>(
      m, opt, [](std::uint64_t k) { return std::to_string(k) + "k"; }, cov);
}

}  // namespace
}  // namespace safemap_test
