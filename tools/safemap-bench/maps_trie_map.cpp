// maps_trie_map.cpp - safemap::TrieMap in safemap-bench (compiled only when its header exists).
#include "engine/registry.hpp"

#if __has_include("safemap/trie_map.hpp")
#include "adapters/safemap_adapter.hpp"
#include "safemap/trie_map.hpp"
#define SAFEMAP_BENCH_HAVE_MAP 1
#endif

namespace safemap_bench {

void register_trie_map(map_registry& r) {
#if SAFEMAP_BENCH_HAVE_MAP
  using a64 = safemap_adapter<safemap::TrieMap<std::uint64_t, value_t>>;
  using astr = safemap_adapter<safemap::TrieMap<std::string, value_t>>;
  map_entry e = make_map_entry<a64, astr>(
      "TrieMap", "Trie", "safemap",
      "Go 1.24's sync.Map: concurrent hash-trie, lock-free loads, one node lock per write",
      /*uses_rcu=*/true);
  if (!a64::writes_json_directly) e.description += " (JSON through snapshot())";
  r.maps.push_back(std::move(e));
#else
  r.missing.push_back({"TrieMap", "safemap/trie_map.hpp is not in this checkout"});
#endif
}

}  // namespace safemap_bench
