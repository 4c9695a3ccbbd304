// safemap/json_fwd.hpp - the types of safemap's JSON API without the writers and the parser:
// json_options, json_error, and the customization point json_traits<T> for user types.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include "safemap/version.hpp"

namespace safemap {

// How to_json/write_json lay out their output.
struct json_options {
  bool sort_keys = true;  // integer keys numerically, strings bytewise (Go's fmt order)
  bool pretty = false;    // newlines and indentation
  int indent = 2;         // spaces per level when pretty
};

// Bad JSON input (or a value JSON cannot represent, such as NaN). offset() is the byte offset
// of the problem in the input (for writers: in the output), what() says what was expected.
class json_error : public std::runtime_error {
 public:
  json_error(std::size_t offset, const std::string& what)
      : std::runtime_error(what), offset_(offset) {}
  std::size_t offset() const noexcept { return offset_; }

 private:
  std::size_t offset_;
};

// The one customization point for user types. Specialize it with a tuple of fields:
//
//   struct point { int x; double y; std::string label; };
//   template <> struct safemap::json_traits<point> {
//     static constexpr auto fields = std::make_tuple(safemap::json_field("x", &point::x),
//                                                    safemap::json_field("y", &point::y),
//                                                    safemap::json_field("label", &point::label));
//   };
//
// JSON then writes {"x":1,"y":2.5,"label":"a"} (fields in declaration order), Go text writes
// {1 2.5 a}, and parsing requires exactly those fields, each once, in any order (T must be
// default-constructible). Field types may be anything safemap serializes, nested user types
// included.
template <class T>
struct json_traits;

template <class T, class M>
struct json_field_t {
  const char* name;
  M T::*member;
};

template <class T, class M>
constexpr json_field_t<T, M> json_field(const char* name, M T::*member) noexcept {
  return {name, member};
}

}  // namespace safemap
