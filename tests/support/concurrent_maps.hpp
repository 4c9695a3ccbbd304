// tests/support/concurrent_maps.hpp - what every concurrent map's tests share (docs/design.md §4).
//
//  - concurrent_map_types: the ::testing::Types list of the concurrent maps whose header exists
//    (LockedMap, ShardedMap, SyncMap, TrieMap, CowMap), instantiated <int, int>. A map joins the
//    conformance suite (tests/support/conformance_suite.hpp) as soon as its header lands;
//    rebind_map_t<M, K, V> gives the same map template with other key and value types (string
//    keys, instance-counting values).
//  - map_traits<M>: what a map documents where docs/design.md §4 lets the strategies differ (range
//    consistency, a write from a range callback, version on failed writes, how often compute
//    calls f, what a visit callback may read, what a write from erase_if's predicate or
//    insert_or_visit's callback does). Each value is taken from the map's header
//    comment; change it only with the header.
//  - reference_map<K, V>: the oracle, a std::unordered_map with the concurrent-map API and
//    exactly the semantics of docs/design.md §4's table, plus a version that grows by exactly 1 on
//    each successful mutation (a concurrent map's version must grow by at least that much).
//  - map_op / op_generator / apply_op: random operations over a small key space, covering
//    every call of the API; apply_op runs one on any map with that API (a concurrent map or the
//    reference) and returns a comparable op_result.
//  - run_threads(n, fn): starts n threads together on a std::latch, joins them all, rethrows
//    the first exception a thread threw (gtest assertion failures in threads are recorded by
//    gtest itself).
//  - sanitized_build / scaled(n): lets a test shrink its iteration counts under sanitizers.
//
// Concurrency: reference_map and op_generator are single-threaded; run_threads is
// thread-safe; the rest is stateless.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <latch>
#include <mutex>
#include <optional>
#include <ostream>
#include <string>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "safemap/concurrent.hpp"
#include "support/reference_model.hpp"

#if __has_include("safemap/locked_map.hpp")
#include "safemap/locked_map.hpp"
#define SAFEMAP_TEST_HAS_LOCKED_MAP 1
#endif
#if __has_include("safemap/sharded_map.hpp")
#include "safemap/sharded_map.hpp"
#define SAFEMAP_TEST_HAS_SHARDED_MAP 1
#endif
#if __has_include("safemap/sync_map.hpp")
#include "safemap/sync_map.hpp"
#define SAFEMAP_TEST_HAS_SYNC_MAP 1
#endif
#if __has_include("safemap/trie_map.hpp")
#include "safemap/trie_map.hpp"
#define SAFEMAP_TEST_HAS_TRIE_MAP 1
#endif
#include "safemap/cow_map.hpp"

namespace safemap_test {

// ---- build flavour ------------------------------------------------------------------------------

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool sanitized_build = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
inline constexpr bool sanitized_build = true;
#else
inline constexpr bool sanitized_build = false;
#endif
#else
inline constexpr bool sanitized_build = false;
#endif

// n in an optimized build, n / divisor (at least 1) under a sanitizer.
constexpr std::size_t scaled(std::size_t n, std::size_t divisor = 10) {
  return sanitized_build ? std::max<std::size_t>(1, n / divisor) : n;
}

// ---- the maps
// -------------------------------------------------------------------------------------

// How a map answers a write made from inside its own range callback (docs/design.md §4: it works,
// or it is reported as misuse; it never hangs).
enum class range_write_policy { works, reported };

template <class M>
struct map_traits;  // specialized per map template below

template <class K, class V, class H, class E>
struct map_traits<safemap::CowMap<K, V, H, E>> {
  static constexpr const char* name = "CowMap";
  static constexpr bool point_in_time_range = true;
  static constexpr range_write_policy write_from_range = range_write_policy::works;
  static constexpr bool failed_writes_keep_version = true;  // they publish nothing
  static constexpr bool compute_calls_f_once = true;        // under the writer mutex
  static constexpr bool visit_may_read_any_key = true;      // visit holds no lock
  // A write from erase_if's predicate or insert_or_visit's callback (it runs under the
  // writer mutex).
  static constexpr range_write_policy write_from_bulk_callback = range_write_policy::reported;
};

#ifdef SAFEMAP_TEST_HAS_LOCKED_MAP
template <class K, class V, class H, class E>
struct map_traits<safemap::LockedMap<K, V, H, E>> {
  static constexpr const char* name = "LockedMap";
  static constexpr bool point_in_time_range = true;
  static constexpr range_write_policy write_from_range = range_write_policy::reported;
  static constexpr bool failed_writes_keep_version = true;
  static constexpr bool compute_calls_f_once = true;
  static constexpr bool visit_may_read_any_key = true;  // reads run without relocking
  // A write from erase_if's predicate or insert_or_visit's callback (it runs under the
  // exclusive lock).
  static constexpr range_write_policy write_from_bulk_callback = range_write_policy::reported;
};
#endif

#ifdef SAFEMAP_TEST_HAS_SHARDED_MAP
template <class K, class V, class H, class E>
struct map_traits<safemap::ShardedMap<K, V, H, E>> {
  static constexpr const char* name = "ShardedMap";
  static constexpr bool point_in_time_range = false;  // consistent per shard
  static constexpr range_write_policy write_from_range = range_write_policy::works;
  static constexpr bool failed_writes_keep_version = true;
  static constexpr bool compute_calls_f_once = true;
  // visit holds its key's shard lock: a read of another shard is reported (lock order).
  static constexpr bool visit_may_read_any_key = false;
  // A write from erase_if's predicate or insert_or_visit's callback (it runs under the
  // shard's exclusive lock).
  static constexpr range_write_policy write_from_bulk_callback = range_write_policy::reported;
};
#endif

#ifdef SAFEMAP_TEST_HAS_SYNC_MAP
template <class K, class V, class H, class E>
struct map_traits<safemap::SyncMap<K, V, H, E>> {
  static constexpr const char* name = "SyncMap";
  static constexpr bool point_in_time_range = false;  // weakly consistent, like Go's Range
  static constexpr range_write_policy write_from_range = range_write_policy::works;
  static constexpr bool failed_writes_keep_version = true;
  static constexpr bool compute_calls_f_once = false;   // a lost CAS race calls f again
  static constexpr bool visit_may_read_any_key = true;  // no lock held in callbacks
  // A write from erase_if's predicate or insert_or_visit's callback (no lock is held).
  static constexpr range_write_policy write_from_bulk_callback = range_write_policy::works;
};
#endif

#ifdef SAFEMAP_TEST_HAS_TRIE_MAP
template <class K, class V, class H, class E>
struct map_traits<safemap::TrieMap<K, V, H, E>> {
  static constexpr const char* name = "TrieMap";
  static constexpr bool point_in_time_range = false;  // weakly consistent, like Go's All
  static constexpr range_write_policy write_from_range = range_write_policy::works;
  static constexpr bool failed_writes_keep_version = true;
  static constexpr bool compute_calls_f_once = false;   // a changed slot calls f again
  static constexpr bool visit_may_read_any_key = true;  // no lock held in callbacks
  // A write from erase_if's predicate or insert_or_visit's callback (no lock is held).
  static constexpr range_write_policy write_from_bulk_callback = range_write_policy::works;
};
#endif

namespace detail {
template <class... Ts>
struct type_list {};

template <class... Lists>
struct concat;
template <>
struct concat<> {
  using type = type_list<>;
};
template <class... Ts>
struct concat<type_list<Ts...>> {
  using type = type_list<Ts...>;
};
template <class... As, class... Bs, class... Rest>
struct concat<type_list<As...>, type_list<Bs...>, Rest...> {
  using type = typename concat<type_list<As..., Bs...>, Rest...>::type;
};

template <class List>
struct to_gtest_types;
template <class... Ts>
struct to_gtest_types<type_list<Ts...>> {
  using type = ::testing::Types<Ts...>;
};
}  // namespace detail

// Every concurrent map present in this checkout, with key and value types K and V.
template <class K, class V>
using concurrent_maps_of = typename detail::concat<
#ifdef SAFEMAP_TEST_HAS_LOCKED_MAP
    detail::type_list<safemap::LockedMap<K, V>>,
#endif
#ifdef SAFEMAP_TEST_HAS_SHARDED_MAP
    detail::type_list<safemap::ShardedMap<K, V>>,
#endif
#ifdef SAFEMAP_TEST_HAS_SYNC_MAP
    detail::type_list<safemap::SyncMap<K, V>>,
#endif
#ifdef SAFEMAP_TEST_HAS_TRIE_MAP
    detail::type_list<safemap::TrieMap<K, V>>,
#endif
    detail::type_list<safemap::CowMap<K, V>>>::type;

using concurrent_map_types = typename detail::to_gtest_types<concurrent_maps_of<int, int>>::type;

// The same map template with other key and value types (default hasher and key_equal).
template <class M, class K2, class V2>
struct rebind_map;
template <template <class, class, class, class> class T, class K, class V, class H, class E,
          class K2, class V2>
struct rebind_map<T<K, V, H, E>, K2, V2> {
  using type = T<K2, V2, safemap::Hash<K2>, std::equal_to<>>;
};
template <class M, class K2, class V2>
using rebind_map_t = typename rebind_map<M, K2, V2>::type;

// Names typed tests after the map ("InProcess/ConformanceTest/CowMap.…").
struct map_names {
  template <class M>
  static std::string GetName(int) {
    return map_traits<M>::name;
  }
};

// ---- the oracle
// -----------------------------------------------------------------------------------

// docs/design.md §4's table on a std::unordered_map, single-threaded. version() grows by exactly 1
// on each successful mutation (store, a load_or_store that stores, a removal, swap, a successful
// compare_and_swap/compare_and_delete, compute that stores or erases, clear of a non-empty map).
template <class K, class V>
class reference_map {
 public:
  using key_type = K;
  using mapped_type = V;
  using container = std::unordered_map<K, V>;

  std::optional<V> load(const K& k) const {
    auto it = m_.find(k);
    if (it == m_.end()) return std::nullopt;
    return it->second;
  }
  bool contains(const K& k) const { return m_.count(k) != 0; }
  template <class F>
  bool visit(const K& k, F f) const {
    auto it = m_.find(k);
    if (it == m_.end()) return false;
    f(static_cast<const V&>(it->second));
    return true;
  }
  void store(K k, V v) {
    m_.insert_or_assign(std::move(k), std::move(v));
    ++version_;
  }
  std::pair<V, bool> load_or_store(K k, V v) {
    auto it = m_.find(k);
    if (it != m_.end()) return {it->second, true};
    m_.emplace(std::move(k), v);
    ++version_;
    return {std::move(v), false};
  }
  std::optional<V> load_and_delete(const K& k) {
    auto it = m_.find(k);
    if (it == m_.end()) return std::nullopt;
    std::optional<V> removed(std::move(it->second));
    m_.erase(it);
    ++version_;
    return removed;
  }
  bool erase(const K& k) {
    if (m_.erase(k) == 0) return false;
    ++version_;
    return true;
  }
  std::optional<V> swap(K k, V v) {
    ++version_;
    auto it = m_.find(k);
    if (it == m_.end()) {
      m_.emplace(std::move(k), std::move(v));
      return std::nullopt;
    }
    return std::exchange(it->second, std::move(v));
  }
  bool compare_and_swap(const K& k, const V& expected, V desired) {
    auto it = m_.find(k);
    if (it == m_.end() || !(it->second == expected)) return false;
    it->second = std::move(desired);
    ++version_;
    return true;
  }
  bool compare_and_delete(const K& k, const V& expected) {
    auto it = m_.find(k);
    if (it == m_.end() || !(it->second == expected)) return false;
    m_.erase(it);
    ++version_;
    return true;
  }
  template <class F>
  std::optional<V> compute(const K& k, F f) {
    auto it = m_.find(k);
    std::optional<V> next = f(it == m_.end() ? std::optional<V>() : std::optional<V>(it->second));
    if (!next) {
      if (it != m_.end()) {
        m_.erase(it);
        ++version_;
      }
      return std::nullopt;
    }
    if (it == m_.end()) {
      m_.emplace(k, *next);
    } else {
      it->second = *next;
    }
    ++version_;
    return next;
  }
  template <class F>
  void range(F f) const {
    for (const auto& [k, v] : m_) {
      if (!safemap::detail::invoke_range_callback(f, k, v)) return;
    }
  }
  std::size_t size() const { return m_.size(); }
  void clear() {
    if (m_.empty()) return;
    m_.clear();
    ++version_;
  }
  const container& snapshot() const { return m_; }
  std::uint64_t version() const { return version_; }

 private:
  container m_;
  std::uint64_t version_ = 0;
};

// ---- random operations
// ----------------------------------------------------------------------------

enum class op_kind {
  load,
  contains,
  visit,
  store,
  load_or_store,
  load_and_delete,
  erase,
  swap,
  compare_and_swap,
  compare_and_delete,
  compute,
  range,
  range_stop,
  size,
  clear,
  snapshot,
};

inline const char* op_name(op_kind k) {
  switch (k) {
    case op_kind::load:
      return "load";
    case op_kind::contains:
      return "contains";
    case op_kind::visit:
      return "visit";
    case op_kind::store:
      return "store";
    case op_kind::load_or_store:
      return "load_or_store";
    case op_kind::load_and_delete:
      return "load_and_delete";
    case op_kind::erase:
      return "erase";
    case op_kind::swap:
      return "swap";
    case op_kind::compare_and_swap:
      return "compare_and_swap";
    case op_kind::compare_and_delete:
      return "compare_and_delete";
    case op_kind::compute:
      return "compute";
    case op_kind::range:
      return "range";
    case op_kind::range_stop:
      return "range_stop";
    case op_kind::size:
      return "size";
    case op_kind::clear:
      return "clear";
    case op_kind::snapshot:
      return "snapshot";
  }
  return "?";
}

// What compute's f does with the current state.
enum class compute_mode {
  erase,        // returns nullopt
  assign,       // returns the op's value
  keep,         // returns the current state unchanged
  toggle,       // absent: the op's value; present: nullopt
  if_expected,  // present and == expected: the op's value; otherwise unchanged
};

template <class K, class V>
struct map_op {
  op_kind kind;
  K key;
  V value;
  V expected;
  compute_mode mode = compute_mode::keep;
  std::size_t stop_after = 0;  // range_stop: f returns false after this many entries

  friend std::ostream& operator<<(std::ostream& os, const map_op& op) {
    return os << op_name(op.kind) << "(key=" << testing::PrintToString(op.key)
              << " value=" << testing::PrintToString(op.value)
              << " expected=" << testing::PrintToString(op.expected)
              << " mode=" << static_cast<int>(op.mode) << " stop_after=" << op.stop_after << ")";
  }
};

// What an operation returned, in a form both a concurrent map and the reference produce.
template <class K, class V>
struct op_result {
  std::optional<V> value;                // load, load_and_delete, swap, compute, visit
  bool flag = false;                     // bool results; load_or_store's "loaded"
  std::size_t count = 0;                 // size, range_stop
  std::vector<std::pair<K, V>> entries;  // range, snapshot: sorted by key

  friend bool operator==(const op_result&, const op_result&) = default;
  friend std::ostream& operator<<(std::ostream& os, const op_result& r) {
    os << "{value=" << testing::PrintToString(r.value) << " flag=" << r.flag << " count=" << r.count
       << " entries=[";
    for (const auto& [k, v] : r.entries) {
      os << testing::PrintToString(k) << ":" << testing::PrintToString(v) << " ";
    }
    return os << "]}";
  }
};

// Generates random operations on keys make_key(0..key_space-1) and values make_value(0..7).
// The weights favour writes that hit (so the map is neither always empty nor always full) and
// make clear rare.
template <class K, class V>
class op_generator {
 public:
  using key_maker = std::function<K(std::uint64_t)>;
  using value_maker = std::function<V(int)>;

  // Keys and values are made once here, so drawing an operation builds no key.
  op_generator(std::uint64_t seed, std::uint64_t key_space, const key_maker& make_key,
               const value_maker& make_value)
      : rng_(seed) {
    keys_.reserve(key_space);
    for (std::uint64_t k = 0; k < key_space; ++k) keys_.push_back(make_key(k));
    for (int v = 0; v < k_values; ++v) values_.push_back(make_value(v));
  }

  map_op<K, V> next() {
    static constexpr struct {
      op_kind kind;
      unsigned weight;
    } table[] = {
        {op_kind::load, 12},
        {op_kind::contains, 6},
        {op_kind::visit, 6},
        {op_kind::store, 10},
        {op_kind::load_or_store, 10},
        {op_kind::load_and_delete, 6},
        {op_kind::erase, 6},
        {op_kind::swap, 8},
        {op_kind::compare_and_swap, 10},
        {op_kind::compare_and_delete, 6},
        {op_kind::compute, 12},
        {op_kind::range, 2},
        {op_kind::range_stop, 2},
        {op_kind::size, 3},
        {op_kind::snapshot, 1},
        {op_kind::clear, 0},  // drawn separately, 1 in 2000
    };
    unsigned total = 0;
    for (const auto& e : table) total += e.weight;
    op_kind kind = op_kind::clear;
    if (!rng_.chance(1, 2000)) {
      auto r = static_cast<unsigned>(rng_.below(total));
      for (const auto& e : table) {
        if (r < e.weight) {
          kind = e.kind;
          break;
        }
        r -= e.weight;
      }
    }
    // A small value range makes compare_and_swap/compare_and_delete succeed often enough.
    // (Braced initializers are evaluated in order: the sequence depends only on the seed.)
    map_op<K, V> op{kind,
                    keys_[rng_.below(keys_.size())],
                    values_[rng_.below(k_values)],
                    values_[rng_.below(k_values)],
                    static_cast<compute_mode>(rng_.below(5)),
                    static_cast<std::size_t>(rng_.below(keys_.size() + 1))};
    return op;
  }

 private:
  static constexpr int k_values = 8;
  test_rng rng_;
  std::vector<K> keys_;
  std::vector<V> values_;
};

// The entries of anything iterable as pairs (a Map, a std::unordered_map), sorted by key.
template <class C>
auto sorted_entries(const C& c) {
  using K = std::remove_const_t<typename C::key_type>;
  using V = typename C::mapped_type;
  std::vector<std::pair<K, V>> out;
  for (const auto& [k, v] : c) out.emplace_back(k, v);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

// Runs op on m (a concurrent map or a reference_map) and returns what it returned.
template <class M, class K, class V>
op_result<K, V> apply_op(M& m, const map_op<K, V>& op) {
  op_result<K, V> r;
  switch (op.kind) {
    case op_kind::load:
      r.value = m.load(op.key);
      break;
    case op_kind::contains:
      r.flag = m.contains(op.key);
      break;
    case op_kind::visit:
      r.flag = std::as_const(m).visit(op.key, [&](const V& v) { r.value = v; });
      break;
    case op_kind::store:
      m.store(op.key, op.value);
      break;
    case op_kind::load_or_store: {
      auto [v, loaded] = m.load_or_store(op.key, op.value);
      r.value = std::move(v);
      r.flag = loaded;
      break;
    }
    case op_kind::load_and_delete:
      r.value = m.load_and_delete(op.key);
      break;
    case op_kind::erase:
      r.flag = m.erase(op.key);
      break;
    case op_kind::swap:
      r.value = m.swap(op.key, op.value);
      break;
    case op_kind::compare_and_swap:
      r.flag = m.compare_and_swap(op.key, op.expected, op.value);
      break;
    case op_kind::compare_and_delete:
      r.flag = m.compare_and_delete(op.key, op.expected);
      break;
    case op_kind::compute:
      r.value = m.compute(op.key, [&op](std::optional<V> cur) -> std::optional<V> {
        switch (op.mode) {
          case compute_mode::erase:
            return std::nullopt;
          case compute_mode::assign:
            return op.value;
          case compute_mode::keep:
            return cur;
          case compute_mode::toggle:
            if (cur) return std::nullopt;
            return op.value;
          case compute_mode::if_expected:
            if (cur && *cur == op.expected) return op.value;
            return cur;
        }
        return cur;
      });
      break;
    case op_kind::range:
      m.range([&](const K& k, const V& v) { r.entries.emplace_back(k, v); });
      std::sort(r.entries.begin(), r.entries.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      break;
    case op_kind::range_stop:
      m.range([&](const K&, const V&) { return ++r.count < op.stop_after; });
      break;
    case op_kind::size:
      r.count = m.size();
      break;
    case op_kind::clear:
      m.clear();
      break;
    case op_kind::snapshot:
      r.entries = sorted_entries(m.snapshot());
      break;
  }
  return r;
}

// ---- threads
// ----------------------------------------------------------------------------------------

// Runs fn(thread_index) on n threads that start together (a std::latch), joins them all, then
// rethrows the first exception any of them threw.
template <class F>
void run_threads(unsigned n, F&& fn) {
  std::latch start(static_cast<std::ptrdiff_t>(n));
  std::mutex mu;
  std::exception_ptr first_error;
  std::vector<std::thread> threads;
  threads.reserve(n);
  for (unsigned i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      try {
        fn(i);
      } catch (...) {
        std::lock_guard lock(mu);
        if (!first_error) first_error = std::current_exception();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (first_error) std::rethrow_exception(first_error);
}

}  // namespace safemap_test
