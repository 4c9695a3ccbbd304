// The tophash group questions every probe asks (detail/bucket.hpp), against a byte-by-byte
// reference: the SSE2 version (x86) and the portable SWAR version must answer exactly what the
// definitions say, for every slot, including the evacuation markers and the values next to the
// boundaries (0, 1, 4, 5, 255), where a borrow or a signed compare would go wrong.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <random>

#include "safemap/detail/bucket.hpp"

namespace safemap_test {
namespace {

using safemap::detail::bucket_cnt;
using safemap::detail::slot_mask;
using safemap::detail::tophash_group;
using safemap::detail::tophash_probe;

using group_bytes = std::array<std::uint8_t, bucket_cnt>;

// The slots of a mask, as a bit per slot.
unsigned slots_of(slot_mask m) {
  unsigned bits = 0;
  for (; m; m.clear_lowest()) bits |= 1u << m.lowest();
  return bits;
}
unsigned slots_by_contains(slot_mask m) {
  unsigned bits = 0;
  for (unsigned i = 0; i < bucket_cnt; ++i) bits |= m.contains(i) ? 1u << i : 0u;
  return bits;
}

template <class Pred>
unsigned reference(const group_bytes& g, Pred pred) {
  unsigned bits = 0;
  for (unsigned i = 0; i < bucket_cnt; ++i) bits |= pred(g[i]) ? 1u << i : 0u;
  return bits;
}

static_assert(sizeof(std::size_t) == 8, "tophashes are the top byte of a 64-bit hash");

// A hash whose top byte is top, with other bits set below it (a probe must use the top byte
// only).
std::size_t hash_with_top(unsigned top, std::uint64_t low = 0x00a5c3e1f0b49687) {
  return static_cast<std::size_t>((std::uint64_t{top} << 56) | (low & 0x00ffffffffffffff));
}

void check_group(const group_bytes& g) {
  const tophash_group t(g.data());
  SCOPED_TRACE(::testing::PrintToString(g));
  // Every top byte a hash can have, markers included: a probe matches the slots holding the
  // tophash an insert of that hash would store.
  for (unsigned top = 0; top < 256; ++top) {
    const std::uint8_t th = safemap::detail::tophash_of(hash_with_top(top));
    const auto want = reference(g, [&](std::uint8_t b) { return b == th; });
    const tophash_probe p(hash_with_top(top));
    // Compared by hand, reported through gtest only on a mismatch: 256 probes of 20,000 groups
    // are too many gtest assertions for the sanitizer builds.
    const unsigned got = slots_of(t.match(p));
    const unsigned got_contains = slots_by_contains(t.match(p));
    if (got != want || got_contains != want) {
      ADD_FAILURE() << "top " << top << ": lowest() walk " << got << ", contains() " << got_contains
                    << ", want " << want;
    }
  }
  EXPECT_EQ(slots_of(t.match_empty()), reference(g, [](std::uint8_t b) { return b <= 1; }));
  EXPECT_EQ(slots_of(t.match_full()), reference(g, [](std::uint8_t b) { return b > 1; }));
  EXPECT_EQ(t.has_empty_rest(), reference(g, [](std::uint8_t b) { return b == 0; }) != 0);
}

TEST(TophashGroup, EveryQuestionAgreesWithTheByteByByteDefinition) {
  std::mt19937_64 rng(20261206);
  // Mostly the values that matter (markers 0-4, the first tophash 5, the top of the range),
  // sometimes any byte.
  const std::uint8_t interesting[] = {0, 1, 2, 3, 4, 5, 6, 0x7f, 0x80, 0x81, 0xfe, 0xff};
  for (int n = 0; n < 20000; ++n) {
    group_bytes g;
    for (auto& b : g) {
      b = (rng() & 3) != 0 ? interesting[rng() % std::size(interesting)]
                           : static_cast<std::uint8_t>(rng());
    }
    check_group(g);
    if (HasFailure()) return;  // one counterexample is enough
  }
}

TEST(TophashGroup, UniformGroupsOfEachByteValue) {
  for (unsigned v = 0; v < 256; ++v) {
    group_bytes g;
    g.fill(static_cast<std::uint8_t>(v));
    check_group(g);
    g[static_cast<std::size_t>(v % bucket_cnt)] = static_cast<std::uint8_t>(255 - v);
    check_group(g);
  }
}

TEST(TophashGroup, LowestWalksMatchesInSlotOrder) {
  const group_bytes g = {9, 0, 9, 1, 9, 9, 3, 9};
  tophash_group t(g.data());
  slot_mask m = t.match(tophash_probe(hash_with_top(9)));
  const unsigned expected[] = {0, 2, 4, 5, 7};
  for (const unsigned want : expected) {
    ASSERT_TRUE(m);
    EXPECT_EQ(m.lowest(), want);
    m.clear_lowest();
  }
  EXPECT_FALSE(m);
}

// Inserts store tophash_of(hash) (or the probe's top()) and lookups match with the probe built
// from the same hash: for every top byte, with any bits below it, the three must agree, and
// the byte-sized markers (0-4) must be raised to the first real tophash.
TEST(TophashProbe, AgreesWithTophashOfForEveryTopByte) {
  using safemap::detail::min_top_hash;
  using safemap::detail::tophash_of;
  std::mt19937_64 rng(7);
  for (unsigned v = 0; v < 256; ++v) {
    for (const std::size_t low : {std::size_t{0}, ~std::size_t{0}, std::size_t{rng()}}) {
      const std::size_t h = hash_with_top(v, low);
      const std::uint8_t want = static_cast<std::uint8_t>(v < min_top_hash ? min_top_hash : v);
      ASSERT_EQ(tophash_of(h), want) << "top byte " << v;
      const tophash_probe p(h);
      ASSERT_EQ(p.top(), want) << "top byte " << v;
      // A group holding the tophash once, next to its neighbours and the markers.
      const group_bytes g = {0,
                             1,
                             2,
                             3,
                             want,
                             static_cast<std::uint8_t>(want + 1),
                             static_cast<std::uint8_t>(want - 1),
                             min_top_hash};
      const unsigned expect = reference(g, [&](std::uint8_t b) { return b == want; });
      ASSERT_EQ(slots_of(tophash_group(g.data()).match(p)), expect) << "top byte " << v;
    }
  }
}

}  // namespace
}  // namespace safemap_test
