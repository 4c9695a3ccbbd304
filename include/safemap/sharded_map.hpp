// safemap/sharded_map.hpp - ShardedMap: N independently locked safemap::Maps.
//
// # What it is
// The key space is split into a power-of-two number of shards; each shard is a LockedMap in
// miniature - literally: the detail::shard core (a writer-preferring, spin-then-park
// detail::rw_lock, a Map, and its own size and version counters) of which LockedMap has one -
// on its own cache lines. A call hashes the key once to pick the shard and then locks only
// that shard, so writers to different shards run in parallel. This is the classic
// lock-striping design (Java's ConcurrentHashMap before 8, Go's concurrent-map package).
//
// # When to use it (and when not)
//  - Many threads with a real share of writes: contention falls roughly by the shard count.
//  - Not when a point-in-time range() is required (it is per shard, see below) or when the
//    map is tiny and read-mostly (SyncMap/CowMap readers touch no lock word at all).
//
// # Routing: which hash bits pick the shard
// Map consumes the low B bits of a hash (bucket index) and the top 8 bits (tophash). The
// shard index is taken from the log2(shards) bits just below the top byte:
//     shard = (h >> (56 - log2(shards))) & (shards - 1)     (bits 48..55 for 256 shards)
// so it is independent of both even when the router and the shard tables hash a key the same
// way (a user hasher without a seed). Routing with the low bits would send to shard s only
// keys whose low bits equal s: inside the shard those keys would fill 1/shards of the buckets
// and leave the rest empty (long overflow chains); routing with the top byte would give every
// key of a shard nearly the same tophash and turn the tophash filter into a key comparison.
// The router has its own Hash object (one seed for the routing); each shard's Map has its own
// (Map::clear reseeds it). A hasher without is_avalanching gets the same extra mixing step
// Map gives it. tests/strategies/sharded_map_test.cpp checks both the balance of the shards
// and the bucket use inside them with a shared, deterministic hasher.
//
// # Consistency
//  - load/store/compute/...: linearizable (one shard, one lock).
//  - snapshot(): point in time. It takes every shard's shared lock in index order 0..n-1,
//    copies, then releases them all. The fixed order is what keeps concurrent snapshots from
//    deadlocking each other through writers queued on the writer-preferring locks.
//  - range(): consistent per shard, not across shards. Each shard's entries are copied into a
//    buffer under that shard's shared lock, the lock is released, then the callback runs on
//    the copies; so a range sees each key at most once and every shard at one instant, but
//    two shards at different instants. The callback holds no lock: it may call any method of
//    this map, writes included. A shard of up to 4 KiB of entries is copied to range's
//    stack; a larger one to a per-thread buffer kept across calls, so a range allocates
//    nothing once that buffer has grown to the largest shard (range_buffer).
//  - read_view(): point in time (every shard's shared lock, in index order); its callback may
//    read this map (no relock) and its writes are reported, the rule LockedMap has.
//  - size(), version(): the sum of per-shard atomics, read without locks. Exact when no write
//    is in flight; version() never goes backwards as seen by one thread.
//  - clear(): each shard is cleared atomically, one after another.
//
// # Callbacks and re-entrancy (docs/design.md §4)
// visit() and compute() run their callback under one shard's lock (shared, exclusive). From
// inside such a callback, on the same thread:
//  - read calls that need only that shard (load, contains, visit of a key of the same shard),
//    and size()/version() (no lock), run without relocking;
//  - everything else - any write, a read of a key in another shard, range, snapshot, stats
//    (unless the map has a single shard) - is reported as misuse_kind::reentrant_call through
//    the misuse handler and refused with safemap::misuse_error. Why even reads of another
//    shard: taking a second shard lock while holding one can deadlock. Thread A, in a
//    callback, holds shard 5 and asks for shard 3; snapshot S holds shards 0..3 and waits for
//    shard 5 behind writer W5, queued on shard 5 behind A; A in turn waits behind writer W3,
//    queued on shard 3 behind S. A -> W3 -> S -> W5 -> A is a cycle, so the map refuses the
//    first step instead of hanging.
// The check is one thread-local load when no callback runs on the thread (detail::held_locks).
// range() callbacks hold no lock and may do anything (except in a range started from inside
// a visit/compute callback of a one-shard map: that range reads under the lock already held,
// so writes from its callback are reported too).
//
// # Memory
// Each shard is a detail::shard (detail/shard.hpp), alignas(128): x86 prefetches cache lines
// in adjacent pairs, so 64-byte alignment would still let two shards' lock words ping-pong
// between cores. An empty shard costs 1,152 bytes: the lock word and the shard's size and
// version counters on its first 128 (a writer releasing the lock takes that line anyway), the
// lock's eight biased-reader counters (64 each) on the next 512, two one-byte no-op hints on 128 of
// their own, and the Map header (360 bytes for uint64 -> uint64) on the last 384, so that threads
// waiting for the lock do not take the holder's header from it, and a write that only
// overwrites a value leaves the header read-shared (detail/shard.hpp); its Map allocates
// buckets on the first insert. 256 shards: 288 KiB.
//
// Concurrency: every member function may be called from any number of threads at once.
#pragma once

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <ranges>
#include <shared_mutex>
#include <span>
#include <thread>
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

// ShardedMap::stats(): shards are read one after another (not one point in time).
struct ShardedMapStats {
  std::size_t size = 0;                        // entries (sum of shard_sizes)
  std::size_t shards = 0;                      // shard count
  std::vector<std::size_t> shard_sizes;        // entries per shard
  std::size_t max_shard_size = 0;              //
  std::size_t min_shard_size = 0;              //
  double mean_shard_size = 0;                  // size / shards
  double imbalance = 0;                        // max / mean; 1 is perfect, 0 if empty
  std::vector<std::uint64_t> shard_contended;  // contended lock acquisitions per shard
  std::uint64_t contended_acquisitions = 0;    // sum of shard_contended
  std::uint64_t version = 0;                   // sum of the shard versions
  MapStats table;  // all shard tables together: counts and bytes summed, log2_buckets the
                   // largest B, growing if any shard grows, load_factor = size / buckets
};

namespace detail {

// The default shard count: 4 shards per hardware thread, rounded up to a power of two, at
// least 8 and at most 256. Why 4x: with T threads each locking a random shard among S, an
// acquisition finds its shard held with probability about 1 - (1 - 1/S)^(T-1) times the
// share of time a thread holds a lock; S = 4T keeps that under 22% even for threads that do
// nothing but write, where S = T gives 63%. Measured with stats().contended_acquisitions
// (8 threads, 50% store / 50% load over 100k int keys, on the 2-core test machine, two runs):
// 8 shards 3.4-7.8% of acquisitions contended, 32: 2.0-2.7%, 64: 1.1-1.3%, 128: 0.5-0.7%,
// 256: 0.3-0.4% - halving with each doubling, as the model says, so the absolute gain past a
// few shards per thread is small. More shards cost memory (256 B each, 64 KiB at 256) and
// make the whole-map calls (snapshot, range, size, version, stats: O(shards)) slower; at
// least 8 because small machines run more threads than cores, and a lock holder that is
// preempted stalls everyone on its shard. 256 also keeps the shard index in bits 48..55.
// TODO: the ns/op timings on that shared 2-core machine were too noisy to rank the counts;
// re-measure throughput on a many-core machine with safemap-bench.
inline constexpr std::size_t default_shards_per_thread = 4;
inline constexpr std::size_t min_default_shards = 8;
inline constexpr std::size_t max_default_shards = 256;
// Far beyond any useful count; keeps the routing bits (56 - log2 n .. 55) clear of the bucket
// bits of any table that fits in memory.
inline constexpr std::size_t max_shards = std::size_t{1} << 16;

// A lookup key Q other than K is accepted only when hasher and key_equal both opt in
// (is_transparent), exactly as Map does: std::string keys take std::string_view and const char*.
template <class Q, class K, class Hash, class Eq>
concept sharded_map_lookup = transparent<Hash> && transparent<Eq> && !std::is_same_v<Q, K>;

inline std::size_t default_shard_count() noexcept {
  const std::size_t threads = std::max(1u, std::thread::hardware_concurrency());
  return std::clamp(std::bit_ceil(default_shards_per_thread * threads), min_default_shards,
                    max_default_shards);
}

}  // namespace detail

template <class K, class V, class Hash = safemap::Hash<K>, class Eq = std::equal_to<>>
class ShardedMap {
 public:
  using key_type = K;
  using mapped_type = V;
  using hasher = Hash;
  using key_equal = Eq;
  using size_type = std::size_t;
  using map_type = Map<K, V, Hash, Eq>;

 private:
  using held_locks = detail::held_locks;
  // One shard (detail/shard.hpp: the lock word with size and version on the first 128 bytes,
  // the Map header on units of its own).
  using shard = detail::shard<K, V, Hash, Eq>;
  // n empty shards. Two threads meet on a shard 1/n as often as on LockedMap's one lock, so
  // their reads seldom overlap there: the shards' locks also turn their reader bias on from
  // runs of reads by different threads (rw_lock::count_read).
  static std::unique_ptr<shard[]> make_shards(size_type n) {
    auto shards = std::make_unique<shard[]>(n);
    for (size_type i = 0; i < n; ++i) shards[i].lock.track_read_runs();
    return shards;
  }
  static_assert(alignof(shard) == 128, "shards must not share an adjacent-line prefetch pair");
  using read_lock = typename shard::read_guard;

 public:
  // A default shard count from the number of hardware threads (see default_shard_count).
  // Concurrency: construction and destruction are not concurrent with any other call.
  ShardedMap() : ShardedMap(0) {}
  // shards is rounded up to a power of two (at most 65536); 0 picks the default.
  explicit ShardedMap(size_type shards)
      : nshards_(shards == 0 ? detail::default_shard_count()
                             : std::bit_ceil(std::min(shards, detail::max_shards))),
        shift_(56 - static_cast<unsigned>(std::countr_zero(nshards_))),
        shards_(make_shards(nshards_)) {}
  // Takes over the entries of `initial`, distributed over `shards` shards (0: the default).
  explicit ShardedMap(map_type initial, size_type shards = 0) : ShardedMap(shards) {
    initial.for_each([&](const K& k, V& v) { shard_of(k).store_locked(k, std::move(v)); });
  }
  ShardedMap(const ShardedMap&) = delete;
  ShardedMap& operator=(const ShardedMap&) = delete;

  // The number of shards (a power of two). Concurrency: immutable.
  size_type shard_count() const noexcept { return nshards_; }

  // The shard key routes to, in [0, shard_count()). For diagnostics and tests.
  // Concurrency: pure (hashes the key).
  size_type shard_index(const K& key) const { return index_of(route_hash(key)); }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q>
  size_type shard_index(const Q& key) const {
    return index_of(route_hash(key));
  }

  // --- reads ---------------------------------------------------------------------------------

  // The value for key, or nullopt.
  // Concurrency: the key's shard, shared lock.
  std::optional<V> load(const K& key) const { return load_impl(key); }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q>
  std::optional<V> load(const Q& key) const {
    return load_impl(key);
  }

  // The values of many keys, in key order (concurrent.hpp): out[i] = load(keys[i]); returns
  // how many were found. The keys are taken up to 1,024 at a time and sorted by shard (a
  // counting sort of their routing hashes); each shard then looks up its share as LockedMap's
  // load_many does, with the cache misses overlapped, at most 64 lookups per shared
  // acquisition (docs/benchmarks.md, "Eleventh pass"). Each value is one its key held during
  // the call; two shards, or two groups, may be seen at different instants. While this thread
  // runs a callback of any lock-based safemap map (held_locks not empty), or with more than
  // 256 shards: key by key, as load (which applies the callback rules).
  // Concurrency: shared locks, one shard at a time.
  std::size_t load_many(std::span<const K> keys, std::span<std::optional<V>> out) const {
    detail::check_many_out(keys.size(), out.size(), "safemap::ShardedMap::load_many");
    if (!held_locks::empty() || nshards_ > load_many_max_shards) {
      return detail::load_each(*this, keys, out, "safemap::ShardedMap::load_many");
    }
    std::size_t found = 0;
    std::uint16_t shard_at[load_many_group];      // each key's shard
    std::uint16_t order[load_many_group];         // the keys' indices, by shard
    std::uint16_t end[load_many_max_shards + 1];  // where each shard's run of order ends
    for (std::size_t base = 0; base < keys.size(); base += load_many_group) {
      const std::size_t len = std::min(load_many_group, keys.size() - base);
      std::fill(end, end + nshards_ + 1, std::uint16_t{0});
      for (std::size_t i = 0; i < len; ++i) {
        shard_at[i] = static_cast<std::uint16_t>(index_of(route_hash(keys[base + i])));
        ++end[shard_at[i] + 1];
      }
      for (size_type s = 0; s < nshards_; ++s) end[s + 1] += end[s];  // now: where runs begin
      for (std::size_t i = 0; i < len; ++i) {
        order[end[shard_at[i]]++] = static_cast<std::uint16_t>(i);
      }
      std::size_t begin = 0;  // end[s] is now where shard s's run ends
      for (size_type s = 0; s < nshards_; begin = end[s], ++s) {
        if (end[s] == begin) continue;
        const std::uint16_t* const run = order + begin;
        found += shards_[s].load_group(
            end[s] - begin, [&](std::size_t j) -> const K& { return keys[base + run[j]]; },
            [&](std::size_t j) -> std::optional<V>& { return out[base + run[j]]; });
      }
    }
    return found;
  }
  template <std::ranges::input_range R>
  std::vector<std::optional<V>> load_many(R&& keys) const {
    return detail::load_many_of(*this, std::forward<R>(keys));
  }

  // Concurrency: the key's shard, shared lock.
  bool contains(const K& key) const { return contains_impl(key); }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q>
  bool contains(const Q& key) const {
    return contains_impl(key);
  }

  // Calls f(const V&) on the stored value, in place, if key is present; returns whether it
  // was. f must not block; from f, reads of keys in the same shard work, any other call on
  // this map is reported as misuse_kind::reentrant_call.
  // Concurrency: f runs under the key's shard's shared lock.
  template <class F>
  bool visit(const K& key, F f) const {
    return visit_impl(key, f);
  }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q, class F>
  bool visit(const Q& key, F f) const {
    return visit_impl(key, f);
  }

  // Calls f(const K&, const V&) for every entry; f may return bool, false stops. Consistent
  // per shard: each shard is copied at one instant (under its shared lock), then f runs on
  // the copy with no lock held, so f may call any method of this map, writes included. A
  // shard of up to 4 KiB of entries is copied to the stack (no allocation); a larger one to a
  // buffer this thread keeps from call to call (emptied after each), so a range allocates
  // only while that buffer grows to the largest shard (range_buffer).
  // Concurrency: one shard's shared lock at a time, only while copying that shard.
  template <class F>
  void range(F f) const {
    const bool already_held = all_shards_held_by_this_thread();
    range_buffer buffer;
    for (size_type i = 0; i < nshards_; ++i) {
      const shard& s = shards_[i];
      {
        read_lock lock(s.lock, std::defer_lock);
        if (!already_held) lock.lock();
        buffer.fill(s.map, !already_held);
      }
      for (const auto& [k, v] : buffer.entries()) {
        if (!detail::invoke_range_callback(f, k, v)) return;
      }
      buffer.clear();
    }
  }

  // The consistent view json.hpp serializes without copying: calls f(walk), where walk(g)
  // calls g(const K&, const V&) for every entry of every shard; every reference stays valid
  // until f returns. f may call read methods of this map; writes are reported as
  // misuse_kind::reentrant_call (the same rule as LockedMap's read_view).
  // Concurrency: every shard's shared lock, taken in index order (as snapshot() does) and
  // held for the whole call: a point-in-time view.
  template <class F>
  void read_view(F&& f) const {
    detail::read_view(
        shards_.get(), nshards_, all_shards_held_by_this_thread(),
        [this] { return all_shards_scope(*this); }, f);
  }

  // Entries, exact when no write is in flight.
  // Concurrency: lock-free (one atomic load per shard).
  size_type size() const noexcept {
    size_type n = 0;
    for (size_type i = 0; i < nshards_; ++i)
      n += shards_[i].size_word().load(std::memory_order_relaxed);
    return n;
  }

  // A copy of the whole map at one point in time (its own hash seed). Allocates only the
  // copy (sized before locking).
  // Concurrency: every shard's shared lock, taken in index order and held for the copy.
  map_type snapshot() const {
    const bool already_held = all_shards_held_by_this_thread();
    map_type out(size());  // allocated before locking: writers wait only for the copying
    auto copy_all = [&] {
      for (size_type i = 0; i < nshards_; ++i) {
        detail::map_access::for_each_locked(shards_[i].map, !already_held,
                                            [&](const K& k, const V& v) { out.try_emplace(k, v); });
      }
    };
    if (already_held) {
      copy_all();
      return out;
    }
    detail::shard_locks<const shard, false> locks(shards_.get(), nshards_);
    copy_all();
    return out;
  }

  // The sum of per-shard counters, each of which grows by at least 1 on every call that
  // changes its shard (an overwrite counts even when the value is equal); calls that change
  // nothing leave it alone. Never decreases as seen by one thread.
  // Concurrency: lock-free (one atomic load per shard).
  std::uint64_t version() const noexcept {
    std::uint64_t v = 0;
    for (size_type i = 0; i < nshards_; ++i) {
      v += shards_[i].version_word().load(std::memory_order_acquire);
    }
    return v;
  }

  // Balance, contention and table shape.
  // Concurrency: one shard's shared lock at a time (not a point-in-time view).
  ShardedMapStats stats() const {
    const bool already_held = all_shards_held_by_this_thread();
    ShardedMapStats st;
    st.shards = nshards_;
    st.shard_sizes.reserve(nshards_);
    st.shard_contended.reserve(nshards_);
    st.min_shard_size = ~size_type{0};
    for (size_type i = 0; i < nshards_; ++i) {
      const shard& s = shards_[i];
      MapStats t;
      {
        read_lock lock(s.lock, std::defer_lock);
        if (!already_held) lock.lock();
        t = s.map.stats();
        st.version += s.version_word().load(std::memory_order_relaxed);
      }
      st.shard_sizes.push_back(t.size);
      st.shard_contended.push_back(s.lock.contended());
      st.contended_acquisitions += s.lock.contended();
      st.size += t.size;
      st.max_shard_size = std::max(st.max_shard_size, t.size);
      st.min_shard_size = std::min(st.min_shard_size, t.size);
      add_table_stats(st.table, t);
    }
    st.mean_shard_size = static_cast<double>(st.size) / static_cast<double>(nshards_);
    st.imbalance = st.size == 0 ? 0.0 : static_cast<double>(st.max_shard_size) / st.mean_shard_size;
    st.table.load_factor = st.table.buckets == 0 ? 0.0
                                                 : static_cast<double>(st.table.size) /
                                                       static_cast<double>(st.table.buckets);
    return st;
  }

  // --- writes (one shard's exclusive lock; from inside a visit/compute callback: reported) --

  // Inserts or overwrites.
  // Concurrency: the key's shard, exclusive lock.
  void store(K key, V value) {
    shard& s = shard_for_write(key);
    s.store(std::move(key), std::move(value));
  }

  // The existing value and true, or value and false after storing it.
  // Concurrency: the key's shard's exclusive lock, under which the key is looked up; when the
  // shard's last load_or_store that took it found its key (and for the shard's first call), its
  // shared lock first (a hit ends there) and on a miss the exclusive lock, under which the key
  // is looked up again (detail::shard::predict_noops).
  std::pair<V, bool> load_or_store(K key, V value) {
    shard& s = shard_for_write(key);
    return s.load_or_store(std::move(key), std::move(value));
  }

  // Removes key; the removed value, or nullopt if it was absent.
  // Concurrency: the key's shard, exclusive lock; when the shard's last delete that took it
  // (erase or load_and_delete) found nothing, the shared lock first, and the exclusive one only
  // if key is present or the shard's table is growing (detail::shard::predict_noops; a shard's
  // first delete takes the exclusive lock).
  std::optional<V> load_and_delete(const K& key) { return load_and_delete_impl(key); }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q>
  std::optional<V> load_and_delete(const Q& key) {
    return load_and_delete_impl(key);
  }

  // true if something was removed.
  // Concurrency: the key's shard, exclusive lock; when the shard's last delete that took it
  // (erase or load_and_delete) found nothing, the shared lock first, and the exclusive one only
  // if key is present or the shard's table is growing (detail::shard::predict_noops; a shard's
  // first delete takes the exclusive lock).
  bool erase(const K& key) { return erase_impl(key); }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q>
  bool erase(const Q& key) {
    return erase_impl(key);
  }

  // Stores value; returns the previous value, if any.
  // Concurrency: the key's shard, exclusive lock.
  std::optional<V> swap(K key, V value) {
    shard& s = shard_for_write(key);
    return s.swap(std::move(key), std::move(value));
  }

  // Replaces the value with desired only if key is present and its value == expected.
  // Concurrency: the key's shard, exclusive lock.
  bool compare_and_swap(const K& key, const V& expected, V desired) {
    return compare_and_swap_impl(key, expected, desired);
  }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q>
  bool compare_and_swap(const Q& key, const V& expected, V desired) {
    return compare_and_swap_impl(key, expected, desired);
  }

  // Removes key only if it is present and its value == expected.
  // Concurrency: the key's shard, exclusive lock.
  bool compare_and_delete(const K& key, const V& expected) {
    return compare_and_delete_impl(key, expected);
  }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q>
  bool compare_and_delete(const Q& key, const V& expected) {
    return compare_and_delete_impl(key, expected);
  }

  // Atomic read-modify-write of one key: calls f(std::optional<V> current) exactly once and
  // applies its result (a value is stored, nullopt erases); returns the new state. From f,
  // reads of keys in the same shard work (they see the state before this compute); any other
  // call on this map is reported as misuse_kind::reentrant_call. If f throws, nothing changes.
  // Concurrency: f runs under the key's shard's exclusive lock.
  template <class F>
  std::optional<V> compute(const K& key, F f) {
    shard& s = shard_for_write(key);
    return s.compute(key, f, marks(s));
  }

  // Removes every entry, one shard after another (each shard atomically; a concurrent store
  // into a shard already cleared survives).
  // Concurrency: each shard's exclusive lock in turn.
  void clear() {
    write_check();
    for (size_type i = 0; i < nshards_; ++i) shards_[i].clear();
  }

  // Stores every entry of `entries` (overwriting existing keys) as one batch: readers see all
  // of them or none, and if the hasher, a key's copy or a value's move throws, the map is left
  // as it was (entries may have been moved from). merge_json applies parsed input this way.
  // Every key is routed (hashed) before any lock is taken, each shard's part applied all or
  // nothing (detail/shard.hpp), and the shards are published (swapped in, counters bumped)
  // only once every part is in.
  // Concurrency: every shard's exclusive lock, in index order, for the whole batch.
  void merge(map_type&& entries) {
    write_check();
    if (entries.empty()) return;
    struct routed {
      size_type shard;
      const K* key;
      V* value;
    };
    std::vector<routed> batch;
    batch.reserve(entries.size());
    entries.for_each([&](const K& k, V& v) { batch.push_back({index_of(route_hash(k)), &k, &v}); });
    std::sort(batch.begin(), batch.end(),
              [](const routed& a, const routed& b) { return a.shard < b.shard; });
    detail::shard_locks<shard, true> locks(shards_.get(), nshards_);
    auto publish = [&] {  // every touched shard's counters, once (invariant 2 of shard.hpp)
      for (auto it = batch.begin(); it != batch.end();) {
        const size_type i = it->shard;
        shards_[i].changed_locked();
        while (it != batch.end() && it->shard == i) ++it;
      }
    };
    if constexpr (detail::nothrow_merge_v<K, V, Hash, Eq>) {
      try {
        for (const routed& r : batch) {
          shards_[r.shard].map.insert_or_assign(*r.key, std::move(*r.value));
        }
      } catch (...) {
        publish();  // std::bad_alloc: part of the batch is in
        throw;
      }
    } else {
      // Each touched shard's part goes into a copy of its table; the copies replace the tables
      // (noexcept swaps) only when all are complete.
      std::vector<std::pair<size_type, map_type>> next;
      for (auto it = batch.begin(); it != batch.end();) {
        const size_type i = it->shard;
        map_type& copy = next.emplace_back(i, shards_[i].map).second;
        for (; it != batch.end() && it->shard == i; ++it) {
          copy.insert_or_assign(*it->key, std::move(*it->value));
        }
      }
      for (auto& [i, copy] : next) shards_[i].map.swap(copy);
    }
    publish();
  }

  // === Visitation, bulk erase and moves (Boost.Unordered's concurrent_flat_map habits) ========
  // On a non-const ShardedMap, visit and visit_all hand f a V& under the exclusive lock of the
  // key's shard (visit_all: of each shard in turn): they are writes (version() grows when f
  // was called; from inside a callback of this map they are reported as
  // misuse_kind::reentrant_call). cvisit, cvisit_all and every call on a const map are reads
  // under shared locks (std::as_const(m).visit(k, f) is cvisit). From inside any of these
  // callbacks the rule of visit() applies: reads of keys in the callback's shard work, every
  // other call on this map is reported. f must not block; if f throws, the exception
  // propagates with every lock released and the map whole (what f changed in the value
  // before throwing stays, and counts as a change).

  // Moves every entry (and the shard count) of other here; other is left empty and usable,
  // with its shard count. This map takes over other's version(); other's version() grows by 1.
  // Allocates other's new, empty shards (if that throws, neither map changed).
  // Concurrency: not concurrent with any other call on either map.
  ShardedMap(ShardedMap&& other)
      : nshards_(other.nshards_),
        shift_(other.shift_),
        shards_(make_shards(other.nshards_)),
        hash_(other.hash_) {
    take_shards_of(other);
  }
  // As the move constructor; this map's previous entries are destroyed.
  // Concurrency: not concurrent with any other call on either map.
  ShardedMap& operator=(ShardedMap&& other) {
    if (this == &other) return *this;
    std::unique_ptr<shard[]> previous = make_shards(other.nshards_);
    previous.swap(shards_);  // this map now has empty shards, as many as other's
    nshards_ = other.nshards_;
    shift_ = other.shift_;
    hash_ = other.hash_;
    take_shards_of(other);
    return *this;  // previous (this map's old shards) is destroyed here
  }

  // Calls f(V&) on the stored value, in place, if key is present; returns whether it was. f
  // may change the value (not the key); the call counts as a change (version() grows). From
  // f, reads of keys in the same shard run without relocking; any other call on this map is
  // reported as misuse_kind::reentrant_call.
  // Concurrency: f runs under the key's shard's exclusive lock.
  template <class F>
  bool visit(const K& key, F f) {
    return visit_mutable_impl(key, f);
  }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q, class F>
  bool visit(const Q& key, F f) {
    return visit_mutable_impl(key, f);
  }

  // visit with f(const V&) on any map, const or not: the read (see visit() const).
  // Concurrency: f runs under the key's shard's shared lock.
  template <class F>
  bool cvisit(const K& key, F f) const {
    return visit_impl(key, f);
  }
  template <detail::sharded_map_lookup<K, Hash, Eq> Q, class F>
  bool cvisit(const Q& key, F f) const {
    return visit_impl(key, f);
  }

  // Calls f(const K&, V&) on every entry, in place; returns how many. f may change values;
  // each non-empty shard counts a change.
  // Concurrency: each shard's exclusive lock in turn, held while f runs on that shard's
  // entries: consistent per shard, not across shards (like range).
  template <class F>
  size_type visit_all(F f) {
    write_check();
    size_type n = 0;
    for (size_type i = 0; i < nshards_; ++i) n += shards_[i].visit_all(f, marks(shards_[i]));
    return n;
  }

  // Calls f(const K&, const V&) on every entry, in place (no copy, unlike range); returns how
  // many. Concurrency: each shard's shared lock in turn, held while f runs on that shard's
  // entries: consistent per shard, not across shards. Allocates nothing.
  template <class F>
  size_type visit_all(F f) const {
    // held: inside read_view, or a one-shard map's callback
    const bool held = all_shards_held_by_this_thread();
    size_type n = 0;
    auto count = [&](const K& k, const V& v) {
      f(k, v);
      ++n;
    };
    for (size_type i = 0; i < nshards_; ++i) shards_[i].for_each(count, held, marks(shards_[i]));
    return n;
  }
  // visit_all with f(const K&, const V&) on any map, const or not.
  template <class F>
  size_type cvisit_all(F f) const {
    return visit_all(std::move(f));
  }

  // Removes every entry for which pred(const K&, const V&) is true; returns how many. Atomic
  // per shard (one shard's entries are tested and removed under one lock), not across shards.
  // pred's rules are visit()'s. If pred throws, the entries already removed stay removed.
  // Concurrency: each shard's exclusive lock in turn.
  template <class Pred>
  size_type erase_if(Pred pred) {
    write_check();
    size_type n = 0;
    for (size_type i = 0; i < nshards_; ++i) n += shards_[i].erase_if(pred, marks(shards_[i]));
    return n;
  }

  // Inserts (key, value) if key is absent and returns true; otherwise calls f(V&) on the
  // existing value (which f may change, as in visit) and returns false, in one atomic step
  // with the check. f's rules are visit()'s.
  // Concurrency: the key's shard, exclusive lock.
  template <class F>
  bool insert_or_visit(K key, V value, F f) {
    shard& s = shard_for_write(key);
    return s.insert_or_visit(std::move(key), std::move(value), f, marks(s));
  }

  // emplace_or_visit(key, args..., f): as insert_or_visit, with the value constructed from
  // args in place only if key is absent (f comes last, as in Boost).
  // Concurrency: the key's shard, exclusive lock.
  template <class... ArgsThenF>
  bool emplace_or_visit(K key, ArgsThenF&&... args_then_f) {
    shard& s = shard_for_write(key);
    return s.emplace_or_visit(std::move(key), marks(s), std::forward<ArgsThenF>(args_then_f)...);
  }

 private:
  // The move constructor's and assignment's body: this map has other's shard count, shift
  // and router hash, and empty shards of its own; the two shard arrays trade places.
  void take_shards_of(ShardedMap& other) noexcept {
    shards_.swap(other.shards_);
    const std::uint64_t v = version();  // other's, now here
    other.shards_[0].version_word().store(v + 1, std::memory_order_release);
  }

  template <class Q, class F>
  bool visit_mutable_impl(const Q& key, F& f) {
    shard& s = shard_for_write(key);
    return s.visit_mutable(key, f, marks(s));
  }

  // === end of visitation, bulk erase and moves ==================================================

 private:
  // Marks, for a callback's duration, both this map (any shard held: cross-shard calls are
  // refused) and the shard's lock (same-shard reads need no relock).
  class callback_scope {
   public:
    callback_scope(const ShardedMap& m, const shard& s, held_locks::mode mode) noexcept
        : map_(&m, mode), shard_(&s.lock, mode) {}

   private:
    held_locks::scope map_;
    held_locks::scope shard_;
  };

  // Marks, for read_view's callback, this map and "every shard" (the shards_ array): reads
  // from the callback need no relock, writes are refused.
  class all_shards_scope {
   public:
    explicit all_shards_scope(const ShardedMap& m) noexcept
        : map_(&m, held_locks::mode::shared), all_(m.all_shards_key(), held_locks::mode::shared) {}

   private:
    held_locks::scope map_;
    held_locks::scope all_;
  };
  const void* all_shards_key() const noexcept { return &shards_; }

  // The marks of a callback on shard s, handed to the core (callback_scope in mode m).
  auto marks(const shard& s) const noexcept {
    return [this, &s](held_locks::mode m) { return callback_scope(*this, s, m); };
  }

  // The buffer range() copies one shard into. A shard whose entries fit in inline_bytes
  // (4 KiB: 256 entries of two 8-byte words, so the bench's 1024-key range over 8 or more
  // shards) is copied into storage inside this object, on range's stack: no allocation at all,
  // on any thread, from the first call (issue 10: no heap allocation per range). A larger
  // shard goes to a vector per thread and map type, reused by every range of this type on the
  // thread and emptied after each shard (so it keeps no values alive, only capacity), so such
  // a range allocates only while that vector grows to the largest shard; capacity past
  // keep_capacity entries is given back. A range started from inside a range callback uses a
  // vector of its own.
  class range_buffer {
   public:
    using entry = std::pair<K, V>;
    static constexpr std::size_t keep_capacity = 4096;
    static constexpr std::size_t inline_bytes = 4096;
    static constexpr std::size_t inline_capacity = inline_bytes / sizeof(entry);

    range_buffer() = default;
    ~range_buffer() {
      clear();
      if (v_ == &cache().v) {
        if (v_->capacity() > keep_capacity) std::vector<entry>().swap(*v_);
        cache().busy = false;
      }
    }
    range_buffer(const range_buffer&) = delete;
    range_buffer& operator=(const range_buffer&) = delete;

    // Precondition: empty (clear() after the previous fill). Called under the shard's lock,
    // so m.size() is exact. freshly_locked: range took that lock itself, so nothing writes m
    // during the copy and the walk skips Map's pin and checks; otherwise (a range from inside
    // a callback that holds it) the walk keeps them.
    void fill(const map_type& m, bool freshly_locked) {
      if (m.size() <= inline_capacity) {
        entry* slots = inline_entries();
        detail::map_access::for_each_locked(m, freshly_locked, [&](const K& k, const V& v) {
          ::new (static_cast<void*>(slots + inline_size_)) entry(k, v);
          ++inline_size_;  // after the construction: a throw leaves only whole entries
        });
        data_ = slots;
        size_ = inline_size_;
        return;
      }
      std::vector<entry>& v = vector();
      v.reserve(m.size());
      detail::map_access::for_each_locked(m, freshly_locked,
                                          [&](const K& k, const V& x) { v.emplace_back(k, x); });
      data_ = v.data();
      size_ = v.size();
    }
    std::span<const entry> entries() const noexcept { return {data_, size_}; }
    void clear() noexcept {
      std::destroy_n(inline_entries(), inline_size_);
      inline_size_ = 0;
      if (v_ != nullptr) v_->clear();
      size_ = 0;
    }

   private:
    struct per_thread {
      std::vector<entry> v;
      bool busy = false;
    };
    static per_thread& cache() {
      thread_local per_thread c;
      return c;
    }
    // The thread's vector, claimed on first use; a vector of our own when it is in use (a
    // range nested in a range callback).
    std::vector<entry>& vector() {
      if (v_ == nullptr) {
        per_thread& c = cache();
        if (c.busy) {
          v_ = &own_;
        } else {
          c.busy = true;
          v_ = &c.v;
        }
      }
      return *v_;
    }
    entry* inline_entries() noexcept { return std::launder(reinterpret_cast<entry*>(storage_)); }

    alignas(entry) std::byte storage_[std::max<std::size_t>(inline_capacity, 1) * sizeof(entry)];
    std::size_t inline_size_ = 0;  // entries constructed in storage_
    const entry* data_ = nullptr;  // the last fill's entries
    std::size_t size_ = 0;
    std::vector<entry> own_;
    std::vector<entry>* v_ = nullptr;  // the vector in use, once a shard did not fit inline
  };

  template <class Q>
  std::uint64_t route_hash(const Q& key) const {
    if constexpr (detail::avalanching_hash<Hash>) {
      return static_cast<std::uint64_t>(hash_(key));
    } else {
      return detail::post_mix(static_cast<std::uint64_t>(hash_(key)));
    }
  }
  // load_many's group of keys sorted by shard at once (three arrays on the stack, 4.5 KiB),
  // and the most shards it sorts into.
  static constexpr std::size_t load_many_group = 1024;
  static constexpr std::size_t load_many_max_shards = 256;
  static_assert(load_many_group <= 65535 && load_many_max_shards <= 65536,
                "load_many's indices, counts and shard numbers are 16-bit");

  size_type index_of(std::uint64_t h) const noexcept {
    return static_cast<size_type>(h >> shift_) & (nshards_ - 1);
  }
  template <class Q>
  shard& shard_of(const Q& key) const {
    return shards_[index_of(route_hash(key))];
  }

  // The key's shard for a read, and whether this thread already holds its lock (inside a
  // callback on that shard, or read_view's). Reports a read that would take a second shard's
  // lock.
  template <class Q>
  std::pair<shard*, bool> shard_for_read(const Q& key) const {
    shard& s = shard_of(key);
    if (SAFEMAP_LIKELY(held_locks::empty())) return {&s, false};
    if (held_locks::held(&s.lock) != held_locks::mode::none) return {&s, true};
    if (held_locks::held(all_shards_key()) != held_locks::mode::none) return {&s, true};
    if (held_locks::held(this) != held_locks::mode::none) detail::report_reentrant_write();
    return {&s, false};
  }

  // The key's shard for a write; a write from inside a callback of this map is reported.
  template <class Q>
  shard& shard_for_write(const Q& key) {
    write_check();
    return shard_of(key);
  }

  void write_check() const {
    if (SAFEMAP_UNLIKELY(!held_locks::empty()) &&
        held_locks::held(this) != held_locks::mode::none) {
      detail::report_reentrant_write();
    }
  }

  // For calls that read every shard (range, snapshot, stats): false normally; true when this
  // thread already holds every shard (inside read_view, or a callback of a one-shard map);
  // reported when it would need a second shard's lock.
  bool all_shards_held_by_this_thread() const {
    if (SAFEMAP_LIKELY(held_locks::empty())) return false;
    if (held_locks::held(all_shards_key()) != held_locks::mode::none) return true;
    if (held_locks::held(this) == held_locks::mode::none) return false;
    if (nshards_ == 1) return true;
    detail::report_reentrant_write();
  }

  static void add_table_stats(MapStats& sum, const MapStats& t) noexcept {
    sum.size += t.size;
    sum.log2_buckets = std::max(sum.log2_buckets, t.log2_buckets);
    sum.buckets += t.buckets;
    sum.overflow_buckets += t.overflow_buckets;
    sum.growing = sum.growing || t.growing;
    sum.same_size_grow = sum.same_size_grow || t.same_size_grow;
    sum.old_buckets += t.old_buckets;
    sum.old_overflow_buckets += t.old_overflow_buckets;
    sum.evacuated += t.evacuated;
    sum.bytes += t.bytes;
  }

  template <class Q>
  std::optional<V> load_impl(const Q& key) const {
    auto [s, held] = shard_for_read(key);
    return s->load(key, held);
  }

  template <class Q>
  bool contains_impl(const Q& key) const {
    auto [s, held] = shard_for_read(key);
    return s->contains(key, held);
  }

  template <class Q, class F>
  bool visit_impl(const Q& key, F& f) const {
    auto [s, held] = shard_for_read(key);
    return s->visit(key, f, held, marks(*s));
  }

  template <class Q>
  std::optional<V> load_and_delete_impl(const Q& key) {
    return shard_for_write(key).load_and_delete(key);
  }

  template <class Q>
  bool erase_impl(const Q& key) {
    return shard_for_write(key).erase(key);
  }

  template <class Q>
  bool compare_and_swap_impl(const Q& key, const V& expected, V& desired) {
    return shard_for_write(key).compare_and_swap(key, expected, desired);
  }

  template <class Q>
  bool compare_and_delete_impl(const Q& key, const V& expected) {
    return shard_for_write(key).compare_and_delete(key, expected);
  }

  size_type nshards_;                  // a power of two in [1, detail::max_shards]
  unsigned shift_;                     // 56 - log2(nshards_): routing bits end below tophash
  std::unique_ptr<shard[]> shards_;    // nshards_ shards, each on its own 128-byte lines
  [[no_unique_address]] Hash hash_{};  // the router's hash (its own seed)
};

}  // namespace safemap
