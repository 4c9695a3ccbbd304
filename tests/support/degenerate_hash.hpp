// tests/support/degenerate_hash.hpp - hashers that make a hash table work hard.
//
//  - constant_hash: every key hashes to the same value. One bucket chain holds every entry,
//    every slot has the same tophash, so every probe compares keys: the longest overflow
//    chains a table can have (and, with deletes, same-size growth).
//  - few_values_hash<N>: only N distinct hashes, so long chains in a few buckets.
//  - identity_hash: std::hash-like (the integer itself). No is_avalanching marker, so a table
//    is expected to mix it further; keys that differ only in their high bits would otherwise
//    all land in one bucket.
//  - deep_trie_hash<G>: for hash tries (TrieMap), which consume the hash 4 bits at a time from
//    the top: every hash shares its top 56 bits, so every path runs as deep as a 64-bit trie
//    goes (16 nodes), and each run of G consecutive integer keys has one full hash (an overflow
//    chain of G). 256 distinct hashes, then they repeat (longer chains).
// All are noexcept (a table may then relocate by moving) and work for integer and
// string-like keys; none declares is_transparent, and only deep_trie_hash declares
// is_avalanching (a trie would otherwise mix the hash and undo the point).
//
// Concurrency: stateless, thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <type_traits>

namespace safemap_test {

namespace detail {
template <class T>
std::size_t std_hash(const T& key) noexcept {
  if constexpr (std::is_convertible_v<const T&, std::string_view>) {
    return std::hash<std::string_view>{}(std::string_view(key));
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<std::size_t>(key);
  } else {
    return std::hash<T>{}(key);
  }
}
}  // namespace detail

struct constant_hash {
  template <class T>
  std::size_t operator()(const T&) const noexcept {
    return 0x5eed;
  }
};

template <std::size_t N>
struct few_values_hash {
  static_assert(N > 0, "few_values_hash needs at least one value");
  template <class T>
  std::size_t operator()(const T& key) const noexcept {
    return detail::std_hash(key) % N;
  }
};

struct identity_hash {
  template <class T>
  std::size_t operator()(const T& key) const noexcept {
    return detail::std_hash(key);
  }
};

template <std::size_t G>
struct deep_trie_hash {
  static_assert(G > 0, "deep_trie_hash needs groups of at least one key");
  using is_avalanching = void;  // used as is: the trie must see these exact bits
  template <class T>
  std::size_t operator()(const T& key) const noexcept {
    return static_cast<std::size_t>(0xa5a5'a5a5'a5a5'a500ULL |
                                    ((detail::std_hash(key) / G) & 0xff));
  }
};

}  // namespace safemap_test
