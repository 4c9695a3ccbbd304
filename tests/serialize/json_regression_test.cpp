// tests/serialize/json_regression_test.cpp - one test per defect found in json.hpp's writers
// and parser, named after the bug; plus the replay of the fuzzer's seed corpus.
//
// Each test states the defect, where it is, and what the fix must make true. They stay here
// after the fix as regression tests.
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "safemap/json.hpp"
#include "serialize_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using safemap::Map;
using safemap_test::ser::parse_error_at;
using safemap_test::ser::point;

// detail/json_write.hpp, sorted_walk: `entry_ptrs& s = scratch(depth)` is a reference into a
// thread_local std::vector<entry_ptrs>. Writing a nested map calls scratch(depth + 1) from
// inside the loop over s, which resizes that vector the first time a thread reaches the
// deeper level; the outer vector of vectors is reallocated and `s` dangles. The loop itself
// still runs (its iterators point into the moved buffer) but the trailing `s.clear()` writes
// to freed memory: AddressSanitizer reports heap-use-after-free in every first serialization
// of a nested map on a thread (to_json, to_string and {fmt} alike). Only a sanitizer build
// sees it; in Release it silently writes into a freed heap block.
TEST(JsonWriterRegression, NestedMapOnAFreshThreadDoesNotUseFreedScratch) {
  using inner_t = Map<std::string, int>;
  using middle_t = Map<std::string, inner_t>;
  Map<std::string, middle_t> m;
  for (int i = 0; i < 3; ++i) {
    inner_t inner;
    inner.insert_or_assign("y", i);
    inner.insert_or_assign("x", -i);
    middle_t middle;
    middle.insert_or_assign("b", inner);
    middle.insert_or_assign("a", inner_t{});
    m.insert_or_assign(std::to_string(i), middle);
  }
  const std::string expected_json =
      R"({"0":{"a":{},"b":{"x":0,"y":0}},"1":{"a":{},"b":{"x":-1,"y":1}},)"
      R"("2":{"a":{},"b":{"x":-2,"y":2}}})";
  const std::string expected_go =
      "map[0:map[a:map[] b:map[x:0 y:0]] 1:map[a:map[] b:map[x:-1 y:1]] "
      "2:map[a:map[] b:map[x:-2 y:2]]]";
  // The calling thread (a fresh process under ctest), then fresh threads: each one's scratch
  // stack starts empty, so both nested levels must grow it. (ThreadSanitizer sees the freed
  // block only when it has not been reused yet, so several tries.)
  EXPECT_EQ(safemap::to_json(m), expected_json);
  for (int i = 0; i < 4; ++i) {
    std::string json;
    std::string go;
    std::thread([&] { json = safemap::to_json(m); }).join();
    std::thread([&] { go = safemap::to_string(m); }).join();
    EXPECT_EQ(json, expected_json);
    EXPECT_EQ(go, expected_go);
  }
}

// detail/json_read.hpp, read_fields: the check for missing fields runs after consume('}') has
// moved past the closing brace, so the error points one byte too far (at whatever follows the
// object, which what() then describes as "found"). It must point at the object's '}'.
TEST(JsonParseRegression, MissingStructFieldIsReportedAtTheClosingBrace) {
  EXPECT_TRUE((parse_error_at<Map<std::string, point>>(R"({"p":{"x":1,"label":""}})", 22,
                                                       "field \"y\" before '}' (it is missing)")));
  EXPECT_TRUE((parse_error_at<Map<std::string, point>>(R"({"p":{}})", 6, "field \"x\"")));
  // The brace that closes the incomplete object, not the one after it.
  EXPECT_TRUE((parse_error_at<Map<std::string, point>>(R"({"p":{"x":1,"y":2}})", 17, "found '}'")));
}

// detail/json_read.hpp, read_escape: after a high surrogate, `consume('\\') && consume('u')`
// consumed the backslash of a following escape that is not \u, so "\ud800\n" was reported one
// byte later than "\ud800x". Every lone high surrogate is now reported at its own backslash
// (issue 9, item 13), whatever follows it.
TEST(JsonParseRegression, LoneHighSurrogateBeforeAnotherEscapeIsReportedAtItsOwnEscape) {
  using M = Map<std::string, std::string>;
  const char* lone_high = "a \\u escape that is not a lone high surrogate";
  EXPECT_TRUE(parse_error_at<M>(R"({"a":"\ud800\n"})", 6, lone_high));
  EXPECT_TRUE(parse_error_at<M>(R"({"a":"\ud800\\"})", 6, lone_high));
}

// ---- fuzzer inputs --------------------------------------------------------------------------

std::vector<std::filesystem::path> fuzz_inputs() {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(SAFEMAP_FUZZ_CORPUS_DIR)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  return files;
}

// The fuzz target (fuzz/json_parse_fuzz.cpp) aborts on any finding; here it runs, compiled
// by the normal toolchain, over the seed corpus. (Crash inputs the fuzzer finds become tests
// of their own above, the input as a literal.)
TEST(JsonFuzzReplay, SeedCorpusParsesOrFailsCleanly) {
  const auto files = fuzz_inputs();
  EXPECT_GE(files.size(), 10u) << "seed corpus missing: " << SAFEMAP_FUZZ_CORPUS_DIR;
  for (const auto& f : files) {
    SCOPED_TRACE(f.string());
    std::ifstream in(f, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  }
}

}  // namespace
