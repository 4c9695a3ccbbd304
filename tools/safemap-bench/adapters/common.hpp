// adapters/common.hpp - what every map adapter shares: hashers for the peers, JSON of a copy.
//
// Peers get a good hasher, not std::hash: std::hash<uint64_t> is the identity, which would make
// std::unordered_map look better than it is on the Go suite's sequential keys and punish tables
// that use the top bits (absl, boost, TBB's and libcuckoo's partial keys). Integer keys get
// splitmix64's finalizer, string keys XXH3 (the function safemap::Hash<std::string> uses, so
// string results compare table designs, not hash functions). safemap's maps keep their own
// seeded safemap::Hash: that is what users get.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "engine/keys.hpp"
#include "safemap/hash.hpp"  // XXH3 (inline)
#include "safemap/json.hpp"
#include "safemap/map.hpp"

namespace safemap_bench {

struct peer_u64_hash {
  using is_avalanching = void;  // Boost: the output is well mixed, do not mix again
  std::size_t operator()(std::uint64_t k) const noexcept { return fmix64(k); }
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

// A peer serializes as safemap users without a consistent view would: copy the entries under
// the peer's own read lock (or iteration rule) into a fresh safemap::Map, then write that.
// safemap's maps that cannot be written directly yet do the same through snapshot(), so every
// map produces byte-identical JSON (sorted keys) and pays for one copy.
template <class K>
using json_copy = safemap::Map<K, std::uint64_t>;

}  // namespace safemap_bench
