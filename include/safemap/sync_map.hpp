// safemap/sync_map.hpp - SyncMap: Go's sync.Map algorithm in C++.
//
// Provenance: a port of Go's sync/map.go (go1.20+: Load, Store, LoadOrStore, LoadAndDelete,
// Delete, Swap, CompareAndSwap, CompareAndDelete, Range, missLocked, dirtyLocked and the entry
// methods), BSD-licensed: Copyright 2016 The Go Authors, https://go.dev/LICENSE. Written
// afresh in C++; each function names the Go function it follows. Go's vocabulary is kept in
// snake_case (read, dirty, misses, amended, expunged, miss_locked, dirty_locked).
//
// # When to use it (and when not)
// Like Go's sync.Map, SyncMap is specialized for two cases: (1) keys written once and read
// many times (caches that only grow), (2) threads that read, write and overwrite disjoint sets
// of keys. There, loads and overwrites of existing keys take no lock and write no shared memory
// except the value itself. Adding new keys is slower than in LockedMap/ShardedMap (each new
// key goes through one mutex, and after a promotion the first new key copies the read map),
// and every value lives in its own heap box. For write-heavy maps with a changing key set use
// ShardedMap; for read-mostly maps written in batches CowMap.
//
// # The algorithm
// Two maps of *entries* (an entry is the slot of one key: an atomic pointer to a boxed value):
//
//   read_   an immutable safemap::Map<K, entry*> behind one atomic pointer (read_only), read
//           without any lock. Its key set never changes; the values of its entries are updated
//           in place with atomic operations (no lock) unless the entry is expunged.
//   dirty_  a safemap::Map<K, entry*> guarded by mu_, holding every non-expunged entry of the
//           read map plus the keys added since the last promotion. has_dirty_ == false is Go's
//           `dirty == nil`.
//
// A lookup searches read_ first; only a key absent from read_ while read_ is *amended* (dirty_
// holds keys read_ lacks) takes mu_ and searches dirty_, counting a *miss*. When misses reach
// dirty_'s size, the cost of the misses has paid for a copy and dirty_ is *promoted*: moved
// (O(1)) into a new read_only, with has_dirty_ = false. The next new key rebuilds dirty_ from
// read_ (dirty_locked: O(read size)), expunging deleted entries on the way.
//
// ## Invariants (each is checked in the code where it is relied on)
//  R1 read_ is never null and is stored only with mu_ held (release; loads are acquire).
//     A published read_only's map never changes; only `amended` does, false -> true, under mu_.
//  R2 amended == false => dirty_ has no key that read_ lacks (amended == true may be a false
//     positive after load_and_delete removed the only such key: it costs slow paths until the
//     next promotion, like Go). amended == true => has_dirty_.
//  D1 has_dirty_ => dirty_ holds every entry of read_ whose p is not expunged, under its key,
//     and no entry of dirty_ is expunged.
//  D2 a key has at most one reachable entry: if read_ has the key, dirty_ (when present) maps
//     it to the same entry or (expunged) not at all.
//  E1 p == expunged (for an entry of the current read map) <=> has_dirty_ and the entry is not
//     in dirty_. Only mu_ holders set or clear expunged. So when !has_dirty_, no entry is
//     expunged (promotion publishes dirty_, whose entries are not expunged).
//  E2 an entry whose p is not expunged is reachable from read_ or dirty_: every entry is made
//     expunged before it becomes unreachable, and then stays expunged until it is freed. A
//     lock-free CAS that succeeds on a non-expunged p therefore always writes into the map.
//  M1 misses_ counts miss_locked calls since the last promotion (only while has_dirty_).
//  S1 size_ is the number of reachable entries holding a value, exact when no write is in
//     flight (a write adjusts it right after the transition it made).
//
// ## Entry states (entry::p)
//   live box  a value; read_ and/or dirty_ map the key to this entry.
//   nullptr   deleted; either !has_dirty_, or dirty_ maps the key to this entry (Go's nil).
//   expunged  deleted and not in dirty_ (a unique address, never dereferenced).
// Transitions:
//   nil/live -> live      store, swap, load_or_store, compare_and_swap, compute: CAS without
//                         mu_ on a read-map entry (try_swap, try_load_or_store,
//                         try_compare_and_swap, try_compute), or under mu_ on a dirty entry.
//   live -> nil           erase, load_and_delete, compare_and_delete, compute -> nullopt: CAS.
//   nil -> expunged       try_expunge_locked (dirty_locked, mu_ held): the entry is left out
//                         of the new dirty_ and queued in expunged_pending_.
//   expunged -> nil       unexpunge_locked (mu_ held): the entry is put back into dirty_
//                         first, then the mark is cleared (store to an expunged key).
//   any -> expunged, final  the entry becomes unreachable: at promotion (it was expunged and
//                         not in dirty_), load_and_delete of a dirty-only key, clear(). It is
//                         then handed to rcu::retire.
//
// ## amended as an atomic flag (the one structural difference from Go)
// Go marks read as amended by publishing a new readOnly{m: read.m, amended: true} that shares
// the same Go map. A C++ Map cannot be shared by two read_only objects without copying it
// (O(n)), so read_only::amended is a std::atomic<bool> flipped false -> true under mu_. This
// is observationally the same: Go's two structs differ only in amended and their m is the same
// map; a reader that loads amended == false here is one that loaded Go's old pointer, and a
// reader that sees true takes mu_ and re-checks, as in Go. amended never goes back to false
// within one read_only (promotion and clear publish a new one), just as each Go struct is
// immutable.
//
// # Reclamation (reclaim.hpp)
// Every public operation runs inside one rcu::read_guard for its whole duration, the parts
// under mu_ included, so every read_only, entry and box pointer it loaded stays valid until
// it returns. Replaced or deleted boxes, unreachable entries (E2) and replaced read_only
// objects are handed to rcu::retire, which frees them after a grace period; no map operation
// waits for one. Boxes are immutable once published, and a box pointer cannot be reused while
// a reader holds it, so a CAS on entry::p has no ABA problem. The destructor frees everything
// directly (no other thread may use the map then); objects retired earlier are freed by RCU
// and do not refer back to the map.
//
// # Beyond Go
//  - size(): exact when no write is in flight (S1); one shared atomic counter written by
//    every transition between "no value" and "a value".
//  - version(): +1 on every successful mutation (a second shared counter). Reads never write it.
//  - compute(k, f): a CAS loop on the key's entry: f(current) is called without any lock,
//    then the result is CAS'ed in; a lost race calls f again (docs/design.md §4 allows it for
//    lock-free maps: f must be pure). For a key with no entry f(nullopt) is computed before mu_ is
//    taken, so f may call any method of this map.
//  - clear(): see its comment. Go 1.23's Clear lets a racing lock-free store land in an entry
//    of the old read map and be lost; SyncMap expunges those entries before returning.
//  - stats(): counters of the slow paths, kept under mu_ only.
//
// # Callbacks and re-entrancy
// No lock is held while a callback runs (range's f, visit's f, compute's f), so callbacks may
// call any method of the same map, writes included, from the same thread.
//
// Concurrency: every member function is thread-safe, except construction and destruction.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <ranges>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "safemap/concurrent.hpp"
#include "safemap/detail/config.hpp"
#include "safemap/detail/visit.hpp"
#include "safemap/hash.hpp"
#include "safemap/map.hpp"
#include "safemap/reclaim.hpp"

namespace safemap {

// Counters of a SyncMap, for operators and tests. Taken under the map's mutex; the fields
// describe one moment (apart from size, which lock-free writers may move meanwhile).
struct SyncMapStats {
  std::size_t size = 0;               // size()
  MapStats read;                      // the read map's table (its size counts every entry)
  bool amended = false;               // the read map is marked amended
  bool has_dirty = false;             // a dirty map exists (Go's dirty != nil)
  std::size_t dirty_size = 0;         // entries in the dirty map (0 when there is none)
  std::size_t pending_misses = 0;     // misses since the last promotion (misses_)
  std::uint64_t misses = 0;           // miss_locked calls, in total
  std::uint64_t promotions = 0;       // dirty maps promoted to read (by misses or range)
  std::uint64_t dirty_copies = 0;     // dirty_locked runs that rebuilt dirty from read
  std::uint64_t expunged = 0;         // try_expunge_locked successes (nil -> expunged)
  std::uint64_t unexpunged = 0;       // unexpunge_locked successes (expunged -> nil)
  std::uint64_t read_misses = 0;      // load/contains/visit/compare_and_delete lookups that
                                      // missed an amended read map and took the mutex
  std::uint64_t entries_retired = 0;  // unreachable entries handed to rcu::retire
};

namespace detail {
// Storage whose address marks an expunged entry (Go's `expunged`); never read or written. One
// object per alignment, so the marker is a validly aligned box address.
template <std::size_t Align>
struct alignas(Align) sync_expunged_marker {
  unsigned char unused;
};
template <std::size_t Align>
inline sync_expunged_marker<Align> sync_expunged_storage{};
}  // namespace detail

template <class K, class V, class Hash = safemap::Hash<K>, class Eq = std::equal_to<>>
class SyncMap : public detail::immutable_visitation<SyncMap<K, V, Hash, Eq>, K, V> {
 public:
  using key_type = K;
  using mapped_type = V;
  using hasher = Hash;
  using key_equal = Eq;
  using size_type = std::size_t;
  using map_type = Map<K, V, Hash, Eq>;

 private:
  // One stored value (Go boxes values in interfaces the same way). Immutable once published:
  // a new value is a new box, so readers copy from it without synchronization.
  struct box : rcu::retirable<box> {
    template <class... Args>
    explicit box(Args&&... args) : value(std::forward<Args>(args)...) {}
    const V value;
  };

  static box* expunged() noexcept {
    return reinterpret_cast<box*>(&detail::sync_expunged_storage<alignof(box)>);
  }
  static bool live(const box* b) noexcept { return b != nullptr && b != expunged(); }

  // The slot of one key (Go's entry). p: a live box, nullptr (deleted) or expunged(); see the
  // state machine at the top of the file. Methods named try_ give up on expunged.
  struct entry : rcu::retirable<entry> {
    explicit entry(box* b) noexcept : p(b) {}

    // Go's entry.load: the live box, or nullptr when deleted or expunged.
    box* load() const noexcept {
      box* b = p.load(std::memory_order_acquire);
      return live(b) ? b : nullptr;
    }

    // Go's entry.trySwap: installs b unless expunged. On success `old` is the replaced
    // pointer (nullptr: there was no value).
    bool try_swap(box* b, box*& old) noexcept {
      box* cur = p.load(std::memory_order_acquire);
      for (;;) {
        if (cur == expunged()) return false;
        if (p.compare_exchange_weak(cur, b, std::memory_order_acq_rel, std::memory_order_acquire)) {
          old = cur;
          return true;
        }
      }
    }

    // Go's entry.delete: clears a live value; returns it, or nullptr when there was none.
    box* remove() noexcept {
      box* cur = p.load(std::memory_order_acquire);
      for (;;) {
        if (!live(cur)) return nullptr;
        if (p.compare_exchange_weak(cur, nullptr, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
          return cur;
        }
      }
    }

    // Go's entry.tryExpungeLocked: nil -> expunged. True if the entry is expunged afterwards.
    // mu_ held: a lock-free writer may race to store into nil, then the entry stays live.
    bool try_expunge_locked() noexcept {
      box* cur = p.load(std::memory_order_acquire);
      while (cur == nullptr) {
        if (p.compare_exchange_weak(cur, expunged(), std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
          return true;
        }
      }
      return cur == expunged();
    }

    std::atomic<box*> p;
  };

  using table = Map<K, entry*, Hash, Eq>;

  // Go's readOnly. m is never modified after publication (R1).
  struct read_only : rcu::retirable<read_only> {
    read_only() noexcept = default;
    explicit read_only(table&& t) noexcept : m(std::move(t)) {}
    const table m{};
    std::atomic<bool> amended{false};  // false -> true only, under mu_ (see the top of file)
  };

 public:
  // --- construction ---------------------------------------------------------------------------

  // An empty map. Allocates the (empty) first read map.
  SyncMap() : read_(new read_only()) {}

  // Stores every entry of `initial` (from_json and load_snapshot build maps this way).
  explicit SyncMap(map_type initial) : SyncMap() {
    initial.for_each([&](const K& k, V& v) { store(k, std::move(v)); });
  }

  SyncMap(const SyncMap&) = delete;  // like Go's "must not be copied after first use"
  SyncMap& operator=(const SyncMap&) = delete;

  // Frees every entry and value now; objects retired earlier are freed by RCU after their
  // grace period (rcu::barrier() waits for that). Concurrency: no other thread may use the map.
  ~SyncMap() {
    read_only* read = read_.load(std::memory_order_relaxed);
    // Entries of the read map: free their values and mark them, so the dirty pass below can
    // tell them from dirty-only entries (D1: no entry of dirty_ is expunged otherwise).
    for (const auto& kv : read->m) {
      box* b = kv.second->p.load(std::memory_order_relaxed);
      if (live(b)) delete b;
      kv.second->p.store(expunged(), std::memory_order_relaxed);
    }
    if (has_dirty_) {
      for (const auto& kv : std::as_const(dirty_)) {
        box* b = kv.second->p.load(std::memory_order_relaxed);
        if (b == expunged()) continue;  // also in the read map: freed below
        delete b;                       // nullptr or a live box
        delete kv.second;
      }
    }
    for (const auto& kv : read->m) delete kv.second;
    delete read;
  }

  // --- reads ----------------------------------------------------------------------------------

  // The values of many keys, in key order (concurrent.hpp): out[i] = load(keys[i]); returns
  // how many were found. 64 keys at a time under one read guard: their read-map lookups
  // overlap their cache misses (Map::find_many), then their entries' and boxes' loads are
  // prefetched a pass ahead of their use. A key missing from an amended read map goes the
  // way load's does (the mutex, the dirty map, a miss toward promotion).
  // Concurrency: as load, per key.
  std::size_t load_many(std::span<const K> keys, std::span<std::optional<V>> out) const {
    detail::check_many_out(keys.size(), out.size(), "safemap::SyncMap::load_many");
    std::size_t found = 0;
    entry* entries[load_many_group];
    const box* boxes[load_many_group];
    for (std::size_t base = 0; base < keys.size(); base += load_many_group) {
      const std::size_t len = std::min(load_many_group, keys.size() - base);
      rcu::read_guard guard;
      const read_only* read = load_read();
      detail::map_access::find_many_unsynchronized(
          read->m, len, [&](std::size_t i) -> const K& { return keys[base + i]; },
          [&](std::size_t i, entry* const* pe) {
            entries[i] = pe != nullptr ? *pe : nullptr;
            if (pe != nullptr) __builtin_prefetch(*pe);
          });
      const bool amended = read->amended.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < len; ++i) {
        entry* e = entries[i];
        if (e == nullptr && amended) e = find_entry_amended(keys[base + i]);
        boxes[i] = e != nullptr ? e->load() : nullptr;
        if (boxes[i] != nullptr) __builtin_prefetch(boxes[i]);
      }
      for (std::size_t i = 0; i < len; ++i) {
        detail::put_value(out[base + i], boxes[i] != nullptr ? &boxes[i]->value : nullptr);
        found += boxes[i] != nullptr;
      }
    }
    return found;
  }
  template <std::ranges::input_range R>
  std::vector<std::optional<V>> load_many(R&& keys) const {
    return detail::load_many_of(*this, std::forward<R>(keys));
  }

  // The value for key, or nullopt (Go's Load). Concurrency: lock-free when the key is in the
  // read map or the read map is not amended; otherwise locks mu_ briefly and counts a miss.
  // Inlined into the caller, with the lookup in load_copy for small trivially copyable values,
  // as CowMap::load (which says why).
  template <class Q>
  SAFEMAP_ALWAYS_INLINE std::optional<V> load(const Q& key) const {
    if constexpr (copy_after_guard) {
      V value{};
      if (!load_copy(key, value)) return std::nullopt;
      return value;
    } else {
      rcu::read_guard guard;
      if (const box* b = find_box(key)) return b->value;
      return std::nullopt;
    }
  }

  // Concurrency: as load.
  template <class Q>
  SAFEMAP_FLATTEN bool contains(const Q& key) const {
    rcu::read_guard guard;
    return find_box(key) != nullptr;
  }

  // Calls f(const V&) on the stored value in place, if present; returns whether it was.
  // Concurrency: as load; f runs inside the read guard with no lock held, so it may call any
  // method of this map (a write it makes does not change the value f is looking at).
  template <class Q, class F>
  bool visit(const Q& key, F f) const {
    rcu::read_guard guard;
    const box* b = find_box(key);
    if (b == nullptr) return false;
    f(b->value);  // in place: no copy of the value
    return true;
  }

  // Calls f(const K&, const V&) for each key, each at most once; f may return bool, false
  // stops (Go's Range). Weakly consistent: a value seen is one the key held at some moment
  // during the call; keys stored or deleted meanwhile may or may not be seen. Concurrency: if
  // the read map is amended, locks mu_ once to promote the dirty map (Go: "Range is already
  // O(N), so a call to Range amortizes an entire copy"), then walks the read map lock-free;
  // f runs with no lock held and may call any method of this map.
  template <class F>
  void range(F f) const {
    rcu::read_guard guard;
    read_only* read = load_read();
    if (read->amended.load(std::memory_order_acquire)) {
      std::lock_guard lock(mu_);
      read = read_.load(std::memory_order_relaxed);
      if (read->amended.load(std::memory_order_relaxed)) {
        if (!try_promote_locked()) throw std::bad_alloc();
        read = read_.load(std::memory_order_relaxed);
      }
    }
    detail::map_access::for_each_unsynchronized(read->m, [&f](const K& k, entry* const& e) {
      box* b = e->load();
      return b == nullptr || detail::invoke_range_callback(f, k, b->value);
    });
  }

  // The view json.hpp serializes without copying: calls f(walk), where walk(g) calls
  // g(const K&, const V&) for each key with a value, like range (weakly consistent), and every
  // reference stays valid until f returns (one read-side critical section spans the call).
  // f must not block for long (it delays reclamation). Concurrency: as range.
  template <class F>
  void read_view(F&& f) const {
    rcu::read_guard guard;
    read_only* read = load_read();
    if (read->amended.load(std::memory_order_acquire)) {
      std::lock_guard lock(mu_);
      read = read_.load(std::memory_order_relaxed);
      if (read->amended.load(std::memory_order_relaxed)) {
        if (!try_promote_locked()) throw std::bad_alloc();
        read = read_.load(std::memory_order_relaxed);
      }
    }
    f([read](auto&& g) {
      detail::map_access::for_each_unsynchronized(read->m, [&g](const K& k, entry* const& e) {
        if (box* b = e->load()) g(k, static_cast<const V&>(b->value));
      });
    });
  }

  // The number of keys with a value; exact when no write is in flight. Concurrency: one
  // relaxed atomic load.
  std::size_t size() const noexcept {
    const std::int64_t n = size_.load(std::memory_order_relaxed);
    return n < 0 ? 0 : static_cast<std::size_t>(n);  // < 0 only for a moment, mid-write
  }
  // Concurrency: as size().
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  // A copy built by range (weakly consistent, as range). Concurrency: as range.
  map_type snapshot() const {
    map_type out(size());
    range([&out](const K& k, const V& v) { out.try_emplace(k, v); });
    return out;
  }

  // Grows by 1 on every successful mutation; never on a read or a failed write. Concurrency:
  // one acquire load.
  std::uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }

  // Counters of the slow paths and the table shapes. Concurrency: locks mu_.
  SyncMapStats stats() const {
    rcu::read_guard guard;
    std::lock_guard lock(mu_);
    const read_only* read = read_.load(std::memory_order_relaxed);
    SyncMapStats s;
    s.size = size();
    s.read = read->m.stats();
    s.amended = read->amended.load(std::memory_order_relaxed);
    s.has_dirty = has_dirty_;
    s.dirty_size = has_dirty_ ? dirty_.size() : 0;
    s.pending_misses = misses_;
    s.misses = misses_total_;
    s.promotions = promotions_;
    s.dirty_copies = dirty_copies_;
    s.expunged = expunged_total_;
    s.unexpunged = unexpunged_total_;
    s.read_misses = read_misses_;
    s.entries_retired = entries_retired_;
    return s;
  }

  // --- writes ---------------------------------------------------------------------------------

  // Inserts or overwrites (Go's Store, which is Swap). Concurrency: lock-free (one CAS) when
  // the key is in the read map and not expunged; otherwise under mu_.
  void store(K key, V value) { swap_impl(std::move(key), std::move(value), false); }

  // Stores value; returns the previous value if any (Go's Swap). Concurrency: as store.
  std::optional<V> swap(K key, V value) {
    return swap_impl(std::move(key), std::move(value), true);
  }

  // The existing value and true, or value and false after storing it (Go's LoadOrStore).
  // Concurrency: lock-free when the key is in the read map and not expunged; otherwise under
  // mu_ (a dirty hit counts a miss).
  std::pair<V, bool> load_or_store(K key, V value) {
    rcu::read_guard guard;
    std::unique_ptr<box> fresh;  // value's box, allocated on first need
    auto make = [&]() -> box* {
      if (!fresh) fresh = std::make_unique<box>(std::move(value));
      return fresh.get();
    };
    box* found = nullptr;  // the live box loaded, or nullptr once fresh is stored
    bool done = false;
    read_only* read = load_read();
    if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key))
      done = try_load_or_store(*pe, make, found);
    if (!done) {
      std::lock_guard lock(mu_);
      read = read_.load(std::memory_order_relaxed);
      if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key)) {
        entry* e = *pe;
        unexpunge_locked(std::move(key), e);
        try_load_or_store(e, make, found);  // cannot meet expunged: mu_ is held (E1)
      } else if (entry* const* de = dirty_.find(key)) {
        try_load_or_store(*de, make, found);
        miss_locked();
      } else {
        insert_new_locked(read, std::move(key), make());
      }
    }
    if (found != nullptr) return {found->value, true};  // fresh, if any, is freed unused
    box* stored = fresh.release();
    size_.fetch_add(1, std::memory_order_relaxed);
    bump_version();
    return {stored->value, false};
  }

  // Removes key; returns the removed value (Go's LoadAndDelete). Concurrency: lock-free (one
  // CAS) when the key is in the read map; otherwise under mu_, counting a miss.
  template <class Q>
  std::optional<V> load_and_delete(const Q& key) {
    rcu::read_guard guard;
    if (box* b = take(key)) return b->value;  // retired, but valid until the guard ends
    return std::nullopt;
  }

  // True if something was removed (Go's Delete). Concurrency: as load_and_delete.
  template <class Q>
  bool erase(const Q& key) {
    rcu::read_guard guard;
    return take(key) != nullptr;
  }

  // Replaces the value with desired only if the key is present and its value == expected (Go's
  // CompareAndSwap). Concurrency: lock-free when the key is in the read map or the read map is
  // not amended; otherwise under mu_ (a dirty hit counts a miss).
  template <class Q>
  bool compare_and_swap(const Q& key, const V& expected, V desired) {
    rcu::read_guard guard;
    std::unique_ptr<box> fresh;
    read_only* read = load_read();
    if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key)) {
      return try_compare_and_swap(*pe, expected, desired, fresh);
    }
    if (!read->amended.load(std::memory_order_acquire)) return false;  // no such key
    std::lock_guard lock(mu_);
    read = read_.load(std::memory_order_relaxed);
    if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key)) {
      return try_compare_and_swap(*pe, expected, desired, fresh);
    }
    if (entry* const* de = dirty_.find(key)) {
      const bool swapped = try_compare_and_swap(*de, expected, desired, fresh);
      miss_locked();  // Go: the key set did not change, but a promotion would make this faster
      return swapped;
    }
    return false;
  }

  // Removes the key only if its value == expected (Go's CompareAndDelete). Concurrency: as
  // load for finding the entry, then a lock-free CAS.
  template <class Q>
  bool compare_and_delete(const Q& key, const V& expected) {
    rcu::read_guard guard;
    entry* e = find_entry(key);
    if (e == nullptr) return false;
    box* cur = e->p.load(std::memory_order_acquire);
    for (;;) {
      if (!live(cur) || !(cur->value == expected)) return false;
      if (e->p.compare_exchange_weak(cur, nullptr, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
        removed_value(cur);
        return true;
      }
    }
  }

  // Atomically per key: f(std::optional<V> current) -> std::optional<V>; nullopt erases.
  // Returns the new state. Concurrency: a lock-free CAS loop on the key's entry, calling f
  // before each attempt (f may run more than once and must be pure); a key without an entry
  // calls f(nullopt) first and then takes mu_ to add it. f never runs under mu_: it may call
  // any method of this map.
  template <class F>
  std::optional<V> compute(const K& key, F f) {
    rcu::read_guard guard;
    for (;;) {
      read_only* read = load_read();
      entry* e = nullptr;
      if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key)) {
        e = *pe;
        if (auto result = try_compute(e, f)) return std::move(*result);
        // expunged: the key has to go back into dirty_ under mu_
      }
      std::optional<V> if_absent = f(std::optional<V>());
      // Absent from a read map that was not amended (R2) and staying absent: nothing to write.
      if (!if_absent && e == nullptr && !read->amended.load(std::memory_order_acquire)) {
        return std::nullopt;
      }
      {
        std::lock_guard lock(mu_);
        read = read_.load(std::memory_order_relaxed);
        if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key)) {
          e = *pe;
          unexpunge_locked(key, e);
        } else if (entry* const* de = dirty_.find(key)) {
          e = *de;
          miss_locked();
        } else {
          if (!if_absent) return std::nullopt;
          auto fresh = std::make_unique<box>(*if_absent);
          insert_new_locked(read, K(key), fresh.get());
          fresh.release();
          size_.fetch_add(1, std::memory_order_relaxed);
          bump_version();
          return if_absent;
        }
      }
      // The key appeared meanwhile (or was expunged): apply f to its entry without mu_.
      if (auto result = try_compute(e, f)) return std::move(*result);
      // The entry became unreachable meanwhile (promotion, clear, load_and_delete): start over.
    }
  }

  // Removes every key. Concurrency: under mu_. Not atomic with respect to concurrent writers:
  // a write racing with clear may be erased by it or survive it, never lost half-way.
  //
  // Why the old entries are expunged: after the empty read map is published, a lock-free
  // writer that loaded the old read map a moment earlier may still CAS into one of its
  // entries. Go's Clear leaves those entries as they are, so such a store can complete after
  // Clear has returned and still be lost: it landed in an entry no map reaches any more (here
  // it would also leak its box and skew size()). Exchanging every old entry's p to expunged
  // before returning closes that window: a CAS that lands before the exchange happened during
  // clear and is erased by it (its box is retired and counted off), and after the exchange
  // every lock-free path sees expunged and falls to the slow path, which waits for mu_ and
  // then finds the new, empty maps (E2).
  void clear() {
    rcu::read_guard guard;
    std::lock_guard lock(mu_);
    read_only* old = read_.load(std::memory_order_relaxed);
    if (old->m.size() == 0 && !has_dirty_) return;            // no entry at all: nothing to do
    read_.store(new read_only(), std::memory_order_release);  // may throw: nothing changed yet
    std::int64_t removed = 0;
    for (const auto& kv : old->m) removed += orphan_locked(kv.second);
    if (has_dirty_) {
      for (const auto& kv : std::as_const(dirty_)) {
        // Expunged now means "also in the old read map, orphaned above" (D1).
        if (kv.second->p.load(std::memory_order_relaxed) != expunged()) {
          removed += orphan_locked(kv.second);
        }
      }
      dirty_ = table();
    }
    has_dirty_ = false;
    misses_ = 0;
    expunged_pending_.clear();  // read-map entries: orphaned above
    rcu::retire(old);
    size_.fetch_sub(removed, std::memory_order_relaxed);
    bump_version();
  }

  // === Visitation, bulk erase and moves (Boost.Unordered's concurrent_flat_map habits) ========
  // A SyncMap value lives in an immutable box that lock-free readers copy from without
  // synchronization, so it cannot be changed in place: every visitation hands f a const V&,
  // on a const map or not, and a non-const visit or visit_all whose f needs a V& is rejected
  // at compile time, naming the alternative (compute or swap). No lock is held while f or pred
  // runs: they may call any method of this map, writes included, and if they throw, the
  // exception propagates with the map whole and no guard or lock left behind.

  // Takes over every entry of other; other is left empty and usable. This map takes over
  // other's version(); other's version() grows by 1 (a watcher of it sees a change).
  // Concurrency: not concurrent with any other call on either map.
  SyncMap(SyncMap&& other) : SyncMap() {
    swap_state(other);
    other.version_.store(version_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // As the move constructor; this map's previous entries are freed.
  // Concurrency: not concurrent with any other call on either map.
  SyncMap& operator=(SyncMap&& other) {
    if (this == &other) return *this;
    SyncMap taken(std::move(other));
    swap_state(taken);
    return *this;  // taken (this map's previous state) is freed here
  }

  // visit on a non-const map (f gets const V&; a callable that needs V& is refused at
  // compile time), cvisit, visit_all, cvisit_all, erase_if, insert_or_visit, emplace_or_visit: from
  // detail::immutable_visitation<SyncMap, K, V> (detail/visit.hpp), which builds
  // them from this map's own calls and documents their guarantees.
  using detail::immutable_visitation<SyncMap, K, V>::visit;

 private:
  // Exchanges everything but the mutex with other (the move operations' body).
  void swap_state(SyncMap& other) noexcept {
    auto swap_atomic = [](auto& a, auto& b) {
      b.store(a.exchange(b.load(std::memory_order_relaxed), std::memory_order_relaxed),
              std::memory_order_relaxed);
    };
    swap_atomic(read_, other.read_);
    swap_atomic(size_, other.size_);
    swap_atomic(version_, other.version_);
    dirty_.swap(other.dirty_);
    std::swap(has_dirty_, other.has_dirty_);
    std::swap(misses_, other.misses_);
    expunged_pending_.swap(other.expunged_pending_);
    std::swap(misses_total_, other.misses_total_);
    std::swap(promotions_, other.promotions_);
    std::swap(read_misses_, other.read_misses_);
    std::swap(entries_retired_, other.entries_retired_);
    std::swap(dirty_copies_, other.dirty_copies_);
    std::swap(expunged_total_, other.expunged_total_);
    std::swap(unexpunged_total_, other.unexpunged_total_);
  }
  // === end of visitation, bulk erase and moves ==================================================

 private:
  read_only* load_read() const noexcept { return read_.load(std::memory_order_acquire); }

  void bump_version() noexcept { version_.fetch_add(1, std::memory_order_release); }

  // Accounts for a live box taken out of an entry (-> nil or expunged): retires it.
  void removed_value(box* b) noexcept {
    rcu::retire(b);
    size_.fetch_sub(1, std::memory_order_relaxed);
    bump_version();
  }

  // The entry for key, or nullptr: Go's lookup in Load (and CompareAndDelete). The fast path
  // is one lookup in the read map plus, on a miss, one load of amended (on the read map's own
  // lines): small enough to be inlined into load, contains and visit, so the read map's
  // Map::find is inlined there too. Only a miss of an amended read map calls the out-of-line
  // find_entry_amended (the mutex, the dirty map and miss counting stay out of the hot code).
  template <class Q>
  entry* find_entry(const Q& key) const {
    read_only* read = load_read();
    if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key)) return *pe;
    if (SAFEMAP_LIKELY(!read->amended.load(std::memory_order_acquire))) return nullptr;
    return find_entry_amended(key);
  }

  // Whether load goes through load_copy (detail/config.hpp).
  static constexpr bool copy_after_guard = detail::copy_after_guard<V>;

  // Keys per read guard in load_many: one batch of Map::find_many.
  static constexpr std::size_t load_many_group = 64;

  // load's lookup for small trivially copyable values: the read guard, the read map's lookup
  // and the copy in one flattened function (the slow path stays an out-of-line call).
  template <class Q>
  SAFEMAP_FLATTEN bool load_copy(const Q& key, V& out) const {
    rcu::read_guard guard;
    const box* b = find_box(key);
    if (b == nullptr) return false;
    out = b->value;
    return true;
  }

  // The live box for key, or nullptr (absent, deleted or expunged): load's lookup, shared by
  // contains and visit. Flattened, so that visit, which cannot flatten (that would inline its
  // callback's whole call tree), still gets the read map's Map::find inlined.
  template <class Q>
  SAFEMAP_FLATTEN box* find_box(const Q& key) const {
    entry* e = find_entry(key);  // never null when found: maps hold only live entry pointers
    return e != nullptr ? e->load() : nullptr;
  }

  // find_entry's slow path: locks mu_, re-checks the read map (it may have been promoted while
  // we waited: not a miss then), searches dirty_ and counts a miss.
  template <class Q>
  SAFEMAP_NOINLINE entry* find_entry_amended(const Q& key) const {
    std::lock_guard lock(mu_);
    read_only* read = read_.load(std::memory_order_relaxed);
    if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key)) return *pe;
    if (!read->amended.load(std::memory_order_relaxed)) return nullptr;
    ++read_misses_;
    entry* const* de = dirty_.find(key);
    entry* e = de != nullptr ? *de : nullptr;  // copied out before a promotion moves dirty_
    miss_locked();
    return e;
  }

  // Go's LoadAndDelete: removes key; returns the live box removed (already retired, valid
  // until the caller's guard ends) or nullptr.
  template <class Q>
  box* take(const Q& key) {
    read_only* read = load_read();
    if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key))
      return take_from(*pe);
    if (!read->amended.load(std::memory_order_acquire)) return nullptr;
    box* old = nullptr;
    {
      std::lock_guard lock(mu_);
      read = read_.load(std::memory_order_relaxed);
      if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key))
        return take_from(*pe);
      if (!read->amended.load(std::memory_order_relaxed)) return nullptr;
      if (entry* const* de = dirty_.find(key)) {
        // A dirty-only key: its entry was never in a read map (D2), so removing it from
        // dirty_ makes it unreachable. Go leaves it nil; expunging it instead keeps E2 for
        // writers that found it under mu_ earlier and CAS it after unlocking (compute,
        // compare_and_delete): they fail and retry instead of writing into an orphan.
        entry* e = *de;
        dirty_.erase(key);  // first: may throw, then nothing changed
        old = e->p.exchange(expunged(), std::memory_order_acq_rel);
        rcu::retire(e);
        ++entries_retired_;
      }
      miss_locked();  // Go: this key takes the slow path until the next promotion
    }
    if (!live(old)) return nullptr;
    removed_value(old);
    return old;
  }

  box* take_from(entry* e) noexcept {
    box* old = e->remove();
    if (old != nullptr) removed_value(old);
    return old;
  }

  // Go's Swap. Allocates the box first (Go allocates &value up front too).
  std::optional<V> swap_impl(K key, V value, bool want_previous) {
    rcu::read_guard guard;
    auto fresh = std::make_unique<box>(std::move(value));
    box* old = nullptr;
    bool done = false;
    read_only* read = load_read();
    if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key))
      done = (*pe)->try_swap(fresh.get(), old);
    if (!done) {
      std::lock_guard lock(mu_);
      read = read_.load(std::memory_order_relaxed);
      if (entry* const* pe = detail::map_access::find_unsynchronized(read->m, key)) {
        entry* e = *pe;
        unexpunge_locked(std::move(key), e);
        old = e->p.exchange(fresh.get(), std::memory_order_acq_rel);  // not expunged (E1)
      } else if (entry* const* de = dirty_.find(key)) {
        old = (*de)->p.exchange(fresh.get(), std::memory_order_acq_rel);  // not expunged (D1)
      } else {
        insert_new_locked(read, std::move(key), fresh.get());
      }
    }
    fresh.release();  // published
    std::optional<V> previous;
    if (old == nullptr) {
      size_.fetch_add(1, std::memory_order_relaxed);
      bump_version();
    } else {
      rcu::retire(old);  // stays valid until our guard ends
      bump_version();
      if (want_previous) previous.emplace(old->value);
    }
    return previous;
  }

  // Go's entry.tryLoadOrStore: sets `found` to the live box, or stores make()'s box into nil
  // and sets found = nullptr. Returns false, changing nothing, if the entry is expunged.
  template <class Make>
  static bool try_load_or_store(entry* e, Make& make, box*& found) {
    box* cur = e->p.load(std::memory_order_acquire);
    for (;;) {
      if (cur == expunged()) return false;
      if (cur != nullptr) {
        found = cur;
        return true;
      }
      box* b = make();  // allocated only once the value is needed (may throw: no change)
      if (e->p.compare_exchange_weak(cur, b, std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
        found = nullptr;
        return true;
      }
    }
  }

  // Go's entry.tryCompareAndSwap. The box for desired is allocated once, when the comparison
  // first succeeds; false if absent, expunged or different.
  bool try_compare_and_swap(entry* e, const V& expected, V& desired, std::unique_ptr<box>& fresh) {
    box* cur = e->p.load(std::memory_order_acquire);
    for (;;) {
      if (!live(cur) || !(cur->value == expected)) return false;
      if (!fresh) fresh = std::make_unique<box>(std::move(desired));
      if (e->p.compare_exchange_weak(cur, fresh.get(), std::memory_order_acq_rel,
                                     std::memory_order_acquire)) {
        fresh.release();
        rcu::retire(cur);
        bump_version();
        return true;
      }
    }
  }

  // compute's CAS loop on one entry: nullopt if the entry is (or becomes) expunged, else the
  // new state after f's result was installed. A box is allocated per attempt (f's result
  // differs per attempt); a lost race frees it and calls f again on the newer value.
  template <class F>
  std::optional<std::optional<V>> try_compute(entry* e, F& f) {
    box* cur = e->p.load(std::memory_order_acquire);
    for (;;) {
      if (cur == expunged()) return std::nullopt;
      std::optional<V> next =
          cur != nullptr ? f(std::optional<V>(cur->value)) : f(std::optional<V>());
      // Deleted and staying deleted: nothing to write; linearized at the load of cur.
      if (cur == nullptr && !next) return std::optional<std::optional<V>>(std::in_place);
      std::unique_ptr<box> fresh = next ? std::make_unique<box>(std::move(*next)) : nullptr;
      if (e->p.compare_exchange_strong(cur, fresh.get(), std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
        box* installed = fresh.release();
        if (cur != nullptr) {
          rcu::retire(cur);
          if (installed == nullptr) size_.fetch_sub(1, std::memory_order_relaxed);
        } else {
          size_.fetch_add(1, std::memory_order_relaxed);
        }
        bump_version();
        if (installed == nullptr) return std::optional<std::optional<V>>(std::in_place);
        return std::optional<std::optional<V>>(std::in_place, installed->value);
      }
      // cur now holds the newer pointer; fresh is freed at the end of this iteration
    }
  }

  // Go's unexpungeLocked and the `m.dirty[key] = e` that must follow it: an expunged entry of
  // the read map goes back into dirty_ (its key was deleted and is being stored again). The
  // dirty_ insert comes first so an allocation failure leaves the entry expunged and the map
  // unchanged; the order is invisible to others because only mu_ holders touch expunged (E1).
  template <class Key>
  void unexpunge_locked(Key&& key, entry* e) {
    if (e->p.load(std::memory_order_acquire) != expunged()) return;
    dirty_.try_emplace(K(std::forward<Key>(key)), e);
    e->p.store(nullptr, std::memory_order_release);
    ++unexpunged_total_;
  }

  // A key in neither map: Go's "adding the first new key to the dirty map" plus
  // m.dirty[key] = newEntry(value). b is adopted only if this returns normally.
  void insert_new_locked(read_only* read, K&& key, box* b) {
    dirty_locked();
    auto e = std::make_unique<entry>(b);
    dirty_.try_emplace(std::move(key), e.get());
    e.release();
    // After the insert: a lock-free reader that still sees amended == false is linearized
    // before this write, which has not returned yet.
    if (!read->amended.load(std::memory_order_relaxed)) {
      read->amended.store(true, std::memory_order_release);
    }
  }

  // Go's dirtyLocked: builds dirty_ from the read map if there is none, leaving out (and
  // expunging) deleted entries. O(read size), paid for by the misses that led to the
  // promotion before it. Strong guarantee: if copying a key throws, the entries expunged so far
  // are restored to nil (by E1 they were the only expunged ones) and dirty_ stays absent.
  void dirty_locked() {
    if (has_dirty_) return;
    const read_only* read = read_.load(std::memory_order_relaxed);
    table fresh(read->m.size());
    std::vector<entry*> newly_expunged;
    try {
      for (const auto& kv : read->m) {
        if (kv.second->try_expunge_locked()) {
          newly_expunged.push_back(kv.second);
        } else {
          fresh.try_emplace(kv.first, kv.second);
        }
      }
    } catch (...) {
      for (const auto& kv : read->m) {
        box* cur = expunged();
        kv.second->p.compare_exchange_strong(cur, nullptr, std::memory_order_acq_rel);
      }
      throw;
    }
    expunged_total_ += newly_expunged.size();
    dirty_ = std::move(fresh);
    expunged_pending_ = std::move(newly_expunged);  // was empty: cleared at promotion/clear
    has_dirty_ = true;
    ++dirty_copies_;
  }

  // Go's missLocked: one more lookup needed mu_; promote once misses cover dirty_'s size.
  void miss_locked() const noexcept {
    ++misses_total_;
    if (++misses_ < dirty_.size()) return;
    try_promote_locked();  // on allocation failure: a later miss tries again
  }

  // Publishes dirty_ as the read map (amended = false) and drops it (has_dirty_ = false), as
  // Go's missLocked and Range do. O(1) apart from retiring the entries dirty_locked expunged
  // that are still expunged: they are in neither map any more (E1, E2). false, changing
  // nothing, if the new read_only cannot be allocated.
  bool try_promote_locked() const noexcept {
    auto* fresh = new (std::nothrow) read_only(std::move(dirty_));
    if (fresh == nullptr) return false;
    read_only* old = read_.load(std::memory_order_relaxed);
    read_.store(fresh, std::memory_order_release);
    has_dirty_ = false;
    misses_ = 0;
    ++promotions_;
    for (entry* e : expunged_pending_) {
      // Unexpunged ones went back into dirty_ and are in the new read map.
      if (e->p.load(std::memory_order_relaxed) == expunged()) {
        rcu::retire(e);
        ++entries_retired_;
      }
    }
    expunged_pending_.clear();
    rcu::retire(old);
    return true;
  }

  // clear's step for one old entry: expunge it for good, retire its value and the entry.
  // Returns 1 if a value was removed.
  std::int64_t orphan_locked(entry* e) {
    box* old = e->p.exchange(expunged(), std::memory_order_acq_rel);
    rcu::retire(e);
    ++entries_retired_;
    if (!live(old)) return 0;
    rcu::retire(old);
    return 1;
  }

  // ---- data ----------------------------------------------------------------------------------
  // The const reads (load, range...) may promote the dirty map, as Go's Load and Range do:
  // that changes the representation, never the contents, hence `mutable` on what it touches.
  // Separate cache lines: read_ is loaded by every operation, the counters are written by every
  // mutation, and mu_ with the dirty state is written on the slow paths only.

  // Go's read: always safe to load (acquire); stored only with mu_ held (release). R1.
  alignas(64) mutable std::atomic<read_only*> read_;

  // S1 and the version; relaxed counters, written by every successful mutation.
  alignas(64) std::atomic<std::int64_t> size_{0};
  std::atomic<std::uint64_t> version_{0};

  // Everything below is guarded by mu_.
  alignas(64) mutable std::mutex mu_;
  mutable table dirty_;             // Go's dirty (D1, D2); meaningful only while has_dirty_
  mutable bool has_dirty_ = false;  // false is Go's dirty == nil
  mutable std::size_t misses_ = 0;  // Go's misses (M1)
  // Read-map entries expunged by the last dirty_locked: those still expunged at the next
  // promotion become unreachable then and are retired (O(expunged), not O(read size)).
  mutable std::vector<entry*> expunged_pending_;
  // stats() counters, slow paths only.
  mutable std::uint64_t misses_total_ = 0;
  mutable std::uint64_t promotions_ = 0;
  mutable std::uint64_t read_misses_ = 0;
  mutable std::uint64_t entries_retired_ = 0;
  std::uint64_t dirty_copies_ = 0;
  std::uint64_t expunged_total_ = 0;
  std::uint64_t unexpunged_total_ = 0;
};

}  // namespace safemap
