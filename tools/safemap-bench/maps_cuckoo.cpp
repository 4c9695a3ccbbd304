// maps_cuckoo.cpp - libcuckoo's cuckoohash_map (when its header was found).
#include "engine/registry.hpp"

#if SAFEMAP_BENCH_HAVE_CUCKOO
#include "adapters/cuckoo_adapter.hpp"
#endif

namespace safemap_bench {

void register_cuckoo(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_CUCKOO
  r.maps.push_back(make_map_entry<cuckoo_adapter<std::uint64_t>, cuckoo_adapter<std::string>>(
      "libcuckoo", "cuckoo", "peer", "libcuckoo cuckoohash_map (striped bucket locks)",
      /*uses_rcu=*/false));
#else
  r.missing.push_back({"libcuckoo", "libcuckoo not found at build time (Debian: libcuckoo-dev)"});
#endif
}

}  // namespace safemap_bench
