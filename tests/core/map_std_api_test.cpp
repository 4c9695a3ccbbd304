// Unit tests of Map's std-style conveniences (docs/design.md §3): initializer-list
// construction, insert, emplace, count, erase(iterator), erase_if, rehash. Expected results
// come from std::unordered_map doing the same (or from the rule stated in map.hpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "safemap/map.hpp"
#include "support/counted.hpp"

namespace safemap_test {
namespace {

using int_map = safemap::Map<int, int>;
using string_map = safemap::Map<std::string, int>;

// The map's contents, ordered, for comparison with an expected std::map.
template <class M>
std::map<typename M::key_type, typename M::mapped_type> contents(const M& m) {
  std::map<typename M::key_type, typename M::mapped_type> out;
  for (const auto& [k, v] : m) EXPECT_TRUE(out.emplace(k, v).second) << "key seen twice";
  return out;
}

TEST(MapStdApi, InitializerListKeepsTheFirstOfRepeatedKeysLikeStd) {
  const string_map m{{"a", 1}, {"b", 2}, {"a", 3}};
  const std::unordered_map<std::string, int> s{{"a", 1}, {"b", 2}, {"a", 3}};
  EXPECT_EQ(m.size(), s.size());
  EXPECT_EQ(m.at("a"), s.at("a"));
  EXPECT_EQ(m.at("b"), 2);
}

TEST(MapStdApi, InitializerListWithSizeHintPreallocates) {
  const int_map m({{1, 10}, {2, 20}}, 1000);
  EXPECT_EQ(m.size(), 2u);
  EXPECT_GE(m.stats().buckets * 13 / 2, 1000u);  // room for 1000 entries at 6.5 per bucket
}

TEST(MapStdApi, InsertReturnsTheStoredValueAndLeavesAnExistingOneAlone) {
  string_map m;
  const std::pair<const std::string, int> entry{"k", 1};
  auto [v1, inserted1] = m.insert(entry);
  ASSERT_TRUE(inserted1);
  EXPECT_EQ(*v1, 1);
  auto [v2, inserted2] = m.insert({"k", 2});
  EXPECT_FALSE(inserted2);
  EXPECT_EQ(*v2, 1);
  EXPECT_EQ(v1, v2);
  auto [v3, inserted3] = m.insert(std::pair<const char*, int>("j", 3));  // converting
  EXPECT_TRUE(inserted3);
  EXPECT_EQ(*v3, 3);
  EXPECT_EQ(contents(m), (std::map<std::string, int>{{"j", 3}, {"k", 1}}));
}

TEST(MapStdApi, InsertRangeAndListMatchStdUnorderedMap) {
  std::vector<std::pair<int, int>> src;
  for (int i = 0; i < 500; ++i) src.emplace_back(i % 300, i);  // 200 repeated keys
  int_map m;
  m.insert(src.begin(), src.end());
  std::unordered_map<int, int> s;
  s.insert(src.begin(), src.end());
  EXPECT_EQ(contents(m), (std::map<int, int>(s.begin(), s.end())));
  m.insert({{1000, 1}, {1, -1}});
  s.insert({{1000, 1}, {1, -1}});
  EXPECT_EQ(contents(m), (std::map<int, int>(s.begin(), s.end())));
}

TEST(MapStdApi, InsertMovesTheValueOfAnRvalueEntry) {
  safemap::Map<int, std::string> m;
  std::pair<const int, std::string> entry{1, std::string(100, 'x')};
  m.insert(std::move(entry));
  EXPECT_EQ(m.at(1), std::string(100, 'x'));
  EXPECT_TRUE(entry.second.empty());  // moved from (a 100-char string keeps no copy)
}

TEST(MapStdApi, EmplaceBuildsFromArgumentsIncludingPiecewise) {
  safemap::Map<std::string, std::string> m;
  auto [v, inserted] = m.emplace("key", "value");
  ASSERT_TRUE(inserted);
  EXPECT_EQ(*v, "value");
  auto [w, inserted2] = m.emplace(std::piecewise_construct, std::forward_as_tuple("pc"),
                                  std::forward_as_tuple(3, 'z'));
  ASSERT_TRUE(inserted2);
  EXPECT_EQ(*w, "zzz");
  auto [x, inserted3] = m.emplace("key", "other");
  EXPECT_FALSE(inserted3);
  EXPECT_EQ(*x, "value");
  EXPECT_EQ(m.size(), 2u);
}

TEST(MapStdApi, CountIsZeroOrOneIncludingHeterogeneousKeys) {
  string_map m{{"a", 1}};
  EXPECT_EQ(m.count("a"), 1u);
  EXPECT_EQ(m.count(std::string_view("a")), 1u);
  EXPECT_EQ(m.count(std::string("b")), 0u);
  m.erase("a");
  EXPECT_EQ(m.count("a"), 0u);
}

TEST(MapStdApi, EraseIteratorRemovesThatEntryAndTheWalkGoesOn) {
  int_map m;
  for (int i = 0; i < 1000; ++i) m.insert_or_assign(i, i);
  std::map<int, int> seen;
  for (auto it = m.begin(); it != m.end();) {
    seen.emplace(it->first, it->second);
    if (it->first % 3 == 0) {
      it = m.erase(it);
    } else {
      ++it;
    }
  }
  EXPECT_EQ(seen.size(), 1000u);  // every entry visited exactly once
  std::map<int, int> expect;
  for (int i = 0; i < 1000; ++i)
    if (i % 3 != 0) expect.emplace(i, i);
  EXPECT_EQ(contents(m), expect);
}

TEST(MapStdApi, EraseConstIteratorReturnsEndAfterTheLastEntry) {
  int_map m{{7, 70}};
  int_map::const_iterator it = m.cbegin();
  ASSERT_EQ(it->first, 7);
  it = m.erase(it);
  EXPECT_TRUE(it == m.cend());
  EXPECT_TRUE(m.empty());
}

// erase(iterator) hands erase() the entry's own key (no copy): erase must be done with the
// key before it destroys the entry. The keys are long enough to live on the heap, so the ASan
// build reports any read of a key after its entry is destroyed.
TEST(MapStdApi, EraseIteratorPassesTheEntrysOwnKey) {
  string_map m;
  for (int i = 0; i < 200; ++i) m.insert_or_assign(std::string(64, 'k') + std::to_string(i), i);
  std::size_t erased = 0;
  for (auto it = m.begin(); it != m.end();) {
    it = m.erase(it);
    ++erased;
  }
  EXPECT_EQ(erased, 200u);
  EXPECT_TRUE(m.empty());
}

struct erase_tag {};
TEST(MapStdApi, EraseIfRemovesExactlyTheMatchingEntriesAndDestroysThem) {
  using key = counted<erase_tag>;
  counted<erase_tag>::counters().reset();
  {
    safemap::Map<int, key> m;
    std::unordered_map<int, int> s;
    for (int i = 0; i < 2000; ++i) {
      m.try_emplace(i, i * 7);
      s.emplace(i, i * 7);
    }
    const auto pred = [](const auto& e) { return e.second.value() % 5 == 1; };
    const std::size_t n = erase_if(m, pred);
    const std::size_t expect_n = std::erase_if(s, [](const auto& e) { return e.second % 5 == 1; });
    EXPECT_EQ(n, expect_n);
    EXPECT_EQ(m.size(), s.size());
    for (const auto& [k, v] : s) {
      const key* got = m.find(k);
      ASSERT_NE(got, nullptr);
      EXPECT_EQ(got->value(), v);
    }
    EXPECT_EQ(counted<erase_tag>::counters().live.load(), static_cast<long>(s.size()));
  }
  EXPECT_EQ(counted<erase_tag>::counters().live.load(), 0);
  EXPECT_EQ(counted<erase_tag>::counters().bad_destroys.load(), 0);
}

TEST(MapStdApi, EraseIfIsFoundNextToStdEraseIf) {
  int_map m{{1, 1}, {2, 2}, {3, 3}};
  using std::erase_if;
  EXPECT_EQ(erase_if(m, [](const int_map::value_type& e) { return e.first != 2; }), 2u);
  EXPECT_EQ(contents(m), (std::map<int, int>{{2, 2}}));
}

TEST(MapStdApi, RehashMakesRoomForThatManyBucketsAndFinishesGrowth) {
  int_map m;
  for (int i = 0; i < 100; ++i) m.insert_or_assign(i, i);
  const auto before = contents(m);
  m.rehash(1000);
  const safemap::MapStats st = m.stats();
  EXPECT_GE(st.buckets, 1000u);
  EXPECT_LT(st.buckets, 2048u);  // the smallest power of two that is enough
  EXPECT_FALSE(st.growing);
  EXPECT_EQ(contents(m), before);
  // No growth until 6.5 entries per bucket.
  for (int i = 100; i < 6000; ++i) m.insert_or_assign(i, i);
  EXPECT_EQ(m.stats().buckets, st.buckets);
}

TEST(MapStdApi, RehashNeverShrinksAndKeepsRoomForTheEntries) {
  int_map m;
  for (int i = 0; i < 5000; ++i) m.insert_or_assign(i, i);
  const std::size_t buckets = m.stats().buckets;
  m.rehash(0);
  EXPECT_GE(m.stats().buckets, buckets);
  EXPECT_FALSE(m.stats().growing);
  EXPECT_EQ(m.size(), 5000u);
}

}  // namespace
}  // namespace safemap_test
