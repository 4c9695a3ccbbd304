// maps_sync_map.cpp - safemap::SyncMap in safemap-bench (compiled only when its header exists).
#include "engine/registry.hpp"

#if __has_include("safemap/sync_map.hpp")
#include "adapters/safemap_adapter.hpp"
#include "safemap/sync_map.hpp"
#define SAFEMAP_BENCH_HAVE_MAP 1
#endif

namespace safemap_bench {

void register_sync_map(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_MAP
  using a64 = safemap_adapter<safemap::SyncMap<std::uint64_t, value_t>>;
  using astr = safemap_adapter<safemap::SyncMap<std::string, value_t>>;
  map_entry e = make_map_entry<a64, astr>(
      "SyncMap", "Sync", "safemap",
      "Go's sync.Map algorithm: lock-free read-only map + locked dirty map",
      /*uses_rcu=*/true);
  if (!a64::writes_json_directly) e.description += " (JSON through snapshot())";
  r.maps.push_back(std::move(e));
#else
  r.missing.push_back({"SyncMap", "safemap/sync_map.hpp is not in this checkout"});
#endif
}

}  // namespace safemap_bench
