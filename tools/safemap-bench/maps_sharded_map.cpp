// maps_sharded_map.cpp - safemap::ShardedMap in safemap-bench (compiled only when its header
// exists).
#include "engine/registry.hpp"

#if __has_include("safemap/sharded_map.hpp")
#include "adapters/safemap_adapter.hpp"
#include "safemap/sharded_map.hpp"
#define SAFEMAP_BENCH_HAVE_MAP 1
#endif

namespace safemap_bench {

void register_sharded_map(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_MAP
  using a64 = safemap_adapter<safemap::ShardedMap<std::uint64_t, value_t>>;
  using astr = safemap_adapter<safemap::ShardedMap<std::string, value_t>>;
  map_entry e = make_map_entry<a64, astr>("ShardedMap", "Sharded", "safemap",
                                          "power-of-two shards, each a locked safemap::Map",
                                          /*uses_rcu=*/false);
  if (!a64::writes_json_directly) e.description += " (JSON through snapshot())";
  r.maps.push_back(std::move(e));
#else
  r.missing.push_back({"ShardedMap", "safemap/sharded_map.hpp is not in this checkout"});
#endif
}

}  // namespace safemap_bench
