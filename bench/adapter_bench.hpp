// bench/adapter_bench.hpp - what the Google Benchmarks that drive maps through safemap-bench's
// adapters (read_bench, batch_bench) share: the installed peers' adapters, one alias per peer
// for uint64 keys, and the one map a row's threads share.
#pragma once

#include <cstdint>
#include <memory>

#include "adapters/safemap_adapter.hpp"
#if SAFEMAP_BENCH_HAVE_TBB
#include "adapters/tbb_adapter.hpp"
#include "adapters/tbb_unordered_adapter.hpp"
#endif
#if SAFEMAP_BENCH_HAVE_CUCKOO
#include "adapters/cuckoo_adapter.hpp"
#endif
#if SAFEMAP_BENCH_HAVE_LFHT
#include "adapters/lfht_adapter.hpp"
#endif

namespace safemap_bench::adapter_bench {

using u64 = std::uint64_t;

#if SAFEMAP_BENCH_HAVE_TBB
using tbbu_a = tbb_unordered_adapter<u64>;
using tbb_a = tbb_adapter<u64>;
#endif
#if SAFEMAP_BENCH_HAVE_CUCKOO
using cuckoo_a = cuckoo_adapter<u64>;
#endif
#if SAFEMAP_BENCH_HAVE_LFHT
using lfht_a = lfht_adapter;
#endif

// The map of the running row: thread 0 makes it before the start barrier and resets it after
// the stop barrier; the other threads only use it in between.
template <class A>
std::unique_ptr<A>& shared_map() {
  static std::unique_ptr<A> m;
  return m;
}

}  // namespace safemap_bench::adapter_bench
