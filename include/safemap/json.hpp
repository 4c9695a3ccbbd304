// safemap/json.hpp - JSON and Go-style text for every safemap map; parsing back; {fmt}.
//
//   std::string s = safemap::to_json(m);                 // {"a":1,"b":2}   keys sorted
//   safemap::write_json(m, out, {.pretty = true});       // into std::string, fmt::memory_buffer
//                                                        // or any type with append(b, e)
//   std::string t = safemap::to_string(m);               // map[a:1 b:2]    Go's %v
//   fmt::format("{} {:j}", m, m);                        // Go text, JSON
//   auto m2 = safemap::from_json<safemap::Map<std::string, int>>(s);
//   safemap::merge_json(m2, R"({"c":3})");               // all or nothing
//
// # What is read, and when
// Serializing never reads a map while it changes. Each map is walked through the consistent
// view its strategy promises (docs/design.md §4), without copying it first:
//   Map         the map itself (it is single-writer: the caller owns it)
//   LockedMap   under its shared lock: point-in-time
//   ShardedMap  under every shard's shared lock, taken in order: point-in-time
//   CowMap      one published snapshot: point-in-time, lock-free
//   SyncMap     Go's Range inside one read-side section: weakly consistent (each key once,
//               each value one the key held during the call)
//
// # Allocation
// write_json allocates nothing for scalar and string keys and values once `out` has capacity
// and the calling thread has serialized a map of that nesting depth before: numbers are
// formatted on the stack, and sorting reuses per-thread scratch space.
//
// # Types
// Keys: std::string (and std::string_view / const char* for writing), integers, bool (written
// as JSON strings, like Go). Values: integers, floating point (shortest round-trip form; NaN and
// infinities throw json_error), bool, strings (RFC 8259 escaping; invalid UTF-8 written as
// U+FFFD), std::optional (null), std::vector, nested safemap maps, and user types through
// safemap::json_traits<T>::fields (see json_fwd.hpp and the README).
//
// # Parsing
// from_json/merge_json accept exactly RFC 8259 JSON whose top level is an object: no trailing
// commas, no trailing garbage, no duplicate keys (rejected, never "last wins"), numbers must
// fit the target type, strings must be valid UTF-8. Any problem throws json_error with the
// byte offset and what was expected there. merge_json parses everything before touching the
// map, so on error the map is unchanged; on success the entries are stored as one batch
// (readers of a LockedMap, ShardedMap or CowMap see all of them or none; a SyncMap stores them
// one by one).
//
// Concurrency: every function here may be called from any thread on any map whose own API
// permits the access (for Map: no concurrent writer).
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "safemap/detail/json_read.hpp"
#include "safemap/detail/json_write.hpp"
#include "safemap/json_fwd.hpp"
#include "safemap/map.hpp"

namespace safemap {

namespace detail::json {

// The Map type a parse stages into before touching the target.
template <class M>
using staged_map_t =
    Map<typename M::key_type, typename M::mapped_type, typename M::hasher, typename M::key_equal>;

template <class M, class Out>
std::size_t write_top(const M& m, Out& out, const json_options& opt) {
  if constexpr (requires {
                  out.size();
                  out.resize(out.size());
                }) {
    const auto size = out.size();
    try {
      return json_writer<Out>(out, opt).write_map(m);
    } catch (...) {
      out.resize(size);  // leave `out` as it was
      throw;
    }
  } else {
    return json_writer<Out>(out, opt).write_map(m);
  }
}

template <class M>
staged_map_t<M> parse_staged(std::string_view text) {
  staged_map_t<M> staged;
  reader r(text);
  r.read_map(staged, 0);
  r.finish();
  return staged;
}

// Builds an M from a staged Map without copying entries where M allows.
template <class M>
M from_staged(staged_map_t<M>&& staged);

// Applies staged entries to `into` as one batch, as atomically as its strategy allows.
template <class M, class S>
void apply_batch(M& into, S&& staged) {
  if constexpr (requires { into.merge(std::move(staged)); }) {
    into.merge(std::move(staged));
  } else if constexpr (requires {
                         into.insert_or_assign(typename M::key_type{}, typename M::mapped_type{});
                       }) {
    staged.for_each([&](const auto& k, auto& v) { into.insert_or_assign(k, std::move(v)); });
  } else {
    staged.for_each([&](const auto& k, auto& v) { into.store(k, std::move(v)); });
  }
}

template <class M>
M from_staged(staged_map_t<M>&& staged) {
  if constexpr (std::is_same_v<M, staged_map_t<M>>) {
    return std::move(staged);
  } else if constexpr (std::is_constructible_v<M, staged_map_t<M>&&>) {
    return M(std::move(staged));
  } else {
    M m;
    apply_batch(m, std::move(staged));
    return m;
  }
}

}  // namespace detail::json

// JSON text of m (see the top of this file for the view each map type gives).
template <class M>
requires detail::json::map_like<M> std::string to_json(const M& m, const json_options& opt = {}) {
  std::string out;
  detail::json::write_top(m, out, opt);
  return out;
}

// Appends the JSON text of m to out. On exception (NaN, a throwing allocator) a std::string or
// fmt::memory_buffer is restored to its previous size.
template <class M, class Out>
requires detail::json::map_like<M> && requires(Out& o, const char* p) {
  o.append(p, p);
}
void write_json(const M& m, Out& out, const json_options& opt = {}) {
  detail::json::write_top(m, out, opt);
}

// Go's %v text of m: map[k1:v1 k2:v2], keys sorted as Go's fmt sorts them.
template <class M>
requires detail::json::map_like<M> std::string to_string(const M& m) {
  std::string out;
  detail::json::go_writer<std::string>(out).write_map(m);
  return out;
}

// Parses text (a JSON object) into a new M. Throws json_error on bad input.
template <class M>
requires detail::json::map_like<M> M from_json(std::string_view text) {
  return detail::json::from_staged<M>(detail::json::parse_staged<M>(text));
}

// Parses text completely, then stores every entry into `into` as one batch. On error throws
// json_error and leaves `into` unchanged.
template <class M>
requires detail::json::map_like<M>
void merge_json(M& into, std::string_view text) {
  detail::json::apply_batch(into, detail::json::parse_staged<M>(text));
}

// Keeps the last JSON text of a concurrent map with the version() it was made at, and
// re-serializes only when the version moved. get() hands out the text as an immutable shared
// string: readers share one copy. The map must outlive the cache.
// Concurrency: get() may be called from any number of threads; one serializes at a time.
template <class M>
requires requires(const M& m) {
  { m.version() } -> std::convertible_to<std::uint64_t>;
}
class json_cache {
 public:
  explicit json_cache(const M& m, json_options opt = {}) : m_(m), opt_(opt) {}

  std::shared_ptr<const std::string> get() {
    // Read the version before serializing: a write that lands during serialization moves the
    // version past the one recorded here, so the next get() serializes again.
    const std::uint64_t v = m_.version();
    std::lock_guard lock(mu_);
    if (cached_ && v == version_) return cached_;
    auto text = std::make_shared<std::string>();
    if (cached_) text->reserve(cached_->size());
    write_json(m_, *text, opt_);
    cached_ = std::move(text);
    version_ = v;
    ++serializations_;
    return cached_;
  }

  // How many times get() serialized (tests, metrics).
  std::uint64_t serializations() const {
    std::lock_guard lock(mu_);
    return serializations_;
  }

 private:
  const M& m_;
  const json_options opt_;
  mutable std::mutex mu_;
  std::shared_ptr<const std::string> cached_;  // guarded by mu_
  std::uint64_t version_ = 0;                  // guarded by mu_; valid when cached_
  std::uint64_t serializations_ = 0;           // guarded by mu_
};

}  // namespace safemap

// {fmt}: "{}" formats Go text (map[a:1 b:2]), "{:j}" JSON with sorted keys.
template <class M, class Char>
requires safemap::detail::json::map_like<M>
struct fmt::formatter<M, Char> {
  bool json = false;

  constexpr auto parse(fmt::basic_format_parse_context<Char>& ctx) {
    auto it = ctx.begin();
    if (it != ctx.end() && *it == 'j') {
      json = true;
      ++it;
    }
    if (it != ctx.end() && *it != '}') {
      throw fmt::format_error("invalid format for a safemap map: use {} (Go text) or {:j} (JSON)");
    }
    return it;
  }

  template <class FormatContext>
  auto format(const M& m, FormatContext& ctx) const {
    using out_t = safemap::detail::json::iterator_out<decltype(ctx.out())>;
    out_t out{ctx.out()};
    if (json) {
      const safemap::json_options opt;
      safemap::detail::json::json_writer<out_t>(out, opt).write_map(m);
    } else {
      safemap::detail::json::go_writer<out_t>(out).write_map(m);
    }
    return out.it;
  }
};

// safemap::Map has begin()/end(); keep fmt's range formatter from competing with the one above.
template <class K, class V, class H, class E, class A, class Char>
struct fmt::is_range<safemap::Map<K, V, H, E, A>, Char> : std::false_type {};
