// tests/strategies/trie_map_test.cpp - what is particular to TrieMap (the API itself is checked
// by the conformance suite).
//
//  - shape: with deep_trie_hash every path is 16 nodes deep and full hashes collide in
//    groups; the trie has exactly the nodes that shape needs, and deleting every key prunes it
//    back to the root;
//  - concurrency: 4 threads writing disjoint keys that share deep paths and collision chains
//    lose nothing; a 1e6-operation random stress (fewer under sanitizers) over every call;
//  - reclamation: every key and value is destroyed exactly once, after the map and a grace
//    period, and at quiet points the live values are exactly the map's;
//  - failures: a throwing copy or compute function leaves the map whole and no lock behind;
//  - in-place values: which V take the path, that in-place writes retire nothing, tokens
//    conserved by swap/compare_and_swap/deletes (in place and boxed) with 8 threads on chains
//    that removals copy, increments surviving freezes, entries counted, flush at thread exit;
//  - re-entrancy: callbacks write to the same map;
//  - serialization: JSON and snapshot files round-trip through a TrieMap.
// Race tests carry a watchdog that aborts the binary (a failure, never a hang).
#include "safemap/trie_map.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>
#include <span>

#include "safemap/concurrent.hpp"
#include "safemap/json.hpp"
#include "safemap/persist.hpp"
#include "safemap/reclaim.hpp"
#include "support/concurrent_maps.hpp"
#include "support/counted.hpp"
#include "support/degenerate_hash.hpp"
#include "support/reference_model.hpp"
#include "support/throwing.hpp"
#include "support/watchdog.hpp"

namespace {

using namespace safemap_test;
using safemap::TrieMap;

static_assert(safemap::concurrent_map<TrieMap<int, int>>);
static_assert(safemap::concurrent_map<TrieMap<int, int, deep_trie_hash<4>>>);

// 4 keys per full hash, 256 distinct hashes that agree on their top 56 bits.
constexpr int k_group = 4;
using deep_map = TrieMap<int, int, deep_trie_hash<k_group>>;
constexpr int k_deep_keys = 256 * k_group;  // every distinct hash once

// ---- shape --------------------------------------------------------------------------------------

TEST(TrieMapShape, DegenerateHashMakesEveryPathSixteenDeepAndChainsCollisions) {
  deep_map m;
  for (int k = 0; k < k_deep_keys; ++k) m.store(k, k * 3);
  const safemap::TrieMapStats s = m.stats();
  EXPECT_EQ(s.size, static_cast<std::size_t>(k_deep_keys));
  EXPECT_EQ(s.entries, static_cast<std::size_t>(k_deep_keys));
  // Levels 0..13 read nibbles every hash shares: one node each with one child; level 14 splits
  // on bits 4..7 into 16 level-15 nodes, which split on bits 0..3 into the 256 chains.
  EXPECT_EQ(s.nodes, 14u + 1u + 16u);
  EXPECT_EQ(s.max_depth, 16u);
  EXPECT_EQ(s.depth[16], static_cast<std::size_t>(k_deep_keys));
  EXPECT_EQ(s.longest_chain, static_cast<std::size_t>(k_group));
  EXPECT_EQ(s.chained, static_cast<std::size_t>(k_deep_keys - 256));
  for (int k = 0; k < k_deep_keys; ++k) ASSERT_EQ(m.load(k), k * 3) << k;
  EXPECT_FALSE(m.contains(k_deep_keys));  // same hash as key 0's group: walks its chain

  // Deleting a chain member from the middle keeps the rest of the chain.
  EXPECT_EQ(m.load_and_delete(1), 3);
  EXPECT_EQ(m.load(0), 0);
  EXPECT_EQ(m.load(2), 6);
  EXPECT_EQ(m.load(3), 9);
  EXPECT_EQ(m.swap(2, 7), 6);  // replace in the middle of a chain
  EXPECT_EQ(m.load(2), 7);
  EXPECT_EQ(m.load(3), 9);

  for (int k = 0; k < k_deep_keys; ++k) m.erase(k);
  const safemap::TrieMapStats empty = m.stats();
  EXPECT_EQ(empty.size, 0u);
  EXPECT_EQ(empty.entries, 0u);
  EXPECT_EQ(empty.nodes, 1u) << "emptied nodes are pruned bottom-up, back to the root";
  m.store(5, 50);
  EXPECT_EQ(m.load(5), 50);
  EXPECT_EQ(m.stats().nodes, 1u) << "a lone key needs no node below the root";
}

TEST(TrieMapShape, WellSpreadHashesKeepTheTrieShallow) {
  TrieMap<int, int> m;
  constexpr int n = 1 << 16;
  for (int k = 0; k < n; ++k) m.store(k, k);
  const auto s = m.stats();
  EXPECT_EQ(s.entries, static_cast<std::size_t>(n));
  EXPECT_EQ(s.chained, 0u) << "64-bit seeded hashes of 65536 ints should not collide";
  // 16^4 = 65536 slots at depth 4; the deepest pair of 2^16 random hashes shares about 32
  // bits (a birthday bound), so the deepest entry sits near depth 9.
  EXPECT_GE(s.max_depth, 4u);
  EXPECT_LE(s.max_depth, 12u);
  EXPECT_GT(s.bytes, n * sizeof(int) * 2);
  EXPECT_EQ(s.size, static_cast<std::size_t>(n));
}

TEST(TrieMapShape, ClearPublishesAnEmptyRootAndTheMapStaysUsable) {
  deep_map m;
  for (int k = 0; k < 100; ++k) m.store(k, k);
  const auto v = m.version();
  m.clear();
  EXPECT_GT(m.version(), v);
  EXPECT_EQ(m.size(), 0u);
  EXPECT_EQ(m.stats().nodes, 1u);
  EXPECT_FALSE(m.contains(3));
  const auto v2 = m.version();
  m.clear();  // already empty: no mutation
  EXPECT_EQ(m.version(), v2);
  m.store(3, 4);
  EXPECT_EQ(m.load(3), 4);
  EXPECT_EQ(m.size(), 1u);
}

// ---- concurrency --------------------------------------------------------------------------------

TEST(TrieMapConcurrency, FourThreadsWritingDisjointKeysOnDeepCollidingPathsLoseNothing) {
  watchdog dog("disjoint writers");
  deep_map m;
  constexpr unsigned threads = 4;
  // Thread t owns keys k % 4 == t: each collision group (4 consecutive keys) has one key of
  // every thread, so all four write into the same chains and the same 16-deep paths.
  const int keys = static_cast<int>(scaled(4 * k_deep_keys, 2));
  const int rounds = static_cast<int>(scaled(21, 4));  // odd: the last round keeps its keys
  run_threads(threads, [&](unsigned t) {
    for (int r = 0; r < rounds; ++r) {
      for (int k = static_cast<int>(t); k < keys; k += threads) m.store(k, r);
      for (int k = static_cast<int>(t); k < keys; k += 2 * threads) {
        ASSERT_EQ(m.load_and_delete(k), r) << "key " << k << " round " << r;
      }
      for (int k = static_cast<int>(t); k < keys; k += 2 * threads) {
        auto [v, loaded] = m.load_or_store(k, r + 1000);
        ASSERT_FALSE(loaded) << "key " << k << " came back: " << v;
      }
      for (int k = static_cast<int>(t); k < keys; k += threads) {
        ASSERT_EQ(m.compute(k, [](std::optional<int> cur) { return cur.value_or(-1) + 1; }),
                  (k / static_cast<int>(threads)) % 2 == 0 ? r + 1001 : r + 1)
            << "key " << k;
        ASSERT_TRUE(m.compare_and_swap(k, m.load(k).value(), r)) << "key " << k;
      }
      // Lose half of this thread's keys for good every other round (prunes, then regrows).
      if (r % 2 == 1) {
        for (int k = static_cast<int>(t); k < keys; k += threads) ASSERT_TRUE(m.erase(k));
      }
    }
  });
  const int last = rounds - 1;
  std::size_t expected = 0;
  for (int k = 0; k < keys; ++k) {
    if (last % 2 == 1) {
      ASSERT_FALSE(m.contains(k)) << k;
    } else {
      ASSERT_EQ(m.load(k), last) << k;
      ++expected;
    }
  }
  EXPECT_EQ(m.size(), expected);
  EXPECT_EQ(m.stats().entries, expected);
}

// Every call, random keys and values, 4 threads, under the degenerate hash (deep paths, shared
// chains, constant pruning and expansion) and then under the default one.
template <class M>
void mixed_stress(std::size_t total_ops, int keys) {
  watchdog dog("mixed stress");
  M m;
  constexpr unsigned threads = 4;
  const std::size_t per_thread = total_ops / threads;
  run_threads(threads, [&](unsigned t) {
    test_rng rng(77 + t);
    std::uint64_t last_version = 0;
    for (std::size_t i = 0; i < per_thread; ++i) {
      const int k = static_cast<int>(rng.below(static_cast<std::uint64_t>(keys)));
      const int v = static_cast<int>(rng.below(16));
      switch (rng.below(16)) {
        case 0:
          if (auto got = m.load(k)) {
            ASSERT_LT(*got, 16);
          }
          break;
        case 1:
          (void)m.contains(k);
          break;
        case 2:
          m.visit(k, [](const int& x) { ASSERT_LT(x, 16); });
          break;
        case 3:
          m.store(k, v);
          break;
        case 4:
          ASSERT_LT(m.load_or_store(k, v).first, 16);
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
          if (rng.below(128) == 0) {
            std::vector<int> seen;
            m.range([&](const int& key, const int& x) {
              EXPECT_LT(x, 16);
              seen.push_back(key);
              return seen.size() < 256;
            });
            std::sort(seen.begin(), seen.end());
            ASSERT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end())
                << "range saw a key twice";
          }
          break;
        case 12:
          if (rng.below(4000) == 0) m.clear();
          break;
        case 13:
          if (rng.below(1000) == 0) {
            ASSERT_LE(m.snapshot().size(), static_cast<std::size_t>(keys));
          }
          break;
        default: {
          const std::uint64_t now = m.version();
          ASSERT_GE(now, last_version);
          last_version = now;
        }
      }
    }
  });
  std::size_t counted_entries = 0;
  m.range([&](const int&, const int&) { ++counted_entries; });
  EXPECT_EQ(m.size(), counted_entries);
  const auto s = m.stats();
  EXPECT_EQ(s.entries, counted_entries);
  // Quiet now: every remaining key answers a lookup.
  m.range([&](const int& k, const int& v) { EXPECT_EQ(m.load(k), v); });
}

TEST(TrieMapConcurrency, MillionOperationStressUnderTheDegenerateHash) {
  mixed_stress<deep_map>(scaled(1'000'000, 4), 2 * k_deep_keys);
}

// The degenerate hash above is the hard case; under sanitizers this one runs a tenth (TSan on
// the loaded 2-core box took ~50 s for a quarter).
TEST(TrieMapConcurrency, MillionOperationStressUnderTheDefaultHash) {
  mixed_stress<TrieMap<int, int>>(scaled(1'000'000, 10), 4096);
}

// Deleters prune nodes while inserters expand the same paths and clear swaps the root.
TEST(TrieMapConcurrency, PruningRacesWithExpansionAndClear) {
  watchdog dog("prune/expand/clear");
  deep_map m;
  std::atomic<bool> stop{false};
  std::atomic<long> iterations{0};
  const long clears = static_cast<long>(scaled(200, 8));
  run_threads(4, [&](unsigned t) {
    if (t == 3) {
      // Clears spread over the writers' progress (not sleeps): one per two writer bursts.
      for (long r = 0; r < clears; ++r) {
        while (iterations.load() < 2 * r) std::this_thread::yield();
        m.clear();
      }
      stop.store(true);
      return;
    }
    while (!stop.load()) {
      // Each writer owns keys t, t+3, t+6...: it inserts a burst, then deletes it, emptying
      // (and pruning) the nodes the others are expanding.
      for (int k = static_cast<int>(t); k < 3 * 64; k += 3) m.store(k, k);
      for (int k = static_cast<int>(t); k < 3 * 64; k += 3) {
        (void)m.load_and_delete(k);  // clear may have taken it first
      }
      iterations.fetch_add(1);
    }
  });
  // Every writer deleted all its keys last, so nothing may be left, not even a node.
  EXPECT_EQ(m.size(), 0u);
  const auto s = m.stats();
  EXPECT_EQ(s.entries, 0u);
  EXPECT_EQ(s.nodes, 1u) << "a node left empty was not pruned";
}

// range's two promises while every chain it walks is rewritten (prefix copies, replaced entries
// moved to the head): a key present throughout is seen exactly once, and no key is seen twice.
// Keys k % 4 == 0 stay; 4 writers churn the other three keys of each chain, 2 threads range.
TEST(TrieMapConcurrency, RangeSeesEveryStableKeyOnceWhileItsChainIsRewritten) {
  watchdog dog("range under churn");
  deep_map m;
  for (int k = 0; k < k_deep_keys; k += k_group) m.store(k, k);
  constexpr unsigned writers = 4;
  const int rounds = static_cast<int>(scaled(60, 6));
  std::atomic<unsigned> writers_done{0};
  run_threads(writers + 2, [&](unsigned t) {
    if (t >= writers) {
      // Readers range until every writer is done (bounded by the writers' rounds), then once more.
      for (bool last = false; !last;) {
        last = writers_done.load() == writers;
        std::vector<int> count(k_deep_keys + 1, 0);
        m.range([&](const int& k, const int& v) {
          ASSERT_GE(k, 0);
          ASSERT_LT(k, k_deep_keys);
          ASSERT_EQ(++count[k], 1) << "key " << k << " seen twice";
          if (k % k_group == 0) {
            EXPECT_EQ(v, k);
          }
        });
        for (int k = 0; k < k_deep_keys; k += k_group) {
          ASSERT_EQ(count[k], 1) << "stable key " << k;
        }
      }
      return;
    }
    test_rng rng(900 + t);
    for (int r = 0; r < rounds; ++r) {
      for (int g = 0; g < k_deep_keys; g += k_group) {
        const int k = g + 1 + static_cast<int>(rng.below(k_group - 1));
        switch (rng.below(4)) {
          case 0:
            m.store(k, r);
            break;
          case 1:
            (void)m.erase(k);
            break;
          case 2:
            m.compute(k, [](std::optional<int> cur) -> std::optional<int> {
              if (cur) return std::nullopt;
              return 1;
            });
            break;
          default:
            (void)m.load_or_store(k, r);
        }
      }
    }
    writers_done.fetch_add(1);
  });
  for (int k = 0; k < k_deep_keys; k += k_group) EXPECT_EQ(m.load(k), k);
}

// ---- reclamation -----------------------------------------------------------------------------

struct churn_key_tag {};
struct churn_value_tag {};

// deep_trie_hash on a counted key's number: deep paths and chains for counted keys too.
struct counted_key_hash {
  using is_avalanching = void;
  std::size_t operator()(const counted<churn_key_tag>& k) const noexcept {
    return deep_trie_hash<k_group>{}(k.value());
  }
};

TEST(TrieMapReclamation, EveryKeyAndValueIsDestroyedExactlyOnceAfterTheMapAndAGracePeriod) {
  using key = counted<churn_key_tag>;
  using value = counted<churn_value_tag>;
  auto& kc = key::counters();
  auto& vc = value::counters();
  kc.reset();
  vc.reset();
  {
    watchdog dog("counted churn");
    TrieMap<key, value, counted_key_hash> m;
    const int keys = 512;
    const std::size_t per_thread = scaled(40'000, 8);
    run_threads(4, [&](unsigned t) {
      test_rng rng(500 + t);
      for (std::size_t i = 0; i < per_thread; ++i) {
        const int k = static_cast<int>(rng.below(keys));
        const int v = static_cast<int>(rng.below(8));
        switch (rng.below(8)) {
          case 0:
            m.store(key(k), value(v));
            break;
          case 1:
            (void)m.swap(key(k), value(v));
            break;
          case 2:
            (void)m.load_or_store(key(k), value(v));
            break;
          case 3:
            (void)m.load_and_delete(key(k));
            break;
          case 4:
            m.compare_and_swap(key(k), value(v), value(v + 1));
            break;
          case 5:
            m.compute(key(k), [](std::optional<value> cur) -> std::optional<value> {
              if (cur && cur->value() > 6) return std::nullopt;
              return value(cur ? cur->value() + 1 : 0);
            });
            break;
          case 6:
            m.compare_and_delete(key(k), value(v));
            break;
          default:
            if (rng.below(500) == 0) {
              m.clear();
            } else {
              (void)m.load(key(k));
            }
        }
      }
    });
    // Quiet: once the retired objects are freed, the live instances are exactly the map's.
    safemap::rcu::barrier();
    EXPECT_EQ(vc.live.load(), static_cast<long>(m.size()));
    EXPECT_EQ(kc.live.load(), static_cast<long>(m.size()));
    EXPECT_GT(m.size(), 0u);
  }
  safemap::rcu::barrier();
  EXPECT_EQ(vc.live.load(), 0);
  EXPECT_EQ(kc.live.load(), 0);
  EXPECT_EQ(vc.bad_destroys.load(), 0);
  EXPECT_EQ(kc.bad_destroys.load(), 0);
}

// ---- in-place values and batched retirement ---------------------------------------------------

// Which values take which path: small, trivially copyable, lock-free as atomics and with unique
// object representations are written in place; everything else is boxed in immutable entries.
struct two_ints {
  std::int32_t a;
  std::int32_t b;
  friend bool operator==(const two_ints&, const two_ints&) = default;
};
struct padded {
  char c;
  std::int32_t i;
};
enum class colour : std::uint8_t { red, green };
struct no_default {
  explicit no_default(int x) : v(x) {}
  int v;
};
static_assert(safemap::detail::trie_inline_value<std::uint64_t>::value);
static_assert(safemap::detail::trie_inline_value<int>::value);
static_assert(safemap::detail::trie_inline_value<colour>::value);
static_assert(safemap::detail::trie_inline_value<two_ints>::value);
static_assert(safemap::detail::trie_inline_value<const void*>::value);
static_assert(!safemap::detail::trie_inline_value<double>::value, "+0.0 == -0.0: boxed");
static_assert(!safemap::detail::trie_inline_value<padded>::value, "padding bits: boxed");
static_assert(!safemap::detail::trie_inline_value<std::string>::value);
static_assert(!safemap::detail::trie_inline_value<no_default>::value, "compute keeps a V");
static_assert(!safemap::detail::trie_inline_value<std::array<std::uint64_t, 2>>::value);

// An in-place write to an existing key retires nothing (no entry is replaced); a boxed one
// retires the entry it replaces. rcu::buffered() counts this thread's retired objects.
TEST(TrieMapInPlace, WritesToExistingKeysRetireNothingInPlaceAndOneEntryEachBoxed) {
  watchdog dog("in-place vs boxed writes");
  TrieMap<int, std::uint64_t> in_place;
  TrieMap<int, double> boxed;
  in_place.store(1, 1);
  boxed.store(1, 1);
  safemap::rcu::barrier();  // empties this thread's buffer
  ASSERT_EQ(safemap::rcu::buffered(), 0u);

  in_place.store(1, 2);
  EXPECT_EQ(in_place.swap(1, 3), 2u);
  EXPECT_TRUE(in_place.compare_and_swap(1, 3, 4));
  EXPECT_FALSE(in_place.compare_and_swap(1, 3, 5));
  EXPECT_EQ(in_place.compute(1, [](std::optional<std::uint64_t> v) { return *v + 1; }), 5u);
  EXPECT_EQ(in_place.load(1), 5u);
  EXPECT_EQ(safemap::rcu::buffered(), 0u) << "an in-place write replaced an entry";

  boxed.store(1, 2);
  EXPECT_EQ(boxed.swap(1, 3), 2.0);
  EXPECT_TRUE(boxed.compare_and_swap(1, 3, 4));
  EXPECT_EQ(boxed.compute(1, [](std::optional<double> v) { return *v + 1; }), 5.0);
  EXPECT_EQ(boxed.load(1), 5.0);
  EXPECT_EQ(safemap::rcu::buffered(), 4u) << "each boxed write replaces (and retires) its entry";

  // Deletes retire the entry on both paths.
  EXPECT_EQ(in_place.load_and_delete(1), 5u);
  EXPECT_TRUE(boxed.erase(1));
  EXPECT_EQ(safemap::rcu::buffered(), 6u);
  safemap::rcu::barrier();
}

// Tokens are conserved: every operation moves whole tokens between the map and the threads
// (swap, load_and_delete, compare_and_swap, compare_and_delete), so at the end the map and the
// threads hold every token exactly once. Keys share full hashes in chains of 4, so removals
// copy chain prefixes (freezing the entries that in-place writers are writing), and 8 threads
// on 2 cores get preempted inside the writer word. A lost or duplicated write shows as a
// missing or doubled token.
template <class V>
void run_token_conservation(std::uint64_t seed) {
  watchdog dog("token conservation");
  TrieMap<int, V, deep_trie_hash<4>> m;
  constexpr int keys = 16;
  constexpr unsigned threads = 8;
  constexpr std::uint64_t tokens_per_thread = 4;
  for (int k = 0; k < keys; ++k) m.store(k, static_cast<V>(1000 + k));  // tokens 1000..1015
  std::vector<std::vector<std::uint64_t>> held(threads);
  for (unsigned t = 0; t < threads; ++t) {
    for (std::uint64_t i = 0; i < tokens_per_thread; ++i) held[t].push_back(t * 100 + i + 1);
  }
  const std::size_t ops = scaled(60'000, 10);
  run_threads(threads, [&](unsigned t) {
    test_rng rng(seed + t);
    std::vector<std::uint64_t>& mine = held[t];
    for (std::size_t i = 0; i < ops; ++i) {
      const int k = static_cast<int>(rng.below(keys));
      switch (rng.below(mine.empty() ? 2 : 5)) {
        case 0:
          if (auto v = m.load_and_delete(k)) mine.push_back(static_cast<std::uint64_t>(*v));
          break;
        case 1:
          if (auto v = m.load(k)) {
            if (m.compare_and_delete(k, *v)) mine.push_back(static_cast<std::uint64_t>(*v));
          }
          break;
        case 2:
        case 3: {
          const std::uint64_t give = mine.back();
          mine.pop_back();
          if (auto old = m.swap(k, static_cast<V>(give))) {
            mine.push_back(static_cast<std::uint64_t>(*old));
          }
          break;
        }
        default:
          if (auto v = m.load(k)) {
            const std::uint64_t give = mine.back();
            if (m.compare_and_swap(k, *v, static_cast<V>(give))) {
              mine.pop_back();
              mine.push_back(static_cast<std::uint64_t>(*v));
            }
          }
      }
    }
  });
  std::vector<std::uint64_t> all;
  m.range([&](const int&, const V& v) { all.push_back(static_cast<std::uint64_t>(v)); });
  EXPECT_EQ(all.size(), m.size());
  for (const auto& h : held) all.insert(all.end(), h.begin(), h.end());
  std::sort(all.begin(), all.end());
  std::vector<std::uint64_t> expected;
  for (int k = 0; k < keys; ++k) expected.push_back(1000 + static_cast<std::uint64_t>(k));
  for (unsigned t = 0; t < threads; ++t) {
    for (std::uint64_t i = 0; i < tokens_per_thread; ++i) expected.push_back(t * 100 + i + 1);
  }
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(all, expected) << "a token was lost or duplicated";
}

TEST(TrieMapInPlace, SwapsAndCompareAndSwapsConserveTokensInPlace) {
  static_assert(safemap::detail::trie_inline_value<std::uint64_t>::value);
  run_token_conservation<std::uint64_t>(7100);
}

TEST(TrieMapInPlace, SwapsAndCompareAndSwapsConserveTokensBoxed) {
  static_assert(!safemap::detail::trie_inline_value<double>::value);
  run_token_conservation<double>(7200);
}

// Counters incremented in place (compare_and_swap loops and compute) by 8 threads while a
// churn thread erases and re-inserts the other keys of their chains (copying and freezing the
// counters' entries): every successful increment is in the final sums.
TEST(TrieMapInPlace, InPlaceIncrementsSurviveChainCopiesAndFreezes) {
  watchdog dog("in-place increments");
  TrieMap<int, std::uint64_t, deep_trie_hash<4>> m;
  // Per chain of 4 keys (same full hash): 2 counters, 2 churned neighbours.
  constexpr int chains = 4;
  auto counter_key = [](int c, int j) { return c * 4 + j; };    // j in {0, 1}
  auto churn_key = [](int c, int j) { return c * 4 + 2 + j; };  // j in {0, 1}
  for (int c = 0; c < chains; ++c) {
    m.store(churn_key(c, 0), 0);  // inserted first: behind the counters in the chain
    m.store(counter_key(c, 0), 0);
    m.store(counter_key(c, 1), 0);
    m.store(churn_key(c, 1), 0);  // at the head
  }
  constexpr unsigned writers = 8;
  const std::size_t ops = scaled(30'000, 10);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> increments{0};
  std::thread churn([&] {
    test_rng rng(7300);
    while (!stop.load(std::memory_order_relaxed)) {
      const int k = churn_key(static_cast<int>(rng.below(chains)), static_cast<int>(rng.below(2)));
      m.erase(k);
      m.store(k, rng.below(100));
    }
  });
  run_threads(writers, [&](unsigned t) {
    test_rng rng(7400 + t);
    std::uint64_t mine = 0;
    for (std::size_t i = 0; i < ops; ++i) {
      const int k =
          counter_key(static_cast<int>(rng.below(chains)), static_cast<int>(rng.below(2)));
      if (rng.below(2) == 0) {
        for (;;) {
          const std::optional<std::uint64_t> v = m.load(k);
          ASSERT_TRUE(v.has_value()) << "a counter vanished";
          if (m.compare_and_swap(k, *v, *v + 1)) break;
        }
      } else {
        m.compute(k, [](std::optional<std::uint64_t> v) -> std::optional<std::uint64_t> {
          return v ? *v + 1 : 1;
        });
      }
      ++mine;
    }
    increments.fetch_add(mine);
  });
  stop.store(true);
  churn.join();
  std::uint64_t sum = 0;
  for (int c = 0; c < chains; ++c) {
    for (int j = 0; j < 2; ++j) sum += m.load(counter_key(c, j)).value_or(0);
  }
  EXPECT_EQ(sum, increments.load()) << "an in-place increment was lost";
}

// Swaps racing the freeze of their own entry (V1, V2): in each round the writers' keys sit in
// front of 48 keys of the same chain, and every erase of one of those copies the writers'
// entries and freezes the originals while the writers swap. Each writer alone writes its key,
// so every swap must return the value its previous swap stored: a write that landed in a
// frozen original after the freeze read it (lost) shows as an older value one swap later.
TEST(TrieMapInPlace, SwapsRacingTheFreezeOfTheirEntryAreNeverLost) {
  watchdog dog("swaps racing freezes");
  constexpr int writers = 3;
  constexpr int behind = 48;
  TrieMap<int, std::uint64_t, deep_trie_hash<64>> m;  // keys 0..63: one full hash, one chain
  const std::size_t rounds = scaled(200, 10);
  std::barrier sync(writers + 1);
  std::atomic<bool> erasing_done{false};
  std::atomic<std::uint64_t> stale{0}, swaps{0}, raced_rounds{0};
  run_threads(writers + 1, [&](unsigned t) {
    const bool churn = t == writers;
    for (std::size_t r = 0; r < rounds; ++r) {
      if (churn) {  // the writers wait at the barrier: the chain is rebuilt alone
        m.clear();
        for (int c = 0; c < behind; ++c) m.store(writers + c, 0);
        for (int w = 0; w < writers; ++w) m.store(w, 0);
        erasing_done.store(false, std::memory_order_relaxed);
      }
      sync.arrive_and_wait();
      if (churn) {
        for (int c = 0; c < behind; ++c) m.erase(writers + c);
        erasing_done.store(true, std::memory_order_release);
      } else {
        std::uint64_t last = 0;
        while (!erasing_done.load(std::memory_order_acquire)) {
          if (m.swap(static_cast<int>(t), last + 1) != last) stale.fetch_add(1);
          ++last;
        }
        if (m.load(static_cast<int>(t)) != last) stale.fetch_add(1);
        swaps.fetch_add(last);
        if (t == 0 && last > 0) raced_rounds.fetch_add(1);
      }
      sync.arrive_and_wait();
    }
  });
  EXPECT_EQ(stale.load(), 0u) << "a swap was lost (" << swaps.load() << " swaps)";
  // Not vacuous: a writer swapped while the erases ran (before it saw them done) in some rounds.
  EXPECT_GT(raced_rounds.load(), 0u) << "no round had a swap during the erases";
  EXPECT_EQ(m.size(), static_cast<std::size_t>(writers));
}

struct inplace_key_tag {};
struct inplace_key_hash {
  using is_avalanching = void;
  std::size_t operator()(const counted<inplace_key_tag>& k) const noexcept {
    return deep_trie_hash<k_group>{}(k.value());
  }
};

// Entries with in-place values are destroyed exactly once (counted keys stand for the entries),
// after the map and a grace period; and a thread's retire buffer is flushed when it exits: a
// grace period alone (no flush) then frees what it removed.
TEST(TrieMapInPlace, EveryEntryIsDestroyedOnceAndAnExitingThreadFlushesItsRemovals) {
  using key = counted<inplace_key_tag>;
  using key_hash = inplace_key_hash;
  auto& kc = key::counters();
  kc.reset();
  {
    watchdog dog("in-place instance counting");
    TrieMap<key, std::uint64_t, key_hash> m;
    const int keys = 256;
    const std::size_t per_thread = scaled(20'000, 8);
    run_threads(4, [&](unsigned t) {
      test_rng rng(7500 + t);
      for (std::size_t i = 0; i < per_thread; ++i) {
        const int k = static_cast<int>(rng.below(keys));
        const std::uint64_t v = rng.below(8);
        switch (rng.below(6)) {
          case 0:
            m.store(key(k), v);
            break;
          case 1:
            (void)m.swap(key(k), v);
            break;
          case 2:
            (void)m.load_and_delete(key(k));
            break;
          case 3:
            m.compare_and_swap(key(k), v, v + 1);
            break;
          case 4:
            m.compute(key(k), [](std::optional<std::uint64_t> cur) -> std::optional<std::uint64_t> {
              if (cur && *cur > 6) return std::nullopt;
              return cur ? *cur + 1 : 0;
            });
            break;
          default:
            if (rng.below(300) == 0) {
              m.clear();
            } else {
              m.compare_and_delete(key(k), v);
            }
        }
      }
    });
    safemap::rcu::barrier();
    EXPECT_EQ(kc.live.load(), static_cast<long>(m.size()));

    // A thread removes keys and exits: its exit flushes its buffer.
    for (int k = 0; k < keys; ++k) m.store(key(k), 1);
    safemap::rcu::barrier();
    ASSERT_EQ(kc.live.load(), keys);
    std::thread remover([&] {
      for (int k = 0; k < keys / 2; ++k) EXPECT_TRUE(m.erase(key(k)));
      EXPECT_GT(safemap::rcu::buffered(), 0u);
    });
    remover.join();
    safemap::rcu::detail::barrier_unflushed();
    EXPECT_EQ(kc.live.load(), keys - keys / 2) << "the exiting thread kept removed entries";
  }
  safemap::rcu::barrier();
  EXPECT_EQ(kc.live.load(), 0);
  EXPECT_EQ(kc.bad_destroys.load(), 0);
}

// ---- failures ----------------------------------------------------------------------------------

struct fault_tag {};

TEST(TrieMapFailures, ThrowingCopiesInChainsLeaveTheMapWholeAndUnlocked) {
  using value = throwing_ctor_value<fault_tag>;
  value::counters().reset();
  {
    TrieMap<int, value, deep_trie_hash<k_group>> m;
    std::vector<int> want(k_deep_keys);
    for (int k = 0; k < k_deep_keys; ++k) {
      m.store(k, value(k));
      want[k] = k;
    }
    fault_injector::local().configure(7, 3);
    std::size_t thrown = 0;
    test_rng rng(9);
    for (int i = 0; i < 4000; ++i) {
      const int k = static_cast<int>(rng.below(k_deep_keys));
      const int v = static_cast<int>(rng.below(1000));
      try {
        fault_scope faults;
        // Only calls that return no value: a copy of a returned value may throw after the
        // write was published, which is allowed but would hide what this test checks.
        switch (i % 4) {
          case 0:
            m.store(k, value(v));  // replacing k copies the chain entries before it
            want[k] = v;
            break;
          case 1:
            if (want[k] != -1 && m.compare_and_swap(k, value(want[k]), value(v))) want[k] = v;
            break;
          case 2:
            if (m.erase(k)) want[k] = -1;
            break;
          default:
            if (want[k] != -1 && m.compare_and_delete(k, value(want[k]))) want[k] = -1;
        }
      } catch (const injected_fault&) {
        ++thrown;
      }
      // Whole and unlocked: every key as expected, and a write to the same chain goes through.
      if (i % 97 == 0) {
        for (int j = 0; j < k_deep_keys; ++j) {
          auto got = m.load(j);
          if (want[j] == -1) {
            ASSERT_FALSE(got.has_value()) << "op " << i << " key " << j;
          } else {
            ASSERT_TRUE(got.has_value()) << "op " << i << " key " << j;
            ASSERT_EQ(got->value(), want[j]) << "op " << i << " key " << j;
          }
        }
      }
      m.store(k, value(want[k] == -1 ? 0 : want[k]));
      if (want[k] == -1) want[k] = 0;
    }
    EXPECT_GT(thrown, 100u);
    for (int j = 0; j < k_deep_keys; ++j) ASSERT_EQ(m.load(j)->value(), want[j]);
    EXPECT_EQ(m.size(), static_cast<std::size_t>(k_deep_keys));
  }
  safemap::rcu::barrier();
  EXPECT_EQ(value::counters().live.load(), 0);
  EXPECT_EQ(value::counters().bad_destroys.load(), 0);
}

TEST(TrieMapFailures, ComputeWhoseFunctionThrowsChangesNothing) {
  deep_map m;
  m.store(1, 10);
  const auto v = m.version();
  EXPECT_THROW(
      m.compute(1,
                [](std::optional<int>) -> std::optional<int> { throw std::runtime_error("no"); }),
      std::runtime_error);
  EXPECT_EQ(m.load(1), 10);
  EXPECT_EQ(m.version(), v);
  m.store(1, 11);  // the slot's node is not left locked
  EXPECT_EQ(m.load(1), 11);
}

// ---- re-entrancy -------------------------------------------------------------------------------

TEST(TrieMapReentrancy, CallbacksMayWriteToTheSameMapWithoutHanging) {
  watchdog dog("re-entrant callbacks", std::chrono::seconds(60));
  deep_map m;
  for (int k = 0; k < 64; ++k) m.store(k, k);
  // range erases what it sees and adds keys elsewhere; each original key seen at most once.
  std::vector<int> seen;
  m.range([&](const int& k, const int&) {
    seen.push_back(k);
    if (k < 64) {
      m.erase(k);
      m.store(k + 1000, k);
    }
  });
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end());
  for (int k = 0; k < 64; ++k) {
    EXPECT_FALSE(m.contains(k));
    EXPECT_EQ(m.load(k + 1000), k);
  }
  // compute's f writes its own key and a neighbour in the same chain: f runs again on the new
  // state, and the result is applied to that.
  int calls = 0;
  auto r = m.compute(1000, [&](std::optional<int> cur) -> std::optional<int> {
    if (++calls == 1) {
      m.store(1000, 500);
      m.store(1001, 501);
    }
    return cur.value_or(0) + 1;
  });
  EXPECT_EQ(r, 501);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(m.load(1001), 501);
  // visit's f writes to the key it is looking at; f keeps the value it was given.
  EXPECT_TRUE(m.visit(1002, [&](const int& v) {
    m.store(1002, v + 100);
    EXPECT_EQ(v, 2);
  }));
  EXPECT_EQ(m.load(1002), 102);
}

// ---- regressions ---------------------------------------------------------------------------

// Key equality that, once armed, runs a hook the first time it is called (from the same
// thread, with no lock held: TrieMap compares keys outside its locks). Makes a race that
// needs another thread's write between a descent and the re-check deterministic.
struct hooked_eq {
  static inline thread_local std::function<void()> hook;
  bool operator()(const std::string& a, const std::string& b) const {
    if (hook) {
      auto h = std::move(hook);
      hook = nullptr;
      h();
    }
    return a == b;
  }
};

// load_or_store moved its key into the new entry before the first attempt and compared the
// moved-from key on a retry: when the same key was stored between its look and its commit,
// the retry missed it and inserted the key a second time (two entries for one key).
TEST(TrieMapRegression, LoadOrStoreRetrySeesTheKeyStoredMeanwhile) {
  TrieMap<std::string, int, constant_hash, hooked_eq> m;  // one chain holds every key
  const std::string key = "a key long enough to live on the heap, not in the string";
  m.store("other", 1);
  hooked_eq::hook = [&] { m.store(key, 99); };  // lands while load_or_store looks at the chain
  const auto [v, loaded] = m.load_or_store(key, 7);
  EXPECT_TRUE(loaded);
  EXPECT_EQ(v, 99);
  EXPECT_EQ(m.load(key), 99);
  EXPECT_EQ(m.size(), 2u);
  EXPECT_EQ(m.stats().entries, 2u) << "one key, two entries";
}

// The same race between threads: every thread offers its value for the same fresh keys;
// exactly one of them stores each key, and every other one gets the stored value back.
TEST(TrieMapRegression, RacingLoadOrStoreOfStringKeysStoresEachKeyOnce) {
  watchdog dog("racing load_or_store");
  TrieMap<std::string, int, constant_hash> m;  // one chain: every insert changes the slot
  constexpr unsigned threads = 6;
  const int keys = static_cast<int>(scaled(400, 4));
  std::vector<std::vector<int>> winners(threads);
  std::vector<std::vector<int>> got(threads, std::vector<int>(keys, -1));
  run_threads(threads, [&](unsigned t) {
    for (int k = 0; k < keys; ++k) {
      auto [v, loaded] =
          m.load_or_store("key number " + std::to_string(k) + " of many", static_cast<int>(t));
      if (!loaded) winners[t].push_back(k);
      got[t][k] = v;
    }
  });
  std::vector<int> won_by(keys, -1);
  for (unsigned t = 0; t < threads; ++t) {
    for (int k : winners[t]) {
      ASSERT_EQ(won_by[k], -1) << "key " << k << " stored by two threads";
      won_by[k] = static_cast<int>(t);
    }
  }
  for (int k = 0; k < keys; ++k) {
    ASSERT_NE(won_by[k], -1) << k;
    for (unsigned t = 0; t < threads; ++t) ASSERT_EQ(got[t][k], won_by[k]) << "key " << k;
  }
  EXPECT_EQ(m.size(), static_cast<std::size_t>(keys));
  EXPECT_EQ(m.stats().entries, static_cast<std::size_t>(keys));
}

// compute's f writing another key of its key's collision chain (a counter kept next to the
// key, say) changed the chain head, so the re-check failed and f ran again, wrote again, and so
// on for ever: the map's "f may call any method of this map, never hangs" did not hold. Now a
// retry whose key still has the same entry publishes f's first result, and a replaced entry
// moves to the head of its chain, so repeated writes to the same neighbours stop copying it.
TEST(TrieMapRegression, ComputeWhoseFunctionWritesAChainNeighbourFinishes) {
  for (const bool neighbour_first : {true, false}) {
    deep_map m;  // keys 0..3 share one full hash: one chain
    // The chain lists the last inserted key first.
    if (neighbour_first) {
      m.store(0, 0);
      m.store(1, 1);
    } else {
      m.store(1, 1);
      m.store(0, 0);
    }
    int calls = 0;
    const auto r = m.compute(0, [&](std::optional<int> cur) -> std::optional<int> {
      // Stop writing after a while so that a livelock fails the test instead of hanging it.
      if (++calls < 100) m.store(1, 100 + calls);
      if (calls < 100) m.store(2, 200 + calls);
      return cur.value_or(-1) + 10;
    });
    EXPECT_EQ(r, 10);
    EXPECT_LE(calls, 2) << "neighbour_first " << neighbour_first;
    EXPECT_EQ(m.load(0), 10);
    EXPECT_EQ(m.load(1), 100 + calls);
    EXPECT_EQ(m.load(2), 200 + calls);
    EXPECT_EQ(m.size(), 3u);
  }
}

// ---- serialization -----------------------------------------------------------------------------

TEST(TrieMapSerialization, JsonAndSnapshotFilesRoundTrip) {
  using string_map = TrieMap<std::string, int>;
  string_map m;
  safemap::Map<std::string, int> plain;
  for (int k = 0; k < 300; ++k) {
    m.store("key-" + std::to_string(k), k);
    plain.insert_or_assign("key-" + std::to_string(k), k);
  }
  const std::string text = safemap::to_json(m);
  EXPECT_EQ(text, safemap::to_json(plain));
  const auto back = safemap::from_json<string_map>(text);
  EXPECT_EQ(back.size(), 300u);
  EXPECT_EQ(back.load("key-42"), 42);
  EXPECT_EQ(safemap::to_json(back), text);

  string_map merged;
  merged.store("key-0", -1);
  merged.store("other", 7);
  safemap::merge_json(merged, text);
  EXPECT_EQ(merged.size(), 301u);
  EXPECT_EQ(merged.load("key-0"), 0);
  EXPECT_EQ(merged.load("other"), 7);
  EXPECT_THROW(safemap::merge_json(merged, R"({"key-1": 5, "key-1": 6})"), safemap::json_error);
  EXPECT_EQ(merged.load("key-1"), 1) << "a rejected merge changes nothing";

  const auto dir =
      std::filesystem::temp_directory_path() / ("safemap-trie-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "trie.snap";
  safemap::save_snapshot(m, path);
  const auto loaded = safemap::load_snapshot<string_map>(path);
  EXPECT_EQ(safemap::to_json(loaded), text);
  std::filesystem::remove_all(dir);
}

// load_many descends the trie for a group of keys together, a level per pass. Keys whose
// descents end at different depths (a shallow map of well-spread hashes, and deep_map's
// 16-level paths ending in collision chains) must each get what load gives, before and after
// erases that leave chains shorter and slots empty.
TEST(TrieMapLoadMany, DescentsOfDifferentDepthsGiveWhatLoadGives) {
  auto check = [](auto& m, int key_space) {
    std::vector<int> keys;
    for (int k = -3; k < key_space + 3; ++k) keys.push_back(k);
    for (int k = key_space - 1; k >= 0; k -= 5) keys.push_back(k);
    std::vector<std::optional<int>> out(keys.size(), std::optional<int>(-9));
    const std::size_t found =
        m.load_many(std::span<const int>(keys), std::span<std::optional<int>>(out));
    std::size_t expected = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const std::optional<int> v = m.load(keys[i]);
      ASSERT_EQ(out[i], v) << "key " << keys[i];
      expected += v.has_value();
    }
    EXPECT_EQ(found, expected);
  };
  TrieMap<int, int> shallow;
  deep_map deep;
  for (int k = 0; k < 1'000; ++k) {
    shallow.store(k, k * 2 + 1);
    if (k < 200) deep.store(k, k * 2 + 1);
  }
  check(shallow, 1'000);
  check(deep, 200);
  for (int k = 0; k < 1'000; k += 3) shallow.erase(k);
  for (int k = 0; k < 200; k += 3) deep.erase(k);
  check(shallow, 1'000);
  check(deep, 200);
}

}  // namespace
