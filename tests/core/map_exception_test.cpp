// Exceptions in the middle of Map's housekeeping: a hasher that throws while an iteration
// starts, and a value whose copy always throws while the table grows. Either must leave the
// map whole and still able to grow and be written (map.hpp "# Exceptions").
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <unordered_map>
#include <utility>

#include "safemap/map.hpp"
#include "support/misuse_guard.hpp"
#include "support/reference_model.hpp"

namespace safemap_test {
namespace {

struct hash_fault : std::runtime_error {
  hash_fault() : std::runtime_error("hash fault") {}
};

// A fixed, well-mixed hash (splitmix64's finalizer), or a throw while failing is set (this
// thread only).
struct switchable_hash {
  static inline thread_local bool failing = false;
  std::size_t operator()(std::uint64_t k) const {
    if (failing) throw hash_fault();
    k = (k ^ (k >> 30)) * 0xbf58476d1ce4e5b9ULL;
    k = (k ^ (k >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<std::size_t>(k ^ (k >> 31));
  }
};

class failing_scope {
 public:
  failing_scope() { switchable_hash::failing = true; }
  ~failing_scope() { switchable_hash::failing = false; }
  failing_scope(const failing_scope&) = delete;
  failing_scope& operator=(const failing_scope&) = delete;
};

// Issue: an exception thrown while an iteration starts (begin() hashes the first entry of an
// old bucket mid-growth, to know whether it belongs to the logical bucket) leaked the
// iterator's pin, and a pinned map never grows again: 100k inserts left it at its old size
// with ever longer overflow chains.
TEST(MapExceptions, AHasherThrowingWhileAnIterationStartsDoesNotPinTheTable) {
  using map_type = safemap::Map<std::uint64_t, std::uint64_t, switchable_hash>;
  map_type m;
  std::unordered_map<std::uint64_t, std::uint64_t> ref;
  std::uint64_t k = 0;
  // A doubling growth of 64 old buckets that has just started: nearly all are unevacuated,
  // so begin() almost always hashes the first entry it looks at.
  while (!(m.stats().growing && !m.stats().same_size_grow && m.stats().old_buckets >= 64)) {
    m.insert_or_assign(k, k);
    ref[k] = k;
    ++k;
  }
  const unsigned B = m.stats().log2_buckets;
  int thrown = 0;
  {
    failing_scope fail;
    for (int attempt = 0; attempt < 64; ++attempt) {
      try {
        auto it = m.begin();
        (void)it;
      } catch (const hash_fault&) {
        ++thrown;
      }
    }
  }
  ASSERT_GT(thrown, 0) << "begin() never hashed: the test did not exercise the fault";
  // Nothing pins the table now: the growth finishes and the next ones start.
  for (int i = 0; i < 20000; ++i, ++k) {
    m.insert_or_assign(k, k);
    ref[k] = k;
  }
  EXPECT_GT(m.stats().log2_buckets, B + 3u) << "the table stopped growing";
  EXPECT_LT(m.stats().overflow_buckets, m.stats().buckets / 2);
  EXPECT_TRUE(same_contents(m, ref));
  EXPECT_TRUE(stats_consistent(m));
}

// A value whose copy throws exactly when it is poisoned. Its move constructor is not
// noexcept, so Map relocates by copying (for the strong guarantee): the poisoned entry can
// never be evacuated.
struct poison_value {
  static inline int live = 0;
  int value = 0;
  bool poisoned = false;

  explicit poison_value(int v, bool p = false) : value(v), poisoned(p) { ++live; }
  poison_value(const poison_value& o) : value(o.value), poisoned(o.poisoned) {
    if (poisoned) throw std::runtime_error("poisoned copy");
    ++live;
  }
  poison_value(poison_value&& o) noexcept(false) : value(o.value), poisoned(o.poisoned) { ++live; }
  poison_value& operator=(const poison_value&) = default;
  poison_value& operator=(poison_value&&) = default;
  ~poison_value() { --live; }
};

// Issue: every write whose growth work reached the poisoned bucket threw, even writes of
// other keys, so one such value made the whole map unwritable.
TEST(MapExceptions, OneValueWhoseCopyAlwaysThrowsLeavesOtherKeysWritable) {
  poison_value::live = 0;
  {
    safemap::Map<int, poison_value> m;
    std::unordered_map<int, int> ref;
    m.try_emplace(-1, -1, true);
    int grew = 0;
    for (int i = 0; i < 6000; ++i) {
      const bool before = m.stats().growing;
      ASSERT_NO_THROW(m.try_emplace(i, i)) << "insert of " << i;
      ref[i] = i;
      grew += !before && m.stats().growing ? 1 : 0;
      if (i % 3 == 0) {
        ASSERT_NO_THROW(m.erase(i / 3)) << "erase of " << i / 3;
        ref.erase(i / 3);
      }
    }
    EXPECT_GE(grew, 1) << "no growth started";
    EXPECT_TRUE(m.stats().growing) << "the poisoned bucket cannot have been evacuated";
    ASSERT_EQ(m.size(), ref.size() + 1);
    ASSERT_NE(m.find(-1), nullptr);
    EXPECT_TRUE(m.find(-1)->poisoned);
    for (const auto& [key, value] : ref) {
      const poison_value* v = m.find(key);
      ASSERT_NE(v, nullptr) << key;
      ASSERT_EQ(v->value, value) << key;
    }
    std::size_t visited = 0;
    for (const auto& kv : m) visited += kv.first == -1 || ref.count(kv.first) == 1 ? 1 : 0;
    EXPECT_EQ(visited, m.size());

    // Once the poisoned entry is gone, the growth finishes within a pass or two of writes.
    ASSERT_EQ(m.erase(-1), 1u);
    int writes = 0;
    for (int i = 6000; m.stats().growing && writes < 200000; ++i, ++writes) m.try_emplace(i, i);
    EXPECT_FALSE(m.stats().growing) << "the growth never finished";
    EXPECT_TRUE(stats_consistent(m));
  }
  EXPECT_EQ(poison_value::live, 0);
}

// The writes the locked maps make under their lock (detail::map_access's _unsynchronized
// writes) skip the writing bit but keep the rest of a write's promises: a hasher, a copy or a
// predicate that throws leaves the map as it was, and the map stays writable through the
// checked API, which would report "concurrent map writes" (thrown here) if a failed write
// had left the bit set.
TEST(MapExceptions, UnsynchronizedWritesThatThrowLeaveTheMapWholeAndUnmarked) {
  using access = safemap::detail::map_access;
  scoped_misuse_handler handler(&throw_misuse);
  poison_value::live = 0;
  {
    safemap::Map<std::uint64_t, poison_value, switchable_hash> m;
    for (std::uint64_t i = 0; i < 200; ++i) m.try_emplace(i, static_cast<int>(i));
    const poison_value poisoned(-1, true);
    {
      failing_scope fail;
      EXPECT_THROW(access::try_emplace_unsynchronized(m, std::uint64_t{1000}, 1), hash_fault);
      EXPECT_THROW(access::insert_or_assign_unsynchronized(m, std::uint64_t{5}, poison_value(9)),
                   hash_fault);
      EXPECT_THROW(access::erase_unsynchronized(m, std::uint64_t{5}), hash_fault);
      EXPECT_THROW(access::extract_value_unsynchronized(m, std::uint64_t{6}), hash_fault);
    }
    // A copy that throws while the entry is built: nothing is linked or counted.
    EXPECT_THROW(access::try_emplace_unsynchronized(m, std::uint64_t{1001}, poisoned),
                 std::runtime_error);
    // A predicate that throws keeps the entry.
    EXPECT_THROW(access::erase_if_value_unsynchronized(
                     m, std::uint64_t{7},
                     [](const poison_value&) -> bool { throw std::runtime_error("predicate"); }),
                 std::runtime_error);
    ASSERT_EQ(m.size(), 200u);
    EXPECT_EQ(m.find(1000), nullptr);
    EXPECT_EQ(m.find(1001), nullptr);
    for (std::uint64_t i = 0; i < 200; ++i) {
      const poison_value* v = m.find(i);
      ASSERT_NE(v, nullptr) << i;
      EXPECT_EQ(v->value, static_cast<int>(i)) << i;
    }
    // The checked writes still run: no writing bit was left behind.
    EXPECT_TRUE(m.insert_or_assign(1000, poison_value(1000)));
    EXPECT_EQ(m.erase(1000), 1u);
    EXPECT_TRUE(stats_consistent(m));
  }
  EXPECT_EQ(poison_value::live, 0);
}

// Hashes like switchable_hash, and throws on the call where countdown reaches zero (this
// thread only; -1 = never).
struct countdown_hash {
  static inline thread_local long countdown = -1;
  std::size_t operator()(std::uint64_t k) const {
    if (countdown >= 0 && countdown-- == 0) throw hash_fault();
    return switchable_hash{}(k);
  }
};

// reserve() rebuilds the table. With move-only values it relocates by moving, which cannot be
// undone, and it hashed each entry a second time while moving, so a hasher that threw then
// would have left entries moved out of the table (with move-only K or V and a hasher that
// may throw, reserve did not even compile). Every entry is now hashed once, before anything
// moves: a throw anywhere leaves the map as it was.
TEST(MapExceptions, AHasherThrowingDuringAReserveWithMoveOnlyValuesKeepsTheStrongGuarantee) {
  using map_type = safemap::Map<std::uint64_t, std::unique_ptr<std::uint64_t>, countdown_hash>;
  constexpr std::uint64_t n = 300;
  for (const bool growing : {false, true}) {
    SCOPED_TRACE(growing ? "growing" : "quiet");
    int thrown = 0;
    for (long fail_at = 0; fail_at <= static_cast<long>(2 * n + 2); ++fail_at) {
      map_type m;
      std::uint64_t k = 0;
      for (; k < n || (growing && !m.stats().growing); ++k) {
        m.insert_or_assign(k, std::make_unique<std::uint64_t>(k));
      }
      const std::uint64_t size = k;
      countdown_hash::countdown = fail_at;
      try {
        m.reserve(20000);
      } catch (const hash_fault&) {
        ++thrown;
      }
      countdown_hash::countdown = -1;
      ASSERT_EQ(m.size(), size) << "fail_at " << fail_at;
      for (std::uint64_t i = 0; i < size; ++i) {
        const std::unique_ptr<std::uint64_t>* v = m.find(i);
        ASSERT_TRUE(v != nullptr && *v != nullptr && **v == i)
            << "fail_at " << fail_at << ", key " << i;
      }
      std::uint64_t visited = 0;
      for (const auto& kv : m) visited += kv.second != nullptr && *kv.second == kv.first ? 1 : 0;
      ASSERT_EQ(visited, size) << "fail_at " << fail_at;
      ASSERT_TRUE(stats_consistent(m));
    }
    EXPECT_GE(thrown, static_cast<int>(n)) << "the hasher did not throw inside reserve";
  }
}

// A move-only key, hashed by countdown_hash through its number.
struct move_only_key {
  std::uint64_t k;
  explicit move_only_key(std::uint64_t v) noexcept : k(v) {}
  move_only_key(move_only_key&& o) noexcept : k(std::exchange(o.k, ~std::uint64_t{0})) {}
  move_only_key& operator=(move_only_key&& o) noexcept {
    k = std::exchange(o.k, ~std::uint64_t{0});
    return *this;
  }
  move_only_key(const move_only_key&) = delete;
  move_only_key& operator=(const move_only_key&) = delete;
  friend bool operator==(const move_only_key& a, const move_only_key& b) noexcept {
    return a.k == b.k;
  }
};
struct countdown_key_hash {
  std::size_t operator()(const move_only_key& key) const { return countdown_hash{}(key.k); }
};

// The same with move-only keys (and values), through a multi-segment table: a throw on any
// of the rebuild's hashes leaves every entry in place (a moved-from key would read as ~0).
TEST(MapExceptions, AHasherThrowingDuringAReserveWithMoveOnlyKeysKeepsTheStrongGuarantee) {
  using map_type = safemap::Map<move_only_key, std::unique_ptr<std::uint64_t>, countdown_key_hash>;
  constexpr std::uint64_t n = 300;
  for (const bool growing : {false, true}) {
    SCOPED_TRACE(growing ? "growing" : "quiet");
    int thrown = 0;
    for (long fail_at = 0; fail_at <= static_cast<long>(n + 2); ++fail_at) {
      map_type m;
      std::uint64_t k = 0;
      for (; k < n || (growing && !m.stats().growing); ++k) {
        m.try_emplace(move_only_key(k), std::make_unique<std::uint64_t>(k));
      }
      const std::uint64_t size = k;
      countdown_hash::countdown = fail_at;
      try {
        m.reserve(200000);  // 2^15 buckets: more than one segment
      } catch (const hash_fault&) {
        ++thrown;
      }
      countdown_hash::countdown = -1;
      ASSERT_EQ(m.size(), size) << "fail_at " << fail_at;
      for (std::uint64_t i = 0; i < size; ++i) {
        const std::unique_ptr<std::uint64_t>* v = m.find(move_only_key(i));
        ASSERT_TRUE(v != nullptr && *v != nullptr && **v == i)
            << "fail_at " << fail_at << ", key " << i;
      }
      std::uint64_t visited = 0;
      for (const auto& kv : m) visited += kv.second != nullptr && *kv.second == kv.first.k ? 1 : 0;
      ASSERT_EQ(visited, size) << "fail_at " << fail_at;
      ASSERT_TRUE(stats_consistent(m));
    }
    EXPECT_GE(thrown, static_cast<int>(n)) << "the hasher did not throw inside reserve";
  }
}

// A hasher that sends every key to one bucket: the longest chains.
struct one_bucket_hash {
  std::size_t operator()(std::uint64_t) const noexcept { return 0x5eed; }
};

// A copy of a Map (CowMap publishes copies, SyncMap promotes them) is a finished table: a
// copy of a growing map is not growing, holds the same entries and no more overflow buckets
// than its chains need, and the source is untouched.
TEST(MapExceptions, ACopyOfAGrowingMapIsAFinishedTableWithTheSameContents) {
  auto check = [](auto& m, auto& ref) {
    ASSERT_TRUE(m.stats().growing);
    const auto copy = m;
    const auto s = copy.stats();
    EXPECT_FALSE(s.growing);
    EXPECT_EQ(s.old_buckets, 0u);
    EXPECT_LE(s.load_factor, 6.5);
    EXPECT_LE(s.overflow_buckets, s.size / 8);
    EXPECT_TRUE(same_contents(copy, ref));
    EXPECT_TRUE(stats_consistent(copy));
    EXPECT_TRUE(m.stats().growing);
    EXPECT_TRUE(same_contents(m, ref));
  };
  {
    safemap::Map<std::uint64_t, std::uint64_t, switchable_hash> m;
    std::unordered_map<std::uint64_t, std::uint64_t> ref;
    for (std::uint64_t k = 0; k < 5000 || !m.stats().growing; ++k) {
      m.insert_or_assign(k, k * 3);
      ref[k] = k * 3;
    }
    check(m, ref);
  }
  {
    safemap::Map<std::uint64_t, std::uint64_t, one_bucket_hash> m;
    std::unordered_map<std::uint64_t, std::uint64_t> ref;
    for (std::uint64_t k = 0; k < 200 || !m.stats().growing; ++k) {
      m.insert_or_assign(k, k + 1);
      ref[k] = k + 1;
    }
    check(m, ref);
  }
}

}  // namespace
}  // namespace safemap_test
