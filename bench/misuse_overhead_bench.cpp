// bench/misuse_overhead_bench.cpp - safemap::Map with the misuse detector (this translation
// unit) against the same code compiled with SAFEMAP_NO_MISUSE_CHECKS
// (misuse_overhead_unchecked.cpp), in one binary and one run. See misuse_overhead.hpp.
#include "misuse_overhead.hpp"

static_assert(SAFEMAP_MISUSE_CHECKS == 1, "this translation unit measures the checked Map");

namespace {
const int registered = misuse_bench::register_all("checked");
}  // namespace

BENCHMARK_MAIN();
