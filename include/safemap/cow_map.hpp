// safemap/cow_map.hpp - CowMap: an immutable snapshot swapped atomically, copy on write.
//
// # What it is
// A CowMap is one pointer to an immutable safemap::Map (a "snapshot") plus the version number
// of that snapshot. Readers load the pointer and search the snapshot; a point read (load,
// contains, visit, size, version) and a walk (range, read_view) write no shared memory: they
// walk the snapshot without Map's iteration pin (map_access::for_each_unsynchronized; the pin
// pauses growth, which an immutable snapshot never does). Iterating the Map that read()
// passes does pin it: an atomic increment and decrement of the snapshot's iterator count, one
// shared word per walk, not per entry. A writer takes the writer mutex,
// copies the current snapshot, changes the copy, publishes it with one atomic store and hands the
// old snapshot to deferred reclamation (reclaim.hpp), which frees it once every reader that could
// still see it is done.
//
// # When to use it (and when not)
// Choose CowMap for read-mostly data: configuration, routing tables, feature flags, caches
// refreshed in batches. Reads are wait-free and scale with cores (no lock, no shared
// reference count, no allocation), and every read of a snapshot is a point-in-time view for
// free. Every write costs a copy of the whole map (O(size) time and memory), so do not use it
// for write-heavy maps or large maps written often: LockedMap, ShardedMap or SyncMap are
// better there. Batch many changes into one copy with update().
//
// # Memory: retired snapshots are bounded
// A replaced snapshot is freed after a grace period, on liburcu's worker thread. Writers
// faster than that would pile up copies (a 1 MB map with two continuous writers held 30-260
// MB), so every write that replaces a snapshot counts its bytes in rcu::retired_bytes() and
// then calls rcu::throttle(): past rcu::retired_bytes_limit() (16 MiB by default, process-wide,
// tunable with rcu::set_retired_bytes_limit) the writer waits, after releasing the writer
// mutex, until the snapshots retired so far are freed. Retired snapshots therefore stay below
// the limit plus one snapshot per writing thread. The bytes counted are the table's
// (MapStats::bytes plus the snapshot header), not memory that keys and values own on the heap.
// A write made inside a read guard (from a range or visit callback) or from inside compute's or
// update's f on any safemap map does not wait (that would wait for itself); and a write must
// not be made while holding a lock that a range or visit callback on another thread may wait
// for, since the grace period waits for that callback.
//
// # Concurrency design
// Read path (load, contains, visit, range, size, version, snapshot, read, stats):
//   1. enter an rcu::read_guard (this thread's own state only, inlined);
//   2. current_.load(acquire): pairs with the writer's release store, so the fully built
//      snapshot is visible;
//   3. use the snapshot; it is never modified after publication and is not freed before the
//      guard ends.
// Write path (store, load_or_store, load_and_delete, erase, swap, compare_and_swap,
// compare_and_delete, compute, update, clear):
//   1. refuse a write from inside compute/update's callback on this map (it would deadlock on
//      the writer mutex): detail::report_reentrant_write();
//   2. lock writer_mutex_; the current snapshot cannot be retired while we hold it (only a
//      writer retires, and only the snapshot it replaces), so it is read without a guard;
//   3. decide on the current snapshot whether anything changes. A write that changes nothing
//      (erase of an absent key, a failed compare-and-swap, a load_or_store hit...) returns
//      here: no copy, no publication, version unchanged;
//   4. copy the Map (Map's copy constructor clones chain by chain without rehashing), change
//      the copy, move it into a new snapshot with version + 1 and store it (release);
//   5. unlock, then rcu::retire the old snapshot with its size, and rcu::throttle(): the writer
//      waits for grace periods only when retired snapshots exceed the bound (# Memory).
// A write that throws (a copy constructor, the allocator, compute's f) publishes nothing: the
// map is unchanged (strong guarantee).
//
// # Callbacks and re-entrancy
// range and visit callbacks run inside the read guard only, holding no lock: they may call
// any method of the same map, writes included (a write then publishes a new snapshot; the
// running range keeps walking the one it started with). compute's and update's f run under
// the writer mutex: reads of the same map work (they see the snapshot before this write),
// but a write is reported as misuse_kind::reentrant_call (never a deadlock).
//
// # Versions
// version() is the version of the published snapshot: 0 for a new map, +1 for each
// publication. Writes that change nothing publish nothing and leave it unchanged. A write
// that succeeds always publishes, even when the stored value equals the old one (store, a
// compare_and_swap with expected == desired, compute returning the current value, update).
//
// Concurrency: every member function is thread-safe, except construction and destruction.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "safemap/concurrent.hpp"
#include "safemap/detail/config.hpp"
#include "safemap/detail/lock.hpp"
#include "safemap/detail/visit.hpp"
#include "safemap/hash.hpp"
#include "safemap/map.hpp"
#include "safemap/reclaim.hpp"

namespace safemap {

// Counters of a CowMap, for operators and tests. size, version and map describe one
// published snapshot; the counters are read separately and may be a write apart from it.
struct CowMapStats {
  std::size_t size = 0;              // entries in the current snapshot
  std::uint64_t version = 0;         // version of the current snapshot
  MapStats map;                      // table shape of the current snapshot
  std::uint64_t copies = 0;          // snapshots copied by writes (update's included)
  std::uint64_t retired = 0;         // snapshots replaced and handed to rcu::retire
  std::uint64_t copies_avoided = 0;  // writes that changed nothing, so copied nothing
};

template <class K, class V, class Hash = safemap::Hash<K>, class Eq = std::equal_to<>>
class CowMap : public detail::immutable_visitation<CowMap<K, V, Hash, Eq>, K, V> {
 public:
  using key_type = K;
  using mapped_type = V;
  using hasher = Hash;
  using key_equal = Eq;
  using map_type = Map<K, V, Hash, Eq>;

  // An empty map, version 0.
  CowMap() : CowMap(map_type()) {}

  // Adopts `initial` as the first snapshot (version 0); its hasher and key_equal are kept.
  explicit CowMap(map_type initial) : current_(new snapshot_node(std::move(initial), 0)) {}

  CowMap(const CowMap&) = delete;
  CowMap& operator=(const CowMap&) = delete;

  // Frees the current snapshot now; retired ones are freed by RCU after their grace period
  // (call rcu::barrier() to wait for that). Concurrency: no other thread may use the map.
  ~CowMap() { delete current_.load(std::memory_order_relaxed); }

  // --- reads: wait-free, no lock; point reads write no shared memory --------------------------

  // The value for key, or nullopt. Concurrency: wait-free.
  //
  // Inlined into the caller, so the optional usually lives in registers there: GCC returns an
  // optional<uint64_t> through the stack, a one-byte flag store read back as a whole word,
  // which stalls store-to-load forwarding (~2 ns) when it follows the lookup directly. For a
  // small trivially copyable V the lookup is load_copy (flattened, see there), returning the
  // flag in a register and the value through a reference.
  template <class Q>
  SAFEMAP_ALWAYS_INLINE std::optional<V> load(const Q& key) const {
    if constexpr (copy_after_guard) {
      V value{};
      if (!load_copy(key, value)) return std::nullopt;
      return value;
    } else {
      rcu::read_guard guard;
      if (const V* v = find_guarded(key)) return *v;
      return std::nullopt;
    }
  }

  // The values of many keys, in key order (concurrent.hpp): out[i] = load(keys[i]); returns
  // how many were found. Groups of 64 keys are looked up in one snapshot each, with their
  // cache misses overlapped (Map::find_many): several times a loop of load out of cache
  // (docs/benchmarks.md, "Eleventh pass"). Two groups may see different snapshots.
  // Concurrency: wait-free; one read guard per group.
  std::size_t load_many(std::span<const K> keys, std::span<std::optional<V>> out) const {
    detail::check_many_out(keys.size(), out.size(), "safemap::CowMap::load_many");
    std::size_t found = 0;
    for (std::size_t base = 0; base < keys.size(); base += load_many_group) {
      const auto group = keys.subspan(base, std::min(load_many_group, keys.size() - base));
      rcu::read_guard guard;
      found += detail::map_access::load_many_unsynchronized(current_guarded(), group,
                                                            out.subspan(base, group.size()));
    }
    return found;
  }
  template <std::ranges::input_range R>
  std::vector<std::optional<V>> load_many(R&& keys) const {
    return detail::load_many_of(*this, std::forward<R>(keys));
  }

  // Concurrency: wait-free.
  template <class Q>
  SAFEMAP_FLATTEN bool contains(const Q& key) const {
    rcu::read_guard guard;
    return current_guarded().contains(key);
  }

  // Calls f(const V&) on the stored value in place, if present; returns whether it was.
  // Concurrency: wait-free apart from f; f runs inside the read guard and may call any method
  // of this map (a write it makes does not change the value f is looking at).
  template <class Q, class F>
  bool visit(const Q& key, F f) const {
    rcu::read_guard guard;
    const V* v = find_guarded(key);
    if (v == nullptr) return false;
    f(*v);  // in place: no copy of the value
    return true;
  }

  // Calls f(const K&, const V&) for each entry of one snapshot (a point-in-time view); f may
  // return bool, false stops. Concurrency: lock-free; f runs inside the read guard and may call
  // any method of this map, writes included (they do not affect this walk). Writes nothing
  // shared (see the top of this file).
  template <class F>
  void range(F f) const {
    rcu::read_guard guard;
    detail::map_access::for_each_unsynchronized(current_guarded(), [&f](const K& k, const V& v) {
      return detail::invoke_range_callback(f, k, v);
    });
  }

  // Calls f(const Map&) on the current snapshot and returns its result: a consistent view of
  // the whole map without a copy. f must not keep references into the map after it returns.
  // Concurrency: as range.
  template <class F>
  auto read(F&& f) const {
    rcu::read_guard guard;
    return std::forward<F>(f)(current_guarded());
  }

  // The view json.hpp serializes without copying: calls f(walk), where walk(g) calls
  // g(const K&, const V&) for every entry of one snapshot; references stay valid until f
  // returns. Concurrency: lock-free (one read guard spans the call); point-in-time.
  template <class F>
  void read_view(F&& f) const {
    rcu::read_guard guard;
    const map_type& m = current_guarded();
    f([&m](auto&& g) {
      detail::map_access::for_each_unsynchronized(m, [&g](const K& k, const V& v) { g(k, v); });
    });
  }

  // Exact: the size of the published snapshot. Concurrency: wait-free.
  std::size_t size() const {
    rcu::read_guard guard;
    return current_guarded().size();
  }

  // A copy of the current snapshot (point-in-time). Concurrency: lock-free; O(size).
  map_type snapshot() const {
    rcu::read_guard guard;
    return map_type(current_guarded());
  }

  // The published snapshot's version: +1 per publication. Concurrency: wait-free.
  std::uint64_t version() const {
    rcu::read_guard guard;
    return current_.load(std::memory_order_acquire)->version;
  }

  // Concurrency: lock-free (reads the counters with relaxed loads).
  CowMapStats stats() const {
    CowMapStats s;
    {
      rcu::read_guard guard;
      const snapshot_node* cur = current_.load(std::memory_order_acquire);
      s.size = cur->map.size();
      s.version = cur->version;
      s.map = cur->map.stats();
    }
    s.copies = copies_.load(std::memory_order_relaxed);
    s.retired = retired_.load(std::memory_order_relaxed);
    s.copies_avoided = copies_avoided_.load(std::memory_order_relaxed);
    return s;
  }

  // --- writes: serialized on the writer mutex, one copy each ----------------------------------

  // Inserts or overwrites. Concurrency: takes the writer mutex; copies the map.
  void store(K key, V value) {
    write_section w(*this);
    copy_modify_publish_locked(
        w, [&](map_type& next) { next.insert_or_assign(std::move(key), std::move(value)); });
  }

  // The existing value and true, or value and false after storing it. Concurrency: takes the
  // writer mutex; copies the map only when it stores.
  std::pair<V, bool> load_or_store(K key, V value) {
    write_section w(*this);
    if (const V* existing = current_locked().map.find(key)) {
      note_copy_avoided_locked();
      return {*existing, true};
    }
    copy_modify_publish_locked(w, [&](map_type& next) { next.try_emplace(std::move(key), value); });
    return {std::move(value), false};
  }

  // Removes key; returns the removed value. Concurrency: takes the writer mutex; copies the
  // map only when key is present.
  template <class Q>
  std::optional<V> load_and_delete(const Q& key) {
    write_section w(*this);
    const V* existing = current_locked().map.find(key);
    if (existing == nullptr) {
      note_copy_avoided_locked();
      return std::nullopt;
    }
    std::optional<V> removed;
    copy_modify_publish_locked(w, [&](map_type& next) {
      removed.emplace(std::move(*next.find(key)));
      next.erase(key);
    });
    return removed;
  }

  // true if key was present and removed. Concurrency: takes the writer mutex; copies the map
  // only when key is present.
  template <class Q>
  bool erase(const Q& key) {
    write_section w(*this);
    if (!current_locked().map.contains(key)) {
      note_copy_avoided_locked();
      return false;
    }
    copy_modify_publish_locked(w, [&](map_type& next) { next.erase(key); });
    return true;
  }

  // Stores value; returns the previous value if any. Concurrency: takes the writer mutex;
  // copies the map.
  std::optional<V> swap(K key, V value) {
    write_section w(*this);
    std::optional<V> previous;
    copy_modify_publish_locked(w, [&](map_type& next) {
      auto [slot, inserted] = next.try_emplace(std::move(key), std::move(value));
      if (!inserted) previous.emplace(std::exchange(*slot, std::move(value)));
    });
    return previous;
  }

  // Replaces the value with desired only if key is present and its value == expected.
  // Concurrency: takes the writer mutex; copies the map only when it succeeds.
  template <class Q>
  bool compare_and_swap(const Q& key, const V& expected, V desired) {
    write_section w(*this);
    const V* existing = current_locked().map.find(key);
    if (existing == nullptr || !(*existing == expected)) {
      note_copy_avoided_locked();
      return false;
    }
    copy_modify_publish_locked(w, [&](map_type& next) { *next.find(key) = std::move(desired); });
    return true;
  }

  // Removes key only if present and its value == expected. Concurrency: takes the writer
  // mutex; copies the map only when it succeeds.
  template <class Q>
  bool compare_and_delete(const Q& key, const V& expected) {
    write_section w(*this);
    const V* existing = current_locked().map.find(key);
    if (existing == nullptr || !(*existing == expected)) {
      note_copy_avoided_locked();
      return false;
    }
    copy_modify_publish_locked(w, [&](map_type& next) { next.erase(key); });
    return true;
  }

  // Atomically replaces key's state with f(current): f(std::optional<V>) -> std::optional<V>,
  // nullopt erases. Returns the new state. f is called exactly once, under the writer mutex:
  // it may read this map (seeing the state before this write) but a write to it is reported
  // as misuse_kind::reentrant_call. Concurrency: takes the writer mutex; copies the map unless
  // f returns nullopt for an absent key.
  template <class F>
  std::optional<V> compute(const K& key, F f) {
    write_section w(*this);
    const V* existing = current_locked().map.find(key);
    std::optional<V> next_value;
    {
      detail::held_locks::scope held(&writer_mutex_, detail::held_locks::mode::exclusive);
      next_value = f(existing != nullptr ? std::optional<V>(*existing) : std::optional<V>());
    }
    if (!next_value) {
      if (existing == nullptr) {
        note_copy_avoided_locked();
        return std::nullopt;
      }
      copy_modify_publish_locked(w, [&](map_type& next) { next.erase(key); });
      return std::nullopt;
    }
    copy_modify_publish_locked(w, [&](map_type& next) { next.insert_or_assign(key, *next_value); });
    return next_value;
  }

  // Applies many changes with one copy and one publication: calls f(Map&) exactly once on a
  // private copy of the current snapshot, then publishes the copy (version + 1). If f returns
  // bool, false discards the copy (nothing published, version unchanged). Returns whether a
  // snapshot was published. Readers see all of f's changes or none. If f throws, nothing is
  // published. f must not keep references into the Map after it returns. f runs under the
  // writer mutex: reads of this CowMap work (they see the snapshot before the update), writes
  // are reported as misuse_kind::reentrant_call. Concurrency: takes the writer mutex; one
  // copy.
  template <class F>
  bool update(F&& f) {
    write_section w(*this);
    map_type next(current_locked().map);
    note_copy_locked();
    bool publish = true;
    {
      detail::held_locks::scope held(&writer_mutex_, detail::held_locks::mode::exclusive);
      if constexpr (std::is_void_v<std::invoke_result_t<F&, map_type&>>) {
        f(next);
      } else {
        publish = static_cast<bool>(f(next));
      }
    }
    if (publish) publish_locked(w, std::move(next));
    return publish;
  }

  // Stores every entry of `entries` (overwriting existing keys) with one copy and one
  // publication: readers see all of them or none. merge_json applies parsed input this way.
  // Concurrency: as update.
  void merge(map_type&& entries) {
    if (entries.empty()) return;
    update([&](map_type& next) {
      entries.for_each([&](const K& k, V& v) { next.insert_or_assign(k, std::move(v)); });
    });
  }

  // Removes every entry (publishes a new empty snapshot with a fresh hash seed; copies
  // nothing). Clearing an empty map publishes nothing. Concurrency: takes the writer mutex.
  void clear() {
    write_section w(*this);
    const map_type& cur = current_locked().map;
    if (cur.empty()) {
      note_copy_avoided_locked();
      return;
    }
    Hash hash = cur.hash_function();
    if constexpr (detail::reseedable<Hash>) hash.reseed();
    publish_locked(w, map_type(0, hash, cur.key_eq()));
  }

  // === Visitation, bulk erase and moves (Boost.Unordered's concurrent_flat_map habits) ========
  // A published snapshot is immutable (readers walk it with no lock), so a value cannot be
  // changed in place: every visitation hands f a const V&, on a const map or not, and a
  // non-const visit or visit_all whose f needs a V& is rejected at compile time, naming the
  // alternative (compute, or update for many keys with one copy). Callbacks that run under the
  // writer mutex (erase_if's pred, insert_or_visit's f) may read this map; writes from them are
  // reported as misuse_kind::reentrant_call. If a callback throws, nothing is published and
  // the mutex is released.

  // Takes over other's snapshot (entries, hasher, version()); other is left empty and usable,
  // its version() one past what it was (a watcher of it sees a change). Allocates other's new
  // empty snapshot first (if that throws, neither map changed).
  // Concurrency: not concurrent with any other call on either map.
  CowMap(CowMap&& other)
      : current_(other.current_.exchange(
            new snapshot_node(map_type(),
                              other.current_.load(std::memory_order_relaxed)->version + 1),
            std::memory_order_relaxed)) {}
  // As the move constructor; this map's previous snapshot is freed.
  // Concurrency: not concurrent with any other call on either map.
  CowMap& operator=(CowMap&& other) {
    if (this == &other) return *this;
    snapshot_node* taken = other.current_.exchange(
        new snapshot_node(map_type(), other.current_.load(std::memory_order_relaxed)->version + 1),
        std::memory_order_relaxed);
    delete current_.exchange(taken, std::memory_order_relaxed);  // no reader may be inside
    return *this;
  }

  // visit on a non-const map (f gets const V&; a callable that needs V& is refused at
  // compile time), cvisit, visit_all, cvisit_all: from
  // detail::immutable_visitation<CowMap, K, V> (detail/visit.hpp), which builds
  // them from this map's own calls and documents their guarantees.
  using visitation = detail::immutable_visitation<CowMap, K, V>;
  using visitation::visit;

  // Removes every entry for which pred(const K&, const V&) is true, all at once: pred runs on
  // the current snapshot under the writer mutex, and if it matched anything one copy without
  // those entries is published (version + 1); readers see all removals or none. Returns how
  // many. If pred throws, nothing is published. Concurrency: takes the writer mutex; one copy
  // if anything matched, none otherwise.
  template <class Pred>
  std::size_t erase_if(Pred pred) {
    write_section w(*this);
    const map_type& cur = current_locked().map;
    std::vector<const K*> doomed;
    {
      detail::held_locks::scope held(&writer_mutex_, detail::held_locks::mode::exclusive);
      cur.for_each([&](const K& k, const V& v) {
        if (pred(k, v)) doomed.push_back(&k);
      });
    }
    if (doomed.empty()) {
      note_copy_avoided_locked();
      return 0;
    }
    copy_modify_publish_locked(w, [&](map_type& next) {
      for (const K* k : doomed) next.erase(*k);
    });
    return doomed.size();
  }

  // Stores (key, value) if key is absent and returns true (one copy and publication);
  // otherwise calls f(const V&) on the current value, in place and under the writer mutex (so
  // no write can come between the decision and f), and returns false without copying. f's
  // rules are compute's. Concurrency: takes the writer mutex.
  template <class F>
  bool insert_or_visit(K key, V value, F f) {
    visitation::template check_visitor<F&>();
    auto build = [&](auto&& make) -> decltype(auto) { return make(std::move(value)); };
    return emplace_or_visit_impl(std::move(key), build, f);
  }

  // emplace_or_visit(key, args..., f): as insert_or_visit, with the value constructed from
  // args only if key is absent (f comes last, as in Boost). Concurrency: as insert_or_visit.
  template <class... ArgsThenF>
  bool emplace_or_visit(K key, ArgsThenF&&... args_then_f) {
    return detail::split_emplace_args(
        [&](auto& build, auto& f) {
          visitation::template check_visitor<decltype(f)>();
          return emplace_or_visit_impl(std::move(key), build, f);
        },
        std::forward<ArgsThenF>(args_then_f)...);
  }

 private:
  template <class Build, class F>
  bool emplace_or_visit_impl(K&& key, Build& build, F& f) {
    write_section w(*this);
    if (const V* existing = current_locked().map.find(key)) {
      detail::held_locks::scope held(&writer_mutex_, detail::held_locks::mode::exclusive);
      f(*existing);
      note_copy_avoided_locked();
      return false;
    }
    copy_modify_publish_locked(w, [&](map_type& next) {
      build([&](auto&&... args) {
        return next.try_emplace(std::move(key), std::forward<decltype(args)>(args)...);
      });
    });
    return true;
  }
  // === end of visitation, bulk erase and moves ==================================================

 private:
  // A published (or once published) snapshot: immutable after construction, so any number of
  // readers may use it; freed by RCU after it is replaced.
  struct snapshot_node final : rcu::sized_retirable<snapshot_node> {
    snapshot_node(map_type&& m, std::uint64_t v) noexcept : map(std::move(m)), version(v) {}
    const map_type map;
    const std::uint64_t version;  // of the CowMap: 0 for the first snapshot, +1 per publication
  };

  // The current snapshot. Caller is inside an rcu::read_guard that outlives every use.
  const map_type& current_guarded() const noexcept {
    return current_.load(std::memory_order_acquire)->map;
  }

  // Keys per read guard in load_many: one batch of Map::find_many.
  static constexpr std::size_t load_many_group = 64;

  // Whether load goes through load_copy (detail/config.hpp).
  static constexpr bool copy_after_guard = detail::copy_after_guard<V>;

  // load's lookup for small trivially copyable values: the read guard, Map::find and the copy
  // in one flattened function (GCC otherwise calls the guard's halves out of line).
  template <class Q>
  SAFEMAP_FLATTEN bool load_copy(const Q& key, V& out) const {
    rcu::read_guard guard;
    const V* v = detail::map_access::find_unsynchronized(current_guarded(), key);
    if (v == nullptr) return false;
    out = *v;
    return true;
  }

  // visit's lookup: Map::find on the current snapshot, flattened (visit itself cannot be: that
  // would inline its callback's whole call tree). Caller is inside an rcu::read_guard.
  template <class Q>
  SAFEMAP_FLATTEN const V* find_guarded(const Q& key) const {
    return detail::map_access::find_unsynchronized(current_guarded(), key);
  }

  // The current snapshot. Caller holds writer_mutex_ (so it is not retired meanwhile, and the
  // last store to current_ happened before under the same mutex: relaxed suffices).
  const snapshot_node& current_locked() const noexcept {
    return *current_.load(std::memory_order_relaxed);
  }

  // One write: holds writer_mutex_ for its lifetime, after refusing a write made from inside
  // compute's or update's f on this map (the mutex is not recursive; one thread-local load
  // when no callback runs on this thread). The snapshot a write replaces is retired after the
  // mutex is released: it is unreachable from the moment current_ changed, and retiring
  // (liburcu's call_rcu may wake its worker; the TSan fallback may free a batch) need not
  // lengthen the critical section every other writer waits on.
  class write_section {
   public:
    explicit write_section(CowMap& m) : m_(m) {
      if (SAFEMAP_UNLIKELY(!detail::held_locks::empty()) &&
          detail::held_locks::held(&m_.writer_mutex_) != detail::held_locks::mode::none) {
        detail::report_reentrant_write();
      }
      m_.writer_mutex_.lock();
    }
    ~write_section() {
      m_.writer_mutex_.unlock();
      if (replaced_ != nullptr) {
        rcu::retire(replaced_, replaced_bytes_);
        // Bound the retired copies (# Memory). Not from inside compute's or update's f of any
        // safemap map: a reader elsewhere may be waiting for the lock this thread holds.
        if (detail::held_locks::empty()) rcu::throttle();
      }
    }
    write_section(const write_section&) = delete;
    write_section& operator=(const write_section&) = delete;

   private:
    friend class CowMap;
    CowMap& m_;
    snapshot_node* replaced_ = nullptr;  // set by publish_locked; at most one per write
    std::size_t replaced_bytes_ = 0;     // its size, counted in rcu::retired_bytes()
  };

  // Copies the current snapshot, applies modify(Map&) to the copy and publishes it. Caller
  // holds writer_mutex_ through w. If the copy or modify throws, nothing is published.
  template <class Modify>
  void copy_modify_publish_locked(write_section& w, Modify&& modify) {
    map_type next(current_locked().map);
    note_copy_locked();
    std::forward<Modify>(modify)(next);
    publish_locked(w, std::move(next));
  }

  // Publishes next as the new current snapshot (version + 1); w retires the old one once the
  // mutex is released. Caller holds writer_mutex_ through w. The release store orders the
  // whole construction of the new snapshot before any reader's acquire load that sees it; the
  // old snapshot is unreachable for new readers once the store is done, which is what
  // rcu::retire requires. If allocating the node throws, next is untouched and nothing is
  // published.
  void publish_locked(write_section& w, map_type&& next) {
    snapshot_node* old = current_.load(std::memory_order_relaxed);
    auto* fresh = new snapshot_node(std::move(next), old->version + 1);
    current_.store(fresh, std::memory_order_release);
    w.replaced_ = old;
    w.replaced_bytes_ = snapshot_bytes(*old);
    bump_locked(retired_);
  }

  // What freeing s gives back: the table and the snapshot header (not the heap memory keys and
  // values own, which Map does not know). O(1).
  static std::size_t snapshot_bytes(const snapshot_node& s) {
    return sizeof(snapshot_node) + s.map.stats().bytes;
  }

  // The counters have a single writer at a time (writer_mutex_ is held), so a relaxed load and
  // store replace an atomic read-modify-write; readers of stats() only need tear-free values.
  static void bump_locked(std::atomic<std::uint64_t>& counter) noexcept {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  void note_copy_locked() noexcept { bump_locked(copies_); }
  void note_copy_avoided_locked() noexcept { bump_locked(copies_avoided_); }

  // Invariant: never null; points to an immutable snapshot. Loaded (acquire) by readers inside
  // an rcu::read_guard; stored (release) only with writer_mutex_ held, and the snapshot it
  // replaces is retired once that mutex is released (write_section). On its own cache line:
  // every reader loads it, and the writer's mutex and counters below must not share the line.
  alignas(64) std::atomic<snapshot_node*> current_;

  // Serializes writers. Never held while waiting for readers or for a grace period; held
  // while compute's and update's f run (marked in detail::held_locks so a write from f is
  // reported instead of deadlocking).
  alignas(64) std::mutex writer_mutex_;

  // Statistics. Written only with writer_mutex_ held (bump_locked); read relaxed by stats().
  std::atomic<std::uint64_t> copies_{0};
  std::atomic<std::uint64_t> retired_{0};
  std::atomic<std::uint64_t> copies_avoided_{0};
};

}  // namespace safemap
