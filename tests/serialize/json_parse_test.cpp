// tests/serialize/json_parse_test.cpp - from_json and merge_json on good and bad input.
//
// Every bad-input class of json.hpp's "# Parsing" section, each with the exact byte offset of
// the problem and the words what() must use for what was expected there; every rejection is
// checked through merge_json into a non-empty map (which must stay as it was) and through
// from_json (same offset). See serialize_support.hpp: parse_error_at.
//
// Offsets count bytes of the input from 0. Where the specification leaves the choice to the
// implementation, the test documents what safemap does (marked "documented behaviour").
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "safemap/json.hpp"
#include "serialize_support.hpp"

namespace {

using safemap::Map;
using safemap_test::ser::parse_error_at;
using safemap_test::ser::parses_to;
using safemap_test::ser::point;
using safemap_test::ser::segment;
using safemap_test::ser::tree;

using str_int = Map<std::string, int>;
using str_str = Map<std::string, std::string>;
using str_dbl = Map<std::string, double>;

// ---- accepted input -----------------------------------------------------------------------

TEST(JsonParse, AcceptsEveryJsonWhitespaceAndEmptyObjects) {
  str_int expected;
  expected.insert_or_assign("a", 1);
  expected.insert_or_assign("b", -2);
  EXPECT_TRUE(parses_to<str_int>(" \t\r\n{ \t\r\n\"a\" \n: 1 ,\"b\":-2\r\n}\n\t ", expected));
  EXPECT_TRUE(parses_to<str_int>("{}", str_int{}));
  EXPECT_TRUE(parses_to<str_int>(" { } ", str_int{}));
}

TEST(JsonParse, DecodesEveryEscapeAndSurrogatePairs) {
  str_str expected;
  expected.insert_or_assign("k", std::string("\"\\/\b\f\n\r\t") + '\0' +
                                     "\x1f"
                                     "A\xC3\xA9\xE2\x82\xAC"
                                     "\xF0\x9D\x84\x9E\xF4\x8F\xBF\xBF");
  EXPECT_TRUE(parses_to<str_str>(
      R"({"k":"\"\\\/\b\f\n\r\t\u0000\u001f\u0041\u00e9\u20AC\ud834\udd1e\uDBFF\uDFFF"})",
      expected));
}

TEST(JsonParse, KeepsValidUtf8AndDel) {
  str_str expected;
  expected.insert_or_assign("\xC3\xA9", "\x7f\xE2\x82\xAC\xF0\x9D\x84\x9E");
  EXPECT_TRUE(parses_to<str_str>("{\"\xC3\xA9\":\"\x7f\xE2\x82\xAC\xF0\x9D\x84\x9E\"}", expected));
}

TEST(JsonParse, NumbersInEveryJsonFormParseIntoDoubles) {
  str_dbl expected;
  expected.insert_or_assign("a", -0.0);
  expected.insert_or_assign("b", 1.5e-7);
  expected.insert_or_assign("c", 1e300);
  expected.insert_or_assign("d", 5e-324);
  expected.insert_or_assign("e", 100);
  expected.insert_or_assign("f", 0.25);
  EXPECT_TRUE(parses_to<str_dbl>(R"({"a":-0,"b":1.5E-7,"c":1e+300,"d":5e-324,"e":1E2,"f":25e-2})",
                                 expected));
  const auto m = safemap::from_json<str_dbl>(R"({"z":-0.0})");
  EXPECT_TRUE(std::signbit(*m.find("z")));
}

TEST(JsonParse, IntegerExtremesOfEveryWidth) {
  EXPECT_TRUE((parses_to<Map<std::string, std::int8_t>>(R"({"max":127,"min":-128})", [] {
    Map<std::string, std::int8_t> m;
    m.insert_or_assign("max", std::int8_t{127});
    m.insert_or_assign("min", std::int8_t{-128});
    return m;
  }())));
  EXPECT_TRUE(
      (parses_to<Map<std::string, std::uint64_t>>(R"({"max":18446744073709551615,"min":0})", [] {
        Map<std::string, std::uint64_t> m;
        m.insert_or_assign("max", std::numeric_limits<std::uint64_t>::max());
        m.insert_or_assign("min", std::uint64_t{0});
        return m;
      }())));
  EXPECT_TRUE((parses_to<Map<std::string, std::int64_t>>(
      R"({"max":9223372036854775807,"min":-9223372036854775808})", [] {
        Map<std::string, std::int64_t> m;
        m.insert_or_assign("max", std::numeric_limits<std::int64_t>::max());
        m.insert_or_assign("min", std::numeric_limits<std::int64_t>::min());
        return m;
      }())));
}

TEST(JsonParse, IntegerAndBoolKeys) {
  Map<int, int> ints;
  ints.insert_or_assign(-10, 1);
  ints.insert_or_assign(0, 2);
  ints.insert_or_assign(7, 3);
  EXPECT_TRUE((parses_to<Map<int, int>>(R"({"-10":1,"0":2,"7":3})", ints)));

  Map<bool, int> bools;
  bools.insert_or_assign(false, 0);
  bools.insert_or_assign(true, 1);
  EXPECT_TRUE((parses_to<Map<bool, int>>(R"({"true":1,"false":0})", bools)));
}

TEST(JsonParse, IntegerKeysDocumentedBehaviour) {
  // "-0" is accepted as 0 (JSON numbers allow -0), and a key spelled with escapes is read after
  // unescaping: "\u0031" is the key 1.
  Map<int, int> zero;
  zero.insert_or_assign(0, 5);
  EXPECT_TRUE((parses_to<Map<int, int>>(R"({"-0":5})", zero)));
  Map<int, int> one;
  one.insert_or_assign(1, 5);
  EXPECT_TRUE((parses_to<Map<int, int>>(R"({"\u0031":5})", one)));
  // ...so "0" and "-0" are the same key: a duplicate.
  EXPECT_TRUE((parse_error_at<Map<int, int>>(R"({"0":1,"-0":2})", 7, "duplicate key \"-0\"")));
}

TEST(JsonParse, OptionalsVectorsStructsAndNestedMaps) {
  Map<std::string, std::vector<std::optional<int>>> v;
  v.insert_or_assign("a", std::vector<std::optional<int>>{1, std::nullopt, -3});
  v.insert_or_assign("b", std::vector<std::optional<int>>{});
  EXPECT_TRUE(parses_to<decltype(v)>(R"({"a":[1,null,-3],"b":[ ]})", v));

  Map<std::string, segment> s;
  s.insert_or_assign("s", segment{{1, 2.5, "x"}, {0, -1, ""}, "n", {4}});
  // Fields in any order.
  EXPECT_TRUE(parses_to<decltype(s)>(
      R"({"s":{"tags":[4],"note":"n","to":{"label":"","y":-1,"x":0},"from":{"x":1,"y":2.5,"label":"x"}}})",
      s));

  Map<std::string, Map<int, bool>> nested;
  Map<int, bool> inner;
  inner.insert_or_assign(1, true);
  nested.insert_or_assign("o", inner);
  nested.insert_or_assign("e", Map<int, bool>{});
  EXPECT_TRUE(parses_to<decltype(nested)>(R"({"o":{"1":true},"e":{}})", nested));
}

// ---- merge_json ---------------------------------------------------------------------------

TEST(JsonMerge, SuccessOverwritesExistingKeysAndKeepsTheOthers) {
  str_int m;
  m.insert_or_assign("keep", 1);
  m.insert_or_assign("over", 2);
  safemap::merge_json(m, R"({"over":20,"new":30})");
  str_int expected;
  expected.insert_or_assign("keep", 1);
  expected.insert_or_assign("over", 20);
  expected.insert_or_assign("new", 30);
  EXPECT_EQ(m, expected);
  safemap::merge_json(m, "{}");
  EXPECT_EQ(m, expected);
}

TEST(JsonMerge, AKeyAlreadyInTheMapIsNotADuplicate) {
  str_int m;
  m.insert_or_assign("a", 1);
  safemap::merge_json(m, R"({"a":2})");
  EXPECT_EQ(*m.find("a"), 2);
}

TEST(JsonMerge, NestedMapValuesAreReplacedNotMergedDocumentedBehaviour) {
  Map<std::string, Map<std::string, int>> m;
  Map<std::string, int> inner;
  inner.insert_or_assign("x", 1);
  m.insert_or_assign("o", inner);
  safemap::merge_json(m, R"({"o":{"y":2}})");
  ASSERT_NE(m.find("o"), nullptr);
  EXPECT_EQ(m.find("o")->size(), 1u);
  EXPECT_FALSE(m.find("o")->contains("x"));
}

TEST(JsonMerge, FailureAtTheLastEntryLeavesTheMapUnchanged) {
  str_int m;
  for (int i = 0; i < 100; ++i) m.insert_or_assign("k" + std::to_string(i), i);
  const str_int before = m;
  std::string text = "{";
  for (int i = 0; i < 100; ++i)
    text += "\"k" + std::to_string(i) + "\":" + std::to_string(-i) + ",";
  text += "\"new\":1,\"bad\":\"x\"}";
  EXPECT_THROW(safemap::merge_json(m, text), safemap::json_error);
  EXPECT_EQ(m, before);
}

// ---- bad input: structure -----------------------------------------------------------------

TEST(JsonParseErrors, EmptyOrBlankInputExpectsAnObject) {
  EXPECT_TRUE(parse_error_at<str_int>("", 0, "expected '{' (the top level must be a JSON object)"));
  EXPECT_TRUE(parse_error_at<str_int>("   ", 3, "expected '{'"));
  EXPECT_TRUE(parse_error_at<str_int>("", 0, "found end of input"));
}

TEST(JsonParseErrors, NonObjectTopLevelIsRejectedAtItsFirstByte) {
  for (const char* text : {"[]", "1", "null", "true", "\"a\"", "-1", "[{\"a\":1}]"}) {
    EXPECT_TRUE(parse_error_at<str_int>(text, 0, "the top level must be a JSON object")) << text;
  }
  EXPECT_TRUE(parse_error_at<str_int>("\n [", 2, "found '['"));
  // A UTF-8 byte order mark is not JSON whitespace (documented behaviour: rejected).
  EXPECT_TRUE(parse_error_at<str_int>("\xEF\xBB\xBF{}", 0, "found byte 0xef"));
}

TEST(JsonParseErrors, TrailingCommaInObject) {
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1,})", 7, "trailing commas are not allowed"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1, })", 8, "trailing commas are not allowed"));
  EXPECT_TRUE((parse_error_at<Map<std::string, point>>(R"({"p":{"x":1,"y":2,"label":"",}})", 29,
                                                       "trailing commas are not allowed")));
}

TEST(JsonParseErrors, TrailingCommaInArray) {
  using M = Map<std::string, std::vector<int>>;
  EXPECT_TRUE(parse_error_at<M>(R"({"a":[1,]})", 8, "trailing commas are not allowed"));
  EXPECT_TRUE(parse_error_at<M>(R"({"a":[1, ]})", 9, "trailing commas are not allowed"));
  EXPECT_TRUE(parse_error_at<M>(R"({"a":[,]})", 6, "expected an integer"));
}

TEST(JsonParseErrors, TrailingGarbageAfterTheObject) {
  EXPECT_TRUE(parse_error_at<str_int>("{}x", 2, "end of input after the top-level object"));
  EXPECT_TRUE(parse_error_at<str_int>("{} {}", 3, "end of input after the top-level object"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1}})", 7, "end of input after the top-level object"));
  EXPECT_TRUE(parse_error_at<str_int>(std::string("{}\0", 3), 2, "found byte 0x00"));
  EXPECT_TRUE(parses_to<str_int>("{}\n\t ", str_int{}));
}

TEST(JsonParseErrors, MissingSeparators) {
  EXPECT_TRUE(
      parse_error_at<str_int>(R"({"a":1 "b":2})", 7, "expected ',' or '}' after an object member"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a" 1})", 5, "expected ':' after the object key"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({a:1})", 1, "expected a string key"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({1:1})", 1, "expected a string key"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({'a':1})", 1, "expected a string key"));
  EXPECT_TRUE((parse_error_at<Map<std::string, std::vector<int>>>(
      R"({"a":[1 2]})", 8, "expected ',' or ']' after an array element")));
}

TEST(JsonParseErrors, DuplicateKeysAreReportedAtTheSecondKeyByName) {
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1,"a":2})", 7, "duplicate key \"a\""));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1,"b":2, "a":3})", 14, "each key at most once"));
  // The same key spelled differently is still the same key.
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1,"\u0061":2})", 7, "duplicate key \"\\u0061\""));
  EXPECT_TRUE((parse_error_at<Map<int, int>>(R"({"5":1,"5":2})", 7, "duplicate key \"5\"")));
  EXPECT_TRUE(
      (parse_error_at<Map<bool, int>>(R"({"true":1,"true":2})", 10, "duplicate key \"true\"")));
  // Inside a nested map.
  EXPECT_TRUE((parse_error_at<Map<std::string, str_int>>(R"({"o":{"k":1,"k":2}})", 12,
                                                         "duplicate key \"k\"")));
  // A long key is named, shortened.
  const std::string k(100, 'x');
  const std::string text = "{\"" + k + "\":1,\"" + k + "\":2}";
  EXPECT_TRUE(
      parse_error_at<str_int>(text, 106, "duplicate key \"" + std::string(64, 'x') + "..."));
}

TEST(JsonParseErrors, UnterminatedStringObjectAndArray) {
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"abc)", 9, "unterminated string"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"ab)", 4, "unterminated string"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1)", 6, "expected ',' or '}'"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1,)", 7, "expected a string key"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a")", 4, "expected ':'"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":)", 5, "expected an integer, found end of input"));
  EXPECT_TRUE(parse_error_at<str_int>("{", 1, "expected a string key, found end of input"));
  EXPECT_TRUE((parse_error_at<Map<std::string, std::vector<int>>>(R"({"a":[1,2)", 9,
                                                                  "expected ',' or ']'")));
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, std::vector<int>>>(R"({"a":[)", 6, "expected an integer")));
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, point>>(R"({"p":{"x":1)", 11, "expected ',' or '}'")));
}

// ---- bad input: numbers -------------------------------------------------------------------

template <class T>
void expect_out_of_range(const std::string& too_small, const std::string& too_large,
                         const std::string& name) {
  using M = Map<std::string, T>;
  const std::string range = "an integer in range for " + name + " [" +
                            std::to_string(+std::numeric_limits<T>::min()) + ", " +
                            std::to_string(+std::numeric_limits<T>::max()) + "]";
  EXPECT_TRUE(parse_error_at<M>("{\"a\":" + too_small + "}", 5, range)) << name;
  EXPECT_TRUE(parse_error_at<M>("{\"a\":" + too_large + "}", 5, range)) << name;
  EXPECT_TRUE(parse_error_at<M>("{\"a\":1,\"b\":" + too_large + "}", 11, range)) << name;
}

TEST(JsonParseErrors, IntegersOutOfRangeForEachWidth) {
  expect_out_of_range<std::int8_t>("-129", "128", "int8");
  expect_out_of_range<std::uint8_t>("-1", "256", "uint8");
  expect_out_of_range<std::int16_t>("-32769", "32768", "int16");
  expect_out_of_range<std::uint16_t>("-1", "65536", "uint16");
  expect_out_of_range<std::int32_t>("-2147483649", "2147483648", "int32");
  expect_out_of_range<std::uint32_t>("-1", "4294967296", "uint32");
  expect_out_of_range<std::int64_t>("-9223372036854775809", "9223372036854775808", "int64");
  expect_out_of_range<std::uint64_t>("-1", "18446744073709551616", "uint64");
  expect_out_of_range<std::int64_t>("-99999999999999999999999", "99999999999999999999999", "int64");
}

TEST(JsonParseErrors, NegativeZeroForUnsignedDocumentedBehaviour) {
  // "-0" is rejected for unsigned targets (reported as out of range) though it names 0; for
  // signed targets it is 0.
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, unsigned>>(R"({"a":-0})", 5, "in range for uint32")));
  Map<std::string, int> zero;
  zero.insert_or_assign("a", 0);
  EXPECT_TRUE((parses_to<Map<std::string, int>>(R"({"a":-0})", zero)));
}

TEST(JsonParseErrors, FractionsAndExponentsAreNotIntegers) {
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1.5})", 5, "expected an integer (int32)"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1.0})", 5, "expected an integer (int32)"));
  // Documented behaviour: 1e2 is a float literal, not an integer, even though its value is.
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1e2})", 5, "expected an integer (int32)"));
  EXPECT_TRUE((parse_error_at<Map<std::string, std::uint64_t>>(R"({"a":-1E0})", 5,
                                                               "expected an integer (uint64)")));
}

TEST(JsonParseErrors, DoublesOutOfRange) {
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":1e400})", 5, "a number in range for double"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":-1e400})", 5, "a number in range for double"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":123456789e301})", 5, "in range for double"));
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, float>>(R"({"a":1e39})", 5, "a number in range for float")));
  str_dbl tiny;
  tiny.insert_or_assign("a", 5e-324);
  EXPECT_TRUE(parses_to<str_dbl>(R"({"a":4.9406564584124654e-324})", tiny));
}

// Regression (issue 9, item 13): a number that underflows (below the smallest denormal of the
// type) was rejected as "expected a number in range", because from_chars reports underflow
// like overflow. Go's strconv.ParseFloat reads it as 0; so does safemap now, keeping the sign.
TEST(JsonParse, NumbersThatUnderflowReadAsZeroWithTheirSign) {
  struct probe {
    const char* json;
    bool negative;
  };
  for (const probe& p : {probe{R"({"a":1e-400})", false}, probe{R"({"a":-1e-400})", true},
                         probe{R"({"a":2e-324})", false}, probe{R"({"a":0.000001e-320})", false},
                         probe{R"({"a":-123.456e-1000000000000000000000})", true}}) {
    const auto m = safemap::from_json<str_dbl>(p.json);
    ASSERT_NE(m.find("a"), nullptr) << p.json;
    EXPECT_EQ(*m.find("a"), 0.0) << p.json;
    EXPECT_EQ(std::signbit(*m.find("a")), p.negative) << p.json;
  }
  using str_flt = Map<std::string, float>;
  for (const probe& p : {probe{R"({"a":1e-46})", false}, probe{R"({"a":-1e-50})", true},
                         probe{R"({"a":1e-400})", false}}) {
    const auto m = safemap::from_json<str_flt>(p.json);
    ASSERT_NE(m.find("a"), nullptr) << p.json;
    EXPECT_EQ(*m.find("a"), 0.0f) << p.json;
    EXPECT_EQ(std::signbit(*m.find("a")), p.negative) << p.json;
  }
  // The smallest float denormal still parses as itself, not as an underflow.
  const auto f = safemap::from_json<str_flt>(R"({"a":1e-45})");
  EXPECT_GT(*f.find("a"), 0.0f);
}

TEST(JsonParseErrors, LeadingZeros) {
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":01})", 6, "no leading zeros"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":-01})", 7, "no leading zeros"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":00.5})", 6, "no leading zeros"));
  str_dbl ok;
  ok.insert_or_assign("a", 0.5);
  EXPECT_TRUE(parses_to<str_dbl>(R"({"a":0.5})", ok));
}

TEST(JsonParseErrors, IncompleteNumbers) {
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":-})", 6, "expected an integer, found '}'"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":-})", 6, "expected a number, found '}'"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":- 1})", 6, "expected a number"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":1.})", 7, "a digit after the decimal point"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":1.e5})", 7, "a digit after the decimal point"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":1e})", 7, "a digit in the exponent"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":1e+})", 8, "a digit in the exponent"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":1E-})", 8, "a digit in the exponent"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":.5})", 5, "expected a number, found '.'"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":+1})", 5, "expected a number, found '+'"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":NaN})", 5, "expected a number"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":Infinity})", 5, "expected a number"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":0x10})", 6, "expected ',' or '}'"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":1-})", 6, "expected ',' or '}'"));
}

// ---- bad input: types ---------------------------------------------------------------------

TEST(JsonParseErrors, WrongValueTypes) {
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":"1"})", 5, "expected an integer, found '\"'"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":true})", 5, "expected an integer"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":null})", 5, "expected an integer"));
  EXPECT_TRUE(parse_error_at<str_int>(R"({"a":[1]})", 5, "expected an integer"));
  EXPECT_TRUE(parse_error_at<str_dbl>(R"({"a":"1.5"})", 5, "expected a number"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":1})", 5, "expected a string"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":null})", 5, "expected a string"));
  EXPECT_TRUE((parse_error_at<Map<std::string, bool>>(R"({"a":1})", 5, "expected true or false")));
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, bool>>(R"({"a":"true"})", 5, "expected true or false")));
  EXPECT_TRUE((parse_error_at<Map<std::string, bool>>(R"({"a":tru})", 5, "expected 'true'")));
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, bool>>(R"({"a":False})", 5, "expected true or false")));
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, std::optional<int>>>(R"({"a":nul})", 5, "expected 'null'")));
  EXPECT_TRUE((parse_error_at<Map<std::string, std::optional<int>>>(R"({"a":"x"})", 5,
                                                                    "expected an integer")));
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, std::vector<int>>>(R"({"a":{}})", 5, "expected '['")));
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, std::vector<int>>>(R"({"a":1})", 5, "expected '['")));
  EXPECT_TRUE((parse_error_at<Map<std::string, str_int>>(R"({"a":[]})", 5, "expected '{'")));
  EXPECT_TRUE((parse_error_at<Map<std::string, point>>(R"({"a":[]})", 5, "expected '{'")));
  EXPECT_TRUE((parse_error_at<Map<std::string, point>>(R"({"a":{"x":1,"y":"2","label":""}})", 16,
                                                       "expected a number")));
}

// ---- bad input: strings -------------------------------------------------------------------

TEST(JsonParseErrors, InvalidEscapes) {
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\x"})", 7, "one of \" \\ / b f n r t u after '\\'"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\'"})", 7, "one of"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\U0041"})", 7, "one of"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\u12"})", 10, "4 hex digits in a \\u escape"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\u12G4"})", 10, "4 hex digits"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\u)", 8, "4 hex digits"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\)", 7, "an escape character after '\\'"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"\q":"a"})", 3, "one of"));
}

// Regression (issue 9, item 13): a high surrogate without its low half was reported 6 bytes
// after its escape (where the low half should start); it is reported at its own backslash,
// like a lone low surrogate, since that escape is what cannot be decoded.
TEST(JsonParseErrors, LoneSurrogateEscapes) {
  const char* lone_high = "a \\u escape that is not a lone high surrogate";
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\ud800"})", 6, lone_high));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\ud800x"})", 6, lone_high));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\uDBFF\uDBFF"})", 6, lone_high));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\ud800\u0041"})", 6, lone_high));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"xy\ud800"})", 8, lone_high));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"\ud800":"a"})", 2, lone_high));
  // A low surrogate alone: reported at its own backslash.
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"\udc00"})", 6, "not a lone low surrogate"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"a":"x\uDFFF\ud800"})", 7, "not a lone low surrogate"));
  EXPECT_TRUE(parse_error_at<str_str>(R"({"\udc00":"a"})", 2, "not a lone low surrogate"));
}

TEST(JsonParseErrors, RawControlCharactersInStrings) {
  for (int c = 0; c < 0x20; ++c) {
    const std::string text = std::string("{\"a\":\"x") + static_cast<char>(c) + "\"}";
    EXPECT_TRUE(parse_error_at<str_str>(text, 7, "control characters must be escaped")) << c;
  }
  EXPECT_TRUE(parse_error_at<str_str>("{\"a\tb\":\"x\"}", 3, "control characters must be escaped"));
}

TEST(JsonParseErrors, InvalidUtf8InInput) {
  struct bad {
    std::string bytes;
    const char* what;
  };
  const bad cases[] = {
      {"\xFF", "0xFF"},
      {"\x80", "lone continuation"},
      {"\xC0\x80", "overlong NUL"},
      {"\xC1\xBF", "overlong 2-byte"},
      {"\xE0\x80\x80", "overlong 3-byte"},
      {"\xF0\x80\x80\x80", "overlong 4-byte"},
      {"\xED\xA0\x80", "surrogate U+D800 encoded"},
      {"\xED\xBF\xBF", "surrogate U+DFFF encoded"},
      {"\xF4\x90\x80\x80", "above U+10FFFF"},
      {"\xF5\x80\x80\x80", "lead byte F5"},
      {"\xE2\x82\"", "truncated 3-byte before the quote"},
      {"\xF0\x9D\x84\"", "truncated 4-byte before the quote"},
      {"\xC3"
       "A",
       "2-byte lead before ASCII"},
  };
  for (const auto& c : cases) {
    EXPECT_TRUE(
        parse_error_at<str_str>("{\"a\":\"xy" + c.bytes + "\"}", 8, "valid UTF-8 in the string"))
        << c.what;
    EXPECT_TRUE(
        parse_error_at<str_str>("{\"k" + c.bytes + "\":\"\"}", 3, "valid UTF-8 in the string"))
        << c.what << " (in a key)";
  }
  // Truncated at the very end of the input.
  EXPECT_TRUE(parse_error_at<str_str>("{\"a\":\"\xE2\x82", 6, "valid UTF-8"));
  // Outside a string: the byte is simply not what the grammar expects there.
  EXPECT_TRUE(parse_error_at<str_int>("{\"a\":\xFF}", 5, "found byte 0xff"));
}

// ---- bad input: keys ----------------------------------------------------------------------

TEST(JsonParseErrors, BadIntegerKeysAreReportedAtTheKey) {
  const char* bad_keys[] = {"01", "-01", "00", "x", "1.5",  "1e2", "",
                            " 1", "1 ",  "+1", "-", "0x10", "--1", "1_000"};
  for (const char* k : bad_keys) {
    EXPECT_TRUE((parse_error_at<Map<int, int>>(std::string("{\"") + k + "\":1}", 1,
                                               "an integer key in range for int32")))
        << "key \"" << k << "\"";
  }
  EXPECT_TRUE(
      (parse_error_at<Map<int, int>>(R"({"1":1, "2147483648":2})", 8, "in range for int32")));
  EXPECT_TRUE((parse_error_at<Map<std::int8_t, int>>(R"({"128":1})", 1, "in range for int8")));
  EXPECT_TRUE((parse_error_at<Map<std::int8_t, int>>(R"({"-129":1})", 1, "in range for int8")));
  EXPECT_TRUE((parse_error_at<Map<std::uint8_t, int>>(R"({"256":1})", 1, "in range for uint8")));
  EXPECT_TRUE((parse_error_at<Map<std::uint64_t, int>>(R"({"-1":1})", 1, "in range for uint64")));
  EXPECT_TRUE((parse_error_at<Map<std::uint64_t, int>>(R"({"18446744073709551616":1})", 1,
                                                       "in range for uint64")));
  EXPECT_TRUE((parse_error_at<Map<std::int64_t, int>>(R"({"-9223372036854775809":1})", 1,
                                                      "in range for int64")));
}

TEST(JsonParseErrors, BadBoolKeys) {
  for (const char* k : {"True", "FALSE", "1", "0", "", "yes", "true ", "truex"}) {
    EXPECT_TRUE((parse_error_at<Map<bool, int>>(std::string("{\"") + k + "\":1}", 1,
                                                "a bool key (\"true\" or \"false\")")))
        << "key \"" << k << "\"";
  }
}

// ---- bad input: user structs --------------------------------------------------------------

TEST(JsonParseErrors, StructWithUnknownField) {
  EXPECT_TRUE((parse_error_at<Map<std::string, point>>(R"({"p":{"x":1,"z":2,"y":2,"label":""}})",
                                                       12, "expected a known field name")));
  EXPECT_TRUE(
      (parse_error_at<Map<std::string, point>>(R"({"p":{"X":1}})", 6, "a known field name")));
}

TEST(JsonParseErrors, StructWithDuplicateField) {
  EXPECT_TRUE((parse_error_at<Map<std::string, point>>(R"({"p":{"x":1,"x":2,"y":2,"label":""}})",
                                                       12, "each field at most once")));
}

TEST(JsonParseErrors, StructWithMissingFieldNamesTheField) {
  // The missing field is named; where it is reported is checked by
  // JsonParseRegression.MissingStructFieldIsReportedAtTheClosingBrace.
  try {
    (void)safemap::from_json<Map<std::string, point>>(R"({"p":{"x":1,"label":""}})");
    ADD_FAILURE() << "accepted";
  } catch (const safemap::json_error& e) {
    EXPECT_NE(std::string(e.what()).find("field \"y\""), std::string::npos) << e.what();
  }
  Map<std::string, point> m = safemap_test::ser::seeded_target<Map<std::string, point>>();
  const auto before = m;
  EXPECT_THROW(safemap::merge_json(m, R"({"p":{}})"), safemap::json_error);
  EXPECT_EQ(m, before);
}

// ---- bad input: nesting -------------------------------------------------------------------

// Builds {"t": tree tree tree ...} nested `levels` brackets deep in total (the top-level
// object is level 1) and returns the offset of the bracket that opens level `mark` (1-based).
std::string nested_trees(std::size_t levels, std::size_t mark, std::size_t& mark_offset) {
  std::string s = "{\"t\":";
  mark_offset = 0;
  if (mark == 1) mark_offset = 0;
  std::size_t level = 1;
  std::string closers = "}";
  bool object = true;  // the next bracket opens a tree object (then its kids array)
  while (level < levels) {
    ++level;
    if (level == mark) mark_offset = s.size();
    if (object) {
      s += "{\"kids\":";
      closers += '}';
    } else {
      s += '[';
      closers += ']';
    }
    object = !object;
  }
  if (!object) {
    s += "[]";  // a tree object needs its kids
  }
  s.append(closers.rbegin(), closers.rend());
  return s;
}

TEST(JsonParseErrors, NestingDeeperThan256LevelsIsAnErrorNotACrash) {
  using M = Map<std::string, tree>;
  std::size_t at = 0;
  // 257 levels (the top-level object and 256 below it) parse.
  const std::string ok = nested_trees(257, 0, at);
  EXPECT_NO_THROW((void)safemap::from_json<M>(ok));
  // The 258th is refused where it opens.
  const std::string deep = nested_trees(258, 258, at);
  EXPECT_TRUE(parse_error_at<M>(deep, at, "at most 256 levels of nesting"));
  // Far deeper input costs nothing more.
  const std::string very_deep = nested_trees(200000, 258, at);
  EXPECT_TRUE(parse_error_at<M>(very_deep, at, "at most 256 levels of nesting"));
}

TEST(JsonParseErrors, NestingDeeperThan256LevelsInAnArrayIsAnError) {
  // Under a vector<tree> the even levels are arrays, so the 258th level is a '[' (the test
  // above ends on a '{'): both kinds of bracket stop at the limit.
  using M = Map<std::string, std::vector<tree>>;
  auto text = [](std::size_t trees) {
    std::string s = "{\"a\":[";
    for (std::size_t i = 0; i < trees; ++i) s += "{\"kids\":[";
    for (std::size_t i = 0; i < trees; ++i) s += "]}";
    return s + "]}";
  };
  // Level 1 is the top '{' at 0, level 2 the '[' at 5; each tree adds a '{' at +0 and a '['
  // at +8, the levels 2k+1 and 2k+2; so level 258 is the '[' of the 128th tree.
  const std::size_t level_258 = 6 + 127 * 9 + 8;
  EXPECT_NO_THROW((void)safemap::from_json<M>(text(127)));  // 256 levels
  EXPECT_TRUE(parse_error_at<M>(text(128), level_258, "at most 256 levels of nesting"));
  EXPECT_TRUE(parse_error_at<M>(text(5000), level_258, "at most 256 levels of nesting"));
}

}  // namespace
