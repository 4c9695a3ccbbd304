// tests/serialize/fuzz/json_parse_fuzz.cpp - libFuzzer target for safemap's JSON parser.
//
// Each input is parsed with from_json into several target types. Bad input must end in
// safemap::json_error and nothing else: any other exception escapes (libFuzzer reports it),
// and crashes and sanitizer reports are findings. Whatever parses must survive the way back:
// to_json (compact and pretty) re-parses to an equal map and writes the same text again,
// merge_json of the input into an empty map gives the same map, and a merge that fails leaves
// the map it was given unchanged.
//
// Built with clang by scripts/fuzz (-fsanitize=fuzzer,address,undefined, separate CMake
// project in this directory). The same file is linked into serialize_json_test, where
// JsonFuzzReplay runs it over corpus/ and regressions/ with the normal toolchain.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "safemap/json.hpp"

namespace safemap_fuzz {

struct rec {
  int n = 0;
  std::vector<rec> kids;
  bool operator==(const rec&) const = default;
};

}  // namespace safemap_fuzz

template <>
struct safemap::json_traits<safemap_fuzz::rec> {
  static constexpr auto fields =
      std::make_tuple(safemap::json_field("n", &safemap_fuzz::rec::n),
                      safemap::json_field("kids", &safemap_fuzz::rec::kids));
};

namespace safemap_fuzz {

[[noreturn]] void finding(const char* what, std::string_view input, const std::string& detail) {
  std::fprintf(stderr, "json_parse_fuzz finding: %s\ninput (%zu bytes): %.*s\n%s\n", what,
               input.size(), static_cast<int>(input.size()), input.data(), detail.c_str());
  std::abort();
}

template <class M>
void check(std::string_view input) {
  M m;
  try {
    m = safemap::from_json<M>(input);
  } catch (const safemap::json_error& e) {
    if (e.offset() > input.size())
      finding("error offset past the end of the input", input, e.what());
    // A failed merge leaves the map unchanged. (`before` is built rather than copied: one
    // copy of a Map less for the fuzzer to execute.)
    M target;
    M before;
    target.insert_or_assign(typename M::key_type{}, typename M::mapped_type{});
    before.insert_or_assign(typename M::key_type{}, typename M::mapped_type{});
    try {
      safemap::merge_json(target, input);
      finding("merge_json accepted what from_json rejected", input, e.what());
    } catch (const safemap::json_error& e2) {
      if (e2.offset() != e.offset())
        finding("merge_json and from_json disagree on the offset", input, e2.what());
    }
    if (!(target == before)) finding("a failed merge_json changed the map", input, e.what());
    return;
  }
  for (const safemap::json_options opt :
       {safemap::json_options{}, safemap::json_options{.pretty = true}}) {
    const std::string text = safemap::to_json(m, opt);
    M back;
    try {
      back = safemap::from_json<M>(text);
    } catch (const safemap::json_error& e) {
      finding("from_json rejected to_json's output", input, text + "\n" + e.what());
    }
    if (!(back == m)) finding("round trip changed the map", input, text);
    const std::string again = safemap::to_json(back, opt);
    if (again != text) finding("writing the parsed map again differs", input, text + "\n" + again);
  }
  M merged;
  safemap::merge_json(merged, input);
  if (!(merged == m)) finding("merge_json into an empty map differs from from_json", input, "");
  (void)safemap::to_string(m);
}

}  // namespace safemap_fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using safemap::Map;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  safemap_fuzz::check<Map<std::string, std::string>>(input);
  safemap_fuzz::check<Map<std::int64_t, double>>(input);
  safemap_fuzz::check<Map<std::string, std::vector<std::optional<int>>>>(input);
  safemap_fuzz::check<Map<bool, std::optional<std::string>>>(input);
  safemap_fuzz::check<Map<std::uint8_t, float>>(input);
  safemap_fuzz::check<Map<std::string, safemap_fuzz::rec>>(input);
  safemap_fuzz::check<Map<std::string, Map<std::int32_t, std::optional<bool>>>>(input);
  return 0;
}
