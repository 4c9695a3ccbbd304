// With SAFEMAP_NO_MISUSE_CHECKS the detector is compiled out of safemap::Map: the same forced
// overlaps as in misuse_test.cpp are not reported. The macro moves Map into another inline
// namespace (detail/config.hpp), so this translation unit and misuse_test.cpp, which uses the
// checked Map, live in one binary without an ODR violation.
//
// Only reads and iteration steps are overlapped with the write here: without the detector a
// second writer would really race with the first. The writer is parked in the value's
// constructor and the reader runs between the gate's latches, so even these unchecked reads
// are ordered with the write and ThreadSanitizer stays quiet.
#define SAFEMAP_NO_MISUSE_CHECKS 1

#include <gtest/gtest.h>

#include <type_traits>

#include "safemap/map.hpp"
#include "support/misuse_guard.hpp"

namespace safemap_test {
namespace {

using unchecked_map = safemap::Map<int, gated_value>;

static_assert(std::is_same_v<unchecked_map, safemap::unchecked::Map<int, gated_value>>,
              "SAFEMAP_NO_MISUSE_CHECKS selects the unchecked variant");

TEST(MisuseUnchecked, ReadDuringAWriteIsNotReportedWithoutChecks) {
  scoped_misuse_handler guard(&record_misuse);
  misuse_record::instance().reset();
  unchecked_map m;
  for (int i = 0; i < 100; ++i) m.insert_or_assign(i, gated_value(i));
  const unchecked_map& cm = m;
  while_writing(m, 1000, 1000, [&] {
    const gated_value* v = cm.find(3);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->value, 3);
    EXPECT_TRUE(cm.contains(4));
    EXPECT_EQ(cm.at(5).value, 5);
    (void)cm.stats();
  });
  EXPECT_EQ(misuse_record::instance().total(), 0);
  EXPECT_EQ(m.at(1000).value, 1000);
}

TEST(MisuseUnchecked, IterationDuringAWriteIsNotReportedWithoutChecks) {
  scoped_misuse_handler guard(&record_misuse);
  misuse_record::instance().reset();
  unchecked_map m;
  for (int i = 0; i < 100; ++i) m.insert_or_assign(i, gated_value(i));
  const unchecked_map& cm = m;
  auto it = cm.begin();
  while_writing(m, 1000, 1000, [&] {
    ++it;
    auto other = cm.begin();
    EXPECT_NE(other, cm.end());
  });
  int n = 0;
  for (; it != cm.end(); ++it) ++n;
  EXPECT_GT(n, 0);
  EXPECT_EQ(misuse_record::instance().total(), 0);
}

TEST(MisuseUnchecked, UncheckedMapBehavesLikeTheCheckedOne) {
  safemap::Map<int, int> m;
  for (int i = 0; i < 10000; ++i) m.insert_or_assign(i, i);
  for (int i = 0; i < 10000; i += 2) m.erase(i);
  EXPECT_EQ(m.size(), 5000u);
  for (int i = 1; i < 10000; i += 2) ASSERT_EQ(m.at(i), i);
}

}  // namespace
}  // namespace safemap_test
