// maps_std.cpp - std::unordered_map behind a std::shared_mutex or a std::mutex: the baseline
// every C++ programmer can write, and the one the recommendations quote.
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "adapters/locked_table.hpp"
#include "engine/registry.hpp"

namespace safemap_bench {

namespace {
template <class K>
using std_table = std::unordered_map<K, value_t, peer_hash<K>, std::equal_to<K>>;
}  // namespace

void register_std_maps(map_registry& r) {
  r.maps.push_back(make_map_entry<locked_table<std_table<std::uint64_t>, std::shared_mutex>,
                                  locked_table<std_table<std::string>, std::shared_mutex>>(
      "std+shared_mutex", "std+shm", "peer", "std::unordered_map behind a std::shared_mutex",
      /*uses_rcu=*/false));
  r.maps.push_back(make_map_entry<locked_table<std_table<std::uint64_t>, std::mutex>,
                                  locked_table<std_table<std::string>, std::mutex>>(
      "std+mutex", "std+mtx", "peer", "std::unordered_map behind a std::mutex",
      /*uses_rcu=*/false));
}

}  // namespace safemap_bench
