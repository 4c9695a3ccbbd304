// tests/strategies/conformance_test.cpp - the conformance suite
// (tests/support/conformance_suite.hpp) on every in-process concurrent map whose header exists
// (concurrent_map_types, tests/support/concurrent_maps.hpp). The tests are named
// InProcess/ConformanceTest/<Map>.<test> (and
// InProcess/ValueLifetimeTest/<Map>.<test>).
#include <gtest/gtest.h>

#include "support/concurrent_maps.hpp"
#include "support/conformance_suite.hpp"

namespace safemap_test::conformance {

INSTANTIATE_TYPED_TEST_SUITE_P(InProcess, ConformanceTest, concurrent_map_types, map_names);
INSTANTIATE_TYPED_TEST_SUITE_P(InProcess, ValueLifetimeTest, concurrent_map_types, map_names);

}  // namespace safemap_test::conformance
