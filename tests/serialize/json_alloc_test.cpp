// tests/serialize/json_alloc_test.cpp - write_json makes no heap allocation in steady state.
//
// json.hpp promises: with enough capacity in `out`, and once the calling thread has
// serialized a map of that nesting depth, write_json allocates nothing for scalar and string
// keys and values, sorted or not. This binary replaces the global operator new and delete with
// versions that count the calling thread's allocations while a flag is on (other threads and
// the rest of the test are not counted), then checks the second write_json of each map.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>

#include "safemap/json.hpp"
#include "serialize_support.hpp"

// ---- counting global operator new -------------------------------------------------------------
namespace {
thread_local bool tls_counting = false;
thread_local long tls_allocations = 0;

void* counted_malloc(std::size_t n) noexcept {
  if (tls_counting) ++tls_allocations;
  return std::malloc(n == 0 ? 1 : n);
}
}  // namespace

// noinline: inlined into a caller, GCC would pair this malloc with the operator delete's free
// across the call and warn (-Wmismatched-new-delete) about a pairing that is in fact right.
// Every non-aligned form is replaced, so no block crosses between this allocator and a
// sanitizer's (the aligned forms stay the runtime's, in matching pairs).
[[gnu::noinline]] void* operator new(std::size_t n) {
  if (void* p = counted_malloc(n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new[](std::size_t n) {
  if (void* p = counted_malloc(n)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  return counted_malloc(n);
}
[[gnu::noinline]] void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  return counted_malloc(n);
}
[[gnu::noinline]] void operator delete(void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, std::size_t) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete(void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}
[[gnu::noinline]] void operator delete[](void* p, const std::nothrow_t&) noexcept {
  std::free(p);
}

namespace {

using safemap::Map;

// Counts this thread's allocations from construction to count().
class allocation_count {
 public:
  allocation_count() {
    tls_allocations = 0;
    tls_counting = true;
  }
  ~allocation_count() { tls_counting = false; }
  allocation_count(const allocation_count&) = delete;
  allocation_count& operator=(const allocation_count&) = delete;
  long count() const { return tls_allocations; }
};

// Writes m into out twice: once to warm up (out's capacity, the thread's sort scratch), then,
// with out cleared but its capacity kept, counting allocations. Returns that count. (Without
// sort_keys the two texts may differ in order: Map randomizes every iteration, as Go does.)
template <class M, class Out>
long steady_state_allocations(const M& m, Out& out, const safemap::json_options& opt) {
  out.clear();
  safemap::write_json(m, out, opt);
  const std::string first(out.data(), out.size());
  out.clear();
  long n;
  {
    allocation_count counter;
    safemap::write_json(m, out, opt);
    n = counter.count();
  }
  if (opt.sort_keys) {
    EXPECT_EQ(std::string(out.data(), out.size()), first) << "the two writes differ";
  } else {
    EXPECT_EQ(out.size(), first.size()) << "unsorted: same entries in another order";
  }
  return n;
}

template <class M>
void expect_no_allocation(const M& m, const char* name) {
  const safemap::json_options options[] = {
      {}, {.sort_keys = false}, {.pretty = true}, {.sort_keys = false, .pretty = true}};
  for (const auto& opt : options) {
    SCOPED_TRACE(::testing::Message()
                 << name << " sort_keys=" << opt.sort_keys << " pretty=" << opt.pretty);
    std::string s;
    EXPECT_EQ(steady_state_allocations(m, s, opt), 0) << "into std::string";
    fmt::memory_buffer buf;
    EXPECT_EQ(steady_state_allocations(m, buf, opt), 0) << "into fmt::memory_buffer";
  }
}

TEST(JsonAllocation, TheCounterSeesAllocationsOfThisThreadOnly) {
  allocation_count counter;
  std::string* s = new std::string(100, 'x');
  delete s;
  EXPECT_EQ(counter.count(), 2) << "the string object and its buffer";
  std::thread([] { std::string other(100, 'y'); }).join();
  EXPECT_LE(counter.count(), 3) << "at most the thread's state, allocated by this thread";
}

TEST(JsonAllocation, AFirstWriteIntoAnEmptyStringAllocates) {
  Map<std::string, std::string> m;
  m.insert_or_assign("key", std::string(100, 'v'));
  std::string out;
  allocation_count counter;
  safemap::write_json(m, out);
  EXPECT_GT(counter.count(), 0) << "out had no capacity: the counter must see it grow";
}

TEST(JsonAllocation, StringToStringMapWritesWithoutAllocating) {
  safemap_test::test_rng rng(5);
  Map<std::string, std::string> m;
  for (int i = 0; i < 1000; ++i) {
    // Long and short strings, escapes, multi-byte UTF-8, and invalid bytes (U+FFFD).
    std::string v = safemap_test::ser::utf8_string(rng, 40);
    if (i % 7 == 0) v += "\xFF\xC0\x80";
    m.insert_or_assign("key-" + std::to_string(i) + safemap_test::ser::utf8_string(rng, 4), v);
  }
  expect_no_allocation(m, "Map<std::string, std::string>");
}

TEST(JsonAllocation, Uint64MapWritesWithoutAllocating) {
  safemap_test::test_rng rng(6);
  Map<std::uint64_t, std::uint64_t> m;
  for (int i = 0; i < 1000; ++i) m.insert_or_assign(rng.next(), rng.next());
  m.insert_or_assign(0, UINT64_MAX);
  m.insert_or_assign(UINT64_MAX, 0);
  expect_no_allocation(m, "Map<uint64_t, uint64_t>");
}

TEST(JsonAllocation, IntToDoubleMapWritesWithoutAllocating) {
  safemap_test::test_rng rng(7);
  Map<int, double> m;
  for (int i = -500; i < 500; ++i)
    m.insert_or_assign(i, safemap_test::ser::random_float<double>(rng));
  expect_no_allocation(m, "Map<int, double>");
}

TEST(JsonAllocation, BoolKeysAndOtherScalarsWriteWithoutAllocating) {
  Map<bool, float> b;
  b.insert_or_assign(true, 1.5f);
  b.insert_or_assign(false, -0.0f);
  expect_no_allocation(b, "Map<bool, float>");
  Map<std::int8_t, bool> s;
  for (int i = -128; i < 128; ++i) s.insert_or_assign(static_cast<std::int8_t>(i), i % 3 == 0);
  expect_no_allocation(s, "Map<int8_t, bool>");
}

TEST(JsonAllocation, AnEmptyMapWritesWithoutAllocating) {
  expect_no_allocation(Map<std::string, std::string>{}, "empty Map<std::string, std::string>");
}

TEST(JsonAllocation, SteadyStateHoldsOnAnotherThreadToo) {
  Map<int, double> m;
  for (int i = 0; i < 300; ++i) m.insert_or_assign(i, i / 7.0);
  std::thread([&] { expect_no_allocation(m, "Map<int, double> on a second thread"); }).join();
}

}  // namespace
