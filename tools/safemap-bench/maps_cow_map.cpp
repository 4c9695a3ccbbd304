// maps_cow_map.cpp - safemap::CowMap in safemap-bench (compiled only when its header exists).
#include "engine/registry.hpp"

#if __has_include("safemap/cow_map.hpp")
#include "adapters/safemap_adapter.hpp"
#include "safemap/cow_map.hpp"
#define SAFEMAP_BENCH_HAVE_MAP 1
#endif

namespace safemap_bench {

void register_cow_map(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_MAP
  using a64 = safemap_adapter<safemap::CowMap<std::uint64_t, value_t>>;
  using astr = safemap_adapter<safemap::CowMap<std::string, value_t>>;
  map_entry e = make_map_entry<a64, astr>(
      "CowMap", "Cow", "safemap",
      "immutable snapshot behind one atomic pointer; writes copy the map",
      /*uses_rcu=*/true);
  e.copies_on_write = true;
  if (!a64::writes_json_directly) e.description += " (JSON through snapshot())";
  r.maps.push_back(std::move(e));
#else
  r.missing.push_back({"CowMap", "safemap/cow_map.hpp is not in this checkout"});
#endif
}

}  // namespace safemap_bench
