// Growth and table-shape invariants of safemap::Map (map.hpp "# Growth"), observed through
// stats(): when a doubling starts, that it is incremental (at most two old buckets per write,
// none per read), that lookups see every entry during it, and that churn with deletes
// triggers a same-size growth that compacts overflow chains.
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "safemap/map.hpp"
#include "support/degenerate_hash.hpp"
#include "support/reference_model.hpp"

namespace safemap_test {
namespace {

using int_map = safemap::Map<int, int>;

// Go's overLoadFactor: more than 8 entries and more than 6.5 per bucket.
bool over_load_factor(std::size_t count, unsigned B) {
  return count > 8 && count > 13 * ((std::size_t{1} << B) / 2);
}

TEST(MapGrowth, DoublingStartsExactlyWhenTheLoadWouldExceedSixAndAHalf) {
  int_map m;
  unsigned B = 0;
  for (int i = 0; i < 100000; ++i) {
    const auto before = m.stats();
    m.insert_or_assign(i, i);
    const auto after = m.stats();
    if (before.buckets == 0) {
      EXPECT_EQ(after.log2_buckets, 0u);  // the first insert allocates one bucket
      EXPECT_EQ(after.buckets, 1u);
      continue;
    }
    const bool should_start = !before.growing && over_load_factor(before.size + 1, B);
    if (should_start) {
      ASSERT_EQ(after.log2_buckets, B + 1) << "no doubling at size " << after.size;
      ++B;
    } else {
      ASSERT_EQ(after.log2_buckets, B) << "unexpected doubling at size " << after.size;
    }
  }
  EXPECT_GE(B, 13u);
}

TEST(MapGrowth, GrowthIsIncrementalAtMostTwoOldBucketsPerWrite) {
  int_map m;
  int next = insert_until_growing(m, 0, 1024);
  auto s = m.stats();
  ASSERT_TRUE(s.growing);
  ASSERT_FALSE(s.same_size_grow);
  EXPECT_LE(s.evacuated, 2u) << "the insert that starts a growth evacuates at most 2 buckets";
  std::size_t writes = 0;
  while (m.stats().growing) {
    const auto before = m.stats();
    if (writes % 2 == 0) {
      m.insert_or_assign(next, next);
      ++next;
    } else {
      m.erase(-1);  // an erase of an absent key is a write too: it helps the growth
    }
    ++writes;
    const auto after = m.stats();
    if (!after.growing) break;
    ASSERT_LE(after.evacuated - before.evacuated, 2u) << "write " << writes;
    ASSERT_GE(after.evacuated - before.evacuated, 1u) << "write " << writes << " did no work";
    ASSERT_EQ(after.old_buckets, s.old_buckets);
  }
  // Each write evacuates at least one bucket, so a growth ends within old_buckets writes.
  EXPECT_LE(writes, s.old_buckets);
  for (int i = 0; i < next; ++i) ASSERT_EQ(m.at(i), i);
}

TEST(MapGrowth, ReadsDoNotEvacuate) {
  int_map m;
  const int n = insert_until_growing(m, 0, 64);
  const auto before = m.stats();
  const int_map& cm = m;
  for (int r = 0; r < 3; ++r) {
    for (int i = -10; i < n + 10; ++i) {
      (void)cm.find(i);
      (void)cm.contains(i);
      (void)m.find(i);
    }
    for (const auto& kv : cm) (void)kv;
  }
  const auto after = m.stats();
  EXPECT_TRUE(after.growing);
  EXPECT_EQ(after.evacuated, before.evacuated);
}

TEST(MapGrowth, EveryEntryIsFoundAtEveryStepOfAGrowth) {
  int_map m;
  int n = insert_until_growing(m, 0, 256);
  while (m.stats().growing) {
    for (int i = 0; i < n; ++i) ASSERT_EQ(*m.find(i), i) << "key " << i << " lost during growth";
    ASSERT_EQ(m.find(n), nullptr);
    m.insert_or_assign(n, n);
    ++n;
    ASSERT_TRUE(stats_consistent(m));
  }
  for (int i = 0; i < n; ++i) ASSERT_EQ(m.at(i), i);
}

TEST(MapGrowth, ErasesDuringGrowthRemoveOnlyTheirKey) {
  int_map m;
  const int n = insert_until_growing(m, 0, 256);
  std::unordered_map<int, int> ref;
  for (int i = 0; i < n; ++i) ref[i] = i;
  for (int i = 0; m.stats().growing && i < n; i += 3) {
    ASSERT_EQ(m.erase(i), 1u);
    ref.erase(i);
  }
  ASSERT_TRUE(same_contents(m, ref));
}

TEST(MapGrowth, SameSizeGrowthCompactsOverflowChainsLeftByChurn) {
  // Churn below the doubling threshold: insert fresh keys, erase old ones. Erasing leaves
  // overflow buckets in place; once there are as many as buckets, a same-size growth must
  // compact them. Fixed seed and a never-empty map (no reseed), so this is deterministic.
  safemap::Map<std::uint64_t, std::uint64_t> m(0, safemap::Hash<std::uint64_t>(0x5a5a5a5a));
  std::unordered_map<std::uint64_t, std::uint64_t> ref;
  test_rng rng(7);
  std::vector<std::uint64_t> keys;
  fill_before_churn(m, ref, keys, rng);
  const unsigned B = m.stats().log2_buckets;
  ASSERT_EQ(B, 4u);
  bool saw_same_size = false;
  std::size_t overflow_before = 0;
  for (int round = 0; round < 100000 && !saw_same_size; ++round) {
    const std::size_t victim = rng.below(keys.size());
    m.erase(keys[victim]);
    ref.erase(keys[victim]);
    const std::uint64_t k = rng.next();
    keys[victim] = k;
    overflow_before = m.stats().overflow_buckets;
    m.insert_or_assign(k, k);
    ref[k] = k;
    const auto s = m.stats();
    ASSERT_EQ(s.log2_buckets, B) << "a doubling at constant size " << s.size;
    if (s.growing) {
      ASSERT_TRUE(s.same_size_grow);
      EXPECT_GE(overflow_before, std::size_t{1} << B);
      saw_same_size = true;
    }
  }
  ASSERT_TRUE(saw_same_size) << "churn never triggered a same-size growth";
  while (m.stats().growing) {
    ASSERT_TRUE(stats_consistent(m));
    m.erase(0);
  }
  EXPECT_LT(m.stats().overflow_buckets, overflow_before) << "same-size growth did not compact";
  EXPECT_EQ(m.stats().log2_buckets, B);
  ASSERT_TRUE(same_contents(m, ref));
}

TEST(MapGrowth, UserHasherWithoutAvalanchingIsMixedByTheTable) {
  // identity_hash gives keys i << 40 the same low bits; a table that used it as is would put
  // all of them in bucket 0 (thousands of overflow buckets).
  safemap::Map<std::uint64_t, int, identity_hash> m;
  for (std::uint64_t i = 0; i < 20000; ++i) m.insert_or_assign(i << 40, 1);
  const auto s = m.stats();
  EXPECT_LE(s.overflow_buckets, s.buckets / 2 + s.old_buckets)
      << "buckets=" << s.buckets << " overflow=" << s.overflow_buckets;
  for (std::uint64_t i = 0; i < 20000; ++i) ASSERT_TRUE(m.contains(i << 40));
}

TEST(MapGrowth, ConstantHashChainsEveryEntryInOneBucketAndStaysCorrect) {
  safemap::Map<int, int, constant_hash> m;
  std::unordered_map<int, int> ref;
  for (int i = 0; i < 400; ++i) {
    m.insert_or_assign(i, i);
    ref[i] = i;
  }
  const auto s = m.stats();
  EXPECT_GE(s.overflow_buckets + s.old_overflow_buckets, 400u / 8 - 1);
  ASSERT_TRUE(same_contents(m, ref));
  for (int i = 0; i < 400; i += 2) {
    ASSERT_EQ(m.erase(i), 1u);
    ref.erase(i);
  }
  for (int i = 1000; i < 1100; ++i) {
    m.insert_or_assign(i, i);
    ref[i] = i;
  }
  ASSERT_TRUE(same_contents(m, ref));
  ASSERT_TRUE(stats_consistent(m));
}

TEST(MapGrowth, EmptiedMapKeepsItsBucketsAndRefills) {
  int_map m;
  for (int i = 0; i < 5000; ++i) m.insert_or_assign(i, i);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(m.erase(i), 1u);
  EXPECT_TRUE(m.empty());
  EXPECT_TRUE(stats_consistent(m));
  for (int i = 0; i < 5000; ++i) m.insert_or_assign(i, -i);
  for (int i = 0; i < 5000; ++i) ASSERT_EQ(m.at(i), -i);
}

}  // namespace
}  // namespace safemap_test
