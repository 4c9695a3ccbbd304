// maps_tbb_unordered.cpp - oneTBB's concurrent_unordered_map (when CMake found TBB). Registered
// from register_tbb (maps_tbb.cpp), right after concurrent_hash_map.
#include "engine/registry.hpp"

#if SAFEMAP_BENCH_HAVE_TBB
#include "adapters/tbb_unordered_adapter.hpp"
#endif

namespace safemap_bench {

void register_tbb_unordered(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_TBB
  map_entry e =
      make_map_entry<tbb_unordered_adapter<std::uint64_t>, tbb_unordered_adapter<std::string>>(
          "tbb-unordered", "tbbU", "peer",
          "oneTBB tbb::concurrent_unordered_map (lock-free split-ordered list; no concurrent "
          "erase: erasing workloads skipped above 1 thread)",
          /*uses_rcu=*/false);
  e.concurrent_erase = false;
  r.maps.push_back(std::move(e));
#else
  r.missing.push_back({"tbb-unordered", "oneTBB not found at build time (Debian: libtbb-dev)"});
#endif
}

}  // namespace safemap_bench
