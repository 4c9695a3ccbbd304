// safemap/detail/json_write.hpp - the JSON and Go-text writers behind safemap/json.hpp.
//
// One writer class per syntax over any output with append(const char*, const char*)
// (std::string, fmt::memory_buffer, fmt's appender adaptor, user types). Numbers go through
// std::to_chars into a stack buffer; strings are escaped per RFC 8259 in runs (one append per
// run of plain bytes) with invalid UTF-8 replaced by U+FFFD. Sorting keys needs scratch space:
// a per-thread stack of vectors, one per nesting depth, kept between calls, so a second call on
// the same thread allocates nothing.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "safemap/json_fwd.hpp"

namespace safemap::detail::json {

// ---- type classification ---------------------------------------------------------------------

template <class T>
inline constexpr bool is_optional = false;
template <class T>
inline constexpr bool is_optional<std::optional<T>> = true;

template <class T>
inline constexpr bool is_vector = false;
template <class T, class A>
inline constexpr bool is_vector<std::vector<T, A>> = true;

template <class T>
concept string_value = std::same_as<T, std::string> || std::same_as<T, std::string_view> ||
    std::same_as<T, const char*>;

template <class T>
concept integer_value = std::integral<T> && !std::same_as<T, bool>;

template <class T>
concept has_fields = requires {
  json_traits<T>::fields;
};

// A safemap map of any strategy: Map (for_each) or a concurrent map (read_view).
template <class M>
concept map_like = requires {
  typename M::key_type;
  typename M::mapped_type;
}
&&(
    requires(const M& m) { m.read_view([](auto&&) {}); } ||
    requires(const M& m) { m.for_each([](const auto&, const auto&) {}); });

template <class K>
concept json_key = string_value<K> || std::integral<K>;

// Calls body(walk) where walk(g) calls g(const K&, const V&) for every entry of m, and every
// reference stays valid until body returns: the consistent view docs/design.md §4 promises for m's
// strategy (Map: itself; concurrent maps: read_view holds the lock or read-side section).
template <class M, class Body>
void with_view(const M& m, Body&& body) {
  if constexpr (requires { m.read_view(body); }) {
    m.read_view(body);
  } else {
    body([&m](auto&& g) { m.for_each([&g](const auto& k, const auto& v) { g(k, v); }); });
  }
}

// Key order for sort_keys: integers numerically, strings bytewise, false < true (Go's fmt).
template <class K>
bool key_less(const K& a, const K& b) {
  if constexpr (string_value<K>) {
    return std::string_view(a) < std::string_view(b);
  } else {
    return a < b;
  }
}

// An order-preserving 64-bit prefix of a key: the whole key for integers and bool (sign bit
// flipped for signed types), the first 8 bytes big-endian (zero-padded) for strings. Sorting
// compares these inline and follows the key pointer only on a tie (strings with a common
// 8-byte prefix), so sorting a million keys does not chase a million pointers per pass.
template <class K>
std::uint64_t sort_prefix(const K& k) noexcept {
  if constexpr (string_value<K>) {
    const std::string_view sv(k);
    std::uint64_t p = 0;
    const std::size_t n = sv.size() < 8 ? sv.size() : 8;
    for (std::size_t i = 0; i < n; ++i) {
      p |= static_cast<std::uint64_t>(static_cast<unsigned char>(sv[i])) << (56 - 8 * i);
    }
    return p;
  } else if constexpr (std::is_signed_v<K>) {
    return static_cast<std::uint64_t>(static_cast<std::int64_t>(k)) ^ (std::uint64_t{1} << 63);
  } else {
    return static_cast<std::uint64_t>(k);
  }
}

struct sort_entry {
  std::uint64_t prefix;
  const void* key;
  const void* value;
};

// Per-thread scratch for sorting: one vector per nesting depth. A deque, so growing it for a
// deeper level (while a shallower level's vector is being walked) never moves the vectors
// already handed out.
using entry_ptrs = std::vector<sort_entry>;
inline entry_ptrs& scratch(std::size_t depth) {
  thread_local std::deque<entry_ptrs> stack;
  if (stack.size() <= depth) stack.resize(depth + 1);
  return stack[depth];
}

// Sorted walk over a view: collects (prefix, key*, value*), sorts, calls g in key order.
template <class K, class V, class Walk, class G>
void sorted_walk(std::size_t depth, Walk& walk, G&& g) {
  entry_ptrs& s = scratch(depth);
  s.clear();
  walk([&s](const K& k, const V& v) { s.push_back({sort_prefix(k), &k, &v}); });
  std::sort(s.begin(), s.end(), [](const sort_entry& a, const sort_entry& b) {
    if (a.prefix != b.prefix) return a.prefix < b.prefix;
    if constexpr (string_value<K>) {
      return key_less(*static_cast<const K*>(a.key), *static_cast<const K*>(b.key));
    } else {
      return false;  // the prefix is the whole key
    }
  });
  for (const auto& e : s) g(*static_cast<const K*>(e.key), *static_cast<const V*>(e.value));
  s.clear();
}

// ---- UTF-8 -----------------------------------------------------------------------------------

// Length of the valid UTF-8 sequence starting at p (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF), or 0 if the bytes there are not one.
inline std::size_t utf8_sequence_length(const unsigned char* p, const unsigned char* end) noexcept {
  const unsigned char c = p[0];
  const std::size_t avail = static_cast<std::size_t>(end - p);
  auto cont = [&](std::size_t i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return i < avail && p[i] >= lo && p[i] <= hi;
  };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// ---- output ----------------------------------------------------------------------------------

template <class Out>
class sink {
 public:
  explicit sink(Out& out) noexcept : out_(out) {}
  void append(const char* b, const char* e) {
    out_.append(b, e);
    written_ += static_cast<std::size_t>(e - b);
  }
  void append(std::string_view s) { append(s.data(), s.data() + s.size()); }
  // push_back where the output has it: one byte needs no range append (and GCC 12 at -O3
  // raises a false -Wrestrict, bug 105651, on std::string::append(&c, &c + 1)).
  void put(char c) {
    if constexpr (requires { out_.push_back(c); }) {
      out_.push_back(c);
      ++written_;
    } else {
      append(&c, &c + 1);
    }
  }
  std::size_t written() const noexcept { return written_; }

 private:
  Out& out_;
  std::size_t written_ = 0;
};

template <class Out, class T>
void write_integer(sink<Out>& out, T v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Shortest round-trip form (std::to_chars without a format), e.g. 0.1, 1e+300, 5.
template <class Out, class T>
void write_float_json(sink<Out>& out, T v) {
  if (!std::isfinite(v)) {
    throw json_error(out.written(),
                     std::isnan(v)
                         ? "cannot write NaN as JSON (no JSON number represents it)"
                         : "cannot write an infinity as JSON (no JSON number represents it)");
  }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// Go's %v for floats: strconv.FormatFloat(f, 'g', -1, bits): shortest digits, %e form when the
// exponent is < -4 or >= 6 (strconv uses eprec = 6 for the shortest 'g'), exponent with a sign
// and at least two digits: 1e+06, 1.5e-05, 123456, 0.0001, +Inf, NaN.
template <class Out, class T>
void write_float_go(sink<Out>& out, T v) {
  if (std::isnan(v)) return out.append("NaN");
  if (std::isinf(v)) return out.append(v > 0 ? "+Inf" : "-Inf");
  char sci[64];
  const auto r = std::to_chars(sci, sci + sizeof sci, v, std::chars_format::scientific);
  // sci = [-]d[.ddd]e[+-]XX
  const char* p = sci;
  const char* end = r.ptr;
  const bool neg = *p == '-';
  if (neg) ++p;
  const char* e = std::find(p, end, 'e');
  char digits[40];
  std::size_t nd = 0;
  for (const char* q = p; q < e; ++q) {
    if (*q != '.') digits[nd++] = *q;
  }
  int exp = 0;
  std::from_chars(e + 1 + (e[1] == '+' ? 1 : 0), end, exp);
  std::string_view ds(digits, nd);
  char buf[96];
  std::size_t n = 0;
  auto put = [&](char c) { buf[n++] = c; };
  if (neg) put('-');
  if (exp < -4 || exp >= 6) {
    put(ds[0]);
    if (nd > 1) {
      put('.');
      for (std::size_t i = 1; i < nd; ++i) put(ds[i]);
    }
    put('e');
    put(exp < 0 ? '-' : '+');
    const int ae = exp < 0 ? -exp : exp;
    if (ae < 10) put('0');
    const auto er = std::to_chars(buf + n, buf + sizeof buf, ae);
    n = static_cast<std::size_t>(er.ptr - buf);
  } else if (exp < 0) {
    put('0');
    put('.');
    for (int i = -1; i > exp; --i) put('0');
    for (char c : ds) put(c);
  } else {
    const std::size_t int_digits = static_cast<std::size_t>(exp) + 1;
    for (std::size_t i = 0; i < int_digits; ++i) put(i < nd ? ds[i] : '0');
    if (nd > int_digits) {
      put('.');
      for (std::size_t i = int_digits; i < nd; ++i) put(ds[i]);
    }
  }
  out.append(buf, buf + n);
}

// RFC 8259 string: escapes '"', '\\' and control characters, keeps valid UTF-8 as is,
// replaces each byte of an invalid sequence with U+FFFD.
template <class Out>
void write_json_string(sink<Out>& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.put('"');
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* const end = p + s.size();
  const auto* run = p;
  auto flush = [&] {
    if (run != p) out.append(reinterpret_cast<const char*>(run), reinterpret_cast<const char*>(p));
  };
  while (p < end) {
    const unsigned char c = *p;
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++p;
      continue;
    }
    if (c >= 0x80) {
      if (const std::size_t n = utf8_sequence_length(p, end)) {
        p += n;
        continue;
      }
      flush();
      out.append("\xEF\xBF\xBD");
      run = ++p;
      continue;
    }
    flush();
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default: {
        const char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        out.append(u, u + 6);
      }
    }
    run = ++p;
  }
  flush();
  out.put('"');
}

// ---- JSON ------------------------------------------------------------------------------------

template <class Out>
class json_writer {
 public:
  json_writer(Out& out, const json_options& opt) : out_(out), opt_(opt) {}

  // Writes a top-level map; returns its number of entries.
  template <class M>
  std::size_t write_map(const M& m, std::size_t depth = 0) {
    using K = typename M::key_type;
    using V = typename M::mapped_type;
    std::size_t count = 0;
    out_.put('{');
    with_view(m, [&](auto&& walk) {
      auto emit = [&](const K& k, const V& v) {
        if (count++ != 0) out_.put(',');
        newline(depth + 1);
        write_key(k);
        out_.put(':');
        if (opt_.pretty) out_.put(' ');
        value(v, depth + 1);
      };
      if (opt_.sort_keys) {
        sorted_walk<K, V>(depth, walk, emit);
      } else {
        walk(emit);
      }
    });
    if (count != 0) newline(depth);
    out_.put('}');
    return count;
  }

  // JSON for one value (public so json_traits<T>::write can call it for members).
  template <class T>
  void value(const T& v, std::size_t depth = 0) {
    if constexpr (std::same_as<T, bool>) {
      out_.append(v ? "true" : "false");
    } else if constexpr (integer_value<T>) {
      write_integer(out_, v);
    } else if constexpr (std::floating_point<T>) {
      write_float_json(out_, v);
    } else if constexpr (string_value<T>) {
      write_json_string(out_, std::string_view(v));
    } else if constexpr (is_optional<T>) {
      if (v) {
        value(*v, depth);
      } else {
        out_.append("null");
      }
    } else if constexpr (is_vector<T>) {
      out_.put('[');
      bool first = true;
      for (const auto& e : v) {
        if (!first) out_.put(',');
        first = false;
        newline(depth + 1);
        value(e, depth + 1);
      }
      if (!first) newline(depth);
      out_.put(']');
    } else if constexpr (map_like<T>) {
      write_map(v, depth);
    } else if constexpr (has_fields<T>) {
      out_.put('{');
      bool first = true;
      std::apply(
          [&](const auto&... f) { ((write_field(first, f.name, v.*(f.member), depth)), ...); },
          json_traits<T>::fields);
      if (!first) newline(depth);
      out_.put('}');
    } else {
      static_assert(
          sizeof(T) == 0,
          "safemap JSON: no mapping for this value type; specialize safemap::json_traits<T> "
          "(see README: 'Your own types')");
    }
  }

 private:
  template <class F>
  void write_field(bool& first, const char* name, const F& field, std::size_t depth) {
    if (!first) out_.put(',');
    first = false;
    newline(depth + 1);
    write_json_string(out_, name);
    out_.put(':');
    if (opt_.pretty) out_.put(' ');
    value(field, depth + 1);
  }

  template <class K>
  void write_key(const K& k) {
    if constexpr (string_value<K>) {
      write_json_string(out_, std::string_view(k));
    } else if constexpr (std::same_as<K, bool>) {
      out_.append(k ? "\"true\"" : "\"false\"");
    } else if constexpr (std::integral<K>) {
      out_.put('"');
      write_integer(out_, k);
      out_.put('"');
    } else {
      static_assert(sizeof(K) == 0, "safemap JSON: keys must be strings, integers or bool");
    }
  }

  void newline(std::size_t depth) {
    if (!opt_.pretty) return;
    out_.put('\n');
    static constexpr char spaces[] = "                                ";
    std::size_t n = depth * static_cast<std::size_t>(opt_.indent < 0 ? 0 : opt_.indent);
    while (n > 0) {
      const std::size_t k = std::min(n, sizeof spaces - 1);
      out_.append(spaces, spaces + k);
      n -= k;
    }
  }

  sink<Out> out_;
  const json_options& opt_;
};

// ---- Go text (%v) ----------------------------------------------------------------------------

template <class Out>
class go_writer {
 public:
  explicit go_writer(Out& out) : out_(out) {}

  template <class M>
  void write_map(const M& m, std::size_t depth = 0) {
    using K = typename M::key_type;
    using V = typename M::mapped_type;
    out_.append("map[");
    bool first = true;
    with_view(m, [&](auto&& walk) {
      sorted_walk<K, V>(depth, walk, [&](const K& k, const V& v) {
        if (!first) out_.put(' ');
        first = false;
        value(k, depth + 1);
        out_.put(':');
        value(v, depth + 1);
      });
    });
    out_.put(']');
  }

  template <class T>
  void value(const T& v, std::size_t depth = 0) {
    if constexpr (std::same_as<T, bool>) {
      out_.append(v ? "true" : "false");
    } else if constexpr (integer_value<T>) {
      write_integer(out_, v);
    } else if constexpr (std::floating_point<T>) {
      write_float_go(out_, v);
    } else if constexpr (string_value<T>) {
      out_.append(std::string_view(v));
    } else if constexpr (is_optional<T>) {
      if (v) {
        value(*v, depth);
      } else {
        out_.append("<nil>");
      }
    } else if constexpr (is_vector<T>) {
      out_.put('[');
      bool first = true;
      for (const auto& e : v) {
        if (!first) out_.put(' ');
        first = false;
        value(e, depth + 1);
      }
      out_.put(']');
    } else if constexpr (map_like<T>) {
      write_map(v, depth);
    } else if constexpr (has_fields<T>) {
      // Go prints a struct as {field1 field2 ...}.
      out_.put('{');
      bool first = true;
      std::apply(
          [&](const auto&... f) {
            ((first ? void(first = false) : out_.put(' '), value(v.*(f.member), depth + 1)), ...);
          },
          json_traits<T>::fields);
      out_.put('}');
    } else {
      static_assert(
          sizeof(T) == 0,
          "safemap Go text: no mapping for this value type; give it json_traits<T>::fields");
    }
  }

 private:
  sink<Out> out_;
};

// Adapts an output iterator (fmt's format context) to append(const char*, const char*).
template <class It>
struct iterator_out {
  It it;
  void append(const char* b, const char* e) { it = std::copy(b, e, it); }
};

}  // namespace safemap::detail::json
