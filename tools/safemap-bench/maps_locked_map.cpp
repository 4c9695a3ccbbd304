// maps_locked_map.cpp - safemap::LockedMap in safemap-bench (compiled only when its header exists).
#include "engine/registry.hpp"

#if __has_include("safemap/locked_map.hpp")
#include "adapters/safemap_adapter.hpp"
#include "safemap/locked_map.hpp"
#define SAFEMAP_BENCH_HAVE_MAP 1
#endif

namespace safemap_bench {

void register_locked_map(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_MAP
  using a64 = safemap_adapter<safemap::LockedMap<std::uint64_t, value_t>>;
  using astr = safemap_adapter<safemap::LockedMap<std::string, value_t>>;
  map_entry e =
      make_map_entry<a64, astr>("LockedMap", "Locked", "safemap",
                                "one reader/writer lock (writer-preferring) around a safemap::Map",
                                /*uses_rcu=*/false);
  if (!a64::writes_json_directly) e.description += " (JSON through snapshot())";
  r.maps.push_back(std::move(e));
#else
  r.missing.push_back({"LockedMap", "safemap/locked_map.hpp is not in this checkout"});
#endif
}

}  // namespace safemap_bench
