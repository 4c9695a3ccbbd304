// safemap/detail/shard.hpp - the shard core shared by LockedMap and ShardedMap.
//
// # What it is
// One shard: a safemap::Map behind one detail::rw_lock, with its entry count and version
// counter kept next to the lock. LockedMap is one shard; ShardedMap is an array of them. Every
// per-key call (lookups, writes, visitation with its callback), the per-shard walks (visit_all,
// erase_if, for_each), the batch merge and read_view live here once, each taking the shard's
// lock itself; the maps add only what differs between them: routing, the re-entrancy checks
// made before calling in (and the marks handed in for callbacks), and the whole-map calls
// (range, snapshot, stats, ShardedMap's routed merge). Why not LockedMap as a one-shard
// ShardedMap: it would hash every key for routing, keep a shard array and an index, and its
// range would copy (ShardedMap's range runs its callback on a copy; LockedMap's, under the
// lock, on the table itself). The *_locked bodies are for callers that hold the lock already
// (ShardedMap's constructor, before the map is shared).
//
// # Layout
// alignas(128): x86 prefetches cache lines in adjacent pairs, so 64-byte alignment would still
// let two shards' lock words ping-pong between cores. Nine such 128-byte units per shard
// (uint64 -> uint64):
//  - the lock word with its contention counter and bias flag, and the shard's size and version
//    (rw_lock::holder_word): every acquisition on the word read-modify-writes it, and every
//    waiter polls it (a reader's fetch_add even writes it while a writer holds); a writer
//    must hold the line exclusively to release the lock anyway, so the counters it bumps
//    just before cost it at most the transfer the release would pay;
//  - four units of the lock's biased-reader counters (rw_lock: each written by the threads
//    that use it, and by a revoking writer only when it has to sleep on one);
//  - the no-op hints (read just before locking, written by an exclusive holder only when
//    they flip, so read-shared in every core);
//  - the Map's header (bucket pointer, B, count, ...: 360 bytes for uint64 -> uint64), read by
//    every call under the lock and written only by writes that change the table's shape (an
//    insert, an erase, growth; the hot writes under this lock take no misuse-check bit), so
//    a run of overwrites and lookups leaves it read-shared in every core that uses the shard.
// When the header shared a line with the word (before issue 10), a waiter's poll could take
// it from the holder in the middle of its critical section. When it shared one with the
// counters, every write made the next thread to use the shard fetch it from the writer's
// core (ShardedMap's 50/50 mix at 2 threads: 110-114 ns/op then, 74-75 now; rw_lock's
// holder_word has the measurement). Nothing another shard writes lives on these lines;
// readers of other shards never read them.
//
// # Invariants
//  1. map is read or written only with lock held (shared for reads, exclusive for writes).
//  2. size == map.size() and version counts the successful mutations whenever lock is free;
//     both are stored only with lock held exclusively (plain load + store, no RMW) and read
//     without it: size relaxed (a count that publishes nothing); version release/acquire, so a
//     thread that read version v sees the changes that produced v.
//  3. Every body that fails (throws) before its mutation completes leaves map, size and
//     version as they were; the lock is always held through an RAII guard, so a throw
//     releases it. A callback that throws after changing values in place leaves its changes,
//     with size and version republished (publish_on_exit).
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

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <type_traits>
#include <utility>

#include "safemap/detail/config.hpp"
#include "safemap/detail/lock.hpp"
#include "safemap/detail/visit.hpp"
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

// A guess whether the next call of one kind leaves the table unchanged: the outcome of the
// last such call that took the exclusive lock (see shard::predict_noops). Stored only when it
// changes, so a steady run of one outcome never writes the line it lives on.
class noop_hint {
 public:
  explicit noop_hint(bool initial) noexcept : noop_(initial) {}
  bool guess() const noexcept { return noop_.load(std::memory_order_relaxed); }
  void saw(bool noop) noexcept {
    if (noop_.load(std::memory_order_relaxed) != noop) {
      noop_.store(noop, std::memory_order_relaxed);
    }
  }

 private:
  std::atomic<bool> noop_;
};

template <class K, class V, class Hash, class Eq>
struct alignas(128) shard {
  using map_type = Map<K, V, Hash, Eq>;
  using size_type = std::size_t;
  using read_guard = rw_guard<false>;
  using write_guard = rw_guard<true>;
  using mode = held_locks::mode;

  // Calls that may turn out not to change the table (a load_or_store that finds its key, an
  // erase or load_and_delete that does not): look under the shared lock first, or go straight
  // to the exclusive lock? Looking first (then, if there is something to change, taking the
  // exclusive lock and looking again: another thread may have changed the key in between),
  // as Go's map + sync.RWMutex idiom does, lets the no-op calls on one hot key run beside
  // each other (ShardedMap's load-or-store-collision: 91 -> 42 ns/op at 2 threads), but makes
  // every call that does change the table pay two lock round trips. So each shard predicts:
  // a noop_hint per kind remembers whether the last such call that took the exclusive lock
  // was a no-op, and the next one looks first only if it was (or if no exclusive call has
  // disagreed since). A run of no-ops reads in parallel, a run of changes takes one lock
  // each; a wrong guess costs what the other strategy always costs (a second round trip, or
  // one serialized no-op). false: load_or_store always looks first and deletes never do (the
  // behaviour before the hints, kept for the A/B measurement; the command is in
  // docs/design.md, LockedMap and ShardedMap).
  static constexpr bool predict_noops = true;

  shard() = default;
  explicit shard(size_type size_hint) : map(size_hint) {}
  explicit shard(map_type initial) : map(std::move(initial)) {
    size_word().store(map.size(), std::memory_order_relaxed);
    version_word().store(map.empty() ? 0 : 1, std::memory_order_relaxed);
  }
  shard(const shard&) = delete;
  shard& operator=(const shard&) = delete;

  // After a successful mutation (invariant 2).
  void changed_locked() noexcept {
    size_word().store(map.size(), std::memory_order_relaxed);
    version_word().store(version_word().load(std::memory_order_relaxed) + 1,
                         std::memory_order_release);
  }

  // === The calls, each taking the lock itself =================================================
  // The maps call these after their re-entrancy checks, so a body here never reports. Two
  // arguments carry what only the map knows:
  //  - held (reads): this thread already holds the lock (a callback of the map runs on it), so
  //    the body neither relocks nor adds marks: the outer callback's marks stay in force;
  //  - marks(mode): the map's re-entrancy marks for a callback's duration (a prvalue scope;
  //    LockedMap marks its lock, ShardedMap its shard's lock and itself).
  // A callback runs only inside marks(...), and only after the lookup that decides whether it
  // runs; an exception from it propagates with the lock released (the guard's destructor) and
  // the counters republished when the table may have changed (publish_on_exit).

  // --- reads (shared lock) -------------------------------------------------------------------

  // A lookup under the lock this call just took: no thread can be writing the table (a
  // writer needs the lock exclusively), so Map's misuse checks could never fire and are
  // skipped (detail::map_access). A call made from inside a callback (held) keeps them: the
  // callback may run inside one of this thread's own Map writes. For the same reason the
  // writes that run no callback (store, load_or_store, erase, load_and_delete, swap,
  // compare_and_delete) go through map_access's _unsynchronized writes, which skip the writing
  // bit's atomic exchange. The other writes (those of compute, emplace_or_visit,
  // insert_or_visit and merge) keep Map's checked calls: they could skip them too, but are not
  // where the time went.
  template <class Q>
  const V* find_freshly_locked(const Q& key) const {
    return map_access::find_unsynchronized(map, key);
  }

  template <class Q>
  std::optional<V> load(const Q& key, bool held) const {
    if (held) return load_locked(key);
    read_guard guard(lock);
    if (const V* v = find_freshly_locked(key)) return *v;
    return std::nullopt;
  }

  // load of every key (LockedMap::load_many): Map's batched lookup under one shared
  // acquisition per group of keys, so a writer waits behind at most one group's lookups and
  // value copies (64: one batch of Map::find_many, ~1-3 µs out of cache for small values)
  // and the acquisition costs a sixty-fourth of a load's. From inside a callback (held): Map's
  // checked find, key by key.
  static constexpr std::size_t load_many_group = 64;

  std::size_t load_many(std::span<const K> keys, std::span<std::optional<V>> out, bool held) const {
    std::size_t found = 0;
    if (held) {
      for (std::size_t i = 0; i < keys.size(); ++i) {
        const V* v = map.find(keys[i]);
        put_value(out[i], v);
        found += v != nullptr;
      }
      return found;
    }
    return load_group(
        keys.size(), [&](std::size_t i) -> const K& { return keys[i]; },
        [&](std::size_t i) -> std::optional<V>& { return out[i]; });
  }

  // The lookups of n keys of this shard (key_at(i)) into out(i), load_many_group at a time,
  // each group under one shared acquisition; how many were found. (ShardedMap::load_many
  // hands each shard its keys of a batch this way.)
  template <class KeyAt, class Out>
  std::size_t load_group(std::size_t n, KeyAt&& key_at, Out&& out) const {
    std::size_t found = 0;
    for (std::size_t base = 0; base < n; base += load_many_group) {
      read_guard guard(lock);
      found += map_access::load_many_unsynchronized(
          map, std::min(load_many_group, n - base),
          [&](std::size_t i) -> decltype(auto) { return key_at(base + i); },
          [&](std::size_t i) -> std::optional<V>& { return out(base + i); });
    }
    return found;
  }

  template <class Q>
  bool contains(const Q& key, bool held) const {
    if (held) return map.contains(key);
    read_guard guard(lock);
    return find_freshly_locked(key) != nullptr;
  }

  // f(const V&) on key's value if present.
  template <class Q, class F, class Marks>
  bool visit(const Q& key, F& f, bool held, Marks&& marks) const {
    if (held) {
      const V* v = map.find(key);
      if (v == nullptr) return false;
      f(*v);
      return true;
    }
    read_guard guard(lock);
    const V* v = find_freshly_locked(key);
    if (v == nullptr) return false;
    auto marked = marks(mode::shared);
    f(*v);
    return true;
  }

  // map.for_each(g) with g(const K&, const V&) (returning bool: false stops). Under the lock
  // this call takes, the walk needs no pin or misuse checks: no writer gets in, and a write
  // from g is refused by the map's re-entrancy check before it touches the table.
  template <class G, class Marks>
  void for_each(G&& g, bool held, Marks&& marks) const {
    if (held) {
      map_access::for_each_locked(map, false, g);
      return;
    }
    read_guard guard(lock);
    auto marked = marks(mode::shared);
    map_access::for_each_locked(map, true, g);
  }

  // --- writes (exclusive lock) ---------------------------------------------------------------

  void store(K key, V value) {
    write_guard guard(lock);
    map_access::insert_or_assign_unsynchronized(map, std::move(key), std::move(value));
    changed_locked();
  }

  // The value and true if key is present, else value and false after storing it.
  std::pair<V, bool> load_or_store(K key, V value) {
    if (!predict_noops || los_noop.guess()) {
      read_guard guard(lock);
      if (const V* v = find_freshly_locked(key)) return {*v, true};
    }
    write_guard guard(lock);
    // try_emplace constructs from `value` only when it inserts, so `value` is intact
    // otherwise. It also looks again: a store between the two locks is found here.
    auto [stored, inserted] =
        map_access::try_emplace_unsynchronized(map, std::move(key), std::move(value));
    if (inserted) changed_locked();
    los_noop.saw(!inserted);
    return {*stored, !inserted};
  }

  // A delete's first look, when delete_noop predicts it finds nothing: true when key is absent
  // under the shared lock (the delete is over: it linearizes there). false: go on under the
  // exclusive lock, which looks again. Also false while the table has write work pending (a
  // growth to advance, a retired block to free): as in Go, every delete does that work, even
  // of an absent key, so a run of no-op deletes still finishes a growth and frees its memory.
  template <class Q>
  bool absent_under_shared_lock(const Q& key) const {
    if (!predict_noops || !delete_noop.guess()) return false;
    read_guard guard(lock);
    return !map_access::has_write_work(map) && find_freshly_locked(key) == nullptr;
  }

  template <class Q>
  std::optional<V> load_and_delete(const Q& key) {
    if (absent_under_shared_lock(key)) return std::nullopt;
    write_guard guard(lock);
    // One probe that moves the value out just before the entry goes: a throwing hasher or
    // move leaves the entry and its value as they were.
    std::optional<V> removed = map_access::extract_value_unsynchronized(map, key);
    delete_noop.saw(!removed);
    if (removed) changed_locked();
    return removed;
  }

  template <class Q>
  bool erase(const Q& key) {
    if (absent_under_shared_lock(key)) return false;
    write_guard guard(lock);
    const bool erased = map_access::erase_unsynchronized(map, key) != 0;
    delete_noop.saw(!erased);
    if (erased) changed_locked();
    return erased;
  }

  std::optional<V> swap(K key, V value) {
    write_guard guard(lock);
    auto [stored, inserted] =
        map_access::try_emplace_unsynchronized(map, std::move(key), std::move(value));
    std::optional<V> previous;
    if (!inserted) {
      previous.emplace(std::move(*stored));
      *stored = std::move(value);  // not moved from: try_emplace did not insert
    }
    changed_locked();
    return previous;
  }

  template <class Q>
  bool compare_and_swap(const Q& key, const V& expected, V& desired) {
    write_guard guard(lock);
    V* v = map.find(key);
    if (v == nullptr || !(*v == expected)) return false;
    *v = std::move(desired);
    changed_locked();
    return true;
  }

  template <class Q>
  bool compare_and_delete(const Q& key, const V& expected) {
    write_guard guard(lock);
    // One hash and one probe: the comparison runs on the entry the erase found.
    auto equal = [&](const V& v) { return v == expected; };  // Map converts it to bool
    if (map_access::erase_if_value_unsynchronized(map, key, equal) == 0) return false;
    changed_locked();
    return true;
  }

  // Calls f(current) once, inside marks, and applies its result. If f throws, nothing changed.
  template <class F, class Marks>
  std::optional<V> compute(const K& key, F& f, Marks&& marks) {
    write_guard guard(lock);
    V* current = map.find(key);
    std::optional<V> next;
    {
      auto marked = marks(mode::exclusive);
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

  void clear() {
    write_guard guard(lock);
    if (map.empty()) return;
    map.clear();
    changed_locked();
  }

  // f(V&) on key's value if present, in place; counts as a change.
  template <class Q, class F, class Marks>
  bool visit_mutable(const Q& key, F& f, Marks&& marks) {
    write_guard guard(lock);
    V* v = map.find(key);
    if (v == nullptr) return false;
    publish_on_exit<shard> publish(*this, true);
    auto marked = marks(mode::exclusive);
    f(*v);
    return true;
  }

  // f(const K&, V&) on every entry, in place; how many. A change if the table was not empty.
  template <class F, class Marks>
  size_type visit_all(F& f, Marks&& marks) {
    write_guard guard(lock);
    publish_on_exit<shard> publish(*this, !map.empty());
    auto marked = marks(mode::exclusive);
    size_type n = 0;
    map.for_each([&](const K& k, V& v) {
      f(k, v);
      ++n;
    });
    return n;
  }

  // Removes the entries for which pred(const K&, const V&) holds; how many.
  template <class Pred, class Marks>
  size_type erase_if(Pred& pred, Marks&& marks) {
    write_guard guard(lock);
    publish_on_exit<shard> publish(*this, false);
    auto marked = marks(mode::exclusive);
    return map_erase_if(map, [&](const auto& e) {
      return static_cast<bool>(pred(e.first, static_cast<const V&>(e.second)));
    });
  }

  // Inserts (key, value) if key is absent (true); else f(V&) on the stored value (false).
  template <class F, class Marks>
  bool insert_or_visit(K&& key, V&& value, F& f, Marks&& marks) {
    auto build = [&](auto&& make) -> decltype(auto) { return make(std::move(value)); };
    return emplace_or_visit_built(std::move(key), build, f, marks);
  }

  // args_then_f: the value's constructor arguments, then f (visit.hpp's split_emplace_args).
  // The value is constructed in place only if key is absent.
  template <class Marks, class... ArgsThenF>
  bool emplace_or_visit(K&& key, Marks&& marks, ArgsThenF&&... args_then_f) {
    return split_emplace_args(
        [&](auto& build, auto& f) {
          return emplace_or_visit_built(std::move(key), build, f, marks);
        },
        std::forward<ArgsThenF>(args_then_f)...);
  }

  // Stores every entry of entries (values moved from), all or nothing (see the top of this
  // file).
  void merge(map_type&& entries) {
    write_guard guard(lock);
    if (entries.empty()) return;
    if constexpr (nothrow_merge_v<K, V, Hash, Eq>) {
      try {
        entries.for_each([&](const K& k, V& v) { map.insert_or_assign(k, std::move(v)); });
      } catch (...) {
        changed_locked();  // std::bad_alloc: part of the batch is in; keep invariant 2
        throw;
      }
    } else {
      map_type next(map);  // a throw before the swap leaves map untouched
      entries.for_each([&](const K& k, V& v) { next.insert_or_assign(k, std::move(v)); });
      map.swap(next);
      // next (the old table) is destroyed here, before the guard releases the lock.
    }
    changed_locked();
  }

  // --- with the lock held by the caller -----------------------------------------------------

  // build(make) calls make(the value's constructor arguments...). Takes the lock.
  template <class Build, class F, class Marks>
  bool emplace_or_visit_built(K&& key, Build& build, F& f, Marks& marks) {
    write_guard guard(lock);
    auto [stored, inserted] = build([&](auto&&... args) {
      return map.try_emplace(std::move(key), std::forward<decltype(args)>(args)...);
    });
    if (inserted) {
      changed_locked();
      return true;
    }
    publish_on_exit<shard> publish(*this, true);
    auto marked = marks(mode::exclusive);
    f(*stored);
    return false;
  }

  template <class Q>
  std::optional<V> load_locked(const Q& key) const {
    if (const V* v = map.find(key)) return *v;
    return std::nullopt;
  }

  void store_locked(K key, V value) {
    map.insert_or_assign(std::move(key), std::move(value));
    changed_locked();
  }

  // The word is read-modify-written by every acquisition on it, and read by every waiter.
  // The no-op hints follow the lock's reader counters on a unit of their own: every caller of
  // load_or_store, erase and load_and_delete reads them just before it takes the lock, and
  // only an exclusive holder writes them, when an outcome flips (see predict_noops; relaxed
  // atomics: any value is correct), so they stay read-shared in every core. load_or_store
  // starts by looking first (a cache is mostly hit), deletes by going straight to the
  // exclusive lock.
  mutable rw_lock lock;
  noop_hint los_noop{true};
  noop_hint delete_noop{false};
  // The Map header: read by every call under the lock, written only by writes that change
  // the table's shape (an insert, an erase, growth), so an overwrite leaves it read-shared in
  // every core that uses this shard. On a unit of its own: waiters polling the lock word do
  // not take it from the holder, and the counters, which every write changes, are not on it
  // (they are on the word's line: rw_lock::holder_word).
  alignas(128) map_type map;

  // The counters (invariant 2): size == map.size() whenever lock is free; version counts this
  // shard's successful mutations.
  std::atomic<std::uint64_t>& size_word() noexcept { return lock.holder_word(0); }
  std::atomic<std::uint64_t>& version_word() noexcept { return lock.holder_word(1); }
  const std::atomic<std::uint64_t>& size_word() const noexcept { return lock.holder_word(0); }
  const std::atomic<std::uint64_t>& version_word() const noexcept { return lock.holder_word(1); }
  static_assert(sizeof(size_type) <= sizeof(std::uint64_t));
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

// The consistent view json.hpp serializes without copying (both maps' read_view, one rule):
// calls f(walk), where walk(g) calls g(const K&, const V&) for every entry of shards[0, n);
// every reference stays valid until f returns. Unless held (this thread already holds every
// shard: a callback of the map runs on it), every shard's shared lock is taken in index order
// (as shard_locks does) and held, and marks() marks the whole map for f's duration: reads
// from f need no relock, writes are reported by the map. The walk is then unpinned
// (map_access::for_each_locked): calling it after f has returned, or from another thread,
// walks tables no lock protects (undefined, like any reference kept past f).
template <class Shard, class Marks, class F>
void read_view(const Shard* shards, std::size_t n, bool held, Marks&& marks, F& f) {
  auto walk = [shards, n, freshly_locked = !held](auto&& g) {
    for (std::size_t i = 0; i < n; ++i) {
      map_access::for_each_locked(shards[i].map, freshly_locked,
                                  [&g](const auto& k, const auto& v) { g(k, v); });
    }
  };
  if (held) {
    f(walk);
    return;
  }
  shard_locks<const Shard, false> locks(shards, n);
  auto marked = marks();
  f(walk);
}

}  // namespace safemap::detail
