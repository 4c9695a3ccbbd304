// tests/serialize/serialize_support.hpp - what the serialization tests share.
//
//  - User types with safemap::json_traits: point (three scalar fields), segment (nested
//    user types, an optional and a vector), tree (recursive: the only way to make JSON nest
//    deeper than the target type's own structure).
//  - versioned_map<K, V>: the smallest concurrent map json.hpp can serialize: a Map behind a
//    std::shared_mutex with a version counter and read_view (the protocol with_view uses).
//    json_cache is tested on it whatever the state of the real concurrent maps.
//  - parse_error_at<M>(text, offset, expected): merge_json(text) into a non-empty M must throw
//    json_error at exactly `offset`, with `expected` in what(), and leave the map as it was;
//    from_json must report the same offset.
//  - random generators (utf8_string, random_value<T>) over test_rng for the round-trip tests;
//    scaled(n, d) shrinks iteration counts under a sanitizer.
//
// Concurrency: versioned_map is thread-safe as documented on it; the rest is single-threaded.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "safemap/json.hpp"
#include "support/reference_model.hpp"

namespace safemap_test::ser {

struct point {
  int x = 0;
  double y = 0;
  std::string label;
  bool operator==(const point&) const = default;
};

struct segment {
  point from;
  point to;
  std::optional<std::string> note;
  std::vector<int> tags;
  bool operator==(const segment&) const = default;
};

struct tree {
  std::vector<tree> kids;
  bool operator==(const tree&) const = default;
};

}  // namespace safemap_test::ser

template <>
struct safemap::json_traits<safemap_test::ser::point> {
  using T = safemap_test::ser::point;
  static constexpr auto fields =
      std::make_tuple(safemap::json_field("x", &T::x), safemap::json_field("y", &T::y),
                      safemap::json_field("label", &T::label));
};

template <>
struct safemap::json_traits<safemap_test::ser::segment> {
  using T = safemap_test::ser::segment;
  static constexpr auto fields =
      std::make_tuple(safemap::json_field("from", &T::from), safemap::json_field("to", &T::to),
                      safemap::json_field("note", &T::note), safemap::json_field("tags", &T::tags));
};

template <>
struct safemap::json_traits<safemap_test::ser::tree> {
  static constexpr auto fields =
      std::make_tuple(safemap::json_field("kids", &safemap_test::ser::tree::kids));
};

namespace safemap_test::ser {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool sanitized_build = true;
#else
inline constexpr bool sanitized_build = false;
#endif

// n in an optimized build, n / divisor (at least 1) under a sanitizer.
constexpr std::size_t scaled(std::size_t n, std::size_t divisor) {
  return sanitized_build ? (n / divisor > 0 ? n / divisor : 1) : n;
}

// A concurrent map reduced to what json.hpp and json_cache need: read_view(body) calls
// body(walk) under the shared lock, walk(g) calls g(k, v) for every entry; version() grows on
// every write. Writers take the lock exclusively, so every view is point-in-time.
template <class K, class V>
class versioned_map {
 public:
  using key_type = K;
  using mapped_type = V;
  using hasher = safemap::Hash<K>;
  using key_equal = std::equal_to<>;

  versioned_map() = default;
  // Adopts `initial` (from_json builds a map this way: the type is not movable).
  explicit versioned_map(safemap::Map<K, V> initial) : map_(std::move(initial)) {}

  void store(K k, V v) {
    std::unique_lock lock(mu_);
    map_.insert_or_assign(std::move(k), std::move(v));
    version_.fetch_add(1, std::memory_order_release);
  }

  // Sets every key in [0, n) to v and erases the rest, as one write.
  void store_all(int n, const V& v) {
    std::unique_lock lock(mu_);
    map_.clear();
    for (int k = 0; k < n; ++k) map_.insert_or_assign(static_cast<K>(k), v);
    version_.fetch_add(1, std::memory_order_release);
  }

  std::optional<V> load(const K& k) const {
    std::shared_lock lock(mu_);
    if (const V* v = map_.find(k)) return *v;
    return std::nullopt;
  }

  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }

  template <class Body>
  void read_view(Body&& body) const {
    std::shared_lock lock(mu_);
    body([this](auto&& g) { map_.for_each([&g](const K& k, const V& v) { g(k, v); }); });
  }

  safemap::Map<K, V> snapshot() const {
    std::shared_lock lock(mu_);
    return map_;
  }

 private:
  mutable std::shared_mutex mu_;
  safemap::Map<K, V> map_;                 // guarded by mu_
  std::atomic<std::uint64_t> version_{0};  // written with mu_ held exclusively
};

// ---- parse errors -------------------------------------------------------------------------

// A non-empty starting state for merge_json, so "unchanged" means something.
template <class M>
M seeded_target() {
  M m;
  using K = typename M::key_type;
  using V = typename M::mapped_type;
  if constexpr (std::is_same_v<K, std::string>) {
    m.insert_or_assign("existing", V{});
  } else {
    m.insert_or_assign(K{1}, V{});
  }
  return m;
}

// merge_json(text) must throw json_error at `offset` naming `expected`, leave a non-empty map
// unchanged, and from_json(text) must throw at the same offset.
template <class M>
testing::AssertionResult parse_error_at(std::string_view text, std::size_t offset,
                                        std::string_view expected) {
  M target = seeded_target<M>();
  const M before = target;
  std::string what;
  try {
    safemap::merge_json(target, text);
    return testing::AssertionFailure() << "merge_json accepted it";
  } catch (const safemap::json_error& e) {
    what = e.what();
    if (e.offset() != offset) {
      return testing::AssertionFailure()
             << "offset " << e.offset() << ", expected " << offset << " (what(): " << what << ")";
    }
  } catch (const std::exception& e) {
    return testing::AssertionFailure() << "threw something else than json_error: " << e.what();
  }
  if (what.find(expected) == std::string::npos) {
    return testing::AssertionFailure()
           << "what() is \"" << what << "\", expected it to contain \"" << expected << "\"";
  }
  const std::string at = "at byte " + std::to_string(offset) + ":";
  if (what.find(at) == std::string::npos) {
    return testing::AssertionFailure() << "what() does not say \"" << at << "\": " << what;
  }
  if (!(target == before)) return testing::AssertionFailure() << "merge_json changed the map";
  try {
    (void)safemap::from_json<M>(text);
    return testing::AssertionFailure() << "from_json accepted what merge_json rejected";
  } catch (const safemap::json_error& e) {
    if (e.offset() != offset) {
      return testing::AssertionFailure() << "from_json reports offset " << e.offset();
    }
  }
  return testing::AssertionSuccess() << what;
}

// from_json(text) must succeed and equal `expected`.
template <class M>
testing::AssertionResult parses_to(std::string_view text, const M& expected) {
  try {
    const M m = safemap::from_json<M>(text);
    if (!(m == expected)) {
      return testing::AssertionFailure() << "parsed to " << safemap::to_json(m);
    }
    return testing::AssertionSuccess();
  } catch (const safemap::json_error& e) {
    return testing::AssertionFailure() << "rejected: " << e.what();
  }
}

// ---- random values ------------------------------------------------------------------------

// A valid UTF-8 string: ASCII (control characters, '"', '\\' included), 2-, 3- and 4-byte
// code points (never a surrogate), up to max_len code points.
inline std::string utf8_string(test_rng& rng, std::size_t max_len = 12) {
  std::string s;
  const std::size_t n = rng.below(max_len + 1);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t cp;
    switch (rng.below(8)) {
      case 0:
        cp = static_cast<std::uint32_t>(rng.below(0x20));
        break;  // control
      case 1:
        cp = rng.chance(1, 2) ? '"' : '\\';
        break;
      case 2:
        cp = static_cast<std::uint32_t>(0x80 + rng.below(0x800 - 0x80));
        break;
      case 3:
        do {
          cp = static_cast<std::uint32_t>(0x800 + rng.below(0x10000 - 0x800));
        } while (cp >= 0xD800 && cp <= 0xDFFF);
        break;
      case 4:
        cp = static_cast<std::uint32_t>(0x10000 + rng.below(0x110000 - 0x10000));
        break;
      default:
        cp = static_cast<std::uint32_t>(0x20 + rng.below(0x7f - 0x20 + 1));
        break;
    }
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

template <class T>
inline constexpr bool is_optional_v = false;
template <class T>
inline constexpr bool is_optional_v<std::optional<T>> = true;
template <class T>
inline constexpr bool is_vector_v = false;
template <class T>
inline constexpr bool is_vector_v<std::vector<T>> = true;
template <class T>
inline constexpr bool is_map_v = false;
template <class K, class V>
inline constexpr bool is_map_v<safemap::Map<K, V>> = true;

template <class T>
T random_value(test_rng& rng, int depth = 0);

// A finite double or float: mostly random bit patterns (every exponent, denormals), sometimes
// one of the values where shortest formatting is easiest to get wrong.
template <class F>
F random_float(test_rng& rng) {
  using bits_t = std::conditional_t<sizeof(F) == 8, std::uint64_t, std::uint32_t>;
  static constexpr F special[] = {F(0),
                                  -F(0),
                                  F(0.1),
                                  F(1) / F(3),
                                  F(1e6),
                                  F(123456),
                                  F(1e-5),
                                  F(5),
                                  std::numeric_limits<F>::max(),
                                  std::numeric_limits<F>::lowest(),
                                  std::numeric_limits<F>::min(),
                                  std::numeric_limits<F>::denorm_min(),
                                  std::numeric_limits<F>::epsilon()};
  if (rng.chance(1, 4)) return special[rng.below(std::size(special))];
  for (;;) {
    const F f = std::bit_cast<F>(static_cast<bits_t>(rng.next()));
    if (std::isfinite(f)) return f;
  }
}

template <class K, class V>
safemap::Map<K, V> random_map(test_rng& rng, std::size_t max_size, int depth = 0) {
  safemap::Map<K, V> m;
  // Mostly small maps, some empty, a few large.
  std::size_t n = rng.below(max_size + 1);
  if (rng.chance(1, 8)) n = 0;
  if (rng.chance(1, 50)) n = max_size * 8;
  for (std::size_t i = 0; i < n; ++i) {
    m.insert_or_assign(random_value<K>(rng, depth + 1), random_value<V>(rng, depth + 1));
  }
  return m;
}

template <class T>
T random_value(test_rng& rng, int depth) {
  if constexpr (std::is_same_v<T, bool>) {
    return rng.chance(1, 2);
  } else if constexpr (std::is_integral_v<T>) {
    // Extremes often, small values often, any bit pattern otherwise.
    switch (rng.below(4)) {
      case 0:
        return rng.chance(1, 2) ? std::numeric_limits<T>::min() : std::numeric_limits<T>::max();
      case 1:
        return static_cast<T>(static_cast<int>(rng.below(21)) - 10);
      default:
        return static_cast<T>(rng.next());
    }
  } else if constexpr (std::is_floating_point_v<T>) {
    return random_float<T>(rng);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return utf8_string(rng, rng.chance(1, 10) ? 64 : 12);
  } else if constexpr (is_optional_v<T>) {
    if (rng.chance(1, 3)) return std::nullopt;
    return random_value<typename T::value_type>(rng, depth + 1);
  } else if constexpr (is_vector_v<T>) {
    T v;
    const std::size_t n = depth > 3 ? 0 : rng.below(6);
    for (std::size_t i = 0; i < n; ++i)
      v.push_back(random_value<typename T::value_type>(rng, depth + 1));
    return v;
  } else if constexpr (is_map_v<T>) {
    return random_map<typename T::key_type, typename T::mapped_type>(rng, depth > 3 ? 0 : 4, depth);
  } else if constexpr (std::is_same_v<T, point>) {
    return point{random_value<int>(rng), random_value<double>(rng), utf8_string(rng)};
  } else if constexpr (std::is_same_v<T, segment>) {
    return segment{random_value<point>(rng), random_value<point>(rng),
                   random_value<std::optional<std::string>>(rng, depth + 1),
                   random_value<std::vector<int>>(rng, depth + 1)};
  } else {
    static_assert(sizeof(T) == 0, "no generator for this type");
  }
}

}  // namespace safemap_test::ser
