// safemap::Hash: per-object random seeds (HashDoS resistance, docs/design.md §2), reseeding by
// Map, the transparent string hasher, and distribution quality.
//
// Quality: safemap::Map uses the low B bits of a hash as the bucket index and the top byte as
// the tophash, so both must be uniform even for the key families that break weak mixers
// (sequential integers, integers differing only in high bits, multiples of large powers of
// two, strings with a long shared prefix). Each family is hashed with several fixed seeds
// (deterministic) and the counts per bucket / per top byte must pass a chi-square test:
// statistic < dof + 6 * sqrt(2 * dof), about 6 standard deviations above the mean.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <ostream>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "safemap/hash.hpp"
#include "safemap/map.hpp"

namespace safemap_test {
namespace {

// --- seeding ----------------------------------------------------------------------------------

TEST(HashSeed, DefaultConstructedHashersHaveDifferentSeeds) {
  std::set<std::uint64_t> seeds;
  for (int i = 0; i < 100; ++i) seeds.insert(safemap::Hash<std::uint64_t>().seed());
  for (int i = 0; i < 100; ++i) seeds.insert(safemap::Hash<std::string>().seed());
  EXPECT_EQ(seeds.size(), 200u);
  const safemap::Hash<int> a;
  const safemap::Hash<int> b;
  int same = 0;
  for (int k = 0; k < 1000; ++k) same += a(k) == b(k) ? 1 : 0;
  EXPECT_LE(same, 1);
}

TEST(HashSeed, ExplicitSeedMakesHashingDeterministic) {
  const safemap::Hash<std::uint64_t> a(42);
  const safemap::Hash<std::uint64_t> b(42);
  EXPECT_EQ(a.seed(), b.seed());
  for (std::uint64_t k = 0; k < 1000; ++k) ASSERT_EQ(a(k), b(k));
  const safemap::Hash<std::string> s(42);
  EXPECT_EQ(s("hello"), safemap::Hash<std::string>(42)("hello"));
}

TEST(HashSeed, SeedIsNeverZero) {
  // A zero seed would make the seeded mixers degenerate for key 0.
  EXPECT_NE(safemap::Hash<std::uint64_t>(0).seed(), 0u);
  EXPECT_NE(safemap::Hash<std::string>(0).seed(), 0u);
  EXPECT_NE(safemap::Hash<std::uint64_t>(0)(0), safemap::Hash<std::uint64_t>(0)(1));
}

TEST(HashSeed, DifferentSeedsGiveUnrelatedHashes) {
  const safemap::Hash<std::uint64_t> a(1001);
  const safemap::Hash<std::uint64_t> b(2003);
  const safemap::Hash<std::string> sa(1001);
  const safemap::Hash<std::string> sb(2003);
  int same = 0;
  int same_bucket = 0;
  for (std::uint64_t k = 0; k < 4096; ++k) {
    same += a(k) == b(k) ? 1 : 0;
    same_bucket += (a(k) & 255) == (b(k) & 255) ? 1 : 0;
    same += sa(std::to_string(k)) == sb(std::to_string(k)) ? 1 : 0;
  }
  EXPECT_EQ(same, 0);
  EXPECT_LT(same_bucket, 4096 / 256 * 3) << "bucket choices are correlated across seeds";
}

TEST(HashSeed, ReseedDrawsANewSeed) {
  safemap::Hash<int> h(7);
  const auto before = h.seed();
  const auto hash_before = h(12345);
  h.reseed();
  EXPECT_NE(h.seed(), before);
  EXPECT_NE(h(12345), hash_before);
}

TEST(HashSeed, MapClearReseeds) {
  safemap::Map<int, int> m;
  for (int i = 0; i < 100; ++i) m.insert_or_assign(i, i);
  const auto before = m.hash_function().seed();
  m.clear();
  EXPECT_NE(m.hash_function().seed(), before);
  m.insert_or_assign(1, 1);
  EXPECT_EQ(m.at(1), 1);
}

TEST(HashSeed, ErasingTheLastEntryReseeds) {
  safemap::Map<std::string, int> m;
  m.insert_or_assign("a", 1);
  m.insert_or_assign("b", 2);
  const auto before = m.hash_function().seed();
  m.erase("a");
  EXPECT_EQ(m.hash_function().seed(), before) << "only emptying the map reseeds";
  m.erase("b");
  EXPECT_NE(m.hash_function().seed(), before);
  m.insert_or_assign("c", 3);
  EXPECT_EQ(m.at("c"), 3);
}

TEST(HashSeed, EveryMapGetsItsOwnSeed) {
  safemap::Map<int, int> a;
  safemap::Map<int, int> b;
  EXPECT_NE(a.hash_function().seed(), b.hash_function().seed());
}

// --- interface ---------------------------------------------------------------------------------

template <class H>
concept avalanching = requires {
  typename H::is_avalanching;
};
template <class H>
concept transparent = requires {
  typename H::is_transparent;
};

TEST(HashInterface, EveryHashDeclaresAvalanchingAndStringHashesAreTransparent) {
  static_assert(avalanching<safemap::Hash<int>>);
  static_assert(avalanching<safemap::Hash<std::uint64_t>>);
  static_assert(avalanching<safemap::Hash<std::string>>);
  static_assert(avalanching<safemap::Hash<std::string_view>>);
  static_assert(transparent<safemap::Hash<std::string>>);
  static_assert(transparent<safemap::Hash<std::string_view>>);
  static_assert(!transparent<safemap::Hash<int>>);
  static_assert(noexcept(safemap::Hash<int>()(1)));
  static_assert(noexcept(safemap::Hash<std::string>()(std::string_view())));
  SUCCEED();
}

TEST(HashInterface, StringHashAgreesAcrossStringStringViewAndCharPointer) {
  const safemap::Hash<std::string> h(99);
  const safemap::Hash<std::string_view> hv(99);
  for (const char* s :
       {"", "a", "hello, world", "a somewhat longer string with more than 16 bytes",
        "a string long enough to take XXH3's long-input path, which starts "
        "above 240 bytes of input: .................................................."
        "................................................................"}) {
    const std::string str(s);
    EXPECT_EQ(h(str), h(std::string_view(str))) << s;
    EXPECT_EQ(h(str), h(s)) << s;
    EXPECT_EQ(h(str), hv(std::string_view(str))) << s;
  }
}

TEST(HashInterface, EqualFloatingPointKeysHashEqually) {
  const safemap::Hash<double> h(5);
  EXPECT_EQ(h(0.0), h(-0.0));
  EXPECT_NE(h(1.0), h(2.0));
  const safemap::Hash<float> f(5);
  EXPECT_EQ(f(0.0f), f(-0.0f));
  safemap::Map<double, int> m;
  m.insert_or_assign(0.0, 1);
  EXPECT_TRUE(m.contains(-0.0));
}

TEST(HashInterface, EnumsPointersAndOtherTypesHash) {
  enum class color { red, green };
  const safemap::Hash<color> he(3);
  EXPECT_NE(he(color::red), he(color::green));
  int x = 0;
  int y = 0;
  const safemap::Hash<int*> hp(3);
  EXPECT_NE(hp(&x), hp(&y));
  const safemap::Hash<std::nullptr_t> hn(3);  // std::hash fallback, then the mixer
  EXPECT_EQ(hn(nullptr), hn(nullptr));
}

// --- quality -----------------------------------------------------------------------------------

struct chi_square_result {
  double statistic;
  double bound;
  std::size_t dof;
};

chi_square_result chi_square(const std::vector<std::size_t>& counts, std::size_t n) {
  const double expected = static_cast<double>(n) / static_cast<double>(counts.size());
  double stat = 0;
  for (std::size_t c : counts) {
    const double d = static_cast<double>(c) - expected;
    stat += d * d / expected;
  }
  const std::size_t dof = counts.size() - 1;
  return {stat, static_cast<double>(dof) + 6 * std::sqrt(2.0 * static_cast<double>(dof)), dof};
}

// Checks the low `bits` bits (bucket index) and the top byte (tophash) of the hashes.
testing::AssertionResult uniform(const std::vector<std::uint64_t>& hashes, unsigned bits) {
  const std::size_t n = hashes.size();
  std::vector<std::size_t> buckets(std::size_t{1} << bits, 0);
  std::vector<std::size_t> tops(256, 0);
  for (std::uint64_t h : hashes) {
    ++buckets[h & ((std::uint64_t{1} << bits) - 1)];
    ++tops[h >> 56];
  }
  const auto b = chi_square(buckets, n);
  const auto t = chi_square(tops, n);
  if (b.statistic >= b.bound) {
    return testing::AssertionFailure() << "low " << bits << " bits: chi-square " << b.statistic
                                       << " >= " << b.bound << " (dof " << b.dof << ")";
  }
  if (t.statistic >= t.bound) {
    return testing::AssertionFailure() << "top byte: chi-square " << t.statistic
                                       << " >= " << t.bound << " (dof " << t.dof << ")";
  }
  return testing::AssertionSuccess();
}

struct key_family {
  const char* name;
  std::vector<std::uint64_t> (*keys)();
  bool strings = false;
  std::vector<std::string> (*string_keys)() = nullptr;
};

std::vector<std::uint64_t> sequential() {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 0; i < 1 << 15; ++i) v.push_back(i);
  return v;
}
std::vector<std::uint64_t> high_bits_40() {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 0; i < 1 << 15; ++i) v.push_back(i << 40);
  return v;
}
std::vector<std::uint64_t> high_bits_48() {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 0; i < 1 << 15; ++i) v.push_back(i << 48);
  return v;
}
std::vector<std::uint64_t> high_bits_56() {  // only 256 such keys exist
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 0; i < 256; ++i) v.push_back(i << 56);
  return v;
}
std::vector<std::uint64_t> multiples_of_2_20() {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 0; i < 1 << 15; ++i) v.push_back(i << 20);
  return v;
}
std::vector<std::uint64_t> multiples_of_2_32() {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 0; i < 1 << 15; ++i) v.push_back(i << 32);
  return v;
}
std::vector<std::uint64_t> negative_sequential() {  // -1, -2, ...: all high bits set
  std::vector<std::uint64_t> v;
  for (std::int64_t i = 1; i <= 1 << 15; ++i) v.push_back(static_cast<std::uint64_t>(-i));
  return v;
}
std::vector<std::uint64_t> aligned_pointers() {  // heap-like addresses, 16-byte aligned
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 0; i < 1 << 15; ++i) v.push_back(0x7f3a00000000ULL + 16 * i);
  return v;
}
std::vector<std::string> shared_prefix_strings() {
  std::vector<std::string> v;
  for (int i = 0; i < 1 << 15; ++i) {
    v.push_back("some/long/common/prefix/shared/by/every/key/in/the/set/" + std::to_string(i));
  }
  return v;
}
std::vector<std::string> short_numeric_strings() {
  std::vector<std::string> v;
  for (int i = 0; i < 1 << 15; ++i) v.push_back(std::to_string(i));
  return v;
}
std::vector<std::string> shared_suffix_strings() {
  std::vector<std::string> v;
  for (int i = 0; i < 1 << 15; ++i) {
    v.push_back(std::to_string(i) + ".example.com/a/long/common/suffix/of/every/url");
  }
  return v;
}

// Names the family in test listings (ctest shows the parameter).
void PrintTo(const key_family& f, std::ostream* os) {
  *os << f.name;
}

class HashQuality : public testing::TestWithParam<key_family> {};

constexpr std::uint64_t k_seeds[] = {1, 0x9e3779b97f4a7c15ULL, 0xdeadbeefcafebabeULL,
                                     0x0123456789abcdefULL, 0xffffffffffffffffULL};

TEST_P(HashQuality, LowBitsAndTopByteAreUniform) {
  const key_family& f = GetParam();
  for (std::uint64_t seed : k_seeds) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::vector<std::uint64_t> hashes;
    if (f.strings) {
      const safemap::Hash<std::string> h(seed);
      for (const std::string& s : f.string_keys()) hashes.push_back(h(s));
    } else {
      const safemap::Hash<std::uint64_t> h(seed);
      for (std::uint64_t k : f.keys()) hashes.push_back(h(k));
    }
    // Bucket counts a Map of this many keys would use, and a small table (B = 4).
    const std::size_t n = hashes.size();
    unsigned bits = 4;
    while ((std::size_t{1} << (bits + 1)) * 8 <= n) ++bits;  // >= 8 expected per bucket
    EXPECT_TRUE(uniform(hashes, bits)) << f.name;
    EXPECT_TRUE(uniform(hashes, 4)) << f.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Families, HashQuality,
    testing::Values(key_family{"Sequential", &sequential}, key_family{"HighBits40", &high_bits_40},
                    key_family{"HighBits48", &high_bits_48},
                    key_family{"HighBits56", &high_bits_56},
                    key_family{"MultiplesOf2To20", &multiples_of_2_20},
                    key_family{"MultiplesOf2To32", &multiples_of_2_32},
                    key_family{"NegativeSequential", &negative_sequential},
                    key_family{"AlignedPointers", &aligned_pointers},
                    key_family{"SharedPrefixStrings", nullptr, true, &shared_prefix_strings},
                    key_family{"ShortNumericStrings", nullptr, true, &short_numeric_strings},
                    key_family{"SharedSuffixStrings", nullptr, true, &shared_suffix_strings}),
    [](const testing::TestParamInfo<key_family>& info) { return info.param.name; });

TEST(HashQualityInMap, AdversarialIntegerKeysDoNotBuildLongChains) {
  // End to end: the table's overflow chains stay short for keys a weak hash would collide.
  for (unsigned shift : {0u, 20u, 32u, 40u, 48u}) {
    safemap::Map<std::uint64_t, int> m(0, safemap::Hash<std::uint64_t>(12345));
    for (std::uint64_t i = 0; i < 30000; ++i) m.insert_or_assign(i << shift, 0);
    while (m.stats().growing) m.erase(~std::uint64_t{0});
    const auto s = m.stats();
    // A uniform hash at 30000 / 8192 buckets (3.7 per bucket) needs overflow for ~2%.
    EXPECT_LT(s.overflow_buckets, s.buckets / 10) << "keys i << " << shift;
  }
}

}  // namespace
}  // namespace safemap_test
