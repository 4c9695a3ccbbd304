// bench/peer_hash.hpp - the hashers every peer map gets, in bench/ (the Map micro-benchmarks)
// and in tools/safemap-bench (the concurrent maps): one copy, so the two measure the peers with
// the same functions.
//
// Peers get a good hasher, not std::hash: std::hash<std::uint64_t> is the identity, which would
// make std::unordered_map look better than it is on sequential keys and punish tables that use
// the top bits (absl, boost, TBB's and libcuckoo's partial keys). Integer keys get one
// 64x64->128 multiply folded (the mulx mixer Boost applies to non-avalanching hashes): strong
// enough for flat tables' top/low bit splits, as cheap as a good integer hash gets. String keys
// get XXH3, unseeded: the function safemap::Hash<std::string> uses, so string results compare
// table designs, not hash functions. safemap's maps keep their own seeded safemap::Hash: that
// is what users get.
//
// (The two copies this replaces had diverged: bench/ used the mulx mixer, safemap-bench
// splitmix64's finalizer. Results recorded before the merge used those.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

#include "safemap/hash.hpp"  // XXH3 (inline), detail::mum

namespace safemap_bench {

// splitmix64's finalizer: a bijection of 64-bit integers, used to generate distinct keys.
constexpr std::uint64_t fmix64(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

struct peer_u64_hash {
  using is_avalanching = void;  // Boost: the output is well mixed, do not mix again
  std::size_t operator()(std::uint64_t k) const noexcept {
    return static_cast<std::size_t>(safemap::detail::mum(k, 0x9e3779b97f4a7c15ULL));
  }
};

struct peer_string_hash {
  using is_avalanching = void;
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return static_cast<std::size_t>(XXH3_64bits(s.data(), s.size()));
  }
};

template <class K>
using peer_hash =
    std::conditional_t<std::is_same_v<K, std::string>, peer_string_hash, peer_u64_hash>;

}  // namespace safemap_bench
