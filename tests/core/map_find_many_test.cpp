// Map::find_many (map.hpp): out[i] is exactly what find(keys[i]) returns, the result counts the
// keys found, a short out is refused with std::length_error before anything is read or
// written, a throwing hasher propagates with out set for the groups of 64 keys before the
// throwing key's group and the map unchanged, and the misuse detector checks the batch as it
// checks one find. Every batch is checked against find() per key (same address) and against a
// std::unordered_map reference (same value), across batch lengths around the group size,
// growths in progress (doubling, same-size, multi-segment), empty and cleared maps and long
// overflow chains.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <latch>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "safemap/map.hpp"
#include "safemap/misuse.hpp"
#include "support/degenerate_hash.hpp"
#include "support/misuse_guard.hpp"
#include "support/reference_model.hpp"

namespace safemap_test {
namespace {

// Batch lengths around the group of 64 keys that find_many hashes and prefetches at once.
constexpr std::size_t batch_lengths[] = {0, 1, 2, 63, 64, 65, 127, 128, 129, 300, 517};

// A pointer no lookup returns: out is filled with it first, so an entry left untouched shows.
template <class V>
const V* sentinel() {
  static const V value{};
  return &value;
}

const void* addr(const void* p) {
  return p;
}

// Runs m.find_many(keys) into an out longer than keys (filled with the sentinel) and checks
// every out[i] against m.find(keys[i]) (the same address) and against ref (the same value, or
// nullptr for an absent key), the returned count against ref, and that the entries of out
// past keys.size() are untouched.
template <class M, class Ref>
testing::AssertionResult batch_agrees(const M& m, const std::vector<typename M::key_type>& keys,
                                      const Ref& ref) {
  using V = typename M::mapped_type;
  constexpr std::size_t tail = 3;
  std::vector<const V*> out(keys.size() + tail, sentinel<V>());
  const std::size_t found = m.find_many(keys, out);
  std::size_t expected = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    const V* direct = m.find(keys[i]);
    if (out[i] != direct) {
      return testing::AssertionFailure()
             << "out[" << i << "] for key " << testing::PrintToString(keys[i]) << " is "
             << addr(out[i]) << ", find() gives " << addr(direct) << " (batch of " << keys.size()
             << ")";
    }
    const auto r = ref.find(keys[i]);
    if (r == ref.end()) {
      if (out[i] != nullptr) {
        return testing::AssertionFailure() << "out[" << i << "]: absent key "
                                           << testing::PrintToString(keys[i]) << " was found";
      }
      continue;
    }
    if (out[i] == nullptr) {
      return testing::AssertionFailure()
             << "out[" << i << "]: key " << testing::PrintToString(keys[i]) << " was not found";
    }
    if (!(*out[i] == r->second)) {
      return testing::AssertionFailure()
             << "out[" << i << "]: key " << testing::PrintToString(keys[i]) << " maps to "
             << testing::PrintToString(*out[i]) << ", reference has "
             << testing::PrintToString(r->second);
    }
    ++expected;
  }
  for (std::size_t i = keys.size(); i < out.size(); ++i) {
    if (out[i] != sentinel<V>()) {
      return testing::AssertionFailure()
             << "out[" << i << "] past the " << keys.size() << " keys was written";
    }
  }
  if (found != expected) {
    return testing::AssertionFailure() << "find_many returned " << found << " for " << expected
                                       << " keys found (batch of " << keys.size() << ")";
  }
  return testing::AssertionSuccess();
}

// The fields of two stats that a read must leave as they were.
testing::AssertionResult same_shape(const safemap::MapStats& a, const safemap::MapStats& b) {
  if (a.size != b.size || a.log2_buckets != b.log2_buckets || a.buckets != b.buckets ||
      a.overflow_buckets != b.overflow_buckets || a.growing != b.growing ||
      a.same_size_grow != b.same_size_grow || a.old_buckets != b.old_buckets ||
      a.old_overflow_buckets != b.old_overflow_buckets || a.evacuated != b.evacuated ||
      a.bytes != b.bytes) {
    return testing::AssertionFailure()
           << "stats changed: size " << a.size << "->" << b.size << ", buckets " << a.buckets
           << "->" << b.buckets << ", growing " << a.growing << "->" << b.growing << ", evacuated "
           << a.evacuated << "->" << b.evacuated << ", overflow " << a.overflow_buckets << "->"
           << b.overflow_buckets;
  }
  return testing::AssertionSuccess();
}

// Every key of ref, with an absent key (from absent(j)) after every second one.
template <class Ref, class Absent>
std::vector<typename Ref::key_type> keys_and_absent(const Ref& ref, Absent absent) {
  std::vector<typename Ref::key_type> keys;
  std::size_t j = 0;
  for (const auto& kv : ref) {
    keys.push_back(kv.first);
    if (++j % 2 == 0) keys.push_back(absent(j));
  }
  return keys;
}

// --- 1. model check against std::unordered_map ---------------------------------------------------

struct model_coverage {
  int batches = 0;
  int growing_batches = 0;
  int empty_batches = 0;     // non-empty batches on an empty map
  int found_and_missed = 0;  // batches with both present and absent keys
};

// Random inserts and erases in phases (insert-heavy, erase-heavy or balanced; every fourth
// phase first erases the whole map, which reseeds it). Every `every` operations a find_many of
// a random mixed batch, its length cycling through batch_lengths, is checked against the
// reference, and so is one right after each write that started a growth and after each erase
// that emptied the map.
template <class M, class KeyOf, class ValueOf>
void run_find_many_model(std::uint64_t seed, int ops, int every, KeyOf key_of, ValueOf value_of,
                         model_coverage& cov) {
  using K = typename M::key_type;
  using V = typename M::mapped_type;
  SCOPED_TRACE("model seed " + std::to_string(seed));
  M m;
  std::unordered_map<K, V> ref;
  test_rng rng(seed);
  std::uint64_t space = 1024;
  unsigned insert_percent = 50;
  bool drain = false;
  int phase_left = 0;
  std::size_t next_length = 0;
  int phases = 0;
  bool was_growing = false;
  bool was_empty = true;
  for (int i = 0; i < ops; ++i) {
    if (phase_left-- <= 0) {
      phase_left = 500 + static_cast<int>(rng.below(3000));
      space = std::uint64_t{64} << rng.below(8);  // 64 .. 8192 keys
      drain = ++phases % 4 == 0;
      const std::uint64_t kind = rng.below(3);
      insert_percent = kind == 0 ? 85 : kind == 1 ? 20 : 50;
    }
    if (drain && !ref.empty()) {
      const K k = ref.begin()->first;
      ASSERT_EQ(m.erase(k), 1u) << "op " << i;
      ref.erase(k);
      drain = !ref.empty();  // once empty, the phase goes on as its kind
    } else if (rng.below(100) < insert_percent) {
      const K k = key_of(rng.below(space));
      const V v = value_of(rng.next());
      const bool inserted = m.insert_or_assign(k, v);
      ASSERT_EQ(inserted, ref.count(k) == 0) << "op " << i;
      ref[k] = v;
    } else {
      const K k = key_of(rng.below(space));
      ASSERT_EQ(m.erase(k), ref.erase(k)) << "op " << i;
    }
    const bool growing = m.stats().growing;
    const bool started_growth = growing && !was_growing;
    const bool emptied = m.empty() && !was_empty;
    was_growing = growing;
    was_empty = m.empty();
    if (i % every != every - 1 && !started_growth && !emptied) continue;
    const std::size_t len = batch_lengths[next_length++ % std::size(batch_lengths)];
    // Keys from twice the phase's space: about half of them were never inserted.
    std::vector<K> keys;
    std::size_t present = 0;
    for (std::size_t j = 0; j < len; ++j) {
      keys.push_back(key_of(rng.below(2 * space)));
      present += ref.count(keys.back());
    }
    ASSERT_TRUE(batch_agrees(m, keys, ref)) << "op " << i << ", size " << m.size();
    ++cov.batches;
    cov.growing_batches += growing ? 1 : 0;
    cov.empty_batches += m.empty() && len > 0 ? 1 : 0;
    cov.found_and_missed += present > 0 && present < len ? 1 : 0;
  }
  EXPECT_TRUE(same_contents(m, ref));
}

TEST(MapFindManyModel, IntegerKeysAgreeWithFindAndAnUnorderedMapReference) {
  model_coverage cov;
  for (const std::uint64_t seed : {1u, 2u, 3u}) {
    run_find_many_model<safemap::Map<std::uint64_t, std::uint64_t>>(
        seed, 40000, 200, [](std::uint64_t n) { return n * 0x9e3779b97f4a7c15ULL + 1; },
        [](std::uint64_t r) { return r; }, cov);
  }
  EXPECT_GE(cov.batches, 3 * 40000 / 200);
  EXPECT_GE(cov.growing_batches, 10) << "too few batches ran during a growth";
  EXPECT_GT(cov.empty_batches, 0) << "no batch ran on an emptied map";
  EXPECT_GT(cov.found_and_missed, cov.batches / 2);
}

TEST(MapFindManyModel, StringKeysAgreeWithFindAndAnUnorderedMapReference) {
  model_coverage cov;
  for (const std::uint64_t seed : {11u, 12u}) {
    run_find_many_model<safemap::Map<std::string, int>>(
        seed, 30000, 200,
        [](std::uint64_t n) {
          // Every third key is longer than the small-string buffer.
          std::string k = "key-" + std::to_string(n);
          if (n % 3 == 0) k += std::string(40, static_cast<char>('a' + n % 26));
          return k;
        },
        [](std::uint64_t r) { return static_cast<int>(r % 1000000); }, cov);
  }
  EXPECT_GE(cov.batches, 2 * 30000 / 200);
  EXPECT_GE(cov.growing_batches, 10) << "too few batches ran during a growth";
  EXPECT_GT(cov.empty_batches, 0) << "no batch ran on an emptied map";
  EXPECT_GT(cov.found_and_missed, cov.batches / 2);
}

// --- 2. growths in progress --------------------------------------------------------------------

// A doubling growth of 512 old buckets, checked after every write until it finishes: the keys
// of evacuated and of not yet evacuated buckets are all found, and find_many itself moves
// nothing (the evacuation count is the same before and after it).
TEST(MapFindMany, FindsEveryKeyAtEveryStepOfADoublingGrowth) {
  using map_type = safemap::Map<std::uint64_t, std::uint64_t>;
  map_type m;
  std::unordered_map<std::uint64_t, std::uint64_t> ref;
  std::uint64_t next = 1;
  auto insert_next = [&] {
    const std::uint64_t k = next * 0x9e3779b97f4a7c15ULL;
    m.insert_or_assign(k, next);
    ref[k] = next;
    ++next;
  };
  while (!(m.stats().growing && m.stats().old_buckets >= 512)) insert_next();
  ASSERT_FALSE(m.stats().same_size_grow);
  const auto absent = [](std::size_t j) { return ~std::uint64_t{0} - j; };
  int steps = 0;
  bool saw_partial = false;
  while (m.stats().growing) {
    const auto before = m.stats();
    saw_partial = saw_partial || (before.evacuated > 0 && before.evacuated < before.old_buckets);
    ASSERT_TRUE(batch_agrees(m, keys_and_absent(ref, absent), ref))
        << "step " << steps << ", evacuated " << before.evacuated << " of " << before.old_buckets;
    ASSERT_TRUE(same_shape(before, m.stats())) << "find_many changed the table";
    if (steps++ % 2 == 0) {
      insert_next();
    } else {
      ASSERT_EQ(m.erase(absent(0)), 0u);  // an erase of an absent key helps the growth too
    }
  }
  EXPECT_TRUE(saw_partial) << "no step saw some buckets evacuated and some not";
  EXPECT_GT(steps, 10);
  EXPECT_TRUE(batch_agrees(m, keys_and_absent(ref, absent), ref)) << "after the growth";
}

// The same through a same-size growth, reached as map_invariants_test's
// SameSizeGrowthCompactsOverflowChainsLeftByChurn does: churn at constant size below the
// doubling threshold (fixed seed, a never-empty map) until the overflow buckets left by the
// erases start a same-size growth. Erased keys stay in the batch as absent keys.
TEST(MapFindMany, FindsEveryKeyAtEveryStepOfASameSizeGrowth) {
  safemap::Map<std::uint64_t, std::uint64_t> m(0, safemap::Hash<std::uint64_t>(0x5a5a5a5a));
  std::unordered_map<std::uint64_t, std::uint64_t> ref;
  std::vector<std::uint64_t> erased;
  test_rng rng(7);
  std::vector<std::uint64_t> keys;
  fill_before_churn(m, ref, keys, rng);
  const unsigned B = m.stats().log2_buckets;
  bool saw_same_size = false;
  for (int round = 0; round < 100000 && !saw_same_size; ++round) {
    const std::size_t victim = rng.below(keys.size());
    m.erase(keys[victim]);
    ref.erase(keys[victim]);
    erased.push_back(keys[victim]);
    const std::uint64_t k = rng.next();
    keys[victim] = k;
    m.insert_or_assign(k, k ^ 0xff);
    ref[k] = k ^ 0xff;
    const auto s = m.stats();
    ASSERT_EQ(s.log2_buckets, B) << "a doubling at constant size " << s.size;
    saw_same_size = s.growing && s.same_size_grow;
  }
  ASSERT_TRUE(saw_same_size) << "churn never triggered a same-size growth";
  ASSERT_EQ(ref.count(0), 0u);
  const auto absent = [&](std::size_t j) { return erased[(j * 7919) % erased.size()]; };
  int steps = 0;
  bool saw_partial = false;
  while (m.stats().growing) {
    const auto before = m.stats();
    ASSERT_TRUE(before.same_size_grow);
    saw_partial = saw_partial || (before.evacuated > 0 && before.evacuated < before.old_buckets);
    auto batch = keys_and_absent(ref, absent);
    ASSERT_GT(batch.size(), 64u);
    ASSERT_TRUE(batch_agrees(m, batch, ref))
        << "step " << steps << ", evacuated " << before.evacuated << " of " << before.old_buckets;
    ASSERT_TRUE(same_shape(before, m.stats())) << "find_many changed the table";
    ASSERT_EQ(m.erase(0), 0u);  // a write: advances the growth, changes nothing else
    ++steps;
  }
  EXPECT_TRUE(saw_partial) << "no step saw some buckets evacuated and some not";
  EXPECT_EQ(m.stats().log2_buckets, B);
  EXPECT_TRUE(batch_agrees(m, keys_and_absent(ref, absent), ref)) << "after the growth";
}

// Large entries make small segments (see map_segment_test.cpp): a growth of an old array of
// several segments, whose first segments are released as the evacuation passes them while
// the rest are still read, checked every few writes.
TEST(MapFindMany, FindsEveryKeyDuringAGrowthOfAMultiSegmentTable) {
  using big_value = std::array<std::uint64_t, 60>;
  auto value_for = [](std::uint64_t k) {
    big_value v{};
    v[0] = k;
    v[59] = ~k;
    return v;
  };
  safemap::Map<std::uint64_t, big_value> m;
  std::unordered_map<std::uint64_t, big_value> ref;
  std::uint64_t next = 0;
  auto insert_next = [&] {
    m.insert_or_assign(next, value_for(next));
    ref[next] = value_for(next);
    ++next;
  };
  while (!(m.stats().growing && m.stats().old_buckets >= 4096)) insert_next();
  const auto absent = [](std::size_t j) { return (std::uint64_t{1} << 40) + j; };
  int checks = 0;
  for (int step = 0; m.stats().growing; ++step) {
    if (step % 101 == 0) {
      const auto before = m.stats();
      ASSERT_TRUE(batch_agrees(m, keys_and_absent(ref, absent), ref))
          << "step " << step << ", evacuated " << before.evacuated << " of " << before.old_buckets;
      ASSERT_TRUE(same_shape(before, m.stats()));
      ++checks;
    }
    insert_next();
  }
  EXPECT_GE(checks, 10);
  EXPECT_TRUE(batch_agrees(m, keys_and_absent(ref, absent), ref)) << "after the growth";
}

// --- 3. empty and cleared maps -------------------------------------------------------------------

TEST(MapFindMany, ANeverAllocatedMapFindsNothingAndStaysUnallocated) {
  const safemap::Map<std::uint64_t, std::uint64_t> m;
  const std::unordered_map<std::uint64_t, std::uint64_t> none;
  const safemap::Map<std::string, int> sm;
  const std::unordered_map<std::string, int> snone;
  for (const std::size_t len : batch_lengths) {
    SCOPED_TRACE("batch of " + std::to_string(len));
    std::vector<std::uint64_t> keys;
    std::vector<std::string> skeys;
    for (std::size_t i = 0; i < len; ++i) {
      keys.push_back(i);
      skeys.push_back(std::to_string(i));
    }
    EXPECT_TRUE(batch_agrees(m, keys, none));
    EXPECT_TRUE(batch_agrees(sm, skeys, snone));
    // All nullptr, returns 0, written over an out that held something else.
    std::vector<const std::uint64_t*> out(len, sentinel<std::uint64_t>());
    EXPECT_EQ(m.find_many(keys, out), 0u);
    for (std::size_t i = 0; i < len; ++i) ASSERT_EQ(out[i], nullptr) << i;
  }
  EXPECT_EQ(m.stats().buckets, 0u);
  EXPECT_EQ(m.stats().bytes, 0u);
}

TEST(MapFindMany, AClearedMapFindsNothingThenFindsWhatIsInsertedAfter) {
  for (const bool growing : {false, true}) {
    SCOPED_TRACE(growing ? "cleared during a growth" : "cleared when quiet");
    safemap::Map<std::uint64_t, std::uint64_t> m;
    std::vector<std::uint64_t> keys;
    for (std::uint64_t k = 0; k < 3000 || (growing && !m.stats().growing); ++k) {
      m.insert_or_assign(k, k + 1);
      keys.push_back(k);
    }
    if (!growing) {
      while (m.stats().growing) m.erase(~std::uint64_t{0});
    }
    ASSERT_EQ(m.stats().growing, growing);
    m.clear();
    ASSERT_TRUE(m.empty());
    std::unordered_map<std::uint64_t, std::uint64_t> ref;
    ASSERT_TRUE(batch_agrees(m, keys, ref));
    std::vector<const std::uint64_t*> out(keys.size(), sentinel<std::uint64_t>());
    EXPECT_EQ(m.find_many(keys, out), 0u);
    for (std::size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], nullptr) << i;
    // A map emptied by erases (allocated, size 0) too.
    for (std::uint64_t k = 0; k < 500; ++k) m.insert_or_assign(k * 3, k);
    for (std::uint64_t k = 0; k < 500; ++k) ASSERT_EQ(m.erase(k * 3), 1u);
    ASSERT_TRUE(m.empty());
    ASSERT_TRUE(batch_agrees(m, keys, ref));
    // Entries inserted after the clear (under the new seed) are found.
    for (std::uint64_t k = 0; k < 3000; k += 7) {
      m.insert_or_assign(k, k * 2);
      ref[k] = k * 2;
    }
    EXPECT_TRUE(batch_agrees(m, keys, ref));
  }
}

// --- 4. long overflow chains --------------------------------------------------------------------

// constant_hash puts every key in one bucket chain with one tophash: each probe walks the
// chain and compares keys. Checked full, with holes erased along the chain, and mid-growth.
TEST(MapFindMany, FindsKeysAlongTheLongOverflowChainsOfADegenerateHash) {
  using map_type = safemap::Map<std::uint64_t, std::uint64_t, constant_hash>;
  map_type m;
  std::unordered_map<std::uint64_t, std::uint64_t> ref;
  constexpr std::uint64_t n = 600;
  for (std::uint64_t k = 0; k < n; ++k) {
    m.insert_or_assign(k, k * 5);
    ref[k] = k * 5;
  }
  while (m.stats().growing) m.erase(n * 10);
  ASSERT_GE(m.stats().overflow_buckets, n / 8 - 1) << "the keys do not share one chain";
  const auto absent = [](std::size_t j) { return n * 100 + j; };
  for (const std::size_t len : batch_lengths) {
    std::vector<std::uint64_t> keys;
    for (std::size_t i = 0; i < len; ++i) keys.push_back((i * 37) % (n + n / 2));
    ASSERT_TRUE(batch_agrees(m, keys, ref)) << "batch of " << len;
  }
  for (std::uint64_t k = 0; k < n; k += 3) {  // holes along the chain
    ASSERT_EQ(m.erase(k), 1u);
    ref.erase(k);
  }
  std::vector<std::uint64_t> all;
  for (std::uint64_t k = 0; k < n + 70; ++k) all.push_back(k);
  ASSERT_TRUE(batch_agrees(m, all, ref)) << "after erasing every third key";
  // Grow again and check while the chain is being evacuated.
  std::uint64_t next = n;
  while (!m.stats().growing) {
    m.insert_or_assign(next, next * 5);
    ref[next] = next * 5;
    ++next;
  }
  int steps = 0;
  while (m.stats().growing) {
    ASSERT_TRUE(batch_agrees(m, keys_and_absent(ref, absent), ref)) << "growth step " << steps;
    m.erase(n * 10);
    ++steps;
  }
  EXPECT_TRUE(batch_agrees(m, keys_and_absent(ref, absent), ref)) << "after the growth";
}

TEST(MapFindMany, FindsStringKeysInTheFewChainsOfAFewValuesHash) {
  safemap::Map<std::string, int, few_values_hash<3>> m;
  std::unordered_map<std::string, int> ref;
  for (int i = 0; i < 400; ++i) {
    const std::string k = "chain-key-" + std::to_string(i) + std::string(i % 5 * 10, 'x');
    m.insert_or_assign(k, i);
    ref[k] = i;
  }
  while (m.stats().growing) m.erase("absent");
  ASSERT_GE(m.stats().overflow_buckets, 400u / 8 - 3) << "the keys do not share 3 chains";
  const auto absent = [](std::size_t j) { return "absent-" + std::to_string(j); };
  EXPECT_TRUE(batch_agrees(m, keys_and_absent(ref, absent), ref));
}

// --- 5. an output shorter than the keys -------------------------------------------------------

struct hash_fault : std::runtime_error {
  hash_fault() : std::runtime_error("hash fault") {}
};

// splitmix64's finalizer, or a throw for the poisoned key while one is set (this thread only).
struct poison_hash {
  static inline thread_local std::optional<std::uint64_t> poisoned;
  std::size_t operator()(std::uint64_t k) const {
    if (poisoned == k) throw hash_fault();
    k = (k ^ (k >> 30)) * 0xbf58476d1ce4e5b9ULL;
    k = (k ^ (k >> 27)) * 0x94d049bb133111ebULL;
    return static_cast<std::size_t>(k ^ (k >> 31));
  }
};

class poison_scope {
 public:
  explicit poison_scope(std::uint64_t k) { poison_hash::poisoned = k; }
  ~poison_scope() { poison_hash::poisoned.reset(); }
  poison_scope(const poison_scope&) = delete;
  poison_scope& operator=(const poison_scope&) = delete;
};

using poison_map = safemap::Map<std::uint64_t, std::uint64_t, poison_hash>;

// The length is checked before anything is read: with keys[0] poisoned, a call that hashed
// would throw hash_fault, not std::length_error.
TEST(MapFindMany, AnOutShorterThanTheKeysThrowsLengthErrorAndLeavesOutUntouched) {
  poison_map m;
  for (std::uint64_t k = 0; k < 200; ++k) m.insert_or_assign(k, k);
  const poison_map empty;
  const auto before = m.stats();
  for (const auto& [nkeys, nout] : {std::pair<std::size_t, std::size_t>{1, 0},
                                    {10, 9},
                                    {64, 63},
                                    {65, 64},
                                    {200, 199},
                                    {200, 0}}) {
    SCOPED_TRACE(std::to_string(nkeys) + " keys, out of " + std::to_string(nout));
    std::vector<std::uint64_t> keys;
    for (std::size_t i = 0; i < nkeys; ++i) keys.push_back(i);
    std::vector<const std::uint64_t*> out(nout, sentinel<std::uint64_t>());
    {
      poison_scope poison(keys[0]);
      EXPECT_THROW(m.find_many(keys, out), std::length_error);
      EXPECT_THROW(empty.find_many(keys, out), std::length_error);
    }
    for (std::size_t i = 0; i < nout; ++i) ASSERT_EQ(out[i], sentinel<std::uint64_t>()) << i;
    // The message says who refused and why.
    try {
      (void)m.find_many(keys, out);
      ADD_FAILURE() << "no std::length_error";
    } catch (const std::length_error& e) {
      EXPECT_NE(std::string(e.what()).find("find_many"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(same_shape(before, m.stats()));
  // An out exactly as long as the keys is accepted.
  std::vector<std::uint64_t> keys(64);
  for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = i * 4;
  std::vector<const std::uint64_t*> out(64, sentinel<std::uint64_t>());
  EXPECT_EQ(m.find_many(keys, out), 50u);
  for (std::size_t i = 0; i < keys.size(); ++i) ASSERT_EQ(out[i], m.find(keys[i])) << i;
}

// --- 6. a throwing hasher ----------------------------------------------------------------------

// The hasher throws on the key at `at`: the call propagates hash_fault with out set (to
// find()'s answer) for every key of the groups of 64 before the throwing key's group, nothing
// written for the throwing key or after it (its own group's earlier keys either still hold
// the sentinel or find()'s answer), and the map unchanged; a later find_many works.
TEST(MapFindMany, AThrowingHasherPropagatesWithTheEarlierGroupsSetAndTheMapUnchanged) {
  for (const bool growing : {false, true}) {
    for (const std::size_t at : {70u, 0u, 5u, 63u, 64u, 127u, 128u, 199u}) {
      SCOPED_TRACE(std::string(growing ? "growing" : "quiet") + ", throwing key at " +
                   std::to_string(at));
      poison_map m;
      std::unordered_map<std::uint64_t, std::uint64_t> ref;
      for (std::uint64_t k = 0; k < 1000 || (growing && !m.stats().growing); ++k) {
        m.insert_or_assign(k, k * 3 + 1);
        ref[k] = k * 3 + 1;
      }
      if (!growing) {
        while (m.stats().growing) m.erase(~std::uint64_t{0});
      }
      ASSERT_EQ(m.stats().growing, growing);
      // 200 keys, present and absent, the poisoned one (present) only at `at`.
      constexpr std::uint64_t poisoned = 500;
      std::vector<std::uint64_t> keys;
      for (std::uint64_t i = 0; i < 200; ++i) keys.push_back(i % 3 == 0 ? 5000 + i : i * 7 + 1);
      keys[at] = poisoned;
      std::size_t occurrences = 0;
      for (const auto k : keys) occurrences += k == poisoned ? 1 : 0;
      ASSERT_EQ(occurrences, 1u);
      const auto before = m.stats();
      std::vector<const std::uint64_t*> out(keys.size(), sentinel<std::uint64_t>());
      {
        poison_scope poison(poisoned);
        EXPECT_THROW(m.find_many(keys, out), hash_fault);
      }
      const std::size_t group_start = at / 64 * 64;
      for (std::size_t i = 0; i < keys.size(); ++i) {
        const std::uint64_t* direct = m.find(keys[i]);
        if (i < group_start) {
          ASSERT_EQ(out[i], direct) << "out[" << i << "] of an earlier group";
          const auto r = ref.find(keys[i]);
          if (r == ref.end()) {
            ASSERT_EQ(out[i], nullptr) << i;
          } else {
            ASSERT_NE(out[i], nullptr) << i;
            ASSERT_EQ(*out[i], r->second) << i;
          }
        } else if (i < at) {
          ASSERT_TRUE(out[i] == sentinel<std::uint64_t>() || out[i] == direct)
              << "out[" << i << "] of the throwing key's group";
        } else {
          ASSERT_EQ(out[i], sentinel<std::uint64_t>())
              << "out[" << i << "] at or after the throwing key was written";
        }
      }
      EXPECT_TRUE(same_shape(before, m.stats())) << "the failed call changed the table";
      EXPECT_TRUE(same_contents(m, ref));
      // Without the poison the same batch, and a batch without the key, work.
      EXPECT_TRUE(batch_agrees(m, keys, ref));
      keys.erase(keys.begin() + static_cast<std::ptrdiff_t>(at));
      {
        poison_scope poison(poisoned);
        EXPECT_TRUE(batch_agrees(m, keys, ref));
      }
      // The map is still writable (no state was left behind by the throw).
      EXPECT_TRUE(m.insert_or_assign(100000, 1));
      EXPECT_EQ(m.erase(100000), 1u);
    }
  }
}

// --- 7. duplicate keys --------------------------------------------------------------------------

TEST(MapFindMany, DuplicateKeysInOneBatchGiveTheSamePointerEachTime) {
  safemap::Map<int, int> m;
  std::unordered_map<int, int> ref;
  for (int i = 0; i < 1000; ++i) {
    m.insert_or_assign(i, -i);
    ref[i] = -i;
  }
  // One present key 200 times: 200 found, all the same address.
  std::vector<int> same(200, 123);
  std::vector<const int*> out(same.size(), nullptr);
  EXPECT_EQ(m.find_many(same, out), 200u);
  for (std::size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], m.find(123)) << i;
  // One absent key 200 times: none found.
  std::vector<int> missing(200, -5);
  out.assign(missing.size(), sentinel<int>());
  EXPECT_EQ(m.find_many(missing, out), 0u);
  for (std::size_t i = 0; i < out.size(); ++i) ASSERT_EQ(out[i], nullptr) << i;
  // A few keys repeated across group boundaries (0, 63, 64, 127, 128 ...), mixed with others.
  std::vector<int> mixed;
  for (int i = 0; i < 300; ++i) mixed.push_back(i % 4 == 0 ? 7 : i % 4 == 1 ? 2000 : i % 5);
  EXPECT_TRUE(batch_agrees(m, mixed, ref));
  out.assign(mixed.size(), nullptr);
  (void)m.find_many(mixed, out);
  for (std::size_t i = 0; i < mixed.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (mixed[j] == mixed[i]) {
        ASSERT_EQ(out[i], out[j]) << "keys " << j << " and " << i;
        break;
      }
    }
  }
}

// --- 8. the misuse detector ---------------------------------------------------------------------

// Runs call() and returns the kind of the misuse_error it threw; fails if it threw nothing.
template <class F>
safemap::misuse_kind reported_kind(F&& call, const char* what) {
  try {
    std::forward<F>(call)();
  } catch (const safemap::misuse_error& e) {
    return e.kind;
  }
  ADD_FAILURE() << what << " during a write was not reported";
  return safemap::misuse_kind::reentrant_call;
}

using gated_map = safemap::Map<int, gated_value>;

// As misuse_test.cpp's ReadDuringAWriteIsReportedAsConcurrentMapReadAndMapWrite does for
// find: a writer thread blocks inside try_emplace with the writing flag set, and find_many on
// this thread is reported before it reads the table or writes out.
TEST(MapFindManyMisuse, AFindManyDuringAWriteIsReportedAsConcurrentMapReadAndMapWrite) {
  scoped_misuse_handler guard(&throw_misuse);
  gated_map m;
  std::unordered_map<int, gated_value> ref;
  for (int i = 0; i < 100; ++i) {
    m.insert_or_assign(i, gated_value(i));
    ref[i] = gated_value(i);
  }
  const gated_map& cm = m;
  std::vector<int> keys;
  for (int i = 0; i < 130; ++i) keys.push_back(i * 2 - 30);
  std::vector<const gated_value*> out(keys.size(), sentinel<gated_value>());
  while_writing(m, 1000, 1000, [&] {
    EXPECT_EQ(reported_kind([&] { (void)cm.find_many(keys, out); }, "find_many"),
              safemap::misuse_kind::concurrent_read_write);
    std::vector<int> none;
    EXPECT_EQ(reported_kind([&] { (void)cm.find_many(none, out); }, "find_many of no keys"),
              safemap::misuse_kind::concurrent_read_write);
  });
  for (std::size_t i = 0; i < out.size(); ++i) {
    ASSERT_EQ(out[i], sentinel<gated_value>()) << "out[" << i << "] written by a refused call";
  }
  ASSERT_EQ(m.at(1000).value, 1000);
  ref[1000] = gated_value(1000);
  keys.push_back(1000);
  EXPECT_TRUE(batch_agrees(m, keys, ref)) << "the map stays usable after the report";
}

// A value whose constructor runs find_many on `map`: built by an insert, the batch runs inside
// the insert on the same thread (no race), so only the writing bit decides whether it is
// reported (as misuse_test.cpp's probing_value does with find).
struct batch_probing_value {
  static inline const safemap::Map<int, batch_probing_value>* map = nullptr;
  static inline std::size_t found = 0;
  int value;
  explicit batch_probing_value(int v) : value(v) {
    if (map == nullptr) return;
    std::array<int, 70> keys{};
    for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = static_cast<int>(i) - 5;
    std::array<const batch_probing_value*, 70> out{};
    found = map->find_many(keys, out);
  }
};

TEST(MapFindManyMisuse, AFindManyInsideAWriteOfTheSameMapIsReported) {
  using access = safemap::detail::map_access;
  scoped_misuse_handler guard(&throw_misuse);
  safemap::Map<int, batch_probing_value> m;
  for (int i = 0; i < 10; ++i) m.try_emplace(i, i);
  batch_probing_value::map = &m;
  EXPECT_EQ(reported_kind([&] { m.try_emplace(100, 100); }, "find_many inside try_emplace"),
            safemap::misuse_kind::concurrent_read_write)
      << "the public insert holds the writing bit while it builds the value";
  EXPECT_EQ(m.find(100), nullptr) << "the refused insert left nothing behind";
  EXPECT_EQ(m.size(), 10u);
  // An unsynchronized insert (the locked maps' writes) holds no bit: the batch inside passes.
  batch_probing_value::found = 0;
  const auto [v, inserted] = access::try_emplace_unsynchronized(m, 101, 101);
  EXPECT_TRUE(inserted);
  EXPECT_EQ(v->value, 101);
  EXPECT_EQ(batch_probing_value::found, 10u) << "keys -5..64: 0..9 are in the map";
  batch_probing_value::map = nullptr;
  EXPECT_EQ(m.size(), 11u);
}

// find_many checks the writing flag again as it ends: a write that started while the batch
// was probing (the batch's second group here) is reported rather than its results trusted.
TEST(MapFindManyMisuse, AWriteThatStartsDuringABatchIsReportedAtTheBatchsEnd) {
  scoped_misuse_handler guard(&throw_misuse);
  safemap::Map<int, gated_value, safemap::Hash<int>, probe_gate_eq> m;
  m.reserve(1000);  // no growth below: the racing insert only fills a free slot
  for (int i = 0; i < 100; ++i) m.insert_or_assign(i, gated_value(i));
  std::vector<int> keys;
  for (int i = 0; i < 130; ++i) keys.push_back(i == 70 ? probe_gate_eq::probe_key : 200 + i);
  std::vector<const gated_value*> out(keys.size(), nullptr);
  const int outcome =
      outcome_of_a_read_overlapped_at_its_end(m, 1000, [&] { (void)m.find_many(keys, out); });
  EXPECT_EQ(outcome, 1 + static_cast<int>(safemap::misuse_kind::concurrent_read_write))
      << "the batch that a write overlapped at its end was not reported";
  EXPECT_EQ(m.size(), 101u);
  EXPECT_EQ(m.at(1000).value, 1000);
}

TEST(MapFindManyMisuse, ConcurrentBatchesWithoutWritesAreNotReported) {
  scoped_misuse_handler guard(&record_misuse);
  misuse_record::instance().reset();
  safemap::Map<int, int> m;
  std::unordered_map<int, int> ref;
  for (int i = 0; i < 5000; ++i) {
    m.insert_or_assign(i, i * 2);
    ref[i] = i * 2;
  }
  const safemap::Map<int, int>& cm = m;
  std::vector<int> keys;
  for (int i = -100; i < 5100; ++i) keys.push_back(i);
  std::latch start(4);
  std::vector<std::thread> readers;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      start.arrive_and_wait();
      std::vector<const int*> out(keys.size());
      for (int rep = 0; rep < 20; ++rep) {
        if (cm.find_many(keys, out) != 5000u) ++mismatches;
        for (std::size_t i = 0; i < keys.size(); ++i) {
          const bool present = keys[i] >= 0 && keys[i] < 5000;
          if (present ? (out[i] == nullptr || *out[i] != keys[i] * 2) : out[i] != nullptr) {
            ++mismatches;
          }
        }
      }
    });
  }
  for (auto& r : readers) r.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_EQ(misuse_record::instance().total(), 0);
  EXPECT_TRUE(batch_agrees(m, keys, ref));
}

}  // namespace
}  // namespace safemap_test
