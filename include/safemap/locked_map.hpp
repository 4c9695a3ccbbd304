// safemap/locked_map.hpp - LockedMap: one reader/writer lock around a safemap::Map.
//
// # What it is
// The simplest concurrent map that is correct: every call takes one lock (shared for reads,
// exclusive for writes) and runs the plain single-writer Map underneath. It is what Go
// programmers write by hand as `struct { sync.RWMutex; m map[K]V }`, with the lock made
// impossible to forget and values returned by copy so no reference outlives the lock.
//
// # When to use it (and when not)
//  - Few threads, or writes rare and cheap, or a map that must give a point-in-time view of
//    everything (range, snapshot) at the lowest cost: a snapshot is one table copy under one
//    shared lock.
//  - Many threads writing: every write serializes the whole map. Use ShardedMap (writes to
//    different shards proceed in parallel), or SyncMap/CowMap/TrieMap for read-mostly maps
//    whose readers should write nothing shared even while writes come often (LockedMap's
//    readers stop writing the lock word only while writes are rare: see the lock's bias).
//
// # The lock (detail::rw_lock) and the core (detail::shard)
// A word lock of our own (detail/lock.hpp): one atomic read-modify-write to take or release
// when uncontended; when contended a short spin with PAUSE and backoff, then yield, then a
// futex park. It prefers writers (a waiting writer keeps new readers out, so a steady stream
// of readers cannot starve it) and bounds the wait of readers behind a stream of writers (a
// reader that waited 1 ms gets in at the next release). Once readers on several threads
// overlap, it turns reader-biased: a reader then counts itself on a cache line of its own
// thread instead of writing the lock word, and a writer revokes the bias and waits for those
// readers (BRAVO; detail/lock.hpp says how and what it costs). Why a reader/writer lock and
// not a plain mutex, at 50% writes as well: the reader path is one fetch_add, the same cost
// as a mutex's CAS on the same cache line, so a mixed load should lose nothing while
// read-mostly loads keep their parallel readers. (Measured in bench/lock_bench.cpp against a
// Go-style mutex, this lock used as a mutex, absl::Mutex and oneTBB's rw mutexes: the
// spin-then-park locks are within noise of each other at 50% writes; lock.hpp has the numbers.) The
// lock is not recursive: a thread that already holds it and asks again would wait for itself; hence
// the re-entrancy rules below. It counts acquisitions that had to wait
// (stats().contended_acquisitions) only on the contended path. The lock, the counters and the Map
// are one detail::shard (the counters on the lock word's line, the Map header on lines of its
// own), the same core ShardedMap has many of: every per-key call, visit_all,
// erase_if, the all-or-nothing merge and read_view are written once, there; this class adds the
// re-entrancy checks and marks and the whole-map calls. load_or_store, erase and load_and_delete
// look under the shared lock first when the lock's last such call changed nothing
// (detail::shard::predict_noops).
//
// # Consistency
// Every call is linearizable: it takes effect at one instant while the lock is held. range()
// runs its callback under the shared lock, so it sees one point-in-time state, as does
// snapshot(). size() and version() read atomics kept next to the lock and take no lock: exact
// whenever no write is in flight.
//
// # Callbacks and re-entrancy (docs/design.md §4)
// visit(), range() (shared lock) and compute() (exclusive lock) call user code while holding
// the lock. For its duration the thread is marked in detail::held_locks, and every public
// call first looks there (one thread-local load when no callback runs on the thread):
//  - read calls (load, contains, visit, range, size, snapshot, version, stats) from inside a
//    callback run without taking the lock again: the thread already holds it, and the table
//    is not being modified (compute calls its function before it writes);
//  - write calls from inside a callback cannot be made safe (the shared lock cannot be
//    upgraded, and a write inside compute would change the table under compute's feet), so
//    they are reported as misuse_kind::reentrant_call through the misuse handler and refused
//    with safemap::misuse_error. The lock is released as the exception unwinds; the map stays
//    consistent and usable.
// Calling another map from a callback is allowed; the usual lock-order rules apply between
// maps (two threads each calling the other's map from callbacks can deadlock).
//
// # What is deliberately absent
// No iterators (a reference into the table cannot outlive the lock), no operator[] (it would
// hand out a reference). Bulk changes under one lock are merge, erase_if and a non-const
// visit_all (Boost-style visitation: see "Visitation, bulk erase and moves" below; on a
// non-const map visit hands f a V& under the exclusive lock, cvisit is the read).
//
// Concurrency: every member function may be called from any number of threads at once.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <ranges>
#include <shared_mutex>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "safemap/concurrent.hpp"
#include "safemap/detail/config.hpp"
#include "safemap/detail/lock.hpp"
#include "safemap/detail/shard.hpp"
#include "safemap/detail/visit.hpp"
#include "safemap/hash.hpp"
#include "safemap/map.hpp"

namespace safemap {

namespace detail {
// A lookup key Q other than K is accepted only when hasher and key_equal both opt in
// (is_transparent), exactly as Map does: std::string keys take std::string_view and const char*.
template <class Q, class K, class Hash, class Eq>
concept locked_map_lookup = transparent<Hash> && transparent<Eq> && !std::is_same_v<Q, K>;
}  // namespace detail

// LockedMap::stats(): the table and the lock, read under one shared lock.
struct LockedMapStats {
  std::size_t size = 0;                      // entries
  MapStats table;                            // the Map's shape (buckets, overflow, growth)
  std::uint64_t contended_acquisitions = 0;  // lock acquisitions that had to wait, ever
  std::uint64_t version = 0;                 // version() at the time of the call
};

template <class K, class V, class Hash = safemap::Hash<K>, class Eq = std::equal_to<>>
class LockedMap {
 public:
  using key_type = K;
  using mapped_type = V;
  using hasher = Hash;
  using key_equal = Eq;
  using size_type = std::size_t;
  using map_type = Map<K, V, Hash, Eq>;

 private:
  using held_locks = detail::held_locks;
  using core_type = detail::shard<K, V, Hash, Eq>;
  using read_lock = typename core_type::read_guard;

 public:
  // Concurrency: construction and destruction are not concurrent with any other call.
  LockedMap() = default;
  // Allocates the table for size_hint entries up front.
  explicit LockedMap(size_type size_hint) : core_(size_hint) {}
  // Takes over the entries of `initial` (from_json and load_snapshot build maps this way).
  explicit LockedMap(map_type initial) : core_(std::move(initial)) {}
  LockedMap(const LockedMap&) = delete;
  LockedMap& operator=(const LockedMap&) = delete;

  // --- reads (shared lock; from inside a callback of this map: no relock) --------------------

  // The value for key, or nullopt.
  // Concurrency: shared lock; runs in parallel with other reads.
  std::optional<V> load(const K& key) const { return load_impl(key); }
  template <detail::locked_map_lookup<K, Hash, Eq> Q>
  std::optional<V> load(const Q& key) const {
    return load_impl(key);
  }

  // The values of many keys, in key order (concurrent.hpp): out[i] = load(keys[i]); returns
  // how many were found. Groups of 64 keys are looked up with their cache misses overlapped
  // (Map::find_many), each under one shared acquisition: several times a loop of load out of
  // cache (docs/benchmarks.md, "Eleventh pass"). Each value is one its key held during the
  // call; two groups may see different states of the map.
  // Concurrency: shared lock, one acquisition per group; runs in parallel with other reads.
  std::size_t load_many(std::span<const K> keys, std::span<std::optional<V>> out) const {
    detail::check_many_out(keys.size(), out.size(), "safemap::LockedMap::load_many");
    return core_.load_many(keys, out, held_by_this_thread());
  }
  template <std::ranges::input_range R>
  std::vector<std::optional<V>> load_many(R&& keys) const {
    return detail::load_many_of(*this, std::forward<R>(keys));
  }

  // Concurrency: shared lock; runs in parallel with other reads.
  bool contains(const K& key) const { return contains_impl(key); }
  template <detail::locked_map_lookup<K, Hash, Eq> Q>
  bool contains(const Q& key) const {
    return contains_impl(key);
  }

  // Calls f(const V&) on the stored value, in place, if key is present; returns whether it
  // was. f must not block; it may call read methods of this map (they do not relock), and a
  // write from f is reported as misuse_kind::reentrant_call.
  // Concurrency: f runs under the shared lock, in parallel with other readers.
  template <class F>
  bool visit(const K& key, F f) const {
    return visit_impl(key, f);
  }
  template <detail::locked_map_lookup<K, Hash, Eq> Q, class F>
  bool visit(const Q& key, F f) const {
    return visit_impl(key, f);
  }

  // Calls f(const K&, const V&) for every entry; f may return bool, false stops. Sees one
  // point-in-time state. f may call read methods of this map; writes are reported as
  // misuse_kind::reentrant_call. Allocates nothing.
  // Concurrency: the whole walk runs under the shared lock (writers wait until it ends).
  template <class F>
  void range(F f) const {
    core_.for_each([&](const K& k, const V& v) { return detail::invoke_range_callback(f, k, v); },
                   held_by_this_thread(), marks());
  }

  // The consistent view json.hpp serializes without copying: calls f(walk), where walk(g)
  // calls g(const K&, const V&) for every entry; every reference stays valid until f returns.
  // f may call read methods of this map; writes are reported as misuse_kind::reentrant_call
  // (the same rule as ShardedMap's read_view).
  // Concurrency: the shared lock is held for the whole call (point-in-time).
  template <class F>
  void read_view(F&& f) const {
    detail::read_view(
        &core_, 1, held_by_this_thread(),
        [this] { return held_locks::scope(&core_.lock, held_locks::mode::shared); }, f);
  }

  // Entries, exact when no write is in flight.
  // Concurrency: lock-free (one atomic load).
  size_type size() const noexcept { return core_.size_word().load(std::memory_order_relaxed); }

  // A copy of the whole map at one point in time (its own hash seed).
  // Concurrency: shared lock for the duration of the copy.
  map_type snapshot() const {
    return with_read_lock([&]() -> map_type { return core_.map; });
  }

  // Grows by at least 1 on every call that changes the map (an overwrite counts even when the
  // value is equal); calls that change nothing (a failed compare_and_swap, erasing an absent
  // key, clearing an empty map) leave it alone. A change whose version a thread has read is
  // visible to that thread's later reads.
  // Concurrency: lock-free (one atomic load).
  std::uint64_t version() const noexcept {
    return core_.version_word().load(std::memory_order_acquire);
  }

  // Table shape and lock contention.
  // Concurrency: shared lock.
  LockedMapStats stats() const {
    return with_read_lock([&] {
      LockedMapStats s;
      s.size = core_.map.size();
      s.table = core_.map.stats();
      s.contended_acquisitions = core_.lock.contended();
      s.version = core_.version_word().load(std::memory_order_relaxed);
      return s;
    });
  }

  // --- writes (exclusive lock; from inside a callback of this map: reported) -----------------

  // Inserts or overwrites.
  // Concurrency: exclusive lock.
  void store(K key, V value) {
    write_check();
    core_.store(std::move(key), std::move(value));
  }

  // The existing value and true, or value and false after storing it.
  // Concurrency: the exclusive lock, under which the key is looked up; when the last
  // load_or_store that took it found its key (and for the first call), the shared lock first
  // (a hit ends there) and on a miss the exclusive lock, under which the key is looked up again
  // (detail::shard::predict_noops).
  std::pair<V, bool> load_or_store(K key, V value) {
    write_check();
    return core_.load_or_store(std::move(key), std::move(value));
  }

  // Removes key; the removed value, or nullopt if it was absent.
  // Concurrency: exclusive lock; when the last delete that took it (erase or load_and_delete)
  // found nothing, the shared lock first, and the exclusive one only if key is present or a
  // growth is in progress (detail::shard::predict_noops; the first delete takes the exclusive
  // lock).
  std::optional<V> load_and_delete(const K& key) { return load_and_delete_impl(key); }
  template <detail::locked_map_lookup<K, Hash, Eq> Q>
  std::optional<V> load_and_delete(const Q& key) {
    return load_and_delete_impl(key);
  }

  // true if something was removed.
  // Concurrency: exclusive lock; when the last delete that took it (erase or load_and_delete)
  // found nothing, the shared lock first, and the exclusive one only if key is present or a
  // growth is in progress (detail::shard::predict_noops; the first delete takes the exclusive
  // lock).
  bool erase(const K& key) { return erase_impl(key); }
  template <detail::locked_map_lookup<K, Hash, Eq> Q>
  bool erase(const Q& key) {
    return erase_impl(key);
  }

  // Stores value; returns the previous value, if any.
  // Concurrency: exclusive lock.
  std::optional<V> swap(K key, V value) {
    write_check();
    return core_.swap(std::move(key), std::move(value));
  }

  // Replaces the value with desired only if key is present and its value == expected.
  // Concurrency: exclusive lock.
  bool compare_and_swap(const K& key, const V& expected, V desired) {
    return compare_and_swap_impl(key, expected, desired);
  }
  template <detail::locked_map_lookup<K, Hash, Eq> Q>
  bool compare_and_swap(const Q& key, const V& expected, V desired) {
    return compare_and_swap_impl(key, expected, desired);
  }

  // Removes key only if it is present and its value == expected.
  // Concurrency: exclusive lock.
  bool compare_and_delete(const K& key, const V& expected) {
    return compare_and_delete_impl(key, expected);
  }
  template <detail::locked_map_lookup<K, Hash, Eq> Q>
  bool compare_and_delete(const Q& key, const V& expected) {
    return compare_and_delete_impl(key, expected);
  }

  // Atomic read-modify-write of one key: calls f(std::optional<V> current) exactly once and
  // applies its result (a value is stored, nullopt erases); returns the new state. f may call
  // read methods of this map (they see the state before this compute); a write from f is
  // reported as misuse_kind::reentrant_call. If f throws, the map is unchanged.
  // Concurrency: f runs under the exclusive lock; all other calls wait.
  template <class F>
  std::optional<V> compute(const K& key, F f) {
    write_check();
    return core_.compute(key, f, marks());
  }

  // Removes every entry (and draws a new hash seed, as Map::clear does).
  // Concurrency: exclusive lock.
  void clear() {
    write_check();
    core_.clear();
  }

  // Stores every entry of `entries` (overwriting existing keys) as one batch: readers see all
  // of them or none, and if the hasher, a key's copy or a value's move throws, the map is left
  // as it was (entries may have been moved from). merge_json applies parsed input this way.
  // Cost: O(entries) when those cannot throw, else O(size + entries) (detail/shard.hpp).
  // Concurrency: one exclusive lock for the whole batch.
  void merge(map_type&& entries) {
    write_check();
    core_.merge(std::move(entries));
  }

  // === Visitation, bulk erase and moves (Boost.Unordered's concurrent_flat_map habits) ========
  // On a non-const LockedMap, visit and visit_all hand f a V& under the exclusive lock: they are
  // writes (version() grows when f was called, and from inside a callback of this map they are
  // reported as misuse_kind::reentrant_call). cvisit, cvisit_all and every call on a const map
  // are reads under the shared lock (std::as_const(m).visit(k, f) is cvisit). f must not block;
  // if f throws, the exception propagates with the lock released and the map whole (whatever f
  // changed in the value before throwing stays, and counts as a change).

  // Moves every entry of other here; other is left empty and usable. This map takes over
  // other's version(); other's version() grows by 1 (a watcher of it sees a change).
  // Concurrency: not concurrent with any other call on either map.
  LockedMap(LockedMap&& other) noexcept(std::is_nothrow_default_constructible_v<map_type>)
      : LockedMap() {
    take_entries_of(other);
  }
  // As the move constructor; this map's previous entries are destroyed.
  // Concurrency: not concurrent with any other call on either map.
  LockedMap& operator=(LockedMap&& other) {
    if (this == &other) return *this;
    map_type previous;
    previous.swap(core_.map);
    take_entries_of(other);
    return *this;  // previous (this map's old entries) is destroyed here
  }

  // Calls f(V&) on the stored value, in place, if key is present; returns whether it was. f
  // may change the value (not the key); the call counts as a change (version() grows). From f,
  // read calls of this map run without relocking (they see the value as f left it so far);
  // writes are reported as misuse_kind::reentrant_call.
  // Concurrency: f runs under the exclusive lock; all other calls wait.
  template <class F>
  bool visit(const K& key, F f) {
    return visit_mutable_impl(key, f);
  }
  template <detail::locked_map_lookup<K, Hash, Eq> Q, class F>
  bool visit(const Q& key, F f) {
    return visit_mutable_impl(key, f);
  }

  // visit with f(const V&) on any map, const or not: the read (see visit() const).
  // Concurrency: f runs under the shared lock, in parallel with other readers.
  template <class F>
  bool cvisit(const K& key, F f) const {
    return visit_impl(key, f);
  }
  template <detail::locked_map_lookup<K, Hash, Eq> Q, class F>
  bool cvisit(const Q& key, F f) const {
    return visit_impl(key, f);
  }

  // Calls f(const K&, V&) on every entry, in place; returns how many. f may change values; the
  // call counts as a change if the map was not empty. f's rules are visit()'s.
  // Concurrency: one exclusive lock for the whole walk (point-in-time; all other calls wait).
  template <class F>
  size_type visit_all(F f) {
    write_check();
    return core_.visit_all(f, marks());
  }

  // Calls f(const K&, const V&) on every entry, in place; returns how many. f's rules are
  // range()'s (reads of this map work, writes are reported). Allocates nothing.
  // Concurrency: the shared lock for the whole walk (point-in-time; writers wait).
  template <class F>
  size_type visit_all(F f) const {
    size_type n = 0;
    core_.for_each(
        [&](const K& k, const V& v) {
          f(k, v);
          ++n;
        },
        held_by_this_thread(), marks());
    return n;
  }
  // visit_all with f(const K&, const V&) on any map, const or not.
  template <class F>
  size_type cvisit_all(F f) const {
    return visit_all(std::move(f));
  }

  // Removes every entry for which pred(const K&, const V&) is true; returns how many. All of
  // it is one atomic step: no other call sees a state in between. pred may read this map (it
  // sees the entries not yet removed); writes from it are reported. If pred throws, the entries
  // already removed stay removed and the rest stay.
  // Concurrency: one exclusive lock for the whole walk.
  template <class Pred>
  size_type erase_if(Pred pred) {
    write_check();
    return core_.erase_if(pred, marks());
  }

  // Inserts (key, value) if key is absent and returns true; otherwise calls f(V&) on the
  // existing value (which f may change, as in visit) and returns false, in one atomic step
  // with the check. f's rules are visit()'s.
  // Concurrency: exclusive lock.
  template <class F>
  bool insert_or_visit(K key, V value, F f) {
    write_check();
    return core_.insert_or_visit(std::move(key), std::move(value), f, marks());
  }

  // emplace_or_visit(key, args..., f): as insert_or_visit, with the value constructed from
  // args in place only if key is absent (f comes last, as in Boost).
  // Concurrency: exclusive lock.
  template <class... ArgsThenF>
  bool emplace_or_visit(K key, ArgsThenF&&... args_then_f) {
    write_check();
    return core_.emplace_or_visit(std::move(key), marks(), std::forward<ArgsThenF>(args_then_f)...);
  }

 private:
  // The move constructor's and assignment's body: this map's table is empty.
  void take_entries_of(LockedMap& other) noexcept {
    core_.map.swap(other.core_.map);
    const std::uint64_t v = other.core_.version_word().load(std::memory_order_relaxed);
    core_.size_word().store(core_.map.size(), std::memory_order_relaxed);
    core_.version_word().store(v, std::memory_order_release);
    other.core_.size_word().store(0, std::memory_order_relaxed);
    other.core_.version_word().store(v + 1, std::memory_order_release);
  }

  template <class Q, class F>
  bool visit_mutable_impl(const Q& key, F& f) {
    write_check();
    return core_.visit_mutable(key, f, marks());
  }

  // === end of visitation, bulk erase and moves ==================================================

 private:
  // True when a callback of this map runs on this thread (the lock is already held). One
  // thread-local load when the thread runs no callback at all.
  bool held_by_this_thread() const noexcept {
    return held_locks::held(&core_.lock) != held_locks::mode::none;
  }

  // Runs fn under the shared lock, or directly when this thread's callback holds the lock.
  template <class Fn>
  auto with_read_lock(Fn&& fn) const {
    if (SAFEMAP_UNLIKELY(held_by_this_thread())) return fn();
    read_lock lock(core_.lock);
    return fn();
  }

  // The marks of a callback of this map, handed to the core: the lock, held in mode m.
  auto marks() const noexcept {
    return [this](held_locks::mode m) { return held_locks::scope(&core_.lock, m); };
  }

  // A write from inside one of our callbacks is reported (it would wait for this thread).
  void write_check() const {
    if (SAFEMAP_UNLIKELY(held_by_this_thread())) detail::report_reentrant_write();
  }

  template <class Q>
  std::optional<V> load_impl(const Q& key) const {
    return core_.load(key, held_by_this_thread());
  }

  template <class Q>
  bool contains_impl(const Q& key) const {
    return core_.contains(key, held_by_this_thread());
  }

  template <class Q, class F>
  bool visit_impl(const Q& key, F& f) const {
    return core_.visit(key, f, held_by_this_thread(), marks());
  }

  template <class Q>
  std::optional<V> load_and_delete_impl(const Q& key) {
    write_check();
    return core_.load_and_delete(key);
  }

  template <class Q>
  bool erase_impl(const Q& key) {
    write_check();
    return core_.erase(key);
  }

  template <class Q>
  bool compare_and_swap_impl(const Q& key, const V& expected, V& desired) {
    write_check();
    return core_.compare_and_swap(key, expected, desired);
  }

  template <class Q>
  bool compare_and_delete_impl(const Q& key, const V& expected) {
    write_check();
    return core_.compare_and_delete(key, expected);
  }

  // The one shard: lock, size, version and the Map (detail/shard.hpp, its invariants).
  core_type core_;
};

}  // namespace safemap
