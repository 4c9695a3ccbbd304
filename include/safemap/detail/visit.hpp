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
//  - immutable_visitation: the whole set of calls for a map whose values cannot change in
//    place (SyncMap, TrieMap and RedisMap take all of it; CowMap keeps its own erase_if and
//    insert/emplace_or_visit, which decide under its writer mutex), written once in terms of
//    the map's public range, visit, compare_and_delete and load_or_store;
//  - publish_on_exit: for a shard (detail/shard.hpp) whose table a callback may have changed
//    in place: republishes its size and version when the scope ends, also when the callback
//    throws (shard invariant 2 must hold whenever the lock is free).
//
// Concurrency: none of its own; each piece runs under the caller's lock or guard.
#pragma once

#include <cstddef>
#include <functional>
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

// The visitation calls of a map whose values cannot change in place: SyncMap (immutable boxes),
// TrieMap (immutable entries or atomic values), CowMap (immutable snapshots) and RedisMap
// (values on a server). A CRTP base (Derived is the map), written against Derived's public
// contract only, so each call has exactly the concurrency of the call it is made of:
//  - visit on a non-const map, cvisit: Derived's const visit; a callable that needs V& is
//    refused at compile time with the alternative (compute, swap, or CowMap's update);
//  - visit_all / cvisit_all: Derived's range, counting; consistency as range's;
//  - erase_if: range, and compare_and_delete with the value pred saw, so each removal is atomic
//    for its key and a key whose value changed after pred saw it is kept (needs V == V);
//  - insert_or_visit / emplace_or_visit: load_or_store, then f(const V&) on the value the key
//    held when the store was refused (taken atomically with the decision); V is built first.
// No lock or guard is held while f or pred runs: they may call any method of the map, writes
// included, and an exception from them leaves the map whole. Derived brings the non-const
// visit into scope with `using ...::visit;` (its own const visit would hide it).
template <class Derived, class K, class V>
class immutable_visitation {
 public:
  template <class Q, class F>
  bool visit(const Q& key, F f) {
    static_assert(std::is_invocable_v<F&, const V&>,
                  "safemap: visit(key, f) cannot change a value in place on this map (its "
                  "values are immutable and shared with lock-free readers, or live on a "
                  "server): f gets const V&; change it with compute(key, f) or swap(key, "
                  "value), or on a CowMap with update(f) for many keys and one copy");
    return std::as_const(self()).visit(key, std::move(f));  // Derived's const visit
  }
  // visit with f(const V&), on any map. Concurrency: as visit() const.
  template <class Q, class F>
  bool cvisit(const Q& key, F f) const {
    return self().visit(key, std::move(f));
  }

  // Calls f(const K&, const V&) on every entry, through range; returns how many.
  template <class F>
  std::size_t visit_all(F f) const {
    std::size_t n = 0;
    self().range([&](const K& k, const V& v) {
      std::invoke(f, k, v);
      ++n;
    });
    return n;
  }
  template <class F>
  std::size_t visit_all(F f) {
    static_assert(std::is_invocable_v<F&, const K&, const V&>,
                  "safemap: visit_all(f) cannot change values in place on this map: f gets "
                  "(const K&, const V&); change them with compute(key, f) or swap(key, value), "
                  "or on a CowMap with update(f) for many keys and one copy");
    return std::as_const(*this).visit_all(std::move(f));
  }
  template <class F>
  std::size_t cvisit_all(F f) const {
    return visit_all(std::move(f));
  }

  // Removes every entry for which pred(const K&, const V&) is true; returns how many.
  template <class Pred>
  std::size_t erase_if(Pred pred) {
    std::size_t n = 0;
    self().range([&](const K& k, const V& v) {
      if (std::invoke(pred, k, v) && self().compare_and_delete(k, v)) ++n;
    });
    return n;
  }

  // Stores (key, value) and returns true if key is absent; otherwise calls f(const V&) on the
  // value that refused the store and returns false.
  template <class F>
  bool insert_or_visit(K key, V value, F f) {
    check_visitor<F&>();
    return insert_or_visit_impl(std::move(key), std::move(value), f);
  }
  // emplace_or_visit(key, args..., f): as insert_or_visit with V(args...), f last (Boost's
  // order). The value is built before the decision (load_or_store needs it ready).
  template <class... ArgsThenF>
  bool emplace_or_visit(K key, ArgsThenF&&... args_then_f) {
    return split_emplace_args(
        [&](auto& build, auto& f) {
          check_visitor<decltype(f)>();
          return insert_or_visit_impl(
              std::move(key),
              build([](auto&&... a) { return make_value<V>(std::forward<decltype(a)>(a)...); }), f);
        },
        std::forward<ArgsThenF>(args_then_f)...);
  }

  // The refusal insert_or_visit and emplace_or_visit share (also used by CowMap's own).
  template <class F>
  static constexpr void check_visitor() noexcept {
    static_assert(std::is_invocable_v<F, const V&>,
                  "safemap: insert_or_visit/emplace_or_visit cannot change a value in place on "
                  "this map: f gets const V&; use compute(key, f) to insert or change "
                  "atomically");
  }

 private:
  Derived& self() noexcept { return static_cast<Derived&>(*this); }
  const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }

  template <class F>
  bool insert_or_visit_impl(K&& key, V&& value, F& f) {
    auto [existing, loaded] = self().load_or_store(std::move(key), std::move(value));
    if (!loaded) return true;
    std::invoke(f, static_cast<const V&>(existing));
    return false;
  }
};

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
