// maps_lfht.cpp - liburcu's cds_lfht with RCU readers (when urcu/rculfhash.h and urcu-cds were
// found).
#include "engine/registry.hpp"

#if SAFEMAP_BENCH_HAVE_LFHT
#include "adapters/lfht_adapter.hpp"
#endif

namespace safemap_bench {

void register_lfht(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_LFHT
  r.maps.push_back(make_map_entry<lfht_adapter, void>(
      "urcu-lfht", "lfht", "peer", "liburcu cds_lfht, lock-free, RCU readers (u64 keys only)",
      /*uses_rcu=*/true));
#else
  r.missing.push_back(
      {"urcu-lfht", "liburcu's cds_lfht not found at build time (Debian: liburcu-dev)"});
#endif
}

}  // namespace safemap_bench
