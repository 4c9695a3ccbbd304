// bench/peers.hpp - the maps safemap::Map is compared with, each compiled in only when CMake
// found it (SAFEMAP_BENCH_HAVE_ABSL, SAFEMAP_BENCH_HAVE_BOOST); std::unordered_map always.
//
// Peer headers are not ours to keep warning-free under -Wall -Wextra -Wpedantic -Werror:
// they come from imported (system) targets, and the pragmas below silence what still leaks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <utility>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpedantic"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#if SAFEMAP_BENCH_HAVE_ABSL
#include <absl/container/flat_hash_map.h>
#endif
#if SAFEMAP_BENCH_HAVE_BOOST
#include <boost/unordered/unordered_flat_map.hpp>
#endif
#pragma GCC diagnostic pop

#include "bench_support.hpp"

namespace safemap_bench {

// Value type of every benchmark map: a 64-bit integer (checksums sum it).
using value_t = std::uint64_t;

template <class K, class Alloc = std::allocator<std::pair<const K, value_t>>>
using std_map = std::unordered_map<K, value_t, peer_hash<K>, std::equal_to<K>, Alloc>;

#if SAFEMAP_BENCH_HAVE_ABSL
template <class K, class Alloc = std::allocator<std::pair<const K, value_t>>>
using absl_map = absl::flat_hash_map<K, value_t, peer_hash<K>, std::equal_to<K>, Alloc>;
#endif

#if SAFEMAP_BENCH_HAVE_BOOST
template <class K, class Alloc = std::allocator<std::pair<const K, value_t>>>
using boost_map = boost::unordered_flat_map<K, value_t, peer_hash<K>, std::equal_to<K>, Alloc>;
#endif

}  // namespace safemap_bench
