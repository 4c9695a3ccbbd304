// safemap/detail/visit.hpp - what the concurrent maps' visitation calls share (docs/design.md §4,
// "Visitation, bulk erase and moves").
//
// # What it is
// Small pieces used by the Boost.Unordered-style calls every concurrent map offers (visit with
// V&, cvisit, visit_all, erase_if, insert_or_visit, emplace_or_visit):
//  - split_emplace_args: emplace_or_visit(key, args..., f) takes its callback last, as
//    Boost's concurrent_flat_map does; this splits the pack into "the arguments V is built
//    from" and f without building V.
//  - make_value: builds a V from those arguments (only where the map needs the value before it
//    knows whether the key is absent).
//  - map_erase_if: Map's erase_if through argument-dependent lookup, callable from inside a
//    class whose own member erase_if would otherwise hide it.
//  - publish_on_exit: for a shard (detail/shard.hpp) whose table a callback may have changed
//    in place: republishes its size and version when the scope ends, also when the callback
//    throws (shard invariant 2 must hold whenever the lock is free).
//
// Concurrency: none of its own; each piece runs under the caller's lock or guard.
#pragma once

#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

namespace safemap::detail {

// Calls body(build, f) where f is the last of args and build(make) returns
// make(the other args..., forwarded as given). Nothing is built or moved until build is called.
template <class Body, class... Args>
decltype(auto) split_emplace_args(Body&& body, Args&&... args) {
  static_assert(sizeof...(Args) >= 1,
                "emplace_or_visit(key, args..., f): the callback f comes last (Boost's order)");
  auto all = std::forward_as_tuple(std::forward<Args>(args)...);
  constexpr std::size_t n = sizeof...(Args) - 1;
  auto& f = std::get<n>(all);
  auto build = [&all]<std::size_t... I>(std::index_sequence<I...>) {
    return [&all](auto&& make) -> decltype(auto) {
      return make(std::get<I>(std::move(all))...);  // each element keeps its value category
    };
  }
  (std::make_index_sequence<n>());
  return std::forward<Body>(body)(build, f);
}

// V built from args (direct-initialization, like try_emplace).
template <class V, class... A>
V make_value(A&&... a) {
  static_assert(std::is_constructible_v<V, A&&...>,
                "emplace_or_visit: the mapped type cannot be constructed from these arguments");
  return V(std::forward<A>(a)...);
}

// erase_if(m, pred) found by argument-dependent lookup (Map's hidden friend).
template <class M, class Pred>
std::size_t map_erase_if(M& m, Pred&& pred) {
  return erase_if(m, std::forward<Pred>(pred));
}

// Republishes s's size and version (s.changed_locked()) when the scope ends if the table may
// have changed: always when constructed with `changed` true (a callback had a V&), else only if
// the entry count moved (erase_if). The caller holds s's lock exclusively for the whole scope.
template <class Shard>
class publish_on_exit {
 public:
  publish_on_exit(Shard& s, bool changed) noexcept
      : s_(s), before_(s.map.size()), changed_(changed) {}
  ~publish_on_exit() {
    if (changed_ || s_.map.size() != before_) s_.changed_locked();
  }
  publish_on_exit(const publish_on_exit&) = delete;
  publish_on_exit& operator=(const publish_on_exit&) = delete;

 private:
  Shard& s_;
  std::size_t before_;
  bool changed_;
};

}  // namespace safemap::detail
