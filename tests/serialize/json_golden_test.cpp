// tests/serialize/json_golden_test.cpp - exact output of to_json, to_string and the {fmt}
// formatter (json.hpp), written out by hand.
//
// Expected texts come from the specifications, not from running the code: RFC 8259 for JSON
// strings, std::to_chars' shortest form for JSON numbers (the shorter of %f and %e, %f on a
// tie: 1e+06 but 123456 and 10000), Go's fmt %v for the Go text (strconv 'g' with the
// shortest digits, %e when the exponent is < -4 or >= 6: 1e+06, 123456, 0.0001, 1e-05). Where the
// implementation documents a choice the specs leave open (one U+FFFD per invalid byte, lowercase
// \u00xx), the test follows the header comment.
//
// Nested maps are kept to the tests whose name says so: serializing one hits the scratch
// bug reported by JsonWriterRegression.* (see json_regression_test.cpp).
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "safemap/json.hpp"
#include "serialize_support.hpp"

namespace {

using safemap::Map;
using safemap_test::ser::point;
using safemap_test::ser::segment;

template <class T>
Map<std::string, T> extremes() {
  Map<std::string, T> m;
  m.insert_or_assign("min", std::numeric_limits<T>::min());
  m.insert_or_assign("max", std::numeric_limits<T>::max());
  m.insert_or_assign("zero", T{0});
  return m;
}

// ---- scalars ------------------------------------------------------------------------------

TEST(JsonGolden, IntegerExtremesOfEveryWidth) {
  EXPECT_EQ(safemap::to_json(extremes<std::int8_t>()), R"({"max":127,"min":-128,"zero":0})");
  EXPECT_EQ(safemap::to_json(extremes<std::uint8_t>()), R"({"max":255,"min":0,"zero":0})");
  EXPECT_EQ(safemap::to_json(extremes<std::int16_t>()), R"({"max":32767,"min":-32768,"zero":0})");
  EXPECT_EQ(safemap::to_json(extremes<std::uint16_t>()), R"({"max":65535,"min":0,"zero":0})");
  EXPECT_EQ(safemap::to_json(extremes<std::int32_t>()),
            R"({"max":2147483647,"min":-2147483648,"zero":0})");
  EXPECT_EQ(safemap::to_json(extremes<std::uint32_t>()), R"({"max":4294967295,"min":0,"zero":0})");
  EXPECT_EQ(safemap::to_json(extremes<std::int64_t>()),
            R"({"max":9223372036854775807,"min":-9223372036854775808,"zero":0})");
  EXPECT_EQ(safemap::to_json(extremes<std::uint64_t>()),
            R"({"max":18446744073709551615,"min":0,"zero":0})");
}

TEST(JsonGolden, IntegerExtremesInGoText) {
  EXPECT_EQ(safemap::to_string(extremes<std::int8_t>()), "map[max:127 min:-128 zero:0]");
  EXPECT_EQ(safemap::to_string(extremes<std::uint64_t>()),
            "map[max:18446744073709551615 min:0 zero:0]");
  EXPECT_EQ(safemap::to_string(extremes<std::int64_t>()),
            "map[max:9223372036854775807 min:-9223372036854775808 zero:0]");
}

TEST(JsonGolden, BoolValues) {
  Map<std::string, bool> m;
  m.insert_or_assign("t", true);
  m.insert_or_assign("f", false);
  EXPECT_EQ(safemap::to_json(m), R"({"f":false,"t":true})");
  EXPECT_EQ(safemap::to_string(m), "map[f:false t:true]");
}

struct float_case {
  double value;
  const char* json;  // std::to_chars shortest
  const char* go;    // Go's %v
};

TEST(JsonGolden, DoublesInShortestRoundTripFormAndGoForm) {
  const float_case cases[] = {
      {0.1, "0.1", "0.1"},
      {0.3, "0.3", "0.3"},
      {1.0 / 3.0, "0.3333333333333333", "0.3333333333333333"},
      {1e300, "1e+300", "1e+300"},
      {5e-324, "5e-324", "5e-324"},
      {-0.0, "-0", "-0"},
      {0.0, "0", "0"},
      {5.0, "5", "5"},
      {-2.5, "-2.5", "-2.5"},
      {100.0, "100", "100"},
      {10000.0, "10000", "10000"},  // a tie with 1e+04: %f wins
      {100000.0, "1e+05", "100000"},
      {123456.0, "123456", "123456"},
      {1e6, "1e+06", "1e+06"},
      {1234567.0, "1234567", "1.234567e+06"},
      {123456789.0, "123456789", "1.23456789e+08"},
      {9007199254740992.0, "9007199254740992", "9.007199254740992e+15"},
      {1e21, "1e+21", "1e+21"},
      {0.0001, "1e-04", "0.0001"},
      {0.00012, "0.00012", "0.00012"},
      {1e-5, "1e-05", "1e-05"},
      {1.5e-5, "1.5e-05", "1.5e-05"},
      {-1e-7, "-1e-07", "-1e-07"},
      {std::numeric_limits<double>::max(), "1.7976931348623157e+308", "1.7976931348623157e+308"},
      {std::numeric_limits<double>::min(), "2.2250738585072014e-308", "2.2250738585072014e-308"},
      {std::numeric_limits<double>::lowest(), "-1.7976931348623157e+308",
       "-1.7976931348623157e+308"},
  };
  for (const auto& c : cases) {
    Map<int, double> m;
    m.insert_or_assign(1, c.value);
    EXPECT_EQ(safemap::to_json(m), std::string(R"({"1":)") + c.json + "}") << c.go;
    EXPECT_EQ(safemap::to_string(m), std::string("map[1:") + c.go + "]") << c.json;
  }
}

TEST(JsonGolden, FloatsUseFloatShortestDigits) {
  Map<int, float> m;
  m.insert_or_assign(1, 0.1f);
  m.insert_or_assign(2, std::numeric_limits<float>::max());
  m.insert_or_assign(3, std::numeric_limits<float>::denorm_min());
  m.insert_or_assign(4, 16777216.0f);
  m.insert_or_assign(5, -0.0f);
  EXPECT_EQ(safemap::to_json(m), R"({"1":0.1,"2":3.4028235e+38,"3":1e-45,"4":16777216,"5":-0})");
  EXPECT_EQ(safemap::to_string(m), "map[1:0.1 2:3.4028235e+38 3:1e-45 4:1.6777216e+07 5:-0]");
}

TEST(JsonGolden, InfinityAndNaNInGoText) {
  Map<int, double> m;
  m.insert_or_assign(1, std::numeric_limits<double>::infinity());
  m.insert_or_assign(2, -std::numeric_limits<double>::infinity());
  m.insert_or_assign(3, std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(safemap::to_string(m), "map[1:+Inf 2:-Inf 3:NaN]");
}

// ---- strings ------------------------------------------------------------------------------

std::string json_of_string(const std::string& s) {
  Map<int, std::string> m;
  m.insert_or_assign(0, s);
  const std::string out = safemap::to_json(m);
  const std::string prefix = R"({"0":)";
  EXPECT_EQ(out.substr(0, prefix.size()), prefix);
  EXPECT_EQ(out.back(), '}');
  return out.substr(prefix.size(), out.size() - prefix.size() - 1);
}

TEST(JsonGolden, QuoteAndBackslashAreEscapedSlashAndDelAreNot) {
  EXPECT_EQ(json_of_string(R"(say "hi")"), R"("say \"hi\"")");
  EXPECT_EQ(json_of_string(R"(C:\dir\)"), R"("C:\\dir\\")");
  EXPECT_EQ(json_of_string("a/b"), R"("a/b")");
  EXPECT_EQ(json_of_string("\x7f"), "\"\x7f\"");
  EXPECT_EQ(json_of_string(""), R"("")");
}

TEST(JsonGolden, EveryControlCharacterIsEscaped) {
  for (int c = 0; c < 0x20; ++c) {
    std::string expected;
    switch (c) {
      case '\b':
        expected = R"(\b)";
        break;
      case '\f':
        expected = R"(\f)";
        break;
      case '\n':
        expected = R"(\n)";
        break;
      case '\r':
        expected = R"(\r)";
        break;
      case '\t':
        expected = R"(\t)";
        break;
      default:
        expected = fmt::format("\\u{:04x}", c);
    }
    EXPECT_EQ(json_of_string(std::string("x") + static_cast<char>(c) + "y"),
              "\"x" + expected + "y\"")
        << "control character " << c;
  }
}

TEST(JsonGolden, ValidUtf8IsKeptAsIs) {
  const std::string valid[] = {
      "\xC3\xA9",          // é U+00E9
      "\xC2\x80",          // U+0080, the first 2-byte code point
      "\xDF\xBF",          // U+07FF
      "\xE0\xA0\x80",      // U+0800, the first 3-byte code point
      "\xE2\x82\xAC",      // € U+20AC
      "\xED\x9F\xBF",      // U+D7FF, just below the surrogates
      "\xEE\x80\x80",      // U+E000, just above them
      "\xEF\xBF\xBD",      // U+FFFD itself
      "\xF0\x90\x80\x80",  // U+10000, the first 4-byte code point
      "\xF0\x9D\x84\x9E",  // 𝄞 U+1D11E
      "\xF4\x8F\xBF\xBF",  // U+10FFFF, the last code point
  };
  for (const auto& s : valid) {
    EXPECT_EQ(json_of_string("<" + s + ">"), "\"<" + s + ">\"");
  }
}

TEST(JsonGolden, EachInvalidUtf8ByteBecomesOneReplacementCharacter) {
  const std::string r = "\xEF\xBF\xBD";  // U+FFFD
  struct invalid_case {
    std::string in;
    std::string out;
  };
  const invalid_case cases[] = {
      {"\xFF", r},
      {"\xFE", r},
      {"\x80", r},                                          // lone continuation byte
      {"\xC0\x80", r + r},                                  // overlong NUL
      {"\xC1\xBF", r + r},                                  // overlong U+007F
      {"\xE0\x80\x80", r + r + r},                          // overlong 3-byte
      {"\xE0\x9F\xBF", r + r + r},                          // overlong U+07FF
      {"\xF0\x80\x80\x80", r + r + r + r},                  // overlong 4-byte
      {"\xF0\x8F\xBF\xBF", r + r + r + r},                  // overlong U+FFFF
      {"\xED\xA0\x80", r + r + r},                          // surrogate U+D800
      {"\xED\xBF\xBF", r + r + r},                          // surrogate U+DFFF
      {"\xED\xA0\xBD\xED\xB2\xA9", r + r + r + r + r + r},  // CESU-8 pair
      {"\xF4\x90\x80\x80", r + r + r + r},                  // U+110000
      {"\xF5\x80\x80\x80", r + r + r + r},                  // lead byte above F4
      {"\xE2\x82", r + r},                                  // truncated at the end
      {"\xE2\x82"
       "x",
       r + r + "x"},                // truncated before ASCII
      {"\xF0\x9D\x84", r + r + r},  // truncated 4-byte
      {"\xC3", r},                  // truncated 2-byte
      {"a\xFF"
       "b\xC3\xA9",
       "a" + r + "b\xC3\xA9"},  // valid text resumes
  };
  for (const auto& c : cases) {
    EXPECT_EQ(json_of_string(c.in), "\"" + c.out + "\"")
        << fmt::format("{::02x}", std::vector<unsigned char>(c.in.begin(), c.in.end()));
  }
}

// ---- keys ---------------------------------------------------------------------------------

TEST(JsonGolden, StringKeysAreEscapedAndSortedBytewise) {
  Map<std::string, int> m;
  m.insert_or_assign("b", 1);
  m.insert_or_assign("a", 2);
  m.insert_or_assign("A", 3);
  m.insert_or_assign("aa", 4);
  m.insert_or_assign("", 5);
  m.insert_or_assign("\xC3\xA9", 6);
  m.insert_or_assign("q\"\n", 7);
  EXPECT_EQ(safemap::to_json(m),
            "{\"\":5,\"A\":3,\"a\":2,\"aa\":4,\"b\":1,\"q\\\"\\n\":7,\"\xC3\xA9\":6}");
  EXPECT_EQ(safemap::to_string(m), "map[:5 A:3 a:2 aa:4 b:1 q\"\n:7 \xC3\xA9:6]");
}

TEST(JsonGolden, IntegerKeysAreStringsSortedNumerically) {
  Map<int, int> m;
  for (int k : {10, -2, 100, 0, -10, 3, 9}) m.insert_or_assign(k, k);
  EXPECT_EQ(safemap::to_json(m), R"({"-10":-10,"-2":-2,"0":0,"3":3,"9":9,"10":10,"100":100})");
  EXPECT_EQ(safemap::to_string(m), "map[-10:-10 -2:-2 0:0 3:3 9:9 10:10 100:100]");

  Map<std::uint64_t, int> u;
  for (std::uint64_t k : {std::uint64_t{10}, std::numeric_limits<std::uint64_t>::max(),
                          std::uint64_t{9}, std::uint64_t{0}}) {
    u.insert_or_assign(k, 1);
  }
  EXPECT_EQ(safemap::to_json(u), R"({"0":1,"9":1,"10":1,"18446744073709551615":1})");

  Map<std::int8_t, std::int8_t> s;
  s.insert_or_assign(std::int8_t{-128}, std::int8_t{1});
  s.insert_or_assign(std::int8_t{127}, std::int8_t{2});
  s.insert_or_assign(std::int8_t{-1}, std::int8_t{3});
  EXPECT_EQ(safemap::to_json(s), R"({"-128":1,"-1":3,"127":2})");
  EXPECT_EQ(safemap::to_string(s), "map[-128:1 -1:3 127:2]");

  Map<std::int64_t, int> w;
  w.insert_or_assign(std::numeric_limits<std::int64_t>::min(), 1);
  w.insert_or_assign(std::numeric_limits<std::int64_t>::max(), 2);
  EXPECT_EQ(safemap::to_json(w), R"({"-9223372036854775808":1,"9223372036854775807":2})");
}

TEST(JsonGolden, BoolKeysAreFalseThenTrue) {
  Map<bool, int> m;
  m.insert_or_assign(true, 1);
  m.insert_or_assign(false, 0);
  EXPECT_EQ(safemap::to_json(m), R"({"false":0,"true":1})");
  EXPECT_EQ(safemap::to_string(m), "map[false:0 true:1]");
}

TEST(JsonGolden, EmptyMap) {
  EXPECT_EQ(safemap::to_json(Map<int, int>{}), "{}");
  EXPECT_EQ(safemap::to_json(Map<int, int>{}, {.pretty = true}), "{}");
  EXPECT_EQ(safemap::to_string(Map<int, int>{}), "map[]");
}

// ---- nesting ------------------------------------------------------------------------------

TEST(JsonGolden, VectorsAndOptionals) {
  Map<std::string, std::vector<int>> v;
  v.insert_or_assign("v", std::vector<int>{1, 2, 3});
  v.insert_or_assign("e", std::vector<int>{});
  EXPECT_EQ(safemap::to_json(v), R"({"e":[],"v":[1,2,3]})");
  EXPECT_EQ(safemap::to_string(v), "map[e:[] v:[1 2 3]]");

  Map<std::string, std::optional<int>> o;
  o.insert_or_assign("s", 5);
  o.insert_or_assign("n", std::nullopt);
  EXPECT_EQ(safemap::to_json(o), R"({"n":null,"s":5})");
  EXPECT_EQ(safemap::to_string(o), "map[n:<nil> s:5]");

  Map<std::string, std::vector<std::optional<std::string>>> vo;
  vo.insert_or_assign("x", std::vector<std::optional<std::string>>{"a b", std::nullopt, ""});
  EXPECT_EQ(safemap::to_json(vo), R"({"x":["a b",null,""]})");
  EXPECT_EQ(safemap::to_string(vo), "map[x:[a b <nil> ]]");

  Map<std::string, std::vector<std::vector<double>>> vv;
  vv.insert_or_assign("m", std::vector<std::vector<double>>{{1.5, 2}, {}, {1e6}});
  EXPECT_EQ(safemap::to_json(vv), R"({"m":[[1.5,2],[],[1e+06]]})");
  EXPECT_EQ(safemap::to_string(vv), "map[m:[[1.5 2] [] [1e+06]]]");
}

TEST(JsonGolden, UserStructsThroughJsonTraitsFields) {
  Map<std::string, point> m;
  m.insert_or_assign("p", point{1, 2.5, "x"});
  EXPECT_EQ(safemap::to_json(m), R"({"p":{"x":1,"y":2.5,"label":"x"}})");
  EXPECT_EQ(safemap::to_string(m), "map[p:{1 2.5 x}]");

  Map<int, segment> s;
  s.insert_or_assign(7, segment{{0, 0, "a"}, {3, -1e-7, "b\""}, std::nullopt, {1, 2}});
  EXPECT_EQ(safemap::to_json(s),
            R"({"7":{"from":{"x":0,"y":0,"label":"a"},"to":{"x":3,"y":-1e-07,"label":"b\""},)"
            R"("note":null,"tags":[1,2]}})");
  EXPECT_EQ(safemap::to_string(s), "map[7:{{0 0 a} {3 -1e-07 b\"} <nil> [1 2]}]");
}

TEST(JsonGolden, NestedMapsAreSortedAtEveryLevel) {
  Map<std::string, Map<int, std::string>> m;
  Map<int, std::string> inner;
  inner.insert_or_assign(2, "b");
  inner.insert_or_assign(-1, "a");
  m.insert_or_assign("outer", inner);
  m.insert_or_assign("empty", Map<int, std::string>{});
  EXPECT_EQ(safemap::to_json(m), R"({"empty":{},"outer":{"-1":"a","2":"b"}})");
  EXPECT_EQ(safemap::to_string(m), "map[empty:map[] outer:map[-1:a 2:b]]");

  Map<std::string, std::vector<Map<bool, int>>> vm;
  Map<bool, int> b;
  b.insert_or_assign(true, 1);
  b.insert_or_assign(false, 0);
  vm.insert_or_assign("list", std::vector<Map<bool, int>>{b, {}});
  EXPECT_EQ(safemap::to_json(vm), R"({"list":[{"false":0,"true":1},{}]})");
  EXPECT_EQ(safemap::to_string(vm), "map[list:[map[false:0 true:1] map[]]]");
}

// ---- layout -------------------------------------------------------------------------------

TEST(JsonGolden, PrettyPrintingIndentsEveryLevel) {
  Map<std::string, std::vector<int>> m;
  m.insert_or_assign("b", std::vector<int>{1, 2});
  m.insert_or_assign("a", std::vector<int>{});
  EXPECT_EQ(safemap::to_json(m, {.pretty = true}),
            "{\n"
            "  \"a\": [],\n"
            "  \"b\": [\n"
            "    1,\n"
            "    2\n"
            "  ]\n"
            "}");
  EXPECT_EQ(safemap::to_json(m, {.pretty = true, .indent = 4}),
            "{\n"
            "    \"a\": [],\n"
            "    \"b\": [\n"
            "        1,\n"
            "        2\n"
            "    ]\n"
            "}");
  EXPECT_EQ(safemap::to_json(m, {.pretty = true, .indent = 0}),
            "{\n\"a\": [],\n\"b\": [\n1,\n2\n]\n}");
  EXPECT_EQ(safemap::to_json(m, {.pretty = true, .indent = -3}),
            safemap::to_json(m, {.pretty = true, .indent = 0}))
      << "a negative indent counts as 0";

  Map<std::string, point> p;
  p.insert_or_assign("p", point{1, 2.5, "x"});
  EXPECT_EQ(safemap::to_json(p, {.pretty = true}),
            "{\n"
            "  \"p\": {\n"
            "    \"x\": 1,\n"
            "    \"y\": 2.5,\n"
            "    \"label\": \"x\"\n"
            "  }\n"
            "}");
}

TEST(JsonGolden, PrettyPrintingDeeperThanTheSpaceBuffer) {
  // 40 spaces per level: more than one append of the writer's space buffer.
  Map<std::string, std::vector<std::vector<int>>> m;
  m.insert_or_assign("k", std::vector<std::vector<int>>{{7}});
  const std::string s40(40, ' ');
  EXPECT_EQ(safemap::to_json(m, {.pretty = true, .indent = 40}),
            "{\n" + s40 + "\"k\": [\n" + s40 + s40 + "[\n" + s40 + s40 + s40 + "7\n" + s40 + s40 +
                "]\n" + s40 + "]\n}");
}

TEST(JsonGolden, UnsortedOutputHasTheSameEntries) {
  Map<std::string, int> m;
  for (int i = 0; i < 200; ++i) m.insert_or_assign("key" + std::to_string(i), i);
  const std::string sorted = safemap::to_json(m);
  const std::string unsorted = safemap::to_json(m, {.sort_keys = false});
  EXPECT_EQ(unsorted.size(), sorted.size());
  EXPECT_EQ((safemap::from_json<Map<std::string, int>>(unsorted)), m);

  // Pretty: one entry per line, so the lines are a permutation of the sorted ones.
  auto lines = [](const std::string& s) {
    std::multiset<std::string> out;
    std::istringstream in(s);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == ',') line.pop_back();
      out.insert(line);
    }
    return out;
  };
  EXPECT_EQ(lines(safemap::to_json(m, {.sort_keys = false, .pretty = true})),
            lines(safemap::to_json(m, {.pretty = true})));
}

// ---- write_json outputs -------------------------------------------------------------------

struct append_only_out {
  std::string text;
  int appends = 0;
  void append(const char* b, const char* e) {
    text.append(b, e);
    ++appends;
  }
};

TEST(JsonGolden, WriteJsonAppendsToStringsBuffersAndAnyAppendTarget) {
  Map<std::string, int> m;
  m.insert_or_assign("a", 1);
  m.insert_or_assign("b", 2);
  std::string s = "prefix:";
  safemap::write_json(m, s);
  EXPECT_EQ(s, R"(prefix:{"a":1,"b":2})");

  fmt::memory_buffer buf;
  buf.append(std::string_view("x="));
  safemap::write_json(m, buf, {.pretty = true});
  EXPECT_EQ(fmt::to_string(buf), "x={\n  \"a\": 1,\n  \"b\": 2\n}");

  append_only_out out;
  safemap::write_json(m, out);
  EXPECT_EQ(out.text, R"({"a":1,"b":2})");
  EXPECT_GT(out.appends, 0);
}

// ---- {fmt} --------------------------------------------------------------------------------

TEST(JsonFormatter, BracesGiveGoTextAndJGivesJson) {
  Map<std::string, int> m;
  m.insert_or_assign("b", 2);
  m.insert_or_assign("a", 1);
  EXPECT_EQ(fmt::format("{}", m), "map[a:1 b:2]");
  EXPECT_EQ(fmt::format("{}", m), safemap::to_string(m));
  EXPECT_EQ(fmt::format("{:j}", m), R"({"a":1,"b":2})");
  EXPECT_EQ(fmt::format("{:j}", m), safemap::to_json(m));
  EXPECT_EQ(fmt::format("{} {:j}", m, m), R"(map[a:1 b:2] {"a":1,"b":2})");

  Map<int, double> d;
  d.insert_or_assign(1, 1e6);
  d.insert_or_assign(2, 0.0001);
  EXPECT_EQ(fmt::format("{}", d), "map[1:1e+06 2:0.0001]");
  EXPECT_EQ(fmt::format("{:j}", d), R"({"1":1e+06,"2":1e-04})");

  Map<std::string, point> p;
  p.insert_or_assign("p", point{1, 2.5, "x"});
  EXPECT_EQ(fmt::format("{}", p), "map[p:{1 2.5 x}]");
}

TEST(JsonFormatter, InvalidSpecThrowsFormatError) {
  Map<int, int> m;
  m.insert_or_assign(1, 1);
  EXPECT_THROW((void)fmt::format(fmt::runtime("{:x}"), m), fmt::format_error);
  EXPECT_THROW((void)fmt::format(fmt::runtime("{:jj}"), m), fmt::format_error);
  EXPECT_THROW((void)fmt::format(fmt::runtime("{:>10}"), m), fmt::format_error);
  EXPECT_EQ(fmt::format(fmt::runtime("{:j}"), m), R"({"1":1})");
}

TEST(JsonFormatter, NaNInJsonFormatThrowsJsonError) {
  Map<int, double> m;
  m.insert_or_assign(1, std::nan(""));
  EXPECT_THROW((void)fmt::format("{:j}", m), safemap::json_error);
  EXPECT_EQ(fmt::format("{}", m), "map[1:NaN]");
}

TEST(JsonFormatter, RangesHeaderDoesNotMakeMapFormattingAmbiguous) {
  // <fmt/ranges.h> is included above: a Map is a range (begin/end) and also has its own
  // formatter; the Go text must win, and containers of maps format through it.
  Map<int, int> m;
  m.insert_or_assign(2, 20);
  m.insert_or_assign(1, 10);
  EXPECT_EQ(fmt::format("{}", m), "map[1:10 2:20]");
  std::vector<Map<int, int>> v{m, Map<int, int>{}};
  EXPECT_EQ(fmt::format("{}", v), "[map[1:10 2:20], map[]]");
  fmt::memory_buffer buf;
  fmt::format_to(std::back_inserter(buf), "{:j}", m);
  EXPECT_EQ(fmt::to_string(buf), R"({"1":10,"2":20})");
}

}  // namespace
