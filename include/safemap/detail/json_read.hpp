// safemap/detail/json_read.hpp - the strict JSON parser behind from_json/merge_json.
//
// Why hand-written rather than simdjson: safemap parses straight into typed targets (the map's
// K and V) and must report every error with its exact byte offset and what was expected there
// ("expected ',' or '}' after an object member, found ']'"). simdjson's DOM API reports error
// codes without a location, and its On-Demand API skips validation of values it is not asked
// for, so strictness (trailing commas, garbage, duplicate keys, ranges per target type) would
// need a second pass anyway. This parser is one pass, RFC 8259 strict, recursion-depth
// limited, allocation-light (a reused scratch string for keys), and fuzzed with libFuzzer
// (tests/fuzz).
#pragma once

#include <algorithm>
#include <charconv>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "safemap/detail/json_write.hpp"
#include "safemap/json_fwd.hpp"

namespace safemap::detail::json {

inline constexpr std::size_t max_depth = 256;

template <class T>
constexpr std::string_view type_name() {
  if constexpr (std::same_as<T, bool>) {
    return "bool";
  } else if constexpr (std::integral<T>) {
    if constexpr (std::is_signed_v<T>) {
      if constexpr (sizeof(T) == 1) return "int8";
      if constexpr (sizeof(T) == 2) return "int16";
      if constexpr (sizeof(T) == 4) return "int32";
      return "int64";
    } else {
      if constexpr (sizeof(T) == 1) return "uint8";
      if constexpr (sizeof(T) == 2) return "uint16";
      if constexpr (sizeof(T) == 4) return "uint32";
      return "uint64";
    }
  } else if constexpr (std::same_as<T, float>) {
    return "float";
  } else {
    return "double";
  }
}

// A map type the parser can fill: safemap::Map (try_emplace + contains).
template <class M>
concept fillable_map = requires(M& m, typename M::key_type k) {
  m.try_emplace(std::move(k));
  m.contains(k);
};

class reader {
 public:
  explicit reader(std::string_view in) noexcept
      : b_(in.data()), p_(in.data()), e_(in.data() + in.size()) {}

  std::size_t offset() const noexcept { return static_cast<std::size_t>(p_ - b_); }

  // Throws json_error at `at`: "JSON error at byte N: expected <what>, found <thing>"; <thing>
  // is `found` when given, else a description of the byte at `at`.
  [[noreturn]] void fail_at(const char* at, std::string_view expected,
                            std::string_view found = {}) const {
    const auto off = static_cast<std::size_t>(at - b_);
    std::string msg = "JSON error at byte " + std::to_string(off) + ": expected ";
    msg.append(expected);
    msg += ", found ";
    if (!found.empty()) {
      msg.append(found);
    } else if (at >= e_) {
      msg += "end of input";
    } else {
      const auto c = static_cast<unsigned char>(*at);
      if (c >= 0x20 && c < 0x7f) {
        msg += '\'';
        msg += static_cast<char>(c);
        msg += '\'';
      } else {
        static constexpr char hex[] = "0123456789abcdef";
        msg += "byte 0x";
        msg += hex[c >> 4];
        msg += hex[c & 15];
      }
    }
    throw json_error(off, msg);
  }
  [[noreturn]] void fail(std::string_view expected) const { fail_at(p_, expected); }

  void ws() noexcept {
    while (p_ < e_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool consume(char c) noexcept {
    if (p_ < e_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool next_is(char c) const noexcept { return p_ < e_ && *p_ == c; }

  // After the top-level value: only whitespace may follow.
  void finish() {
    ws();
    if (p_ != e_) fail("end of input after the top-level object");
  }

  // ---- top level and objects -----------------------------------------------------------------

  // Parses an object into an empty Map; duplicate keys are an error (reported at the key).
  template <class M>
  void read_map(M& m, std::size_t depth) {
    using K = typename M::key_type;
    if (depth > max_depth) fail("at most 256 levels of nesting");
    ws();
    if (!consume('{')) fail(depth == 0 ? "'{' (the top level must be a JSON object)" : "'{'");
    ws();
    if (consume('}')) return;
    std::string key;
    for (;;) {
      ws();
      const char* key_at = p_;
      if (!next_is('"')) {
        fail(next_is('}') ? "a string key (trailing commas are not allowed)" : "a string key");
      }
      read_string(key);
      K k = parse_key<K>(key, key_at);
      if (m.contains(k)) {
        fail_at(key_at, "each key at most once", "duplicate key \"" + key_text(key_at) + "\"");
      }
      ws();
      if (!consume(':')) fail("':' after the object key");
      auto* v = m.try_emplace(std::move(k)).first;
      read_value(*v, depth + 1);
      ws();
      if (consume(',')) continue;
      if (consume('}')) return;
      fail("',' or '}' after an object member");
    }
  }

  // ---- values ----------------------------------------------------------------------------------

  template <class T>
  void read_value(T& out, std::size_t depth) {
    ws();
    if constexpr (std::same_as<T, bool>) {
      out = read_bool();
    } else if constexpr (integer_value<T>) {
      out = read_integer<T>();
    } else if constexpr (std::floating_point<T>) {
      out = read_float<T>();
    } else if constexpr (std::same_as<T, std::string>) {
      if (!next_is('"')) fail("a string");
      read_string(out);
    } else if constexpr (is_optional<T>) {
      if (next_is('n')) {
        read_literal("null");
        out.reset();
      } else {
        read_value(out.emplace(), depth);
      }
    } else if constexpr (is_vector<T>) {
      read_array(out, depth);
    } else if constexpr (fillable_map<T>) {
      T fresh;
      read_map(fresh, depth);
      out = std::move(fresh);
    } else if constexpr (has_fields<T>) {
      read_fields(out, depth);
    } else {
      static_assert(sizeof(T) == 0,
                    "safemap JSON: cannot parse into this type (std::string_view and const char* "
                    "values have no storage; use std::string, or specialize json_traits<T>)");
    }
  }

  // JSON string at the cursor, unescaped, validated as UTF-8.
  void read_string(std::string& out) {
    if (!consume('"')) fail("'\"'");
    out.clear();
    for (;;) {
      const char* run = p_;
      while (p_ < e_) {
        const auto c = static_cast<unsigned char>(*p_);
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++p_;
      }
      out.append(run, p_);
      if (p_ == e_) fail("'\"' to close the string (unterminated string)");
      const auto c = static_cast<unsigned char>(*p_);
      if (c == '"') {
        ++p_;
        return;
      }
      if (c == '\\') {
        read_escape(out);
      } else if (c < 0x20) {
        fail("a string character (control characters must be escaped)");
      } else {
        const auto* u = reinterpret_cast<const unsigned char*>(p_);
        const std::size_t n = utf8_sequence_length(u, reinterpret_cast<const unsigned char*>(e_));
        if (n == 0) fail("valid UTF-8 in the string");
        out.append(p_, p_ + n);
        p_ += n;
      }
    }
  }

  bool read_bool() {
    if (next_is('t')) {
      read_literal("true");
      return true;
    }
    if (next_is('f')) {
      read_literal("false");
      return false;
    }
    fail("true or false");
  }

  template <class T>
  T read_integer() {
    const char* start = p_;
    const std::string_view tok = scan_number("an integer");
    if (tok.find_first_of(".eE") != std::string_view::npos) {
      fail_at(start, "an integer (" + std::string(type_name<T>()) + ")");
    }
    T v{};
    const auto r = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (r.ec != std::errc() || r.ptr != tok.data() + tok.size()) {
      fail_at(start, "an integer in range for " + std::string(type_name<T>()) + " [" +
                         std::to_string(std::numeric_limits<T>::min()) + ", " +
                         std::to_string(std::numeric_limits<T>::max()) + "]");
    }
    return v;
  }

  template <class T>
  T read_float() {
    const char* start = p_;
    const std::string_view tok = scan_number("a number");
    T v{};
    const auto r = std::from_chars(tok.data(), tok.data() + tok.size(), v);
    if (r.ptr != tok.data() + tok.size()) fail_at(start, "a number");
    if (r.ec == std::errc::result_out_of_range && below_one(tok)) {
      // Underflow (1e-400; 1e-46 for float): from_chars reports it like an overflow, but the
      // value is zero to the type's precision, and Go's strconv.ParseFloat reads it as 0.
      // The sign is kept (-1e-400 is -0), as IEEE rounding would.
      return tok.front() == '-' ? -T(0) : T(0);
    }
    if (r.ec != std::errc()) {
      fail_at(start, "a number in range for " + std::string(type_name<T>()));
    }
    return v;
  }

 private:
  void read_literal(std::string_view lit) {
    if (static_cast<std::size_t>(e_ - p_) < lit.size() || std::string_view(p_, lit.size()) != lit) {
      fail(std::string(lit).insert(0, 1, '\'').append("'"));
    }
    p_ += lit.size();
  }

  // Scans the JSON number grammar -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? and returns it.
  std::string_view scan_number(std::string_view what) {
    const char* start = p_;
    auto digit = [&] { return p_ < e_ && *p_ >= '0' && *p_ <= '9'; };
    consume('-');
    if (!digit()) fail(what);
    if (*p_ == '0') {
      ++p_;
      if (digit()) fail("no leading zeros in a number");
    } else {
      while (digit()) ++p_;
    }
    if (consume('.')) {
      if (!digit()) fail("a digit after the decimal point");
      while (digit()) ++p_;
    }
    if (consume('e') || consume('E')) {
      if (!consume('+')) consume('-');
      if (!digit()) fail("a digit in the exponent");
      while (digit()) ++p_;
    }
    return {start, static_cast<std::size_t>(p_ - start)};
  }

  // Whether a token of the JSON number grammar has magnitude below 1 (zero included): its
  // first significant digit stands at a negative power of ten. The exponent saturates, so a
  // thousand-digit exponent cannot overflow the arithmetic.
  static bool below_one(std::string_view tok) {
    const auto digit = [&](std::size_t i) {
      return i < tok.size() && tok[i] >= '0' && tok[i] <= '9';
    };
    std::size_t i = tok.front() == '-' ? 1 : 0;
    const std::size_t int_begin = i;
    while (digit(i)) ++i;
    long long lead = 0;  // power of ten of the first nonzero digit
    bool nonzero = false;
    if (tok[int_begin] != '0') {  // the grammar allows no leading zeros
      lead = static_cast<long long>(i - int_begin) - 1;
      nonzero = true;
    }
    if (i < tok.size() && tok[i] == '.') {
      for (long long power = -1; digit(++i); --power) {
        if (!nonzero && tok[i] != '0') {
          lead = power;
          nonzero = true;
        }
      }
    }
    if (!nonzero) return true;
    long long exp = 0;
    if (i < tok.size()) {  // 'e' or 'E', an optional sign, digits
      ++i;
      const bool negative = tok[i] == '-';
      if (tok[i] == '-' || tok[i] == '+') ++i;
      for (; digit(i); ++i) exp = std::min(exp * 10 + (tok[i] - '0'), 1'000'000'000LL);
      if (negative) exp = -exp;
    }
    return lead + exp < 0;
  }

  unsigned read_hex4() {
    unsigned v = 0;
    for (int i = 0; i < 4; ++i) {
      if (p_ == e_) fail("4 hex digits in a \\u escape");
      const char c = *p_;
      unsigned d;
      if (c >= '0' && c <= '9') {
        d = static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        d = static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        d = static_cast<unsigned>(c - 'A' + 10);
      } else {
        fail("4 hex digits in a \\u escape");
      }
      v = v * 16 + d;
      ++p_;
    }
    return v;
  }

  void read_escape(std::string& out) {
    ++p_;  // backslash
    if (p_ == e_) fail("an escape character after '\\'");
    const char c = *p_++;
    switch (c) {
      case '"':
        out += '"';
        return;
      case '\\':
        out += '\\';
        return;
      case '/':
        out += '/';
        return;
      case 'b':
        out += '\b';
        return;
      case 'f':
        out += '\f';
        return;
      case 'n':
        out += '\n';
        return;
      case 'r':
        out += '\r';
        return;
      case 't':
        out += '\t';
        return;
      case 'u':
        break;
      default:
        --p_;
        fail("one of \" \\ / b f n r t u after '\\'");
    }
    const char* at = p_ - 2;
    unsigned cp = read_hex4();
    if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(at, "a \\u escape that is not a lone low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      // A high surrogate without its low half is reported at its own backslash, as a lone
      // low surrogate is: that escape is what cannot be decoded.
      static constexpr const char* lone_high =
          "a \\u escape that is not a lone high surrogate (D800-DBFF must be followed by a "
          "\\u low surrogate, DC00-DFFF)";
      if (e_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') fail_at(at, lone_high);
      p_ += 2;
      const unsigned lo = read_hex4();
      if (lo < 0xDC00 || lo > 0xDFFF) fail_at(at, lone_high);
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    append_utf8(out, cp);
  }

  static void append_utf8(std::string& out, unsigned cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  // Keys arrive as JSON strings; integer and bool keys are decimal / "true" / "false" text.
  template <class K>
  K parse_key(std::string& key, const char* key_at) {
    if constexpr (std::same_as<K, std::string>) {
      return std::move(key);
    } else if constexpr (std::same_as<K, bool>) {
      if (key == "true") return true;
      if (key == "false") return false;
      fail_at(key_at, "a bool key (\"true\" or \"false\")");
    } else if constexpr (std::integral<K>) {
      K v{};
      const char* b = key.data();
      const char* e = b + key.size();
      const bool digits_ok =
          !key.empty() && (key[0] == '-' ? (key.size() > 1 && key[1] != '0') || key == "-0"
                                         : key[0] != '0' || key.size() == 1);
      const auto r = std::from_chars(b, e, v);
      if (!digits_ok || r.ec != std::errc() || r.ptr != e) {
        fail_at(key_at, "an integer key in range for " + std::string(type_name<K>()) +
                            " (a string holding a decimal integer)");
      }
      return v;
    } else {
      static_assert(sizeof(K) == 0, "safemap JSON: keys must be std::string, integers or bool");
    }
  }

  template <class T>
  void read_array(T& out, std::size_t depth) {
    if (depth > max_depth) fail("at most 256 levels of nesting");
    if (!consume('[')) fail("'['");
    T fresh;
    ws();
    if (!consume(']')) {
      for (;;) {
        ws();
        if (next_is(']')) fail("a value (trailing commas are not allowed)");
        read_value(fresh.emplace_back(), depth + 1);
        ws();
        if (consume(',')) continue;
        if (consume(']')) break;
        fail("',' or ']' after an array element");
      }
    }
    out = std::move(fresh);
  }

  template <class T>
  void read_fields(T& out, std::size_t depth) {
    if (depth > max_depth) fail("at most 256 levels of nesting");
    if (!consume('{')) fail("'{'");
    constexpr std::size_t n = std::tuple_size_v<std::decay_t<decltype(json_traits<T>::fields)>>;
    bool seen[n] = {};
    T fresh{};
    std::string key;
    ws();
    const char* close_at = p_;  // the object's '}', where a missing field is reported
    if (!consume('}')) {
      for (;;) {
        ws();
        const char* key_at = p_;
        if (!next_is('"'))
          fail(next_is('}') ? "a string key (trailing commas are not allowed)" : "a string key");
        read_string(key);
        ws();
        if (!consume(':')) fail("':' after the object key");
        bool matched = false;
        std::size_t i = 0;
        auto try_field = [&](const auto& f) {
          const std::size_t index = i++;
          if (matched || key != f.name) return;
          if (seen[index]) fail_at(key_at, "each field at most once in an object");
          seen[index] = true;
          matched = true;
          read_value(fresh.*(f.member), depth + 1);
        };
        std::apply([&](const auto&... f) { (try_field(f), ...); }, json_traits<T>::fields);
        if (!matched) fail_at(key_at, "a known field name");
        ws();
        if (consume(',')) continue;
        close_at = p_;
        if (consume('}')) break;
        fail("',' or '}' after an object member");
      }
    }
    std::size_t i = 0;
    auto check_seen = [&](const auto& f) {
      if (!seen[i++]) {
        fail_at(close_at, std::string("field \"") + f.name + "\" before '}' (it is missing)");
      }
    };
    std::apply([&](const auto&... f) { (check_seen(f), ...); }, json_traits<T>::fields);
    out = std::move(fresh);
  }

  // The raw text of the JSON string starting at `at` (for messages), at most 64 bytes.
  std::string key_text(const char* at) const {
    const char* end = at + 1;
    while (end < e_ && *end != '"') end += (*end == '\\' && end + 1 < e_) ? 2 : 1;
    std::string s(at + 1, end);
    if (s.size() > 64) s.resize(64), s += "...";
    return s;
  }

  const char* b_;
  const char* p_;
  const char* e_;
};

}  // namespace safemap::detail::json
