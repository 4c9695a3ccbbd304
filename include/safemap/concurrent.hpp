// safemap/concurrent.hpp - the one API of the concurrent maps (docs/design.md §4).
//
// LockedMap, ShardedMap, SyncMap and CowMap are different strategies behind the same calls;
// safemap::concurrent_map<M> names that API so generic code (and the conformance tests, and
// the benchmark) can take any of them:
//
//   load(const Q& k) const -> optional<V>               the value, or nullopt
//   contains(const Q& k) const -> bool
//   visit(const Q& k, F f) const -> bool               f(const V&) in place if present;
//                                                      f must not block
//   store(K k, V v)                                    insert or overwrite
//   load_or_store(K k, V v) -> pair<V, bool>           existing value and true, or v and false
//   load_and_delete(const Q& k) -> optional<V>         removes; the removed value
//   erase(const Q& k) -> bool                          true if something was removed
//   swap(K k, V v) -> optional<V>                      stores v; the previous value if any
//   compare_and_swap(const Q& k, const V& expected, V desired) -> bool
//   compare_and_delete(const Q& k, const V& expected) -> bool
//   compute(const K& k, F f) -> optional<V>            atomic per key; f(optional<V>) ->
//                                                      optional<V>; nullopt erases; returns the
//                                                      new state; lock-free maps may call f
//                                                      more than once (it must be pure)
//   range(F f) const                                   f(const K&, const V&), may return bool
//   size() const -> size_t                             exact when no write is in flight
//   clear()
//   snapshot() const -> Map<K, V, Hash, Eq>            a copy
//   version() const -> uint64_t                        +1 at least on every successful mutation
//
// Values come back by copy: no reference into a concurrent map escapes a lock or a read-side
// critical section (visit and range hand out references only for the callback's duration).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "safemap/map.hpp"

namespace safemap {

template <class M>
concept concurrent_map = requires(M& m, const M& cm, const typename M::key_type& k,
                                  typename M::key_type kk, const typename M::mapped_type& v,
                                  typename M::mapped_type vv) {
  typename M::key_type;
  typename M::mapped_type;
  typename M::hasher;
  typename M::key_equal;
  { cm.load(k) } -> std::same_as<std::optional<typename M::mapped_type>>;
  { cm.contains(k) } -> std::same_as<bool>;
  {
    cm.visit(k, [](const typename M::mapped_type&) {})
    } -> std::same_as<bool>;
  { m.store(std::move(kk), std::move(vv)) } -> std::same_as<void>;
  {
    m.load_or_store(std::move(kk), std::move(vv))
    } -> std::same_as<std::pair<typename M::mapped_type, bool>>;
  { m.load_and_delete(k) } -> std::same_as<std::optional<typename M::mapped_type>>;
  { m.erase(k) } -> std::same_as<bool>;
  { m.swap(std::move(kk), std::move(vv)) } -> std::same_as<std::optional<typename M::mapped_type>>;
  { m.compare_and_swap(k, v, std::move(vv)) } -> std::same_as<bool>;
  { m.compare_and_delete(k, v) } -> std::same_as<bool>;
  {
    m.compute(k, [](std::optional<typename M::mapped_type> cur) { return cur; })
    } -> std::same_as<std::optional<typename M::mapped_type>>;
  {cm.range([](const typename M::key_type&, const typename M::mapped_type&) {})};
  {cm.range([](const typename M::key_type&, const typename M::mapped_type&) { return true; })};
  { cm.size() } -> std::same_as<std::size_t>;
  {m.clear()};
  {
    cm.snapshot()
    } -> std::same_as<Map<typename M::key_type, typename M::mapped_type, typename M::hasher,
                          typename M::key_equal>>;
  { cm.version() } -> std::same_as<std::uint64_t>;
};

namespace detail {
// Calls a range callback: f(k, v) may return bool (false stops) or void.
template <class F, class K, class V>
bool invoke_range_callback(F& f, const K& k, const V& v) {
  if constexpr (std::is_convertible_v<std::invoke_result_t<F&, const K&, const V&>, bool>) {
    return static_cast<bool>(f(k, v));
  } else {
    f(k, v);
    return true;
  }
}
}  // namespace detail

}  // namespace safemap
