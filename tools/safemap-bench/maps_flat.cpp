// maps_flat.cpp - the fastest single-threaded tables, absl::flat_hash_map and
// boost::unordered_flat_map, behind a std::shared_mutex (when CMake found them).
#include <shared_mutex>
#include <string>

#include "adapters/locked_table.hpp"
#include "engine/registry.hpp"

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

namespace safemap_bench {

namespace {
#if SAFEMAP_BENCH_HAVE_ABSL
template <class K>
using absl_table = absl::flat_hash_map<K, value_t, peer_hash<K>, std::equal_to<K>>;
#endif
#if SAFEMAP_BENCH_HAVE_BOOST
template <class K>
using boost_table = boost::unordered_flat_map<K, value_t, peer_hash<K>, std::equal_to<K>>;
#endif
}  // namespace

void register_flat_maps(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_ABSL
  r.maps.push_back(make_map_entry<locked_table<absl_table<std::uint64_t>, std::shared_mutex>,
                                  locked_table<absl_table<std::string>, std::shared_mutex>>(
      "absl+shared_mutex", "absl+shm", "peer", "absl::flat_hash_map behind a std::shared_mutex",
      /*uses_rcu=*/false));
#else
  r.missing.push_back(
      {"absl+shared_mutex", "Abseil not found at build time (Debian: libabsl-dev)"});
#endif
#if SAFEMAP_BENCH_HAVE_BOOST
  r.maps.push_back(make_map_entry<locked_table<boost_table<std::uint64_t>, std::shared_mutex>,
                                  locked_table<boost_table<std::string>, std::shared_mutex>>(
      "boost+shared_mutex", "boost+shm", "peer",
      "boost::unordered_flat_map behind a std::shared_mutex",
      /*uses_rcu=*/false));
#else
  r.missing.push_back(
      {"boost+shared_mutex", "Boost >= 1.81 not found at build time (Debian: libboost1.81-dev)"});
#endif
}

}  // namespace safemap_bench
