// safemap/detail/shard.hpp - the shard core shared by LockedMap and ShardedMap.
//
// # What it is
// One shard: a safemap::Map behind one detail::rw_lock, with its entry count and version
// counter kept next to the lock. LockedMap is one shard; ShardedMap is an array of them. The
// write bodies, the lookups and the batch merge live here once; the maps add only what differs
// between them (routing, re-entrancy marks, whole-map calls). The bodies are *_locked: the
// caller holds the shard's lock (exclusive for writes, at least shared for reads) and has done
// its re-entrancy checks.
//
// # Layout
// alignas(128): x86 prefetches cache lines in adjacent pairs, so 64-byte alignment would still
// let two shards' lock words ping-pong between cores. Two such 128-byte units per shard:
//  - the lock word and its contention counter, alone: every acquisition read-modify-writes it,
//    and every waiter polls it (a reader's fetch_add even writes it while a writer holds);
//  - size and version (written only by this shard's writers) and the Map's header (72 bytes:
//    bucket pointer, B, count, the misuse detector's writing flag; read by every lookup,
//    written by every write), all touched only by the lock's holder(s).
// When they shared one line (before issue 10), a waiter's poll could take the line from the
// holder in the middle of its critical section, and the holder then missed on its own header
// and counters (up to four times per write: header read, writing flag set and cleared,
// counters). Apart, the holder touches the contended line twice per critical section (acquire,
// release), as in Go, whose map header is allocated apart from the RWMutex guarding it. Cost:
// 128 more bytes per shard. Nothing another shard writes lives on these lines; readers of
// other shards never read them.
//
// # Invariants
//  1. map is read or written only with lock held (shared for reads, exclusive for writes).
//  2. size == map.size() and version counts the successful mutations whenever lock is free;
//     both are stored only with lock held exclusively (plain load + store, no RMW) and read
//     without it: size relaxed (a count that publishes nothing); version release/acquire, so a
//     thread that read version v sees the changes that produced v.
//  3. Every body that fails (throws) before its mutation completes leaves map, size and
//     version as they were; the lock itself is always held by the caller's RAII guard.
//
// # merge: all or nothing
// A batch (merge_json's parsed input) must be seen whole or not at all, also when the hasher,
// a key's copy or a value's move throws halfway. When none of those can throw (noexcept hasher
// and key_equal, nothrow key copy, nothrow value move) the batch is applied in place: only a
// std::bad_alloc from the table can then interrupt it (the map stays whole and usable, with
// part of the batch). Otherwise the batch is applied to a copy of the table, which replaces
// the table (Map::swap, noexcept) only once every entry is in: O(size) instead of O(batch),
// the price of a hasher or copy that may throw.
//
// Concurrency: see each body; the struct itself is shared by all threads of its map.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "safemap/detail/config.hpp"
#include "safemap/detail/lock.hpp"
#include "safemap/map.hpp"

namespace safemap::detail {

// Whether a batch can be applied to a table in place without an exception other than
// std::bad_alloc from the table's own allocations.
template <class K, class V, class Hash, class Eq>
inline constexpr bool nothrow_merge_v =
    noexcept(std::declval<const Hash&>()(std::declval<const K&>())) && noexcept(static_cast<bool>(
        std::declval<const Eq&>()(std::declval<const K&>(), std::declval<const K&>()))) &&
    std::is_nothrow_copy_constructible_v<K>&& std::is_nothrow_move_constructible_v<
        V>&& std::is_nothrow_move_assignable_v<V>;

template <class K, class V, class Hash, class Eq>
struct alignas(128) shard {
  using map_type = Map<K, V, Hash, Eq>;
  using size_type = std::size_t;

  shard() = default;
  explicit shard(size_type size_hint) : map(size_hint) {}
  explicit shard(map_type initial)
      : size(initial.size()), version(initial.empty() ? 0 : 1), map(std::move(initial)) {}
  shard(const shard&) = delete;
  shard& operator=(const shard&) = delete;

  // After a successful mutation (invariant 2).
  void changed_locked() noexcept {
    size.store(map.size(), std::memory_order_relaxed);
    version.store(version.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }

  // --- reads (lock held, shared or exclusive) -------------------------------------------------

  template <class Q>
  std::optional<V> load_locked(const Q& key) const {
    if (const V* v = map.find(key)) return *v;
    return std::nullopt;
  }

  // --- writes (lock held exclusively) ---------------------------------------------------------

  void store_locked(K key, V value) {
    map.insert_or_assign(std::move(key), std::move(value));
    changed_locked();
  }

  std::pair<V, bool> load_or_store_locked(K key, V value) {
    // try_emplace constructs from `value` only when it inserts, so `value` is intact otherwise.
    auto [stored, inserted] = map.try_emplace(std::move(key), std::move(value));
    if (inserted) changed_locked();
    return {*stored, !inserted};
  }

  template <class Q>
  std::optional<V> load_and_delete_locked(const Q& key) {
    V* v = map.find(key);
    if (v == nullptr) return std::nullopt;
    std::optional<V> removed(std::move(*v));
    map.erase(key);
    changed_locked();
    return removed;
  }

  template <class Q>
  bool erase_locked(const Q& key) {
    if (map.erase(key) == 0) return false;
    changed_locked();
    return true;
  }

  std::optional<V> swap_locked(K key, V value) {
    auto [stored, inserted] = map.try_emplace(std::move(key), std::move(value));
    std::optional<V> previous;
    if (!inserted) {
      previous.emplace(std::move(*stored));
      *stored = std::move(value);  // not moved from: try_emplace did not insert
    }
    changed_locked();
    return previous;
  }

  template <class Q>
  bool compare_and_swap_locked(const Q& key, const V& expected, V& desired) {
    V* v = map.find(key);
    if (v == nullptr || !(*v == expected)) return false;
    *v = std::move(desired);
    changed_locked();
    return true;
  }

  template <class Q>
  bool compare_and_delete_locked(const Q& key, const V& expected) {
    const V* v = map.find(key);
    if (v == nullptr || !(*v == expected)) return false;
    map.erase(key);
    changed_locked();
    return true;
  }

  // Calls f(current) once, inside mark() (the caller's re-entrancy marks, a prvalue), and
  // applies its result. If f throws, nothing changed.
  template <class F, class Mark>
  std::optional<V> compute_locked(const K& key, F& f, Mark&& mark) {
    V* current = map.find(key);
    std::optional<V> next;
    {
      auto marked = mark();
      next = f(current != nullptr ? std::optional<V>(*current) : std::optional<V>());
    }
    if (next.has_value()) {
      if (current != nullptr) {
        *current = *next;
      } else {
        map.try_emplace(key, *next);
      }
      changed_locked();
    } else if (current != nullptr) {
      map.erase(key);
      changed_locked();
    }
    return next;
  }

  void clear_locked() {
    if (map.empty()) return;
    map.clear();
    changed_locked();
  }

  // Stores every entry that for_each_entry(g) hands to g(const K&, V&) (values are moved
  // from), all or nothing (see the top of this file). Does not call changed_locked: the caller
  // does, once every shard of its batch is in.
  template <class ForEach>
  void merge_locked(ForEach&& for_each_entry) {
    if constexpr (nothrow_merge_v<K, V, Hash, Eq>) {
      try {
        for_each_entry([&](const K& k, V& v) { map.insert_or_assign(k, std::move(v)); });
      } catch (...) {
        changed_locked();  // std::bad_alloc: part of the batch is in; keep invariant 2
        throw;
      }
    } else {
      map_type next(map);  // a throw before the swap leaves map untouched
      for_each_entry([&](const K& k, V& v) { next.insert_or_assign(k, std::move(v)); });
      map.swap(next);
      // next (the old table) is destroyed here; the caller still holds the lock.
    }
  }

  // Read-modify-written by every acquisition, and read by every waiter: alone on its line.
  mutable rw_lock lock;
  // Written only by the lock's holder (the counters by writers, the Map header by writes);
  // a line of their own so that waiters polling the lock word do not take them from the
  // holder in the middle of its critical section.
  alignas(128) std::atomic<size_type> size{0};  // == map.size() whenever lock is free
  std::atomic<std::uint64_t> version{0};        // successful mutations of this shard
  map_type map;
};

// Holds the locks of shards[i] for every i in [0, n), taken in
// ascending index order (the order every whole-map call uses, so two of them cannot deadlock
// through writers queued on the writer-preferring locks), released in reverse on destruction
// even when taking them or the work under them throws.
template <class Shard, bool Exclusive>
class shard_locks {
 public:
  shard_locks(Shard* shards, std::size_t n) : shards_(shards) {
    for (; locked_ < n; ++locked_) acquire(shards_[locked_]);
  }
  shard_locks(const shard_locks&) = delete;
  shard_locks& operator=(const shard_locks&) = delete;
  ~shard_locks() {
    while (locked_ > 0) release(shards_[--locked_]);
  }

 private:
  static void acquire(Shard& s) noexcept {
    if constexpr (Exclusive) {
      s.lock.lock();
    } else {
      s.lock.lock_shared();
    }
  }
  static void release(Shard& s) noexcept {
    if constexpr (Exclusive) {
      s.lock.unlock();
    } else {
      s.lock.unlock_shared();
    }
  }

  Shard* shards_;
  std::size_t locked_ = 0;
};

}  // namespace safemap::detail
