// tests/serialize/json_roundtrip_test.cpp - property: from_json(to_json(m)) == m.
//
// For every supported key type (integers of every width, bool, strings of random valid UTF-8
// with control characters, quotes and backslashes) and value type (integers, doubles and
// floats from random bit patterns, bool, strings, optional, vector, nested Map, user structs),
// thousands of random maps of varied size go through to_json and back, compact and pretty,
// sorted and unsorted. The text must also be stable: writing the parsed map again gives the
// same bytes, so -0.0, denormals and the last bit of every double survive.
//
// Nested maps are in their own suite: serializing one hits the bug reported by
// JsonWriterRegression.NestedMapOnAFreshThreadDoesNotUseFreedScratch under AddressSanitizer.
//
// A failure names the seed and the map's JSON, so it can be replayed.
#include <gtest/gtest.h>

#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "safemap/json.hpp"
#include "serialize_support.hpp"

namespace {

using safemap::Map;
using safemap_test::test_rng;
using safemap_test::ser::point;
using safemap_test::ser::random_map;
using safemap_test::ser::segment;

// Maps per type (each checked compact, pretty and unsorted).
constexpr std::size_t k_maps = 400;

template <class M>
testing::AssertionResult round_trips(const M& m, const safemap::json_options& opt) {
  const std::string text = safemap::to_json(m, opt);
  M back;
  try {
    back = safemap::from_json<M>(text);
  } catch (const safemap::json_error& e) {
    return testing::AssertionFailure() << "from_json rejected its own output: " << e.what() << "\n"
                                       << text;
  }
  if (!(back == m)) return testing::AssertionFailure() << "parsed map differs\n" << text;
  if (opt.sort_keys) {
    const std::string again = safemap::to_json(back, opt);
    if (again != text) {
      return testing::AssertionFailure() << "written again differently:\n" << text << "\n" << again;
    }
  }
  M merged;
  safemap::merge_json(merged, text);
  if (!(merged == m)) return testing::AssertionFailure() << "merge_json into an empty map differs";
  return testing::AssertionSuccess();
}

template <class M>
void check_random_maps(std::uint64_t seed) {
  using K = typename M::key_type;
  using V = typename M::mapped_type;
  test_rng rng(seed);
  const std::size_t n = safemap_test::ser::scaled(k_maps, 8);
  for (std::size_t i = 0; i < n; ++i) {
    const M m = random_map<K, V>(rng, 32);
    ASSERT_TRUE(round_trips(m, {})) << "seed " << seed << ", map " << i;
    ASSERT_TRUE(round_trips(m, {.pretty = true})) << "seed " << seed << ", map " << i;
    ASSERT_TRUE(round_trips(m, {.pretty = true, .indent = 3})) << "seed " << seed << ", map " << i;
    ASSERT_TRUE(round_trips(m, {.sort_keys = false})) << "seed " << seed << ", map " << i;
  }
}

// Readable test names: Map<int8_t, optional<int>> is "i8_opt_i32".
template <class T>
std::string type_tag() {
  if constexpr (std::is_same_v<T, bool>) {
    return "bool";
  } else if constexpr (std::is_integral_v<T>) {
    return (std::is_signed_v<T> ? "i" : "u") + std::to_string(sizeof(T) * 8);
  } else if constexpr (std::is_same_v<T, float>) {
    return "f32";
  } else if constexpr (std::is_same_v<T, double>) {
    return "f64";
  } else if constexpr (std::is_same_v<T, std::string>) {
    return "str";
  } else if constexpr (std::is_same_v<T, point>) {
    return "point";
  } else if constexpr (std::is_same_v<T, segment>) {
    return "segment";
  } else if constexpr (safemap_test::ser::is_optional_v<T>) {
    return "opt_" + type_tag<typename T::value_type>();
  } else if constexpr (safemap_test::ser::is_vector_v<T>) {
    return "vec_" + type_tag<typename T::value_type>();
  } else {
    return "map_" + type_tag<typename T::key_type>() + "_" + type_tag<typename T::mapped_type>();
  }
}

struct map_type_names {
  template <class M>
  static std::string GetName(int) {
    return type_tag<typename M::key_type>() + "_" + type_tag<typename M::mapped_type>();
  }
};

template <class M>
class JsonRoundTrip : public testing::Test {};

using flat_map_types = testing::Types<
    Map<std::int8_t, std::int8_t>, Map<std::uint8_t, std::uint16_t>,
    Map<std::int16_t, std::int32_t>, Map<std::uint16_t, std::uint32_t>,
    Map<std::int32_t, std::int64_t>, Map<std::uint32_t, std::uint64_t>, Map<std::int64_t, double>,
    Map<std::uint64_t, float>, Map<bool, std::string>, Map<std::string, std::string>,
    Map<std::string, bool>, Map<std::string, std::optional<int>>, Map<int, std::vector<double>>,
    Map<std::string, std::vector<std::optional<std::string>>>, Map<std::int64_t, point>,
    Map<std::string, segment>, Map<std::string, std::vector<std::vector<std::int8_t>>>>;
TYPED_TEST_SUITE(JsonRoundTrip, flat_map_types, map_type_names);

TYPED_TEST(JsonRoundTrip, RandomMapsSurviveToJsonAndBack) {
  check_random_maps<TypeParam>(0x5eed0000u + sizeof(TypeParam) * 131 +
                               sizeof(typename TypeParam::key_type) * 7 +
                               sizeof(typename TypeParam::mapped_type));
}

template <class M>
class JsonRoundTripNested : public testing::Test {};

using nested_map_types =
    testing::Types<Map<std::string, Map<int, std::string>>, Map<int, Map<bool, double>>,
                   Map<std::string, std::vector<std::optional<Map<std::uint8_t, point>>>>,
                   Map<std::string, Map<std::string, Map<std::string, int>>>>;
TYPED_TEST_SUITE(JsonRoundTripNested, nested_map_types, map_type_names);

TYPED_TEST(JsonRoundTripNested, RandomNestedMapsSurviveToJsonAndBack) {
  check_random_maps<TypeParam>(0xa11ce000u + sizeof(typename TypeParam::key_type) * 7 +
                               sizeof(typename TypeParam::mapped_type));
}

// ---- key order ------------------------------------------------------------------------------

// Sorted output must follow Go's key order: integers numerically, strings bytewise (unsigned),
// false before true. The oracle is std::map (std::string's operator< compares bytes as
// unsigned char): the expected text is the single-entry JSON of each key in std::map order.
template <class K>
K order_key(test_rng& rng) {
  if constexpr (std::is_same_v<K, std::string>) {
    // Long shared prefixes (ties in any fixed-length prefix), embedded NULs, bytes >= 0x80,
    // and prefixes of each other ("ab" < "ab\0" < "abc").
    static const std::string stems[] = {"",
                                        "a",
                                        "ab",
                                        "abcdefgh",
                                        "abcdefghij",
                                        "abcdefgh\xff",
                                        std::string("abcdefgh\0", 9),
                                        "\xc3\xa9"};
    std::string k = stems[rng.below(std::size(stems))];
    const std::size_t extra = rng.below(4);
    for (std::size_t i = 0; i < extra; ++i) {
      static const char bytes[] = {'\0', 'a', 'b', '~', '\x7f', '\x80', '\xc3', '\xff'};
      k += bytes[rng.below(std::size(bytes))];
    }
    return k;
  } else {
    return safemap_test::ser::random_value<K>(rng);
  }
}

template <class K>
class JsonKeyOrder : public testing::Test {};

struct key_type_names {
  template <class K>
  static std::string GetName(int) {
    return type_tag<K>();
  }
};

using key_types =
    testing::Types<std::int8_t, std::uint8_t, std::int16_t, std::uint16_t, std::int32_t,
                   std::uint32_t, std::int64_t, std::uint64_t, bool, std::string>;
TYPED_TEST_SUITE(JsonKeyOrder, key_types, key_type_names);

TYPED_TEST(JsonKeyOrder, SortedOutputFollowsGoKeyOrder) {
  using K = TypeParam;
  test_rng rng(0x0bde7 + sizeof(K));
  for (int round = 0; round < 200; ++round) {
    Map<K, int> m;
    std::map<K, int> oracle;
    const std::size_t n = rng.below(rng.chance(1, 10) ? 600 : 40);
    for (std::size_t i = 0; i < n; ++i) {
      const K k = order_key<K>(rng);
      m.insert_or_assign(k, static_cast<int>(i));
      oracle.insert_or_assign(k, static_cast<int>(i));
    }
    std::string expected = "{";
    for (const auto& [k, v] : oracle) {
      Map<K, int> one;
      one.insert_or_assign(k, v);
      const std::string entry = safemap::to_json(one);
      if (expected.size() > 1) expected += ',';
      expected += entry.substr(1, entry.size() - 2);
    }
    expected += '}';
    ASSERT_EQ(safemap::to_json(m), expected) << "round " << round;
  }
}

TEST(JsonRoundTripEdges, StringsWithEveryByteValueRoundTripAfterReplacement) {
  // Any byte string is written as valid JSON; reading it back gives the input with each
  // invalid UTF-8 byte replaced by U+FFFD, and that result is a fixed point.
  test_rng rng(77);
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    const std::size_t n = rng.below(16);
    for (std::size_t j = 0; j < n; ++j) s += static_cast<char>(rng.below(256));
    Map<std::string, std::string> m;
    m.insert_or_assign(s, s);
    const std::string text = safemap::to_json(m);
    Map<std::string, std::string> back;
    ASSERT_NO_THROW((back = safemap::from_json<Map<std::string, std::string>>(text))) << text;
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(safemap::to_json(back), text);
  }
}

}  // namespace
