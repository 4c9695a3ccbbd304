// adapters/common.hpp - what every map adapter shares: hashers for the peers, JSON of a copy.
//
// Peers get a good hasher, not std::hash (std::hash<uint64_t> is the identity): the one in
// bench/peer_hash.hpp, shared with bench/ so both measure the peers with the same functions.
// safemap's maps keep their own seeded safemap::Hash: that is what users get.
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

// peer_u64_hash, peer_string_hash, peer_hash<K>: bench/peer_hash.hpp (through keys.hpp).

// A peer serializes as safemap users without a consistent view would: copy the entries under
// the peer's own read lock (or iteration rule) into a fresh safemap::Map, then write that.
// safemap's maps that cannot be written directly yet do the same through snapshot(), so every
// map produces byte-identical JSON (sorted keys) and pays for one copy.
template <class K>
using json_copy = safemap::Map<K, std::uint64_t>;

}  // namespace safemap_bench
