// tests/redis/redis_conformance_test.cpp - the conformance suite
// (tests/support/conformance_suite.hpp) on RedisMap (include/safemap/redis_map.hpp), against the
// server the RedisMap tests share (tests/redis/redis_server.hpp: a private redis-server, or
// SAFEMAP_TEST_REDIS_PORT's).
//
// map_traits<RedisMap<...>> tells the suite how to get a map (a name no other test uses, on the
// shared server), what RedisMap documents where docs/design.md §4 lets strategies differ, and
// that every call is a round trip: loops run 1/100 of the in-process maps' operations, which
// keeps each test near a second. Skipped: only the instance-counting test, since RedisMap keeps
// values as JSON text and has no C++ object per stored value.
// The tests are named Redis/ConformanceTest/RedisMap.<test>.
#include <gtest/gtest.h>

#include <cstddef>

#include "redis/redis_server.hpp"
#include "safemap/redis_map.hpp"
#include "support/concurrent_maps.hpp"

namespace safemap_test {

// Values from the top of safemap/redis_map.hpp.
template <class K, class V, class H, class E>
struct map_traits<safemap::RedisMap<K, V, H, E>> {
  static constexpr const char* name = "RedisMap";
  static constexpr bool point_in_time_range = false;  // HSCAN: weakly consistent
  static constexpr range_write_policy write_from_range = range_write_policy::works;  // no
  // connection is held while the callback runs
  static constexpr bool failed_writes_keep_version = true;  // a script INCRs only on a change
  static constexpr bool compute_calls_f_once = false;       // a changed field calls f again
  static constexpr bool visit_may_read_any_key = true;      // no connection held in callbacks
  // erase_if's predicate and insert_or_visit's callback run with no connection held.
  static constexpr range_write_policy write_from_bulk_callback = range_write_policy::works;
  // A RedisMap is a handle to a hash on the server: the moved-from handle names the same hash.
  static constexpr bool move_empties_source = false;
  static constexpr std::size_t work_divisor = 100;    // a round trip per call
  static constexpr bool holds_value_objects = false;  // values are JSON text on the server

  static safemap::RedisMap<K, V, H, E> make() {
    return safemap::RedisMap<K, V, H, E>(unique_map_name(), shared_server().options());
  }
};

}  // namespace safemap_test

#include "support/conformance_suite.hpp"

namespace safemap_test::conformance {

using redis_map_types = ::testing::Types<safemap::RedisMap<int, int>>;
INSTANTIATE_TYPED_TEST_SUITE_P(Redis, ConformanceTest, redis_map_types, map_names);
// Not ValueLifetimeTest: the server keeps each value as JSON text, so there is no C++ object per
// stored value to count (every value read is a fresh decode the caller owns). The suite is
// registered by the header all the same; this tells GoogleTest that leaving it out is meant.
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ValueLifetimeTest);

}  // namespace safemap_test::conformance
