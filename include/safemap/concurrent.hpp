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
// Every map also has two batched lookups (not part of the concept, so a type that models it
// need not add them):
//   load_many(span<const K> keys, span<optional<V>> out) const -> size_t
//                                                      out[i] = load(keys[i]); how many were
//                                                      found; the batch allocates nothing
//                                                      (RedisMap: its round trips' buffers)
//   load_many(const R& keys) const -> vector<optional<V>>   the same for any range of keys
// Each value is one its key held at some instant during the call, not one point in time for
// all keys. out shorter than keys: std::length_error, before any lookup. A lookup that throws
// (hasher, a value's copy) propagates; each entry of out then holds its key's value or its
// previous content (which ones were written is unspecified: ShardedMap goes shard by shard;
// the entry whose copy threw is left empty), and the map is unchanged, no lock or read guard
// left held. Values are copied under the lock or read guard, as load's is, 64 per
// acquisition. LockedMap, CowMap and SyncMap look up 64 keys at a time with their cache misses
// overlapped (Map::find_many) under one shared lock or read guard; ShardedMap sorts a batch by
// shard first; TrieMap descends the trie for 64 keys together, a level per pass; RedisMap
// pipelines HMGETs.
//
// Values come back by copy: no reference into a concurrent map escapes a lock or a read-side
// critical section (visit and range hand out references only for the callback's duration).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

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

// load_many's span form for a map whose lookups gain nothing from a batch: load of each key.
template <class M>
std::size_t load_each(const M& m, std::span<const typename M::key_type> keys,
                      std::span<std::optional<typename M::mapped_type>> out, const char* who) {
  check_many_out(keys.size(), out.size(), who);
  std::size_t found = 0;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    std::optional<typename M::mapped_type> v = m.load(keys[i]);
    out[i].reset();  // reset then emplace: V need not be assignable, as load's result need not
    if (v) {
      out[i].emplace(std::move(*v));
      ++found;
    }
  }
  return found;
}

// load_many's range form: the span form over a contiguous range of K, load of each key over
// any other range (a view, a list, keys of a type that only converts or compares to K).
// keys is iterated as the caller passed it (a filter view or an istream view cannot be
// iterated const).
template <class M, std::ranges::input_range R>
std::vector<std::optional<typename M::mapped_type>> load_many_of(const M& m, R&& keys) {
  using K = typename M::key_type;
  std::vector<std::optional<typename M::mapped_type>> out;
  if constexpr (std::ranges::contiguous_range<R> && std::ranges::sized_range<R> &&
                std::is_same_v<std::ranges::range_value_t<R>, K>) {
    out.resize(std::ranges::size(keys));
    m.load_many(std::span<const K>(std::ranges::data(keys), std::ranges::size(keys)),
                std::span<std::optional<typename M::mapped_type>>(out));
  } else {
    if constexpr (std::ranges::sized_range<R>) out.reserve(std::ranges::size(keys));
    for (auto&& k : keys) out.push_back(m.load(k));
  }
  return out;
}
}  // namespace detail

}  // namespace safemap
