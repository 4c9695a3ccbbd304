// maps_tbb.cpp - oneTBB's concurrent_hash_map (when CMake found TBB).
#include "engine/registry.hpp"

#if SAFEMAP_BENCH_HAVE_TBB
#include "adapters/tbb_adapter.hpp"
#endif

namespace safemap_bench {

void register_tbb_unordered(map_registry& r);  // maps_tbb_unordered.cpp

void register_tbb(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_TBB
  map_entry e = make_map_entry<tbb_adapter<std::uint64_t>, tbb_adapter<std::string>>(
      "tbb", "tbb", "peer", "oneTBB tbb::concurrent_hash_map (per-element locks)",
      /*uses_rcu=*/false);
  e.range_safe_with_writers = false;
  r.maps.push_back(std::move(e));
#else
  r.missing.push_back({"tbb", "oneTBB not found at build time (Debian: libtbb-dev)"});
#endif
  register_tbb_unordered(r);
}

}  // namespace safemap_bench
