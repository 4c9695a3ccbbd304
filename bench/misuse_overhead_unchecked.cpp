// bench/misuse_overhead_unchecked.cpp - the misuse benchmarks compiled with
// SAFEMAP_NO_MISUSE_CHECKS (bench/CMakeLists.txt sets it on this file only), so Map here is
// safemap::unchecked::Map. See misuse_overhead.hpp.
#include "misuse_overhead.hpp"

static_assert(SAFEMAP_MISUSE_CHECKS == 0,
              "bench/CMakeLists.txt must define SAFEMAP_NO_MISUSE_CHECKS here");

namespace {
const int registered = misuse_bench::register_all("unchecked");
}  // namespace
