// safemap/hash.hpp - seeded, HashDoS-resistant hashing: safemap::Hash<K>.
//
// Every Hash object carries a 64-bit seed drawn at random when it is constructed, the way Go
// gives each map its own hash0: a set of colliding keys cannot be computed in advance, and
// Map::clear() draws a new seed (as Go does on clear and when a map empties).
//
//  - integers, enums, pointers, bool, char types: a 128-bit multiply-fold mixer (two rounds of
//    "mum", as in wyhash) of key and seed; every input bit reaches the top byte (tophash)
//    and the low bits (bucket index), which is what safemap::Map consumes.
//  - floating point: the bit pattern, with -0.0 folded onto +0.0 so equal keys hash equally.
//  - std::string, std::string_view, const char*: XXH3 (xxHash 0.8) with the seed. The hasher is
//    transparent (is_transparent), so a Map<std::string, V> can be searched with a
//    std::string_view or a string literal without building a std::string.
//  - anything else: std::hash<K>, then the integer mixer (std::hash of many types is weak).
//
// Every safemap::Hash declares `is_avalanching`: its output is already well mixed, so tables
// use it as is. A user hasher without that marker gets one extra mixing step in the table
// (std::hash<uint64_t> is the identity, which Go's bucket/tophash split would punish).
//
// Concurrency: operator() is const and thread-safe; reseed() is a write (the map calls it
// under its own write discipline).
#pragma once

#define XXH_INLINE_ALL  // inline XXH3: short keys hash with no call into a shared library
#include <xxhash.h>

#include <bit>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <type_traits>

#include "safemap/detail/random.hpp"
#include "safemap/version.hpp"

namespace safemap {

namespace detail {

inline constexpr std::uint64_t k_mix0 = 0x9e3779b97f4a7c15ULL;  // 2^64 / golden ratio
inline constexpr std::uint64_t k_mix1 = 0xbf58476d1ce4e5b9ULL;  // splitmix64 multipliers
inline constexpr std::uint64_t k_mix2 = 0x94d049bb133111ebULL;

// Seeded integer mixer. Two multiply-fold rounds: one round leaves keys that differ only in
// their top bits (k << 40) poorly spread in the low bits; two pass the chi-square tests in
// tests/core/hash_test.cpp for every adversarial family there.
inline std::uint64_t mix_integer(std::uint64_t key, std::uint64_t seed) noexcept {
  return mum(mum(key ^ seed ^ k_mix0, k_mix1) ^ seed, k_mix2);
}

// Unseeded post-mix for user hashers that do not declare is_avalanching.
inline std::uint64_t post_mix(std::uint64_t h) noexcept {
  return mum(h ^ k_mix0, k_mix1);
}

// A seed that is never zero (zero would make the seeded mixers degenerate for key 0).
inline std::uint64_t fresh_seed() noexcept {
  return random_u64() | 1;
}

template <class T>
concept string_like = std::convertible_to<const T&, std::string_view>;

}  // namespace detail

// Seed storage shared by every safemap::Hash.
class hash_seed {
 public:
  hash_seed() noexcept : seed_(detail::fresh_seed()) {}
  explicit hash_seed(std::uint64_t seed) noexcept : seed_(seed | 1) {}
  std::uint64_t seed() const noexcept { return seed_; }
  // Draws a new random seed (Map::clear() and Map emptying by erase call it).
  void reseed() noexcept { seed_ = detail::fresh_seed(); }

 protected:
  std::uint64_t seed_;
};

// Primary template: integers, enums, pointers, floating point, and the std::hash fallback.
template <class K>
struct Hash : hash_seed {
  using hash_seed::hash_seed;
  using is_avalanching = void;

  std::size_t operator()(const K& key) const noexcept(noexcept(std::hash<K>{}(key))) {
    if constexpr (std::is_integral_v<K> || std::is_enum_v<K>) {
      return mix_integer(static_cast<std::uint64_t>(key), seed_);
    } else if constexpr (std::is_pointer_v<K>) {
      return mix_integer(reinterpret_cast<std::uintptr_t>(key), seed_);
    } else if constexpr (std::is_floating_point_v<K> && sizeof(K) <= 8) {
      if (key == K(0)) return mix_integer(0, seed_);  // +0.0 == -0.0
      std::uint64_t bits = 0;
      std::memcpy(&bits, &key, sizeof(K));
      return mix_integer(bits, seed_);
    } else {
      return mix_integer(static_cast<std::uint64_t>(std::hash<K>{}(key)), seed_);
    }
  }

 private:
  using detail_mix = std::uint64_t (*)(std::uint64_t, std::uint64_t) noexcept;
  static constexpr detail_mix mix_integer = &detail::mix_integer;
};

// Strings: XXH3 with the seed; transparent over std::string, std::string_view, const char*.
struct string_hash : hash_seed {
  using hash_seed::hash_seed;
  using is_avalanching = void;
  using is_transparent = void;

  std::size_t operator()(std::string_view s) const noexcept {
    return XXH3_64bits_withSeed(s.data(), s.size(), seed_);
  }
  std::size_t operator()(const std::string& s) const noexcept {
    return (*this)(std::string_view(s));
  }
  std::size_t operator()(const char* s) const noexcept { return (*this)(std::string_view(s)); }
};

template <>
struct Hash<std::string> : string_hash {
  using string_hash::string_hash;
};
template <>
struct Hash<std::string_view> : string_hash {
  using string_hash::string_hash;
};

}  // namespace safemap
